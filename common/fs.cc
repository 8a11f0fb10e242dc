#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

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
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    BERTH_ASSIGN(UniqueFd fd, open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode));
    if (auto r = write_all(fd.get(), data, tmp); !r) {
      ::unlink(tmp.c_str());
      return r;
    }
    if (durable == Durable::yes && ::fsync(fd.get()) != 0) {
      auto e = sys_error("fs", "fsync {}", tmp);
      ::unlink(tmp.c_str());
      return e;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = sys_error("fs", "rename {} to {}", tmp, path);
    ::unlink(tmp.c_str());
    return e;
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

Result<void> remove_children(int dfd, const std::string& path, dev_t dev) {
  DIR* dir = ::fdopendir(dfd);
  if (dir == nullptr) {
    auto e = sys_error("fs", "opendir {}", path);
    ::close(dfd);
    return e;
  }
  std::unique_ptr<DIR, int (*)(DIR*)> guard(dir, ::closedir);
  while (true) {
    errno = 0;
    dirent* e = ::readdir(dir);
    if (e == nullptr) {
      if (errno != 0) return sys_error("fs", "readdir {}", path);
      break;
    }
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string child = join(path, name);
    struct stat st;
    if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return sys_error("fs", "stat {}", child);
    }
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != dev) {
        return error("fs", "refusing to remove {}: a mount point (another filesystem)", child);
      }
      int cfd = ::openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (cfd < 0) return sys_error("fs", "open {}", child);
      BERTH_TRY(remove_children(cfd, child, dev));
      if (::unlinkat(dfd, e->d_name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
        return sys_error("fs", "rmdir {}", child);
      }
    } else if (::unlinkat(dfd, e->d_name, 0) != 0 && errno != ENOENT) {
      return sys_error("fs", "unlink {}", child);
    }
  }
  return {};
}

}  // namespace

Result<void> remove_all(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return sys_error("fs", "stat {}", path);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sys_error("fs", "unlink {}", path);
    return {};
  }
  int dfd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return sys_error("fs", "open {}", path);
  BERTH_TRY(remove_children(dfd, path, st.st_dev));
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return sys_error("fs", "rmdir {}", path);
  return {};
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
