// Starting a task's berth-shim from the multi-threaded daemon: posix_spawn
// of the starter (`berth-shim --task-dir DIR --hold`; no fork() in a
// threaded process), whose output is the detached shim's pid; the starter is
// reaped by its own pid (never waitpid(-1): other children belong to other
// parts of the daemon).
#pragma once

#include <sys/types.h>

#include <string>

#include "common/error.h"
#include "common/fd.h"

namespace berth::cp {

struct SpawnedShim {
  pid_t pid = -1;
  UniqueFd pidfd;  // readable once the shim has exited
};

// Runs the starter and returns the held shim. The error carries the
// starter's stderr (a refused task.json says why there).
Result<SpawnedShim> spawn_shim(const std::string& shim_binary, const std::string& task_dir);

// A pidfd for `pid` (an adopted shim), or an error when it is gone.
Result<UniqueFd> open_pidfd(pid_t pid);
// Whether the process behind `pidfd` is still running.
bool pidfd_alive(int pidfd);
// Sends `sig` through the pidfd (no pid reuse race).
Result<void> pidfd_signal(int pidfd, int sig);
// Waits up to `timeout_ms` for the process to exit; true when it has.
bool pidfd_wait_exit(int pidfd, int timeout_ms);

}  // namespace berth::cp
