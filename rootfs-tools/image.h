// The OCI image format (and Docker's v2 schema 2, which it grew from):
// descriptors, manifests, indexes / manifest lists, the image config, and the
// platform choice. Pure parsing, no I/O.
//
// rootfs-tools is built with -fno-exceptions, like runtime/ (and the whole
// project with JSON_NOEXCEPTION: see common/json.h — parse with
// berth::parse_json(), read with find()/is_*(), never at() or an unchecked
// get<T>()). Every parse error is returned as an Error naming the document
// and the field ("manifest: layers[2].digest: ...").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "rootfs-tools/store.h"

namespace berth::rootfs {

namespace media {
inline constexpr std::string_view oci_layout_version = "1.0.0";
inline constexpr std::string_view oci_index = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view oci_config = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view oci_layer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view oci_layer_gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view oci_layer_zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view docker_list =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view docker_manifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view docker_config = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view docker_layer_gzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view docker_foreign_layer_gzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
// A layer type we can unpack: the OCI tar, tar+gzip and tar+zstd layers and
// their non-distributable variants, and Docker's diff/foreign diff layers
// (plain, gzip, zstd). Anything else (encrypted layers, artifacts, an
// invented type) is refused when a manifest is parsed.
bool is_layer_type(std::string_view t);
}  // namespace media

struct Platform {
  std::string os = "linux";
  std::string architecture = "amd64";  // GOARCH names: amd64, arm64, 386, ...
  std::string variant;                 // "v8" for arm64, optional

  // "linux/amd64", "linux/arm64/v8". parse() accepts the same form.
  std::string str() const;
  static Result<Platform> parse(std::string_view s);
  bool operator==(const Platform&) const = default;
};

// The machine this runs on, in GOARCH terms (uname -m x86_64 -> amd64).
Platform host_platform();

struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = 0;
  std::optional<Platform> platform;  // index entries only
  std::map<std::string, std::string> annotations;
};

enum class DocumentKind { manifest, index };

// An image manifest: one config and the layers, bottom first.
struct Manifest {
  std::string media_type;  // oci_manifest or docker_manifest
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
};

// An image index / manifest list.
struct Index {
  std::string media_type;  // oci_index or docker_list
  std::vector<Descriptor> manifests;
};

// Tells manifests from indexes by "mediaType", or by shape ("manifests" vs
// "layers") when the field is absent (OCI makes it optional). The
// `content_type` of an HTTP response, when given, is used when the document
// has no mediaType.
Result<DocumentKind> document_kind(std::string_view json, std::string_view content_type = {});
Result<Manifest> parse_manifest(std::string_view json);
Result<Index> parse_index(std::string_view json);

// The manifest of `platform` in `index`: os and architecture must match; a
// wanted variant must match, an unset one takes the first of any variant
// (arm64 entries often say v8). The error lists the platforms on offer.
Result<Descriptor> select_platform(const Index& index, const Platform& platform);

// Serialises an OCI manifest (used when an import synthesises one).
std::string to_json(const Manifest& m);

// The image config's run-time defaults that the control plane merges into a
// container spec, as Docker and ECS do: entrypoint/command from the task win,
// environment is the image's overlaid by the task's, and so on.
struct ImageConfig {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string created;  // RFC 3339, may be empty
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "KEY=VALUE"
  std::string working_dir;
  std::string user;
  std::string stop_signal;
  std::vector<std::string> exposed_ports;  // "80/tcp", sorted
  std::vector<std::string> volumes;        // sorted
  std::map<std::string, std::string> labels;
  std::vector<Digest> diff_ids;  // rootfs.diff_ids: digests of the uncompressed layers
};

Result<ImageConfig> parse_image_config(std::string_view json);

// A config document for an image made from a plain root filesystem (one
// layer): os/architecture of the host, the diff_ids given, empty run config.
std::string minimal_image_config_json(const std::vector<Digest>& diff_ids, const Platform& p);

// Progress of long work (pull, import, unpack), one event per change, called
// from any thread. `id` is the short digest of the blob concerned
// (12 hex digits), as docker pull shows it.
struct ProgressEvent {
  enum class Phase { waiting, downloading, verifying, unpacking, done, exists, failed };
  std::string id;
  Phase phase = Phase::waiting;
  uint64_t current = 0;  // bytes so far
  uint64_t total = 0;    // 0 when unknown
  std::string message;   // failed: why
};
using Progress = std::function<void(const ProgressEvent&)>;
const char* phase_name(ProgressEvent::Phase p);

// 12 hex digits: what `ls` and progress lines show.
std::string short_id(const Digest& d);

}  // namespace berth::rootfs
