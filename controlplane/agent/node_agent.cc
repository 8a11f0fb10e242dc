#include "controlplane/agent/node_agent.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>

#include "common/fs.h"
#include "common/json.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "controlplane/agent/oci_spec.h"
#include "controlplane/agent/service_endpoint.h"
#include "controlplane/agent/shim_client.h"
#include "controlplane/agent/shim_spawn.h"
#include "controlplane/agent/usage.h"
#include "runtime/container.h"
#include "shim/log_file.h"
#include "shim/task.h"

namespace berth::cp {

using nlohmann::json;

namespace {

constexpr const char* kMicrohostFile = "microhost.json";
constexpr const char* kUsageFile = "usage.json";
constexpr const char* kNetClassDir = "/sys/class/net";
constexpr std::string_view kResourceInit = "ResourceInitializationError";

// The bundle files and task.json are replaced atomically (rename) but not
// fsynced: they matter only while the task's shim runs, and a power loss
// that could tear them ends the shim, its containers, the netns and the
// overlay mounts as well; the shim's state.json (fsynced) is the durable
// record of the task. An fsync costs ~4 ms on the node's disk, and there
// were six of them per one-container launch.
constexpr fs::Durable kBundleDurability = fs::Durable::no;

// An error whose step is the ECS reason.
std::unexpected<Error> reason_error(std::string_view reason, const Error& e) {
  return std::unexpected(Error{std::string(reason), e.err, e.str(), e.kind});
}

bool valid_task_id(const std::string& id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

Result<json> read_json_file(const std::string& path) {
  BERTH_ASSIGN(std::string text, fs::read_file(path));
  return parse_json(text, path);
}

std::string shim_binary_default() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "berth-shim";
  return (self.parent_path() / "berth-shim").string();
}

std::string json_str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// What microhost.json records (see node_agent.h).
struct TaskHoldings {
  netns::Microhost microhost;
  std::string account;  // the task's (its hosts file gets the account's services)
  bool has_port_mappings = false;
  bool has_tenant_port = false;
  std::vector<std::string> rootfs;  // overlay ids
};

json holdings_json(const TaskHoldings& h) {
  return {{"microhost", microhost_json(h.microhost)},
          {"account", h.account},
          {"port_mappings", h.has_port_mappings},
          {"tenant_port", h.has_tenant_port},
          {"rootfs", h.rootfs}};
}

Result<TaskHoldings> read_holdings(const std::string& dir) {
  std::string path = dir + "/" + kMicrohostFile;
  BERTH_ASSIGN(json j, read_json_file(path));
  TaskHoldings h;
  auto mh = j.find("microhost");
  if (!j.is_object() || mh == j.end()) return error("microhost", "{}: no microhost", path);
  BERTH_ASSIGN(h.microhost, microhost_from_json(*mh));
  h.account = json_str(j, "account");
  auto pm = j.find("port_mappings");
  h.has_port_mappings = pm != j.end() && pm->is_boolean() && pm->get<bool>();
  auto tp = j.find("tenant_port");
  h.has_tenant_port = tp != j.end() && tp->is_boolean() && tp->get<bool>();
  auto rf = j.find("rootfs");
  if (rf != j.end() && rf->is_array()) {
    for (const auto& r : *rf) {
      if (r.is_string()) h.rootfs.push_back(r.get<std::string>());
    }
  }
  return h;
}

Result<void> write_holdings(const std::string& dir, const TaskHoldings& h) {
  return fs::write_file_atomic(dir + "/" + kMicrohostFile, holdings_json(h).dump(2) + "\n");
}

netns::Protocol protocol_of(const std::string& p) {
  return p == "udp" ? netns::Protocol::udp : netns::Protocol::tcp;
}

// Kills the shim recorded in <dir>/state.json if it still runs (and is the
// shim of that directory: pids are reused).
void kill_stray_shim(const std::string& dir) {
  auto st = read_json_file(dir + "/state.json");
  if (!st) return;
  auto pid = st->find("shim_pid");
  if (pid == st->end() || !pid->is_number_integer()) return;
  auto fd = open_pidfd(pid->get<pid_t>());
  if (!fd) return;
  auto cmdline = fs::read_file("/proc/" + std::to_string(pid->get<pid_t>()) + "/cmdline");
  if (!cmdline || cmdline->find(dir) == std::string::npos) return;
  log::warn("gc: killing shim {} of task directory {}, which no live task owns", pid->get<pid_t>(),
            dir);
  (void)pidfd_signal(fd->get(), SIGKILL);
  pidfd_wait_exit(fd->get(), 10000);
}

}  // namespace

const char* agent_event_name(AgentEvent::Kind k) {
  switch (k) {
    case AgentEvent::Kind::pull_started:
      return "pull_started";
    case AgentEvent::Kind::pull_stopped:
      return "pull_stopped";
    case AgentEvent::Kind::task_started:
      return "task_started";
    case AgentEvent::Kind::container_started:
      return "container_started";
    case AgentEvent::Kind::container_exited:
      return "container_exited";
    case AgentEvent::Kind::health_changed:
      return "health_changed";
    case AgentEvent::Kind::task_stopping:
      return "task_stopping";
    case AgentEvent::Kind::task_stopped:
      return "task_stopped";
    case AgentEvent::Kind::shim_lost:
      return "shim_lost";
  }
  return "unknown";
}

// One task this agent watches: its directory, its shim and the connection.
struct NodeAgent::TaskState {
  std::string id;
  std::string dir;
  std::mutex mu;
  std::shared_ptr<ShimConnection> conn;
  pid_t shim_pid = -1;
  UniqueFd pidfd;
  bool ended = false;  // task_stopped or shim_lost delivered
};

// What a launch made so far, released in reverse when a later step fails.
struct NodeAgent::Undo {
  std::vector<std::function<void()>> steps;
  bool dismissed = false;
  void add(std::function<void()> f) { steps.push_back(std::move(f)); }
  ~Undo() {
    if (dismissed) return;
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) (*it)();
  }
};

Result<std::unique_ptr<NodeAgent>> NodeAgent::create(AgentConfig cfg) {
  if (cfg.shim_binary.empty()) cfg.shim_binary = shim_binary_default();
  if (cfg.runtime_root.empty()) cfg.runtime_root = cfg.run_dir + "/runtime";
  if (::access(cfg.shim_binary.c_str(), X_OK) != 0) {
    return sys_error("agent", "shim binary {}", cfg.shim_binary);
  }
  BERTH_TRY(fs::mkdir_p(cfg.state_dir + "/tasks", 0700));
  BERTH_TRY(fs::mkdir_p(cfg.run_dir, 0755));
  BERTH_TRY(fs::mkdir_p(cfg.runtime_root, 0700));
  BERTH_ASSIGN(AgentCgroups cgroups,
               AgentCgroups::setup(cfg.cgroup_name, cfg.move_self_to_daemon_cgroup));
  std::unique_ptr<NodeAgent> a(new NodeAgent(std::move(cfg), std::move(cgroups)));
  BERTH_TRY(a->store_.init());
  BERTH_TRY(a->net_.ensure_bridge());
  BERTH_TRY(a->fw_.ensure());
  a->load_endpoints();
  a->pool_ = std::make_unique<MicrohostPool>(a->net_);
  a->pool_->set_target(a->cfg_.warm_pool);
  return a;
}

NodeAgent::NodeAgent(AgentConfig cfg, AgentCgroups cgroups)
    : cfg_(std::move(cfg)),
      cgroups_(std::move(cgroups)),
      net_(cfg_.network),
      fw_(cfg_.firewall),
      store_(cfg_.images_dir) {
  image_source_.insecure_registries = cfg_.insecure_registries;
  image_source_.credentials = cfg_.registry_credentials;
  image_source_.hosts = cfg_.registry_hosts;
  dispatcher_ = std::thread([this] { dispatch_loop(); });
}

NodeAgent::~NodeAgent() {
  shutdown();
}

std::string NodeAgent::task_dir(const std::string& task_id) const {
  return cfg_.state_dir + "/tasks/" + task_id;
}

void NodeAgent::set_event_sink(AgentEventSink sink) {
  std::lock_guard lock(ev_mu_);
  sink_ = std::move(sink);
}

void NodeAgent::emit(AgentEvent e) {
  if (e.at == TimePoint{}) e.at = Clock::now();
  std::lock_guard lock(ev_mu_);
  events_.push_back(std::move(e));
  ev_cv_.notify_all();
}

void NodeAgent::dispatch_loop() {
  std::unique_lock lock(ev_mu_);
  for (;;) {
    ev_cv_.wait(lock, [&] { return ev_stop_ || !events_.empty(); });
    if (events_.empty()) return;  // stopping, everything delivered
    AgentEvent e = std::move(events_.front());
    events_.pop_front();
    AgentEventSink sink = sink_;
    lock.unlock();
    if (sink) sink(e);
    lock.lock();
  }
}

std::shared_ptr<NodeAgent::TaskState> NodeAgent::find(const std::string& task_id) const {
  std::lock_guard lock(mu_);
  auto it = tasks_.find(task_id);
  return it == tasks_.end() ? nullptr : it->second;
}

pid_t NodeAgent::shim_pid(const std::string& task_id) const {
  auto ts = find(task_id);
  if (!ts) return -1;
  std::lock_guard lock(ts->mu);
  return ts->shim_pid;
}

void NodeAgent::on_shim_event(const std::shared_ptr<TaskState>& ts, const json& ev) {
  std::string name = json_str(ev, "event");
  AgentEvent e;
  e.task_id = ts->id;
  auto state = ev.find("state");
  auto container = ev.find("container");
  if (name == "task_started") {
    e.kind = AgentEvent::Kind::task_started;
  } else if (name == "container_started") {
    e.kind = AgentEvent::Kind::container_started;
  } else if (name == "container_exited") {
    e.kind = AgentEvent::Kind::container_exited;
  } else if (name == "health_changed") {
    e.kind = AgentEvent::Kind::health_changed;
  } else if (name == "task_stopping") {
    e.kind = AgentEvent::Kind::task_stopping;
  } else if (name == "task_stopped") {
    e.kind = AgentEvent::Kind::task_stopped;
    std::lock_guard lock(ts->mu);
    ts->ended = true;
  } else {
    return;  // task_created, log: nothing the control plane tracks
  }
  if (container != ev.end() && container->is_object()) {
    e.container = json_str(*container, "name");
    e.state = *container;
  } else if (state != ev.end()) {
    e.state = *state;
  }
  emit(std::move(e));
}

void NodeAgent::on_shim_closed(const std::shared_ptr<TaskState>& ts) {
  int pidfd;
  {
    std::lock_guard lock(ts->mu);
    if (ts->ended) return;
    pidfd = ts->pidfd.get();
  }
  // The shim writes its final state before it closes the socket; wait for
  // its exit so that what state.json says is its last word.
  if (pidfd >= 0) pidfd_wait_exit(pidfd, 5000);
  AgentEvent e;
  e.task_id = ts->id;
  e.kind = AgentEvent::Kind::shim_lost;
  if (auto st = read_json_file(ts->dir + "/state.json")) {
    e.state = std::move(*st);
    if (json_str(e.state, "status") == "STOPPED") e.kind = AgentEvent::Kind::task_stopped;
  }
  {
    std::lock_guard lock(ts->mu);
    if (ts->ended) return;
    ts->ended = true;
  }
  emit(std::move(e));
}

Result<void> NodeAgent::connect_shim(const std::shared_ptr<TaskState>& ts, json* hello_state) {
  std::weak_ptr<TaskState> weak = ts;
  auto conn = ShimConnection::connect(
      ts->dir + "/shim.sock",
      [this, weak](const json& ev) {
        if (auto t = weak.lock()) on_shim_event(t, ev);
      },
      [this, weak] {
        if (auto t = weak.lock()) on_shim_closed(t);
      });
  if (!conn) return std::unexpected(conn.error());
  auto hello = (*conn)->call({{"op", "hello"}, {"subscribe", true}});
  if (!hello) return std::unexpected(hello.error());
  if (hello_state) {
    auto st = hello->find("state");
    *hello_state = st != hello->end() ? *st : json();
  }
  std::lock_guard lock(ts->mu);
  ts->conn = std::move(*conn);
  return {};
}

Result<Launched> NodeAgent::launch(const TaskLaunch& t) {
  Undo undo;
  auto r = launch_steps(t, undo);
  if (r) undo.dismissed = true;
  return r;
}

Result<Launched> NodeAgent::launch_steps(const TaskLaunch& t, Undo& undo) {
  const std::string& id = t.task.id;
  if (!valid_task_id(id)) {
    return error(kResourceInit, "task id {:?} is not 1-64 of [A-Za-z0-9_-]", id);
  }
  if (find(id))
    return kind_error(ErrorKind::exists, kResourceInit, "task {} is already running", id);
  const std::string dir = task_dir(id);
  if (fs::exists(dir)) {
    return kind_error(ErrorKind::exists, kResourceInit, "task directory {} exists", dir);
  }
  if (auto r = fs::mkdir_p(dir, 0700); !r) return reason_error(kResourceInit, r.error());
  undo.add([dir] { (void)fs::remove_all(dir); });

  // 1. the microhost's network.
  auto mode = netns::parse_network_mode(t.definition.network_mode);
  if (!mode) return reason_error(kResourceInit, mode.error());
  TaskHoldings held;
  held.account = t.task.account;
  std::optional<netns::Microhost> pooled;
  if (*mode == netns::NetworkMode::awsvpc) pooled = pool_->take();
  if (pooled) {
    held.microhost = std::move(*pooled);
  } else {
    auto mh = net_.create_microhost(id, *mode);
    if (!mh) return reason_error(kResourceInit, mh.error());
    held.microhost = std::move(*mh);
  }
  undo.add([this, mh = held.microhost] {
    if (auto r = net_.release_microhost(mh); !r) log::warn("launch undo: {}", r.error().str());
  });
  const netns::Microhost& mh = held.microhost;

  // Port mappings: those with a hostPort (0: an ephemeral one), in
  // definition order, so that the results map back to their containers.
  std::vector<netns::PortMapping> maps;
  for (const auto& c : t.definition.containers) {
    for (const auto& p : c.port_mappings) {
      if (p.host_port) maps.push_back({protocol_of(p.protocol), *p.host_port, p.container_port});
    }
  }
  if (!maps.empty() && mh.ip == 0) {
    return error(kResourceInit, "portMappings need a task network (networkMode {} has none)",
                 t.definition.network_mode);
  }

  // Everything this launch will make is recorded in one durable write,
  // before the first of it is made (each fsync costs milliseconds on the
  // launch path). Releasing what was recorded but never made is a no-op:
  // the firewall removes only the rules it finds, the image store only the
  // rootfs directories that exist.
  held.has_tenant_port = mh.ip != 0 && !mh.host_veth.empty();
  held.has_port_mappings = !maps.empty();
  for (const auto& c : t.definition.containers) held.rootfs.push_back(id + "." + c.name);
  if (auto r = write_holdings(dir, held); !r) return reason_error(kResourceInit, r.error());

  // Tenant isolation and anti-spoofing on the bridge (netns/firewall.h):
  // the task reaches only its own account's tasks directly, and sends only
  // from its own address and MAC, whatever capabilities it has.
  if (held.has_tenant_port) {
    auto r = fw_.add_tenant_port(id, {t.task.account, mh.host_veth, mh.ip, mh.mac});
    if (!r) return reason_error(kResourceInit, r.error());
    undo.add([this, id] { (void)fw_.remove_tenant_port(id); });
  }

  std::vector<netns::PortMapping> mapped;
  if (held.has_port_mappings) {
    auto m = fw_.add_port_mappings(id, mh.ip, maps);
    if (!m) return reason_error(kResourceInit, m.error());
    mapped = std::move(*m);
    undo.add([this, id] { (void)fw_.remove_port_mappings(id); });
  }

  // 2. images.
  emit({AgentEvent::Kind::pull_started, id, "", json(), {}});
  std::vector<rootfs::Image> images;
  for (const auto& c : t.definition.containers) {
    auto img = resolve_image(store_, image_source_, c.image, c.repository_credentials);
    if (!img) return std::unexpected(img.error());
    images.push_back(std::move(*img));
  }
  emit({AgentEvent::Kind::pull_stopped, id, "", json(), {}});

  // 3. overlays, files and bundles.
  auto resolv = net_.resolv_conf();
  if (!resolv) return reason_error(kResourceInit, resolv.error());
  rootfs::RootfsOptions ropts;
  ropts.size_limit = static_cast<uint64_t>(t.definition.ephemeral_storage_gib) << 30;
  Launched out;
  out.node_ref = dir;
  out.private_ipv4 = mh.ip ? netns::ipv4_str(mh.ip) : "";
  out.mac_address = mh.mac;
  std::vector<std::string> bundles;
  size_t map_index = 0;
  for (size_t i = 0; i < t.definition.containers.size(); ++i) {
    const ContainerDefinition& c = t.definition.containers[i];
    const std::string& rid = held.rootfs[i];
    auto rootfs = store_.mount_rootfs(rid, images[i], ropts);
    if (!rootfs) return reason_error(kResourceInit, rootfs.error());
    undo.add([this, rid] { (void)store_.release_rootfs(rid); });

    std::string bundle = dir + "/" + c.name;
    std::string hostname = c.hostname.empty() ? id.substr(0, 12) : c.hostname;
    MicrohostView view{mh.netns_path, bundle + "/hosts", bundle + "/resolv.conf",
                       bundle + "/hostname"};
    if (auto r = fs::mkdir_p(bundle, 0700); !r) return reason_error(kResourceInit, r.error());
    {
      // The account's service names (tasks on the bridge only), written
      // under the lock their changes take (see rewrite_service_hosts).
      std::lock_guard lock(svc_mu_);
      std::string hosts = net_.hosts_file(mh, hostname);
      if (mh.ip != 0) hosts = with_service_hosts(hosts, service_hosts_for(t.task.account));
      if (auto r = fs::write_file_atomic(view.hosts_file, hosts, 0644, kBundleDurability); !r)
        return reason_error(kResourceInit, r.error());
    }
    for (auto r :
         {fs::write_file_atomic(view.resolv_conf_file, *resolv, 0644, kBundleDurability),
          fs::write_file_atomic(view.hostname_file, hostname + "\n", 0644, kBundleDurability)}) {
      if (!r) return reason_error(kResourceInit, r.error());
    }
    const ContainerOverride* ov = nullptr;
    for (const auto& o : t.task.overrides.container_overrides) {
      if (o.name == c.name) ov = &o;
    }
    ContainerBuild b;
    b.definition = &t.definition;
    b.container = &c;
    b.override_ = ov;
    b.image = &images[i].config;
    b.rootfs_path = rootfs->path;
    b.microhost = view;
    b.default_hostname = hostname;
    auto spec = build_oci_spec(b);
    if (!spec) return std::unexpected(spec.error());
    // Claimed for this task here (the shim's claim_bundle finds it done and
    // does not rewrite the file).
    (*spec)["annotations"][std::string(shim::kOwnerAnnotation)] = id;
    if (auto r = fs::write_file_atomic(bundle + "/config.json", spec->dump(2) + "\n", 0644,
                                       kBundleDurability);
        !r) {
      return reason_error(kResourceInit, r.error());
    }
    bundles.push_back(bundle);

    LaunchedContainer lc;
    lc.name = c.name;
    lc.image_digest = images[i].digest.str();
    lc.runtime_id = rid;
    for (const auto& p : c.port_mappings) {
      if (!p.host_port) continue;
      const netns::PortMapping& m = mapped[map_index++];
      lc.network_bindings.push_back({"0.0.0.0", m.container_port, m.host_port,
                                     std::string(netns::protocol_name(m.protocol))});
    }
    out.containers.push_back(std::move(lc));
  }

  // 4. task.json and the shim.
  ShimTaskBuild sb;
  sb.task = &t.task;
  sb.definition = &t.definition;
  sb.runtime_root = cfg_.runtime_root;
  sb.cgroup_parent = cgroups_.tasks_parent();
  sb.bundles = bundles;
  auto task_json = build_shim_task(sb);
  if (!task_json) return std::unexpected(task_json.error());
  if (auto r = fs::write_file_atomic(dir + "/task.json", task_json->dump(2) + "\n", 0644,
                                     kBundleDurability);
      !r) {
    return reason_error(kResourceInit, r.error());
  }
  auto shim = spawn_shim(cfg_.shim_binary, dir);
  if (!shim) return reason_error(kResourceInit, shim.error());
  auto ts = std::make_shared<TaskState>();
  ts->id = id;
  ts->dir = dir;
  ts->shim_pid = shim->pid;
  ts->pidfd = std::move(shim->pidfd);
  undo.add([this, ts, id] {
    {
      std::lock_guard lock(mu_);
      tasks_.erase(id);
    }
    std::shared_ptr<ShimConnection> conn;
    {
      std::lock_guard lock(ts->mu);
      ts->ended = true;  // no events of a launch that failed
      conn = std::move(ts->conn);
    }
    (void)pidfd_signal(ts->pidfd.get(), SIGKILL);
    pidfd_wait_exit(ts->pidfd.get(), 10000);
    if (conn) conn->close();
    (void)cgroups_.remove_task(id);
  });
  if (auto r = cgroups_.add_shim(shim->pid); !r) return reason_error(kResourceInit, r.error());
  {
    std::lock_guard lock(mu_);
    tasks_[id] = ts;
  }
  if (auto r = connect_shim(ts, nullptr); !r) return reason_error(kResourceInit, r.error());
  std::shared_ptr<ShimConnection> conn;
  {
    std::lock_guard lock(ts->mu);
    conn = ts->conn;
  }
  auto started = conn->call({{"op", "start"}});
  if (!started) return reason_error(kResourceInit, started.error());
  return out;
}

Result<void> NodeAgent::stop(const std::string& task_id, const std::string& reason,
                             std::optional<int> timeout_s) {
  auto ts = find(task_id);
  if (!ts) {
    return kind_error(ErrorKind::not_found, "agent", "task {} is not running on this node",
                      task_id);
  }
  json req = {{"op", "stop"}, {"reason", reason}};
  if (timeout_s) req["timeout"] = *timeout_s;
  std::unique_lock lock(ts->mu);
  if (!ts->conn || ts->conn->closed()) {
    // The shim is gone: the task has stopped (or is reported lost) already.
    return {};
  }
  std::shared_ptr<ShimConnection> conn = ts->conn;
  lock.unlock();
  auto r = conn->call(req);
  if (!r && conn->closed()) return {};  // it stopped meanwhile
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<void> NodeAgent::release_resources(const std::string& task_id) {
  const std::string dir = task_dir(task_id);
  // The final sample, while the cgroup and the veth still count.
  BERTH_TRY(keep_final_usage(task_id));
  Result<void> first;
  auto note = [&](Result<void> r) {
    if (!r && first) first = std::move(r);
  };
  if (fs::exists(dir + "/" + kMicrohostFile)) {
    auto held = read_holdings(dir);
    if (!held) return std::unexpected(held.error());
    if (held->has_port_mappings) note(fw_.remove_port_mappings(task_id));
    if (held->has_tenant_port) note(fw_.remove_tenant_port(task_id));
    for (const auto& rid : held->rootfs) {
      // A shim that was killed left its containers' runtime state (their
      // processes died with it): deleted while the rootfs is still there.
      if (fs::exists(cfg_.runtime_root + "/" + rid)) {
        note(runtime::delete_container(cfg_.runtime_root, rid, /*force=*/true));
      }
      note(store_.release_rootfs(rid));
    }
    // The address may go to another task (of another account) next: no
    // service balances to it any more.
    if (held->microhost.ip != 0) {
      const std::string ip = netns::ipv4_str(held->microhost.ip);
      note(drop_backends([&](const ServiceBackend& b) { return b.ip != ip; }));
    }
    note(net_.release_microhost(held->microhost));
    if (first) note(fs::remove_all(dir + "/" + kMicrohostFile));
  }
  note(cgroups_.remove_task(task_id));
  return first;
}

Result<void> NodeAgent::release(const std::string& task_id) {
  if (!valid_task_id(task_id)) return error("agent", "task id {:?} is not valid", task_id);
  std::shared_ptr<TaskState> ts;
  {
    std::lock_guard lock(mu_);
    auto it = tasks_.find(task_id);
    if (it != tasks_.end()) {
      ts = it->second;
      tasks_.erase(it);
    }
  }
  if (ts) {
    std::shared_ptr<ShimConnection> conn;
    {
      std::lock_guard lock(ts->mu);
      conn = std::move(ts->conn);
    }
    // A shim still running holds the overlays: it goes first (its
    // containers die with it).
    bool ended;
    {
      std::lock_guard lock(ts->mu);
      ended = ts->ended;
    }
    // A shim that announced task_stopped exits right after: let it.
    if (ts->pidfd && ended) pidfd_wait_exit(ts->pidfd.get(), 5000);
    if (ts->pidfd && pidfd_alive(ts->pidfd.get())) {
      log::warn("release of task {}: its shim {} is still running; killing it", task_id,
                ts->shim_pid);
      (void)pidfd_signal(ts->pidfd.get(), SIGKILL);
      pidfd_wait_exit(ts->pidfd.get(), 10000);
    }
    if (conn) conn->close();
  }
  return release_resources(task_id);
}

// ---- service endpoints ---------------------------------------------------------

std::string NodeAgent::services_dir() const {
  return cfg_.state_dir + "/services";
}

void NodeAgent::load_endpoints() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(services_dir(), ec)) {
    std::string path = e.path().string();
    if (!path.ends_with(".json")) continue;
    auto text = fs::read_file(path);
    auto ep = text ? parse_service_endpoint(*text, path)
                   : Result<ServiceEndpoint>(std::unexpected(text.error()));
    if (!ep || e.path().stem().string() != ep->id) {
      log::warn("service endpoints: ignoring {}: {}", path,
                ep ? "not named after its id" : ep.error().str());
      continue;
    }
    endpoints_[ep->id] = std::move(*ep);
  }
}

std::string NodeAgent::service_hosts_for(const std::string& account) const {
  std::vector<ServiceEndpoint> all;
  for (const auto& [id, ep] : endpoints_) all.push_back(ep);
  return service_hosts_lines(all, account);
}

void NodeAgent::rewrite_service_hosts(const std::set<std::string>& accounts) {
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator(cfg_.state_dir + "/tasks", ec)) {
    const std::string dir = t.path().string();
    // Live tasks only: a released one has no microhost.json.
    if (!fs::exists(dir + "/" + kMicrohostFile)) continue;
    auto held = read_holdings(dir);
    if (!held || held->microhost.ip == 0 || !accounts.contains(held->account)) continue;
    const std::string lines = service_hosts_for(held->account);
    std::error_code ec2;
    for (const auto& c : std::filesystem::directory_iterator(dir, ec2)) {
      const std::string hosts = c.path().string() + "/hosts";
      if (!c.is_directory(ec2) || !fs::exists(hosts)) continue;
      auto current = fs::read_file(hosts);
      if (!current) continue;  // the task went meanwhile
      std::string next = with_service_hosts(*current, lines);
      if (next == *current) continue;
      // In place: the container sees the file through a bind mount.
      if (auto r = rewrite_in_place(hosts, next); !r)
        log::warn("service endpoints: hosts of task {}: {}", t.path().filename().string(),
                  r.error().str());
    }
  }
}

Result<uint32_t> NodeAgent::apply_endpoint(const ServiceEndpoint& ep,
                                           std::optional<uint32_t> wanted) {
  BERTH_ASSIGN(uint32_t vip, net_.add_vip(ep.id, wanted));
  BERTH_ASSIGN(netns::ServiceRules rules, service_rules(ep, vip));
  BERTH_TRY(fw_.set_service(ep.id, rules));
  return vip;
}

Result<void> NodeAgent::drop_backends(const std::function<bool(const ServiceBackend&)>& keep) {
  std::vector<ServiceEndpoint> changed;
  {
    std::lock_guard lock(svc_mu_);
    for (const auto& [id, ep] : endpoints_) {
      if (std::all_of(ep.backends.begin(), ep.backends.end(), keep)) continue;
      ServiceEndpoint e = ep;
      std::erase_if(e.backends, [&](const ServiceBackend& b) { return !keep(b); });
      changed.push_back(std::move(e));
    }
  }
  Result<void> first;
  for (const auto& e : changed) {
    log::info("service endpoint {}: dropping backends that are no live task's", e.id);
    auto r = set_service_endpoint(e);
    if (!r && first) first = std::unexpected(r.error());
  }
  return first;
}

Result<std::string> NodeAgent::set_service_endpoint(const ServiceEndpoint& in) {
  BERTH_ASSIGN(netns::Ipv4Net subnet, netns::Ipv4Net::parse(cfg_.network.subnet));
  BERTH_TRY(validate_service_endpoint(in, subnet));
  std::lock_guard lock(svc_mu_);
  ServiceEndpoint ep = in;
  std::optional<ServiceEndpoint> old;
  if (auto it = endpoints_.find(ep.id); it != endpoints_.end()) old = it->second;
  // The VIP asked for, else the one the endpoint has, else a new one.
  std::optional<uint32_t> wanted;
  const std::string& keep = !ep.vip.empty() ? ep.vip : old ? old->vip : ep.vip;
  if (!keep.empty()) {
    BERTH_ASSIGN(uint32_t a, netns::parse_ipv4(keep));
    wanted = a;
  }
  BERTH_ASSIGN(uint32_t vip, net_.add_vip(ep.id, wanted));
  ep.vip = netns::ipv4_str(vip);
  const std::string path = services_dir() + "/" + ep.id + ".json";
  auto undo_vip = [&] {
    if (!old || old->vip != ep.vip) (void)net_.remove_vip(ep.id, vip);
  };
  // On disk before the rules: adopt()'s gc keeps what the file names.
  auto persist = [&](const ServiceEndpoint& e) -> Result<void> {
    BERTH_TRY(fs::mkdir_p(services_dir(), 0700));
    return fs::write_file_atomic(path, service_endpoint_json(e).dump(2) + "\n", 0600,
                                 fs::Durable::yes);
  };
  if (auto w = persist(ep); !w) {
    undo_vip();
    return wrap(w.error(), "service endpoint " + ep.id);
  }
  auto rules = service_rules(ep, vip);
  auto set = rules ? fw_.set_service(ep.id, *rules) : Result<void>(std::unexpected(rules.error()));
  if (!set) {
    if (old) {
      (void)persist(*old);
    } else {
      (void)fs::remove_all(path);
    }
    undo_vip();
    return wrap(set.error(), "service endpoint " + ep.id);
  }
  if (old && !old->vip.empty() && old->vip != ep.vip) {
    if (auto a = netns::parse_ipv4(old->vip)) {
      if (auto r = net_.remove_vip(ep.id, *a); !r)
        log::warn("service endpoint {}: old VIP {}: {}", ep.id, old->vip, r.error().str());
    }
  }
  endpoints_[ep.id] = ep;
  std::set<std::string> accounts = {ep.account};
  if (old) accounts.insert(old->account);
  if (!old || old->vip != ep.vip || old->name != ep.name || old->account != ep.account)
    rewrite_service_hosts(accounts);
  return ep.vip;
}

Result<void> NodeAgent::remove_service_endpoint(const std::string& id) {
  if (!valid_service_endpoint_id(id))
    return kind_error(ErrorKind::invalid, "service endpoint",
                      "id {:?} is not \"svc-\" and 16 lowercase hex digits", id);
  std::lock_guard lock(svc_mu_);
  std::optional<ServiceEndpoint> ep;
  if (auto it = endpoints_.find(id); it != endpoints_.end()) ep = it->second;
  BERTH_TRY(fw_.remove_service(id));
  if (ep) {
    endpoints_.erase(id);
    rewrite_service_hosts({ep->account});
    if (!ep->vip.empty()) {
      BERTH_ASSIGN(uint32_t vip, netns::parse_ipv4(ep->vip));
      BERTH_TRY(net_.remove_vip(id, vip));
    }
  }
  BERTH_TRY(fs::remove_all(services_dir() + "/" + id + ".json"));
  return {};
}

Result<void> NodeAgent::purge(const std::string& task_id) {
  BERTH_TRY(release(task_id));
  BERTH_TRY(fs::remove_all(task_dir(task_id)));
  std::lock_guard lock(usage_mu_);
  last_usage_.erase(task_id);
  return {};
}

Result<std::vector<Adopted>> NodeAgent::adopt(const std::vector<LiveTask>& live) {
  std::vector<Adopted> out;
  std::vector<std::string> live_ids;
  for (const auto& l : live) {
    if (!valid_task_id(l.task_id)) return error("agent", "adopt: task id {:?}", l.task_id);
    live_ids.push_back(l.task_id);
    auto ts = std::make_shared<TaskState>();
    ts->id = l.task_id;
    ts->dir = task_dir(l.task_id);
    Adopted a;
    a.task_id = l.task_id;
    json state;
    if (!find(l.task_id) && connect_shim(ts, &state)) {
      a.shim_alive = true;
      a.state = state;
      auto pid = state.find("shim_pid");
      if (pid != state.end() && pid->is_number_integer()) {
        ts->shim_pid = pid->get<pid_t>();
        if (auto fd = open_pidfd(ts->shim_pid)) ts->pidfd = std::move(*fd);
      }
      {
        std::lock_guard lock(mu_);
        tasks_[l.task_id] = ts;
      }
      // berthd died between the shim's start and its `start`: finish it.
      if (json_str(state, "status") == "PENDING") {
        std::shared_ptr<ShimConnection> conn;
        {
          std::lock_guard lock(ts->mu);
          conn = ts->conn;
        }
        if (auto r = conn->call({{"op", "start"}}); !r) {
          log::warn("adopt of task {}: start: {}", l.task_id, r.error().str());
        }
      }
    } else if (auto existing = find(l.task_id)) {
      a.shim_alive = true;  // already watched (adopt called twice)
      if (auto st = read_json_file(ts->dir + "/state.json")) a.state = std::move(*st);
    } else {
      if (auto st = read_json_file(ts->dir + "/state.json")) a.state = std::move(*st);
    }
    out.push_back(std::move(a));
  }
  pool_->pause();
  auto r = gc(live_ids);
  pool_->resume();
  // What gc could not remove now is tried again at the next start; the
  // adopted tasks matter more.
  if (!r) log::warn("gc after adopt: {}", r.error().str());
  return out;
}

Result<void> NodeAgent::gc(const std::vector<std::string>& live) {
  std::set<std::string> live_set(live.begin(), live.end());
  const std::string tasks = cfg_.state_dir + "/tasks";
  std::vector<std::string> live_mh = pool_->ids();
  std::set<std::string> task_ips;  // addresses of the live tasks
  std::set<std::string> known;     // task dirs of this instance
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(tasks, ec)) {
    std::string id = e.path().filename().string();
    if (!e.is_directory(ec) || !valid_task_id(id)) continue;
    known.insert(id);
    if (live_set.contains(id)) {
      if (auto h = read_holdings(e.path().string())) {
        live_mh.push_back(h->microhost.id);
        if (h->microhost.ip != 0) task_ips.insert(netns::ipv4_str(h->microhost.ip));
      }
      continue;
    }
    // Not live: a shim of it still running (the store lost the task) goes
    // first, as it uses what is released next.
    kill_stray_shim(e.path().string());
    // Then what it still holds (a crash between its stop and its release,
    // or during its launch).
    if (fs::exists(e.path().string() + "/" + kMicrohostFile)) {
      if (auto r = release_resources(id); !r) log::warn("gc of task {}: {}", id, r.error().str());
    }
    // A launch that never reached its shim has no logs to keep.
    if (!fs::exists(e.path().string() + "/state.json")) (void)fs::remove_all(e.path().string());
  }
  Result<void> first;
  auto note = [&](auto r) {
    if (!r && first) first = std::unexpected(r.error());
  };
  // Service endpoints own their VIP (IPAM) and rules under their id.
  std::vector<std::string> live_owners = live;
  {
    std::lock_guard lock(svc_mu_);
    for (const auto& [id, ep] : endpoints_) {
      live_mh.push_back(id);
      live_owners.push_back(id);
    }
  }
  auto net_removed = net_.gc(live_mh);
  note(net_removed);
  auto fw_removed = fw_.gc(live_owners);
  note(fw_removed);
  // Backends that are no live task's address any more (released during the
  // outage: the address may go to another account's task next) are
  // dropped; the rest is set again, which brings back what was lost (the
  // kernel's state does not survive a reboot; the files do).
  note(drop_backends([&](const ServiceBackend& b) { return task_ips.contains(b.ip); }));
  {
    std::lock_guard lock(svc_mu_);
    for (const auto& [id, ep] : endpoints_) {
      std::optional<uint32_t> wanted;
      if (auto a = netns::parse_ipv4(ep.vip)) wanted = *a;
      auto r = apply_endpoint(ep, wanted);
      if (!r) log::warn("gc: service endpoint {}: {}", id, r.error().str());
      note(r);
    }
  }
  if (auto cs = store_.containers()) {
    for (const auto& c : *cs) {
      std::string task = c.id.substr(0, c.id.find('.'));
      if (known.contains(task) && !live_set.contains(task)) note(store_.release_rootfs(c.id));
    }
  } else {
    note(cs);
  }
  for (const auto& name : cgroups_.task_cgroups()) {
    if (!live_set.contains(name)) note(cgroups_.remove_task(name));
  }
  return first;
}

Result<ShimLogChunk> NodeAgent::logs(const std::string& task_id, const std::string& container,
                                     uint64_t offset, uint64_t max_bytes) {
  if (!valid_task_id(task_id) || !valid_task_id(container)) {
    return kind_error(ErrorKind::invalid, "logs", "task {:?} / container {:?}", task_id, container);
  }
  if (auto ts = find(task_id)) {
    std::shared_ptr<ShimConnection> conn;
    {
      std::lock_guard lock(ts->mu);
      if (ts->conn && !ts->conn->closed()) conn = ts->conn;
    }
    if (conn) {
      json req = {{"op", "logs"},
                  {"container", container},
                  {"offset", offset},
                  {"max_bytes", std::max<uint64_t>(max_bytes, 1)}};
      auto r = conn->call(req);
      if (r) {
        ShimLogChunk c;
        c.data = json_str(*r, "data");
        auto num = [&](const char* k) -> uint64_t {
          auto it = r->find(k);
          return it != r->end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
        };
        c.next_offset = num("next_offset");
        c.end_offset = num("end_offset");
        c.task_running = true;
        return c;
      }
      if (!conn->closed()) return std::unexpected(r.error());
    }
  }
  // The shim is gone: the files are the truth.
  std::string path = task_dir(task_id) + "/logs/" + container + ".log";
  if (!fs::exists(path)) {
    return kind_error(ErrorKind::not_found, "logs", "no log of container {} of task {} ({})",
                      container, task_id, path);
  }
  BERTH_ASSIGN(shim::LogFile lf, shim::LogFile::open(path));
  if (offset > lf.end_offset()) offset = lf.end_offset();
  BERTH_ASSIGN(shim::LogChunk chunk, lf.read(offset, std::max<uint64_t>(max_bytes, 1)));
  ShimLogChunk c;
  c.data = std::move(chunk.data);
  c.next_offset = chunk.next_offset;
  c.end_offset = lf.end_offset();
  c.task_running = false;
  return c;
}

void NodeAgent::set_warm_pool_target(int n) {
  if (pool_) pool_->set_target(n);
}

int NodeAgent::warm_pool_size() const {
  return pool_ ? pool_->size() : 0;
}

void NodeAgent::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (pool_) pool_->shutdown();
  std::map<std::string, std::shared_ptr<TaskState>> tasks;
  {
    std::lock_guard lock(mu_);
    tasks.swap(tasks_);
  }
  for (auto& [id, ts] : tasks) {
    std::shared_ptr<ShimConnection> conn;
    {
      std::lock_guard lock(ts->mu);
      ts->ended = true;  // the shims keep running; nothing is lost
      conn = std::move(ts->conn);
    }
    if (conn) conn->close();
  }
  {
    std::lock_guard lock(ev_mu_);
    ev_stop_ = true;
    ev_cv_.notify_all();
  }
  if (dispatcher_.joinable()) dispatcher_.join();
}

Result<UsageSample> NodeAgent::sample_usage(const std::string& task_id) {
  UsageSample s;
  s.at = Clock::now();
  BERTH_ASSIGN(auto cg, cgroups_.task_counters(task_id));
  const std::string dir = task_dir(task_id);
  if (cg) {
    s.cpu_usec = cg->cpu_usec;
    s.memory_bytes = cg->memory_bytes;
    s.memory_peak_bytes = cg->memory_peak_bytes.value_or(0);
  } else if (auto st = read_json_file(dir + "/state.json")) {
    // The shim removes the task cgroup when the task ends, after recording
    // its final counters in its state (shim/PROTOCOL.md "usage").
    static constexpr berth::jr::Document kShimUsage{"usage", "state.json"};
    berth::jr::Node u = berth::jr::Node::root(*st, kShimUsage).member("usage");
    if (u.present()) {
      BERTH_TRY(berth::jr::read(u.member("cpu_usec"), s.cpu_usec));
      BERTH_TRY(berth::jr::read(u.member("memory_bytes"), s.memory_bytes));
      BERTH_TRY(berth::jr::read(u.member("memory_peak_bytes"), s.memory_peak_bytes));
    }
  }
  if (fs::exists(dir + "/" + kMicrohostFile)) {
    BERTH_ASSIGN(TaskHoldings held, read_holdings(dir));
    if (!held.microhost.host_veth.empty()) {
      BERTH_ASSIGN(NetCounters net, read_veth_counters(kNetClassDir, held.microhost.host_veth));
      s.net_rx_bytes = net.rx_bytes;
      s.net_tx_bytes = net.tx_bytes;
    }
  }
  // The counters are cumulative over the task's life: never below what an
  // earlier sample saw (a cgroup or veth already removed reads 0).
  std::lock_guard lock(usage_mu_);
  UsageSample& last = last_usage_[task_id];
  s.memory_peak_bytes = std::max({s.memory_peak_bytes, s.memory_bytes, last.memory_peak_bytes});
  s.cpu_usec = std::max(s.cpu_usec, last.cpu_usec);
  s.net_rx_bytes = std::max(s.net_rx_bytes, last.net_rx_bytes);
  s.net_tx_bytes = std::max(s.net_tx_bytes, last.net_tx_bytes);
  last = s;
  return s;
}

Result<void> NodeAgent::keep_final_usage(const std::string& task_id) {
  const std::string dir = task_dir(task_id);
  const std::string path = dir + "/" + kUsageFile;
  // Kept already (release is idempotent: the first sample stays), or
  // nothing to keep it in.
  if (fs::exists(path) || !fs::exists(dir)) return {};
  auto s = sample_usage(task_id);
  if (!s) {
    log::warn("release of task {}: final usage sample: {}; keeping its last sample", task_id,
              s.error().str());
    std::lock_guard lock(usage_mu_);
    auto it = last_usage_.find(task_id);
    s = it != last_usage_.end() ? it->second : UsageSample{};
  }
  s->at = Clock::now();
  s->final = true;
  auto w = fs::write_file_atomic(path, usage_sample_json(*s), 0600, fs::Durable::yes);
  if (!w) return wrap(w.error(), "keeping the final usage sample of task " + task_id);
  return {};
}

Result<UsageSample> NodeAgent::usage(const std::string& task_id) {
  if (!valid_task_id(task_id)) {
    return kind_error(ErrorKind::invalid, "usage", "task id {:?} is not valid", task_id);
  }
  const std::string dir = task_dir(task_id);
  const std::string path = dir + "/" + kUsageFile;
  auto final_sample = [&]() -> Result<UsageSample> {
    BERTH_ASSIGN(std::string text, fs::read_file(path));
    return parse_usage_sample(text, path);
  };
  if (fs::exists(path)) return final_sample();
  if (!fs::exists(dir)) {
    return kind_error(ErrorKind::not_found, "usage",
                      "task {} has no state on this node (never launched here, or purged)",
                      task_id);
  }
  auto live = sample_usage(task_id);
  // A release that ended meanwhile removed what was read: its sample.
  if (!live && fs::exists(path)) return final_sample();
  return live;
}

}  // namespace berth::cp
