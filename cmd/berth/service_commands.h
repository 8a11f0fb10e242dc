// `berth services create|update|scale|ls|describe|rm`: the ECS service
// operations (CreateService, UpdateService, DeleteService, DescribeServices,
// ListServices) over a Client, with `--wait` polling DescribeServices until
// the service is steady (or INACTIVE for rm). Each returns the process exit
// code, or the error main prints as "berth: <error>". docs/berth-cli.md has
// the reference.
#pragma once

#include <string>
#include <vector>

#include "cmd/berth/commands.h"
#include "cmd/berth/service_view.h"
#include "common/error.h"

namespace berth::cli {

struct ServiceWaitOptions {
  bool wait = false;
  int timeout_s = 600;
  // The first poll's delay, doubling up to 1 s (tests shorten it).
  int poll_ms = 250;
};

// Unset numbers are -1 (CLI11 range checks keep given ones in range).
struct DeploymentFlags {
  int maximum_percent = -1;
  int minimum_healthy_percent = -1;
  bool circuit_breaker = false;
  bool no_circuit_breaker = false;  // update only
  bool rollback = false;
};

struct ServiceCreateOptions {
  std::string name;
  std::string cluster;
  std::string task_definition;  // FAMILY[:REV] or ARN
  int desired_count = -1;       // required
  std::string container_name;
  int container_port = 0;
  int listener_port = 0;
  DeploymentFlags deployment;
  int grace_period_s = -1;
  std::vector<std::string> tags;  // KEY=VALUE
  ServiceWaitOptions wait;
};

struct ServiceUpdateOptions {
  std::string name;
  std::string cluster;
  std::string task_definition;  // "" = unchanged
  int desired_count = -1;       // -1 = unchanged
  bool force_new_deployment = false;
  DeploymentFlags deployment;
  int grace_period_s = -1;
  ServiceWaitOptions wait;
};

struct ServiceScaleOptions {
  std::string name;
  std::string cluster;
  int desired_count = -1;
  ServiceWaitOptions wait;
};

struct ServiceListOptions {
  std::string cluster;
};

struct ServiceDescribeOptions {
  std::string name;
  std::string cluster;
};

struct ServiceRemoveOptions {
  std::string name;
  std::string cluster;
  bool force = false;
  ServiceWaitOptions wait;
};

// The request bodies, checked (usage errors for inconsistent flags). Pure.
Result<nlohmann::json> create_service_input(const ServiceCreateOptions& o);
// `current` is the service as DescribeServices answered it (nullptr when
// no deployment flag is given): the flags change its
// deploymentConfiguration member by member, as UpdateService replaces the
// whole object.
Result<nlohmann::json> update_service_input(const ServiceUpdateOptions& o,
                                            const ServiceView* current);
bool has_deployment_flags(const DeploymentFlags& d);

Result<int> cmd_services_create(Context& ctx, const ServiceCreateOptions& o);
Result<int> cmd_services_update(Context& ctx, const ServiceUpdateOptions& o);
Result<int> cmd_services_scale(Context& ctx, const ServiceScaleOptions& o);
Result<int> cmd_services_ls(Context& ctx, const ServiceListOptions& o);
Result<int> cmd_services_describe(Context& ctx, const ServiceDescribeOptions& o);
Result<int> cmd_services_rm(Context& ctx, const ServiceRemoveOptions& o);

}  // namespace berth::cli
