// Mount helpers shared by rootfs.cc and devices.cc: resolving a container
// path safely inside the root filesystem, and mounting one spec entry.
//
// Every mount made while the container's root is still a directory of the
// host goes onto "/proc/self/fd/<fd>" of a target opened beneath the rootfs
// (openat2 RESOLVE_IN_ROOT). A symlink planted in the image ("/evil -> /")
// then resolves inside the rootfs instead of redirecting the mount onto the
// host (CVE-2021-30465, runc's "mount destination race").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/cgroup.h"
#include "runtime/rootfs.h"
#include "runtime/spec.h"

namespace berth::runtime {

// The directory every container path is resolved beneath, and its path for
// error messages ("mount proc on /proc (in /var/lib/x/rootfs)").
struct RootDir {
  UniqueFd fd;  // O_PATH | O_DIRECTORY
  std::string path;

  static Result<RootDir> open(const std::string& path);
  // "<dest> (in <path>)"
  std::string where(std::string_view dest) const;
};

enum class Create { none, directory, file };
// automatic: openat2(RESOLVE_IN_ROOT), or the component walk where the kernel
// has no openat2 (< 5.6). The explicit modes exist for tests.
enum class Resolver { automatic, openat2, walk };

// Opens `path` (a container path; absolute or not, ".." and symlinks cannot
// leave the root) as an O_PATH fd. With `create`, missing components are made
// as directories (mode 0755) and, for Create::file, the last one as an empty
// file (mode 0644). Errors carry the errno; the message names the path.
Result<UniqueFd> open_in_root(const RootDir& root, std::string_view path, Create create,
                              Resolver resolver = Resolver::automatic);

// "/proc/self/fd/<fd>": the name mount(2) takes for an opened target.
std::string proc_fd_path(int fd);

// "/a//b/./c/" -> "/a/b/c" (".." is left to the resolver).
std::string clean_path(std::string_view path);

// The flags of the mount under `fd` that a bind remount must repeat: in a
// user namespace the kernel locks them (MNT_LOCK_*) and a remount that would
// clear one fails with EPERM. The atime flags are kept only when `requested`
// asks for none of its own. As runc's remount does with statfs(2).
Result<unsigned long> mount_flags_to_keep(int fd, unsigned long requested);

// Changes the flags of the mount at `dest` (MS_REMOUNT | MS_BIND: per-mount
// flags only, the superblock is untouched). With keep_current the mount's
// present flags are added (mount_flags_to_keep), so that "make it read-only"
// does not also try to clear nosuid.
Result<void> remount_bind(const RootDir& root, std::string_view dest, unsigned long flags,
                          bool keep_current);

// One line of /proc/self/mountinfo, unescaped.
struct MountInfo {
  std::string mount_point;
  std::vector<std::string> optional;  // "shared:1", "master:2", ...
  std::string fstype;
  std::vector<std::string> super_options;
};
Result<std::vector<MountInfo>> read_mountinfo(const std::string& path = "/proc/self/mountinfo");

// Mounts one spec.mounts entry beneath `root`.
Result<void> mount_entry(const RootDir& root, const Mount& m, bool in_user_namespace,
                         const CgroupLayout* cgroups);

// Bind-mounts the host path `source` onto an empty file created at `dest`
// in the root (device nodes in a user namespace, /dev/console).
Result<void> bind_file(const RootDir& root, const std::string& source, std::string_view dest);

}  // namespace berth::runtime
