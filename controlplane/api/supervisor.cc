#include "controlplane/api/supervisor.h"

#include <algorithm>
#include <set>

#include "common/log.h"
#include "controlplane/api/sigv4.h"
#include "controlplane/model/arn.h"
#include "controlplane/model/ecs_json.h"

namespace berth::cp {

namespace {

// A lost compare-and-swap is retried this often within one reconcile.
constexpr int kCasAttempts = 20;

bool has_health_check(const TaskDefinition& d) {
  return std::any_of(d.containers.begin(), d.containers.end(), [](const ContainerDefinition& c) {
    return c.essential && c.health_check.has_value();
  });
}

// Healthy as the planner means it (service_plan.h): RUNNING, not being
// stopped, and HEALTHY when it has a health check.
bool healthy(const Task& t, bool checked) {
  if (t.last_status != TaskStatus::running || t.desired_status != TaskStatus::running) return false;
  return !checked || t.health_status == "HEALTHY";
}

// The port the endpoint balances and the listener: the first load
// balancer's, else the PRIMARY definition's first port mapping.
struct EndpointPorts {
  uint16_t container = 0;
  uint16_t listener = 0;
  std::string protocol = "tcp";
};

EndpointPorts endpoint_ports(const Service& s, const TaskDefinition* primary) {
  EndpointPorts p;
  if (!s.load_balancers.empty()) {
    p.container = s.load_balancers.front().container_port;
    p.listener = s.load_balancers.front().listener_port;
    if (primary) {
      for (const auto& c : primary->containers) {
        if (c.name != s.load_balancers.front().container_name) continue;
        for (const auto& m : c.port_mappings) {
          if (m.container_port == p.container) p.protocol = m.protocol;
        }
      }
    }
    return p;
  }
  if (!primary) return p;
  for (const auto& c : primary->containers) {
    if (c.port_mappings.empty()) continue;
    p.container = c.port_mappings.front().container_port;
    p.protocol = c.port_mappings.front().protocol;
    return p;
  }
  return p;
}

}  // namespace

Supervisor::Supervisor(EcsApi& ecs, ServiceApi& services, TaskManager& tasks, Agent& agent,
                       SupervisorOptions opts)
    : ecs_(ecs), services_(services), tasks_(tasks), agent_(agent), opts_(std::move(opts)) {
  if (!opts_.clock) opts_.clock = [this] { return tasks_.now(); };
}

Supervisor::~Supervisor() {
  shutdown();
}

void Supervisor::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  dirty_ = true;
  thread_ = std::jthread([this](std::stop_token st) { loop(st); });
}

void Supervisor::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    thread_.request_stop();
  }
  cv_.notify_all();
  thread_.join();
}

void Supervisor::wake() {
  {
    std::lock_guard lock(mu_);
    dirty_ = true;
  }
  cv_.notify_all();
}

void Supervisor::loop(std::stop_token st) {
  auto next_expiry = std::chrono::steady_clock::now();
  while (!st.stop_requested()) {
    if (std::chrono::steady_clock::now() >= next_expiry) {
      // INACTIVE services stay describable for the retention, then go.
      auto cutoff = epoch_seconds(opts_.clock() - kInactiveServiceRetention);
      if (auto n = ecs_.store().expire_services(cutoff); !n) {
        log::warn("supervisor: expire services: {}", n.error().str());
      }
      next_expiry = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    }
    {
      std::lock_guard lock(mu_);
      dirty_ = false;
    }
    std::optional<TimePoint> wake_at;
    if (auto r = reconcile_all(); !r) {
      log::warn("supervisor: {}", r.error().str());
    } else {
      wake_at = *r;
    }
    // Sleep until woken, the earliest wake_at, or the resync interval.
    auto deadline = std::chrono::steady_clock::now() + opts_.resync;
    if (wake_at) {
      auto until = *wake_at - opts_.clock();
      auto d = std::chrono::steady_clock::now() +
               std::max(std::chrono::duration_cast<std::chrono::milliseconds>(until),
                        std::chrono::milliseconds(10));
      deadline = std::min(deadline, d);
    }
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, st, deadline, [this] { return dirty_; });
  }
}

Result<std::optional<TimePoint>> Supervisor::reconcile_all() {
  BERTH_ASSIGN(auto recs, ecs_.store().live_services());
  std::optional<TimePoint> earliest;
  std::set<std::string> live;
  for (const auto& r : recs) {
    live.insert(r.account + "/" + r.cluster + "/" + r.name);
    auto w = reconcile(r.account, r.cluster, r.name);
    if (!w) {
      log::warn("supervisor: service {} of cluster {} (account {}): {}", r.name, r.cluster,
                r.account, w.error().str());
      continue;
    }
    if (*w && (!earliest || **w < *earliest)) earliest = *w;
  }
  // Gauges of services no longer live go.
  std::lock_guard lock(mu_);
  std::erase_if(gauges_, [&](const auto& kv) {
    const ServiceGauge& g = kv.second;
    return !live.contains(g.account + "/" + g.cluster + "/" + g.name);
  });
  return earliest;
}

Result<std::vector<Task>> Supervisor::service_tasks(const Service& s) {
  TaskQuery q;
  q.account = s.account;
  q.cluster = s.cluster;
  q.group = "service:" + s.name;
  q.limit = 1000;
  std::vector<Task> out;
  for (;;) {
    bool more = false;
    BERTH_ASSIGN(auto recs, ecs_.store().list_tasks(q, &more));
    for (const auto& r : recs) {
      BERTH_ASSIGN(Task t, tasks_.from_record(r));
      out.push_back(std::move(t));
    }
    if (!more || recs.empty()) return out;
    q.after_id = recs.back().id;
  }
}

Result<TaskDefinition> Supervisor::definition(const std::string& account, const std::string& arn) {
  {
    std::lock_guard lock(mu_);
    if (auto it = definitions_.find(arn); it != definitions_.end()) return it->second;
  }
  BERTH_ASSIGN(TaskDefinition d,
               ecs_.definition(account, arn, "Unable to describe task definition."));
  std::lock_guard lock(mu_);
  definitions_[arn] = d;
  return d;
}

std::string Supervisor::endpoint_id(const Service& s, std::string_view region) {
  return "svc-" +
         sigv4::hex_sha256(service_arn(region, s.account, s.cluster, s.name)).substr(0, 16);
}

Result<Service> Supervisor::modify(const Service& s, const std::function<void(Service&)>& change) {
  Service cur = s;
  for (int i = 0; i < kCasAttempts; ++i) {
    change(cur);
    auto w = services_.put(cur);
    if (w) return cur;
    if (w.error().kind != ErrorKind::busy) return std::unexpected(w.error());
    BERTH_ASSIGN(auto fresh, services_.get(s.account, s.cluster, s.name));
    if (!fresh) return kind_error(ErrorKind::not_found, "supervisor", "service {} is gone", s.name);
    cur = std::move(*fresh);
  }
  return kind_error(ErrorKind::busy, "supervisor", "service {}: too many concurrent writes",
                    s.name);
}

void Supervisor::publish_events(const Service& before, const Service& after) {
  std::set<std::string> known;
  for (const auto& e : before.events) known.insert(e.id);
  // Oldest first, as they happened.
  for (auto it = after.events.rbegin(); it != after.events.rend(); ++it) {
    if (known.contains(it->id)) continue;
    nlohmann::json ev = {
        {"serviceArn", service_arn(tasks_.region(), after.account, after.cluster, after.name)},
        {"serviceName", after.name},
        {"clusterArn", cluster_arn(tasks_.region(), after.account, after.cluster)},
        {"id", it->id},
        {"createdAt", epoch_seconds(it->created_at)},
        {"message", it->message}};
    tasks_.events().publish({after.account, Task{}, std::move(ev)});
  }
}

Result<void> Supervisor::update_endpoint(Service& s, const std::vector<Task>& tasks,
                                         const std::vector<StopOrder>& stopping) {
  const std::string id = endpoint_id(s, tasks_.region());
  if (s.status == "INACTIVE") {
    {
      std::lock_guard lock(mu_);
      endpoints_.erase(id);
    }
    if (s.vip.empty()) return {};
    return agent_.remove_service_endpoint(id);
  }
  const TaskDefinition* primary = nullptr;
  std::optional<TaskDefinition> primary_def;
  if (auto d = definition(s.account, s.task_definition)) {
    primary_def = std::move(*d);
    primary = &*primary_def;
  }
  EndpointPorts ports = endpoint_ports(s, primary);
  if (ports.container == 0) return {};
  std::set<std::string> leaving;
  for (const auto& o : stopping) leaving.insert(o.task_id);
  ServiceEndpoint ep;
  ep.id = id;
  ep.account = s.account;
  ep.name = service_dns_name(s);
  ep.vip = s.vip;
  ep.container_port = ports.container;
  ep.listener_port = ports.listener;
  ep.protocol = ports.protocol;
  for (const auto& t : tasks) {
    if (leaving.contains(t.id) || t.private_ipv4.empty()) continue;
    auto d = definition(t.account, t.task_definition_arn);
    if (!d || !healthy(t, has_health_check(*d))) continue;
    ep.backends.push_back({t.private_ipv4, ports.container});
  }
  std::sort(ep.backends.begin(), ep.backends.end(),
            [](const auto& a, const auto& b) { return a.ip < b.ip; });
  {
    std::lock_guard lock(mu_);
    if (auto it = endpoints_.find(id); it != endpoints_.end() && it->second == ep) return {};
  }
  BERTH_ASSIGN(std::string vip, agent_.set_service_endpoint(ep));
  ep.vip = vip;
  {
    std::lock_guard lock(mu_);
    endpoints_[id] = ep;
  }
  if (s.vip != vip || s.endpoint_port != ports.container) {
    BERTH_ASSIGN(s, modify(s, [&](Service& x) {
                   x.vip = vip;
                   x.endpoint_port = ports.container;
                 }));
  }
  return {};
}

Result<std::optional<TimePoint>> Supervisor::reconcile(const std::string& account,
                                                       const std::string& cluster,
                                                       const std::string& name) {
  std::lock_guard pass(pass_mu_);
  for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
    BERTH_ASSIGN(auto found, services_.get(account, cluster, name));
    if (!found) return std::optional<TimePoint>{};
    Service s = std::move(*found);
    BERTH_ASSIGN(std::vector<Task> tasks, service_tasks(s));
    std::vector<PlanTask> input;
    for (const auto& t : tasks) {
      PlanTask p;
      p.id = t.id;
      p.deployment_id = t.started_by;
      p.last_status = t.last_status;
      p.desired_status = t.desired_status;
      p.health_status = t.health_status;
      if (auto d = definition(t.account, t.task_definition_arn))
        p.has_health_check = has_health_check(*d);
      p.started_at = t.started_at;
      p.stopped_at = t.stopped_at;
      p.stop_code = t.stop_code;
      p.stopped_reason = t.stopped_reason;
      input.push_back(std::move(p));
    }
    const TimePoint now = opts_.clock();
    ServicePlan plan = plan_service(s, input, now, opts_.plan);
    Service next = std::move(plan.service);
    if (plan.changed) {
      auto w = services_.put(next);
      if (!w && w.error().kind == ErrorKind::busy) continue;  // written meanwhile: plan again
      if (!w) return std::unexpected(w.error());
    }
    publish_events(s, next);
    {
      std::lock_guard lock(mu_);
      gauges_[endpoint_id(next, tasks_.region())] = {next.account,       next.cluster,
                                                     next.name,          next.desired_count,
                                                     next.running_count, next.pending_count};
    }
    // Drain first: the tasks about to be stopped leave the balancer.
    // Retried every pass; logged once per distinct error.
    auto e = update_endpoint(next, tasks, plan.stop);
    std::string problem = e ? "" : e.error().str();
    {
      std::lock_guard lock(mu_);
      std::string& last = endpoint_errors_[endpoint_id(next, tasks_.region())];
      if (!problem.empty() && problem != last) {
        log::warn("supervisor: endpoint of service {}: {}", next.name, problem);
      }
      last = problem;
    }
    for (const auto& o : plan.stop) {
      auto r = tasks_.stop_task(account, cluster, o.task_id, o.reason, kServiceSchedulerInitiated);
      if (!r)
        log::warn("supervisor: stop task {} of service {}: {}", o.task_id, name, r.error().str());
    }
    std::optional<TimePoint> wake_at = plan.wake_at;
    for (const auto& l : plan.launch) {
      Service before = next;
      std::vector<std::string> ids;
      std::string unplaced;
      auto def = definition(account, l.task_definition);
      if (!def) {
        unplaced = def.error().message;
      } else {
        RunTaskRequest req;
        req.count = l.count;
        req.started_by = l.deployment_id;
        req.group = "service:" + name;
        req.launch_type = next.launch_type;
        req.tags = next.tags;
        auto run = tasks_.run_task(account, cluster, *def, req);
        if (!run) {
          unplaced = run.error().message;
        } else {
          for (const auto& t : run->tasks) ids.push_back(t.id);
          if (!run->failures.empty()) unplaced = run->failures.front().reason;
        }
      }
      BERTH_ASSIGN(next, modify(next, [&](Service& x) {
                     if (!ids.empty()) record_started(x, l.deployment_id, ids, now, opts_.plan);
                     if (!unplaced.empty()) {
                       record_unplaced(x, l.deployment_id, unplaced, now, opts_.plan);
                     }
                   }));
      publish_events(before, next);
      if (!unplaced.empty()) {
        // Plan again once the backoff has passed.
        if (const Deployment* d = next.deployment(l.deployment_id);
            d && (!wake_at || d->next_launch_at < *wake_at)) {
          wake_at = d->next_launch_at;
        }
      }
    }
    return wake_at;
  }
  return kind_error(ErrorKind::busy, "supervisor", "service {}: too many concurrent writes", name);
}

std::vector<ServiceGauge> Supervisor::gauges() const {
  std::lock_guard lock(mu_);
  std::vector<ServiceGauge> out;
  for (const auto& [id, g] : gauges_) out.push_back(g);
  std::sort(out.begin(), out.end(), [](const ServiceGauge& a, const ServiceGauge& b) {
    return std::tie(a.account, a.cluster, a.name) < std::tie(b.account, b.cluster, b.name);
  });
  return out;
}

}  // namespace berth::cp
