// The ECS service object as `berth services` shows it (DescribeServices,
// CreateService, UpdateService, DeleteService answers; docs/ECS-API.md),
// read through the typed reader like the task view (a missing member is
// empty, a wrongly typed one an error naming its path), then rendered as an
// `ls` row, a `describe` page, or a `--wait` progress line.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace berth::cli {

struct DeploymentView {
  std::string id;          // ecs-svc/...
  std::string status;      // PRIMARY | ACTIVE
  std::string definition;  // family:revision
  int desired = 0;
  int running = 0;
  int pending = 0;
  int failed = 0;
  std::string rollout_state;  // IN_PROGRESS | COMPLETED | FAILED
  std::string rollout_state_reason;
  double created_at = 0;
  double updated_at = 0;
};

struct LoadBalancerView {
  std::string container_name;
  int container_port = 0;
  int listener_port = 0;  // berthListenerPort; 0 = none
  std::string target_group_arn;
  std::string load_balancer_name;
};

// berth's "berthEndpoint": the service's stable name and virtual address.
struct EndpointView {
  std::string name;     // <service>.<cluster>.berth
  std::string address;  // the VIP
  int container_port = 0;
  int listener_port = 0;  // 0 = no host listener
};

struct ServiceEventView {
  double created_at = 0;
  std::string message;
};

struct ServiceView {
  std::string arn;
  std::string name;
  std::string cluster;     // name, from clusterArn
  std::string status;      // ACTIVE | DRAINING | INACTIVE
  std::string definition;  // family:revision, from taskDefinition
  std::string launch_type;
  int desired = 0;
  int running = 0;
  int pending = 0;
  int maximum_percent = 0;
  int minimum_healthy_percent = 0;
  bool circuit_breaker = false;
  bool rollback = false;
  std::optional<int> grace_period_s;
  double created_at = 0;
  std::vector<DeploymentView> deployments;  // the PRIMARY one first
  std::vector<LoadBalancerView> load_balancers;
  std::optional<EndpointView> endpoint;
  std::vector<ServiceEventView> events;  // newest first
  std::vector<std::pair<std::string, std::string>> tags;
};

Result<ServiceView> read_service(const nlohmann::json& service);
// {"services": [...]} (DescribeServices).
Result<std::vector<ServiceView>> read_services(const nlohmann::json& answer);
// {"service": {...}} (CreateService, UpdateService, DeleteService).
Result<ServiceView> read_service_answer(const nlohmann::json& answer);

// The PRIMARY deployment (nullptr when the service has none).
const DeploymentView* primary_deployment(const ServiceView& s);

// The ROLLOUT column: the PRIMARY deployment's rolloutState, with the
// number of deployments while older ones remain ("IN_PROGRESS (2
// deployments)"); "-" without a deployment.
std::string rollout_text(const ServiceView& s);
// The ENDPOINT column: "web.default.berth 10.88.255.1:80", plus
// ", host :8080" with a listener port; "-" without an endpoint.
std::string endpoint_text(const ServiceView& s);

// `berth services ls`, by name: NAME, STATUS, DESIRED, RUNNING, PENDING,
// TASK-DEFINITION, ROLLOUT, ENDPOINT.
std::string services_table(std::vector<ServiceView> services);

// `berth services describe`: status, counts, task definition, deployment
// configuration, deployments, load balancers, endpoint and the last
// `max_events` events; `now` in epoch seconds for the "ago" parts.
std::string service_describe_text(const ServiceView& s, double now, size_t max_events = 10);

// What `--wait` sees in one DescribeServices answer.
enum class WaitState { waiting, done, failed };
// Steady (create, update, scale): ACTIVE, one deployment, its rollout
// COMPLETED, running == desired and nothing pending. Failed: the watched
// deployment's rollout is FAILED (`why` names rolloutStateReason), or the
// service is no longer ACTIVE. `deployment` is the id to watch ("" = the
// PRIMARY one).
WaitState steady_state(const ServiceView& s, const std::string& deployment, std::string* why);
// A one-line summary for the progress of `--wait`:
// "web: ACTIVE, 2/3 running, 1 pending, rollout IN_PROGRESS (2 deployments)".
std::string progress_line(const ServiceView& s);

}  // namespace berth::cli
