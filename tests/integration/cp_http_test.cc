// berthd's HTTP transport (controlplane/api/http_server.h) for real: a
// server on a unique temp unix socket and on 127.0.0.1:0, raw socket
// clients, the real AWS CLI signing with SigV4. Loopback only.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "controlplane/api/auth.h"
#include "controlplane/api/http_server.h"
#include "tests/integration/harness.h"
#include "tests/skip.h"

namespace {

using namespace berth;
using namespace berth::cp;
using namespace std::chrono_literals;
using berth::test::TempDir;
using berth::test::wait_until;

// ---- a raw HTTP client ------------------------------------------------------

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (fd >= 0) ::close(fd);
    fd = std::exchange(o.fd, -1);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

void set_timeouts(int fd) {
  timeval tv{20, 0};  // a hung server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

Fd connect_unix(const std::string& path) {
  Fd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  REQUIRE(connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  set_timeouts(s.fd);
  return s;
}

Fd connect_tcp(uint16_t port) {
  Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  set_timeouts(s.fd);
  return s;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool chunked = false;
};

// A reader that keeps what it read past one response (pipelining).
struct Reader {
  int fd;
  std::string buf;

  bool fill() {
    char tmp[65536];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  }
  std::optional<std::string> line() {
    for (;;) {
      size_t eol = buf.find("\r\n");
      if (eol != std::string::npos) {
        std::string l = buf.substr(0, eol);
        buf.erase(0, eol + 2);
        return l;
      }
      if (!fill()) return std::nullopt;
    }
  }
  std::optional<std::string> bytes(size_t n) {
    while (buf.size() < n) {
      if (!fill()) return std::nullopt;
    }
    std::string out = buf.substr(0, n);
    buf.erase(0, n);
    return out;
  }
  // The status line and headers.
  std::optional<Response> head() {
    auto status = line();
    if (!status || status->size() < 12) return std::nullopt;
    Response r;
    r.status = std::stoi(status->substr(9, 3));
    for (;;) {
      auto l = line();
      if (!l) return std::nullopt;
      if (l->empty()) break;
      size_t colon = l->find(':');
      std::string name = l->substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = l->substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
    }
    r.chunked = r.headers.count("transfer-encoding") == 1;
    return r;
  }
  // One chunk of a chunked body; "" at the last chunk; nullopt on EOF.
  std::optional<std::string> chunk() {
    auto size_line = line();
    if (!size_line) return std::nullopt;
    size_t n = std::stoul(*size_line, nullptr, 16);
    auto data = bytes(n);
    if (!data) return std::nullopt;
    if (!line()) return std::nullopt;
    return data;
  }
  std::optional<Response> response() {
    auto r = head();
    if (!r) return std::nullopt;
    if (r->chunked) {
      for (;;) {
        auto c = chunk();
        if (!c) return std::nullopt;
        if (c->empty()) break;
        r->body += *c;
      }
    } else if (auto it = r->headers.find("content-length"); it != r->headers.end()) {
      auto b = bytes(std::stoul(it->second));
      if (!b) return std::nullopt;
      r->body = *b;
    }
    return r;
  }
  // True once the peer closed (EOF or reset) within `timeout`.
  bool closed_within(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
      char tmp[4096];
      ssize_t n = ::recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
      if (n <= 0) return true;
    }
    return false;
  }
};

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: berth\r\n" + extra + "\r\n";
}

// One request on a new unix connection.
std::optional<Response> ask_unix(const std::string& sock, const std::string& request) {
  Fd c = connect_unix(sock);
  Reader rd{c.fd, {}};
  if (!send_all(c.fd, request)) return std::nullopt;
  return rd.response();
}

// ---- the server under test --------------------------------------------------

struct TestServer {
  TempDir dir;
  std::unique_ptr<AccountDirectory> accounts;
  std::unique_ptr<HttpServer> server;
  std::string sock;

  explicit TestServer(Handler h, ServerConfig cfg = {}, std::vector<Account> accts = {}) {
    if (accts.empty()) {
      Account a;
      a.id = "111111111111";
      a.name = "alice";
      a.unix_uids = {getuid()};
      a.access_key_id = "AKIDBERTHTEST";
      a.secret_access_key = "berth-test-secret/abc+def";
      accts.push_back(a);
    }
    accounts = std::make_unique<AccountDirectory>(std::move(accts));
    sock = dir.path() + "/run/berthd.sock";
    cfg.unix_path = sock;
    if (cfg.tcp_listen.empty()) cfg.tcp_listen = "127.0.0.1:0";
    auto s = HttpServer::start(cfg, std::move(h), make_authenticator(*accounts));
    if (!s) FAIL(s.error().str());
    server = std::move(*s);
  }
  ~TestServer() {
    if (server) server->stop();
  }
};

HttpResponse text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers["content-type"] = "text/plain";
  r.body = std::move(body);
  return r;
}

// Answers "METHOD PATH account uid pid body-size".
Handler echo_handler() {
  return [](HttpRequest req, Respond respond) {
    respond(text(200,
                 fmt::format("{} {} {} {} {} {}", req.method, req.path, req.account,
                             req.peer.uid ? std::to_string(*req.peer.uid) : "-",
                             req.peer.pid ? std::to_string(*req.peer.pid) : "-", req.body.size())));
  };
}

bool looks_like_uuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

TEST_CASE("cp-http keep-alive, pipelining and peer credentials on the unix socket", "[cp-http]") {
  TestServer ts(echo_handler());
  struct stat st {};
  REQUIRE(stat(ts.sock.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
  CHECK(S_ISSOCK(st.st_mode));

  Fd c = connect_unix(ts.sock);
  Reader rd{c.fd, {}};
  std::string last_id;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(send_all(c.fd, get("/v1/tasks/" + std::to_string(i))));
    auto r = rd.response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == fmt::format("GET /v1/tasks/{} 111111111111 {} {} 0", i, getuid(), getpid()));
    CHECK(r->headers.count("content-length") == 1);
    REQUIRE(r->headers.count("x-amzn-requestid") == 1);
    CHECK(looks_like_uuid(r->headers["x-amzn-requestid"]));
    CHECK(r->headers["x-amzn-requestid"] != last_id);
    last_id = r->headers["x-amzn-requestid"];
  }
  // Pipelined: three requests in one write, answered in order.
  REQUIRE(send_all(c.fd, get("/a") +
                             "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
                             get("/c%20d?x=1")));
  for (std::string want : {"GET /a", "POST /b", "GET /c d"}) {
    auto r = rd.response();
    REQUIRE(r);
    CHECK(r->body.starts_with(want));
  }
  CHECK(ts.server->connections() == 1);

  // HTTP/1.0: answered, then closed.
  Fd c10 = connect_unix(ts.sock);
  Reader rd10{c10.fd, {}};
  REQUIRE(send_all(c10.fd, "GET /old HTTP/1.0\r\n\r\n"));
  auto r = rd10.response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(rd10.closed_within(10s));
}

TEST_CASE("cp-http authentication: unmapped uid, open endpoints, unsigned TCP", "[cp-http]") {
  Account other;
  other.id = "222222222222";
  other.unix_uids = {getuid() + 4242};
  TestServer ts(echo_handler(), {}, {other});
  Fd c = connect_unix(ts.sock);
  Reader rd{c.fd, {}};
  REQUIRE(send_all(c.fd, get("/v1/tasks")));
  auto r = rd.response();
  REQUIRE(r);
  CHECK(r->status == 403);
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  CHECK(j["__type"] == "AccessDeniedException");
  CHECK(j["message"] ==
        fmt::format("uid {} is not mapped to an account (unix_uids in the config)", getuid()));
  CHECK(r->headers.count("x-amzn-requestid") == 1);
  // Same connection: the open endpoints need no account.
  REQUIRE(send_all(c.fd, get("/healthz") + get("/metrics")));
  for (const char* p : {"/healthz", "/metrics"}) {
    r = rd.response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.starts_with(fmt::format("GET {}  {} ", p, getuid())));
  }
  // TCP without a signature.
  Fd t = connect_tcp(ts.server->tcp_port());
  Reader rt{t.fd, {}};
  REQUIRE(send_all(t.fd, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"));
  r = rt.response();
  REQUIRE(r);
  CHECK(r->status == 403);
  j = nlohmann::json::parse(r->body, nullptr, false);
  CHECK(j["__type"] == "MissingAuthenticationTokenException");
  // A signature with an unknown key.
  REQUIRE(send_all(t.fd,
                   "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Date: 20150830T123600Z\r\n"
                   "Authorization: AWS4-HMAC-SHA256 Credential=AKIDNOPE/20150830/us-east-1/ecs/"
                   "aws4_request, SignedHeaders=host;x-amz-date, Signature=" +
                       std::string(64, '0') + "\r\nContent-Length: 0\r\n\r\n"));
  r = rt.response();
  REQUIRE(r);
  CHECK(r->status == 403);
  j = nlohmann::json::parse(r->body, nullptr, false);
  CHECK(j["__type"] == "UnrecognizedClientException");
}

TEST_CASE("cp-http a 100 MB body is refused with 413 at once", "[cp-http]") {
  std::atomic<int> calls{0};
  TestServer ts([&](HttpRequest, Respond respond) {
    ++calls;
    respond(text(200, "ok"));
  });
  for (bool tcp : {false, true}) {
    Fd c = tcp ? connect_tcp(ts.server->tcp_port()) : connect_unix(ts.sock);
    Reader rd{c.fd, {}};
    auto t0 = std::chrono::steady_clock::now();
    // Over TCP unsigned: the limit is checked before authentication.
    std::string head = "POST /v1/tasks HTTP/1.1\r\nHost: berth\r\nContent-Length: 104857600\r\n";
    REQUIRE(send_all(c.fd, head + "\r\n" + std::string(64 * 1024, 'x')));
    auto r = rd.response();
    REQUIRE(r);
    CHECK(r->status == 413);
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    CHECK(j["__type"] == "ClientException");
    CHECK(j["message"] == "the request body is larger than the limit of 4194304 bytes");
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    CHECK(rd.closed_within(15s));
  }
  // Chunked bodies are limited too.
  {
    Fd c = connect_unix(ts.sock);
    Reader rd{c.fd, {}};
    std::string chunk(1024 * 1024, 'y');
    std::string req = "POST /x HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 5; ++i) req += "100000\r\n" + chunk + "\r\n";
    send_all(c.fd, req);  // the server may close before all of it is taken
    auto r = rd.response();
    REQUIRE(r);
    CHECK(r->status == 413);
  }
  CHECK(calls == 0);
  // Alive.
  auto r = ask_unix(ts.sock, get("/healthz"));
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("cp-http malformed requests get 400 and are closed", "[cp-http]") {
  TestServer ts(echo_handler());
  for (std::string bad : {std::string("GARBAGE\r\n\r\n"), std::string("GET / HTTP/9.9\r\n\r\n"),
                          std::string("GET / HTTP/1.1\r\nBad Header Line\r\n\r\n"),
                          std::string("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
                          std::string("GET /%zz HTTP/1.1\r\nHost: b\r\n\r\n"),
                          std::string("GET nopath HTTP/1.1\r\nHost: b\r\n\r\n")}) {
    INFO(bad);
    Fd c = connect_unix(ts.sock);
    Reader rd{c.fd, {}};
    REQUIRE(send_all(c.fd, bad));
    auto r = rd.response();
    REQUIRE(r);
    CHECK(r->status == 400);
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    CHECK(j["__type"] == "ClientException");
    CHECK(r->headers.count("x-amzn-requestid") == 1);
    CHECK(rd.closed_within(15s));
  }
  // Headers over the limit: 431.
  auto r = ask_unix(ts.sock, get("/", "X-Big: " + std::string(100 * 1024, 'a') + "\r\n"));
  REQUIRE(r);
  CHECK(r->status == 431);
}

TEST_CASE("cp-http a client that stops in the middle of its headers is closed", "[cp-http]") {
  ServerConfig cfg;
  cfg.header_timeout = 1s;
  cfg.idle_timeout = 1s;
  TestServer ts(echo_handler(), cfg);
  Fd c = connect_unix(ts.sock);
  Reader rd{c.fd, {}};
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(send_all(c.fd, "GET / HTTP/1.1\r\nHost: ber"));
  CHECK(rd.closed_within(20s));
  CHECK(std::chrono::steady_clock::now() - t0 >= 900ms);
  // An idle keep-alive connection, and one that never sends a byte.
  Fd idle = connect_unix(ts.sock);
  Reader ri{idle.fd, {}};
  REQUIRE(send_all(idle.fd, get("/x")));
  REQUIRE(ri.response());
  CHECK(ri.closed_within(20s));
  Fd silent = connect_unix(ts.sock);
  Reader rs{silent.fd, {}};
  CHECK(rs.closed_within(20s));
  CHECK(wait_until([&] { return ts.server->connections() == 0; }, 20s));
}

TEST_CASE("cp-http 200 concurrent connections", "[cp-http]") {
  std::atomic<int> calls{0};
  TestServer ts([&](HttpRequest req, Respond respond) {
    ++calls;
    // Answer from another thread, as a handler doing blocking work would.
    std::thread([req = std::move(req), respond = std::move(respond)] {
      respond(text(200, req.path));
    }).detach();
  });
  std::vector<Fd> conns;
  for (int i = 0; i < 200; ++i) {
    conns.push_back(i % 2 == 0 ? connect_unix(ts.sock) : connect_tcp(ts.server->tcp_port()));
  }
  // Unix connections ask /n/I; TCP ones the unauthenticated /healthz.
  auto path = [](int i) {
    return i % 2 == 0 ? "/n/" + std::to_string(i) : std::string("/healthz");
  };
  for (int i = 0; i < 200; ++i) {
    REQUIRE(send_all(conns[static_cast<size_t>(i)].fd, get(path(i))));
  }
  for (int i = 0; i < 200; ++i) {
    Reader rd{conns[static_cast<size_t>(i)].fd, {}};
    auto r = rd.response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == path(i));
  }
  CHECK(calls == 200);
  CHECK(wait_until([&] { return ts.server->connections() == 200; }, 20s));

  // Beyond max_connections new connections are closed.
  ServerConfig cfg;
  cfg.max_connections = 3;
  TestServer small(echo_handler(), cfg);
  std::vector<Fd> held;
  for (int i = 0; i < 3; ++i) held.push_back(connect_unix(small.sock));
  CHECK(wait_until([&] { return small.server->connections() == 3; }, 20s));
  Fd extra = connect_unix(small.sock);
  Reader re{extra.fd, {}};
  CHECK(re.closed_within(20s));
}

// A stream handler: the writer is handed to the test.
struct StreamBox {
  std::mutex mu;
  std::shared_ptr<BodyWriter> writer;
  std::atomic<bool> closed_cb{false};
  std::shared_ptr<BodyWriter> get() {
    std::lock_guard lock(mu);
    return writer;
  }
};

Handler stream_handler(StreamBox& box) {
  return [&box](HttpRequest req, Respond respond) {
    if (req.path != "/stream") {
      respond(text(200, "plain " + req.path));
      return;
    }
    HttpResponse r;
    r.headers["content-type"] = "text/event-stream";
    r.stream = [&box](std::shared_ptr<BodyWriter> w) {
      w->on_close([&box] { box.closed_cb = true; });
      std::lock_guard lock(box.mu);
      box.writer = std::move(w);
    };
    respond(std::move(r));
  };
}

TEST_CASE("cp-http chunked streaming from another thread, then keep-alive", "[cp-http]") {
  StreamBox box;
  TestServer ts(stream_handler(box));
  Fd c = connect_unix(ts.sock);
  Reader rd{c.fd, {}};
  REQUIRE(send_all(c.fd, get("/stream")));
  auto head = rd.head();
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->headers["transfer-encoding"] == "chunked");
  CHECK(head->headers["content-type"] == "text/event-stream");
  CHECK(head->headers.count("x-amzn-requestid") == 1);
  REQUIRE(wait_until([&] { return box.get() != nullptr; }, 20s));
  std::thread producer([w = box.get()] {
    for (int i = 0; i < 100; ++i) {
      if (!w->write(fmt::format("data: {}\n\n", i))) return;
    }
    w->close();
    CHECK(!w->write("late"));
  });
  std::string body;
  for (;;) {
    auto ch = rd.chunk();
    REQUIRE(ch);
    if (ch->empty()) break;
    body += *ch;
  }
  producer.join();
  std::string want;
  for (int i = 0; i < 100; ++i) want += fmt::format("data: {}\n\n", i);
  CHECK(body == want);
  CHECK(!box.closed_cb);  // the producer closed it: not a disconnect
  // The connection goes on after the stream.
  REQUIRE(send_all(c.fd, get("/after")));
  auto r = rd.response();
  REQUIRE(r);
  CHECK(r->body == "plain /after");
}

TEST_CASE("cp-http BodyWriter::write fails once the client is gone", "[cp-http]") {
  StreamBox box;
  TestServer ts(stream_handler(box));
  for (bool tcp : {false, true}) {
    {
      std::lock_guard lock(box.mu);
      box.writer.reset();
    }
    box.closed_cb = false;
    Fd c = tcp ? connect_tcp(ts.server->tcp_port()) : connect_unix(ts.sock);
    Reader rd{c.fd, {}};
    if (tcp) {
      // Unsigned on TCP: refused before any stream starts.
      REQUIRE(send_all(c.fd, get("/stream")));
      auto r = rd.response();
      REQUIRE(r);
      CHECK(r->status == 403);
      continue;
    }
    REQUIRE(send_all(c.fd, get("/stream")));
    REQUIRE(rd.head());
    REQUIRE(wait_until([&] { return box.get() != nullptr; }, 20s));
    auto w = box.get();
    CHECK(w->write("one"));
    c.reset();
    CHECK(wait_until([&] { return !w->write("more"); }, 20s));
    CHECK(wait_until([&] { return box.closed_cb.load(); }, 20s));
    // on_close registered after the fact runs at once.
    bool late = false;
    w->on_close([&] { late = true; });
    CHECK(late);
  }
  CHECK(wait_until([&] { return ts.server->connections() == 0; }, 20s));
}

TEST_CASE("cp-http a slow client's stream is dropped at the queue limit", "[cp-http]") {
  StreamBox box;
  ServerConfig cfg;
  cfg.max_stream_queue_bytes = 1024 * 1024;
  TestServer ts(stream_handler(box), cfg);
  Fd c = connect_unix(ts.sock);
  Reader rd{c.fd, {}};
  REQUIRE(send_all(c.fd, get("/stream")));
  REQUIRE(rd.head());
  REQUIRE(wait_until([&] { return box.get() != nullptr; }, 20s));
  auto w = box.get();
  // The client reads nothing; the socket buffers fill, then the queue.
  std::string block(64 * 1024, 'z');
  bool refused = false;
  for (int i = 0; i < 4096 && !refused; ++i) refused = !w->write(block);
  CHECK(refused);
  CHECK(wait_until([&] { return box.closed_cb.load(); }, 20s));
}

TEST_CASE("cp-http graceful stop: in-flight requests finish, streams close", "[cp-http]") {
  StreamBox box;
  std::atomic<bool> slow_started{false};
  std::vector<std::thread> workers;
  std::mutex workers_mu;
  auto handler = [&](HttpRequest req, Respond respond) {
    if (req.path == "/slow") {
      slow_started = true;
      std::lock_guard lock(workers_mu);
      workers.emplace_back([respond = std::move(respond)] {
        std::this_thread::sleep_for(700ms);  // the work the request does
        respond(text(200, "slow done"));
      });
      return;
    }
    stream_handler(box)(std::move(req), std::move(respond));
  };
  auto ts = std::make_unique<TestServer>(handler);
  std::string sock = ts->sock;
  Fd a = connect_unix(sock);
  Reader ra{a.fd, {}};
  Fd b = connect_unix(sock);
  Reader rb{b.fd, {}};
  Fd idle = connect_unix(sock);
  Reader ri{idle.fd, {}};
  REQUIRE(send_all(b.fd, get("/stream")));
  REQUIRE(rb.head());
  REQUIRE(wait_until([&] { return box.get() != nullptr; }, 20s));
  REQUIRE(box.get()->write("before stop"));
  REQUIRE(send_all(a.fd, get("/slow")));
  REQUIRE(wait_until([&] { return slow_started.load(); }, 20s));

  auto t0 = std::chrono::steady_clock::now();
  ts->server->stop();
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 5s + 3s);

  auto r = ra.response();
  REQUIRE(r);
  CHECK(r->body == "slow done");
  CHECK(r->headers["connection"] == "close");
  CHECK(ra.closed_within(10s));
  CHECK(box.closed_cb);
  CHECK(!box.get()->write("after stop"));
  auto first = rb.chunk();
  REQUIRE(first);
  CHECK(*first == "before stop");
  CHECK(rb.closed_within(10s));
  CHECK(ri.closed_within(10s));
  struct stat st {};
  CHECK(lstat(sock.c_str(), &st) != 0);
  {
    std::lock_guard lock(workers_mu);
    for (auto& t : workers) t.join();
  }
  box.writer.reset();
  ts.reset();
}

TEST_CASE("cp-http a live daemon's socket is never taken, a stale one is", "[cp-http]") {
  TestServer ts(echo_handler());
  ServerConfig cfg;
  cfg.unix_path = ts.sock;
  auto second = HttpServer::start(cfg, echo_handler(),
                                  [](const HttpRequest&) { return Result<std::string>("x"); });
  REQUIRE(!second);
  CHECK(second.error().message == "another berthd is listening on " + ts.sock);
  // The first still serves.
  auto still = ask_unix(ts.sock, get("/still"));
  REQUIRE(still);
  CHECK(still->status == 200);

  // A stale socket (bound, never listened on, like a crashed daemon's).
  TempDir dir;
  std::string stale = dir.path() + "/stale.sock";
  {
    Fd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    stale.copy(addr.sun_path, sizeof addr.sun_path - 1);
    REQUIRE(bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  cfg.unix_path = stale;
  auto third = HttpServer::start(cfg, echo_handler(),
                                 [](const HttpRequest&) { return Result<std::string>("x"); });
  REQUIRE(third);
  auto fresh = ask_unix(stale, get("/fresh"));
  REQUIRE(fresh);
  CHECK(fresh->body.starts_with("GET /fresh x"));
  (*third)->stop();
  // A regular file in the way is not removed.
  {
    Fd f(::open(stale.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    REQUIRE(f.fd >= 0);
  }
  auto fourth = HttpServer::start(cfg, echo_handler(),
                                  [](const HttpRequest&) { return Result<std::string>("x"); });
  REQUIRE(!fourth);
  CHECK(fourth.error().message.find("is not a socket") != std::string::npos);
}

TEST_CASE("cp-http socket group, an IPv6 listener, bad listen addresses", "[cp-http]") {
  ServerConfig cfg;
  cfg.socket_group = 4321;
  cfg.tcp_listen = "[::1]:0";
  std::optional<TestServer> ts;
  bool v6 = true;
  {
    Fd probe(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    v6 = probe.fd >= 0 && bind(probe.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  if (!v6) cfg.tcp_listen = "127.0.0.1:0";
  if (getuid() != 0) cfg.socket_group.reset();
  ts.emplace(echo_handler(), cfg);
  struct stat st {};
  REQUIRE(stat(ts->sock.c_str(), &st) == 0);
  if (cfg.socket_group) CHECK(st.st_gid == 4321);
  CHECK(ts->server->tcp_port() != 0);
  if (v6) {
    Fd c(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    addr.sin6_port = htons(ts->server->tcp_port());
    REQUIRE(connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    set_timeouts(c.fd);
    Reader rd{c.fd, {}};
    REQUIRE(send_all(c.fd, get("/healthz")));
    auto r = rd.response();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  for (std::string bad : {"127.0.0.1", "127.0.0.1:99999", "[::1]8080", "host.example:80"}) {
    ServerConfig b;
    b.unix_path = "";
    b.tcp_listen = bad;
    auto s = HttpServer::start(b, echo_handler(), nullptr);
    REQUIRE(!s);
    CHECK(s.error().message.starts_with("listen address '" + bad + "'"));
  }
  if (!v6) BERTH_SKIP("no IPv6 loopback on this host: the IPv6 listener was not tried");
}

TEST_CASE("cp-http the real AWS CLI signs a request the server accepts", "[cp-http]") {
  if (access("/usr/bin/aws", X_OK) != 0) BERTH_SKIP("the AWS CLI (/usr/bin/aws) is not installed");
  std::atomic<int> calls{0};
  std::string target_seen;
  std::mutex mu;
  TestServer ts([&](HttpRequest req, Respond respond) {
    ++calls;
    {
      std::lock_guard lock(mu);
      target_seen = req.header("x-amz-target") ? *req.header("x-amz-target") : "";
    }
    HttpResponse r;
    r.headers["content-type"] = "application/x-amz-json-1.1";
    if (target_seen != "AmazonEC2ContainerServiceV20141113.ListClusters" ||
        req.account != "111111111111") {
      r.status = 400;
      r.body = R"({"__type":"ClientException","message":"unexpected request"})";
    } else {
      r.body = R"({"clusterArns":[]})";
    }
    respond(std::move(r));
  });
  TempDir home;
  auto run_aws = [&](const std::string& secret) {
    return berth::test::exec_command({"env",
                                      "-i",
                                      "PATH=/usr/bin:/bin",
                                      "HOME=" + home.path(),
                                      "AWS_ACCESS_KEY_ID=AKIDBERTHTEST",
                                      "AWS_SECRET_ACCESS_KEY=" + secret,
                                      "AWS_DEFAULT_REGION=us-east-1",
                                      "AWS_EC2_METADATA_DISABLED=true",
                                      "AWS_CONFIG_FILE=" + home.path() + "/config",
                                      "AWS_SHARED_CREDENTIALS_FILE=" + home.path() + "/credentials",
                                      "/usr/bin/aws",
                                      "ecs",
                                      "list-clusters",
                                      "--endpoint-url",
                                      "http://127.0.0.1:" + std::to_string(ts.server->tcp_port()),
                                      "--output",
                                      "json",
                                      "--cli-read-timeout",
                                      "20",
                                      "--cli-connect-timeout",
                                      "10"},
                                     {.timeout = std::chrono::seconds(120)});
  };
  auto r = run_aws("berth-test-secret/abc+def");
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  CHECK(j["clusterArns"].is_array());
  CHECK(calls == 1);
  {
    std::lock_guard lock(mu);
    CHECK(target_seen == "AmazonEC2ContainerServiceV20141113.ListClusters");
  }

  auto bad = run_aws("the-wrong-secret");
  INFO(bad);
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("InvalidSignatureException") != std::string::npos);
  CHECK(calls == 1);
}

}  // namespace
