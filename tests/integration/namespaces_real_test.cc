// spawn_init on the real kernel: clone3 and the clone(2) fallback both give
// the child its new namespaces.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "harness.h"
#include "runtime/namespaces.h"

using namespace berth::runtime;

namespace {

// In a throwaway child (so the test process keeps its own namespaces):
// spawns an init with new pid and uts namespaces and reports whether it
// came out as pid 1 with its own hostname, and whether a pidfd came back.
int spawn_and_check(bool legacy_clone) {
  pid_t helper = ::fork();
  if (helper == 0) {
    auto init = spawn_init(CLONE_NEWPID | CLONE_NEWUTS, -1, {}, legacy_clone);
    if (!init) ::_exit(10);
    if (init->pid == -1) {
      // The init: pid 1 of its namespace, and a hostname of its own.
      bool ok = ::getpid() == 1 && ::sethostname("spawned", 7) == 0;
      ::_exit(ok ? 0 : 11);
    }
    int status = 0;
    if (::waitpid(init->pid, &status, 0) != init->pid) ::_exit(12);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ::_exit(13);
    // clone3 hands back a pidfd; the clone(2) fallback has none.
    ::_exit(static_cast<bool>(init->pidfd) == !legacy_clone ? 0 : 14);
  }
  int status = 0;
  REQUIRE(::waitpid(helper, &status, 0) == helper);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("spawn_init creates the init in new namespaces with clone3", "[privileged][namespaces]") {
  REQUIRE_PRIVILEGED();
  CHECK(spawn_and_check(false) == 0);
}

TEST_CASE("spawn_init falls back to clone(2) where clone3 is missing", "[privileged][namespaces]") {
  REQUIRE_PRIVILEGED();
  CHECK(spawn_and_check(true) == 0);
  char host[64] = {};
  REQUIRE(::gethostname(host, sizeof host) == 0);
  CHECK(std::string(host) != "spawned");  // the init's uts namespace was its own
}
