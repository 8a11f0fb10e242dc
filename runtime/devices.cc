#include "runtime/devices.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "runtime/mounts.h"

namespace berth::runtime {
namespace {

// Every container gets these (runc's AllowedDevices). /dev/core -> /proc/kcore
// is left out on purpose: kcore is the host's memory.
std::vector<Device> default_devices() {
  auto dev = [](const char* path, int64_t major, int64_t minor) {
    return Device{path, "c", major, minor, 0666, 0, 0};
  };
  return {dev("/dev/null", 1, 3),   dev("/dev/zero", 1, 5),    dev("/dev/full", 1, 7),
          dev("/dev/random", 1, 8), dev("/dev/urandom", 1, 9), dev("/dev/tty", 5, 0)};
}

// The defaults, less those the spec lists itself, then the spec's.
std::vector<Device> devices_to_create(const Spec& spec) {
  std::vector<Device> out;
  for (Device& d : default_devices()) {
    bool overridden = false;
    for (const Device& s : spec.linux.devices) {
      if (clean_path(s.path) == d.path) overridden = true;
    }
    if (!overridden) out.push_back(std::move(d));
  }
  out.insert(out.end(), spec.linux.devices.begin(), spec.linux.devices.end());
  return out;
}

Result<mode_t> node_type(const Device& d) {
  if (d.type == "c" || d.type == "u") return S_IFCHR;
  if (d.type == "b") return S_IFBLK;
  if (d.type == "p") return S_IFIFO;
  return error("devices", "device {}: unknown type \"{}\"", d.path, d.type);
}

Result<void> make_node(const RootDir& root, const Device& d) {
  BERTH_ASSIGN(mode_t type, node_type(d));
  std::string path = clean_path(d.path);
  size_t slash = path.rfind('/');
  std::string name = path.substr(slash + 1);
  if (name.empty() || name == "..")
    return error("devices", "device path \"{}\" names no file", d.path);
  BERTH_ASSIGN(UniqueFd dir, open_in_root(root, path.substr(0, slash), Create::directory));
  mode_t mode = type | (d.file_mode.value_or(0666) & 07777);
  dev_t dev = type == S_IFIFO ? 0 : makedev(d.major, d.minor);
  if (::mknodat(dir.get(), name.c_str(), mode, dev) != 0) {
    // A spec mount already put something here; what the spec mounted wins.
    if (errno == EEXIST) return {};
    return sys_error("devices", "mknod {}", root.where(path));
  }
  if (::fchownat(dir.get(), name.c_str(), d.uid.value_or(0), d.gid.value_or(0),
                 AT_SYMLINK_NOFOLLOW) != 0) {
    return sys_error("devices", "chown {} to {}:{}", root.where(path), d.uid.value_or(0),
                     d.gid.value_or(0));
  }
  return {};
}

// A user namespace may not mknod (nor would its nodes be usable: the devpts
// and tmpfs it mounts are "nodev" to the kernel), so the host's node is
// bound onto an empty file instead, as runc does.
Result<void> create_device(const RootDir& root, const Device& d, bool in_user_namespace) {
  if (in_user_namespace) return bind_file(root, d.path, d.path);
  return make_node(root, d);
}

Result<void> create_fd_links(const RootDir& root, int dev_fd) {
  static constexpr std::pair<const char*, const char*> kLinks[] = {
      {"fd", "/proc/self/fd"},
      {"stdin", "/proc/self/fd/0"},
      {"stdout", "/proc/self/fd/1"},
      {"stderr", "/proc/self/fd/2"},
  };
  for (auto [name, target] : kLinks) {
    if (::symlinkat(target, dev_fd, name) != 0 && errno != EEXIST) {
      return sys_error("devices", "symlink {} -> {}", root.where(std::string("/dev/") + name),
                       target);
    }
  }
  return {};
}

// /dev/ptmx must be the multiplexer of the container's own devpts instance,
// not the host's node, or its ptys would be allocated on the host.
Result<void> link_ptmx(const RootDir& root, int dev_fd) {
  if (::unlinkat(dev_fd, "ptmx", 0) != 0 && errno != ENOENT) {
    return sys_error("devices", "remove {}", root.where("/dev/ptmx"));
  }
  if (::symlinkat("pts/ptmx", dev_fd, "ptmx") != 0) {
    return sys_error("devices", "symlink {} -> pts/ptmx", root.where("/dev/ptmx"));
  }
  return {};
}

bool mounts_at(const Spec& spec, std::string_view dest, std::string_view type = {}) {
  for (const Mount& m : spec.mounts) {
    if (clean_path(m.destination) == dest && (type.empty() || m.type == type)) return true;
  }
  return false;
}

// Populates the /dev the spec mounted (a fresh tmpfs, normally).
Result<void> populate_mounted_dev(const Spec& spec, const RootDir& root, int dev_fd,
                                  bool in_user_namespace) {
  for (const Device& d : devices_to_create(spec)) {
    BERTH_TRY(create_device(root, d, in_user_namespace));
  }
  if (::mkdirat(dev_fd, "shm", 01777) != 0 && errno != EEXIST) {
    return sys_error("devices", "mkdir {}", root.where("/dev/shm"));
  }
  if (mounts_at(spec, "/dev/pts", "devpts")) BERTH_TRY(link_ptmx(root, dev_fd));
  return {};
}

class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t mask) : old_(::umask(mask)) {}
  ~UmaskGuard() { ::umask(old_); }
  UmaskGuard(const UmaskGuard&) = delete;
  UmaskGuard& operator=(const UmaskGuard&) = delete;

 private:
  mode_t old_;
};

// The parent directory of `path` in the root, or ENOENT; and the last name.
Result<std::pair<UniqueFd, std::string>> open_parent(const RootDir& root, const std::string& path) {
  const size_t slash = path.rfind('/');
  std::string name = path.substr(slash + 1);
  if (name.empty() || name == "..")
    return error("devices", "device path \"{}\" names no file", path);
  BERTH_ASSIGN(UniqueFd dir, open_in_root(root, path.substr(0, slash), Create::none));
  return std::pair{std::move(dir), std::move(name)};
}

}  // namespace

std::vector<std::string> device_nodes_to_create(const Spec& spec, const std::string& rootfs) {
  // populate_dev creates nodes only in a /dev the spec mounts.
  if (!mounts_at(spec, "/dev")) return {};
  auto root = RootDir::open(rootfs);
  if (!root) return {};
  std::vector<std::string> out;
  for (const Device& d : devices_to_create(spec)) {
    const std::string path = clean_path(d.path);
    auto parent = open_parent(*root, path);
    struct stat st;
    if (parent &&
        ::fstatat(parent->first.get(), parent->second.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      continue;  // the image's own file: never ours to remove
    }
    out.push_back(path);
  }
  return out;
}

Result<void> remove_device_nodes(const std::string& rootfs, const std::vector<std::string>& paths) {
  if (paths.empty()) return {};
  BERTH_ASSIGN(RootDir root, RootDir::open(rootfs));
  for (const std::string& path : paths) {
    auto parent = open_parent(root, path);
    if (!parent && parent.error().err == ENOENT) continue;
    if (!parent) return std::unexpected(std::move(parent).error());
    const auto& [dir, name] = *parent;
    struct stat st;
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // made on the container's own /dev
      return sys_error("devices", "stat {}", root.where(path));
    }
    // Only a node: whatever else is there now is not what create made.
    if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISFIFO(st.st_mode)) continue;
    if (::unlinkat(dir.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
      return sys_error("devices", "remove {}", root.where(path));
    }
  }
  return {};
}

Result<void> populate_dev(const Spec& spec, const std::string& rootfs, bool in_user_namespace,
                          const std::string& console_path) {
  UmaskGuard umask_zero(0);  // modes exactly as the spec gives them
  BERTH_ASSIGN(RootDir root, RootDir::open(rootfs));
  BERTH_ASSIGN(UniqueFd dev, open_in_root(root, "/dev", Create::directory));
  // Without a /dev mount the image's /dev is used as it is (runc's
  // needsSetupDev); it only gets the fd links it lacks.
  if (mounts_at(spec, "/dev")) {
    BERTH_TRY(populate_mounted_dev(spec, root, dev.get(), in_user_namespace));
  }
  BERTH_TRY(create_fd_links(root, dev.get()));
  if (!console_path.empty()) BERTH_TRY(bind_file(root, console_path, "/dev/console"));
  return {};
}

}  // namespace berth::runtime
