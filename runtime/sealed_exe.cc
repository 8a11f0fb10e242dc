#include "runtime/sealed_exe.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/fd.h"
#include "common/fs.h"

extern char** environ;

namespace berth::runtime {

namespace {

constexpr const char* kStep = "sealed exe";
// Set for the re-executed image: which method it runs from, and why the
// preferred one was not used. Removed from the environment at once.
constexpr const char* kMarkerEnv = "_BERTH_SEALED_EXE";
constexpr const char* kFallbackEnv = "_BERTH_SEALED_EXE_FALLBACK";
// The second, empty lower layer: overlayfs runs without an upper layer only
// with two lower ones. Not an ancestor of the binary's directory (overlayfs
// refuses overlapping layers).
constexpr const char* kEmptyLowerParent = "/run/berth";
constexpr const char* kEmptyLower = "/run/berth/sealed-exe-empty";
constexpr unsigned kSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

Result<std::string> self_exe_path() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n < 0) return sys_error(kStep, "readlink /proc/self/exe");
  std::string path(buf, static_cast<size_t>(n));
  if (path.empty() || path[0] != '/' || path.ends_with(" (deleted)")) {
    return error(kStep, "/proc/self/exe is not a path on the host ({})", path);
  }
  return path;
}

Result<UniqueFd> overlay_copy() {
  BERTH_ASSIGN(std::string path, self_exe_path());
  size_t slash = path.rfind('/');
  std::string dir = slash == 0 ? std::string("/") : path.substr(0, slash);
  std::string name = path.substr(slash + 1);
  // ':' separates layers and ',' options (the legacy mount data of kernels
  // before 6.5): rather than escape them, leave such paths to the memfd.
  if (dir.find_first_of(":,\\") != std::string::npos) {
    return error(kStep, "overlay: the binary's directory {} has ':', ',' or '\\'", dir);
  }
  BERTH_TRY(fs::mkdir_p(kEmptyLowerParent, 0755));
  if (::mkdir(kEmptyLower, 0555) != 0 && errno != EEXIST) {
    return sys_error(kStep, "overlay: mkdir {}", kEmptyLower);
  }
  struct stat st;
  if (::lstat(kEmptyLower, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return errno_error(kStep, ENOTDIR, "overlay: {} is not a directory", kEmptyLower);
  }
  UniqueFd ctx(static_cast<int>(::syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC)));
  if (!ctx) return sys_error(kStep, "overlay: fsopen");
  std::string lower = dir + ":" + kEmptyLower;
  if (::syscall(SYS_fsconfig, ctx.get(), FSCONFIG_SET_STRING, "lowerdir", lower.c_str(), 0) != 0) {
    return sys_error(kStep, "overlay: fsconfig lowerdir={}", lower);
  }
  // Only to keep dmesg quiet when the layers are on different filesystems.
  (void)::syscall(SYS_fsconfig, ctx.get(), FSCONFIG_SET_STRING, "xino", "off", 0);
  if (::syscall(SYS_fsconfig, ctx.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return sys_error(kStep, "overlay: create (lowerdir={})", lower);
  }
  UniqueFd mnt(
      static_cast<int>(::syscall(SYS_fsmount, ctx.get(), FSMOUNT_CLOEXEC,
                                 MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID)));
  if (!mnt) return sys_error(kStep, "overlay: fsmount");
  int fd = ::openat(mnt.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return sys_error(kStep, "overlay: open {} in the overlay of {}", name, dir);
  UniqueFd exe(fd);
  struct stat ours, theirs;
  if (::fstat(exe.get(), &theirs) != 0 || ::stat("/proc/self/exe", &ours) != 0 ||
      !S_ISREG(theirs.st_mode) || theirs.st_size != ours.st_size) {
    return error(kStep, "overlay: {} in the overlay is not the running binary", name);
  }
  return exe;
}

Result<UniqueFd> memfd_copy() {
  int raw = ::memfd_create("berth-sealed-exe", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (raw < 0 && errno == EINVAL) {
    // Kernels before 6.3 know no MFD_EXEC (their memfds are executable).
    raw = ::memfd_create("berth-sealed-exe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  }
  if (raw < 0) return sys_error(kStep, "memfd_create");
  UniqueFd mem(raw);
  BERTH_ASSIGN(UniqueFd src, fs::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (::fstat(src.get(), &st) != 0) return sys_error(kStep, "fstat /proc/self/exe");
  off_t left = st.st_size;
  while (left > 0) {
    ssize_t n = ::sendfile(mem.get(), src.get(), nullptr, static_cast<size_t>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error(kStep, "copy /proc/self/exe into the memfd");
    left -= n;
  }
  if (::fcntl(mem.get(), F_ADD_SEALS, kSeals) != 0) return sys_error(kStep, "seal the memfd");
  return mem;
}

Result<void> exec_from(const UniqueFd& exe, char** argv, SealMethod m, const std::string& why) {
  ::setenv(kMarkerEnv, seal_method_name(m), 1);
  if (!why.empty()) ::setenv(kFallbackEnv, why.c_str(), 1);
  ::syscall(SYS_execveat, exe.get(), "", argv, environ, AT_EMPTY_PATH);
  int err = errno;
  ::unsetenv(kMarkerEnv);
  ::unsetenv(kFallbackEnv);
  return errno_error(kStep, err, "execveat of the {} copy", seal_method_name(m));
}

Result<void> try_method(SealMethod m, char** argv, const std::string& why) {
  BERTH_ASSIGN(UniqueFd exe, m == SealMethod::overlay ? overlay_copy() : memfd_copy());
  return exec_from(exe, argv, m, why);
}

}  // namespace

const char* seal_method_name(SealMethod m) {
  return m == SealMethod::overlay ? "overlay" : "memfd";
}

Result<SealMethod> sealed_exe_method() {
  BERTH_ASSIGN(UniqueFd exe, fs::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  int seals = ::fcntl(exe.get(), F_GET_SEALS);
  if (seals >= 0 && (static_cast<unsigned>(seals) & kSeals) == kSeals) return SealMethod::memfd;
  struct statfs sfs;
  if (::fstatfs(exe.get(), &sfs) != 0) return sys_error(kStep, "fstatfs /proc/self/exe");
  if (sfs.f_type == OVERLAYFS_SUPER_MAGIC && (sfs.f_flags & ST_RDONLY) != 0) {
    return SealMethod::overlay;
  }
  return error(kStep, "/proc/self/exe is neither a sealed memfd nor on a read-only overlay");
}

Result<SealMethod> ensure_sealed_exe(char** argv, SealMethod preferred, std::string* why_fallback) {
  if (const char* marker = ::getenv(kMarkerEnv)) {
    std::string claimed = marker;
    if (const char* why = ::getenv(kFallbackEnv); why && why_fallback) *why_fallback = why;
    ::unsetenv(kMarkerEnv);
    ::unsetenv(kFallbackEnv);
    auto m = sealed_exe_method();
    if (!m) {
      return wrap(m.error(),
                  "re-executed from a " + claimed + " copy, but refusing to run unprotected");
    }
    return m;
  }
  SealMethod other = preferred == SealMethod::overlay ? SealMethod::memfd : SealMethod::overlay;
  auto first = try_method(preferred, argv, {});
  // Only failures come back.
  std::string why = first.error().str();
  auto second = try_method(other, argv, why);
  return error(kStep, "cannot run from a protected copy of the binary: {}; {}", why,
               second.error().str());
}

}  // namespace berth::runtime
