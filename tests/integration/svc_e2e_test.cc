// Services end to end (issue 13): a real berthd (berthd_fixture.h) keeps
// services at their desired count with real tasks: a task killed with
// SIGKILL is replaced, a task that always exits is relaunched with growing
// delays and trips the circuit breaker, scaling out and in, a rolling update
// under client traffic through berth's load balancer from a network
// namespace of the test's own, kill -9 of berthd in the middle of a rollout,
// the real AWS CLI and boto3 waiters, and service discovery by name for the
// service's account only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/integration/berthd_fixture.h"
#include "tests/integration/harness.h"
#include "tests/skip.h"

using namespace berth::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

void require_privileged() {
  if (auto why = privileged_skip_reason()) BERTH_SKIP(*why);
}

// Short backoff and frequent passes: the tests wait for the supervisor.
Berthd::Options fast_services(int warm_pool = 2) {
  return {.warm_pool = warm_pool,
          .extra_toml =
              "[services]\nbackoff_base_seconds = 1\nbackoff_cap_seconds = 60\nresync_ms = 500\n"};
}

// A web server answering `text` on :8080 that shuts down gracefully: on
// SIGTERM it lets in-flight requests finish (1 s) before it exits 143. A
// health check says HEALTHY once it answers, so the balancer only sends
// connections to a server that listens.
json web_container(const std::string& text) {
  return container(
      "web",
      {"sh", "-c",
       "mkdir -p /tmp/www && echo " + text +
           " > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && trap 'sleep 1; exit 143' "
           "TERM; while true; do sleep 3600 & wait; done"},
      {{"portMappings", {{{"containerPort", 8080}}}},
       {"healthCheck",
        {{"command", {"CMD-SHELL", "timeout 3 wget -q -O /dev/null http://127.0.0.1:8080/"}},
         {"interval", 5},
         {"timeout", 4},
         {"retries", 3}}}});
}

std::string register_def(Berthd& d, const json& def) {
  json reg = d.ecs_ok("RegisterTaskDefinition", def);
  return reg["taskDefinition"]["taskDefinitionArn"];
}

std::string task_id(const std::string& arn) {
  return arn.substr(arn.rfind('/') + 1);
}

std::string str(const json& j, const char* k) {
  return j.is_object() ? j.value(k, std::string{}) : std::string{};
}

double num(const json& j, const char* k) {
  if (!j.is_object() || !j.contains(k) || !j[k].is_number()) return NAN;
  return j[k].get<double>();
}

// DescribeServices of one service (null when it is not answered).
json describe_service(Berthd& d, const std::string& name) {
  HttpResult r = d.ecs("DescribeServices", {{"services", {name}}});
  json j = r.json();
  if (r.status != 200 || !j.is_object() || !j.contains("services") || j["services"].empty())
    return nullptr;
  return j["services"][0];
}

// Polls DescribeServices until `pred` holds; fails the test (with the last
// answer and berthd's log) after `timeout`.
json wait_service(Berthd& d, const std::string& name, const std::string& what,
                  const std::function<bool(const json&)>& pred,
                  std::chrono::seconds timeout = 180s) {
  json last;
  bool ok = wait_until(
      [&] {
        last = describe_service(d, name);
        return last.is_object() && pred(last);
      },
      timeout, 100ms);
  INFO("waiting for service " << name << ": " << what << "\nlast answer: " << last.dump(1)
                              << "\nberthd log (tail):\n"
                              << [&] {
                                   std::string l = d.log();
                                   return l.size() > 20000 ? l.substr(l.size() - 20000) : l;
                                 }());
  REQUIRE(ok);
  return last;
}

bool has_event(const json& svc, const std::string& text) {
  for (const auto& e : svc.value("events", json::array())) {
    if (str(e, "message").find(text) != std::string::npos) return true;
  }
  return false;
}

json primary(const json& svc) {
  for (const auto& dep : svc.value("deployments", json::array())) {
    if (str(dep, "status") == "PRIMARY") return dep;
  }
  return json::object();
}

// ECS's services-stable, plus the rollout COMPLETED and nothing pending.
bool steady(const json& svc, int desired) {
  return svc.value("desiredCount", -1) == desired && svc.value("runningCount", -1) == desired &&
         svc.value("pendingCount", -1) == 0 &&
         svc.value("deployments", json::array()).size() == 1 &&
         str(primary(svc), "rolloutState") == "COMPLETED";
}

// ARNs of ListTasks with `filter` (serviceName, startedBy, desiredStatus),
// every page.
std::vector<std::string> list_tasks(Berthd& d, json filter) {
  std::vector<std::string> out;
  filter["maxResults"] = 100;
  for (;;) {
    json j = d.ecs_ok("ListTasks", filter);
    for (const auto& a : j["taskArns"]) out.push_back(a.get<std::string>());
    if (str(j, "nextToken").empty()) return out;
    filter["nextToken"] = j["nextToken"];
  }
}

std::vector<json> describe_tasks(Berthd& d, const std::vector<std::string>& arns) {
  std::vector<json> out;
  for (size_t i = 0; i < arns.size(); i += 100) {
    std::vector<std::string> chunk(
        arns.begin() + static_cast<long>(i),
        arns.begin() + static_cast<long>(std::min(arns.size(), i + 100)));
    json j = d.ecs_ok("DescribeTasks", {{"tasks", chunk}});
    for (const auto& t : j["tasks"]) out.push_back(t);
  }
  return out;
}

// Every task of the service the store still holds (live and STOPPED),
// oldest first.
std::vector<json> service_tasks(Berthd& d, const std::string& service, json filter = {}) {
  if (!filter.is_object()) filter = json::object();
  filter["serviceName"] = service;
  std::vector<std::string> arns;
  for (const char* status : {"RUNNING", "STOPPED"}) {
    filter["desiredStatus"] = status;
    auto part = list_tasks(d, filter);
    arns.insert(arns.end(), part.begin(), part.end());
  }
  std::vector<json> tasks = describe_tasks(d, arns);
  std::sort(tasks.begin(), tasks.end(),
            [](const json& a, const json& b) { return num(a, "createdAt") < num(b, "createdAt"); });
  return tasks;
}

std::vector<json> with_status(const std::vector<json>& tasks, const std::string& last_status) {
  std::vector<json> out;
  for (const auto& t : tasks) {
    if (str(t, "lastStatus") == last_status) out.push_back(t);
  }
  return out;
}

// The first container's exit code (-1: none yet).
int exit_code(const json& t) {
  json cs = t.value("containers", json::array());
  if (cs.empty() || !cs[0].contains("exitCode") || !cs[0]["exitCode"].is_number()) return -1;
  return cs[0]["exitCode"].get<int>();
}

std::string dump_tasks(const std::vector<json>& tasks) {
  std::ostringstream s;
  for (const auto& t : tasks) {
    s << task_id(str(t, "taskArn")) << " " << str(t, "lastStatus") << "/" << str(t, "desiredStatus")
      << " startedBy=" << str(t, "startedBy") << " group=" << str(t, "group")
      << " stopCode=" << str(t, "stopCode") << " reason=" << str(t, "stoppedReason")
      << " createdAt=" << std::fixed << num(t, "createdAt") << " stoppedAt=" << num(t, "stoppedAt");
    s << " exit=" << exit_code(t);
    s << "\n";
  }
  return s.str();
}

// Deletes the service (force) when the test ends, passed or not, and waits
// until it is INACTIVE (its tasks stopped). No REQUIRE: it runs in a
// destructor.
struct ServiceGuard {
  Berthd& d;
  std::string name;
  ~ServiceGuard() {
    try {
      if (!d.running()) return;
      d.ecs("DeleteService", {{"service", name}, {"force", true}});
      wait_until(
          [&] {
            json s = describe_service(d, name);
            return !s.is_object() || str(s, "status") == "INACTIVE";
          },
          180s, 200ms);
    } catch (const std::exception& e) {
      WARN("deleting service " << name << ": " << e.what());
    }
  }
};

json create_service(Berthd& d, json body) {
  json r = d.ecs_ok("CreateService", body);
  REQUIRE(r.contains("service"));
  return r["service"];
}

// A port nobody listens on now (the listener ports of the tests).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  socklen_t len = sizeof(a);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  REQUIRE(ok);
  return ntohs(a.sin_port);
}

// The host pid of a task's first container, from the shim's state.json,
// checked to be a process in that task's cgroup under this fixture's
// cgroup subtree (nothing else is ever killed).
int task_pid(Berthd& d, const std::string& id) {
  std::string path = d.dir() + "/state/tasks/" + id + "/state.json";
  std::ifstream f(path);
  json s = json::parse(f, nullptr, false);
  INFO(path << ": " << s.dump());
  REQUIRE(s.is_object());
  REQUIRE(s.contains("containers"));
  REQUIRE_FALSE(s["containers"].empty());
  int pid = s["containers"][0].value("pid", 0);
  REQUIRE(pid > 1);
  std::ifstream cg("/proc/" + std::to_string(pid) + "/cgroup");
  std::stringstream text;
  text << cg.rdbuf();
  INFO("/proc/" << pid << "/cgroup: " << text.str());
  REQUIRE(text.str().find(d.cgroup_name()) != std::string::npos);
  REQUIRE(text.str().find(id) != std::string::npos);
  return pid;
}

}  // namespace

TEST_CASE("svc e2e: a task killed with SIGKILL is replaced and the count returns to 3",
          "[svc-e2e]") {
  require_privileged();
  Berthd d(fast_services(3));
  std::string td = register_def(d, definition("svc-keep", {container("main", sleeper())}));
  const std::string name = "keep";
  ServiceGuard guard{d, name};
  json created =
      create_service(d, {{"serviceName", name}, {"taskDefinition", td}, {"desiredCount", 3}});
  CHECK(created.value("desiredCount", 0) == 3);
  json svc = wait_service(d, name, "3 running and steady", [](const json& s) {
    return steady(s, 3) && has_event(s, "has reached a steady state.");
  });
  const std::string dep = str(primary(svc), "id");
  REQUIRE_FALSE(dep.empty());
  CHECK(has_event(svc, "has started 3 tasks"));

  std::vector<json> running = with_status(service_tasks(d, name), "RUNNING");
  INFO(dump_tasks(running));
  REQUIRE(running.size() == 3);
  std::set<std::string> before;
  for (const auto& t : running) {
    before.insert(str(t, "taskArn"));
    CHECK(str(t, "group") == "service:" + name);
    CHECK(str(t, "startedBy") == dep);
  }
  const std::string victim = str(running[1], "taskArn");
  int pid = task_pid(d, task_id(victim));
  REQUIRE(::kill(pid, SIGKILL) == 0);

  json dead = d.wait_task_status(victim, "STOPPED");
  INFO("killed task: " << dead.dump());
  CHECK(exit_code(dead) == 137);
  // A replacement: a new task of the service, of the same deployment.
  svc = wait_service(d, name, "the replacement running and 3 running again", [&](const json& s) {
    if (!steady(s, 3)) return false;
    auto now = with_status(service_tasks(d, name), "RUNNING");
    return now.size() == 3 && std::any_of(now.begin(), now.end(), [&](const json& t) {
             return !before.contains(str(t, "taskArn"));
           });
  });
  std::vector<json> all = service_tasks(d, name);
  INFO(dump_tasks(all));
  std::vector<json> now = with_status(all, "RUNNING");
  REQUIRE(now.size() == 3);
  std::string replacement;
  for (const auto& t : now) {
    CHECK(str(t, "taskArn") != victim);
    if (!before.contains(str(t, "taskArn"))) replacement = str(t, "taskArn");
  }
  REQUIRE_FALSE(replacement.empty());
  json r = describe_tasks(d, {replacement})[0];
  CHECK(str(r, "group") == "service:" + name);
  CHECK(str(r, "startedBy") == dep);
  CHECK(has_event(svc, "has started 1 tasks: (task " + task_id(replacement) + ")"));
  // Exactly one task was started beyond the first three.
  CHECK(all.size() == 4);
  CHECK(svc.value("runningCount", 0) == 3);
}

TEST_CASE("svc e2e: a task that always exits is relaunched with growing delays", "[svc-e2e]") {
  require_privileged();
  Berthd d(fast_services());
  std::string td =
      register_def(d, definition("svc-crash", {container("main", {"sh", "-c", "exit 3"})}));
  const std::string name = "crashloop";
  ServiceGuard guard{d, name};
  create_service(d, {{"serviceName", name}, {"taskDefinition", td}, {"desiredCount", 1}});
  // Six launches: the first failure is replaced at once, then the waits
  // are base * 2^(n-2) = 1, 2, 4, 8 s.
  constexpr size_t kLaunches = 6;
  std::vector<json> tasks;
  bool enough = wait_until(
      [&] {
        tasks = with_status(service_tasks(d, name), "STOPPED");
        return tasks.size() >= kLaunches;
      },
      180s, 200ms);
  INFO(dump_tasks(tasks) << "\nservice: " << describe_service(d, name).dump(1));
  REQUIRE(enough);
  json svc = describe_service(d, name);
  CHECK(has_event(svc, "is unable to consistently start tasks successfully"));
  for (const auto& t : tasks) {
    CHECK(exit_code(t) == 3);
    CHECK(str(t, "stopCode") == "EssentialContainerExited");
  }
  // delay[k]: from task k's exit (executionStoppedAt: its container ended;
  // the replacement may be launched while it is still being torn down) to
  // task k+1's creation; the backoff of the (k+1)th consecutive failure is
  // 0, 1, 2, 4, 8 s (a lower bound: the supervisor sees the exit after it
  // happens; timestamps are rounded to the millisecond).
  std::vector<double> delays, gaps;
  for (size_t k = 0; k + 1 < kLaunches; ++k) {
    double exited = num(tasks[k], "executionStoppedAt");
    if (std::isnan(exited)) exited = num(tasks[k], "stoppedAt");
    delays.push_back(num(tasks[k + 1], "createdAt") - exited);
    gaps.push_back(num(tasks[k + 1], "createdAt") - num(tasks[k], "createdAt"));
  }
  std::ostringstream shown;
  for (size_t k = 0; k < delays.size(); ++k)
    shown << "delay " << k << ": " << delays[k] << " s, createdAt gap " << gaps[k] << " s\n";
  INFO(shown.str());
  const double expected[] = {0, 1, 2, 4, 8};
  for (size_t k = 1; k < delays.size(); ++k) CHECK(delays[k] >= expected[k] - 0.01);
  for (size_t k = 1; k + 1 < delays.size(); ++k) CHECK(delays[k + 1] > delays[k]);
  for (size_t k = 1; k + 1 < gaps.size(); ++k) CHECK(gaps[k + 1] > gaps[k]);
}

TEST_CASE(
    "svc e2e: the circuit breaker fails a deployment whose tasks keep exiting and launches stop",
    "[svc-e2e]") {
  require_privileged();
  Berthd d(fast_services());
  std::string td =
      register_def(d, definition("svc-broken", {container("main", {"sh", "-c", "exit 3"})}));
  const std::string name = "broken";
  ServiceGuard guard{d, name};
  create_service(d, {{"serviceName", name},
                     {"taskDefinition", td},
                     {"desiredCount", 2},
                     {"deploymentConfiguration",
                      {{"deploymentCircuitBreaker", {{"enable", true}, {"rollback", false}}}}}});
  json svc = wait_service(d, name, "rolloutState FAILED", [](const json& s) {
    return str(primary(s), "rolloutState") == "FAILED";
  });
  json dep = primary(svc);
  INFO(svc.dump(1));
  // The threshold: max(3, min(200, ceil(2 / 2))) = 3 failed tasks.
  CHECK(dep.value("failedTasks", 0) >= 3);
  CHECK(svc.value("runningCount", -1) == 0);
  // Every task launched so far stops (they exit); then nothing more is
  // launched: with backoff 1 s doubling, another launch would come within
  // a few seconds, so none in 15 s means the deployment is stalled.
  std::vector<json> tasks;
  bool all_stopped = wait_until(
      [&] {
        tasks = service_tasks(d, name);
        return !tasks.empty() && with_status(tasks, "STOPPED").size() == tasks.size();
      },
      120s, 200ms);
  INFO(dump_tasks(tasks));
  REQUIRE(all_stopped);
  CHECK(tasks.size() >= 3);
  const size_t launched = tasks.size();
  bool more = wait_until([&] { return service_tasks(d, name).size() > launched; }, 15s, 500ms);
  CHECK_FALSE(more);
  svc = describe_service(d, name);
  CHECK(str(primary(svc), "rolloutState") == "FAILED");
  CHECK(svc.value("runningCount", -1) == 0);
}

TEST_CASE("svc e2e: scale 3 to 5 to 1 and the surplus tasks stop gracefully", "[svc-e2e]") {
  require_privileged();
  Berthd d(fast_services(3));
  std::string td = register_def(d, definition("svc-scale", {container("main", sleeper())}));
  const std::string name = "scale";
  ServiceGuard guard{d, name};
  create_service(d, {{"serviceName", name}, {"taskDefinition", td}, {"desiredCount", 3}});
  wait_service(d, name, "3 running", [](const json& s) { return steady(s, 3); });
  CHECK(with_status(service_tasks(d, name), "RUNNING").size() == 3);

  json up = d.ecs_ok("UpdateService", {{"service", name}, {"desiredCount", 5}});
  CHECK(up["service"].value("desiredCount", 0) == 5);
  wait_service(d, name, "5 running", [](const json& s) { return steady(s, 5); });
  std::vector<json> five = with_status(service_tasks(d, name), "RUNNING");
  INFO(dump_tasks(five));
  REQUIRE(five.size() == 5);

  d.ecs_ok("UpdateService", {{"service", name}, {"desiredCount", 1}});
  json svc = wait_service(d, name, "1 running and the surplus stopped", [&](const json& s) {
    if (!steady(s, 1)) return false;
    auto all = service_tasks(d, name);
    return with_status(all, "STOPPED").size() == 4 && with_status(all, "RUNNING").size() == 1;
  });
  std::vector<json> all = service_tasks(d, name);
  INFO(dump_tasks(all));
  CHECK(all.size() == 5);  // nothing started beyond the five
  const std::string dep = str(primary(svc), "id");
  for (const auto& t : with_status(all, "STOPPED")) {
    CHECK(str(t, "stopCode") == "ServiceSchedulerInitiated");
    CHECK(str(t, "stoppedReason") == "Scaling activity initiated by (deployment " + dep + ")");
    // SIGTERM, and the task's own graceful exit (not the stop timeout's
    // SIGKILL, 137).
    CHECK(exit_code(t) == 143);
  }
  CHECK(svc.value("desiredCount", 0) == 1);
}

namespace {

// A network namespace of the test's own, joined to the host by a veth pair
// (host side .1/30, namespace side .2/30, default route via the host):
// clients in it reach the host's addresses like another machine would.
// Removed on destruction.
struct TestNetns {
  std::string name, host_if, ns_if, host_ip, ns_ip;
  TestNetns() {
    static int n = 0;
    int pid = static_cast<int>(::getpid());
    ++n;
    name = unique_name() + "-ns";
    host_if = "sv" + std::to_string(pid % 100000) + "h" + std::to_string(n);
    ns_if = "sv" + std::to_string(pid % 100000) + "n" + std::to_string(n);
    std::string net = "10.251." + std::to_string(pid % 250) + ".";
    host_ip = net + std::to_string(4 * (n % 60) + 1);
    ns_ip = net + std::to_string(4 * (n % 60) + 2);
    run({"ip", "netns", "add", name});
    run({"ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if});
    run({"ip", "link", "set", ns_if, "netns", name});
    run({"ip", "addr", "add", host_ip + "/30", "dev", host_if});
    run({"ip", "link", "set", host_if, "up"});
    in_ns({"ip", "addr", "add", ns_ip + "/30", "dev", ns_if});
    in_ns({"ip", "link", "set", ns_if, "up"});
    in_ns({"ip", "link", "set", "lo", "up"});
    in_ns({"ip", "route", "add", "default", "via", host_ip});
  }
  ~TestNetns() {
    exec_command({"ip", "netns", "del", name});
    exec_command({"ip", "link", "del", host_if});
  }
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  void in_ns(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", name});
    run(argv);
  }
  static void run(const std::vector<std::string>& argv) {
    auto r = exec_command(argv);
    INFO(r);
    REQUIRE(r.exit_code == 0);
  }
};

// One HTTP GET on a new connection to ip:port, from the calling thread's
// network namespace: the body, or an error text starting with "ERROR".
std::string http_get(const std::string& ip, int port, std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return "ERROR socket";
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } closer{fd};
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now())
               .count()));
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 && errno != EINPROGRESS)
    return std::string("ERROR connect: ") + strerror(errno);
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, left()) <= 0) return "ERROR connect: timed out";
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return std::string("ERROR connect: ") + strerror(err);
  std::string req = "GET / HTTP/1.0\r\nHost: svc\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    return std::string("ERROR send: ") + strerror(errno);
  std::string in;
  char buf[4096];
  for (;;) {
    pollfd q{fd, POLLIN, 0};
    int n = ::poll(&q, 1, left());
    if (n <= 0) return "ERROR read: timed out after " + std::to_string(in.size()) + " bytes";
    ssize_t got = ::read(fd, buf, sizeof(buf));
    if (got < 0) return std::string("ERROR read: ") + strerror(errno);
    if (got == 0) break;
    in.append(buf, static_cast<size_t>(got));
  }
  if (in.rfind("HTTP/1.", 0) != 0 || in.find(" 200 ") == std::string::npos)
    return "ERROR status: " + in.substr(0, in.find('\r'));
  size_t body = in.find("\r\n\r\n");
  if (body == std::string::npos) return "ERROR no body";
  std::string out = in.substr(body + 4);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// A client in a network namespace: one new connection every ~50 ms to
// ip:port, each answer counted.
class TrafficClient {
 public:
  TrafficClient(const std::string& netns, std::string ip, int port)
      : ip_(std::move(ip)), port_(port) {
    fd_ = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd_ >= 0);
  }
  ~TrafficClient() {
    stop();
    ::close(fd_);
  }
  void start() {
    thread_ = std::thread([this] {
      // Only this thread joins the namespace.
      if (::setns(fd_, CLONE_NEWNET) != 0) {
        std::lock_guard l(mu_);
        failures_.push_back(std::string("setns: ") + strerror(errno));
        return;
      }
      while (!stop_) {
        auto t0 = std::chrono::steady_clock::now();
        std::string got = http_get(ip_, port_, 5000ms);
        {
          std::lock_guard l(mu_);
          ++total_;
          if (got.rfind("ERROR", 0) == 0) {
            failures_.push_back(got);
          } else {
            ++answers_[got];
            last_.push_back(got);
            if (last_.size() > 40) last_.erase(last_.begin());
          }
        }
        std::this_thread::sleep_until(t0 + 50ms);
      }
    });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Requests made, failures, answers by body, the last answers.
  int total() {
    std::lock_guard l(mu_);
    return total_;
  }
  std::vector<std::string> failures() {
    std::lock_guard l(mu_);
    return failures_;
  }
  std::map<std::string, int> answers() {
    std::lock_guard l(mu_);
    return answers_;
  }
  std::vector<std::string> last() {
    std::lock_guard l(mu_);
    return last_;
  }

 private:
  std::string ip_;
  int port_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  int total_ = 0;
  std::vector<std::string> failures_;
  std::map<std::string, int> answers_;
  std::vector<std::string> last_;
};

// The HTTP answer through the netns, once (a fresh thread joins it).
std::string get_from_netns(const std::string& netns, const std::string& ip, int port) {
  std::string out;
  std::thread t([&] {
    int fd = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      out = "ERROR setns";
    } else {
      out = http_get(ip, port, 3000ms);
    }
    if (fd >= 0) ::close(fd);
  });
  t.join();
  return out;
}

}  // namespace

TEST_CASE(
    "svc e2e: a rolling update under client traffic through the load balancer loses no "
    "connection and ends on the new revision",
    "[svc-e2e]") {
  require_privileged();
  Berthd d(fast_services(3));
  const int listener = free_port();
  std::string rev1 = register_def(d, definition("svc-web", {web_container("rev1")}));
  std::string rev2 = register_def(d, definition("svc-web", {web_container("rev2")}));
  const std::string name = "web";
  ServiceGuard guard{d, name};
  create_service(
      d,
      {{"serviceName", name},
       {"taskDefinition", rev1},
       {"desiredCount", 2},
       {"loadBalancers",
        {{{"containerName", "web"}, {"containerPort", 8080}, {"berthListenerPort", listener}}}}});
  json svc = wait_service(d, name, "2 running, steady", [](const json& s) {
    return steady(s, 2) && has_event(s, "has reached a steady state.");
  });
  CHECK(svc["berthEndpoint"].value("listenerPort", 0) == listener);
  TestNetns ns;
  // The listener answers from the namespace (through the host's address on
  // the veth: another machine's view).
  std::string first;
  bool answers = wait_until(
      [&] {
        first = get_from_netns(ns.name, ns.host_ip, listener);
        return first == "rev1";
      },
      60s, 200ms);
  INFO("first answer: " << first << "\nberthd log:\n" << d.log());
  REQUIRE(answers);

  TrafficClient client(ns.name, ns.host_ip, listener);
  client.start();
  REQUIRE(wait_until([&] { return client.total() >= 10; }, 60s));
  d.ecs_ok("UpdateService", {{"service", name}, {"taskDefinition", rev2}});
  svc = wait_service(d, name, "the rollout to rev2 COMPLETED", [&](const json& s) {
    return steady(s, 2) && str(primary(s), "taskDefinition") == rev2;
  });
  // Traffic on after the rollout: the last answers are rev2 only.
  int at_end = client.total();
  REQUIRE(wait_until([&] { return client.total() >= at_end + 40; }, 120s));
  client.stop();
  auto failures = client.failures();
  auto answers_by_rev = client.answers();
  std::ostringstream report;
  report << client.total() << " requests;";
  for (const auto& [body, n] : answers_by_rev) report << " " << body << ": " << n;
  report << "; failures: " << failures.size() << "\n";
  for (size_t i = 0; i < failures.size() && i < 20; ++i) report << "  " << failures[i] << "\n";
  INFO(report.str() << "tasks:\n" << dump_tasks(service_tasks(d, name)));
  CHECK(failures.empty());
  CHECK(answers_by_rev["rev1"] > 0);
  CHECK(answers_by_rev["rev2"] > 0);
  CHECK(answers_by_rev.size() == 2);
  for (const auto& a : client.last()) CHECK(a == "rev2");
  // The old tasks are stopped, by the scheduler.
  for (const auto& t : service_tasks(d, name)) {
    if (str(t, "taskDefinitionArn") == rev1) {
      CHECK(str(t, "desiredStatus") == "STOPPED");
      CHECK(str(t, "stopCode") == "ServiceSchedulerInitiated");
    }
  }
}

TEST_CASE("svc e2e: kill -9 of berthd during a rollout and the restarted berthd completes it",
          "[svc-e2e]") {
  require_privileged();
  Berthd d(fast_services(3));
  std::string rev1 = register_def(d, definition("svc-roll", {container("main", sleeper())}));
  // Revision 2 has a health check (first run 5 s after start): each new
  // task is RUNNING but not yet healthy for a while, so the rollout goes
  // one task at a time, slowly enough to be caught half-way.
  std::string rev2 = register_def(
      d,
      definition("svc-roll", {container("main", sleeper(),
                                        {{"environment", {{{"name", "REVISION"}, {"value", "2"}}}},
                                         {"healthCheck",
                                          {{"command", {"CMD-SHELL", "true"}},
                                           {"interval", 5},
                                           {"timeout", 2},
                                           {"retries", 3}}}})}));
  const std::string name = "roll";
  ServiceGuard guard{d, name};
  // One task at a time: at most floor(3 * 150%) = 4 tasks, at least 3
  // healthy.
  create_service(
      d, {{"serviceName", name},
          {"taskDefinition", rev1},
          {"desiredCount", 3},
          {"deploymentConfiguration", {{"maximumPercent", 150}, {"minimumHealthyPercent", 100}}}});
  json svc = wait_service(d, name, "3 running", [](const json& s) { return steady(s, 3); });
  const std::string old_dep = str(primary(svc), "id");
  json up = d.ecs_ok("UpdateService", {{"service", name}, {"taskDefinition", rev2}});
  const std::string new_dep = str(primary(up["service"]), "id");
  REQUIRE_FALSE(new_dep.empty());
  REQUIRE(new_dep != old_dep);
  // kill -9 once the new deployment has a task RUNNING (to be adopted) and
  // fewer than 3 live.
  std::vector<json> midway_tasks;
  bool midway = wait_until(
      [&] {
        midway_tasks = describe_tasks(
            d, list_tasks(d, {{"startedBy", new_dep}, {"desiredStatus", "RUNNING"}}));
        return !with_status(midway_tasks, "RUNNING").empty() && midway_tasks.size() < 3;
      },
      120s, 20ms);
  INFO("tasks of the new deployment when berthd was killed:\n" << dump_tasks(midway_tasks));
  REQUIRE(midway);
  d.kill9();
  d.start();
  svc = wait_service(d, name, "the rollout COMPLETED after the restart", [&](const json& s) {
    return steady(s, 3) && str(primary(s), "id") == new_dep;
  });
  std::vector<json> all = service_tasks(d, name);
  std::vector<json> fresh, old;
  for (const auto& t : all) (str(t, "startedBy") == new_dep ? fresh : old).push_back(t);
  INFO(dump_tasks(all) << "\nservice: " << svc.dump(1));
  // Exactly three live tasks of the new deployment, all running, and no
  // task of it ran twice: the ones RUNNING at the kill were adopted (still
  // RUNNING), and only three of it ever started. (A launch in flight when
  // berthd died may be recorded STOPPED without having started, and
  // replaced.)
  std::vector<json> live_fresh;
  int ever_started = 0;
  for (const auto& t : fresh) {
    if (str(t, "lastStatus") != "STOPPED") live_fresh.push_back(t);
    if (t.contains("startedAt")) ++ever_started;
  }
  CHECK(live_fresh.size() == 3);
  CHECK(with_status(live_fresh, "RUNNING").size() == 3);
  CHECK(ever_started == 3);
  for (const auto& t : with_status(midway_tasks, "RUNNING")) {
    bool adopted = std::any_of(live_fresh.begin(), live_fresh.end(), [&](const json& f) {
      return str(f, "taskArn") == str(t, "taskArn");
    });
    INFO("running at the kill: " << str(t, "taskArn"));
    CHECK(adopted);
  }
  for (const auto& t : fresh) CHECK(str(t, "taskDefinitionArn") == rev2);
  // The old ones stopped (they may still be stopping a moment).
  bool old_stopped = wait_until([&] {
    auto now = service_tasks(d, name, {{"startedBy", old_dep}});
    return now.size() == 3 && with_status(now, "STOPPED").size() == 3;
  });
  CHECK(old_stopped);
  CHECK(old.size() == 3);
  CHECK(svc["deployments"].size() == 1);
}

namespace {

std::string aws_env(const Berthd& d, const std::string& home, const char* key, const char* secret) {
  return "HOME=" + home +
         " AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=" + key +
         " AWS_SECRET_ACCESS_KEY=" + secret +
         " BERTH_ENDPOINT=http://127.0.0.1:" + std::to_string(d.port()) +
         " BERTH_SOURCE_DIR=" + BERTH_SOURCE_DIR;
}

struct HomeDir {
  std::string dir = "/tmp/" + unique_name() + "-home";
  HomeDir() { std::filesystem::create_directories(dir); }
  ~HomeDir() { std::filesystem::remove_all(dir); }
};

}  // namespace

TEST_CASE("svc e2e: the AWS CLI v2 and boto3 create services and wait for services-stable",
          "[svc-e2e]") {
  require_privileged();
  if (::access("/usr/bin/aws", X_OK) != 0)
    BERTH_SKIP("the AWS CLI (/usr/bin/aws) is not installed");
  Berthd d(fast_services(3));
  HomeDir home;
  std::string env = aws_env(d, home.dir, Berthd::kAliceKey, Berthd::kAliceSecret);
  std::string clients = std::string(BERTH_SOURCE_DIR) + "/tests/clients/";
  SECTION("aws ecs create-service, wait services-stable, update-service, delete-service") {
    auto r = exec_command({"sh", "-c",
                           env + " BERTH_LISTENER_PORT=" + std::to_string(free_port()) + " bash " +
                               clients + "aws_services_flow.sh"},
                          {.timeout = std::chrono::seconds(600)});
    INFO(r.out << r.err << "\nberthd log:\n" << d.log());
    CHECK(r.exit_code == 0);
  }
  SECTION("boto3 create_service and the services_stable waiter") {
    auto r = exec_command({"sh", "-c", env + " python3 " + clients + "boto3_services_flow.py"},
                          {.timeout = std::chrono::seconds(600)});
    INFO(r.out << r.err << "\nberthd log:\n" << d.log());
    CHECK(r.exit_code == 0);
  }
}

TEST_CASE(
    "svc e2e: a task of the same account reaches the service by name and another account's "
    "task cannot",
    "[svc-e2e]") {
  require_privileged();
  if (::access("/usr/bin/aws", X_OK) != 0)
    BERTH_SKIP("the AWS CLI (/usr/bin/aws) is not installed");
  Berthd d(fast_services(3));
  std::string web = register_def(d, definition("svc-named", {web_container("alice-service")}));
  const std::string name = "named";
  ServiceGuard guard{d, name};
  create_service(d, {{"serviceName", name}, {"taskDefinition", web}, {"desiredCount", 2}});
  json svc = wait_service(d, name, "2 running with an endpoint", [](const json& s) {
    return steady(s, 2) && s.contains("berthEndpoint") &&
           !str(s["berthEndpoint"], "address").empty();
  });
  const std::string host = str(svc["berthEndpoint"], "name");
  const std::string vip = str(svc["berthEndpoint"], "address");
  CHECK(host == "named.default.berth");
  // "; exit $?": the shell must not exec `timeout` as the container's pid 1
  // (busybox timeout then makes wget pid 1, which ignores the SIGTERM of the
  // timeout, and a dropped connection hangs for the kernel's SYN retries).
  auto fetch = [](const std::string& target) {
    return container("client",
                     {"sh", "-c", "timeout 10 wget -q -O- http://" + target + ":8080/; exit $?"});
  };
  auto run_and_wait = [&](const json& def) {
    std::string td = register_def(d, def);
    json run = d.ecs_ok("RunTask", {{"taskDefinition", td}});
    REQUIRE(run["tasks"].size() == 1);
    std::string arn = run["tasks"][0]["taskArn"];
    json t = d.wait_task_status(arn, "STOPPED");
    HttpResult logs = d.call({.target = "/v1/tasks/" + task_id(arn) + "/logs"});
    return std::make_pair(exit_code(t), logs.body);
  };
  // alice (the unix socket's account), by name and by the VIP.
  auto [by_name, out_name] = run_and_wait(definition("svc-client-a", {fetch(host)}));
  INFO("alice by name: exit " << by_name << ", output " << out_name << "\nberthd log:\n"
                              << d.log());
  CHECK(by_name == 0);
  CHECK_THAT(out_name, Catch::Contains("alice-service"));
  auto [by_vip, out_vip] = run_and_wait(definition("svc-client-a2", {fetch(vip)}));
  CHECK(by_vip == 0);
  CHECK_THAT(out_vip, Catch::Contains("alice-service"));

  // bob (000000000002, TCP with his keys through the AWS CLI): neither the
  // name nor the VIP.
  HomeDir home;
  auto aws_bob = [&](const std::string& args) {
    return exec_command({"sh", "-c",
                         aws_env(d, home.dir, Berthd::kBobKey, Berthd::kBobSecret) +
                             " aws ecs --output json --endpoint-url http://127.0.0.1:" +
                             std::to_string(d.port()) + " " + args},
                        {.timeout = std::chrono::seconds(120)});
  };
  REQUIRE(aws_bob("create-cluster").exit_code == 0);
  for (const std::string& target : {host, vip}) {
    std::string family = target == host ? "bob-by-name" : "bob-by-vip";
    std::string file = home.dir + "/" + family + ".json";
    std::ofstream(file) << definition(family, {fetch(target)}).dump();
    auto r = aws_bob("register-task-definition --cli-input-json file://" + file);
    INFO(r);
    REQUIRE(r.exit_code == 0);
    r = aws_bob("run-task --task-definition " + family);
    INFO(r);
    REQUIRE(r.exit_code == 0);
    json run = json::parse(r.out, nullptr, false);
    REQUIRE(run["tasks"].size() == 1);
    std::string arn = run["tasks"][0]["taskArn"];
    int bob_exit = -1;
    std::string last;
    bool stopped = wait_until(
        [&] {
          auto dr = aws_bob("describe-tasks --tasks " + arn);
          last = dr.out + dr.err;
          json j = json::parse(dr.out, nullptr, false);
          if (!j.is_object() || !j.contains("tasks") || j["tasks"].empty() ||
              str(j["tasks"][0], "lastStatus") != "STOPPED") {
            return false;
          }
          bob_exit = exit_code(j["tasks"][0]);
          return true;
        },
        120s, 500ms);
    INFO("bob's task to " << target << ", last described: " << last);
    CHECK(stopped);
    CHECK(bob_exit != 0);
    CHECK(bob_exit != -1);
  }
}
