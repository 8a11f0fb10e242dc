// The cgroup drivers against fixture trees in a temporary directory: the
// interface files are regular files, so these tests check exactly what the
// drivers write, where, and what they read back, without root.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/fd.h"
#include "common/fs.h"
#include "runtime/cgroup.h"
#include "temp_dir.h"

namespace stdfs = std::filesystem;
using namespace berth;
using namespace berth::runtime;
using berth::UniqueFd;
using berth::test::TempDir;

namespace {

void put(const std::string& path, const std::string& content) {
  stdfs::create_directories(stdfs::path(path).parent_path());
  std::ofstream(path) << content;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `files` (name -> content) into `dir`.
void put_all(const std::string& dir, const std::map<std::string, std::string>& files) {
  stdfs::create_directories(dir);
  for (const auto& [name, content] : files) put(dir + "/" + name, content);
}

const std::map<std::string, std::string> kV2Parent = {
    {"cgroup.controllers", "cpuset cpu io memory pids\n"},
    {"cgroup.subtree_control", ""},
};

const std::map<std::string, std::string> kV2Leaf = {
    {"memory.max", "max\n"},        {"memory.swap.max", "max\n"},
    {"memory.low", "0\n"},          {"memory.high", "max\n"},
    {"cpu.max", "max 100000\n"},    {"cpu.weight", "100\n"},
    {"cpuset.cpus", "\n"},          {"cpuset.mems", "\n"},
    {"pids.max", "max\n"},          {"io.max", ""},
    {"io.weight", "default 100\n"}, {"cgroup.procs", ""},
    {"cgroup.freeze", "0\n"},       {"cgroup.events", "populated 0\nfrozen 0\n"},
};

// A pure v2 host: mount <tmp>/cg, the caller in /user/me.
struct V2Fixture {
  TempDir tmp;
  std::string mount = tmp / "cg";
  std::string own_dir = mount + "/user/me";
  CgroupLayout layout;
  V2Fixture() {
    put_all(mount, kV2Parent);
    put_all(mount + "/user", kV2Parent);
    put_all(own_dir, kV2Parent);
    layout.mode = CgroupLayout::Mode::unified;
    layout.fixture_tree = true;
    layout.root = mount;
    layout.unified_mount = mount;
    layout.unified_own = "/user/me";
  }
  // The leaf with its interface files, as the kernel would make it.
  std::string make_leaf(const std::string& rel) {
    std::string dir = own_dir + "/" + rel;
    put_all(dir, kV2Leaf);
    return dir;
  }
  std::unique_ptr<CgroupDriver> driver(const std::string& cgroups_path, const std::string& id) {
    auto d = make_cgroup_driver(layout, cgroups_path, id);
    REQUIRE(d.has_value());
    return std::move(*d);
  }
};

// A hybrid host like the one the tests run on: v1 controllers (cpu and
// cpuacct co-mounted here), the caller's memory cgroup at /process_api/abc,
// and a v2 tree at <root>/unified.
struct V1Fixture {
  TempDir tmp;
  std::string root = tmp / "cg";
  CgroupLayout layout;
  explicit V1Fixture(bool hybrid = true) {
    layout.mode = hybrid ? CgroupLayout::Mode::hybrid : CgroupLayout::Mode::legacy;
    layout.root = root;
    auto add = [&](const std::string& c, const std::string& mount_name, const std::string& own) {
      layout.v1.push_back({c, root + "/" + mount_name, own});
      stdfs::create_directories(root + "/" + mount_name + own);
    };
    add("memory", "memory", "/process_api/abc");
    add("cpu", "cpu,cpuacct", "/");
    add("cpuacct", "cpu,cpuacct", "/");
    add("cpuset", "cpuset", "/");
    add("pids", "pids", "/");
    add("blkio", "blkio", "/");
    add("freezer", "freezer", "/");
    add("devices", "devices", "/");
    put_all(root + "/cpuset", {{"cpuset.cpus", "0-3\n"}, {"cpuset.mems", "0\n"}});
    if (hybrid) {
      layout.unified_mount = root + "/unified";
      layout.unified_own = "/";
      stdfs::create_directories(layout.unified_mount);
    }
  }
  std::string dir(const std::string& mount_name, const std::string& rel) {
    std::string own = mount_name == "memory" ? "/process_api/abc" : "";
    return root + "/" + mount_name + own + "/" + rel;
  }
  // Every hierarchy's leaf with the interface files the kernel would make.
  void make_leaves(const std::string& rel) {
    put_all(dir("memory", rel), {{"memory.limit_in_bytes", "9223372036854771712\n"},
                                 {"memory.memsw.limit_in_bytes", "9223372036854771712\n"},
                                 {"memory.soft_limit_in_bytes", "9223372036854771712\n"},
                                 {"memory.swappiness", "60\n"},
                                 {"memory.oom_control", "oom_kill_disable 0\n"},
                                 {"cgroup.procs", ""}});
    put_all(dir("cpu,cpuacct", rel), {{"cpu.shares", "1024\n"},
                                      {"cpu.cfs_quota_us", "-1\n"},
                                      {"cpu.cfs_period_us", "100000\n"},
                                      {"cgroup.procs", ""}});
    put_all(dir("cpuset", rel),
            {{"cpuset.cpus", "\n"}, {"cpuset.mems", "\n"}, {"cgroup.procs", ""}});
    put_all(dir("pids", rel), {{"pids.max", "max\n"}, {"cgroup.procs", ""}});
    put_all(dir("blkio", rel), {{"blkio.weight", "500\n"},
                                {"blkio.weight_device", ""},
                                {"blkio.throttle.read_bps_device", ""},
                                {"blkio.throttle.write_bps_device", ""},
                                {"blkio.throttle.read_iops_device", ""},
                                {"blkio.throttle.write_iops_device", ""},
                                {"cgroup.procs", ""}});
    put_all(dir("freezer", rel), {{"freezer.state", "THAWED\n"}, {"cgroup.procs", ""}});
    put_all(dir("devices", rel),
            {{"devices.allow", ""}, {"devices.deny", ""}, {"cgroup.procs", ""}});
    if (!layout.unified_mount.empty()) {
      put_all(layout.unified_mount + "/" + rel, {{"cgroup.procs", ""}});
    }
  }
  std::unique_ptr<CgroupDriver> driver(const std::string& cgroups_path, const std::string& id) {
    auto d = make_cgroup_driver(layout, cgroups_path, id);
    REQUIRE(d.has_value());
    return std::move(*d);
  }
};

std::string error_of(const Result<void>& r) {
  REQUIRE_FALSE(r.has_value());
  return r.error().str();
}

// A field the host has no file for: refused with EOPNOTSUPP, never dropped.
std::string refused_by_name(const Result<void>& r) {
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == EOPNOTSUPP);
  return r.error().str();
}

constexpr int64_t MiB = 1024 * 1024;

// A FIFO in place of an interface file records every write in order (a
// regular file keeps only the last one): take() returns the values written,
// concatenated.
struct WriteLog {
  UniqueFd r;
  explicit WriteLog(const std::string& path) {
    stdfs::remove(path);
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    // Non-blocking read end first, so the driver's O_WRONLY open does not wait.
    r.reset(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    REQUIRE(r);
  }
  std::string take() {
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(r.get(), buf, sizeof buf)) > 0;) out.append(buf, n);
    return out;
  }
};

}  // namespace

// --- cpu_shares_to_weight ---------------------------------------------------

TEST_CASE("cpu_shares_to_weight follows runc's formula, clamped", "[cgroup]") {
  CHECK(cpu_shares_to_weight(0) == 1);
  CHECK(cpu_shares_to_weight(2) == 1);
  CHECK(cpu_shares_to_weight(3) == 1);
  CHECK(cpu_shares_to_weight(1024) == 39);
  CHECK(cpu_shares_to_weight(262144) == 10000);
  CHECK(cpu_shares_to_weight(1000000) == 10000);
}

// --- detect -----------------------------------------------------------------

namespace {

struct DetectFiles {
  TempDir tmp;
  std::string mountinfo = tmp / "mountinfo";
  std::string cgroup = tmp / "cgroup";
  DetectFiles(const std::string& mi, const std::string& cg) {
    put(mountinfo, mi);
    put(cgroup, cg);
  }
  Result<CgroupLayout> detect() const { return CgroupLayout::detect(mountinfo, cgroup); }
};

const CgroupLayout::V1* find_v1(const CgroupLayout& l, const std::string& c) {
  for (const auto& v : l.v1) {
    if (v.controller == c) return &v;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("detect: unified host", "[cgroup]") {
  DetectFiles f(
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
      "rw,nsdelegate,memory_recursiveprot\n",
      "0::/user.slice/user-1000.slice/session-1.scope\n");
  auto l = f.detect();
  REQUIRE(l.has_value());
  CHECK(l->mode == CgroupLayout::Mode::unified);
  CHECK(std::string(l->mode_name()) == "unified");
  CHECK(l->root == "/sys/fs/cgroup");
  CHECK(l->unified_mount == "/sys/fs/cgroup");
  CHECK(l->unified_own == "/user.slice/user-1000.slice/session-1.scope");
  CHECK(l->v1.empty());
}

TEST_CASE("detect: hybrid host like this one", "[cgroup]") {
  DetectFiles f(
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
      "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
      "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
      "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
      "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
      "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
      "4:memory:/process_api/429490b6d113315e5673fae711fbfcec\n3:cpuset:/\n2:cpuacct:/\n"
      "1:cpu:/\n0::/\n");
  auto l = f.detect();
  REQUIRE(l.has_value());
  CHECK(l->mode == CgroupLayout::Mode::hybrid);
  CHECK(std::string(l->mode_name()) == "hybrid");
  CHECK(l->root == "/sys/fs/cgroup");
  CHECK(l->unified_mount == "/sys/fs/cgroup/unified");
  CHECK(l->unified_own == "/");
  CHECK(l->v1.size() == 8);  // name=systemd is not placed in
  CHECK(find_v1(*l, "name=systemd") == nullptr);
  auto* mem = find_v1(*l, "memory");
  REQUIRE(mem != nullptr);
  CHECK(mem->mount == "/sys/fs/cgroup/memory");
  CHECK(mem->own == "/process_api/429490b6d113315e5673fae711fbfcec");
  auto* cpu = find_v1(*l, "cpu");
  REQUIRE(cpu != nullptr);
  CHECK(cpu->mount == "/sys/fs/cgroup/cpu");
  CHECK(cpu->own == "/");
}

TEST_CASE("detect: legacy host with co-mounted and ignored controllers", "[cgroup]") {
  DetectFiles f(
      "25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755\n"
      "26 25 0:23 / /sys/fs/cgroup/systemd rw shared:9 - cgroup cgroup rw,xattr,name=systemd\n"
      "29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct\n"
      "30 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw shared:13 - cgroup cgroup "
      "rw,net_cls,net_prio\n"
      "31 25 0:28 / /sys/fs/cgroup/memory rw shared:14 - cgroup cgroup rw,memory\n"
      "32 25 0:29 / /sys/fs/cgroup/pids rw shared:15 - cgroup cgroup rw,pids\n"
      // A bind mount of a hierarchy already seen: the first mount wins.
      "50 22 0:28 / /mnt/memory-again rw shared:14 - cgroup cgroup rw,memory\n",
      "5:pids:/user.slice\n4:memory:/user.slice\n3:net_cls,net_prio:/\n2:cpu,cpuacct:/user.slice\n"
      "1:name=systemd:/user.slice/session-2.scope\n");
  auto l = f.detect();
  REQUIRE(l.has_value());
  CHECK(l->mode == CgroupLayout::Mode::legacy);
  CHECK(std::string(l->mode_name()) == "legacy");
  CHECK(l->unified_mount.empty());
  CHECK(l->v1.size() == 4);  // cpu, cpuacct, memory, pids
  CHECK(find_v1(*l, "net_cls") == nullptr);
  auto* cpu = find_v1(*l, "cpu");
  auto* cpuacct = find_v1(*l, "cpuacct");
  REQUIRE(cpu != nullptr);
  REQUIRE(cpuacct != nullptr);
  CHECK(cpu->mount == "/sys/fs/cgroup/cpu,cpuacct");
  CHECK(cpuacct->mount == cpu->mount);
  CHECK(cpu->own == "/user.slice");
  CHECK(find_v1(*l, "memory")->mount == "/sys/fs/cgroup/memory");
}

TEST_CASE("detect: subtree mount and escaped mount point", "[cgroup]") {
  // Inside a container: the hierarchy's subtree /docker/abc is mounted, and
  // /proc/self/cgroup names paths from the hierarchy's real root.
  DetectFiles f(
      "35 31 0:32 /docker/abc /sys/fs/cgroup/my\\040memory ro - cgroup cgroup rw,memory\n"
      "41 31 0:38 /docker/abc /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
      "4:memory:/docker/abc/inner\n0::/docker/abc\n");
  auto l = f.detect();
  REQUIRE(l.has_value());
  CHECK(l->mode == CgroupLayout::Mode::hybrid);
  REQUIRE(l->v1.size() == 1);
  CHECK(l->v1[0].mount == "/sys/fs/cgroup/my memory");
  CHECK(l->v1[0].own == "/inner");
  CHECK(l->unified_own == "/");
}

TEST_CASE("detect: errors", "[cgroup]") {
  SECTION("no cgroup mounted") {
    DetectFiles f("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", "0::/\n");
    auto l = f.detect();
    REQUIRE_FALSE(l.has_value());
    CHECK(l.error().str() == "cgroup: no cgroup filesystem is mounted (per " + f.mountinfo + ")");
  }
  SECTION("missing files name the path and errno") {
    auto l = CgroupLayout::detect("/nonexistent/mountinfo", "/proc/self/cgroup");
    REQUIRE_FALSE(l.has_value());
    CHECK(l.error().str() == "cgroup: read /nonexistent/mountinfo: No such file or directory");
  }
}

// --- placement --------------------------------------------------------------

TEST_CASE("placement: relative, absolute and empty cgroupsPath", "[cgroup]") {
  V1Fixture f;
  SECTION("relative: below the caller's cgroup in each hierarchy") {
    auto paths = f.driver("x/y", "id")->paths();
    REQUIRE(paths.size() == 8);  // 7 v1 mounts (cpu,cpuacct once) + the v2 tree
    CHECK(paths[0] == f.root + "/memory/process_api/abc/x/y");
    CHECK(paths[1] == f.root + "/cpu,cpuacct/x/y");
    CHECK(paths[7] == f.root + "/unified/x/y");
  }
  SECTION("absolute: from each hierarchy's root") {
    auto paths = f.driver("/berth/c1", "id")->paths();
    REQUIRE(paths.size() == 8);
    CHECK(paths[0] == f.root + "/memory/berth/c1");
    CHECK(paths[7] == f.root + "/unified/berth/c1");
  }
  SECTION("empty: the default name below the caller's cgroup") {
    auto paths = f.driver("", "ctr-1")->paths();
    CHECK(paths[0] == f.root + "/memory/process_api/abc/ctr-1");
    CHECK(paths[3] == f.root + "/pids/ctr-1");
  }
  SECTION("'.' and empty components are dropped") {
    auto paths = f.driver("./a//b/", "id")->paths();
    CHECK(paths[3] == f.root + "/pids/a/b");
  }
}

TEST_CASE("placement: unified host", "[cgroup]") {
  V2Fixture f;
  CHECK(f.driver("", "c")->paths() == std::vector<std::string>{f.own_dir + "/c"});
  CHECK(f.driver("/b/c", "x")->paths() == std::vector<std::string>{f.mount + "/b/c"});
}

TEST_CASE("placement: rejected cgroupsPaths", "[cgroup]") {
  V1Fixture f;
  auto err = [&](const std::string& p) {
    auto d = make_cgroup_driver(f.layout, p, "id");
    REQUIRE_FALSE(d.has_value());
    return d.error().str();
  };
  CHECK(err("../escape") ==
        "cgroup: cgroupsPath \"../escape\" has a \"..\" component; the container's cgroup must "
        "stay below the hierarchy it is placed in");
  CHECK(err("/a/../../b") ==
        "cgroup: cgroupsPath \"/a/../../b\" has a \"..\" component; the container's cgroup must "
        "stay below the hierarchy it is placed in");
  CHECK(err("system.slice:berth:abc") ==
        "cgroup: cgroupsPath \"system.slice:berth:abc\" is in the systemd driver's "
        "\"slice:prefix:name\" form, but berth has no systemd cgroup driver; give a path instead "
        "(e.g. \"/berth/<id>\", or leave it empty for a cgroup named after the container below "
        "the caller's)");
  CHECK(err("/") == "cgroup: cgroupsPath \"/\" names no cgroup below the hierarchy's root");
}

// --- v2 driver --------------------------------------------------------------

TEST_CASE("v2: create enables missing controllers in the ancestors only", "[cgroup]") {
  V2Fixture f;
  put(f.own_dir + "/cgroup.subtree_control", "cpuset cpu io memory\n");
  put(f.mount + "/cgroup.subtree_control", "cpuset cpu io memory pids\n");
  auto d = f.driver("", "ctr");
  REQUIRE(d->create().has_value());
  CHECK(stdfs::is_directory(f.own_dir + "/ctr"));
  // Only the missing one is written; the file keeps the last write.
  CHECK(slurp(f.own_dir + "/cgroup.subtree_control") == "+pids");
  // The caller's parent is not an ancestor of a relative placement.
  CHECK(slurp(f.mount + "/cgroup.subtree_control") == "cpuset cpu io memory pids\n");
  CHECK_FALSE(stdfs::exists(f.own_dir + "/ctr/cgroup.subtree_control"));
  REQUIRE(d->destroy().has_value());
  CHECK_FALSE(stdfs::exists(f.own_dir + "/ctr"));
  CHECK(stdfs::is_directory(f.own_dir));
}

TEST_CASE(
    "v2: a caller cgroup with processes is refused before any write, and create leaves nothing",
    "[cgroup]") {
  V2Fixture f;
  put(f.own_dir + "/cgroup.type", "domain\n");  // not the root cgroup
  put(f.own_dir + "/cgroup.procs", "123\n");
  put(f.own_dir + "/cgroup.subtree_control", "\n");
  auto d = f.driver("", "ctr");
  auto r = d->create();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == EBUSY);
  CHECK(r.error().message.starts_with(f.own_dir + " has processes, and cgroup v2 lets no cgroup"));
  // Nothing enabled (cpuset/cpu first would make it a thread root), and the
  // container's cgroup that create() made is gone.
  CHECK(slurp(f.own_dir + "/cgroup.subtree_control") == "\n");
  CHECK_FALSE(stdfs::exists(f.own_dir + "/ctr"));
}

TEST_CASE("v2: apply writes every resource", "[cgroup]") {
  V2Fixture f;
  std::string leaf = f.make_leaf("ctr");
  auto d = f.driver("", "ctr");
  REQUIRE(d->create().has_value());
  Resources res;
  res.memory = MemoryResources{.limit = 256 * MiB, .reservation = 128 * MiB, .swap = 512 * MiB};
  res.cpu =
      CpuResources{.shares = 1024, .quota = 50000, .period = 100000, .cpus = "0-1", .mems = "0"};
  res.pids_limit = 100;
  res.block_io = BlockIoResources{.weight = 500};
  res.unified = {{"memory.high", "200M"}};
  auto r = d->apply(res);
  REQUIRE(r.has_value());
  CHECK(slurp(leaf + "/memory.max") == "268435456");
  CHECK(slurp(leaf + "/memory.swap.max") == "268435456");  // 512 MiB total - 256 MiB memory
  CHECK(slurp(leaf + "/memory.low") == "134217728");
  CHECK(slurp(leaf + "/memory.high") == "200M");
  CHECK(slurp(leaf + "/cpu.weight") == "39");
  CHECK(slurp(leaf + "/cpu.max") == "50000 100000");
  CHECK(slurp(leaf + "/cpuset.cpus") == "0-1");
  CHECK(slurp(leaf + "/cpuset.mems") == "0");
  CHECK(slurp(leaf + "/pids.max") == "100");
  CHECK(slurp(leaf + "/io.weight") == "4950");  // blkio 500 -> 1 + 490 * 9999 / 990
}

// Only a unit test's tree may go without a device program: a v2 cgroup
// that is not on cgroup2 is refused, never run without its device rules.
TEST_CASE("v2: a cgroup not on cgroup2 gets no container without its device program",
          "[cgroup][devices]") {
  V2Fixture f;
  f.layout.fixture_tree = false;
  f.make_leaf("ctr");
  auto d = f.driver("", "ctr");
  auto r = d->apply(Resources{});
  REQUIRE_FALSE(r.has_value());
  CHECK_THAT(r.error().str(), Catch::Contains("not on a cgroup2 filesystem") &&
                                  Catch::Contains("refusing to run without one"));
  f.layout.fixture_tree = true;
  CHECK(f.driver("", "ctr")->apply(Resources{}).has_value());
}

TEST_CASE("v2: memory and swap edge cases", "[cgroup]") {
  V2Fixture f;
  std::string leaf = f.make_leaf("ctr");
  auto d = f.driver("", "ctr");
  Resources res;
  SECTION("unlimited memory means unlimited swap") {
    res.memory = MemoryResources{.limit = -1};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/memory.max") == "max");
    CHECK(slurp(leaf + "/memory.swap.max") == "max");
  }
  SECTION("swap -1") {
    put(leaf + "/memory.swap.max", "0\n");
    res.memory = MemoryResources{.limit = 64 * MiB, .swap = -1};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/memory.swap.max") == "max");
  }
  SECTION("swap == limit disables swap") {
    res.memory = MemoryResources{.limit = 64 * MiB, .swap = 64 * MiB};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/memory.swap.max") == "0");
  }
  SECTION("cpu quota -1 with a period") {
    res.cpu = CpuResources{.quota = -1, .period = 250000};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/cpu.max") == "max 250000");
  }
  SECTION("pids 0 and -1 are unlimited") {
    res.pids_limit = 0;
    put(leaf + "/pids.max", "10\n");
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/pids.max") == "max");
  }
  SECTION("swap below the limit") {
    res.memory = MemoryResources{.limit = 64 * MiB, .swap = 32 * MiB};
    CHECK(error_of(d->apply(res)) ==
          "cgroup: linux.resources.memory.swap = 33554432 is below limit = 67108864 (swap is the "
          "memory+swap total, so it must be >= the limit)");
  }
  SECTION("swap without a limit") {
    res.memory = MemoryResources{.swap = 32 * MiB};
    CHECK(error_of(d->apply(res)) ==
          "cgroup: linux.resources.memory.swap = 33554432 needs a memory limit (swap is the "
          "memory+swap total)");
  }
  SECTION("no swap accounting: swap == limit is dropped, more swap is an error") {
    stdfs::remove(leaf + "/memory.swap.max");
    res.memory = MemoryResources{.limit = 64 * MiB, .swap = 64 * MiB};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/memory.max") == "67108864");
    res.memory->swap = 128 * MiB;
    CHECK(error_of(d->apply(res)) ==
          "cgroup: linux.resources.memory.swap = 134217728 needs " + leaf +
              "/memory.swap.max, which this kernel does not have (swap accounting is off; boot "
              "with swapaccount=1)");
  }
}

// cgroup v2 has no file for these: refused by name, never accepted and
// dropped. Their no-op values (absent, false) are accepted.
TEST_CASE("v2: fields cgroup v2 has no file for are refused by name", "[cgroup]") {
  V2Fixture f;
  std::string leaf = f.make_leaf("ctr");
  auto d = f.driver("", "ctr");
  Resources res;
  SECTION("memory.swappiness") {
    res.memory = MemoryResources{.limit = 64 * MiB, .swappiness = 0};
    auto r = d->apply(res);
    CHECK(error_of(r) ==
          "cgroup: linux.resources.memory.swappiness = 0 cannot be applied: cgroup v2 has no "
          "per-cgroup swappiness (memory.swappiness is cgroup v1 only): Operation not supported");
    CHECK(r.error().err == EOPNOTSUPP);
    CHECK(slurp(leaf + "/memory.max") == "max\n");  // refused before any write
  }
  SECTION("memory.disableOOMKiller") {
    res.memory = MemoryResources{.disable_oom_killer = true};
    CHECK(error_of(d->apply(res)) ==
          "cgroup: linux.resources.memory.disableOOMKiller cannot be applied: cgroup v2 cannot "
          "disable the OOM killer for a cgroup (memory.oom_control is cgroup v1 only; "
          "memory.oom.group only chooses what it kills): Operation not supported");
  }
  SECTION("memory.kernelTCP") {
    res.memory = MemoryResources{.kernel_tcp = 8 * MiB};
    CHECK(error_of(d->apply(res))
              .starts_with("cgroup: linux.resources.memory.kernelTCP cannot be applied: cgroup v2 "
                           "has no TCP buffer limit"));
  }
  SECTION("network") {
    res.network = NetworkResources{.class_id = 0x100001};
    CHECK(error_of(d->apply(res))
              .starts_with("cgroup: linux.resources.network cannot be applied: cgroup v2 has no "
                           "net_cls/net_prio controllers"));
  }
  SECTION("the no-op values are accepted") {
    res.memory = MemoryResources{.limit = 64 * MiB, .disable_oom_killer = false};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/memory.max") == "67108864");
  }
}

// The fields of linux.resources berth once dropped without a word: applied
// where cgroup v2 has a file for them, refused by name where it has none,
// their no-op values accepted.
TEST_CASE("v2: cpu idle/burst, rdma and the v1-only fields are applied or refused", "[cgroup]") {
  V2Fixture f;
  std::string leaf = f.make_leaf("ctr");
  auto d = f.driver("", "ctr");
  Resources res;
  auto refused = [&](const Resources& r) { return refused_by_name(d->apply(r)); };
  SECTION("cpu.idle and cpu.burst are written after cpu.max") {
    put_all(leaf, {{"cpu.idle", "0\n"}, {"cpu.max.burst", "0\n"}});
    res.cpu = CpuResources{.quota = 50000, .burst = 20000, .idle = 1};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/cpu.max") == "50000");
    CHECK(slurp(leaf + "/cpu.max.burst") == "20000");
    CHECK(slurp(leaf + "/cpu.idle") == "1");
  }
  SECTION("cpu.idle and cpu.burst on a kernel without their files") {
    res.cpu = CpuResources{.idle = 1};
    CHECK(refused(res) ==
          "cgroup: linux.resources.cpu.idle cannot be applied: this kernel has no " + leaf +
              "/cpu.idle (cpu.idle needs Linux 5.15): Operation not supported");
    res.cpu = CpuResources{.burst = 1000};
    CHECK(
        refused(res).starts_with("cgroup: linux.resources.cpu.burst cannot be applied: this "
                                 "kernel has no " +
                                 leaf + "/cpu.max.burst"));
  }
  SECTION("rdma.max, with the rdma controller enabled on the way down") {
    put(f.own_dir + "/cgroup.controllers", "cpuset cpu io memory pids rdma\n");
    put(leaf + "/rdma.max", "");
    res.rdma = {{"mlx5_0", RdmaLimit{.hca_handles = 3}}};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/rdma.max") == "mlx5_0 hca_handle=3 hca_object=max");
    CHECK(slurp(f.own_dir + "/cgroup.subtree_control") == "+rdma");
  }
  SECTION("rdma without the rdma controller") {
    res.rdma = {{"mlx5_0", RdmaLimit{.hca_objects = 7}}};
    CHECK(error_of(d->apply(res)) ==
          "cgroup: linux.resources.rdma needs the rdma controller, which " + f.own_dir +
              " does not offer");
  }
  SECTION("realtimeRuntime and realtimePeriod") {
    res.cpu = CpuResources{.realtime_runtime = 10000};
    CHECK(refused(res) ==
          "cgroup: linux.resources.cpu.realtimeRuntime cannot be applied: cgroup v2 has no "
          "realtime CPU budget (cpu.rt_runtime_us and cpu.rt_period_us are cgroup v1 only): "
          "Operation not supported");
    res.cpu = CpuResources{.realtime_period = 1000000};
    CHECK(refused(res).starts_with(
        "cgroup: linux.resources.cpu.realtimePeriod cannot be applied: cgroup v2 has no "
        "realtime CPU budget"));
  }
  SECTION("memory.kernel and useHierarchy false") {
    res.memory = MemoryResources{.kernel = 64 * MiB};
    CHECK(refused(res) ==
          "cgroup: linux.resources.memory.kernel cannot be applied: cgroup v2 has no kernel "
          "memory limit (memory.kmem.limit_in_bytes is cgroup v1 only, and deprecated): "
          "Operation not supported");
    res.memory = MemoryResources{.use_hierarchy = false};
    CHECK(refused(res) ==
          "cgroup: linux.resources.memory.useHierarchy = false cannot be applied: cgroup v2 "
          "always accounts memory hierarchically: Operation not supported");
  }
  SECTION("blockIO leaf weights") {
    res.block_io = BlockIoResources{.leaf_weight = 200};
    CHECK(refused(res) ==
          "cgroup: linux.resources.blockIO.leafWeight cannot be applied: cgroup v2 has no leaf "
          "weights (blkio.leaf_weight* belonged to the CFQ scheduler on cgroup v1): Operation "
          "not supported");
    res.block_io = BlockIoResources{.leaf_weight_device = {{8, 0, 40}}};
    CHECK(refused(res).starts_with(
        "cgroup: linux.resources.blockIO.weightDevice[].leafWeight cannot be applied"));
  }
  SECTION("memory.checkBeforeUpdate refuses a limit below the current usage") {
    put(leaf + "/memory.current", "100000000\n");
    res.memory = MemoryResources{.limit = 64 * MiB, .check_before_update = true};
    auto a = d->apply(res);
    REQUIRE_FALSE(a.has_value());
    CHECK(a.error().err == EBUSY);
    CHECK(a.error().str() ==
          "cgroup: linux.resources.memory.limit = 67108864 is below the cgroup's current usage "
          "of 100000000 bytes (" +
              leaf +
              "/memory.current), and checkBeforeUpdate refuses that: Device or resource busy");
    CHECK(slurp(leaf + "/memory.max") == "max\n");
    res.memory->limit = 128 * MiB;
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/memory.max") == "134217728");
  }
  SECTION("the no-op values are accepted") {
    res.memory = MemoryResources{
        .limit = 64 * MiB, .kernel = 0, .use_hierarchy = true, .check_before_update = false};
    res.cpu = CpuResources{
        .shares = 1024, .burst = 0, .realtime_runtime = 0, .realtime_period = 0, .idle = 0};
    res.block_io = BlockIoResources{.leaf_weight = 0};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(leaf + "/memory.max") == "67108864");
  }
}

TEST_CASE("v2: io.max per device and BFQ weights", "[cgroup]") {
  V2Fixture f;
  std::string leaf = f.make_leaf("ctr");
  auto d = f.driver("", "ctr");
  Resources res;
  res.block_io = BlockIoResources{.throttle_read_bps = {{8, 0, 1048576}}};
  REQUIRE(d->apply(res).has_value());
  CHECK(slurp(leaf + "/io.max") == "8:0 rbps=1048576");
  res.block_io = BlockIoResources{.throttle_write_iops = {{8, 16, 100}}};
  REQUIRE(d->apply(res).has_value());
  CHECK(slurp(leaf + "/io.max") == "8:16 wiops=100");
  // With BFQ, its file takes the blkio weight unconverted.
  put(leaf + "/io.bfq.weight", "default 100\n");
  res.block_io = BlockIoResources{.weight = 300, .weight_device = {{8, 0, 700}}};
  REQUIRE(d->apply(res).has_value());
  CHECK(slurp(leaf + "/io.bfq.weight") == "8:0 700");
  CHECK(slurp(leaf + "/io.weight") == "default 100\n");
}

TEST_CASE("v2: resources.unified keys must be file names", "[cgroup]") {
  V2Fixture f;
  f.make_leaf("ctr");
  auto d = f.driver("", "ctr");
  Resources res;
  res.unified = {{"../memory.max", "1"}};
  CHECK(error_of(d->apply(res)) ==
        "cgroup: linux.resources.unified key \"../memory.max\" must be a file name in the "
        "container's cgroup (no '/' or \"..\")");
  res.unified = {{"sub/memory.max", "1"}};
  CHECK(error_of(d->apply(res)).starts_with("cgroup: linux.resources.unified key \"sub/"));
}

TEST_CASE("v2: a failed write names the value, the file and the errno", "[cgroup]") {
  V2Fixture f;
  std::string leaf = f.make_leaf("ctr");
  stdfs::remove(leaf + "/pids.max");
  auto d = f.driver("", "ctr");
  Resources res;
  res.pids_limit = 10;
  auto r = d->apply(res);
  CHECK(error_of(r) == "cgroup: write \"10\" to " + leaf + "/pids.max: No such file or directory");
  CHECK(r.error().err == ENOENT);
}

TEST_CASE("v2: stats, pids, membership, freeze and kill", "[cgroup]") {
  V2Fixture f;
  std::string leaf = f.make_leaf("ctr");
  put_all(leaf, {{"cpu.stat", "usage_usec 12345\nuser_usec 10000\nsystem_usec 2345\n"},
                 {"memory.current", "4096\n"},
                 {"memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n"},
                 {"pids.current", "3\n"},
                 {"cgroup.procs", "12\n34\n"}});
  auto d = f.driver("", "ctr");
  auto s = d->stats();
  REQUIRE(s.has_value());
  CHECK(s->cpu_usage_usec == 12345);
  CHECK(s->memory_current == 4096);
  CHECK(s->memory_peak == 0);  // no memory.peak before Linux 5.19
  CHECK(s->pids_current == 3);
  CHECK(s->oom_kills == 1);
  put(leaf + "/memory.peak", "8192\n");
  CHECK(d->stats()->memory_peak == 8192);

  CHECK(*d->pids() == std::vector<pid_t>{12, 34});

  REQUIRE(d->add_process(4321).has_value());
  CHECK(slurp(leaf + "/cgroup.procs") == "4321");

  auto fd = d->open_unified_dir();
  REQUIRE(fd.has_value());
  struct stat st;
  REQUIRE(::fstat(fd->get(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC) != 0);

  put(leaf + "/cgroup.events", "populated 1\nfrozen 1\n");
  REQUIRE(d->freeze(true).has_value());
  CHECK(slurp(leaf + "/cgroup.freeze") == "1");
  put(leaf + "/cgroup.events", "populated 1\nfrozen 0\n");
  REQUIRE(d->freeze(false).has_value());
  CHECK(slurp(leaf + "/cgroup.freeze") == "0");

  put(leaf + "/cgroup.kill", "");
  REQUIRE(d->kill_all(SIGKILL).has_value());
  CHECK(slurp(leaf + "/cgroup.kill") == "1");
}

TEST_CASE("v2: open_cgroup_driver re-opens recorded paths", "[cgroup]") {
  V2Fixture f;
  std::string leaf = f.make_leaf("ctr");
  put(leaf + "/pids.current", "5\n");
  auto d = open_cgroup_driver(f.layout, {leaf});
  REQUIRE(d.has_value());
  CHECK((*d)->paths() == std::vector<std::string>{leaf});
  CHECK((*d)->stats()->pids_current == 5);
  auto bad = open_cgroup_driver(f.layout, {"/elsewhere/ctr"});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().str() ==
        "cgroup: recorded cgroups [/elsewhere/ctr] are not one cgroup under " + f.mount);
}

// --- v1 driver --------------------------------------------------------------

TEST_CASE("v1: apply writes every resource in its hierarchy", "[cgroup]") {
  V1Fixture f;
  f.make_leaves("ctr");
  auto d = f.driver("", "ctr");
  REQUIRE(d->create().has_value());
  Resources res;
  res.memory = MemoryResources{.limit = 256 * MiB,
                               .reservation = 128 * MiB,
                               .swap = 512 * MiB,
                               .swappiness = 10,
                               .disable_oom_killer = true};
  res.cpu = CpuResources{.shares = 512, .quota = 50000, .period = 200000, .cpus = "1"};
  res.pids_limit = 50;
  res.block_io = BlockIoResources{.weight = 300,
                                  .weight_device = {{8, 0, 400}},
                                  .throttle_read_bps = {{8, 0, 1048576}},
                                  .throttle_write_iops = {{8, 16, 100}}};
  REQUIRE(d->apply(res).has_value());
  std::string mem = f.dir("memory", "ctr");
  CHECK(slurp(mem + "/memory.limit_in_bytes") == "268435456");
  CHECK(slurp(mem + "/memory.memsw.limit_in_bytes") == "536870912");  // v1 takes the total
  CHECK(slurp(mem + "/memory.soft_limit_in_bytes") == "134217728");
  CHECK(slurp(mem + "/memory.swappiness") == "10");
  CHECK(slurp(mem + "/memory.oom_control") == "1");
  std::string cpu = f.dir("cpu,cpuacct", "ctr");
  CHECK(slurp(cpu + "/cpu.shares") == "512");
  CHECK(slurp(cpu + "/cpu.cfs_quota_us") == "50000");
  CHECK(slurp(cpu + "/cpu.cfs_period_us") == "200000");
  CHECK(slurp(f.dir("cpuset", "ctr") + "/cpuset.cpus") == "1");
  CHECK(slurp(f.dir("cpuset", "ctr") + "/cpuset.mems") == "0");  // from the parent
  CHECK(slurp(f.dir("pids", "ctr") + "/pids.max") == "50");
  std::string blkio = f.dir("blkio", "ctr");
  CHECK(slurp(blkio + "/blkio.weight") == "300");
  CHECK(slurp(blkio + "/blkio.weight_device") == "8:0 400");
  CHECK(slurp(blkio + "/blkio.throttle.read_bps_device") == "8:0 1048576");
  CHECK(slurp(blkio + "/blkio.throttle.write_iops_device") == "8:16 100");
  CHECK(slurp(blkio + "/blkio.throttle.write_bps_device").empty());
}

TEST_CASE("v1: memory and memsw are written in the order the kernel accepts", "[cgroup]") {
  // memsw as a directory makes its write fail (EISDIR), which shows whether
  // the limit was written before it.
  V1Fixture f;
  f.make_leaves("ctr");
  std::string mem = f.dir("memory", "ctr");
  stdfs::remove(mem + "/memory.memsw.limit_in_bytes");
  stdfs::create_directory(mem + "/memory.memsw.limit_in_bytes");
  auto d = f.driver("", "ctr");
  Resources res;
  SECTION("growing past the current limit: memsw first") {
    put(mem + "/memory.limit_in_bytes", "1048576\n");
    res.memory = MemoryResources{.limit = 64 * MiB, .swap = 128 * MiB};
    CHECK(error_of(d->apply(res)) ==
          "cgroup: write \"134217728\" to " + mem + "/memory.memsw.limit_in_bytes: Is a directory");
    CHECK(slurp(mem + "/memory.limit_in_bytes") == "1048576\n");
  }
  SECTION("shrinking: the limit first") {
    res.memory = MemoryResources{.limit = 64 * MiB, .swap = 128 * MiB};
    CHECK(error_of(d->apply(res)) ==
          "cgroup: write \"134217728\" to " + mem + "/memory.memsw.limit_in_bytes: Is a directory");
    CHECK(slurp(mem + "/memory.limit_in_bytes") == "67108864");
  }
}

TEST_CASE("v1: swap without memsw accounting", "[cgroup]") {
  V1Fixture f;
  f.make_leaves("ctr");
  std::string mem = f.dir("memory", "ctr");
  stdfs::remove(mem + "/memory.memsw.limit_in_bytes");
  auto d = f.driver("", "ctr");
  Resources res;
  res.memory = MemoryResources{.limit = 64 * MiB, .swap = 64 * MiB};
  REQUIRE(d->apply(res).has_value());
  CHECK(slurp(mem + "/memory.limit_in_bytes") == "67108864");
  res.memory = MemoryResources{.limit = -1};
  REQUIRE(d->apply(res).has_value());
  CHECK(slurp(mem + "/memory.limit_in_bytes") == "-1");
  res.memory = MemoryResources{.limit = 64 * MiB, .swap = 96 * MiB};
  CHECK(error_of(d->apply(res)) ==
        "cgroup: linux.resources.memory.swap = 100663296 needs " + mem +
            "/memory.memsw.limit_in_bytes, which this kernel does not have (swap accounting is "
            "off; boot with swapaccount=1)");
}

TEST_CASE("v1: unlimited memory resets memsw too", "[cgroup]") {
  V1Fixture f;
  f.make_leaves("ctr");
  std::string mem = f.dir("memory", "ctr");
  put(mem + "/memory.limit_in_bytes", "67108864\n");
  put(mem + "/memory.memsw.limit_in_bytes", "67108864\n");
  Resources res;
  res.memory = MemoryResources{.limit = -1};
  REQUIRE(f.driver("", "ctr")->apply(res).has_value());
  CHECK(slurp(mem + "/memory.limit_in_bytes") == "-1");
  CHECK(slurp(mem + "/memory.memsw.limit_in_bytes") == "-1");
}

TEST_CASE("v1: cpuset children get the parent's cpus and mems", "[cgroup]") {
  V1Fixture f;
  // An absolute path whose pre-existing parent was never filled in.
  put_all(f.root + "/cpuset/berth", {{"cpuset.cpus", ""}, {"cpuset.mems", ""}});
  put_all(f.root + "/cpuset/berth/c1", {{"cpuset.cpus", "\n"}, {"cpuset.mems", "\n"}});
  put(f.root + "/cpuset/berth/c1/cpuset.mems", "0\n");  // already set: kept
  auto d = f.driver("/berth/c1", "id");
  REQUIRE(d->create().has_value());
  CHECK(slurp(f.root + "/cpuset/berth/cpuset.cpus") == "0-3");
  CHECK(slurp(f.root + "/cpuset/berth/cpuset.mems") == "0");
  CHECK(slurp(f.root + "/cpuset/berth/c1/cpuset.cpus") == "0-3");
  CHECK(slurp(f.root + "/cpuset/berth/c1/cpuset.mems") == "0\n");
}

TEST_CASE("v1: devices: deny all, the spec's rules in order, then runc's defaults", "[cgroup]") {
  V1Fixture f;
  f.make_leaves("ctr");
  std::string dev = f.dir("devices", "ctr");
  WriteLog allow(dev + "/devices.allow"), deny(dev + "/devices.deny");
  const std::string defaults =
      "c *:* m"
      "b *:* m"
      "c 1:3 rwm"
      "c 1:8 rwm"
      "c 1:7 rwm"
      "c 5:0 rwm"
      "c 1:5 rwm"
      "c 1:9 rwm"
      "c 136:* rwm"
      "c 5:2 rwm"
      "c 10:200 rwm";
  SECTION("with rules") {
    Resources res;
    res.devices = {DeviceRule{.allow = false, .access = "rwm"},
                   DeviceRule{.allow = true, .type = "b", .major = 8, .access = "r"},
                   DeviceRule{.allow = false, .type = "c", .major = 1, .minor = 9, .access = "w"}};
    REQUIRE(f.driver("", "ctr")->apply(res).has_value());
    CHECK(deny.take() ==
          "a"
          "a *:* rwm"
          "c 1:9 w");
    CHECK(allow.take() == "b 8:* r" + defaults);
  }
  SECTION("a spec without device rules still gets deny-all and the defaults") {
    REQUIRE(f.driver("", "ctr")->apply(Resources{}).has_value());
    CHECK(deny.take() == "a");
    CHECK(allow.take() == defaults);
  }
}

TEST_CASE("device_cgroup_rules: the spec's rules, then its device nodes", "[cgroup]") {
  Linux linux;
  linux.resources = Resources{};
  linux.resources->devices = {DeviceRule{.allow = false, .access = "rwm"}};
  linux.devices = {Device{.path = "/dev/fuse", .type = "c", .major = 10, .minor = 229},
                   Device{.path = "/dev/sda", .type = "b", .major = 8, .minor = 0},
                   Device{.path = "/dev/fifo", .type = "p"},
                   Device{.path = "/dev/mem-u", .type = "u", .major = 1, .minor = 1}};
  auto rules = device_cgroup_rules(linux);
  REQUIRE(rules.size() == 4);
  CHECK_FALSE(rules[0].allow);
  CHECK((rules[1].allow && rules[1].type == "c" && rules[1].major == 10 && rules[1].minor == 229 &&
         rules[1].access == "rwm"));
  CHECK((rules[2].type == "b" && rules[2].major == 8 && rules[2].minor == 0));
  CHECK((rules[3].type == "c" && rules[3].major == 1));  // "u" is a char device; "p" has no rule
  CHECK(device_cgroup_rules(Linux{}).empty());
}

TEST_CASE("v1: unsupported requests are errors", "[cgroup]") {
  SECTION("resources.unified") {
    V1Fixture f;
    Resources res;
    res.unified = {{"memory.high", "1G"}};
    CHECK(error_of(f.driver("", "ctr")->apply(res)) ==
          "cgroup: linux.resources.unified needs cgroup v2 controllers, but this host's "
          "controllers are on cgroup v1 (hybrid mode)");
  }
  SECTION("a controller that is not mounted") {
    V1Fixture f;
    std::erase_if(f.layout.v1, [](auto& v) { return v.controller == "pids"; });
    Resources res;
    res.pids_limit = 5;
    CHECK(error_of(f.driver("", "ctr")->apply(res)) ==
          "cgroup: linux.resources.pids needs the v1 pids controller, which is not mounted on "
          "this host");
  }
  SECTION("a failed write") {
    V1Fixture f;
    f.make_leaves("ctr");
    stdfs::remove(f.dir("pids", "ctr") + "/pids.max");
    Resources res;
    res.pids_limit = 5;
    CHECK(error_of(f.driver("", "ctr")->apply(res)) == "cgroup: write \"5\" to " +
                                                           f.dir("pids", "ctr") +
                                                           "/pids.max: No such file or directory");
  }
}

// v1 has files for the fields v2 refuses; a kernel without one (no
// CONFIG_RT_GROUP_SCHED, no CFQ, kmem gone) refuses the field by name.
TEST_CASE("v1: cpu rt/idle/burst, kmem, use_hierarchy, leaf weights and rdma", "[cgroup]") {
  V1Fixture f;
  f.make_leaves("ctr");
  std::string cpu = f.dir("cpu,cpuacct", "ctr");
  std::string mem = f.dir("memory", "ctr");
  std::string blkio = f.dir("blkio", "ctr");
  auto d = f.driver("", "ctr");
  Resources res;
  auto refused = [&](const Resources& r) { return refused_by_name(d->apply(r)); };
  SECTION("written where the kernel has the files") {
    put_all(cpu, {{"cpu.rt_runtime_us", "0\n"},
                  {"cpu.rt_period_us", "1000000\n"},
                  {"cpu.cfs_burst_us", "0\n"},
                  {"cpu.idle", "0\n"}});
    put_all(mem, {{"memory.kmem.limit_in_bytes", "9223372036854771712\n"},
                  {"memory.use_hierarchy", "0\n"}});
    put_all(blkio, {{"blkio.leaf_weight", "500\n"}, {"blkio.leaf_weight_device", ""}});
    res.memory = MemoryResources{.kernel = 32 * MiB, .use_hierarchy = true};
    res.cpu = CpuResources{.quota = 50000,
                           .burst = 10000,
                           .realtime_runtime = 20000,
                           .realtime_period = 500000,
                           .idle = 1};
    res.block_io = BlockIoResources{.leaf_weight = 200, .leaf_weight_device = {{8, 0, 40}}};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(cpu + "/cpu.rt_runtime_us") == "20000");
    CHECK(slurp(cpu + "/cpu.rt_period_us") == "500000");
    CHECK(slurp(cpu + "/cpu.cfs_burst_us") == "10000");
    CHECK(slurp(cpu + "/cpu.idle") == "1");
    CHECK(slurp(cpu + "/cpu.cfs_quota_us") == "50000");
    CHECK(slurp(mem + "/memory.kmem.limit_in_bytes") == "33554432");
    CHECK(slurp(mem + "/memory.use_hierarchy") == "1");
    CHECK(slurp(blkio + "/blkio.leaf_weight") == "200");
    CHECK(slurp(blkio + "/blkio.leaf_weight_device") == "8:0 40");
  }
  SECTION("refused by name where the kernel has none") {
    res.cpu = CpuResources{.realtime_runtime = 20000};
    CHECK(refused(res) ==
          "cgroup: linux.resources.cpu.realtimeRuntime cannot be applied: this "
          "kernel has no " +
              cpu +
              "/cpu.rt_runtime_us (the kernel is built without "
              "CONFIG_RT_GROUP_SCHED): Operation not supported");
    res.cpu = CpuResources{.realtime_period = 500000};
    CHECK(refused(res).starts_with("cgroup: linux.resources.cpu.realtimePeriod cannot be applied"));
    res.cpu = CpuResources{.idle = 1};
    CHECK(refused(res).starts_with("cgroup: linux.resources.cpu.idle cannot be applied"));
    res.cpu = CpuResources{.burst = 1};
    CHECK(refused(res).starts_with("cgroup: linux.resources.cpu.burst cannot be applied"));
    res.cpu.reset();
    res.memory = MemoryResources{.kernel = -1};
    CHECK(refused(res) ==
          "cgroup: linux.resources.memory.kernel cannot be applied: this kernel "
          "has no " +
              mem +
              "/memory.kmem.limit_in_bytes (kernel memory limits are deprecated "
              "and gone from newer kernels): Operation not supported");
    res.memory = MemoryResources{.use_hierarchy = true};
    CHECK(
        refused(res).starts_with("cgroup: linux.resources.memory.useHierarchy cannot be "
                                 "applied"));
    res.memory.reset();
    res.block_io = BlockIoResources{.leaf_weight = 200};
    CHECK(refused(res) ==
          "cgroup: linux.resources.blockIO.leafWeight cannot be applied: this "
          "kernel has no " +
              blkio +
              "/blkio.leaf_weight (leaf weights belonged to the CFQ scheduler, "
              "removed in Linux 5.0; BFQ has none): Operation not supported");
    res.block_io = BlockIoResources{.leaf_weight_device = {{8, 0, 40}}};
    CHECK(refused(res).starts_with(
        "cgroup: linux.resources.blockIO.weightDevice[].leafWeight cannot be applied"));
  }
  SECTION("a value the kernel refuses names the field") {
    stdfs::create_directory(cpu + "/cpu.rt_runtime_us");  // the write fails (EISDIR)
    res.cpu = CpuResources{.realtime_runtime = 20000};
    CHECK(error_of(d->apply(res)) ==
          "cgroup: linux.resources.cpu.realtimeRuntime = 20000: write "
          "\"20000\" to " +
              cpu + "/cpu.rt_runtime_us: Is a directory");
  }
  SECTION("memory.checkBeforeUpdate") {
    put(mem + "/memory.usage_in_bytes", "100000000\n");
    res.memory = MemoryResources{.limit = 64 * MiB, .check_before_update = true};
    CHECK(error_of(d->apply(res))
              .starts_with("cgroup: linux.resources.memory.limit = 67108864 is below the cgroup's "
                           "current usage of "
                           "100000000 bytes"));
    CHECK(slurp(mem + "/memory.limit_in_bytes") == "9223372036854771712\n");
  }
  SECTION("rdma: the v1 controller, else the v2 one of a hybrid host") {
    put_all(f.layout.unified_mount,
            {{"cgroup.controllers", "rdma\n"}, {"cgroup.subtree_control", ""}});
    put(f.layout.unified_mount + "/ctr/rdma.max", "");
    res.rdma = {{"mlx5_0", RdmaLimit{.hca_handles = 2, .hca_objects = 9}}};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(f.layout.unified_mount + "/ctr/rdma.max") == "mlx5_0 hca_handle=2 hca_object=9");
    f.layout.v1.push_back({"rdma", f.root + "/rdma", "/"});
    put(f.root + "/rdma/ctr/rdma.max", "");
    REQUIRE(f.driver("", "ctr")->apply(res).has_value());
    CHECK(slurp(f.root + "/rdma/ctr/rdma.max") == "mlx5_0 hca_handle=2 hca_object=9");
  }
  SECTION("rdma on neither") {
    put_all(f.layout.unified_mount, {{"cgroup.controllers", ""}, {"cgroup.subtree_control", ""}});
    res.rdma = {{"mlx5_0", RdmaLimit{}}};
    CHECK(error_of(d->apply(res)) ==
          "cgroup: linux.resources.rdma (not mounted on v1 either) needs the rdma controller, "
          "which " +
              f.layout.unified_mount + " does not offer");
  }
  SECTION("the no-op values are accepted") {
    res.memory = MemoryResources{.limit = 64 * MiB, .kernel = 0};
    res.cpu = CpuResources{.shares = 512, .burst = 0, .realtime_runtime = 0, .idle = 0};
    res.block_io = BlockIoResources{.leaf_weight = 0};
    REQUIRE(d->apply(res).has_value());
    CHECK(slurp(mem + "/memory.limit_in_bytes") == "67108864");
  }
}

TEST_CASE("v1: membership, stats, pids, freeze and kill", "[cgroup]") {
  V1Fixture f;
  f.make_leaves("ctr");
  auto d = f.driver("", "ctr");
  REQUIRE(d->add_process(4321).has_value());
  for (const auto& p : d->paths()) CHECK(slurp(p + "/cgroup.procs") == "4321");

  put(f.dir("cpu,cpuacct", "ctr") + "/cpuacct.usage", "1500000\n");
  put(f.dir("memory", "ctr") + "/memory.usage_in_bytes", "4096\n");
  put(f.dir("memory", "ctr") + "/memory.max_usage_in_bytes", "8192\n");
  put(f.dir("memory", "ctr") + "/memory.oom_control",
      "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  put(f.dir("pids", "ctr") + "/pids.current", "1\n");
  auto s = d->stats();
  REQUIRE(s.has_value());
  CHECK(s->cpu_usage_usec == 1500);  // ns -> usec
  CHECK(s->memory_current == 4096);
  CHECK(s->memory_peak == 8192);
  CHECK(s->oom_kills == 2);
  CHECK(s->pids_current == 1);

  // The v2 tree lists the members on a hybrid host.
  put(f.layout.unified_mount + "/ctr/cgroup.procs", "7\n8\n");
  CHECK(*d->pids() == std::vector<pid_t>{7, 8});

  SECTION("hybrid: cgroup.kill in the v2 tree") {
    put(f.layout.unified_mount + "/ctr/cgroup.kill", "");
    REQUIRE(d->kill_all(SIGKILL).has_value());
    CHECK(slurp(f.layout.unified_mount + "/ctr/cgroup.kill") == "1");
  }
  SECTION("no cgroup.freeze in the v2 tree: the v1 freezer") {
    std::string state = f.dir("freezer", "ctr") + "/freezer.state";
    REQUIRE(d->freeze(true).has_value());
    CHECK(slurp(state) == "FROZEN");
    REQUIRE(d->freeze(false).has_value());
    CHECK(slurp(state) == "THAWED");
  }
}

TEST_CASE("v1: legacy host without a v2 tree", "[cgroup]") {
  V1Fixture f(/*hybrid=*/false);
  f.make_leaves("ctr");
  auto d = f.driver("", "ctr");
  CHECK(d->paths().size() == 7);
  auto fd = d->open_unified_dir();
  REQUIRE(fd.has_value());
  CHECK_FALSE(*fd);  // nothing to CLONE_INTO_CGROUP
  put(f.dir("memory", "ctr") + "/cgroup.procs", "9\n");
  CHECK(*d->pids() == std::vector<pid_t>{9});  // the first hierarchy
}

TEST_CASE("v1: destroy removes only what create made", "[cgroup]") {
  V1Fixture f;
  // A fixture's new cpuset dir has no files to inherit into; that is tested
  // above, so leave cpuset out here.
  std::erase_if(f.layout.v1, [](auto& v) { return v.controller == "cpuset"; });
  // "a" exists already in the memory hierarchy only.
  stdfs::create_directories(f.dir("memory", "a"));
  auto d = f.driver("a/b/c", "id");
  REQUIRE(d->create().has_value());
  REQUIRE(d->paths().size() == 7);
  for (const auto& p : d->paths()) CHECK(stdfs::is_directory(p));
  // A cgroup the container made inside its own goes too.
  stdfs::create_directories(f.dir("pids", "a/b/c/nested/deeper"));
  REQUIRE(d->destroy().has_value());
  CHECK(stdfs::is_directory(f.dir("memory", "a")));  // pre-existing
  CHECK_FALSE(stdfs::exists(f.dir("memory", "a/b")));
  CHECK_FALSE(stdfs::exists(f.dir("pids", "a")));
  CHECK_FALSE(stdfs::exists(f.dir("cpu,cpuacct", "a")));
  CHECK_FALSE(stdfs::exists(f.layout.unified_mount + "/a"));
  CHECK(stdfs::is_directory(f.dir("memory", "")));  // the caller's own cgroup
  REQUIRE(d->destroy().has_value());                // idempotent
}

TEST_CASE("v1: destroy keeps a parent it made that another cgroup now uses", "[cgroup]") {
  V1Fixture f;
  std::erase_if(f.layout.v1, [](auto& v) { return v.controller == "cpuset"; });
  auto d = f.driver("a/b", "id");
  REQUIRE(d->create().has_value());
  stdfs::create_directories(f.dir("pids", "a/other"));
  REQUIRE(d->destroy().has_value());
  CHECK_FALSE(stdfs::exists(f.dir("pids", "a/b")));
  CHECK(stdfs::is_directory(f.dir("pids", "a/other")));
  CHECK_FALSE(stdfs::exists(f.dir("blkio", "a")));
}

TEST_CASE("v1: destroy reports a leaf it cannot remove", "[cgroup]") {
  V1Fixture f;
  f.make_leaves("ctr");
  auto d = f.driver("", "ctr");
  // The fixture leaves hold regular files, which cgroupfs would not.
  CHECK(error_of(d->destroy()) ==
        "cgroup: rmdir " + f.dir("memory", "ctr") + ": Directory not empty");
}

TEST_CASE("v1: open_cgroup_driver maps recorded paths to hierarchies", "[cgroup]") {
  V1Fixture f;
  auto paths = f.driver("a/b", "id")->paths();
  for (const auto& p : paths) stdfs::create_directories(p);
  auto d = open_cgroup_driver(f.layout, paths);
  REQUIRE(d.has_value());
  CHECK((*d)->paths() == paths);
  put(f.layout.unified_mount + "/a/b/cgroup.procs", "4\n");
  CHECK(*(*d)->pids() == std::vector<pid_t>{4});  // the v2 tree was recognised
  stdfs::remove(f.layout.unified_mount + "/a/b/cgroup.procs");
  // A re-opened driver knows only the leaves: the parents stay.
  REQUIRE((*d)->destroy().has_value());
  for (const auto& p : paths) CHECK_FALSE(stdfs::exists(p));
  CHECK(stdfs::is_directory(f.dir("pids", "a")));

  auto bad = open_cgroup_driver(f.layout, {"/somewhere/else"});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().str() ==
        "cgroup: recorded cgroup /somewhere/else is under none of this host's cgroup mounts");
}
