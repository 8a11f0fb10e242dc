// The microhost task cgroup's inputs: task.json's cgroup_parent and limits,
// the limits' ranges and how they become cgroup resources.
#include <catch2/catch.hpp>
#include <filesystem>

#include "common/fs.h"
#include "runtime/microhost_cgroup.h"
#include "shim/task.h"
#include "temp_dir.h"

using namespace berth;
using namespace berth::runtime;

namespace {

std::string task_json(const std::string& extra) {
  return R"({"version": 1, "task_id": "t1", "runtime_root": "/run/x",
             "containers": [{"name": "web", "bundle": "/b"}])" +
         (extra.empty() ? std::string() : ", " + extra) + "}";
}

std::string parse_error(const std::string& extra) {
  auto t = shim::parse_task(task_json(extra));
  REQUIRE_FALSE(t.has_value());
  return t.error().str();
}

void put(const std::string& path, const std::string& content) {
  REQUIRE(fs::mkdir_p(std::filesystem::path(path).parent_path()).has_value());
  REQUIRE(fs::write_file_atomic(path, content).has_value());
}

std::string slurp(const std::string& path) {
  return fs::read_file(path).value_or("<unreadable>");
}

}  // namespace

TEST_CASE("microhost: task.json without cgroup_parent or limits has no task cgroup",
          "[microhost]") {
  auto t = shim::parse_task(task_json(""));
  REQUIRE(t.has_value());
  CHECK_FALSE(t->cgroup_parent.has_value());
}

TEST_CASE("microhost: task.json cgroup_parent and limits", "[microhost]") {
  auto t = shim::parse_task(task_json(
      R"("cgroup_parent": "berth/tasks", "limits": {"cpu": 512, "memory": 256,
         "memory_reservation": 128, "pids": 100})"));
  REQUIRE(t.has_value());
  CHECK(t->cgroup_parent == "berth/tasks");
  CHECK(t->limits.cpu_units == 512u);
  CHECK(t->limits.memory_bytes == 256LL << 20);
  CHECK(t->limits.memory_reservation_bytes == 128LL << 20);
  CHECK(t->limits.pids == 100);

  // Limits alone: the default parent.
  auto d = shim::parse_task(task_json(R"("limits": {"memory": 64})"));
  REQUIRE(d.has_value());
  CHECK(d->cgroup_parent == "berth");
  CHECK_FALSE(d->limits.cpu_units.has_value());
  // An absolute parent is kept (a delegated subtree on pure v2).
  auto a = shim::parse_task(task_json(R"("cgroup_parent": "/berth.slice/tasks")"));
  REQUIRE(a.has_value());
  CHECK(a->cgroup_parent == "/berth.slice/tasks");
}

TEST_CASE("microhost: task.json task cgroup errors name the field", "[microhost]") {
  CHECK_THAT(parse_error(R"("cgroup_parent": "")"), Catch::Contains("cgroup_parent"));
  CHECK_THAT(parse_error(R"("cgroup_parent": 3)"), Catch::Contains("cgroup_parent"));
  CHECK_THAT(parse_error(R"("cgroup_parent": "a/../b")"), Catch::Contains("cgroup_parent"));
  CHECK_THAT(parse_error(R"("cgroup_parent": "a//b")"), Catch::Contains("cgroup_parent"));
  CHECK_THAT(parse_error(R"("cgroup_parent": "a:b:c")"), Catch::Contains("cgroup_parent"));
  CHECK_THAT(parse_error(R"("limits": [1])"), Catch::Contains("limits: must be an object"));
  CHECK_THAT(parse_error(R"("limits": {"cpus": 1})"), Catch::Contains("limits.cpus"));
  CHECK_THAT(parse_error(R"("limits": {"cpu": 10})"), Catch::Contains("limits.cpu"));
  CHECK_THAT(parse_error(R"("limits": {"cpu": "1"})"), Catch::Contains("limits.cpu"));
  CHECK_THAT(parse_error(R"("limits": {"memory": 2})"), Catch::Contains("limits.memory"));
  CHECK_THAT(parse_error(R"("limits": {"pids": 0})"), Catch::Contains("limits.pids"));
  CHECK_THAT(parse_error(R"("limits": {"memory": 64, "memory_reservation": 128})"),
             Catch::Contains("limits.memory_reservation"));
}

TEST_CASE("microhost: task limits are validated and become cgroup resources", "[microhost]") {
  CHECK(validate_task_limits({}).has_value());
  CHECK_FALSE(validate_task_limits({.cpu_units = 127}).has_value());
  CHECK_FALSE(validate_task_limits({.cpu_units = 262145}).has_value());
  CHECK_FALSE(validate_task_limits({.memory_bytes = 1 << 20}).has_value());
  CHECK_FALSE(validate_task_limits({.memory_bytes = 64 << 20, .memory_reservation_bytes = 65 << 20})
                  .has_value());
  CHECK_FALSE(validate_task_limits({.pids = 0}).has_value());

  Resources r = task_resources(
      {.cpu_units = 512, .memory_bytes = 256 << 20, .memory_reservation_bytes = 128 << 20});
  REQUIRE(r.cpu);
  CHECK(r.cpu->shares == 512u);
  CHECK(r.cpu->quota == 50000);
  CHECK(r.cpu->period == 100000u);
  REQUIRE(r.memory);
  CHECK(r.memory->limit == 256 << 20);
  CHECK(r.memory->reservation == 128 << 20);
  CHECK_FALSE(r.pids_limit);
  CHECK(r.devices.empty());
  CHECK_FALSE(task_resources({}).cpu);
  CHECK_FALSE(task_resources({}).memory);
}

TEST_CASE("microhost: a task cgroup's name and parent are checked before anything is made",
          "[microhost]") {
  CgroupLayout layout;  // never reached: the checks come first
  layout.unified_mount = "/nonexistent";
  for (const std::string name : {"", "..", "a/b"}) {
    auto t = TaskCgroup::create(layout, "berth", name, {});
    REQUIRE_FALSE(t.has_value());
    CHECK_THAT(t.error().str(), Catch::Contains("one path component"));
  }
  auto p = TaskCgroup::create(layout, "a/../b", "t", {});
  REQUIRE_FALSE(p.has_value());
  CHECK_THAT(p.error().str(), Catch::Contains(".."));
  auto l = TaskCgroup::create(layout, "berth", "t", {.pids = -3});
  REQUIRE_FALSE(l.has_value());
  CHECK_THAT(l.error().str(), Catch::Contains("limits.pids"));
}

TEST_CASE("microhost: on v2 the task cgroup gets the limits and enables controllers for its leaves",
          "[microhost]") {
  // A fixture tree for the unified hierarchy: the caller in /me, the task
  // cgroup at /me/berth/t (directories made ahead with the interface files
  // the kernel would make).
  test::TempDir tmp;
  const std::string mount = tmp / "cg";
  const std::string task = mount + "/me/berth/t";
  for (const std::string& dir : {mount, mount + "/me", mount + "/me/berth", task}) {
    put(dir + "/cgroup.controllers", "cpu memory pids\n");
    put(dir + "/cgroup.subtree_control", "");
  }
  for (const char* f : {"memory.max", "memory.low", "cpu.max", "cpu.weight", "pids.max"}) {
    put(task + "/" + f, "");
  }
  CgroupLayout layout;
  layout.mode = CgroupLayout::Mode::unified;
  layout.fixture_tree = true;
  layout.root = layout.unified_mount = mount;
  layout.unified_own = "/me";
  auto t = TaskCgroup::create(layout, "berth", "t",
                              {.cpu_units = 256,
                               .memory_bytes = 64 << 20,
                               .memory_reservation_bytes = 32 << 20,
                               .pids = 50});
  REQUIRE(t.has_value());
  CHECK(t->paths() == std::vector<std::string>{task});
  CHECK(t->container_cgroups_path("web") == "berth/t/web");
  CHECK(slurp(task + "/memory.max") == std::to_string(64 << 20));
  CHECK(slurp(task + "/memory.low") == std::to_string(32 << 20));
  CHECK(slurp(task + "/cpu.max") == "25000 100000");
  CHECK(slurp(task + "/cpu.weight") == std::to_string(cpu_shares_to_weight(256)));
  CHECK(slurp(task + "/pids.max") == "50");
  // Top-down, the task cgroup included (a fixture file keeps the last write).
  for (const std::string& dir : {mount + "/me", mount + "/me/berth", task}) {
    INFO(dir);
    CHECK(slurp(dir + "/cgroup.subtree_control").starts_with("+"));
  }
  // destroy() removes the task cgroup (and the parents create() made: none
  // here). A fixture's regular files would keep it: drop them first.
  std::filesystem::remove_all(task);
  std::filesystem::create_directory(task);
  CHECK(t->destroy().has_value());
  CHECK_FALSE(std::filesystem::exists(task));
  CHECK(t->paths().empty());
}
