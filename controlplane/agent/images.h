// Images for a task: found in the local image store by name (images
// imported with berth-rootfs are found), else pulled (rootfs::pull:
// loopback registries over plain http, others over https unless configured
// insecure). A container definition's repositoryCredentials names one of
// the configured credentials.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "rootfs-tools/image_store.h"
#include "rootfs-tools/registry.h"

namespace berth::cp {

struct ImageSource {
  std::vector<std::string> insecure_registries;
  std::map<std::string, rootfs::Credentials> credentials;  // by name
  // Per-registry CA, client certificate and mirrors (rootfs-tools/registry.h).
  std::vector<rootfs::RegistryHost> hosts;
};

// The image named `image`: local, else pulled. `credentials`: a name of
// src.credentials, or empty. Errors are ECS reasons:
// "CannotPullContainerError: ..." (a bad reference, a failed pull, unknown
// credentials).
Result<rootfs::Image> resolve_image(rootfs::ImageStore& store, const ImageSource& src,
                                    const std::string& image, const std::string& credentials);

}  // namespace berth::cp
