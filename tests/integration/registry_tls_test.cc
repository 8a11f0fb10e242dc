// Per-registry TLS settings and mirrors (rootfs-tools/registry.h,
// RegistryHost) against real registries: Debian's docker-registry on
// 127.0.0.1, three processes sharing one storage directory — plain http
// (the test image is pushed there with skopeo), https with a server
// certificate from a CA made here with openssl, and https that also asks
// for a client certificate (clientcas). Certificates, storage and configs
// live in a TempDir; every process is killed and reaped on destruction.
//
// Test code: exceptions are fine here (Catch2 needs them).
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "rootfs-tools/image_store.h"
#include "rootfs-tools/reference.h"
#include "rootfs-tools/registry.h"
#include "tests/integration/harness.h"

using namespace berth::rootfs;
using berth::Result;
using berth::test::TempDir;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";
constexpr const char* kRepository = "berth-test/busybox";

std::optional<std::string> tools_skip_reason() {
  for (const char* tool : {kRegistryBinary, "/usr/bin/skopeo", "/usr/bin/openssl"}) {
    if (::access(tool, X_OK) != 0)
      return std::string(tool) + " not installed (scripts/install-deps.sh installs it)";
  }
  return std::nullopt;
}

void run_ok(const std::vector<std::string>& argv, const std::string& cwd = "") {
  auto r = berth::test::exec_command(argv, {.timeout = 120s, .cwd = cwd});
  INFO(r);
  REQUIRE(r.exit_code == 0);
}

// A port on 127.0.0.1 that nothing listens on right now (the kernel's pick).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("free_port: " + std::string(std::strerror(errno)));
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool accepts_connections(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// The test CA, a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
  explicit Pki(const std::string& dir) : dir(dir) {
    auto key = [&](const std::string& name) {
      run_ok({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", dir + "/" + name + ".key"});
    };
    key("ca");
    run_ok({"openssl", "req", "-x509", "-new", "-key", dir + "/ca.key", "-out", ca(), "-days", "2",
            "-subj", "/CN=berth test CA"});
    auto issue = [&](const std::string& name, const std::string& cn, const std::string& ext) {
      key(name);
      std::ofstream(dir + "/" + name + ".ext") << ext;
      run_ok({"openssl", "req", "-new", "-key", dir + "/" + name + ".key", "-out",
              dir + "/" + name + ".csr", "-subj", "/CN=" + cn});
      run_ok({"openssl", "x509", "-req", "-in", dir + "/" + name + ".csr", "-CA", ca(), "-CAkey",
              dir + "/ca.key", "-CAcreateserial", "-out", dir + "/" + name + ".pem", "-days", "2",
              "-extfile", dir + "/" + name + ".ext"});
    };
    issue("server", "127.0.0.1",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    issue("client", "berth test client", "extendedKeyUsage=clientAuth\n");
  }
  std::string ca() const { return dir + "/ca.pem"; }
  std::string cert(const std::string& name) const { return dir + "/" + name + ".pem"; }
  std::string key(const std::string& name) const { return dir + "/" + name + ".key"; }
  std::string dir;
};

// `docker-registry serve` on 127.0.0.1:<free port> over `storage`, with
// `tls` (the http.tls section, "" for plain http). Killed on destruction.
class Registry {
 public:
  Registry(const std::string& dir, const std::string& storage, const std::string& tls) {
    for (int attempt = 0; attempt < 3 && pid_ < 0; ++attempt) start(dir, storage, tls);
    if (pid_ < 0) throw std::runtime_error("docker-registry did not start:\n" + log());
  }
  ~Registry() { stop(); }
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return berth::test::read_file(log_); }

 private:
  void start(const std::string& dir, const std::string& storage, const std::string& tls) {
    port_ = free_port();
    std::string config = dir + "/config-" + std::to_string(port_) + ".yml";
    log_ = dir + "/registry-" + std::to_string(port_) + ".log";
    std::ofstream(config) << "version: 0.1\nlog:\n  level: info\n"
                          << "storage:\n  filesystem:\n    rootdirectory: " << storage << "\n"
                          << "http:\n  addr: " << host() << "\n  secret: berth-test\n"
                          << tls;
    const char* argv[] = {"docker-registry", "serve", config.c_str(), nullptr};
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
    if (pid == 0) {
      ::setpgid(0, 0);
      int out = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (out < 0 || in < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0)
        ::_exit(126);
      ::execv(kRegistryBinary, const_cast<char* const*>(argv));
      ::_exit(127);
    }
    pid_ = pid;
    bool exited = false;
    bool up = berth::test::wait_until(
        [&] {
          int status;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) exited = true;
          return exited || accepts_connections(port_);
        },
        30s, 50ms);
    if (exited) {
      pid_ = -1;
    } else if (!up) {
      stop();
      throw std::runtime_error("docker-registry did not answer on " + host() + ":\n" + log());
    }
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  int port_ = 0;
  pid_t pid_ = -1;
  std::string log_;
};

struct Fixture {
  Fixture()
      : pki(dir.path()),
        plain(dir.path(), dir.path() + "/data", ""),
        tls(dir.path(), dir.path() + "/data",
            "  tls:\n    certificate: " + pki.cert("server") + "\n    key: " + pki.key("server") +
                "\n"),
        mtls(dir.path(), dir.path() + "/data",
             "  tls:\n    certificate: " + pki.cert("server") + "\n    key: " + pki.key("server") +
                 "\n    clientcas:\n      - " + pki.ca() + "\n") {
    std::string layout = dir.path() + "/layout";
    run_ok(
        {"bash", BERTH_SOURCE_DIR "/scripts/make-test-image.sh", "--ref-name", "latest", layout});
    run_ok({"skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
            "oci:" + layout + ":latest",
            "docker://" + plain.host() + "/" + kRepository + ":latest"});
  }

  // A pull of `registry`'s test image into a new store.
  Result<PullResult> pull_from(const std::string& registry, const PullOptions& opts) {
    std::string root = dir.path() + "/store" + std::to_string(stores++);
    ImageStore store(root);
    auto init = store.init();
    INFO((init ? "" : init.error().str()));
    REQUIRE(init);
    auto ref = Reference::parse(registry + "/" + kRepository + ":latest");
    REQUIRE(ref);
    return pull(store, *ref, opts);
  }

  TempDir dir;
  Pki pki;
  Registry plain, tls, mtls;
  int stores = 0;
};

std::string error_text(const Result<PullResult>& r) {
  return r ? "" : r.error().str();
}

PullOptions with_hosts(std::vector<RegistryHost> hosts) {
  PullOptions opts;
  opts.hosts = std::move(hosts);
  opts.attempts = 1;
  opts.connect_timeout_s = 10;
  return opts;
}

}  // namespace

TEST_CASE("registry TLS: a host's CA file, its client certificate, mirrors",
          "[registry][registry-tls]") {
  REQUIRE_PRIVILEGED();
  if (auto why = tools_skip_reason()) BERTH_SKIP(*why);
  Fixture fx;
  const std::string tls = fx.tls.host(), mtls = fx.mtls.host();

  SECTION("https without the CA fails, with the CA file it works") {
    auto r = fx.pull_from(tls, with_hosts({{.host = tls, .scheme = "https"}}));
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().str(), Contains("https://" + tls) && Contains("certificate"));
    r = fx.pull_from(tls, with_hosts({{.host = tls, .ca_file = fx.pki.ca()}}));
    INFO(error_text(r));
    CHECK(r);
    r = fx.pull_from(tls, with_hosts({{.host = tls, .ca_file = fx.pki.ca(), .ca_only = true}}));
    INFO(error_text(r));
    CHECK(r);
  }

  SECTION("a registry asking for a client certificate") {
    auto r = fx.pull_from(mtls, with_hosts({{.host = mtls, .ca_file = fx.pki.ca()}}));
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().str(), Contains("https://" + mtls));
    r = fx.pull_from(mtls, with_hosts({{.host = mtls,
                                        .ca_file = fx.pki.ca(),
                                        .client_cert = fx.pki.cert("client"),
                                        .client_key = fx.pki.key("client")}}));
    INFO(error_text(r));
    CHECK(r);
  }

  SECTION("a mirror that is down falls back to the registry") {
    std::string down = "127.0.0.1:" + std::to_string(free_port());
    auto r = fx.pull_from(
        tls, with_hosts({{.host = tls, .ca_file = fx.pki.ca(), .mirrors = {"https://" + down}}}));
    INFO(error_text(r));
    CHECK(r);
  }

  SECTION("a working mirror serves a registry that is down; both down: both errors") {
    std::string down = "127.0.0.1:" + std::to_string(free_port());
    auto r = fx.pull_from(down, with_hosts({{.host = down, .mirrors = {"https://" + tls}},
                                            {.host = tls, .ca_file = fx.pki.ca()}}));
    INFO(error_text(r));
    CHECK(r);
    std::string down2 = "127.0.0.1:" + std::to_string(free_port());
    r = fx.pull_from(down, with_hosts({{.host = down, .mirrors = {down2}}}));
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().str(), Contains("http://" + down + "/v2/") &&
                                    Contains("after its mirrors failed: http://" + down2));
  }
}
