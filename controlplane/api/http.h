// The seam between berthd's HTTP transport (api/http_server.h: Boost.Beast
// on Asio, unix socket and TCP) and what answers requests (the ECS
// operations and the native /v1 endpoints). The transport parses, limits,
// authenticates and times out; a Handler only sees whole requests.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/error.h"

namespace berth::cp {

// Who is on the other end.
struct Peer {
  bool unix_socket = false;
  // SO_PEERCRED on the unix socket.
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<int32_t> pid;
  std::string remote;  // "unix" or "127.0.0.1:40312"
};

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // decoded path, no query
  std::string target;  // the request-target as sent (raw path?query; SigV4 signs it)
  std::map<std::string, std::string> query;    // decoded
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;
  Peer peer;
  // The account the transport authenticated (peer credentials on the unix
  // socket, SigV4 on TCP). Empty for the unauthenticated endpoints
  // (/healthz, /metrics).
  std::string account;
  std::string request_id;  // x-amzn-RequestId of the answer

  // nullptr when absent (defined in api/http_server.cc).
  const std::string* header(const std::string& lower_name) const;
};

// A streamed body (chunked transfer encoding): log follow, server-sent
// events. write() and close() may be called from any thread; write()
// returns false once the client is gone (stop producing then).
class BodyWriter {
 public:
  virtual ~BodyWriter() = default;
  virtual bool write(std::string chunk) = 0;
  virtual void close() = 0;
  // Called (once, on some thread) when the client goes away or the server
  // shuts down, so a producer blocked elsewhere can stop.
  virtual void on_close(std::function<void()> f) = 0;
};

struct HttpResponse {
  int status = 200;
  std::map<std::string, std::string> headers;  // content-type etc.
  std::string body;
  // Set for a streamed body: called once after the headers are sent, with
  // the writer the producer keeps.
  std::function<void(std::shared_ptr<BodyWriter>)> stream;
};

using Respond = std::function<void(HttpResponse)>;
// Called on an I/O thread: must not block. Post blocking work elsewhere and
// call `respond` (from any thread) exactly once.
using Handler = std::function<void(HttpRequest, Respond)>;

// Maps a request to an account: Result of the account id, or an ECS error
// (AccessDeniedException / "UnrecognizedClientException" ...) answered 403.
// Called on an I/O thread (it only computes: HMACs, a table lookup).
using Authenticator = std::function<Result<std::string>(const HttpRequest&)>;

}  // namespace berth::cp
