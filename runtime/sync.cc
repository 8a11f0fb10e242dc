#include "runtime/sync.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace berth::runtime {

namespace {
constexpr size_t kMaxMessage = 64 * 1024;

struct Header {
  uint32_t type;
  int32_t err;
};
}  // namespace

Result<void> sync_send(int fd, const SyncMessage& msg) {
  Header h{static_cast<uint32_t>(msg.type), msg.err};
  size_t len = std::min(msg.payload.size(), kMaxMessage - sizeof h);
  struct iovec iov[2] = {{&h, sizeof h}, {const_cast<char*>(msg.payload.data()), len}};
  struct msghdr mh = {};
  mh.msg_iov = iov;
  mh.msg_iovlen = 2;
  ssize_t n;
  do {
    n = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("sync", "send message {}", static_cast<unsigned>(msg.type));
  return {};
}

Result<SyncMessage> sync_recv(int fd) {
  std::vector<char> buf(kMaxMessage);
  ssize_t n;
  do {
    n = ::recv(fd, buf.data(), buf.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("sync", "receive message");
  if (n == 0) return error("sync", "closed");
  if (static_cast<size_t>(n) < sizeof(Header)) return error("sync", "short message");
  Header h;
  std::memcpy(&h, buf.data(), sizeof h);
  SyncMessage msg{static_cast<SyncType>(h.type), h.err,
                  std::string(buf.data() + sizeof h, static_cast<size_t>(n) - sizeof h)};
  return msg;
}

Result<SyncMessage> sync_expect(int fd, SyncType type) {
  BERTH_ASSIGN(SyncMessage msg, sync_recv(fd));
  if (msg.type == SyncType::error) return std::unexpected(sync_error(msg.err, msg.payload));
  if (msg.type != type) {
    return error("sync", "expected message {}, got {}", static_cast<unsigned>(type),
                 static_cast<unsigned>(msg.type));
  }
  return msg;
}

Error sync_error(int32_t err, const std::string& payload) {
  auto nul = payload.find('\0');
  if (nul == std::string::npos) return Error{"init", err, payload};
  return Error{payload.substr(0, nul), err, payload.substr(nul + 1)};
}

void sync_report_error(int fd, const Error& e) {
  std::string payload = e.step;
  payload.push_back('\0');
  payload += e.message;
  // Best effort: if the parent is gone there is nobody left to tell.
  (void)sync_send(fd, {SyncType::error, e.err, payload});
}

Result<void> send_fd(int sock, int fd, const std::string& name) {
  struct msghdr mh = {};
  struct iovec iov = {const_cast<char*>(name.data()), name.size()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  do {
    n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("sync", "send fd {}", name);
  return {};
}

Result<UniqueFd> recv_fd(int sock) {
  char name[256];
  struct msghdr mh = {};
  struct iovec iov = {name, sizeof name};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("sync", "receive fd");
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return error("sync", "no fd in message");
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return UniqueFd(fd);
}

}  // namespace berth::runtime
