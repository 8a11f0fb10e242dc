// berth-shim: one per task, started by berthd (INTERFACES.md: "not run by
// hand"). Detaches from its starter (own session, reparented away), becomes
// the child subreaper of everything its containers spawn, and runs the task
// through the runtime library in-process. Protocol: shim/PROTOCOL.md.
//
//   berth-shim --task-dir DIR [--socket PATH] [--hold] [--foreground] [--debug]
//   berth-shim init -- CMD...      (pid 1 of an initProcessEnabled container)
//
// Without --foreground it prints the shim's pid once the socket listens and
// the containers were started, and exits 0; the shim goes on alone. Its own
// log is <task-dir>/shim.log. With --hold no container starts before a
// client sends `start` (shim/PROTOCOL.md).
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "common/fs.h"
#include "common/log.h"
#include "runtime/sealed_exe.h"
#include "shim/init.h"
#include "shim/shim.h"
#include "shim/task.h"

namespace {

int usage(const char* why) {
  std::fprintf(stderr,
               "berth-shim: %s\nusage: berth-shim --task-dir DIR [--socket PATH] [--hold] "
               "[--foreground] [--debug]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace berth;
  // Inside a container as pid 1 (initProcessEnabled): nothing else of the
  // shim runs there.
  if (argc >= 2 && std::string_view(argv[1]) == "init") return shim::run_init(argc - 2, argv + 2);
  shim::ShimOptions opts;
  bool foreground = false;
  bool debug = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if ((a == "--task-dir" || a == "--socket") && i + 1 < argc) {
      (a == "--task-dir" ? opts.task_dir : opts.socket_path) = argv[++i];
    } else if (a == "--hold") {
      opts.hold = true;
    } else if (a == "--foreground") {
      foreground = true;
    } else if (a == "--debug") {
      debug = true;
    } else {
      return usage(("unknown argument " + std::string(a)).c_str());
    }
  }
  if (opts.task_dir.empty()) return usage("--task-dir is required");

  // Containers' inits, health checks and berth-init are clones or execs of
  // this process: from here on it runs from a copy no container can write
  // (runtime/sealed_exe.h). The overlay costs no memory per shim; the memfd
  // fallback costs the binary's size per shim.
  std::string seal_fallback;
  auto sealed = runtime::ensure_sealed_exe(argv, runtime::SealMethod::overlay, &seal_fallback);
  if (!sealed) {
    std::fprintf(stderr, "berth-shim: %s\n", sealed.error().str().c_str());
    return 1;
  }

  // Checked before detaching, so that the starter sees a bad task at once.
  auto task = shim::load_task(opts.task_dir);
  if (!task) {
    std::fprintf(stderr, "berth-shim: %s\n", task.error().str().c_str());
    return 1;
  }

  int ready[2] = {-1, -1};
  if (!foreground) {
    if (::pipe2(ready, O_CLOEXEC) != 0) {
      std::perror("berth-shim: pipe");
      return 1;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("berth-shim: fork");
      return 1;
    }
    if (pid > 0) {
      ::close(ready[1]);
      char c = 0;
      ssize_t n;
      while ((n = ::read(ready[0], &c, 1)) < 0 && errno == EINTR) {
      }
      if (n != 1 || c != 'R') {
        std::fprintf(stderr, "berth-shim: the shim failed to start; see %s/shim.log\n",
                     opts.task_dir.c_str());
        return 1;
      }
      std::printf("%d\n", pid);
      return 0;
    }
    ::close(ready[0]);
    ::setsid();
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      if (devnull > 2) ::close(devnull);
    }
  }
  log::Options lo;
  lo.file = fs::join(opts.task_dir, "shim.log");
  lo.level = debug ? log::Level::debug : log::Level::info;
  log::setup(lo);
  // Orphans of the containers (daemons that double-fork) are reaped here,
  // not by the host's init.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  if (*sealed != runtime::SealMethod::overlay) {
    log::warn("running from a sealed {} copy of berth-shim, which costs its size in memory: {}",
              runtime::seal_method_name(*sealed), seal_fallback);
  }
  int rc = shim::run_shim(*task, opts, foreground ? -1 : ready[1]);
  log::flush();
  return rc;
}
