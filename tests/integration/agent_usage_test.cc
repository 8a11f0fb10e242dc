// The node agent's measured usage of real tasks (agent.h: usage(), the
// final sample of release()): CPU against the task cgroup's own counter,
// the memory peak of a task that fills a tmpfs, the bytes through its veth,
// the final sample kept across a second release and a restart of the agent,
// and nothing after purge. The fixture is cp_agent_test's
// (agent_fixture.h): unique names, everything removed however a test ends.
//
// Test code: exceptions are fine here (Catch2 needs them).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "common/fd.h"
#include "controlplane/agent/usage.h"
#include "runtime/cgroup.h"
#include "tests/integration/agent_fixture.h"

namespace {

using namespace berth::cp;
using namespace berth::cp::agent_test;
using berth::test::wait_until;
using namespace std::chrono_literals;

std::string err(const berth::Result<UsageSample>& r) {
  return r ? std::string() : r.error().str();
}

// The task cgroup's CPU time in usec, read here from the cgroupfs (v1:
// cpuacct.usage in ns; pure v2: cpu.stat usage_usec), independently of the
// agent's reader. -1 when it cannot be read.
int64_t cgroup_cpu_usec(const NodeAgent& agent, const std::string& task) {
  std::string v1, v2;
  for (const auto& h : berth::test::cgroup_hierarchies()) {
    if (h.controllers == "cpuacct" || h.controllers.find("cpuacct") != std::string::npos) {
      v1 = h.mount + agent.cgroups().tasks_parent() + "/" + task + "/cpuacct.usage";
    } else if (h.controllers.empty()) {
      v2 = h.mount + agent.cgroups().tasks_parent() + "/" + task + "/cpu.stat";
    }
  }
  if (!v1.empty()) {
    std::string t = berth::test::read_file(v1);
    return t.empty() ? -1 : static_cast<int64_t>(std::stoull(t) / 1000);
  }
  std::string t = berth::test::read_file(v2);
  auto at = t.find("usage_usec ");
  return at == std::string::npos ? -1 : std::stoll(t.substr(at + 11));
}

bool log_has(NodeAgent& agent, const std::string& task, const std::string& text) {
  auto c = agent.logs(task, "main", 0, 1 << 20);
  return c && c->data.find(text) != std::string::npos;
}

// A TCP connection to ip:port with a 5 s timeout; an empty fd if refused.
berth::UniqueFd connect_to(const std::string& ip, uint16_t port) {
  berth::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  timeval tv{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
  return fd;
}

// Sends `n` bytes, half-closes, reads until EOF: what was sent (-1: failed).
int64_t send_bytes(const std::string& ip, uint16_t port, size_t n) {
  auto fd = connect_to(ip, port);
  if (!fd) return -1;
  std::vector<char> buf(64 * 1024, 'x');
  size_t sent = 0;
  while (sent < n) {
    ssize_t w = ::send(fd.get(), buf.data(), std::min(buf.size(), n - sent), MSG_NOSIGNAL);
    if (w <= 0) return -1;
    sent += static_cast<size_t>(w);
  }
  ::shutdown(fd.get(), SHUT_WR);
  while (::recv(fd.get(), buf.data(), buf.size(), 0) > 0) {
  }
  return static_cast<int64_t>(sent);
}

// GET of `path` from an HTTP server: the bytes received (-1: failed).
int64_t http_get(const std::string& ip, uint16_t port, const std::string& path) {
  auto fd = connect_to(ip, port);
  if (!fd) return -1;
  std::string req = fmt::format("GET {} HTTP/1.0\r\nHost: {}\r\n\r\n", path, ip);
  if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return -1;
  }
  std::vector<char> buf(64 * 1024);
  int64_t got = 0;
  for (;;) {
    ssize_t r = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (r < 0) return -1;
    if (r == 0) return got;
    got += r;
  }
}

ContainerDefinition shell_task(const std::string& image, const std::string& script) {
  auto c = container("main", image, {"/bin/busybox", "sh", "-c", script});
  c.linux_parameters.init_process_enabled = true;  // pid 1 forwards the TERM
  return c;
}

}  // namespace

TEST_CASE(
    "agent usage: CPU time and memory peak and veth bytes of real tasks and their final sample",
    "[agent-usage]") {
  REQUIRE_REGISTRY_TOOLS();
  Case k;
  auto& [reg, env, log, agent] = k;

  // One CPU burnt for 2 s, then a marker and sleep.
  auto cpu =
      env.task({shell_task(reg.ref(),
                           "/bin/busybox timeout 2 /bin/busybox sh -c 'while :; do :; done'; "
                           "echo burned; exec /bin/busybox sleep 600")});
  cpu.definition.cpu = "1024";  // a whole vCPU: the quota does not throttle the loop
  // 64 MiB into /dev/shm (a tmpfs charged to the task), then sleep.
  auto mem_c = shell_task(reg.ref(),
                          "/bin/busybox dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 && "
                          "echo filled; exec /bin/busybox sleep 600");
  mem_c.linux_parameters.shared_memory_size_mib = 128;
  auto mem = env.task({mem_c});
  // A 512 KiB file served over HTTP, and a listener counting what it gets.
  auto net = env.task({shell_task(
      reg.ref(),
      "mkdir -p /tmp/www && /bin/busybox dd if=/dev/zero of=/tmp/www/big bs=1024 count=512 && "
      "/bin/busybox httpd -p 8080 -h /tmp/www && echo serving && "
      "/bin/busybox nc -l -p 9000 | /bin/busybox wc -c | sed 's/^/received /'; "
      "exec /bin/busybox sleep 600")});

  env.launch_ok(cpu);
  Launched lm = env.launch_ok(mem);
  Launched ln = env.launch_ok(net);

  // CPU: the agent's figure against the cgroup's own counter, once the
  // task sleeps (the counter no longer moves).
  REQUIRE(wait_until([&] { return log_has(agent, cpu.task.id, "burned"); }, 120s));
  int64_t direct = cgroup_cpu_usec(agent, cpu.task.id);
  auto live = agent.usage(cpu.task.id);
  int64_t direct_after = cgroup_cpu_usec(agent, cpu.task.id);
  INFO(err(live));
  REQUIRE(live.has_value());
  INFO("cgroup " << direct << ".." << direct_after << " usec, usage() " << live->cpu_usec);
  REQUIRE(direct > 0);
  // It did burn: a share of 2 s (less than all of it on a busy host).
  CHECK(direct >= 300'000);
  CHECK_FALSE(live->final);
  CHECK(live->cpu_usec >= direct * 98 / 100);
  CHECK(live->cpu_usec <= direct_after * 102 / 100);
  CHECK(live->memory_bytes > 0);
  CHECK(live->memory_peak_bytes >= live->memory_bytes);

  // Memory: the peak covers the 64 MiB in the tmpfs.
  REQUIRE(wait_until([&] { return log_has(agent, mem.task.id, "filled"); }, 120s));
  auto m = agent.usage(mem.task.id);
  INFO(err(m));
  REQUIRE(m.has_value());
  INFO("memory " << m->memory_bytes << " peak " << m->memory_peak_bytes);
  CHECK(m->memory_peak_bytes >= 64ll << 20);
  CHECK(m->memory_bytes >= 64ll << 20);  // the tmpfs still holds it

  // Network: 1 MiB from the host into the task, 512 KiB back.
  REQUIRE(wait_until([&] { return log_has(agent, net.task.id, "serving"); }, 120s));
  auto before = agent.usage(net.task.id);
  REQUIRE(before.has_value());
  constexpr int64_t kSent = 1 << 20;
  int64_t sent = -1;
  CHECK(wait_until([&] { return (sent = send_bytes(ln.private_ipv4, 9000, kSent)) == kSent; }, 60s,
                   200ms));
  CHECK(wait_until([&] { return log_has(agent, net.task.id, "received 1048576"); }, 60s));
  int64_t got = -1;
  CHECK(wait_until([&] { return (got = http_get(ln.private_ipv4, 8080, "/big")) > 512 * 1024; },
                   60s, 200ms));
  auto after = agent.usage(net.task.id);
  INFO(err(after));
  REQUIRE(after.has_value());
  INFO("rx " << before->net_rx_bytes << " -> " << after->net_rx_bytes << ", tx "
             << before->net_tx_bytes << " -> " << after->net_tx_bytes << ", got " << got);
  CHECK(after->net_rx_bytes - before->net_rx_bytes >= kSent);
  CHECK(after->net_tx_bytes - before->net_tx_bytes >= 512 * 1024);

  // Stop and release: the final sample, kept in usage.json (0600), at
  // least the last live one; a second release does not replace it.
  auto last_live = agent.usage(cpu.task.id);
  REQUIRE(last_live.has_value());
  stop_ends_with_143(agent, log, cpu.task.id);
  auto fin = agent.usage(cpu.task.id);
  INFO(err(fin));
  REQUIRE(fin.has_value());
  CHECK(fin->final);
  CHECK(fin->cpu_usec >= last_live->cpu_usec);
  CHECK(fin->memory_peak_bytes >= last_live->memory_peak_bytes);
  CHECK(fin->at >= last_live->at);
  const std::string usage_json = agent.task_dir(cpu.task.id) + "/usage.json";
  struct stat st {};
  REQUIRE(::stat(usage_json.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string kept = berth::test::read_file(usage_json);
  CHECK(agent.release(cpu.task.id).has_value());
  CHECK(berth::test::read_file(usage_json) == kept);
  auto again = agent.usage(cpu.task.id);
  REQUIRE(again.has_value());
  CHECK(again->cpu_usec == fin->cpu_usec);
  CHECK(again->final);

  // The network task's final sample keeps its veth counters (taken before
  // the veth went).
  stop_ends_with_143(agent, log, net.task.id);
  auto net_fin = agent.usage(net.task.id);
  INFO(err(net_fin));
  REQUIRE(net_fin.has_value());
  CHECK(net_fin->final);
  CHECK(net_fin->net_rx_bytes >= after->net_rx_bytes);
  CHECK(net_fin->net_tx_bytes >= after->net_tx_bytes);

  // berthd restarts: the released task's sample comes from usage.json, the
  // live adopted one's from its cgroup.
  agent.shutdown();
  env.agent.reset();
  NodeAgent& second = env.start();
  auto adopted = second.adopt({{mem.task.id, lm.node_ref}});
  INFO((adopted ? "" : adopted.error().str()));
  REQUIRE(adopted.has_value());
  REQUIRE(adopted->size() == 1);
  CHECK((*adopted)[0].shim_alive);
  auto fin2 = second.usage(cpu.task.id);
  INFO(err(fin2));
  REQUIRE(fin2.has_value());
  CHECK(fin2->final);
  CHECK(fin2->cpu_usec == fin->cpu_usec);
  CHECK(fin2->at == fin->at);
  auto m2 = second.usage(mem.task.id);
  INFO(err(m2));
  REQUIRE(m2.has_value());
  CHECK_FALSE(m2->final);
  CHECK(m2->memory_peak_bytes >= 64ll << 20);

  // Purged: gone.
  REQUIRE(second.purge(cpu.task.id).has_value());
  auto gone = second.usage(cpu.task.id);
  REQUIRE_FALSE(gone.has_value());
  CHECK(gone.error().kind == berth::ErrorKind::not_found);
  auto never = second.usage("nosuchtask");
  REQUIRE_FALSE(never.has_value());
  CHECK(never.error().kind == berth::ErrorKind::not_found);
}

// The readers of usage.h on the real cgroupfs of this host: the v1 files
// on a hybrid host (this one), the v2 files on a pure v2 one (tagged
// [cgroup-v2], so that the quick set of make test-v2 runs it in the VM).
// A forked child charges 16 MiB and 200 ms of CPU time to a cgroup of the
// test; the readers agree with the runtime's own stats() around them.
TEST_CASE("agent usage: the counter readers on a real cgroup (v1 here and v2 in the VM)",
          "[agent-usage][cgroup-v2]") {
  REQUIRE_PRIVILEGED();
  auto l = berth::runtime::CgroupLayout::detect();
  INFO((l ? "" : l.error().str()));
  REQUIRE(l.has_value());
  const std::string name = berth::test::unique_name();
  auto made = berth::runtime::make_cgroup_driver(*l, name, name);
  INFO((made ? "" : made.error().str()));
  REQUIRE(made.has_value());
  auto& d = **made;
  struct Cleanup {
    berth::runtime::CgroupDriver& d;
    pid_t child = -1;
    ~Cleanup() {
      if (child > 0) {
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
      }
      (void)d.destroy();
    }
  } cleanup{d};
  auto created = d.create();
  INFO((created ? "" : created.error().str()));
  REQUIRE(created.has_value());

  int go[2], ack[2];
  REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(ack, O_CLOEXEC) == 0);
  berth::UniqueFd go_r(go[0]), go_w(go[1]), ack_r(ack[0]), ack_w(ack[1]);
  constexpr size_t kMem = 16u << 20;
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    char c;
    if (::read(go_r.get(), &c, 1) != 1) ::_exit(1);
    auto* p = static_cast<char*>(
        ::mmap(nullptr, kMem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) ::_exit(2);
    for (size_t i = 0; i < kMem; i += 4096) p[i] = 1;
    timespec ts{};
    do {
      ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    } while (ts.tv_sec == 0 && ts.tv_nsec < 200'000'000);
    if (::write(ack_w.get(), "k", 1) != 1) ::_exit(3);
    (void)::read(go_r.get(), &c, 1);  // until killed
    ::_exit(0);
  }
  cleanup.child = pid;
  auto added = d.add_process(pid);
  INFO((added ? "" : added.error().str()));
  REQUIRE(added.has_value());
  REQUIRE(::write(go_w.get(), "g", 1) == 1);
  pollfd pf{ack_r.get(), POLLIN, 0};
  REQUIRE(::poll(&pf, 1, 60000) == 1);

  auto before = d.stats();
  REQUIRE(before.has_value());
  berth::Result<CgroupCounters> got = std::unexpected(berth::Error{});
  const auto paths = d.paths();
  if (l->mode == berth::runtime::CgroupLayout::Mode::unified) {
    REQUIRE(paths.size() == 1);
    got = read_cgroup_v2_counters(paths[0]);
  } else {
    auto dir_of = [&](const std::string& controller) {
      for (const auto& v : l->v1) {
        if (v.controller != controller) continue;
        for (const auto& p : paths) {
          if (p.starts_with(v.mount + "/")) return p;
        }
      }
      FAIL("no " << controller << " cgroup among the driver's paths");
      return std::string();
    };
    got = read_cgroup_v1_counters(dir_of("cpuacct"), dir_of("memory"));
  }
  auto after = d.stats();
  REQUIRE(after.has_value());
  INFO((got ? "" : got.error().str()));
  REQUIRE(got.has_value());
  INFO("mode " << l->mode_name() << ": cpu " << got->cpu_usec << " usec (stats "
               << before->cpu_usage_usec << ".." << after->cpu_usage_usec << "), memory "
               << got->memory_bytes << ", peak " << got->memory_peak_bytes.value_or(-1));
  // The thread's clock ran 200 ms; the cgroup's counter may lag it by a tick.
  CHECK(got->cpu_usec >= 150'000);
  CHECK(static_cast<uint64_t>(got->cpu_usec) >= before->cpu_usage_usec);
  CHECK(static_cast<uint64_t>(got->cpu_usec) <= after->cpu_usage_usec);
  CHECK(got->memory_bytes >= static_cast<int64_t>(kMem) * 9 / 10);
  // Linux 5.19+ (v2) and every v1 kernel keep the peak.
  REQUIRE(got->memory_peak_bytes.has_value());
  CHECK(*got->memory_peak_bytes >= got->memory_bytes);
}
