#include "runtime/exec.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <utility>

#include "common/fs.h"
#include "common/log.h"
#include "runtime/caps.h"
#include "runtime/cgroup.h"
#include "runtime/container.h"
#include "runtime/namespaces.h"
#include "runtime/process.h"
#include "runtime/seccomp.h"
#include "runtime/spec.h"
#include "runtime/state.h"
#include "runtime/sync.h"

namespace berth::runtime {

namespace {

constexpr const char* kStep = "exec";

// ---- What the parent prepares before the fork ------------------------------

// The container's init, pinned by a pidfd. Refuses anything but a running
// container: a created one has not exec'd its process yet (its init still
// runs berth's code), a stopped one has no namespaces left to join.
Result<UniqueFd> open_running_init(const ContainerState& st) {
  Status status = refresh_status(st);
  if (status != Status::running) {
    return error(kStep, "cannot exec in container {}: it is {}, not running", st.id,
                 status_name(status));
  }
  return open_container_init(st);
}

struct NamespaceFile {
  const char* name;  // in /proc/<pid>/ns
  int flag;
};
constexpr NamespaceFile kNamespaceFiles[] = {
    {"user", CLONE_NEWUSER},     {"mnt", CLONE_NEWNS},    {"uts", CLONE_NEWUTS},
    {"ipc", CLONE_NEWIPC},       {"net", CLONE_NEWNET},   {"pid", CLONE_NEWPID},
    {"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME},
};

// The CLONE_NEW* flags of the init's namespaces that are not ours. Those we
// share are left out: setns() into one's own user namespace is EINVAL, and
// a namespace the spec joined by path may well be the caller's.
Result<int> namespaces_to_join(const ContainerState& st) {
  int flags = 0;
  for (const auto& ns : kNamespaceFiles) {
    std::string theirs_path = fmt::format("/proc/{}/ns/{}", st.pid, ns.name);
    std::string ours_path = fmt::format("/proc/self/ns/{}", ns.name);
    struct stat theirs, ours;
    if (::stat(theirs_path.c_str(), &theirs) != 0) {
      if (errno == ENOENT && ::stat(ours_path.c_str(), &ours) != 0) continue;  // old kernel
      return sys_error("namespaces", "stat {}", theirs_path);
    }
    if (::stat(ours_path.c_str(), &ours) != 0) return sys_error("namespaces", "stat {}", ours_path);
    if (theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino) flags |= ns.flag;
  }
  // The paths named the init only if it is still the same process.
  if (process_start_time(st.pid) != st.pid_start_time) {
    return errno_error(kStep, ESRCH, "container {} is not running", st.id);
  }
  return flags;
}

// For spawn_init: the pid and time namespaces apply to children only, so
// the caller enters them (pid_for_children, time_for_children) around the
// clone, which makes the process a direct child of the caller that is born
// in the container's namespaces. setns() takes the init's pidfd for them.
Result<std::vector<JoinedNamespace>> namespaces_for_children(int pidfd, int flags) {
  std::vector<JoinedNamespace> out;
  for (auto [type, flag] : {std::pair{NamespaceType::pid, CLONE_NEWPID},
                            std::pair{NamespaceType::time, CLONE_NEWTIME}}) {
    if (!(flags & flag)) continue;
    int fd = ::fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return sys_error(kStep, "dup the init's pidfd");
    out.push_back({type, UniqueFd(fd)});
  }
  return out;
}

// Puts the caller's own pid and time namespaces for children back, whatever
// spawn_init returns: it restores them only after a successful clone, and a
// clone into a container whose init has just died fails (ENOMEM). A
// long-lived caller (the shim) would otherwise fork everything after that
// into a dead pid namespace.
class ForChildrenRestore {
 public:
  ForChildrenRestore() = default;
  ForChildrenRestore(const ForChildrenRestore&) = delete;
  ForChildrenRestore& operator=(const ForChildrenRestore&) = delete;
  ~ForChildrenRestore() {
    if (pid_) (void)::setns(pid_.get(), CLONE_NEWPID);
    if (time_) (void)::setns(time_.get(), CLONE_NEWTIME);
  }
  Result<void> save(const std::vector<JoinedNamespace>& entered) {
    for (const auto& j : entered) {
      bool pid = j.type == NamespaceType::pid;
      BERTH_ASSIGN(UniqueFd fd, fs::open(pid ? "/proc/self/ns/pid_for_children"
                                             : "/proc/self/ns/time_for_children",
                                         O_RDONLY | O_CLOEXEC));
      (pid ? pid_ : time_) = std::move(fd);
    }
    return {};
  }

 private:
  UniqueFd pid_, time_;
};

// Everything the child needs, so that it only acts.
struct ExecContext {
  const Spec* spec = nullptr;
  const ExecOptions* opts = nullptr;
  const std::vector<std::string>* env = nullptr;
  std::string cwd;
  int init_pidfd = -1;
  int join_flags = 0;  // setns() by the child: all but pid and time
  const std::vector<UniqueFd>* cgroup_join = nullptr;
  const SeccompFilter* seccomp = nullptr;
  int seccomp_listener_fd = -1;
  std::string state_json;  // sent with a notify listener
  int sync_fd = -1;
};

Result<void> check_options(const ExecOptions& opts, const Spec& spec, const std::string& id) {
  if (opts.args.empty() || opts.args[0].empty()) {
    return error(kStep, "no program to run in container {}: args is empty", id);
  }
  if (!opts.cwd.empty() && opts.cwd[0] != '/') {
    return error(kStep, "cwd {} is not an absolute path", opts.cwd);
  }
  if (!spec.process) return error("spec", "container {} has no process in its config.json", id);
  // The init of such a container only chrooted into its rootfs, and setns()
  // into its (the caller's) mount namespace would not put the new process
  // there: it would run in the host's root.
  if (!spec.linux.has_namespace(NamespaceType::mount)) {
    return error(kStep, "container {} has no mount namespace: exec is not supported for it", id);
  }
  // The exec'd process would run unconfined.
  if (!spec.process->apparmor_profile.empty()) {
    return error(kStep, "container {} has process.apparmorProfile, which exec does not apply", id);
  }
  return {};
}

// ---- The child, between fork and execve ----------------------------------
//
// Never returns: it execs or reports the failed step and exits. No
// exceptions and no logging, as in the container's init.

// Gives the process the caller's chosen stdio. The fds are first copied
// above 2: the caller may cross them (stdio[1] = 2, stdio[2] = 1), and
// dup2() of an fd onto itself would keep its close-on-exec flag.
Result<void> set_stdio(const int (&stdio)[3]) {
  UniqueFd copies[3];
  for (int i = 0; i < 3; ++i) {
    if (stdio[i] < 0) continue;
    copies[i].reset(::fcntl(stdio[i], F_DUPFD_CLOEXEC, 3));
    if (!copies[i]) return sys_error(kStep, "stdio: fd {} for fd {}", stdio[i], i);
  }
  for (int i = 0; i < 3; ++i) {
    if (copies[i] && ::dup2(copies[i].get(), i) < 0) {
      return sys_error(kStep, "stdio: dup2 fd {} to {}", stdio[i], i);
    }
  }
  return {};
}

// Host-side attributes, while the process is still the runtime's root in
// the host's namespaces: raising a hard rlimit or lowering oom_score_adj
// needs CAP_SYS_RESOURCE in the initial user namespace, which a joined user
// namespace would take away; /proc/self is the host's proc.
Result<void> exec_host_attributes(const ExecContext& ctx) {
  const Process& proc = *ctx.spec->process;
  BERTH_TRY(set_rlimits(proc.rlimits));
  if (proc.oom_score_adj) {
    BERTH_TRY(fs::write_file("/proc/self/oom_score_adj", std::to_string(*proc.oom_score_adj)));
  }
  return {};
}

// All of the init's namespaces at once (setns with a pidfd, Linux 5.8): the
// kernel orders them itself, user namespace first. The cgroups were joined
// before, so that in a joined cgroup namespace the process is at its root.
Result<void> exec_enter_namespaces(const ExecContext& ctx) {
  if (ctx.join_flags == 0) return {};
  if (::setns(ctx.init_pidfd, ctx.join_flags) != 0) {
    return sys_error("namespaces",
                     "setns into the namespaces of the container's init (flags {:#x})",
                     static_cast<unsigned>(ctx.join_flags));
  }
  return {};
}

Result<void> exec_load_seccomp(const ExecContext& ctx) {
  if (ctx.seccomp == nullptr) return {};
  BERTH_ASSIGN(UniqueFd listener, load_seccomp(*ctx.seccomp));
  if (listener) BERTH_TRY(send_fd(ctx.seccomp_listener_fd, listener.get(), ctx.state_json));
  return {};
}

// The init's credential sequence, in its order (see init_credentials in
// container.cc): personality, the filter first only when it needs
// CAP_SYS_ADMIN, bounding set before the uid switch, final sets after it.
Result<void> exec_credentials(const ExecContext& ctx) {
  const Spec& spec = *ctx.spec;
  const Process& proc = *spec.process;
  if (spec.linux.personality) BERTH_TRY(set_personality(*spec.linux.personality));
  BERTH_TRY(set_scheduling(proc));
  if (!proc.no_new_privileges) BERTH_TRY(exec_load_seccomp(ctx));
  if (proc.capabilities) BERTH_TRY(prepare_capabilities(*proc.capabilities));
  BERTH_TRY(set_user(proc.user, spec.linux.has_namespace(NamespaceType::user)));
  if (proc.capabilities) BERTH_TRY(apply_capabilities(*proc.capabilities));
  BERTH_TRY(enter_cwd(ctx.cwd));
  if (proc.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return sys_error("process", "prctl(PR_SET_NO_NEW_PRIVS)");
  }
  // Only stdio reaches the program: the caller's fds and ours (the pidfd,
  // the cgroup files, the sync socket) are close-on-exec from here.
  return close_inherited_fds(3);
}

[[noreturn]] void exec_fail(int fd, const Error& e) {
  sync_report_error(fd, e);
  ::_exit(127);
}

[[noreturn]] void exec_child_main(const ExecContext& ctx) {
  auto check = [&](const Result<void>& r) {
    if (!r) exec_fail(ctx.sync_fd, r.error());
  };
  // v1 hierarchies first, before the process allocates anything (the v2
  // cgroup came with the clone, or the parent places us before `go`).
  check(join_cgroups_self(*ctx.cgroup_join));
  // The caller may block signals (`berth-runtime exec` does, to forward
  // them); the mask survives execve. Handlers: CLONE_CLEAR_SIGHAND.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Not dumpable until execve: the container's processes must not reach our
  // fds or /proc/<pid>/exe, a host binary, once we are in their pid
  // namespace (CVE-2019-5736; runc's setns process does the same).
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (auto go = sync_expect(ctx.sync_fd, SyncType::go); !go) exec_fail(ctx.sync_fd, go.error());

  check(exec_host_attributes(ctx));
  check(exec_enter_namespaces(ctx));
  check(exec_credentials(ctx));
  auto exe = find_executable(ctx.opts->args[0], *ctx.env);
  if (!exe) exec_fail(ctx.sync_fd, exe.error());
  // Last, when no_new_privileges lets an unprivileged process load it.
  if (ctx.spec->process->no_new_privileges) check(exec_load_seccomp(ctx));
  // After every step that uses one of our fds: a caller with a closed
  // stdio fd may have had one of them (the pidfd, a cgroup file) land on
  // 0..2. Only the sync socket is still needed, and it is kept above 2.
  check(set_stdio(ctx.opts->stdio));
  exec_fail(ctx.sync_fd, exec_process(*exe, ctx.opts->args, *ctx.env));
}

// ---- The parent side ----------------------------------------------------

// Kills and reaps the child on every error path.
class ChildGuard {
 public:
  ChildGuard() = default;
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ~ChildGuard() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  void set(pid_t pid) { pid_ = pid; }
  pid_t release() { return std::exchange(pid_, -1); }

 private:
  pid_t pid_ = -1;
};

// EOF on the sync socket means execve succeeded (the child's end is
// O_CLOEXEC); a message is the step that failed.
Result<void> read_exec_result(int fd) {
  auto msg = sync_recv(fd);
  if (!msg) {
    if (msg.error().err == 0 && msg.error().message == "closed") return {};
    return std::unexpected(msg.error());
  }
  if (msg->type == SyncType::error) return std::unexpected(sync_error(msg->err, msg->payload));
  return error("sync", "unexpected message {} from the exec'd process",
               static_cast<unsigned>(msg->type));
}

}  // namespace

// The recipe. Everything that can fail on input (state, spec, cgroups,
// seccomp) is done before the fork; the child then joins, in order: its v1
// cgroups (the v2 one by CLONE_INTO_CGROUP), host-side limits, the
// namespaces, the credentials, and execs.
Result<ExecedProcess> exec_in_container(const std::string& root, const std::string& id,
                                        const ExecOptions& opts) {
  BERTH_ASSIGN(ContainerState st, load_state(root, id));
  BERTH_ASSIGN(UniqueFd pidfd, open_running_init(st));
  // The spec as it is now in the bundle: berth keeps no copy of it.
  BERTH_ASSIGN(Spec spec, load_spec(st.bundle));
  BERTH_TRY(check_options(opts, spec, id));
  BERTH_ASSIGN(int ns_flags, namespaces_to_join(st));

  BERTH_ASSIGN(CgroupLayout layout, CgroupLayout::detect());
  BERTH_ASSIGN(auto cgroup, open_cgroup_driver(layout, st.cgroup_paths));
  BERTH_ASSIGN(std::vector<UniqueFd> cgroup_join, cgroup->open_self_join_files());
  BERTH_ASSIGN(UniqueFd cgroup_dir, cgroup->open_unified_dir());

  std::optional<SeccompFilter> seccomp;
  UniqueFd seccomp_listener;
  if (spec.linux.seccomp) {
    BERTH_ASSIGN(seccomp, compile_seccomp(*spec.linux.seccomp, fs::join(root, "seccomp-cache")));
    if (seccomp->uses_notify()) {
      BERTH_ASSIGN(seccomp_listener, connect_unix_socket(spec.linux.seccomp->listener_path));
    }
  }
  BERTH_ASSIGN(std::vector<JoinedNamespace> for_children,
               namespaces_for_children(pidfd.get(), ns_flags));

  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
    return sys_error("sync", "socketpair");
  }
  UniqueFd parent_end(sp[0]), child_end(sp[1]);
  if (child_end.get() < 3) {
    // Out of the way of set_stdio's dup2s (a caller with stdio closed).
    child_end.reset(::fcntl(child_end.get(), F_DUPFD_CLOEXEC, 3));
    if (!child_end) return sys_error("sync", "move the sync socket above fd 2");
  }

  ExecContext ctx;
  ctx.spec = &spec;
  ctx.opts = &opts;
  ctx.env = opts.env.empty() ? &spec.process->env : &opts.env;
  ctx.cwd = opts.cwd.empty() ? spec.process->cwd : opts.cwd;
  ctx.init_pidfd = pidfd.get();
  ctx.join_flags = ns_flags & ~(CLONE_NEWPID | CLONE_NEWTIME);
  ctx.cgroup_join = &cgroup_join;
  ctx.seccomp = seccomp ? &*seccomp : nullptr;
  ctx.seccomp_listener_fd = seccomp_listener.get();
  if (seccomp_listener) ctx.state_json = st.oci_json();
  ctx.sync_fd = child_end.get();

  std::optional<ForChildrenRestore> restore(std::in_place);
  BERTH_TRY(restore->save(for_children));
  BERTH_ASSIGN(SpawnedInit child, spawn_init(0, cgroup_dir.get(), for_children));
  if (child.pid == -1) {
    parent_end.reset();
    exec_child_main(ctx);
  }
  restore.reset();
  ChildGuard guard;
  guard.set(child.pid);
  child_end.reset();
  log::debug("exec: pid {} in container {}, namespaces {:#x}, {}", child.pid, id, ns_flags,
             child.in_cgroup ? "cloned into its cgroup" : "cgroup joined after the clone");

  if (cgroup_dir && !child.in_cgroup) BERTH_TRY(cgroup->add_process(child.pid));
  if (auto sent = sync_send(parent_end.get(), {SyncType::go, 0, {}}); !sent) {
    // The child failed before `go` (joining its v1 cgroups) and has exited:
    // its report is still in the socket and says more than EPIPE.
    auto report = sync_recv(parent_end.get());
    if (report && report->type == SyncType::error) {
      return wrap(sync_error(report->err, report->payload), "exec in container " + id);
    }
    return std::unexpected(sent.error());
  }
  if (auto r = read_exec_result(parent_end.get()); !r) {
    return wrap(r.error(), "exec in container " + id);
  }

  ExecedProcess out;
  out.pid = guard.release();
  out.pidfd = std::move(child.pidfd);
  if (!out.pidfd) {
    // The clone(2) fallback gives no pidfd; the pid is our unreaped child,
    // so it cannot have been reused.
    out.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, out.pid, 0)));
  }
  return out;
}

}  // namespace berth::runtime
