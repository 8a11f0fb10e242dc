#include "runtime/microhost_cgroup.h"

#include "common/log.h"
#include "runtime/cgroup_util.h"

namespace berth::runtime {

Result<void> validate_task_limits(const TaskLimits& l) {
  if (l.cpu_units && (*l.cpu_units < kMinCpuUnits || *l.cpu_units > kMaxCpuUnits)) {
    return error("task cgroup", "limits.cpu = {} is out of range ({}..{} CPU units, 1024 = 1 vCPU)",
                 *l.cpu_units, kMinCpuUnits, kMaxCpuUnits);
  }
  if (l.memory_bytes && *l.memory_bytes < kMinMemoryBytes) {
    return error("task cgroup", "limits.memory = {} bytes is below the minimum of {} MiB",
                 *l.memory_bytes, kMinMemoryBytes >> 20);
  }
  if (l.memory_reservation_bytes && *l.memory_reservation_bytes < kMinMemoryBytes) {
    return error("task cgroup",
                 "limits.memory_reservation = {} bytes is below the minimum of {} MiB",
                 *l.memory_reservation_bytes, kMinMemoryBytes >> 20);
  }
  if (l.memory_bytes && l.memory_reservation_bytes &&
      *l.memory_reservation_bytes > *l.memory_bytes) {
    return error("task cgroup",
                 "limits.memory_reservation ({} bytes) exceeds limits.memory ({} bytes)",
                 *l.memory_reservation_bytes, *l.memory_bytes);
  }
  if (l.pids && *l.pids < 1) {
    return error("task cgroup", "limits.pids = {} must be at least 1", *l.pids);
  }
  return {};
}

Resources task_resources(const TaskLimits& l) {
  Resources r;
  if (l.cpu_units) {
    CpuResources c;
    c.shares = *l.cpu_units;
    c.quota = static_cast<int64_t>(*l.cpu_units * kCpuPeriodUs / 1024);
    c.period = kCpuPeriodUs;
    r.cpu = c;
  }
  if (l.memory_bytes || l.memory_reservation_bytes) {
    MemoryResources m;
    m.limit = l.memory_bytes;
    m.reservation = l.memory_reservation_bytes;
    r.memory = m;
  }
  r.pids_limit = l.pids;
  return r;
}

Result<TaskCgroup> TaskCgroup::create(const CgroupLayout& layout, const std::string& parent,
                                      const std::string& task_name, const TaskLimits& limits) {
  BERTH_TRY(validate_task_limits(limits));
  if (task_name.empty() || task_name == "." || task_name == ".." ||
      task_name.find('/') != std::string::npos) {
    return error("task cgroup", "task cgroup name \"{}\" must be one path component", task_name);
  }
  if (parent.empty()) return error("task cgroup", "the task cgroup's parent is empty");
  std::string path = parent;
  if (!path.ends_with('/')) path += '/';
  path += task_name;
  // Validates the path as a cgroupsPath (no "..", no systemd form).
  BERTH_TRY(cgroup_util::parse_cgroups_path(path, task_name));
  TaskCgroup t;
  t.cgroups_path_ = path;
  BERTH_ASSIGN(t.driver_, make_cgroup_driver(layout, path, task_name));
  auto fail = [&](const Error& e) -> Result<TaskCgroup> {
    (void)t.driver_->destroy();  // what was made before the error, if anything
    t.driver_.reset();
    return wrap(e, fmt::format("task cgroup {}", path));
  };
  if (auto r = t.driver_->create(); !r) return fail(r.error());
  if (auto r = t.driver_->apply_limits(task_resources(limits)); !r) return fail(r.error());
  if (auto r = t.driver_->enable_for_children(); !r) return fail(r.error());
  log::debug("task cgroup: {} ({})", path, fmt::join(t.driver_->paths(), ", "));
  return t;
}

std::string TaskCgroup::container_cgroups_path(const std::string& container) const {
  return cgroups_path_ + "/" + container;
}

std::vector<std::string> TaskCgroup::paths() const {
  return driver_ ? driver_->paths() : std::vector<std::string>{};
}

Result<CgroupStats> TaskCgroup::stats() {
  if (!driver_) return error("cgroup", "task cgroup {} is destroyed", cgroups_path_);
  return driver_->stats();
}

Result<void> TaskCgroup::destroy() {
  if (!driver_) return {};
  BERTH_TRY(driver_->destroy());
  driver_.reset();
  return {};
}

TaskCgroup::~TaskCgroup() {
  if (!driver_) return;
  if (auto r = destroy(); !r) log::error("{}", r.error().str());
}

}  // namespace berth::runtime
