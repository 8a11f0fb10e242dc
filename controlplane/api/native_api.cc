#include "controlplane/api/native_api.h"

#include <condition_variable>

#include "common/json.h"
#include "common/log.h"
#include "controlplane/model/ecs_json.h"
#include "controlplane/model/errors.h"
#include "controlplane/scheduler/json_text.h"

namespace berth::cp {

namespace {

using json = nlohmann::json;
constexpr std::string_view kJson = "application/json";
constexpr std::string_view kTasksPrefix = "/v1/tasks/";
constexpr uint64_t kLogChunk = 256 * 1024;

HttpResponse ok(const json& body) {
  return json_response(200, body, kJson);
}

HttpResponse fail(const Error& e) {
  return error_response(e, true);
}

template <class... A>
HttpResponse fail(std::string_view type, fmt::format_string<A...> f, A&&... a) {
  return fail(ecs_error(type, f, std::forward<A>(a)...).error());
}

std::string query(const HttpRequest& req, const std::string& key) {
  auto it = req.query.find(key);
  return it == req.query.end() ? std::string() : it->second;
}

// Waits `d` or until stopped.
void pause(std::stop_token st, std::chrono::milliseconds d) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  cv.wait_for(lock, st, d, [] { return false; });
}

}  // namespace

// ---------------------------------------------------------------------------

bool StreamThreads::spawn(std::function<void(std::stop_token)> f) {
  std::lock_guard lock(mu_);
  if (stopping_) return false;
  // Reap finished producers (their join returns at once).
  threads_.remove_if([](const Entry& e) { return e.done->load(); });
  auto done = std::make_shared<std::atomic<bool>>(false);
  threads_.push_back(Entry{std::jthread([f = std::move(f), done](std::stop_token st) {
                             f(st);
                             done->store(true);
                           }),
                           done});
  return true;
}

void StreamThreads::stop_all() {
  std::list<Entry> all;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    all.swap(threads_);
  }
  for (auto& e : all) e.thread.request_stop();
  all.clear();  // joins
}

size_t StreamThreads::running() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& e : threads_) n += e.done->load() ? 0 : 1;
  return n;
}

// ---------------------------------------------------------------------------

NativeApi::NativeApi(EcsApi& ecs, TaskManager& tasks, Agent& agent, NativeApiOptions opts)
    : ecs_(ecs), tasks_(tasks), agent_(agent), opts_(opts) {}

NativeApi::~NativeApi() {
  shutdown();
}

void NativeApi::shutdown() {
  streams_.stop_all();
}

std::string NativeApi::operation(const HttpRequest& req) {
  const std::string& p = req.path;
  if (p == "/v1/tasks") return req.method == "POST" ? "v1.RunTask" : "v1.ListTasks";
  if (p == "/v1/events") return "v1.Events";
  if (p.starts_with(kTasksPrefix)) {
    if (p.ends_with("/logs")) return "v1.Logs";
    return req.method == "DELETE" ? "v1.StopTask" : "v1.DescribeTask";
  }
  return "v1.Unknown";
}

void NativeApi::handle(const HttpRequest& req, const Respond& respond) {
  const std::string& p = req.path;
  const std::string& m = req.method;
  if (p == "/v1/tasks" && m == "POST") return respond(create_task(req));
  if (p == "/v1/tasks" && m == "GET") return respond(list_tasks(req));
  if (p == "/v1/events" && m == "GET") return respond(events(req));
  if (p.starts_with(kTasksPrefix)) {
    std::string ref = p.substr(kTasksPrefix.size());
    if (ref.ends_with("/logs") && m == "GET") {
      return respond(logs(req, ref.substr(0, ref.size() - 5)));
    }
    if (!ref.empty() && m == "GET") return respond(get_task(req, ref));
    if (!ref.empty() && m == "DELETE") return respond(stop_task(req, ref));
  }
  respond(fail(kResourceNotFound, "No such endpoint: {} {}", m, p));
}

HttpResponse NativeApi::create_task(const HttpRequest& req) {
  json body = json::object();
  if (req.body.find_first_not_of(" \t\r\n") != std::string::npos) {
    auto parsed = parse_json(req.body, "request body");
    if (!parsed) return fail("SerializationException", "{}", parsed.error().message);
    body = std::move(*parsed);
  }
  if (!body.is_object())
    return fail("SerializationException", "request body: expected a JSON object");
  auto def = parse_task_definition(body, ecs_.account_of(req.account), "inline");
  if (!def) return fail(def.error());
  if (auto fit = ecs_.check_definition(*def); !fit) return fail(fit.error());
  auto cluster = ecs_.cluster(req.account, query(req, "cluster"), true);
  if (!cluster) return fail(cluster.error());
  auto registered = ecs_.register_definition(req.account, std::move(*def));
  if (!registered) return fail(registered.error());
  auto run = ecs_.run(req.account, *cluster, *registered, RunTaskRequest{}, false);
  if (!run) return fail(run.error());
  if (run->tasks.empty()) {
    const Failure* f = run->failures.empty() ? nullptr : &run->failures.front();
    return fail(kClientException, "{}: {}", f ? f->reason : "RESOURCE",
                f ? f->detail : "no capacity");
  }
  return ok({{"task", task_json(run->tasks.front(), ecs_.region())}});
}

HttpResponse NativeApi::list_tasks(const HttpRequest& req) {
  std::string status = query(req, "status");
  if (status.empty()) status = "ALL";
  if (status != "ALL" && status != "RUNNING" && status != "STOPPED") {
    return fail(kInvalidParameter, "status must be RUNNING, STOPPED or ALL, got {:?}", status);
  }
  TaskQuery q;
  q.account = req.account;
  if (auto c = query(req, "cluster"); !c.empty()) {
    auto cluster = ecs_.cluster(req.account, c, false);
    if (!cluster) return fail(cluster.error());
    q.cluster = cluster->name;
  }
  json tasks = json::array();
  for (;;) {
    bool more = false;
    auto recs = ecs_.store().list_tasks(q, &more);
    if (!recs) return fail(recs.error());
    for (const auto& r : *recs) {
      q.after_id = r.id;
      bool stopped = r.last_status == "STOPPED";
      if ((status == "RUNNING" && stopped) || (status == "STOPPED" && !stopped)) continue;
      auto t = tasks_.from_record(r);
      if (!t) return fail(t.error());
      tasks.push_back(task_json(*t, ecs_.region()));
    }
    if (!more || recs->empty()) break;
  }
  return ok({{"tasks", tasks}});
}

HttpResponse NativeApi::get_task(const HttpRequest& req, const std::string& ref) {
  auto t = ecs_.find_task(req.account, ref, std::nullopt);
  if (!t) return fail(t.error());
  if (!*t) return fail(kResourceNotFound, "Task not found: {}", ref);
  return ok({{"task", task_json(**t, ecs_.region())}});
}

HttpResponse NativeApi::stop_task(const HttpRequest& req, const std::string& ref) {
  auto t = ecs_.find_task(req.account, ref, std::nullopt);
  if (!t) return fail(t.error());
  if (!*t) return fail(kResourceNotFound, "Task not found: {}", ref);
  std::string reason = query(req, "reason");
  if (reason.size() > 255) return fail(kInvalidParameter, "reason must be at most 255 characters");
  auto stopped = tasks_.stop_task(req.account, std::nullopt, (*t)->id, reason);
  if (!stopped) return fail(stopped.error());
  return ok({{"task", task_json(*stopped, ecs_.region())}});
}

HttpResponse NativeApi::logs(const HttpRequest& req, const std::string& ref) {
  auto found = ecs_.find_task(req.account, ref, std::nullopt);
  if (!found) return fail(found.error());
  if (!*found) return fail(kResourceNotFound, "Task not found: {}", ref);
  const Task& t = **found;
  std::string container = query(req, "container");
  if (container.empty()) {
    if (t.containers.size() != 1) {
      return fail(kInvalidParameter, "container is required: task {} has {} containers", t.id,
                  t.containers.size());
    }
    container = t.containers.front().name;
  }
  bool known = std::any_of(t.containers.begin(), t.containers.end(),
                           [&](const TaskContainer& c) { return c.name == container; });
  if (!known) return fail(kResourceNotFound, "Task {} has no container {:?}", t.id, container);
  std::string follow = query(req, "follow");
  HttpResponse r;
  r.headers["content-type"] = "text/plain; charset=utf-8";
  if (follow == "true" || follow == "1") {
    std::string id = t.id, account = req.account;
    r.stream = [this, account, id, container](std::shared_ptr<BodyWriter> w) {
      bool started = streams_.spawn([this, w, account, id, container](std::stop_token st) {
        follow_logs(st, w, account, id, container);
      });
      if (!started) w->close();
    };
    return r;
  }
  if (t.node_ref.empty()) return r;  // never launched: no log yet
  uint64_t offset = 0;
  for (;;) {
    auto chunk = agent_.logs(t.id, container, offset, kLogChunk);
    if (!chunk) return fail(chunk.error());
    r.body += chunk->data;
    if (chunk->data.empty() || chunk->next_offset >= chunk->end_offset) break;
    offset = chunk->next_offset;
  }
  return r;
}

void NativeApi::follow_logs(std::stop_token st, std::shared_ptr<BodyWriter> w, std::string account,
                            std::string task_id, std::string container) {
  auto gone = std::make_shared<std::atomic<bool>>(false);
  w->on_close([gone] { gone->store(true); });
  uint64_t offset = 0;
  while (!st.stop_requested() && !gone->load()) {
    auto chunk = agent_.logs(task_id, container, offset, kLogChunk);
    if (!chunk) {
      // Not launched yet (or already purged): wait while the task may still
      // come up, stop once it is over.
      log::debug("logs of {} {}: {}", task_id, container, chunk.error().str());
      auto t = tasks_.get_task(account, task_id);
      if (!t || !*t || (*t)->last_status == TaskStatus::stopped) break;
      pause(st, opts_.log_poll);
      continue;
    }
    if (!chunk->data.empty() && !w->write(std::move(chunk->data))) break;
    offset = chunk->next_offset;
    if (!chunk->task_running && offset >= chunk->end_offset) break;
    if (offset >= chunk->end_offset) pause(st, opts_.log_poll);
  }
  w->close();
}

HttpResponse NativeApi::events(const HttpRequest& req) {
  // Subscribed now, before the answer's headers go out: no change between
  // the request and the stream is lost.
  auto sub = tasks_.events().subscribe(req.account);
  HttpResponse r;
  r.headers["content-type"] = "text/event-stream";
  r.headers["cache-control"] = "no-cache";
  std::string region = ecs_.region();
  auto keepalive = opts_.sse_keepalive;
  r.stream = [this, sub, region, keepalive](std::shared_ptr<BodyWriter> w) {
    bool started = streams_.spawn([sub, w, region, keepalive](std::stop_token st) {
      auto gone = std::make_shared<std::atomic<bool>>(false);
      w->on_close([gone, sub] {
        gone->store(true);
        sub->close();
      });
      std::stop_callback on_stop(st, [sub] { sub->close(); });
      auto idle_since = std::chrono::steady_clock::now();
      while (!st.stop_requested() && !gone->load() && !sub->closed()) {
        auto c = sub->next(std::chrono::milliseconds(500));
        if (c) {
          json data = {{"task", task_json(c->task, region)}};
          if (!w->write("event: TaskStateChange\ndata: " + dump_json(data) + "\n\n")) break;
          idle_since = std::chrono::steady_clock::now();
        } else if (std::chrono::steady_clock::now() - idle_since >= keepalive) {
          if (!w->write(": keepalive\n\n")) break;
          idle_since = std::chrono::steady_clock::now();
        }
      }
      sub->close();
      w->close();
    });
    if (!started) {
      sub->close();
      w->close();
    }
  };
  return r;
}

}  // namespace berth::cp
