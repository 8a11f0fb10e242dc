// The cgroup v2 driver: one directory in the unified hierarchy.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>

#include "common/fs.h"
#include "common/log.h"
#include "runtime/cgroup_util.h"
#include "runtime/devices_bpf.h"

namespace berth::runtime::cgroup_util {
namespace {

// The controllers the driver writes to: failing to enable one of them is an
// error. Others listed in cgroup.controllers (hugetlb, rdma, misc) are
// enabled when possible, for linux.resources.unified.
constexpr std::array<std::string_view, 5> kUsedControllers = {"cpuset", "cpu", "io", "memory",
                                                              "pids"};

// blkio.weight (10..1000) to io.weight (1..10000), as runc converts it.
uint64_t blkio_weight_to_io_weight(uint64_t w) {
  w = std::clamp<uint64_t>(w, 10, 1000);
  return 1 + (w - 10) * 9999 / 990;
}

class CgroupV2 final : public CgroupDriver {
 public:
  CgroupV2(CgroupDir dir, bool fixture_tree) : dir_(std::move(dir)), fixture_tree_(fixture_tree) {}

  Result<void> create() override {
    BERTH_TRY(dir_.create());
    // Top-down: a cgroup can only enable what its parent enabled for it.
    for (const auto& a : dir_.ancestors()) {
      if (auto r = enable_controllers(a); !r) {
        (void)dir_.destroy();  // what create() made; the caller has no driver to clean up with
        return r;
      }
    }
    return {};
  }

  Result<void> apply(const Resources& res) override {
    BERTH_TRY(apply_limits(res));
    // Always, also without rules: v2 has no devices files, and a cgroup
    // without a device program lets the container open any node it can
    // mknod (CAP_MKNOD, a /dev without nodev). No program, no container.
    return apply_devices(res.devices);
  }

  Result<void> apply_limits(const Resources& res) override {
    BERTH_TRY(refuse_v1_only(res, "cgroup v2"));
    if (res.memory) BERTH_TRY(apply_memory(*res.memory));
    if (res.cpu) BERTH_TRY(apply_cpu(*res.cpu));
    if (res.pids_limit) BERTH_TRY(write_file(dir_.dir, "pids.max", pids_max(*res.pids_limit)));
    if (res.block_io) BERTH_TRY(apply_io(*res.block_io));
    if (!res.rdma.empty()) {
      BERTH_TRY(enable_v2_controller(dir_, "rdma", "linux.resources.rdma"));
      BERTH_TRY(write_rdma_limits(dir_.dir, res.rdma));
    }
    if (!res.hugepage_limits.empty()) {
      // create() enabled hugetlb where the tree offers it; this names the
      // field when it does not.
      BERTH_TRY(enable_v2_controller(dir_, "hugetlb", "linux.resources.hugepageLimits"));
      BERTH_TRY(write_hugepage_limits(dir_.dir, res.hugepage_limits, "max"));
    }
    // Last, so that raw values override the typed ones, as in runc.
    return apply_unified(res.unified);
  }

  Result<void> enable_for_children() override { return enable_controllers(dir_.dir); }

  // The spec's rules, then the defaults (as the v1 driver writes them), as
  // a BPF_PROG_TYPE_CGROUP_DEVICE program on the container's cgroup.
  Result<void> apply_devices(const std::vector<DeviceRule>& spec_rules) {
    std::vector<DeviceRule> rules = spec_rules;
    const auto& defaults = default_device_rules();
    rules.insert(rules.end(), defaults.begin(), defaults.end());
    BERTH_ASSIGN(std::vector<bpf_insn> prog, device_filter_program(rules));
    BERTH_ASSIGN(UniqueFd dir, open_unified_dir());
    struct statfs fs_info {};
    if (::fstatfs(dir.get(), &fs_info) != 0) return sys_error("cgroup", "statfs {}", dir_.dir);
    if (fs_info.f_type != CGROUP2_SUPER_MAGIC) {
      // A unit test's tree of regular files has no cgroup to attach to;
      // anywhere else the container would run without its device rules.
      if (fixture_tree_) {
        log::debug("cgroup: {} is a fixture tree; no device program", dir_.dir);
        return {};
      }
      return errno_error("cgroup", ENOTSUP,
                         "device rules for {}: not on a cgroup2 filesystem, so no device program "
                         "can be attached; refusing to run without one",
                         dir_.dir);
    }
    if (auto r = attach_device_filter(dir.get(), prog); !r) {
      return wrap(r.error(), fmt::format("device rules for {}", dir_.dir));
    }
    return {};
  }

  Result<void> add_process(pid_t pid) override {
    return write_file(dir_.dir, "cgroup.procs", std::to_string(pid));
  }

  Result<std::vector<UniqueFd>> open_self_join_files() override {
    return std::vector<UniqueFd>{};  // CLONE_INTO_CGROUP places the child
  }

  Result<UniqueFd> open_unified_dir() override {
    UniqueFd fd(::open(dir_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("cgroup", "open {}", dir_.dir);
    return fd;
  }

  Result<CgroupStats> stats() override {
    // A controller not enabled for the cgroup has no files: its stats read 0.
    CgroupStats s;
    BERTH_ASSIGN(s.cpu_usage_usec, read_keyed_or_zero(dir_.dir, "cpu.stat", "usage_usec"));
    BERTH_ASSIGN(s.memory_current, read_u64_or_zero(dir_.dir, "memory.current"));
    // memory.peak appeared in Linux 5.19.
    BERTH_ASSIGN(s.memory_peak, read_u64_or_zero(dir_.dir, "memory.peak"));
    BERTH_ASSIGN(s.pids_current, read_u64_or_zero(dir_.dir, "pids.current"));
    BERTH_ASSIGN(s.oom_kills, read_keyed_or_zero(dir_.dir, "memory.events", "oom_kill"));
    return s;
  }

  Result<std::vector<pid_t>> pids() override { return read_procs(dir_.dir); }

  Result<void> kill_all(int signal) override {
    // cgroup.kill (Linux 5.14) kills every task, forks in flight included.
    if (signal == SIGKILL && has_file(dir_.dir, "cgroup.kill")) {
      return write_file(dir_.dir, "cgroup.kill", "1");
    }
    return signal_frozen(*this, signal);
  }

  Result<void> freeze(bool frozen) override { return freeze_unified(dir_.dir, frozen); }

  Result<void> destroy() override { return dir_.destroy(); }

  std::vector<std::string> paths() const override { return {dir_.dir}; }

 private:
  Result<void> enable_controllers(const std::string& dir) {
    BERTH_ASSIGN(std::string available, read_file(dir, "cgroup.controllers"));
    BERTH_ASSIGN(std::string enabled, read_file(dir, "cgroup.subtree_control"));
    std::string_view rest = available;
    while (!rest.empty()) {
      size_t end = rest.find_first_of(" \n");
      std::string_view c = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      // Already enabled: no write, so a populated caller cgroup whose
      // controllers were delegated enabled works.
      if (c.empty() || subtree_has(enabled, c)) continue;
      BERTH_TRY(refuse_internal_processes(dir));
      BERTH_TRY(enable_controller(dir, c));
    }
    return {};
  }

  static std::string internal_process_message(const std::string& dir) {
    return fmt::format(
        "{} has processes, and cgroup v2 lets no cgroup with processes enable controllers "
        "for its children (the no-internal-process rule); use an absolute cgroupsPath in a "
        "delegated subtree (e.g. \"/berth/<id>\")",
        dir);
  }

  // Checked before the first write: enabling the threaded controllers
  // (cpuset, cpu) in a non-root cgroup with processes works and makes it a
  // thread root, and the domain ones then fail with EOPNOTSUPP, leaving the
  // caller's cgroup half changed. The root cgroup (no cgroup.type) may.
  Result<void> refuse_internal_processes(const std::string& dir) {
    if (::access(fs::join(dir, "cgroup.type").c_str(), F_OK) != 0) return {};
    auto procs = read_file(dir, "cgroup.procs");
    if (!procs || procs->find_first_not_of(" \n") == std::string::npos) return {};
    return errno_error("cgroup", EBUSY, "{}", internal_process_message(dir));
  }

  Result<void> enable_controller(const std::string& dir, std::string_view c) {
    auto r = enable_subtree_controller(dir, c);
    if (r) return {};
    if (r.error().err == EBUSY) return wrap(r.error(), internal_process_message(dir));
    if (std::find(kUsedControllers.begin(), kUsedControllers.end(), c) == kUsedControllers.end()) {
      log::debug("cgroup: not enabling {}: {}", c, r.error().str());
      return {};
    }
    return r;
  }

  Result<void> apply_memory(const MemoryResources& m) {
    BERTH_ASSIGN(MemoryPlan plan, plan_memory(m));
    BERTH_ASSIGN(bool swap, swap_file_usable(plan, dir_.dir, "memory.swap.max"));
    BERTH_TRY(check_limit_above_usage(m, plan, dir_.dir, "memory.current"));
    if (plan.limit) BERTH_TRY(write_file(dir_.dir, "memory.max", num_or_max(*plan.limit)));
    if (swap) {
      // The runtime-spec's swap is memory+swap; memory.swap.max is swap alone.
      int64_t total = *plan.swap_total;
      std::string v = total == -1 ? "max" : std::to_string(total - *plan.limit);
      BERTH_TRY(write_file(dir_.dir, "memory.swap.max", v));
    }
    if (plan.reservation) {
      BERTH_TRY(write_file(dir_.dir, "memory.low", num_or_max(*plan.reservation)));
    }
    return {};
  }

  Result<void> apply_cpu(const CpuResources& c) {
    if (c.shares.value_or(0) != 0) {
      BERTH_TRY(
          write_file(dir_.dir, "cpu.weight", std::to_string(cpu_shares_to_weight(*c.shares))));
    }
    if (c.quota.value_or(0) != 0 || c.period.value_or(0) != 0) {
      // Without a period the kernel keeps the current one.
      std::string v = c.quota.value_or(0) > 0 ? std::to_string(*c.quota) : "max";
      if (c.period.value_or(0) != 0) v += " " + std::to_string(*c.period);
      BERTH_TRY(write_file(dir_.dir, "cpu.max", v));
    }
    // After cpu.max: the kernel keeps the burst within the quota.
    if (c.burst.value_or(0) != 0) {
      BERTH_TRY(write_field(dir_.dir, "cpu.max.burst", std::to_string(*c.burst),
                            "linux.resources.cpu.burst", "CPU burst needs Linux 5.14"));
    }
    if (c.idle.value_or(0) != 0) {
      BERTH_TRY(write_field(dir_.dir, "cpu.idle", std::to_string(*c.idle),
                            "linux.resources.cpu.idle", "cpu.idle needs Linux 5.15"));
    }
    if (!c.cpus.empty()) BERTH_TRY(write_file(dir_.dir, "cpuset.cpus", c.cpus));
    if (!c.mems.empty()) BERTH_TRY(write_file(dir_.dir, "cpuset.mems", c.mems));
    return {};
  }

  Result<void> apply_io(const BlockIoResources& b) {
    // BFQ takes blkio-style weights in its own file; io.weight (the
    // io.cost controller) has a 1..10000 range.
    const bool bfq = has_file(dir_.dir, "io.bfq.weight");
    auto weight = [&](uint64_t w) {
      return std::to_string(bfq ? w : blkio_weight_to_io_weight(w));
    };
    const char* weight_file = bfq ? "io.bfq.weight" : "io.weight";
    if (b.weight.value_or(0) != 0) BERTH_TRY(write_file(dir_.dir, weight_file, weight(*b.weight)));
    for (const auto& d : b.weight_device) {
      BERTH_TRY(write_file(dir_.dir, weight_file, device_line(d, weight(d.rate))));
    }
    const std::pair<const std::vector<BlockIoDeviceValue>*, const char*> limits[] = {
        {&b.throttle_read_bps, "rbps"},
        {&b.throttle_write_bps, "wbps"},
        {&b.throttle_read_iops, "riops"},
        {&b.throttle_write_iops, "wiops"},
    };
    for (const auto& [list, key] : limits) {
      for (const auto& d : *list) {
        BERTH_TRY(
            write_file(dir_.dir, "io.max", device_line(d, fmt::format("{}={}", key, d.rate))));
      }
    }
    return {};
  }

  Result<void> apply_unified(const std::map<std::string, std::string>& unified) {
    for (const auto& [key, value] : unified) {
      // The key names a file in the container's own cgroup, never a path
      // out of it.
      if (key.empty() || key.find('/') != std::string::npos ||
          key.find("..") != std::string::npos) {
        return error("cgroup",
                     "linux.resources.unified key \"{}\" must be a file name in the container's "
                     "cgroup (no '/' or \"..\")",
                     key);
      }
      auto r = write_file(dir_.dir, key, value);
      if (!r && r.error().err == ENOENT) {
        return wrap(r.error(), fmt::format("linux.resources.unified \"{}\": no such file (is its "
                                           "controller available to this cgroup?)",
                                           key));
      }
      BERTH_TRY(r);
    }
    return {};
  }

  CgroupDir dir_;
  bool fixture_tree_ = false;  // CgroupLayout::fixture_tree
};

}  // namespace

std::unique_ptr<CgroupDriver> new_cgroup_v2(CgroupDir dir, bool fixture_tree) {
  return std::make_unique<CgroupV2>(std::move(dir), fixture_tree);
}

}  // namespace berth::runtime::cgroup_util
