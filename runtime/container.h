// The container lifecycle: the orchestrator that runs the isolation steps
// in order (container.cc reads like a recipe), and the OCI operations over
// the state directory.
//
// Threading: create_container() clones the init without CLONE_VM and without
// glibc's fork handlers, so it must be called from a single-threaded
// process (berth-runtime and berth-shim are).
#pragma once

#include <sys/types.h>

#include <string>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/cgroup.h"
#include "runtime/state.h"

namespace berth::runtime {

struct CreateOptions {
  std::string id;
  std::string bundle;  // absolute path of the bundle directory
  std::string root;    // state root (--root)
  std::string pid_file;
  std::string console_socket;  // path of a unix socket to receive the pty master
  int console_fd = -1;         // or an already connected socket (run in the foreground)
  unsigned preserve_fds = 0;   // fds 3 .. 3+N-1 are passed to the process
  // run: the init execs as soon as it is ready instead of waiting for start.
  bool start_now = false;
  // fds that become the process's stdin/stdout/stderr (-1: the caller's).
  // Ignored for a terminal process (the pty is its stdio).
  int stdio[3] = {-1, -1, -1};
  // Keep the init's parent-death signal (SIGKILL) armed after `ready`: for a
  // supervisor that stays the parent (berth-shim), so that the container
  // dies with it. `create` of the CLI exits at once and must not set it.
  bool die_with_parent = false;
  // Replaces the bundle's linux.cgroupsPath: a supervisor that places the
  // container in a cgroup it manages (berth-shim: a leaf below the task's
  // cgroup). Empty: the bundle's.
  std::string cgroups_path;
};

struct CreatedContainer {
  ContainerState state;
  UniqueFd pidfd;
  // With start_now: the parent's end of the sync socket; EOF on it means
  // the user process has been exec'd (see wait_exec).
  UniqueFd sync;
};

Result<CreatedContainer> create_container(const CreateOptions& opts);
// With start_now: waits until the init has exec'd the user process, then
// records the container as running and runs the poststart hooks.
Result<void> wait_exec(CreatedContainer& c, const std::string& root);
Result<void> start_container(const std::string& root, const std::string& id);
// The record with its status refreshed from the live process.
Result<ContainerState> container_state(const std::string& root, const std::string& id);
Result<void> kill_container(const std::string& root, const std::string& id, int signal, bool all);
Result<void> delete_container(const std::string& root, const std::string& id, bool force);
Result<CgroupStats> container_stats(const std::string& root, const std::string& id);

// Shared with exec.cc: a connected unix stream socket (console socket,
// seccomp listenerPath), and a pidfd of a container's init that is checked to
// still be that init (start time), ESRCH otherwise.
Result<UniqueFd> connect_unix_socket(const std::string& path);
Result<UniqueFd> open_container_init(const ContainerState& st);

}  // namespace berth::runtime
