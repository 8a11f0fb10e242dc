// ECS services (docs/ECS-API.md, CreateService ... and the service object):
// the model, its ECS JSON out and back (the stored form is the same JSON
// plus berth's bookkeeping members), and the request parsing of
// CreateService / UpdateService / DeleteService / DescribeServices /
// ListServices through the typed reader (common/json_reader.h).
//
// Decisions where ECS leaves room (or where berth differs), documented here:
// - schedulingStrategy: REPLICA only; DAEMON is refused by name
//   (InvalidParameterException "schedulingStrategy: DAEMON is not supported:
//   berth runs REPLICA services").
// - desiredCount is required (as ECS requires it for REPLICA), 0..1000.
// - deploymentConfiguration: maximumPercent (default 200) must be >= 100 and
//   <= 400, minimumHealthyPercent (default 100) 0..100. A configuration
//   whose floor(desired * max / 100) leaves no room above
//   ceil(desired * min / 100) cannot replace tasks: like ECS, the rollout
//   then stalls (nothing is stopped below the minimum).
// - loadBalancers (ECS allows 5; berth balances one per service: more are
//   refused by CreateService): ECS's shape {containerName, containerPort,
//   targetGroupArn, loadBalancerName} plus the berth member
//   "berthListenerPort": the host TCP port berth's own balancer listens on.
//   Clients that validate against the ECS model (the AWS CLI) cannot send
//   an unknown member: for them a loadBalancerName "berth-<port>" names the
//   listener port as well. Both given and different: refused. Neither: no
//   listener (the service has no balancer port; containerName and
//   containerPort are still checked). targetGroupArn is stored and returned.
// - Accepted and kept for AWS-compatibility only: clientToken, role,
//   platformVersion, networkConfiguration (tasks get their own netns as
//   RunTask's do), propagateTags NONE, enableECSManagedTags false,
//   deploymentController {type: ECS}. Refused when set (by name):
//   serviceRegistries, placementConstraints, placementStrategy,
//   capacityProviderStrategy, serviceConnectConfiguration,
//   volumeConfigurations, enableExecuteCommand; unknown members are refused.
// - launchType: FARGATE (default) or FARGATE_SPOT.
// - Events are kept newest first, at most kMaxServiceEvents.
// - Deployments: PRIMARY (the one the service converges to) and ACTIVE
//   (older ones still draining). A deployment with no task left is dropped
//   from the list (ECS shows INACTIVE ones briefly; the waiter wants one
//   deployment once the rollout is over).
// - Deletion: DeleteService makes the service DRAINING (desiredCount 0;
//   without `force` the desired count must already be 0); when its last
//   task has stopped it becomes INACTIVE, stays describable for
//   kInactiveServiceRetention, and its name may be used again by
//   CreateService at once (the new service replaces the INACTIVE record).
//
// Stored form: service_json plus "berth" {version, nextLaunchAt,
// steady, ...} and per deployment "berth" {tasks, consecutiveFailures,
// nextLaunchAt}; service_from_json reads exactly what service_json(...,
// /*stored=*/true) writes (errors have step "stored service").
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_reader.h"
#include "controlplane/model/model.h"

namespace berth::cp {

inline constexpr std::string_view kServiceNotFound = "ServiceNotFoundException";
inline constexpr std::string_view kServiceNotActive = "ServiceNotActiveException";

inline constexpr size_t kMaxServiceEvents = 100;
inline constexpr std::chrono::seconds kInactiveServiceRetention{3600};

struct CircuitBreaker {
  bool enable = false;
  bool rollback = false;
  bool operator==(const CircuitBreaker&) const = default;
};

struct DeploymentConfiguration {
  int maximum_percent = 200;
  int minimum_healthy_percent = 100;
  CircuitBreaker circuit_breaker;
  bool operator==(const DeploymentConfiguration&) const = default;
};

struct ServiceLoadBalancer {
  std::string container_name;
  uint16_t container_port = 0;
  uint16_t listener_port = 0;  // berthListenerPort; 0 = none
  std::string target_group_arn;
  std::string load_balancer_name;
  bool operator==(const ServiceLoadBalancer&) const = default;
};

struct ServiceEvent {
  std::string id;  // uuid
  TimePoint created_at{};
  std::string message;
  bool operator==(const ServiceEvent&) const = default;
};

struct Deployment {
  std::string id;                  // ecs-svc/<19 digits>
  std::string status = "PRIMARY";  // PRIMARY | ACTIVE | INACTIVE
  std::string task_definition;     // ARN
  int desired_count = 0;
  int running_count = 0;
  int pending_count = 0;
  int failed_tasks = 0;
  std::string rollout_state = "IN_PROGRESS";  // IN_PROGRESS | COMPLETED | FAILED
  std::string rollout_state_reason;
  std::string launch_type = "FARGATE";
  TimePoint created_at{};
  TimePoint updated_at{};
  // berth's bookkeeping (stored, not shown): the ids of the tasks this
  // deployment started and has not yet seen stopped (each stop is
  // accounted once), the failures since the last task that turned healthy,
  // and when the next launch is allowed (backoff; zero = now).
  std::vector<std::string> tasks;
  int consecutive_failures = 0;
  TimePoint next_launch_at{};
  bool operator==(const Deployment&) const = default;
};

struct Service {
  std::string account;
  std::string cluster;  // name
  std::string name;
  std::string status = "ACTIVE";  // ACTIVE | DRAINING | INACTIVE
  std::string task_definition;    // ARN of the primary deployment's
  int desired_count = 0;
  int running_count = 0;
  int pending_count = 0;
  std::string launch_type = "FARGATE";
  std::string platform_version;
  DeploymentConfiguration deployment_configuration;
  std::vector<ServiceLoadBalancer> load_balancers;
  std::optional<int> health_check_grace_period_s;
  std::string scheduling_strategy = "REPLICA";
  std::optional<nlohmann::json> network_configuration;
  std::vector<Deployment> deployments;  // the PRIMARY one first
  std::vector<ServiceEvent> events;     // newest first, at most kMaxServiceEvents
  std::vector<Tag> tags;
  TimePoint created_at{};
  TimePoint deleted_at{};  // when it became INACTIVE; zero otherwise
  // Whether the last plan found it steady (the steady-state event is
  // written once per steady period).
  bool steady = false;
  // The service's endpoint (agent.h ServiceEndpoint), set by the
  // supervisor: its stable virtual address ("" until assigned) and the
  // port it balances (0: the service has no port, so no endpoint). Shown in
  // answers as the berth member "berthEndpoint" {name, address,
  // containerPort, listenerPort}.
  std::string vip;
  uint16_t endpoint_port = 0;
  int64_t version = 1;  // compare-and-swap in the store, bumped per change

  Deployment* primary();
  const Deployment* primary() const;
  Deployment* deployment(std::string_view id);
  // Adds an event at the front, dropping the oldest beyond the bound.
  void add_event(ServiceEvent e);
  // A new PRIMARY deployment `id` of `task_definition_arn` at `now`
  // (CreateService, and UpdateService with a new task definition or
  // forceNewDeployment): rolloutState IN_PROGRESS ("ECS deployment <id> in
  // progress."), desiredCount the service's; the previous PRIMARY becomes
  // ACTIVE (its tasks are replaced by the planner, scheduler/service_plan.h).
  void start_deployment(std::string id, const std::string& task_definition_arn, TimePoint now);

  bool operator==(const Service&) const = default;
};

// The name tasks of the account reach the service by:
// "<service>.<cluster>.berth", lower-cased ('_' becomes '-').
std::string service_dns_name(const Service& s);

// "ecs-svc/" + 19 random digits (the first not 0).
std::string new_deployment_id();
bool valid_service_name(std::string_view name);

// The service object of DescribeServices / CreateService (ECS's members;
// timestamps in epoch seconds). `stored` adds berth's bookkeeping members.
nlohmann::json service_json(const Service& s, std::string_view region, bool stored = false);
Result<Service> service_from_json(const nlohmann::json& j, std::string_view account);

// ---------------------------------------------------------------------------
// Requests. References (cluster, service, task definition) are kept as the
// client wrote them (name or ARN); the API resolves them.

struct CreateServiceRequest {
  std::string cluster;
  std::string service_name;
  std::string task_definition;
  int desired_count = 0;
  std::string launch_type = "FARGATE";
  std::string platform_version;
  DeploymentConfiguration deployment_configuration;
  std::vector<ServiceLoadBalancer> load_balancers;
  std::optional<int> health_check_grace_period_s;
  std::optional<nlohmann::json> network_configuration;
  std::vector<Tag> tags;
};

struct UpdateServiceRequest {
  std::string cluster;
  std::string service;
  std::optional<int> desired_count;
  std::optional<std::string> task_definition;
  bool force_new_deployment = false;
  std::optional<DeploymentConfiguration> deployment_configuration;
  std::optional<int> health_check_grace_period_s;
};

struct DeleteServiceRequest {
  std::string cluster;
  std::string service;
  bool force = false;
};

struct DescribeServicesRequest {
  std::string cluster;
  std::vector<std::string> services;  // 1..10
  bool include_tags = false;
};

struct ListServicesRequest {
  std::string cluster;
  std::string next_token;  // opaque, as the client sent it
  int max_results = 10;    // 1..100 (ECS's default 10)
  std::string launch_type;
  std::string scheduling_strategy;
};

// `body` is the whole request; errors are ECS errors naming the field.
Result<CreateServiceRequest> parse_create_service(const nlohmann::json& body);
Result<UpdateServiceRequest> parse_update_service(const nlohmann::json& body);
Result<DeleteServiceRequest> parse_delete_service(const nlohmann::json& body);
Result<DescribeServicesRequest> parse_describe_services(const nlohmann::json& body);
Result<ListServicesRequest> parse_list_services(const nlohmann::json& body);

// The service name of a reference: a plain name, or an ARN
// arn:aws:ecs:<region>:<account>:service/<cluster>/<name> (or the old
// form .../service/<name>) of `account`; nullopt when it is neither
// (another account's ARN included). `cluster` is set from a new-form ARN.
struct ServiceRef {
  std::string name;
  std::string cluster;  // "" unless the ARN named one
};
std::optional<ServiceRef> parse_service_ref(std::string_view ref, std::string_view account);

}  // namespace berth::cp
