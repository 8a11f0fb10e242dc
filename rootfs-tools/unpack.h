// Safe unpacking of one OCI image layer (tar, tar+gzip, tar+zstd) with
// libarchive.
//
// Layers come from registries and tarballs we do not trust, so every entry is
// created relative to a directory fd of `dest`, one path component at a time
// with O_NOFOLLOW: an archive can never write outside `dest`, not through
// "..", an absolute path, or a symlink planted by an earlier entry
// (CVE-2018-15664-style escapes, docker cp; CVE-2019-14271).
//
// How the caller stacks layers:
//  - WhiteoutMode::apply: all layers are unpacked in order into ONE directory
//    (a flattened rootfs). ".wh.<name>" removes <name> left by lower layers;
//    ".wh..wh..opq" removes everything in its directory that this layer did not
//    write itself.
//  - WhiteoutMode::overlay: each layer goes into its own directory, used later as
//    an overlayfs lowerdir. Whiteouts become what overlayfs understands: a 0/0
//    character device for ".wh.<name>" and the xattr trusted.overlay.opaque=y
//    on the directory for ".wh..wh..opq" (both need CAP_MKNOD/CAP_SYS_ADMIN).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

namespace berth::rootfs {

enum class WhiteoutMode { apply, overlay };

// Bounds on what one layer may make us do; an archive beyond one fails with
// an error naming the limit and the entry. The defaults are far above real
// images (Docker Hub images nest about 10-40 levels deep, paths stay well
// under 1 KiB, big layers hold a few hundred thousand entries and tens of
// GiB) and far below what hurts the host: a 50 KB tar can otherwise hold a
// directory 20,000 levels deep. 0 means no limit.
struct UnpackLimits {
  // Components of an entry's path (and of a hardlink target).
  uint32_t max_depth = 512;
  // Bytes of an entry's path: PATH_MAX, beyond which the container could not
  // use the file by its name anyway.
  uint32_t max_path = 4096;
  // Entries in the archive (whiteouts included).
  uint64_t max_entries = 4'000'000;
  // Bytes of file data written (sparse holes are not written, so not
  // counted).
  uint64_t max_bytes = 256ull << 30;
};

struct UnpackOptions {
  // Character and block devices are refused unless set: a layer that ships
  // /dev/sda with mode 0666 hands the disk to the container. FIFOs are fine.
  bool allow_devices = false;
  // chown entries to the uid/gid in the archive (needs CAP_CHOWN).
  bool preserve_ownership = true;
  WhiteoutMode whiteouts = WhiteoutMode::apply;
  // Overlay mode: the unpacked layers below this one, topmost first. A parent
  // directory the archive does not list takes mode, owner and mtime from the
  // first of them that has it (else 0755, root), so the overlay shows what
  // the flattened image would.
  std::vector<std::string> lower_dirs;
  UnpackLimits limits;
};

struct UnpackStats {
  uint64_t files = 0;  // regular files, FIFOs and device nodes
  uint64_t dirs = 0;
  uint64_t links = 0;      // symlinks and hardlinks
  uint64_t whiteouts = 0;  // ".wh.<name>" and ".wh..wh..opq" entries
  uint64_t bytes = 0;      // regular file data written
};

// Unpacks the layer at `archive_path` into `dest`, an existing directory.
// Errors read `unpack: <archive>: entry "<path>": <reason>`. Time and memory
// are linear in the archive's size whatever its depth (directory fds are
// reused between neighbouring entries, never re-walked from the root). On
// error, entries
// before the failing one stay in `dest` (the caller unpacks into a temporary
// directory and renames it into place only on success).
Result<UnpackStats> unpack_layer(const std::string& archive_path, const std::string& dest,
                                 const UnpackOptions& opts = {});

}  // namespace berth::rootfs
