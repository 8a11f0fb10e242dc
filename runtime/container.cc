#include "runtime/container.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>

#include "common/fs.h"
#include "common/log.h"
#include "runtime/caps.h"
#include "runtime/devices.h"
#include "runtime/hooks.h"
#include "runtime/lsm.h"
#include "runtime/namespaces.h"
#include "runtime/process.h"
#include "runtime/rootfs.h"
#include "runtime/seccomp.h"
#include "runtime/spec.h"
#include "runtime/sync.h"
#include "runtime/terminal.h"

namespace berth::runtime {

namespace {

constexpr const char* kExecSocket = "exec.sock";

std::string now_rfc3339() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  ::gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:09}Z", buf, ts.tv_nsec);
}

Result<UniqueFd> unix_socket() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error("socket", "socket(AF_UNIX)");
  return UniqueFd(fd);
}

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return error("socket", "socket path {} is longer than {} bytes", path,
                 sizeof addr.sun_path - 1);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Result<UniqueFd> connect_unix(const std::string& path) {
  BERTH_ASSIGN(UniqueFd fd, unix_socket());
  BERTH_ASSIGN(sockaddr_un addr, unix_address(path));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return sys_error("socket", "connect to {}", path);
  }
  return fd;
}

Result<UniqueFd> listen_unix(const std::string& path) {
  BERTH_ASSIGN(UniqueFd fd, unix_socket());
  BERTH_ASSIGN(sockaddr_un addr, unix_address(path));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return sys_error("socket", "bind {}", path);
  }
  if (::listen(fd.get(), 1) != 0) return sys_error("socket", "listen {}", path);
  return fd;
}

// Everything the init needs, prepared by the parent before the clone so
// that the child only acts and every input error surfaces before anything
// exists.
struct InitContext {
  const Spec* spec = nullptr;
  std::string rootfs;
  const CgroupLayout* layout = nullptr;
  std::vector<JoinedNamespace>* joined = nullptr;
  const std::vector<UniqueFd>* cgroup_join = nullptr;
  const SeccompFilter* seccomp = nullptr;
  int sync_fd = -1;
  int exec_listen_fd = -1;  // -1 with start_now
  int console_fd = -1;
  int seccomp_listener_fd = -1;
  unsigned preserve_fds = 0;
  int stdio[3] = {-1, -1, -1};
  bool die_with_parent = false;
  bool new_user_ns = false;
  bool new_cgroup_ns = false;
  bool runtime_hooks = false;
  bool has_process = true;  // false: config.json has none, `start` fails
};

// ---- The container's init, between clone and execve -------------------
//
// Runs in the child. Never returns: it execs the user process or reports
// the failed step to the parent and exits. No exceptions, no logging (the
// parent reports), nothing that allocates a lock another thread could hold.

Result<void> init_enter_namespaces(const InitContext& ctx) {
  if (ctx.new_user_ns) {
    // The parent has written the maps; become the namespace's root so files
    // we create are owned by the mapped uid 0.
    if (::setresgid(0, 0, 0) != 0) return sys_error("user namespace", "setresgid 0");
    if (::setresuid(0, 0, 0) != 0) return sys_error("user namespace", "setresuid 0");
  }
  BERTH_TRY(join_namespaces(*ctx.joined));
  // After the parent placed us in our cgroups, so that the new cgroup
  // namespace is rooted at the container's cgroup (runc does the same).
  if (ctx.new_cgroup_ns && ::unshare(CLONE_NEWCGROUP) != 0) {
    return sys_error("namespaces", "unshare(CLONE_NEWCGROUP)");
  }
  return {};
}

Result<void> init_filesystem(const InitContext& ctx, const std::string& state_json) {
  const Spec& spec = *ctx.spec;
  if (ctx.runtime_hooks) {
    // prestart and createRuntime run in the runtime's namespaces, after ours
    // exist and before pivot_root: the parent runs them.
    BERTH_TRY(sync_send(ctx.sync_fd, {SyncType::run_runtime_hooks, 0, {}}));
    BERTH_TRY(sync_expect(ctx.sync_fd, SyncType::hooks_done));
  }
  if (!spec.linux.has_namespace(NamespaceType::mount)) {
    // The caller's mount namespace: no mount at all, a chroot for a root
    // (check_runnable refused what would need mounts).
    BERTH_TRY(run_hooks(spec.hooks.create_container, state_json, "createContainer"));
    BERTH_TRY(chroot_into_rootfs(ctx.rootfs));
    BERTH_TRY(set_hostname(spec.hostname, spec.domainname));
    return write_sysctls(spec.linux.sysctl);
  }
  RootfsContext rc;
  rc.spec = &spec;
  rc.rootfs = ctx.rootfs;
  rc.in_user_namespace = spec.linux.has_namespace(NamespaceType::user);
  rc.cgroups = ctx.layout;
  BERTH_TRY(prepare_rootfs(rc));
  BERTH_TRY(run_hooks(spec.hooks.create_container, state_json, "createContainer"));
  BERTH_TRY(pivot_into_rootfs(ctx.rootfs));
  BERTH_TRY(set_hostname(spec.hostname, spec.domainname));
  // Before finalize_rootfs: /proc/sys is still writable.
  BERTH_TRY(write_sysctls(spec.linux.sysctl));
  if (spec.process->terminal) {
    BERTH_TRY(setup_terminal(ctx.console_fd, spec.process->console_size));
  }
  return finalize_rootfs(spec);
}

Result<void> init_load_seccomp(const InitContext& ctx, const std::string& state_json) {
  if (ctx.seccomp == nullptr) return {};
  BERTH_ASSIGN(UniqueFd listener, load_seccomp(*ctx.seccomp));
  if (listener) BERTH_TRY(send_fd(ctx.seccomp_listener_fd, listener.get(), state_json));
  return {};
}

// Credentials, in the only order that works: the bounding set is reduced
// while CAP_SETPCAP is held, the uid switch keeps the permitted set
// (PR_SET_KEEPCAPS), then the final sets are applied. Without
// no_new_privileges the filter must be loaded while CAP_SYS_ADMIN is still
// held, so it comes first.
Result<void> init_credentials(const InitContext& ctx, const std::string& state_json) {
  const Process& proc = *ctx.spec->process;
  if (ctx.spec->linux.personality) BERTH_TRY(set_personality(*ctx.spec->linux.personality));
  // Before the uid switch: raising a hard limit needs CAP_SYS_RESOURCE.
  BERTH_TRY(set_rlimits(proc.rlimits));
  BERTH_TRY(set_scheduling(proc));
  if (!proc.no_new_privileges) BERTH_TRY(init_load_seccomp(ctx, state_json));
  if (proc.capabilities) BERTH_TRY(prepare_capabilities(*proc.capabilities));
  BERTH_TRY(set_user(proc.user, ctx.spec->linux.has_namespace(NamespaceType::user)));
  if (proc.capabilities) BERTH_TRY(apply_capabilities(*proc.capabilities));
  BERTH_TRY(enter_cwd(proc.cwd));
  if (proc.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return sys_error("process", "prctl(PR_SET_NO_NEW_PRIVS)");
  }
  // Only stdio and the preserved fds reach the user process; our own
  // sockets are O_CLOEXEC and go at execve.
  return close_inherited_fds(3 + static_cast<int>(ctx.preserve_fds));
}

// Blocks until `start` connects to the exec socket; returns the connection,
// on which a later failure is reported.
Result<UniqueFd> init_wait_for_start(const InitContext& ctx) {
  for (;;) {
    int conn = ::accept4(ctx.exec_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn >= 0) {
      UniqueFd c(conn);
      char byte;
      if (::read(c.get(), &byte, 1) == 1) return c;
      continue;  // a connection that said nothing was not `start`
    }
    if (errno != EINTR) return sys_error("init", "accept on the exec socket");
  }
}

[[noreturn]] void init_fail(int fd, const Error& e) {
  sync_report_error(fd, e);
  ::_exit(127);
}

[[noreturn]] void init_main(const InitContext& ctx) {
  const Spec& spec = *ctx.spec;
  int report_fd = ctx.sync_fd;
  auto check = [&](const Result<void>& r) {
    if (!r) init_fail(report_fd, r.error());
  };
  // Die with the parent while it still drives the set-up: a half-made
  // container must not outlive a crashed runtime. Cleared once ready.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // First, before the init allocates anything: its v1 cgroups (the v2 one
  // came with the clone).
  check(join_cgroups_self(*ctx.cgroup_join));
  // The caller may block signals (`run` does, to forward them); the
  // container's process must start with none blocked (the mask survives
  // execve). Handlers were reset by CLONE_CLEAR_SIGHAND.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // The caller's stdio choice (the shim's log pipes); a terminal replaces
  // it later. dup2 clears O_CLOEXEC on the new fd.
  if (!spec.process->terminal) {
    for (int i = 0; i < 3; ++i) {
      if (ctx.stdio[i] >= 0 && ctx.stdio[i] != i && ::dup2(ctx.stdio[i], i) < 0) {
        init_fail(report_fd,
                  sys_error("process", "dup2 stdio fd {} to {}", ctx.stdio[i], i).error());
      }
    }
  }
  // Not dumpable until execve: another process of the container cannot
  // open /proc/<init>/exe (our host binary) or our fds (CVE-2019-5736).
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  auto go = sync_expect(ctx.sync_fd, SyncType::go);
  if (!go) init_fail(report_fd, go.error());
  const std::string& state_json = go->payload;

  check(init_enter_namespaces(ctx));
  check(init_filesystem(ctx, state_json));
  check(init_credentials(ctx, state_json));
  // Without a process (config.md: REQUIRED only when start is called) the
  // init waits like any other and fails `start`.
  Result<std::string> exe = error("process", "config.json has no process: nothing to start");
  if (ctx.has_process) {
    exe = find_executable(spec.process->args[0], spec.process->env);
    if (!exe) init_fail(report_fd, exe.error());
  }

  // Cleared before `ready`: once the parent has it, `create` may exit at
  // once, and a death signal still armed would kill the init it created.
  if (!ctx.die_with_parent) ::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  check(sync_send(ctx.sync_fd, {SyncType::ready, 0, {}}));

  UniqueFd start_conn;
  if (ctx.exec_listen_fd >= 0) {
    auto conn = init_wait_for_start(ctx);
    if (!conn) ::_exit(127);  // nobody to tell: the runtime process is gone
    start_conn = std::move(*conn);
    report_fd = start_conn.get();
    ::close(ctx.exec_listen_fd);
  }
  if (!exe) init_fail(report_fd, exe.error());
  check(run_hooks(spec.hooks.start_container, state_json, "startContainer"));
  // Last, when no_new_privileges allows loading it unprivileged: the filter
  // then does not have to allow anything the runtime itself needs.
  // For the execve only; check_lsm_fields refused it where AppArmor is off.
  // Before the filter, which need not allow the runtime's own writes.
  check(apply_apparmor_profile(spec.process->apparmor_profile));
  if (spec.process->no_new_privileges) check(init_load_seccomp(ctx, state_json));
  init_fail(report_fd, exec_process(*exe, spec.process->args, spec.process->env));
}

// ---- The parent side of create ----------------------------------------

// Undoes a partial create on every error path: kills the init, removes the
// cgroups and the state directory.
class CreateGuard {
 public:
  CreateGuard(std::string dir) : dir_(std::move(dir)) {}
  ~CreateGuard() {
    if (committed_) return;
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (cgroup_) {
      if (auto r = cgroup_->destroy(); !r) log::warn("cleanup: {}", r.error().str());
    }
    if (auto r = remove_device_nodes(rootfs_, device_nodes_); !r) {
      log::warn("cleanup: {}", r.error().str());
    }
    ::unlink(fs::join(dir_, kExecSocket).c_str());
    ::unlink(fs::join(dir_, "state.json").c_str());
    ::rmdir(dir_.c_str());
  }
  void set_pid(pid_t pid) { pid_ = pid; }
  void set_device_nodes(const std::string& rootfs, const std::vector<std::string>& paths) {
    rootfs_ = rootfs;
    device_nodes_ = paths;
  }
  void set_cgroup(CgroupDriver* cg) { cgroup_ = cg; }
  void commit() { committed_ = true; }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  CgroupDriver* cgroup_ = nullptr;
  std::string rootfs_;
  std::vector<std::string> device_nodes_;
  bool committed_ = false;
};

Result<std::string> resolve_rootfs(const Spec& spec, const std::string& bundle) {
  std::string path = spec.root.path[0] == '/' ? spec.root.path : fs::join(bundle, spec.root.path);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return sys_error("rootfs", "root.path {}", path);
  if (!S_ISDIR(st.st_mode)) return error("rootfs", "root.path {} is not a directory", path);
  char real[PATH_MAX];
  if (::realpath(path.c_str(), real) == nullptr) return sys_error("rootfs", "realpath {}", path);
  return std::string(real);
}

Result<void> check_runnable(const Spec& spec, const CreateOptions& opts) {
  BERTH_TRY(check_lsm_fields(spec));
  // config-linux.md "Namespaces": a type that is not listed is inherited
  // from the runtime; a listed path is joined (open_joined_namespaces).
  if (!spec.linux.has_namespace(NamespaceType::mount)) {
    BERTH_TRY(check_rootfs_without_mount_namespace(spec));
  }
  // config.md: process is REQUIRED when start is called, so `create` takes a
  // config without one (`start` then fails) but `run` cannot.
  if (!spec.process) {
    if (opts.start_now) return error("spec", "process: a process to run is required");
    return {};
  }
  if (spec.process->args.empty()) {
    return error("spec", "process.args: a process to run is required");
  }
  if (spec.process->terminal && opts.console_socket.empty() && opts.console_fd < 0) {
    return error("terminal",
                 "process.terminal is set but no --console-socket was given to receive it");
  }
  return {};
}

// Relative bind sources name paths in the bundle (runc resolves them so).
void resolve_bind_sources(Spec& spec, const std::string& bundle) {
  for (auto& m : spec.mounts) {
    bool bind = m.type == "bind";
    for (const auto& o : m.options) bind = bind || o == "bind" || o == "rbind";
    if (bind && !m.source.empty() && m.source[0] != '/') m.source = fs::join(bundle, m.source);
  }
}

bool has_notify_action(const Seccomp& sc) {
  if (sc.default_action == SeccompAction::notify) return true;
  for (const auto& s : sc.syscalls) {
    if (s.action == SeccompAction::notify) return true;
  }
  return false;
}

Result<void> write_oom_score_adj(pid_t pid, int value) {
  // By the parent: the init is not dumpable, and in a user namespace its
  // /proc files belong to the host's root.
  return fs::write_file(fmt::format("/proc/{}/oom_score_adj", pid), std::to_string(value));
}

// Serves the init's requests until it is ready.
Result<void> drive_init(int sync_fd, const Spec& spec, const std::string& state_json) {
  for (;;) {
    BERTH_ASSIGN(SyncMessage msg, sync_recv(sync_fd));
    switch (msg.type) {
      case SyncType::ready:
        return {};
      case SyncType::run_runtime_hooks:
        BERTH_TRY(run_hooks(spec.hooks.prestart, state_json, "prestart"));
        BERTH_TRY(run_hooks(spec.hooks.create_runtime, state_json, "createRuntime"));
        BERTH_TRY(sync_send(sync_fd, {SyncType::hooks_done, 0, {}}));
        break;
      case SyncType::error:
        return std::unexpected(sync_error(msg.err, msg.payload));
      default:
        return error("sync", "unexpected message {}", static_cast<unsigned>(msg.type));
    }
  }
}

}  // namespace

Result<CreatedContainer> create_container(const CreateOptions& opts) {
  BERTH_TRY(validate_id(opts.id));
  BERTH_ASSIGN(Spec spec, load_spec(opts.bundle));
  BERTH_TRY(check_runnable(spec, opts));
  const bool has_process = spec.process.has_value();
  // The init's own settings while it waits (root, no terminal).
  if (!has_process) spec.process.emplace();
  BERTH_ASSIGN(std::string rootfs, resolve_rootfs(spec, opts.bundle));
  resolve_bind_sources(spec, opts.bundle);

  BERTH_TRY(fs::mkdir_p(opts.root, 0700));
  std::string dir = container_dir(opts.root, opts.id);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST)
      return errno_error("container", EEXIST, "container \"{}\" already exists", opts.id);
    return sys_error("container", "mkdir {}", dir);
  }
  // Declared before the guard, which uses it while unwinding.
  std::unique_ptr<CgroupDriver> cgroup;
  CreateGuard guard(dir);

  // Validate and compile everything before the first process exists.
  BERTH_ASSIGN(std::vector<JoinedNamespace> joined, open_joined_namespaces(spec.linux));
  std::optional<SeccompFilter> seccomp;
  UniqueFd seccomp_listener;
  if (spec.linux.seccomp) {
    // Compiled filters are cached under the state root: libseccomp takes
    // ~12 ms for the default profile, loading a cached program ~0.1 ms.
    BERTH_ASSIGN(seccomp,
                 compile_seccomp(*spec.linux.seccomp, fs::join(opts.root, "seccomp-cache")));
    if (has_notify_action(*spec.linux.seccomp)) {
      BERTH_ASSIGN(seccomp_listener, connect_unix(spec.linux.seccomp->listener_path));
    }
  }
  BERTH_ASSIGN(CgroupLayout layout, CgroupLayout::detect());
  log::debug("cgroup: {} layout", layout.mode_name());
  BERTH_ASSIGN(cgroup, make_cgroup_driver(layout, spec.linux.cgroups_path, opts.id));
  BERTH_TRY(cgroup->create());
  guard.set_cgroup(cgroup.get());
  // Also without linux.resources: the devices cgroup always gets its
  // deny-all plus the default devices, as with runc.
  Resources resources = spec.linux.resources.value_or(Resources{});
  resources.devices = device_cgroup_rules(spec.linux);
  BERTH_TRY(cgroup->apply(resources));
  BERTH_ASSIGN(std::vector<UniqueFd> cgroup_join, cgroup->open_self_join_files());

  UniqueFd exec_listen;
  if (!opts.start_now) {
    BERTH_ASSIGN(exec_listen, listen_unix(fs::join(dir, kExecSocket)));
  }
  UniqueFd console;
  if (spec.process->terminal && opts.console_fd < 0) {
    BERTH_ASSIGN(console, connect_unix(opts.console_socket));
  }
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
    return sys_error("sync", "socketpair");
  }
  UniqueFd parent_end(sp[0]), child_end(sp[1]);
  BERTH_ASSIGN(UniqueFd cgroup_dir, cgroup->open_unified_dir());

  InitContext ctx;
  ctx.spec = &spec;
  ctx.rootfs = rootfs;
  ctx.layout = &layout;
  ctx.joined = &joined;
  ctx.cgroup_join = &cgroup_join;
  ctx.seccomp = seccomp ? &*seccomp : nullptr;
  ctx.sync_fd = child_end.get();
  ctx.exec_listen_fd = exec_listen.get();
  ctx.console_fd = opts.console_fd >= 0 ? opts.console_fd : console.get();
  ctx.seccomp_listener_fd = seccomp_listener.get();
  ctx.preserve_fds = opts.preserve_fds;
  std::copy(std::begin(opts.stdio), std::end(opts.stdio), std::begin(ctx.stdio));
  ctx.die_with_parent = opts.die_with_parent;
  auto* userns = spec.linux.find_namespace(NamespaceType::user);
  ctx.new_user_ns = userns != nullptr && userns->path.empty();
  auto* cgroupns = spec.linux.find_namespace(NamespaceType::cgroup);
  ctx.new_cgroup_ns = cgroupns != nullptr && cgroupns->path.empty();
  ctx.runtime_hooks = !spec.hooks.prestart.empty() || !spec.hooks.create_runtime.empty();
  ctx.has_process = has_process;

  // Looked at before the init can make any; removed again by `delete` or
  // by the guard.
  std::vector<std::string> device_nodes = device_nodes_to_create(spec, rootfs);
  guard.set_device_nodes(rootfs, device_nodes);
  BERTH_ASSIGN(SpawnedInit init,
               spawn_init(namespace_create_flags(spec.linux), cgroup_dir.get(), joined));
  if (init.pid == -1) {
    parent_end.reset();
    init_main(ctx);
  }
  guard.set_pid(init.pid);
  child_end.reset();
  exec_listen.reset();

  // The init waits for `go`. It joins its v1 cgroups itself; only when
  // CLONE_INTO_CGROUP was not possible does the parent place it (the slow
  // path: see open_self_join_files). Its ids are mapped before it goes on.
  if (cgroup_dir && !init.in_cgroup) BERTH_TRY(cgroup->add_process(init.pid));
  if (ctx.new_user_ns) {
    BERTH_TRY(write_id_mappings(init.pid, spec.linux.uid_mappings, spec.linux.gid_mappings));
  }
  if (spec.process->oom_score_adj) {
    BERTH_TRY(write_oom_score_adj(init.pid, *spec.process->oom_score_adj));
  }

  ContainerState st;
  st.id = opts.id;
  st.bundle = opts.bundle;
  st.rootfs = rootfs;
  st.status = Status::creating;
  st.pid = init.pid;
  st.pid_start_time = process_start_time(init.pid);
  st.created = now_rfc3339();
  st.annotations = spec.annotations;
  st.cgroup_paths = cgroup->paths();
  st.cgroup_ns = ctx.new_cgroup_ns;
  st.device_nodes = std::move(device_nodes);
  BERTH_TRY(save_state(opts.root, st));

  std::string state_json = st.oci_json();
  if (auto sent = sync_send(parent_end.get(), {SyncType::go, 0, state_json}); !sent) {
    // The init failed before `go` (joining its cgroups) and has exited: its
    // report is still in the socket and says more than EPIPE.
    auto report = sync_recv(parent_end.get());
    if (report && report->type == SyncType::error) {
      return wrap(sync_error(report->err, report->payload), "creating container " + opts.id);
    }
    return std::unexpected(sent.error());
  }
  if (auto r = drive_init(parent_end.get(), spec, state_json); !r) {
    return wrap(r.error(), "creating container " + opts.id);
  }

  st.status = Status::created;
  BERTH_TRY(save_state(opts.root, st));
  if (!opts.pid_file.empty()) {
    BERTH_TRY(
        fs::write_file_atomic(opts.pid_file, std::to_string(init.pid), 0644, fs::Durable::no));
  }
  guard.commit();
  CreatedContainer out{std::move(st), std::move(init.pidfd), {}};
  if (opts.start_now) out.sync = std::move(parent_end);
  return out;
}

namespace {

Result<void> mark_running_and_poststart(const std::string& root, ContainerState& st) {
  st.status = Status::running;
  BERTH_TRY(save_state(root, st));
  auto spec = load_spec(st.bundle);
  if (!spec) {
    log::warn("poststart: {}", spec.error().str());
    return {};
  }
  // runtime-spec: a failing poststart hook is only a warning.
  (void)run_hooks(spec->hooks.poststart, st.oci_json(), "poststart", HookFailure::warn);
  return {};
}

// Reads the init's verdict on its exec: EOF means execve succeeded (the
// socket is O_CLOEXEC); a message is the step that failed.
Result<void> read_exec_result(int fd, const std::string& id) {
  auto msg = sync_recv(fd);
  if (!msg) {
    if (msg.error().err == 0 && msg.error().message == "closed") return {};
    return std::unexpected(msg.error());
  }
  if (msg->type == SyncType::error) {
    return wrap(sync_error(msg->err, msg->payload), "starting container " + id);
  }
  return error("sync", "unexpected message {} from container {}", static_cast<unsigned>(msg->type),
               id);
}

}  // namespace

Result<void> wait_exec(CreatedContainer& c, const std::string& root) {
  BERTH_TRY(read_exec_result(c.sync.get(), c.state.id));
  c.sync.reset();
  return mark_running_and_poststart(root, c.state);
}

Result<void> start_container(const std::string& root, const std::string& id) {
  BERTH_ASSIGN(ContainerState st, load_state(root, id));
  Status status = refresh_status(st);
  if (status != Status::created) {
    return error("container", "cannot start container {}: it is {}, not created", id,
                 status_name(status));
  }
  // The stream socket is connected in the kernel even before the init's
  // accept; the byte tells it this is `start`.
  std::string sock = fs::join(container_dir(root, id), kExecSocket);
  BERTH_ASSIGN(UniqueFd conn, connect_unix(sock));
  char go = 1;
  if (::write(conn.get(), &go, 1) != 1) return sys_error("container", "write to {}", sock);
  // The init answers on a stream socket: reuse the framing-free reader.
  std::string buf;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::read(conn.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
  }
  if (!buf.empty()) {
    // An error report: header (type, errno) then "step\0message".
    if (buf.size() >= 8) {
      int32_t err;
      std::memcpy(&err, buf.data() + 4, sizeof err);
      return wrap(sync_error(err, buf.substr(8)), "starting container " + id);
    }
    return error("container", "starting container {}: garbled reply", id);
  }
  ::unlink(sock.c_str());
  return mark_running_and_poststart(root, st);
}

Result<ContainerState> container_state(const std::string& root, const std::string& id) {
  BERTH_ASSIGN(ContainerState st, load_state(root, id));
  st.status = refresh_status(st);
  return st;
}

namespace {

Result<UniqueFd> open_init_pidfd(const ContainerState& st) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, st.pid, 0));
  if (fd < 0) return sys_error("container", "pidfd_open {}", st.pid);
  UniqueFd pidfd(fd);
  // Checked after the pidfd exists: from here on the pid cannot be reused
  // under us, so a matching start time means it is still our init.
  if (process_start_time(st.pid) != st.pid_start_time) {
    return errno_error("container", ESRCH, "container {} is not running", st.id);
  }
  return pidfd;
}

Result<std::unique_ptr<CgroupDriver>> reopen_cgroups(const ContainerState& st) {
  BERTH_ASSIGN(CgroupLayout layout, CgroupLayout::detect());
  return open_cgroup_driver(layout, st.cgroup_paths);
}

// Waits until the init is gone (its pidfd becomes readable).
Result<void> wait_gone(int pidfd, const std::string& id) {
  struct pollfd p = {pidfd, POLLIN, 0};
  for (;;) {
    int n = ::poll(&p, 1, 30000);
    if (n > 0) return {};
    if (n == 0) return errno_error("container", ETIMEDOUT, "container {} did not die", id);
    if (errno != EINTR) return sys_error("container", "poll pidfd of {}", id);
  }
}

}  // namespace

Result<void> kill_container(const std::string& root, const std::string& id, int signal, bool all) {
  BERTH_ASSIGN(ContainerState st, container_state(root, id));
  if (all) {
    BERTH_ASSIGN(auto cg, reopen_cgroups(st));
    return cg->kill_all(signal);
  }
  if (st.status == Status::stopped) {
    return errno_error("container", ESRCH, "container {} is not running", id);
  }
  BERTH_ASSIGN(UniqueFd pidfd, open_init_pidfd(st));
  if (::syscall(SYS_pidfd_send_signal, pidfd.get(), signal, nullptr, 0) != 0) {
    return sys_error("container", "send signal {} to container {}", signal, id);
  }
  return {};
}

Result<void> delete_container(const std::string& root, const std::string& id, bool force) {
  BERTH_ASSIGN(ContainerState st, container_state(root, id));
  // runtime-spec runtime.md "Delete": deleting a container that is not
  // stopped MUST generate an error; created counts as not stopped.
  if (st.status != Status::stopped && !force) {
    return error("container", "cannot delete container {} that is not stopped: {}", id,
                 status_name(st.status));
  }
  BERTH_ASSIGN(auto cg, reopen_cgroups(st));
  if (st.status != Status::stopped) {
    // A created or (forced) running container: kill everything in it and
    // wait for the init, so the cgroup can be removed.
    if (auto pidfd = open_init_pidfd(st); pidfd) {
      ::syscall(SYS_pidfd_send_signal, pidfd->get(), SIGKILL, nullptr, 0);
      BERTH_TRY(cg->kill_all(SIGKILL));
      BERTH_TRY(wait_gone(pidfd->get(), id));
    }
  }
  // Processes that outlived a pid-namespace-less init still pin the cgroup.
  if (auto pids = cg->pids(); pids && !pids->empty()) BERTH_TRY(cg->kill_all(SIGKILL));
  BERTH_TRY(cg->destroy());
  // The init is gone, and its mount namespace with it: what is left at
  // these paths is on the rootfs's own filesystem.
  if (auto r = remove_device_nodes(st.rootfs, st.device_nodes); !r) {
    log::warn("device nodes of {} left in its rootfs: {}", id, r.error().str());
  }

  if (auto spec = load_spec(st.bundle); spec) {
    st.status = Status::stopped;
    (void)run_hooks(spec->hooks.poststop, st.oci_json(), "poststop", HookFailure::warn);
  } else {
    log::warn("poststop hooks not run: {}", spec.error().str());
  }
  std::string dir = container_dir(root, id);
  ::unlink(fs::join(dir, kExecSocket).c_str());
  if (::unlink(fs::join(dir, "state.json").c_str()) != 0 && errno != ENOENT) {
    return sys_error("container", "remove state of {}", id);
  }
  if (::rmdir(dir.c_str()) != 0) return sys_error("container", "remove {}", dir);
  return {};
}

Result<CgroupStats> container_stats(const std::string& root, const std::string& id) {
  BERTH_ASSIGN(ContainerState st, load_state(root, id));
  BERTH_ASSIGN(auto cg, reopen_cgroups(st));
  return cg->stats();
}

Result<UniqueFd> connect_unix_socket(const std::string& path) {
  return connect_unix(path);
}

Result<UniqueFd> open_container_init(const ContainerState& st) {
  return open_init_pidfd(st);
}

}  // namespace berth::runtime
