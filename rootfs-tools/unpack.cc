#include "rootfs-tools/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/fd.h"
#include "common/fs.h"
#include "rootfs-tools/paths.h"

namespace berth::rootfs {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

struct ArchiveDeleter {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveDeleter>;

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

// A directory whose mode and mtime are applied after all entries: creating
// children would bump the mtime, and a 0555 directory could not receive them.
struct PendingDir {
  uint32_t node;
  mode_t mode;
  struct timespec mtime;
  bool implicit = false;  // a parent the archive did not list (see inherit_parent)
};

// The paths of the layer, interned as a tree of components: memory is linear
// in the archive (a path is never stored once per prefix), and an entry's
// parent is found from its own node.
struct PathTree {
  struct Node {
    uint32_t parent;
    uint32_t depth;
    std::string name;
    bool written = false;  // this layer created it (or something below it)
    bool listed = false;   // the archive has a directory entry for it
  };
  std::vector<Node> nodes{Node{0, 0, {}}};
  std::unordered_map<std::string, uint32_t> index;  // "<parent>/<name>" -> node

  static std::string key(uint32_t parent, std::string_view name) {
    return fmt::format("{}/{}", parent, name);
  }
  std::optional<uint32_t> find(uint32_t parent, std::string_view name) const {
    auto it = index.find(key(parent, name));
    if (it == index.end()) return std::nullopt;
    return it->second;
  }
  uint32_t intern(uint32_t parent, const std::string& name) {
    auto [it, added] = index.try_emplace(key(parent, name), static_cast<uint32_t>(nodes.size()));
    if (added) nodes.push_back(Node{parent, nodes[parent].depth + 1, name});
    return it->second;
  }
  // The node of comps[0..n).
  uint32_t intern(const std::vector<std::string>& comps, size_t n) {
    uint32_t id = 0;
    for (size_t i = 0; i < n; ++i) id = intern(id, comps[i]);
    return id;
  }
  // "a/b/c" (for messages and the lower layers' lookups).
  std::string path(uint32_t id) const {
    std::vector<uint32_t> up;
    for (; id != 0; id = nodes[id].parent) up.push_back(id);
    std::string out;
    for (auto it = up.rbegin(); it != up.rend(); ++it) {
      if (!out.empty()) out += '/';
      out += nodes[*it].name;
    }
    return out;
  }
};

// The directory opened last, with the chain of its ancestors: the next entry
// (in a tar, usually a sibling or a child) is reached by going up with ".."
// to the common ancestor and down from there, so an entry costs the distance
// from the previous one, not its depth. One fd is kept, whatever the depth.
struct DirCache {
  struct Step {
    uint32_t node;
    dev_t dev;
    ino_t ino;
  };
  std::vector<Step> chain;  // root first; chain[i].node has depth i
  UniqueFd fd;              // chain.back()'s directory
};

// Everything about the layer being unpacked, so that helpers stay small.
struct Unpacker {
  std::string archive_path;
  UnpackOptions opts;
  UniqueFd root;
  UnpackStats stats;
  uint64_t entries = 0;
  PathTree tree;
  DirCache cache;
  std::vector<uint32_t> opaque_dirs;  // apply mode: cleared at the end
  std::vector<PendingDir> dirs;
  std::vector<UniqueFd> lowers;  // overlay mode: the layers below, top first

  template <class... Args>
  std::unexpected<Error> fail(std::string_view entry, int err, fmt::format_string<Args...> f,
                              Args&&... args) const {
    // A hostile entry name may be tens of KiB long: its head is enough.
    std::string shown(entry.substr(0, 256));
    if (entry.size() > 256) shown += fmt::format("...({} bytes)", entry.size());
    return errno_error("unpack", err, "{}: entry \"{}\": {}", archive_path, shown,
                       fmt::format(f, std::forward<Args>(args)...));
  }

  // Forgets the cached chain (after a directory was removed: a fd in it may
  // now name a deleted directory).
  Result<void> reset_cache() {
    cache.chain.clear();
    cache.fd.reset(::fcntl(root.get(), F_DUPFD_CLOEXEC, 0));
    if (!cache.fd) return sys_error("unpack", "{}: dup directory fd", archive_path);
    struct stat st;
    if (::fstat(cache.fd.get(), &st) != 0)
      return sys_error("unpack", "{}: stat root", archive_path);
    cache.chain.push_back({0, st.st_dev, st.st_ino});
    return {};
  }
};

// Refuses what could name something outside the layer directory, and paths
// beyond the limits; returns the path's components ("./a//b/" -> {a, b}).
// The root itself yields none. `what` prefixes the reason when `path` is not
// the entry's own path.
Result<std::vector<std::string>> normalize(const Unpacker& u, std::string_view entry,
                                           std::string_view path, std::string_view what = "") {
  const UnpackLimits& lim = u.opts.limits;
  if (lim.max_path != 0 && path.size() > lim.max_path)
    return u.fail(entry, 0, "{}path length {} exceeds the limit of {} bytes (max_path)", what,
                  path.size(), lim.max_path);
  if (path.starts_with('/')) return u.fail(entry, 0, "{}absolute path", what);
  auto comps = split_path(path);
  for (const auto& c : comps) {
    if (c == "..") return u.fail(entry, 0, "{}path contains \"..\"", what);
  }
  if (lim.max_depth != 0 && comps.size() > lim.max_depth)
    return u.fail(entry, 0, "{}path depth {} exceeds the limit of {} levels (max_depth)", what,
                  comps.size(), lim.max_depth);
  return comps;
}

// A parent directory the archive does not list, created because an entry
// below it is: in overlay mode it must look like the same directory in the
// layers below (the topmost layer's attributes win in an overlay), so mode,
// owner and mtime are copied from the first lower layer that has it, as
// containerd does. Lower layers are our own unpacked dirs; they are still
// looked into without following symlinks.
Result<void> inherit_parent(Unpacker& u, std::string_view entry, int parent_fd, const char* name,
                            uint32_t node) {
  if (u.lowers.empty()) return {};
  std::string rel = u.tree.path(node);
  for (const UniqueFd& lower : u.lowers) {
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int fd = static_cast<int>(::syscall(SYS_openat2, lower.get(), rel.c_str(), &how, sizeof how));
    if (fd < 0) continue;
    UniqueFd found(fd);
    struct stat st;
    if (::fstat(found.get(), &st) != 0) continue;
    if (u.opts.preserve_ownership &&
        ::fchownat(parent_fd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
      return u.fail(entry, errno, "chown parent \"{}\" like the layer below", rel);
    u.dirs.push_back({node, static_cast<mode_t>(st.st_mode & 07777), st.st_mtim, true});
    return {};
  }
  return {};
}

// Moves the cache one level down into `node` (a child of chain.back()),
// with O_NOFOLLOW so that a symlink planted by an earlier entry (or a lower
// layer) is never followed. A missing directory is created when `create`.
Result<void> step_down(Unpacker& u, std::string_view entry, uint32_t node, bool create) {
  const char* name = u.tree.nodes[node].name.c_str();
  int cur = u.cache.fd.get();
  int fd = ::openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    if (::mkdirat(cur, name, 0755) < 0 && errno != EEXIST)
      return u.fail(entry, errno, "mkdir parent \"{}\"", u.tree.path(node));
    BERTH_TRY(inherit_parent(u, entry, cur, name, node));
    fd = ::openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR)
      return u.fail(entry, errno, "parent \"{}\" is a symlink or not a directory",
                    u.tree.path(node));
    return u.fail(entry, errno, "open parent \"{}\"", u.tree.path(node));
  }
  UniqueFd next(fd);
  struct stat st;
  if (::fstat(next.get(), &st) != 0) return u.fail(entry, errno, "stat \"{}\"", u.tree.path(node));
  u.cache.chain.push_back({node, st.st_dev, st.st_ino});
  u.cache.fd = std::move(next);
  return {};
}

// Moves the cache up `levels` levels with "..", checking that each step lands
// on the directory recorded on the way down. False when that fails (a
// directory without search permission, say): the caller starts over from
// the root.
bool step_up(Unpacker& u, size_t levels) {
  for (size_t i = 0; i < levels; ++i) {
    int fd = ::openat(u.cache.fd.get(), "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    UniqueFd up(fd);
    u.cache.chain.pop_back();
    struct stat st;
    const DirCache::Step& want = u.cache.chain.back();
    if (::fstat(up.get(), &st) != 0 || st.st_dev != want.dev || st.st_ino != want.ino) return false;
    u.cache.fd = std::move(up);
  }
  return true;
}

// Opens the directory `node` below the root (see DirCache). Missing
// directories are created when `create` is set.
Result<UniqueFd> open_node(Unpacker& u, std::string_view entry, uint32_t node, bool create) {
  if (u.cache.chain.empty()) BERTH_TRY(u.reset_cache());
  // The way down from the deepest ancestor of `node` that is on the chain.
  std::vector<uint32_t> down;
  uint32_t common = node;
  const auto& nodes = u.tree.nodes;
  while (!(nodes[common].depth < u.cache.chain.size() &&
           u.cache.chain[nodes[common].depth].node == common)) {
    down.push_back(common);
    common = nodes[common].parent;
  }
  size_t up = u.cache.chain.size() - 1 - nodes[common].depth;
  if (up > nodes[common].depth || !step_up(u, up)) {
    // Cheaper (or only possible) from the root.
    BERTH_TRY(u.reset_cache());
    down.clear();
    for (uint32_t n = node; n != 0; n = nodes[n].parent) down.push_back(n);
  }
  for (auto it = down.rbegin(); it != down.rend(); ++it) {
    if (auto r = step_down(u, entry, *it, create); !r) {
      u.cache.chain.clear();  // half-way: start from the root next time
      return std::unexpected(r.error());
    }
  }
  UniqueFd out(::fcntl(u.cache.fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!out) return u.fail(entry, errno, "dup directory fd");
  return out;
}

Result<UniqueFd> open_dir(Unpacker& u, std::string_view entry,
                          const std::vector<std::string>& comps, size_t n, bool create) {
  return open_node(u, entry, u.tree.intern(comps, n), create);
}

// rm -rf of `name` in `dirfd`, never following symlinks (iterative, see
// fs::remove_all_at).
Result<void> remove_tree_at(Unpacker& u, std::string_view entry, int dirfd,
                            const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
    u.cache.chain.clear();
  if (auto r = fs::remove_all_at(dirfd, name); !r)
    return u.fail(entry, r.error().err, "remove \"{}\": {}", name, r.error().message);
  return {};
}

// Makes room for a new entry: an existing directory is kept when the entry is
// a directory too (layers merge directories), anything else is replaced.
Result<bool> clear_slot(Unpacker& u, std::string_view entry, int dirfd, const std::string& name,
                        bool want_dir) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return false;
    return u.fail(entry, errno, "stat existing entry");
  }
  if (want_dir && S_ISDIR(st.st_mode)) return true;
  BERTH_TRY(remove_tree_at(u, entry, dirfd, name));
  return false;
}

Result<void> set_xattrs(const Unpacker& u, std::string_view entry, struct archive_entry* e, int fd,
                        const std::string& proc_path) {
  const char* name;
  const void* value;
  size_t size;
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    int rc = fd >= 0 ? ::fsetxattr(fd, name, value, size, 0)
                     : ::lsetxattr(proc_path.c_str(), name, value, size, 0);
    // A filesystem without xattrs (or without that namespace) loses only
    // metadata; anything else (EPERM on trusted.*, EINVAL) is a real failure.
    if (rc < 0 && errno != ENOTSUP) return u.fail(entry, errno, "set xattr {}", name);
  }
  return {};
}

Result<void> set_owner(const Unpacker& u, std::string_view entry, struct archive_entry* e,
                       int dirfd, const std::string& name) {
  if (!u.opts.preserve_ownership) return {};
  if (::fchownat(dirfd, name.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                 static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) < 0)
    return u.fail(entry, errno, "chown {}:{}", archive_entry_uid(e), archive_entry_gid(e));
  return {};
}

struct timespec entry_mtime(struct archive_entry* e) {
  return {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
}

Result<void> write_data(Unpacker& u, struct archive* a, std::string_view entry, int fd,
                        int64_t size) {
  const void* buf;
  size_t len;
  la_int64_t offset;
  int rc;
  while ((rc = archive_read_data_block(a, &buf, &len, &offset)) == ARCHIVE_OK) {
    const char* p = static_cast<const char*>(buf);
    uint64_t max = u.opts.limits.max_bytes;
    if (max != 0 && u.stats.bytes + len > max)
      return u.fail(entry, 0, "layer data exceeds the limit of {} bytes (max_bytes)", max);
    while (len > 0) {
      ssize_t n = ::pwrite(fd, p, len, offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        return u.fail(entry, errno, "write");
      }
      p += n, len -= static_cast<size_t>(n), offset += n;
      u.stats.bytes += static_cast<uint64_t>(n);
    }
  }
  if (rc != ARCHIVE_EOF)
    return u.fail(entry, archive_errno(a), "read data: {}", archive_error_string(a));
  // Sparse entries may end in a hole that no data block covers.
  if (::ftruncate(fd, size) < 0) return u.fail(entry, errno, "truncate to {}", size);
  return {};
}

Result<void> make_file(Unpacker& u, struct archive* a, struct archive_entry* e,
                       std::string_view entry, int dirfd, const std::string& name) {
  BERTH_TRY(clear_slot(u, entry, dirfd, name, false));
  // O_EXCL|O_NOFOLLOW: the slot was just cleared, so anything there now is a
  // race we refuse rather than follow.
  UniqueFd fd(
      ::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return u.fail(entry, errno, "create file");
  BERTH_TRY(write_data(u, a, entry, fd.get(), archive_entry_size(e)));
  if (u.opts.preserve_ownership && ::fchown(fd.get(), static_cast<uid_t>(archive_entry_uid(e)),
                                            static_cast<gid_t>(archive_entry_gid(e))) < 0)
    return u.fail(entry, errno, "chown {}:{}", archive_entry_uid(e), archive_entry_gid(e));
  // After chown: chown clears the setuid/setgid bits.
  if (::fchmod(fd.get(), archive_entry_perm(e)) < 0)
    return u.fail(entry, errno, "chmod {:o}", archive_entry_perm(e));
  BERTH_TRY(set_xattrs(u, entry, e, fd.get(), {}));
  struct timespec times[2] = {entry_mtime(e), entry_mtime(e)};
  if (::futimens(fd.get(), times) < 0) return u.fail(entry, errno, "set mtime");
  ++u.stats.files;
  return {};
}

Result<void> make_dir(Unpacker& u, struct archive_entry* e, std::string_view entry, int dirfd,
                      const std::string& name, uint32_t node) {
  BERTH_ASSIGN(bool exists, clear_slot(u, entry, dirfd, name, true));
  if (!exists && ::mkdirat(dirfd, name.c_str(), 0700) < 0) return u.fail(entry, errno, "mkdir");
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return u.fail(entry, errno, "open directory");
  if (u.opts.preserve_ownership && ::fchown(fd.get(), static_cast<uid_t>(archive_entry_uid(e)),
                                            static_cast<gid_t>(archive_entry_gid(e))) < 0)
    return u.fail(entry, errno, "chown {}:{}", archive_entry_uid(e), archive_entry_gid(e));
  BERTH_TRY(set_xattrs(u, entry, e, fd.get(), {}));
  u.dirs.push_back({node, static_cast<mode_t>(archive_entry_perm(e)), entry_mtime(e)});
  u.tree.nodes[node].listed = true;
  ++u.stats.dirs;
  return {};
}

// Symlinks are created, never followed: every later open uses O_NOFOLLOW, so
// the target text may be anything (absolute targets are normal in images).
Result<void> make_symlink(Unpacker& u, struct archive_entry* e, std::string_view entry, int dirfd,
                          const std::string& name) {
  const char* target = archive_entry_symlink(e);
  if (target == nullptr) return u.fail(entry, 0, "symlink without a target");
  BERTH_TRY(clear_slot(u, entry, dirfd, name, false));
  if (::symlinkat(target, dirfd, name.c_str()) < 0) return u.fail(entry, errno, "symlink");
  BERTH_TRY(set_owner(u, entry, e, dirfd, name));
  // lsetxattr through the directory fd's /proc entry: there is no fd for a
  // symlink that xattr calls accept.
  BERTH_TRY(set_xattrs(u, entry, e, -1, fmt::format("/proc/self/fd/{}/{}", dirfd, name)));
  struct timespec times[2] = {entry_mtime(e), entry_mtime(e)};
  if (::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0)
    return u.fail(entry, errno, "set mtime");
  ++u.stats.links;
  return {};
}

// The target is resolved like any entry path (no "..", no absolute path, no
// symlink among its parents), and linkat without AT_SYMLINK_FOLLOW links a
// symlink itself rather than what it points to.
Result<void> make_hardlink(Unpacker& u, struct archive_entry* e, std::string_view entry, int dirfd,
                           const std::string& name) {
  std::string target = archive_entry_hardlink(e);
  std::string shown = target.size() > 256 ? target.substr(0, 256) + "..." : target;
  BERTH_ASSIGN(auto tcomps,
               normalize(u, entry, target, fmt::format("hardlink target \"{}\": ", shown)));
  if (tcomps.empty()) return u.fail(entry, 0, "hardlink to the layer root");
  BERTH_ASSIGN(UniqueFd tdir, open_dir(u, entry, tcomps, tcomps.size() - 1, false));
  BERTH_TRY(clear_slot(u, entry, dirfd, name, false));
  if (::linkat(tdir.get(), tcomps.back().c_str(), dirfd, name.c_str(), 0) < 0)
    return u.fail(entry, errno, "hardlink to \"{}\"", target);
  ++u.stats.links;
  return {};
}

Result<void> make_node(Unpacker& u, struct archive_entry* e, std::string_view entry, int dirfd,
                       const std::string& name) {
  mode_t type = archive_entry_filetype(e);
  if ((type == AE_IFCHR || type == AE_IFBLK) && !u.opts.allow_devices)
    return u.fail(entry, 0, "device node refused (allow_devices is off)");
  BERTH_TRY(clear_slot(u, entry, dirfd, name, false));
  if (::mknodat(dirfd, name.c_str(), type | 0600, archive_entry_rdev(e)) < 0)
    return u.fail(entry, errno, "mknod");
  BERTH_TRY(set_owner(u, entry, e, dirfd, name));
  // No symlink can be at `name`: we just created a node there.
  if (::fchmodat(dirfd, name.c_str(), archive_entry_perm(e), 0) < 0)
    return u.fail(entry, errno, "chmod {:o}", archive_entry_perm(e));
  struct timespec times[2] = {entry_mtime(e), entry_mtime(e)};
  if (::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0)
    return u.fail(entry, errno, "set mtime");
  ++u.stats.files;
  return {};
}

// ".wh.<name>": in apply mode removes what lower layers left at <name> (the
// OCI spec: a whiteout never hides entries of its own layer); in overlay mode
// becomes the 0/0 character device overlayfs reads as a whiteout.
Result<void> apply_whiteout(Unpacker& u, std::string_view entry,
                            const std::vector<std::string>& comps, const std::string& name) {
  bool overlay = u.opts.whiteouts == WhiteoutMode::overlay;
  size_t n = comps.size() - 1;
  auto dir = open_dir(u, entry, comps, n, overlay);
  if (!dir) {
    if (!overlay && dir.error().err == ENOENT) return {};
    return std::unexpected(dir.error());
  }
  if (overlay) {
    BERTH_TRY(clear_slot(u, entry, dir->get(), name, false));
    if (::mknodat(dir->get(), name.c_str(), S_IFCHR | 0, makedev(0, 0)) < 0)
      return u.fail(entry, errno, "mknod overlay whiteout \"{}\"",
                    n ? join_path(comps, n) + "/" + name : name);
  } else if (auto t = u.tree.find(u.tree.intern(comps, n), name); !t || !u.tree.nodes[*t].written) {
    BERTH_TRY(remove_tree_at(u, entry, dir->get(), name));
  }
  ++u.stats.whiteouts;
  return {};
}

Result<void> apply_opaque(Unpacker& u, std::string_view entry,
                          const std::vector<std::string>& comps) {
  size_t n = comps.size() - 1;
  ++u.stats.whiteouts;
  if (u.opts.whiteouts == WhiteoutMode::apply) {
    // The marker may come after entries of the same directory, so lower
    // content is removed at the end, keeping what this layer wrote.
    u.opaque_dirs.push_back(u.tree.intern(comps, n));
    return {};
  }
  BERTH_ASSIGN(UniqueFd dir, open_dir(u, entry, comps, n, true));
  if (::fsetxattr(dir.get(), "trusted.overlay.opaque", "y", 1, 0) < 0)
    return u.fail(entry, errno, "set trusted.overlay.opaque on \"{}\"", join_path(comps, n));
  return {};
}

// Marks the entry and its parents as written by this layer; its node.
uint32_t mark_written(Unpacker& u, const std::vector<std::string>& comps) {
  uint32_t id = 0;
  for (const std::string& c : comps) {
    id = u.tree.intern(id, c);
    u.tree.nodes[id].written = true;
  }
  return id;
}

Result<void> unpack_entry(Unpacker& u, struct archive* a, struct archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  if (raw == nullptr) return u.fail("", 0, "entry without a path");
  std::string_view entry = raw;
  uint64_t max_entries = u.opts.limits.max_entries;
  if (max_entries != 0 && ++u.entries > max_entries)
    return u.fail(entry, 0, "more than {} entries in the layer (max_entries)", max_entries);
  BERTH_ASSIGN(auto comps, normalize(u, entry, entry));
  if (comps.empty()) return {};  // "./": the layer root is the caller's directory
  const std::string& name = comps.back();
  if (name == kOpaqueMarker) return apply_opaque(u, entry, comps);
  if (name.starts_with(kWhiteoutPrefix)) {
    std::string target = name.substr(kWhiteoutPrefix.size());
    if (target.empty() || target.starts_with(kWhiteoutPrefix))
      return u.fail(entry, 0, "invalid whiteout name");
    return apply_whiteout(u, entry, comps, target);
  }
  uint32_t node = mark_written(u, comps);
  BERTH_ASSIGN(UniqueFd dir, open_node(u, entry, u.tree.nodes[node].parent, true));
  if (archive_entry_hardlink(e) != nullptr) return make_hardlink(u, e, entry, dir.get(), name);
  switch (archive_entry_filetype(e)) {
    case AE_IFREG:
      return make_file(u, a, e, entry, dir.get(), name);
    case AE_IFDIR:
      return make_dir(u, e, entry, dir.get(), name, node);
    case AE_IFLNK:
      return make_symlink(u, e, entry, dir.get(), name);
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO:
      return make_node(u, e, entry, dir.get(), name);
    default:
      return u.fail(entry, 0, "unsupported entry type {:o}", archive_entry_filetype(e));
  }
}

// Removes from the directory `top` (and below, without recursion)
// everything this layer did not write.
Result<void> clear_opaque(Unpacker& u, uint32_t top) {
  std::string path = u.tree.path(top);
  std::string entry =
      path.empty() ? std::string(kOpaqueMarker) : path + "/" + std::string(kOpaqueMarker);
  std::vector<uint32_t> todo{top};
  while (!todo.empty()) {
    uint32_t id = todo.back();
    todo.pop_back();
    BERTH_ASSIGN(UniqueFd dir, open_node(u, entry, id, false));
    std::unique_ptr<DIR, DirCloser> d(::fdopendir(dir.release()));
    if (!d) return u.fail(entry, errno, "fdopendir \"{}\"", u.tree.path(id));
    std::vector<std::string> children;
    while (struct dirent* de = ::readdir(d.get())) {
      std::string_view n = de->d_name;
      if (n != "." && n != "..") children.emplace_back(n);
    }
    for (const auto& name : children) {
      auto child = u.tree.find(id, name);
      struct stat st;
      if (!child || !u.tree.nodes[*child].written) {
        BERTH_TRY(remove_tree_at(u, entry, ::dirfd(d.get()), name));
      } else if (::fstatat(::dirfd(d.get()), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                 S_ISDIR(st.st_mode)) {
        todo.push_back(*child);
      }
    }
  }
  return {};
}

// Deepest first, so that a parent's mtime is set after its children's. An
// implicit parent that the archive lists later takes the archive's values.
Result<void> finish_dirs(Unpacker& u) {
  for (auto it = u.dirs.rbegin(); it != u.dirs.rend(); ++it) {
    if (it->implicit && u.tree.nodes[it->node].listed) continue;
    std::string_view name = u.tree.nodes[it->node].name;
    BERTH_ASSIGN(UniqueFd fd, open_node(u, name, it->node, false));
    if (::fchmod(fd.get(), it->mode) < 0)
      return u.fail(u.tree.path(it->node), errno, "chmod {:o}", it->mode);
    struct timespec times[2] = {it->mtime, it->mtime};
    if (::futimens(fd.get(), times) < 0) return u.fail(u.tree.path(it->node), errno, "set mtime");
  }
  return {};
}

Result<ArchivePtr> open_archive(const std::string& path) {
  ArchivePtr a(archive_read_new());
  if (!a) return error("unpack", "{}: archive_read_new failed", path);
  // Filters are detected from the data (gzip, zstd, none); only tar is a
  // layer format.
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK)
    return errno_error("unpack", archive_errno(a.get()), "{}: open: {}", path,
                       archive_error_string(a.get()));
  return a;
}

}  // namespace

Result<UnpackStats> unpack_layer(const std::string& archive_path, const std::string& dest,
                                 const UnpackOptions& opts) {
  Unpacker u{.archive_path = archive_path, .opts = opts};
  u.root.reset(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!u.root) return sys_error("unpack", "{}: open destination {}", archive_path, dest);
  for (const std::string& dir : opts.lower_dirs) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("unpack", "{}: open lower layer {}", archive_path, dir);
    u.lowers.push_back(std::move(fd));
  }
  BERTH_ASSIGN(ArchivePtr a, open_archive(archive_path));
  struct archive_entry* e;
  int rc;
  while ((rc = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
    BERTH_TRY(unpack_entry(u, a.get(), e));
  }
  if (rc != ARCHIVE_EOF)
    return errno_error("unpack", archive_errno(a.get()), "{}: read header: {}", archive_path,
                       archive_error_string(a.get()));
  for (uint32_t dir : u.opaque_dirs) BERTH_TRY(clear_opaque(u, dir));
  BERTH_TRY(finish_dirs(u));
  return u.stats;
}

}  // namespace berth::rootfs
