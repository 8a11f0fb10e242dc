// The cgroup v1 driver, for hybrid and legacy hosts: one directory per v1
// hierarchy (co-mounted controllers share one), plus one in the v2 tree of a
// hybrid host, which carries membership, cgroup.kill and the v2 freezer.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>

#include "common/fs.h"
#include "common/log.h"
#include "runtime/cgroup_util.h"
#include "runtime/devices_bpf.h"

namespace berth::runtime::cgroup_util {
namespace {

struct Hierarchy {
  std::vector<std::string> controllers;  // "cpu", "cpuacct" when co-mounted
  std::string mount;
  CgroupDir dir;
};

// One entry per mount, in the layout's order.
std::vector<Hierarchy> group_by_mount(const CgroupLayout& layout, const Placement* p) {
  std::vector<Hierarchy> out;
  for (const auto& v : layout.v1) {
    auto it = std::find_if(out.begin(), out.end(), [&](auto& h) { return h.mount == v.mount; });
    if (it != out.end()) {
      it->controllers.push_back(v.controller);
      continue;
    }
    Hierarchy h{{v.controller}, v.mount, {}};
    if (p) h.dir = CgroupDir::place(v.mount, v.own, *p);
    out.push_back(std::move(h));
  }
  return out;
}

bool is_under(const std::string& path, const std::string& mount) {
  return path.size() > mount.size() && path.starts_with(mount) && path[mount.size()] == '/';
}

// "c 1:3 rwm" for devices.allow / devices.deny.
std::string device_rule(const DeviceRule& r) {
  auto num = [](const std::optional<int64_t>& v) {
    return v && *v >= 0 ? std::to_string(*v) : std::string("*");
  };
  return fmt::format("{} {}:{} {}", r.type.empty() ? "a" : r.type, num(r.major), num(r.minor),
                     r.access.empty() ? "rwm" : r.access);
}

Result<void> freeze_v1(const std::string& dir, bool frozen) {
  const std::string_view want = frozen ? "FROZEN" : "THAWED";
  BERTH_ASSIGN(bool done, poll_until(kSettleTimeout, [&]() -> Result<bool> {
                 // Writing FROZEN again retries the tasks that did not stop
                 // yet; the state can otherwise stay FREEZING (runc does it).
                 BERTH_TRY(write_file(dir, "freezer.state", want));
                 BERTH_ASSIGN(std::string state, read_file(dir, "freezer.state"));
                 return state.starts_with(want);
               }));
  if (done) return {};
  // Do not leave the container half frozen.
  if (frozen) (void)write_file(dir, "freezer.state", "THAWED");
  return error("cgroup", "{} did not reach {} within {} ms", fs::join(dir, "freezer.state"), want,
               kSettleTimeout.count());
}

class CgroupV1 final : public CgroupDriver {
 public:
  CgroupV1(CgroupLayout::Mode mode, std::vector<Hierarchy> v1, std::optional<CgroupDir> unified)
      : mode_(mode), v1_(std::move(v1)), unified_(std::move(unified)) {}

  Result<void> create() override {
    for (auto& h : v1_) BERTH_TRY(h.dir.create());
    if (unified_) BERTH_TRY(unified_->create());
    if (const Hierarchy* h = find("cpuset")) BERTH_TRY(inherit_cpuset(*h));
    return {};
  }

  Result<void> apply(const Resources& res) override {
    BERTH_TRY(apply_limits(res));
    if (const std::string* d = dir_of("devices")) {
      BERTH_TRY(apply_devices(*d, res.devices));
    } else if (!res.devices.empty()) {
      return std::unexpected(need("devices", "linux.resources.devices").error());
    }
    return {};
  }

  Result<void> apply_limits(const Resources& res) override {
    if (!res.unified.empty()) {
      return error("cgroup",
                   "linux.resources.unified needs cgroup v2 controllers, but this host's "
                   "controllers are on cgroup v1 ({} mode)",
                   mode_ == CgroupLayout::Mode::hybrid ? "hybrid" : "legacy");
    }
    if (res.memory) {
      BERTH_ASSIGN(const std::string* d, need("memory", "linux.resources.memory"));
      BERTH_TRY(apply_memory(*d, *res.memory));
    }
    if (res.cpu) BERTH_TRY(apply_cpu(*res.cpu));
    if (res.pids_limit) {
      BERTH_ASSIGN(const std::string* d, need("pids", "linux.resources.pids"));
      BERTH_TRY(write_file(*d, "pids.max", pids_max(*res.pids_limit)));
    }
    if (res.block_io) {
      BERTH_ASSIGN(const std::string* d, need("blkio", "linux.resources.blockIO"));
      BERTH_TRY(apply_blkio(*d, *res.block_io));
    }
    if (res.network) BERTH_TRY(apply_network(*res.network));
    if (!res.hugepage_limits.empty()) {
      BERTH_ASSIGN(auto d, v1_or_unified("hugetlb", "linux.resources.hugepageLimits"));
      BERTH_TRY(
          write_hugepage_limits(d.first, res.hugepage_limits, d.second ? "max" : "limit_in_bytes"));
    }
    if (!res.rdma.empty()) {
      BERTH_ASSIGN(auto d, v1_or_unified("rdma", "linux.resources.rdma"));
      BERTH_TRY(write_rdma_limits(d.first, res.rdma));
    }
    return {};
  }

  // v1 controllers need no enabling; the v2 tree of a hybrid host has none.
  Result<void> enable_for_children() override { return {}; }

  Result<void> add_process(pid_t pid) override {
    const std::string s = std::to_string(pid);
    for (const auto& h : v1_) BERTH_TRY(write_file(h.dir.dir, "cgroup.procs", s));
    if (unified_) BERTH_TRY(write_file(unified_->dir, "cgroup.procs", s));
    return {};
  }

  Result<std::vector<UniqueFd>> open_self_join_files() override {
    std::vector<UniqueFd> out;
    for (const auto& h : v1_) {
      std::string path = h.dir.dir + "/tasks";
      UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd) return sys_error("cgroup", "open {}", path);
      out.push_back(std::move(fd));
    }
    return out;
  }

  Result<UniqueFd> open_unified_dir() override {
    // Legacy host: no v2 tree; the caller places the child with add_process.
    if (!unified_) return UniqueFd();
    UniqueFd fd(::open(unified_->dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("cgroup", "open {}", unified_->dir);
    return fd;
  }

  Result<CgroupStats> stats() override {
    CgroupStats s;
    if (const std::string* d = dir_of("cpuacct")) {
      BERTH_ASSIGN(uint64_t ns, read_u64(*d, "cpuacct.usage"));
      s.cpu_usage_usec = ns / 1000;
    }
    if (const std::string* d = dir_of("memory")) {
      BERTH_ASSIGN(s.memory_current, read_u64(*d, "memory.usage_in_bytes"));
      BERTH_ASSIGN(s.memory_peak, read_u64(*d, "memory.max_usage_in_bytes"));
      // "oom_kill N" is in memory.oom_control since Linux 4.13.
      BERTH_ASSIGN(s.oom_kills, read_keyed_or_zero(*d, "memory.oom_control", "oom_kill"));
    }
    if (const std::string* d = dir_of("pids")) {
      BERTH_ASSIGN(s.pids_current, read_u64(*d, "pids.current"));
    }
    return s;
  }

  Result<std::vector<pid_t>> pids() override {
    if (unified_) return read_procs(unified_->dir);
    if (v1_.empty()) return error("cgroup", "no cgroup hierarchy to list pids from");
    return read_procs(v1_.front().dir.dir);
  }

  Result<void> kill_all(int signal) override {
    if (signal == SIGKILL && unified_ && has_file(unified_->dir, "cgroup.kill")) {
      return write_file(unified_->dir, "cgroup.kill", "1");
    }
    if (!can_freeze()) {
      // Without a freezer a task may fork between the listing and the
      // signal; the best that can be done is one pass.
      log::debug("cgroup: no freezer; signalling the cgroup's pids unfrozen");
      BERTH_ASSIGN(auto list, pids());
      return signal_each(list, signal);
    }
    return signal_frozen(*this, signal);
  }

  Result<void> freeze(bool frozen) override {
    if (unified_ && has_file(unified_->dir, "cgroup.freeze")) {
      return freeze_unified(unified_->dir, frozen);
    }
    if (const std::string* d = dir_of("freezer")) return freeze_v1(*d, frozen);
    return error("cgroup",
                 "cannot freeze: neither a v2 cgroup.freeze nor the v1 freezer controller");
  }

  Result<void> destroy() override {
    // Remove as much as possible; report the first failure.
    Result<void> first;
    for (auto& h : v1_) {
      auto r = h.dir.destroy();
      if (!r && first) first = r;
    }
    if (unified_) {
      auto r = unified_->destroy();
      if (!r && first) first = r;
    }
    return first;
  }

  std::vector<std::string> paths() const override {
    std::vector<std::string> out;
    for (const auto& h : v1_) out.push_back(h.dir.dir);
    if (unified_) out.push_back(unified_->dir);
    return out;
  }

 private:
  const Hierarchy* find(std::string_view controller) const {
    for (const auto& h : v1_) {
      if (std::find(h.controllers.begin(), h.controllers.end(), controller) !=
          h.controllers.end()) {
        return &h;
      }
    }
    return nullptr;
  }

  const std::string* dir_of(std::string_view controller) const {
    const Hierarchy* h = find(controller);
    return h ? &h->dir.dir : nullptr;
  }

  Result<const std::string*> need(std::string_view controller, std::string_view what) const {
    if (const std::string* d = dir_of(controller)) return d;
    return error("cgroup", "{} needs the v1 {} controller, which is not mounted on this host", what,
                 controller);
  }

  bool can_freeze() const {
    return (unified_ && has_file(unified_->dir, "cgroup.freeze")) || dir_of("freezer");
  }

  // A new v1 cpuset cgroup starts with empty cpus and mems, and a task cannot
  // join it then (ENOSPC): fill every empty one on the way down from the
  // hierarchy's root with its parent's values, as runc's ensureParent does.
  Result<void> inherit_cpuset(const Hierarchy& h) const {
    std::string parent = h.mount;
    std::string_view rest = std::string_view(h.dir.dir).substr(h.mount.size());
    while (!rest.empty()) {
      size_t start = rest.find_first_not_of('/');
      if (start == std::string_view::npos) break;
      size_t end = rest.find('/', start);
      std::string cur = fs::join(parent, rest.substr(start, end - start));
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
      for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
        BERTH_ASSIGN(std::string value, read_file(cur, file));
        if (value.find_first_not_of(" \n") != std::string::npos) continue;
        BERTH_ASSIGN(std::string from_parent, read_file(parent, file));
        while (!from_parent.empty() && from_parent.back() == '\n') from_parent.pop_back();
        BERTH_TRY(write_file(cur, file, from_parent));
      }
      parent = std::move(cur);
    }
    return {};
  }

  Result<void> apply_memory(const std::string& dir, const MemoryResources& m) {
    static constexpr const char* kLimit = "memory.limit_in_bytes";
    static constexpr const char* kMemsw = "memory.memsw.limit_in_bytes";
    BERTH_ASSIGN(MemoryPlan plan, plan_memory(m));
    BERTH_ASSIGN(bool swap, swap_file_usable(plan, dir, kMemsw));
    BERTH_TRY(check_limit_above_usage(m, plan, dir, "memory.usage_in_bytes"));
    auto write_limit = [&] { return write_file(dir, kLimit, std::to_string(*plan.limit)); };
    auto write_memsw = [&] { return write_file(dir, kMemsw, std::to_string(*plan.swap_total)); };
    if (plan.limit && swap) {
      // The kernel keeps limit <= memsw at every write: raise memsw first when
      // it grows past the current limit, else lower the limit first (runc).
      BERTH_ASSIGN(uint64_t current, read_u64(dir, kLimit));
      if (*plan.swap_total == -1 || current < static_cast<uint64_t>(*plan.swap_total)) {
        BERTH_TRY(write_memsw());
        BERTH_TRY(write_limit());
      } else {
        BERTH_TRY(write_limit());
        BERTH_TRY(write_memsw());
      }
    } else if (plan.limit) {
      BERTH_TRY(write_limit());
    } else if (swap) {
      BERTH_TRY(write_memsw());
    }
    if (plan.reservation) {
      BERTH_TRY(write_file(dir, "memory.soft_limit_in_bytes", std::to_string(*plan.reservation)));
    }
    if (m.swappiness) {
      if (*m.swappiness > 100) {
        return error("cgroup", "linux.resources.memory.swappiness = {}: must be 0..100",
                     *m.swappiness);
      }
      BERTH_TRY(write_file(dir, "memory.swappiness", std::to_string(*m.swappiness)));
    }
    if (m.disable_oom_killer.value_or(false)) BERTH_TRY(write_file(dir, "memory.oom_control", "1"));
    if (m.kernel_tcp) {
      BERTH_TRY(write_field(dir, "memory.kmem.tcp.limit_in_bytes", std::to_string(*m.kernel_tcp),
                            "linux.resources.memory.kernelTCP", "no kernel TCP accounting"));
    }
    // runc and docker send 0 for "not set".
    if (m.kernel.value_or(0) != 0) BERTH_TRY(apply_kernel_memory(dir, *m.kernel));
    if (m.use_hierarchy) {
      // Linux 5.11 made every v1 memory cgroup hierarchical: "0" is refused.
      BERTH_TRY(write_field(dir, "memory.use_hierarchy", *m.use_hierarchy ? "1" : "0",
                            "linux.resources.memory.useHierarchy", "no hierarchy setting"));
    }
    return {};
  }

  // memory.kmem.limit_in_bytes: newer kernels keep the file but take any
  // write and go on without a limit, so the value is read back.
  Result<void> apply_kernel_memory(const std::string& dir, int64_t limit) {
    static constexpr const char* kKmem = "memory.kmem.limit_in_bytes";
    BERTH_TRY(write_field(dir, kKmem, std::to_string(limit), "linux.resources.memory.kernel",
                          "kernel memory limits are deprecated and gone from newer kernels"));
    if (limit == -1) return {};  // unlimited: what the kernel has anyway
    // The kernel rounds a limit down to whole pages.
    const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t want = static_cast<uint64_t>(limit) / page * page;
    BERTH_ASSIGN(uint64_t kept, read_u64(dir, kKmem));
    if (kept != want) {
      return errno_error("cgroup", EOPNOTSUPP,
                         "linux.resources.memory.kernel = {} cannot be applied: this kernel "
                         "accepted the write to {} but kept {} (it no longer enforces kernel "
                         "memory limits)",
                         limit, fs::join(dir, kKmem), kept);
    }
    return {};
  }

  Result<void> apply_network(const NetworkResources& n) {
    if (n.class_id) {
      BERTH_ASSIGN(const std::string* d, need("net_cls", "linux.resources.network.classID"));
      BERTH_TRY(write_file(*d, "net_cls.classid", std::to_string(*n.class_id)));
    }
    if (!n.priorities.empty()) {
      BERTH_ASSIGN(const std::string* d, need("net_prio", "linux.resources.network.priorities"));
      for (const auto& p : n.priorities) {
        BERTH_TRY(write_file(*d, "net_prio.ifpriomap", fmt::format("{} {}", p.name, p.priority)));
      }
    }
    return {};
  }

  // The directory of the v1 `controller`, or on a hybrid host of the v2 one
  // (enabled on the way down); second: whether it is the v2 one.
  Result<std::pair<std::string, bool>> v1_or_unified(std::string_view controller,
                                                     std::string_view what) {
    if (const std::string* d = dir_of(controller)) return std::pair{*d, false};
    if (!unified_) return std::unexpected(need(controller, what).error());
    BERTH_TRY(enable_v2_controller(*unified_, controller,
                                   fmt::format("{} (not mounted on v1 either)", what)));
    return std::pair{unified_->dir, true};
  }

  Result<void> apply_cpu(const CpuResources& c) {
    if (c.shares.value_or(0) != 0 || c.quota.value_or(0) != 0 || c.period.value_or(0) != 0 ||
        c.burst.value_or(0) != 0 || c.realtime_runtime.value_or(0) != 0 ||
        c.realtime_period.value_or(0) != 0 || c.idle.value_or(0) != 0) {
      BERTH_ASSIGN(const std::string* d, need("cpu", "linux.resources.cpu"));
      BERTH_TRY(apply_cpu_bandwidth(*d, c));
    }
    if (!c.cpus.empty() || !c.mems.empty()) {
      BERTH_ASSIGN(const std::string* d, need("cpuset", "linux.resources.cpu.cpus/mems"));
      if (!c.cpus.empty()) BERTH_TRY(write_file(*d, "cpuset.cpus", c.cpus));
      if (!c.mems.empty()) BERTH_TRY(write_file(*d, "cpuset.mems", c.mems));
    }
    return {};
  }

  Result<void> apply_cpu_bandwidth(const std::string& dir, const CpuResources& c) {
    if (c.shares.value_or(0) != 0) {
      BERTH_TRY(write_file(dir, "cpu.shares", std::to_string(*c.shares)));
      // The kernel clamps shares to 2..262144 silently; say so instead.
      BERTH_ASSIGN(uint64_t stored, read_u64(dir, "cpu.shares"));
      if (stored != *c.shares) {
        return error("cgroup",
                     "linux.resources.cpu.shares = {} is out of range (the kernel kept {})",
                     *c.shares, stored);
      }
    }
    const bool has_quota = c.quota.value_or(0) != 0;
    bool period_pending = false;
    if (c.period.value_or(0) != 0) {
      auto r = write_file(dir, "cpu.cfs_period_us", std::to_string(*c.period));
      // A shorter period can be refused (EINVAL) while the old quota/new
      // period ratio exceeds the parent's; it fits again once the quota is
      // written, so retry after it (runc).
      if (!r && !(r.error().err == EINVAL && has_quota)) return r;
      period_pending = !r;
    }
    if (has_quota) {
      BERTH_TRY(write_file(dir, "cpu.cfs_quota_us", std::to_string(*c.quota)));
      if (period_pending) {
        BERTH_TRY(write_file(dir, "cpu.cfs_period_us", std::to_string(*c.period)));
      }
    }
    // After the quota: the kernel keeps burst <= quota.
    if (c.burst.value_or(0) != 0) {
      BERTH_TRY(write_field(dir, "cpu.cfs_burst_us", std::to_string(*c.burst),
                            "linux.resources.cpu.burst", "CPU burst needs Linux 5.14"));
    }
    // The period first, as runc: a runtime is checked against it. A runtime
    // above what the parent's cpu.rt_runtime_us leaves free is refused.
    static constexpr const char* kNoRt = "the kernel is built without CONFIG_RT_GROUP_SCHED";
    if (c.realtime_period.value_or(0) != 0) {
      BERTH_TRY(write_field(dir, "cpu.rt_period_us", std::to_string(*c.realtime_period),
                            "linux.resources.cpu.realtimePeriod", kNoRt));
    }
    if (c.realtime_runtime.value_or(0) != 0) {
      BERTH_TRY(write_field(dir, "cpu.rt_runtime_us", std::to_string(*c.realtime_runtime),
                            "linux.resources.cpu.realtimeRuntime", kNoRt));
    }
    if (c.idle.value_or(0) != 0) {
      BERTH_TRY(write_field(dir, "cpu.idle", std::to_string(*c.idle), "linux.resources.cpu.idle",
                            "cpu.idle needs Linux 5.15"));
    }
    return {};
  }

  Result<void> apply_blkio(const std::string& dir, const BlockIoResources& b) {
    // With CFQ gone (Linux 5.0) the weights live in BFQ's files, when BFQ is
    // built; runc picks the same way.
    const bool bfq = has_file(dir, "blkio.bfq.weight");
    const char* weight_file = bfq ? "blkio.bfq.weight" : "blkio.weight";
    const char* weight_device_file = bfq ? "blkio.bfq.weight_device" : "blkio.weight_device";
    if (b.weight.value_or(0) != 0) {
      BERTH_TRY(write_file(dir, weight_file, std::to_string(*b.weight)));
    }
    for (const auto& d : b.weight_device) {
      BERTH_TRY(write_file(dir, weight_device_file, device_line(d, std::to_string(d.rate))));
    }
    static constexpr const char* kNoLeaf =
        "leaf weights belonged to the CFQ scheduler, removed in Linux 5.0; BFQ has none";
    if (b.leaf_weight.value_or(0) != 0) {
      BERTH_TRY(write_field(dir, "blkio.leaf_weight", std::to_string(*b.leaf_weight),
                            "linux.resources.blockIO.leafWeight", kNoLeaf));
    }
    for (const auto& d : b.leaf_weight_device) {
      BERTH_TRY(write_field(dir, "blkio.leaf_weight_device", device_line(d, std::to_string(d.rate)),
                            "linux.resources.blockIO.weightDevice[].leafWeight", kNoLeaf));
    }
    const std::pair<const std::vector<BlockIoDeviceValue>*, const char*> limits[] = {
        {&b.throttle_read_bps, "blkio.throttle.read_bps_device"},
        {&b.throttle_write_bps, "blkio.throttle.write_bps_device"},
        {&b.throttle_read_iops, "blkio.throttle.read_iops_device"},
        {&b.throttle_write_iops, "blkio.throttle.write_iops_device"},
    };
    for (const auto& [list, file] : limits) {
      for (const auto& d : *list) {
        BERTH_TRY(write_file(dir, file, device_line(d, std::to_string(d.rate))));
      }
    }
    return {};
  }

  Result<void> apply_devices(const std::string& dir, const std::vector<DeviceRule>& rules) {
    // Deny everything first, then apply the rules in order, as runc did
    // before its device emulator: the spec's list is a whitelist on top of
    // "deny all", whatever the cgroup inherited. The defaults come last, as
    // in runc, so that no spec can take /dev/null away.
    BERTH_TRY(write_file(dir, "devices.deny", "a"));
    for (const auto* list : {&rules, &default_device_rules()}) {
      for (const auto& r : *list) {
        BERTH_TRY(write_file(dir, r.allow ? "devices.allow" : "devices.deny", device_rule(r)));
      }
    }
    return {};
  }

  CgroupLayout::Mode mode_;
  std::vector<Hierarchy> v1_;
  std::optional<CgroupDir> unified_;
};

}  // namespace

std::unique_ptr<CgroupDriver> new_cgroup_v1(const CgroupLayout& layout, const Placement& p) {
  std::optional<CgroupDir> unified;
  if (!layout.unified_mount.empty()) {
    unified = CgroupDir::place(layout.unified_mount, layout.unified_own, p);
  }
  return std::make_unique<CgroupV1>(layout.mode, group_by_mount(layout, &p), std::move(unified));
}

Result<std::unique_ptr<CgroupDriver>> open_cgroup_v1(const CgroupLayout& layout,
                                                     const std::vector<std::string>& paths) {
  std::vector<Hierarchy> all = group_by_mount(layout, nullptr);
  std::vector<Hierarchy> used;
  std::optional<CgroupDir> unified;
  for (const auto& path : paths) {
    auto it =
        std::find_if(all.begin(), all.end(), [&](auto& h) { return is_under(path, h.mount); });
    if (it != all.end()) {
      it->dir = CgroupDir::recorded(path);
      used.push_back(*it);
    } else if (!layout.unified_mount.empty() && is_under(path, layout.unified_mount)) {
      unified = CgroupDir::recorded(path);
    } else {
      return error("cgroup", "recorded cgroup {} is under none of this host's cgroup mounts", path);
    }
  }
  return std::make_unique<CgroupV1>(layout.mode, std::move(used), std::move(unified));
}

}  // namespace berth::runtime::cgroup_util
