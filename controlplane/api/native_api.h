// berth's native endpoints (docs: common.md "The native API contract"):
//   POST   /v1/tasks?cluster=NAME          inline task definition, run one task
//   GET    /v1/tasks[?cluster=][&status=RUNNING|STOPPED|ALL]
//   GET    /v1/tasks/{id}                  (32-hex id or task ARN)
//   DELETE /v1/tasks/{id}[?reason=]        StopTask
//   GET    /v1/tasks/{id}/logs?container=NAME[&follow=true]
//   GET    /v1/events                      server-sent TaskStateChange events
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
#include <stop_token>
#include <string>
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
};

class NativeApi {
 public:
  NativeApi(EcsApi& ecs, TaskManager& tasks, Agent& agent, NativeApiOptions opts = {});
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
  void follow_logs(std::stop_token st, std::shared_ptr<BodyWriter> w, std::string account,
                   std::string task_id, std::string container);

  EcsApi& ecs_;
  TaskManager& tasks_;
  Agent& agent_;
  NativeApiOptions opts_;
  StreamThreads streams_;
};

}  // namespace berth::cp
