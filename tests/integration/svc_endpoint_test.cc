// Service endpoints of the node agent (issue 13) against the real system:
// real tasks (busybox httpd backends, clients) of two accounts on the
// agent's bridge, the VIP on the bridge, nftables balancing, the hosts
// files of the tasks, a client in a network namespace of the test, and a
// second agent adopting the endpoint.
//
// Every name is unique to the test (agent_fixture.h: bridge, subnet, table,
// dirs); AgentEnv removes everything at the end, failing test or not, and
// the test's own netns and veth go with their guard.
//
// Test code: exceptions are fine here (Catch2 needs them).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
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
using berth::test::CommandResult;
using berth::test::exec_command;
using berth::test::Json;
using berth::test::wait_until;
using namespace std::chrono_literals;

constexpr const char* kAccountA = "123456789012";
constexpr const char* kAccountB = "210987654321";
constexpr const char* kName = "web.default.berth";

// The pid of the task's first container once it runs (shim's state.json).
int container_pid(NodeAgent& agent, const std::string& task) {
  int pid = 0;
  wait_until(
      [&] {
        auto text = berth::test::read_file(agent.task_dir(task) + "/state.json");
        auto st = Json::parse(text, nullptr, false);
        if (!st.is_object() || !st.contains("containers") || !st["containers"].is_array() ||
            st["containers"].empty())
          return false;
        const auto& c = st["containers"][0];
        if (!c.contains("pid") || !c["pid"].is_number_integer()) return false;
        pid = c["pid"].get<int>();
        return pid > 0 && c.value("status", "") == "RUNNING";
      },
      60s, 100ms);
  return pid;
}

// Runs `argv` (the container's binaries) in the container's mount and
// network namespaces: what its own processes see (its /etc/hosts, its
// address on the bridge).
CommandResult in_task(int pid, std::vector<std::string> argv) {
  std::vector<std::string> full = {"nsenter", "-t", std::to_string(pid), "-m", "-n", "-r",
                                   "-w",      "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  return exec_command(full, {.timeout = 30s});
}

CommandResult fetch(int pid, const std::string& url) {
  return in_task(pid, {"/bin/busybox", "timeout", "10", "/bin/busybox", "wget", "-q", "-O-", url});
}

// Which backend answered each of `n` connections ("" for a failure).
std::map<std::string, int> spread(int n, const std::function<CommandResult()>& get) {
  std::map<std::string, int> seen;
  for (int i = 0; i < n; ++i) {
    auto r = get();
    std::string who = r.exit_code == 0 ? r.out : "";
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    ++seen[who];
  }
  return seen;
}

std::string describe(const std::map<std::string, int>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += fmt::format("[{}]={} ", k.empty() ? "failed" : k, v);
  return s;
}

ContainerDefinition httpd(const std::string& image, const std::string& text) {
  return container(
      "main", image,
      {"/bin/busybox", "sh", "-c",
       "mkdir -p /tmp/www && echo " + text +
           " > /tmp/www/index.html && exec /bin/busybox httpd -f -p 8080 -h /tmp/www"});
}

bool has_line(const std::string& hosts, const std::string& vip) {
  return hosts.find(vip + "\t" + kName + "\n") != std::string::npos;
}

// A network namespace of the test, held by a child process, joined to the
// host by a veth pair: <net>.1 on the host side, <net>.2 inside, routed
// through the host. Removed (child killed, veth deleted) on destruction.
struct ClientNetns {
  pid_t holder = -1;
  std::string host_link;
  std::string net;  // "10.x.251"
  std::string path;

  ClientNetns() {
    int pid = ::getpid();
    host_link = fmt::format("bts{}c{}", pid % 100000, next_instance());
    net = fmt::format("10.{}.252", 150 + pid % 50);
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    holder = ::fork();
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
    REQUIRE(c == 'R');
    path = "/proc/" + std::to_string(holder) + "/ns/net";
    run({"ip", "link", "add", host_link, "type", "veth", "peer", "name", "eth0", "netns",
         std::to_string(holder)});
    run({"ip", "addr", "add", net + ".1/24", "dev", host_link});
    run({"ip", "link", "set", host_link, "up"});
    run({"nsenter", "--net=" + path, "ip", "addr", "add", net + ".2/24", "dev", "eth0"});
    run({"nsenter", "--net=" + path, "ip", "link", "set", "eth0", "up"});
    run({"nsenter", "--net=" + path, "ip", "link", "set", "lo", "up"});
    run({"nsenter", "--net=" + path, "ip", "route", "add", "default", "via", net + ".1"});
  }
  ~ClientNetns() {
    if (holder > 0) {
      ::kill(holder, SIGKILL);
      ::waitpid(holder, nullptr, 0);
    }
    exec_command({"ip", "link", "del", host_link});
  }
  static void run(const std::vector<std::string>& argv) {
    auto r = exec_command(argv);
    INFO(r);
    REQUIRE(r.exit_code == 0);
  }
  CommandResult curl(const std::string& url) const {
    return exec_command({"nsenter", "--net=" + path, "curl", "-s", "--max-time", "5", url});
  }
};

std::string bridge_addresses(const AgentEnv& env) {
  return exec_command({"ip", "-4", "-o", "addr", "show", "dev", env.cfg.network.bridge}).out;
}

std::string table_rules(const AgentEnv& env) {
  return exec_command({"nft", "list", "table", "ip", env.cfg.firewall.table}).out;
}

}  // namespace

TEST_CASE(
    "service endpoint: VIP by name for the account only, listener from another netns, "
    "backend updates, adoption and removal",
    "[svc-endpoint]") {
  REQUIRE_REGISTRY_TOOLS();
  Case k;
  auto& [reg, env, log, agent] = k;

  // Two backends and a client of account A, a task of account B: all
  // launched before the endpoint exists (their hosts files are rewritten).
  auto b1 = env.task({httpd(reg.ref(), "backend-1")});
  auto b2 = env.task({httpd(reg.ref(), "backend-2")});
  auto other = env.task({sleeper(reg.ref())});
  other.task.account = kAccountB;
  Launched l1 = env.launch_ok(b1);
  Launched l2 = env.launch_ok(b2);
  Launched lo = env.launch_ok(other);
  int pid1 = container_pid(agent, b1.task.id);
  int pid2 = container_pid(agent, b2.task.id);
  int pid_other = container_pid(agent, other.task.id);
  REQUIRE(pid1 > 0);
  REQUIRE(pid2 > 0);
  REQUIRE(pid_other > 0);
  // The backends serve (checked directly, before any balancing).
  for (const auto& [pid, ip, text] : {std::tuple{pid1, l1.private_ipv4, "backend-1"},
                                      std::tuple{pid2, l2.private_ipv4, "backend-2"}}) {
    CommandResult r;
    CHECK(wait_until(
        [&] {
          r = fetch(pid, fmt::format("http://{}:8080/", ip));
          return r.exit_code == 0 && r.out.find(text) != std::string::npos;
        },
        60s, 200ms));
    INFO(r);
  }

  uint16_t listener = static_cast<uint16_t>(23000 + (::getpid() % 2000) * 3);
  ServiceEndpoint ep;
  ep.id = "svc-00000000000000a1";
  ep.account = kAccountA;
  ep.name = kName;
  ep.container_port = 8080;
  ep.listener_port = listener;
  ep.backends = {{l1.private_ipv4, 8080}, {l2.private_ipv4, 8080}};
  auto set = agent.set_service_endpoint(ep);
  INFO((set ? "" : set.error().str()));
  REQUIRE(set.has_value());
  const std::string vip = *set;
  auto subnet = berth::netns::Ipv4Net::parse(env.cfg.network.subnet);
  REQUIRE(subnet.has_value());
  auto vip_addr = berth::netns::parse_ipv4(vip);
  REQUIRE(vip_addr.has_value());
  CHECK(subnet->contains(*vip_addr));
  CHECK(bridge_addresses(env).find(vip + "/32") != std::string::npos);
  CHECK(stdfs::exists(env.cfg.state_dir + "/services/" + ep.id + ".json"));
  // The same call again keeps the address.
  ep.vip = vip;
  auto again = agent.set_service_endpoint(ep);
  REQUIRE(again.has_value());
  CHECK(*again == vip);

  // A client of account A launched now gets the line at launch; the
  // backends (account A, launched before) got it in place; B never.
  auto client = env.task({sleeper(reg.ref())});
  env.launch_ok(client);
  int pid_client = container_pid(agent, client.task.id);
  REQUIRE(pid_client > 0);
  CHECK(has_line(in_task(pid_client, {"/bin/busybox", "cat", "/etc/hosts"}).out, vip));
  CHECK(has_line(in_task(pid1, {"/bin/busybox", "cat", "/etc/hosts"}).out, vip));
  auto other_hosts = in_task(pid_other, {"/bin/busybox", "cat", "/etc/hosts"});
  INFO(other_hosts);
  CHECK(other_hosts.exit_code == 0);
  CHECK(other_hosts.out.find(kName) == std::string::npos);
  CHECK(other_hosts.out.find(vip) == std::string::npos);

  // A's client reaches the service by name, on both backends.
  const std::string by_name = fmt::format("http://{}:8080/", kName);
  CommandResult first;
  CHECK(wait_until(
      [&] {
        first = fetch(pid_client, by_name);
        return first.exit_code == 0;
      },
      30s, 200ms));
  INFO(first);
  auto seen = spread(16, [&] { return fetch(pid_client, by_name); });
  INFO(describe(seen));
  CHECK(seen["backend-1"] > 0);
  CHECK(seen["backend-2"] > 0);
  CHECK(seen[""] == 0);

  // B's task cannot reach the VIP (its port or any other), nor does the
  // host's own socket.
  auto denied = fetch(pid_other, fmt::format("http://{}:8080/", vip));
  INFO(denied);
  CHECK(denied.exit_code != 0);
  CHECK(denied.out.find("backend") == std::string::npos);
  auto host_denied = exec_command(
      {"curl", "-s", "--max-time", "3", fmt::format("http://{}:8080/", vip)}, {.timeout = 30s});
  CHECK(host_denied.exit_code != 0);

  // The listener port: from a network namespace of the test, from A's and
  // B's tasks through the gateway (hairpin), on both backends.
  ClientNetns outside;
  const std::string listener_url = fmt::format("http://{}.1:{}/", outside.net, listener);
  CommandResult out1;
  CHECK(wait_until(
      [&] {
        out1 = outside.curl(listener_url);
        return out1.exit_code == 0 && out1.out.find("backend-") != std::string::npos;
      },
      30s, 200ms));
  INFO(out1);
  auto seen_out = spread(16, [&] { return outside.curl(listener_url); });
  INFO(describe(seen_out));
  CHECK(seen_out["backend-1"] > 0);
  CHECK(seen_out["backend-2"] > 0);
  const std::string gateway = berth::netns::ipv4_str(subnet->gateway());
  const std::string hairpin = fmt::format("http://{}:{}/", gateway, listener);
  auto from_a = fetch(pid_client, hairpin);
  INFO(from_a);
  CHECK(from_a.out.find("backend-") != std::string::npos);
  auto from_b = fetch(pid_other, hairpin);
  INFO(from_b);
  CHECK(from_b.out.find("backend-") != std::string::npos);
  // A backend reaching its own service through the VIP (hairpin).
  auto self = fetch(pid1, by_name);
  INFO(self);
  CHECK(self.out.find("backend-") != std::string::npos);

  // One backend: every new connection goes to it.
  ep.backends = {{l1.private_ipv4, 8080}};
  REQUIRE(agent.set_service_endpoint(ep).has_value());
  auto seen_one = spread(10, [&] { return fetch(pid_client, by_name); });
  INFO(describe(seen_one));
  CHECK(seen_one["backend-1"] == 10);
  auto seen_one_out = spread(6, [&] { return outside.curl(listener_url); });
  INFO(describe(seen_one_out));
  CHECK(seen_one_out["backend-1"] == 6);

  // berthd restarts: a new agent adopts the tasks; the endpoint balances on.
  agent.shutdown();
  env.agent.reset();
  NodeAgent& second = env.start();
  auto adopted = second.adopt({{b1.task.id, l1.node_ref},
                               {b2.task.id, l2.node_ref},
                               {other.task.id, lo.node_ref},
                               {client.task.id, second.task_dir(client.task.id)}});
  INFO((adopted ? "" : adopted.error().str()));
  REQUIRE(adopted.has_value());
  CHECK(bridge_addresses(env).find(vip + "/32") != std::string::npos);
  auto after = spread(4, [&] { return fetch(pid_client, by_name); });
  INFO(describe(after));
  CHECK(after["backend-1"] == 4);
  CHECK(outside.curl(listener_url).out.find("backend-1") != std::string::npos);
  // A released task's address leaves every endpoint before it is freed.
  NodeAgent& second_ref = second;
  ep.vip = vip;
  ep.backends = {{l1.private_ipv4, 8080}, {l2.private_ipv4, 8080}};
  REQUIRE(second_ref.set_service_endpoint(ep).has_value());
  // (No event sink on the second agent: an EventLog of this scope would go
  // before the fixture's cleanup, whose shim kills still send events.)
  REQUIRE(second_ref.stop(b2.task.id, "test", 5).has_value());
  CHECK(wait_until([&] { return !pid_alive(pid2); }, 60s));
  auto released = second_ref.release(b2.task.id);
  INFO((released ? "" : released.error().str()));
  CHECK(released.has_value());
  auto stored = berth::test::read_file(env.cfg.state_dir + "/services/" + ep.id + ".json");
  CHECK(stored.find(l1.private_ipv4) != std::string::npos);
  CHECK(stored.find(l2.private_ipv4) == std::string::npos);
  CHECK(table_rules(env).find(l2.private_ipv4) == std::string::npos);

  // The second agent knows the endpoint: the VIP is kept without being
  // passed back.
  ep.vip = "";
  ep.backends = {};
  auto kept = second.set_service_endpoint(ep);
  INFO((kept ? "" : kept.error().str()));
  REQUIRE(kept.has_value());
  CHECK(*kept == vip);

  // No backends: the name still resolves, connections fail fast.
  CHECK(has_line(in_task(pid_client, {"/bin/busybox", "cat", "/etc/hosts"}).out, vip));
  auto t0 = std::chrono::steady_clock::now();
  auto refused = fetch(pid_client, by_name);
  CHECK(refused.exit_code != 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 8s);
  auto refused_out = outside.curl(listener_url);
  CHECK(refused_out.out.find("backend") == std::string::npos);

  // Removal: hosts lines, VIP, rules and file gone; idempotent.
  auto removed = second.remove_service_endpoint(ep.id);
  INFO((removed ? "" : removed.error().str()));
  REQUIRE(removed.has_value());
  CHECK(second.remove_service_endpoint(ep.id).has_value());
  auto hosts_after = in_task(pid_client, {"/bin/busybox", "cat", "/etc/hosts"});
  CHECK(hosts_after.exit_code == 0);
  CHECK(hosts_after.out.find(kName) == std::string::npos);
  CHECK(hosts_after.out.find("localhost") != std::string::npos);  // the rest stays
  CHECK(in_task(pid1, {"/bin/busybox", "cat", "/etc/hosts"}).out.find(kName) == std::string::npos);
  CHECK(bridge_addresses(env).find(vip + "/") == std::string::npos);
  CHECK(table_rules(env).find("berth:" + ep.id) == std::string::npos);
  CHECK_FALSE(stdfs::exists(env.cfg.state_dir + "/services/" + ep.id + ".json"));
  CHECK_FALSE(stdfs::exists(env.cfg.state_dir + "/ipam/" + vip));
}

TEST_CASE("service endpoint: invalid input is refused, naming what is wrong", "[svc-endpoint]") {
  REQUIRE_PRIVILEGED();
  AgentEnv env;
  NodeAgent& agent = env.start();
  ServiceEndpoint ep;
  ep.id = "svc-00000000000000b2";
  ep.account = kAccountA;
  ep.name = kName;
  ep.container_port = 80;
  auto msg = [&](const ServiceEndpoint& e) {
    auto r = agent.set_service_endpoint(e);
    return r ? std::string("ok") : r.error().str();
  };
  auto with = [&](auto f) {
    ServiceEndpoint e = ep;
    f(e);
    return msg(e);
  };
  CHECK(with([](ServiceEndpoint& e) { e.id = "svc-1"; }).find("id \"svc-1\"") != std::string::npos);
  CHECK(with([](ServiceEndpoint& e) {
          e.backends = {{"192.0.2.1", 80}};
        }).find("192.0.2.1 is not a task address") != std::string::npos);
  CHECK(with([](ServiceEndpoint& e) { e.protocol = "sctp"; }).find("protocol \"sctp\"") !=
        std::string::npos);
  CHECK(with([](ServiceEndpoint& e) { e.name = "Web_1"; }).find("name \"Web_1\"") !=
        std::string::npos);
  // Nothing was made.
  CHECK_FALSE(stdfs::exists(env.cfg.state_dir + "/services/" + ep.id + ".json"));
  CHECK(table_rules(env).find("berth:" + ep.id) == std::string::npos);

  // A listener port another owner maps is an error naming the port.
  ServiceEndpoint a = ep;
  a.listener_port = static_cast<uint16_t>(26000 + (::getpid() % 2000) * 3);
  REQUIRE(agent.set_service_endpoint(a).has_value());
  ServiceEndpoint b = a;
  b.id = "svc-00000000000000b3";
  b.name = "other.default.berth";
  auto clash = agent.set_service_endpoint(b);
  REQUIRE_FALSE(clash.has_value());
  CHECK(clash.error().str().find(std::to_string(a.listener_port)) != std::string::npos);
  CHECK_FALSE(stdfs::exists(env.cfg.state_dir + "/services/" + b.id + ".json"));
  CHECK(agent.remove_service_endpoint(a.id).has_value());
}

TEST_CASE(
    "service endpoint: the teardown path (adopt nothing, delete tables and bridge) leaves "
    "no VIP or rule",
    "[svc-endpoint]") {
  REQUIRE_PRIVILEGED();
  AgentEnv env;
  NodeAgent& agent = env.start();
  ServiceEndpoint ep;
  ep.id = "svc-00000000000000c4";
  ep.account = kAccountA;
  ep.name = kName;
  ep.container_port = 80;
  ep.listener_port = static_cast<uint16_t>(29000 + (::getpid() % 2000) * 3);
  auto vip = agent.set_service_endpoint(ep);
  INFO((vip ? "" : vip.error().str()));
  REQUIRE(vip.has_value());
  CHECK(bridge_addresses(env).find(*vip + "/32") != std::string::npos);
  CHECK(table_rules(env).find("berth:" + ep.id) != std::string::npos);
  // As berthd --teardown: a new agent adopts nothing (the endpoint is kept:
  // it is not a task), then the tables and the bridge go.
  agent.shutdown();
  env.agent.reset();
  NodeAgent& again = env.start();
  REQUIRE(again.adopt({}).has_value());
  CHECK(bridge_addresses(env).find(*vip + "/32") != std::string::npos);
  again.shutdown();
  env.agent.reset();
  REQUIRE(berth::netns::Firewall(env.cfg.firewall).teardown().has_value());
  REQUIRE(berth::netns::Network(env.cfg.network).teardown().has_value());
  CHECK(exec_command({"ip", "link", "show", env.cfg.network.bridge}).exit_code != 0);
  CHECK(exec_command({"nft", "list", "table", "ip", env.cfg.firewall.table}).exit_code != 0);
  CHECK(exec_command({"ip", "-4", "-o", "addr"}).out.find(*vip + "/32") == std::string::npos);
  CHECK_FALSE(stdfs::exists(env.cfg.state_dir + "/ipam/" + *vip));
}
