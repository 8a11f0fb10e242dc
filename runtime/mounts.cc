#include "runtime/mounts.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/fs.h"

namespace berth::runtime {

namespace {

enum class OptionKind { set, clear, propagation };

struct OptionEntry {
  std::string_view name;
  unsigned long flags;
  OptionKind kind;
};

// The option names of mount(8) that are mount(2) flags rather than
// filesystem data.
constexpr OptionEntry kOptions[] = {
    {"async", MS_SYNCHRONOUS, OptionKind::clear},
    {"atime", MS_NOATIME, OptionKind::clear},
    {"bind", MS_BIND, OptionKind::set},
    {"defaults", 0, OptionKind::set},
    {"dev", MS_NODEV, OptionKind::clear},
    {"diratime", MS_NODIRATIME, OptionKind::clear},
    {"dirsync", MS_DIRSYNC, OptionKind::set},
    {"exec", MS_NOEXEC, OptionKind::clear},
    {"iversion", MS_I_VERSION, OptionKind::set},
    {"lazytime", MS_LAZYTIME, OptionKind::set},
    {"loud", MS_SILENT, OptionKind::clear},
    {"mand", MS_MANDLOCK, OptionKind::set},
    {"noatime", MS_NOATIME, OptionKind::set},
    {"nodev", MS_NODEV, OptionKind::set},
    {"nodiratime", MS_NODIRATIME, OptionKind::set},
    {"noexec", MS_NOEXEC, OptionKind::set},
    {"noiversion", MS_I_VERSION, OptionKind::clear},
    {"nolazytime", MS_LAZYTIME, OptionKind::clear},
    {"nomand", MS_MANDLOCK, OptionKind::clear},
    {"norelatime", MS_RELATIME, OptionKind::clear},
    {"nostrictatime", MS_STRICTATIME, OptionKind::clear},
    {"nosuid", MS_NOSUID, OptionKind::set},
    {"rbind", MS_BIND | MS_REC, OptionKind::set},
    {"relatime", MS_RELATIME, OptionKind::set},
    {"remount", MS_REMOUNT, OptionKind::set},
    {"ro", MS_RDONLY, OptionKind::set},
    {"rw", MS_RDONLY, OptionKind::clear},
    {"silent", MS_SILENT, OptionKind::set},
    {"strictatime", MS_STRICTATIME, OptionKind::set},
    {"suid", MS_NOSUID, OptionKind::clear},
    {"sync", MS_SYNCHRONOUS, OptionKind::set},
    {"private", MS_PRIVATE, OptionKind::propagation},
    {"rprivate", MS_PRIVATE | MS_REC, OptionKind::propagation},
    {"shared", MS_SHARED, OptionKind::propagation},
    {"rshared", MS_SHARED | MS_REC, OptionKind::propagation},
    {"slave", MS_SLAVE, OptionKind::propagation},
    {"rslave", MS_SLAVE | MS_REC, OptionKind::propagation},
    {"unbindable", MS_UNBINDABLE, OptionKind::propagation},
    {"runbindable", MS_UNBINDABLE | MS_REC, OptionKind::propagation},
};

const OptionEntry* find_option(std::string_view name) {
  for (const OptionEntry& e : kOptions) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

// "ro,nosuid" for error messages.
std::string flag_names(unsigned long flags) {
  std::string out;
  for (const OptionEntry& e : kOptions) {
    if (e.kind != OptionKind::set || e.flags == 0 || e.name == "rbind") continue;
    if ((flags & e.flags) != e.flags) continue;
    if (!out.empty()) out += ',';
    out += e.name;
  }
  return out;
}

constexpr unsigned long kNotForMount = MS_BIND | MS_REC | MS_REMOUNT;

std::vector<std::string> components(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view c = path.substr(0, slash);
    if (!c.empty() && c != ".") out.emplace_back(c);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

std::string join_components(const std::vector<std::string>& parts, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  return out.empty() ? "." : out;
}

// Returns an fd or -errno.
int openat2_in_root(int root_fd, const std::string& rel) {
  struct open_how how = {};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0;; ++attempt) {
    long fd = ::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    // With ".." in the path the kernel gives up with EAGAIN when any rename
    // or mount ran concurrently anywhere, rather than risk an escape.
    if (errno != EAGAIN || attempt == 100) return -errno;
  }
}

// RESOLVE_IN_ROOT by hand for kernels without openat2: one component at a
// time with O_NOFOLLOW, symlinks read and restarted from the root when
// absolute, ".." never above the root. Returns an fd or -errno.
int walk_in_root(int root_fd, const std::vector<std::string>& parts, size_t n) {
  std::deque<std::string> todo(parts.begin(), parts.begin() + static_cast<ptrdiff_t>(n));
  std::vector<UniqueFd> stack;
  stack.emplace_back(::openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!stack.back()) return -errno;
  int links = 0;
  while (!todo.empty()) {
    std::string name = std::move(todo.front());
    todo.pop_front();
    if (name == "..") {
      if (stack.size() > 1) stack.pop_back();
      continue;
    }
    UniqueFd next(::openat(stack.back().get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return -errno;
    struct stat st;
    if (::fstat(next.get(), &st) != 0) return -errno;
    if (!S_ISLNK(st.st_mode)) {
      stack.push_back(std::move(next));
      continue;
    }
    if (++links > 40) return -ELOOP;  // the kernel's MAXSYMLINKS
    char buf[PATH_MAX];
    ssize_t len = ::readlinkat(next.get(), "", buf, sizeof buf);
    if (len < 0) return -errno;
    if (static_cast<size_t>(len) == sizeof buf) return -ENAMETOOLONG;
    std::string_view target(buf, static_cast<size_t>(len));
    if (target.starts_with('/')) stack.erase(stack.begin() + 1, stack.end());
    std::vector<std::string> more = components(target);
    todo.insert(todo.begin(), more.begin(), more.end());
  }
  return stack.back().release();
}

// Resolves the first n components. Returns an fd or -errno.
int resolve(int root_fd, const std::vector<std::string>& parts, size_t n, Resolver resolver) {
  static bool openat2_missing = false;
  if (resolver == Resolver::walk || (resolver == Resolver::automatic && openat2_missing)) {
    return walk_in_root(root_fd, parts, n);
  }
  int fd = openat2_in_root(root_fd, join_components(parts, n));
  if (fd == -ENOSYS && resolver == Resolver::automatic) {
    openat2_missing = true;
    return walk_in_root(root_fd, parts, n);
  }
  return fd;
}

Result<void> make_entry(const RootDir& root, int parent_fd, const std::string& name, bool file,
                        std::string_view path) {
  if (file) {
    UniqueFd fd(::openat(parent_fd, name.c_str(),
                         O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!fd && errno != EEXIST) return sys_error("rootfs", "create {}", root.where(path));
    return {};
  }
  if (::mkdirat(parent_fd, name.c_str(), 0755) != 0 && errno != EEXIST) {
    return sys_error("rootfs", "mkdir {} for {}", name, root.where(path));
  }
  return {};
}

// Creates what is missing one component at a time, resolving every prefix
// from the root again so that a symlink met on the way is followed inside it.
Result<UniqueFd> create_in_root(const RootDir& root, const std::vector<std::string>& parts,
                                std::string_view path, Create create, Resolver resolver) {
  UniqueFd current(resolve(root.fd.get(), parts, 0, resolver));
  if (!current) return sys_error("rootfs", "open {}", root.path);
  for (size_t i = 0; i < parts.size(); ++i) {
    int fd = resolve(root.fd.get(), parts, i + 1, resolver);
    if (fd == -ENOENT) {
      bool file = create == Create::file && i + 1 == parts.size();
      BERTH_TRY(make_entry(root, current.get(), parts[i], file, path));
      // A dangling symlink makes mkdirat say EEXIST and this ENOENT again.
      fd = resolve(root.fd.get(), parts, i + 1, resolver);
    }
    if (fd < 0) return errno_error("rootfs", -fd, "resolve {}", root.where(path));
    current.reset(fd);
  }
  return current;
}

int do_mount(const char* source, const std::string& target, const char* type, unsigned long flags,
             const std::string& data) {
  return ::mount(source, target.c_str(), type, flags, data.empty() ? nullptr : data.c_str());
}

Result<void> apply_propagation(const RootDir& root, std::string_view dest,
                               unsigned long propagation) {
  if (propagation == 0) return {};
  // Reopened: the fd used to mount names the directory under the new mount.
  BERTH_ASSIGN(UniqueFd target, open_in_root(root, dest, Create::none));
  if (::mount(nullptr, proc_fd_path(target.get()).c_str(), nullptr, propagation, nullptr) != 0) {
    return sys_error("mount", "set propagation {:#x} on {}", propagation, root.where(dest));
  }
  return {};
}

Result<void> mount_filesystem(const RootDir& root, std::string_view dest, const std::string& type,
                              const std::string& source, const MountFlags& o) {
  BERTH_ASSIGN(UniqueFd target, open_in_root(root, dest, Create::directory));
  const std::string& src = source.empty() ? type : source;
  if (do_mount(src.c_str(), proc_fd_path(target.get()), type.c_str(), o.flags & ~kNotForMount,
               o.data) != 0) {
    return sys_error("mount", "mount {} on {}", type, root.where(dest));
  }
  return apply_propagation(root, dest, o.propagation);
}

Result<void> mount_bind(const RootDir& root, std::string_view dest, const std::string& source,
                        const MountFlags& o, bool in_user_namespace) {
  struct stat st;
  if (::stat(source.c_str(), &st) != 0) {
    return sys_error("mount", "stat bind source {} for {}", source, root.where(dest));
  }
  Create create = S_ISDIR(st.st_mode) ? Create::directory : Create::file;
  BERTH_ASSIGN(UniqueFd target, open_in_root(root, dest, create));
  unsigned long flags = MS_BIND | (o.recursive ? MS_REC : 0);
  if (::mount(source.c_str(), proc_fd_path(target.get()).c_str(), nullptr, flags, nullptr) != 0) {
    return sys_error("mount", "bind {} on {}", source, root.where(dest));
  }
  // A new bind mount takes no flag but MS_REC; ro, nosuid, ... need a
  // remount. It changes the top mount only, as with runc ("rro" is not
  // supported).
  if ((o.flags & ~kNotForMount) != 0) {
    BERTH_TRY(remount_bind(root, dest, o.flags & ~kNotForMount, in_user_namespace));
  }
  return apply_propagation(root, dest, o.propagation);
}

// Without a network namespace of its own a user namespace may not mount
// sysfs (EPERM); runc then binds the host's /sys, read-only if asked.
Result<void> mount_sysfs_fallback(const RootDir& root, std::string_view dest, const MountFlags& o) {
  MountFlags bind = o;
  bind.bind = bind.recursive = true;
  return mount_bind(root, dest, "/sys", bind, /*in_user_namespace=*/true);
}

bool is_octal(char c) {
  return c >= '0' && c <= '7';
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && is_octal(s[i + 1]) && is_octal(s[i + 2]) &&
        is_octal(s[i + 3])) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (;;) {
    size_t pos = s.find(sep);
    out.emplace_back(s.substr(0, pos));
    if (pos == std::string_view::npos) return out;
    s.remove_prefix(pos + 1);
  }
}

Result<std::set<std::string>> kernel_cgroup_controllers() {
  BERTH_ASSIGN(std::string text, fs::read_file("/proc/cgroups"));
  std::set<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (!line.empty() && line[0] != '#') out.emplace(line.substr(0, line.find_first_of(" \t")));
    pos = end + 1;
  }
  return out;
}

// A named hierarchy ("systemd") is mounted with "name=systemd".
std::string cgroup_v1_option(const std::string& controller, const std::set<std::string>& known) {
  if (controller.find('=') != std::string::npos || known.contains(controller)) return controller;
  return "name=" + controller;
}

// The options to mount the v1 hierarchy at `mount_point` with: all of its
// controllers, as the host mounted it (the layout lists only those berth
// manages, and a subset of a co-mounted set fails with EBUSY); never the
// host's other options (release_agent=, CVE-2022-0492).
std::string cgroup_v1_options(const std::string& mount_point, const CgroupLayout& layout,
                              const std::vector<MountInfo>& mounts,
                              const std::set<std::string>& known) {
  std::string out;
  auto add = [&out](const std::string& option) {
    if (!out.empty()) out += ',';
    out += option;
  };
  for (const MountInfo& m : mounts) {
    if (m.fstype != "cgroup" || m.mount_point != mount_point) continue;
    for (const std::string& o : m.super_options) {
      if (known.contains(o) || o.starts_with("name=")) add(o);
    }
    if (!out.empty()) return out;
  }
  for (const CgroupLayout::V1& c : layout.v1) {
    if (c.mount == mount_point) add(cgroup_v1_option(c.controller, known));
  }
  return out;
}

std::string base_name(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// The cgroup this process is in, in the hierarchy that has `controller`
// ("" for v2), as /proc/self/cgroup says: without a cgroup namespace it is
// the full path from the hierarchy's root.
Result<std::string> current_cgroup(const std::string& controller) {
  BERTH_ASSIGN(std::string text, fs::read_file("/proc/self/cgroup"));
  for (const std::string& line : split(text, '\n')) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    for (const std::string& c : split(std::string_view(line).substr(a + 1, b - a - 1), ',')) {
      if (c == controller) return line.substr(b + 1);
    }
  }
  return error("mount", "/proc/self/cgroup: no hierarchy with \"{}\"", controller);
}

// cgroupfs, or where the kernel refuses it (a user namespace without a cgroup
// namespace of its own) this process's cgroup directory bound from the host,
// as runc does. The child is in the container's cgroup by now.
Result<void> mount_cgroupfs(const RootDir& root, const std::string& dest, const char* type,
                            const std::string& data, unsigned long flags,
                            const std::string& hierarchy, const std::string& controller,
                            bool in_user_namespace) {
  BERTH_ASSIGN(UniqueFd target, open_in_root(root, dest, Create::directory));
  std::string path = proc_fd_path(target.get());
  if (do_mount(type, path, type, flags, data) == 0) return {};
  if (errno != EPERM || !in_user_namespace) {
    return sys_error("mount", "mount {} {} on {}", type, data, root.where(dest));
  }
  BERTH_ASSIGN(std::string own, current_cgroup(controller));
  std::string host_dir = fs::join(hierarchy, own);
  if (::mount(host_dir.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return sys_error("mount", "bind {} on {}", host_dir, root.where(dest));
  }
  return remount_bind(root, dest, flags, /*keep_current=*/true);
}

// Hybrid and legacy hosts: a tmpfs with one cgroupfs per v1 hierarchy (and
// the v2 tree as "unified"), as the host lays them out. The child is in its
// cgroup namespace already, so each shows its own cgroup as the root.
Result<void> mount_cgroup_v1(const RootDir& root, const std::string& dest, const MountFlags& o,
                             bool in_user_namespace, const CgroupLayout& layout) {
  unsigned long flags = o.flags & ~kNotForMount;
  MountFlags tmpfs = o;
  tmpfs.flags &= ~MS_RDONLY;  // read-only after the hierarchies are in place
  tmpfs.data = "mode=755";
  tmpfs.propagation = 0;
  BERTH_TRY(mount_filesystem(root, dest, "tmpfs", "tmpfs", tmpfs));
  BERTH_ASSIGN(std::set<std::string> known, kernel_cgroup_controllers());
  BERTH_ASSIGN(std::vector<MountInfo> host_mounts, read_mountinfo());
  BERTH_ASSIGN(UniqueFd dir, open_in_root(root, dest, Create::none));
  std::set<std::string> done;
  for (const CgroupLayout::V1& h : layout.v1) {
    if (!done.insert(h.mount).second) continue;
    std::string name = base_name(h.mount);
    BERTH_TRY(mount_cgroupfs(root, dest + "/" + name, "cgroup",
                             cgroup_v1_options(h.mount, layout, host_mounts, known), flags, h.mount,
                             cgroup_v1_option(h.controller, known), in_user_namespace));
  }
  // "cpu" -> "cpu,cpuacct", as hosts link co-mounted controllers.
  for (const CgroupLayout::V1& c : layout.v1) {
    std::string name = base_name(c.mount);
    if (c.controller == name || c.controller.find('=') != std::string::npos) continue;
    if (::symlinkat(name.c_str(), dir.get(), c.controller.c_str()) != 0 && errno != EEXIST) {
      return sys_error("mount", "symlink {} -> {}", root.where(dest + "/" + c.controller), name);
    }
  }
  if (!layout.unified_mount.empty()) {
    BERTH_TRY(mount_cgroupfs(root, dest + "/" + base_name(layout.unified_mount), "cgroup2", "",
                             flags, layout.unified_mount, "", in_user_namespace));
  }
  if (flags & MS_RDONLY) BERTH_TRY(remount_bind(root, dest, flags, /*keep_current=*/true));
  return apply_propagation(root, dest, o.propagation);
}

Result<void> mount_cgroup(const RootDir& root, const Mount& m, const MountFlags& o,
                          bool in_user_namespace, const CgroupLayout* layout) {
  std::string dest = clean_path(m.destination);
  if (layout == nullptr) {
    return error("mount", "mount cgroup on {}: no cgroup layout given", root.where(dest));
  }
  if (layout->mode != CgroupLayout::Mode::unified) {
    return mount_cgroup_v1(root, dest, o, in_user_namespace, *layout);
  }
  BERTH_TRY(mount_cgroupfs(root, dest, "cgroup2", o.data, o.flags & ~kNotForMount,
                           layout->unified_mount, "", in_user_namespace));
  return apply_propagation(root, dest, o.propagation);
}

}  // namespace

MountFlags parse_mount_options(const std::vector<std::string>& options) {
  MountFlags out;
  for (const std::string& opt : options) {
    if (opt.empty()) continue;
    const OptionEntry* e = find_option(opt);
    if (e == nullptr) {
      if (!out.data.empty()) out.data += ',';
      out.data += opt;
      continue;
    }
    // Later options win over earlier ones, as in mount(8): "ro,rw" is rw.
    switch (e->kind) {
      case OptionKind::set:
        out.flags |= e->flags;
        out.clear &= ~e->flags;
        break;
      case OptionKind::clear:
        out.flags &= ~e->flags;
        out.clear |= e->flags;
        break;
      case OptionKind::propagation:
        out.propagation = e->flags;
        break;
    }
  }
  out.bind = (out.flags & MS_BIND) != 0;
  out.recursive = out.bind && (out.flags & MS_REC) != 0;
  return out;
}

Result<RootDir> RootDir::open(const std::string& path) {
  RootDir root;
  root.path = path;
  root.fd.reset(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.fd) return sys_error("rootfs", "open root {}", path);
  return root;
}

std::string RootDir::where(std::string_view dest) const {
  return fmt::format("{} (in {})", dest, path);
}

Result<UniqueFd> open_in_root(const RootDir& root, std::string_view path, Create create,
                              Resolver resolver) {
  std::vector<std::string> parts = components(path);
  int fd = resolve(root.fd.get(), parts, parts.size(), resolver);
  if (fd >= 0) return UniqueFd(fd);
  if (fd != -ENOENT || create == Create::none) {
    return errno_error("rootfs", -fd, "resolve {}", root.where(path));
  }
  return create_in_root(root, parts, path, create, resolver);
}

std::string proc_fd_path(int fd) {
  return fmt::format("/proc/self/fd/{}", fd);
}

std::string clean_path(std::string_view path) {
  std::vector<std::string> parts = components(path);
  std::string out;
  for (const std::string& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

Result<unsigned long> mount_flags_to_keep(int fd, unsigned long requested) {
  struct statvfs st;
  if (::fstatvfs(fd, &st) != 0) return sys_error("mount", "statvfs {}", proc_fd_path(fd));
  // statvfs has its own ST_* bits (ST_RELATIME is not MS_RELATIME).
  constexpr std::pair<unsigned long, unsigned long> kLocked[] = {
      {ST_RDONLY, MS_RDONLY}, {ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC}};
  constexpr std::pair<unsigned long, unsigned long> kAtime[] = {
      {ST_NOATIME, MS_NOATIME}, {ST_RELATIME, MS_RELATIME}, {ST_NODIRATIME, MS_NODIRATIME}};
  unsigned long keep = 0;
  for (auto [st_flag, ms_flag] : kLocked) {
    if (st.f_flag & st_flag) keep |= ms_flag;
  }
  if ((requested & (MS_NOATIME | MS_RELATIME | MS_STRICTATIME)) != 0) return keep;
  for (auto [st_flag, ms_flag] : kAtime) {
    if (st.f_flag & st_flag) keep |= ms_flag;
  }
  // Neither noatime nor relatime is strictatime, which a remount without an
  // atime flag would turn into relatime.
  if ((keep & (MS_NOATIME | MS_RELATIME)) == 0) keep |= MS_STRICTATIME;
  return keep;
}

Result<void> remount_bind(const RootDir& root, std::string_view dest, unsigned long flags,
                          bool keep_current) {
  BERTH_ASSIGN(UniqueFd target, open_in_root(root, dest, Create::none));
  if (keep_current) {
    BERTH_ASSIGN(unsigned long keep, mount_flags_to_keep(target.get(), flags));
    flags |= keep;
  }
  if (::mount(nullptr, proc_fd_path(target.get()).c_str(), nullptr, MS_REMOUNT | MS_BIND | flags,
              nullptr) != 0) {
    return sys_error("mount", "remount {} {}", root.where(dest), flag_names(flags));
  }
  return {};
}

Result<std::vector<MountInfo>> read_mountinfo(const std::string& path) {
  BERTH_ASSIGN(std::string text, fs::read_file(path));
  std::vector<MountInfo> out;
  for (const std::string& line : split(text, '\n')) {
    // id parent major:minor root mount_point options [optional...] - fstype source super
    if (line.empty()) continue;
    std::vector<std::string> f = split(line, ' ');
    auto dash = std::find(f.begin() + std::min<size_t>(f.size(), 6), f.end(), "-");
    if (f.size() < 10 || f.end() - dash < 4) {
      return error("mount", "{}: malformed line \"{}\"", path, line);
    }
    MountInfo m;
    m.mount_point = unescape_mountinfo(f[4]);
    m.optional.assign(f.begin() + 6, dash);
    m.fstype = dash[1];
    m.super_options = split(dash[3], ',');
    out.push_back(std::move(m));
  }
  return out;
}

Result<void> mount_entry(const RootDir& root, const Mount& m, bool in_user_namespace,
                         const CgroupLayout* cgroups) {
  MountFlags o = parse_mount_options(m.options);
  std::string dest = clean_path(m.destination);
  if (m.type == "bind" || o.bind) return mount_bind(root, dest, m.source, o, in_user_namespace);
  if (m.type == "cgroup") return mount_cgroup(root, m, o, in_user_namespace, cgroups);
  auto r = mount_filesystem(root, dest, m.type, m.source, o);
  if (!r && r.error().err == EPERM && m.type == "sysfs" && in_user_namespace) {
    return mount_sysfs_fallback(root, dest, o);
  }
  return r;
}

Result<void> bind_file(const RootDir& root, const std::string& source, std::string_view dest) {
  BERTH_ASSIGN(UniqueFd target, open_in_root(root, dest, Create::file));
  if (::mount(source.c_str(), proc_fd_path(target.get()).c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return sys_error("mount", "bind {} on {}", source, root.where(dest));
  }
  return {};
}

}  // namespace berth::runtime
