// Fork safety of the hooks: between fork() and execve() the child of a
// hook may only make async-signal-safe calls. Allocating there deadlocks
// once the caller has threads (berthd) and another thread held an allocator
// or library lock at the fork. This binary's operator new makes any
// allocation in a forked child of a watched process fatal (exit 99), which
// makes such an allocation visible as the hook's exit status.
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>

#include <catch2/catch.hpp>

#include "runtime/hooks.h"
#include "tests/skip.h"

// ASan brings its own operator new (and reports a replacement's frees as
// mismatched); the check runs in the normal build, the ASan run skips it.
#if defined(__SANITIZE_ADDRESS__)
#define BERTH_OWN_OPERATOR_NEW 0
#else
#define BERTH_OWN_OPERATOR_NEW 1
#endif

namespace {
std::atomic<pid_t> g_watched_parent{0};
}  // namespace

#if BERTH_OWN_OPERATOR_NEW
// The replacement pair is malloc/free on both sides; g++ 12 cannot see that
// through the inlined std::allocator and warns.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  pid_t parent = g_watched_parent.load(std::memory_order_relaxed);
  if (parent != 0 && ::getpid() != parent) ::_exit(99);  // allocated after fork
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#endif

TEST_CASE("hooks: the child allocates nothing between fork and exec", "[hooks]") {
  using namespace berth::runtime;
  if (!BERTH_OWN_OPERATOR_NEW) {
    BERTH_SKIP("under ASan, which owns operator new; the normal build runs this check");
  }
  Hook h{"/bin/sh", {"sh", "-c", "cat >/dev/null; exit 0"}, {"A=1", "B=2"}, 10};
  // Other threads allocate all along, as berthd's would.
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop) {
      std::string s(1000, 'x');
      (void)s;
    }
  });
  g_watched_parent = ::getpid();
  berth::Result<void> r[3] = {run_hooks({h}, R"({"id":"c"})", "prestart"),
                              run_hooks({h, h}, R"({"id":"c"})", "poststart"),
                              run_hooks({h}, R"({"id":"c"})", "poststop")};
  g_watched_parent = 0;
  stop = true;
  busy.join();
  for (auto& one : r) {
    INFO((one ? std::string("ok") : one.error().str()));
    CHECK(one);
  }
}
