// cgroups: one driver interface, two implementations chosen at run time.
//
//  - CgroupV2: the unified hierarchy (pure v2 hosts). Limits in memory.max,
//    cpu.max, pids.max, io.max, ...; CLONE_INTO_CGROUP places the child.
//  - CgroupV1: hybrid and legacy hosts. Limits in each v1 controller's
//    hierarchy (memory, cpu, cpuacct, cpuset, pids, blkio); membership, kill
//    and freeze also in the v2 tree mounted at <root>/unified when there is one.
//
// A container's cgroup is always created below the caller's own cgroup in
// each hierarchy (read from /proc/self/cgroup) unless the spec's cgroupsPath
// is absolute, which is honoured as runc does: an absolute cgroupsPath is
// taken from the root of each hierarchy, a relative one from the caller's
// cgroup. All filesystem roots are parameters so that unit tests run the
// drivers against a temporary fixture tree.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/spec.h"

namespace berth::runtime {

struct CgroupStats {
  uint64_t cpu_usage_usec = 0;
  uint64_t memory_current = 0;
  uint64_t memory_peak = 0;
  uint64_t pids_current = 0;
  uint64_t oom_kills = 0;
};

// Where the hierarchies are and where the caller sits in them. Read from the
// real system by CgroupLayout::detect(); built by hand in unit tests.
struct CgroupLayout {
  enum class Mode { unified, hybrid, legacy };
  Mode mode = Mode::unified;
  std::string root = "/sys/fs/cgroup";
  // unified: the v2 mount ("/sys/fs/cgroup" or "/sys/fs/cgroup/unified"), or
  // empty in legacy mode; and the caller's cgroup in it ("/user.slice/x").
  std::string unified_mount;
  std::string unified_own;
  // v1 hierarchies: controller name ("memory") -> mount point and the
  // caller's cgroup in it. Co-mounted controllers ("cpu,cpuacct") appear
  // once per controller with the same mount point.
  struct V1 {
    std::string controller;
    std::string mount;
    std::string own;
  };
  std::vector<V1> v1;
  // A tree of regular files built by a unit test, not a mounted cgroupfs:
  // there is no cgroup to attach a v2 device program to. detect() never
  // sets it; on a real host a v2 cgroup without its program is an error.
  bool fixture_tree = false;

  // Reads /proc/self/mountinfo and /proc/self/cgroup (paths given for tests).
  static Result<CgroupLayout> detect(const std::string& mountinfo_path = "/proc/self/mountinfo",
                                     const std::string& cgroup_path = "/proc/self/cgroup");
  const char* mode_name() const;
};

class CgroupDriver {
 public:
  virtual ~CgroupDriver() = default;

  // Creates the cgroup directories (idempotent: existing ones are reused).
  virtual Result<void> create() = 0;
  // Writes the spec's resources. Called before the container process runs,
  // also when the spec has none: on v1 the devices cgroup then still gets
  // "deny all" plus the default devices, as with runc.
  virtual Result<void> apply(const Resources& res) = 0;
  // The same without device rules: for an inner cgroup (a microhost's task
  // cgroup) whose leaves get their own device rules from apply(). A device
  // program or devices.deny on the inner node would bound every leaf below.
  virtual Result<void> apply_limits(const Resources& res) = 0;
  // v2: enables the available controllers in the cgroup's own
  // subtree_control, so that cgroups below it get them (the cgroup then may
  // hold no process). v1: nothing to do.
  virtual Result<void> enable_for_children() = 0;
  // Adds a process to every hierarchy.
  virtual Result<void> add_process(pid_t pid) = 0;
  // Files through which the container's init joins, by itself, the
  // hierarchies CLONE_INTO_CGROUP cannot place it in (the v1 ones): opened
  // by the caller before the clone, the child writes "0" to each
  // (join_cgroups_self). A thread moving itself through "tasks" skips the
  // global threadgroup lock that writing another pid to cgroup.procs takes
  // (percpu_down_write, an RCU grace period: ~8 ms per container on this
  // project's hybrid hosts). Empty on a pure v2 host.
  virtual Result<std::vector<UniqueFd>> open_self_join_files() = 0;
  // An O_DIRECTORY fd for CLONE_INTO_CGROUP on the v2 tree; an empty
  // UniqueFd on a legacy host, which has none.
  virtual Result<UniqueFd> open_unified_dir() = 0;
  virtual Result<CgroupStats> stats() = 0;
  // Lists the pids in the cgroup (from the v2 tree or the first v1 one).
  virtual Result<std::vector<pid_t>> pids() = 0;
  // Signals every process: cgroup.kill for SIGKILL where the kernel has it,
  // otherwise freeze, signal each pid, thaw.
  virtual Result<void> kill_all(int signal) = 0;
  virtual Result<void> freeze(bool frozen) = 0;
  // Removes the cgroup directories; the cgroup must be empty. Retries EBUSY
  // briefly, since a killed process leaves its cgroup asynchronously. Also
  // removes cgroups the container made below its own, and the parents that
  // create() made (a driver from open_cgroup_driver knows only the leaves).
  virtual Result<void> destroy() = 0;
  // The paths created, one per hierarchy (for the state file and tests).
  virtual std::vector<std::string> paths() const = 0;
};

// Chooses the driver for the layout and the spec's cgroupsPath. `default_name`
// is used when cgroupsPath is empty (the container id).
Result<std::unique_ptr<CgroupDriver>> make_cgroup_driver(const CgroupLayout& layout,
                                                         const std::string& cgroups_path,
                                                         const std::string& default_name);

// Re-opens a container's cgroups from the paths recorded at create time
// (delete, kill --all and stats run in another process than create).
Result<std::unique_ptr<CgroupDriver>> open_cgroup_driver(const CgroupLayout& layout,
                                                         const std::vector<std::string>& paths);

// The devices-cgroup rules runc derives from a spec: linux.resources.devices,
// then an allow "rwm" for each linux.devices node, so that the container can
// use the nodes it is given. Pass them to apply() in Resources::devices. The
// devices every container has (null, zero, full, random, urandom, tty, ptmx,
// pts, net/tun, and mknod of any node) are added by apply() itself.
std::vector<DeviceRule> device_cgroup_rules(const Linux& linux);

// Child side: writes "0" to each file of open_self_join_files().
Result<void> join_cgroups_self(const std::vector<UniqueFd>& files);

// v2 weight from v1 shares, as runc and crun convert it:
// 1 + ((shares - 2) * 9999) / 262142, clamped to [1, 10000].
uint64_t cpu_shares_to_weight(uint64_t shares);

}  // namespace berth::runtime
