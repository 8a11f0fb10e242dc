#include "controlplane/scheduler/task_manager.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <fstream>

#include "common/json.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "controlplane/model/arn.h"
#include "controlplane/model/errors.h"
#include "controlplane/scheduler/json_text.h"

namespace berth::cp {

namespace {

constexpr int kMaxCasAttempts = 50;
const jr::Document kShimState{"shim state", "state"};
const jr::Document kStoredTask{"store", "task"};

std::optional<int> parse_int(std::string_view s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// What the task reserves on the node: the task-level size when set, else the
// sum of its containers'.
Result<NodeCapacity> task_size(const Task& t) {
  NodeCapacity n;
  if (!t.cpu.empty()) {
    auto v = parse_int(t.cpu);
    if (!v || *v < 0)
      return ecs_error(kInvalidParameter, "Invalid 'cpu' setting for task: {}", t.cpu);
    n.cpu_units = *v;
  } else {
    for (const auto& c : t.containers) n.cpu_units += c.cpu;
  }
  if (!t.memory.empty()) {
    auto v = parse_int(t.memory);
    if (!v || *v < 0) {
      return ecs_error(kInvalidParameter, "Invalid 'memory' setting for task: {}", t.memory);
    }
    n.memory_mib = *v;
  } else {
    for (const auto& c : t.containers) {
      n.memory_mib += c.memory_mib.value_or(c.memory_reservation_mib.value_or(0));
    }
  }
  return n;
}

const ContainerOverride* find_override(const TaskOverrides& o, const std::string& name) {
  for (const auto& c : o.container_overrides) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// The task's health from its essential containers' (ECS: UNHEALTHY if one
// is, HEALTHY if those with a check all are).
std::string task_health(const Task& t) {
  bool any_healthy = false;
  for (const auto& c : t.containers) {
    if (c.health_status == "UNHEALTHY") return "UNHEALTHY";
    if (c.health_status == "HEALTHY") any_healthy = true;
  }
  return any_healthy ? "HEALTHY" : "UNKNOWN";
}

// Applies a shim container object (shim/PROTOCOL.md, "State") to the task's
// container of the same name. The shim is berth's own, but its state is
// still read through the typed reader: a damaged state.json must not abort.
void apply_container_state(Task& t, const nlohmann::json& s) {
  jr::Node n = jr::Node::root(s, kShimState);
  std::string name;
  if (!jr::read(n.member("name"), name) || name.empty()) return;
  auto it = std::find_if(t.containers.begin(), t.containers.end(),
                         [&](const TaskContainer& c) { return c.name == name; });
  if (it == t.containers.end()) return;
  std::string status, reason, health;
  std::optional<int> exit_code;
  bool oom = false;
  (void)jr::read(n.member("status"), status);
  (void)jr::read(n.member("reason"), reason);
  (void)jr::read(n.member("health_status"), health);
  (void)jr::read(n.member("exit_code"), exit_code);
  (void)jr::read(n.member("oom_killed"), oom);
  if (status == "RUNNING" || status == "RESTARTING") it->last_status = "RUNNING";
  if (status == "STOPPED") it->last_status = "STOPPED";
  if (exit_code) it->exit_code = exit_code;
  if (oom) {
    it->reason = std::string(kOomReason);
  } else if (!reason.empty()) {
    it->reason = reason;
  }
  if (!health.empty()) it->health_status = health;
}

void apply_task_state(Task& t, const nlohmann::json& state) {
  const auto* cs = state.is_object() ? &state : nullptr;
  if (!cs) return;
  auto it = cs->find("containers");
  if (it == cs->end() || !it->is_array()) return;
  for (const auto& c : *it) apply_container_state(t, c);
  t.health_status = task_health(t);
}

// The essential containers named by a shim state (`fallback` when the
// state does not say).
std::set<std::string> essential_from_state(const std::set<std::string>& fallback,
                                           const nlohmann::json& state) {
  std::set<std::string> out;
  if (state.is_object()) {
    if (auto it = state.find("containers"); it != state.end() && it->is_array()) {
      for (const auto& c : *it) {
        jr::Node n = jr::Node::root(c, kShimState);
        std::string name;
        bool essential = true;
        (void)jr::read(n.member("name"), name);
        (void)jr::read(n.member("essential"), essential);
        if (essential && !name.empty()) out.insert(name);
      }
    }
  }
  return out.empty() ? fallback : out;
}

// When the shim's task ended: its last container's finished_at.
std::optional<TimePoint> shim_exit_time(const nlohmann::json& state) {
  std::optional<TimePoint> last;
  if (!state.is_object()) return last;
  auto it = state.find("containers");
  if (it == state.end() || !it->is_array()) return last;
  for (const auto& c : *it) {
    std::string finished;
    (void)jr::read(jr::Node::root(c, kShimState).member("finished_at"), finished);
    auto at = parse_rfc3339(finished);
    if (at && (!last || *at > *last)) last = at;
  }
  return last;
}

// The task has stopped on the node: every container is STOPPED, the stop
// code says why when nothing said it before.
void mark_execution_stopped(Task& t, TimePoint at) {
  for (auto& c : t.containers) c.last_status = "STOPPED";
  if (!is_set(t.execution_stopped_at)) t.execution_stopped_at = at;
  if (!is_set(t.stopping_at)) t.stopping_at = at;
  t.desired_status = TaskStatus::stopped;
  if (t.stop_code.empty()) {
    if (!is_set(t.started_at)) {
      // Nothing ever ran: the first container's reason is the task's.
      t.stop_code = "TaskFailedToStart";
      for (const auto& c : t.containers) {
        if (!c.reason.empty()) {
          t.stopped_reason = c.reason;
          break;
        }
      }
      if (t.stopped_reason.empty()) t.stopped_reason = "Task failed to start";
    } else {
      t.stop_code = "EssentialContainerExited";
      t.stopped_reason = std::string(kEssentialExitedReason);
    }
  }
  if (status_before(t.last_status, TaskStatus::deprovisioning)) {
    t.last_status = TaskStatus::deprovisioning;
  }
}

bool advance(Task& t, TaskStatus s) {
  if (!status_before(t.last_status, s)) return false;
  t.last_status = s;
  return true;
}

}  // namespace

NodeCapacity host_capacity() {
  NodeCapacity n;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  n.cpu_units = static_cast<int>(std::max(1L, cpus) * 1024);
  std::ifstream in("/proc/meminfo");
  std::string key;
  long kib = 0;
  while (in >> key) {
    if (key == "MemTotal:") {
      in >> kib;
      break;
    }
    std::string rest;
    std::getline(in, rest);
  }
  n.memory_mib = static_cast<int>(kib / 1024);
  return n;
}

std::optional<TimePoint> parse_rfc3339(std::string_view s) {
  // 2026-11-26T21:40:00.123456789Z
  if (s.size() < 20) return std::nullopt;
  std::tm tm{};
  std::string str(s);
  int frac_pos = 0;
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &frac_pos) != 6) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t secs = timegm(&tm);
  int64_t nanos = 0;
  size_t i = static_cast<size_t>(frac_pos);
  if (i < str.size() && str[i] == '.') {
    int64_t scale = 100000000;
    for (++i; i < str.size() && str[i] >= '0' && str[i] <= '9'; ++i) {
      nanos += (str[i] - '0') * scale;
      scale /= 10;
    }
  }
  auto d = std::chrono::seconds(secs) + std::chrono::nanoseconds(nanos);
  return TimePoint(std::chrono::duration_cast<Clock::duration>(d));
}

TaskManager::TaskManager(Store& store, Agent& agent, TaskManagerOptions opts)
    : store_(store), agent_(agent), opts_(std::move(opts)), pool_(opts_.worker_threads) {
  if (!opts_.clock) opts_.clock = [] { return Clock::now(); };
  agent_.set_event_sink([this](const AgentEvent& e) { on_event(e); });
}

TaskManager::~TaskManager() {
  shutdown();
}

void TaskManager::shutdown() {
  if (shut_.exchange(true)) return;
  if (sweeper_.joinable()) {
    sweeper_.request_stop();
    sweep_cv_.notify_all();
    sweeper_.join();
  }
  pool_.shutdown();
  bus_.close_all();
  // Events arriving after this point find nobody to update: the agent's
  // sink is left pointing at a function that ignores them.
  agent_.set_event_sink([](const AgentEvent&) {});
}

void TaskManager::start() {
  sweeper_ = std::jthread([this](std::stop_token st) { sweep_loop(st); });
}

void TaskManager::sweep_loop(std::stop_token st) {
  while (!st.stop_requested()) {
    {
      std::unique_lock lock(sweep_mu_);
      sweep_cv_.wait_for(lock, st, opts_.sweep_interval, [] { return false; });
    }
    if (st.stop_requested()) return;
    sweep_expired();
  }
}

TaskRecord TaskManager::to_record(const Task& t) const {
  TaskRecord r;
  r.account = t.account;
  r.cluster = t.cluster;
  r.id = t.id;
  r.family = t.family;
  r.started_by = t.started_by;
  r.group = t.group;
  r.desired_status = task_status_name(t.desired_status);
  r.last_status = task_status_name(t.last_status);
  r.version = t.version;
  r.stopped_at = t.last_status == TaskStatus::stopped && is_set(t.stopped_at)
                     ? epoch_seconds(t.stopped_at)
                     : 0;
  nlohmann::json doc = {{"task", task_json(t, opts_.region)}, {"nodeRef", t.node_ref}};
  r.doc = dump_json(doc);
  return r;
}

Result<Task> TaskManager::from_record(const TaskRecord& r) const {
  BERTH_ASSIGN(auto doc, parse_json(r.doc, "stored task"));
  jr::Node root = jr::Node::root(doc, kStoredTask);
  jr::Node tn = root.member("task");
  if (!tn.present()) return error("store", "task {}: stored document has no task", r.id);
  BERTH_ASSIGN(Task t, task_from_json(*tn.value, r.account));
  BERTH_TRY(jr::read(root.member("nodeRef"), t.node_ref));
  t.account = r.account;
  t.version = r.version;
  return t;
}

std::optional<std::string> TaskManager::account_of(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end()) return std::nullopt;
  return it->second.account;
}

void TaskManager::track(const Task& t) {
  std::lock_guard lock(mu_);
  auto it = live_.find(t.id);
  if (it == live_.end()) return;
  it->second.status = t.last_status;
  if (t.last_status == TaskStatus::stopped) {
    reserved_.cpu_units -= it->second.reserved.cpu_units;
    reserved_.memory_mib -= it->second.reserved.memory_mib;
    live_.erase(it);
    stopped_[t.id] = is_set(t.stopped_at) ? t.stopped_at : opts_.clock();
  }
}

void TaskManager::release_capacity(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end()) return;
  reserved_.cpu_units -= it->second.reserved.cpu_units;
  reserved_.memory_mib -= it->second.reserved.memory_mib;
  live_.erase(it);
}

Result<Task> TaskManager::update(const std::string& account, const std::string& id,
                                 const std::function<bool(Task&)>& change) {
  for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
    BERTH_ASSIGN(auto rec, store_.get_task(account, id));
    if (!rec) return kind_error(ErrorKind::not_found, "task", "task {} not found", id);
    BERTH_ASSIGN(Task t, from_record(*rec));
    int64_t old_version = rec->version;
    if (!change(t)) return t;
    t.version = old_version + 1;
    auto put = store_.put_task(to_record(t), old_version);
    if (!put) {
      // A concurrent writer changed the task first: read it again and
      // re-apply the change to what it wrote.
      if (put.error().kind == ErrorKind::busy || put.error().kind == ErrorKind::exists) continue;
      return std::unexpected(put.error());
    }
    bool first_running = false;
    {
      std::lock_guard lock(mu_);
      if (auto it = live_.find(id); it != live_.end() && t.last_status == TaskStatus::running &&
                                    !it->second.counted_running) {
        it->second.counted_running = true;
        first_running = true;
      }
    }
    if (first_running && opts_.on_running && is_set(t.created_at) && is_set(t.started_at)) {
      opts_.on_running(std::chrono::duration<double>(t.started_at - t.created_at).count());
    }
    track(t);
    bus_.publish({account, t, std::nullopt});
    if (opts_.on_change) opts_.on_change(t);
    return t;
  }
  return error("task", "task {}: version conflict persisted after {} attempts", id,
               kMaxCasAttempts);
}

Result<RunTaskResult> TaskManager::run_task(const std::string& account, const std::string& cluster,
                                            const TaskDefinition& def, const RunTaskRequest& req) {
  if (req.count < 1 || req.count > 10) {
    return ecs_error(kInvalidParameter, "count must be between 1 and 10, got {}", req.count);
  }
  for (const auto& o : req.overrides.container_overrides) {
    bool known = std::any_of(def.containers.begin(), def.containers.end(),
                             [&](const ContainerDefinition& c) { return c.name == o.name; });
    if (!known) {
      return ecs_error(kInvalidParameter,
                       "Override for container named {} is not a container in the TaskDefinition.",
                       o.name);
    }
  }
  RunTaskResult out;
  std::string def_arn = task_definition_arn(opts_.region, account, def.family, def.revision);
  std::set<std::string> essential;
  for (const auto& c : def.containers) {
    if (c.essential) essential.insert(c.name);
  }
  for (int i = 0; i < req.count; ++i) {
    Task t;
    t.account = account;
    t.cluster = cluster;
    t.id = new_task_id();
    t.task_definition_arn = def_arn;
    t.family = def.family;
    t.revision = def.revision;
    t.group = req.group.empty() ? "family:" + def.family : req.group;
    t.started_by = req.started_by;
    t.launch_type = req.launch_type.empty() ? "FARGATE" : req.launch_type;
    t.cpu = req.overrides.cpu.empty() ? def.cpu : req.overrides.cpu;
    t.memory = req.overrides.memory.empty() ? def.memory : req.overrides.memory;
    t.overrides = req.overrides;
    t.tags = req.tags;
    t.network_interface_id = "eni-" + t.id.substr(0, 17);
    t.created_at = opts_.clock();
    for (const auto& cd : def.containers) {
      TaskContainer c;
      c.id = new_uuid();
      c.name = cd.name;
      c.image = cd.image;
      c.runtime_id = t.id + "." + cd.name;
      c.cpu = cd.cpu;
      c.memory_mib = cd.memory_mib;
      c.memory_reservation_mib = cd.memory_reservation_mib;
      if (const auto* o = find_override(req.overrides, cd.name)) {
        if (o->cpu) c.cpu = *o->cpu;
        if (o->memory_mib) c.memory_mib = o->memory_mib;
        if (o->memory_reservation_mib) c.memory_reservation_mib = o->memory_reservation_mib;
      }
      t.containers.push_back(std::move(c));
    }
    BERTH_ASSIGN(NodeCapacity size, task_size(t));
    {
      std::lock_guard lock(mu_);
      const char* short_of = nullptr;
      if (reserved_.cpu_units + size.cpu_units > opts_.capacity.cpu_units) {
        short_of = "RESOURCE:CPU";
      } else if (reserved_.memory_mib + size.memory_mib > opts_.capacity.memory_mib) {
        short_of = "RESOURCE:MEMORY";
      }
      std::optional<std::pair<std::string, std::string>> refused;
      if (!short_of && opts_.admit) {
        NodeCapacity mine;
        for (const auto& [lid, l] : live_) {
          if (l.account != account) continue;
          mine.cpu_units += l.reserved.cpu_units;
          mine.memory_mib += l.reserved.memory_mib;
        }
        refused = opts_.admit(account, mine, size);
      }
      if (refused) {
        out.failures.push_back(
            {cluster_arn(opts_.region, account, cluster), refused->first, refused->second});
        continue;
      }
      if (short_of) {
        out.failures.push_back(
            {cluster_arn(opts_.region, account, cluster), short_of,
             fmt::format(
                 "task needs {} CPU units and {} MiB; {} of {} units and {} of {} MiB are free",
                 size.cpu_units, size.memory_mib, opts_.capacity.cpu_units - reserved_.cpu_units,
                 opts_.capacity.cpu_units, opts_.capacity.memory_mib - reserved_.memory_mib,
                 opts_.capacity.memory_mib)});
        continue;
      }
      reserved_.cpu_units += size.cpu_units;
      reserved_.memory_mib += size.memory_mib;
      live_[t.id] = Live{account, cluster, TaskStatus::provisioning, size, essential, false};
    }
    auto put = store_.put_task(to_record(t), 0);
    if (!put) {
      release_capacity(t.id);
      return std::unexpected(put.error());
    }
    bus_.publish({account, t, std::nullopt});
    if (opts_.on_change) opts_.on_change(t);
    out.tasks.push_back(t);
    std::string id = t.id;
    if (!pool_.post([this, account, id, def] { launch(account, id, def); })) {
      fail_start(account, id, "ResourceInitializationError: berthd is shutting down");
    }
  }
  return out;
}

void TaskManager::launch(const std::string& account, const std::string& id,
                         const TaskDefinition& def) {
  // PENDING: resources are being attached and images resolved. A StopTask
  // that came first ends the task here without launching it.
  auto pending = update(account, id, [&](Task& t) {
    if (t.desired_status == TaskStatus::stopped) return false;
    return advance(t, TaskStatus::pending);
  });
  if (!pending) {
    log::error("launch of task {}: {}", id, pending.error().str());
    return;
  }
  if (pending->desired_status == TaskStatus::stopped) {
    auto r = update(account, id, [&](Task& t) {
      TimePoint now = opts_.clock();
      mark_execution_stopped(t, now);
      t.last_status = TaskStatus::stopped;
      t.stopped_at = now;
      return true;
    });
    if (!r) log::error("stopping unlaunched task {}: {}", id, r.error().str());
    return;
  }
  auto launched = agent_.launch(TaskLaunch{*pending, def});
  if (!launched) {
    fail_start(account, id, launched.error().str());
    return;
  }
  auto r = update(account, id, [&](Task& t) {
    t.node_ref = launched->node_ref;
    t.private_ipv4 = launched->private_ipv4;
    t.mac_address = launched->mac_address;
    for (const auto& lc : launched->containers) {
      for (auto& c : t.containers) {
        if (c.name != lc.name) continue;
        c.image_digest = lc.image_digest;
        if (!lc.runtime_id.empty()) c.runtime_id = lc.runtime_id;
        c.network_bindings = lc.network_bindings;
      }
    }
    advance(t, TaskStatus::activating);
    return true;
  });
  if (!r) {
    log::error("recording the launch of task {}: {}", id, r.error().str());
    return;
  }
  // A StopTask that arrived while the agent launched found nothing to stop.
  if (r->desired_status == TaskStatus::stopped &&
      status_before(r->last_status, TaskStatus::deprovisioning)) {
    if (auto s = agent_.stop(id, r->stopped_reason, std::nullopt); !s) {
      log::warn("stopping task {} after its launch: {}", id, s.error().str());
    }
  }
}

void TaskManager::fail_start(const std::string& account, const std::string& id,
                             const std::string& reason) {
  auto r = update(account, id, [&](Task& t) {
    TimePoint now = opts_.clock();
    for (auto& c : t.containers) {
      c.last_status = "STOPPED";
      if (c.reason.empty()) c.reason = reason;
    }
    t.desired_status = TaskStatus::stopped;
    t.last_status = TaskStatus::stopped;
    t.stop_code = "TaskFailedToStart";
    t.stopped_reason = reason;
    if (!is_set(t.stopping_at)) t.stopping_at = now;
    t.execution_stopped_at = now;
    t.stopped_at = now;
    return true;
  });
  if (!r) {
    log::error("task {} failed to start ({}), and recording it failed: {}", id, reason,
               r.error().str());
    release_capacity(id);
  }
}

Result<Task> TaskManager::stop_task(const std::string& account,
                                    const std::optional<std::string>& cluster,
                                    const std::string& task_id, const std::string& reason,
                                    std::string_view stop_code) {
  BERTH_ASSIGN(auto current, get_task(account, task_id));
  if (!current || (cluster && current->cluster != *cluster)) {
    return ecs_error(kInvalidParameter, "The referenced task was not found.");
  }
  bool changed = false;
  BERTH_ASSIGN(Task t, update(account, task_id, [&](Task& t) {
                 changed = false;
                 if (t.desired_status == TaskStatus::stopped) return false;
                 t.desired_status = TaskStatus::stopped;
                 t.stopping_at = opts_.clock();
                 t.stop_code = std::string(stop_code);
                 t.stopped_reason = reason.empty() ? std::string(kUserStopReason) : reason;
                 if (!t.node_ref.empty()) advance(t, TaskStatus::deactivating);
                 changed = true;
                 return true;
               }));
  if (!changed || t.node_ref.empty()) return t;
  // Launched: the shim gets the request; task_stopping / task_stopped
  // follow as events. Not launched yet: launch() sees desiredStatus.
  if (auto s = agent_.stop(task_id, t.stopped_reason, std::nullopt); !s) {
    log::warn("StopTask {}: agent: {}", task_id, s.error().str());
    return t;
  }
  auto stopping =
      update(account, task_id, [](Task& t) { return advance(t, TaskStatus::stopping); });
  if (stopping) return *stopping;
  return t;
}

Result<std::optional<Task>> TaskManager::get_task(const std::string& account,
                                                  const std::string& task_id) {
  BERTH_ASSIGN(auto rec, store_.get_task(account, task_id));
  if (!rec) return std::optional<Task>{};
  BERTH_ASSIGN(Task t, from_record(*rec));
  return std::optional<Task>(std::move(t));
}

void TaskManager::on_event(const AgentEvent& e) {
  auto account = account_of(e.task_id);
  if (!account) {
    log::debug("agent event #{} for task {} that is not live here: ignored",
               static_cast<int>(e.kind), e.task_id);
    return;
  }
  TimePoint at = is_set(e.at) ? e.at : opts_.clock();
  std::set<std::string> essential;
  {
    std::lock_guard lock(mu_);
    if (auto it = live_.find(e.task_id); it != live_.end()) essential = it->second.essential;
  }
  using K = AgentEvent::Kind;
  auto change = [&](Task& t) -> bool {
    switch (e.kind) {
      case K::pull_started:
        if (!is_set(t.pull_started_at)) t.pull_started_at = at;
        advance(t, TaskStatus::pending);
        return true;
      case K::pull_stopped:
        if (!is_set(t.pull_started_at)) t.pull_started_at = at;
        t.pull_stopped_at = at;
        return true;
      case K::task_started:
        return advance(t, TaskStatus::activating);
      case K::container_started: {
        for (auto& c : t.containers) {
          if (c.name == e.container) c.last_status = "RUNNING";
        }
        if (e.state.is_object()) apply_container_state(t, e.state);
        bool all =
            std::all_of(t.containers.begin(), t.containers.end(), [&](const TaskContainer& c) {
              return !essential.contains(c.name) || c.last_status == "RUNNING";
            });
        if (all && status_before(t.last_status, TaskStatus::running)) {
          t.last_status = TaskStatus::running;
          if (!is_set(t.started_at)) t.started_at = at;
        }
        return true;
      }
      case K::container_exited:
        if (e.state.is_object()) {
          nlohmann::json s = e.state;
          if (!s.contains("name")) s["name"] = e.container;
          apply_container_state(t, s);
        }
        return true;
      case K::health_changed:
        if (e.state.is_object()) {
          nlohmann::json s = e.state;
          if (!s.contains("name")) s["name"] = e.container;
          apply_container_state(t, s);
        }
        t.health_status = task_health(t);
        return true;
      case K::task_stopping:
        if (t.desired_status != TaskStatus::stopped) {
          t.desired_status = TaskStatus::stopped;
          // A task that never reached RUNNING failed to start (its stop
          // code is decided when it has stopped, from its containers).
          if (t.stop_code.empty() && is_set(t.started_at)) {
            t.stop_code = "EssentialContainerExited";
            t.stopped_reason = std::string(kEssentialExitedReason);
          }
        }
        if (!is_set(t.stopping_at)) t.stopping_at = at;
        advance(t, TaskStatus::stopping);
        return true;
      case K::task_stopped:
      case K::shim_lost:
        apply_task_state(t, e.state);
        mark_execution_stopped(t, at);
        return true;
    }
    return false;
  };
  auto r = update(*account, e.task_id, change);
  if (!r) {
    log::error("task {}: applying agent event #{}: {}", e.task_id, static_cast<int>(e.kind),
               r.error().str());
    return;
  }
  if (e.kind == K::task_stopped || e.kind == K::shim_lost) {
    // Releasing the microhost waits on the kernel (RCU): off the event
    // thread, so other tasks' events keep flowing.
    std::string acc = *account, id = e.task_id;
    if (!pool_.post([this, acc, id] { finish_stop(acc, id); })) finish_stop(acc, id);
  }
}

void TaskManager::finish_stop(const std::string& account, const std::string& id) {
  if (auto r = agent_.release(id); !r) {
    log::warn("releasing task {}: {}", id, r.error().str());
  }
  auto r = update(account, id, [&](Task& t) {
    if (t.last_status == TaskStatus::stopped) return false;
    t.last_status = TaskStatus::stopped;
    // Set already when recover() found the task ended during an outage.
    if (!is_set(t.stopped_at)) t.stopped_at = opts_.clock();
    return true;
  });
  if (!r) {
    log::error("task {}: recording STOPPED: {}", id, r.error().str());
    release_capacity(id);
  }
}

Result<void> TaskManager::recover() {
  BERTH_ASSIGN(auto records, store_.live_tasks());
  std::vector<LiveTask> to_adopt;
  std::vector<Task> never_launched;
  for (const auto& rec : records) {
    auto t = from_record(rec);
    if (!t) {
      log::error("recover: task {} of account {}: {}", rec.id, rec.account, t.error().str());
      continue;
    }
    NodeCapacity size = task_size(*t).value_or(NodeCapacity{});
    {
      std::lock_guard lock(mu_);
      reserved_.cpu_units += size.cpu_units;
      reserved_.memory_mib += size.memory_mib;
      std::set<std::string> essential;
      for (const auto& c : t->containers) essential.insert(c.name);
      live_[t->id] = Live{t->account, t->cluster, t->last_status,
                          size,       essential,  t->last_status == TaskStatus::running};
    }
    if (t->node_ref.empty()) {
      never_launched.push_back(*t);
    } else {
      to_adopt.push_back({t->id, t->node_ref});
    }
  }
  for (const auto& t : never_launched) {
    // The launch was lost with the old process; whatever it had built is
    // garbage-collected by adopt() (no live task owns it).
    fail_start(t.account, t.id,
               "ResourceInitializationError: berthd restarted before the task started");
  }
  // Called even with nothing to adopt: it also collects the garbage of
  // tasks the store no longer knows.
  BERTH_ASSIGN(auto adopted, agent_.adopt(to_adopt));
  std::set<std::string> seen;
  for (const auto& a : adopted) {
    auto account = account_of(a.task_id);
    if (!account) continue;
    seen.insert(a.task_id);
    {
      std::lock_guard lock(mu_);
      if (auto it = live_.find(a.task_id); it != live_.end()) {
        it->second.essential = essential_from_state(it->second.essential, a.state);
      }
    }
    std::string shim_status;
    if (a.state.is_object()) {
      (void)jr::read(jr::Node::root(a.state, kShimState).member("status"), shim_status);
    }
    bool restop = false;
    auto r = update(*account, a.task_id, [&](Task& t) {
      apply_task_state(t, a.state);
      if (!a.shim_alive || shim_status == "STOPPED") {
        // Ended while berthd was away: the task stopped when its last
        // container exited (the shim recorded it), not now; the bill ends
        // there too (billing/meter.h).
        TimePoint end = shim_exit_time(a.state).value_or(opts_.clock());
        if (end < t.created_at) end = t.created_at;
        mark_execution_stopped(t, end);
        if (!is_set(t.stopped_at)) t.stopped_at = end;
        return true;
      }
      if (shim_status == "RUNNING") {
        advance(t, TaskStatus::running);
        if (!is_set(t.started_at)) t.started_at = opts_.clock();
      } else if (shim_status == "STOPPING") {
        advance(t, TaskStatus::stopping);
      }
      restop = t.desired_status == TaskStatus::stopped && shim_status != "STOPPING";
      return true;
    });
    if (!r) {
      log::error("recover: task {}: {}", a.task_id, r.error().str());
      continue;
    }
    if (r->last_status == TaskStatus::deprovisioning) {
      std::string acc = *account, id = a.task_id;
      if (!pool_.post([this, acc, id] { finish_stop(acc, id); })) finish_stop(acc, id);
    } else if (restop) {
      if (auto s = agent_.stop(a.task_id, r->stopped_reason, std::nullopt); !s) {
        log::warn("recover: re-sending the stop of task {}: {}", a.task_id, s.error().str());
      }
    }
  }
  // Live in the store, unknown to the agent: nothing is left of it.
  for (const auto& l : to_adopt) {
    if (seen.contains(l.task_id)) continue;
    auto account = account_of(l.task_id);
    if (!account) continue;
    auto r = update(*account, l.task_id, [&](Task& t) {
      mark_execution_stopped(t, opts_.clock());
      if (t.stopped_reason.empty()) t.stopped_reason = "Task's microhost was lost during a restart";
      return true;
    });
    if (r) {
      std::string acc = *account, id = l.task_id;
      if (!pool_.post([this, acc, id] { finish_stop(acc, id); })) finish_stop(acc, id);
    }
  }
  return {};
}

int TaskManager::sweep_expired() {
  TimePoint cutoff = opts_.clock() - opts_.stopped_retention;
  std::vector<std::string> expired;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, at] : stopped_) {
      if (at < cutoff) expired.push_back(id);
    }
  }
  for (const auto& id : expired) {
    if (auto r = agent_.purge(id); !r) log::warn("purging task {}: {}", id, r.error().str());
  }
  if (auto r = store_.expire_tasks(epoch_seconds(cutoff)); !r) {
    log::error("expiring stopped tasks: {}", r.error().str());
    return 0;
  }
  std::lock_guard lock(mu_);
  for (const auto& id : expired) stopped_.erase(id);
  return static_cast<int>(expired.size());
}

TaskCounts TaskManager::counts(const std::string& account, const std::string& cluster) const {
  TaskCounts c;
  std::lock_guard lock(mu_);
  for (const auto& [id, l] : live_) {
    if (l.account != account || l.cluster != cluster) continue;
    if (l.status == TaskStatus::running) {
      ++c.running;
    } else if (status_before(l.status, TaskStatus::running)) {
      ++c.pending;
    } else {
      ++c.other;
    }
  }
  return c;
}

std::map<std::string, int> TaskManager::count_by_state() const {
  std::map<std::string, int> out;
  for (auto s : {TaskStatus::provisioning, TaskStatus::pending, TaskStatus::activating,
                 TaskStatus::running, TaskStatus::deactivating, TaskStatus::stopping,
                 TaskStatus::deprovisioning, TaskStatus::stopped}) {
    out[task_status_name(s)] = 0;
  }
  std::lock_guard lock(mu_);
  for (const auto& [id, l] : live_) ++out[task_status_name(l.status)];
  out[task_status_name(TaskStatus::stopped)] += static_cast<int>(stopped_.size());
  return out;
}

NodeCapacity TaskManager::reserved() const {
  std::lock_guard lock(mu_);
  return reserved_;
}

}  // namespace berth::cp
