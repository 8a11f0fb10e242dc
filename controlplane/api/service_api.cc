#include "controlplane/api/service_api.h"

#include <algorithm>
#include <array>

#include "common/json.h"
#include "controlplane/model/arn.h"
#include "controlplane/model/errors.h"
#include "controlplane/scheduler/json_text.h"

namespace berth::cp {

namespace {

using json = nlohmann::json;

constexpr std::array kOperations = {"CreateService", "UpdateService", "DeleteService",
                                    "DescribeServices", "ListServices"};

// A lost compare-and-swap is re-read and re-applied this often before the
// request gives up (the supervisor writes a service at most a few times a
// second).
constexpr int kCasAttempts = 20;

ServiceRecord to_record(const Service& s, std::string_view region) {
  return ServiceRecord{s.account,
                       s.cluster,
                       s.name,
                       s.status,
                       s.version,
                       is_set(s.deleted_at) ? epoch_seconds(s.deleted_at) : 0,
                       dump_json(service_json(s, region, true))};
}

Result<Service> from_record(const ServiceRecord& r) {
  BERTH_ASSIGN(auto j, parse_json(r.doc, "stored service"));
  BERTH_ASSIGN(Service s, service_from_json(j, r.account));
  s.version = r.version;
  return s;
}

}  // namespace

Result<Service> ServiceApi::decode(const ServiceRecord& r) {
  return from_record(r);
}

namespace {

// Every load balancer names a container of `d` and one of its ports.
Result<void> check_load_balancers(const std::vector<ServiceLoadBalancer>& lbs,
                                  const TaskDefinition& d) {
  if (lbs.size() > 1) {
    return ecs_error(kInvalidParameter,
                     "loadBalancers: berth balances one load balancer per service, got {}",
                     lbs.size());
  }
  for (const auto& lb : lbs) {
    auto c =
        std::find_if(d.containers.begin(), d.containers.end(),
                     [&](const ContainerDefinition& c) { return c.name == lb.container_name; });
    if (c == d.containers.end()) {
      return ecs_error(kInvalidParameter, "The container {} does not exist in the task definition.",
                       lb.container_name);
    }
    bool has_port =
        std::any_of(c->port_mappings.begin(), c->port_mappings.end(),
                    [&](const PortMappingDef& p) { return p.container_port == lb.container_port; });
    if (!has_port) {
      return ecs_error(kInvalidParameter,
                       "The container {} did not have a container port {} defined.",
                       lb.container_name, lb.container_port);
    }
  }
  return {};
}

}  // namespace

bool ServiceApi::known_operation(std::string_view op) {
  return std::find(kOperations.begin(), kOperations.end(), op) != kOperations.end();
}

Result<json> ServiceApi::call(const std::string& account, std::string_view op,
                              const std::string& body) {
  json b = json::object();
  if (!body.empty()) {
    b = json::parse(body, nullptr, false);
    if (b.is_discarded() || !b.is_object()) {
      return ecs_error(kInvalidParameter, "request: the body is not a JSON object");
    }
  }
  if (op == "CreateService") return create_service(account, b);
  if (op == "UpdateService") return update_service(account, b);
  if (op == "DeleteService") return delete_service(account, b);
  if (op == "DescribeServices") return describe_services(account, b);
  if (op == "ListServices") return list_services(account, b);
  return ecs_error(kInvalidParameter, "unknown operation {}", op);
}

Result<std::optional<Service>> ServiceApi::get(const std::string& account,
                                               const std::string& cluster,
                                               const std::string& name) {
  BERTH_ASSIGN(auto rec, ecs_.store().get_service(account, cluster, name));
  if (!rec) return std::optional<Service>{};
  BERTH_ASSIGN(Service s, from_record(*rec));
  return std::optional<Service>(std::move(s));
}

Result<void> ServiceApi::put(Service& s) {
  int64_t expected = s.version;
  s.version = expected + 1;
  auto r = ecs_.store().put_service(to_record(s, ecs_.region()), expected);
  if (!r) {
    s.version = expected;
    return r;
  }
  if (on_put) on_put();
  return r;
}

Result<Service> ServiceApi::find(const std::string& account, const Cluster& cluster,
                                 const std::string& ref) {
  auto parsed = parse_service_ref(ref, account);
  if (!parsed || (!parsed->cluster.empty() && parsed->cluster != cluster.name)) {
    return ecs_error(kServiceNotFound, "Service not found.");
  }
  BERTH_ASSIGN(auto s, get(account, cluster.name, parsed->name));
  if (!s) return ecs_error(kServiceNotFound, "Service not found.");
  return std::move(*s);
}

Result<Service> ServiceApi::modify(const std::string& account, const Cluster& cluster,
                                   const std::string& ref,
                                   const std::function<Result<void>(Service&)>& change) {
  for (int attempt = 0;; ++attempt) {
    BERTH_ASSIGN(Service s, find(account, cluster, ref));
    BERTH_TRY(change(s));
    auto r = put(s);
    if (r) return s;
    if (r.error().kind != ErrorKind::busy || attempt + 1 >= kCasAttempts) {
      return std::unexpected(r.error());
    }
  }
}

Result<void> ServiceApi::check_listener_free(uint16_t port) {
  if (port == 0) return {};
  BERTH_ASSIGN(auto live, ecs_.store().live_services());
  for (const auto& rec : live) {
    BERTH_ASSIGN(Service other, from_record(rec));
    for (const auto& lb : other.load_balancers) {
      // Another account's service is not named: only that the port is taken.
      if (lb.listener_port == port) {
        return ecs_error(kInvalidParameter,
                         "loadBalancers: listener port {} is in use by another service", port);
      }
    }
  }
  return {};
}

Result<json> ServiceApi::create_service(const std::string& a, const json& b) {
  BERTH_ASSIGN(CreateServiceRequest r, parse_create_service(b));
  BERTH_ASSIGN(Cluster c, ecs_.cluster(a, r.cluster, true));
  BERTH_ASSIGN(TaskDefinition d,
               ecs_.definition(a, r.task_definition, "TaskDefinition not found."));
  if (d.status != "ACTIVE") return ecs_error(kClientException, "TaskDefinition is inactive");
  BERTH_TRY(check_load_balancers(r.load_balancers, d));
  // The listener port is checked free and the service stored under one
  // lock: two creates never take the same port.
  std::lock_guard create_lock(create_mu_);
  for (const auto& lb : r.load_balancers) BERTH_TRY(check_listener_free(lb.listener_port));
  TimePoint now = tasks_.now();
  Service s;
  s.account = a;
  s.cluster = c.name;
  s.name = r.service_name;
  s.desired_count = r.desired_count;
  s.launch_type = r.launch_type;
  s.platform_version = r.platform_version;
  s.deployment_configuration = r.deployment_configuration;
  s.load_balancers = r.load_balancers;
  s.health_check_grace_period_s = r.health_check_grace_period_s;
  s.network_configuration = r.network_configuration;
  s.tags = r.tags;
  s.created_at = now;
  s.version = 0;
  s.start_deployment(new_deployment_id(),
                     task_definition_arn(ecs_.region(), a, d.family, d.revision), now);
  auto put_result = put(s);
  if (!put_result) {
    if (put_result.error().kind == ErrorKind::exists) {
      return ecs_error(kInvalidParameter, "Creation of service was not idempotent.");
    }
    return std::unexpected(put_result.error());
  }
  return json{{"service", service_json(s, ecs_.region())}};
}

Result<json> ServiceApi::update_service(const std::string& a, const json& b) {
  BERTH_ASSIGN(UpdateServiceRequest r, parse_update_service(b));
  BERTH_ASSIGN(Cluster c, ecs_.cluster(a, r.cluster, false));
  std::optional<std::string> new_definition;
  if (r.task_definition) {
    BERTH_ASSIGN(TaskDefinition d,
                 ecs_.definition(a, *r.task_definition, "TaskDefinition not found."));
    if (d.status != "ACTIVE") return ecs_error(kClientException, "TaskDefinition is inactive");
    new_definition = task_definition_arn(ecs_.region(), a, d.family, d.revision);
  }
  TimePoint now = tasks_.now();
  BERTH_ASSIGN(Service s, modify(a, c, r.service, [&](Service& s) -> Result<void> {
                 if (s.status != "ACTIVE") {
                   return ecs_error(kServiceNotActive, "Service was not ACTIVE.");
                 }
                 if (r.desired_count) s.desired_count = *r.desired_count;
                 if (r.deployment_configuration) {
                   s.deployment_configuration = *r.deployment_configuration;
                 }
                 if (r.health_check_grace_period_s) {
                   s.health_check_grace_period_s = r.health_check_grace_period_s;
                 }
                 std::string td = new_definition.value_or(s.task_definition);
                 if (td != s.task_definition || r.force_new_deployment) {
                   s.start_deployment(new_deployment_id(), td, now);
                 } else if (Deployment* p = s.primary()) {
                   p->desired_count = s.desired_count;
                 }
                 if (r.desired_count) s.steady = false;
                 return {};
               }));
  return json{{"service", service_json(s, ecs_.region())}};
}

Result<json> ServiceApi::delete_service(const std::string& a, const json& b) {
  BERTH_ASSIGN(DeleteServiceRequest r, parse_delete_service(b));
  BERTH_ASSIGN(Cluster c, ecs_.cluster(a, r.cluster, false));
  BERTH_ASSIGN(Service s, modify(a, c, r.service, [&](Service& s) -> Result<void> {
                 if (s.status == "INACTIVE") {
                   return ecs_error(kServiceNotActive, "Service was not ACTIVE.");
                 }
                 if (s.status == "DRAINING") return {};
                 if (!r.force && s.desired_count > 0) {
                   return ecs_error(kInvalidParameter,
                                    "The service cannot be stopped while it is scaled above 0.");
                 }
                 s.status = "DRAINING";
                 s.desired_count = 0;
                 s.steady = false;
                 if (Deployment* p = s.primary()) p->desired_count = 0;
                 return {};
               }));
  return json{{"service", service_json(s, ecs_.region())}};
}

Result<json> ServiceApi::describe_services(const std::string& a, const json& b) {
  BERTH_ASSIGN(DescribeServicesRequest r, parse_describe_services(b));
  BERTH_ASSIGN(Cluster c, ecs_.cluster(a, r.cluster, false));
  json services = json::array(), failures = json::array();
  for (const auto& ref : r.services) {
    auto s = find(a, c, ref);
    if (!s) {
      if (s.error().step != kServiceNotFound) return std::unexpected(s.error());
      std::string arn = ref.starts_with("arn:") ? ref : service_arn(ecs_.region(), a, c.name, ref);
      failures.push_back({{"arn", arn}, {"reason", "MISSING"}});
      continue;
    }
    json out = service_json(*s, ecs_.region());
    if (!r.include_tags) out.erase("tags");
    services.push_back(std::move(out));
  }
  return json{{"services", services}, {"failures", failures}};
}

Result<json> ServiceApi::list_services(const std::string& a, const json& b) {
  BERTH_ASSIGN(ListServicesRequest r, parse_list_services(b));
  BERTH_ASSIGN(Cluster c, ecs_.cluster(a, r.cluster, false));
  ServiceQuery q;
  q.account = a;
  q.cluster = c.name;
  q.limit = r.max_results;
  if (!r.next_token.empty()) {
    auto after = decode_token(r.next_token);
    if (!after || after->empty()) return ecs_error(kInvalidParameter, "Invalid nextToken.");
    q.after_cluster = c.name;
    q.after_name = *after;
  }
  json arns = json::array();
  json out = json::object();
  // Every service is REPLICA and of a Fargate launch type: the filters
  // select all of them or none.
  bool none =
      r.scheduling_strategy == "DAEMON" || r.launch_type == "EC2" || r.launch_type == "EXTERNAL";
  if (!none) {
    bool more = false;
    BERTH_ASSIGN(auto rows, ecs_.store().list_services(q, &more));
    for (const auto& row : rows) {
      if (!r.launch_type.empty()) {
        BERTH_ASSIGN(Service s, from_record(row));
        if (s.launch_type != r.launch_type) continue;
      }
      arns.push_back(service_arn(ecs_.region(), a, row.cluster, row.name));
    }
    if (more && !rows.empty()) out["nextToken"] = encode_token(rows.back().name);
  }
  out["serviceArns"] = std::move(arns);
  return out;
}

}  // namespace berth::cp
