#include "tests/integration/registry_fixture.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

namespace berth::test {

using namespace std::chrono_literals;

std::optional<std::string> registry_tools_skip_reason() {
  for (const char* tool : {kRegistryBinary, "/usr/bin/skopeo", "/usr/bin/htpasswd"}) {
    if (access(tool, X_OK) != 0) {
      return std::string(tool) + " not installed (scripts/install-deps.sh installs it)";
    }
  }
  return std::nullopt;
}

namespace {

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

Json read_json(const std::string& path) {
  return Json::parse(read_file(path));
}

}  // namespace

HttpResult http(const std::string& method, const std::string& url, const std::string& body,
                const std::vector<std::string>& headers) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> c(curl_easy_init(), curl_easy_cleanup);
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  HttpResult r;
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &r.body);
  if (method == "PUT") {
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  if (curl_easy_perform(c.get()) == CURLE_OK) {
    curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &r.status);
  }
  curl_slist_free_all(list);
  return r;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("free_port: " + std::string(std::strerror(errno)));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

RegistryProcess::RegistryProcess(const std::string& htpasswd) {
  if (!htpasswd.empty()) std::ofstream(dir_.path() + "/htpasswd") << htpasswd;
  // The port is free when picked but could be taken before the registry
  // binds it: try again with another.
  for (int attempt = 0; attempt < 3 && pid_ < 0; ++attempt) start(!htpasswd.empty());
  if (pid_ < 0) throw std::runtime_error("docker-registry did not start:\n" + log());
}

std::string RegistryProcess::log() const {
  return read_file(dir_.path() + "/registry.log");
}

std::string RegistryProcess::blob_data(const std::string& digest) const {
  std::string hex = digest.substr(digest.find(':') + 1);
  return dir_.path() + "/data/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex +
         "/data";
}

void RegistryProcess::start(bool auth) {
  port_ = free_port();
  std::string config = dir_.path() + "/config.yml";
  std::ofstream(config) << "version: 0.1\n"
                        << "log:\n  level: info\n"
                        << "storage:\n  filesystem:\n    rootdirectory: " << dir_.path()
                        << "/data\n  delete:\n    enabled: true\n"
                        << "http:\n  addr: " << host() << "\n  secret: berth-test\n"
                        << (auth ? "auth:\n  htpasswd:\n    realm: berth-test\n    path: " +
                                       dir_.path() + "/htpasswd\n"
                                 : "");
  std::string log_path = dir_.path() + "/registry.log";
  const char* argv[] = {"docker-registry", "serve", config.c_str(), nullptr};
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    setpgid(0, 0);
    int out = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) _exit(126);
    execv(kRegistryBinary, const_cast<char* const*>(argv));
    _exit(127);
  }
  pid_ = pid;
  bool exited = false;
  bool up = wait_until(
      [&] {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) exited = true;
        return exited || http("GET", "http://" + host() + "/v2/").status > 0;
      },
      30s, 50ms);
  if (exited) {
    pid_ = -1;
  } else if (!up) {
    stop();
    throw std::runtime_error("docker-registry did not answer on " + host() + " in 30 s:\n" + log());
  }
}

void RegistryProcess::stop() {
  if (pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

TestImage push_test_image(const std::string& registry, const std::string& work,
                          const std::string& creds) {
  std::string layout = work + "/layout";
  auto mk = exec_command(
      {"bash", BERTH_SOURCE_DIR "/scripts/make-test-image.sh", "--ref-name", "latest", layout});
  INFO(mk);
  REQUIRE(mk.exit_code == 0);
  std::vector<std::string> argv = {"skopeo", "copy", "--insecure-policy",
                                   "--dest-tls-verify=false"};
  if (!creds.empty()) argv.insert(argv.end(), {"--dest-creds", creds});
  argv.insert(argv.end(), {"oci:" + layout + ":latest",
                           "docker://" + registry + "/" + kRepository + ":latest"});
  auto push = exec_command(argv, {.timeout = 120s});
  INFO(push);
  REQUIRE(push.exit_code == 0);

  TestImage img;
  img.manifest = read_json(layout + "/index.json")["manifests"][0]["digest"];
  std::string blobs = layout + "/blobs/sha256/";
  img.manifest_json = read_file(blobs + img.manifest.substr(7));
  auto m = Json::parse(img.manifest_json);
  img.config = m["config"]["digest"];
  img.layer = m["layers"][0]["digest"];
  img.layer_size = m["layers"][0]["size"];
  return img;
}

}  // namespace berth::test
