#include "tests/integration/http_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nettle/base64.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <sstream>
#include <stdexcept>

namespace berth::test {

namespace {

constexpr int kIoTimeoutMs = 30000;
constexpr size_t kMaxHead = 64 * 1024;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string base64(const std::string& s) {
  std::string out(BASE64_ENCODE_RAW_LENGTH(s.size()), '\0');
  base64_encode_raw(out.data(), s.size(), reinterpret_cast<const uint8_t*>(s.data()));
  return out;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 307:
      return "Temporary Redirect";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    default:
      return "Bad Gateway";
  }
}

// Waits until `fd` is readable; false when the front stops or time runs out.
bool wait_readable(int fd, int stop_fd) {
  pollfd p[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    int n = poll(p, 2, kIoTimeoutMs);
    if (n < 0 && errno == EINTR) continue;
    return n > 0 && (p[1].revents & POLLIN) == 0 && (p[0].revents & (POLLIN | POLLHUP)) != 0;
  }
}

bool send_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// "repository:<name>:pull" for /v2/<name>/(manifests|blobs)/...
std::string scope_of(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  if (!path.starts_with("/v2/")) return "";
  for (const char* kind : {"/manifests/", "/blobs/"}) {
    size_t at = path.find(kind);
    if (at != std::string::npos) return "repository:" + path.substr(4, at - 4) + ":pull";
  }
  return "";
}

}  // namespace

HttpFront::HttpFront(Options opts) : opts_(std::move(opts)) {
  std::random_device rd;
  std::ostringstream tok;
  for (int i = 0; i < 4; ++i) tok << std::hex << rd();
  token_ = "berth-test-token-" + tok.str();

  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || stop_fd_ < 0 ||
      bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 64) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string why = std::strerror(errno);
    if (listen_fd_ >= 0) close(listen_fd_);
    if (stop_fd_ >= 0) close(stop_fd_);
    throw std::runtime_error("http front: listen on 127.0.0.1: " + why);
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

HttpFront::~HttpFront() {
  uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof one);
  acceptor_.join();
  // No new connection threads after the acceptor is gone.
  for (auto& t : connections_) t.join();
  close(listen_fd_);
  close(stop_fd_);
}

std::vector<HttpFront::Request> HttpFront::requests() const {
  std::lock_guard lock(mu_);
  return log_;
}

size_t HttpFront::record(const Request& req) {
  std::lock_guard lock(mu_);
  log_.push_back(req);
  return log_.size() - 1;
}

void HttpFront::set_status(size_t id, int status, bool cut) {
  std::lock_guard lock(mu_);
  log_[id].status = status;
  log_[id].cut = cut;
}

void HttpFront::accept_loop() {
  while (wait_readable(listen_fd_, stop_fd_)) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(mu_);
    connections_.emplace_back([this, fd] {
      serve(fd);
      close(fd);
    });
  }
}

bool HttpFront::read_head(int fd, std::string& head) {
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (head.size() > kMaxHead || !wait_readable(fd, stop_fd_)) return false;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    head.append(buf, static_cast<size_t>(n));
  }
  return true;
}

void HttpFront::serve(int fd) {
  std::string head;
  if (!read_head(fd, head)) return;
  Request req;
  std::istringstream in(head.substr(0, head.find("\r\n\r\n")));
  std::string line;
  std::getline(in, line);
  std::istringstream first(line);
  first >> req.method >> req.target;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      req.headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
    }
  }
  std::string auth = req.headers.count("authorization") ? req.headers["authorization"] : "";
  size_t id = record(req);

  if (req.target.starts_with("/token")) {
    bool creds_ok =
        opts_.username.empty() || auth == "Basic " + base64(opts_.username + ":" + opts_.password);
    if (!opts_.bearer) return respond(fd, id, 404, "{}");
    if (!creds_ok) {
      return respond(
          fd, id, 401,
          R"({"errors":[{"code":"UNAUTHORIZED","message":"bad credentials for the token"}]})");
    }
    return respond(fd, id, 200, "{\"" + opts_.token_field + "\":\"" + token_ + "\"}");
  }
  if (opts_.bearer && req.target.starts_with("/v2/") && auth != "Bearer " + token_) {
    std::string challenge = "WWW-Authenticate: Bearer realm=\"http://" + host() +
                            "/token\",service=\"" + opts_.service + "\"";
    if (std::string scope = scope_of(req.target); !scope.empty()) {
      challenge += ",scope=\"" + scope + "\"";
    }
    return respond(fd, id, 401,
                   R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})",
                   {challenge});
  }
  if (!opts_.redirect_blobs_to.empty() && req.target.find("/blobs/sha256:") != std::string::npos) {
    return respond(fd, id, 307, "", {"Location: " + opts_.redirect_blobs_to + req.target});
  }
  if (!opts_.synthetic_path.empty() && req.method == "GET" &&
      req.target.find(opts_.synthetic_path) != std::string::npos) {
    return synthetic(fd, id);
  }
  forward(fd, id, req, head);
}

void HttpFront::synthetic(int fd, size_t id) {
  std::string head = "HTTP/1.1 200 OK\r\nContent-Type: " + opts_.synthetic_type +
                     "\r\nContent-Length: " + std::to_string(opts_.synthetic_bytes) +
                     "\r\nConnection: close\r\n\r\n";
  set_status(id, 200);
  if (!send_all(fd, head.data(), head.size())) return;
  if (opts_.drip_interval.count() > 0) {
    for (size_t i = 0; i < opts_.synthetic_bytes; ++i) {
      pollfd p{stop_fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(opts_.drip_interval.count())) != 0) return;  // stopping
      if (!send_all(fd, "x", 1)) return;  // the client gave up
    }
    return;
  }
  std::string chunk(64 * 1024, 'x');
  for (size_t left = opts_.synthetic_bytes; left > 0;) {
    size_t n = std::min(left, chunk.size());
    if (!send_all(fd, chunk.data(), n)) return;
    left -= n;
  }
}

void HttpFront::respond(int fd, size_t id, int status, const std::string& body,
                        const std::vector<std::string>& extra_headers) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n";
  for (const auto& h : extra_headers) out += h + "\r\n";
  out += "\r\n" + body;
  set_status(id, status);
  send_all(fd, out.data(), out.size());
}

// Relays the request to the registry (without the front's Authorization,
// with "Connection: close") and its answer back, byte for byte.
void HttpFront::forward(int fd, size_t id, const Request& req, const std::string& head) {
  int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(opts_.upstream_port));
  if (up < 0 || connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (up >= 0) close(up);
    return respond(fd, id, 502, "{}");
  }
  std::istringstream in(head.substr(0, head.find("\r\n\r\n")));
  std::string line, out;
  std::getline(in, line);
  out = trim(line) + "\r\n";
  while (std::getline(in, line)) {
    std::string name = lower(trim(line.substr(0, line.find(':'))));
    if (name == "authorization" || name == "connection" || name == "keep-alive") continue;
    if (name == "range" && opts_.strip_range) continue;
    out += trim(line) + "\r\n";
  }
  out += "Connection: close\r\n\r\n";
  send_all(up, out.data(), out.size());

  bool cut = req.method == "GET" && !opts_.cut_path.empty() &&
             req.target.find(opts_.cut_path) != std::string::npos && cut_armed_.exchange(false);
  std::string response_head;  // until the end of the headers
  int status = 0;
  size_t body_sent = 0;
  char buf[16384];
  while (wait_readable(up, stop_fd_)) {
    ssize_t n = recv(up, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::string_view chunk(buf, static_cast<size_t>(n));
    size_t head_end = response_head.find("\r\n\r\n");
    if (head_end == std::string::npos) {
      size_t before = response_head.size();
      response_head.append(chunk);
      head_end = response_head.find("\r\n\r\n");
      if (head_end == std::string::npos) {
        if (!send_all(fd, chunk.data(), chunk.size())) break;
        continue;
      }
      std::istringstream status_line(response_head);
      std::string version;
      status_line >> version >> status;
      set_status(id, status);
      // Send the headers and keep only the body bytes of this chunk.
      size_t head_bytes = head_end + 4 - before;
      if (!send_all(fd, chunk.data(), head_bytes)) break;
      chunk.remove_prefix(head_bytes);
    }
    if (cut && body_sent + chunk.size() >= opts_.cut_after) {
      set_status(id, status, /*cut=*/true);
      send_all(fd, chunk.data(), opts_.cut_after - body_sent);
      break;
    }
    if (!send_all(fd, chunk.data(), chunk.size())) break;
    body_sent += chunk.size();
  }
  close(up);
}

}  // namespace berth::test
