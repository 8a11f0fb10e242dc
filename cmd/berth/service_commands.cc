#include "cmd/berth/service_commands.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "cmd/berth/answer.h"
#include "cmd/berth/args.h"
#include "cmd/berth/service_view.h"
#include "cmd/berth/table.h"

namespace berth::cli {
namespace {

using json = nlohmann::json;

// DescribeServices takes at most 10 services per call.
constexpr size_t kDescribeBatch = 10;

void add_cluster(json& input, const std::string& cluster) {
  if (!cluster.empty()) input["cluster"] = cluster;
}

Result<json> deployment_configuration(const DeploymentFlags& f, const ServiceView* current) {
  if (f.circuit_breaker && f.no_circuit_breaker)
    return usage_error("--circuit-breaker and --no-circuit-breaker exclude each other");
  if (f.rollback && !f.circuit_breaker) return usage_error("--rollback needs --circuit-breaker");
  // ECS's defaults, or what the service has now.
  int max = current != nullptr ? current->maximum_percent : 200;
  int min = current != nullptr ? current->minimum_healthy_percent : 100;
  bool enable = current != nullptr && current->circuit_breaker;
  bool rollback = current != nullptr && current->rollback;
  if (f.maximum_percent >= 0) max = f.maximum_percent;
  if (f.minimum_healthy_percent >= 0) min = f.minimum_healthy_percent;
  if (f.circuit_breaker) {
    enable = true;
    rollback = f.rollback;
  }
  if (f.no_circuit_breaker) enable = rollback = false;
  return json{{"maximumPercent", max},
              {"minimumHealthyPercent", min},
              {"deploymentCircuitBreaker", {{"enable", enable}, {"rollback", rollback}}}};
}

Result<void> check_definition(const std::string& command, const std::string& ref) {
  if (is_definition_ref(ref)) return {};
  return usage_error(fmt::format(
      "services {}: --task-definition {:?}: expected FAMILY[:REVISION] or a task definition ARN",
      command, ref));
}

Result<void> check_name(const std::string& command, const std::string& name) {
  if (!name.empty()) return {};
  return usage_error(fmt::format("services {}: empty service name", command));
}

std::string cluster_name(const std::string& cluster) {
  return cluster.empty() ? "default" : cluster;
}

// DescribeServices of one service: its object (raw too), or
// ServiceNotFoundException when berthd reports it MISSING.
Result<ServiceView> get_service(Context& ctx, const std::string& cluster, const std::string& name,
                                json* raw = nullptr) {
  json input{{"services", {name}}, {"include", {"TAGS"}}};
  add_cluster(input, cluster);
  BERTH_ASSIGN(json answer, ctx.client.ecs("DescribeServices", input));
  BERTH_ASSIGN(std::vector<ServiceView> services, read_services(answer));
  if (services.empty()) {
    BERTH_ASSIGN(auto failures, read_failures(answer));
    std::string reason = failures.empty() ? "no answer" : failures.front().reason;
    return std::unexpected(Error{"ServiceNotFoundException", 0,
                                 fmt::format("service {:?} not found in cluster {} ({})", name,
                                             cluster_name(cluster), reason)});
  }
  if (raw != nullptr) *raw = std::move(answer["services"][0]);
  return services.front();
}

// Polls DescribeServices until the service is steady (or INACTIVE with
// `until_inactive`), printing a progress line whenever it changes. A
// FAILED rollout of `deployment`, another state than ACTIVE, or the
// timeout is an error. With -o json the final service object is printed.
Result<int> wait_service(Context& ctx, const std::string& cluster, const std::string& name,
                         const std::string& deployment, const ServiceWaitOptions& w,
                         bool until_inactive) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::seconds(w.timeout_s);
  auto delay = std::chrono::milliseconds(std::max(1, w.poll_ms));
  FILE* progress = ctx.json_output ? ctx.err : ctx.out;
  std::string last;
  for (;;) {
    json raw;
    BERTH_ASSIGN(ServiceView s, get_service(ctx, cluster, name, &raw));
    if (std::string line = progress_line(s); line != last) {
      std::fprintf(progress, "%s\n", line.c_str());
      std::fflush(progress);
      last = std::move(line);
    }
    std::string why;
    WaitState state = until_inactive
                          ? (s.status == "INACTIVE" ? WaitState::done : WaitState::waiting)
                          : steady_state(s, deployment, &why);
    if (state == WaitState::failed) return error(fmt::format("service {}", name), "{}", why);
    if (state == WaitState::done) {
      if (ctx.json_output) print_json(ctx, {{"service", std::move(raw)}});
      return kExitOk;
    }
    auto now = Clock::now();
    if (now >= deadline)
      return error(fmt::format("service {}", name), "not {} after {} s (--timeout): {}",
                   until_inactive ? "INACTIVE" : "steady", w.timeout_s, last);
    std::this_thread::sleep_for(
        std::min<Clock::duration>(delay, deadline - now + std::chrono::milliseconds(1)));
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

// The answer of a service operation: the service's name (or the answer
// with -o json); or, with --wait, the wait (watching the rollout of the
// deployment that is PRIMARY in the answer).
Result<int> finish(Context& ctx, const json& answer, const std::string& cluster,
                   const ServiceWaitOptions& w, bool until_inactive) {
  BERTH_ASSIGN(ServiceView s, read_service_answer(answer));
  if (!w.wait) {
    if (ctx.json_output) {
      print_json(ctx, answer);
    } else {
      std::fprintf(ctx.out, "%s\n", s.name.c_str());
    }
    return kExitOk;
  }
  const DeploymentView* primary = primary_deployment(s);
  std::string deployment = primary != nullptr ? primary->id : "";
  return wait_service(ctx, cluster, s.name, deployment, w, until_inactive);
}

Result<void> check_wait(const ServiceWaitOptions& w) {
  if (w.timeout_s <= 0) return usage_error("--timeout must be at least 1 second");
  return {};
}

}  // namespace

bool has_deployment_flags(const DeploymentFlags& d) {
  return d.maximum_percent >= 0 || d.minimum_healthy_percent >= 0 || d.circuit_breaker ||
         d.no_circuit_breaker || d.rollback;
}

Result<json> create_service_input(const ServiceCreateOptions& o) {
  BERTH_TRY(check_name("create", o.name));
  BERTH_TRY(check_definition("create", o.task_definition));
  if (o.desired_count < 0) return usage_error("services create: --desired-count is required");
  json input{{"serviceName", o.name},
             {"taskDefinition", o.task_definition},
             {"desiredCount", o.desired_count}};
  add_cluster(input, o.cluster);
  if (o.container_name.empty() != (o.container_port == 0))
    return usage_error("services create: --container-name and --container-port go together");
  if (o.listener_port != 0 && o.container_name.empty())
    return usage_error(
        "services create: --listener-port needs --container-name and --container-port");
  if (!o.container_name.empty()) {
    json lb{{"containerName", o.container_name}, {"containerPort", o.container_port}};
    if (o.listener_port != 0) lb["berthListenerPort"] = o.listener_port;
    input["loadBalancers"] = json::array({std::move(lb)});
  }
  if (has_deployment_flags(o.deployment)) {
    if (o.deployment.no_circuit_breaker)
      return usage_error("services create: --no-circuit-breaker is for update");
    BERTH_ASSIGN(input["deploymentConfiguration"], deployment_configuration(o.deployment, nullptr));
  }
  if (o.grace_period_s >= 0) input["healthCheckGracePeriodSeconds"] = o.grace_period_s;
  if (!o.tags.empty()) {
    json tags = json::array();
    for (const auto& kv : o.tags) {
      BERTH_ASSIGN(auto tag, parse_assignment("--tag", "KEY=VALUE", kv));
      tags.push_back({{"key", tag.first}, {"value", tag.second}});
    }
    input["tags"] = std::move(tags);
  }
  return input;
}

Result<json> update_service_input(const ServiceUpdateOptions& o, const ServiceView* current) {
  BERTH_TRY(check_name("update", o.name));
  json input{{"service", o.name}};
  add_cluster(input, o.cluster);
  size_t unchanged = input.size();
  if (!o.task_definition.empty()) {
    BERTH_TRY(check_definition("update", o.task_definition));
    input["taskDefinition"] = o.task_definition;
  }
  if (o.desired_count >= 0) input["desiredCount"] = o.desired_count;
  if (o.force_new_deployment) input["forceNewDeployment"] = true;
  if (has_deployment_flags(o.deployment)) {
    BERTH_ASSIGN(input["deploymentConfiguration"], deployment_configuration(o.deployment, current));
  }
  if (o.grace_period_s >= 0) input["healthCheckGracePeriodSeconds"] = o.grace_period_s;
  if (input.size() == unchanged)
    return usage_error(
        "services update: nothing to change (give --task-definition, --desired-count, "
        "--force-new-deployment, a deployment flag or --grace-period)");
  return input;
}

Result<int> cmd_services_create(Context& ctx, const ServiceCreateOptions& o) {
  BERTH_TRY(check_wait(o.wait));
  BERTH_ASSIGN(json input, create_service_input(o));
  BERTH_ASSIGN(json answer, ctx.client.ecs("CreateService", input));
  return finish(ctx, answer, o.cluster, o.wait, false);
}

Result<int> cmd_services_update(Context& ctx, const ServiceUpdateOptions& o) {
  BERTH_TRY(check_wait(o.wait));
  // The deployment flags change the configuration the service has.
  std::optional<ServiceView> current;
  if (has_deployment_flags(o.deployment)) {
    BERTH_TRY(check_name("update", o.name));
    BERTH_ASSIGN(current, get_service(ctx, o.cluster, o.name));
  }
  BERTH_ASSIGN(json input, update_service_input(o, current ? &*current : nullptr));
  BERTH_ASSIGN(json answer, ctx.client.ecs("UpdateService", input));
  return finish(ctx, answer, o.cluster, o.wait, false);
}

Result<int> cmd_services_scale(Context& ctx, const ServiceScaleOptions& o) {
  ServiceUpdateOptions u;
  u.name = o.name;
  u.cluster = o.cluster;
  if (o.desired_count < 0) return usage_error("services scale: the count must be 0 or more");
  u.desired_count = o.desired_count;
  u.wait = o.wait;
  return cmd_services_update(ctx, u);
}

Result<int> cmd_services_ls(Context& ctx, const ServiceListOptions& o) {
  json list{{"maxResults", 100}};
  add_cluster(list, o.cluster);
  BERTH_ASSIGN(std::vector<std::string> arns, list_all(ctx, "ListServices", list, "serviceArns"));
  json services = json::array(), failures = json::array();
  for (size_t at = 0; at < arns.size(); at += kDescribeBatch) {
    size_t end = std::min(arns.size(), at + kDescribeBatch);
    json input{{"services", std::vector<std::string>(arns.begin() + static_cast<long>(at),
                                                     arns.begin() + static_cast<long>(end))}};
    add_cluster(input, o.cluster);
    BERTH_ASSIGN(json answer, ctx.client.ecs("DescribeServices", input));
    BERTH_TRY(read_services(answer));  // checked before it is printed
    for (auto& s : answer["services"]) services.push_back(std::move(s));
    if (auto f = answer.find("failures"); f != answer.end() && f->is_array())
      for (auto& x : *f) failures.push_back(std::move(x));
  }
  json all{{"services", std::move(services)}, {"failures", std::move(failures)}};
  if (ctx.json_output) {
    print_json(ctx, all);
    return kExitOk;
  }
  BERTH_ASSIGN(std::vector<ServiceView> views, read_services(all));
  print_text(ctx, services_table(std::move(views)));
  return kExitOk;
}

Result<int> cmd_services_describe(Context& ctx, const ServiceDescribeOptions& o) {
  BERTH_TRY(check_name("describe", o.name));
  json raw;
  BERTH_ASSIGN(ServiceView s, get_service(ctx, o.cluster, o.name, &raw));
  if (ctx.json_output) {
    print_json(ctx, {{"service", std::move(raw)}});
    return kExitOk;
  }
  print_text(ctx, service_describe_text(s, now_epoch_seconds()));
  return kExitOk;
}

Result<int> cmd_services_rm(Context& ctx, const ServiceRemoveOptions& o) {
  BERTH_TRY(check_wait(o.wait));
  BERTH_TRY(check_name("rm", o.name));
  json input{{"service", o.name}, {"force", o.force}};
  add_cluster(input, o.cluster);
  auto answer = ctx.client.ecs("DeleteService", input);
  if (!answer) {
    Error e = answer.error();
    // ECS's "The service cannot be stopped while it is scaled above 0."
    if (!o.force && e.step == "InvalidParameterException" &&
        e.message.find("scaled above 0") != std::string::npos)
      e.message += fmt::format(
          " (use `berth services rm --force {0}`, or `berth services scale {0} 0` first)", o.name);
    return std::unexpected(std::move(e));
  }
  return finish(ctx, *answer, o.cluster, o.wait, true);
}

}  // namespace berth::cli
