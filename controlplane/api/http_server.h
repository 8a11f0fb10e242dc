// berthd's HTTP transport: HTTP/1.1 (keep-alive, pipelining, HTTP/1.0) with
// Boost.Beast on Asio, on a unix socket and optionally on TCP. It parses,
// limits, times out, authenticates (api/http.h Authenticator) and hands whole
// requests to the Handler; every answer carries x-amzn-RequestId.
//
// Beast stays in http_server.cc (pimpl): it is slow to compile.
//
//   auto server = HttpServer::start(cfg, handler, authenticator);
//   ...
//   (*server)->stop();  // graceful; never from an I/O thread (a handler)
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/error.h"
#include "controlplane/api/http.h"

namespace berth::cp {

struct ServerConfig {
  // The unix socket. Its parent directory is created (0755); the socket is
  // made 0660 (group `socket_group` when given). Empty: no unix socket.
  std::string unix_path = "/run/berth/berthd.sock";
  std::optional<uint32_t> socket_group;
  // "HOST:PORT" ("127.0.0.1:8080", "[::1]:0", ":8080" for every address);
  // empty: no TCP listener. Port 0 picks one (HttpServer::tcp_port()).
  std::string tcp_listen;
  int io_threads = 2;
  size_t max_body_bytes = 4 * 1024 * 1024;           // larger: 413 without reading it
  size_t max_header_bytes = 64 * 1024;               // larger: 431
  std::chrono::milliseconds header_timeout{10'000};  // first byte to end of headers
  std::chrono::milliseconds body_timeout{30'000};    // reading a body; writing an answer
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive between requests
  std::chrono::milliseconds shutdown_grace{5'000};   // in-flight requests at stop()
  size_t max_connections = 1024;                     // beyond: new ones are closed
  // A streamed body whose unsent data exceeds this (a slow client) is dropped.
  size_t max_stream_queue_bytes = 8 * 1024 * 1024;
};

class HttpServer {
 public:
  // Binds the sockets and starts the I/O threads. A unix socket file left by
  // a crashed daemon is replaced; one a live process listens on is not
  // ("another berthd is listening on PATH").
  static Result<std::unique_ptr<HttpServer>> start(ServerConfig config, Handler handler,
                                                   Authenticator authenticator);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Stops accepting, closes idle connections, lets in-flight requests finish
  // (up to shutdown_grace), closes streams (their BodyWriter::on_close
  // callbacks run), joins the I/O threads and removes the socket file.
  // Idempotent. Must not be called from an I/O thread.
  void stop();

  // The bound TCP port (0 without a TCP listener).
  uint16_t tcp_port() const;
  const std::string& unix_path() const;
  // Open connections now (for tests and /metrics).
  size_t connections() const;

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::cp
