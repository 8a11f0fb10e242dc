// The service planner (controlplane/scheduler/service_plan.h), pure and
// exhaustively driven by hand-made worlds: a small simulator applies each
// plan (launches become PROVISIONING tasks, stops set desiredStatus
// STOPPED) and moves the tasks along as a node would, step by step, so
// that the rules are checked at every step: scale 3 -> 5 -> 1, replacement
// of a stopped task, backoff growth, the circuit breaker with and without
// rollback, rolling deployments at 200/100 and 100/50 never above the
// maximum nor below the minimum healthy count, health checks with a grace
// period, restart adoption, orphans, draining, and the steady-state event
// written once.
#include "controlplane/scheduler/service_plan.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "controlplane/model/arn.h"

using namespace berth;
using namespace berth::cp;
using namespace std::chrono_literals;

namespace {

constexpr const char* kTdA = "arn:aws:ecs:us-test-1:111111111111:task-definition/web:1";
constexpr const char* kTdB = "arn:aws:ecs:us-test-1:111111111111:task-definition/web:2";
constexpr const char* kDepA = "ecs-svc/1000000000000000001";
constexpr const char* kDepB = "ecs-svc/2000000000000000002";

struct Sim {
  Service s;
  std::vector<PlanTask> tasks;
  TimePoint now = from_epoch_seconds(1700000000);
  PlanOptions o;
  int next_task = 0;
  int next_event = 0;
  // How tasks of a task definition behave when they start.
  std::map<std::string, bool> fails_to_start;        // by task definition ARN
  std::map<std::string, bool> health_checked;        // by task definition ARN
  std::map<std::string, bool> turns_unhealthy;       // by task definition ARN
  std::map<std::string, std::string> definition_of;  // task id -> ARN
  std::deque<ServicePlan> plans;                     // references stay valid

  explicit Sim(int desired, int max = 200, int min = 100, CircuitBreaker cb = {}) {
    o.new_id = [this] { return "ev-" + std::to_string(next_event++); };
    // Healthy counts at once here; the stability delay has its own test.
    o.stable_after = 0s;
    s.account = "111111111111";
    s.cluster = "default";
    s.name = "web";
    s.desired_count = desired;
    s.deployment_configuration = {max, min, cb};
    s.start_deployment(kDepA, kTdA, now);
  }

  PlanTask* task(const std::string& id) {
    for (auto& t : tasks)
      if (t.id == id) return &t;
    return nullptr;
  }

  // Plans and applies the plan as the supervisor would.
  ServicePlan& plan() {
    plans.push_back(plan_service(s, tasks, now, o));
    ServicePlan& p = plans.back();
    s = p.service;
    for (const auto& stop : p.stop) {
      PlanTask* t = task(stop.task_id);
      REQUIRE(t != nullptr);
      t->desired_status = TaskStatus::stopped;
      t->stopped_reason = stop.reason;
    }
    for (const auto& l : p.launch) {
      std::vector<std::string> ids;
      const Deployment* d = s.deployment(l.deployment_id);
      REQUIRE(d != nullptr);
      CHECK(l.task_definition == d->task_definition);
      for (int i = 0; i < l.count; ++i) {
        PlanTask t;
        t.id = "t" + std::to_string(next_task++);
        t.deployment_id = l.deployment_id;
        t.has_health_check = health_checked[l.task_definition];
        definition_of[t.id] = l.task_definition;
        tasks.push_back(t);
        ids.push_back(t.id);
      }
      record_started(s, l.deployment_id, ids, now, o);
    }
    return p;
  }

  // A plan that is not applied.
  ServicePlan plan_service_only() const { return plan_service(s, tasks, now, o); }

  // One step of the node: stopping tasks stop (as the scheduler asked),
  // pending ones start (or fail to), started health-checked ones turn
  // HEALTHY a step later.
  void step(std::chrono::seconds dt = 1s) {
    now += dt;
    for (auto& t : tasks) {
      if (t.last_status == TaskStatus::stopped) continue;
      if (t.desired_status == TaskStatus::stopped) {
        t.last_status = TaskStatus::stopped;
        t.stop_code = std::string(kServiceSchedulerInitiated);
        t.stopped_at = now;
        continue;
      }
      const std::string& td = definition_of[t.id];
      if (t.last_status == TaskStatus::running) {
        if (t.has_health_check && t.health_status == "UNKNOWN") {
          t.health_status = turns_unhealthy[td] ? "UNHEALTHY" : "HEALTHY";
        }
        continue;
      }
      if (fails_to_start[td]) {
        t.last_status = TaskStatus::stopped;
        t.stop_code = "TaskFailedToStart";
        t.stopped_reason = "CannotPullContainerError: not found";
        t.stopped_at = now;
        continue;
      }
      t.last_status = TaskStatus::running;
      t.started_at = now;
    }
  }

  std::vector<const PlanTask*> live() const {
    std::vector<const PlanTask*> out;
    for (const auto& t : tasks)
      if (t.last_status != TaskStatus::stopped) out.push_back(&t);
    return out;
  }

  int healthy() const {
    int n = 0;
    for (const auto& t : tasks) {
      if (t.last_status == TaskStatus::running && t.desired_status == TaskStatus::running &&
          (!t.has_health_check || t.health_status == "HEALTHY")) {
        ++n;
      }
    }
    return n;
  }

  std::vector<std::string> messages() const {
    std::vector<std::string> out;
    for (auto it = s.events.rbegin(); it != s.events.rend(); ++it) out.push_back(it->message);
    return out;
  }

  int count_messages(const std::string& m) const {
    auto ms = messages();
    return static_cast<int>(std::count(ms.begin(), ms.end(), m));
  }

  bool stable() const {
    const Deployment* p = s.primary();
    return s.deployments.size() == 1 && p && p->rollout_state == "COMPLETED" &&
           s.running_count == s.desired_count && s.pending_count == 0 &&
           std::none_of(tasks.begin(), tasks.end(), [](const PlanTask& t) {
             return t.last_status != TaskStatus::stopped && t.desired_status != TaskStatus::running;
           });
  }

  // Plan / step until stable (at most `steps`).
  void settle(int steps = 50) {
    for (int i = 0; i < steps; ++i) {
      plan();
      if (stable() && plans.back().launch.empty() && plans.back().stop.empty()) return;
      step();
    }
    FAIL("the service did not settle");
  }
};

}  // namespace

TEST_CASE("svc plan: a new service starts its tasks, completes and is steady once", "[svc-plan]") {
  Sim sim(3);
  auto& p = sim.plan();
  REQUIRE(p.launch.size() == 1);
  CHECK(p.launch[0].deployment_id == kDepA);
  CHECK(p.launch[0].count == 3);
  CHECK(p.stop.empty());
  // Launching alone changes nothing stored yet: the supervisor writes the
  // service once record_started() remembered the tasks.
  CHECK_FALSE(p.changed);
  CHECK(sim.s.events.front().message ==
        "(service web) has started 3 tasks: (task t0) (task t1) "
        "(task t2).");
  CHECK(sim.s.primary()->tasks == std::vector<std::string>{"t0", "t1", "t2"});

  // Planned again before the node moved: nothing twice.
  auto& again = sim.plan();
  CHECK(again.launch.empty());
  CHECK(sim.s.pending_count == 3);
  CHECK(sim.s.primary()->pending_count == 3);
  CHECK(sim.s.running_count == 0);

  sim.step();
  auto& done = sim.plan();
  CHECK(done.launch.empty());
  CHECK(sim.s.running_count == 3);
  CHECK(sim.s.pending_count == 0);
  const Deployment& d = *sim.s.primary();
  CHECK(d.running_count == 3);
  CHECK(d.rollout_state == "COMPLETED");
  CHECK(d.rollout_state_reason == "ECS deployment ecs-svc/1000000000000000001 completed.");
  CHECK(d.updated_at == sim.now);
  CHECK(sim.s.steady);
  CHECK(sim.messages() ==
        std::vector<std::string>{
            "(service web) has started 3 tasks: (task t0) (task t1) (task t2).",
            "(service web) (deployment ecs-svc/1000000000000000001) deployment completed.",
            "(service web) has reached a steady state.",
        });
  CHECK(sim.s.events.front().id == "ev-2");
  CHECK(sim.s.events.front().created_at == sim.now);

  // Steady stays steady: no event, no change to write.
  for (int i = 0; i < 3; ++i) {
    sim.step();
    auto& quiet = sim.plan();
    CHECK_FALSE(quiet.changed);
    CHECK(quiet.launch.empty());
    CHECK(quiet.stop.empty());
    CHECK_FALSE(quiet.wake_at);
  }
  CHECK(sim.count_messages("(service web) has reached a steady state.") == 1);
}

TEST_CASE("svc plan: scale 3 -> 5 -> 1 follows the counts and stops the surplus", "[svc-plan]") {
  Sim sim(3);
  sim.settle();
  sim.s.desired_count = 5;
  auto& up = sim.plan();
  REQUIRE(up.launch.size() == 1);
  CHECK(up.launch[0].count == 2);
  CHECK(sim.s.primary()->desired_count == 5);
  CHECK_FALSE(sim.s.steady);
  sim.settle();
  CHECK(sim.s.running_count == 5);
  CHECK(sim.live().size() == 5);
  CHECK(sim.count_messages("(service web) has reached a steady state.") == 2);

  // The newest are stopped first on a scale-in (t3 and t4 started last).
  sim.now += 10s;
  sim.s.desired_count = 1;
  auto& down = sim.plan();
  CHECK(down.launch.empty());
  REQUIRE(down.stop.size() == 4);
  std::vector<std::string> stopped;
  for (const auto& st : down.stop) {
    stopped.push_back(st.task_id);
    CHECK(st.reason == "Scaling activity initiated by (deployment ecs-svc/1000000000000000001)");
    CHECK(st.deployment_id == kDepA);
  }
  std::sort(stopped.begin(), stopped.end());
  CHECK(stopped == std::vector<std::string>{"t1", "t2", "t3", "t4"});
  CHECK(sim.s.events.front().message.starts_with("(service web) has stopped 4 running tasks: "));
  // Still running until the node stopped them.
  CHECK(sim.s.running_count == 5);
  CHECK_FALSE(sim.s.steady);
  // On their way down (no longer RUNNING, not STOPPED yet): the count is
  // right but the service is not steady until they are gone.
  for (auto& t : sim.tasks) {
    if (t.desired_status == TaskStatus::stopped) t.last_status = TaskStatus::deactivating;
  }
  sim.plan();
  CHECK(sim.s.running_count == 1);
  CHECK_FALSE(sim.s.steady);
  CHECK(sim.count_messages("(service web) has reached a steady state.") == 2);
  sim.settle();
  CHECK(sim.s.running_count == 1);
  CHECK(sim.live().size() == 1);
  CHECK(sim.live()[0]->id == "t0");
  CHECK(sim.s.primary()->tasks == std::vector<std::string>{"t0"});
  // Stops the scheduler made are not failures.
  CHECK(sim.s.primary()->failed_tasks == 0);
  CHECK(sim.count_messages("(service web) has reached a steady state.") == 3);
}

TEST_CASE("svc plan: a task that stops is replaced at once, a user stop is no failure",
          "[svc-plan]") {
  Sim sim(3);
  sim.settle();
  PlanTask* t = sim.task("t1");
  t->last_status = TaskStatus::stopped;
  t->stop_code = "EssentialContainerExited";
  t->stopped_at = sim.now;
  auto& p = sim.plan();
  REQUIRE(p.launch.size() == 1);
  CHECK(p.launch[0].count == 1);
  CHECK(sim.s.primary()->failed_tasks == 1);
  CHECK(sim.s.primary()->consecutive_failures == 1);
  CHECK(sim.s.running_count == 2);
  CHECK(sim.s.primary()->tasks == std::vector<std::string>{"t0", "t2", "t3"});
  sim.settle();
  CHECK(sim.s.running_count == 3);
  // A full healthy deployment forgives the failure streak (not the count).
  CHECK(sim.s.primary()->consecutive_failures == 0);
  CHECK(sim.s.primary()->failed_tasks == 1);

  sim.task("t0")->last_status = TaskStatus::stopped;
  sim.task("t0")->stop_code = "UserInitiated";
  auto& p2 = sim.plan();
  REQUIRE(p2.launch.size() == 1);
  CHECK(sim.s.primary()->failed_tasks == 1);
  // A stopped task is accounted once, however often it is seen.
  sim.plan();
  sim.plan();
  CHECK(sim.s.primary()->failed_tasks == 1);
}

TEST_CASE("svc plan: backoff doubles from the base up to the cap", "[svc-plan]") {
  PlanOptions o;
  o.backoff_base = 10s;
  o.backoff_cap = 300s;
  CHECK(backoff_delay(1, o) == 0s);
  CHECK(backoff_delay(2, o) == 10s);
  CHECK(backoff_delay(3, o) == 20s);
  CHECK(backoff_delay(4, o) == 40s);
  CHECK(backoff_delay(6, o) == 160s);
  CHECK(backoff_delay(7, o) == 300s);
  CHECK(backoff_delay(1000, o) == 300s);
  CHECK(backoff_delay(1, PlanOptions{}) == 0s);
  CHECK(backoff_delay(2, PlanOptions{}) == 10s);
  CHECK(backoff_delay(100, PlanOptions{}) == 900s);
}

TEST_CASE("svc plan: a task that always fails is restarted with growing delays", "[svc-plan]") {
  Sim sim(1);
  sim.o.backoff_base = 10s;
  sim.o.backoff_cap = 80s;
  sim.fails_to_start[kTdA] = true;
  std::vector<TimePoint> launches;
  for (int i = 0; i < 400 && launches.size() < 7; ++i) {
    auto& p = sim.plan();
    if (!p.launch.empty()) {
      launches.push_back(sim.now);
    } else if (!sim.live().empty()) {
      // waiting for the node
    } else {
      // Held back: the plan says when to come again, and it is the next
      // launch time the deployment keeps.
      REQUIRE(p.wake_at);
      CHECK(*p.wake_at == sim.s.primary()->next_launch_at);
      CHECK(*p.wake_at > sim.now);
    }
    sim.step(1s);
  }
  REQUIRE(launches.size() == 7);
  std::vector<long> gaps;
  for (size_t i = 1; i < launches.size(); ++i) {
    gaps.push_back(
        std::chrono::duration_cast<std::chrono::seconds>(launches[i] - launches[i - 1]).count());
  }
  // Launch, fail a second later, plan: the first failure is replaced at
  // once (1 s apart), then 10, 20, 40, 80, 80 s after each failure.
  CHECK(gaps == std::vector<long>{1, 11, 21, 41, 81, 81});
  CHECK(sim.s.primary()->failed_tasks == 6);
  CHECK(sim.s.primary()->rollout_state == "IN_PROGRESS");  // no breaker
  CHECK(sim.count_messages("(service web) is unable to consistently start tasks successfully. "
                           "For more information, see the Troubleshooting section of the Amazon "
                           "ECS Developer Guide.") == 1);
}

TEST_CASE("svc plan: the circuit breaker threshold", "[svc-plan]") {
  CHECK(breaker_threshold(0) == 3);
  CHECK(breaker_threshold(1) == 3);
  CHECK(breaker_threshold(6) == 3);
  CHECK(breaker_threshold(7) == 4);
  CHECK(breaker_threshold(10) == 5);
  CHECK(breaker_threshold(399) == 200);
  CHECK(breaker_threshold(1000) == 200);
}

TEST_CASE("svc plan: the breaker fails a deployment whose tasks keep failing and stalls it",
          "[svc-plan]") {
  Sim sim(4, 200, 100, {true, false});
  sim.o.backoff_base = 1s;
  sim.fails_to_start[kTdA] = true;
  for (int i = 0; i < 60; ++i) {
    sim.plan();
    sim.step();
  }
  const Deployment& d = *sim.s.primary();
  CHECK(d.rollout_state == "FAILED");
  CHECK(d.rollout_state_reason == "ECS deployment circuit breaker: tasks failed to start.");
  // Four launched at once failed together: the threshold (3) was reached
  // with the first batch; nothing was launched after.
  CHECK(d.failed_tasks == 4);
  CHECK(sim.next_task == 4);
  CHECK(sim.count_messages("(service web) (deployment ecs-svc/1000000000000000001) deployment "
                           "failed: tasks failed to start.") == 1);
  CHECK_FALSE(sim.s.steady);
  // A new deployment starts over.
  sim.fails_to_start[kTdB] = false;
  sim.s.start_deployment(kDepB, kTdB, sim.now);
  sim.settle();
  CHECK(sim.s.primary()->id == kDepB);
  CHECK(sim.s.running_count == 4);
}

TEST_CASE("svc plan: with rollback the previous deployment becomes PRIMARY again", "[svc-plan]") {
  Sim sim(4, 200, 100, {true, true});
  sim.o.backoff_base = 1s;
  sim.settle();
  std::vector<std::string> good;
  for (const auto* t : sim.live()) good.push_back(t->id);

  // The new revision starts but fails its health checks: its tasks are
  // stopped by the scheduler, counted as failed, and the breaker trips
  // while they are still stopping.
  sim.health_checked[kTdB] = true;
  sim.turns_unhealthy[kTdB] = true;
  sim.s.start_deployment(kDepB, kTdB, sim.now);
  bool rolled_back = false;
  for (int i = 0; i < 60 && !rolled_back; ++i) {
    sim.plan();
    // The good tasks keep serving throughout.
    CHECK(sim.healthy() == 4);
    rolled_back = sim.s.primary()->id == kDepA;
    sim.step();
  }
  REQUIRE(rolled_back);
  CHECK(sim.s.deployments[0].id == kDepA);
  CHECK(sim.s.deployments[0].status == "PRIMARY");
  CHECK(sim.s.deployments[0].rollout_state == "IN_PROGRESS");
  CHECK(sim.s.deployments[0].rollout_state_reason ==
        "ECS deployment circuit breaker: rolling back to deploymentId "
        "ecs-svc/1000000000000000001.");
  REQUIRE(sim.s.deployments.size() == 2);
  CHECK(sim.s.deployments[1].id == kDepB);
  CHECK(sim.s.deployments[1].status == "ACTIVE");
  CHECK(sim.s.deployments[1].rollout_state == "FAILED");
  CHECK(sim.s.task_definition == kTdA);
  CHECK(sim.count_messages("(service web) rolling back to deployment "
                           "ecs-svc/1000000000000000001.") == 1);
  sim.settle();
  CHECK(sim.s.deployments.size() == 1);
  CHECK(sim.s.primary()->id == kDepA);
  CHECK(sim.s.primary()->rollout_state == "COMPLETED");
  std::vector<std::string> now_live;
  for (const auto* t : sim.live()) now_live.push_back(t->id);
  CHECK(now_live == good);
}

namespace {

// Rolls out kTdB over 4 tasks of kTdA, checking the bounds after every
// plan; returns the largest number of tasks seen at once and the smallest
// number of healthy ones.
std::pair<int, int> roll_out(Sim& sim, bool health_checks) {
  sim.health_checked[kTdA] = health_checks;
  sim.health_checked[kTdB] = health_checks;
  sim.settle();
  REQUIRE(sim.healthy() == 4);
  const auto& cfg = sim.s.deployment_configuration;
  int max_tasks = 4 * cfg.maximum_percent / 100;
  int min_healthy = (4 * cfg.minimum_healthy_percent + 99) / 100;
  sim.s.start_deployment(kDepB, kTdB, sim.now);
  int most = 0, least = 4;
  for (int i = 0; i < 100; ++i) {
    sim.plan();
    int live = static_cast<int>(sim.live().size());
    most = std::max(most, live);
    least = std::min(least, sim.healthy());
    CHECK(live <= max_tasks);
    CHECK(sim.healthy() >= min_healthy);
    if (sim.stable() && sim.plans.back().launch.empty() && sim.plans.back().stop.empty()) break;
    sim.step();
  }
  REQUIRE(sim.stable());
  CHECK(sim.s.primary()->id == kDepB);
  CHECK(sim.s.primary()->rollout_state == "COMPLETED");
  CHECK(sim.s.task_definition == kTdB);
  for (const auto* t : sim.live()) CHECK(t->deployment_id == kDepB);
  CHECK(sim.live().size() == 4);
  CHECK(sim.count_messages("(service web) (deployment ecs-svc/2000000000000000002) deployment "
                           "completed.") == 1);
  return {most, least};
}

}  // namespace

TEST_CASE("svc plan: a 4-task rollout at 200/100 starts all new tasks, then drains the old",
          "[svc-plan]") {
  for (bool hc : {false, true}) {
    INFO("health checks: " << hc);
    Sim sim(4, 200, 100);
    auto [most, least] = roll_out(sim, hc);
    CHECK(most == 8);
    CHECK(least == 4);
  }
}

TEST_CASE("svc plan: a 4-task rollout at 100/50 replaces two at a time", "[svc-plan]") {
  for (bool hc : {false, true}) {
    INFO("health checks: " << hc);
    Sim sim(4, 100, 50);
    auto [most, least] = roll_out(sim, hc);
    CHECK(most == 4);
    CHECK(least == 2);
  }
}

TEST_CASE("svc plan: unhealthy tasks are replaced only after the grace period", "[svc-plan]") {
  Sim sim(2);
  sim.health_checked[kTdA] = true;
  sim.s.health_check_grace_period_s = 30;
  sim.settle();
  PlanTask* t = sim.task("t0");
  t->health_status = "UNHEALTHY";
  TimePoint grace_end = t->started_at + 30s;
  auto& within = sim.plan();
  CHECK(within.stop.empty());
  REQUIRE(within.wake_at);
  CHECK(*within.wake_at == grace_end);
  sim.now = grace_end;
  auto& after = sim.plan();
  REQUIRE(after.stop.size() == 1);
  CHECK(after.stop[0].task_id == "t0");
  CHECK(after.stop[0].reason == "Task failed container health checks");
  CHECK(sim.s.primary()->failed_tasks == 1);
  CHECK(sim.count_messages("(service web) (task t0) failed container health checks.") == 1);
  // A replacement starts within the maximum while t0 is being stopped.
  REQUIRE(after.launch.size() == 1);
  CHECK(after.launch[0].count == 1);
  sim.step();
  sim.settle();
  CHECK(sim.s.running_count == 2);
  // Its stop (ServiceSchedulerInitiated) was accounted when ordered.
  CHECK(sim.s.primary()->failed_tasks == 1);
}

TEST_CASE("svc plan: after a restart live tasks are adopted, never started twice", "[svc-plan]") {
  Sim sim(3);
  sim.settle();
  // The stored service lost its memory of the tasks (written before the
  // launch was recorded): the live tasks still count.
  sim.s.primary()->tasks.clear();
  auto& p = sim.plan();
  CHECK(p.launch.empty());
  CHECK(p.stop.empty());
  CHECK(sim.s.primary()->tasks.size() == 3);
  CHECK(sim.s.running_count == 3);
}

TEST_CASE("svc plan: a live task of no current deployment is stopped", "[svc-plan]") {
  Sim sim(1);
  sim.settle();
  PlanTask orphan;
  orphan.id = "orphan";
  orphan.deployment_id = "ecs-svc/3333333333333333333";
  orphan.last_status = TaskStatus::running;
  sim.tasks.push_back(orphan);
  auto& p = sim.plan();
  REQUIRE(p.stop.size() == 1);
  CHECK(p.stop[0].task_id == "orphan");
  CHECK(p.stop[0].reason ==
        "Scaling activity initiated by (deployment ecs-svc/1000000000000000001)");
  sim.step();
  sim.settle();
  CHECK(sim.live().size() == 1);
  CHECK(sim.task("orphan")->last_status == TaskStatus::stopped);
}

TEST_CASE("svc plan: a DRAINING service stops everything, then is INACTIVE", "[svc-plan]") {
  Sim sim(3);
  sim.settle();
  sim.s.status = "DRAINING";
  sim.s.desired_count = 0;
  auto& p = sim.plan();
  CHECK(p.stop.size() == 3);
  CHECK(p.launch.empty());
  CHECK(sim.s.status == "DRAINING");
  CHECK_FALSE(sim.s.steady);
  sim.step();
  sim.plan();
  CHECK(sim.s.status == "INACTIVE");
  CHECK(sim.s.deleted_at == sim.now);
  CHECK(sim.s.running_count == 0);
  CHECK(sim.live().empty());
  CHECK(sim.count_messages("(service web) has reached a steady state.") == 1);
}

TEST_CASE("svc plan: a launch that could not be placed waits, once per event, no failure",
          "[svc-plan]") {
  Sim sim(2);
  sim.o.backoff_base = 10s;
  auto first = sim.plan_service_only();
  REQUIRE(first.launch.size() == 1);
  // RunTask answered RESOURCE:MEMORY: nothing started.
  record_unplaced(sim.s, kDepA, "RESOURCE:MEMORY", sim.now, sim.o);
  record_unplaced(sim.s, kDepA, "RESOURCE:MEMORY", sim.now, sim.o);
  CHECK(sim.count_messages("(service web) was unable to place a task. Reason: "
                           "RESOURCE:MEMORY.") == 1);
  CHECK(sim.s.primary()->failed_tasks == 0);
  CHECK(sim.s.primary()->next_launch_at == sim.now + 10s);
  auto held = sim.plan_service_only();
  CHECK(held.launch.empty());
  REQUIRE(held.wake_at);
  CHECK(*held.wake_at == sim.now + 10s);
  sim.now += 10s;
  auto again = sim.plan_service_only();
  REQUIRE(again.launch.size() == 1);
  CHECK(again.launch[0].count == 2);
}

TEST_CASE("svc plan: event texts as ECS writes them", "[svc-plan]") {
  CHECK(steady_state_message("x") == "(service x) has reached a steady state.");
  CHECK(started_message("x", {"a"}) == "(service x) has started 1 tasks: (task a).");
  CHECK(stopped_message("x", {"a", "b"}) ==
        "(service x) has stopped 2 running tasks: (task a) (task b).");
  CHECK(scaling_reason("ecs-svc/1") == "Scaling activity initiated by (deployment ecs-svc/1)");
}

TEST_CASE(
    "svc plan: a task must stay healthy for stable_after before the streak resets and the "
    "rollout completes",
    "[svc-plan]") {
  Sim sim(1);
  sim.o.stable_after = 5s;
  sim.fails_to_start[kTdA] = false;
  sim.plan();
  sim.step();  // t0 RUNNING at now
  TimePoint started = sim.now;
  auto& early = sim.plan();
  CHECK(sim.s.running_count == 1);
  CHECK(sim.s.primary()->rollout_state == "IN_PROGRESS");
  CHECK_FALSE(sim.s.steady);
  REQUIRE(early.wake_at);
  CHECK(*early.wake_at == started + 5s);

  // It exits 1 s after it started: a failure, and the streak goes on.
  sim.now += 1s;
  PlanTask* t0 = sim.task("t0");
  REQUIRE(t0 != nullptr);
  t0->last_status = TaskStatus::stopped;
  t0->stop_code = "EssentialContainerExited";
  t0->stopped_at = sim.now;
  sim.plan();  // replaced at once (first failure)
  sim.step();  // t1 RUNNING
  sim.plan();
  sim.now += 1s;
  PlanTask* t1 = sim.task("t1");
  REQUIRE(t1 != nullptr);
  t1->last_status = TaskStatus::stopped;
  t1->stop_code = "EssentialContainerExited";
  t1->stopped_at = sim.now;
  auto& second = sim.plan();
  CHECK(sim.s.primary()->consecutive_failures == 2);
  CHECK(second.launch.empty());  // backoff: 10 s
  REQUIRE(second.wake_at);
  CHECK(*second.wake_at == sim.now + 10s);

  // After the backoff a task that stays up 5 s completes the rollout and
  // forgives the streak.
  sim.now += 10s;
  sim.plan();
  sim.step();
  sim.plan();
  CHECK(sim.s.primary()->consecutive_failures == 2);
  sim.now += 5s;
  sim.plan();
  CHECK(sim.s.primary()->consecutive_failures == 0);
  CHECK(sim.s.primary()->rollout_state == "COMPLETED");
  CHECK(sim.s.primary()->failed_tasks == 2);
  CHECK(sim.s.steady);
}

TEST_CASE("svc plan: a task exiting on its own is a failure as soon as it is seen stopping, once",
          "[svc-plan]") {
  Sim sim(1);
  sim.o.stable_after = 5s;  // the tasks below never stay up that long
  sim.plan();
  sim.step();
  sim.plan();
  REQUIRE(sim.s.running_count == 1);
  // t0's essential container exited: the task manager has it DEACTIVATING
  // with desiredStatus STOPPED and the stop code; it is not STOPPED yet.
  auto exits = [&](const std::string& id) {
    PlanTask* t = sim.task(id);
    REQUIRE(t != nullptr);
    t->last_status = TaskStatus::deactivating;
    t->desired_status = TaskStatus::stopped;
    t->stop_code = "EssentialContainerExited";
  };
  auto stopped = [&](const std::string& id) {
    PlanTask* t = sim.task(id);
    REQUIRE(t != nullptr);
    t->last_status = TaskStatus::stopped;
    t->stopped_at = sim.now;
  };
  exits("t0");
  auto& first = sim.plan();
  CHECK(sim.s.primary()->failed_tasks == 1);
  CHECK(sim.s.primary()->consecutive_failures == 1);
  REQUIRE(first.launch.size() == 1);  // the first failure is replaced at once
  stopped("t0");
  sim.plan();
  CHECK(sim.s.primary()->failed_tasks == 1);  // not counted again at STOPPED
  sim.step();                                 // t1 RUNNING
  sim.plan();
  exits("t1");
  auto& second = sim.plan();
  CHECK(sim.s.primary()->failed_tasks == 2);
  CHECK(sim.s.primary()->consecutive_failures == 2);
  CHECK(second.launch.empty());  // the replacement waits the backoff
  REQUIRE(second.wake_at);
  CHECK(*second.wake_at == sim.now + 10s);
  stopped("t1");
  auto& later = sim.plan();
  CHECK(later.launch.empty());
  CHECK(sim.s.primary()->failed_tasks == 2);
}
