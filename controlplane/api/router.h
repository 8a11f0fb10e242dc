// The request router and the one object the daemon wires up.
//
//   POST /  (X-Amz-Target)  -> the ECS operations (api/ecs_api.h)
//   /v1/...                 -> the native endpoints (api/native_api.h)
//   GET /metrics            -> Prometheus text (api/metrics.h)
//   GET /healthz            -> "ok"
//   anything else           -> 404, ECS error shape
//
// The Handler runs on an I/O thread: it only inspects the request and
// posts the work to a worker pool; the answer comes back through Respond.
// Every answer is counted in the metrics by operation and status.
//
// daemon.cc:
//   ControlPlane cp(store, agent, opts);
//   BERTH_TRY(cp.recover());   // before serving: resume the bills (the
//                              // meter), then re-adopt live tasks
//   cp.start();                // expiry sweep, the meter's checkpoints
//   server.serve(cp.handler());
//   ... cp.shutdown();         // before the agent and the store go away
//
// The ControlPlane owns the Meter (billing/meter.h): the task manager's
// on_change hook feeds it every persisted change and its admit hook asks it
// about quotas and spending caps; DescribeTasks and /v1/tasks answers carry
// its bill of each task ("berthBilling"), /v1/usage its reports, /metrics
// the billed amount by account.
#pragma once

#include <memory>

#include "common/error.h"
#include "controlplane/agent/agent.h"
#include "controlplane/api/ecs_api.h"
#include "controlplane/api/http.h"
#include "controlplane/api/metrics.h"
#include "controlplane/api/native_api.h"
#include "controlplane/api/service_api.h"
#include "controlplane/api/supervisor.h"
#include "controlplane/billing/meter.h"
#include "controlplane/scheduler/task_manager.h"
#include "controlplane/scheduler/worker_pool.h"
#include "controlplane/store/store.h"

namespace berth::cp {

Handler make_handler(EcsApi& ecs, NativeApi& native, Metrics& metrics, WorkerPool& pool);

struct ControlPlaneOptions {
  TaskManagerOptions tasks;  // region, capacity, retention, clock
  EcsApiOptions ecs;         // account settings
  NativeApiOptions native;
  MeterOptions meter;            // prices, accounts' quotas and caps, clock
  SupervisorOptions supervisor;  // backoff, resync
  int api_threads = 4;           // workers that answer API requests
};

class ControlPlane {
 public:
  ControlPlane(Store& store, Agent& agent, ControlPlaneOptions opts);
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // The meter's recovery (resumes billed tasks from their checkpoints),
  // then the task manager's (its changes reach the meter's on_change).
  Result<void> recover();
  void start();
  // Ends the streams, finishes queued requests, stops the meter and then
  // the scheduler. The transport should stop accepting first. Idempotent.
  void shutdown();

  Handler handler() { return make_handler(ecs_, native_, metrics_, pool_); }
  TaskManager& tasks() { return tasks_; }
  Meter& meter() { return meter_; }
  Metrics& metrics() { return metrics_; }
  Supervisor& supervisor() { return supervisor_; }
  // Waits until queued API requests have been answered (tests).
  void drain() { pool_.drain(); }

 private:
  Metrics metrics_;
  Meter meter_;  // before tasks_: the task manager's hooks call it
  TaskManager tasks_;
  EcsApi ecs_;
  ServiceApi services_;
  Supervisor supervisor_;
  NativeApi native_;
  WorkerPool pool_;
};

}  // namespace berth::cp
