// seccomp: compile_seccomp's rule translation checked on libseccomp's pfc
// text, its exact error messages, and real filters loaded in a forked child
// (seccomp needs no privilege once no_new_privs is set).
#include "runtime/seccomp.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include <catch2/catch.hpp>

using berth::runtime::compile_seccomp;
using berth::runtime::export_seccomp_pfc;
using berth::runtime::load_seccomp;
using berth::runtime::Seccomp;
using berth::runtime::SeccompAction;
using berth::runtime::SeccompArg;
using berth::runtime::SeccompFilter;
using berth::runtime::SeccompOp;
using berth::runtime::SeccompSyscall;

namespace {

SeccompSyscall rule(std::vector<std::string> names, SeccompAction action,
                    std::vector<SeccompArg> args = {}, std::optional<unsigned> errno_ret = {}) {
  SeccompSyscall s;
  s.names = std::move(names);
  s.action = action;
  s.args = std::move(args);
  s.errno_ret = errno_ret;
  return s;
}

Seccomp deny_by_default() {
  Seccomp s;
  s.default_action = SeccompAction::errno_ret;
  s.default_errno_ret = EPERM;
  s.architectures = {"SCMP_ARCH_X86_64"};
  return s;
}

std::string pfc_of(const Seccomp& spec) {
  auto filter = compile_seccomp(spec);
  REQUIRE(filter.has_value());
  auto text = export_seccomp_pfc(*filter);
  REQUIRE(text.has_value());
  return *text;
}

std::string compile_error(const Seccomp& spec) {
  auto filter = compile_seccomp(spec);
  REQUIRE_FALSE(filter.has_value());
  return filter.error().str();
}

bool has_syscall(const std::string& pfc, const std::string& name) {
  return pfc.find("filter for syscall \"" + name + "\"") != std::string::npos;
}

// The pfc lines of one syscall in the first architecture's filter.
std::string syscall_section(const std::string& pfc, const std::string& name) {
  auto begin = pfc.find("filter for syscall \"" + name + "\"");
  if (begin == std::string::npos) return "";
  auto end = pfc.find("  # ", begin);
  return pfc.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs `body` in a forked child and returns its wait status. The child only
// makes system calls and leaves with _exit, so nothing of the test process
// (Catch2 state, ASan's atexit leak check) runs twice. A core dump of an
// intentionally killed child would only slow the machine down.
template <class F>
int run_in_child(F body) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &no_core);
    _exit(body());
  }
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  REQUIRE(r == pid);
  return status;
}

// Exit codes of the child, so the parent can tell which step failed.
enum ChildExit { kOk = 0, kNnpFailed = 90, kLoadFailed = 91, kCheckFailed = 92 };

int load_in_child(const SeccompFilter& filter) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return kNnpFailed;
  if (!load_seccomp(filter)) return kLoadFailed;
  return kOk;
}

}  // namespace

TEST_CASE("seccomp: allowed syscalls are in the filter, others fall to the default", "[seccomp]") {
  Seccomp spec = deny_by_default();
  spec.syscalls.push_back(rule({"getpid", "read"}, SeccompAction::allow));
  const std::string pfc = pfc_of(spec);
  CHECK(has_syscall(pfc, "getpid"));
  CHECK(has_syscall(pfc, "read"));
  CHECK_FALSE(has_syscall(pfc, "uname"));
  CHECK(pfc.find("# default action\n  action ERRNO(1);") != std::string::npos);
}

TEST_CASE("seccomp: errnoRet and the default errno", "[seccomp]") {
  Seccomp spec = deny_by_default();
  spec.default_errno_ret = EACCES;
  spec.syscalls.push_back(rule({"clone3"}, SeccompAction::errno_ret, {}, ENOSYS));
  spec.syscalls.push_back(rule({"uname"}, SeccompAction::trace));
  spec.syscalls.push_back(rule({"getpid"}, SeccompAction::allow));
  const std::string pfc = pfc_of(spec);
  CHECK(pfc.find("action ERRNO(38);") != std::string::npos);
  CHECK(pfc.find("action TRACE(1);") != std::string::npos);   // EPERM when absent
  CHECK(pfc.find("action ERRNO(13);") != std::string::npos);  // the default
}

TEST_CASE("seccomp: every action the spec allows compiles", "[seccomp]") {
  const std::pair<SeccompAction, const char*> actions[] = {
      {SeccompAction::kill, "KILL;"},
      {SeccompAction::kill_thread, "KILL;"},
      {SeccompAction::kill_process, "KILL_PROCESS;"},
      {SeccompAction::trap, "TRAP;"},
      {SeccompAction::errno_ret, "ERRNO(1);"},
      {SeccompAction::trace, "TRACE(1);"},
      {SeccompAction::log, "LOG;"},
      // libseccomp 2.5's pfc printer has no name for NOTIFY.
      {SeccompAction::notify, "0x7fc00000;"},
  };
  for (const auto& [action, pfc_text] : actions) {
    Seccomp spec;
    spec.default_action = SeccompAction::allow;
    spec.syscalls.push_back(rule({"getppid"}, action));
    INFO("action " << static_cast<int>(action));
    const std::string pfc = pfc_of(spec);
    CHECK(pfc.find(std::string("action ") + pfc_text) != std::string::npos);
  }
}

TEST_CASE("seccomp: argument filters", "[seccomp]") {
  Seccomp spec = deny_by_default();
  // Different argument indexes: one rule, ANDed.
  spec.syscalls.push_back(
      rule({"mmap"}, SeccompAction::allow, {{0, 8, 0, SeccompOp::eq}, {2, 3, 0, SeccompOp::gt}}));
  // The same index twice: one rule each, ORed (runc's semantics).
  spec.syscalls.push_back(rule({"personality"}, SeccompAction::allow,
                               {{0, 0x8, 0, SeccompOp::eq}, {0, 0x20008, 0, SeccompOp::eq}}));
  spec.syscalls.push_back(
      rule({"clone"}, SeccompAction::allow, {{0, 0x7E020000, 0, SeccompOp::masked_eq}}));
  spec.syscalls.push_back(rule({"socket"}, SeccompAction::allow, {{0, 40, 0, SeccompOp::ne}}));
  const std::string pfc = pfc_of(spec);
  // mmap: a0 == 8 AND a2 > 3 (a2's 64-bit compare is split into hi/lo).
  const std::string mmap = syscall_section(pfc, "mmap");
  CHECK(contains(mmap, "if ($a0.lo32 == 8)\n        if ($a2.hi32 > 0)\n          action ALLOW;"));
  CHECK(contains(mmap, "if ($a2.lo32 > 3)\n              action ALLOW;"));
  // personality: two sibling comparisons on a0, each allowing on its own.
  const std::string personality = syscall_section(pfc, "personality");
  CHECK(contains(personality, "      if ($a0.lo32 == 8)\n        action ALLOW;"));
  CHECK(contains(personality, "      if ($a0.lo32 == 131080)\n        action ALLOW;"));
  CHECK(contains(syscall_section(pfc, "clone"),
                 "if ($a0.lo32 & 0x7e020000 == 0)\n        action ALLOW;"));
  // NE: the equal branch falls through to the default, the else allows.
  const std::string socket = syscall_section(pfc, "socket");
  CHECK(contains(socket, "if ($a0.lo32 == 40)\n      else\n        action ALLOW;"));
}

TEST_CASE("seccomp: unknown syscall names are skipped", "[seccomp]") {
  Seccomp spec = deny_by_default();
  spec.syscalls.push_back(rule({"berth_no_such_syscall", "getpid"}, SeccompAction::allow));
  const std::string pfc = pfc_of(spec);
  CHECK(has_syscall(pfc, "getpid"));
  CHECK(pfc.find("berth_no_such_syscall") == std::string::npos);
}

TEST_CASE("seccomp: a rule with the default action is skipped", "[seccomp]") {
  Seccomp spec;
  spec.default_action = SeccompAction::allow;
  spec.syscalls.push_back(rule({"getpid"}, SeccompAction::allow));
  spec.syscalls.push_back(rule({"uname"}, SeccompAction::errno_ret));
  const std::string pfc = pfc_of(spec);
  CHECK_FALSE(has_syscall(pfc, "getpid"));
  CHECK(has_syscall(pfc, "uname"));
}

TEST_CASE("seccomp: architectures", "[seccomp]") {
  Seccomp spec = deny_by_default();
  // Listed twice and including the native one: both fine.
  spec.architectures = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86",     "SCMP_ARCH_X32",
                        "SCMP_ARCH_X86",    "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
  spec.syscalls.push_back(rule({"getpid"}, SeccompAction::allow));
  const std::string pfc = pfc_of(spec);
  CHECK(pfc.find("# filter for arch x86 (") != std::string::npos);
  CHECK(pfc.find("# filter for arch aarch64 (") != std::string::npos);
  CHECK(pfc.find("# filter for arch arm (") != std::string::npos);

  spec.architectures = {"SCMP_ARCH_X86_64", "SCMP_ARCH_PDP11"};
  CHECK(compile_error(spec) == "seccomp: unknown architecture \"SCMP_ARCH_PDP11\"");
}

TEST_CASE("seccomp: flags", "[seccomp]") {
  Seccomp spec = deny_by_default();
  spec.flags = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                "SECCOMP_FILTER_FLAG_TSYNC"};
  CHECK(compile_seccomp(spec).has_value());

  spec.flags = {"SECCOMP_FILTER_FLAG_BOGUS"};
  CHECK(compile_error(spec) == "seccomp: unknown flag \"SECCOMP_FILTER_FLAG_BOGUS\"");
}

TEST_CASE("seccomp: errors name the rule", "[seccomp]") {
  SECTION("unknown action") {
    Seccomp spec = deny_by_default();
    spec.syscalls.push_back(rule({"getpid"}, SeccompAction::allow));
    spec.syscalls.push_back(rule({"getpid"}, static_cast<SeccompAction>(99)));
    CHECK(compile_error(spec) == "seccomp: syscalls[1]: unknown action 99");
  }
  SECTION("unknown default action") {
    Seccomp spec;
    spec.default_action = static_cast<SeccompAction>(42);
    CHECK(compile_error(spec) == "seccomp: unknown default action 42");
  }
  SECTION("notify as default action") {
    Seccomp spec;
    spec.default_action = SeccompAction::notify;
    CHECK(compile_error(spec) == "seccomp: SCMP_ACT_NOTIFY cannot be the default action");
  }
  SECTION("argument index out of range") {
    Seccomp spec = deny_by_default();
    spec.syscalls.push_back(
        rule({"personality"}, SeccompAction::allow, {{0, 1, 0, SeccompOp::eq}, {6, 1, 0}}));
    CHECK(compile_error(spec) == "seccomp: syscalls[0].args[1]: index 6 out of range (0..5)");
  }
  SECTION("libseccomp refuses a rule") {
    Seccomp spec = deny_by_default();
    spec.syscalls.push_back(rule({"getpid"}, SeccompAction::allow, {{0, 1, 0, SeccompOp::eq}}));
    spec.syscalls.push_back(
        rule({"uname", "getpid"}, SeccompAction::log, {{0, 1, 0, SeccompOp::eq}}));
    CHECK(compile_error(spec) == "seccomp: syscalls[1] \"getpid\": add rule: File exists");
  }
}

TEST_CASE("seccomp: a loaded filter returns the errno in a real process", "[seccomp]") {
  Seccomp spec;
  spec.default_action = SeccompAction::allow;
  spec.syscalls.push_back(rule({"getcwd"}, SeccompAction::errno_ret, {}, EACCES));
  auto filter = compile_seccomp(spec);
  REQUIRE(filter.has_value());
  CHECK_FALSE(filter->uses_notify());

  const int status = run_in_child([&] {
    if (int rc = load_in_child(*filter); rc != kOk) return rc;
    char buf[256];
    // The raw syscall, so no libc or sanitizer wrapper is in the way.
    long r = syscall(SYS_getcwd, buf, sizeof buf);
    if (r != -1 || errno != EACCES) return static_cast<int>(kCheckFailed);
    // Everything else still works.
    if (syscall(SYS_getpid) <= 0) return static_cast<int>(kCheckFailed);
    return static_cast<int>(kOk);
  });
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == kOk);
}

TEST_CASE("seccomp: SCMP_ACT_KILL_PROCESS kills with SIGSYS", "[seccomp]") {
  Seccomp spec;
  spec.default_action = SeccompAction::allow;
  spec.syscalls.push_back(rule({"getppid"}, SeccompAction::kill_process));
  auto filter = compile_seccomp(spec);
  REQUIRE(filter.has_value());

  const int status = run_in_child([&] {
    if (int rc = load_in_child(*filter); rc != kOk) return rc;
    (void)syscall(SYS_getppid);
    return static_cast<int>(kCheckFailed);  // still alive: the filter did nothing
  });
  INFO("wait status " << status);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGSYS);
}

TEST_CASE("seccomp: SCMP_ACT_NOTIFY hands back a close-on-exec listener fd", "[seccomp]") {
  Seccomp spec;
  spec.default_action = SeccompAction::allow;
  spec.syscalls.push_back(rule({"getppid"}, SeccompAction::notify));
  auto filter = compile_seccomp(spec);
  REQUIRE(filter.has_value());
  CHECK(filter->uses_notify());

  const int status = run_in_child([&] {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return static_cast<int>(kNnpFailed);
    auto fd = load_seccomp(*filter);
    if (!fd) return static_cast<int>(kLoadFailed);
    if (!*fd || (fcntl(fd->get(), F_GETFD) & FD_CLOEXEC) == 0) {
      return static_cast<int>(kCheckFailed);
    }
    return static_cast<int>(kOk);
  });
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == kOk);
}

TEST_CASE("seccomp: SeccompFilter without a context", "[seccomp]") {
  SeccompFilter empty;
  auto pfc = export_seccomp_pfc(empty);
  REQUIRE_FALSE(pfc.has_value());
  CHECK(pfc.error().str() == "seccomp: export: no filter compiled");
}
