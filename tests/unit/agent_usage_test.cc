// The agent's usage counters (controlplane/agent/usage.h) read from fake
// cgroup and sysfs trees, the task cgroup lookup of AgentCgroups on a
// fixture layout (pure v2 and hybrid), usage.json, and the scriptable
// FakeAgent::usage.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "controlplane/agent/cgroup_layout.h"
#include "controlplane/agent/usage.h"
#include "tests/unit/cp_fakes.h"
#include "tests/unit/temp_dir.h"

namespace {

namespace stdfs = std::filesystem;
using namespace berth::cp;
using berth::test::TempDir;

void put(const std::string& path, const std::string& text) {
  stdfs::create_directories(stdfs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string v2_cpu_stat(const std::string& usage) {
  return "usage_usec " + usage +
         "\nuser_usec 1000\nsystem_usec 234\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
}

// The error's text, or "" when there was none.
template <class T>
std::string err(const berth::Result<T>& r) {
  return r ? std::string() : r.error().str();
}

}  // namespace

TEST_CASE("usage: cgroup v2 counters from cpu.stat, memory.current and memory.peak",
          "[agent-usage]") {
  TempDir d;
  put(d / "cpu.stat", v2_cpu_stat("1234567"));
  put(d / "memory.current", "4096\n");
  put(d / "memory.peak", "67108864\n");
  auto c = read_cgroup_v2_counters(d.path());
  INFO(err(c));
  REQUIRE(c.has_value());
  CHECK(c->cpu_usec == 1234567);
  CHECK(c->memory_bytes == 4096);
  REQUIRE(c->memory_peak_bytes.has_value());
  CHECK(*c->memory_peak_bytes == 67108864);

  // A kernel before 5.19 has no memory.peak: unknown, not an error.
  stdfs::remove(d / "memory.peak");
  c = read_cgroup_v2_counters(d.path());
  REQUIRE(c.has_value());
  CHECK_FALSE(c->memory_peak_bytes.has_value());
  CHECK(c->memory_bytes == 4096);
}

TEST_CASE("usage: cgroup v1 counters, cpuacct.usage in ns reported in usec", "[agent-usage]") {
  TempDir d;
  put(d / "cpuacct/t/cpuacct.usage", "2000999999\n");  // 2.000999999 s
  put(d / "memory/t/memory.usage_in_bytes", "1048576\n");
  put(d / "memory/t/memory.max_usage_in_bytes", "73400320\n");
  auto c = read_cgroup_v1_counters(d / "cpuacct/t", d / "memory/t");
  INFO(err(c));
  REQUIRE(c.has_value());
  CHECK(c->cpu_usec == 2000999);  // truncated, never rounded up
  CHECK(c->memory_bytes == 1048576);
  REQUIRE(c->memory_peak_bytes.has_value());
  CHECK(*c->memory_peak_bytes == 73400320);
}

TEST_CASE("usage: missing files are errors naming the file", "[agent-usage]") {
  TempDir d;
  SECTION("v2 without cpu.stat") {
    put(d / "memory.current", "1\n");
    auto c = read_cgroup_v2_counters(d.path());
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "cpu.stat"));
  }
  SECTION("v2 without memory.current (memory controller not enabled)") {
    put(d / "cpu.stat", v2_cpu_stat("1"));
    auto c = read_cgroup_v2_counters(d.path());
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "memory.current"));
  }
  SECTION("v2 cpu.stat without usage_usec") {
    put(d / "cpu.stat", "user_usec 1\nsystem_usec 2\n");
    put(d / "memory.current", "1\n");
    auto c = read_cgroup_v2_counters(d.path());
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "cpu.stat") && Catch::Contains("usage_usec"));
  }
  SECTION("v1 without memory.max_usage_in_bytes") {
    put(d / "cpuacct.usage", "1000\n");
    put(d / "memory.usage_in_bytes", "1\n");
    auto c = read_cgroup_v1_counters(d.path(), d.path());
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "memory.max_usage_in_bytes"));
  }
  SECTION("v1 without the cpuacct directory") {
    put(d / "memory/memory.usage_in_bytes", "1\n");
    put(d / "memory/memory.max_usage_in_bytes", "1\n");
    auto c = read_cgroup_v1_counters(d / "nope", d / "memory");
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "nope/cpuacct.usage"));
  }
  SECTION("a veth that does not exist") {
    auto n = read_veth_counters(d.path(), "vethgone");
    REQUIRE_FALSE(n.has_value());
    CHECK_THAT(n.error().str(), Catch::Contains(d / "vethgone/statistics/tx_bytes"));
  }
}

TEST_CASE("usage: garbage contents are errors naming the file and what it held", "[agent-usage]") {
  TempDir d;
  put(d / "memory.current", "1\n");
  for (const std::string bad : {"", "max", "-5", "12abc", "1.5", "0x10", "\n\n", "1 2"}) {
    INFO("memory.usage_in_bytes: \"" << bad << "\"");
    put(d / "cpuacct.usage", "1000\n");
    put(d / "memory.usage_in_bytes", bad);
    put(d / "memory.max_usage_in_bytes", "1\n");
    auto c = read_cgroup_v1_counters(d.path(), d.path());
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "memory.usage_in_bytes"));
  }
  put(d / "cpu.stat", "usage_usec lots\n");
  auto c = read_cgroup_v2_counters(d.path());
  REQUIRE_FALSE(c.has_value());
  CHECK_THAT(c.error().str(), Catch::Contains(d / "cpu.stat") && Catch::Contains("lots"));

  // Binary junk (NULs, no newline) neither crashes nor parses.
  put(d / "cpu.stat", std::string("usage_usec \0\xff\x01", 14));
  c = read_cgroup_v2_counters(d.path());
  REQUIRE_FALSE(c.has_value());
  CHECK_THAT(c.error().str(), Catch::Contains(d / "cpu.stat"));

  put(d / "eth9/statistics/tx_bytes", "12\n");
  put(d / "eth9/statistics/rx_bytes", "oops\n");
  auto n = read_veth_counters(d.path(), "eth9");
  REQUIRE_FALSE(n.has_value());
  CHECK_THAT(n.error().str(), Catch::Contains(d / "eth9/statistics/rx_bytes"));
  for (const std::string bad : {"", "..", "a/b"}) {
    CHECK_FALSE(read_veth_counters(d.path(), bad).has_value());
  }
}

TEST_CASE("usage: huge values", "[agent-usage]") {
  TempDir d;
  put(d / "memory.usage_in_bytes", "1\n");
  put(d / "memory.max_usage_in_bytes", "1\n");
  SECTION("cpuacct.usage at the top of uint64 fits once in usec") {
    put(d / "cpuacct.usage", "18446744073709551615\n");
    auto c = read_cgroup_v1_counters(d.path(), d.path());
    INFO(err(c));
    REQUIRE(c.has_value());
    CHECK(c->cpu_usec == 18446744073709551LL);
  }
  SECTION("int64's maximum is read exactly") {
    put(d / "cpuacct.usage", "1\n");
    put(d / "memory.max_usage_in_bytes", "9223372036854775807\n");
    auto c = read_cgroup_v1_counters(d.path(), d.path());
    INFO(err(c));
    REQUIRE(c.has_value());
    CHECK(*c->memory_peak_bytes == INT64_MAX);
  }
  SECTION("above int64 is an error, not a negative counter") {
    put(d / "cpuacct.usage", "1\n");
    put(d / "memory.max_usage_in_bytes", "9223372036854775808\n");
    auto c = read_cgroup_v1_counters(d.path(), d.path());
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "memory.max_usage_in_bytes") &&
                                    Catch::Contains("9223372036854775808"));
  }
  SECTION("above uint64 is not a number") {
    put(d / "cpuacct.usage", "99999999999999999999999\n");
    auto c = read_cgroup_v1_counters(d.path(), d.path());
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "cpuacct.usage"));
  }
  SECTION("v2 usage_usec above int64") {
    put(d / "cpu.stat", v2_cpu_stat("18446744073709551615"));
    put(d / "memory.current", "1\n");
    auto c = read_cgroup_v2_counters(d.path());
    REQUIRE_FALSE(c.has_value());
    CHECK_THAT(c.error().str(), Catch::Contains(d / "cpu.stat"));
  }
}

TEST_CASE("usage: host veth counters are the task's, swapped", "[agent-usage]") {
  TempDir d;
  put(d / "vh1/statistics/rx_bytes", "1000\n");  // the host received: the task sent
  put(d / "vh1/statistics/tx_bytes", "250000\n");
  auto n = read_veth_counters(d.path(), "vh1");
  INFO(err(n));
  REQUIRE(n.has_value());
  CHECK(n->tx_bytes == 1000);
  CHECK(n->rx_bytes == 250000);
}

TEST_CASE("usage: usage.json round trip, and bad documents are errors", "[agent-usage]") {
  UsageSample s;
  s.at = TimePoint(std::chrono::seconds(1764900000) + std::chrono::microseconds(123456));
  s.cpu_usec = 2000123;
  s.memory_bytes = 1 << 20;
  s.memory_peak_bytes = INT64_MAX;
  s.net_rx_bytes = 10;
  s.net_tx_bytes = 20;
  s.final = true;
  auto back = parse_usage_sample(usage_sample_json(s), "usage.json");
  INFO(err(back));
  REQUIRE(back.has_value());
  CHECK(back->at == s.at);
  CHECK(back->cpu_usec == s.cpu_usec);
  CHECK(back->memory_bytes == s.memory_bytes);
  CHECK(back->memory_peak_bytes == s.memory_peak_bytes);
  CHECK(back->net_rx_bytes == 10);
  CHECK(back->net_tx_bytes == 20);
  CHECK(back->final);

  for (
      const std::string bad :
      {"", "[]", "{", R"({"at_ns": 1})",
       R"({"at_ns":1,"cpu_usec":"1","memory_bytes":1,"memory_peak_bytes":1,"net_rx_bytes":1,"net_tx_bytes":1,"final":true})",
       R"({"at_ns":1,"cpu_usec":1.5,"memory_bytes":1,"memory_peak_bytes":1,"net_rx_bytes":1,"net_tx_bytes":1,"final":true})",
       R"({"at_ns":1,"cpu_usec":18446744073709551615,"memory_bytes":1,"memory_peak_bytes":1,"net_rx_bytes":1,"net_tx_bytes":1,"final":true})"}) {
    INFO(bad);
    auto r = parse_usage_sample(bad, "/x/usage.json");
    REQUIRE_FALSE(r.has_value());
    CHECK_THAT(r.error().str(), Catch::Contains("/x/usage.json"));
  }
}

TEST_CASE("usage: AgentCgroups reads a task's counters where the layout puts them",
          "[agent-usage]") {
  TempDir d;
  using berth::runtime::CgroupLayout;
  SECTION("pure v2: the unified tree") {
    CgroupLayout l;
    l.mode = CgroupLayout::Mode::unified;
    l.fixture_tree = true;
    l.root = l.unified_mount = d / "cg";
    l.unified_own = "/me";
    auto c = AgentCgroups::setup(l, "bx", false);
    INFO(err(c));
    REQUIRE(c.has_value());
    CHECK(c->tasks_parent() == "/me/bx");
    auto none = c->task_counters("t1");
    INFO(err(none));
    REQUIRE(none.has_value());
    CHECK_FALSE(none->has_value());  // no cgroup yet
    put(d / "cg/me/bx/t1/cpu.stat", v2_cpu_stat("77"));
    put(d / "cg/me/bx/t1/memory.current", "5\n");
    auto got = c->task_counters("t1");
    INFO(err(got));
    REQUIRE(got.has_value());
    REQUIRE(got->has_value());
    CHECK((*got)->cpu_usec == 77);
    CHECK((*got)->memory_bytes == 5);
    CHECK_FALSE((*got)->memory_peak_bytes.has_value());
  }
  SECTION("hybrid: cpuacct and memory v1, where berthd sits elsewhere in each") {
    CgroupLayout l;
    l.mode = CgroupLayout::Mode::hybrid;
    l.fixture_tree = true;
    l.root = d / "cg";
    l.unified_mount = d / "cg/unified";
    l.unified_own = "/";
    l.v1 = {{"cpu", d / "cg/cpu", "/"},
            {"cpuacct", d / "cg/cpuacct", "/"},
            {"memory", d / "cg/memory", "/pa/x"}};
    auto c = AgentCgroups::setup(l, "bx", false);
    INFO(err(c));
    REQUIRE(c.has_value());
    CHECK(c->tasks_parent() == "/pa/x/bx");  // from the memory hierarchy
    put(d / "cg/cpuacct/pa/x/bx/t1/cpuacct.usage", "3000000\n");
    put(d / "cg/memory/pa/x/bx/t1/memory.usage_in_bytes", "8\n");
    put(d / "cg/memory/pa/x/bx/t1/memory.max_usage_in_bytes", "9\n");
    // A v2 file of the same cgroup is not what is read on hybrid.
    put(d / "cg/unified/pa/x/bx/t1/cpu.stat", v2_cpu_stat("1"));
    auto got = c->task_counters("t1");
    INFO(err(got));
    REQUIRE(got.has_value());
    REQUIRE(got->has_value());
    CHECK((*got)->cpu_usec == 3000);
    CHECK((*got)->memory_bytes == 8);
    CHECK((*got)->memory_peak_bytes == 9);
    CHECK_FALSE(c->task_counters("../t1").has_value());
  }
}

TEST_CASE("usage: FakeAgent::usage is scriptable and final after release", "[agent-usage]") {
  berth::cp::test::FakeAgent a;
  auto r = a.usage("t1");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().kind == berth::ErrorKind::not_found);
  UsageSample s;
  s.cpu_usec = 42;
  a.set_usage("t1", s);
  r = a.usage("t1");
  REQUIRE(r.has_value());
  CHECK(r->cpu_usec == 42);
  CHECK_FALSE(r->final);
  REQUIRE(a.release("t1").has_value());
  r = a.usage("t1");
  REQUIRE(r.has_value());
  CHECK(r->final);
  CHECK(r->cpu_usec == 42);
  REQUIRE(a.purge("t1").has_value());
  CHECK(a.usage("t1").error().kind == berth::ErrorKind::not_found);
}
