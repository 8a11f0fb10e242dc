// Root filesystem: everything between "the child is in its new mount
// namespace" and "the child's / is the container's root".
//
// Child side only; called by the orchestrator in this order:
//   1. prepare_rootfs   — make / of the new mount ns rslave (or what
//      rootfsPropagation says) so nothing propagates back to the host; bind
//      the rootfs onto itself; mount spec.mounts in order, every destination
//      resolved inside the rootfs (openat2 RESOLVE_IN_ROOT, so a symlink in the
//      image cannot redirect a mount onto the host: CVE-2021-30465); populate
//      /dev (devices.h).
//   2. pivot_into_rootfs — pivot_root(".", ".") and detach the old root.
//   3. finalize_rootfs  — masked paths, read-only paths, root.readonly;
//      after sysctls are written (they need /proc/sys writable).
#pragma once

#include <string>

#include "common/error.h"
#include "runtime/cgroup.h"
#include "runtime/spec.h"

namespace berth::runtime {

struct RootfsContext {
  const Spec* spec = nullptr;
  std::string rootfs;                     // absolute host path of the root filesystem
  bool in_user_namespace = false;         // devices are bind-mounted, not mknod'ed
  const CgroupLayout* cgroups = nullptr;  // for "cgroup" type mounts
  std::string console_path;               // pty slave to bind on /dev/console, or empty
};

Result<void> prepare_rootfs(const RootfsContext& ctx);
Result<void> pivot_into_rootfs(const std::string& rootfs);
Result<void> finalize_rootfs(const Spec& spec);

// Without a mount namespace (runtime-spec config-linux.md: a namespace type
// not listed is inherited) the container shares the caller's mount table,
// which the runtime must not change: no mount is made, and the init only
// chroots into the rootfs (runc's fallback when there is no mount
// namespace). check_rootfs_without_mount_namespace refuses, naming the
// field, what could only be done with mounts (parent side, before create).
Result<void> check_rootfs_without_mount_namespace(const Spec& spec);
Result<void> chroot_into_rootfs(const std::string& rootfs);

// Mount flags from spec options ("ro", "nosuid", "rbind", "rprivate", ...).
// Unknown options are passed to the filesystem as data, as mount(8) does.
struct MountFlags {
  unsigned long flags = 0;        // MS_* for mount(2)
  unsigned long propagation = 0;  // MS_PRIVATE/MS_SLAVE/MS_SHARED/MS_UNBINDABLE (+MS_REC)
  unsigned long clear = 0;        // flags explicitly cleared ("rw", "suid", ...)
  std::string data;               // comma-joined filesystem options
  bool bind = false;
  bool recursive = false;
};
MountFlags parse_mount_options(const std::vector<std::string>& options);

}  // namespace berth::runtime
