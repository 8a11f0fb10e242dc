// The child-side root filesystem set-up (runtime/rootfs.h, devices.h) against
// the real kernel. Each test forks a child that unshares its namespaces and
// forks again (the grandchild is pid 1 of the new pid namespace); the
// grandchild runs prepare_rootfs / pivot_into_rootfs / finalize_rootfs on a
// temporary rootfs, looks at the result from inside and writes a
// "key=value" report to a pipe. The parent asserts on the report. The mount
// namespace dies with the grandchild, so the host is left as it was: every
// test checks that the host's mount table has the same size afterwards.
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/fs.h"
#include "runtime/cgroup.h"
#include "runtime/mounts.h"
#include "runtime/rootfs.h"
#include "tests/integration/harness.h"

namespace {

namespace stdfs = std::filesystem;
using berth::UniqueFd;
using namespace berth::runtime;

constexpr long kMqueueMagic = 0x19800202;  // ipc/mqueue.c; not in linux/magic.h

using Report = std::map<std::string, std::string>;

// ---- the host side: temp tree, child processes, host mount table ----

size_t host_mount_count() {
  auto mounts = read_mountinfo();
  REQUIRE(mounts);
  return mounts->size();
}

// /tmp/<unique name>-rootfs-<tag>/{rootfs,data,host-side}, named so that the
// harness's leftover sweep knows it. Removed on scope exit; a mount that
// leaked onto the host below it is detached first, so removal never walks
// into a mounted filesystem.
class TempTree {
 public:
  explicit TempTree(const std::string& tag)
      : base_("/tmp/" + berth::test::unique_name() + "-rootfs-" + tag) {
    cleanup();
    stdfs::create_directories(base_ / "rootfs");
    stdfs::create_directories(base_ / "data");
    stdfs::create_directories(base_ / "host-side");
    std::ofstream(base_ / "data/hello") << "hello";
  }
  ~TempTree() { cleanup(); }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;

  std::string base() const { return base_.string(); }
  std::string rootfs() const { return (base_ / "rootfs").string(); }
  std::string data() const { return (base_ / "data").string(); }
  std::string host_side() const { return (base_ / "host-side").string(); }

 private:
  void cleanup() {
    if (auto mounts = read_mountinfo()) {
      for (auto it = mounts->rbegin(); it != mounts->rend(); ++it) {
        if (it->mount_point.starts_with(base_.string() + "/")) {
          ::umount2(it->mount_point.c_str(), MNT_DETACH);
        }
      }
    }
    std::error_code ec;
    stdfs::remove_all(base_, ec);
  }
  stdfs::path base_;
};

// SIGKILLs and reaps the child on scope exit unless it was waited for.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ~ChildGuard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

bool write_text(const char* path, const char* text) {
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  return fd && ::write(fd.get(), text, strlen(text)) == static_cast<ssize_t>(strlen(text));
}

// The first child: unshares, maps root when asked (a process may map its own
// uid in a user namespace it made), forks the namespaces' pid 1 and passes
// on its exit status.
int isolated_parent(int report_fd, int unshare_flags, bool map_root,
                    const std::function<std::string()>& body) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  auto fail = [report_fd](const char* what) {
    write_all(report_fd, std::string("error=") + what + ": " + strerror(errno) + "\n");
    return 1;
  };
  if (::unshare(unshare_flags) != 0) return fail("unshare");
  if (map_root &&
      (!write_text("/proc/self/setgroups", "deny") || !write_text("/proc/self/uid_map", "0 0 1") ||
       !write_text("/proc/self/gid_map", "0 0 1"))) {
    return fail("write the id maps");
  }
  pid_t pid = ::fork();
  if (pid < 0) return fail("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    write_all(report_fd, body());
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Report parse_report(const std::string& text) {
  Report r;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    size_t eq = line.find('=');
    if (eq != std::string::npos) r[line.substr(0, eq)] = line.substr(eq + 1);
    pos = nl + 1;
  }
  return r;
}

// Runs `body` as pid 1 of fresh namespaces and returns its report.
Report run_isolated(int unshare_flags, bool map_root, const std::function<std::string()>& body) {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    read_end.reset();
    ::_exit(isolated_parent(write_end.get(), unshare_flags, map_root, body));
  }
  ChildGuard child(pid);
  write_end.reset();

  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    REQUIRE(left.count() > 0);  // the child hangs
    struct pollfd pfd = {read_end.get(), POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    REQUIRE(n >= 0);
    char buf[4096];
    ssize_t got = ::read(read_end.get(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    REQUIRE(got >= 0);
    if (got == 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  int status = child.wait();
  Report r = parse_report(out);
  INFO("report:\n" << out);
  CHECK(r.count("error") == 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  return r;
}

// The host's cgroup hierarchies, as CgroupLayout::detect would report them.
CgroupLayout host_cgroup_layout() {
  auto mounts = read_mountinfo();
  REQUIRE(mounts);
  std::set<std::string> known;
  std::ifstream cgroups("/proc/cgroups");
  for (std::string line; std::getline(cgroups, line);) {
    if (!line.empty() && line[0] != '#') known.insert(line.substr(0, line.find('\t')));
  }
  std::map<std::string, std::string> own;  // controller ("" for v2) -> cgroup
  std::ifstream self("/proc/self/cgroup");
  for (std::string line; std::getline(self, line);) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    size_t pos = 0;
    do {
      size_t comma = controllers.find(',', pos);
      own[controllers.substr(pos, comma - pos)] = path;
      pos = comma == std::string::npos ? comma : comma + 1;
    } while (pos != std::string::npos);
  }
  CgroupLayout layout;
  for (const MountInfo& m : *mounts) {
    if (m.fstype == "cgroup2") {
      layout.unified_mount = m.mount_point;
      layout.unified_own = own[""];
    }
    if (m.fstype != "cgroup") continue;
    for (const std::string& o : m.super_options) {
      if (known.contains(o)) layout.v1.push_back({o, m.mount_point, own[o]});
    }
  }
  layout.mode = layout.v1.empty()              ? CgroupLayout::Mode::unified
                : layout.unified_mount.empty() ? CgroupLayout::Mode::legacy
                                               : CgroupLayout::Mode::hybrid;
  return layout;
}

// A pty pair; the slave's path is what the runtime binds on /dev/console.
class Pty {
 public:
  Pty() : master_(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)) {
    REQUIRE(master_);
    REQUIRE(::grantpt(master_.get()) == 0);
    REQUIRE(::unlockpt(master_.get()) == 0);
    char name[64];
    REQUIRE(::ptsname_r(master_.get(), name, sizeof name) == 0);
    slave_ = name;
  }
  const std::string& slave() const { return slave_; }

 private:
  UniqueFd master_;
  std::string slave_;
};

// ---- the container side: set-up and looking at the result ----

struct Setup {
  Spec spec;
  std::string rootfs;
  bool in_user_namespace = false;
  CgroupLayout layout;
  std::string console;
};

// Masked files: which of them a kernel has depends on its config (no
// /proc/kcore without CONFIG_PROC_KCORE); missing ones are skipped.
constexpr const char* kMaskedFiles[] = {"/proc/kcore", "/proc/timer_list", "/proc/keys"};

Mount mount_of(std::string dest, std::string type, std::string source,
               std::vector<std::string> options) {
  return Mount{std::move(dest), std::move(type), std::move(source), std::move(options)};
}

Spec full_spec(const TempTree& tree, bool in_user_namespace) {
  Spec spec;
  spec.root.readonly = true;
  // A user namespace holding only root cannot map gid 5 (tty).
  std::vector<std::string> devpts = {"nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                     "mode=0620"};
  if (!in_user_namespace) devpts.push_back("gid=5");
  spec.mounts = {
      mount_of("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}),
      mount_of("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
      mount_of("/dev/pts", "devpts", "devpts", devpts),
      mount_of("/dev/shm", "tmpfs", "shm",
               {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
      mount_of("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
      mount_of("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
      mount_of("/sys/fs/cgroup", "cgroup", "cgroup",
               {"nosuid", "noexec", "nodev", "relatime", "ro"}),
      mount_of("/data", "bind", tree.data(), {"rbind", "ro", "nosuid", "rprivate"}),
  };
  spec.linux.masked_paths = {kMaskedFiles[0], kMaskedFiles[1], kMaskedFiles[2], "/sys/firmware",
                             "/proc/berth-not-there"};
  spec.linux.readonly_paths = {"/proc/sys"};
  if (!in_user_namespace) {
    // A device the host does not have: only mknod can make it.
    spec.linux.devices.push_back(Device{"/dev/sub/berth-null", "c", 1, 3, 0600, 1000, 1000});
  }
  return spec;
}

std::string errno_name(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : std::to_string(err);
}

std::string node_of(const char* path) {
  struct stat st;
  if (::stat(path, &st) != 0) return "missing:" + errno_name(errno);
  char type = S_ISCHR(st.st_mode) ? 'c' : S_ISBLK(st.st_mode) ? 'b' : '?';
  return fmt::format("{}:{}:{}:{:o}:{}:{}", type, major(st.st_rdev), minor(st.st_rdev),
                     st.st_mode & 07777, st.st_uid, st.st_gid);
}

std::string link_of(const char* path) {
  char buf[256];
  ssize_t n = ::readlink(path, buf, sizeof buf);
  return n < 0 ? "missing:" + errno_name(errno) : std::string(buf, static_cast<size_t>(n));
}

// "ok" if the write went through, else the errno's name.
std::string write_result(const char* path, int flags) {
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC | flags, 0644));
  if (!fd) return errno_name(errno);
  if (::write(fd.get(), "x", 1) != 1) return errno_name(errno);
  return "ok";
}

std::string mkdir_result(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0) return errno_name(errno);
  ::rmdir(path.c_str());
  return "ok";
}

std::string fs_type_of(const std::string& path) {
  struct statfs st;
  if (::statfs(path.c_str(), &st) != 0) return "missing:" + errno_name(errno);
  switch (st.f_type) {
    case TMPFS_MAGIC:
      return "tmpfs";
    case CGROUP_SUPER_MAGIC:
      return "cgroup";
    case CGROUP2_SUPER_MAGIC:
      return "cgroup2";
    case DEVPTS_SUPER_MAGIC:
      return "devpts";
    case PROC_SUPER_MAGIC:
      return "proc";
    case SYSFS_MAGIC:
      return "sysfs";
    case kMqueueMagic:
      return "mqueue";
  }
  return fmt::format("{:#x}", st.f_type);
}

std::string readonly_of(const std::string& path) {
  struct statvfs st;
  if (::statvfs(path.c_str(), &st) != 0) return "missing:" + errno_name(errno);
  return (st.f_flag & ST_RDONLY) ? "ro" : "rw";
}

std::string contents_of(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return "missing:" + errno_name(errno);
  char buf[64];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  return n < 0 ? "error:" + errno_name(errno) : std::string(buf, static_cast<size_t>(n));
}

std::string entries_of(const std::string& path) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = stdfs::directory_iterator(path, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  return ec ? "error:" + ec.message() : std::to_string(n);
}

std::string mount_points() {
  auto mounts = read_mountinfo();
  if (!mounts) return "error:" + mounts.error().str();
  std::string out;
  for (const MountInfo& m : *mounts) out += (out.empty() ? "" : ",") + m.mount_point;
  return out;
}

// Runs the three steps as the orchestrator does and looks around.
std::string set_up_and_inspect(const Setup& s, const std::string& host_base) {
  RootfsContext ctx{&s.spec, s.rootfs, s.in_user_namespace, &s.layout, s.console};
  if (auto r = prepare_rootfs(ctx); !r) return "error=prepare: " + r.error().str() + "\n";
  if (auto r = pivot_into_rootfs(s.rootfs); !r) return "error=pivot: " + r.error().str() + "\n";
  if (auto r = finalize_rootfs(s.spec); !r) return "error=finalize: " + r.error().str() + "\n";

  Report r;
  r["pid"] = std::to_string(::getpid());
  r["mounts"] = mount_points();
  r["host_base"] = ::access(host_base.c_str(), F_OK) == 0 ? "visible" : errno_name(errno);
  for (const char* dev : {"null", "zero", "full", "random", "urandom", "tty"}) {
    r[std::string("dev_") + dev] = node_of((std::string("/dev/") + dev).c_str());
  }
  r["dev_null_write"] = write_result("/dev/null", 0);
  r["dev_extra"] = node_of("/dev/sub/berth-null");
  r["dev_console"] = node_of("/dev/console");
  for (const char* link : {"fd", "stdin", "stdout", "stderr", "ptmx", "core"}) {
    r[std::string("link_") + link] = link_of((std::string("/dev/") + link).c_str());
  }
  r["ptmx_target"] = node_of("/dev/pts/ptmx");
  for (const char* fs : {"/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/proc", "/sys",
                         "/sys/firmware", "/sys/fs/cgroup", "/data"}) {
    r[std::string("fs_") + fs] = fs_type_of(fs);
    r[std::string("ro_") + fs] = readonly_of(fs);
  }
  for (const CgroupLayout::V1& h : s.layout.v1) {
    std::string dir = "/sys/fs/cgroup/" + stdfs::path(h.mount).filename().string();
    r["cgroup_" + h.controller] =
        fs_type_of(dir) + ":" + readonly_of(dir) + ":" + mkdir_result(dir + "/berth-probe");
  }
  if (!s.layout.unified_mount.empty() && s.layout.mode != CgroupLayout::Mode::unified) {
    std::string dir = "/sys/fs/cgroup/" + stdfs::path(s.layout.unified_mount).filename().string();
    r["cgroup_unified"] = fs_type_of(dir) + ":" + readonly_of(dir);
  }
  for (const char* masked : kMaskedFiles) {
    r[std::string("masked_") + masked] = node_of(masked) + ":" + contents_of(masked);
  }
  r["firmware_entries"] = entries_of("/sys/firmware");
  r["hostname_write"] = write_result("/proc/sys/kernel/hostname", 0);
  r["root_write"] = write_result("/berth-probe", O_CREAT);
  r["data_read"] = contents_of("/data/hello");
  r["data_write"] = write_result("/data/berth-probe", O_CREAT);
  r["shm_write"] = write_result("/dev/shm/berth-probe", O_CREAT);

  std::string out;
  for (const auto& [k, v] : r) out += k + "=" + v + "\n";
  return out;
}

std::set<std::string> split_set(const std::string& s) {
  std::set<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    out.insert(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

bool skip_unless_root() {
  if (::geteuid() == 0) return false;
  BERTH_SKIP_NOTE("rootfs tests need root (mount, pivot_root, mknod)");
  return true;
}

constexpr int kContainerNamespaces =
    CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;

void check_common(const Report& r, const Setup& s, const TempTree& tree) {
  CHECK(r.at("pid") == "1");
  // Nothing of the host is left: the old root is detached, the rootfs path
  // is not a mount point, host-only mounts are gone.
  std::set<std::string> mounts = split_set(r.at("mounts"));
  for (const std::string& m : mounts) {
    INFO("mount point " << m);
    CHECK(m.find(tree.base()) == std::string::npos);
    CHECK(m.find("/tmp/") == std::string::npos);
  }
  CHECK(r.at("host_base") == "ENOENT");
  for (const char* m : {"/", "/proc", "/proc/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue",
                        "/dev/console", "/sys", "/sys/firmware", "/sys/fs/cgroup", "/data"}) {
    INFO("expected mount point " << m);
    CHECK(mounts.contains(m));
  }

  CHECK(r.at("dev_null").starts_with("c:1:3:"));
  CHECK(r.at("dev_zero").starts_with("c:1:5:"));
  CHECK(r.at("dev_full").starts_with("c:1:7:"));
  CHECK(r.at("dev_random").starts_with("c:1:8:"));
  CHECK(r.at("dev_urandom").starts_with("c:1:9:"));
  CHECK(r.at("dev_tty").starts_with("c:5:0:"));
  CHECK(r.at("dev_null_write") == "ok");
  CHECK(r.at("dev_console").starts_with("c:136:"));
  struct stat console;
  REQUIRE(::stat(s.console.c_str(), &console) == 0);
  CHECK(r.at("dev_console").starts_with(fmt::format("c:136:{}:", minor(console.st_rdev))));

  CHECK(r.at("link_fd") == "/proc/self/fd");
  CHECK(r.at("link_stdin") == "/proc/self/fd/0");
  CHECK(r.at("link_stdout") == "/proc/self/fd/1");
  CHECK(r.at("link_stderr") == "/proc/self/fd/2");
  CHECK(r.at("link_ptmx") == "pts/ptmx");
  CHECK(r.at("link_core") == "missing:ENOENT");  // /proc/kcore is the host's memory
  CHECK(r.at("ptmx_target").starts_with("c:5:2:"));

  CHECK(r.at("fs_/dev") == "tmpfs");
  CHECK(r.at("fs_/dev/pts") == "devpts");
  CHECK(r.at("fs_/dev/shm") == "tmpfs");
  CHECK(r.at("fs_/dev/mqueue") == "mqueue");
  CHECK(r.at("fs_/proc") == "proc");
  CHECK(r.at("ro_/sys") == "ro");
  CHECK(r.at("fs_/sys/firmware") == "tmpfs");
  CHECK(r.at("ro_/sys/firmware") == "ro");
  CHECK(r.at("firmware_entries") == "0");
  CHECK(r.at("shm_write") == "ok");

  // Masked and read-only paths, root.readonly, the read-only bind.
  int masked_present = 0;
  for (const char* masked : kMaskedFiles) {
    INFO("masked path " << masked);
    bool present = stdfs::exists(masked);  // the host runs the same kernel
    masked_present += present;
    CHECK(r.at(std::string("masked_") + masked) ==
          (present ? "c:1:3:666:0:0:" : "missing:ENOENT:missing:ENOENT"));
    CHECK(mounts.contains(masked) == present);
  }
  REQUIRE(masked_present > 0);
  CHECK(r.at("hostname_write") == "EROFS");
  CHECK(r.at("root_write") == "EROFS");
  CHECK(r.at("data_read") == "hello");
  CHECK(r.at("data_write") == "EROFS");
  CHECK(r.at("fs_/data") != "tmpfs");
  CHECK(r.at("ro_/data") == "ro");
  CHECK_FALSE(stdfs::exists(tree.data() + "/berth-probe"));

  // cgroup: a read-only tmpfs with one read-only hierarchy per v1 mount.
  if (s.layout.mode == CgroupLayout::Mode::unified) {
    CHECK(r.at("fs_/sys/fs/cgroup") == "cgroup2");
  } else {
    CHECK(r.at("fs_/sys/fs/cgroup") == "tmpfs");
    for (const CgroupLayout::V1& h : s.layout.v1) {
      INFO("controller " << h.controller);
      CHECK(r.at("cgroup_" + h.controller) == "cgroup:ro:EROFS");
    }
    if (!s.layout.unified_mount.empty()) CHECK(r.at("cgroup_unified") == "cgroup2:ro");
  }
  CHECK(r.at("ro_/sys/fs/cgroup") == "ro");
}

}  // namespace

TEST_CASE("rootfs: mounts, /dev, pivot_root, masked and read-only paths", "[privileged][rootfs]") {
  if (skip_unless_root()) return;
  size_t host_mounts = host_mount_count();
  {
    TempTree tree("full");
    Pty pty;
    Setup s{full_spec(tree, false), tree.rootfs(), false, host_cgroup_layout(), pty.slave()};
    Report r = run_isolated(kContainerNamespaces, false,
                            [&] { return set_up_and_inspect(s, tree.base()); });
    REQUIRE(r.count("error") == 0);
    check_common(r, s, tree);
    // mknod'ed with the spec's mode and owner, in a directory made for it.
    CHECK(r.at("dev_null") == "c:1:3:666:0:0");
    CHECK(r.at("dev_extra") == "c:1:3:600:1000:1000");
    CHECK(r.at("fs_/sys") == "sysfs");
    // Exactly the expected mounts: nothing else of the host's.
    std::set<std::string> allowed = {"/",
                                     "/proc",
                                     "/proc/sys",
                                     "/proc/kcore",
                                     "/proc/timer_list",
                                     "/proc/keys",
                                     "/dev",
                                     "/dev/pts",
                                     "/dev/shm",
                                     "/dev/mqueue",
                                     "/dev/console",
                                     "/sys",
                                     "/sys/firmware",
                                     "/sys/fs/cgroup",
                                     "/data"};
    for (const std::string& m : split_set(r.at("mounts"))) {
      INFO("mount point " << m);
      CHECK((allowed.contains(m) || m.starts_with("/sys/fs/cgroup/")));
    }
  }
  CHECK(host_mount_count() == host_mounts);
}

TEST_CASE("rootfs: in a user namespace devices are bound and sysfs falls back to a bind",
          "[privileged][rootfs]") {
  if (skip_unless_root()) return;
  Report probe = parse_report([] {
    // Probe quietly: a host without user namespaces skips rather than fails.
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(::unshare(CLONE_NEWUSER) == 0 ? 0 : 1);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return std::string(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "" : "no=1\n");
  }());
  if (probe.count("no")) {
    BERTH_SKIP("this host does not allow user namespaces");
  }
  // With a cgroup namespace of its own the user namespace may mount
  // cgroupfs; without one the kernel refuses (EPERM) and the container's
  // cgroup directories are bound from the host instead.
  for (bool own_cgroupns : {true, false}) {
    INFO("own cgroup namespace: " << own_cgroupns);
    size_t host_mounts = host_mount_count();
    {
      TempTree tree(own_cgroupns ? "userns" : "userns-nocgns");
      Pty pty;
      Setup s{full_spec(tree, true), tree.rootfs(), true, host_cgroup_layout(), pty.slave()};
      int flags = (kContainerNamespaces | CLONE_NEWUSER) & ~(own_cgroupns ? 0 : CLONE_NEWCGROUP);
      Report r = run_isolated(flags, true, [&] { return set_up_and_inspect(s, tree.base()); });
      REQUIRE(r.count("error") == 0);
      check_common(r, s, tree);
      // The host's nodes, bound onto files: mknod is not allowed here.
      std::set<std::string> mounts = split_set(r.at("mounts"));
      for (const char* dev :
           {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}) {
        INFO("device " << dev);
        CHECK(mounts.contains(dev));
      }
      CHECK(r.at("dev_extra") == "missing:ENOENT");
    }
    CHECK(host_mount_count() == host_mounts);
  }
}

TEST_CASE("rootfs: a symlink in the image cannot redirect a mount onto the host",
          "[privileged][rootfs]") {
  if (skip_unless_root()) return;
  size_t host_mounts = host_mount_count();
  {
    TempTree tree("escape");
    stdfs::create_symlink("/", tree.rootfs() + "/evil");
    stdfs::create_symlink("../../../../../../../../..", tree.rootfs() + "/evil-rel");
    const std::string target = tree.host_side();  // a host directory
    Setup s;
    s.rootfs = tree.rootfs();
    s.spec.mounts = {
        mount_of("/evil" + target + "/abs", "tmpfs", "tmpfs", {}),
        mount_of("/evil-rel" + target + "/rel", "tmpfs", "tmpfs", {}),
        mount_of("/../../../.." + target + "/dotdot", "tmpfs", "tmpfs", {}),
        mount_of("/evil" + target + "/bind", "bind", tree.data() + "/hello", {"bind", "ro"}),
    };
    Report r = run_isolated(CLONE_NEWNS, false, [&] {
      RootfsContext ctx{&s.spec, s.rootfs, false, nullptr, ""};
      if (auto res = prepare_rootfs(ctx); !res) return "error=" + res.error().str() + "\n";
      return "mounts=" + mount_points() + "\n";
    });
    REQUIRE(r.count("error") == 0);
    std::set<std::string> mounts = split_set(r.at("mounts"));
    for (const char* name : {"/abs", "/rel", "/dotdot", "/bind"}) {
      INFO("destination " << name);
      CHECK(mounts.contains(tree.rootfs() + target + name));
      CHECK_FALSE(mounts.contains(target + name));
      CHECK_FALSE(stdfs::exists(target + name));
      CHECK(stdfs::exists(tree.rootfs() + target + name));
    }
    // The file bind was made on a file created inside the rootfs.
    CHECK(stdfs::is_regular_file(tree.rootfs() + target + "/bind"));
  }
  CHECK(host_mount_count() == host_mounts);
}

TEST_CASE("rootfs: errors name the step and the path", "[privileged][rootfs]") {
  if (skip_unless_root()) return;
  size_t host_mounts = host_mount_count();
  {
    TempTree tree("errors");
    Setup s;
    s.rootfs = tree.rootfs();
    s.spec.mounts = {mount_of("/x", "berthfs-no-such-type", "none", {})};
    Report r = run_isolated(CLONE_NEWNS, false, [&] {
      RootfsContext ctx{&s.spec, s.rootfs, false, nullptr, ""};
      auto res = prepare_rootfs(ctx);
      return std::string("result=") + (res ? "ok" : res.error().str()) + "\n";
    });
    CHECK(r.at("result") ==
          "mount: mount berthfs-no-such-type on /x (in " + tree.rootfs() + "): No such device");
  }
  CHECK(host_mount_count() == host_mounts);
}
