// berth-shim's event loop: one process per task, single-threaded (the
// runtime library's create_container needs that), driven by epoll over a
// signalfd (SIGCHLD, SIGTERM), the task's unix socket and its clients, the
// containers' stdout/stderr pipes and one timerfd for stop deadlines.
//
// Every lifecycle fact is written to <task_dir>/state.json (fsync + rename)
// before it is announced to clients, so a control plane that was away reads
// the truth from disk or from `hello` when it reconnects. The protocol is
// documented in shim/PROTOCOL.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/error.h"
#include "common/json.h"
#include "shim/task.h"

namespace berth::shim {

inline constexpr int kProtocolVersion = 1;

struct ShimOptions {
  std::string task_dir;     // task.json, state.json, logs/
  std::string socket_path;  // the protocol socket (default <task_dir>/shim.sock)
  // --hold: listen, but start no container before a client sends `start`
  // (so that it can subscribe first and miss no event).
  bool hold = false;
};

// Request arguments, checked here (separate from the loop for the unit
// tests). Errors name the op and the argument.
struct LogsRequest {
  uint64_t offset = 0;
  size_t max_bytes = 256 << 10;  // capped at 1 MiB
};
Result<LogsRequest> parse_logs_request(const nlohmann::json& req);
// `stop`'s timeout in seconds (0-86400); nullopt when absent.
Result<std::optional<int>> parse_stop_timeout(const nlohmann::json& req);

// Runs the task until every container has ended and the final state is on
// disk. `ready_fd` (if >= 0) gets one byte once the socket listens and the
// containers were started (or failed to; with `hold`, once the socket
// listens), then is closed. Returns the
// process exit status: 0 when the task ran (whatever its containers' exit
// codes), 1 when the shim itself failed.
int run_shim(const TaskSpec& task, const ShimOptions& opts, int ready_fd);

}  // namespace berth::shim
