// A small HTTP/1.1 front for the registry tests, on 127.0.0.1 only. It logs
// every request and forwards it to the real registry (docker-registry), and
// can in addition:
//   - demand Bearer tokens on /v2/ (401 with a realm/service/scope
//     challenge) and hand them out at GET /token, checking Basic
//     credentials: the token flow of Docker Hub, against real registry content;
//   - cut one response short after N body bytes (an interrupted download);
//   - redirect blob GETs to another base URL (a registry's storage host);
//   - answer GETs of one path itself, with made-up bytes, all at once or
//     dripped one byte at a time (a hostile or broken registry).
// One request per connection (every answer says "Connection: close"), one
// thread per connection; the destructor stops and joins them all.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace berth::test {

class HttpFront {
 public:
  struct Options {
    int upstream_port = 0;  // the registry on 127.0.0.1
    bool bearer = false;
    // /token demands these as Basic credentials when username is set.
    std::string username;
    std::string password;
    std::string service = "berth-test-registry";
    std::string token_field = "token";  // or "access_token", as some servers say
    // The first GET whose target contains cut_path gets only cut_after bytes
    // of its body, then the connection closes.
    std::string cut_path;
    size_t cut_after = 0;
    // Blob GETs are answered with a 307 to this base URL + the same target.
    std::string redirect_blobs_to;
    // Drop the Range header on the way to the registry: a server without
    // range support, which answers 200 with the whole blob.
    bool strip_range = false;
    // GETs whose target contains synthetic_path are answered by the front:
    // 200, Content-Type synthetic_type, Content-Length synthetic_bytes and as
    // many bytes of 'x' — one every drip_interval when that is set (until
    // the client goes away or the front stops), else all at once.
    std::string synthetic_path;
    size_t synthetic_bytes = 0;
    std::string synthetic_type = "application/octet-stream";
    std::chrono::milliseconds drip_interval{0};
  };

  struct Request {
    std::string method;
    std::string target;
    std::map<std::string, std::string> headers;  // lowercase names
    int status = 0;    // what the client got (the registry's status when forwarded)
    bool cut = false;  // this response was cut short
  };

  explicit HttpFront(Options opts);
  ~HttpFront();
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& token() const { return token_; }
  std::vector<Request> requests() const;

 private:
  void accept_loop();
  void serve(int fd);
  bool read_head(int fd, std::string& head);
  void respond(int fd, size_t id, int status, const std::string& body,
               const std::vector<std::string>& extra_headers = {});
  void forward(int fd, size_t id, const Request& req, const std::string& head);
  void synthetic(int fd, size_t id);
  // The log entry is made when the request arrives and completed before the
  // client sees the answer, so a client that has its answer finds it there.
  size_t record(const Request& req);
  void set_status(size_t id, int status, bool cut = false);

  Options opts_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: readable once the front is stopping
  int port_ = 0;
  std::string token_;
  std::atomic<bool> cut_armed_{true};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> connections_;
  std::vector<Request> log_;
};

}  // namespace berth::test
