// Importing images from files: an OCI image layout (a directory, or a tar of
// one), a `docker save` archive, or a plain root filesystem (a tarball,
// possibly compressed, or a directory) which becomes a one-layer image.
//
// Every blob is hashed on the way into the store and checked against the
// digest its manifest names; a layout whose blob does not match is refused.
// Nothing from the source is trusted: names inside archives go through the
// same checks as layer entries.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "rootfs-tools/image.h"
#include "rootfs-tools/image_store.h"

namespace berth::rootfs {

enum class ImportFormat { automatic, oci_layout, docker_archive, rootfs };
const char* import_format_name(ImportFormat f);  // "oci-layout", "docker-archive", "rootfs"

struct ImportOptions {
  ImportFormat format = ImportFormat::automatic;
  // Canonical references to give the image(s). Empty: the names the source
  // carries (org.opencontainers.image.ref.name, docker's RepoTags); a rootfs
  // import without a name is reachable by digest only.
  std::vector<std::string> names;
  Platform platform = host_platform();
  Progress progress;
};

struct ImportResult {
  ImportFormat format = ImportFormat::automatic;  // what was detected
  std::vector<Image> images;
};

// automatic: a directory with an `oci-layout` file is an OCI layout, another
// directory a rootfs; a tar whose members include `oci-layout` is an OCI
// layout, one with `manifest.json` a docker archive, anything else a rootfs.
Result<ImportResult> import_image(ImageStore& store, const std::string& path,
                                  const ImportOptions& opts = {});

}  // namespace berth::rootfs
