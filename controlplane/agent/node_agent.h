// The node agent: the Agent of this machine, in-process in berthd.
//
// Per task it keeps a state directory <state_dir>/tasks/<task_id> (the
// node_ref):
//   microhost.json       what the task holds outside the directory (its
//                        microhost network, port-mapping owner, overlay
//                        ids), written (fsync, rename) before each is made,
//                        so that release(), adopt() and gc() find it after a
//                        crash; removed once released
//   <container>/         the bundle: config.json, hosts, hostname, resolv.conf
//   task.json            the shim's task (shim/PROTOCOL.md)
//   usage.json           the final usage sample (usage.h), written (0600,
//                        fsync, rename) by the first release() before the
//                        task's cgroup and veth go; never rewritten
//   shim.sock, state.json, shim.log, logs/   the shim's
//
// Service endpoints (agent.h: ServiceEndpoint) are kept as
// <state_dir>/services/<id>.json (0600, fsync, rename), written after the
// VIP is reserved and before the firewall rules change, removed after the
// rules, the hosts lines and the VIP are gone. adopt()'s gc keeps the VIPs
// (IPAM owner: the endpoint id) and rules (owner: the endpoint id) of every
// endpoint on disk and sets them again (a VIP or rule lost in between comes
// back). A task's hosts file gets the lines of its account's endpoints at
// launch (tasks with an address on the bridge only) and whenever an
// endpoint of the account changes (service_endpoint.h); microhost.json
// records the task's account for that. A task's release drops its address
// from every endpoint's backends before the address is freed, and adopt()
// drops the backends that are no live task's address: an address handed
// to another task (maybe of another account) is never balanced to.
//
// Launch: microhost network (warm pool or built now) -> port mappings ->
// images (local store by name, else pulled) -> one overlay per container
// (ephemeralStorage as its size limit) -> bundles -> task.json -> berth-shim
// --hold (posix_spawn; the starter reaped by pid) -> the shim moved into the
// shims' cgroup -> hello{subscribe} -> start. Every step's failure releases
// what the earlier ones made and returns the ECS reason as the error's step
// ("CannotPullContainerError", "ResourceInitializationError",
// "CannotStartContainerError") with its message.
//
// Cgroups (cgroup_layout.h): relative to the cgroup berthd starts in,
// <own>/<cgroup_name>/<task>/<container> for tasks, <own>/<cgroup_name>.shims
// for the shims, <own>/<cgroup_name>.daemon for berthd itself. Run berthd
// under systemd with KillMode=process and Delegate=yes: the shims (and so
// the tasks) survive a restart or stop of the unit; berthd re-adopts them.
//
// Usage (agent.h: usage()): a task with a usage.json is released and gets
// that sample back; any other task with a directory is read live, from its
// cgroup (cgroup_layout.h: task_counters) and the host side of its veth
// (<sys/class/net>/<host_veth>, the name from microhost.json; none in
// network mode host/none: 0). A task whose cgroup is not made yet (a launch
// in progress) reads zeros, not not_found; no directory (never launched
// here, or purged) is not_found. Where the kernel keeps no memory peak
// (cgroup v2 before Linux 5.19) memory_peak_bytes is the highest
// memory_bytes this agent has seen in its samples of the task (a release
// samples once more); on v1 and v2 with memory.peak it is the kernel's.
// The cumulative counters of a sample never go below those of the
// agent's previous sample of the task. The final sample is taken by the
// first release() (also by the gc of a task left unreleased by a crash);
// if the counters cannot be read then, it is the last live sample (zeros
// when there was none: a task that never got a cgroup), with a warning.
// Writing usage.json failing fails the release before anything is
// released (it can be retried): a bill never loses its final sample.
//
// Events: every shim connection has a reader thread; events are queued to
// one dispatcher thread that calls the sink, so they are in order per task
// and the sink may call back into the agent (stop, release) freely.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
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
#include "controlplane/agent/cgroup_layout.h"
#include "controlplane/agent/images.h"
#include "controlplane/agent/microhost_pool.h"
#include "netns/firewall.h"
#include "netns/network.h"
#include "rootfs-tools/image_store.h"
#include "rootfs-tools/registry.h"

namespace berth::cp {

struct AgentConfig {
  std::string state_dir = "/var/lib/berth";  // task dirs: <state_dir>/tasks/<id>
  std::string run_dir = "/run/berth";
  netns::NetworkConfig network;
  netns::FirewallConfig firewall;
  std::string cgroup_name = "berth";
  // Move berthd into <own>/<cgroup_name>.daemon at start (see above). Tests
  // that run the agent inside the test process turn it off.
  bool move_self_to_daemon_cgroup = true;
  // The image store (berth-rootfs's default, so imported images are found).
  std::string images_dir = "/var/lib/berth/rootfs";
  std::string shim_binary;   // empty: berth-shim next to /proc/self/exe
  std::string runtime_root;  // empty: <run_dir>/runtime
  int warm_pool = 0;
  std::vector<std::string> insecure_registries;
  // repositoryCredentials names -> registry credentials.
  std::map<std::string, rootfs::Credentials> registry_credentials;
  // Registries as containerd's hosts.toml describes them: CA, client
  // certificate, mirrors.
  std::vector<rootfs::RegistryHost> registry_hosts;
  std::string region = "us-east-1";
};

class NodeAgent : public Agent {
 public:
  // Makes the directories, the image store, the bridge and the firewall
  // table, the cgroup layout, and starts the dispatcher and the warm pool.
  static Result<std::unique_ptr<NodeAgent>> create(AgentConfig cfg);
  ~NodeAgent() override;

  void set_event_sink(AgentEventSink sink) override;
  Result<Launched> launch(const TaskLaunch& t) override;
  Result<void> stop(const std::string& task_id, const std::string& reason,
                    std::optional<int> timeout_s) override;
  Result<void> release(const std::string& task_id) override;
  Result<void> purge(const std::string& task_id) override;
  Result<UsageSample> usage(const std::string& task_id) override;
  Result<std::vector<Adopted>> adopt(const std::vector<LiveTask>& live) override;
  Result<ShimLogChunk> logs(const std::string& task_id, const std::string& container,
                            uint64_t offset, uint64_t max_bytes) override;
  Result<std::string> set_service_endpoint(const ServiceEndpoint& ep) override;
  Result<void> remove_service_endpoint(const std::string& id) override;
  void set_warm_pool_target(int n) override;
  int warm_pool_size() const override;
  void shutdown() override;

  const AgentConfig& config() const { return cfg_; }
  const AgentCgroups& cgroups() const { return cgroups_; }
  std::string task_dir(const std::string& task_id) const;
  // The shim's pid of a task this agent watches (-1: none).
  pid_t shim_pid(const std::string& task_id) const;

 private:
  struct TaskState;
  struct Undo;

  NodeAgent(AgentConfig cfg, AgentCgroups cgroups);
  void emit(AgentEvent e);
  void dispatch_loop();
  Result<void> connect_shim(const std::shared_ptr<TaskState>& ts, nlohmann::json* hello_state);
  void on_shim_event(const std::shared_ptr<TaskState>& ts, const nlohmann::json& ev);
  void on_shim_closed(const std::shared_ptr<TaskState>& ts);
  std::shared_ptr<TaskState> find(const std::string& task_id) const;
  Result<void> release_resources(const std::string& task_id);
  Result<void> gc(const std::vector<std::string>& live);
  Result<Launched> launch_steps(const TaskLaunch& t, Undo& undo);
  Result<UsageSample> sample_usage(const std::string& task_id);
  Result<void> keep_final_usage(const std::string& task_id);
  // Service endpoints; the callers hold svc_mu_.
  std::string services_dir() const;
  void load_endpoints();
  std::string service_hosts_for(const std::string& account) const;
  void rewrite_service_hosts(const std::set<std::string>& accounts);
  Result<uint32_t> apply_endpoint(const ServiceEndpoint& ep, std::optional<uint32_t> wanted);
  // Sets again every endpoint with a backend `keep` refuses, without it
  // (takes svc_mu_ itself).
  Result<void> drop_backends(const std::function<bool(const ServiceBackend&)>& keep);

  AgentConfig cfg_;
  AgentCgroups cgroups_;
  netns::Network net_;
  netns::Firewall fw_;
  rootfs::ImageStore store_;
  ImageSource image_source_;
  std::unique_ptr<MicrohostPool> pool_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<TaskState>> tasks_;

  // The last live sample of each task (running memory peak; what a final
  // sample falls back to when the counters cannot be read at release).
  std::mutex usage_mu_;
  std::map<std::string, UsageSample> last_usage_;

  // Service endpoints by id, as on disk; guards every hosts-file write.
  std::mutex svc_mu_;
  std::map<std::string, ServiceEndpoint> endpoints_;

  std::mutex ev_mu_;
  std::condition_variable ev_cv_;
  std::deque<AgentEvent> events_;
  AgentEventSink sink_;
  bool ev_stop_ = false;
  std::thread dispatcher_;
  bool shut_down_ = false;
};

}  // namespace berth::cp
