// Namespaces: which to create, which to join, and the clone3 that creates
// the container's init.
//
// Parent side: open_joined_namespaces() opens and checks every
// linux.namespaces[].path before anything is created, so a wrong path fails
// early and leaves nothing behind; spawn_init() clones the child with the
// CLONE_NEW* flags of the namespaces to create, directly into its v2 cgroup
// when there is one (CLONE_INTO_CGROUP), falling back to clone(2) where
// clone3 is missing; write_id_mappings() fills uid_map/gid_map.
// Child side: join_namespaces() setns()es into the joined ones.
#pragma once

#include <sys/types.h>

#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/spec.h"

namespace berth::runtime {

int namespace_clone_flag(NamespaceType t);

// CLONE_NEW* flags for the namespaces the spec creates (no path). The cgroup
// namespace is left out: the child unshares it after it has been placed in
// its cgroups, so that the namespace's root is the container's cgroup.
unsigned long namespace_create_flags(const Linux& linux);

struct JoinedNamespace {
  NamespaceType type;
  UniqueFd fd;
};

// Opens every namespace path and checks with NS_GET_NSTYPE that it is the
// namespace it claims to be. The user namespace comes first in the result:
// joining it first gives the others the right owner.
Result<std::vector<JoinedNamespace>> open_joined_namespaces(const Linux& linux);

// Child side: setns() into each joined namespace except pid (see spawn_init).
Result<void> join_namespaces(const std::vector<JoinedNamespace>& joined);

struct SpawnedInit {
  pid_t pid = -1;
  UniqueFd pidfd;          // -1 if the kernel gave none (clone fallback)
  bool in_cgroup = false;  // placed by CLONE_INTO_CGROUP
};

// Forks the container's init with `flags`. Returns in both processes: the
// child sees pid == 0. A joined pid namespace is entered through the
// parent's pid_for_children (setns on a pid namespace moves only future
// children), restored right after the clone. `cgroup_fd` < 0: no
// CLONE_INTO_CGROUP.
// `legacy_clone` forces the clone(2) path that kernels without clone3 take
// (tests cover it on kernels that have clone3).
Result<SpawnedInit> spawn_init(unsigned long flags, int cgroup_fd,
                               const std::vector<JoinedNamespace>& joined,
                               bool legacy_clone = false);

// Writes /proc/<pid>/uid_map and gid_map (the parent is privileged, so
// several ranges are allowed and setgroups need not be denied).
Result<void> write_id_mappings(pid_t pid, const std::vector<IdMapping>& uids,
                               const std::vector<IdMapping>& gids);

}  // namespace berth::runtime
