// The built-in default profile: what it grants, what it must never grant,
// and the seccomp filter it makes, loaded in a real child that then tries
// the syscalls the profile exists to deny.
#include "runtime/default_profile.h"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "tests/skip.h"

#include "runtime/caps.h"
#include "runtime/seccomp.h"
#include "runtime/spec.h"

using nlohmann::json;
using namespace berth::runtime;

namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The profile as the runtime sees it: through parse_spec, like any bundle.
Seccomp default_seccomp() {
  auto spec = parse_spec(default_spec_json().dump());
  REQUIRE(spec.has_value());
  REQUIRE(spec->linux.seccomp.has_value());
  return *spec->linux.seccomp;
}

// The names the profile allows with no argument filter.
std::set<std::string> unconditionally_allowed(const json& profile) {
  std::set<std::string> out;
  for (const auto& r : profile["syscalls"]) {
    if (r["action"] == "SCMP_ACT_ALLOW" && !r.contains("args")) {
      for (const auto& n : r["names"]) out.insert(n.get<std::string>());
    }
  }
  return out;
}

std::vector<const json*> rules_for(const json& profile, const std::string& name) {
  std::vector<const json*> out;
  for (const auto& r : profile["syscalls"]) {
    for (const auto& n : r["names"]) {
      if (n == name) out.push_back(&r);
    }
  }
  return out;
}

const json* find_mount(const json& spec, const std::string& destination) {
  for (const auto& m : spec["mounts"]) {
    if (m["destination"] == destination) return &m;
  }
  return nullptr;
}

std::vector<std::string> namespace_types(const json& spec) {
  std::vector<std::string> out;
  for (const auto& ns : spec["linux"]["namespaces"]) out.push_back(ns["type"].get<std::string>());
  return out;
}

}  // namespace

TEST_CASE("default profile: capabilities", "[default_profile]") {
  const auto caps = default_capabilities();
  for (const char* want :
       {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
        "CAP_KILL", "CAP_AUDIT_WRITE"}) {
    CHECK(contains(caps, want));
  }
  CHECK(caps.size() == 13);
  for (const char* never :
       {"CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE",
        "CAP_DAC_READ_SEARCH", "CAP_SYS_RAWIO", "CAP_BPF", "CAP_SYS_TIME", "CAP_SYSLOG"}) {
    CHECK_FALSE(contains(caps, never));
  }
  auto resolved = resolve_capabilities(caps);
  REQUIRE(resolved.has_value());
  CHECK(resolved->size() == caps.size());
}

TEST_CASE("default profile: masked and read-only paths", "[default_profile]") {
  CHECK(default_masked_paths() ==
        std::vector<std::string>{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore",
                                 "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                                 "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                                 "/sys/firmware", "/sys/devices/virtual/powercap"});
  CHECK(default_readonly_paths() == std::vector<std::string>{"/proc/bus", "/proc/fs", "/proc/irq",
                                                             "/proc/sys", "/proc/sysrq-trigger"});
}

TEST_CASE("default profile: seccomp denies by default with EPERM", "[default_profile]") {
  const json p = default_seccomp_json();
  CHECK(p["defaultAction"] == "SCMP_ACT_ERRNO");
  CHECK(p["defaultErrnoRet"] == EPERM);
  for (const char* arch : {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}) {
    CHECK(contains(p["architectures"].get<std::vector<std::string>>(), arch));
  }
}

TEST_CASE("default profile: the allowlist", "[default_profile]") {
  const json p = default_seccomp_json();
  const auto allowed = unconditionally_allowed(p);
  for (const char* need : {"read",         "write",  "openat", "close",      "execve",
                           "mmap",         "brk",    "fork",   "vfork",      "wait4",
                           "rt_sigaction", "getpid", "futex",  "arch_prctl", "set_tid_address",
                           "exit_group",   "ioctl",  "fcntl",  "pipe2",      "dup2"}) {
    INFO(need);
    CHECK(allowed.count(need) == 1);
  }
  for (const char* never : {"keyctl",
                            "add_key",
                            "request_key",
                            "unshare",
                            "setns",
                            "mount",
                            "umount",
                            "umount2",
                            "pivot_root",
                            "ptrace",
                            "bpf",
                            "perf_event_open",
                            "kexec_load",
                            "kexec_file_load",
                            "init_module",
                            "finit_module",
                            "delete_module",
                            "reboot",
                            "swapon",
                            "swapoff",
                            "clone3",
                            "open_by_handle_at",
                            "name_to_handle_at",
                            "userfaultfd",
                            "lookup_dcookie",
                            "personality",
                            "clone",
                            "socket",
                            "clock_settime",
                            "clock_settime64",
                            "settimeofday",
                            "stime",
                            "acct",
                            "quotactl",
                            "quotactl_fd",
                            "nfsservctl",
                            "vm86",
                            "vm86old",
                            "iopl",
                            "ioperm",
                            "syslog",
                            "mount_setattr",
                            "fsopen",
                            "fsconfig",
                            "fsmount",
                            "fspick",
                            "move_mount",
                            "open_tree",
                            "pidfd_getfd",
                            "process_vm_readv",
                            "process_vm_writev",
                            "io_uring_setup",
                            "io_uring_enter",
                            "io_uring_register",
                            "kcmp",
                            "sethostname",
                            "setdomainname"}) {
    INFO(never);
    CHECK(allowed.count(never) == 0);
  }
  // No rule at all for these: only the argument-filtered ones below.
  for (const char* name : {"keyctl", "unshare", "setns", "mount", "ptrace", "bpf",
                           "open_by_handle_at", "userfaultfd"}) {
    INFO(name);
    CHECK(rules_for(p, name).empty());
  }
}

TEST_CASE("default profile: argument-filtered and ENOSYS rules", "[default_profile]") {
  const json p = default_seccomp_json();

  const auto clone3 = rules_for(p, "clone3");
  REQUIRE(clone3.size() == 1);
  CHECK((*clone3[0])["action"] == "SCMP_ACT_ERRNO");
  CHECK((*clone3[0])["errnoRet"] == ENOSYS);

  std::set<uint64_t> personalities;
  for (const json* r : rules_for(p, "personality")) {
    CHECK((*r)["action"] == "SCMP_ACT_ALLOW");
    REQUIRE((*r)["args"].size() == 1);
    CHECK((*r)["args"][0]["op"] == "SCMP_CMP_EQ");
    CHECK((*r)["args"][0]["index"] == 0);
    personalities.insert((*r)["args"][0]["value"].get<uint64_t>());
  }
  CHECK(personalities == std::set<uint64_t>{0x0, 0x8, 0x20000, 0x20008, 0xffffffff});

  const auto clone = rules_for(p, "clone");
  REQUIRE(clone.size() == 1);
  const json& arg = (*clone[0])["args"][0];
  CHECK(arg["index"] == 0);
  CHECK(arg["op"] == "SCMP_CMP_MASKED_EQ");
  CHECK(arg["value"] == 2114060288);
  CHECK(arg["valueTwo"] == 0);
}

TEST_CASE("default profile: compiles for every listed architecture this host runs",
          "[default_profile]") {
  auto filter = compile_seccomp(default_seccomp());
  REQUIRE(filter.has_value());
  auto pfc = export_seccomp_pfc(*filter);
  REQUIRE(pfc.has_value());
  // compile_seccomp skips listed architectures the host cannot run.
  if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
    for (const char* arch : {"x86_64", "x86", "x32"}) {
      CHECK(pfc->find(std::string("# filter for arch ") + arch + " (") != std::string::npos);
    }
    for (const char* arch : {"aarch64", "arm"}) {
      CHECK(pfc->find(std::string("# filter for arch ") + arch + " (") == std::string::npos);
    }
  } else {
    BERTH_SKIP_NOTE("the per-architecture checks: they are written for an x86_64 host");
  }
  CHECK(pfc->find("filter for syscall \"execve\"") != std::string::npos);
  CHECK(pfc->find("filter for syscall \"keyctl\"") == std::string::npos);
  CHECK(pfc->find("action ERRNO(38);") != std::string::npos);
  CHECK(pfc->find("# default action\n  action ERRNO(1);") != std::string::npos);
}

namespace {

bool fails_with(long rc, int err) {
  return rc == -1 && errno == err;
}

bool raw_clone_fails_with_eperm(unsigned long flags) {
  // A raw clone with no stack behaves like fork: if the filter let it
  // through, the new child must leave at once.
  long rc = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (rc == 0) _exit(0);
  if (rc > 0) {
    (void)waitpid(static_cast<pid_t>(rc), nullptr, 0);
    return false;
  }
  return errno == EPERM;
}

bool shell_runs() {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", "exit 7", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 7;
}

bool af_unix_socket_works() {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  close(fd);
  return true;
}

struct ProfileCheck {
  const char* what;
  bool (*holds)();
};

// Each check runs in the child after the default filter is loaded.
const ProfileCheck kProfileChecks[] = {
    {"getpid works", [] { return syscall(SYS_getpid) > 0; }},
    {"clone3 -> ENOSYS", [] { return fails_with(syscall(SYS_clone3, nullptr, 0), ENOSYS); }},
    {"unshare(CLONE_NEWUSER) -> EPERM",
     [] { return fails_with(syscall(SYS_unshare, CLONE_NEWUSER), EPERM); }},
    {"setns -> EPERM", [] { return fails_with(syscall(SYS_setns, -1, 0), EPERM); }},
    {"keyctl -> EPERM", [] { return fails_with(syscall(SYS_keyctl, 0, -3, 0), EPERM); }},
    {"mount -> EPERM",
     [] {
       return fails_with(syscall(SYS_mount, "none", "/berth-nonexistent", "tmpfs", 0, nullptr),
                         EPERM);
     }},
    {"ptrace -> EPERM",
     [] { return fails_with(syscall(SYS_ptrace, 16 /*ATTACH*/, 0, 0, 0), EPERM); }},
    {"bpf -> EPERM", [] { return fails_with(syscall(SYS_bpf, 0, nullptr, 0), EPERM); }},
    {"io_uring_setup -> EPERM",
     [] { return fails_with(syscall(SYS_io_uring_setup, 1, nullptr), EPERM); }},
    {"personality(query) works", [] { return syscall(SYS_personality, 0xffffffffUL) != -1; }},
    {"personality(READ_IMPLIES_EXEC) -> EPERM",
     [] { return fails_with(syscall(SYS_personality, 0x0400000UL), EPERM); }},
    {"socket(AF_VSOCK) -> EPERM",
     [] { return fails_with(socket(40, SOCK_STREAM | SOCK_CLOEXEC, 0), EPERM); }},
    {"socket(AF_UNIX) works", af_unix_socket_works},
    {"clone(CLONE_NEWUSER) -> EPERM", [] { return raw_clone_fails_with_eperm(CLONE_NEWUSER); }},
    {"clone(CLONE_NEWNS) -> EPERM", [] { return raw_clone_fails_with_eperm(CLONE_NEWNS); }},
    {"fork + exec /bin/sh works", shell_runs},
};

}  // namespace

TEST_CASE("default profile: a real process under the filter", "[default_profile]") {
  auto filter = compile_seccomp(default_seccomp());
  REQUIRE(filter.has_value());
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    struct rlimit no_core = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &no_core);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || !load_seccomp(*filter)) _exit(90);
    // Failed checks are reported by name, one a line.
    for (const auto& c : kProfileChecks) {
      if (!c.holds()) {
        (void)!write(fds[1], c.what, strlen(c.what));
        (void)!write(fds[1], "\n", 1);
      }
    }
    _exit(0);
  }
  close(fds[1]);
  std::string failed;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    failed.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(failed == "");
}

TEST_CASE("default profile: config.json", "[default_profile]") {
  const json spec = default_spec_json();
  CHECK(spec["ociVersion"] == "1.0.2-dev");
  CHECK(spec["process"]["noNewPrivileges"] == true);
  CHECK(spec["process"]["terminal"] == false);
  CHECK(spec["process"]["args"] == json::array({"sh"}));
  CHECK(spec["process"]["user"]["uid"] == 0);
  CHECK(spec["process"]["cwd"] == "/");
  CHECK(contains(spec["process"]["env"].get<std::vector<std::string>>(),
                 "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  const json& caps = spec["process"]["capabilities"];
  CHECK(caps["bounding"].get<std::vector<std::string>>() == default_capabilities());
  CHECK(caps["effective"] == caps["bounding"]);
  CHECK(caps["permitted"] == caps["bounding"]);
  CHECK(caps["inheritable"].empty());
  CHECK(caps["ambient"].empty());
  CHECK(spec["process"]["rlimits"][0]["type"] == "RLIMIT_NOFILE");
  CHECK(spec["process"]["rlimits"][0]["soft"] == 1024);
  CHECK(spec["root"]["path"] == "rootfs");
  CHECK(spec["root"]["readonly"] == true);
  CHECK(spec["hostname"] == "berth");

  for (const char* dest : {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"}) {
    INFO(dest);
    CHECK(find_mount(spec, dest) != nullptr);
  }
  CHECK((*find_mount(spec, "/sys"))["type"] == "sysfs");
  CHECK(contains((*find_mount(spec, "/dev/pts"))["options"].get<std::vector<std::string>>(),
                 "gid=5"));

  CHECK(namespace_types(spec) ==
        std::vector<std::string>{"pid", "network", "ipc", "uts", "mount", "cgroup"});
  const json& linux = spec["linux"];
  CHECK(linux["resources"]["devices"] == json::array({json{{"allow", false}, {"access", "rwm"}}}));
  CHECK(linux["maskedPaths"].get<std::vector<std::string>>() == default_masked_paths());
  CHECK(linux["readonlyPaths"].get<std::vector<std::string>>() == default_readonly_paths());
  CHECK(linux["seccomp"] == default_seccomp_json());
  CHECK_FALSE(linux.contains("uidMappings"));

  DefaultSpecOptions opts;
  opts.args = {"/bin/echo", "hi"};
  opts.terminal = true;
  const json custom = default_spec_json(opts);
  CHECK(custom["process"]["args"] == json::array({"/bin/echo", "hi"}));
  CHECK(custom["process"]["terminal"] == true);
}

TEST_CASE("default profile: config.json passes parse_spec", "[default_profile]") {
  for (bool rootless : {false, true}) {
    INFO("rootless " << rootless);
    DefaultSpecOptions opts;
    opts.rootless = rootless;
    auto spec = parse_spec(default_spec_json(opts).dump());
    REQUIRE(spec.has_value());
    REQUIRE(spec->process.has_value());
    CHECK(spec->process->no_new_privileges);
    REQUIRE(spec->process->capabilities.has_value());
    CHECK(spec->process->capabilities->bounding == default_capabilities());
    CHECK(spec->linux.masked_paths == default_masked_paths());
    CHECK(spec->linux.has_namespace(NamespaceType::user) == rootless);
    CHECK(spec->linux.has_namespace(NamespaceType::network) == !rootless);
    REQUIRE(spec->linux.seccomp.has_value());
    CHECK(spec->linux.seccomp->default_action == SeccompAction::errno_ret);
    CHECK(spec->linux.seccomp->default_errno_ret == std::optional<unsigned>(EPERM));
  }
}

TEST_CASE("default profile: rootless config.json", "[default_profile]") {
  DefaultSpecOptions opts;
  opts.rootless = true;
  const json spec = default_spec_json(opts);
  CHECK(spec["process"]["noNewPrivileges"] == true);
  CHECK(namespace_types(spec) ==
        std::vector<std::string>{"pid", "ipc", "uts", "mount", "cgroup", "user"});
  const json& linux = spec["linux"];
  CHECK(linux["uidMappings"] ==
        json::array({json{{"containerID", 0}, {"hostID", geteuid()}, {"size", 1}}}));
  CHECK(linux["gidMappings"] ==
        json::array({json{{"containerID", 0}, {"hostID", getegid()}, {"size", 1}}}));
  CHECK_FALSE(linux.contains("resources"));
  const json* sys = find_mount(spec, "/sys");
  REQUIRE(sys != nullptr);
  CHECK((*sys)["type"] == "none");
  CHECK((*sys)["source"] == "/sys");
  CHECK((*sys)["options"] == json::array({"rbind", "nosuid", "noexec", "nodev", "ro"}));
  // gid 5 is not mapped in a one-id user namespace.
  CHECK_FALSE(contains((*find_mount(spec, "/dev/pts"))["options"].get<std::vector<std::string>>(),
                       "gid=5"));
  CHECK(linux["seccomp"] == default_seccomp_json());
}
