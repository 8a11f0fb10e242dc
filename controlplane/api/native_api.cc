#include "controlplane/api/native_api.h"

#include <charconv>
#include <chrono>
#include <condition_variable>

#include "common/json.h"
#include "common/log.h"
#include "controlplane/billing/meter.h"
#include "controlplane/model/ecs_json.h"
#include "controlplane/model/errors.h"
#include "controlplane/scheduler/json_text.h"

namespace berth::cp {

namespace {

using json = nlohmann::json;
constexpr std::string_view kJson = "application/json";
constexpr std::string_view kTasksPrefix = "/v1/tasks/";
constexpr std::string_view kUsagePath = "/v1/usage";
constexpr std::string_view kUsageVerifyPath = "/v1/usage/verify";
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

// `n` decimal digits at `s[pos]`, advancing pos.
std::optional<int> digits(std::string_view s, size_t& pos, size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  pos += n;
  return v;
}

bool expect_char(std::string_view s, size_t& pos, std::string_view one_of) {
  if (pos >= s.size() || one_of.find(s[pos]) == std::string_view::npos) return false;
  ++pos;
  return true;
}

}  // namespace

std::optional<int64_t> parse_usage_time(std::string_view s) {
  using namespace std::chrono;
  if (s.empty()) return std::nullopt;
  // Epoch seconds: digits only (at most 12: well past year 9999).
  if (s.find_first_not_of("0123456789") == std::string_view::npos) {
    if (s.size() > 12) return std::nullopt;
    int64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v * 1000;
  }
  size_t pos = 0;
  auto y = digits(s, pos, 4);
  if (!y || !expect_char(s, pos, "-")) return std::nullopt;
  auto mo = digits(s, pos, 2);
  if (!mo || !expect_char(s, pos, "-")) return std::nullopt;
  auto d = digits(s, pos, 2);
  if (!d) return std::nullopt;
  year_month_day ymd{year(*y), month(static_cast<unsigned>(*mo)), day(static_cast<unsigned>(*d))};
  if (!ymd.ok()) return std::nullopt;
  int64_t ms = duration_cast<milliseconds>(sys_days(ymd).time_since_epoch()).count();
  if (pos == s.size()) return ms;  // a date: UTC midnight
  if (!expect_char(s, pos, "Tt")) return std::nullopt;
  auto hh = digits(s, pos, 2);
  if (!hh || !expect_char(s, pos, ":")) return std::nullopt;
  auto mm = digits(s, pos, 2);
  if (!mm || !expect_char(s, pos, ":")) return std::nullopt;
  auto ss = digits(s, pos, 2);
  // 60: a leap second, counted as the next second's start.
  if (!ss || *hh > 23 || *mm > 59 || *ss > 60) return std::nullopt;
  ms += ((*hh * 60 + *mm) * 60 + *ss) * int64_t{1000};
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    int64_t scale = 100;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      ms += (s[pos] - '0') * scale;  // milliseconds; finer digits are dropped
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  if (expect_char(s, pos, "Zz")) return pos == s.size() ? std::optional(ms) : std::nullopt;
  if (pos >= s.size() || (s[pos] != '+' && s[pos] != '-')) return std::nullopt;
  int sign = s[pos++] == '-' ? -1 : 1;
  auto oh = digits(s, pos, 2);
  if (!oh || !expect_char(s, pos, ":")) return std::nullopt;
  auto om = digits(s, pos, 2);
  if (!om || *oh > 23 || *om > 59 || pos != s.size()) return std::nullopt;
  // Local time = UTC + offset.
  return ms - sign * ((*oh * 60 + *om) * int64_t{60000});
}

int64_t month_start_ms(int64_t epoch_ms) {
  using namespace std::chrono;
  sys_days day = floor<days>(sys_time<milliseconds>(milliseconds(epoch_ms)));
  year_month_day ymd(day);
  sys_days first(ymd.year() / ymd.month() / 1);
  return duration_cast<milliseconds>(first.time_since_epoch()).count();
}

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

NativeApi::NativeApi(EcsApi& ecs, TaskManager& tasks, Agent& agent, NativeApiOptions opts,
                     Meter* meter)
    : ecs_(ecs), tasks_(tasks), agent_(agent), opts_(std::move(opts)), meter_(meter) {}

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
  if (p == kUsagePath) return "v1.Usage";
  if (p == kUsageVerifyPath) return "v1.UsageVerify";
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
  if (p == kUsagePath && m == "GET") return respond(usage(req));
  if (p == kUsageVerifyPath && m == "GET") return respond(usage_verify(req));
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
  return ok({{"task", task_out(run->tasks.front())}});
}

json NativeApi::task_out(const Task& t) {
  json out = task_json(t, ecs_.region());
  ecs_.add_billing(out, t);
  return out;
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
      tasks.push_back(task_out(*t));
    }
    if (!more || recs->empty()) break;
  }
  return ok({{"tasks", tasks}});
}

HttpResponse NativeApi::get_task(const HttpRequest& req, const std::string& ref) {
  auto t = ecs_.find_task(req.account, ref, std::nullopt);
  if (!t) return fail(t.error());
  if (!*t) return fail(kResourceNotFound, "Task not found: {}", ref);
  return ok({{"task", task_out(**t)}});
}

HttpResponse NativeApi::stop_task(const HttpRequest& req, const std::string& ref) {
  auto t = ecs_.find_task(req.account, ref, std::nullopt);
  if (!t) return fail(t.error());
  if (!*t) return fail(kResourceNotFound, "Task not found: {}", ref);
  std::string reason = query(req, "reason");
  if (reason.size() > 255) return fail(kInvalidParameter, "reason must be at most 255 characters");
  auto stopped = tasks_.stop_task(req.account, std::nullopt, (*t)->id, reason);
  if (!stopped) return fail(stopped.error());
  return ok({{"task", task_out(*stopped)}});
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
        if (c && c->service_event) {
          if (!w->write("event: ServiceEvent\ndata: " + dump_json(*c->service_event) + "\n\n"))
            break;
          idle_since = std::chrono::steady_clock::now();
        } else if (c) {
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

HttpResponse NativeApi::usage(const HttpRequest& req) {
  if (meter_ == nullptr) return fail(kServerException, "metering is not enabled");
  UsageQuery q;
  q.account = req.account;
  if (auto a = query(req, "account"); !a.empty() && a != req.account) {
    return fail(kAccessDenied, "account {} is not yours: an account reads only its own usage", a);
  }
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    (opts_.clock ? opts_.clock() : Clock::now()).time_since_epoch())
                    .count();
  q.from_ms = month_start_ms(now);
  q.to_ms = now;
  for (auto [name, target] : {std::pair{"from", &q.from_ms}, std::pair{"to", &q.to_ms}}) {
    std::string v = query(req, name);
    if (v.empty()) continue;
    auto ms = parse_usage_time(v);
    if (!ms) {
      return fail(kInvalidParameter,
                  "{} must be an RFC 3339 time (2026-12-05T00:00:00Z), a date (2026-12-05) or "
                  "epoch seconds, got {:?}",
                  name, v);
    }
    *target = *ms;
  }
  if (q.from_ms > q.to_ms) {
    return fail(kInvalidParameter, "from must not be after to ({} > {} epoch ms)", q.from_ms,
                q.to_ms);
  }
  if (auto g = query(req, "groupBy"); !g.empty()) {
    auto group = parse_usage_group(g);
    if (!group || *group == UsageGroup::none) {
      return fail(kInvalidParameter, "groupBy must be task, family, service or day, got {:?}", g);
    }
    q.group = *group;
  }
  auto report = meter_->usage(q);
  if (!report) return fail(report.error());
  return ok(usage_report_json(*report));
}

HttpResponse NativeApi::usage_verify(const HttpRequest& req) {
  if (meter_ == nullptr) return fail(kServerException, "metering is not enabled");
  auto reports = meter_->verify(req.account);
  if (!reports) return fail(reports.error());
  ChainReport r;
  r.account = req.account;
  r.head = std::string(kGenesisHash);
  for (auto& one : *reports) {
    if (one.account == req.account) r = std::move(one);
  }
  json problems = json::array();
  for (const auto& p : r.problems) {
    problems.push_back({{"seq", p.seq}, {"taskId", p.task_id}, {"what", p.what}});
  }
  return ok({{"account", r.account},
             {"records", r.records},
             {"ok", r.ok()},
             {"head", r.head},
             {"totalMicroUsd", r.total_micro_usd},
             {"problems", problems}});
}

}  // namespace berth::cp
