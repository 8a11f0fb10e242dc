#include "runtime/process.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>

#include "common/fs.h"
#include "runtime/caps.h"
#include "runtime/seccomp.h"
#include "runtime/sync.h"

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

namespace {

// getcwd() fails with ENOENT for a directory outside the process's root, the
// symptom of a leaked host fd being used as cwd (runc CVE-2024-21626).
Result<void> check_cwd_inside_root(const std::string& cwd) {
  char buf[PATH_MAX];
  if (::getcwd(buf, sizeof buf) == nullptr) {
    return sys_error("process", "cwd {} is not inside the container root", cwd);
  }
  if (buf[0] != '/') {
    return error("process", "cwd {} is not inside the container root ({})", cwd, buf);
  }
  return {};
}

}  // namespace

Result<void> enter_cwd(const std::string& cwd) {
  if (::chdir(cwd.c_str()) != 0) return sys_error("process", "chdir to cwd {}", cwd);
  return check_cwd_inside_root(cwd);
}

Result<void> close_inherited_fds(int first_closed) {
  if (::syscall(SYS_close_range, first_closed, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return {};
  // Kernels before 5.11, or a close_range that is refused for any reason:
  // walk the fd table instead. /proc may not be reachable here, so bound the
  // walk by RLIMIT_NOFILE.
  struct rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return sys_error("process", "getrlimit NOFILE");
  for (int fd = first_closed; fd < static_cast<int>(lim.rlim_cur); ++fd) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC) && ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
      return sys_error("process", "mark fd {} close-on-exec", fd);
    }
  }
  return {};
}

namespace {

Result<void> load_filter(const CredentialSteps& s) {
  if (s.seccomp == nullptr) return {};
  BERTH_ASSIGN(UniqueFd listener, load_seccomp(*s.seccomp));
  if (listener) {
    BERTH_TRY(send_fd(s.seccomp_listener_fd, listener.get(),
                      s.state_json != nullptr ? *s.state_json : std::string()));
  }
  return {};
}

// Step 2 of apply_credentials: the cwd, entered as the runtime's root
// (before the filter and the uid switch) and checked. Returns the directory
// (for the user's fchdir in step 5), or no fd when root may not enter it
// (a root-squashing filesystem): then the user enters it in step 5.
Result<UniqueFd> enter_cwd_early(const std::string& cwd) {
  int fd = ::open(cwd.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == EACCES || errno == EPERM) return UniqueFd();
    return sys_error("process", "chdir to cwd {}", cwd);
  }
  UniqueFd dir(fd);
  if (::fchdir(dir.get()) != 0) return sys_error("process", "chdir to cwd {}", cwd);
  BERTH_TRY(check_cwd_inside_root(cwd));
  return dir;
}

}  // namespace

Result<void> apply_credentials(const CredentialSteps& s) {
  const Spec& spec = *s.spec;
  const Process& proc = *spec.process;
  if (spec.linux.personality) BERTH_TRY(set_personality(*spec.linux.personality));
  if (s.set_rlimits) BERTH_TRY(set_rlimits(proc.rlimits));
  // process.scheduler and ioPriority: before the filter and the uid switch
  // (raising a priority needs CAP_SYS_NICE).
  BERTH_TRY(set_scheduling(proc));
  // Only stdio and the preserved fds reach the user process; the runtime's
  // own fds are O_CLOEXEC and go at execve.
  BERTH_TRY(close_inherited_fds(s.first_closed_fd));
  BERTH_ASSIGN(UniqueFd cwd_dir, enter_cwd_early(s.cwd));
  if (!proc.no_new_privileges) BERTH_TRY(load_filter(s));
  if (proc.capabilities) BERTH_TRY(prepare_capabilities(*proc.capabilities));
  BERTH_TRY(set_user(proc.user, spec.linux.has_namespace(NamespaceType::user)));
  if (proc.capabilities) BERTH_TRY(apply_capabilities(*proc.capabilities));
  if (!cwd_dir) {
    BERTH_TRY(enter_cwd(s.cwd));
  } else if (::fchdir(cwd_dir.get()) != 0 && errno == EACCES) {
    // Any other error is the filter refusing fchdir: the cwd is already
    // entered and checked.
    return sys_error("process", "chdir to cwd {} as uid {}", s.cwd, proc.user.uid);
  }
  if (proc.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return sys_error("process", "prctl(PR_SET_NO_NEW_PRIVS)");
  }
  return {};
}

Result<void> load_late_seccomp(const CredentialSteps& s) {
  if (!s.spec->process->no_new_privileges) return {};
  return load_filter(s);
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
