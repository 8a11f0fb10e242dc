#include "controlplane/agent/cgroup_layout.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <set>

#include "common/fs.h"

namespace berth::cp {

namespace {

struct Hierarchy {
  std::string mount;
  std::string own;  // berthd's base in it (".daemon" stripped)
  std::string controller;
};

std::string strip_daemon(const std::string& own, const std::string& name) {
  std::string suffix = "/" + name + ".daemon";
  if (own.ends_with(suffix)) {
    std::string base = own.substr(0, own.size() - suffix.size());
    return base.empty() ? "/" : base;
  }
  return own;
}

std::string below(const std::string& base, const std::string& leaf) {
  return base == "/" ? "/" + leaf : base + "/" + leaf;
}

std::vector<Hierarchy> hierarchies(const runtime::CgroupLayout& l, const std::string& name) {
  std::vector<Hierarchy> out;
  std::set<std::string> seen;
  if (!l.unified_mount.empty()) {
    out.push_back({l.unified_mount, strip_daemon(l.unified_own, name), ""});
    seen.insert(l.unified_mount);
  }
  for (const auto& v : l.v1) {
    if (!seen.insert(v.mount).second) continue;
    out.push_back({v.mount, strip_daemon(v.own, name), v.controller});
  }
  return out;
}

// rmdir of `dir`'s child cgroups (deepest first), then of `dir`.
Result<void> rmdir_tree(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return {};
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_directory(ec) && !e.is_symlink(ec)) BERTH_TRY(rmdir_tree(e.path().string()));
  }
  // A killed process leaves its cgroup asynchronously: retry EBUSY briefly.
  for (int i = 0; i < 100; ++i) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY) break;
    ::usleep(10000);
  }
  return sys_error("cgroup", "rmdir {}", dir);
}

// mkdir -p of a cgroup; a v1 cpuset cgroup starts with empty cpus and mems
// (no process may join it then): they are copied from its parent.
Result<void> make_cgroup(const std::string& dir) {
  BERTH_TRY(fs::mkdir_p(dir));
  for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
    std::string path = dir + "/" + file;
    if (!fs::exists(path)) continue;
    BERTH_ASSIGN(std::string value, fs::read_file(path));
    if (value.find_first_not_of(" \n") != std::string::npos) continue;
    std::string parent = dir.substr(0, dir.rfind('/')) + "/" + file;
    BERTH_ASSIGN(std::string inherited, fs::read_file(parent));
    BERTH_TRY(fs::write_file(path, inherited));
  }
  return {};
}

}  // namespace

Result<AgentCgroups> AgentCgroups::setup(const std::string& name, bool move_self) {
  BERTH_ASSIGN(auto layout, runtime::CgroupLayout::detect());
  return setup(layout, name, move_self);
}

Result<AgentCgroups> AgentCgroups::setup(const runtime::CgroupLayout& layout,
                                         const std::string& name, bool move_self) {
  if (name.empty() || name.find('/') != std::string::npos || name.starts_with(".")) {
    return error("cgroup", "cgroup name {:?} must be one path component", name);
  }
  auto hs = hierarchies(layout, name);
  if (hs.empty()) return error("cgroup", "no cgroup hierarchy is mounted");
  AgentCgroups c;
  // The reference hierarchy for the task subtree: memory, else the first
  // (the unified tree when there is one).
  const Hierarchy* ref = &hs.front();
  for (const auto& h : hs) {
    if (h.controller == "memory") ref = &h;
  }
  c.tasks_parent_ = below(ref->own, name);
  for (const auto& h : hs) {
    std::string shims = h.mount + below(h.own, name + ".shims");
    BERTH_TRY(make_cgroup(shims));
    c.shims_dirs_.push_back(shims);
    c.task_roots_.push_back(h.mount + c.tasks_parent_);
    c.own_dirs_.push_back(h.mount + (h.own == "/" ? "" : h.own));
  }
  c.unified_ = layout.mode == runtime::CgroupLayout::Mode::unified;
  if (c.unified_) c.unified_tasks_ = layout.unified_mount + c.tasks_parent_;
  for (const auto& v : layout.v1) {
    if (v.controller == "cpuacct") c.cpuacct_tasks_ = v.mount + c.tasks_parent_;
    if (v.controller == "memory") c.memory_tasks_ = v.mount + c.tasks_parent_;
  }
  if (move_self) {
    std::string pid = std::to_string(::getpid());
    for (const auto& h : hs) {
      std::string daemon = h.mount + below(h.own, name + ".daemon");
      BERTH_TRY(make_cgroup(daemon));
      BERTH_TRY(fs::write_file(daemon + "/cgroup.procs", pid));
    }
  }
  return c;
}

Result<void> AgentCgroups::add_shim(pid_t pid) const {
  std::string text = std::to_string(pid);
  for (const auto& dir : shims_dirs_) {
    auto r = fs::write_file(dir + "/cgroup.procs", text);
    if (!r) return wrap(r.error(), "moving shim " + text + " into " + dir);
  }
  return {};
}

std::vector<std::string> AgentCgroups::task_cgroups() const {
  std::set<std::string> names;
  for (const auto& root : task_roots_) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
      if (e.is_directory(ec)) names.insert(e.path().filename().string());
    }
  }
  return {names.begin(), names.end()};
}

Result<void> AgentCgroups::remove_task(const std::string& task) const {
  Result<void> first;
  for (const auto& root : task_roots_) {
    auto r = rmdir_tree(root + "/" + task);
    if (!r && first) first = r;
  }
  return first;
}

Result<std::optional<CgroupCounters>> AgentCgroups::task_counters(const std::string& task) const {
  if (task.empty() || task.find('/') != std::string::npos || task.starts_with(".")) {
    return error("cgroup", "task cgroup name {:?} must be one path component", task);
  }
  std::optional<CgroupCounters> out;
  if (unified_) {
    std::string dir = unified_tasks_ + "/" + task;
    if (!fs::exists(dir)) return out;
    BERTH_ASSIGN(out, read_cgroup_v2_counters(dir));
    return out;
  }
  if (cpuacct_tasks_.empty() || memory_tasks_.empty()) {
    return error("cgroup", "this host mounts no v1 {} hierarchy: no usage counters",
                 cpuacct_tasks_.empty() ? "cpuacct" : "memory");
  }
  std::string cpu = cpuacct_tasks_ + "/" + task, mem = memory_tasks_ + "/" + task;
  if (!fs::exists(cpu) && !fs::exists(mem)) return out;
  BERTH_ASSIGN(out, read_cgroup_v1_counters(cpu, mem));
  return out;
}

Result<void> AgentCgroups::remove_empty() const {
  Result<void> first;
  for (size_t i = 0; i < task_roots_.size(); ++i) {
    auto r = rmdir_tree(task_roots_[i]);
    if (!r && first) first = r;
    // In a hierarchy where berthd sits elsewhere than in the reference one,
    // the task subtree's ancestors were made for it (by the shims): those
    // left empty go too, up to berthd's own cgroup. A busy one stays.
    std::string dir = task_roots_[i];
    while (r && dir.size() > own_dirs_[i].size() && dir.starts_with(own_dirs_[i] + "/")) {
      dir = dir.substr(0, dir.rfind('/'));
      if (dir.size() <= own_dirs_[i].size() || ::rmdir(dir.c_str()) != 0) break;
    }
  }
  for (const auto& dir : shims_dirs_) {
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT && first) {
      first = sys_error("cgroup", "rmdir {}", dir);
    }
  }
  return first;
}

}  // namespace berth::cp
