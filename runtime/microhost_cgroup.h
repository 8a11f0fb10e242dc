// A microhost's task cgroup: the inner node that carries a task's limits,
// with the task's containers as leaves below it (ARCHITECTURE: "Microhost").
//
//   <caller's cgroup>/<parent>/<task>/<container>
//
// `parent` is relative to the caller's own cgroup in each hierarchy (as every
// cgroup the runtime makes), or absolute (from each hierarchy's root) for a
// caller that manages a delegated subtree on pure v2. On v2 the controllers
// are enabled top-down in the subtree_control of each ancestor and of the
// task cgroup itself, and no process is ever placed in it (the
// no-internal-process rule): only the containers' leaves hold processes. On
// v1/hybrid each controller hierarchy gets the same directories. Device rules
// stay on each container's leaf: the task node has none.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/cgroup.h"

namespace berth::runtime {

// A task's limits in ECS terms.
struct TaskLimits {
  // CPU units, 1024 = one vCPU: a hard cap (cpu.max / cfs_quota_us per
  // 100 ms period) and the same relative share (cpu.shares = units,
  // cpu.weight converted as runc does).
  std::optional<uint64_t> cpu_units;
  // Bytes: hard limit (memory.max / limit_in_bytes) and soft reservation
  // (memory.low / soft_limit_in_bytes).
  std::optional<int64_t> memory_bytes;
  std::optional<int64_t> memory_reservation_bytes;
  std::optional<int64_t> pids;
};

inline constexpr uint64_t kMinCpuUnits = 128;
inline constexpr uint64_t kMaxCpuUnits = 262144;
inline constexpr int64_t kMinMemoryBytes = 6LL << 20;  // ECS's minimum (6 MiB)
inline constexpr uint64_t kCpuPeriodUs = 100000;

// Checks the ranges above and reservation <= hard limit. Errors name the
// field as task.json spells it (limits.cpu, limits.memory, ...).
Result<void> validate_task_limits(const TaskLimits& limits);
// The cgroup resources the limits are written as (no device rules).
Resources task_resources(const TaskLimits& limits);

class TaskCgroup {
 public:
  // Creates <parent>/<task_name> in every hierarchy of `layout` and writes
  // the limits. `parent` as in a cgroupsPath (relative or absolute, no "..");
  // `task_name` one path component. What this call made is removed again if
  // it fails.
  static Result<TaskCgroup> create(const CgroupLayout& layout, const std::string& parent,
                                   const std::string& task_name, const TaskLimits& limits);

  // The cgroupsPath of a container's leaf below the task cgroup.
  std::string container_cgroups_path(const std::string& container) const;
  // The task cgroup's directory in each hierarchy.
  std::vector<std::string> paths() const;
  // The task cgroup's counters (its containers' included): what the shim
  // records as the task's final use before destroy() (billing).
  Result<CgroupStats> stats();
  // Removes the task cgroup (and what create() made above it, when nothing
  // else is in it) once its containers are gone: rmdir, retried while EBUSY
  // (a killed process leaves its cgroup asynchronously) up to a deadline.
  Result<void> destroy();

  TaskCgroup(TaskCgroup&&) = default;
  TaskCgroup& operator=(TaskCgroup&&) = default;
  ~TaskCgroup();

 private:
  TaskCgroup() = default;
  std::string cgroups_path_;
  std::unique_ptr<CgroupDriver> driver_;
};

}  // namespace berth::runtime
