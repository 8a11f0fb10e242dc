// The cgroup v1 driver on this host's real cgroupfs (hybrid: v1 controllers
// plus an empty v2 tree at /sys/fs/cgroup/unified). Needs root. Cgroups are
// named by the harness ("berth-it-<pid>-<n>"), so its sweep after the run
// reports any left below our own cgroups as a leak. The v2
// driver can only be exercised with fixtures here (tests/unit/cgroup_test.cc):
// this host has no v2 controllers to limit with.
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "common/fd.h"
#include "runtime/cgroup.h"
#include "tests/integration/harness.h"

namespace stdfs = std::filesystem;
using namespace berth;
using namespace berth::runtime;
using namespace std::chrono_literals;

namespace {

constexpr int64_t MiB = 1024 * 1024;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Removes the test's cgroups whatever happens to the test: kills what is
// left in them, then rmdirs, deepest first.
struct CgroupGuard {
  std::vector<std::string> dirs;
  ~CgroupGuard() {
    std::sort(dirs.begin(), dirs.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    for (const auto& d : dirs) {
      std::istringstream procs(slurp(d + "/cgroup.procs"));
      for (pid_t pid; procs >> pid;) ::kill(pid, SIGKILL);
      berth::test::wait_until([&] { return ::rmdir(d.c_str()) == 0 || errno == ENOENT; }, 10s, 5ms);
    }
  }
};

// A forked child running `body(cmd_r, ack_w)`; SIGKILLed and reaped when the
// test leaves, unless the test reaped it.
struct Child {
  pid_t pid = -1;
  UniqueFd cmd;  // parent -> child
  UniqueFd ack;  // child -> parent

  template <class Body>
  explicit Child(Body body) {
    int c[2], a[2];
    REQUIRE(::pipe2(c, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(a, O_CLOEXEC) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // Catch2's fatal-signal handlers would report the test's own SIGTERM
      // as a failure from inside the child.
      for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
      ::close(c[1]);
      ::close(a[0]);
      body(c[0], a[1]);
      ::_exit(0);
    }
    ::close(c[0]);
    ::close(a[1]);
    cmd.reset(c[1]);
    ack.reset(a[0]);
  }
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  void tell(char c) { REQUIRE(::write(cmd.get(), &c, 1) == 1); }
  // The child's one-byte answer; nothing if it died or said nothing in 60 s.
  std::optional<char> answer() {
    pollfd p{ack.get(), POLLIN, 0};
    char c;
    if (::poll(&p, 1, 60000) == 1 && ::read(ack.get(), &c, 1) == 1) return c;
    return std::nullopt;
  }
  bool answered() { return answer().has_value(); }
  int reap() {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    pid = -1;
    return status;
  }
};

// In a forked child: maps `size` bytes and touches every page (exit 2 if
// the mapping fails).
void touch_memory(size_t size) {
  auto* p = static_cast<char*>(
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) ::_exit(2);
  for (size_t i = 0; i < size; i += 4096) p[i] = 1;
}

// Waits for 'g', then charges memory and CPU time to its new cgroups,
// answers, and waits again (until it is killed).
void busy_then_wait(int cmd_r, int ack_w) {
  char c;
  if (::read(cmd_r, &c, 1) != 1) ::_exit(1);
  touch_memory(4 * MiB);
  timespec ts{};
  do {
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  } while (ts.tv_sec == 0 && ts.tv_nsec < 30'000'000);
  if (::write(ack_w, "k", 1) != 1) ::_exit(3);
  (void)::read(cmd_r, &c, 1);
}

void wait_forever(int cmd_r, int) {
  char c;
  (void)::read(cmd_r, &c, 1);
  ::_exit(0);
}

// The host's layout, or a reason to skip.
std::optional<CgroupLayout> v1_layout() {
  if (auto why = berth::test::privileged_skip_reason()) {
    BERTH_SKIP_NOTE(*why);
    return std::nullopt;
  }
  auto l = CgroupLayout::detect();
  REQUIRE(l.has_value());
  if (l->mode == CgroupLayout::Mode::unified) {
    BERTH_SKIP_NOTE(
        "this host is cgroup v2 only; these tests cover the v1 driver (the v2 driver "
        "is tested with fixtures)");
    return std::nullopt;
  }
  return std::move(*l);
}

std::unique_ptr<CgroupDriver> make(const CgroupLayout& l, const std::string& path,
                                   CgroupGuard& guard) {
  auto d = make_cgroup_driver(l, path, "unused");
  REQUIRE(d.has_value());
  for (const auto& p : (*d)->paths()) guard.dirs.push_back(p);
  return std::move(*d);
}

std::string v1_dir(const CgroupLayout& l, const std::string& controller, const std::string& name) {
  for (const auto& v : l.v1) {
    if (v.controller == controller) {
      return v.mount + (v.own == "/" ? "" : v.own) + "/" + name;
    }
  }
  FAIL("no " << controller << " hierarchy");
  return {};
}

// The cgroup path of `pid` in the hierarchy of `controller` ("" for v2),
// from /proc/<pid>/cgroup ("2:cpu,cpuacct:/x").
std::string proc_cgroup(pid_t pid, const std::string& controller) {
  std::istringstream in(slurp(fmt::format("/proc/{}/cgroup", pid)));
  for (std::string line; std::getline(in, line);) {
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    std::istringstream list(line.substr(a + 1, b - a - 1));
    std::string c;
    if (controller.empty() && a + 1 == b) return line.substr(b + 1);
    while (std::getline(list, c, ',')) {
      if (c == controller) return line.substr(b + 1);
    }
  }
  return "<none>";
}

// 64 MiB memory (no swap), 64 pids, shares 512, half a CPU.
void apply_limits(CgroupDriver& d) {
  Resources res;
  res.memory = MemoryResources{.limit = 64 * MiB, .swap = 64 * MiB};
  res.pids_limit = 64;
  res.cpu = CpuResources{.shares = 512, .quota = 50000, .period = 100000};
  auto applied = d.apply(res);
  INFO((applied ? std::string() : applied.error().str()));
  REQUIRE(applied.has_value());
}

// Lets a busy_then_wait child charge its cgroup, then checks the stats.
void check_busy_child_stats(CgroupDriver& d, Child& child) {
  child.tell('g');
  REQUIRE(child.answered());
  auto s = d.stats();
  REQUIRE(s.has_value());
  CHECK(s->pids_current == 1);
  CHECK(s->memory_current >= 3 * MiB);
  CHECK(s->memory_peak >= s->memory_current);
  CHECK(s->cpu_usage_usec >= 20000);
  CHECK(s->oom_kills == 0);
  CHECK(*d.pids() == std::vector<pid_t>{child.pid});
}

// kill_all(SIGKILL) kills the child; destroy() succeeds.
void check_kill_and_destroy(CgroupDriver& d, Child& child) {
  REQUIRE(d.kill_all(SIGKILL).has_value());
  int status = child.reap();
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  auto destroyed = d.destroy();
  INFO((destroyed ? std::string() : destroyed.error().str()));
  REQUIRE(destroyed.has_value());
}

// A process past a 16 MiB limit is OOM-killed, and stats() counts the kill.
void check_oom_counted(CgroupDriver& d) {
  REQUIRE(d.create().has_value());
  Resources res;
  res.memory = MemoryResources{.limit = 16 * MiB, .swap = 16 * MiB};
  REQUIRE(d.apply(res).has_value());
  Child child([](int cmd_r, int ack_w) {
    char c;
    if (::read(cmd_r, &c, 1) != 1) ::_exit(1);
    touch_memory(64 * MiB);
    (void)::write(ack_w, "k", 1);  // not reached under the limit
  });
  REQUIRE(d.add_process(child.pid).has_value());
  child.tell('g');
  int status = child.reap();
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  auto s = d.stats();
  REQUIRE(s.has_value());
  CHECK(s->oom_kills >= 1);
  REQUIRE(d.destroy().has_value());
}

// The first block device node in /dev, or "".
std::string first_block_node() {
  for (const auto& e : stdfs::directory_iterator("/dev")) {
    if (e.is_block_file()) return e.path();
  }
  return "";
}

// A process in `d` (device rules applied: the defaults only) can open
// /dev/null and gets EPERM for `block`. Kills it and destroys `d`.
void check_block_open_denied(CgroupDriver& d, const std::string& block) {
  // The child reports 'y' when open() worked, 'P' for EPERM, 'E' otherwise.
  Child child([&](int cmd_r, int ack_w) {
    char c;
    if (::read(cmd_r, &c, 1) != 1) ::_exit(1);
    for (const char* path : {"/dev/null", block.c_str()}) {
      int fd = ::open(path, O_RDONLY | O_CLOEXEC);
      char r = fd >= 0 ? 'y' : errno == EPERM ? 'P' : 'E';
      if (::write(ack_w, &r, 1) != 1) ::_exit(2);
    }
    (void)::read(cmd_r, &c, 1);
  });
  REQUIRE(d.add_process(child.pid).has_value());
  child.tell('g');
  CHECK(child.answer() == 'y');  // /dev/null
  INFO(block);
  CHECK(child.answer() == 'P');  // the block device
  REQUIRE(d.kill_all(SIGKILL).has_value());
  child.reap();
  REQUIRE(d.destroy().has_value());
}

}  // namespace

TEST_CASE("cgroup v1: limits, membership, stats, freeze, kill, destroy", "[privileged][cgroup]") {
  auto l = v1_layout();
  if (!l) return;
  const std::string name = berth::test::unique_name();
  CgroupGuard guard;
  auto d = make(*l, name, guard);  // relative: below this process's cgroups
  REQUIRE(d->create().has_value());
  for (const auto& p : d->paths()) CHECK(stdfs::is_directory(p));

  // A v1 cpuset child starts empty and got its parent's cpus and mems.
  std::string cpuset = v1_dir(*l, "cpuset", name);
  std::string cpuset_parent = stdfs::path(cpuset).parent_path();
  CHECK(trimmed(slurp(cpuset + "/cpuset.cpus")) == trimmed(slurp(cpuset_parent + "/cpuset.cpus")));
  CHECK_FALSE(trimmed(slurp(cpuset + "/cpuset.cpus")).empty());
  CHECK(trimmed(slurp(cpuset + "/cpuset.mems")) == trimmed(slurp(cpuset_parent + "/cpuset.mems")));

  apply_limits(*d);
  std::string mem = v1_dir(*l, "memory", name);
  CHECK(trimmed(slurp(mem + "/memory.limit_in_bytes")) == "67108864");
  if (stdfs::exists(mem + "/memory.memsw.limit_in_bytes")) {
    CHECK(trimmed(slurp(mem + "/memory.memsw.limit_in_bytes")) == "67108864");
  }
  CHECK(trimmed(slurp(v1_dir(*l, "pids", name) + "/pids.max")) == "64");
  std::string cpu = v1_dir(*l, "cpu", name);
  CHECK(trimmed(slurp(cpu + "/cpu.shares")) == "512");
  CHECK(trimmed(slurp(cpu + "/cpu.cfs_quota_us")) == "50000");
  CHECK(trimmed(slurp(cpu + "/cpu.cfs_period_us")) == "100000");

  Child child(busy_then_wait);
  auto added = d->add_process(child.pid);
  INFO((added ? std::string() : added.error().str()));
  REQUIRE(added.has_value());
  for (const auto& v : l->v1) {
    INFO(v.controller);
    CHECK(proc_cgroup(child.pid, v.controller) == (v.own == "/" ? "" : v.own) + "/" + name);
  }
  if (!l->unified_mount.empty()) {
    CHECK(proc_cgroup(child.pid, "") == (l->unified_own == "/" ? "" : l->unified_own) + "/" + name);
  }

  check_busy_child_stats(*d, child);

  REQUIRE(d->freeze(true).has_value());
  if (!l->unified_mount.empty()) {
    CHECK(slurp(l->unified_mount + "/" + name + "/cgroup.events").find("frozen 1") !=
          std::string::npos);
  }
  REQUIRE(d->freeze(false).has_value());

  check_kill_and_destroy(*d, child);
  for (const auto& p : d->paths()) CHECK_FALSE(stdfs::exists(p));
}

TEST_CASE("cgroup v1: a signal other than SIGKILL goes through freeze/signal/thaw",
          "[privileged][cgroup]") {
  auto l = v1_layout();
  if (!l) return;
  SECTION("hybrid: the v2 freezer") {}
  SECTION("legacy: the v1 freezer") {
    // The same host without its v2 tree exercises freezer.state.
    l->unified_mount.clear();
    l->mode = CgroupLayout::Mode::legacy;
  }
  const std::string name = berth::test::unique_name();
  CgroupGuard guard;
  auto d = make(*l, name, guard);
  REQUIRE(d->create().has_value());
  Child child(wait_forever);
  REQUIRE(d->add_process(child.pid).has_value());
  auto killed = d->kill_all(SIGTERM);
  INFO((killed ? std::string() : killed.error().str()));
  REQUIRE(killed.has_value());
  int status = child.reap();
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGTERM);
  if (l->unified_mount.empty()) {
    CHECK(trimmed(slurp(v1_dir(*l, "freezer", name) + "/freezer.state")) == "THAWED");
  }
  REQUIRE(d->destroy().has_value());
}

TEST_CASE("cgroup v1: OOM kills are counted", "[privileged][cgroup]") {
  auto l = v1_layout();
  if (!l) return;
  CgroupGuard guard;
  check_oom_counted(*make(*l, berth::test::unique_name(), guard));
}

TEST_CASE("cgroup v1: absolute and nested paths, re-opened driver", "[privileged][cgroup]") {
  auto l = v1_layout();
  if (!l) return;
  SECTION("absolute: from each hierarchy's root") {
    const std::string name = berth::test::unique_name();
    CgroupGuard guard;
    auto d = make(*l, "/" + name, guard);
    REQUIRE(d->create().has_value());
    for (const auto& v : l->v1) CHECK(stdfs::is_directory(v.mount + "/" + name));
    REQUIRE(d->destroy().has_value());
    for (const auto& v : l->v1) CHECK_FALSE(stdfs::exists(v.mount + "/" + name));
  }
  SECTION("nested relative: every level create made is removed") {
    const std::string name = berth::test::unique_name();
    CgroupGuard guard;
    auto d = make(*l, name + "/a/b", guard);
    for (const auto& p : d->paths()) {
      guard.dirs.push_back(stdfs::path(p).parent_path());
      guard.dirs.push_back(stdfs::path(p).parent_path().parent_path());
    }
    REQUIRE(d->create().has_value());
    REQUIRE(d->destroy().has_value());
    CHECK_FALSE(stdfs::exists(v1_dir(*l, "memory", name)));
    CHECK_FALSE(stdfs::exists(v1_dir(*l, "pids", name)));
    CHECK(stdfs::is_directory(stdfs::path(v1_dir(*l, "memory", name)).parent_path()));
  }
  SECTION("re-opened from the recorded paths") {
    const std::string name = berth::test::unique_name();
    CgroupGuard guard;
    auto d = make(*l, name, guard);
    REQUIRE(d->create().has_value());
    Child child(wait_forever);
    REQUIRE(d->add_process(child.pid).has_value());
    auto again = open_cgroup_driver(*l, d->paths());
    REQUIRE(again.has_value());
    CHECK((*again)->stats()->pids_current == 1);
    REQUIRE((*again)->kill_all(SIGKILL).has_value());
    child.reap();
    REQUIRE((*again)->destroy().has_value());
    for (const auto& p : d->paths()) CHECK_FALSE(stdfs::exists(p));
  }
}

TEST_CASE("cgroup v1: cpu shares the kernel clamps are reported", "[privileged][cgroup]") {
  auto l = v1_layout();
  if (!l) return;
  const std::string name = berth::test::unique_name();
  CgroupGuard guard;
  auto d = make(*l, name, guard);
  REQUIRE(d->create().has_value());
  Resources res;
  res.cpu = CpuResources{.shares = 1000000};
  auto r = d->apply(res);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().str() ==
        "cgroup: linux.resources.cpu.shares = 1000000 is out of range (the kernel kept 262144)");
  REQUIRE(d->destroy().has_value());
}

TEST_CASE("cgroup v1: the devices cgroup denies what the rules do not allow",
          "[privileged][cgroup]") {
  auto l = v1_layout();
  if (!l) return;
  const std::string block = first_block_node();
  if (block.empty()) {
    BERTH_SKIP("no block device node in /dev to be denied");
  }
  const std::string name = berth::test::unique_name();
  CgroupGuard guard;
  auto d = make(*l, name, guard);
  REQUIRE(d->create().has_value());
  // No device rules in the spec: deny all, plus the defaults.
  REQUIRE(d->apply(Resources{}).has_value());
  std::string list = slurp(v1_dir(*l, "devices", name) + "/devices.list");
  CHECK(list.find("c 1:3 rwm") != std::string::npos);
  CHECK(list.find("a *:* rwm") == std::string::npos);
  check_block_open_denied(*d, block);
}

// ---- the v2 driver on a pure cgroup v2 host (`make test-v2` boots one) ------

namespace {

// The host's layout if it is pure v2; otherwise a visible skip line.
std::optional<CgroupLayout> v2_layout() {
  std::string why;
  if (auto r = berth::test::privileged_skip_reason()) why = *r;
  std::optional<CgroupLayout> l;
  if (why.empty()) {
    auto detected = CgroupLayout::detect();
    REQUIRE(detected.has_value());
    if (detected->mode == CgroupLayout::Mode::unified) {
      l = std::move(*detected);
    } else {
      why = "this host is not pure cgroup v2 (make test-v2 runs these in a v2 VM)";
    }
  }
  if (!why.empty()) {
    WARN("BERTH-SKIPPED: " << why);
    std::cout << "BERTH-SKIPPED: " << why << std::endl;
  }
  return l;
}

std::string v2_dir(const CgroupLayout& l, const std::string& name) {
  return l.unified_mount + (l.unified_own == "/" ? "" : l.unified_own) + "/" + name;
}

}  // namespace

TEST_CASE("cgroup v2: limits, membership, stats, freeze, kill, destroy",
          "[privileged][cgroup-v2]") {
  auto l = v2_layout();
  if (!l) return;
  const std::string name = berth::test::unique_name();
  CgroupGuard guard;
  auto d = make(*l, name, guard);
  REQUIRE(d->create().has_value());
  const std::string dir = v2_dir(*l, name);
  REQUIRE(d->paths() == std::vector<std::string>{dir});
  for (const char* c : {"cpu", "memory", "pids", "io", "cpuset"}) {
    INFO(c);
    CHECK(slurp(dir + "/cgroup.controllers").find(c) != std::string::npos);
  }

  apply_limits(*d);
  CHECK(trimmed(slurp(dir + "/memory.max")) == "67108864");
  CHECK(trimmed(slurp(dir + "/memory.swap.max")) == "0");  // memory+swap == memory
  CHECK(trimmed(slurp(dir + "/pids.max")) == "64");
  CHECK(trimmed(slurp(dir + "/cpu.max")) == "50000 100000");
  CHECK(trimmed(slurp(dir + "/cpu.weight")) == std::to_string(cpu_shares_to_weight(512)));

  Child child(busy_then_wait);
  auto added = d->add_process(child.pid);
  INFO((added ? std::string() : added.error().str()));
  REQUIRE(added.has_value());
  CHECK(proc_cgroup(child.pid, "") == (l->unified_own == "/" ? "" : l->unified_own) + "/" + name);

  check_busy_child_stats(*d, child);

  REQUIRE(d->freeze(true).has_value());
  CHECK(slurp(dir + "/cgroup.events").find("frozen 1") != std::string::npos);
  REQUIRE(d->freeze(false).has_value());
  CHECK(slurp(dir + "/cgroup.events").find("frozen 0") != std::string::npos);

  check_kill_and_destroy(*d, child);
  CHECK_FALSE(stdfs::exists(dir));
}

TEST_CASE("cgroup v2: OOM kills are counted in memory.events", "[privileged][cgroup-v2]") {
  auto l = v2_layout();
  if (!l) return;
  CgroupGuard guard;
  check_oom_counted(*make(*l, berth::test::unique_name(), guard));
}

TEST_CASE("cgroup v2: the device program denies what the rules do not allow",
          "[privileged][cgroup-v2][devices]") {
  auto l = v2_layout();
  if (!l) return;
  const std::string block = first_block_node();
  if (block.empty()) {
    WARN("BERTH-SKIPPED: no block device node in /dev to be denied");
    std::cout << "BERTH-SKIPPED: no block device node in /dev to be denied" << std::endl;
    return;
  }
  CgroupGuard guard;
  auto d = make(*l, berth::test::unique_name(), guard);
  REQUIRE(d->create().has_value());
  // No device rules in the spec: deny all, plus the defaults.
  auto applied = d->apply(Resources{});
  INFO((applied ? std::string() : applied.error().str()));
  REQUIRE(applied.has_value());
  check_block_open_denied(*d, block);
}

TEST_CASE("cgroup v2: a nested path enables controllers top-down, the leaf holds the process",
          "[privileged][cgroup-v2]") {
  auto l = v2_layout();
  if (!l) return;
  const std::string top = berth::test::unique_name();
  CgroupGuard guard;
  guard.dirs = {v2_dir(*l, top), v2_dir(*l, top + "/task")};
  auto d = make(*l, top + "/task/ctr", guard);
  auto created = d->create();
  INFO((created ? std::string() : created.error().str()));
  REQUIRE(created.has_value());
  for (const auto& inner : {v2_dir(*l, top), v2_dir(*l, top + "/task")}) {
    INFO(inner);
    const std::string sub = slurp(inner + "/cgroup.subtree_control");
    for (const char* c : {"cpu", "memory", "pids"}) CHECK(sub.find(c) != std::string::npos);
  }
  Resources res;
  res.memory = MemoryResources{.limit = 32 * MiB, .swap = 32 * MiB};
  res.pids_limit = 16;
  REQUIRE(d->apply(res).has_value());
  Child child(wait_forever);
  auto added = d->add_process(child.pid);
  INFO((added ? std::string() : added.error().str()));
  REQUIRE(added.has_value());
  CHECK(*d->pids() == std::vector<pid_t>{child.pid});
  REQUIRE(d->kill_all(SIGKILL).has_value());
  child.reap();
  REQUIRE(d->destroy().has_value());
}

TEST_CASE("cgroup v2: cpuset, io.max, memory.high and a resources.unified key on the real kernel",
          "[privileged][cgroup-v2]") {
  auto l = v2_layout();
  if (!l) return;
  const std::string name = berth::test::unique_name();
  CgroupGuard guard;
  auto d = make(*l, name, guard);
  REQUIRE(d->create().has_value());
  const std::string dir = v2_dir(*l, name);
  Resources res;
  res.cpu = CpuResources{.cpus = "0", .mems = "0"};
  res.unified = {{"memory.high", "33554432"}};
  // The first disk, if any, gets a read limit (io.max takes only existing
  // block devices).
  std::string disk;
  for (const auto& e : stdfs::directory_iterator("/sys/block")) {
    std::string n = e.path().filename();
    if (n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram")) continue;
    disk = trimmed(slurp(e.path().string() + "/dev"));
    break;
  }
  if (!disk.empty()) {
    const auto colon = disk.find(':');
    res.block_io = BlockIoResources{};
    res.block_io->throttle_read_bps = {
        BlockIoDeviceValue{.major = std::stoll(disk.substr(0, colon)),
                           .minor = std::stoll(disk.substr(colon + 1)),
                           .rate = 1048576}};
  }
  auto applied = d->apply(res);
  INFO((applied ? std::string() : applied.error().str()));
  REQUIRE(applied.has_value());
  CHECK(trimmed(slurp(dir + "/cpuset.cpus")) == "0");
  CHECK(trimmed(slurp(dir + "/cpuset.mems")) == "0");
  CHECK(trimmed(slurp(dir + "/memory.high")) == "33554432");
  if (disk.empty()) {
    std::cout << "BERTH-SKIPPED: io.max: no disk in /sys/block" << std::endl;
  } else {
    INFO(disk);
    CHECK(slurp(dir + "/io.max").find(disk + " rbps=1048576 wbps=max") != std::string::npos);
  }
  REQUIRE(d->destroy().has_value());
}
