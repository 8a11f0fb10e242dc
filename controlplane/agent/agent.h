// The node side of the control plane: builds and destroys microhosts
// (cgroup subtree + netns + per-container overlays), writes the bundles and
// the shim's task.json, starts shims and re-adopts them after a restart, and
// streams their events back. The scheduler reaches it only through this
// interface (in-process now; a remote agent per node later).
//
// Every method blocks (pulls, mounts, netlink, RCU-bound releases) and may
// be called from any thread but an I/O thread. Events arrive on the agent's
// own threads through the sink, in order per task.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "controlplane/model/model.h"

namespace berth::cp {

struct AgentEvent {
  enum class Kind {
    pull_started,       // images are being resolved / pulled
    pull_stopped,       // every image is local
    task_started,       // the shim started the task (after launch's start)
    container_started,  // `container` names it
    container_exited,   // `container`; `state` has the container's facts
    health_changed,     // `container`
    task_stopping,
    task_stopped,  // `state` is the shim's final state; the shim is gone
    shim_lost,     // the shim died without task_stopped; `state` is its last state.json
  };
  Kind kind;
  std::string task_id;
  std::string container;  // for container events
  // The shim's state (task-level events) or container object (container
  // events), as in shim/PROTOCOL.md.
  nlohmann::json state;
  TimePoint at{};
};
const char* agent_event_name(AgentEvent::Kind k);

using AgentEventSink = std::function<void(const AgentEvent&)>;

// What the agent needs to run one task.
struct TaskLaunch {
  Task task;                  // id, account, cluster, overrides, containers
  TaskDefinition definition;  // the task's definition
};

struct LaunchedContainer {
  std::string name;
  std::string image_digest;
  std::string runtime_id;
  std::vector<NetworkBinding> network_bindings;
};

struct Launched {
  std::string node_ref;  // the task's state directory: what adopt() takes back
  std::string private_ipv4;
  std::string mac_address;
  std::vector<LaunchedContainer> containers;
};

// A task the store says is live, for adopt().
struct LiveTask {
  std::string task_id;
  std::string node_ref;
};

struct Adopted {
  std::string task_id;
  bool shim_alive = false;  // false: the task ended during the outage
  nlohmann::json state;     // the shim's current (or last recorded) state
};

struct ShimLogChunk {
  std::string data;  // whole CRI log lines
  uint64_t next_offset = 0;
  uint64_t end_offset = 0;
  bool task_running = false;  // false: no more data will come
};

// A task's resource use as the kernel counts it (billing/meter.h). Counters
// are cumulative since the task's microhost was made.
struct UsageSample {
  TimePoint at{};
  int64_t cpu_usec = 0;  // the task cgroup's CPU time (v2 cpu.stat usage_usec, v1 cpuacct.usage)
  int64_t memory_bytes = 0;  // now (v2 memory.current, v1 memory.usage_in_bytes)
  int64_t memory_peak_bytes =
      0;  // highest so far (v2 memory.peak, v1 memory.max_usage_in_bytes; 0: unknown)
  int64_t net_rx_bytes = 0;  // into the task: the host-side veth's tx_bytes
  int64_t net_tx_bytes = 0;  // out of the task: the host-side veth's rx_bytes
  bool final = false;        // taken at release(), after every process had exited
};

class Agent {
 public:
  virtual ~Agent() = default;

  virtual void set_event_sink(AgentEventSink sink) = 0;

  // Brings the task up to RUNNING: takes a microhost (from the warm pool, or
  // built now), resolves / pulls the images (pull_started, pull_stopped),
  // mounts the overlays, writes the bundles and task.json, starts the shim
  // held, subscribes, then starts the task. Everything made is released
  // again when a step fails (the error says which step, as an ECS reason:
  // "CannotPullContainerError: ...", "ResourceInitializationError: ...").
  virtual Result<Launched> launch(const TaskLaunch& t) = 0;

  // StopTask: SIGTERM now, SIGKILL after `timeout_s` (default: each
  // container's stopTimeout). Returns once the shim has the request.
  virtual Result<void> stop(const std::string& task_id, const std::string& reason,
                            std::optional<int> timeout_s) = 0;

  // Releases what the stopped task held (netns, port mappings, overlays,
  // task cgroup); the logs stay until purge(). Idempotent. Before the
  // cgroup and the veth go, it takes a final usage sample and keeps it in
  // the task's directory (usage() returns it until purge()).
  virtual Result<void> release(const std::string& task_id) = 0;
  // The task's usage now (read from its cgroup and veth), or the final
  // sample once released. not_found: no such task here (purged, or never
  // launched). Tasks in host network mode have no net counters (0).
  virtual Result<UsageSample> usage(const std::string& task_id) = 0;

  // Removes the task's state directory (logs included). Idempotent.
  virtual Result<void> purge(const std::string& task_id) = 0;

  // At start-up: reconnects to each live task's shim (hello: full state) or
  // reads the state it left, then garbage-collects every microhost, rootfs
  // and firewall rule of this instance that no live task owns.
  virtual Result<std::vector<Adopted>> adopt(const std::vector<LiveTask>& live) = 0;

  virtual Result<ShimLogChunk> logs(const std::string& task_id, const std::string& container,
                                    uint64_t offset, uint64_t max_bytes) = 0;

  // Warm pool: how many ready microhosts to keep (refilled in the
  // background), and how many there are now.
  virtual void set_warm_pool_target(int n) = 0;
  virtual int warm_pool_size() const = 0;

  // Stops background work (pool refill, event readers). Shims keep running.
  virtual void shutdown() = 0;
};

}  // namespace berth::cp
