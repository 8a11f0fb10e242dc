#include "cmd/berth/service_view.h"

#include <algorithm>

#include <fmt/format.h>

#include "cmd/berth/answer.h"
#include "cmd/berth/table.h"
#include "cmd/berth/task_view.h"
#include "common/json_reader.h"

namespace berth::cli {
namespace {

using json = nlohmann::json;

Result<DeploymentView> read_deployment(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  DeploymentView d;
  BERTH_TRY(jr::read(n.member("id"), d.id));
  BERTH_TRY(jr::read(n.member("status"), d.status));
  std::string arn;
  BERTH_TRY(jr::read(n.member("taskDefinition"), arn));
  d.definition = arn_tail(arn);
  BERTH_TRY(jr::read(n.member("desiredCount"), d.desired));
  BERTH_TRY(jr::read(n.member("runningCount"), d.running));
  BERTH_TRY(jr::read(n.member("pendingCount"), d.pending));
  BERTH_TRY(jr::read(n.member("failedTasks"), d.failed));
  BERTH_TRY(jr::read(n.member("rolloutState"), d.rollout_state));
  BERTH_TRY(jr::read(n.member("rolloutStateReason"), d.rollout_state_reason));
  BERTH_TRY(jr::read(n.member("createdAt"), d.created_at));
  BERTH_TRY(jr::read(n.member("updatedAt"), d.updated_at));
  return d;
}

Result<LoadBalancerView> read_load_balancer(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  LoadBalancerView lb;
  BERTH_TRY(jr::read(n.member("containerName"), lb.container_name));
  BERTH_TRY(jr::read(n.member("containerPort"), lb.container_port));
  BERTH_TRY(jr::read(n.member("berthListenerPort"), lb.listener_port));
  BERTH_TRY(jr::read(n.member("targetGroupArn"), lb.target_group_arn));
  BERTH_TRY(jr::read(n.member("loadBalancerName"), lb.load_balancer_name));
  return lb;
}

Result<std::optional<EndpointView>> read_endpoint(const jr::Node& n) {
  if (!n.present()) return std::nullopt;
  BERTH_TRY(jr::expect_object(n));
  EndpointView e;
  BERTH_TRY(jr::read(n.member("name"), e.name));
  BERTH_TRY(jr::read(n.member("address"), e.address));
  BERTH_TRY(jr::read(n.member("containerPort"), e.container_port));
  BERTH_TRY(jr::read(n.member("listenerPort"), e.listener_port));
  return e;
}

Result<ServiceEventView> read_event(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  ServiceEventView e;
  BERTH_TRY(jr::read(n.member("createdAt"), e.created_at));
  BERTH_TRY(jr::read(n.member("message"), e.message));
  return e;
}

Result<std::pair<std::string, std::string>> read_tag(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  std::pair<std::string, std::string> t;
  BERTH_TRY(jr::read(n.member("key"), t.first));
  BERTH_TRY(jr::read(n.member("value"), t.second));
  return t;
}

Result<void> read_deployment_configuration(const jr::Node& n, ServiceView& s) {
  if (!n.present()) return {};
  BERTH_TRY(jr::expect_object(n));
  BERTH_TRY(jr::read(n.member("maximumPercent"), s.maximum_percent));
  BERTH_TRY(jr::read(n.member("minimumHealthyPercent"), s.minimum_healthy_percent));
  jr::Node cb = n.member("deploymentCircuitBreaker");
  BERTH_TRY(jr::read(cb.member("enable"), s.circuit_breaker));
  BERTH_TRY(jr::read(cb.member("rollback"), s.rollback));
  return {};
}

std::string counts_text(int desired, int running, int pending) {
  return fmt::format("{}/{} running, {} pending", running, desired, pending);
}

std::string lb_text(const LoadBalancerView& lb) {
  std::string out = fmt::format("{}:{}", lb.container_name, lb.container_port);
  if (lb.listener_port != 0) out += fmt::format(", host port {}", lb.listener_port);
  if (!lb.target_group_arn.empty()) out += ", target group " + lb.target_group_arn;
  return out;
}

}  // namespace

Result<ServiceView> read_service(const json& service) {
  jr::Node n = jr::Node::root(service, kAnswer);
  BERTH_TRY(jr::expect_object(n));
  ServiceView s;
  BERTH_TRY(jr::read(n.member("serviceArn"), s.arn));
  BERTH_TRY(jr::read(n.member("serviceName"), s.name));
  std::string cluster_arn, definition_arn;
  BERTH_TRY(jr::read(n.member("clusterArn"), cluster_arn));
  s.cluster = arn_tail(cluster_arn);
  BERTH_TRY(jr::read(n.member("status"), s.status));
  BERTH_TRY(jr::read(n.member("taskDefinition"), definition_arn));
  s.definition = arn_tail(definition_arn);
  BERTH_TRY(jr::read(n.member("launchType"), s.launch_type));
  BERTH_TRY(jr::read(n.member("desiredCount"), s.desired));
  BERTH_TRY(jr::read(n.member("runningCount"), s.running));
  BERTH_TRY(jr::read(n.member("pendingCount"), s.pending));
  BERTH_TRY(read_deployment_configuration(n.member("deploymentConfiguration"), s));
  BERTH_TRY(jr::read(n.member("healthCheckGracePeriodSeconds"), s.grace_period_s));
  BERTH_TRY(jr::read(n.member("createdAt"), s.created_at));
  BERTH_TRY(jr::read_array(n.member("deployments"), s.deployments, read_deployment));
  BERTH_TRY(jr::read_array(n.member("loadBalancers"), s.load_balancers, read_load_balancer));
  BERTH_ASSIGN(s.endpoint, read_endpoint(n.member("berthEndpoint")));
  BERTH_TRY(jr::read_array(n.member("events"), s.events, read_event));
  BERTH_TRY(jr::read_array(n.member("tags"), s.tags, read_tag));
  // The PRIMARY deployment first, whatever the answer's order.
  std::ranges::stable_partition(s.deployments,
                                [](const DeploymentView& d) { return d.status == "PRIMARY"; });
  return s;
}

Result<std::vector<ServiceView>> read_services(const json& answer) {
  jr::Node n = jr::Node::root(answer, kAnswer);
  BERTH_TRY(jr::expect_object(n));
  std::vector<ServiceView> services;
  BERTH_TRY(jr::read_array(n.member("services"), services,
                           [](const jr::Node& e) { return read_service(*e.value); }));
  return services;
}

Result<ServiceView> read_service_answer(const json& answer) {
  jr::Node n = jr::Node::root(answer, kAnswer);
  BERTH_TRY(jr::expect_object(n));
  jr::Node service = n.member("service");
  if (!service.present()) return jr::fail(service, "required field is missing");
  return read_service(*service.value);
}

const DeploymentView* primary_deployment(const ServiceView& s) {
  auto it = std::ranges::find(s.deployments, "PRIMARY", &DeploymentView::status);
  return it == s.deployments.end() ? nullptr : &*it;
}

std::string rollout_text(const ServiceView& s) {
  const DeploymentView* p = primary_deployment(s);
  if (p == nullptr) return "-";
  std::string out = or_dash(p->rollout_state);
  if (s.deployments.size() > 1) out += fmt::format(" ({} deployments)", s.deployments.size());
  return out;
}

std::string endpoint_text(const ServiceView& s) {
  if (!s.endpoint) return "-";
  const EndpointView& e = *s.endpoint;
  std::string out = fmt::format("{} {}:{}", e.name, e.address, e.container_port);
  if (e.listener_port != 0) out += fmt::format(", host :{}", e.listener_port);
  return out;
}

std::string services_table(std::vector<ServiceView> services) {
  std::ranges::stable_sort(services, {}, &ServiceView::name);
  Table table({"NAME", "STATUS", "DESIRED", "RUNNING", "PENDING", "TASK-DEFINITION", "ROLLOUT",
               "ENDPOINT"});
  for (const auto& s : services)
    table.add({s.name, or_dash(s.status), std::to_string(s.desired), std::to_string(s.running),
               std::to_string(s.pending), or_dash(s.definition), rollout_text(s),
               endpoint_text(s)});
  return table.render();
}

std::string service_describe_text(const ServiceView& s, double now, size_t max_events) {
  std::string out;
  constexpr size_t kWidth = 17;
  auto line = [&out](const char* label, const std::string& value) {
    out += page_line(label, value, kWidth);
  };
  line("Service:", s.name);
  line("ARN:", s.arn);
  line("Cluster:", s.cluster);
  line("Status:", s.status);
  line("Task definition:", s.definition);
  line("Launch type:", s.launch_type);
  line("Tasks:",
       fmt::format("{} desired, {} running, {} pending", s.desired, s.running, s.pending));
  line("Deployment:", fmt::format("max {}%, min healthy {}%, circuit breaker {}", s.maximum_percent,
                                  s.minimum_healthy_percent,
                                  !s.circuit_breaker ? "off"
                                  : s.rollback       ? "on (rollback)"
                                                     : "on"));
  if (s.grace_period_s) line("Grace period:", fmt::format("{} s", *s.grace_period_s));
  out += page_time_line("Created:", s.created_at, now, kWidth);
  if (!s.tags.empty()) {
    std::string tags;
    for (const auto& [k, v] : s.tags)
      tags += fmt::format("{}{}={}", tags.empty() ? "" : ", ", k, v);
    line("Tags:", tags);
  }
  if (s.endpoint) {
    const EndpointView& e = *s.endpoint;
    line("Endpoint:", e.name);
    line("  Address:", fmt::format("{}:{}", e.address, e.container_port));
    line("  Host port:", e.listener_port != 0 ? std::to_string(e.listener_port) : "");
  } else {
    line("Endpoint:", "");
  }
  out += "Load balancers:";
  if (s.load_balancers.empty()) out += " -";
  out += "\n";
  for (const auto& lb : s.load_balancers) out += fmt::format("  {}\n", lb_text(lb));

  out += "Deployments:\n";
  if (!s.deployments.empty()) {
    Table t({"ID", "STATUS", "TASK-DEFINITION", "ROLLOUT", "DESIRED", "RUNNING", "PENDING",
             "FAILED", "UPDATED"});
    for (const auto& d : s.deployments)
      t.add({d.id, d.status, or_dash(d.definition), or_dash(d.rollout_state),
             std::to_string(d.desired), std::to_string(d.running), std::to_string(d.pending),
             std::to_string(d.failed), human_ago(d.updated_at, now)});
    out += indent(t.render(), "  ");
    for (const auto& d : s.deployments)
      if (!d.rollout_state_reason.empty())
        out += fmt::format("  {}: {}\n", d.id, d.rollout_state_reason);
  }
  out += "Events:\n";
  size_t shown = std::min(max_events, s.events.size());
  // Oldest of the shown first, as a log reads.
  for (size_t i = shown; i-- > 0;)
    out += fmt::format("  {}  {}\n", rfc3339(s.events[i].created_at), s.events[i].message);
  if (s.events.empty()) out += "  -\n";
  return out;
}

WaitState steady_state(const ServiceView& s, const std::string& deployment, std::string* why) {
  for (const auto& d : s.deployments) {
    if (d.rollout_state != "FAILED") continue;
    if (!deployment.empty() ? d.id != deployment : d.status != "PRIMARY") continue;
    *why = fmt::format(
        "deployment {} failed: {}", d.id,
        or_dash(d.rollout_state_reason.empty() ? d.rollout_state : d.rollout_state_reason));
    return WaitState::failed;
  }
  if (s.status != "ACTIVE") {
    *why = fmt::format("service {} is {}", s.name, or_dash(s.status));
    return WaitState::failed;
  }
  const DeploymentView* p = primary_deployment(s);
  bool steady = s.deployments.size() == 1 && p != nullptr && p->rollout_state == "COMPLETED" &&
                s.running == s.desired && s.pending == 0;
  return steady ? WaitState::done : WaitState::waiting;
}

std::string progress_line(const ServiceView& s) {
  return fmt::format("{}: {}, {}, rollout {}", s.name, or_dash(s.status),
                     counts_text(s.desired, s.running, s.pending), rollout_text(s));
}

}  // namespace berth::cli
