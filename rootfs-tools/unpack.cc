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
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/fd.h"
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
  std::string path;
  mode_t mode;
  struct timespec mtime;
  bool implicit = false;  // a parent the archive did not list (see inherit_parent)
};

// Everything about the layer being unpacked, so that helpers stay small.
struct Unpacker {
  std::string archive_path;
  UnpackOptions opts;
  UniqueFd root;
  UnpackStats stats;
  std::unordered_set<std::string> written;  // paths this layer created (and their parents)
  std::vector<std::string> opaque_dirs;     // apply mode: cleared at the end
  std::vector<PendingDir> dirs;
  std::vector<UniqueFd> lowers;  // overlay mode: the layers below, top first

  template <class... Args>
  std::unexpected<Error> fail(std::string_view entry, int err, fmt::format_string<Args...> f,
                              Args&&... args) const {
    return errno_error("unpack", err, "{}: entry \"{}\": {}", archive_path, entry,
                       fmt::format(f, std::forward<Args>(args)...));
  }
};

// Refuses what could name something outside the layer directory; returns the
// path's components ("./a//b/" -> {a, b}). The root itself yields none.
// `what` prefixes the reason when `path` is not the entry's own path.
Result<std::vector<std::string>> normalize(const Unpacker& u, std::string_view entry,
                                           std::string_view path, std::string_view what = "") {
  if (path.starts_with('/')) return u.fail(entry, 0, "{}absolute path", what);
  auto comps = split_path(path);
  for (const auto& c : comps) {
    if (c == "..") return u.fail(entry, 0, "{}path contains \"..\"", what);
  }
  return comps;
}

// A parent directory the archive does not list, created because an entry
// below it is: in overlay mode it must look like the same directory in the
// layers below (the topmost layer's attributes win in an overlay), so mode,
// owner and mtime are copied from the first lower layer that has it, as
// containerd does. Lower layers are our own unpacked dirs; they are still
// looked into without following symlinks.
Result<void> inherit_parent(Unpacker& u, std::string_view entry, int parent_fd, const char* name,
                            const std::string& rel) {
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
    u.dirs.push_back({rel, static_cast<mode_t>(st.st_mode & 07777), st.st_mtim, true});
    return {};
  }
  return {};
}

// Opens the directory `comps[0..n)` below the root, one component at a time
// with O_NOFOLLOW, so a symlink planted by an earlier entry (or a lower layer)
// is never followed. Missing directories are created when `create` is set.
Result<UniqueFd> open_dir(Unpacker& u, std::string_view entry,
                          const std::vector<std::string>& comps, size_t n, bool create) {
  UniqueFd cur(::fcntl(u.root.get(), F_DUPFD_CLOEXEC, 0));
  if (!cur) return u.fail(entry, errno, "dup directory fd");
  for (size_t i = 0; i < n; ++i) {
    const char* name = comps[i].c_str();
    int fd = ::openat(cur.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.get(), name, 0755) < 0 && errno != EEXIST)
        return u.fail(entry, errno, "mkdir parent \"{}\"", join_path(comps, i + 1));
      BERTH_TRY(inherit_parent(u, entry, cur.get(), name, join_path(comps, i + 1)));
      fd = ::openat(cur.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      if (errno == ELOOP || errno == ENOTDIR)
        return u.fail(entry, errno, "parent \"{}\" is a symlink or not a directory",
                      join_path(comps, i + 1));
      return u.fail(entry, errno, "open parent \"{}\"", join_path(comps, i + 1));
    }
    cur.reset(fd);
  }
  return cur;
}

// rm -rf of `name` in `dirfd`, never following symlinks.
Result<void> remove_tree_at(const Unpacker& u, std::string_view entry, int dirfd,
                            const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return {};
  if (errno != EISDIR && errno != EPERM) return u.fail(entry, errno, "remove \"{}\"", name);
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return u.fail(entry, errno, "open \"{}\" to remove it", name);
  std::unique_ptr<DIR, DirCloser> dir(::fdopendir(fd));
  if (!dir) {
    ::close(fd);
    return u.fail(entry, errno, "fdopendir \"{}\"", name);
  }
  std::vector<std::string> children;
  while (struct dirent* de = ::readdir(dir.get())) {
    std::string_view n = de->d_name;
    if (n != "." && n != "..") children.emplace_back(n);
  }
  for (const auto& c : children) BERTH_TRY(remove_tree_at(u, entry, ::dirfd(dir.get()), c));
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT)
    return u.fail(entry, errno, "rmdir \"{}\"", name);
  return {};
}

// Makes room for a new entry: an existing directory is kept when the entry is
// a directory too (layers merge directories), anything else is replaced.
Result<bool> clear_slot(const Unpacker& u, std::string_view entry, int dirfd,
                        const std::string& name, bool want_dir) {
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
                      const std::string& name, const std::string& path) {
  BERTH_ASSIGN(bool exists, clear_slot(u, entry, dirfd, name, true));
  if (!exists && ::mkdirat(dirfd, name.c_str(), 0700) < 0) return u.fail(entry, errno, "mkdir");
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return u.fail(entry, errno, "open directory");
  if (u.opts.preserve_ownership && ::fchown(fd.get(), static_cast<uid_t>(archive_entry_uid(e)),
                                            static_cast<gid_t>(archive_entry_gid(e))) < 0)
    return u.fail(entry, errno, "chown {}:{}", archive_entry_uid(e), archive_entry_gid(e));
  BERTH_TRY(set_xattrs(u, entry, e, fd.get(), {}));
  u.dirs.push_back({path, static_cast<mode_t>(archive_entry_perm(e)), entry_mtime(e)});
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
  BERTH_ASSIGN(auto tcomps,
               normalize(u, entry, target, fmt::format("hardlink target \"{}\": ", target)));
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
  std::string path = n ? join_path(comps, n) + "/" + name : name;
  if (overlay) {
    BERTH_TRY(clear_slot(u, entry, dir->get(), name, false));
    if (::mknodat(dir->get(), name.c_str(), S_IFCHR | 0, makedev(0, 0)) < 0)
      return u.fail(entry, errno, "mknod overlay whiteout \"{}\"", path);
  } else if (!u.written.contains(path)) {
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
    u.opaque_dirs.push_back(join_path(comps, n));
    return {};
  }
  BERTH_ASSIGN(UniqueFd dir, open_dir(u, entry, comps, n, true));
  if (::fsetxattr(dir.get(), "trusted.overlay.opaque", "y", 1, 0) < 0)
    return u.fail(entry, errno, "set trusted.overlay.opaque on \"{}\"", join_path(comps, n));
  return {};
}

void mark_written(Unpacker& u, const std::vector<std::string>& comps) {
  for (size_t i = 1; i <= comps.size(); ++i) u.written.insert(join_path(comps, i));
}

Result<void> unpack_entry(Unpacker& u, struct archive* a, struct archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  if (raw == nullptr) return u.fail("", 0, "entry without a path");
  std::string_view entry = raw;
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
  mark_written(u, comps);
  BERTH_ASSIGN(UniqueFd dir, open_dir(u, entry, comps, comps.size() - 1, true));
  if (archive_entry_hardlink(e) != nullptr) return make_hardlink(u, e, entry, dir.get(), name);
  switch (archive_entry_filetype(e)) {
    case AE_IFREG:
      return make_file(u, a, e, entry, dir.get(), name);
    case AE_IFDIR:
      return make_dir(u, e, entry, dir.get(), name, join_path(comps, comps.size()));
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

// Removes from `path` (recursively) everything this layer did not write.
Result<void> clear_opaque(Unpacker& u, const std::string& path) {
  std::string entry =
      path.empty() ? std::string(kOpaqueMarker) : path + "/" + std::string(kOpaqueMarker);
  auto comps = split_path(path);
  BERTH_ASSIGN(UniqueFd dir, open_dir(u, entry, comps, comps.size(), false));
  std::unique_ptr<DIR, DirCloser> d(::fdopendir(dir.release()));
  if (!d) return u.fail(entry, errno, "fdopendir \"{}\"", path);
  std::vector<std::string> children;
  while (struct dirent* de = ::readdir(d.get())) {
    std::string_view n = de->d_name;
    if (n != "." && n != "..") children.emplace_back(n);
  }
  for (const auto& name : children) {
    std::string child = path.empty() ? name : path + "/" + name;
    struct stat st;
    if (!u.written.contains(child)) {
      BERTH_TRY(remove_tree_at(u, entry, ::dirfd(d.get()), name));
    } else if (::fstatat(::dirfd(d.get()), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISDIR(st.st_mode)) {
      BERTH_TRY(clear_opaque(u, child));
    }
  }
  return {};
}

// Deepest first, so that a parent's mtime is set after its children's. An
// implicit parent that the archive lists later takes the archive's values.
Result<void> finish_dirs(Unpacker& u) {
  std::unordered_set<std::string> listed;
  for (const PendingDir& d : u.dirs) {
    if (!d.implicit) listed.insert(d.path);
  }
  for (auto it = u.dirs.rbegin(); it != u.dirs.rend(); ++it) {
    if (it->implicit && listed.contains(it->path)) continue;
    auto comps = split_path(it->path);
    BERTH_ASSIGN(UniqueFd fd, open_dir(u, it->path, comps, comps.size(), false));
    if (::fchmod(fd.get(), it->mode) < 0) return u.fail(it->path, errno, "chmod {:o}", it->mode);
    struct timespec times[2] = {it->mtime, it->mtime};
    if (::futimens(fd.get(), times) < 0) return u.fail(it->path, errno, "set mtime");
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
  for (const auto& path : u.opaque_dirs) BERTH_TRY(clear_opaque(u, path));
  BERTH_TRY(finish_dirs(u));
  return u.stats;
}

}  // namespace berth::rootfs
