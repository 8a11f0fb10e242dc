#include "controlplane/model/service.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "controlplane/model/arn.h"
#include "controlplane/model/ecs_json.h"
#include "controlplane/model/ecs_json_util.h"
#include "controlplane/model/errors.h"

namespace berth::cp {

namespace {

using json = nlohmann::json;
using ecs::kRequest;

constexpr jr::Document kStoredService{"stored service", "service"};

// ---------------------------------------------------------------------------
// The stored form's readers.

Result<TimePoint> read_time(const jr::Node& n) {
  double s = 0;
  BERTH_TRY(jr::read(n, s));
  return s == 0 ? TimePoint{} : from_epoch_seconds(s);
}

void put_time(json& out, const char* key, TimePoint t) {
  if (is_set(t)) out[key] = epoch_seconds(t);
}

json deployment_configuration_json(const DeploymentConfiguration& c) {
  return json{{"deploymentCircuitBreaker",
               {{"enable", c.circuit_breaker.enable}, {"rollback", c.circuit_breaker.rollback}}},
              {"maximumPercent", c.maximum_percent},
              {"minimumHealthyPercent", c.minimum_healthy_percent}};
}

json load_balancer_json(const ServiceLoadBalancer& lb) {
  json j = {{"containerName", lb.container_name}, {"containerPort", lb.container_port}};
  if (!lb.target_group_arn.empty()) j["targetGroupArn"] = lb.target_group_arn;
  if (!lb.load_balancer_name.empty()) j["loadBalancerName"] = lb.load_balancer_name;
  if (lb.listener_port != 0) j["berthListenerPort"] = lb.listener_port;
  return j;
}

json deployment_json(const Deployment& d, bool stored) {
  json j = {
      {"id", d.id},
      {"status", d.status},
      {"taskDefinition", d.task_definition},
      {"desiredCount", d.desired_count},
      {"pendingCount", d.pending_count},
      {"runningCount", d.running_count},
      {"failedTasks", d.failed_tasks},
      {"launchType", d.launch_type},
      {"rolloutState", d.rollout_state},
  };
  if (!d.rollout_state_reason.empty()) j["rolloutStateReason"] = d.rollout_state_reason;
  put_time(j, "createdAt", d.created_at);
  put_time(j, "updatedAt", d.updated_at);
  if (stored) {
    json b = {{"tasks", d.tasks}, {"consecutiveFailures", d.consecutive_failures}};
    put_time(b, "nextLaunchAt", d.next_launch_at);
    j["berth"] = std::move(b);
  }
  return j;
}

Result<DeploymentConfiguration> parse_deployment_configuration(const jr::Node& n) {
  BERTH_TRY(ecs::refuse_unknown(
      n, {"deploymentCircuitBreaker", "maximumPercent", "minimumHealthyPercent", "alarms"}));
  BERTH_TRY(ecs::refuse_if_set(n, "alarms", "CloudWatch alarms are not supported by berth"));
  DeploymentConfiguration c;
  BERTH_TRY(ecs::read_int(n.member("maximumPercent"), c.maximum_percent, 100, 400));
  BERTH_TRY(ecs::read_int(n.member("minimumHealthyPercent"), c.minimum_healthy_percent, 0, 100));
  if (auto cb = n.member("deploymentCircuitBreaker"); cb.present()) {
    BERTH_TRY(ecs::refuse_unknown(cb, {"enable", "rollback"}));
    BERTH_TRY(jr::read_required(cb.member("enable"), c.circuit_breaker.enable));
    BERTH_TRY(jr::read_required(cb.member("rollback"), c.circuit_breaker.rollback));
  }
  return c;
}

// "berth-<port>" -> port; 0 otherwise.
uint16_t listener_from_name(std::string_view name) {
  constexpr std::string_view prefix = "berth-";
  if (!name.starts_with(prefix)) return 0;
  name.remove_prefix(prefix.size());
  unsigned v = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), v);
  if (ec != std::errc() || end != name.data() + name.size() || v < 1 || v > 65535) return 0;
  return static_cast<uint16_t>(v);
}

Result<ServiceLoadBalancer> parse_load_balancer(const jr::Node& n) {
  BERTH_TRY(ecs::refuse_unknown(n, {"containerName", "containerPort", "targetGroupArn",
                                    "loadBalancerName", "berthListenerPort"}));
  ServiceLoadBalancer lb;
  BERTH_TRY(jr::read_required(n.member("containerName"), lb.container_name));
  BERTH_TRY(jr::check_no_nul(n.member("containerName"), lb.container_name));
  if (lb.container_name.empty()) return jr::fail(n.member("containerName"), "must not be empty");
  int port = 0;
  if (!n.member("containerPort").present()) {
    return jr::fail(n.member("containerPort"), "required field is missing");
  }
  BERTH_TRY(ecs::read_int(n.member("containerPort"), port, 1, 65535));
  lb.container_port = static_cast<uint16_t>(port);
  BERTH_TRY(jr::read(n.member("targetGroupArn"), lb.target_group_arn));
  BERTH_TRY(jr::read(n.member("loadBalancerName"), lb.load_balancer_name));
  int listener = 0;
  BERTH_TRY(ecs::read_int(n.member("berthListenerPort"), listener, 1, 65535));
  uint16_t by_name = listener_from_name(lb.load_balancer_name);
  if (listener != 0 && by_name != 0 && listener != by_name) {
    return jr::fail(n.member("berthListenerPort"), "{} differs from loadBalancerName {:?}",
                    listener, lb.load_balancer_name);
  }
  lb.listener_port = listener != 0 ? static_cast<uint16_t>(listener) : by_name;
  return lb;
}

Result<std::vector<ServiceLoadBalancer>> parse_load_balancers(const jr::Node& n) {
  std::vector<ServiceLoadBalancer> out;
  BERTH_TRY(jr::read_array(n, out, parse_load_balancer));
  if (out.size() > 5) return jr::fail(n, "at most 5 load balancers");
  for (size_t i = 0; i < out.size(); ++i) {
    for (size_t k = 0; k < i; ++k) {
      if (out[i].listener_port != 0 && out[i].listener_port == out[k].listener_port) {
        return jr::fail(n.element(i), "listener port {} is used twice", out[i].listener_port);
      }
    }
  }
  return out;
}

Result<void> read_grace(const jr::Node& n, std::optional<int>& out) {
  return ecs::read_int(n, out, 0, 2147483647);
}

Result<void> read_cluster_ref(const jr::Node& b, std::string& out) {
  BERTH_TRY(jr::read(b.member("cluster"), out));
  return jr::check_no_nul(b.member("cluster"), out);
}

Result<void> read_launch_type(const jr::Node& n, std::string& out) {
  BERTH_TRY(jr::read(n, out));
  if (out.empty()) out = "FARGATE";
  if (out != "FARGATE" && out != "FARGATE_SPOT") {
    return jr::fail(n, "{} is not supported: berth runs FARGATE and FARGATE_SPOT tasks", out);
  }
  return {};
}

Result<std::string> read_service_ref(const jr::Node& n) {
  std::string s;
  BERTH_TRY(jr::read_required(n, s));
  BERTH_TRY(jr::check_no_nul(n, s));
  if (s.empty()) return jr::fail(n, "must not be empty");
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------
// The model.

Deployment* Service::primary() {
  for (auto& d : deployments)
    if (d.status == "PRIMARY") return &d;
  return nullptr;
}

const Deployment* Service::primary() const {
  for (const auto& d : deployments)
    if (d.status == "PRIMARY") return &d;
  return nullptr;
}

Deployment* Service::deployment(std::string_view id) {
  for (auto& d : deployments)
    if (d.id == id) return &d;
  return nullptr;
}

void Service::add_event(ServiceEvent e) {
  events.insert(events.begin(), std::move(e));
  if (events.size() > kMaxServiceEvents) events.resize(kMaxServiceEvents);
}

void Service::start_deployment(std::string id, const std::string& task_definition_arn,
                               TimePoint now) {
  for (auto& d : deployments) {
    if (d.status != "PRIMARY") continue;
    d.status = "ACTIVE";
    d.updated_at = now;
  }
  Deployment d;
  d.id = std::move(id);
  d.status = "PRIMARY";
  d.task_definition = task_definition_arn;
  d.desired_count = desired_count;
  d.launch_type = launch_type;
  d.rollout_state = "IN_PROGRESS";
  d.rollout_state_reason = fmt::format("ECS deployment {} in progress.", d.id);
  d.created_at = now;
  d.updated_at = now;
  deployments.insert(deployments.begin(), std::move(d));
  task_definition = task_definition_arn;
  steady = false;
}

std::string new_deployment_id() {
  // 32 random hex digits, folded to decimal digits.
  std::string hex = new_task_id();
  std::string out = "ecs-svc/";
  for (size_t i = 0; i < 19; ++i) {
    int v = std::isdigit(static_cast<unsigned char>(hex[i])) ? hex[i] - '0' : hex[i] - 'a' + 10;
    out += static_cast<char>('0' + (i == 0 ? 1 + v % 9 : v % 10));
  }
  return out;
}

bool valid_service_name(std::string_view n) {
  if (n.empty() || n.size() > 255) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

std::string service_dns_name(const Service& s) {
  std::string out = s.name + "." + s.cluster + ".berth";
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '_') c = '-';
  }
  return out;
}

json service_json(const Service& s, std::string_view region, bool stored) {
  json lbs = json::array(), deployments = json::array(), events = json::array();
  for (const auto& lb : s.load_balancers) lbs.push_back(load_balancer_json(lb));
  for (const auto& d : s.deployments) deployments.push_back(deployment_json(d, stored));
  for (const auto& e : s.events) {
    events.push_back(
        {{"id", e.id}, {"createdAt", epoch_seconds(e.created_at)}, {"message", e.message}});
  }
  json out = {
      {"serviceArn", service_arn(region, s.account, s.cluster, s.name)},
      {"serviceName", s.name},
      {"clusterArn", cluster_arn(region, s.account, s.cluster)},
      {"loadBalancers", lbs},
      {"serviceRegistries", json::array()},
      {"status", s.status},
      {"desiredCount", s.desired_count},
      {"runningCount", s.running_count},
      {"pendingCount", s.pending_count},
      {"launchType", s.launch_type},
      {"taskDefinition", s.task_definition},
      {"deploymentConfiguration", deployment_configuration_json(s.deployment_configuration)},
      {"deployments", deployments},
      {"events", events},
      {"placementConstraints", json::array()},
      {"placementStrategy", json::array()},
      {"schedulingStrategy", s.scheduling_strategy},
      {"deploymentController", {{"type", "ECS"}}},
      {"enableECSManagedTags", false},
      {"propagateTags", "NONE"},
      {"enableExecuteCommand", false},
      {"tags", tags_json(s.tags)},
  };
  if (!s.platform_version.empty()) out["platformVersion"] = s.platform_version;
  if (s.health_check_grace_period_s) {
    out["healthCheckGracePeriodSeconds"] = *s.health_check_grace_period_s;
  }
  if (s.network_configuration) out["networkConfiguration"] = *s.network_configuration;
  put_time(out, "createdAt", s.created_at);
  if (!s.vip.empty()) {
    uint16_t listener = s.load_balancers.empty() ? 0 : s.load_balancers.front().listener_port;
    out["berthEndpoint"] = {{"name", service_dns_name(s)},
                            {"address", s.vip},
                            {"containerPort", s.endpoint_port},
                            {"listenerPort", listener}};
  }
  if (stored) {
    json b = {{"version", s.version}, {"steady", s.steady}};
    if (!s.vip.empty()) {
      b["vip"] = s.vip;
      b["endpointPort"] = s.endpoint_port;
    }
    put_time(b, "deletedAt", s.deleted_at);
    out["berth"] = std::move(b);
  }
  return out;
}

namespace {

Result<Deployment> deployment_from_json(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  Deployment d;
  BERTH_TRY(jr::read_required(n.member("id"), d.id));
  BERTH_TRY(jr::read(n.member("status"), d.status));
  BERTH_TRY(jr::read(n.member("taskDefinition"), d.task_definition));
  BERTH_TRY(jr::read(n.member("desiredCount"), d.desired_count));
  BERTH_TRY(jr::read(n.member("pendingCount"), d.pending_count));
  BERTH_TRY(jr::read(n.member("runningCount"), d.running_count));
  BERTH_TRY(jr::read(n.member("failedTasks"), d.failed_tasks));
  BERTH_TRY(jr::read(n.member("launchType"), d.launch_type));
  BERTH_TRY(jr::read(n.member("rolloutState"), d.rollout_state));
  BERTH_TRY(jr::read(n.member("rolloutStateReason"), d.rollout_state_reason));
  BERTH_ASSIGN(d.created_at, read_time(n.member("createdAt")));
  BERTH_ASSIGN(d.updated_at, read_time(n.member("updatedAt")));
  if (auto b = n.member("berth"); b.present()) {
    BERTH_TRY(jr::read(b.member("tasks"), d.tasks));
    BERTH_TRY(jr::read(b.member("consecutiveFailures"), d.consecutive_failures));
    BERTH_ASSIGN(d.next_launch_at, read_time(b.member("nextLaunchAt")));
  }
  return d;
}

Result<ServiceEvent> event_from_json(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  ServiceEvent e;
  BERTH_TRY(jr::read(n.member("id"), e.id));
  BERTH_TRY(jr::read(n.member("message"), e.message));
  BERTH_ASSIGN(e.created_at, read_time(n.member("createdAt")));
  return e;
}

Result<ServiceLoadBalancer> stored_load_balancer(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  ServiceLoadBalancer lb;
  BERTH_TRY(jr::read(n.member("containerName"), lb.container_name));
  BERTH_TRY(jr::read(n.member("containerPort"), lb.container_port));
  BERTH_TRY(jr::read(n.member("berthListenerPort"), lb.listener_port));
  BERTH_TRY(jr::read(n.member("targetGroupArn"), lb.target_group_arn));
  BERTH_TRY(jr::read(n.member("loadBalancerName"), lb.load_balancer_name));
  return lb;
}

}  // namespace

Result<Service> service_from_json(const json& j, std::string_view account) {
  auto n = jr::Node::root(j, kStoredService);
  BERTH_TRY(jr::expect_object(n));
  Service s;
  s.account = std::string(account);
  BERTH_TRY(jr::read_required(n.member("serviceName"), s.name));
  std::string cluster_arn_text;
  BERTH_TRY(jr::read_required(n.member("clusterArn"), cluster_arn_text));
  auto arn = parse_arn(cluster_arn_text);
  if (!arn || arn->type != "cluster") {
    return jr::fail(n.member("clusterArn"), "not a cluster ARN: {:?}", cluster_arn_text);
  }
  s.cluster = arn->rest;
  BERTH_TRY(jr::read(n.member("status"), s.status));
  BERTH_TRY(jr::read(n.member("taskDefinition"), s.task_definition));
  BERTH_TRY(jr::read(n.member("desiredCount"), s.desired_count));
  BERTH_TRY(jr::read(n.member("runningCount"), s.running_count));
  BERTH_TRY(jr::read(n.member("pendingCount"), s.pending_count));
  BERTH_TRY(jr::read(n.member("launchType"), s.launch_type));
  BERTH_TRY(jr::read(n.member("platformVersion"), s.platform_version));
  BERTH_TRY(jr::read(n.member("schedulingStrategy"), s.scheduling_strategy));
  BERTH_TRY(jr::read(n.member("healthCheckGracePeriodSeconds"), s.health_check_grace_period_s));
  if (auto dc = n.member("deploymentConfiguration"); dc.present()) {
    BERTH_ASSIGN(s.deployment_configuration, parse_deployment_configuration(dc));
  }
  BERTH_TRY(jr::read_array(n.member("loadBalancers"), s.load_balancers, stored_load_balancer));
  BERTH_TRY(jr::read_array(n.member("deployments"), s.deployments, deployment_from_json));
  BERTH_TRY(jr::read_array(n.member("events"), s.events, event_from_json));
  BERTH_ASSIGN(s.tags, parse_tags(n.member("tags")));
  if (auto nc = n.member("networkConfiguration"); nc.present()) s.network_configuration = *nc.value;
  BERTH_ASSIGN(s.created_at, read_time(n.member("createdAt")));
  if (auto b = n.member("berth"); b.present()) {
    BERTH_TRY(jr::read(b.member("version"), s.version));
    BERTH_TRY(jr::read(b.member("steady"), s.steady));
    BERTH_TRY(jr::read(b.member("vip"), s.vip));
    BERTH_TRY(jr::read(b.member("endpointPort"), s.endpoint_port));
    BERTH_ASSIGN(s.deleted_at, read_time(b.member("deletedAt")));
  }
  return s;
}

// ---------------------------------------------------------------------------
// Requests.

Result<CreateServiceRequest> parse_create_service(const json& body) {
  auto b = jr::Node::root(body, kRequest);
  BERTH_TRY(ecs::refuse_unknown(b, {"cluster",
                                    "serviceName",
                                    "taskDefinition",
                                    "desiredCount",
                                    "launchType",
                                    "platformVersion",
                                    "deploymentConfiguration",
                                    "loadBalancers",
                                    "healthCheckGracePeriodSeconds",
                                    "schedulingStrategy",
                                    "networkConfiguration",
                                    "tags",
                                    "clientToken",
                                    "role",
                                    "propagateTags",
                                    "enableECSManagedTags",
                                    "deploymentController",
                                    "serviceRegistries",
                                    "placementConstraints",
                                    "placementStrategy",
                                    "capacityProviderStrategy",
                                    "serviceConnectConfiguration",
                                    "volumeConfigurations",
                                    "enableExecuteCommand"}));
  for (auto key : {"serviceRegistries", "placementConstraints", "placementStrategy",
                   "capacityProviderStrategy", "serviceConnectConfiguration",
                   "volumeConfigurations", "enableExecuteCommand"}) {
    BERTH_TRY(ecs::refuse_if_set(b, key, "not supported by berth"));
  }
  CreateServiceRequest r;
  BERTH_TRY(read_cluster_ref(b, r.cluster));
  BERTH_TRY(jr::read_required(b.member("serviceName"), r.service_name));
  if (!valid_service_name(r.service_name)) {
    return jr::fail(b.member("serviceName"),
                    "{:?}: up to 255 letters (uppercase and lowercase), numbers, underscores, "
                    "and hyphens are allowed",
                    r.service_name);
  }
  std::string strategy = "REPLICA";
  BERTH_TRY(jr::read(b.member("schedulingStrategy"), strategy));
  if (strategy == "DAEMON") {
    return jr::fail(b.member("schedulingStrategy"),
                    "DAEMON is not supported: berth runs REPLICA services");
  }
  if (strategy != "REPLICA") {
    return jr::fail(b.member("schedulingStrategy"), "must be REPLICA, got {:?}", strategy);
  }
  BERTH_TRY(jr::read_required(b.member("taskDefinition"), r.task_definition));
  BERTH_TRY(jr::check_no_nul(b.member("taskDefinition"), r.task_definition));
  if (!b.member("desiredCount").present()) {
    return jr::fail(b.member("desiredCount"),
                    "required field is missing (schedulingStrategy is REPLICA)");
  }
  BERTH_TRY(ecs::read_int(b.member("desiredCount"), r.desired_count, 0, 1000));
  BERTH_TRY(read_launch_type(b.member("launchType"), r.launch_type));
  BERTH_TRY(jr::read(b.member("platformVersion"), r.platform_version));
  if (auto dc = b.member("deploymentConfiguration"); dc.present()) {
    BERTH_ASSIGN(r.deployment_configuration, parse_deployment_configuration(dc));
  }
  BERTH_ASSIGN(r.load_balancers, parse_load_balancers(b.member("loadBalancers")));
  BERTH_TRY(read_grace(b.member("healthCheckGracePeriodSeconds"), r.health_check_grace_period_s));
  if (auto nc = b.member("networkConfiguration"); nc.present()) {
    BERTH_TRY(jr::expect_object(nc));
    r.network_configuration = *nc.value;
  }
  BERTH_ASSIGN(r.tags, parse_tags(b.member("tags")));
  std::string propagate = "NONE";
  BERTH_TRY(jr::read(b.member("propagateTags"), propagate));
  if (propagate != "NONE") {
    return jr::fail(b.member("propagateTags"), "{} is not supported by berth (only NONE)",
                    propagate);
  }
  BERTH_TRY(ecs::refuse_if_set(b, "enableECSManagedTags", "not supported by berth"));
  if (auto dc = b.member("deploymentController"); dc.present()) {
    BERTH_TRY(ecs::refuse_unknown(dc, {"type"}));
    std::string type = "ECS";
    BERTH_TRY(jr::read(dc.member("type"), type));
    if (type != "ECS") {
      return jr::fail(dc.member("type"), "{} is not supported: berth deploys as ECS does (ECS)",
                      type);
    }
  }
  std::string ignored;
  BERTH_TRY(jr::read(b.member("clientToken"), ignored));
  BERTH_TRY(jr::read(b.member("role"), ignored));
  return r;
}

Result<UpdateServiceRequest> parse_update_service(const json& body) {
  auto b = jr::Node::root(body, kRequest);
  BERTH_TRY(ecs::refuse_unknown(
      b, {"cluster", "service", "desiredCount", "taskDefinition", "forceNewDeployment",
          "deploymentConfiguration", "healthCheckGracePeriodSeconds"}));
  UpdateServiceRequest r;
  BERTH_TRY(read_cluster_ref(b, r.cluster));
  BERTH_ASSIGN(r.service, read_service_ref(b.member("service")));
  BERTH_TRY(ecs::read_int(b.member("desiredCount"), r.desired_count, 0, 1000));
  BERTH_TRY(jr::read(b.member("taskDefinition"), r.task_definition));
  if (r.task_definition)
    BERTH_TRY(jr::check_no_nul(b.member("taskDefinition"), *r.task_definition));
  BERTH_TRY(jr::read(b.member("forceNewDeployment"), r.force_new_deployment));
  if (auto dc = b.member("deploymentConfiguration"); dc.present()) {
    BERTH_ASSIGN(r.deployment_configuration, parse_deployment_configuration(dc));
  }
  BERTH_TRY(read_grace(b.member("healthCheckGracePeriodSeconds"), r.health_check_grace_period_s));
  return r;
}

Result<DeleteServiceRequest> parse_delete_service(const json& body) {
  auto b = jr::Node::root(body, kRequest);
  BERTH_TRY(ecs::refuse_unknown(b, {"cluster", "service", "force"}));
  DeleteServiceRequest r;
  BERTH_TRY(read_cluster_ref(b, r.cluster));
  BERTH_ASSIGN(r.service, read_service_ref(b.member("service")));
  BERTH_TRY(jr::read(b.member("force"), r.force));
  return r;
}

Result<DescribeServicesRequest> parse_describe_services(const json& body) {
  auto b = jr::Node::root(body, kRequest);
  BERTH_TRY(ecs::refuse_unknown(b, {"cluster", "services", "include"}));
  DescribeServicesRequest r;
  BERTH_TRY(read_cluster_ref(b, r.cluster));
  auto services = b.member("services");
  if (!services.present()) return jr::fail(services, "required field is missing");
  BERTH_TRY(ecs::read_strings(services, r.services));
  if (r.services.empty() || r.services.size() > 10) {
    return jr::fail(services, "must name 1 to 10 services, got {}", r.services.size());
  }
  std::vector<std::string> include;
  BERTH_TRY(ecs::read_strings(b.member("include"), include));
  for (size_t i = 0; i < include.size(); ++i) {
    if (include[i] != "TAGS") return jr::fail(b.member("include").element(i), "must be TAGS");
    r.include_tags = true;
  }
  return r;
}

Result<ListServicesRequest> parse_list_services(const json& body) {
  auto b = jr::Node::root(body, kRequest);
  BERTH_TRY(ecs::refuse_unknown(
      b, {"cluster", "nextToken", "maxResults", "launchType", "schedulingStrategy"}));
  ListServicesRequest r;
  BERTH_TRY(read_cluster_ref(b, r.cluster));
  BERTH_TRY(jr::read(b.member("nextToken"), r.next_token));
  BERTH_TRY(ecs::read_int(b.member("maxResults"), r.max_results, 1, 100));
  BERTH_TRY(jr::read(b.member("launchType"), r.launch_type));
  if (!r.launch_type.empty() && r.launch_type != "FARGATE" && r.launch_type != "FARGATE_SPOT" &&
      r.launch_type != "EC2" && r.launch_type != "EXTERNAL") {
    return jr::fail(b.member("launchType"), "unknown launch type {:?}", r.launch_type);
  }
  BERTH_TRY(jr::read(b.member("schedulingStrategy"), r.scheduling_strategy));
  if (!r.scheduling_strategy.empty() && r.scheduling_strategy != "REPLICA" &&
      r.scheduling_strategy != "DAEMON") {
    return jr::fail(b.member("schedulingStrategy"), "must be REPLICA or DAEMON, got {:?}",
                    r.scheduling_strategy);
  }
  return r;
}

std::optional<ServiceRef> parse_service_ref(std::string_view ref, std::string_view account) {
  if (!ref.starts_with("arn:")) {
    if (!valid_service_name(ref)) return std::nullopt;
    return ServiceRef{std::string(ref), ""};
  }
  auto arn = parse_arn(ref);
  if (!arn || arn->type != "service" || arn->account != account) return std::nullopt;
  auto slash = arn->rest.find('/');
  ServiceRef out;
  if (slash == std::string::npos) {
    out.name = arn->rest;
  } else {
    out.cluster = arn->rest.substr(0, slash);
    out.name = arn->rest.substr(slash + 1);
  }
  if (!valid_service_name(out.name)) return std::nullopt;
  return out;
}

}  // namespace berth::cp
