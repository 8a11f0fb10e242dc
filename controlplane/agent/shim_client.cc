#include "controlplane/agent/shim_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/json.h"

namespace berth::cp {

using nlohmann::json;

namespace {

// A response line longer than this is a broken shim (logs are capped at
// 1 MiB of data per call, so JSON-escaped a few MiB at most).
constexpr size_t kMaxLine = 16 << 20;

}  // namespace

Result<std::unique_ptr<ShimConnection>> ShimConnection::connect(const std::string& path,
                                                                EventFn on_event,
                                                                CloseFn on_close) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return error("shim", "socket path {} is longer than {} bytes", path, sizeof addr.sun_path - 1);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return sys_error("shim", "socket for {}", path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINTR) return sys_error("shim", "connect to {}", path);
  }
  return std::unique_ptr<ShimConnection>(
      new ShimConnection(std::move(fd), std::move(on_event), std::move(on_close)));
}

ShimConnection::ShimConnection(UniqueFd fd, EventFn on_event, CloseFn on_close)
    : fd_(std::move(fd)), on_event_(std::move(on_event)), on_close_(std::move(on_close)) {
  reader_ = std::thread([this] { read_loop(); });
}

ShimConnection::~ShimConnection() {
  close();
}

void ShimConnection::close() {
  if (fd_) ::shutdown(fd_.get(), SHUT_RDWR);
  if (reader_.joinable() && reader_.get_id() != std::this_thread::get_id()) reader_.join();
}

Result<json> ShimConnection::call(json request, std::chrono::milliseconds timeout) {
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    if (closed_)
      return error("shim", "{}: the shim's connection is closed", request.value("op", ""));
    id = next_id_++;
    pending_.emplace(id, std::nullopt);
  }
  request["id"] = id;
  std::string op = request.value("op", "");
  std::string line = request.dump() + "\n";
  {
    std::lock_guard lock(write_mu_);
    size_t off = 0;
    while (off < line.size()) {
      ssize_t n = ::send(fd_.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        auto err = sys_error("shim", "{}: send", op);
        std::lock_guard l(mu_);
        pending_.erase(id);
        return err;
      }
      off += static_cast<size_t>(n);
    }
  }
  std::unique_lock lock(mu_);
  bool answered = cv_.wait_for(lock, timeout, [&] {
    auto it = pending_.find(id);
    return closed_ || (it != pending_.end() && it->second.has_value());
  });
  auto it = pending_.find(id);
  std::optional<json> response;
  if (it != pending_.end()) {
    response = std::move(it->second);
    pending_.erase(it);
  }
  if (!response) {
    if (!answered) return error("shim", "{}: no answer in {} ms", op, timeout.count());
    return error("shim", "{}: the shim closed the connection before answering", op);
  }
  const json& r = *response;
  auto ok = r.find("ok");
  if (ok == r.end() || !ok->is_boolean() || !ok->get<bool>()) {
    auto e = r.find("error");
    return error(
        "shim", "{}",
        e != r.end() && e->is_string() ? e->get<std::string>() : op + ": failed: " + r.dump());
  }
  auto res = r.find("result");
  return res == r.end() ? json() : *res;
}

void ShimConnection::read_loop() {
  std::string buf;
  char chunk[65536];
  for (;;) {
    ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      dispatch(buf.substr(start, nl - start));
    }
    buf.erase(0, start);
    if (buf.size() > kMaxLine) break;
  }
  finish();
}

void ShimConnection::dispatch(const std::string& line) {
  auto j = parse_json(line, "shim message");
  if (!j || !j->is_object()) return;  // nothing sensible to do with a bad line
  if (j->contains("event")) {
    if (on_event_) on_event_(*j);
    return;
  }
  auto id = j->find("id");
  if (id == j->end() || !id->is_number_unsigned()) return;
  std::lock_guard lock(mu_);
  auto it = pending_.find(id->get<uint64_t>());
  if (it == pending_.end()) return;
  it->second = std::move(*j);
  cv_.notify_all();
}

void ShimConnection::finish() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  if (on_close_) on_close_();
}

}  // namespace berth::cp
