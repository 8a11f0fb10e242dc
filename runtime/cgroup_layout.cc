// CgroupLayout::detect: which cgroup hierarchies are mounted where
// (/proc/self/mountinfo) and where the caller sits in each (/proc/self/cgroup).
#include <algorithm>
#include <array>
#include <map>
#include <string_view>

#include "common/fs.h"
#include "common/log.h"
#include "runtime/cgroup.h"

namespace berth::runtime {
namespace {

// The v1 controllers the driver places containers in. Others (net_cls,
// perf_event, hugetlb, ...) and named hierarchies (name=systemd) are left
// alone.
constexpr std::array<std::string_view, 8> kV1Controllers = {
    "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer", "devices"};

struct MountEntry {
  std::string root;   // the subtree of the hierarchy that is mounted
  std::string point;  // where
  std::string fstype;
  std::vector<std::string> super_options;
};

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  for (;;) {
    size_t end = s.find(sep, pos);
    out.push_back(s.substr(pos, end == std::string_view::npos ? end : end - pos));
    if (end == std::string_view::npos) return out;
    pos = end + 1;
  }
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      auto oct = [](char c) { return c >= '0' && c <= '7'; };
      if (oct(s[i + 1]) && oct(s[i + 2]) && oct(s[i + 3])) {
        out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// "36 25 0:31 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory"
std::optional<MountEntry> parse_mountinfo_line(std::string_view line) {
  std::vector<std::string_view> f = split(line, ' ');
  auto sep = std::find(f.begin() + std::min<size_t>(f.size(), 6), f.end(), "-");
  if (f.size() < 7 || sep == f.end() || f.end() - sep < 4) return std::nullopt;
  MountEntry e;
  e.root = unescape(f[3]);
  e.point = unescape(f[4]);
  e.fstype = std::string(sep[1]);
  for (auto o : split(sep[3], ',')) e.super_options.emplace_back(o);
  return e;
}

// "4:memory:/a/b" -> {"memory": "/a/b"}; "0::/x" -> {"": "/x"}.
std::map<std::string, std::string, std::less<>> parse_proc_cgroup(std::string_view text) {
  std::map<std::string, std::string, std::less<>> out;
  for (auto line : split(text, '\n')) {
    size_t a = line.find(':');
    size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    std::string path(line.substr(b + 1));
    for (auto c : split(line.substr(a + 1, b - a - 1), ',')) out.emplace(std::string(c), path);
  }
  return out;
}

// /proc/self/cgroup names paths from the hierarchy's root; a mount of a
// subtree (a container's /sys/fs/cgroup) shows them below its own root.
std::string own_in_mount(const std::string& cgroup_path, const std::string& mount_root) {
  if (mount_root == "/") return cgroup_path;
  if (cgroup_path == mount_root) return "/";
  if (cgroup_path.starts_with(mount_root + "/")) return cgroup_path.substr(mount_root.size());
  log::debug("cgroup: {} is outside the mounted subtree {}; using it as is", cgroup_path,
             mount_root);
  return cgroup_path;
}

bool is_v1_controller(std::string_view name) {
  return std::find(kV1Controllers.begin(), kV1Controllers.end(), name) != kV1Controllers.end();
}

Result<std::string> read_text(const std::string& path) {
  auto r = fs::read_file(path);
  if (!r) return errno_error("cgroup", r.error().err, "read {}", path);
  return std::move(*r);
}

}  // namespace

Result<CgroupLayout> CgroupLayout::detect(const std::string& mountinfo_path,
                                          const std::string& cgroup_path) {
  BERTH_ASSIGN(std::string mountinfo, read_text(mountinfo_path));
  BERTH_ASSIGN(std::string self, read_text(cgroup_path));
  auto own = parse_proc_cgroup(self);
  CgroupLayout l;
  std::optional<MountEntry> v2;
  for (auto line : split(mountinfo, '\n')) {
    auto e = parse_mountinfo_line(line);
    if (!e) continue;
    if (e->fstype == "cgroup2" && !v2) v2 = e;
    if (e->fstype != "cgroup") continue;
    for (const auto& c : e->super_options) {
      // The first mount of a hierarchy wins; later ones are bind mounts.
      bool seen = std::any_of(l.v1.begin(), l.v1.end(), [&](auto& v) { return v.controller == c; });
      if (!is_v1_controller(c) || seen) continue;
      auto it = own.find(c);
      if (it == own.end()) {
        return error("cgroup", "{} is mounted at {} but {} has no line for it", c, e->point,
                     cgroup_path);
      }
      l.v1.push_back({c, e->point, own_in_mount(it->second, e->root)});
    }
  }
  if (!v2 && l.v1.empty()) {
    return error("cgroup", "no cgroup filesystem is mounted (per {})", mountinfo_path);
  }
  if (v2) {
    auto it = own.find("");
    if (it == own.end()) {
      return error("cgroup", "cgroup2 is mounted at {} but {} has no \"0::\" line", v2->point,
                   cgroup_path);
    }
    l.unified_mount = v2->point;
    l.unified_own = own_in_mount(it->second, v2->root);
  }
  if (l.v1.empty()) {
    l.mode = Mode::unified;
    l.root = l.unified_mount;
  } else {
    l.mode = v2 ? Mode::hybrid : Mode::legacy;
    const std::string& first = l.v1.front().mount;
    l.root = first.substr(0, std::max<size_t>(first.find_last_of('/'), 1));
  }
  log::debug("cgroup: {} layout: v2 tree {}, {} v1 controllers under {}", l.mode_name(),
             l.unified_mount.empty() ? "none" : l.unified_mount, l.v1.size(), l.root);
  return l;
}

const char* CgroupLayout::mode_name() const {
  switch (mode) {
    case Mode::unified:
      return "unified";
    case Mode::hybrid:
      return "hybrid";
    case Mode::legacy:
      return "legacy";
  }
  return "unknown";
}

}  // namespace berth::runtime
