#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

namespace berth::fs {

Result<UniqueFd> open(const std::string& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return sys_error("fs", "open {}", path);
  return UniqueFd(fd);
}

Result<std::string> read_file(const std::string& path) {
  BERTH_ASSIGN(UniqueFd fd, open(path, O_RDONLY));
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("fs", "read {}", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

static Result<void> write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("fs", "write \"{}\" to {}", data, path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<void> write_file(const std::string& path, std::string_view data) {
  BERTH_ASSIGN(UniqueFd fd, open(path, O_WRONLY | O_TRUNC));
  return write_all(fd.get(), data, path);
}

Result<void> write_file_atomic(const std::string& path, std::string_view data, int mode,
                               Durable durable) {
  // A unique name per call (mkostemp in the same directory): two threads
  // replacing one path must not write into the same temporary.
  std::string tmp = path + ".tmp.XXXXXX";
  int raw = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (raw < 0) return sys_error("fs", "create temporary {}", tmp);
  UniqueFd fd(raw);
  auto fail = [&](auto e) {
    ::unlink(tmp.c_str());
    return e;
  };
  // mkostemp creates 0600; the caller's mode, not the umask's, is wanted.
  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) {
    return fail(sys_error("fs", "chmod {}", tmp));
  }
  if (auto r = write_all(fd.get(), data, tmp); !r) return fail(r);
  if (durable == Durable::yes && ::fsync(fd.get()) != 0) {
    return fail(sys_error("fs", "fsync {}", tmp));
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(sys_error("fs", "rename {} to {}", tmp, path));
  }
  return {};
}

Result<void> mkdir_p(const std::string& path, int mode) {
  if (path.empty()) return {};
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    std::string part = path.substr(0, pos);
    if (::mkdir(part.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) {
      return sys_error("fs", "mkdir {}", part);
    }
  }
  return {};
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

namespace {

// One directory being emptied: the subdirectories still to remove (names in
// it), its name in its parent and its identity, so that coming back up
// through ".." can check that it reached the directory it came from.
struct Frame {
  std::vector<std::string> subdirs;
  std::string name;
  dev_t dev = 0;
  ino_t ino = 0;
};

// The path of the directory `depth` frames down, for error messages only.
std::string frame_path(const std::string& top, const std::vector<Frame>& stack, size_t depth) {
  std::string out = top;
  for (size_t i = 1; i <= depth && i < stack.size(); ++i) out = join(out, stack[i].name);
  return out;
}

// Unlinks everything in the directory `fd` that is not a directory and
// returns the names of its subdirectories. A subdirectory on another
// filesystem (a mount point) is an error.
Result<std::vector<std::string>> clear_files(int fd, dev_t dev, const std::string& top,
                                             const std::vector<Frame>& stack) {
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return sys_error("fs", "dup {}", frame_path(top, stack, stack.size()));
  DIR* dir = ::fdopendir(dup);
  if (dir == nullptr) {
    auto e = sys_error("fs", "opendir {}", frame_path(top, stack, stack.size()));
    ::close(dup);
    return e;
  }
  std::unique_ptr<DIR, int (*)(DIR*)> guard(dir, ::closedir);
  std::vector<std::string> subdirs;
  while (true) {
    errno = 0;
    dirent* e = ::readdir(dir);
    if (e == nullptr) {
      if (errno != 0) return sys_error("fs", "readdir {}", frame_path(top, stack, stack.size()));
      break;
    }
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return sys_error("fs", "stat {}", join(frame_path(top, stack, stack.size()), name));
    }
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != dev) {
        return error("fs", "refusing to remove {}: a mount point (another filesystem)",
                     join(frame_path(top, stack, stack.size()), name));
      }
      subdirs.emplace_back(name);
    } else if (::unlinkat(fd, e->d_name, 0) != 0 && errno != ENOENT) {
      return sys_error("fs", "unlink {}", join(frame_path(top, stack, stack.size()), name));
    }
  }
  return subdirs;
}

// Empties the directory `top_fd` (named `top` in messages) without recursion:
// one directory fd is open at a time, the walk goes down with openat(name,
// O_NOFOLLOW) and back up with openat(".."), checked against the identity
// recorded on the way down, so the native stack and the number of open fds
// stay constant however deep the tree (a layer may hold 20,000 levels).
Result<void> remove_children(UniqueFd top_fd, const std::string& top, dev_t dev) {
  std::vector<Frame> stack;
  struct stat st;
  if (::fstat(top_fd.get(), &st) != 0) return sys_error("fs", "stat {}", top);
  stack.push_back(Frame{.name = top, .dev = st.st_dev, .ino = st.st_ino});
  UniqueFd cur = std::move(top_fd);
  BERTH_ASSIGN(stack.back().subdirs, clear_files(cur.get(), dev, top, stack));
  while (true) {
    Frame& f = stack.back();
    if (!f.subdirs.empty()) {
      std::string name = std::move(f.subdirs.back());
      f.subdirs.pop_back();
      int cfd = ::openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (cfd < 0) {
        if (errno == ENOENT) continue;
        return sys_error("fs", "open {}", join(frame_path(top, stack, stack.size()), name));
      }
      UniqueFd child(cfd);
      if (::fstat(child.get(), &st) != 0) {
        return sys_error("fs", "stat {}", join(frame_path(top, stack, stack.size()), name));
      }
      if (st.st_dev != dev) {
        return error("fs", "refusing to remove {}: a mount point (another filesystem)",
                     join(frame_path(top, stack, stack.size()), name));
      }
      stack.push_back(Frame{.name = std::move(name), .dev = st.st_dev, .ino = st.st_ino});
      cur = std::move(child);
      BERTH_ASSIGN(stack.back().subdirs, clear_files(cur.get(), dev, top, stack));
      continue;
    }
    if (stack.size() == 1) return {};
    // Empty: go up and remove it.
    int pfd = ::openat(cur.get(), "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0) return sys_error("fs", "open {}/..", frame_path(top, stack, stack.size()));
    UniqueFd parent(pfd);
    const Frame& up = stack[stack.size() - 2];
    if (::fstat(parent.get(), &st) != 0 || st.st_dev != up.dev || st.st_ino != up.ino) {
      return error("fs", "refusing to remove {}: moved while being removed",
                   frame_path(top, stack, stack.size()));
    }
    if (::unlinkat(parent.get(), f.name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return sys_error("fs", "rmdir {}", frame_path(top, stack, stack.size()));
    }
    stack.pop_back();
    cur = std::move(parent);
  }
}

// rm -rf of `name` in `dirfd`; `display` names it in errors.
Result<void> remove_at(int dirfd, const std::string& name, const std::string& display) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return sys_error("fs", "stat {}", display);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
      return sys_error("fs", "unlink {}", display);
    }
    return {};
  }
  int dfd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return sys_error("fs", "open {}", display);
  BERTH_TRY(remove_children(UniqueFd(dfd), display, st.st_dev));
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return sys_error("fs", "rmdir {}", display);
  }
  return {};
}

}  // namespace

Result<void> remove_all(const std::string& path) {
  return remove_at(AT_FDCWD, path, path);
}

Result<void> remove_all_at(int dirfd, const std::string& name) {
  return remove_at(dirfd, name, name);
}

std::string join(std::string_view a, std::string_view b) {
  while (!a.empty() && a.back() == '/') a.remove_suffix(1);
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  std::string out(a);
  out += '/';
  out += b;
  return out;
}

}  // namespace berth::fs
