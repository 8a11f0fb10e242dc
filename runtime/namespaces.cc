#include "runtime/namespaces.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "common/fs.h"
#include "common/log.h"

namespace berth::runtime {

int namespace_clone_flag(NamespaceType t) {
  switch (t) {
    case NamespaceType::pid:
      return CLONE_NEWPID;
    case NamespaceType::network:
      return CLONE_NEWNET;
    case NamespaceType::mount:
      return CLONE_NEWNS;
    case NamespaceType::ipc:
      return CLONE_NEWIPC;
    case NamespaceType::uts:
      return CLONE_NEWUTS;
    case NamespaceType::user:
      return CLONE_NEWUSER;
    case NamespaceType::cgroup:
      return CLONE_NEWCGROUP;
    case NamespaceType::time:
      return CLONE_NEWTIME;
  }
  return 0;
}

unsigned long namespace_create_flags(const Linux& linux) {
  unsigned long flags = 0;
  for (const auto& ns : linux.namespaces) {
    if (ns.path.empty() && ns.type != NamespaceType::cgroup) {
      flags |= static_cast<unsigned long>(namespace_clone_flag(ns.type));
    }
  }
  return flags;
}

Result<std::vector<JoinedNamespace>> open_joined_namespaces(const Linux& linux) {
  std::vector<JoinedNamespace> out;
  for (const auto& ns : linux.namespaces) {
    if (ns.path.empty()) continue;
    BERTH_ASSIGN(UniqueFd fd, fs::open(ns.path, O_RDONLY));
    int type = ::ioctl(fd.get(), NS_GET_NSTYPE);
    if (type < 0) {
      return sys_error("namespaces", "{} namespace path {}: not a namespace file",
                       namespace_name(ns.type), ns.path);
    }
    if (type != namespace_clone_flag(ns.type)) {
      return error("namespaces", "{} namespace path {}: is a namespace of another type",
                   namespace_name(ns.type), ns.path);
    }
    out.push_back({ns.type, std::move(fd)});
  }
  // The user namespace first: namespaces joined after it are then entered
  // with the capabilities the process holds inside it.
  std::stable_partition(out.begin(), out.end(),
                        [](const JoinedNamespace& j) { return j.type == NamespaceType::user; });
  return out;
}

Result<void> join_namespaces(const std::vector<JoinedNamespace>& joined) {
  for (const auto& j : joined) {
    if (j.type == NamespaceType::pid || j.type == NamespaceType::time) continue;
    if (::setns(j.fd.get(), namespace_clone_flag(j.type)) != 0) {
      return sys_error("namespaces", "setns into the {} namespace", namespace_name(j.type));
    }
  }
  return {};
}

namespace {

long raw_clone3(struct clone_args* args) {
  return ::syscall(SYS_clone3, args, sizeof(*args));
}

// Enters a joined pid (or time) namespace for our future children only and
// gives back the fd to restore the parent's own afterwards.
Result<UniqueFd> enter_for_children(const std::vector<JoinedNamespace>& joined, NamespaceType type,
                                    const char* self_path) {
  for (const auto& j : joined) {
    if (j.type != type) continue;
    BERTH_ASSIGN(UniqueFd self, fs::open(self_path, O_RDONLY));
    if (::setns(j.fd.get(), namespace_clone_flag(type)) != 0) {
      return sys_error("namespaces", "setns into the {} namespace", namespace_name(type));
    }
    return self;
  }
  return UniqueFd();
}

}  // namespace

Result<SpawnedInit> spawn_init(unsigned long flags, int cgroup_fd,
                               const std::vector<JoinedNamespace>& joined, bool legacy_clone) {
  // The caller's own pid/time namespaces for its later children, put back
  // on every path out of here (a failed clone included: a long-lived caller
  // like berth-shim would otherwise fork everything after into a container).
  UniqueFd restore_pid, restore_time;
  auto restore = [&]() -> Result<void> {
    if (restore_pid && ::setns(restore_pid.get(), CLONE_NEWPID) != 0) {
      return sys_error("namespaces", "restore pid_for_children");
    }
    if (restore_time && ::setns(restore_time.get(), CLONE_NEWTIME) != 0) {
      return sys_error("namespaces", "restore time_for_children");
    }
    return {};
  };
  BERTH_ASSIGN(restore_pid,
               enter_for_children(joined, NamespaceType::pid, "/proc/self/ns/pid_for_children"));
  auto entered_time =
      enter_for_children(joined, NamespaceType::time, "/proc/self/ns/time_for_children");
  if (!entered_time) {
    (void)restore();
    return std::unexpected(entered_time.error());
  }
  restore_time = std::move(*entered_time);
  SpawnedInit out;
  int pidfd = -1;
  struct clone_args args = {};
  // CLONE_CLEAR_SIGHAND: the caller's signal handlers mean nothing in the
  // container (ignored signals stay ignored, as POSIX requires).
  args.flags = flags | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  if (cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cgroup_fd);
  }
  long pid = -1;
  errno = ENOSYS;
  if (!legacy_clone) pid = raw_clone3(&args);
  if (pid < 0 && cgroup_fd >= 0 && errno != ENOSYS) {
    // Some kernels refuse CLONE_INTO_CGROUP for a cgroup in another
    // hierarchy mode (EOPNOTSUPP) or while controllers are being enabled
    // (EBUSY): the caller then adds the pid by hand.
    log::debug("namespaces: clone3 into cgroup failed ({}), retrying without", errno);
    args.flags &= ~static_cast<uint64_t>(CLONE_INTO_CGROUP);
    pid = raw_clone3(&args);
  } else if (pid >= 0 && cgroup_fd >= 0) {
    out.in_cgroup = true;
  }
  if (pid < 0 && errno == ENOSYS) {
    log::debug("namespaces: clone3 unavailable, falling back to clone(2)");
    pid =
        ::syscall(SYS_clone, (flags & 0xffffffffUL) | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  }
  if (pid < 0) {
    auto e = sys_error("namespaces", "clone3 with flags {:#x}", flags);
    (void)restore();
    return e;
  }
  if (pid == 0) return out;  // child: pid stays -1 in out, caller checks the value
  // Parent: restore our own namespaces for later children.
  BERTH_TRY(restore());
  out.pid = static_cast<pid_t>(pid);
  out.pidfd.reset(pidfd);
  return out;
}

namespace {

std::string format_mappings(const std::vector<IdMapping>& maps) {
  std::string out;
  for (const auto& m : maps) {
    out += fmt::format("{} {} {}\n", m.container_id, m.host_id, m.size);
  }
  return out;
}

}  // namespace

Result<void> write_id_mappings(pid_t pid, const std::vector<IdMapping>& uids,
                               const std::vector<IdMapping>& gids) {
  std::string base = fmt::format("/proc/{}/", pid);
  if (!uids.empty()) {
    if (auto r = fs::write_file(base + "uid_map", format_mappings(uids)); !r) {
      return wrap(r.error(), "user namespace: uidMappings");
    }
  }
  if (!gids.empty()) {
    if (auto r = fs::write_file(base + "gid_map", format_mappings(gids)); !r) {
      return wrap(r.error(), "user namespace: gidMappings");
    }
  }
  return {};
}

}  // namespace berth::runtime
