#include "runtime/process.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>

#include "common/fs.h"

namespace berth::runtime {

Result<void> set_hostname(const std::string& hostname, const std::string& domainname) {
  if (!hostname.empty() && ::sethostname(hostname.data(), hostname.size()) != 0) {
    return sys_error("uts", "sethostname \"{}\"", hostname);
  }
  if (!domainname.empty() && ::setdomainname(domainname.data(), domainname.size()) != 0) {
    return sys_error("uts", "setdomainname \"{}\"", domainname);
  }
  return {};
}

Result<void> write_sysctls(const std::map<std::string, std::string>& sysctl,
                           const std::string& proc_sys) {
  for (const auto& [key, value] : sysctl) {
    std::string rel = key;
    for (auto& c : rel) {
      if (c == '.') c = '/';
    }
    if (auto r = fs::write_file(fs::join(proc_sys, rel), value); !r) {
      return wrap(r.error(), "sysctl " + key);
    }
  }
  return {};
}

Result<void> set_rlimits(const std::vector<Rlimit>& rlimits) {
  for (const auto& rl : rlimits) {
    struct rlimit lim = {static_cast<rlim_t>(rl.soft), static_cast<rlim_t>(rl.hard)};
    if (::setrlimit(static_cast<__rlimit_resource_t>(rl.resource), &lim) != 0) {
      return sys_error("rlimits", "setrlimit {} soft {} hard {}", rl.type, rl.soft, rl.hard);
    }
  }
  return {};
}

namespace {

// The uapi's struct sched_attr (SCHED_ATTR_SIZE_VER0, 48 bytes); glibc 2.36
// has no sched_setattr wrapper.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};
static_assert(sizeof(SchedAttr) == 48);

constexpr int kIoprioWhoProcess = 1;
constexpr int kIoprioClassShift = 13;

}  // namespace

Result<void> set_scheduling(const Process& proc) {
  if (proc.scheduler) {
    const Scheduler& s = *proc.scheduler;
    SchedAttr attr{};
    attr.size = sizeof(attr);
    attr.sched_policy = static_cast<uint32_t>(s.policy);
    attr.sched_flags = s.flags;
    attr.sched_nice = s.nice;
    attr.sched_priority = static_cast<uint32_t>(s.priority);
    attr.sched_runtime = s.runtime;
    attr.sched_deadline = s.deadline;
    attr.sched_period = s.period;
    if (::syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
      return sys_error("process.scheduler", "sched_setattr policy {} nice {} priority {}", s.policy,
                       s.nice, s.priority);
    }
  }
  if (proc.io_priority) {
    const IoPriority& io = *proc.io_priority;
    int value = (io.io_class << kIoprioClassShift) | io.priority;
    if (::syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, value) != 0) {
      return sys_error("process.ioPriority", "ioprio_set class {} priority {}", io.io_class,
                       io.priority);
    }
  }
  return {};
}

Result<void> set_personality(const Personality& p) {
  unsigned long domain = p.domain == "LINUX32" ? PER_LINUX32 : PER_LINUX;
  if (::personality(domain) < 0) return sys_error("personality", "personality {}", p.domain);
  return {};
}

Result<void> set_user(const User& user, bool in_user_namespace) {
  // setgroups is refused in a user namespace whose setgroups file says
  // "deny"; an empty list there is what the kernel already has.
  std::vector<gid_t> groups(user.additional_gids.begin(), user.additional_gids.end());
  if (::setgroups(groups.size(), groups.data()) != 0 &&
      !(in_user_namespace && groups.empty() && errno == EPERM)) {
    return sys_error("user", "setgroups ({} groups)", groups.size());
  }
  if (::setresgid(user.gid, user.gid, user.gid) != 0) {
    return sys_error("user", "setresgid {}", user.gid);
  }
  if (::setresuid(user.uid, user.uid, user.uid) != 0) {
    return sys_error("user", "setresuid {}", user.uid);
  }
  if (user.umask) ::umask(static_cast<mode_t>(*user.umask));
  return {};
}

Result<void> enter_cwd(const std::string& cwd) {
  if (::chdir(cwd.c_str()) != 0) return sys_error("process", "chdir to cwd {}", cwd);
  char buf[PATH_MAX];
  if (::getcwd(buf, sizeof buf) == nullptr) {
    return sys_error("process", "cwd {} is not inside the container root", cwd);
  }
  if (buf[0] != '/') {
    return error("process", "cwd {} is not inside the container root ({})", cwd, buf);
  }
  return {};
}

Result<void> close_inherited_fds(int first_closed) {
  if (::syscall(SYS_close_range, first_closed, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return {};
  if (errno != ENOSYS && errno != EINVAL) {
    return sys_error("process", "close_range({}, ~0, CLOEXEC)", first_closed);
  }
  // Kernels before 5.11: walk the fd table instead. /proc may not be
  // reachable here, so bound the walk by RLIMIT_NOFILE.
  struct rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return sys_error("process", "getrlimit NOFILE");
  for (int fd = first_closed; fd < static_cast<int>(lim.rlim_cur); ++fd) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) (void)::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  return {};
}

Result<std::string> find_executable(const std::string& program,
                                    const std::vector<std::string>& env) {
  if (program.find('/') != std::string::npos) return program;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    // An empty PATH entry means the current directory.
    std::string candidate = end == start ? std::string(".") : path.substr(start, end - start);
    candidate.append("/").append(program);
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return errno_error("process", ENOENT, "executable \"{}\" not found in $PATH ({})", program, path);
}

Error exec_process(const std::string& path, const std::vector<std::string>& args,
                   const std::vector<std::string>& env) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  ::execve(path.c_str(), argv.data(), envp.data());
  return Error{"exec", errno, fmt::format("exec {}", path)};
}

}  // namespace berth::runtime
