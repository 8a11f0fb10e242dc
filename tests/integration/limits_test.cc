// cgroup limits and rlimits, each checked by what the kernel enforced: an
// OOM kill, a failed fork, CPU time actually consumed.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <sstream>

#include "tests/integration/harness.h"

namespace fs = std::filesystem;
using namespace berth::test;

namespace {

constexpr int64_t kMiB = 1024 * 1024;

// The kernel's OOM-kill count for a cgroup: memory.oom_control (v1) or
// memory.events (v2), whichever hierarchy carries the memory controller.
std::optional<long> oom_kills(const std::string& cgroups_path) {
  auto count_in = [](const std::string& file) -> std::optional<long> {
    for (const auto& line : split_lines(read_file(file)))
      if (line.rfind("oom_kill ", 0) == 0) return std::stol(line.substr(9));
    return std::nullopt;
  };
  std::string v1 = cgroup_dir("memory", cgroups_path);
  if (!v1.empty() && fs::exists(v1 + "/memory.oom_control"))
    return count_in(v1 + "/memory.oom_control");
  std::string v2 = cgroup_dir("", cgroups_path);
  if (!v2.empty() && fs::exists(v2 + "/memory.events")) return count_in(v2 + "/memory.events");
  return std::nullopt;
}

void limit_memory(Container& c, int64_t bytes) {
  // swap == limit: no swap to escape into (runtime-spec: memory+swap).
  c.config()["linux"]["resources"]["memory"] = {{"limit", bytes}, {"swap", bytes}};
}

struct Spin {
  long cpu_ms = -1, wall_ms = -1;
};

Spin run_spin(Container& c, int seconds) {
  c.set_args({"/bin/probe", "spin", std::to_string(seconds)});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  Spin s;
  REQUIRE(std::sscanf(r.out.c_str(), "cpu_ms=%ld wall_ms=%ld", &s.cpu_ms, &s.wall_ms) == 2);
  return s;
}

Json events_stats(const Runtime& rt, const std::string& id) {
  auto r = rt.exec({"events", "--stats", id});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  Json j = Json::parse(r.out, nullptr, false);
  REQUIRE(!j.is_discarded());
  REQUIRE(j.is_object());
  CHECK(j.value("type", "") == "stats");
  CHECK(j.value("id", "") == id);
  return j;
}

}  // namespace

TEST_CASE("a process that allocates past the memory limit is OOM-killed",
          "[privileged][limits][memory]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "alloc", "64"});
  SECTION("with a 16 MiB limit: `run` exits 128+SIGKILL") {
    limit_memory(c, 16 * kMiB);
    auto r = c.run();
    INFO(r);
    CHECK(r.exit_code == 137);
    CHECK(r.out.empty());  // the probe never reached "ok"
  }
  SECTION("without a limit (control): the same allocation succeeds") {
    auto r = c.run();
    INFO(r);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n");
  }
}

TEST_CASE("the kernel counts the OOM kill in the container's memory cgroup",
          "[privileged][limits][memory]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  limit_memory(c, 16 * kMiB);
  c.set_args({"/bin/probe", "alloc", "64"});
  auto created = c.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);
  auto started = c.start();
  INFO(started);
  REQUIRE(started.exit_code == 0);
  REQUIRE(c.wait_for_status("stopped"));
  auto kills = oom_kills(c.cgroups_path());
  if (!kills) {
    WARN("skipped: no memory.oom_control or memory.events for " << c.cgroups_path());
    return;
  }
  CHECK(*kills >= 1);
}

TEST_CASE("berth-only: events --stats reports the cgroup's counters and OOM kills",
          "[privileged][limits][memory][stats][berth-only]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("`events --stats` prints berth's own JSON shape");
  Runtime rt;
  SECTION("a running container") {
    Container c(rt);
    c.set_args({"/bin/probe", "sleep", "600"});
    REQUIRE(c.create().exit_code == 0);
    REQUIRE(c.start().exit_code == 0);
    REQUIRE(c.wait_for_status("running"));
    Json data = events_stats(rt, c.id())["data"];
    INFO(data.dump());
    CHECK(data["pids"]["current"].get<long>() >= 1);
    CHECK(data["memory"]["current"].get<long>() > 0);
    CHECK(data["memory"]["peak"].get<long>() >= data["memory"]["current"].get<long>());
    CHECK(data["cpu"]["usage_usec"].is_number_unsigned());
    CHECK(data["memory"]["oom_kills"].get<long>() == 0);
  }
  SECTION("a stopped container that was OOM-killed") {
    Container c(rt);
    limit_memory(c, 16 * kMiB);
    c.set_args({"/bin/probe", "alloc", "64"});
    REQUIRE(c.create().exit_code == 0);
    REQUIRE(c.start().exit_code == 0);
    REQUIRE(c.wait_for_status("stopped"));
    Json data = events_stats(rt, c.id())["data"];
    INFO(data.dump());
    CHECK(data["memory"]["oom_kills"].get<long>() >= 1);
    CHECK(data["memory"]["peak"].get<long>() > 8 * kMiB);
    CHECK(data["memory"]["peak"].get<long>() <= 16 * kMiB);
    REQUIRE(c.remove().exit_code == 0);
    CHECK(rt.exec({"events", "--stats", c.id()}).exit_code != 0);
  }
}

TEST_CASE("pids.max stops a fork bomb", "[privileged][limits][pids]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.config()["linux"]["resources"]["pids"] = {{"limit", 20}};
  c.set_args({"/bin/probe", "forkbomb", "100"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  int forks = -1;
  char err[32] = {0};
  REQUIRE(std::sscanf(r.out.c_str(), "forks=%d errno=%31s", &forks, err) == 2);
  CHECK(forks >= 1);
  CHECK(forks < 20);  // the probe itself is one of the 20
  CHECK(std::string(err) == "EAGAIN");
}

TEST_CASE("a CPU quota throttles a busy loop", "[privileged][limits][cpu]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  // 10 ms per 100 ms period over 2 s is at most ~210 ms of CPU (cfs burst is
  // off by default); the bound leaves room for accounting slop.
  constexpr long kBoundMs = 350;
  // Control first: the bound only means something if an unthrottled spin
  // gets clearly more CPU than it on this (possibly loaded) host.
  Container control(rt);
  Spin unthrottled = run_spin(control, 2);
  if (unthrottled.cpu_ms < kBoundMs + 150) {
    WARN("skipped: host too loaded; an unthrottled 2 s spin got only " << unthrottled.cpu_ms
                                                                       << " ms of CPU");
    return;
  }
  Container c(rt);
  c.config()["linux"]["resources"]["cpu"] = {{"quota", 10000}, {"period", 100000}};
  Spin s = run_spin(c, 2);
  INFO("throttled: cpu " << s.cpu_ms << " ms in " << s.wall_ms
                         << " ms; unthrottled: " << unthrottled.cpu_ms << " ms");
  CHECK(s.wall_ms >= 2000);
  // Under emulation (`make test-v2`'s VM, TCG) the tick that enforces the
  // quota comes late, and each period overruns by several ms (398 ms seen):
  // there a quarter of the control still shows the quota at work.
  CHECK(s.cpu_ms <= std::max(kBoundMs, unthrottled.cpu_ms / 4));
}

TEST_CASE("rlimits from the spec are set on the container's process", "[privileged][limits]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.config()["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 64}, {"hard", 128}}};
  c.set_args({"/bin/probe", "rlimit", "NOFILE"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "64 128\n");
}
