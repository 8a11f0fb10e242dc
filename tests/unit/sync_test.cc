#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/fd.h"
#include "runtime/sync.h"

using namespace berth::runtime;
using berth::UniqueFd;

namespace {
std::pair<UniqueFd, UniqueFd> seqpacket_pair() {
  int sp[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0);
  return {UniqueFd(sp[0]), UniqueFd(sp[1])};
}
}  // namespace

TEST_CASE("sync messages keep type, errno and payload", "[sync]") {
  auto [a, b] = seqpacket_pair();
  REQUIRE(sync_send(a.get(), {SyncType::go, 0, R"({"id":"x"})"}));
  auto m = sync_expect(b.get(), SyncType::go);
  REQUIRE(m);
  CHECK(m->payload == R"({"id":"x"})");
}

TEST_CASE("an init's error arrives as the Error it sent", "[sync]") {
  auto [a, b] = seqpacket_pair();
  sync_report_error(a.get(), berth::Error{"mount", EPERM, "mount proc on /proc"});
  auto m = sync_expect(b.get(), SyncType::ready);
  REQUIRE_FALSE(m);
  CHECK(m.error().str() == "mount: mount proc on /proc: Operation not permitted");
}

TEST_CASE("EOF and unexpected messages are errors", "[sync]") {
  auto [a, b] = seqpacket_pair();
  REQUIRE(sync_send(a.get(), {SyncType::ready, 0, {}}));
  auto wrong = sync_expect(b.get(), SyncType::go);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().message == "expected message 1, got 4");
  a.reset();
  auto eof = sync_recv(b.get());
  REQUIRE_FALSE(eof);
  CHECK(eof.error().message == "closed");
}

TEST_CASE("fds pass over SCM_RIGHTS", "[sync]") {
  int sp[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
  UniqueFd a(sp[0]), b(sp[1]);
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  UniqueFd rd(p[0]), wr(p[1]);
  REQUIRE(send_fd(a.get(), wr.get(), "pipe"));
  auto got = recv_fd(b.get());
  REQUIRE(got);
  REQUIRE(::write(got->get(), "z", 1) == 1);
  char c = 0;
  REQUIRE(::read(rd.get(), &c, 1) == 1);
  CHECK(c == 'z');
}
