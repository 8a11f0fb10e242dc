#include "shim/task.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>

#include "common/fs.h"
#include "common/json.h"

namespace berth::shim {
namespace {

using json = nlohmann::json;
constexpr std::string_view kStep = "task.json";

template <class... A>
std::unexpected<Error> fail(std::string_view path, fmt::format_string<A...> f, A&&... args) {
  return kind_error(ErrorKind::invalid, kStep, "{}: {}", path,
                    fmt::format(f, std::forward<A>(args)...));
}

Result<std::string> get_string(const json& o, const char* key, std::string_view path,
                               bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) {
    if (required) return fail(path, "required");
    return std::string();
  }
  if (!it->is_string()) return fail(path, "must be a string");
  return it->get<std::string>();
}

Result<int64_t> get_int(const json& o, const char* key, std::string_view path, int64_t dflt,
                        int64_t min, int64_t max) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return dflt;
  if (!it->is_number_integer()) return fail(path, "must be an integer");
  int64_t v = it->get<int64_t>();
  if (v < min || v > max) return fail(path, "must be between {} and {}", min, max);
  return v;
}

// Task ids and container names: no ".", which joins them into runtime ids.
constexpr std::string_view kNameRule =
    "must be 1-64 of [A-Za-z0-9_-] (no \".\": it separates the task id from the container name "
    "in runtime ids)";

bool valid_name(std::string_view n) {
  return !n.empty() && n.size() <= 64 && std::ranges::all_of(n, [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

std::optional<Condition> condition_from(std::string_view s) {
  if (s == "START") return Condition::start;
  if (s == "COMPLETE") return Condition::complete;
  if (s == "SUCCESS") return Condition::success;
  if (s == "HEALTHY") return Condition::healthy;
  return std::nullopt;
}

Result<ContainerSpec> parse_container(const json& c, const std::string& path) {
  if (!c.is_object()) return fail(path, "must be an object");
  ContainerSpec s;
  BERTH_ASSIGN(s.name, get_string(c, "name", path + ".name", true));
  if (!valid_name(s.name)) {
    return fail(path + ".name", "{:?}: {}", s.name, kNameRule);
  }
  BERTH_ASSIGN(s.bundle, get_string(c, "bundle", path + ".bundle", true));
  if (!s.bundle.starts_with('/')) return fail(path + ".bundle", "must be an absolute path");
  if (auto e = c.find("essential"); e != c.end() && !e->is_null()) {
    if (!e->is_boolean()) return fail(path + ".essential", "must be a boolean");
    s.essential = e->get<bool>();
  }
  BERTH_ASSIGN(int64_t stop, get_int(c, "stop_timeout", path + ".stop_timeout", 30, 0, 86400));
  s.stop_timeout_s = static_cast<int>(stop);
  if (auto deps = c.find("depends_on"); deps != c.end() && !deps->is_null()) {
    if (!deps->is_array()) return fail(path + ".depends_on", "must be an array");
    for (size_t i = 0; i < deps->size(); ++i) {
      std::string dp = fmt::format("{}.depends_on[{}]", path, i);
      const json& d = (*deps)[i];
      if (!d.is_object()) return fail(dp, "must be an object");
      Dependency dep;
      BERTH_ASSIGN(dep.container, get_string(d, "container", dp + ".container", true));
      BERTH_ASSIGN(std::string cond, get_string(d, "condition", dp + ".condition", true));
      auto parsed = condition_from(cond);
      if (!parsed) {
        return fail(dp + ".condition", "{:?}: one of START, COMPLETE, SUCCESS, HEALTHY", cond);
      }
      dep.condition = *parsed;
      s.depends_on.push_back(std::move(dep));
    }
  }
  if (auto rp = c.find("restart_policy"); rp != c.end() && !rp->is_null()) {
    std::string pp = path + ".restart_policy";
    if (!rp->is_object()) return fail(pp, "must be an object");
    if (auto en = rp->find("enabled"); en != rp->end() && !en->is_null()) {
      if (!en->is_boolean()) return fail(pp + ".enabled", "must be a boolean");
      s.restart.enabled = en->get<bool>();
    }
    if (auto codes = rp->find("ignored_exit_codes"); codes != rp->end() && !codes->is_null()) {
      if (!codes->is_array()) return fail(pp + ".ignored_exit_codes", "must be an array");
      for (const json& code : *codes) {
        if (!code.is_number_integer() || code.get<int64_t>() < 0 || code.get<int64_t>() > 255) {
          return fail(pp + ".ignored_exit_codes", "must hold exit codes 0-255");
        }
        s.restart.ignored_exit_codes.push_back(code.get<int>());
      }
    }
    BERTH_ASSIGN(int64_t period, get_int(*rp, "restart_attempt_period",
                                         pp + ".restart_attempt_period", 300, 1, 86400));
    s.restart.attempt_period_s = static_cast<int>(period);
  }
  if (auto hc = c.find("health_check"); hc != c.end() && !hc->is_null()) {
    std::string hp = path + ".health_check";
    if (!hc->is_object()) return fail(hp, "must be an object");
    HealthCheck h;
    auto cmd = hc->find("command");
    if (cmd == hc->end() || !cmd->is_array() || cmd->size() < 2) {
      return fail(hp + ".command", "must be [\"CMD\", exe, args...] or [\"CMD-SHELL\", command]");
    }
    for (const json& a : *cmd) {
      if (!a.is_string()) return fail(hp + ".command", "must hold strings");
      h.command.push_back(a.get<std::string>());
    }
    if (h.command[0] != "CMD" && h.command[0] != "CMD-SHELL") {
      return fail(hp + ".command", "must start with \"CMD\" or \"CMD-SHELL\", got {:?}",
                  h.command[0]);
    }
    BERTH_ASSIGN(int64_t interval, get_int(*hc, "interval", hp + ".interval", 30, 1, 300));
    BERTH_ASSIGN(int64_t timeout, get_int(*hc, "timeout", hp + ".timeout", 5, 1, 120));
    BERTH_ASSIGN(int64_t retries, get_int(*hc, "retries", hp + ".retries", 3, 1, 10));
    BERTH_ASSIGN(int64_t start, get_int(*hc, "start_period", hp + ".start_period", 0, 0, 300));
    h.interval_s = static_cast<int>(interval);
    h.timeout_s = static_cast<int>(timeout);
    h.retries = static_cast<int>(retries);
    h.start_period_s = static_cast<int>(start);
    s.health = std::move(h);
  }
  if (auto ip = c.find("init_process"); ip != c.end() && !ip->is_null()) {
    if (!ip->is_boolean()) return fail(path + ".init_process", "must be a boolean");
    s.init_process = ip->get<bool>();
  }
  if (auto log = c.find("log"); log != c.end() && !log->is_null()) {
    if (!log->is_object()) return fail(path + ".log", "must be an object");
    BERTH_ASSIGN(int64_t mb, get_int(*log, "max_bytes", path + ".log.max_bytes", 10 << 20, 4096,
                                     int64_t{1} << 40));
    BERTH_ASSIGN(int64_t mf, get_int(*log, "max_files", path + ".log.max_files", 3, 1, 100));
    s.log_max_bytes = static_cast<uint64_t>(mb);
    s.log_max_files = static_cast<int>(mf);
  }
  return s;
}

// cgroup_parent and limits: the microhost's task cgroup.
Result<void> parse_task_cgroup(const json& j, TaskSpec& t) {
  auto parent = j.find("cgroup_parent");
  auto limits = j.find("limits");
  bool has_parent = parent != j.end() && !parent->is_null();
  bool has_limits = limits != j.end() && !limits->is_null();
  if (!has_parent && !has_limits) return {};
  BERTH_ASSIGN(std::string p, get_string(j, "cgroup_parent", "cgroup_parent", false));
  if (has_parent) {
    if (p.empty()) return fail("cgroup_parent", "must not be empty");
    if (p.size() > 1024) return fail("cgroup_parent", "longer than 1024 bytes");
    size_t pos = 0;
    while (pos <= p.size()) {
      size_t end = std::min(p.find('/', pos), p.size());
      std::string_view part = std::string_view(p).substr(pos, end - pos);
      pos = end + 1;
      if (part.empty() && (end == 0 || end == p.size())) continue;  // leading or trailing '/'
      bool ok =
          !part.empty() && part.size() <= 255 && part != "." && part != ".." &&
          std::ranges::all_of(part, [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
          });
      if (!ok) {
        return fail("cgroup_parent",
                    "{:?}: '/'-separated names of [A-Za-z0-9_.-] (not \".\" or \"..\")", p);
      }
    }
  }
  t.cgroup_parent = has_parent ? p : std::string("berth");
  if (!has_limits) return {};
  if (!limits->is_object()) return fail("limits", "must be an object");
  for (const auto& [key, value] : limits->items()) {
    (void)value;
    if (key != "cpu" && key != "memory" && key != "memory_reservation" && key != "pids") {
      return fail("limits." + key, "unknown (cpu, memory, memory_reservation, pids)");
    }
  }
  constexpr int64_t kMiB = 1 << 20;
  constexpr int64_t kMaxMiB = int64_t{1} << 30;  // 1 PiB
  auto get = [&](const char* key, int64_t min, int64_t max) -> Result<std::optional<int64_t>> {
    if (!limits->contains(key) || (*limits)[key].is_null()) return std::nullopt;
    BERTH_ASSIGN(int64_t v, get_int(*limits, key, std::string("limits.") + key, 0, min, max));
    return v;
  };
  BERTH_ASSIGN(auto cpu, get("cpu", runtime::kMinCpuUnits, runtime::kMaxCpuUnits));
  BERTH_ASSIGN(auto mem, get("memory", runtime::kMinMemoryBytes / kMiB, kMaxMiB));
  BERTH_ASSIGN(auto res, get("memory_reservation", runtime::kMinMemoryBytes / kMiB, kMaxMiB));
  BERTH_ASSIGN(auto pids, get("pids", 1, int64_t{1} << 22));
  if (mem && res && *res > *mem) {
    return fail("limits.memory_reservation", "{} MiB exceeds limits.memory ({} MiB)", *res, *mem);
  }
  if (cpu) t.limits.cpu_units = static_cast<uint64_t>(*cpu);
  if (mem) t.limits.memory_bytes = *mem * kMiB;
  if (res) t.limits.memory_reservation_bytes = *res * kMiB;
  t.limits.pids = pids;
  return {};
}

}  // namespace

const char* condition_name(Condition c) {
  switch (c) {
    case Condition::start:
      return "START";
    case Condition::complete:
      return "COMPLETE";
    case Condition::success:
      return "SUCCESS";
    case Condition::healthy:
      return "HEALTHY";
  }
  return "?";
}

std::vector<std::string> HealthCheck::argv() const {
  if (command.empty()) return {};
  if (command[0] == "CMD-SHELL") return {"/bin/sh", "-c", command.size() > 1 ? command[1] : ""};
  return {command.begin() + 1, command.end()};
}

const ContainerSpec* TaskSpec::find(std::string_view name) const {
  auto it = std::ranges::find(containers, name, &ContainerSpec::name);
  return it == containers.end() ? nullptr : &*it;
}

Result<TaskSpec> parse_task(std::string_view text) {
  auto parsed = parse_json(text, kStep);
  if (!parsed) return with_kind(ErrorKind::invalid, std::unexpected(parsed.error()));
  json j = std::move(*parsed);
  if (!j.is_object()) return kind_error(ErrorKind::invalid, kStep, "not a JSON object");
  BERTH_ASSIGN(int64_t version, get_int(j, "version", "version", 0, 1, 1));
  (void)version;
  TaskSpec t;
  BERTH_ASSIGN(t.task_id, get_string(j, "task_id", "task_id", true));
  if (!valid_name(t.task_id)) return fail("task_id", "{:?}: {}", t.task_id, kNameRule);
  BERTH_ASSIGN(t.runtime_root, get_string(j, "runtime_root", "runtime_root", true));
  if (!t.runtime_root.starts_with('/')) return fail("runtime_root", "must be an absolute path");
  auto cs = j.find("containers");
  if (cs == j.end() || !cs->is_array() || cs->empty()) {
    return fail("containers", "must be a non-empty array");
  }
  for (size_t i = 0; i < cs->size(); ++i) {
    BERTH_ASSIGN(ContainerSpec c, parse_container((*cs)[i], fmt::format("containers[{}]", i)));
    if (t.find(c.name))
      return fail(fmt::format("containers[{}].name", i), "{:?} is used twice", c.name);
    t.containers.push_back(std::move(c));
  }
  BERTH_TRY(parse_task_cgroup(j, t));
  if (std::ranges::none_of(t.containers, &ContainerSpec::essential)) {
    return fail("containers", "at least one container must be essential");
  }
  for (const ContainerSpec& c : t.containers) {
    for (const Dependency& d : c.depends_on) {
      if (!t.find(d.container)) {
        return fail(c.name + ".depends_on", "no container named {:?}", d.container);
      }
      if (d.container == c.name) return fail(c.name + ".depends_on", "depends on itself");
      if (d.condition == Condition::healthy && !t.find(d.container)->health) {
        return fail(c.name + ".depends_on", "HEALTHY on {:?}, which has no health_check",
                    d.container);
      }
    }
  }
  // Cycles: depth-first search with colours.
  std::map<std::string, int> colour;
  std::function<Result<void>(const ContainerSpec&)> visit =
      [&](const ContainerSpec& c) -> Result<void> {
    colour[c.name] = 1;
    for (const Dependency& d : c.depends_on) {
      if (colour[d.container] == 1) {
        return fail(c.name + ".depends_on", "a dependency cycle through {:?}", d.container);
      }
      if (colour[d.container] == 0) BERTH_TRY(visit(*t.find(d.container)));
    }
    colour[c.name] = 2;
    return {};
  };
  for (const ContainerSpec& c : t.containers) {
    if (colour[c.name] == 0) BERTH_TRY(visit(c));
  }
  return t;
}

Result<TaskSpec> load_task(const std::string& task_dir) {
  BERTH_ASSIGN(std::string text, fs::read_file(fs::join(task_dir, "task.json")));
  return parse_task(text);
}

}  // namespace berth::shim
