// The HTTP transport (http_server.h). One Session per connection, every
// step of it on the connection's strand; a connection is in one phase at a
// time:
//   idle      waiting for the first byte of a request (keep-alive timeout;
//             the header timeout for the first request)
//   header    reading the request line and headers (header timeout)
//   body      reading the body (body timeout)
//   handling  the Handler has the request; nothing is read (pipelined
//             requests wait in the buffer and are answered in order)
//   writing   writing the answer (body timeout)
//   streaming a chunked body fed by a BodyWriter from any thread; a read
//             stays pending to see the client leave
//   lingering the answer is out and the send side shut down; reading and
//             dropping what the client still sends (an unread 413 body)
//             so that closing does not reset the answer away
// Every failure ends in close_now(); no exception leaves a handler (the run
// loop catches what would).
#include "controlplane/api/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/log.h"

namespace berth::cp {

const std::string* HttpRequest::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? nullptr : &it->second;
}

namespace {

// Asio opens its sockets without O_CLOEXEC: every fd berthd holds must be
// close-on-exec, or a child (a shim) inherits the API's sockets. (The shim
// spawn also closes every fd above stdio; this is the second line.)
void set_cloexec(int fd) {
  int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using error_code = boost::system::error_code;
using Socket = asio::generic::stream_protocol::socket;
using Executor = asio::strand<asio::io_context::executor_type>;

// Request ids only need to be unique, not secret.
std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t a = rng();
  uint64_t b = rng();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xffff,
                     b >> 48, b & 0xffffffffffffULL);
}

std::string ecs_error_body(std::string_view type, std::string_view message) {
  nlohmann::json j = {{"__type", type}, {"message", message}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding; `plus_is_space` for query components (form encoding).
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_digit(s[i + 1]);
      int lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Splits the request-target into the decoded path and query.
bool decode_target(std::string_view target, HttpRequest& req) {
  size_t q = target.find('?');
  auto path = percent_decode(target.substr(0, q), false);
  if (!path || path->empty() || path->front() != '/') return false;
  req.path = std::move(*path);
  if (q == std::string_view::npos) return true;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    auto key = percent_decode(item.substr(0, eq), true);
    auto value = eq == std::string_view::npos ? std::optional<std::string>("")
                                              : percent_decode(item.substr(eq + 1), true);
    if (!key || !value) return false;
    req.query.insert_or_assign(std::move(*key), std::move(*value));
  }
  return true;
}

std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return fmt::format("{}:{}", host, ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
  }
  return "?";
}

class Session;

// What the server's threads, sessions and outstanding Respond callables
// share: it outlives HttpServer while a Respond still holds a session.
struct Core {
  Core(ServerConfig c, Handler h, Authenticator a)
      : config(std::move(c)),
        handler(std::move(h)),
        authenticator(std::move(a)),
        io(std::max(1, config.io_threads)),
        work(asio::make_work_guard(io)) {}

  ServerConfig config;
  Handler handler;
  Authenticator authenticator;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::atomic<bool> stopping{false};
  std::atomic<bool> stopped{false};  // the I/O threads are gone

  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;

  bool add(Session* s, std::weak_ptr<Session> w) {
    std::lock_guard lock(mu);
    if (stopping || sessions.size() >= config.max_connections) return false;
    sessions.emplace(s, std::move(w));
    return true;
  }
  void remove(Session* s) {
    std::lock_guard lock(mu);
    sessions.erase(s);
    cv.notify_all();
  }
  std::vector<std::shared_ptr<Session>> snapshot() {
    std::lock_guard lock(mu);
    std::vector<std::shared_ptr<Session>> out;
    for (auto& [p, w] : sessions) {
      if (auto s = w.lock()) out.push_back(std::move(s));
    }
    return out;
  }
  // True when every session is gone before `deadline`.
  bool wait_empty(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu);
    return cv.wait_until(lock, deadline, [&] { return sessions.empty(); });
  }
  size_t count() {
    std::lock_guard lock(mu);
    return sessions.size();
  }
};

// The state a BodyWriter and its session share.
struct StreamShared {
  std::mutex mu;
  bool closed = false;  // no more writes: the producer closed, or the stream is gone
  bool fired = false;   // on_close callbacks ran (the stream is gone)
  std::vector<std::function<void()>> callbacks;
  std::atomic<size_t> queued{0};  // bytes accepted by write() and not yet sent

  // The stream is gone (client, overflow, shutdown): runs the callbacks once.
  void fire() {
    std::vector<std::function<void()>> cbs;
    {
      std::lock_guard lock(mu);
      if (fired) return;
      fired = closed = true;
      cbs.swap(callbacks);
    }
    for (auto& f : cbs) {
      try {
        f();
      } catch (const std::exception& e) {
        log::error("http: a stream's on_close callback threw: {}", e.what());
      } catch (...) {
        log::error("http: a stream's on_close callback threw");
      }
    }
  }
};

enum class Phase { idle, header, body, handling, writing, streaming, lingering, closed };

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Core> core, bool unix_socket)
      : core_(std::move(core)),
        sock_(asio::make_strand(core_->io)),
        timer_(sock_.get_executor()),
        unix_(unix_socket) {}

  Socket& socket() { return sock_; }
  auto executor() { return sock_.get_executor(); }

  // On the strand, once accepted.
  void start() {
    if (!core_->add(this, weak_from_this())) {
      close_now();
      return;
    }
    registered_ = true;
    int fd = sock_.native_handle();
    set_cloexec(fd);
    peer_.unix_socket = unix_;
    if (unix_) {
      peer_.remote = "unix";
      ucred cred{};
      socklen_t len = sizeof cred;
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        peer_.uid = cred.uid;
        peer_.gid = cred.gid;
        peer_.pid = cred.pid;
      }
    } else {
      peer_.remote = peer_address(fd);
    }
    wait_request();
  }

  // On the strand: the server stops.
  void server_stop() {
    stopping_ = true;
    switch (phase_) {
      case Phase::idle:
      case Phase::header:
      case Phase::body:
      case Phase::lingering:
        close_now();
        break;
      case Phase::handling:
      case Phase::writing:
        break;  // answered, then closed (keep-alive is off now)
      case Phase::streaming:
        // What is queued goes out; then the connection closes without the
        // last chunk (the client sees the stream cut, not finished).
        if (stream_) stream_->fire();
        stream_ending_ = true;
        pump();
        break;
      case Phase::closed:
        break;
    }
  }

  void close_now() {
    if (phase_ == Phase::closed) return;
    phase_ = Phase::closed;
    error_code ec;
    sock_.shutdown(Socket::shutdown_both, ec);
    sock_.close(ec);
    ++timer_gen_;
    timer_.cancel();
    if (stream_) stream_->fire();
    out_q_.clear();
    if (registered_) {
      registered_ = false;
      core_->remove(this);
    }
  }

  // From StreamWriter (posted to the strand).
  void stream_write(std::string framed, size_t payload) {
    if (phase_ != Phase::streaming || stream_ending_) {
      if (stream_) stream_->queued -= payload;
      return;
    }
    out_q_.push_back({std::move(framed), payload});
    pump();
  }
  void stream_end() {
    if (phase_ != Phase::streaming || stream_ending_) return;
    stream_ending_ = true;
    if (chunked_) out_q_.push_back({"0\r\n\r\n", 0});
    pump();
  }
  void stream_drop(const char* why) {
    if (phase_ != Phase::streaming) return;
    log::info("http: {} dropped from a stream: {}", peer_.remote, why);
    close_now();
  }

  void on_response(HttpResponse resp);
  Respond make_respond();

 private:
  struct Out {
    std::string data;
    size_t payload;
  };

  const ServerConfig& cfg() const { return core_->config; }

  void arm(std::chrono::milliseconds d) {
    uint64_t gen = ++timer_gen_;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->timer_gen_ || self->phase_ == Phase::closed) return;
      log::debug("http: {} timed out (phase {})", self->peer_.remote,
                 static_cast<int>(self->phase_));
      self->close_now();
    });
  }
  void disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  // A read kept pending while idle (the first byte of the next request),
  // streaming (to see the client leave) and lingering (draining).
  void bg_read() {
    read_pending_ = true;
    sock_.async_read_some(buf_.prepare(4096), [self = shared_from_this()](error_code ec, size_t n) {
      self->on_bg_read(ec, n);
    });
  }
  void on_bg_read(error_code ec, size_t n) {
    read_pending_ = false;
    if (!ec) buf_.commit(n);
    switch (phase_) {
      case Phase::closed:
        return;
      case Phase::idle:
        if (buf_.size() > 0) {
          read_header();
        } else if (ec == asio::error::operation_aborted) {
          bg_read();
        } else if (ec) {
          close_now();
        } else {
          bg_read();
        }
        return;
      case Phase::streaming:
        if (ec) {
          stream_drop("the client closed the connection");
        } else if (buf_.size() > cfg().max_header_bytes) {
          stream_drop("the client sent too much while the stream was open");
        } else {
          bg_read();
        }
        return;
      case Phase::lingering:
        if (ec) {
          close_now();
        } else {
          buf_.consume(buf_.size());
          bg_read();
        }
        return;
      default:
        return;  // cannot happen: no other phase keeps a read pending
    }
  }

  void wait_request() {
    phase_ = Phase::idle;
    if (stopping_) {
      linger_close();
      return;
    }
    arm(first_request_ ? cfg().header_timeout : cfg().idle_timeout);
    if (read_pending_) {
      // After a stream: the pending read now waits for the next request;
      // buffered bytes (pipelined) are taken once it is cancelled.
      if (buf_.size() > 0) {
        error_code ec;
        sock_.cancel(ec);
      }
      return;
    }
    if (buf_.size() > 0) {
      read_header();
    } else {
      bg_read();
    }
  }

  void read_header() {
    phase_ = Phase::header;
    request_id_ = new_request_id();
    version_ = 11;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(cfg().max_header_bytes));
    parser_->body_limit(cfg().max_body_bytes);
    arm(cfg().header_timeout);
    http::async_read_header(
        sock_, buf_, *parser_,
        [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }

  // A read error: answers malformed HTTP and over-limit requests, closes on
  // everything else (the client left, a timeout closed the socket).
  void read_failed(error_code ec) {
    if (phase_ == Phase::closed) return;
    if (ec == http::error::body_limit) {
      send_error(413, "ClientException",
                 fmt::format("the request body is larger than the limit of {} bytes",
                             cfg().max_body_bytes));
    } else if (ec == http::error::header_limit) {
      send_error(431, "ClientException",
                 fmt::format("the request headers are larger than the limit of {} bytes",
                             cfg().max_header_bytes));
    } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      send_error(400, "ClientException", fmt::format("malformed HTTP request: {}", ec.message()));
    } else {
      close_now();
    }
  }

  void on_header(error_code ec) {
    if (phase_ == Phase::closed) return;
    disarm();
    if (ec) {
      read_failed(ec);
      return;
    }
    first_request_ = false;
    auto& msg = parser_->get();
    version_ = msg.version();
    if (auto expect = msg[http::field::expect];
        !expect.empty() && beast::iequals(expect, "100-continue") && !parser_->is_done()) {
      phase_ = Phase::writing;
      arm(cfg().body_timeout);
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(sock_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](error_code ec2, size_t) {
                          if (self->phase_ == Phase::closed) return;
                          self->disarm();
                          if (ec2) {
                            self->close_now();
                          } else {
                            self->read_body();
                          }
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) {
      handle();
      return;
    }
    phase_ = Phase::body;
    arm(cfg().body_timeout);
    http::async_read(sock_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
      if (self->phase_ == Phase::closed) return;
      self->disarm();
      if (ec) {
        self->read_failed(ec);
      } else {
        self->handle();
      }
    });
  }

  void handle();
  Result<std::string> authenticate(const HttpRequest& req);

  void send_error(int status, std::string_view type, std::string_view message) {
    keep_alive_ = false;
    phase_ = Phase::handling;
    HttpResponse resp;
    resp.status = status;
    resp.headers["content-type"] = "application/x-amz-json-1.1";
    resp.body = ecs_error_body(type, message);
    on_response(std::move(resp));
  }

  void write_response(HttpResponse resp) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version_);
    res->result(static_cast<unsigned>(resp.status));
    for (auto& [name, value] : resp.headers) {
      if (beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding") ||
          beast::iequals(name, "connection")) {
        continue;
      }
      res->set(name, value);
    }
    res->set("x-amzn-RequestId", request_id_);
    res->body() = std::move(resp.body);
    res->keep_alive(keep_alive_ && !stopping_);
    res->prepare_payload();
    phase_ = Phase::writing;
    arm(cfg().body_timeout);
    http::async_write(sock_, *res, [self = shared_from_this(), res](error_code ec, size_t) {
      if (self->phase_ == Phase::closed) return;
      self->disarm();
      if (ec) {
        self->close_now();
      } else if (!self->keep_alive_ || self->stopping_) {
        self->linger_close();
      } else {
        self->wait_request();
      }
    });
  }

  void start_stream(HttpResponse resp);

  void pump() {
    if (phase_ != Phase::streaming || writing_) return;
    if (out_q_.empty()) {
      if (stream_ending_) finish_stream();
      return;
    }
    writing_ = true;
    arm(cfg().body_timeout);
    asio::async_write(sock_, asio::buffer(out_q_.front().data),
                      [self = shared_from_this()](error_code ec, size_t) {
                        self->writing_ = false;
                        if (self->phase_ == Phase::closed) return;
                        self->disarm();
                        if (ec) {
                          self->stream_drop("a write failed");
                          return;
                        }
                        if (self->stream_) self->stream_->queued -= self->out_q_.front().payload;
                        self->out_q_.pop_front();
                        self->pump();
                      });
  }

  void finish_stream() {
    if (stream_) {
      // A stream that ends normally: the producer closed it; later writes fail.
      std::lock_guard lock(stream_->mu);
      stream_->closed = true;
    }
    stream_.reset();
    stream_ending_ = false;
    if (chunked_ && keep_alive_ && !stopping_) {
      wait_request();
    } else {
      linger_close();
    }
  }

  void linger_close() {
    if (phase_ == Phase::closed) return;
    phase_ = Phase::lingering;
    error_code ec;
    sock_.shutdown(Socket::shutdown_send, ec);
    if (ec) {
      close_now();
      return;
    }
    // Shorter while the server stops: the answer is out, the FIN follows it.
    auto linger = stopping_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(2000);
    arm(std::min(linger, cfg().body_timeout));
    if (!read_pending_) bg_read();
  }

  std::shared_ptr<Core> core_;
  Socket sock_;
  asio::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  bool unix_;
  bool registered_ = false;
  Peer peer_;
  Phase phase_ = Phase::idle;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool first_request_ = true;
  bool stopping_ = false;
  bool keep_alive_ = false;
  bool read_pending_ = false;
  unsigned version_ = 11;
  std::string request_id_;
  // The response being streamed.
  std::shared_ptr<StreamShared> stream_;
  std::deque<Out> out_q_;
  bool writing_ = false;
  bool stream_ending_ = false;
  bool chunked_ = true;
  uint64_t request_seq_ = 0;
};

class StreamWriter : public BodyWriter {
 public:
  StreamWriter(std::shared_ptr<Core> core, std::weak_ptr<Session> session,
               std::shared_ptr<StreamShared> shared, bool chunked)
      : core_(std::move(core)),
        session_(std::move(session)),
        shared_(std::move(shared)),
        chunked_(chunked) {}
  ~StreamWriter() override { close(); }

  bool write(std::string chunk) override {
    if (chunk.empty()) {
      // An empty chunk would end the stream on the wire; nothing to send.
      std::lock_guard lock(shared_->mu);
      return !shared_->closed;
    }
    size_t n = chunk.size();
    {
      std::lock_guard lock(shared_->mu);
      if (shared_->closed) return false;
      shared_->queued += n;
    }
    auto s = session_.lock();
    if (!s || core_->stopped) return false;
    if (shared_->queued > core_->config.max_stream_queue_bytes) {
      asio::post(s->executor(), [s] { s->stream_drop("its unsent data exceeds the queue limit"); });
      return false;
    }
    std::string framed = chunked_ ? fmt::format("{:x}\r\n", n) : std::string();
    framed += chunk;
    if (chunked_) framed += "\r\n";
    asio::post(s->executor(), [s, framed = std::move(framed), n]() mutable {
      s->stream_write(std::move(framed), n);
    });
    return true;
  }

  void close() override {
    {
      std::lock_guard lock(shared_->mu);
      if (shared_->closed) return;
      shared_->closed = true;
    }
    auto s = session_.lock();
    if (!s || core_->stopped) return;
    asio::post(s->executor(), [s] { s->stream_end(); });
  }

  void on_close(std::function<void()> f) override {
    {
      std::lock_guard lock(shared_->mu);
      if (!shared_->fired) {
        shared_->callbacks.push_back(std::move(f));
        return;
      }
    }
    f();
  }

 private:
  std::shared_ptr<Core> core_;
  std::weak_ptr<Session> session_;
  std::shared_ptr<StreamShared> shared_;
  bool chunked_;
};

Respond Session::make_respond() {
  auto once = std::make_shared<std::atomic<bool>>(false);
  uint64_t seq = ++request_seq_;
  // The callable holds the session: while a handler works, no read is
  // pending, and this is what keeps the connection alive.
  return [self = shared_from_this(), once, seq](HttpResponse resp) {
    if (once->exchange(true) || self->core_->stopped) return;
    asio::post(self->executor(), [self, seq, resp = std::move(resp)]() mutable {
      if (seq != self->request_seq_) return;
      self->on_response(std::move(resp));
    });
  };
}

Result<std::string> Session::authenticate(const HttpRequest& req) {
  auto denied = [](std::string message) {
    return Result<std::string>(
        std::unexpected(Error{"AccessDeniedException", 0, std::move(message), ErrorKind::invalid}));
  };
  if (!core_->authenticator) return denied("no authenticator is configured");
  try {
    return core_->authenticator(req);
  } catch (const std::exception& e) {
    log::error("http: the authenticator threw on {}: {}", request_id_, e.what());
    return denied("the request could not be authenticated");
  }
}

void Session::handle() {
  phase_ = Phase::handling;
  auto msg = parser_->release();
  parser_.reset();
  version_ = msg.version();
  keep_alive_ = msg.keep_alive();

  HttpRequest req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  req.request_id = request_id_;
  req.peer = peer_;
  if (!decode_target(req.target, req)) {
    send_error(400, "ClientException",
               fmt::format("malformed request target '{}' (bad percent-encoding or not a path)",
                           req.target));
    return;
  }
  for (const auto& field : msg) {
    std::string name(field.name_string().data(), field.name_string().size());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto [it, inserted] = req.headers.try_emplace(std::move(name), field.value());
    if (!inserted) {
      it->second += ",";
      it->second += field.value();
    }
  }
  req.body = std::move(msg.body());

  bool open_endpoint = req.method == "GET" && (req.path == "/healthz" || req.path == "/metrics");
  if (!open_endpoint) {
    Result<std::string> who = authenticate(req);
    if (!who) {
      log::info("http: {} {} {} from {}: 403 {}: {}", request_id_, req.method, req.path,
                peer_.remote, who.error().step, who.error().message);
      HttpResponse resp;
      resp.status = 403;
      resp.headers["content-type"] = "application/x-amz-json-1.1";
      resp.body = ecs_error_body(who.error().step, who.error().message);
      on_response(std::move(resp));
      return;
    }
    req.account = std::move(*who);
  }

  Respond respond = make_respond();
  try {
    core_->handler(std::move(req), respond);
  } catch (const std::exception& e) {
    log::error("http: the handler threw on {}: {}", request_id_, e.what());
    HttpResponse resp;
    resp.status = 500;
    resp.headers["content-type"] = "application/x-amz-json-1.1";
    resp.body = ecs_error_body("ServerException", "internal error");
    respond(std::move(resp));
  }
}

void Session::on_response(HttpResponse resp) {
  if (phase_ != Phase::handling) return;
  ++request_seq_;  // a late second answer to this request is dropped
  if (resp.status < 100 || resp.status > 999) {
    log::error("http: the handler answered {} with status {}", request_id_, resp.status);
    resp = HttpResponse{};
    resp.status = 500;
    resp.headers["content-type"] = "application/x-amz-json-1.1";
    resp.body = ecs_error_body("ServerException", "internal error");
  }
  if (resp.stream) {
    start_stream(std::move(resp));
  } else {
    write_response(std::move(resp));
  }
}

void Session::start_stream(HttpResponse resp) {
  chunked_ = version_ >= 11;
  if (!chunked_) keep_alive_ = false;  // HTTP/1.0: the body ends when the connection does
  bool keep = keep_alive_ && !stopping_;
  auto status = static_cast<http::status>(resp.status);
  std::string head = fmt::format("HTTP/1.{} {} {}\r\n", version_ % 10, resp.status,
                                 std::string_view(http::obsolete_reason(status)));
  for (auto& [name, value] : resp.headers) {
    if (beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding") ||
        beast::iequals(name, "connection") || name.find_first_of("\r\n:") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      continue;
    }
    head += fmt::format("{}: {}\r\n", name, value);
  }
  head += fmt::format("x-amzn-RequestId: {}\r\n", request_id_);
  if (chunked_) head += "Transfer-Encoding: chunked\r\n";
  if (!keep && version_ >= 11) head += "Connection: close\r\n";
  if (keep && version_ < 11) head += "Connection: keep-alive\r\n";
  head += "\r\n";

  phase_ = Phase::streaming;
  stream_ = std::make_shared<StreamShared>();
  stream_ending_ = false;
  out_q_.push_back({std::move(head), 0});
  pump();
  bg_read();
  auto writer = std::make_shared<StreamWriter>(core_, weak_from_this(), stream_, chunked_);
  try {
    resp.stream(writer);
  } catch (const std::exception& e) {
    log::error("http: the stream producer of {} threw: {}", request_id_, e.what());
    writer->close();
  }
}

// A listener: one pending accept at a time, on its own strand.
template <class Protocol>
class Listener : public std::enable_shared_from_this<Listener<Protocol>> {
 public:
  Listener(std::shared_ptr<Core> core, bool unix_socket)
      : core_(std::move(core)),
        strand_(asio::make_strand(core_->io)),
        acceptor_(strand_),
        retry_(strand_),
        unix_(unix_socket) {}

  typename Protocol::acceptor& acceptor() { return acceptor_; }

  void accept() {
    auto session = std::make_shared<Session>(core_, unix_);
    acceptor_.async_accept(session->socket(),
                           [self = this->shared_from_this(), session](error_code ec) {
                             if (!self->acceptor_.is_open() || ec == asio::error::operation_aborted)
                               return;
                             if (ec) {
                               // EMFILE and the like: wait a little instead of spinning.
                               log::warn("http: accept: {}", ec.message());
                               self->retry_.expires_after(std::chrono::milliseconds(100));
                               self->retry_.async_wait([self](error_code ec2) {
                                 if (!ec2) self->accept();
                               });
                               return;
                             }
                             asio::post(session->executor(), [session] { session->start(); });
                             self->accept();
                           });
  }

  void close() {
    asio::post(strand_, [self = this->shared_from_this()] {
      error_code ec;
      self->acceptor_.close(ec);
      self->retry_.cancel();
    });
  }

 private:
  std::shared_ptr<Core> core_;
  Executor strand_;
  typename Protocol::acceptor acceptor_;
  asio::steady_timer retry_;
  bool unix_;
};

using UnixListener = Listener<asio::local::stream_protocol>;
using TcpListener = Listener<asio::ip::tcp>;

// A socket file at `path`: replaced when nothing listens on it (a crashed
// daemon's), refused when something does.
Result<void> clear_stale_socket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return sys_error("http", "stat {}", path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return error("http", "{} exists and is not a socket; not replacing it", path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error("http", "socket for probing {}", path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int saved = errno;
  ::close(fd);
  if (rc == 0) return error("http", "another berthd is listening on {}", path);
  if (saved != ECONNREFUSED) {
    return errno_error("http", saved, "probing {} for a live daemon", path);
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return sys_error("http", "removing the stale socket {}", path);
  }
  return {};
}

Result<asio::ip::tcp::endpoint> parse_listen(const std::string& spec) {
  std::string host;
  std::string port;
  if (spec.starts_with('[')) {
    size_t close = spec.find(']');
    if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':') {
      return error("http", "listen address '{}' is not [IPV6]:PORT", spec);
    }
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else {
    size_t colon = spec.rfind(':');
    if (colon == std::string::npos)
      return error("http", "listen address '{}' is not HOST:PORT", spec);
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  }
  if (host.empty()) host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return error("http", "listen address '{}': '{}' is not an IP address", spec, host);
  unsigned long p = 0;
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || (p = std::stoul(port)) > 65535) {
    return error("http", "listen address '{}': '{}' is not a port", spec, port);
  }
  return asio::ip::tcp::endpoint(addr, static_cast<uint16_t>(p));
}

}  // namespace

struct HttpServer::Impl {
  std::shared_ptr<Core> core;
  std::shared_ptr<UnixListener> unix_listener;
  std::shared_ptr<TcpListener> tcp_listener;
  std::vector<std::thread> threads;
  std::string unix_path;
  ino_t unix_inode = 0;
  uint16_t tcp_port = 0;
  bool stopped = false;

  Result<void> bind_unix();
  Result<void> bind_tcp();
  void run_thread();
  void remove_socket_file();
};

Result<void> HttpServer::Impl::bind_unix() {
  const ServerConfig& cfg = core->config;
  std::string parent = cfg.unix_path.substr(0, cfg.unix_path.rfind('/'));
  if (!parent.empty() && parent != cfg.unix_path) {
    if (auto r = fs::mkdir_p(parent, 0755); !r) {
      return wrap(r.error(), fmt::format("creating the socket directory {}", parent));
    }
  }
  if (cfg.unix_path.size() >= sizeof(sockaddr_un::sun_path)) {
    return error("http", "socket path {} is longer than {} bytes", cfg.unix_path,
                 sizeof(sockaddr_un::sun_path) - 1);
  }
  BERTH_TRY(clear_stale_socket(cfg.unix_path));
  unix_listener = std::make_shared<UnixListener>(core, true);
  auto& acc = unix_listener->acceptor();
  asio::local::stream_protocol::endpoint ep(cfg.unix_path);
  error_code ec;
  acc.open(ep.protocol(), ec);
  if (!ec) set_cloexec(acc.native_handle());
  if (!ec) acc.bind(ep, ec);
  if (ec) return errno_error("http", ec.value(), "binding {}: {}", cfg.unix_path, ec.message());
  unix_path = cfg.unix_path;
  struct stat st {};
  if (stat(unix_path.c_str(), &st) == 0) unix_inode = st.st_ino;
  if (chmod(unix_path.c_str(), 0660) != 0) return sys_error("http", "chmod 0660 {}", unix_path);
  if (cfg.socket_group &&
      chown(unix_path.c_str(), static_cast<uid_t>(-1), *cfg.socket_group) != 0) {
    return sys_error("http", "chown {} to group {}", unix_path, *cfg.socket_group);
  }
  acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return errno_error("http", ec.value(), "listen on {}: {}", unix_path, ec.message());
  return {};
}

Result<void> HttpServer::Impl::bind_tcp() {
  BERTH_ASSIGN(auto ep, parse_listen(core->config.tcp_listen));
  tcp_listener = std::make_shared<TcpListener>(core, false);
  auto& acc = tcp_listener->acceptor();
  error_code ec;
  acc.open(ep.protocol(), ec);
  if (!ec) set_cloexec(acc.native_handle());
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return errno_error("http", ec.value(), "listening on {}: {}", core->config.tcp_listen,
                       ec.message());
  }
  tcp_port = acc.local_endpoint(ec).port();
  return {};
}

void HttpServer::Impl::run_thread() {
  for (;;) {
    try {
      core->io.run();
      return;
    } catch (const std::exception& e) {
      log::error("http: an I/O handler threw (the loop goes on): {}", e.what());
    } catch (...) {
      log::error("http: an I/O handler threw (the loop goes on)");
    }
  }
}

void HttpServer::Impl::remove_socket_file() {
  if (unix_path.empty()) return;
  // Only our own socket: a newer daemon may have taken the path meanwhile.
  struct stat st {};
  if (lstat(unix_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == unix_inode) {
    unlink(unix_path.c_str());
  }
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  stop();
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(ServerConfig config, Handler handler,
                                                      Authenticator authenticator) {
  if (config.unix_path.empty() && config.tcp_listen.empty()) {
    return error("http", "neither a unix socket nor a TCP listen address is configured");
  }
  auto impl = std::make_unique<Impl>();
  impl->core =
      std::make_shared<Core>(std::move(config), std::move(handler), std::move(authenticator));
  if (!impl->core->config.unix_path.empty()) BERTH_TRY(impl->bind_unix());
  if (!impl->core->config.tcp_listen.empty()) {
    if (auto r = impl->bind_tcp(); !r) {
      impl->remove_socket_file();
      return std::unexpected(r.error());
    }
  }
  if (impl->unix_listener) impl->unix_listener->accept();
  if (impl->tcp_listener) impl->tcp_listener->accept();
  for (int i = 0; i < std::max(1, impl->core->config.io_threads); ++i) {
    Impl* raw = impl.get();
    impl->threads.emplace_back([raw] { raw->run_thread(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  Core& core = *impl_->core;
  {
    std::lock_guard lock(core.mu);
    core.stopping = true;  // no new sessions
  }
  if (impl_->unix_listener) impl_->unix_listener->close();
  if (impl_->tcp_listener) impl_->tcp_listener->close();
  for (auto& s : core.snapshot()) {
    asio::post(s->executor(), [s] { s->server_stop(); });
  }
  auto deadline = std::chrono::steady_clock::now() + core.config.shutdown_grace;
  if (!core.wait_empty(deadline)) {
    log::warn("http: {} connection(s) still busy after {} ms; closing them", core.count(),
              core.config.shutdown_grace.count());
    for (auto& s : core.snapshot()) {
      asio::post(s->executor(), [s] { s->close_now(); });
    }
    core.wait_empty(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  }
  core.stopped = true;
  core.work.reset();
  core.io.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Complete what is still pending (the listeners' accepts, closed sessions'
  // reads and timers) so that nothing left in the io_context holds the Core.
  {
    error_code ec;
    if (impl_->unix_listener) impl_->unix_listener->acceptor().close(ec);
    if (impl_->tcp_listener) impl_->tcp_listener->acceptor().close(ec);
  }
  core.io.restart();
  try {
    core.io.poll();
  } catch (...) {
    log::error("http: a handler threw while the server stopped");
  }
  impl_->unix_listener.reset();
  impl_->tcp_listener.reset();
  impl_->remove_socket_file();
}

uint16_t HttpServer::tcp_port() const {
  return impl_->tcp_port;
}
const std::string& HttpServer::unix_path() const {
  return impl_->unix_path;
}
size_t HttpServer::connections() const {
  return impl_->core->count();
}

}  // namespace berth::cp
