// Pulling images from an OCI distribution registry (HTTP API v2) with libcurl.
//
// Transport: registries on loopback (localhost, 127.0.0.0/8, ::1) are spoken
// to over plain http, as Docker does; every other registry over https with
// certificate verification, unless PullOptions::insecure names it.
// Per-registry settings (PullOptions::hosts, as containerd's hosts.toml and
// Docker's certs.d): a CA, a client certificate, credentials, mirrors; see
// RegistryHost.
// Auth: the WWW-Authenticate challenge flow. A 401 with "Basic" is answered
// with the credentials given; "Bearer realm=...,service=...,scope=..." is
// answered by fetching a token from the realm (with the credentials, if any,
// else anonymously) and retrying with it; tokens are reused per scope.
// Content: an index / manifest list is resolved to the platform's manifest;
// docker v2 schema 2 and OCI manifests; the config and layers are fetched in
// parallel into the blob store, each verified against its digest before it
// is committed (a tampered blob is an error naming both digests and nothing
// of it is kept). A download that is interrupted leaves a partial file that
// the next pull resumes with a Range request.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "rootfs-tools/image.h"
#include "rootfs-tools/image_store.h"
#include "rootfs-tools/reference.h"

namespace berth::rootfs {

struct Credentials {
  std::string username;
  std::string password;
};

// The settings of one registry host, found by its name as references spell
// it ("registry.example.com", "127.0.0.1:5443", "docker.io" — which also
// matches registry-1.docker.io). They apply to every request berth sends to
// that host: the registry API, a token realm or a blob redirect there, and
// when the host serves as another registry's mirror.
struct RegistryHost {
  std::string host;
  // PEM file of CA certificates trusted for this host, in addition to the
  // system store (its hashed directory, /etc/ssl/certs), or instead of it
  // with ca_only.
  std::string ca_file;
  bool ca_only = false;
  // PEM client certificate and its key, for registries that ask for one
  // (mTLS); both or neither.
  std::string client_cert, client_key;
  // Credentials for this host; for the registry being pulled from, they
  // take precedence over PullOptions::credentials. A mirror gets only its
  // own (never the upstream's).
  std::optional<Credentials> credentials;
  // Tried in order before this host itself (the upstream), each for the
  // whole pull, the next after any failure: "host[:port]" or
  // "http(s)://host[:port]". A mirror's own entry in `hosts` gives its TLS
  // settings and credentials. Blobs are verified against their digests
  // whoever serves them, so a mirror cannot change the image.
  std::vector<std::string> mirrors;
  // "https" or "http" forces the scheme; empty: http for loopback (unless
  // this entry has TLS settings: ca_file, client_cert or skip_verify) and
  // insecure hosts, https for the rest.
  std::string scheme;
  bool insecure = false;     // plain http, as if listed in insecure_registries
  bool skip_verify = false;  // https without verifying the server's certificate
};

struct PullOptions {
  Platform platform = host_platform();
  // For the registry pulled from, unless its RegistryHost has credentials.
  std::optional<Credentials> credentials;
  std::vector<RegistryHost> hosts;
  // Registries (host[:port]) reached over plain http although not loopback.
  std::vector<std::string> insecure_registries;
  int parallel = 4;  // concurrent blob downloads
  // Called one event at a time (serialised), from the download workers'
  // threads; must not throw.
  Progress progress;
  // Total attempts per request on transient failures (connection reset,
  // 5xx); a resumed blob continues where the last attempt stopped.
  int attempts = 3;
  long connect_timeout_s = 30;
  // A transfer slower than min_speed_bytes per second over min_speed_time_s
  // seconds fails (as transient: retried, a blob resumed). A registry that
  // drips bytes cannot keep a pull alive forever.
  long min_speed_bytes = 1024;
  long min_speed_time_s = 60;
  // Every blob (all attempts together) must arrive within
  // blob_deadline_base_s plus its declared size at blob_deadline_rate bytes
  // per second (a 1 GiB layer: 10 min + 4.5 h at the defaults); manifests,
  // indexes and tokens each within the deadline of a max_manifest_bytes blob.
  long blob_deadline_base_s = 600;
  uint64_t blob_deadline_rate = 64 << 10;
  // Manifests and indexes are held in memory: larger ones are refused, as
  // containerd and distribution refuse manifests above 4 MiB.
  size_t max_manifest_bytes = 4 << 20;
  // A config is read into memory too; real ones are a few KiB (rarely more
  // than 1 MiB with long histories). Checked against its descriptor before
  // the download, and while streaming.
  uint64_t max_config_bytes = 8 << 20;
};

struct PullStats {
  uint64_t blobs_fetched = 0;  // downloaded by this pull (config + layers)
  uint64_t blobs_present = 0;  // already in the store (or fetched by a concurrent pull)
  uint64_t blobs_resumed = 0;  // continued from a partial download
  uint64_t bytes_downloaded = 0;
};

struct PullResult {
  Image image;
  PullStats stats;
};

// Pulls `ref` and registers it under ref.str() (its tag, or the digest):
// from each of the registry's mirrors in turn, then from the registry; the
// first that succeeds wins. The error of a pull that failed everywhere is the
// registry's, followed by the mirrors'.
Result<PullResult> pull(ImageStore& store, const Reference& ref, const PullOptions& opts = {});

// ---- pure pieces, exposed for unit tests ----

// The entry of `hosts` for `host` (case-insensitive; "docker.io" and
// "registry-1.docker.io" name the same), or nullptr.
const RegistryHost* find_registry_host(const std::vector<RegistryHost>& hosts,
                                       std::string_view host);

// Where one pull attempt goes.
struct RegistryEndpoint {
  std::string base_url;  // "https://mirror.example.com:5000"
  std::string host;      // "mirror.example.com:5000"
  bool mirror = false;
  std::optional<Credentials> credentials;
};
// The mirrors of ref's registry in order, then the registry itself; checks
// the entries involved (a mirror that is not host[:port] with an optional
// http(s):// scheme, a scheme other than http/https, a client certificate
// without its key or the reverse are errors naming the host).
Result<std::vector<RegistryEndpoint>> registry_endpoints(const Reference& ref,
                                                         const PullOptions& opts);

// One WWW-Authenticate challenge: scheme ("Basic", "Bearer") and its
// parameters with lowercase keys (realm, service, scope, error); a token68
// (RFC 7235 "Negotiate abc==") is stored under the empty key.
struct Challenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};
// Parses a WWW-Authenticate header value (RFC 7235: several challenges,
// quoted strings with escapes, token68). Malformed input is an error.
Result<std::vector<Challenge>> parse_www_authenticate(std::string_view header);

}  // namespace berth::rootfs
