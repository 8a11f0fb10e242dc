#include "runtime/default_profile.h"

#include <unistd.h>

#include <cerrno>
#include <initializer_list>
#include <string_view>

namespace berth::runtime {

namespace {

using nlohmann::json;

// Syscalls Docker's default profile (moby profiles/seccomp/default.json)
// allows unconditionally, minus the ones we deny outright:
// - name_to_handle_at: the lookup half of open_by_handle_at, which let a
//   container read host files by inode ("shocker", 2014);
// - io_uring_*: a steady source of kernel privilege escalations; moby itself
//   dropped them from the default profile (Docker 25);
// - ptrace, process_vm_readv/writev: Docker allows them on kernels >= 4.8,
//   we keep them behind CAP_SYS_PTRACE, which the default set lacks.
// Everything absent here (keyctl, unshare, setns, mount, bpf, ...) falls to
// the default action, EPERM.
constexpr std::string_view kAllowed[] = {
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    // Docker allows it with CAP_SYS_CHROOT, which the default set has.
    "chroot",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
};

// Architecture-specific syscalls Docker allows for these architectures.
// Names a libseccomp build cannot place on an architecture are left out of
// that architecture's filter by libseccomp itself.
constexpr std::string_view kAllowedArchSpecific[] = {
    // x86_64, x32 (TLS set-up by the dynamic loader) and x86 (LDT, Wine).
    "arch_prctl",
    "modify_ldt",
    // arm / aarch64 compat.
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
};

// personality(2) values glibc and tools use: PER_LINUX, PER_LINUX32,
// PER_LINUX | UNAME26, PER_LINUX32 | UNAME26 and 0xffffffff (query). Other
// personalities would re-enable e.g. READ_IMPLIES_EXEC or ADDR_NO_RANDOMIZE.
constexpr uint64_t kPersonalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
// | CLONE_NEWPID | CLONE_NEWNET: creating namespaces is a CAP_SYS_ADMIN
// operation in Docker's profile, and new user namespaces are the entry
// point of many kernel exploits.
constexpr uint64_t kCloneNamespaceFlags = 0x7E020000;  // 2114060288

constexpr uint64_t kAfVsock = 40;

json names_json(std::initializer_list<std::string_view> names) {
  json out = json::array();
  for (auto n : names) out.push_back(std::string(n));
  return out;
}

template <size_t N>
json names_json(const std::string_view (&names)[N]) {
  json out = json::array();
  for (auto n : names) out.push_back(std::string(n));
  return out;
}

json arg_json(unsigned index, uint64_t value, uint64_t value_two, const char* op) {
  return json{{"index", index}, {"value", value}, {"valueTwo", value_two}, {"op", op}};
}

json allow_rule(json names) {
  return json{{"names", std::move(names)}, {"action", "SCMP_ACT_ALLOW"}};
}

json allow_rule_with_arg(std::string_view name, json arg) {
  json rule = allow_rule(names_json({name}));
  rule["args"] = json::array({std::move(arg)});
  return rule;
}

json seccomp_syscalls_json() {
  json rules = json::array();
  rules.push_back(allow_rule(names_json(kAllowed)));
  rules.push_back(allow_rule(names_json(kAllowedArchSpecific)));
  // AF_VSOCK talks to the hypervisor host; Docker denies it.
  rules.push_back(allow_rule_with_arg("socket", arg_json(0, kAfVsock, 0, "SCMP_CMP_NE")));
  for (uint64_t p : kPersonalities) {
    rules.push_back(allow_rule_with_arg("personality", arg_json(0, p, 0, "SCMP_CMP_EQ")));
  }
  // Plain fork/thread creation only: (flags & namespace flags) == 0.
  rules.push_back(
      allow_rule_with_arg("clone", arg_json(0, kCloneNamespaceFlags, 0, "SCMP_CMP_MASKED_EQ")));
  // clone3 passes its flags in a struct that seccomp cannot inspect, so it
  // cannot be filtered like clone. ENOSYS (not EPERM) makes glibc fall back
  // to clone, which is filtered above.
  rules.push_back(
      json{{"names", json::array({"clone3"})}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", ENOSYS}});
  return rules;
}

json mount_json(std::string_view destination, std::string_view type, std::string_view source,
                std::initializer_list<std::string_view> options) {
  json m{{"destination", destination}, {"type", type}, {"source", source}};
  if (options.size() > 0) m["options"] = names_json(options);
  return m;
}

json default_mounts_json(bool rootless) {
  json mounts = json::array();
  mounts.push_back(mount_json("/proc", "proc", "proc", {}));
  mounts.push_back(
      mount_json("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  if (rootless) {
    // gid 5 (tty) is not mapped in a one-id user namespace: devpts would
    // refuse the mount (runc spec --rootless drops it too).
    mounts.push_back(mount_json("/dev/pts", "devpts", "devpts",
                                {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}));
  } else {
    mounts.push_back(
        mount_json("/dev/pts", "devpts", "devpts",
                   {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  }
  mounts.push_back(mount_json("/dev/shm", "tmpfs", "shm",
                              {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}));
  mounts.push_back(mount_json("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  if (rootless) {
    // Mounting sysfs needs CAP_SYS_ADMIN over the network namespace, which
    // a rootless container shares with its owner: bind the host's instead.
    mounts.push_back(
        mount_json("/sys", "none", "/sys", {"rbind", "nosuid", "noexec", "nodev", "ro"}));
  } else {
    mounts.push_back(mount_json("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}));
  }
  return mounts;
}

json process_json(const DefaultSpecOptions& opts) {
  const json caps = default_capabilities();
  return json{
      {"terminal", opts.terminal},
      {"user", {{"uid", 0}, {"gid", 0}}},
      {"args", opts.args},
      {"env", json::array({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "TERM=xterm"})},
      {"cwd", "/"},
      // No inheritable or ambient caps, as runc's spec: an execve'd
      // non-root program gets none.
      {"capabilities",
       {{"bounding", caps},
        {"effective", caps},
        {"permitted", caps},
        {"inheritable", json::array()},
        {"ambient", json::array()}}},
      {"rlimits", json::array({json{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
      {"noNewPrivileges", true},
  };
}

json namespaces_json(bool rootless) {
  json out = json::array();
  // A rootless container keeps its owner's network namespace (it could not
  // configure a new one) and gets a user namespace to hold its caps.
  for (const char* type : {"pid", "network", "ipc", "uts", "mount", "cgroup"}) {
    if (rootless && std::string_view(type) == "network") continue;
    out.push_back(json{{"type", type}});
  }
  if (rootless) out.push_back(json{{"type", "user"}});
  return out;
}

json linux_json(const DefaultSpecOptions& opts) {
  json linux{
      {"namespaces", namespaces_json(opts.rootless)},
      {"maskedPaths", default_masked_paths()},
      {"readonlyPaths", default_readonly_paths()},
      {"seccomp", default_seccomp_json()},
  };
  if (opts.rootless) {
    // Writing a one-line map of our own ids needs no privilege; the euid is
    // the one the kernel checks.
    linux["uidMappings"] =
        json::array({json{{"containerID", 0}, {"hostID", geteuid()}, {"size", 1}}});
    linux["gidMappings"] =
        json::array({json{{"containerID", 0}, {"hostID", getegid()}, {"size", 1}}});
  } else {
    // Deny every device node; the runtime allows its default devices itself.
    linux["resources"] =
        json{{"devices", json::array({json{{"allow", false}, {"access", "rwm"}}})}};
  }
  return linux;
}

}  // namespace

std::vector<std::string> default_capabilities() {
  // Docker's default set without CAP_NET_RAW: raw sockets are rarely needed
  // (ping uses ICMP datagram sockets) and were the way into
  // CVE-2020-14386 (AF_PACKET memory corruption).
  return {
      "CAP_CHOWN",       "CAP_DAC_OVERRIDE",     "CAP_FSETID",     "CAP_FOWNER",
      "CAP_MKNOD",       "CAP_SETGID",           "CAP_SETUID",     "CAP_SETFCAP",
      "CAP_SETPCAP",     "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
      "CAP_AUDIT_WRITE",
  };
}

std::vector<std::string> default_masked_paths() {
  // Host information and kernel interfaces a container must not read
  // (/proc/kcore: physical memory; /proc/keys: the host keyring;
  // /sys/devices/virtual/powercap: RAPL energy counters, CVE-2020-8694
  // "PLATYPUS" side channel).
  return {
      "/proc/asound",     "/proc/acpi",        "/proc/interrupts",
      "/proc/kcore",      "/proc/keys",        "/proc/latency_stats",
      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
      "/proc/scsi",       "/sys/firmware",     "/sys/devices/virtual/powercap",
  };
}

std::vector<std::string> default_readonly_paths() {
  // Host-wide kernel knobs that /proc exposes regardless of namespaces.
  return {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
}

nlohmann::json default_seccomp_json() {
  return json{
      {"defaultAction", "SCMP_ACT_ERRNO"},
      {"defaultErrnoRet", EPERM},
      // The 32-bit and x32 ABIs run on an x86_64 kernel too: without their
      // own filters they would be a way around this one.
      {"architectures", json::array({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                                     "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"})},
      {"syscalls", seccomp_syscalls_json()},
  };
}

nlohmann::json default_spec_json(const DefaultSpecOptions& opts) {
  return json{
      {"ociVersion", "1.0.2-dev"},
      {"process", process_json(opts)},
      {"root", {{"path", "rootfs"}, {"readonly", true}}},
      {"hostname", "berth"},
      {"mounts", default_mounts_json(opts.rootless)},
      {"linux", linux_json(opts)},
  };
}

}  // namespace berth::runtime
