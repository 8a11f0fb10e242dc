// Image references as Docker and the OCI distribution spec write them:
//   [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:HEX]
// with Docker's normalisation: no registry means docker.io, a one-component
// repository on docker.io gets "library/", no tag and no digest means
// "latest". The first component is a registry when it contains '.' or ':' or
// is "localhost" (distribution/reference's rule).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "rootfs-tools/store.h"

namespace berth::rootfs {

struct Reference {
  std::string registry;    // "docker.io", "127.0.0.1:5000", "[::1]:5000"
  std::string repository;  // "library/busybox", "team/app"
  std::string tag;         // "" only when a digest is given without a tag
  std::optional<Digest> digest;

  // Errors name the reference and what is wrong with it (uppercase in the
  // repository, bad tag characters, a digest that is not sha256:<64 hex>).
  static Result<Reference> parse(std::string_view s);

  // "docker.io/library/busybox:latest", "127.0.0.1:5000/x@sha256:..." —
  // the form stored in the image index.
  std::string str() const;
  // registry + "/" + repository.
  std::string name() const;
  // The host that serves the registry API ("registry-1.docker.io" for
  // docker.io).
  std::string api_host() const;
  // "tag" or the digest string: what goes after /manifests/.
  std::string manifest_ref() const;
};

// True for registries Docker reaches over plain http without being told:
// localhost and loopback addresses (127.0.0.0/8, ::1), with or without port.
bool is_loopback_registry(std::string_view host);

}  // namespace berth::rootfs
