// The fixture of the node agent's integration tests (cp_agent_test.cc,
// agent_usage_test.cc): a real registry on 127.0.0.1 with the busybox test
// image, and an agent whose every name is unique to the test (bridge,
// subnet, veth prefix, nft table, cgroup name, state/run/image dirs).
// AgentEnv removes all of it at the end, failing test or not: shims killed,
// tasks released and purged, the bridge, the table and the cgroups removed.
//
// Test code: exceptions are fine here (Catch2 needs them).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "controlplane/agent/node_agent.h"
#include "netns/firewall.h"
#include "netns/network.h"
#include "tests/integration/harness.h"
#include "tests/integration/registry_fixture.h"

namespace berth::cp::agent_test {

using berth::test::exec_command;
using berth::test::Json;
using berth::test::TempDir;
using berth::test::wait_until;
using namespace std::chrono_literals;

inline int next_instance() {
  static int n = 0;
  return ++n;
}

inline std::string random_task_id() {
  static int n = 0;
  return fmt::format(
      "{:08x}{:08x}{:016x}", ::getpid(), ++n,
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
}

// A zombie is not alive (the shim's parent is not this process).
inline bool pid_alive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::string stat = berth::test::read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// Events as the sink delivers them, from the agent's dispatcher thread.
struct EventLog {
  std::mutex mu;
  std::vector<AgentEvent> events;

  AgentEventSink sink() {
    return [this](const AgentEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
    };
  }
  std::vector<AgentEvent> of(const std::string& task) {
    std::lock_guard lock(mu);
    std::vector<AgentEvent> out;
    for (const auto& e : events) {
      if (e.task_id == task) out.push_back(e);
    }
    return out;
  }
  std::vector<std::string> kinds(const std::string& task) {
    std::vector<std::string> out;
    for (const auto& e : of(task)) out.push_back(agent_event_name(e.kind));
    return out;
  }
  bool has(const std::string& task, AgentEvent::Kind k) {
    for (const auto& e : of(task)) {
      if (e.kind == k) return true;
    }
    return false;
  }
  AgentEvent last(const std::string& task, AgentEvent::Kind k) {
    AgentEvent found{};
    for (const auto& e : of(task)) {
      if (e.kind == k) found = e;
    }
    return found;
  }
  bool wait_for(const std::string& task, AgentEvent::Kind k) {
    return wait_until([&] { return has(task, k); }, 60s);
  }
};

// One agent instance's names and directories, and the removal of all of it.
struct AgentEnv {
  TempDir dir;
  AgentConfig cfg;
  std::vector<std::string> task_ids;  // every task launched, for the cleanup
  std::unique_ptr<NodeAgent> agent;

  AgentEnv() {
    int n = next_instance();
    int pid = ::getpid();
    cfg.state_dir = dir.path() + "/state";
    cfg.run_dir = dir.path() + "/run";
    cfg.images_dir = dir.path() + "/images";
    cfg.cgroup_name = berth::test::unique_name();
    cfg.move_self_to_daemon_cgroup = false;
    cfg.network.bridge = fmt::format("bta{}x{}", pid % 100000, n);
    cfg.network.subnet = fmt::format("10.{}.{}.0/24", 150 + pid % 50, n % 250);
    cfg.network.run_dir = cfg.run_dir;
    cfg.network.state_dir = cfg.state_dir;
    cfg.network.link_prefix = fmt::format("q{}z", pid % 100000);
    cfg.network.resolvers = {"192.0.2.53"};
    cfg.firewall.table = fmt::format("berth_agent_{}_{}", pid, n);
    cfg.firewall.bridge = cfg.network.bridge;
    cfg.firewall.subnet = cfg.network.subnet;
  }

  NodeAgent& start(int warm = 0) {
    cfg.warm_pool = warm;
    auto a = NodeAgent::create(cfg);
    INFO((a ? "" : a.error().str()));
    REQUIRE(a.has_value());
    agent = std::move(*a);
    return *agent;
  }

  ~AgentEnv() {
    try {
      cleanup();
    } catch (const std::exception& e) {
      berth::test::record_leak(std::string("agent cleanup: ") + e.what());
    }
  }

  void cleanup() {
    if (!agent) {
      auto a = NodeAgent::create(cfg);
      if (a) agent = std::move(*a);
    }
    if (agent) {
      // Shims this agent no longer watches (a test's "outage") are killed
      // through their recorded pid.
      for (const auto& id : task_ids) {
        auto st = berth::test::read_file(agent->task_dir(id) + "/state.json");
        if (!st.empty()) {
          auto j = Json::parse(st, nullptr, false);
          if (j.is_object() && j.contains("shim_pid") && j["shim_pid"].is_number_integer()) {
            int pid = j["shim_pid"].get<int>();
            if (agent->shim_pid(id) != pid && pid_alive(pid)) {
              // Only a berth-shim of this task's directory.
              std::string cmd = berth::test::read_file("/proc/" + std::to_string(pid) + "/cmdline");
              if (cmd.find(id) != std::string::npos) ::kill(pid, SIGKILL);
            }
          }
        }
        (void)agent->purge(id);
      }
      agent->shutdown();
      agent->cgroups().remove_empty();
      agent.reset();
    }
    berth::netns::Network(cfg.network).teardown();
    berth::netns::Firewall(cfg.firewall).teardown();
    // The image store's overlays are released with their tasks; the layers
    // and blobs go with the temp dir.
  }

  TaskLaunch task(std::vector<ContainerDefinition> containers) {
    TaskLaunch t;
    t.task.id = random_task_id();
    t.task.account = "123456789012";
    t.task.cluster = "default";
    t.definition.family = "agent-test";
    t.definition.revision = 1;
    t.definition.cpu = "256";
    t.definition.memory = "512";
    t.definition.containers = std::move(containers);
    for (const auto& c : t.definition.containers) {
      TaskContainer tc;
      tc.name = c.name;
      tc.image = c.image;
      tc.runtime_id = t.task.id + "." + c.name;
      t.task.containers.push_back(tc);
    }
    task_ids.push_back(t.task.id);
    return t;
  }

  Launched launch_ok(const TaskLaunch& t) {
    auto r = agent->launch(t);
    INFO((r ? "" : r.error().str()));
    REQUIRE(r.has_value());
    return *r;
  }
};

struct Registry {
  berth::test::RegistryProcess registry;
  TempDir work;
  berth::test::TestImage image;
  Registry() : image(berth::test::push_test_image(registry.host(), work.path())) {}
  std::string ref() const { return registry.host() + "/" + berth::test::kRepository + ":latest"; }
};

// What every case starts with: a registry with the test image, an agent
// environment and the agent's events.
struct Case {
  Registry reg;
  AgentEnv env;
  EventLog log;
  NodeAgent& agent;
  explicit Case(int warm = 0) : agent(env.start(warm)) { agent.set_event_sink(log.sink()); }
};

inline ContainerDefinition container(const std::string& name, const std::string& image,
                                     std::vector<std::string> command) {
  ContainerDefinition c;
  c.name = name;
  c.image = image;
  c.command = std::move(command);
  // The spec's default nofile (65535, as ECS) is above the hard limit of
  // some test hosts, where raising it is not permitted: the host's own.
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  c.ulimits.push_back(
      {"nofile", static_cast<int64_t>(nofile.rlim_cur), static_cast<int64_t>(nofile.rlim_max)});
  return c;
}

inline int exit_code_of(const AgentEvent& e) {
  auto it = e.state.find("exit_code");
  return it != e.state.end() && it->is_number_integer() ? it->get<int>() : -1000;
}

// Stops a task whose container sleeps under an init (which forwards the
// TERM): it ends with 143, then is released.
inline void stop_ends_with_143(NodeAgent& agent, EventLog& log, const std::string& id) {
  auto r = agent.stop(id, "StopTask", 10);
  INFO((r ? "" : r.error().str()));
  REQUIRE(r.has_value());
  REQUIRE(log.wait_for(id, AgentEvent::Kind::task_stopped));
  CHECK(log.has(id, AgentEvent::Kind::task_stopping));
  CHECK(exit_code_of(log.last(id, AgentEvent::Kind::container_exited)) == 143);
  CHECK(agent.release(id).has_value());
}

inline ContainerDefinition sleeper(const std::string& image) {
  auto c = container("main", image, {"/bin/busybox", "sleep", "600"});
  c.linux_parameters.init_process_enabled = true;  // pid 1 forwards the TERM
  return c;
}

}  // namespace berth::cp::agent_test
