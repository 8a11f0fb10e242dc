// Where an agent's processes live in the cgroup hierarchies. Relative to
// the cgroup berthd was started in (<own>, in each hierarchy):
//
//   <own>/<name>/<task>/<container>   tasks: the shim makes <task> (limits)
//                                     and the container leaves, from the
//                                     ABSOLUTE cgroup_parent <own>/<name>
//   <own>/<name>.shims                a leaf holding every shim
//   <own>/<name>.daemon               berthd itself (when it moves itself)
//
// so <own> and <own>/<name> hold no process (pure cgroup v2's
// no-internal-process rule) and the shims are not in berthd's cgroup: a
// restart of berthd — systemd's included, with KillMode=process and
// Delegate=yes in the unit — never kills them. A berthd restarted inside
// "<name>.daemon" (systemd keeps the unit's cgroup) takes its parent as
// <own>.
//
// The task subtree is one absolute path for every hierarchy (task.json's
// cgroup_parent is a single path). On a v1/hybrid host whose hierarchies
// place berthd at different paths, it is taken from the memory hierarchy
// (where the limits that matter most apply), else the unified one; the
// shims' leaf and the daemon's are made in each hierarchy below its own
// <own>.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "controlplane/agent/usage.h"
#include "runtime/cgroup.h"

namespace berth::cp {

class AgentCgroups {
 public:
  // Reads the layout, makes the shims' leaf (and, with move_self, the
  // daemon's, moving this process into it) in every hierarchy.
  static Result<AgentCgroups> setup(const std::string& name, bool move_self);
  static Result<AgentCgroups> setup(const runtime::CgroupLayout& layout, const std::string& name,
                                    bool move_self);

  // The absolute cgroup_parent of tasks: "<own>/<name>".
  const std::string& tasks_parent() const { return tasks_parent_; }
  // Moves a freshly spawned shim into the shims' leaf in every hierarchy.
  Result<void> add_shim(pid_t pid) const;
  // The task cgroups present below the task subtree (union over hierarchies).
  std::vector<std::string> task_cgroups() const;
  // Removes a task's cgroup (its container leaves first) in every
  // hierarchy; those still holding processes are left, and named in the
  // error.
  Result<void> remove_task(const std::string& task) const;
  // Removes the task subtree and the shims' leaf where empty (tests, and an
  // instance being torn down). The daemon's leaf is left: this process may
  // be in it.
  Result<void> remove_empty() const;
  // The directories of the shims' leaf (one per hierarchy).
  const std::vector<std::string>& shims_dirs() const { return shims_dirs_; }
  const std::vector<std::string>& task_roots() const { return task_roots_; }
  // A task's CPU and memory counters (usage.h): from the unified tree on a
  // pure v2 host, from the cpuacct and memory hierarchies on a v1/hybrid
  // one. nullopt when the task has no cgroup (not made yet, or removed).
  Result<std::optional<CgroupCounters>> task_counters(const std::string& task) const;

 private:
  std::string tasks_parent_;
  std::vector<std::string> shims_dirs_;
  std::vector<std::string> task_roots_;  // <mount><tasks_parent> per hierarchy
  std::vector<std::string> own_dirs_;    // <mount><own> per hierarchy
  // Where task_counters() reads: <mount><tasks_parent> of the unified tree
  // (pure v2), or of the cpuacct and memory hierarchies (v1/hybrid; empty
  // when the host has none).
  bool unified_ = false;
  std::string unified_tasks_;
  std::string cpuacct_tasks_;
  std::string memory_tasks_;
};

}  // namespace berth::cp
