#include "controlplane/scheduler/service_plan.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "controlplane/model/arn.h"

namespace berth::cp {

namespace {

bool is_live(const PlanTask& t) {
  return t.last_status != TaskStatus::stopped;
}

bool is_pending(const PlanTask& t) {
  return t.last_status == TaskStatus::provisioning || t.last_status == TaskStatus::pending ||
         t.last_status == TaskStatus::activating;
}

bool is_running(const PlanTask& t) {
  return t.last_status == TaskStatus::running;
}

// Wanted running: alive and nobody asked it to stop.
bool is_active(const PlanTask& t) {
  return is_live(t) && t.desired_status == TaskStatus::running;
}

bool is_healthy(const PlanTask& t) {
  return is_active(t) && is_running(t) && (!t.has_health_check || t.health_status == "HEALTHY");
}

bool counts_as_failure(const PlanTask& t) {
  return t.stop_code != kServiceSchedulerInitiated && t.stop_code != "UserInitiated";
}

// Not STOPPED yet, but on its way there for a reason of its own (nobody
// asked it to stop: its stop code is a failure's).
bool stopping_on_its_own(const PlanTask& t) {
  return is_live(t) && t.desired_status != TaskStatus::running && !t.stop_code.empty() &&
         counts_as_failure(t);
}

std::string task_list(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) {
    if (!out.empty()) out += ' ';
    out += fmt::format("(task {})", id);
  }
  return out;
}

int ceil_percent(int n, int percent) {
  return (n * percent + 99) / 100;
}

class Planner {
 public:
  Planner(const Service& s, const std::vector<PlanTask>& tasks, TimePoint now, const PlanOptions& o)
      : now_(now), o_(o) {
    plan_.service = s;
    for (const auto& t : tasks) by_id_[t.id] = &t;
    for (const auto& t : tasks) by_deployment_[t.deployment_id].push_back(&t);
  }

  ServicePlan run(const Service& input) {
    Service& sv = plan_.service;
    account_tracked();
    stop_orphans();
    stop_unhealthy();
    trip_breaker();
    int desired = sv.status == "ACTIVE" ? sv.desired_count : 0;
    Deployment* p = sv.primary();
    if (p != nullptr) p->desired_count = desired;
    bool stalled = p != nullptr && p->rollout_state == "FAILED";
    if (p != nullptr) {
      scale_in(*p, desired);
      if (!stalled && sv.status == "ACTIVE") launch(*p, desired);
    }
    if (!stalled) drain_older(desired);
    count();
    finish_rollout(desired);
    finish_draining();
    stop_event();
    steady_state(desired);
    for (auto& d : sv.deployments) {
      const Deployment* before = find(input, d.id);
      if (before == nullptr || !(*before == d)) d.updated_at = now_;
    }
    plan_.changed = !(sv == input);
    return std::move(plan_);
  }

 private:
  static const Deployment* find(const Service& s, const std::string& id) {
    for (const auto& d : s.deployments)
      if (d.id == id) return &d;
    return nullptr;
  }

  void event(std::string message) {
    plan_.service.add_event({o_.new_id ? o_.new_id() : new_uuid(), now_, std::move(message)});
  }

  void wake(TimePoint t) {
    if (!plan_.wake_at || t < *plan_.wake_at) plan_.wake_at = t;
  }

  bool stopping(const std::string& id) const { return stopped_ids_.count(id) != 0; }

  // Active and not ordered to stop by this plan.
  std::vector<const PlanTask*> active_of(const std::string& deployment_id) const {
    std::vector<const PlanTask*> out;
    auto it = by_deployment_.find(deployment_id);
    if (it == by_deployment_.end()) return out;
    for (const auto* t : it->second) {
      if (is_active(*t) && !stopping(t->id)) out.push_back(t);
    }
    return out;
  }

  void order_stop(const PlanTask& t, std::string reason) {
    if (!stopped_ids_.insert(t.id).second) return;
    plan_.stop.push_back({t.id, t.deployment_id, std::move(reason)});
  }

  void fail(Deployment& d) {
    d.failed_tasks++;
    d.consecutive_failures++;
    d.next_launch_at = now_ + backoff_delay(d.consecutive_failures, o_);
    if (d.consecutive_failures == 2) {
      event(
          fmt::format("(service {}) is unable to consistently start tasks successfully. For "
                      "more information, see the Troubleshooting section of the Amazon ECS "
                      "Developer Guide.",
                      plan_.service.name));
    }
  }

  // Remembered tasks found STOPPED are accounted once; live ones of the
  // deployment not remembered yet are adopted.
  void account_tracked() {
    for (auto& d : plan_.service.deployments) {
      std::vector<std::string> kept;
      for (const auto& id : d.tasks) {
        auto it = by_id_.find(id);
        if (it == by_id_.end()) continue;  // expired: forgotten
        const PlanTask& t = *it->second;
        if (stopping_on_its_own(t)) {
          // Its essential container exited (or it was OOM-killed): a failure
          // now, so that its replacement waits the backoff rather than being
          // launched while it is still being torn down; forgotten, so that
          // its STOPPED is not accounted again.
          fail(d);
        } else if (is_live(t)) {
          kept.push_back(id);
        } else if (counts_as_failure(t)) {
          fail(d);
        }
      }
      for (const auto* t : by_deployment_[d.id]) {
        if (is_active(*t) && std::find(kept.begin(), kept.end(), t->id) == kept.end()) {
          kept.push_back(t->id);
        }
      }
      d.tasks = std::move(kept);
    }
  }

  // Live tasks of no current deployment.
  void stop_orphans() {
    const Deployment* p = plan_.service.primary();
    for (const auto& [dep, list] : by_deployment_) {
      if (plan_.service.deployment(dep) != nullptr) continue;
      for (const auto* t : list) {
        if (is_active(*t)) order_stop(*t, scaling_reason(p ? p->id : dep));
      }
    }
  }

  void stop_unhealthy() {
    auto grace = std::chrono::seconds(plan_.service.health_check_grace_period_s.value_or(0));
    for (auto& d : plan_.service.deployments) {
      for (const auto* t : active_of(d.id)) {
        if (!is_running(*t) || !t->has_health_check || t->health_status != "UNHEALTHY") continue;
        TimePoint until = t->started_at + grace;
        if (now_ < until) {
          wake(until);
          continue;
        }
        event(fmt::format("(service {}) (task {}) failed container health checks.",
                          plan_.service.name, t->id));
        order_stop(*t, std::string(kHealthCheckStopReason));
        fail(d);
      }
    }
  }

  void trip_breaker() {
    Service& sv = plan_.service;
    const auto& cb = sv.deployment_configuration.circuit_breaker;
    Deployment* p = sv.primary();
    if (!cb.enable || p == nullptr || p->rollout_state != "IN_PROGRESS") return;
    if (p->failed_tasks < breaker_threshold(sv.desired_count)) return;
    p->rollout_state = "FAILED";
    p->rollout_state_reason = "ECS deployment circuit breaker: tasks failed to start.";
    event(fmt::format("(service {}) (deployment {}) deployment failed: tasks failed to start.",
                      sv.name, p->id));
    if (!cb.rollback) return;
    Deployment* target = nullptr;
    for (auto& d : sv.deployments) {
      if (&d == p || d.rollout_state != "COMPLETED") continue;
      if (target == nullptr || d.created_at > target->created_at) target = &d;
    }
    if (target == nullptr) return;
    p->status = "ACTIVE";
    p->desired_count = 0;
    target->status = "PRIMARY";
    target->rollout_state = "IN_PROGRESS";
    target->rollout_state_reason =
        fmt::format("ECS deployment circuit breaker: rolling back to deploymentId {}.", target->id);
    target->consecutive_failures = 0;
    target->next_launch_at = {};
    sv.task_definition = target->task_definition;
    // The PRIMARY deployment comes first in the list.
    std::stable_partition(sv.deployments.begin(), sv.deployments.end(),
                          [](const Deployment& d) { return d.status == "PRIMARY"; });
    event(fmt::format("(service {}) rolling back to deployment {}.", sv.name, sv.primary()->id));
  }

  // Surplus tasks of the PRIMARY: pending first, then not healthy, then
  // the newest.
  void scale_in(Deployment& p, int desired) {
    auto active = active_of(p.id);
    int surplus = static_cast<int>(active.size()) - desired;
    if (surplus <= 0) return;
    // Among equals, the later started (then the later listed) go first.
    std::reverse(active.begin(), active.end());
    std::stable_sort(active.begin(), active.end(), [](const PlanTask* a, const PlanTask* b) {
      auto rank = [](const PlanTask* t) { return is_pending(*t) ? 0 : is_healthy(*t) ? 2 : 1; };
      if (rank(a) != rank(b)) return rank(a) < rank(b);
      return a->started_at > b->started_at;
    });
    for (int i = 0; i < surplus; ++i)
      order_stop(*active[static_cast<size_t>(i)], scaling_reason(p.id));
  }

  int live_total() const {
    int n = 0;
    for (const auto& [id, t] : by_id_) {
      if (is_live(*t)) ++n;
    }
    return n;
  }

  void launch(Deployment& p, int desired) {
    int need = desired - static_cast<int>(active_of(p.id).size());
    if (need <= 0) return;
    int max_tasks = desired * plan_.service.deployment_configuration.maximum_percent / 100;
    int n = std::min(need, max_tasks - live_total());
    if (n <= 0) return;
    if (now_ < p.next_launch_at) {
      wake(p.next_launch_at);
      return;
    }
    plan_.launch.push_back({p.id, p.task_definition, n});
  }

  int healthy_total() const {
    int n = 0;
    for (const auto& [id, t] : by_id_) {
      if (is_healthy(*t) && !stopping(id) && find(plan_.service, t->deployment_id)) ++n;
    }
    return n;
  }

  // Older deployments' tasks: not healthy ones at once, healthy ones
  // (oldest first) while the minimum stays healthy.
  void drain_older(int desired) {
    Service& sv = plan_.service;
    const Deployment* p = sv.primary();
    std::string by = p ? p->id : (sv.deployments.empty() ? "" : sv.deployments.front().id);
    int min_healthy = ceil_percent(desired, sv.deployment_configuration.minimum_healthy_percent);
    std::vector<const PlanTask*> healthy;
    for (const auto& d : sv.deployments) {
      if (&d == p) continue;
      for (const auto* t : active_of(d.id)) {
        if (is_healthy(*t)) {
          healthy.push_back(t);
        } else {
          order_stop(*t, scaling_reason(by));
        }
      }
    }
    std::stable_sort(healthy.begin(), healthy.end(), [](const PlanTask* a, const PlanTask* b) {
      return a->started_at < b->started_at;
    });
    int total = healthy_total();
    for (const auto* t : healthy) {
      if (total - 1 < min_healthy) break;
      order_stop(*t, scaling_reason(by));
      --total;
    }
  }

  void count() {
    Service& sv = plan_.service;
    sv.running_count = 0;
    sv.pending_count = 0;
    for (auto& d : sv.deployments) {
      d.running_count = 0;
      d.pending_count = 0;
      for (const auto* t : by_deployment_[d.id]) {
        if (is_running(*t)) d.running_count++;
        if (is_pending(*t)) d.pending_count++;
      }
      if (d.status != "PRIMARY") d.desired_count = static_cast<int>(active_of(d.id).size());
      sv.running_count += d.running_count;
      sv.pending_count += d.pending_count;
    }
  }

  // A task of the service still on its way down (stopped, not STOPPED yet).
  bool draining() {
    for (const auto& [id, list] : by_deployment_) {
      for (const auto* t : list) {
        if (is_live(*t) && t->desired_status != TaskStatus::running) return true;
      }
    }
    return false;
  }

  bool has_live(const std::string& deployment_id) {
    for (const auto* t : by_deployment_[deployment_id]) {
      if (is_live(*t)) return true;
    }
    return false;
  }

  void finish_rollout(int desired) {
    Service& sv = plan_.service;
    Deployment* p = sv.primary();
    if (p == nullptr) return;
    auto active = active_of(p->id);
    // Full: every desired task healthy for at least stable_after (a task
    // that dies right after it started must not reset the failure streak
    // nor complete the rollout); the plan wakes when the last one will be.
    int settled = 0;
    for (const PlanTask* t : active) {
      if (!is_healthy(*t)) continue;
      if (t->started_at + o_.stable_after <= now_) {
        ++settled;
      } else {
        wake(t->started_at + o_.stable_after);
      }
    }
    bool full = settled == desired && static_cast<int>(active.size()) == desired;
    if (full) p->consecutive_failures = 0;
    bool older_left = false;
    for (const auto& d : sv.deployments) {
      if (&d != p && has_live(d.id)) older_left = true;
    }
    if (p->rollout_state == "IN_PROGRESS" && full && !older_left && sv.status == "ACTIVE") {
      p->rollout_state = "COMPLETED";
      p->rollout_state_reason = fmt::format("ECS deployment {} completed.", p->id);
      event(fmt::format("(service {}) (deployment {}) deployment completed.", sv.name, p->id));
    }
    if (p->rollout_state == "IN_PROGRESS") return;
    std::erase_if(sv.deployments,
                  [&](const Deployment& d) { return d.status != "PRIMARY" && !has_live(d.id); });
  }

  void finish_draining() {
    Service& sv = plan_.service;
    if (sv.status != "DRAINING" || live_total() != 0) return;
    sv.status = "INACTIVE";
    sv.deleted_at = now_;
  }

  void stop_event() {
    if (plan_.stop.empty()) return;
    std::vector<std::string> ids;
    for (const auto& s : plan_.stop) ids.push_back(s.task_id);
    event(stopped_message(plan_.service.name, ids));
  }

  void steady_state(int desired) {
    Service& sv = plan_.service;
    const Deployment* p = sv.primary();
    bool steady = sv.status == "ACTIVE" && p != nullptr && sv.deployments.size() == 1 &&
                  p->rollout_state == "COMPLETED" && sv.running_count == desired &&
                  sv.pending_count == 0 && plan_.launch.empty() && plan_.stop.empty() &&
                  !draining();
    if (steady && !sv.steady) event(steady_state_message(sv.name));
    sv.steady = steady;
  }

  TimePoint now_;
  const PlanOptions& o_;
  ServicePlan plan_;
  std::map<std::string, const PlanTask*> by_id_;
  std::map<std::string, std::vector<const PlanTask*>> by_deployment_;
  std::set<std::string> stopped_ids_;
};

}  // namespace

std::chrono::seconds backoff_delay(int consecutive_failures, const PlanOptions& o) {
  if (consecutive_failures < 2) return std::chrono::seconds(0);
  std::chrono::seconds d = o.backoff_base;
  for (int i = 2; i < consecutive_failures && d < o.backoff_cap; ++i) d *= 2;
  return std::min(d, o.backoff_cap);
}

int breaker_threshold(int desired_count) {
  return std::max(3, std::min(200, (desired_count + 1) / 2));
}

ServicePlan plan_service(const Service& s, const std::vector<PlanTask>& tasks, TimePoint now,
                         const PlanOptions& o) {
  return Planner(s, tasks, now, o).run(s);
}

void record_started(Service& s, std::string_view deployment_id,
                    const std::vector<std::string>& task_ids, TimePoint now, const PlanOptions& o) {
  if (task_ids.empty()) return;
  if (Deployment* d = s.deployment(deployment_id)) {
    for (const auto& id : task_ids) {
      if (std::find(d->tasks.begin(), d->tasks.end(), id) == d->tasks.end()) d->tasks.push_back(id);
    }
    d->updated_at = now;
  }
  s.steady = false;
  s.add_event({o.new_id ? o.new_id() : new_uuid(), now, started_message(s.name, task_ids)});
}

void record_unplaced(Service& s, std::string_view deployment_id, std::string_view reason,
                     TimePoint now, const PlanOptions& o) {
  if (Deployment* d = s.deployment(deployment_id)) {
    d->next_launch_at = now + backoff_delay(2, o);
    d->updated_at = now;
  }
  s.steady = false;
  std::string message =
      fmt::format("(service {}) was unable to place a task. Reason: {}.", s.name, reason);
  if (!s.events.empty() && s.events.front().message == message) return;
  s.add_event({o.new_id ? o.new_id() : new_uuid(), now, std::move(message)});
}

std::string steady_state_message(std::string_view service) {
  return fmt::format("(service {}) has reached a steady state.", service);
}

std::string started_message(std::string_view service, const std::vector<std::string>& task_ids) {
  return fmt::format("(service {}) has started {} tasks: {}.", service, task_ids.size(),
                     task_list(task_ids));
}

std::string stopped_message(std::string_view service, const std::vector<std::string>& task_ids) {
  return fmt::format("(service {}) has stopped {} running tasks: {}.", service, task_ids.size(),
                     task_list(task_ids));
}

std::string scaling_reason(std::string_view deployment_id) {
  return fmt::format("Scaling activity initiated by (deployment {})", deployment_id);
}

}  // namespace berth::cp
