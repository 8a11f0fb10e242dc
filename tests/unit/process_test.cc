#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/skip.h"

#include "common/fs.h"
#include "runtime/process.h"
#include "temp_dir.h"

using namespace berth::runtime;
using berth::test::TempDir;

namespace {
void make_executable(const std::string& path) {
  REQUIRE(berth::fs::write_file_atomic(path, "#!/bin/sh\n", 0755));
}
}  // namespace

TEST_CASE("executables are found on the container's PATH, in order", "[process]") {
  TempDir d;
  REQUIRE(berth::fs::mkdir_p(d / "a"));
  REQUIRE(berth::fs::mkdir_p(d / "b"));
  make_executable(d / "b/tool");
  REQUIRE(berth::fs::write_file_atomic(d / "a/tool", "not executable", 0644));
  std::vector<std::string> env = {"HOME=/", "PATH=" + (d / "a") + ":" + (d / "b")};
  auto r = find_executable("tool", env);
  REQUIRE(r);
  CHECK(*r == d / "b/tool");
  CHECK(*find_executable("/abs/path", env) == "/abs/path");
  auto missing = find_executable("nope", env);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().str() == "process: executable \"nope\" not found in $PATH (" + (d / "a") +
                                     ":" + (d / "b") + "): No such file or directory");
}

TEST_CASE("sysctls are written below /proc/sys with dots as slashes", "[process]") {
  TempDir d;
  REQUIRE(berth::fs::mkdir_p(d / "net/ipv4"));
  REQUIRE(berth::fs::write_file_atomic(d / "net/ipv4/ip_forward", "0"));
  REQUIRE(write_sysctls({{"net.ipv4.ip_forward", "1"}}, d.path()));
  CHECK(*berth::fs::read_file(d / "net/ipv4/ip_forward") == "1");
  auto r = write_sysctls({{"net.nope", "1"}}, d.path());
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "fs: sysctl net.nope: open " + (d / "net/nope") + ": No such file or directory");
}

TEST_CASE("inherited fds are closed at exec, stdio and preserved ones kept", "[process]") {
  // In a child: fds 50 and 51 open, everything from 51 on marked
  // close-on-exec, then exec a shell that reports which it still has.
  int out[2];
  REQUIRE(::pipe(out) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    // Fixed numbers well above whatever the test runner (or ASan) holds.
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (::dup2(null_fd, 50) != 50 || ::dup2(null_fd, 51) != 51) ::_exit(3);
    if (!close_inherited_fds(51)) ::_exit(4);  // 50 is "preserved", 51 must go
    // The shell's own fds (not a child's): `[` is a builtin.
    ::execl("/bin/sh", "sh", "-c",
            "[ -e /proc/$$/fd/50 ] && echo kept50; [ -e /proc/$$/fd/51 ] && echo leaked51; true",
            nullptr);
    ::_exit(5);
  }
  ::close(out[1]);
  std::string listing;
  char buf[256];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) listing.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(listing == "kept50\n");
}

TEST_CASE("a cwd outside the root is refused", "[process]") {
  // A directory whose path is unreachable from our root: in a child, chroot
  // into a temp dir while holding a fd to the outside, fchdir there.
  TempDir d;
  if (::geteuid() != 0) {
    BERTH_SKIP("chroot needs root");
  }
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int outside = ::open("/tmp", O_RDONLY | O_DIRECTORY);
    if (::chroot(d.path().c_str()) != 0) ::_exit(2);
    if (::fchdir(outside) != 0) ::_exit(3);
    // "." is now outside the root: exactly the CVE-2024-21626 situation.
    auto r = enter_cwd(".");
    ::_exit(r ? 0 : 10);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 10);
}
