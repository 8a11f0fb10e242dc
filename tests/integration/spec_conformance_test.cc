// OCI runtime-spec conformance: each test checks one requirement of the
// runtime-spec (https://github.com/opencontainers/runtime-spec, v1.2) that
// berth broke, citing the section it checks, on real containers.
#include <fcntl.h>
#include <seccomp.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "runtime/default_profile.h"
#include "tests/integration/harness.h"

namespace fs = std::filesystem;
using namespace berth::test;

namespace {

bool has_line(const std::string& out, const std::string& line) {
  for (const auto& l : split_lines(out))
    if (l == line) return true;
  return false;
}

}  // namespace

// ---- seccomp: syscalls newer than the profile ------------------------------

// config-linux.md "Seccomp" leaves unnamed syscalls to defaultAction, but a
// profile cannot name syscalls newer than itself; runc answers those with
// ENOSYS so that libc falls back (clone3 -> clone, openat2 -> openat), and so
// must berth. Syscall numbers from 424 on are the same on every
// architecture, so "newer than clone3" is portable.
TEST_CASE("seccomp: syscalls newer than the profile get ENOSYS, older unnamed ones the default",
          "[privileged][spec][seccomp]") {
  REQUIRE_PRIVILEGED();
  const int clone3 = seccomp_syscall_resolve_name("clone3");
  REQUIRE(clone3 == SYS_clone3);
  // berth's default profile, cut back to what existed before clone3, and
  // without getppid: an old syscall it no longer names.
  Json profile = berth::runtime::default_seccomp_json();
  Json kept = Json::array();
  for (auto rule : profile["syscalls"]) {
    Json names = Json::array();
    for (const auto& n : rule["names"]) {
      const std::string name = n.get<std::string>();
      if (name == "getppid" || seccomp_syscall_resolve_name(name.c_str()) >= clone3) continue;
      names.push_back(name);
    }
    if (names.empty()) continue;
    rule["names"] = names;
    kept.push_back(rule);
  }
  profile["syscalls"] = kept;
  REQUIRE(profile.value("defaultErrnoRet", 0) == EPERM);

  Runtime rt;
  Container c(rt);
  c.config()["linux"]["seccomp"] = profile;
  c.set_args({"/bin/probe", "syscall-errno", std::to_string(SYS_clone3),
              std::to_string(SYS_openat2), std::to_string(SYS_faccessat2),
              std::to_string(SYS_getppid)});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(has_line(r.out, std::to_string(SYS_clone3) + "=ENOSYS"));
  CHECK(has_line(r.out, std::to_string(SYS_openat2) + "=ENOSYS"));
  CHECK(has_line(r.out, std::to_string(SYS_faccessat2) + "=ENOSYS"));
  // Named by no rule but older than the newest the profile names: the
  // profile's default errno.
  CHECK(has_line(r.out, std::to_string(SYS_getppid) + "=EPERM"));
}

// ---- lifecycle ---------------------------------------------------------------

// runtime.md "Operations" / "Delete": "Attempting to delete a container that
// is not stopped MUST generate an error." A created container is not stopped.
TEST_CASE("delete of a created container fails without --force", "[privileged][spec][lifecycle]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "sleep", "600"});
  auto created = c.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);

  auto refused = c.remove();
  INFO(refused);
  CHECK(refused.exit_code != 0);
  CHECK(refused.err.find(c.id()) != std::string::npos);
  CHECK(refused.err.find("not stopped: created") != std::string::npos);
  // Nothing was deleted: the container is still there, still created.
  CHECK(c.state_json().value("status", "") == "created");

  auto forced = c.remove(true);
  INFO(forced);
  CHECK(forced.exit_code == 0);
  CHECK(c.state().exit_code != 0);
}

// config.md "Process": process is "REQUIRED when start is called", so create
// must accept a config without one, and start must then fail.
TEST_CASE("create accepts a config without process, start then fails",
          "[privileged][spec][lifecycle]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.config().erase("process");
  auto created = c.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);
  CHECK(c.state_json().value("status", "") == "created");

  auto started = c.start();
  INFO(started);
  CHECK(started.exit_code != 0);
  CHECK(started.err.find("config.json has no process") != std::string::npos);
  CHECK(c.remove(true).exit_code == 0);

  // `run` needs the process at once.
  Container r(rt);
  r.config().erase("process");
  auto ran = r.run();
  INFO(ran);
  CHECK(ran.exit_code != 0);
  CHECK(ran.err.find("process: a process to run is required") != std::string::npos);
}

// ---- config.json size ----------------------------------------------------------

// A config.json of hundreds of MB took 835 MB of memory before failing.
TEST_CASE("create refuses a config.json over 16 MiB before reading it",
          "[privileged][spec][lifecycle]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.bundle().save();
  const std::string path = c.bundle().dir() + "/config.json";
  REQUIRE(::truncate(path.c_str(), 200 << 20) == 0);  // sparse
  // Not c.create(): it would write the config again.
  auto r = rt.exec({"create", "--bundle", c.bundle().dir(), c.id()});
  INFO(r);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("larger than the 16 MiB limit on config.json") != std::string::npos);
}

// ---- mount namespaces ----------------------------------------------------------

namespace {

void drop_namespace(Json& config, const std::string& type) {
  Json kept = Json::array();
  for (const auto& ns : config["linux"]["namespaces"])
    if (ns.value("type", "") != type) kept.push_back(ns);
  config["linux"]["namespaces"] = kept;
}

void set_namespace_path(Json& config, const std::string& type, const std::string& path) {
  for (auto& ns : config["linux"]["namespaces"])
    if (ns.value("type", "") == type) ns["path"] = path;
}

// Host mount points at or below `dir`.
std::vector<std::string> host_mounts_under(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& line : split_lines(read_file("/proc/self/mountinfo"))) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    fields >> id >> parent >> devno >> root >> point;
    if (point == dir || point.rfind(dir + "/", 0) == 0) out.push_back(point);
  }
  return out;
}

// A mount namespace kept alive by a bind mount on a file (unshare --mount=FILE),
// in a private tmpfs of its own (a namespace file cannot be bound where
// the binding would propagate into that namespace). Unmounted on scope exit.
class HeldMountNamespace {
 public:
  HeldMountNamespace() {
    REQUIRE(::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, "size=64k,mode=0700") == 0);
    mounted_ = true;
    REQUIRE(::mount(nullptr, dir_.path().c_str(), nullptr, MS_PRIVATE, nullptr) == 0);
    std::ofstream(file()).put('\n');
    auto r = exec_command({"unshare", "--mount=" + file(), "--propagation", "private", "true"});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    held_ = true;
  }
  ~HeldMountNamespace() {
    if (held_) ::umount2(file().c_str(), MNT_DETACH);
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  HeldMountNamespace(const HeldMountNamespace&) = delete;
  HeldMountNamespace& operator=(const HeldMountNamespace&) = delete;

  std::string file() const { return dir_.path() + "/mnt-ns"; }
  CommandResult run(const std::string& script) const {
    return exec_command({"nsenter", "--mount=" + file(), "sh", "-c", script});
  }

 private:
  TempDir dir_;
  bool mounted_ = false;
  bool held_ = false;
};

}  // namespace

// config-linux.md "Namespaces": "If a namespace type is not specified in the
// namespaces array, the container MUST inherit the runtime namespace of that
// type." Without a mount namespace the container shares the caller's mount
// table, which berth must leave as it was: no mount, a chroot into the rootfs.
TEST_CASE("a config without a mount namespace runs in the caller's mount namespace",
          "[privileged][spec][namespaces]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc sets up the rootfs with mounts in the host's mount namespace");
  Runtime rt;
  Container c(rt);
  drop_namespace(c.config(), "mount");

  SECTION("fields that only mounts could apply are refused, by name") {
    auto r = c.create();
    INFO(r);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("mounts: cannot be applied without a mount namespace") != std::string::npos);
    CHECK(host_mounts_under(c.bundle().dir()).empty());
  }

  SECTION("without them it runs, chrooted, and the host's mount table is untouched") {
    c.config()["mounts"] = Json::array();
    c.config()["root"]["readonly"] = false;
    c.config()["linux"].erase("maskedPaths");
    c.config()["linux"].erase("readonlyPaths");
    c.set_args({"/bin/probe", "sleep", "600"});
    auto created = c.create();
    INFO(created);
    REQUIRE(created.exit_code == 0);
    const int pid = c.state_json().value("pid", 0);
    REQUIRE(pid > 0);
    const std::string proc = "/proc/" + std::to_string(pid);
    CHECK(read_link(proc + "/ns/mnt") == read_link("/proc/self/ns/mnt"));
    CHECK(read_link(proc + "/root") == fs::canonical(c.bundle().rootfs()).string());
    REQUIRE(c.start().exit_code == 0);
    REQUIRE(c.wait_for_status("running"));
    CHECK(read_link(proc + "/root") == fs::canonical(c.bundle().rootfs()).string());
    CHECK(host_mounts_under(c.bundle().dir()).empty());

    // exec could not follow it into its root: refused rather than run on the host.
    auto ex = rt.exec({"exec", c.id(), "/bin/probe", "pid"});
    INFO(ex);
    CHECK(ex.exit_code != 0);
    CHECK(ex.err.find("no mount namespace") != std::string::npos);

    REQUIRE(c.kill("KILL").exit_code == 0);
    REQUIRE(c.wait_for_status("stopped"));
    CHECK(c.remove().exit_code == 0);
    CHECK(host_mounts_under(c.bundle().dir()).empty());
  }
}

// config-linux.md "Namespaces": "path ... the runtime MUST place the process
// into the namespace at that path". A mount only present in the held
// namespace shows that the container is in it.
TEST_CASE("a mount namespace given by path is joined", "[privileged][spec][namespaces]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  const std::string marker_dir = c.bundle().rootfs() + "/joined-ns";
  fs::create_directories(marker_dir);
  HeldMountNamespace held;
  auto made = held.run("mount -t tmpfs -o size=64k berth-joined " + marker_dir +
                       " && echo joined > " + marker_dir + "/marker");
  INFO(made);
  REQUIRE(made.exit_code == 0);
  REQUIRE_FALSE(fs::exists(marker_dir + "/marker"));  // not in the host's namespace

  set_namespace_path(c.config(), "mount", held.file());
  c.set_args({"/bin/probe", "cat", "/joined-ns/marker"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "joined\n");
  CHECK(host_mounts_under(c.bundle().dir()).empty());
}

// ---- rootfsPropagation ----------------------------------------------------------

namespace {

// The optional fields ("shared:5 master:2", "unbindable") of the container's
// "/" in its own mountinfo.
std::string root_propagation_fields(const std::string& mountinfo) {
  for (const auto& line : split_lines(mountinfo)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point, options, f, out;
    fields >> id >> parent >> devno >> root >> point >> options;
    if (point != "/") continue;
    while (fields >> f && f != "-") out += (out.empty() ? "" : " ") + f;
    return out;
  }
  return "<no / in mountinfo>";
}

}  // namespace

// The bundle's rootfs bound onto itself and made shared on the host, for the
// duration of a test: a slave needs a master, and a host's / may be private.
class SharedRootfs {
 public:
  explicit SharedRootfs(const std::string& rootfs) : rootfs_(rootfs) {
    REQUIRE(::mount(rootfs_.c_str(), rootfs_.c_str(), nullptr, MS_BIND, nullptr) == 0);
    mounted_ = true;
    REQUIRE(::mount(nullptr, rootfs_.c_str(), nullptr, MS_SHARED, nullptr) == 0);
  }
  ~SharedRootfs() {
    if (mounted_) ::umount2(rootfs_.c_str(), MNT_DETACH);
  }
  SharedRootfs(const SharedRootfs&) = delete;
  SharedRootfs& operator=(const SharedRootfs&) = delete;

 private:
  std::string rootfs_;
  bool mounted_ = false;
};

// config-linux.md "Rootfs Mount Propagation": rootfsPropagation sets the
// rootfs's mount propagation to shared, slave, private or unbindable.
TEST_CASE("rootfsPropagation applies each of the four propagations to /",
          "[privileged][spec][rootfs]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "mountinfo"});
  std::string value;
  SECTION("shared") {
    value = "shared";
  }
  SECTION("slave") {
    value = "slave";
  }
  SECTION("private") {
    value = "private";
  }
  SECTION("unbindable") {
    value = "unbindable";
  }
  c.config()["linux"]["rootfsPropagation"] = value;
  // A slave needs a master. The others run with the rootfs on the host's
  // / mount itself, where an unbindable / used to fail the rootfs bind.
  std::optional<SharedRootfs> shared;
  if (value == "slave") shared.emplace(c.bundle().rootfs());
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  const std::string fields = root_propagation_fields(r.out);
  INFO("rootfsPropagation " << value << ": / has \"" << fields << "\"");
  const bool is_shared = fields.find("shared:") != std::string::npos;
  const bool is_slave = fields.find("master:") != std::string::npos;
  const bool is_unbindable = fields.find("unbindable") != std::string::npos;
  if (value == "shared") {
    // Shared among its own peers; also a slave of the host's mount it came
    // from, which is allowed: nothing it mounts reaches the host.
    CHECK(is_shared);
    CHECK_FALSE(is_unbindable);
  } else if (value == "slave") {
    CHECK(is_slave);
    CHECK_FALSE(is_shared);
    CHECK_FALSE(is_unbindable);
  } else if (value == "private") {
    CHECK(fields.empty());
  } else {
    CHECK(is_unbindable);
    CHECK_FALSE(is_shared);
    CHECK_FALSE(is_slave);
  }
  // The container's mounts stayed in the container.
  std::vector<std::string> expected;
  if (shared) expected.push_back(c.bundle().rootfs());
  CHECK(host_mounts_under(c.bundle().rootfs()) == expected);
}

// ---- device nodes ----------------------------------------------------------------

// A linux.devices node outside the /dev tmpfs is made on the rootfs's own
// filesystem; delete must take it away with the container.
TEST_CASE("device nodes from linux.devices do not outlive the container",
          "[privileged][spec][devices]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("the node on the rootfs is berth's own behaviour");
  Runtime rt;
  Container c(rt);
  // One outside /dev (on the rootfs's disk), one on the /dev tmpfs.
  c.config()["linux"]["devices"] = Json::array(
      {{{"path", "/berth-devnode"}, {"type", "c"}, {"major", 1}, {"minor", 3}, {"fileMode", 0666}},
       {{"path", "/dev/berth-devnode"}, {"type", "c"}, {"major", 1}, {"minor", 5}}});
  c.set_args({"/bin/probe", "mode", "/berth-devnode"});
  const std::string node = c.bundle().rootfs() + "/berth-devnode";
  REQUIRE(c.create().exit_code == 0);
  REQUIRE(c.start().exit_code == 0);
  REQUIRE(c.wait_for_status("stopped"));
  CHECK(c.output().find("0666") != std::string::npos);
  // The node is on disk until the container is deleted...
  CHECK(fs::is_character_file(fs::symlink_status(node)));
  auto deleted = c.remove();
  INFO(deleted);
  REQUIRE(deleted.exit_code == 0);
  // ...and gone with it.
  CHECK_FALSE(fs::exists(fs::symlink_status(node)));
  CHECK_FALSE(fs::exists(fs::symlink_status(c.bundle().rootfs() + "/dev/berth-devnode")));
}

// ---- resources that used to be dropped -------------------------------------------

namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

// config-linux.md "Control groups": linux.resources.network (net_cls classID,
// net_prio priorities), hugepageLimits and memory.kernelTCP are applied where
// the host has the controller, and otherwise refused with an error naming the
// field; never accepted and dropped.
TEST_CASE("network, hugepageLimits and kernelTCP are applied or refused by name",
          "[privileged][spec][cgroup]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc ignores some of these fields with a warning");
  Runtime rt;
  // hugepageLimits enables hugetlb in the parents of the v2 cgroup (as runc
  // does); put their cgroup.subtree_control back once the container is gone.
  SubtreeControlGuard subtree;
  Container c(rt);
  subtree.watch(c.cgroups_path());
  c.set_args({"/bin/probe", "sleep", "600"});
  auto& res = c.config()["linux"]["resources"];

  SECTION("memory.kernelTCP") {
    res["memory"]["kernelTCP"] = 8 << 20;
    const std::string dir = cgroup_dir("memory", c.cgroups_path());
    const bool v1_tcp =
        !dir.empty() && fs::exists(fs::path(dir).parent_path() / "memory.kmem.tcp.limit_in_bytes");
    auto r = c.create();
    INFO(r);
    if (!v1_tcp) {
      CHECK(r.exit_code != 0);
      CHECK(r.err.find("linux.resources.memory.kernelTCP") != std::string::npos);
      return;
    }
    REQUIRE(r.exit_code == 0);
    CHECK(trimmed(read_file(dir + "/memory.kmem.tcp.limit_in_bytes")) == std::to_string(8 << 20));
  }
  SECTION("network.classID") {
    res["network"]["classID"] = 0x100001;
    const std::string dir = cgroup_dir("net_cls", c.cgroups_path());
    auto r = c.create();
    INFO(r);
    if (dir.empty()) {
      // Not mounted on this host: refused, by name.
      CHECK(r.exit_code != 0);
      CHECK(r.err.find("linux.resources.network.classID needs the v1 net_cls controller") !=
            std::string::npos);
      return;
    }
    REQUIRE(r.exit_code == 0);
    CHECK(trimmed(read_file(dir + "/net_cls.classid")) == std::to_string(0x100001));
  }
  SECTION("network.priorities") {
    res["network"]["priorities"] = Json::array({{{"name", "lo"}, {"priority", 7}}});
    const std::string dir = cgroup_dir("net_prio", c.cgroups_path());
    auto r = c.create();
    INFO(r);
    if (dir.empty()) {
      CHECK(r.exit_code != 0);
      CHECK(r.err.find("linux.resources.network.priorities needs the v1 net_prio controller") !=
            std::string::npos);
      return;
    }
    REQUIRE(r.exit_code == 0);
    CHECK(has_line(read_file(dir + "/net_prio.ifpriomap"), "lo 7"));
  }
  SECTION("hugepageLimits") {
    if (!fs::exists("/sys/kernel/mm/hugepages/hugepages-2048kB")) {
      BERTH_SKIP("this host has no 2MB huge pages");
    }
    res["hugepageLimits"] = Json::array({{{"pageSize", "2MB"}, {"limit", 4 << 20}}});
    auto r = c.create();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    std::string dir = cgroup_dir("hugetlb", c.cgroups_path());
    std::string file = "hugetlb.2MB.limit_in_bytes";
    if (dir.empty()) {  // the v2 controller (unified or hybrid host)
      dir = cgroup_dir("", c.cgroups_path());
      file = "hugetlb.2MB.max";
    }
    INFO("cgroup " << dir);
    CHECK(trimmed(read_file(dir + "/" + file)) == std::to_string(4 << 20));
  }
  SECTION("a page size the host does not have") {
    res["hugepageLimits"] = Json::array({{{"pageSize", "3MB"}, {"limit", 4 << 20}}});
    auto r = c.create();
    INFO(r);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("linux.resources.hugepageLimits[0].pageSize \"3MB\"") != std::string::npos);
  }
}

// config-linux.md "Control groups": cpu.realtimeRuntime/realtimePeriod,
// cpu.idle, cpu.burst, memory.kernel, memory.useHierarchy and
// blockIO.leafWeight are applied and read back where the host has the file,
// and otherwise refused with an error naming the field; never dropped.
TEST_CASE("cpu rt/idle/burst, memory kernel/useHierarchy and leafWeight are applied or refused",
          "[privileged][spec][cgroup]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc ignores memory.kernel on new kernels and its messages differ");
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "sleep", "600"});
  auto& res = c.config()["linux"]["resources"];
  // Applied: `file` in `dir` reads `want`. Refused: the error names `field`.
  auto applied_or_refused = [&](const std::string& dir, const std::string& file,
                                const std::string& want, const std::string& field) {
    auto r = c.create();
    INFO(r << "\ncgroup " << dir);
    // Refused (the host has no such file, or the kernel refuses the value):
    // the error names the field. Applied: the file holds the value. A field
    // accepted and dropped fails both.
    if (r.exit_code != 0) {
      CHECK(r.err.find(field) != std::string::npos);
      return true;
    }
    REQUIRE_FALSE(dir.empty());
    CHECK(trimmed(read_file(dir + "/" + file)) == want);
    return false;
  };

  SECTION("cpu.realtimeRuntime and realtimePeriod") {
    const std::string dir = cgroup_dir("cpu", c.cgroups_path());
    if (!dir.empty()) {
      // A child's realtime budget comes out of its parent's.
      const fs::path parent_rt = fs::path(dir).parent_path() / "cpu.rt_runtime_us";
      if (fs::exists(parent_rt) && std::stoll(read_file(parent_rt)) < 10000) {
        BERTH_SKIP("the parent cpu cgroup has no realtime budget to give");
      }
    }
    res["cpu"] = {{"realtimeRuntime", 10000}, {"realtimePeriod", 1000000}};
    const bool refused =
        applied_or_refused(dir, "cpu.rt_runtime_us", "10000", "linux.resources.cpu.realtime");
    if (!dir.empty() && !refused) CHECK(trimmed(read_file(dir + "/cpu.rt_period_us")) == "1000000");
  }
  SECTION("cpu.idle") {
    res["cpu"] = {{"idle", 1}};
    std::string dir = cgroup_dir("cpu", c.cgroups_path());
    if (dir.empty()) dir = cgroup_dir("", c.cgroups_path());
    applied_or_refused(dir, "cpu.idle", "1", "linux.resources.cpu.idle");
  }
  SECTION("cpu.burst") {
    res["cpu"] = {{"quota", 50000}, {"period", 100000}, {"burst", 20000}};
    std::string dir = cgroup_dir("cpu", c.cgroups_path());
    if (dir.empty()) dir = cgroup_dir("", c.cgroups_path());
    // A pure v2 host has cgroup.controllers at the mount's root.
    const bool v2 = fs::exists("/sys/fs/cgroup/cgroup.controllers");
    const std::string file = v2 ? "cpu.max.burst" : "cpu.cfs_burst_us";
    applied_or_refused(dir, file, "20000", "linux.resources.cpu.burst");
  }
  SECTION("memory.kernel") {
    // This kernel keeps memory.kmem.limit_in_bytes but ignores writes to it:
    // that must be an error, not a container without the limit.
    res["memory"] = {{"kernel", 32 << 20}};
    applied_or_refused(cgroup_dir("memory", c.cgroups_path()), "memory.kmem.limit_in_bytes",
                       std::to_string(32 << 20), "linux.resources.memory.kernel");
  }
  SECTION("memory.useHierarchy false") {
    // Linux 5.11 made every memory cgroup hierarchical (v1 refuses "0").
    res["memory"] = {{"useHierarchy", false}};
    applied_or_refused(cgroup_dir("memory", c.cgroups_path()), "memory.use_hierarchy", "0",
                       "linux.resources.memory.useHierarchy");
  }
  SECTION("memory.useHierarchy true") {
    res["memory"] = {{"useHierarchy", true}};
    auto r = c.create();
    INFO(r);
    REQUIRE(r.exit_code == 0);  // what every kernel does now: accepted
    const std::string dir = cgroup_dir("memory", c.cgroups_path());
    // v1 only; v2 has no such file (every cgroup is hierarchical).
    if (!dir.empty() && fs::exists(dir + "/memory.use_hierarchy")) {
      CHECK(trimmed(read_file(dir + "/memory.use_hierarchy")) == "1");
    }
  }
  SECTION("blockIO.leafWeight") {
    res["blockIO"] = {{"leafWeight", 200}};
    applied_or_refused(cgroup_dir("blkio", c.cgroups_path()), "blkio.leaf_weight", "200",
                       "linux.resources.blockIO.leafWeight");
  }
}

// config.md "Process": apparmorProfile and selinuxLabel; config-linux.md
// mountLabel. This host has neither AppArmor nor SELinux on: refused by name.
TEST_CASE("LSM fields the host cannot apply are refused by name", "[privileged][spec][lsm]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc's messages differ");
  Runtime rt;
  Container c(rt);
  std::string field;
  SECTION("process.apparmorProfile") {
    if (fs::exists("/sys/kernel/security/apparmor")) BERTH_SKIP("AppArmor is enabled here");
    c.config()["process"]["apparmorProfile"] = "berth-test";
    field = "process.apparmorProfile";
  }
  SECTION("process.selinuxLabel") {
    c.config()["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0";
    field = "process.selinuxLabel";
  }
  SECTION("linux.mountLabel") {
    c.config()["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0";
    field = "linux.mountLabel";
  }
  auto r = c.run();
  INFO(r);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find(field) != std::string::npos);
}

// ---- process.scheduler and process.ioPriority --------------------------------

// config.md "Scheduler" and "IO Priority": the runtime sets them for the
// process (sched_setattr, ioprio_set), for the init and for every exec;
// berth used to drop both without a word. Read back from the kernel by the
// probe: SCHED_BATCH (3) with nice 7, IOPRIO_CLASS_BE (2) level 6.
TEST_CASE("process.scheduler and process.ioPriority are applied to the init and to exec",
          "[privileged][spec][process]") {
  REQUIRE_PRIVILEGED();
  const std::string expected = "policy 3 nice 7 ioprio 0x4006";
  Runtime rt;
  Container c(rt);
  c.config()["process"]["scheduler"] = {{"policy", "SCHED_BATCH"}, {"nice", 7}};
  c.config()["process"]["ioPriority"] = {{"class", "IOPRIO_CLASS_BE"}, {"priority", 6}};
  SECTION("the init") {
    c.set_args({"/bin/probe", "sched"});
    auto r = c.run();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == expected + "\n");
  }
  SECTION("exec") {
    c.set_args({"/bin/probe", "sleep", "120"});
    auto must = [](CommandResult r) {
      INFO(r);
      REQUIRE(r.exit_code == 0);
      return r;
    };
    must(c.create());
    must(c.start());
    REQUIRE(c.wait_for_status("running"));
    std::vector<std::string> argv = {"exec", c.id()};
    if (runtime_is_berth()) argv.push_back("--");
    argv.insert(argv.end(), {"/bin/probe", "sched"});
    CHECK(must(rt.exec(argv)).out == expected + "\n");
  }
}

// config-linux.md "Intel RDT": the runtime MUST error when it cannot apply
// the settings; the other fields below are ones berth cannot honour, so
// create refuses them by name rather than running without them.
TEST_CASE("intelRdt, memoryPolicy, netDevices, timeOffsets and execCPUAffinity are refused",
          "[privileged][spec]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc's messages differ");
  Runtime rt;
  Container c(rt);
  std::string field;
  SECTION("linux.intelRdt") {
    c.config()["linux"]["intelRdt"] = {{"closID", "berth-test"}, {"l3CacheSchema", "L3:0=1"}};
    field = "linux.intelRdt: berth does not manage resctrl groups";
  }
  SECTION("linux.memoryPolicy") {
    c.config()["linux"]["memoryPolicy"] = {{"mode", "MPOL_BIND"}, {"nodes", "0"}};
    field = "linux.memoryPolicy:";
  }
  SECTION("linux.netDevices") {
    c.config()["linux"]["netDevices"] = {{"berth-nodev0", Json::object()}};
    field = "linux.netDevices: moving host network devices";
  }
  SECTION("linux.timeOffsets") {
    c.config()["linux"]["timeOffsets"] = {{"monotonic", {{"secs", 10}}}};
    field = "linux.timeOffsets:";
  }
  SECTION("process.execCPUAffinity") {
    c.config()["process"]["execCPUAffinity"] = {{"initial", "0"}};
    field = "process.execCPUAffinity:";
  }
  c.set_args({"/bin/probe", "exit", "0"});
  auto r = c.run();
  INFO(r);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find(field) != std::string::npos);
}
