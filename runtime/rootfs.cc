#include "runtime/rootfs.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/fs.h"
#include "runtime/devices.h"
#include "runtime/mounts.h"

namespace berth::runtime {
namespace {

bool is_under(std::string_view path, std::string_view dir) {
  if (dir == "/") return true;
  return path.starts_with(dir) && (path.size() == dir.size() || path[dir.size()] == '/');
}

// pivot_root(2) fails with EINVAL when the new root's parent mount is shared,
// and a bind below a shared mount would propagate to the host. runc makes
// that one mount private (rootfsParentMountPrivate); a slave is enough for
// both, and keeps what the host mounts there reaching the container, so the
// bind made from it is a slave too and rootfsPropagation "slave" (and the
// default rslave) still mean something after the pivot.
Result<void> make_parent_mount_slave(const std::string& rootfs) {
  char real[PATH_MAX];
  if (::realpath(rootfs.c_str(), real) == nullptr) {
    return sys_error("rootfs", "resolve rootfs {}", rootfs);
  }
  BERTH_ASSIGN(std::vector<MountInfo> mounts, read_mountinfo());
  const MountInfo* parent = nullptr;
  for (const MountInfo& m : mounts) {
    // The last of equal mount points is the one on top.
    if (is_under(real, m.mount_point) &&
        (!parent || m.mount_point.size() >= parent->mount_point.size())) {
      parent = &m;
    }
  }
  if (parent == nullptr) return {};
  bool shared = std::ranges::any_of(parent->optional,
                                    [](const std::string& f) { return f.starts_with("shared:"); });
  if (!shared) return {};
  if (::mount(nullptr, parent->mount_point.c_str(), nullptr, MS_SLAVE, nullptr) != 0) {
    return sys_error("rootfs", "make {} (parent mount of {}) a slave", parent->mount_point, rootfs);
  }
  return {};
}

Result<unsigned long> root_propagation(const Spec& spec) {
  const std::string& name = spec.linux.rootfs_propagation;
  // Like runc: rslave unless asked, so that host mounts still reach the
  // container but nothing it mounts reaches the host.
  if (name.empty()) return MS_SLAVE | MS_REC;
  MountFlags f = parse_mount_options({name});
  if (f.propagation == 0 || f.flags != 0 || !f.data.empty()) {
    return error("rootfs", "linux.rootfsPropagation: unknown propagation \"{}\"", name);
  }
  return f.propagation;
}

// The propagation "/" gets before the rootfs is bound: the asked one, except
// that an unbindable "/" could not be bound at all (EINVAL). Unbindable is
// private that also refuses binds, so private until the pivot is done;
// finalize_rootfs then applies what was asked.
Result<unsigned long> propagation_before_bind(const Spec& spec) {
  BERTH_ASSIGN(unsigned long p, root_propagation(spec));
  if ((p & MS_UNBINDABLE) != 0) p = (p & ~static_cast<unsigned long>(MS_UNBINDABLE)) | MS_PRIVATE;
  return p;
}

bool is_dev_mount(const Mount& m) {
  return clean_path(m.destination) == "/dev";
}

// A read-only /dev is mounted writable and made read-only once the nodes and
// links are in it, as runc does.
Mount writable_copy(const Mount& m) {
  Mount copy = m;
  copy.options.push_back("rw");
  return copy;
}

Result<void> mount_all(const RootfsContext& ctx, const RootDir& root) {
  bool dev_readonly = false;
  for (const Mount& m : ctx.spec->mounts) {
    if (is_dev_mount(m) && (parse_mount_options(m.options).flags & MS_RDONLY)) {
      dev_readonly = true;
      BERTH_TRY(mount_entry(root, writable_copy(m), ctx.in_user_namespace, ctx.cgroups));
      continue;
    }
    BERTH_TRY(mount_entry(root, m, ctx.in_user_namespace, ctx.cgroups));
  }
  BERTH_TRY(populate_dev(*ctx.spec, ctx.rootfs, ctx.in_user_namespace, ctx.console_path));
  if (dev_readonly) BERTH_TRY(remount_bind(root, "/dev", MS_RDONLY, /*keep_current=*/true));
  return {};
}

Result<void> make_readonly(const RootDir& root, const std::string& path) {
  auto target = open_in_root(root, path, Create::none);
  if (!target && target.error().err == ENOENT) return {};  // runc skips missing paths
  if (!target) return std::unexpected(std::move(target).error());
  std::string fd_path = proc_fd_path(target->get());
  if (::mount(fd_path.c_str(), fd_path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return sys_error("mount", "bind {} on itself", path);
  }
  // Top mount only (MS_REC means nothing with MS_REMOUNT), as in runc.
  return remount_bind(root, path, MS_RDONLY, /*keep_current=*/true);
}

Result<void> mask_path(const RootDir& root, const std::string& path) {
  auto target = open_in_root(root, path, Create::none);
  if (!target && target.error().err == ENOENT) return {};
  if (!target) return std::unexpected(std::move(target).error());
  struct stat st;
  if (::fstat(target->get(), &st) != 0) return sys_error("mount", "stat masked path {}", path);
  std::string fd_path = proc_fd_path(target->get());
  if (S_ISDIR(st.st_mode)) {
    // An empty read-only tmpfs hides the directory's entries. No "size=0":
    // for tmpfs that means unlimited, and read-only already keeps it empty.
    if (::mount("tmpfs", fd_path.c_str(), "tmpfs", MS_RDONLY, nullptr) != 0) {
      return sys_error("mount", "mask {} with a read-only tmpfs", path);
    }
    return {};
  }
  // /dev/null of the container (the pivot is done): reads are empty, writes
  // vanish.
  if (::mount("/dev/null", fd_path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return sys_error("mount", "mask {} with /dev/null", path);
  }
  return {};
}

Result<void> make_root_readonly(const RootDir& root) {
  BERTH_ASSIGN(unsigned long keep, mount_flags_to_keep(root.fd.get(), MS_RDONLY));
  // "/" itself rather than /proc/self/fd: the container may have no /proc.
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, nullptr) != 0) {
    return sys_error("mount", "remount / read-only");
  }
  return {};
}

}  // namespace

Result<void> prepare_rootfs(const RootfsContext& ctx) {
  if (ctx.spec == nullptr) return error("rootfs", "prepare_rootfs: no spec");
  if (!ctx.rootfs.starts_with('/')) {
    return error("rootfs", "rootfs {} is not an absolute path", ctx.rootfs);
  }
  BERTH_ASSIGN(unsigned long propagation, propagation_before_bind(*ctx.spec));
  if (::mount(nullptr, "/", nullptr, propagation, nullptr) != 0) {
    return sys_error(
        "rootfs", "set propagation {} on /",
        ctx.spec->linux.rootfs_propagation.empty() ? "rslave" : ctx.spec->linux.rootfs_propagation);
  }
  BERTH_TRY(make_parent_mount_slave(ctx.rootfs));
  // pivot_root needs the new root to be a mount point.
  if (::mount(ctx.rootfs.c_str(), ctx.rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return sys_error("mount", "bind rootfs {} on itself", ctx.rootfs);
  }
  // Opened after the bind, so that mounts land on the bind and not under it.
  BERTH_ASSIGN(RootDir root, RootDir::open(ctx.rootfs));
  return mount_all(ctx, root);
}

Result<void> pivot_into_rootfs(const std::string& rootfs) {
  UniqueFd old_root(::open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!old_root) return sys_error("rootfs", "open old root /");
  UniqueFd new_root(::open(rootfs.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!new_root) return sys_error("rootfs", "open new root {}", rootfs);
  if (::fchdir(new_root.get()) != 0) return sys_error("rootfs", "chdir to {}", rootfs);
  // pivot_root(".", ".") stacks the old root on top of the new one, so the
  // image needs no directory to hold it (runc's trick, see pivot_root(2)).
  if (::syscall(SYS_pivot_root, ".", ".") != 0) {
    return sys_error("rootfs", "pivot_root(\".\", \".\") in {}", rootfs);
  }
  if (::fchdir(old_root.get()) != 0) return sys_error("rootfs", "chdir to the old root");
  // The old root may still share peers with the host (rootfsPropagation
  // shared); a slave's unmount does not propagate back to the host.
  if (::mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) {
    return sys_error("rootfs", "make the old root rslave");
  }
  if (::umount2(".", MNT_DETACH) != 0) return sys_error("rootfs", "detach the old root");
  if (::chdir("/") != 0) return sys_error("rootfs", "chdir to / of {}", rootfs);
  return {};
}

Result<void> chroot_into_rootfs(const std::string& rootfs) {
  if (::chdir(rootfs.c_str()) != 0) return sys_error("rootfs", "chdir to {}", rootfs);
  if (::chroot(".") != 0) return sys_error("rootfs", "chroot to {}", rootfs);
  if (::chdir("/") != 0) return sys_error("rootfs", "chdir to / of {}", rootfs);
  return {};
}

Result<void> check_rootfs_without_mount_namespace(const Spec& spec) {
  auto refuse = [](std::string_view field) {
    return error("spec",
                 "{}: cannot be applied without a mount namespace (it would change the host's "
                 "mount table); add a mount namespace to linux.namespaces",
                 field);
  };
  if (!spec.mounts.empty()) return refuse("mounts");
  if (spec.root.readonly) return refuse("root.readonly");
  if (!spec.linux.masked_paths.empty()) return refuse("linux.maskedPaths");
  if (!spec.linux.readonly_paths.empty()) return refuse("linux.readonlyPaths");
  if (!spec.linux.devices.empty()) return refuse("linux.devices");
  if (!spec.linux.rootfs_propagation.empty()) return refuse("linux.rootfsPropagation");
  if (spec.process && spec.process->terminal) return refuse("process.terminal (/dev/console)");
  return {};
}

Result<void> finalize_rootfs(const Spec& spec) {
  // The parent of the rootfs may have been made a slave before the bind
  // (make_parent_mount_slave), and unbindable had to wait for the bind, so
  // "/" is given the asked propagation again now that it is the root, as
  // runc does after pivot_root.
  if (!spec.linux.rootfs_propagation.empty()) {
    BERTH_ASSIGN(unsigned long propagation, root_propagation(spec));
    if (::mount(nullptr, "/", nullptr, propagation, nullptr) != 0) {
      return sys_error("rootfs", "set propagation {} on /", spec.linux.rootfs_propagation);
    }
  }
  // After pivot_root "/" is the container's root; resolving beneath it still
  // refuses /proc magic links, which could reach other mount namespaces.
  BERTH_ASSIGN(RootDir root, RootDir::open("/"));
  for (const std::string& path : spec.linux.readonly_paths) BERTH_TRY(make_readonly(root, path));
  for (const std::string& path : spec.linux.masked_paths) BERTH_TRY(mask_path(root, path));
  if (spec.root.readonly) BERTH_TRY(make_root_readonly(root));
  return {};
}

}  // namespace berth::runtime
