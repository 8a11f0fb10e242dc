// berth's native endpoints (docs: common.md "The native API contract"):
//   POST   /v1/tasks?cluster=NAME          inline task definition, run one task
//   GET    /v1/tasks[?cluster=][&status=RUNNING|STOPPED|ALL]
//   GET    /v1/tasks/{id}                  (32-hex id or task ARN)
//   DELETE /v1/tasks/{id}[?reason=]        StopTask
//   GET    /v1/tasks/{id}/logs?container=NAME[&follow=true]
//   GET    /v1/events                      server-sent TaskStateChange events
//   GET    /v1/usage[?account=&from=&to=&groupBy=task|family|service|day]
//                                           the caller's usage report
//   GET    /v1/usage/verify                the caller's ledger chain check
// The task objects of the /v1/tasks answers carry "berthBilling" (the berth
// extension, ecs_api.h).
//
// /v1/usage (billing/ledger.h usage_report_json):
// - account: optional; another account than the caller's is 403
//   AccessDeniedException (an account reads only its own usage).
// - from / to: RFC 3339 ("2026-12-05T00:00:00Z", fractional seconds and
//   "+02:00" offsets too), a date "2026-12-05" (UTC midnight) or epoch
//   seconds ("1764892800"). Default from: the start of the current UTC
//   month; to: now. The interval is [from, to); from after to, or a value
//   of none of these forms, is 400 InvalidParameterException naming it.
// - groupBy: task (default) | family | service | day, else 400.
// /v1/usage/verify answers 200 whether or not the chain holds:
//   {"account", "records", "ok", "head", "totalMicroUsd",
//    "problems": [{"seq", "taskId", "what"}]}
// (an account without records: 0 records, ok, head = 64 zeros).
// Errors are ECS-shaped: 400, 403, 404 (ResourceNotFoundException /
// ClusterNotFoundException), 413, 500.
//
// handle() blocks (store, agent): the router calls it on a worker thread.
// The streaming answers (logs follow, events) each get a producer thread of
// their own that polls the agent / waits on the event bus, so neither an
// I/O thread nor a pool worker is held by a long-lived client.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>

#include "controlplane/agent/agent.h"
#include "controlplane/api/ecs_api.h"
#include "controlplane/api/http.h"
#include "controlplane/scheduler/task_manager.h"

namespace berth::cp {

// Producer threads of streamed answers; joined at shutdown.
class StreamThreads {
 public:
  ~StreamThreads() { stop_all(); }
  // false once stop_all() has begun.
  bool spawn(std::function<void(std::stop_token)> f);
  void stop_all();
  size_t running() const;

 private:
  struct Entry {
    std::jthread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  mutable std::mutex mu_;
  std::list<Entry> threads_;
  bool stopping_ = false;
};

struct NativeApiOptions {
  // How often a log follower asks the agent for new data.
  std::chrono::milliseconds log_poll{100};
  // A comment line on an idle event stream, so a gone client is noticed.
  std::chrono::milliseconds sse_keepalive{15000};
  // "now" of /v1/usage's defaults; default system_clock::now (the
  // ControlPlane passes the meter's clock).
  std::function<TimePoint()> clock;
};

// A /v1/usage time (the forms above) as epoch milliseconds; nullopt when it
// is none of them.
std::optional<int64_t> parse_usage_time(std::string_view text);
// Epoch milliseconds of 00:00 UTC on the first of the month of `epoch_ms`.
int64_t month_start_ms(int64_t epoch_ms);

class Meter;

class NativeApi {
 public:
  // `meter`: /v1/usage and the tasks' "berthBilling" (none without).
  NativeApi(EcsApi& ecs, TaskManager& tasks, Agent& agent, NativeApiOptions opts = {},
            Meter* meter = nullptr);
  ~NativeApi();

  static bool handles(const std::string& path) { return path == "/v1" || path.starts_with("/v1/"); }
  // The metrics label of a native request ("v1.RunTask", ...).
  static std::string operation(const HttpRequest& req);
  // Answers `req` (req.account set) through `respond`. Blocks.
  void handle(const HttpRequest& req, const Respond& respond);
  // Ends every stream (server shutdown).
  void shutdown();

 private:
  HttpResponse create_task(const HttpRequest& req);
  HttpResponse list_tasks(const HttpRequest& req);
  HttpResponse get_task(const HttpRequest& req, const std::string& ref);
  HttpResponse stop_task(const HttpRequest& req, const std::string& ref);
  HttpResponse logs(const HttpRequest& req, const std::string& ref);
  HttpResponse events(const HttpRequest& req);
  HttpResponse usage(const HttpRequest& req);
  HttpResponse usage_verify(const HttpRequest& req);
  nlohmann::json task_out(const Task& t);
  void follow_logs(std::stop_token st, std::shared_ptr<BodyWriter> w, std::string account,
                   std::string task_id, std::string container);

  EcsApi& ecs_;
  TaskManager& tasks_;
  Agent& agent_;
  NativeApiOptions opts_;
  Meter* meter_ = nullptr;
  StreamThreads streams_;
};

}  // namespace berth::cp
