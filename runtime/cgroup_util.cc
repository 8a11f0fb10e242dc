#include "runtime/cgroup_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <thread>

#include "common/fd.h"
#include "common/fs.h"
#include "common/log.h"

namespace berth::runtime::cgroup_util {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string path_of(const std::string& dir, std::string_view file) {
  return fs::join(dir, file);
}

// rmdir once. Returns true when the directory is gone; EBUSY is reported as
// "not yet" (false) so the caller decides whether to wait.
Result<bool> try_rmdir(const std::string& path) {
  if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return true;
  if (errno == EBUSY) return false;
  return sys_error("cgroup", "rmdir {}", path);
}

// A cgroup the container made below its own (nested containers, systemd in
// the container) keeps the leaf busy, so remove the subtree bottom-up as
// runc's RemovePath does. Only directories: the interface files go with them.
Result<void> remove_tree(const std::string& path) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(path.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return {};
    return sys_error("cgroup", "opendir {}", path);
  }
  std::vector<std::string> children;
  while (dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string child = fs::join(path, name);
    struct stat st;
    bool is_dir = e->d_type == DT_DIR || (e->d_type == DT_UNKNOWN &&
                                          ::lstat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode));
    if (is_dir) children.push_back(std::move(child));
  }
  d.reset();
  for (const auto& c : children) BERTH_TRY(remove_tree(c));
  // Killed tasks leave their cgroup asynchronously after the kill returns.
  BERTH_ASSIGN(bool gone, poll_until(kSettleTimeout, [&] { return try_rmdir(path); }));
  if (!gone) {
    return errno_error("cgroup", EBUSY, "rmdir {} (processes still in it after {} ms)", path,
                       kSettleTimeout.count());
  }
  return {};
}

bool contains_word(std::string_view text, std::string_view word) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find_first_of(" \n", pos);
    if (end == std::string_view::npos) end = text.size();
    if (text.substr(pos, end - pos) == word) return true;
    pos = end + 1;
  }
  return false;
}

}  // namespace

Result<Placement> parse_cgroups_path(const std::string& cgroups_path,
                                     const std::string& default_name) {
  const std::string& path = cgroups_path.empty() ? default_name : cgroups_path;
  if (std::count(path.begin(), path.end(), ':') == 2) {
    return error("cgroup",
                 "cgroupsPath \"{}\" is in the systemd driver's \"slice:prefix:name\" form, but "
                 "berth has no systemd cgroup driver; give a path instead (e.g. \"/berth/<id>\", "
                 "or leave it empty for a cgroup named after the container below the caller's)",
                 path);
  }
  Placement p;
  p.absolute = path.starts_with('/');
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(pos, end - pos);
    pos = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return error("cgroup",
                   "cgroupsPath \"{}\" has a \"..\" component; the container's cgroup must stay "
                   "below the hierarchy it is placed in",
                   path);
    }
    p.parts.push_back(std::move(part));
  }
  if (p.parts.empty()) {
    return error("cgroup", "cgroupsPath \"{}\" names no cgroup below the hierarchy's root", path);
  }
  return p;
}

CgroupDir CgroupDir::place(const std::string& mount, const std::string& own, const Placement& p) {
  CgroupDir d;
  d.base = (p.absolute || own.empty() || own == "/") ? mount : fs::join(mount, own);
  d.parts = p.parts;
  d.dir = d.base;
  for (const auto& part : p.parts) d.dir = fs::join(d.dir, part);
  return d;
}

CgroupDir CgroupDir::recorded(const std::string& path) {
  CgroupDir d;
  size_t slash = path.find_last_of('/');
  d.base = slash == std::string::npos ? "." : path.substr(0, slash);
  d.parts = {path.substr(slash + 1)};
  d.dir = path;
  return d;
}

Result<void> CgroupDir::create() {
  std::string cur = base;
  for (const auto& part : parts) {
    cur = fs::join(cur, part);
    if (::mkdir(cur.c_str(), 0755) == 0) {
      made.push_back(cur);
    } else if (errno != EEXIST) {
      return sys_error("cgroup", "mkdir {}", cur);
    }
  }
  return {};
}

Result<void> CgroupDir::destroy() {
  BERTH_TRY(remove_tree(dir));
  for (auto it = made.rbegin(); it != made.rend(); ++it) {
    if (*it == dir) continue;
    // A parent we made may since hold another container's cgroup (two
    // containers under "a/b"): leave it then, it is not ours alone.
    if (::rmdir(it->c_str()) != 0 && errno != ENOENT) {
      if (errno != EBUSY && errno != ENOTEMPTY) return sys_error("cgroup", "rmdir {}", *it);
      log::debug("cgroup: keeping {}: still in use", *it);
    }
  }
  made.clear();
  return {};
}

std::vector<std::string> CgroupDir::ancestors() const {
  std::vector<std::string> out{base};
  std::string cur = base;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    cur = fs::join(cur, parts[i]);
    out.push_back(cur);
  }
  return out;
}

Result<void> write_file(const std::string& dir, std::string_view file, std::string_view value) {
  std::string path = path_of(dir, file);
  // O_TRUNC as runc does: cgroupfs ignores it, and a fixture file must not
  // keep the tail of a longer previous value.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!fd) return sys_error("cgroup", "write \"{}\" to {}", value, path);
  // One write(2): a cgroup file takes one value per write.
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("cgroup", "write \"{}\" to {}", value, path);
  if (static_cast<size_t>(n) != value.size()) {
    return error("cgroup", "write \"{}\" to {}: short write ({} of {} bytes)", value, path, n,
                 value.size());
  }
  return {};
}

Result<std::string> read_file(const std::string& dir, std::string_view file) {
  std::string path = path_of(dir, file);
  auto r = fs::read_file(path);
  if (!r) return errno_error("cgroup", r.error().err, "read {}", path);
  return std::move(*r);
}

bool has_file(const std::string& dir, std::string_view file) {
  return fs::exists(path_of(dir, file));
}

std::optional<uint64_t> parse_u64(std::string_view text) {
  text = trim(text);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

std::optional<uint64_t> keyed_value(std::string_view text, std::string_view key) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    size_t sp = line.find(' ');
    if (sp != std::string_view::npos && line.substr(0, sp) == key) {
      return parse_u64(line.substr(sp + 1));
    }
  }
  return std::nullopt;
}

Result<uint64_t> read_u64(const std::string& dir, std::string_view file) {
  BERTH_ASSIGN(std::string text, read_file(dir, file));
  auto v = parse_u64(text);
  if (!v) {
    return error("cgroup", "read {}: \"{}\" is not a number", path_of(dir, file), trim(text));
  }
  return *v;
}

Result<uint64_t> read_u64_or_zero(const std::string& dir, std::string_view file) {
  if (!has_file(dir, file)) return 0;
  return read_u64(dir, file);
}

Result<uint64_t> read_keyed_or_zero(const std::string& dir, std::string_view file,
                                    std::string_view key) {
  if (!has_file(dir, file)) return 0;
  BERTH_ASSIGN(std::string text, read_file(dir, file));
  return keyed_value(text, key).value_or(0);
}

Result<std::vector<pid_t>> read_procs(const std::string& dir) {
  BERTH_ASSIGN(std::string text, read_file(dir, "cgroup.procs"));
  std::vector<pid_t> out;
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (trim(line).empty()) continue;
    auto v = parse_u64(line);
    if (!v)
      return error("cgroup", "read {}: \"{}\" is not a pid", path_of(dir, "cgroup.procs"), line);
    out.push_back(static_cast<pid_t>(*v));
  }
  return out;
}

Result<void> signal_each(const std::vector<pid_t>& pids, int signal) {
  for (pid_t pid : pids) {
    // cgroup.procs shows 0 for a process outside the reader's pid
    // namespace, and kill(0) would signal our own process group.
    if (pid <= 0) continue;
    if (::kill(pid, signal) != 0 && errno != ESRCH) {
      return sys_error("cgroup", "kill({}, {})", pid, signal);
    }
  }
  return {};
}

Result<bool> poll_until(std::chrono::milliseconds timeout,
                        const std::function<Result<bool>()>& check) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + timeout;
  std::chrono::milliseconds pause{1};
  for (;;) {
    BERTH_ASSIGN(bool done, check());
    if (done) return true;
    auto now = clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::milliseconds{50});
  }
}

Result<MemoryPlan> plan_memory(const MemoryResources& m) {
  // runc and docker send 0 for "not set".
  auto norm = [](std::optional<int64_t> v,
                 std::string_view name) -> Result<std::optional<int64_t>> {
    if (!v || *v == 0) return std::nullopt;
    if (*v < -1) {
      return error("cgroup", "linux.resources.memory.{} = {}: must be -1 (unlimited) or bytes",
                   name, *v);
    }
    return v;
  };
  MemoryPlan plan;
  BERTH_ASSIGN(plan.limit, norm(m.limit, "limit"));
  BERTH_ASSIGN(plan.reservation, norm(m.reservation, "reservation"));
  BERTH_ASSIGN(plan.swap_total, norm(m.swap, "swap"));
  if (plan.swap_total && *plan.swap_total != -1) {
    if (!plan.limit || *plan.limit == -1) {
      return error("cgroup",
                   "linux.resources.memory.swap = {} needs a memory limit (swap is the "
                   "memory+swap total)",
                   *plan.swap_total);
    }
    if (*plan.swap_total < *plan.limit) {
      return error("cgroup",
                   "linux.resources.memory.swap = {} is below limit = {} (swap is the "
                   "memory+swap total, so it must be >= the limit)",
                   *plan.swap_total, *plan.limit);
    }
  } else if (!plan.swap_total && plan.limit == -1) {
    // As runc: unlimited memory with no swap given means unlimited swap too,
    // or the old memory+swap limit would still cap the container.
    plan.swap_total = -1;
  }
  return plan;
}

Result<bool> swap_file_usable(const MemoryPlan& plan, const std::string& dir,
                              std::string_view file) {
  if (!plan.swap_total) return false;
  if (has_file(dir, file)) return true;
  if (*plan.swap_total == -1 || plan.swap_total == plan.limit) {
    log::debug("cgroup: no {} (swap accounting off); swap = {} needs no swap limit", file,
               *plan.swap_total);
    return false;
  }
  return error("cgroup",
               "linux.resources.memory.swap = {} needs {}, which this kernel does not have "
               "(swap accounting is off; boot with swapaccount=1)",
               *plan.swap_total, path_of(dir, file));
}

std::string num_or_max(int64_t v) {
  return v < 0 ? "max" : std::to_string(v);
}

std::string pids_max(int64_t limit) {
  return limit > 0 ? std::to_string(limit) : "max";
}

std::string device_line(const BlockIoDeviceValue& d, std::string_view value) {
  return fmt::format("{}:{} {}", d.major, d.minor, value);
}

Result<void> freeze_unified(const std::string& dir, bool frozen) {
  BERTH_TRY(write_file(dir, "cgroup.freeze", frozen ? "1" : "0"));
  // cgroup.freeze only asks; the cgroup is frozen once every task has
  // stopped, which cgroup.events reports.
  const uint64_t want = frozen ? 1 : 0;
  BERTH_ASSIGN(bool done, poll_until(kSettleTimeout, [&]() -> Result<bool> {
                 BERTH_ASSIGN(std::string events, read_file(dir, "cgroup.events"));
                 return keyed_value(events, "frozen") == want;
               }));
  if (!done) {
    return error("cgroup", "{} did not report \"frozen {}\" in cgroup.events within {} ms",
                 path_of(dir, "cgroup.events"), want, kSettleTimeout.count());
  }
  return {};
}

Result<void> signal_frozen(CgroupDriver& d, int signal) {
  // Frozen, no task can fork a new one between reading cgroup.procs and the
  // signal reaching it.
  BERTH_TRY(d.freeze(true));
  auto pids = d.pids();
  Result<void> sent = pids ? signal_each(*pids, signal) : std::unexpected(pids.error());
  // Thaw even when signalling failed, or the container would stay frozen.
  auto thawed = d.freeze(false);
  if (!sent) return sent;
  return thawed;
}

bool subtree_has(std::string_view subtree_control, std::string_view controller) {
  return contains_word(subtree_control, controller);
}

Result<void> enable_subtree_controller(const std::string& dir, std::string_view controller) {
  auto r = write_file(dir, "cgroup.subtree_control", fmt::format("+{}", controller));
  if (r || r.error().err != EBUSY) return r;
  return wrap(r.error(),
              fmt::format("{} has processes, and cgroup v2 lets no cgroup with processes "
                          "enable controllers for its children (the no-internal-process "
                          "rule); use an absolute cgroupsPath in a delegated subtree (e.g. "
                          "\"/berth/<id>\")",
                          dir));
}

Result<void> enable_v2_controller(const CgroupDir& d, std::string_view controller,
                                  std::string_view what) {
  for (const auto& a : d.ancestors()) {
    BERTH_ASSIGN(std::string available, read_file(a, "cgroup.controllers"));
    if (!subtree_has(available, controller)) {
      return error("cgroup", "{} needs the {} controller, which {} does not offer", what,
                   controller, a);
    }
    BERTH_ASSIGN(std::string enabled, read_file(a, "cgroup.subtree_control"));
    if (!subtree_has(enabled, controller)) BERTH_TRY(enable_subtree_controller(a, controller));
  }
  return {};
}

Result<void> write_hugepage_limits(const std::string& dir, const std::vector<HugepageLimit>& limits,
                                   std::string_view suffix) {
  for (size_t i = 0; i < limits.size(); ++i) {
    const HugepageLimit& h = limits[i];
    const std::string file = fmt::format("hugetlb.{}.{}", h.page_size, suffix);
    if (!has_file(dir, file)) {
      return errno_error("cgroup", ENOENT,
                         "linux.resources.hugepageLimits[{}].pageSize \"{}\": this host has no "
                         "such huge page size ({} is missing)",
                         i, h.page_size, path_of(dir, file));
    }
    BERTH_TRY(write_file(dir, file, std::to_string(h.limit)));
  }
  return {};
}

Result<void> refuse_v1_only(const Resources& res, std::string_view why) {
  // Absent swappiness and disableOOMKiller false ask for nothing.
  if (res.memory && res.memory->swappiness) {
    return errno_error("cgroup", EOPNOTSUPP,
                       "linux.resources.memory.swappiness = {} cannot be applied: {} has no "
                       "per-cgroup swappiness (memory.swappiness is cgroup v1 only)",
                       *res.memory->swappiness, why);
  }
  if (res.memory && res.memory->disable_oom_killer.value_or(false)) {
    return errno_error("cgroup", EOPNOTSUPP,
                       "linux.resources.memory.disableOOMKiller cannot be applied: {} cannot "
                       "disable the OOM killer for a cgroup (memory.oom_control is cgroup v1 "
                       "only; memory.oom.group only chooses what it kills)",
                       why);
  }
  if (res.memory && res.memory->kernel_tcp) {
    return errno_error("cgroup", EOPNOTSUPP,
                       "linux.resources.memory.kernelTCP cannot be applied: {} has no TCP buffer "
                       "limit (memory.kmem.tcp.* is cgroup v1 only)",
                       why);
  }
  if (res.memory && res.memory->kernel.value_or(0) != 0) {
    return errno_error("cgroup", EOPNOTSUPP,
                       "linux.resources.memory.kernel cannot be applied: {} has no kernel memory "
                       "limit (memory.kmem.limit_in_bytes is cgroup v1 only, and deprecated)",
                       why);
  }
  if (res.memory && !res.memory->use_hierarchy.value_or(true)) {
    return errno_error("cgroup", EOPNOTSUPP,
                       "linux.resources.memory.useHierarchy = false cannot be applied: {} "
                       "always accounts memory hierarchically",
                       why);
  }
  if (res.cpu &&
      (res.cpu->realtime_runtime.value_or(0) != 0 || res.cpu->realtime_period.value_or(0) != 0)) {
    return errno_error(
        "cgroup", EOPNOTSUPP,
        "linux.resources.cpu.{} cannot be applied: {} has no realtime CPU budget "
        "(cpu.rt_runtime_us and cpu.rt_period_us are cgroup v1 only)",
        res.cpu->realtime_runtime.value_or(0) != 0 ? "realtimeRuntime" : "realtimePeriod", why);
  }
  if (res.block_io &&
      (res.block_io->leaf_weight.value_or(0) != 0 || !res.block_io->leaf_weight_device.empty())) {
    return errno_error(
        "cgroup", EOPNOTSUPP,
        "linux.resources.blockIO.{} cannot be applied: {} has no leaf weights "
        "(blkio.leaf_weight* belonged to the CFQ scheduler on cgroup v1)",
        res.block_io->leaf_weight.value_or(0) != 0 ? "leafWeight" : "weightDevice[].leafWeight",
        why);
  }
  if (res.network) {
    return errno_error("cgroup", EOPNOTSUPP,
                       "linux.resources.network cannot be applied: {} has no net_cls/net_prio "
                       "controllers (cgroup v1 only)",
                       why);
  }
  return {};
}

Result<void> write_field(const std::string& dir, std::string_view file, std::string_view value,
                         std::string_view field, std::string_view absent_why) {
  if (!has_file(dir, file)) {
    return errno_error("cgroup", EOPNOTSUPP, "{} cannot be applied: this kernel has no {} ({})",
                       field, path_of(dir, file), absent_why);
  }
  auto r = write_file(dir, file, value);
  if (!r) return wrap(r.error(), fmt::format("{} = {}", field, value));
  return {};
}

Result<void> check_limit_above_usage(const MemoryResources& m, const MemoryPlan& plan,
                                     const std::string& dir, std::string_view usage_file) {
  if (!m.check_before_update.value_or(false) || !plan.limit || *plan.limit < 0) return {};
  BERTH_ASSIGN(uint64_t usage, read_u64_or_zero(dir, usage_file));
  if (static_cast<uint64_t>(*plan.limit) < usage) {
    return errno_error("cgroup", EBUSY,
                       "linux.resources.memory.limit = {} is below the cgroup's current usage "
                       "of {} bytes ({}), and checkBeforeUpdate refuses that",
                       *plan.limit, usage, path_of(dir, usage_file));
  }
  return {};
}

Result<void> write_rdma_limits(const std::string& dir,
                               const std::map<std::string, RdmaLimit>& rdma) {
  auto count = [](const std::optional<uint32_t>& v) {
    return v ? std::to_string(*v) : std::string("max");
  };
  for (const auto& [device, l] : rdma) {
    BERTH_TRY(write_field(dir, "rdma.max",
                          fmt::format("{} hca_handle={} hca_object={}", device,
                                      count(l.hca_handles), count(l.hca_objects)),
                          fmt::format("linux.resources.rdma[\"{}\"]", device),
                          "the rdma controller is not enabled for this cgroup"));
  }
  return {};
}

}  // namespace berth::runtime::cgroup_util
