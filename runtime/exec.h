// exec: starts another process inside a running container (`runc exec`),
// for the task shim's health checks and for `berth-runtime exec`.
//
// The new process gets what the container's own process got: all of its
// namespaces, its cgroups, the spec's user, groups, umask, rlimits,
// capabilities, no_new_privileges and the same seccomp filter. It is a
// direct child of the caller, so the caller reaps it and gets its exit
// status; a failure between fork and execve (a missing binary, a bad cwd)
// comes back as an Error naming the step, not as an exit code. No terminal
// is allocated (process.terminal is not looked at): the process gets the
// stdio it is given.
//
// The spec is read again from the bundle's config.json: berth keeps no copy
// of it in the state, so an edited config.json changes what exec applies.
//
// Threading: like create_container(), the caller must be single-threaded
// (the process is forked without glibc's fork handlers).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "common/fd.h"

namespace berth::runtime {

struct ExecOptions {
  std::vector<std::string> args;  // required; args[0] is looked up in the container's PATH
  std::vector<std::string> env;   // empty: the container process's env from config.json
  std::string cwd;                // empty: the container process's cwd; else absolute
  int stdio[3] = {-1, -1, -1};    // fds for 0/1/2 in the new process; -1: inherit the caller's
};

struct ExecedProcess {
  pid_t pid = -1;
  UniqueFd pidfd;
};

// Starts `opts.args` in the running container `id` under the state root
// `root`. Refuses a container that is not running.
Result<ExecedProcess> exec_in_container(const std::string& root, const std::string& id,
                                        const ExecOptions& opts);

}  // namespace berth::runtime
