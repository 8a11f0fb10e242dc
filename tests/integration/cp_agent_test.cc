// The control plane's node agent against the real system: a real registry
// on 127.0.0.1 with the busybox test image, real pulls into an image store
// of the test, real overlays, netns, nft table, cgroups and berth-shims.
//
// Every name is unique to the test (bridge, subnet, veth prefix, nft table,
// cgroup name, state/run/image dirs), and AgentEnv (agent_fixture.h)
// removes all of it at the end, failing test or not: shims killed, tasks
// released and purged, the bridge, the table and the cgroups removed.
//
// Test code: exceptions are fine here (Catch2 needs them).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "controlplane/agent/node_agent.h"
#include "netns/firewall.h"
#include "netns/network.h"
#include "tests/integration/agent_fixture.h"
#include "tests/integration/harness.h"
#include "tests/integration/registry_fixture.h"

namespace {

namespace stdfs = std::filesystem;
using namespace berth::cp;
using namespace berth::cp::agent_test;
using berth::test::exec_command;
using berth::test::Json;
using berth::test::wait_until;
using namespace std::chrono_literals;

std::string cgroup_of(pid_t pid) {
  return berth::test::read_file("/proc/" + std::to_string(pid) + "/cgroup");
}

int count_entries(const std::string& dir) {
  std::error_code ec;
  int n = 0;
  for ([[maybe_unused]] const auto& e : stdfs::directory_iterator(dir, ec)) ++n;
  return n;
}

}  // namespace

TEST_CASE("agent: a one-container task pulled from a loopback registry runs to its exit",
          "[cp-agent]") {
  REQUIRE_REGISTRY_TOOLS();
  Case k;
  auto& [reg, env, log, agent] = k;

  auto t = env.task({container("main", reg.ref(),
                               {"/bin/busybox", "sh", "-c", "echo hello from berth; exit 3"})});
  Launched l = env.launch_ok(t);
  CHECK(l.node_ref == agent.task_dir(t.task.id));
  CHECK_FALSE(l.private_ipv4.empty());
  REQUIRE(l.containers.size() == 1);
  CHECK(l.containers[0].image_digest == reg.image.manifest);
  CHECK(l.containers[0].runtime_id == t.task.id + ".main");

  REQUIRE(log.wait_for(t.task.id, AgentEvent::Kind::task_stopped));
  // In this order; the shim may announce task_stopping between the exit
  // of the essential container and task_stopped.
  auto kinds = log.kinds(t.task.id);
  std::erase(kinds, "task_stopping");
  CHECK(kinds == std::vector<std::string>{"pull_started", "pull_stopped", "task_started",
                                          "container_started", "container_exited", "task_stopped"});
  auto exited = log.last(t.task.id, AgentEvent::Kind::container_exited);
  INFO("container_exited: " << exited.state.dump());
  INFO("shim.log: " << berth::test::read_file(l.node_ref + "/shim.log"));
  CHECK(exited.container == "main");
  CHECK(exit_code_of(exited) == 3);
  auto stopped = log.last(t.task.id, AgentEvent::Kind::task_stopped);
  CHECK(stopped.state.value("status", "") == "STOPPED");

  // The shim is gone: the log comes from the files.
  auto chunk = agent.logs(t.task.id, "main", 0, 1 << 20);
  INFO((chunk ? "" : chunk.error().str()));
  REQUIRE(chunk.has_value());
  CHECK(chunk->data.find("stdout F hello from berth") != std::string::npos);
  CHECK_FALSE(chunk->task_running);
  CHECK(chunk->next_offset == chunk->end_offset);

  auto rel = agent.release(t.task.id);
  INFO((rel ? "" : rel.error().str()));
  CHECK(rel.has_value());
  CHECK(agent.release(t.task.id).has_value());  // idempotent
  CHECK(count_entries(env.cfg.run_dir + "/netns") == 0);
  CHECK(stdfs::exists(l.node_ref + "/logs/main.log"));  // logs stay until purge
  CHECK(agent.purge(t.task.id).has_value());
  CHECK_FALSE(stdfs::exists(l.node_ref));
}

TEST_CASE("agent: two containers, a hostPort reachable from another netns, shims in their cgroup",
          "[cp-agent]") {
  REQUIRE_REGISTRY_TOOLS();
  Case k;
  auto& [reg, env, log, agent] = k;

  auto web = container("web", reg.ref(),
                       {"/bin/busybox", "sh", "-c",
                        "mkdir -p /tmp/www && echo served-by-web > /tmp/www/index.html && "
                        "exec /bin/busybox httpd -f -p 8080 -h /tmp/www"});
  uint16_t host_port = static_cast<uint16_t>(21000 + (::getpid() % 2000) * 3);
  web.port_mappings.push_back({8080, host_port, "tcp", ""});
  auto side = container("sidecar", reg.ref(),
                        {"/bin/busybox", "sh", "-c",
                         "until /bin/busybox wget -qO- http://127.0.0.1:8080/ > /tmp/got; do "
                         "sleep 0.2; done; cat /tmp/got; exec sleep 600"});
  side.essential = false;
  auto t = env.task({web, side});
  Launched l = env.launch_ok(t);
  REQUIRE(l.containers.size() == 2);
  REQUIRE(l.containers[0].network_bindings.size() == 1);
  CHECK(l.containers[0].network_bindings[0].host_port == host_port);
  CHECK(l.containers[0].network_bindings[0].container_port == 8080);
  CHECK(l.containers[1].network_bindings.empty());

  // The shim lives in the agent's shims cgroup, not in this process's.
  pid_t shim = agent.shim_pid(t.task.id);
  REQUIRE(shim > 0);
  CHECK(cgroup_of(shim) != cgroup_of(::getpid()));
  CHECK(cgroup_of(shim).find(env.cfg.cgroup_name + ".shims") != std::string::npos);

  // The sidecar reached the web server on localhost.
  CHECK(wait_until(
      [&] {
        auto c = agent.logs(t.task.id, "sidecar", 0, 1 << 20);
        return c && c->data.find("served-by-web") != std::string::npos;
      },
      60s));

  // A client in a network namespace of the test reaches the host port.
  int pid = ::getpid();
  std::string host_link = fmt::format("bta{}c{}", pid % 100000, next_instance());
  std::string client_net = fmt::format("10.{}.251", 150 + pid % 50);
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  pid_t holder = ::fork();
  REQUIRE(holder >= 0);
  if (holder == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    bool ok = ::unshare(CLONE_NEWNET) == 0;
    (void)!::write(p[1], ok ? "R" : "E", 1);
    for (;;) ::pause();
  }
  ::close(p[1]);
  char c = 0;
  (void)!::read(p[0], &c, 1);
  ::close(p[0]);
  struct Reap {
    pid_t pid;
    std::string link;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      exec_command({"ip", "link", "del", link});
    }
  } reap{holder, host_link};
  REQUIRE(c == 'R');
  std::string ns = "/proc/" + std::to_string(holder) + "/ns/net";
  auto ip_ok = [](const std::vector<std::string>& argv) {
    auto r = exec_command(argv);
    INFO(r);
    REQUIRE(r.exit_code == 0);
  };
  ip_ok({"ip", "link", "add", host_link, "type", "veth", "peer", "name", "eth0", "netns",
         std::to_string(holder)});
  ip_ok({"ip", "addr", "add", client_net + ".1/24", "dev", host_link});
  ip_ok({"ip", "link", "set", host_link, "up"});
  ip_ok({"nsenter", "--net=" + ns, "ip", "addr", "add", client_net + ".2/24", "dev", "eth0"});
  ip_ok({"nsenter", "--net=" + ns, "ip", "link", "set", "eth0", "up"});
  ip_ok({"nsenter", "--net=" + ns, "ip", "link", "set", "lo", "up"});
  ip_ok({"nsenter", "--net=" + ns, "ip", "route", "add", "default", "via", client_net + ".1"});
  std::string url = fmt::format("http://{}.1:{}/", client_net, host_port);
  berth::test::CommandResult got;
  CHECK(wait_until(
      [&] {
        got = exec_command({"nsenter", "--net=" + ns, "curl", "-s", "--max-time", "5", url});
        return got.exit_code == 0 && got.out.find("served-by-web") != std::string::npos;
      },
      60s, 200ms));
  INFO(got);

  REQUIRE(agent.stop(t.task.id, "test over", 5).has_value());
  REQUIRE(log.wait_for(t.task.id, AgentEvent::Kind::task_stopped));
  CHECK(agent.release(t.task.id).has_value());
  // The mapping is gone with the release.
  auto rules = exec_command({"nft", "list", "table", "ip", env.cfg.firewall.table});
  CHECK(rules.out.find("berth:" + t.task.id) == std::string::npos);
}

TEST_CASE("agent: stop of a sleeping task ends it with 143", "[cp-agent]") {
  REQUIRE_REGISTRY_TOOLS();
  Case k;
  auto& [reg, env, log, agent] = k;
  auto t = env.task({sleeper(reg.ref())});
  env.launch_ok(t);
  REQUIRE(log.wait_for(t.task.id, AgentEvent::Kind::container_started));
  stop_ends_with_143(agent, log, t.task.id);
}

TEST_CASE("agent: a launch that fails (bad image) leaves nothing behind", "[cp-agent]") {
  REQUIRE_REGISTRY_TOOLS();
  Case k;
  auto& [reg, env, log, agent] = k;
  auto web = container("web", reg.registry.host() + "/berth-test/nothing-here:latest",
                       {"/bin/busybox", "true"});
  web.port_mappings.push_back({80, static_cast<uint16_t>(22000 + ::getpid() % 2000), "tcp", ""});
  auto t = env.task({web});
  auto r = agent.launch(t);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().step == "CannotPullContainerError");
  CHECK_FALSE(stdfs::exists(agent.task_dir(t.task.id)));
  CHECK(count_entries(env.cfg.run_dir + "/netns") == 0);
  auto rules = exec_command({"nft", "list", "table", "ip", env.cfg.firewall.table});
  CHECK(rules.out.find("berth:" + t.task.id) == std::string::npos);
  CHECK(agent.cgroups().task_cgroups().empty());
  CHECK(count_entries(env.cfg.state_dir + "/ipam") == 0);
}

TEST_CASE("agent: a new agent adopts a running task and one whose shim died", "[cp-agent]") {
  REQUIRE_REGISTRY_TOOLS();
  Case k;
  auto& [reg, env, log1, first] = k;
  auto running = env.task({sleeper(reg.ref())});
  auto doomed = env.task(
      {container("main", reg.ref(), {"/bin/busybox", "sh", "-c", "echo bye; exec sleep 600"})});
  Launched lr = env.launch_ok(running);
  Launched ld = env.launch_ok(doomed);
  REQUIRE(log1.wait_for(running.task.id, AgentEvent::Kind::container_started));
  REQUIRE(log1.wait_for(doomed.task.id, AgentEvent::Kind::container_started));
  pid_t doomed_shim = first.shim_pid(doomed.task.id);
  REQUIRE(doomed_shim > 0);

  // berthd "restarts": the first agent goes (its shims keep running), the
  // doomed task's shim is killed during the outage.
  first.shutdown();
  env.agent.reset();
  REQUIRE(::kill(doomed_shim, SIGKILL) == 0);
  CHECK(wait_until([&] { return !pid_alive(doomed_shim); }, 30s));

  // A microhost nobody owns (a crash between its creation and its record).
  berth::netns::Network net(env.cfg.network);
  auto orphan = net.create_microhost("orphan1", berth::netns::NetworkMode::awsvpc);
  REQUIRE(orphan.has_value());
  REQUIRE(stdfs::exists(orphan->netns_path));

  EventLog log2;
  NodeAgent& second = env.start();
  second.set_event_sink(log2.sink());
  auto adopted = second.adopt({{running.task.id, lr.node_ref}, {doomed.task.id, ld.node_ref}});
  INFO((adopted ? "" : adopted.error().str()));
  REQUIRE(adopted.has_value());
  REQUIRE(adopted->size() == 2);
  CHECK((*adopted)[0].shim_alive);
  CHECK((*adopted)[0].state.value("status", "") == "RUNNING");
  CHECK_FALSE((*adopted)[1].shim_alive);
  CHECK((*adopted)[1].state.value("status", "") == "RUNNING");  // its last recorded state
  CHECK_FALSE(stdfs::exists(orphan->netns_path));               // gc took the orphan
  CHECK(stdfs::exists(lr.node_ref + "/microhost.json"));

  // The dead task's resources are released by the caller's decision.
  std::string doomed_state = second.config().runtime_root + "/" + doomed.task.id + ".main";
  CHECK(stdfs::exists(doomed_state));  // the killed shim could not delete it
  auto rel = second.release(doomed.task.id);
  INFO((rel ? "" : rel.error().str()));
  CHECK(rel.has_value());
  CHECK_FALSE(stdfs::exists(doomed_state));

  // Events continue on the adopted task, and stop works.
  stop_ends_with_143(second, log2, running.task.id);
}

TEST_CASE("agent: the warm pool fills to its target and a launch takes from it", "[cp-agent]") {
  REQUIRE_REGISTRY_TOOLS();
  Case k(/*warm=*/2);
  auto& [reg, env, log, agent] = k;
  REQUIRE(wait_until([&] { return agent.warm_pool_size() == 2; }, 60s));
  auto before = count_entries(env.cfg.run_dir + "/netns");
  CHECK(before == 2);
  auto t = env.task({container("main", reg.ref(), {"/bin/busybox", "true"})});
  env.launch_ok(t);
  // The launch took a pooled netns (no new one for the task id) and the
  // pool refills behind it.
  auto mh = Json::parse(berth::test::read_file(agent.task_dir(t.task.id) + "/microhost.json"));
  CHECK(mh["microhost"]["id"].get<std::string>().starts_with("w"));
  REQUIRE(log.wait_for(t.task.id, AgentEvent::Kind::task_stopped));
  CHECK(wait_until([&] { return agent.warm_pool_size() == 2; }, 60s));
  CHECK(agent.release(t.task.id).has_value());
  agent.set_warm_pool_target(0);
}

TEST_CASE("agent: berthd moves itself into <name>.daemon and a restart there keeps the layout",
          "[cp-agent]") {
  REQUIRE_PRIVILEGED();
  std::string name = berth::test::unique_name();
  auto before = berth::test::cgroup_hierarchies();
  // This process goes back where it was, and the leaves go, however the
  // test ends (only the hierarchies the agent uses: no named ones).
  struct Restore {
    std::vector<berth::test::CgroupHierarchy> hs;
    std::string name;
    ~Restore() {
      std::string pid = std::to_string(::getpid());
      for (const auto& h : hs) {
        if (h.controllers.starts_with("name=")) continue;
        std::ofstream(h.mount + h.own + "/cgroup.procs") << pid;
        std::string base = h.mount + (h.own == "/" ? "" : h.own) + "/" + name;
        for (const char* leaf : {".daemon", ".shims", ""}) ::rmdir((base + leaf).c_str());
      }
    }
  } restore{before, name};

  auto first = AgentCgroups::setup(name, /*move_self=*/true);
  INFO((first ? "" : first.error().str()));
  REQUIRE(first.has_value());
  std::string self = cgroup_of(::getpid());
  CHECK(self.find(name + ".daemon") != std::string::npos);
  // A restart finds itself in the daemon's leaf: the same layout, not one
  // nested below it.
  auto again = AgentCgroups::setup(name, /*move_self=*/true);
  REQUIRE(again.has_value());
  CHECK(again->tasks_parent() == first->tasks_parent());
  CHECK(again->shims_dirs() == first->shims_dirs());
  CHECK(first->tasks_parent().find(".daemon") == std::string::npos);
}
