// The service planner: given a Service (model/service.h), the tasks of its
// deployments and `now`, what to do next. Pure: no I/O, no clock, no
// randomness of its own (event ids come from PlanOptions::new_id). The
// supervisor (a later slice) calls it in a loop: it reads the service and
// its tasks from the store, plans, writes the planned service with
// compare-and-swap, launches the LaunchOrders (startedBy = the deployment
// id, group "service:<name>"), records them with record_started(), and
// stops the StopOrders with stopCode ServiceSchedulerInitiated.
//
// The input tasks: every task whose startedBy names one of the service's
// deployments and that is not STOPPED, plus the STOPPED ones still in the
// store (ECS keeps them about an hour). Each deployment remembers the tasks
// it has seen alive (Deployment::tasks); a remembered task found STOPPED is
// accounted once and forgotten; one absent from the input is forgotten
// without being accounted (expired). A live task of a deployment that is
// not remembered is adopted (after a berthd restart nothing is started
// twice: counts come from the live tasks, never from memory). A live task
// of no current deployment is stopped.
//
// The rules:
// - Counts: runningCount = RUNNING tasks, pendingCount = PROVISIONING,
//   PENDING and ACTIVATING ones (the service's and each deployment's).
// - A task is healthy when RUNNING, not being stopped and, if it has a
//   health check, HEALTHY. A RUNNING task whose health check says
//   UNHEALTHY once healthCheckGracePeriodSeconds (default 0) have passed
//   since it started is stopped ("Task failed container health checks")
//   and counts as a failed task of its deployment.
// - A stopped task counts as failed unless its stopCode is
//   ServiceSchedulerInitiated (the planner stopped it, accounted then) or
//   UserInitiated (someone stopped it: replaced, not a failure). A task on
//   its way down with a failure's stopCode (EssentialContainerExited, an
//   OOM) is accounted as soon as it is seen so (not when it reaches
//   STOPPED): its replacement then waits the backoff instead of starting
//   while it is still being torn down.
// - Backoff: each failure of a deployment raises its consecutive failures
//   n and allows its next launch only at now + min(cap, base * 2^(n-2))
//   (the first failure is replaced at once; PlanOptions: by default 10 s,
//   doubling, up to 15 min). At the second
//   consecutive failure the event ECS writes for a throttled service is
//   added once. n returns to 0 when the deployment has all its desired
//   tasks healthy, each for PlanOptions::stable_after (5 s) since it
//   started (a task that exits right after starting does not reset it).
// - Circuit breaker (deploymentCircuitBreaker.enable): while the PRIMARY
//   deployment's rollout is IN_PROGRESS and its failed tasks reach
//   max(3, min(200, ceil(desiredCount / 2))), its rolloutState becomes
//   FAILED. With rollback, the newest other deployment whose rollout had
//   COMPLETED becomes PRIMARY again (IN_PROGRESS), and the failed one is
//   drained like any older deployment. Without rollback (or with nothing
//   to roll back to) the deployment is stalled as in ECS: nothing more is
//   launched for it and older deployments keep their tasks, until an
//   UpdateService starts a new deployment.
// - Rolling deployments, with D = desiredCount:
//   at most floor(D * maximumPercent / 100) tasks exist at once (every
//   task not yet STOPPED counts, those being stopped included), and
//   healthy tasks are stopped only while at least
//   ceil(D * minimumHealthyPercent / 100) healthy ones stay. The PRIMARY
//   deployment is started up to D within the maximum; older deployments'
//   tasks are stopped, the ones that are not healthy first, then healthy
//   ones (oldest first) within the minimum. Surplus tasks of the PRIMARY
//   (scale-in) are stopped at once, pending ones first, then the newest.
//   Stop reason: "Scaling activity initiated by (deployment <id>)".
// - The rollout is COMPLETED when the PRIMARY has D healthy tasks (each
//   for stable_after) and no
//   older deployment has a task left; older deployments without tasks are
//   then dropped. (While the rollout is IN_PROGRESS they are kept as
//   rollback targets.)
// - A DRAINING service (DeleteService) is planned with D = 0; once no task
//   is left it becomes INACTIVE (deletedAt = now).
// - "(service NAME) has reached a steady state." is added once when the
//   service becomes steady (ACTIVE, one deployment, COMPLETED, runningCount
//   == desiredCount, nothing pending, no task still stopping, nothing to
//   do), and again only after
//   it was not steady in between.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/model/model.h"
#include "controlplane/model/service.h"

namespace berth::cp {

inline constexpr std::string_view kServiceSchedulerInitiated = "ServiceSchedulerInitiated";
inline constexpr std::string_view kHealthCheckStopReason = "Task failed container health checks";

// What the planner needs of a task.
struct PlanTask {
  std::string id;
  std::string deployment_id;  // the task's startedBy
  TaskStatus last_status = TaskStatus::provisioning;
  TaskStatus desired_status = TaskStatus::running;
  std::string health_status = "UNKNOWN";  // HEALTHY | UNHEALTHY | UNKNOWN
  bool has_health_check = false;          // an essential container has one
  TimePoint started_at{};
  TimePoint stopped_at{};
  std::string stop_code;
  std::string stopped_reason;
};

struct PlanOptions {
  std::chrono::seconds backoff_base{10};
  std::chrono::seconds backoff_cap{900};
  // A task counts towards a COMPLETED rollout, and resets its deployment's
  // failure streak, once it has been healthy this long since it started.
  std::chrono::seconds stable_after{5};
  // Event ids; default: new_uuid().
  std::function<std::string()> new_id;
};

struct LaunchOrder {
  std::string deployment_id;
  std::string task_definition;  // ARN
  int count = 0;
};

struct StopOrder {
  std::string task_id;
  std::string deployment_id;
  std::string reason;
};

struct ServicePlan {
  // The service as it should be stored (counts, deployments, rollout
  // states, backoff, events); version not bumped.
  Service service;
  std::vector<LaunchOrder> launch;
  std::vector<StopOrder> stop;
  // service differs from the input (worth writing).
  bool changed = false;
  // The latest time to plan again even if nothing happens (a backoff or a
  // grace period ending); nullopt: only on a change.
  std::optional<TimePoint> wake_at;
};

ServicePlan plan_service(const Service& s, const std::vector<PlanTask>& tasks, TimePoint now,
                         const PlanOptions& o = {});

// The launch delay after `consecutive_failures` (>= 1) failures.
std::chrono::seconds backoff_delay(int consecutive_failures, const PlanOptions& o);
// The circuit breaker's failed-task threshold for `desired_count`.
int breaker_threshold(int desired_count);

// After the supervisor launched tasks for `deployment_id`: remembers them
// and adds "(service NAME) has started N tasks: (task ID) ...".
void record_started(Service& s, std::string_view deployment_id,
                    const std::vector<std::string>& task_ids, TimePoint now,
                    const PlanOptions& o = {});

// After RunTask could not place the deployment's tasks (its `failures`,
// reason e.g. RESOURCE:MEMORY or QUOTA:CPU): the next launch waits
// backoff_delay(2) (nothing was started, so retrying at once would spin),
// the event "(service NAME) was unable to place a task. Reason: REASON."
// is added unless it is already the newest event. Not a failed task: the
// circuit breaker counts tasks that failed, not capacity.
void record_unplaced(Service& s, std::string_view deployment_id, std::string_view reason,
                     TimePoint now, const PlanOptions& o = {});

// ECS's event texts.
std::string steady_state_message(std::string_view service);
std::string started_message(std::string_view service, const std::vector<std::string>& task_ids);
std::string stopped_message(std::string_view service, const std::vector<std::string>& task_ids);
std::string scaling_reason(std::string_view deployment_id);

}  // namespace berth::cp
