// A real registry for integration tests: Debian's docker-registry (CNCF
// distribution 2.8) on 127.0.0.1 with filesystem storage in a temp dir, and
// the busybox test image (scripts/make-test-image.sh) pushed into it with
// skopeo. Shared by the registry tests and the control plane's agent tests.
//
// Every registry is killed and reaped at destruction, failing test or not,
// and every directory is a harness TempDir.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace berth::test {

inline constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";
// The repository the test image is pushed to.
inline constexpr const char* kRepository = "berth-test/busybox";

// Why registry tests cannot run here (a tool is missing), or nullopt.
std::optional<std::string> registry_tools_skip_reason();

#define REQUIRE_REGISTRY_TOOLS()                                \
  do {                                                          \
    REQUIRE_PRIVILEGED();                                       \
    if (auto why = berth::test::registry_tools_skip_reason()) { \
      BERTH_SKIP(*why);                                         \
    }                                                           \
  } while (0)

// ---- plain HTTP from the test side -----------------------------------------

struct HttpResult {
  long status = -1;  // -1: no answer
  std::string body;
};
HttpResult http(const std::string& method, const std::string& url, const std::string& body = "",
                const std::vector<std::string>& headers = {});

// A port on 127.0.0.1 that nothing listens on right now (the kernel's pick).
int free_port();

// ---- the registry ----------------------------------------------------------

// `docker-registry serve` on 127.0.0.1:<free port>, storage and config in a
// TempDir; killed and reaped on destruction. With an htpasswd line, every
// request needs Basic credentials (distribution accepts htpasswd over plain
// http; only its docs ask for TLS).
class RegistryProcess {
 public:
  explicit RegistryProcess(const std::string& htpasswd = "");
  ~RegistryProcess() { stop(); }
  RegistryProcess(const RegistryProcess&) = delete;
  RegistryProcess& operator=(const RegistryProcess&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const;
  // distribution's filesystem layout: where a blob's bytes are.
  std::string blob_data(const std::string& digest) const;

 private:
  void start(bool auth);
  void stop();

  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// ---- the test image --------------------------------------------------------

struct TestImage {
  std::string manifest, config, layer;  // digests
  uint64_t layer_size = 0;
  std::string manifest_json;
};

// Builds the test image as an OCI layout under `work` and pushes it as
// <registry>/berth-test/busybox:latest (with `creds` "user:password" when the
// registry wants them).
TestImage push_test_image(const std::string& registry, const std::string& work,
                          const std::string& creds = "");

}  // namespace berth::test
