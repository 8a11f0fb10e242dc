// The control plane's side of the shim protocol (shim/PROTOCOL.md):
// newline-delimited JSON requests and responses over the shim's unix socket,
// events interleaved on a subscribed connection.
//
// One ShimConnection per task, with its own reader thread: it matches
// responses to the callers waiting in call() (by request id) and hands every
// event, in order, to the event callback. When the socket reaches EOF (the
// shim exited or died) the pending calls fail and the close callback runs
// once. Callbacks run on the reader thread: they must not call() on the same
// connection (the reader is the one that would deliver the response), so
// the agent only queues events from them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fd.h"

namespace berth::cp {

class ShimConnection {
 public:
  using EventFn = std::function<void(const nlohmann::json& event)>;
  using CloseFn = std::function<void()>;

  // Connects to the socket at `path` and starts the reader thread.
  static Result<std::unique_ptr<ShimConnection>> connect(const std::string& path, EventFn on_event,
                                                         CloseFn on_close);
  ~ShimConnection();
  ShimConnection(const ShimConnection&) = delete;
  ShimConnection& operator=(const ShimConnection&) = delete;

  // Sends `request` (an "op" and its arguments; the id is added) and waits
  // for its response. A response with ok=false is an error carrying the
  // shim's message; its `result` otherwise (null when it has none).
  Result<nlohmann::json> call(nlohmann::json request,
                              std::chrono::milliseconds timeout = std::chrono::seconds(30));

  bool closed() const { return closed_.load(); }
  // Shuts the socket down and joins the reader (the close callback runs if
  // it has not yet). Safe to call from any thread but the reader's.
  void close();

 private:
  ShimConnection(UniqueFd fd, EventFn on_event, CloseFn on_close);
  void read_loop();
  void dispatch(const std::string& line);
  void finish();

  UniqueFd fd_;
  EventFn on_event_;
  CloseFn on_close_;
  std::thread reader_;
  std::atomic<bool> closed_{false};

  std::mutex write_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::optional<nlohmann::json>> pending_;
};

}  // namespace berth::cp
