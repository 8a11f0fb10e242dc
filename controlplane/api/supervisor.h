// The service supervisor (issue 13): the reconcile loop that keeps every
// service at its desired count. One thread; each pass reads every live
// service (Store::live_services) and, per service:
//
//   1. reads the service and its tasks (group "service:<name>", every
//      status the store still holds);
//   2. plans (scheduler/service_plan.h: the rules of counts, replacement,
//      backoff, circuit breaker, rolling deployments, draining);
//   3. writes the planned service with compare-and-swap (a lost race —
//      an UpdateService in between — re-reads and plans again);
//   4. sets the service's endpoint (agent.h ServiceEndpoint): the healthy
//      tasks not about to be stopped are its backends, so a task is taken
//      out of the balancer BEFORE it is stopped (drain), and a new one
//      joins only once RUNNING and, with a health check, HEALTHY;
//   5. stops what the plan says (stopCode ServiceSchedulerInitiated; the
//      shim sends SIGTERM and SIGKILL after the container's stopTimeout);
//   6. launches what the plan says (TaskManager::run_task, startedBy the
//      deployment id, group "service:<name>"), then records the started
//      tasks (or an unplaced launch) in the service, compare-and-swap again.
//
// Crash safety: a launch is persisted (PROVISIONING) by run_task before it
// returns, and the planner counts the live tasks of each deployment (never
// its memory), so a berthd killed anywhere in a pass neither loses a task
// nor starts one twice when the next process plans again.
//
// A pass runs when woken (a task of a service changed, a service was
// written through the API), when a plan's wake_at comes (backoff, grace
// period), and every `resync` regardless. New service events are published
// on the task manager's event bus (/v1/events "ServiceEvent").
//
// The endpoint: a service whose first load balancer names a container port
// (or, without load balancers, whose PRIMARY definition's first port
// mapping does) gets one; its VIP is kept in the service (Service::vip)
// so that it stays the same for the service's life, restarts included. It
// is removed when the service becomes INACTIVE.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "controlplane/agent/agent.h"
#include "controlplane/api/ecs_api.h"
#include "controlplane/api/metrics.h"
#include "controlplane/api/service_api.h"
#include "controlplane/scheduler/service_plan.h"
#include "controlplane/scheduler/task_manager.h"

namespace berth::cp {

struct SupervisorOptions {
  PlanOptions plan;
  // A full pass at least this often, woken or not.
  std::chrono::milliseconds resync{5000};
  // Default: the task manager's clock.
  std::function<TimePoint()> clock;
};

class Supervisor {
 public:
  Supervisor(EcsApi& ecs, ServiceApi& services, TaskManager& tasks, Agent& agent,
             SupervisorOptions opts = {});
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts the loop (its first pass at once). Call after recovery.
  void start();
  // Stops the loop (a pass in progress finishes). Idempotent.
  void shutdown();
  // Asks for a pass soon (any thread; cheap).
  void wake();

  // One pass over every live service, on the calling thread (tests; the
  // loop calls it). Returns the earliest wake_at of the plans.
  Result<std::optional<TimePoint>> reconcile_all();
  // One service: plan, write, endpoint, stop, launch.
  Result<std::optional<TimePoint>> reconcile(const std::string& account, const std::string& cluster,
                                             const std::string& name);

  std::vector<ServiceGauge> gauges() const;
  // The endpoint id of a service: "svc-" + 16 hex digits of the SHA-256 of
  // its ARN.
  static std::string endpoint_id(const Service& s, std::string_view region);

 private:
  void loop(std::stop_token st);
  Result<std::vector<Task>> service_tasks(const Service& s);
  Result<TaskDefinition> definition(const std::string& account, const std::string& arn);
  Result<void> update_endpoint(Service& s, const std::vector<Task>& tasks,
                               const std::vector<StopOrder>& stopping);
  void publish_events(const Service& before, const Service& after);
  // Re-reads the service and applies `change` until the compare-and-swap
  // holds (the service as written).
  Result<Service> modify(const Service& s, const std::function<void(Service&)>& change);

  EcsApi& ecs_;
  ServiceApi& services_;
  TaskManager& tasks_;
  Agent& agent_;
  SupervisorOptions opts_;

  std::mutex pass_mu_;  // one pass at a time (loop and tests)
  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  bool dirty_ = true;
  std::map<std::string, ServiceGauge> gauges_;          // by endpoint id
  std::map<std::string, ServiceEndpoint> endpoints_;    // as last set, by id
  std::map<std::string, TaskDefinition> definitions_;   // by ARN (immutable)
  std::map<std::string, std::string> endpoint_errors_;  // the last one logged, by id
  std::jthread thread_;
};

}  // namespace berth::cp
