#include "controlplane/api/router.h"

#include <chrono>

#include "controlplane/model/errors.h"

namespace berth::cp {

namespace {

// ECS's own name for a target it does not know.
constexpr std::string_view kUnknownOperation = "UnknownOperationException";

HttpResponse text(int status, std::string body, std::string_view type) {
  HttpResponse r;
  r.status = status;
  r.headers["content-type"] = std::string(type);
  r.body = std::move(body);
  return r;
}

template <class... A>
HttpResponse ecs_fail(bool native, std::string_view type, fmt::format_string<A...> f, A&&... a) {
  return error_response(ecs_error(type, f, std::forward<A>(a)...).error(), native);
}

}  // namespace

Handler make_handler(EcsApi& ecs, NativeApi& native, Metrics& metrics, WorkerPool& pool) {
  return [&ecs, &native, &metrics, &pool](HttpRequest req, Respond respond) {
    auto started = std::chrono::steady_clock::now();
    std::string operation;
    bool is_native = NativeApi::handles(req.path);
    if (req.path == "/" && req.method == "POST") {
      operation = "ecs.Unknown";
      if (const std::string* t = req.header("x-amz-target");
          t && t->starts_with(kEcsTargetPrefix)) {
        std::string op = t->substr(kEcsTargetPrefix.size());
        if (EcsApi::known_operation(op)) operation = op;
      }
    } else if (is_native) {
      operation = NativeApi::operation(req);
    } else if (req.path == "/metrics" || req.path == "/healthz") {
      operation = req.path.substr(1);
    } else {
      operation = "unknown";
    }
    // Every answer is counted and carries the request id.
    Respond done = [respond = std::move(respond), operation, started, &metrics,
                    request_id = req.request_id](HttpResponse r) {
      if (!request_id.empty()) r.headers["x-amzn-RequestId"] = request_id;
      double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      metrics.count_request(operation, r.status, secs);
      respond(std::move(r));
    };
    auto post = [&pool, &done, is_native](std::function<void(Respond)> job) {
      auto shared = std::make_shared<Respond>(done);
      if (!pool.post([job = std::move(job), shared] { job(*shared); })) {
        done(ecs_fail(is_native, kServerException, "berthd is shutting down"));
      }
    };

    if (req.path == "/healthz" && req.method == "GET") {
      return done(text(200, "ok\n", "text/plain; charset=utf-8"));
    }
    if (req.path == "/metrics" && req.method == "GET") {
      return post([&metrics](Respond r) {
        r(text(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8"));
      });
    }
    if (req.path == "/" && req.method == "POST") {
      const std::string* target = req.header("x-amz-target");
      if (!target) {
        return done(ecs_fail(false, kUnknownOperation, "Missing X-Amz-Target header"));
      }
      if (!target->starts_with(kEcsTargetPrefix) ||
          !EcsApi::known_operation(target->substr(kEcsTargetPrefix.size()))) {
        return done(ecs_fail(false, kUnknownOperation, "Unknown operation {}", *target));
      }
      if (req.account.empty()) {
        return done(ecs_fail(false, kAccessDenied, "The request is not authenticated"));
      }
      std::string op = target->substr(kEcsTargetPrefix.size());
      return post([&ecs, op, req = std::move(req)](Respond r) {
        auto out = ecs.call(req.account, op, req.body);
        r(out ? json_response(200, *out, kAmzJson) : error_response(out.error(), false));
      });
    }
    if (is_native) {
      if (req.account.empty()) {
        return done(ecs_fail(true, kAccessDenied, "The request is not authenticated"));
      }
      return post([&native, req = std::move(req)](Respond r) { native.handle(req, r); });
    }
    done(ecs_fail(true, kResourceNotFound, "No such endpoint: {} {}", req.method, req.path));
  };
}

ControlPlane::ControlPlane(Store& store, Agent& agent, ControlPlaneOptions opts)
    : meter_(store, agent, opts.meter),
      tasks_(
          store, agent,
          [&] {
            TaskManagerOptions t = opts.tasks;
            auto user = t.on_running;
            t.on_running = [this, user](double s) {
              metrics_.observe_run_to_running(s);
              if (user) user(s);
            };
            auto user_change = t.on_change;
            t.on_change = [this, user_change](const Task& task) {
              meter_.on_change(task);
              if (task.group.starts_with("service:")) supervisor_.wake();
              if (user_change) user_change(task);
            };
            auto user_admit = t.admit;
            t.admit = [this, user_admit](
                          const std::string& account, NodeCapacity reserved,
                          NodeCapacity size) -> std::optional<std::pair<std::string, std::string>> {
              if (auto refusal = meter_.admit(account, reserved.cpu_units, reserved.memory_mib,
                                              size.cpu_units, size.memory_mib)) {
                return std::pair{std::move(refusal->reason), std::move(refusal->detail)};
              }
              if (user_admit) return user_admit(account, reserved, size);
              return std::nullopt;
            };
            return t;
          }()),
      ecs_(store, tasks_, opts.ecs, &meter_),
      services_(ecs_, tasks_),
      supervisor_(ecs_, services_, tasks_, agent, opts.supervisor),
      native_(
          ecs_, tasks_, agent,
          [&] {
            NativeApiOptions n = opts.native;
            if (!n.clock) n.clock = opts.meter.clock;
            return n;
          }(),
          &meter_),
      pool_(opts.api_threads) {
  meter_.attach(tasks_);
  ecs_.set_services(&services_);
  services_.on_put = [this] { supervisor_.wake(); };
  metrics_.services = [this] { return supervisor_.gauges(); };
  metrics_.tasks_by_state = [this] { return tasks_.count_by_state(); };
  metrics_.pool_size = [&agent] { return agent.warm_pool_size(); };
  metrics_.billed_by_account = [this] { return meter_.billed_by_account(); };
}

ControlPlane::~ControlPlane() {
  shutdown();
}

// The meter first (billing/meter.h): it resumes every billed task from its
// checkpoint, so the changes TaskManager::recover() makes (tasks that ended
// during the outage) reach a meter that knows them.
Result<void> ControlPlane::recover() {
  BERTH_TRY(meter_.recover());
  return tasks_.recover();
}

void ControlPlane::start() {
  tasks_.start();
  meter_.start();
  supervisor_.start();
}

void ControlPlane::shutdown() {
  native_.shutdown();
  pool_.shutdown();
  supervisor_.shutdown();
  meter_.shutdown();
  tasks_.shutdown();
}

}  // namespace berth::cp
