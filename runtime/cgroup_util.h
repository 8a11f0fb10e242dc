// Pieces shared by the cgroup v1 and v2 drivers: where a container's cgroup
// goes (placement), reading and writing interface files with errors that name
// the file and value, creating and removing the directories, the memory+swap
// arithmetic of the runtime-spec, and the driver constructors used by the
// factory in cgroup.cc. Internal to runtime/cgroup*.cc.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "runtime/cgroup.h"
#include "runtime/spec.h"

namespace berth::runtime::cgroup_util {

// Where the container's cgroup goes in every hierarchy: `parts` below the
// hierarchy's root when `absolute`, below the caller's own cgroup otherwise.
struct Placement {
  bool absolute = false;
  std::vector<std::string> parts;
};

// Validates the spec's cgroupsPath (empty: `default_name`, relative).
Result<Placement> parse_cgroups_path(const std::string& cgroups_path,
                                     const std::string& default_name);

// One cgroup directory in one hierarchy: `parts` are created below `base`,
// the last one being the container's cgroup `dir`. `made` lists the
// directories this process created, outermost first, so destroy() removes
// nothing that existed before.
struct CgroupDir {
  std::string base;
  std::vector<std::string> parts;
  std::string dir;
  std::vector<std::string> made;

  // For a hierarchy mounted at `mount` in which the caller sits at `own`.
  static CgroupDir place(const std::string& mount, const std::string& own, const Placement& p);
  // For a path recorded at create time: only the leaf is known to be ours.
  static CgroupDir recorded(const std::string& path);

  // mkdir of each missing part (existing ones are reused).
  Result<void> create();
  // Removes the leaf (and cgroups the container made below it), then the
  // parents create() made, deepest first.
  Result<void> destroy();
  // base, base/p0, ... up to the parent of dir.
  std::vector<std::string> ancestors() const;
};

// Reads and writes of interface files. Every write error reads
//   cgroup: write "<value>" to <path>: <strerror>
Result<void> write_file(const std::string& dir, std::string_view file, std::string_view value);
Result<std::string> read_file(const std::string& dir, std::string_view file);
bool has_file(const std::string& dir, std::string_view file);
// A file holding one number ("max" is not a number: an error).
Result<uint64_t> read_u64(const std::string& dir, std::string_view file);
// The same, 0 when the file does not exist (a controller not enabled).
Result<uint64_t> read_u64_or_zero(const std::string& dir, std::string_view file);
// "key value" lines (cpu.stat, memory.events, memory.oom_control): the value
// of `key`, 0 when the file or the key is absent.
Result<uint64_t> read_keyed_or_zero(const std::string& dir, std::string_view file,
                                    std::string_view key);
std::optional<uint64_t> parse_u64(std::string_view text);
std::optional<uint64_t> keyed_value(std::string_view text, std::string_view key);

// The pids in <dir>/cgroup.procs.
Result<std::vector<pid_t>> read_procs(const std::string& dir);
// Sends `signal` to each pid; a pid that is already gone is not an error.
Result<void> signal_each(const std::vector<pid_t>& pids, int signal);

// Calls `check` until it returns true, an error, or `timeout` passes
// (returns false then). Backs off from 1 ms to 50 ms between calls.
Result<bool> poll_until(std::chrono::milliseconds timeout,
                        const std::function<Result<bool>()>& check);

// Memory limits normalised as runc does: 0 means "not set", -1 unlimited,
// and `swap_total` is the runtime-spec memory+swap total (validated against
// the limit; -1 also when the limit is -1 and swap is not given).
struct MemoryPlan {
  std::optional<int64_t> limit;
  std::optional<int64_t> reservation;
  std::optional<int64_t> swap_total;
};
Result<MemoryPlan> plan_memory(const MemoryResources& m);
// When the kernel has no swap limit file (swap accounting off), a request
// that limits nothing beyond memory (unlimited, or swap == limit) is dropped
// as runc does; anything else is an error naming the missing file.
Result<bool> swap_file_usable(const MemoryPlan& plan, const std::string& dir,
                              std::string_view file);
// -1 (or any negative) -> "max", else the number.
std::string num_or_max(int64_t v);
// pids.max: the runtime-spec's 0 and -1 both mean unlimited.
std::string pids_max(int64_t limit);
// "major:minor <suffix>"
std::string device_line(const BlockIoDeviceValue& d, std::string_view value);

// Whether a cgroup.subtree_control text lists `controller`.
bool subtree_has(std::string_view subtree_control, std::string_view controller);

// "+<controller>" into <dir>/cgroup.subtree_control; EBUSY (the cgroup has
// processes) is explained in the error.
Result<void> enable_subtree_controller(const std::string& dir, std::string_view controller);
// Enables `controller` top-down in every ancestor of `d` (v2 tree) that has
// it available but not enabled. Missing from an ancestor's
// cgroup.controllers: an error naming `what`.
Result<void> enable_v2_controller(const CgroupDir& d, std::string_view controller,
                                  std::string_view what);

// linux.resources.hugepageLimits: hugetlb.<pageSize>.<suffix> in `dir`
// ("limit_in_bytes" on v1, "max" on v2). A page size the host does not have
// is an error naming the field.
Result<void> write_hugepage_limits(const std::string& dir, const std::vector<HugepageLimit>& limits,
                                   std::string_view suffix);

// Fields cgroup v2 has no file for, refused with an error naming each:
// memory.swappiness, memory.disableOOMKiller (true), memory.kernelTCP,
// memory.kernel, memory.useHierarchy (false), cpu.realtimeRuntime,
// cpu.realtimePeriod, blockIO.leafWeight and weightDevice[].leafWeight,
// network (net_cls / net_prio). Their no-op values (absent, 0, true for
// useHierarchy) are accepted.
Result<void> refuse_v1_only(const Resources& res, std::string_view why);

// Writes `value` to <dir>/<file> for the spec field `field`. A missing file
// is refused (EOPNOTSUPP) naming the field, the file and `absent_why`; a
// write the kernel refuses is an error naming the field too.
Result<void> write_field(const std::string& dir, std::string_view file, std::string_view value,
                         std::string_view field, std::string_view absent_why);

// memory.checkBeforeUpdate: a limit below the cgroup's current usage (read
// from <dir>/<usage_file>) is refused instead of written.
Result<void> check_limit_above_usage(const MemoryResources& m, const MemoryPlan& plan,
                                     const std::string& dir, std::string_view usage_file);

// linux.resources.rdma: one "<device> hca_handle=N hca_object=N" line per
// device into <dir>/rdma.max ("max" for an absent count).
Result<void> write_rdma_limits(const std::string& dir,
                               const std::map<std::string, RdmaLimit>& rdma);

// The v2 freezer (cgroup.freeze, then cgroup.events "frozen 1"); both drivers
// use it, v1 on the v2 tree of a hybrid host.
Result<void> freeze_unified(const std::string& dir, bool frozen);
// Freezes, signals every pid, thaws: for signals other than SIGKILL and for
// kernels without cgroup.kill.
Result<void> signal_frozen(CgroupDriver& d, int signal);

// Time a freeze or an EBUSY rmdir may take before giving up.
inline constexpr std::chrono::milliseconds kSettleTimeout{5000};

// Driver constructors for cgroup.cc.
// fixture_tree: see CgroupLayout::fixture_tree.
std::unique_ptr<CgroupDriver> new_cgroup_v2(CgroupDir dir, bool fixture_tree);
std::unique_ptr<CgroupDriver> new_cgroup_v1(const CgroupLayout& layout, const Placement& p);
Result<std::unique_ptr<CgroupDriver>> open_cgroup_v1(const CgroupLayout& layout,
                                                     const std::vector<std::string>& paths);

}  // namespace berth::runtime::cgroup_util
