// The microhost cgroup layout with berth-shim on the real cgroups of the host
// (hybrid here, pure v2 in the test VM):
//
//   <test's cgroup>/<parent>/<task>/<container>
//
// task.json's cgroup_parent and limits make the task cgroup: it carries the
// task's limits, the containers are leaves below it, no process is ever in
// it, the shim stays in its own cgroup, and all of it goes when the task
// stops.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "tests/integration/harness.h"

using namespace berth::test;
namespace stdfs = std::filesystem;

namespace {

const std::string kShim = BERTH_BIN_DIR "/berth-shim";

bool alive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(st, line);
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

std::string trimmed(const std::string& path) {
  std::string s = read_file(path);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool pure_v2() {
  auto hs = cgroup_hierarchies();
  return hs.size() == 1 && hs[0].controllers.empty();
}

// The hierarchies the runtime places cgroups in: the v2 tree and the v1
// controllers it drives (not name=systemd, net_cls, perf_event, ...).
bool placed(const std::string& controllers) {
  if (controllers.empty()) return true;
  for (const char* c :
       {"memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer", "devices"}) {
    size_t pos = 0;
    while (pos <= controllers.size()) {
      size_t end = std::min(controllers.find(',', pos), controllers.size());
      if (controllers.substr(pos, end - pos) == c) return true;
      pos = end + 1;
    }
  }
  return false;
}

// Where the test puts the task's parent. Relative to the test's own cgroup,
// except on pure v2 when the test runs in a non-root cgroup (the VM's
// BERTH_VM_CGROUP=leaf, a systemd service): that cgroup holds processes and
// so cannot enable controllers for a subtree. The parent then goes into the
// delegated cgroup above it, a sibling of the test's leaf, by an absolute
// cgroup_parent: the layout the README gives for berthd under systemd.
std::string sibling_base() {
  if (!pure_v2()) return "";
  std::string own = cgroup_hierarchies()[0].own;
  if (own.empty()) return "";
  return own.substr(0, own.rfind('/')) + "/";
}

// `rel` (below the test's cgroup, or below sibling_base()) in each of those
// hierarchies.
std::vector<std::string> placed_dirs(const std::string& rel) {
  std::vector<std::string> out;
  const std::string sibling = sibling_base();
  for (const auto& h : cgroup_hierarchies()) {
    if (!placed(h.controllers)) continue;
    out.push_back(h.mount + (sibling.empty() ? h.own + "/" : sibling) + rel);
  }
  return out;
}

// The same in the hierarchy of `controller` (pure v2: the one tree).
std::string placed_dir(const std::string& controller, const std::string& rel) {
  const std::string sibling = sibling_base();
  for (const auto& h : cgroup_hierarchies()) {
    bool match = h.controllers.empty() ? pure_v2() : false;
    size_t pos = 0;
    while (!match && pos <= h.controllers.size()) {
      size_t end = std::min(h.controllers.find(',', pos), h.controllers.size());
      match = h.controllers.substr(pos, end - pos) == controller;
      pos = end + 1;
    }
    if (match) return h.mount + (sibling.empty() ? h.own + "/" : sibling) + rel;
  }
  return "";
}

// Removes what a failed run left (the parent and everything below it).
struct CgroupCleanup {
  std::string parent;
  pid_t shim = -1;
  ~CgroupCleanup() {
    if (alive(shim)) ::kill(shim, SIGKILL);
    wait_until([&] { return !alive(shim); }, 30s);
    for (const auto& dir : placed_dirs(parent)) {
      if (stdfs::exists(dir)) {
        record_leak("cgroup " + dir);
        remove_cgroup_tree(dir);
      }
    }
  }
};

}  // namespace

TEST_CASE("microhost: a task cgroup holds the limits, its containers are leaves below it",
          "[shim][microhost]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  TempDir task_dir;
  const std::string parent = unique_name();
  const std::string task_id = unique_name();
  const std::string task_path = parent + "/" + task_id;
  CgroupCleanup cleanup{parent};

  std::vector<std::unique_ptr<Bundle>> bundles;
  Json containers = Json::array();
  for (const std::string name : {"web", "sidecar"}) {
    auto b = std::make_unique<Bundle>(rt);
    b->config()["process"]["args"] = {
        "/bin/sh", "-c", "trap 'exit 143' TERM; echo ready; while true; do sleep 0.2; done"};
    b->save();
    containers.push_back({{"name", name}, {"bundle", b->dir()}, {"stop_timeout", 5}});
    bundles.push_back(std::move(b));
  }
  const int64_t memory_mib = 256, reservation_mib = 128;
  const uint64_t cpu_units = 512;
  Json task = {{"version", 1},
               {"task_id", task_id},
               {"runtime_root", rt.root()},
               {"containers", containers},
               {"cgroup_parent", sibling_base().empty() ? parent : sibling_base() + parent},
               {"limits",
                {{"cpu", cpu_units},
                 {"memory", memory_mib},
                 {"memory_reservation", reservation_mib},
                 {"pids", 512}}}};
  std::ofstream(task_dir.path() + "/task.json") << task.dump(2);

  const std::string own_cgroup = read_file("/proc/self/cgroup");
  auto r = exec_command({kShim, "--task-dir", task_dir.path()});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  pid_t shim = std::stoi(r.out);
  cleanup.shim = shim;

  // Both containers running (state.json is written before it is announced).
  Json state;
  bool running = wait_until(
      [&] {
        std::string text = read_file(task_dir.path() + "/state.json");
        if (text.empty()) return false;
        state = Json::parse(text, nullptr, false);
        if (state.is_discarded() || !state.contains("containers")) return false;
        for (const auto& c : state["containers"]) {
          if (c["status"] != "RUNNING") return false;
        }
        return true;
      },
      60s);
  INFO(state.dump(2));
  REQUIRE(running);

  // The shim stayed where it was started: not in the task's limits.
  CHECK(read_file("/proc/" + std::to_string(shim) + "/cgroup") == own_cgroup);

  // The task cgroup's limits.
  const std::string mem = placed_dir("memory", task_path);
  const std::string cpu = placed_dir("cpu", task_path);
  const std::string pids = placed_dir("pids", task_path);
  REQUIRE_FALSE(mem.empty());
  const int64_t quota = static_cast<int64_t>(cpu_units * 100000 / 1024);
  if (pure_v2()) {
    CHECK(trimmed(mem + "/memory.max") == std::to_string(memory_mib << 20));
    CHECK(trimmed(mem + "/memory.low") == std::to_string(reservation_mib << 20));
    CHECK(trimmed(cpu + "/cpu.max") == std::to_string(quota) + " 100000");
    CHECK(trimmed(cpu + "/cpu.weight") == "20");  // shares 512 as runc converts them
    CHECK(trimmed(pids + "/pids.max") == "512");
    // Enabled for the containers below it.
    std::string subtree = read_file(mem + "/cgroup.subtree_control");
    for (const char* c : {"cpu", "memory", "pids"}) CHECK(subtree.find(c) != std::string::npos);
  } else {
    CHECK(trimmed(mem + "/memory.limit_in_bytes") == std::to_string(memory_mib << 20));
    CHECK(trimmed(mem + "/memory.soft_limit_in_bytes") == std::to_string(reservation_mib << 20));
    CHECK(trimmed(cpu + "/cpu.cfs_quota_us") == std::to_string(quota));
    CHECK(trimmed(cpu + "/cpu.cfs_period_us") == "100000");
    CHECK(trimmed(cpu + "/cpu.shares") == std::to_string(cpu_units));
    CHECK(trimmed(pids + "/pids.max") == "512");
    // No device rules on the task node: it keeps what it inherited (the
    // containers' leaves get theirs), or a leaf could not be given a device
    // its task node denies.
    if (std::string dev = placed_dir("devices", task_path); !dev.empty()) {
      CHECK(read_file(dev + "/devices.list") ==
            read_file(placed_dir("devices", "") + "/devices.list"));
    }
  }

  // No process in the task node, in any hierarchy (the v2 tree included).
  const auto task_dirs = placed_dirs(task_path);
  REQUIRE_FALSE(task_dirs.empty());
  for (const auto& dir : task_dirs) {
    INFO(dir);
    CHECK(stdfs::exists(dir));
    CHECK(trimmed(dir + "/cgroup.procs").empty());
  }
  // Each container is a leaf below it, in every hierarchy.
  for (const auto& c : state["containers"]) {
    std::string name = c["name"];
    pid_t pid = c["pid"];
    INFO(name);
    REQUIRE(alive(pid));
    for (const auto& dir : placed_dirs(task_path + "/" + name)) {
      INFO(dir);
      std::string procs = read_file(dir + "/cgroup.procs");
      CHECK(procs.find(std::to_string(pid) + "\n") != std::string::npos);
    }
    for (const auto& line : split_lines(read_file("/proc/" + std::to_string(pid) + "/cgroup"))) {
      // "4:memory:/path": the hierarchies the runtime places containers in.
      size_t a = line.find(':'), b = line.find(':', a + 1);
      if (b == std::string::npos || !placed(line.substr(a + 1, b - a - 1))) continue;
      INFO(line);
      CHECK(line.ends_with("/" + task_path + "/" + name));
    }
  }

  // Stop the task: the shim takes SIGTERM as a stop. Once the shells have
  // their TERM traps (pid 1 drops a signal it has no handler for).
  for (const std::string name : {"web", "sidecar"}) {
    INFO(name);
    CHECK(wait_until([&] {
      return read_file(task_dir.path() + "/logs/" + name + ".log").find(" stdout F ready\n") !=
             std::string::npos;
    }));
  }
  // Stop the task: the shim takes SIGTERM as a stop.
  REQUIRE(::kill(shim, SIGTERM) == 0);
  REQUIRE(wait_until([&] { return !alive(shim); }, 60s));
  Json final_state = Json::parse(read_file(task_dir.path() + "/state.json"));
  CHECK(final_state["status"] == "STOPPED");
  for (const auto& c : final_state["containers"]) CHECK(c["exit_code"] == 143);
  // Everything is gone: the leaves, the task cgroup, the parent the shim made.
  for (const auto& dir : placed_dirs(parent)) {
    INFO(dir);
    CHECK_FALSE(stdfs::exists(dir));
  }
}

TEST_CASE("microhost: bad task limits and an impossible task cgroup fail the start",
          "[shim][microhost]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  TempDir task_dir;
  Bundle b(rt);
  b.config()["process"]["args"] = {"/bin/true"};
  b.save();
  const std::string parent = unique_name();
  CgroupCleanup cleanup{parent};
  // Refused by task.json validation: a reservation above the hard limit.
  Json task = {{"version", 1},
               {"task_id", unique_name()},
               {"runtime_root", rt.root()},
               {"containers", {{{"name", "c"}, {"bundle", b.dir()}}}},
               {"cgroup_parent", parent},
               {"limits", {{"memory", 64}, {"memory_reservation", 128}}}};
  std::ofstream(task_dir.path() + "/task.json") << task.dump(2);
  auto r = exec_command({kShim, "--task-dir", task_dir.path()});
  INFO(r);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("limits.memory_reservation") != std::string::npos);
  for (const auto& dir : placed_dirs(parent)) CHECK_FALSE(stdfs::exists(dir));

  // A task cgroup that cannot be made (its parent is an interface file)
  // fails the start: no container runs, the error is in the shim's log.
  TempDir bad_dir;
  task["task_id"] = unique_name();
  task["cgroup_parent"] = "/cgroup.procs";
  task["limits"] = {{"memory", 64}};
  std::ofstream(bad_dir.path() + "/task.json") << task.dump(2);
  auto bad = exec_command({kShim, "--task-dir", bad_dir.path()});
  INFO(bad);
  CHECK(bad.exit_code == 1);
  std::string log = read_file(bad_dir.path() + "/shim.log");
  INFO(log);
  CHECK(log.find("task cgroup /cgroup.procs/") != std::string::npos);
  CHECK_FALSE(stdfs::exists(rt.root() + "/" + task["task_id"].get<std::string>() + "-c"));
}
