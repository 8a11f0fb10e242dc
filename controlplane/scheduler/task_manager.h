// The task lifecycle as ECS shows it (docs/ECS-API.md, "States"):
//
//   RunTask -> PROVISIONING (capacity reserved, persisted, answered at once)
//   worker:  agent.launch   -> PENDING (pull events: pullStartedAt/StoppedAt)
//                           -> ACTIVATING (launched / shim started)
//                           -> RUNNING (every essential container started)
//   StopTask -> desiredStatus STOPPED, DEACTIVATING, agent.stop -> STOPPING
//   task_stopped (shim)     -> DEPROVISIONING (exit facts, executionStoppedAt)
//   worker:  agent.release  -> STOPPED (stoppedAt), capacity returned
//
// A launch that fails goes straight to STOPPED with stopCode
// TaskFailedToStart and the agent's reason. Every change is written to the
// store with the task's version as compare-and-swap (a lost race is read
// again and re-applied, so two writers never overwrite each other unseen)
// and then published on the event bus. Status never moves backwards: agent
// events and the launch's own result may arrive in either order.
//
// recover() at start-up re-adopts the live tasks through the agent; start()
// begins the sweep that removes stopped tasks older than the retention (they
// stay describable until then).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "controlplane/agent/agent.h"
#include "controlplane/model/ecs_json.h"
#include "controlplane/model/model.h"
#include "controlplane/scheduler/event_bus.h"
#include "controlplane/scheduler/worker_pool.h"
#include "controlplane/store/store.h"

namespace berth::cp {

// Reason texts ECS writes (and clients match on).
inline constexpr std::string_view kOomReason =
    "OutOfMemoryError: Container killed due to memory usage";
inline constexpr std::string_view kEssentialExitedReason = "Essential container in task exited";
inline constexpr std::string_view kUserStopReason = "Task stopped by user";

struct NodeCapacity {
  int cpu_units = 0;  // 1024 per vCPU
  int memory_mib = 0;
};
// The host's: online CPUs * 1024, MemTotal in MiB.
NodeCapacity host_capacity();

struct TaskManagerOptions {
  std::string region = "us-east-1";
  NodeCapacity capacity = host_capacity();
  int worker_threads = 4;
  std::chrono::seconds stopped_retention{3600};
  std::chrono::seconds sweep_interval{60};
  // Injectable for tests; default system_clock::now.
  std::function<TimePoint()> clock;
  // Called once per task when it reaches RUNNING, with the seconds since
  // createdAt (the metrics' RunTask -> RUNNING histogram).
  std::function<void(double)> on_running;
  // Called after every persisted change of a task, on the thread that made
  // it (the meter, billing/meter.h). Must not call back into the manager
  // synchronously.
  std::function<void(const Task&)> on_change;
  // RunTask admission beyond node capacity (quotas, spending caps): given
  // the account, what its live tasks reserve and the new task's size,
  // nullopt to admit or {reason, detail} for the failure entry.
  std::function<std::optional<std::pair<std::string, std::string>>(
      const std::string& account, NodeCapacity account_reserved, NodeCapacity task)>
      admit;
};

struct RunTaskRequest {
  int count = 1;
  TaskOverrides overrides;
  std::string started_by;
  std::string group;  // default "family:<family>"
  std::vector<Tag> tags;
  std::string launch_type = "FARGATE";
};

// A partial failure of RunTask / Describe*: {arn, reason, detail}.
struct Failure {
  std::string arn;
  std::string reason;  // MISSING, RESOURCE:CPU, RESOURCE:MEMORY
  std::string detail;
};

struct RunTaskResult {
  std::vector<Task> tasks;
  std::vector<Failure> failures;
};

struct TaskCounts {
  int running = 0;
  int pending = 0;  // PROVISIONING, PENDING, ACTIVATING
  int other = 0;    // DEACTIVATING .. DEPROVISIONING
};

class TaskManager {
 public:
  TaskManager(Store& store, Agent& agent, TaskManagerOptions opts);
  ~TaskManager();
  TaskManager(const TaskManager&) = delete;
  TaskManager& operator=(const TaskManager&) = delete;

  // Re-adopts the store's live tasks (call once, before serving): tasks
  // whose shim lives keep running with the shim's state; the others are
  // STOPPED with their last recorded exit facts; capacity is rebuilt.
  Result<void> recover();
  // Starts the periodic expiry sweep.
  void start();
  // Stops the sweep and the workers (queued work finishes). Shims keep
  // running. Idempotent.
  void shutdown();

  Result<RunTaskResult> run_task(const std::string& account, const std::string& cluster,
                                 const TaskDefinition& def, const RunTaskRequest& req);
  // `cluster`, when given, must be the task's (another: not found).
  // `stop_code`: UserInitiated (StopTask) or ServiceSchedulerInitiated (the
  // supervisor).
  Result<Task> stop_task(const std::string& account, const std::optional<std::string>& cluster,
                         const std::string& task_id, const std::string& reason,
                         std::string_view stop_code = "UserInitiated");
  Result<std::optional<Task>> get_task(const std::string& account, const std::string& task_id);

  // Stopped tasks older than the retention: purged from the agent and
  // removed from the store. Returns how many were purged.
  int sweep_expired();

  TaskCounts counts(const std::string& account, const std::string& cluster) const;
  // Tasks known to this process by lastStatus name (the metrics gauge).
  std::map<std::string, int> count_by_state() const;
  NodeCapacity reserved() const;
  NodeCapacity capacity() const { return opts_.capacity; }

  EventBus& events() { return bus_; }
  const std::string& region() const { return opts_.region; }
  TimePoint now() const { return opts_.clock(); }
  // Waits until no launch/release work is queued or running (tests).
  void drain() { pool_.drain(); }

  // The stored form of a task: {"task": <ECS task JSON>, "nodeRef": ...}.
  TaskRecord to_record(const Task& t) const;
  Result<Task> from_record(const TaskRecord& r) const;

 private:
  struct Live {
    std::string account;
    std::string cluster;
    TaskStatus status = TaskStatus::provisioning;
    NodeCapacity reserved;
    std::set<std::string> essential;  // container names
    bool counted_running = false;
  };

  Result<Task> update(const std::string& account, const std::string& id,
                      const std::function<bool(Task&)>& change);
  void track(const Task& t);
  void launch(const std::string& account, const std::string& id, const TaskDefinition& def);
  void fail_start(const std::string& account, const std::string& id, const std::string& reason);
  void on_event(const AgentEvent& e);
  void finish_stop(const std::string& account, const std::string& id);
  std::optional<std::string> account_of(const std::string& id) const;
  void release_capacity(const std::string& id);
  void sweep_loop(std::stop_token st);

  Store& store_;
  Agent& agent_;
  TaskManagerOptions opts_;
  EventBus bus_;
  mutable std::mutex mu_;
  std::map<std::string, Live> live_;          // by task id
  std::map<std::string, TimePoint> stopped_;  // stopped task id -> stoppedAt
  NodeCapacity reserved_;
  std::mutex sweep_mu_;
  std::condition_variable_any sweep_cv_;
  std::jthread sweeper_;
  std::atomic<bool> shut_{false};
  WorkerPool pool_;
};

// Task status as ECS orders it (PROVISIONING < ... < STOPPED).
inline bool status_before(TaskStatus a, TaskStatus b) {
  return static_cast<int>(a) < static_cast<int>(b);
}

// Parses "2026-11-26T21:40:00.123456789Z" (the shim's timestamps).
std::optional<TimePoint> parse_rfc3339(std::string_view s);

}  // namespace berth::cp
