// The container process's own attributes: hostname, sysctls, rlimits,
// personality, user and groups, umask, working directory, inherited fds and
// the final execve. Child side; the orchestrator (container.cc) calls these
// in the order its comments explain.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {
class SeccompFilter;
}

namespace berth::runtime {

Result<void> set_hostname(const std::string& hostname, const std::string& domainname);
// Writes each sysctl to /proc/sys (dots become slashes). The parser already
// refused sysctls that are not namespaced.
Result<void> write_sysctls(const std::map<std::string, std::string>& sysctl,
                           const std::string& proc_sys = "/proc/sys");
Result<void> set_rlimits(const std::vector<Rlimit>& rlimits);
Result<void> set_personality(const Personality& p);
// process.scheduler (sched_setattr) and process.ioPriority (ioprio_set) for
// the calling process; no allocation unless it fails. Before the uid switch
// and the seccomp filter: raising them needs CAP_SYS_NICE / CAP_SYS_ADMIN,
// and a user profile need not allow the syscalls.
Result<void> set_scheduling(const Process& proc);
// setgroups, setresgid, setresuid; with PR_SET_KEEPCAPS set by the caps step
// the permitted set survives the uid change.
Result<void> set_user(const User& user, bool in_user_namespace);
// chdir(cwd) and make sure the result is inside the container's root:
// getcwd() fails with ENOENT for a directory outside the process's root, the
// symptom of a leaked host fd being used as cwd (runc CVE-2024-21626).
Result<void> enter_cwd(const std::string& cwd);
// Marks every fd >= first_closed close-on-exec, so the user process inherits
// stdio and the preserved fds only (runc CVE-2024-21626).
Result<void> close_inherited_fds(int first_closed);
// Finds args[0] on the PATH of the container's env (execvpe would use the
// runtime's PATH); errors name the program and the PATH searched.
Result<std::string> find_executable(const std::string& program,
                                    const std::vector<std::string>& env);
// ---- The security-critical sequence, shared by the init and exec ----------
//
// What a process that is about to become the container's (its init, or an
// exec'd one) does between entering the container and execve, in the only
// order that works:
//
//   1. personality, rlimits (raising a hard limit needs CAP_SYS_RESOURCE,
//      so before the uid switch);
//   2. every fd from first_closed_fd on is made close-on-exec, and the cwd
//      is entered and checked (getcwd) — both before any seccomp filter: the
//      runtime's own syscalls must not depend on what the user's profile
//      allows (close_range, getcwd are missing from many profiles);
//   3. the seccomp filter, here only without no_new_privileges: loading it
//      then needs CAP_SYS_ADMIN, which the next steps drop;
//   4. the bounding set (while CAP_SETPCAP is held), the uid/gid switch
//      (PR_SET_KEEPCAPS keeps the permitted set), the final capability sets;
//   5. the cwd again as the user (fchdir of the directory opened in step 2:
//      no path is resolved twice), so that a cwd the user cannot search
//      fails as it would for the user;
//   6. no_new_privileges.
//
// With no_new_privileges the filter is loaded by load_late_seccomp(), the
// caller's very last step before execve.
struct CredentialSteps {
  const Spec* spec = nullptr;  // process and linux.personality/namespaces
  std::string cwd;
  bool set_rlimits = true;  // false when the caller set them already
  int first_closed_fd = 3;  // 3 + preserved fds
  const SeccompFilter* seccomp = nullptr;
  int seccomp_listener_fd = -1;             // for SCMP_ACT_NOTIFY: where the listener goes
  const std::string* state_json = nullptr;  // sent with the listener
};
Result<void> apply_credentials(const CredentialSteps& steps);
// The filter when no_new_privileges lets an unprivileged process load it;
// nothing otherwise (apply_credentials loaded it).
Result<void> load_late_seccomp(const CredentialSteps& steps);

// execve; returns only on failure.
Error exec_process(const std::string& path, const std::vector<std::string>& args,
                   const std::vector<std::string>& env);

}  // namespace berth::runtime
