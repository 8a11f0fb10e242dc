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

// A service's network endpoint (issue 13): its load balancer on a host
// listener port and its stable virtual address (VIP) on the bridge, both
// balancing new connections over `backends`, and its name in the hosts file
// of every task of the same account.
//
// - `id` owns the endpoint's firewall rules and VIP: "svc-" + 16 hex digits,
//   stable per service (the supervisor derives it from the service ARN).
// - The VIP comes from the bridge subnet (the same IPAM as the microhosts,
//   owner `id`) the first time, and is kept: set_service_endpoint() returns
//   it, the supervisor stores it in the service and passes it back in `vip`
//   on every later call (after a restart too), and the agent keeps exactly
//   that address. It answers on the bridge (ARP) for tasks only.
// - VIP:container_port -> one of backends (kernel-level, nftables numgen),
//   for connections from tasks of `account` only: another account's task
//   (or any other source) sending to the VIP is dropped, so the service is
//   reached by name in the same account and not at all from another one.
// - listener_port (non-zero): host port -> one of backends, from anywhere
//   (like a portMapping's hostPort; the host itself included). A port taken
//   by another owner is an error naming the port.
// - hosts: "<vip> <name>" is in /etc/hosts of every live task of `account`
//   (rewritten in place: the file is bind-mounted) and of every task of it
//   launched later, until remove_service_endpoint(); `name` is
//   "<service>.<cluster>.berth".
// - Empty backends: the VIP and listener stay (the name resolves) but new
//   connections are refused/dropped until a backend comes back.
// Endpoints are persisted in the agent's state dir: adopt()'s garbage
// collection keeps the rules and VIPs of endpoints set and not removed, so
// balancing goes on across a berthd restart. Idempotent; one transaction
// per call (a reader never sees half of the backend set).
struct ServiceBackend {
  std::string ip;  // the task's private IPv4
  uint16_t port = 0;
  bool operator==(const ServiceBackend&) const = default;
};

struct ServiceEndpoint {
  std::string id;                // "svc-<16 hex>"
  std::string account;           // 12 digits
  std::string name;              // "<service>.<cluster>.berth"
  std::string vip;               // "" on the first call: allocate
  uint16_t container_port = 0;   // the VIP's port
  uint16_t listener_port = 0;    // 0: no host listener
  std::string protocol = "tcp";  // tcp | udp
  std::vector<ServiceBackend> backends;
  bool operator==(const ServiceEndpoint&) const = default;
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

  // Sets (creates or updates) a service endpoint (see ServiceEndpoint);
  // returns its VIP.
  virtual Result<std::string> set_service_endpoint(const ServiceEndpoint& ep) = 0;
  // Removes the endpoint's rules, hosts entries and VIP. Idempotent.
  virtual Result<void> remove_service_endpoint(const std::string& id) = 0;

  // Warm pool: how many ready microhosts to keep (refilled in the
  // background), and how many there are now.
  virtual void set_warm_pool_target(int n) = 0;
  virtual int warm_pool_size() const = 0;

  // Stops background work (pool refill, event readers). Shims keep running.
  virtual void shutdown() = 0;
};

}  // namespace berth::cp
