#include "tests/integration/berthd_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"

namespace berth::test {
namespace {

using Clock = std::chrono::steady_clock;

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(strerror(errno)));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path)) throw std::runtime_error("socket path too long");
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("connect " + path + ": " + strerror(e));
  }
  return fd;
}

int connect_tcp(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("connect 127.0.0.1:" + std::to_string(port) + ": " + strerror(e));
  }
  return fd;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string decode_chunked(const std::string& in) {
  std::string out;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t eol = in.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t n = std::stoul(in.substr(pos, eol - pos), nullptr, 16);
    if (n == 0) break;
    out += in.substr(eol + 2, n);
    pos = eol + 2 + n + 2;
  }
  return out;
}

HttpResult exchange(int fd, const HttpCall& call, std::chrono::seconds timeout) {
  std::ostringstream req;
  req << call.method << ' ' << call.target << " HTTP/1.1\r\n";
  bool has_host = false;
  for (const auto& [k, v] : call.headers) {
    req << k << ": " << v << "\r\n";
    if (lower(k) == "host") has_host = true;
  }
  if (!has_host) req << "Host: berth\r\n";
  req << "Connection: close\r\nContent-Length: " << call.body.size() << "\r\n\r\n" << call.body;
  std::string out = req.str();
  auto deadline = Clock::now() + timeout;
  size_t off = 0;
  std::string in;
  char buf[65536];
  bool writing = true;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw std::runtime_error("HTTP " + call.target + ": timed out");
    pollfd p{fd, static_cast<short>(writing ? POLLOUT | POLLIN : POLLIN), 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      throw std::runtime_error("poll: " + std::string(strerror(errno)));
    }
    if (writing && (p.revents & POLLOUT)) {
      ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n < 0) {
        writing = false;  // the server may have answered early (413) and closed
      } else if ((off += static_cast<size_t>(n)) == out.size()) {
        writing = false;
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
  }
  HttpResult r;
  size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string::npos) throw std::runtime_error("HTTP: no response head: " + in);
  std::istringstream head(in.substr(0, head_end));
  std::string line;
  std::getline(head, line);
  if (line.size() < 12) throw std::runtime_error("HTTP: bad status line: " + line);
  r.status = std::stoi(line.substr(9, 3));
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(' '));
    r.headers[lower(line.substr(0, colon))] = v;
  }
  r.body = in.substr(head_end + 4);
  if (lower(r.headers["transfer-encoding"]) == "chunked") r.body = decode_chunked(r.body);
  return r;
}

struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};

int free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string berthd_path() {
  return std::string(BERTH_BIN_DIR) + "/berthd";
}

}  // namespace

nlohmann::json HttpResult::json() const {
  return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
}

HttpResult http_unix(const std::string& socket, const HttpCall& call,
                     std::chrono::seconds timeout) {
  Fd fd{connect_unix(socket)};
  return exchange(fd.fd, call, timeout);
}

void http_unix(const std::string& socket, const HttpCall& call, std::chrono::seconds timeout,
               const std::function<bool(const std::string&)>& on_data) {
  Fd fd{connect_unix(socket)};
  std::string req = call.method + " " + call.target + " HTTP/1.1\r\nHost: berth\r\n\r\n";
  if (::send(fd.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    throw std::runtime_error("send: " + std::string(strerror(errno)));
  }
  auto deadline = Clock::now() + timeout;
  char buf[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return;
    pollfd p{fd.fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200))) <= 0) continue;
    ssize_t n = ::read(fd.fd, buf, sizeof(buf));
    if (n <= 0) return;
    if (!on_data(std::string(buf, static_cast<size_t>(n)))) return;
  }
}

HttpResult http_tcp(int port, const HttpCall& call, std::chrono::seconds timeout) {
  Fd fd{connect_tcp(port)};
  return exchange(fd.fd, call, timeout);
}

void make_image_store(const std::string& dir) {
  std::string rootfs = dir + "-rootfs";
  auto run = [](const std::vector<std::string>& argv) {
    auto r = exec_command(argv, {.timeout = std::chrono::seconds(300)});
    if (r.exit_code != 0) throw std::runtime_error(argv[0] + " failed: " + r.out + r.err);
  };
  run({"bash", std::string(BERTH_SOURCE_DIR) + "/tests/scripts/make-rootfs.sh", rootfs,
       probe_path()});
  run({"tar", "-C", rootfs, "-cf", rootfs + ".tar", "."});
  run({std::string(BERTH_BIN_DIR) + "/berth-rootfs", "--store", dir, "import", "--name",
       "busybox:latest", rootfs + ".tar"});
  std::filesystem::remove_all(rootfs);
  std::filesystem::remove(rootfs + ".tar");
}

Berthd::Berthd(Options opts) : opts_(std::move(opts)) {
  static int n = 0;
  ++n;
  std::string name = unique_name();
  dir_ = "/tmp/" + name;
  std::filesystem::create_directories(dir_);
  socket_ = dir_ + "/run/berthd.sock";
  config_ = dir_ + "/berthd.toml";
  log_path_ = dir_ + "/berthd.log";
  int pid = static_cast<int>(::getpid());
  bridge_ = "bd" + std::to_string(pid % 10000000) + "-" + std::to_string(n);
  subnet_ = "10.24" + std::to_string(pid % 10) + "." + std::to_string(n % 250) + ".0/24";
  cgroup_name_ = name;
  nft_table_ = name;
  std::replace(nft_table_.begin(), nft_table_.end(), '-', '_');
  port_ = free_tcp_port();
  std::string images = opts_.images_dir;
  if (images.empty()) {
    images = dir_ + "/images";
    make_image_store(images);
  }
  std::ofstream cfg(config_);
  cfg << "state_dir = \"" << dir_ << "/state\"\n"
      << "run_dir = \"" << dir_ << "/run\"\n"
      << "images_dir = \"" << images << "\"\n"
      << "listen = \"127.0.0.1:" << port_ << "\"\n"
      << "bridge = \"" << bridge_ << "\"\n"
      << "subnet = \"" << subnet_ << "\"\n"
      << "cgroup_name = \"" << cgroup_name_ << "\"\n"
      << "nft_table = \"" << nft_table_ << "\"\n"
      << "warm_pool = " << opts_.warm_pool
      << "\n"
      // Room for the tests' tasks whatever the machine (capacity is
      // accounting; the tests' tasks are idle).
      << "cpu_units = 1048576\nmemory_mib = 1048576\n"
      << "log_level = \"debug\"\n\n"
      << "[[accounts]]\nid = \"000000000001\"\nname = \"alice\"\nunix_uids = [0]\n"
      << "allowed_capabilities = [\"NET_ADMIN\"]\n"
      << opts_.alice_toml << "\n"
      << "access_key_id = \"" << kAliceKey << "\"\nsecret_access_key = \"" << kAliceSecret
      << "\"\n\n"
      << "[[accounts]]\nid = \"000000000002\"\nname = \"bob\"\n"
      << "access_key_id = \"" << kBobKey << "\"\nsecret_access_key = \"" << kBobSecret << "\"\n\n"
      << opts_.extra_toml << "\n";
  cfg.close();
  start();
}

void Berthd::start() {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
  if (pid == 0) {
    int out = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0) _exit(127);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    std::string bin = berthd_path();
    const char* argv[] = {bin.c_str(), "--config", config_.c_str(), nullptr};
    ::execv(bin.c_str(), const_cast<char* const*>(argv));
    _exit(127);
  }
  pid_ = pid;
  bool up = wait_until(
      [&] {
        if (!running()) return true;
        try {
          return http_unix(socket_, {.target = "/healthz"}, std::chrono::seconds(5)).status == 200;
        } catch (const std::exception&) {
          return false;
        }
      },
      std::chrono::seconds(120));
  if (!up || !running()) throw std::runtime_error("berthd did not come up:\n" + log());
}

bool Berthd::running() const {
  if (pid_ <= 0) return false;
  int status = 0;
  return ::waitpid(pid_, &status, WNOHANG) == 0;
}

void Berthd::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void Berthd::terminate() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  bool gone = wait_until(
      [&] {
        int status = 0;
        return ::waitpid(pid_, &status, WNOHANG) == pid_;
      },
      std::chrono::seconds(60));
  if (!gone) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_ = -1;
}

std::string Berthd::log() const {
  std::ifstream f(log_path_);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

HttpResult Berthd::ecs(const std::string& op, const nlohmann::json& body) {
  return http_unix(socket_,
                   {.method = "POST",
                    .target = "/",
                    .body = body.dump(),
                    .headers = {{"X-Amz-Target", "AmazonEC2ContainerServiceV20141113." + op},
                                {"Content-Type", "application/x-amz-json-1.1"}}});
}

nlohmann::json Berthd::ecs_ok(const std::string& op, const nlohmann::json& body) {
  HttpResult r = ecs(op, body);
  INFO(op << " -> " << r.status << " " << r.body);
  REQUIRE(r.status == 200);
  nlohmann::json j = r.json();
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

nlohmann::json Berthd::wait_task_status(const std::string& task_arn, const std::string& status,
                                        std::chrono::seconds timeout) {
  nlohmann::json last;
  bool ok = wait_until(
      [&] {
        HttpResult r = ecs("DescribeTasks", {{"tasks", {task_arn}}});
        nlohmann::json j = r.json();
        if (r.status != 200 || !j.contains("tasks") || j["tasks"].empty()) return false;
        last = j["tasks"][0];
        return last.value("lastStatus", "") == status;
      },
      timeout);
  INFO("task " << task_arn << " last seen: " << last.dump() << "\nberthd log:\n" << log());
  REQUIRE(ok);
  return last;
}

void Berthd::stop_all_tasks() {
  if (!running()) return;
  for (const char* account_socket : {"unix"}) {
    (void)account_socket;
    HttpResult r = http_unix(socket_, {.target = "/v1/tasks?status=RUNNING"});
    nlohmann::json j = r.json();
    if (r.status != 200 || !j.contains("tasks")) continue;
    for (const auto& t : j["tasks"]) {
      std::string arn = t.value("taskArn", "");
      http_unix(socket_,
                {.method = "DELETE", .target = "/v1/tasks/" + arn.substr(arn.rfind('/') + 1)});
    }
  }
  wait_until(
      [&] {
        HttpResult r = http_unix(socket_, {.target = "/v1/tasks?status=RUNNING"});
        nlohmann::json j = r.json();
        return r.status == 200 && j.contains("tasks") && j["tasks"].empty();
      },
      std::chrono::seconds(120));
}

void Berthd::teardown() {
  // The instance's own clean-up: shims, microhosts, rootfs mounts, the
  // bridge, the nftables table and the cgroup subtree.
  auto r = exec_command({berthd_path(), "--config", config_, "--teardown"},
                        {.timeout = std::chrono::seconds(120)});
  if (r.exit_code != 0) {
    WARN("berthd --teardown failed: " << r.out << r.err);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

Berthd::~Berthd() {
  try {
    stop_all_tasks();
  } catch (const std::exception& e) {
    WARN("stopping tasks: " << e.what());
  }
  terminate();
  teardown();
}

}  // namespace berth::test
