// SCMP_ACT_NOTIFY: the container's filter hands syscalls to a supervisor
// that listens on linux.seccomp.listenerPath; the runtime sends it the
// listener fd (SCM_RIGHTS) with the container state, as runc does.
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "harness.h"

using namespace berth::test;

namespace {

int listen_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof addr.sun_path);
  std::strcpy(addr.sun_path, path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  return fd;
}

// Receives one fd and the bytes sent with it (the container state JSON).
int recv_fd(int sock, std::string& payload) {
  char buf[8192];
  iovec iov = {buf, sizeof buf};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  REQUIRE(n >= 0);
  payload.assign(buf, static_cast<size_t>(n));
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  REQUIRE(c != nullptr);
  REQUIRE(c->cmsg_type == SCM_RIGHTS);
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

}  // namespace

TEST_CASE("SCMP_ACT_NOTIFY hands the syscall to the supervisor at listenerPath",
          "[privileged][security][seccomp]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc 1.1 sends the listener fd in its own message format");
  Runtime rt;
  Container c(rt);
  TempDir dir;
  const std::string listener = dir.path() + "/seccomp.sock";
  int lfd = listen_unix(listener);
  c.set_args({"/bin/probe", "cwd"});
  c.config()["linux"]["seccomp"] = {
      {"defaultAction", "SCMP_ACT_ALLOW"},
      {"listenerPath", listener},
      {"syscalls", {{{"names", {"getcwd"}}, {"action", "SCMP_ACT_NOTIFY"}}}}};

  auto created = c.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);
  auto started = c.start();
  INFO(started);
  REQUIRE(started.exit_code == 0);

  // The init connected at create and sends the fd once the filter is loaded.
  // (Bounded: without the feature nothing would ever connect.)
  pollfd p = {lfd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 30000) == 1);
  int conn = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(conn >= 0);
  std::string state;
  pollfd q = {conn, POLLIN, 0};
  REQUIRE(::poll(&q, 1, 30000) == 1);
  int notify_fd = recv_fd(conn, state);
  CHECK(state.find(c.id()) != std::string::npos);

  // The container's getcwd() is now waiting for our verdict: refuse it with
  // a distinctive errno, which the probe reports.
  pollfd n = {notify_fd, POLLIN, 0};
  REQUIRE(::poll(&n, 1, 30000) == 1);
  seccomp_notif req = {};
  REQUIRE(::ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, &req) == 0);
  CHECK(req.data.nr == SYS_getcwd);
  seccomp_notif_resp resp = {};
  resp.id = req.id;
  resp.error = -EXDEV;
  REQUIRE(::ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0);

  REQUIRE(c.wait_for_status("stopped"));
  CHECK(c.output().find("getcwd") != std::string::npos);
  CHECK(c.output().find("EXDEV") != std::string::npos);
  ::close(notify_fd);
  ::close(conn);
  ::close(lfd);
}
