// seccomp: compile_seccomp's rule translation checked on libseccomp's pfc
// text, its exact error messages, the compiled-program cache, and real
// filters (compiled and cached) loaded in a forked child (seccomp needs no
// privilege once no_new_privs is set).
#include "runtime/seccomp.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/skip.h"

#include "common/fs.h"
#include "runtime/default_profile.h"
#include "tests/unit/temp_dir.h"

using berth::runtime::compile_seccomp;
using berth::runtime::export_seccomp_pfc;
using berth::runtime::load_seccomp;
using berth::runtime::Seccomp;
using berth::runtime::SeccompAction;
using berth::runtime::SeccompArg;
using berth::runtime::SeccompFilter;
using berth::runtime::SeccompOp;
using berth::runtime::SeccompSyscall;
using berth::test::TempDir;

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

// No architectures listed: the native one only, so these tests run on any
// host libseccomp supports.
Seccomp deny_by_default() {
  Seccomp s;
  s.default_action = SeccompAction::errno_ret;
  s.default_errno_ret = EPERM;
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

TEST_CASE("seccomp: architectures this host cannot run are skipped", "[seccomp]") {
  if (seccomp_arch_native() != SCMP_ARCH_X86_64) {
    BERTH_SKIP("the expected compatibility sets are written for an x86_64 host");
  }
  Seccomp spec = deny_by_default();
  // Listed twice and including the native one: both fine.
  spec.architectures = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86",     "SCMP_ARCH_X32",
                        "SCMP_ARCH_X86",    "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
  spec.syscalls.push_back(rule({"getpid"}, SeccompAction::allow));
  std::string pfc = pfc_of(spec);
  CHECK(contains(pfc, "# filter for arch x86_64 ("));
  CHECK(contains(pfc, "# filter for arch x86 ("));
  CHECK(contains(pfc, "# filter for arch x32 ("));
  CHECK_FALSE(contains(pfc, "# filter for arch aarch64 ("));
  CHECK_FALSE(contains(pfc, "# filter for arch arm ("));

  // A compat ABI alone still gets the native filter too (libseccomp's own).
  spec.architectures = {"SCMP_ARCH_X86"};
  pfc = pfc_of(spec);
  CHECK(contains(pfc, "# filter for arch x86_64 ("));
  CHECK(contains(pfc, "# filter for arch x86 ("));

  spec.architectures = {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
  CHECK(compile_error(spec) ==
        "seccomp: none of the architectures [SCMP_ARCH_AARCH64, SCMP_ARCH_ARM] can run on this "
        "x86_64 host");
}

TEST_CASE("seccomp: no architectures listed means the native one", "[seccomp]") {
  Seccomp spec = deny_by_default();
  spec.architectures.clear();
  spec.syscalls.push_back(rule({"getpid"}, SeccompAction::allow));
  const std::string pfc = pfc_of(spec);
  const auto first = pfc.find("# filter for arch ");
  CHECK(first != std::string::npos);
  CHECK(pfc.find("# filter for arch ", first + 1) == std::string::npos);
}

TEST_CASE("seccomp: unknown architecture names are errors", "[seccomp]") {
  Seccomp spec = deny_by_default();
  spec.architectures = {"SCMP_ARCH_X86_64", "SCMP_ARCH_PDP11"};
  CHECK(compile_error(spec) == "seccomp: unknown architecture \"SCMP_ARCH_PDP11\"");
  // Even next to names this host can run, and before the "none can run" check.
  spec.architectures = {"SCMP_ARCH_PDP11"};
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
  auto loaded = load_seccomp(empty);
  REQUIRE_FALSE(loaded.has_value());
  CHECK(loaded.error().str() == "seccomp: load: no filter compiled");

  SeccompFilter raw({BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}, 0, false);
  pfc = export_seccomp_pfc(raw);
  REQUIRE_FALSE(pfc.has_value());
  CHECK(pfc.error().str() == "seccomp: export: pfc needs a libseccomp context, not a raw program");
}

// ---- the compiled-program cache ----

namespace {

std::string bytes_of(const std::vector<sock_filter>& program) {
  return std::string(reinterpret_cast<const char*>(program.data()),
                     program.size() * sizeof(sock_filter));
}

// The cache's *.bpf files, sorted (a write's temporary would not match).
std::vector<std::string> cache_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".bpf") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string file_bytes(const std::string& path) {
  auto bytes = berth::fs::read_file(path);
  REQUIRE(bytes.has_value());
  return *bytes;
}

void overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  REQUIRE(out.good());
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

Seccomp getcwd_denied() {
  Seccomp spec;
  spec.default_action = SeccompAction::allow;
  spec.syscalls.push_back(rule({"getcwd"}, SeccompAction::errno_ret, {}, EACCES));
  return spec;
}

// Compiles `spec` into `dir` twice and checks the second was a hit with
// the same bytes; returns the hit.
SeccompFilter miss_then_hit(const Seccomp& spec, const std::string& dir) {
  auto miss = compile_seccomp(spec, dir);
  REQUIRE(miss.has_value());
  CHECK_FALSE(miss->from_cache());
  auto hit = compile_seccomp(spec, dir);
  REQUIRE(hit.has_value());
  CHECK(hit->from_cache());
  CHECK(hit->ctx() == nullptr);
  CHECK(bytes_of(hit->program()) == bytes_of(miss->program()));
  return std::move(*hit);
}

Seccomp default_profile() {
  auto spec = berth::runtime::parse_spec(berth::runtime::default_spec_json().dump());
  REQUIRE(spec.has_value());
  REQUIRE(spec->linux.seccomp.has_value());
  return *spec->linux.seccomp;
}

}  // namespace

TEST_CASE("seccomp cache: a miss stores the program, a hit returns the same bytes",
          "[seccomp][seccomp_cache]") {
  TempDir tmp;
  const std::string dir = tmp / "cache";  // created by the miss
  const SeccompFilter hit = miss_then_hit(default_profile(), dir);
  const auto files = cache_files(dir);
  REQUIRE(files.size() == 1);
  CHECK(file_bytes(files[0]) == bytes_of(hit.program()));
  CHECK(mode_of(files[0]) == 0600);
  CHECK(mode_of(dir) == 0700);
  // 64 hex digits of SHA-256, then .bpf.
  CHECK(std::filesystem::path(files[0]).filename().string().size() == 64 + 4);
}

TEST_CASE("seccomp cache: a different spec is a different entry", "[seccomp][seccomp_cache]") {
  TempDir tmp;
  Seccomp a = getcwd_denied();
  Seccomp b = getcwd_denied();
  b.syscalls[0].errno_ret = EPERM;
  auto fa = compile_seccomp(a, tmp.path());
  auto fb = compile_seccomp(b, tmp.path());
  REQUIRE(fa.has_value());
  REQUIRE(fb.has_value());
  CHECK_FALSE(fb->from_cache());
  CHECK(bytes_of(fa->program()) != bytes_of(fb->program()));
  CHECK(cache_files(tmp.path()).size() == 2);
}

TEST_CASE("seccomp cache: a corrupt file is recompiled and overwritten",
          "[seccomp][seccomp_cache]") {
  TempDir tmp;
  const Seccomp spec = getcwd_denied();
  auto first = compile_seccomp(spec, tmp.path());
  REQUIRE(first.has_value());
  const std::string good = bytes_of(first->program());
  const auto files = cache_files(tmp.path());
  REQUIRE(files.size() == 1);

  const std::vector<sock_filter> too_long(BPF_MAXINSNS + 1,
                                          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  const std::pair<const char*, std::string> corruptions[] = {
      {"not whole instructions", good.substr(0, sizeof(sock_filter) + 3)},
      {"empty", ""},
      {"truncated", good.substr(0, good.size() - sizeof(sock_filter))},
      {"more than BPF_MAXINSNS", bytes_of(too_long)},
  };
  for (const auto& [what, bytes] : corruptions) {
    INFO(what);
    overwrite(files[0], bytes);
    auto again = compile_seccomp(spec, tmp.path());
    REQUIRE(again.has_value());
    CHECK_FALSE(again->from_cache());
    CHECK(bytes_of(again->program()) == good);
    CHECK(file_bytes(files[0]) == good);
  }
}

TEST_CASE("seccomp cache: a cache that cannot be written is not an error",
          "[seccomp][seccomp_cache]") {
  TempDir tmp;
  overwrite(tmp / "file", "x");
  const std::string dir = tmp / "file/cache";  // mkdir fails: ENOTDIR
  for (int i = 0; i < 2; ++i) {
    auto filter = compile_seccomp(getcwd_denied(), dir);
    REQUIRE(filter.has_value());
    CHECK_FALSE(filter->from_cache());
    CHECK_FALSE(filter->program().empty());
  }
}

TEST_CASE("seccomp cache: a filter too big for the kernel fails at compile time",
          "[seccomp][seccomp_cache]") {
  TempDir tmp;
  Seccomp spec = deny_by_default();
  // Comparisons on the same argument become one rule each (ORed): about
  // one instruction per value, beyond BPF_MAXINSNS in all.
  std::vector<SeccompArg> args;
  for (uint64_t v = 0; v < 5000; ++v) args.push_back({0, v, 0, SeccompOp::eq});
  spec.syscalls.push_back(rule({"personality"}, SeccompAction::allow, args));
  auto filter = compile_seccomp(spec, tmp.path());
  REQUIRE_FALSE(filter.has_value());
  const std::string msg = filter.error().str();
  CHECK(msg.starts_with("seccomp: the compiled filter: "));
  CHECK(msg.ends_with(" instructions, outside the kernel's 1..4096"));
  CHECK(cache_files(tmp.path()).empty());
}

TEST_CASE("seccomp cache: SCMP_ACT_NOTIFY filters bypass the cache", "[seccomp][seccomp_cache]") {
  TempDir tmp;
  Seccomp spec;
  spec.default_action = SeccompAction::allow;
  spec.syscalls.push_back(rule({"getppid"}, SeccompAction::notify));
  auto filter = compile_seccomp(spec, tmp.path());
  REQUIRE(filter.has_value());
  CHECK(filter->ctx() != nullptr);
  CHECK(filter->program().empty());
  CHECK(filter->uses_notify());
  CHECK(cache_files(tmp.path()).empty());
}

TEST_CASE("seccomp cache: flags become seccomp(2) load flags", "[seccomp][seccomp_cache]") {
  TempDir tmp;
  Seccomp spec = getcwd_denied();
  spec.flags = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                "SECCOMP_FILTER_FLAG_TSYNC"};
  const SeccompFilter hit = miss_then_hit(spec, tmp.path());
  CHECK(hit.load_flags() ==
        (SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW | SECCOMP_FILTER_FLAG_TSYNC));
  // An unknown flag fails before the cache is consulted.
  spec.flags = {"SECCOMP_FILTER_FLAG_BOGUS"};
  auto bad = compile_seccomp(spec, tmp.path());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().str() == "seccomp: unknown flag \"SECCOMP_FILTER_FLAG_BOGUS\"");
}

TEST_CASE("seccomp cache: a cached program returns the errno in a real process",
          "[seccomp][seccomp_cache]") {
  TempDir tmp;
  Seccomp spec = getcwd_denied();
  // Every load flag through the raw seccomp(2) path.
  spec.flags = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                "SECCOMP_FILTER_FLAG_TSYNC"};
  const SeccompFilter hit = miss_then_hit(spec, tmp.path());

  const int status = run_in_child([&] {
    if (int rc = load_in_child(hit); rc != kOk) return rc;
    char buf[256];
    long r = syscall(SYS_getcwd, buf, sizeof buf);
    if (r != -1 || errno != EACCES) return static_cast<int>(kCheckFailed);
    if (syscall(SYS_getpid) <= 0) return static_cast<int>(kCheckFailed);
    return static_cast<int>(kOk);
  });
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == kOk);
}

TEST_CASE("seccomp cache: a cached SCMP_ACT_KILL_PROCESS kills with SIGSYS",
          "[seccomp][seccomp_cache]") {
  TempDir tmp;
  Seccomp spec;
  spec.default_action = SeccompAction::allow;
  spec.syscalls.push_back(rule({"getppid"}, SeccompAction::kill_process));
  const SeccompFilter hit = miss_then_hit(spec, tmp.path());

  const int status = run_in_child([&] {
    if (int rc = load_in_child(hit); rc != kOk) return rc;
    (void)syscall(SYS_getppid);
    return static_cast<int>(kCheckFailed);
  });
  INFO("wait status " << status);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGSYS);
}

TEST_CASE("seccomp cache: the default profile from the cache confines a real process",
          "[seccomp][seccomp_cache]") {
  TempDir tmp;
  const SeccompFilter hit = miss_then_hit(default_profile(), tmp.path());

  const int status = run_in_child([&] {
    if (int rc = load_in_child(hit); rc != kOk) return rc;
    // clone3: ENOSYS so glibc falls back to clone; keyctl: the default EPERM.
    if (syscall(SYS_clone3, nullptr, 0) != -1 || errno != ENOSYS) return 93;
    if (syscall(SYS_keyctl, 0, 0, 0, 0, 0) != -1 || errno != EPERM) return 94;
    if (syscall(SYS_getpid) <= 0) return 95;
    return static_cast<int>(kOk);
  });
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == kOk);
}

// ---- the ENOSYS stub for syscalls newer than the profile ----

using berth::runtime::EnosysBound;
using berth::runtime::seccomp_enosys_bounds;
using berth::runtime::seccomp_enosys_stub;

namespace {

// The native architecture's bound, as the kernel names the architecture.
std::optional<uint32_t> native_bound(const Seccomp& spec) {
  const uint32_t native = seccomp_arch_native();
  for (const EnosysBound& b : seccomp_enosys_bounds(spec)) {
    if (b.audit_arch == native && !b.x32) return b.last_syscall;
  }
  return std::nullopt;
}

// A denying profile that names exit_group (for _exit) and getpid only.
Seccomp names_exit_and_getpid() {
  Seccomp spec = deny_by_default();
  spec.syscalls.push_back(rule({"exit_group", "getpid"}, SeccompAction::allow));
  // What the sanitizers' runtime needs in the child (the ASan build): all
  // older than exit_group, so the bound stays exit_group's.
  spec.syscalls.push_back(
      rule({"mmap", "munmap", "mprotect", "brk", "madvise", "futex", "write", "rt_sigprocmask",
            "rt_sigaction", "close", "fcntl", "sigaltstack", "gettid", "open"},
           SeccompAction::allow));
  // Named with the default action: skipped by libseccomp, still "named".
  spec.syscalls.push_back(rule({"exit"}, SeccompAction::errno_ret, {}, EPERM));
  return spec;
}

}  // namespace

TEST_CASE("seccomp: the ENOSYS bound is the highest syscall the profile names", "[seccomp]") {
  Seccomp spec = names_exit_and_getpid();
  const int expected =
      std::max({seccomp_syscall_resolve_name("exit_group"), seccomp_syscall_resolve_name("getpid"),
                seccomp_syscall_resolve_name("exit")});
  CHECK(native_bound(spec) == static_cast<uint32_t>(expected));
  // Unknown names do not count.
  spec.syscalls.push_back(rule({"no_such_syscall"}, SeccompAction::allow));
  CHECK(native_bound(spec) == static_cast<uint32_t>(expected));

  SECTION("no stub when the default allows") {
    spec.default_action = SeccompAction::allow;
    CHECK(seccomp_enosys_bounds(spec).empty());
    spec.default_action = SeccompAction::log;
    CHECK(seccomp_enosys_bounds(spec).empty());
  }
  SECTION("no stub when the default errno is ENOSYS already") {
    spec.default_errno_ret = ENOSYS;
    CHECK(seccomp_enosys_bounds(spec).empty());
  }
  SECTION("a denying default of another kind has the stub") {
    spec.default_action = SeccompAction::kill_process;
    CHECK(native_bound(spec).has_value());
  }
  SECTION("no syscall named: no bound") {
    spec.syscalls.clear();
    CHECK(seccomp_enosys_bounds(spec).empty());
    CHECK(seccomp_enosys_stub(seccomp_enosys_bounds(spec)).empty());
  }
}

TEST_CASE("seccomp: the ENOSYS stub covers x86_64 and x32 in one section", "[seccomp]") {
  const std::vector<EnosysBound> bounds = {{AUDIT_ARCH_X86_64, false, 100},
                                           {AUDIT_ARCH_X86_64, true, 0x40000000 + 200},
                                           {AUDIT_ARCH_I386, false, 300}};
  const auto stub = seccomp_enosys_stub(bounds);
  // ld arch; x86_64: jeq, ld nr, jset, jgt, jgt, ret, ja; i386: jeq, ld nr, jgt, ret, ja.
  REQUIRE(stub.size() == 13);
  CHECK(berth::runtime::check_bpf_program(stub).has_value() == false);  // no final return
  CHECK(stub[0].code == (BPF_LD | BPF_W | BPF_ABS));
  CHECK(stub[0].k == 4);
  CHECK(stub[1].k == AUDIT_ARCH_X86_64);
  CHECK(stub[1].jf == 6);  // over the x86_64 section's body
  CHECK(stub[3].code == (BPF_JMP | BPF_JSET | BPF_K));
  CHECK(stub[4].k == 100);
  CHECK(stub[5].k == 0x40000000 + 200);
  CHECK(stub[6].k == (SECCOMP_RET_ERRNO | ENOSYS));
  CHECK(stub[7].code == (BPF_JMP | BPF_JA));
  CHECK(stub[7].k == 5);  // to the first instruction after the stub
  CHECK(stub[8].k == AUDIT_ARCH_I386);
  CHECK(stub[10].k == 300);
  CHECK(stub[12].k == 0);
}

TEST_CASE("seccomp: syscalls newer than the profile get ENOSYS, older unnamed ones the default",
          "[seccomp]") {
  // Compiled with and without the cache: both forms carry the stub.
  TempDir tmp;
  for (const std::string& cache : {std::string(), tmp.path()}) {
    INFO("cache dir: \"" << cache << "\"");
    auto filter = compile_seccomp(names_exit_and_getpid(), cache);
    REQUIRE(filter.has_value());
    const int status = run_in_child([&] {
      if (int rc = load_in_child(*filter); rc != kOk) return rc;
      // Newer than exit_group on every architecture.
      if (syscall(SYS_openat2, 0, 0, 0, 0) != -1 || errno != ENOSYS) return 10;
      if (syscall(SYS_faccessat2, 0, 0, 0, 0) != -1 || errno != ENOSYS) return 11;
      if (syscall(SYS_clone3, 0, 0) != -1 || errno != ENOSYS) return 12;
      // Older than exit_group and not named: the default.
      if (syscall(SYS_getppid) != -1 || errno != EPERM) return 13;
      // Named: allowed.
      if (syscall(SYS_getpid) <= 0) return 14;
      return static_cast<int>(kOk);
    });
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == kOk);
  }
}

TEST_CASE("seccomp: a notify filter with the ENOSYS stub still hands back its listener",
          "[seccomp]") {
  Seccomp spec = names_exit_and_getpid();
  spec.syscalls.push_back(rule({"getppid"}, SeccompAction::notify));
  auto filter = compile_seccomp(spec);
  REQUIRE(filter.has_value());
  REQUIRE_FALSE(filter->program().empty());
  const int status = run_in_child([&] {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return static_cast<int>(kNnpFailed);
    auto fd = load_seccomp(*filter);
    if (!fd) return static_cast<int>(kLoadFailed);
    if (!*fd || (fcntl(fd->get(), F_GETFD) & FD_CLOEXEC) == 0)
      return static_cast<int>(kCheckFailed);
    if (syscall(SYS_openat2, 0, 0, 0, 0) != -1 || errno != ENOSYS) return 10;
    return static_cast<int>(kOk);
  });
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == kOk);
}
