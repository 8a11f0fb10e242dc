// The image store: blobs (BlobStore), unpacked layers, the image index, and
// the per-container overlay root filesystems.
//
//   <root>/blobs/sha256/<hex>         blobs (manifests, configs, layers)
//   <root>/layers/<hex>/root/         a layer unpacked as an overlayfs lower
//                                     dir (whiteouts as overlay markers),
//                                     named by the layer blob's digest
//   <root>/layers/<hex>/size          bytes the unpacked layer takes
//   <root>/index.json                 images: manifest digest -> names
//   <root>/containers/<id>/           one container's writable part:
//       upper/ work/ rootfs/ (the overlay mount) and meta.json; with a size
//       limit, disk.img (sparse ext4, loop-mounted on disk/) holds upper/work
//   <root>/tmp/, <root>/locks/        temp files and per-digest locks
//
// Crash safety: a layer is unpacked into layers/.tmp-* and renamed into place
// when complete; index.json is replaced atomically (fsync + rename) under
// an flock, so a reader never sees a half-made layer or index.
// Concurrency: per-digest locks serialise the unpacking of one layer (the
// second caller waits and finds it done); a store-wide lock is held shared by
// add/pull/import/mount and exclusively by rm/prune, so prune never removes a
// blob that a running pull has just fetched.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "rootfs-tools/image.h"
#include "rootfs-tools/store.h"
#include "rootfs-tools/unpack.h"

namespace berth::rootfs {

struct Image {
  Digest digest;  // of the manifest: the image's identity
  Manifest manifest;
  Digest config_digest;
  ImageConfig config;
  std::vector<std::string> names;  // canonical references, sorted
  std::string added;               // RFC 3339 (UTC), when first added
  uint64_t blob_size = 0;          // manifest + config + layer blobs as stored
  uint64_t unpacked_size = 0;      // sum of the unpacked layer directories
};

struct AddOptions {
  // Which manifest of an index to take.
  Platform platform = host_platform();
  Progress progress;
};

struct RemoveResult {
  std::vector<std::string> untagged;  // names removed
  std::optional<Digest> deleted;      // the image record, when no name was left
};

struct PruneStats {
  uint64_t blobs_removed = 0;
  uint64_t layers_removed = 0;
  uint64_t bytes_freed = 0;  // blob bytes + unpacked layer bytes
};

struct RootfsOptions {
  // Bytes the container may write (the task's ephemeralStorage); 0 = no
  // limit (the writable part lives on the store's filesystem).
  uint64_t size_limit = 0;
};

struct ContainerRootfs {
  std::string id;
  std::string path;  // the merged overlay: the runtime's root.path
  Digest image;
  std::vector<Digest> layers;  // bottom first
  uint64_t size_limit = 0;
};

class ImageStore {
 public:
  explicit ImageStore(std::string root);

  // Creates the layout (idempotent) and clears what crashed writers left:
  // temp blobs, half-unpacked layers.
  Result<void> init();

  const std::string& root() const { return root_; }
  // The bounds every layer this store unpacks must keep (UnpackLimits).
  void set_unpack_limits(const UnpackLimits& limits) { unpack_limits_ = limits; }
  const UnpackLimits& unpack_limits() const { return unpack_limits_; }
  BlobStore& blobs() { return blobs_; }
  const BlobStore& blobs() const { return blobs_; }

  // Held (shared) for the whole of a pull or import, so prune waits for it.
  class SharedLock {
   public:
    explicit SharedLock(UniqueFd fd) : fd_(std::move(fd)) {}

   private:
    UniqueFd fd_;
  };
  Result<SharedLock> lock_shared();

  // Registers the image whose manifest (or index: the platform's manifest is
  // chosen) is the blob `digest`. The config and every layer blob must be in
  // the store already (an error names the first missing one); layers are
  // unpacked (shared with concurrent callers), then `names` (canonical
  // references) are pointed at the image, moving them from any other image.
  Result<Image> add(const Digest& digest, const std::vector<std::string>& names,
                    const AddOptions& opts = {});

  // Finds an image by name ("busybox", "busybox:1.36",
  // "127.0.0.1:5000/x:y", normalised as Reference does), by "name@sha256:..."
  // or by digest ("sha256:<hex>", or a unique prefix of at least 4 hex digits
  // of it). Not found / ambiguous are errors that say so.
  Result<Image> resolve(std::string_view ref) const;
  Result<std::vector<Image>> list() const;

  // A name removes that name (the image goes when it was the last); a digest
  // or id removes the image and all its names. Blobs and layers stay until
  // prune.
  Result<RemoveResult> remove(std::string_view ref);

  // Removes blobs and unpacked layers that no image references and no
  // container uses, and stale temp files.
  Result<PruneStats> prune();

  // The unpacked layer of a layer blob (unpacking it when missing); returns
  // the directory used as an overlay lower dir. `lowers`: the unpacked
  // layers below it in its image, topmost first (see
  // UnpackOptions::lower_dirs). A layer directory is shared by every image
  // that has the layer; the parents it inherits come from the image that
  // unpacked it first (builders list parent directories, so this matters
  // only for hand-made layers).
  Result<std::string> ensure_layer(const Descriptor& layer, const Progress& progress = {},
                                   const std::vector<std::string>& lowers = {});
  // ensure_layer for all layers of a manifest, bottom first.
  Result<void> ensure_layers(const std::vector<Descriptor>& layers, const Progress& progress = {});
  std::string layer_dir(const Digest& layer) const;
  bool has_layer(const Digest& layer) const;

  // Mounts the overlay root filesystem of container `id` (1-128 of
  // [A-Za-z0-9_.-], not starting with '.'), image layers as lower dirs. An
  // existing mount of that id is an error. On any failure nothing is left.
  Result<ContainerRootfs> mount_rootfs(std::string_view id, const Image& image,
                                       const RootfsOptions& opts = {});
  // Unmounts and removes the container's writable part. An unknown id is
  // fine (release is idempotent, so a retried release after a crash works).
  Result<void> release_rootfs(std::string_view id);
  Result<std::vector<ContainerRootfs>> containers() const;

 private:
  std::string root_;
  BlobStore blobs_;
  UnpackLimits unpack_limits_;
};

}  // namespace berth::rootfs
