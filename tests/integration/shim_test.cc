// berth-shim with real containers: the test plays the control plane — it
// writes task.json, starts the shim binary, talks to it over its socket,
// disconnects and reconnects, kills it, and checks what the kernel and the
// state directory say afterwards.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "tests/integration/attack.h"
#include "tests/integration/harness.h"

using namespace berth::test;
namespace stdfs = std::filesystem;

namespace {

const std::string kShim = BERTH_BIN_DIR "/berth-shim";

bool pid_alive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0) return false;
  // A zombie is not alive (the shim's starter is not its parent).
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(st, line);
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// One connection to a shim's socket, line by line.
class ShimClient {
 public:
  explicit ShimClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~ShimClient() {
    if (fd_ >= 0) ::close(fd_);
  }

  void send(const Json& req) {
    std::string line = req.dump() + "\n";
    REQUIRE(::send(fd_, line.data(), line.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(line.size()));
  }

  // The next message, or nullopt at EOF or after `timeout`.
  std::optional<Json> next(std::chrono::milliseconds timeout = 60s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return Json::parse(line);
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char tmp[65536];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  // Sends a request and returns its response (events before it are kept
  // for wait_event).
  Json call(Json req) {
    req["id"] = ++id_;
    send(req);
    while (auto m = next()) {
      if (m->contains("id") && (*m)["id"] == id_) return *m;
      events_.push_back(*m);
    }
    FAIL("no response to " << req.dump());
    return {};
  }

  // The first event (queued or new) for which `pred` holds.
  std::optional<Json> wait_event(const std::function<bool(const Json&)>& pred,
                                 std::chrono::milliseconds timeout = 60s) {
    for (size_t i = 0; i < events_.size(); ++i) {
      if (pred(events_[i])) {
        Json e = events_[i];
        events_.erase(events_.begin() + static_cast<long>(i));
        return e;
      }
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto m = next(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
      if (!m) return std::nullopt;
      if (pred(*m)) return m;
      events_.push_back(*m);
    }
    return std::nullopt;
  }

  // True once the shim closed the connection.
  bool wait_eof(std::chrono::milliseconds timeout = 60s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      char tmp[65536];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n == 0) return true;
      if (n < 0) return errno != EAGAIN;
      buf_.append(tmp, static_cast<size_t>(n));
    }
    return false;
  }

 private:
  int fd_ = -1;
  int id_ = 0;
  std::string buf_;
  std::vector<Json> events_;
};

// "2026-11-26T21:40:00.123456789Z" -> nanoseconds since the epoch (the
// whole timestamp: tests compare across minute and hour boundaries).
int64_t rfc3339_ns(const std::string& ts) {
  std::tm t{};
  char frac[16] = {0};
  INFO(ts);
  REQUIRE(std::sscanf(ts.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%9[0-9]Z", &t.tm_year, &t.tm_mon,
                      &t.tm_mday, &t.tm_hour, &t.tm_min, &t.tm_sec, frac) == 7);
  REQUIRE(std::strlen(frac) == 9);
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return int64_t{::timegm(&t)} * 1000000000 + std::stoll(frac);
}

auto exited_event(const std::string& name) {
  return [name](const Json& e) {
    return e.value("event", "") == "container_exited" && e["container"]["name"] == name;
  };
}

// A task: its directory, its containers' bundles, the shim process. The
// destructor kills whatever is left and records leaks.
class Task {
 public:
  explicit Task(Runtime& rt, std::string id = unique_name()) : rt_(rt), id_(std::move(id)) {}
  ~Task() {
    if (pid_alive(shim_pid_)) ::kill(shim_pid_, SIGKILL);
    wait_until([&] { return !pid_alive(shim_pid_); }, 30s);
    for (const auto& [name, b] : bundles_) {
      std::string rid = runtime_id(name);
      if (stdfs::exists(rt_.root() + "/" + rid)) {
        record_leak("container state " + rid);
        rt_.exec({"delete", "--force", rid});
      }
      for (const auto& dir : berth::test::cgroup_dirs(cgroups_path(name))) {
        if (stdfs::exists(dir)) {
          record_leak("cgroup " + dir);
          remove_cgroup_tree(dir);
        }
      }
    }
  }

  // A container running `args` (busybox + probe rootfs).
  Bundle& add(const std::string& name, const std::vector<std::string>& args, Json extra = {}) {
    auto b = std::make_unique<Bundle>(rt_);
    b->config()["process"]["args"] = args;
    b->config()["linux"]["cgroupsPath"] = cgroups_path(name);
    b->save();
    Json c = {{"name", name}, {"bundle", b->dir()}};
    for (auto& [k, v] : extra.items()) c[k] = v;
    containers_.push_back(c);
    bundles_.emplace_back(name, std::move(b));
    return *bundles_.back().second;
  }

  std::string cgroups_path(const std::string& name) const { return id_ + "-" + name; }
  std::string runtime_id(const std::string& name) const { return id_ + "." + name; }
  const std::string& id() const { return id_; }
  const std::string& dir() const { return dir_.path(); }
  std::string socket() const { return dir_.path() + "/shim.sock"; }
  pid_t shim_pid() const { return shim_pid_; }
  // Another berth-shim binary (a copy to attack).
  void use_shim(const std::string& path) { shim_ = path; }

  void write_task() {
    Json t = {{"version", 1},
              {"task_id", id_},
              {"runtime_root", rt_.root()},
              {"containers", containers_}};
    std::ofstream(dir_.path() + "/task.json") << t.dump(2);
  }

  CommandResult start_raw(bool hold = false) {
    write_task();
    std::vector<std::string> argv = {shim_, "--task-dir", dir_.path()};
    if (hold) argv.push_back("--hold");
    return exec_command(argv);
  }

  void start(bool hold = false) {
    auto r = start_raw(hold);
    INFO(r);
    REQUIRE(r.exit_code == 0);
    shim_pid_ = std::stoi(r.out);
    REQUIRE(pid_alive(shim_pid_));
  }

  // Starts the shim with --hold, subscribes, then lets the task start: the
  // client sees every event from the first container_started on, however
  // slow this machine is.
  std::unique_ptr<ShimClient> start_subscribed() {
    start(/*hold=*/true);
    auto c = std::make_unique<ShimClient>(socket());
    auto hello = c->call({{"op", "hello"}, {"subscribe", true}});
    REQUIRE(hello["ok"] == true);
    CHECK(hello["result"]["state"]["status"] == "PENDING");
    auto started = c->call({{"op", "start"}});
    REQUIRE(started["ok"] == true);
    return c;
  }

  Json state_file() const { return Json::parse(read_file(dir_.path() + "/state.json")); }

  Json container_state(const Json& state, const std::string& name) const {
    for (const auto& c : state["containers"]) {
      if (c["name"] == name) return c;
    }
    FAIL("no container " << name << " in " << state.dump());
    return {};
  }

 private:
  Runtime& rt_;
  std::string id_;
  TempDir dir_;
  Json containers_ = Json::array();
  std::vector<std::pair<std::string, std::unique_ptr<Bundle>>> bundles_;
  pid_t shim_pid_ = -1;
  std::string shim_ = kShim;
};

bool task_state_is(const Task& t, const std::string& status) {
  return t.state_file()["status"] == status;
}

// sh as pid 1 ignores SIGTERM unless it traps it.
const std::vector<std::string> kTermable = {
    "/bin/sh", "-c",
    "trap 'echo bye; exit 143' TERM; echo hello; echo oops >&2; "
    "while true; do sleep 0.2; done"};

}  // namespace

TEST_CASE("shim: a two-container task runs, reports and stops cleanly", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("web", kTermable);
  task.add("sidecar", {"/bin/sleep", "1000"}, {{"essential", false}, {"stop_timeout", 2}});
  task.start();

  ShimClient c(task.socket());
  auto hello = c.call({{"op", "hello"}, {"subscribe", true}});
  REQUIRE(hello["ok"] == true);
  CHECK(hello["result"]["version"] == 1);
  auto state = hello["result"]["state"];
  CHECK(state["status"] == "RUNNING");
  for (const std::string name : {"web", "sidecar"}) {
    auto cs = task.container_state(state, name);
    CHECK(cs["status"] == "RUNNING");
    CHECK(pid_alive(cs["pid"].get<pid_t>()));
  }
  // Output reaches the log, in the CRI format.
  std::string data;
  bool logged = wait_until([&] {
    auto l = c.call({{"op", "logs"}, {"container", "web"}});
    data = l["result"]["data"];
    return data.find(" stdout F hello\n") != std::string::npos &&
           data.find(" stderr F oops\n") != std::string::npos;
  });
  INFO(data);
  REQUIRE(logged);
  auto stats = c.call({{"op", "stats"}, {"container", "web"}});
  REQUIRE(stats["ok"] == true);
  CHECK(stats["result"]["pids_current"].get<int>() >= 1);
  CHECK(stats["result"]["memory_current"].get<uint64_t>() > 0);

  pid_t web_pid = task.container_state(state, "web")["pid"];
  pid_t side_pid = task.container_state(state, "sidecar")["pid"];
  auto stop = c.call({{"op", "stop"}, {"reason", "test"}});
  CHECK(stop["ok"] == true);
  auto web = c.wait_event(exited_event("web"));
  REQUIRE(web);
  CHECK((*web)["container"]["exit_code"] == 143);  // its TERM trap
  CHECK((*web)["container"]["reason"] == "TaskStopped: test");
  auto side = c.wait_event(exited_event("sidecar"));
  REQUIRE(side);
  CHECK((*side)["container"]["exit_code"] == 137);  // sleep ignores TERM as pid 1: SIGKILL
  auto stopped = c.wait_event([](const Json& e) { return e["event"] == "task_stopped"; });
  REQUIRE(stopped);
  CHECK((*stopped)["state"]["status"] == "STOPPED");
  CHECK(c.wait_eof());
  CHECK(wait_until([&] { return !pid_alive(task.shim_pid()); }));
  CHECK_FALSE(pid_alive(web_pid));
  CHECK_FALSE(pid_alive(side_pid));

  // The final state is on disk, with timestamps in order.
  auto final_state = task.state_file();
  CHECK(final_state["status"] == "STOPPED");
  for (const std::string name : {"web", "sidecar"}) {
    auto cs = task.container_state(final_state, name);
    CHECK(cs["status"] == "STOPPED");
    CHECK(rfc3339_ns(cs["started_at"]) < rfc3339_ns(cs["finished_at"]));
    CHECK_FALSE(stdfs::exists(rt.root() + "/" + cs["runtime_id"].get<std::string>()));
    for (const auto& dir : cgroup_dirs(task.cgroups_path(name))) CHECK_FALSE(stdfs::exists(dir));
  }
  std::string log = read_file(task.dir() + "/logs/web.log");
  CHECK(log.find(" stdout F bye\n") != std::string::npos);
  CHECK_FALSE(stdfs::exists(task.socket()));
}

TEST_CASE("shim: the state survives clients that die and exits nobody saw", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("main", kTermable, {{"stop_timeout", 5}});
  task.add("job", {"/bin/sh", "-c", "read x; exit 3"}, {{"essential", false}});
  task.start();

  // A control plane that is killed -9 in the middle of a conversation.
  pid_t cp = ::fork();
  if (cp == 0) {
    ShimClient c(task.socket());
    c.send({{"id", 1}, {"op", "hello"}, {"subscribe", true}});
    ::pause();
    ::_exit(0);
  }
  ::usleep(1);
  REQUIRE(wait_until([&] { return stdfs::exists(task.socket()); }));
  ::kill(cp, SIGKILL);
  ::waitpid(cp, nullptr, 0);

  // With nobody connected, "job" exits (its stdin is /dev/null: read fails).
  REQUIRE(wait_until([&] {
    auto s = task.state_file();
    return task.container_state(s, "job")["status"] == "STOPPED";
  }));
  ShimClient c(task.socket());
  auto hello = c.call({{"op", "hello"}});
  auto job = task.container_state(hello["result"]["state"], "job");
  CHECK(job["exit_code"] == 3);
  CHECK(job["reason"] == "Exited with 3");
  CHECK(hello["result"]["state"]["status"] == "RUNNING");  // job is not essential
  CHECK(task.container_state(hello["result"]["state"], "main")["status"] == "RUNNING");
  c.call({{"op", "stop"}});
  CHECK(c.wait_eof());
  CHECK(wait_until([&] { return !pid_alive(task.shim_pid()); }));
}

TEST_CASE("shim: containers die with a killed shim", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("a", {"/bin/sleep", "1000"});
  task.add("b", {"/bin/sh", "-c", "sleep 1000 & wait"});
  task.start();
  ShimClient c(task.socket());
  auto hello = c.call({{"op", "hello"}, {"subscribe", true}});
  pid_t a = task.container_state(hello["result"]["state"], "a")["pid"];
  pid_t b = task.container_state(hello["result"]["state"], "b")["pid"];
  REQUIRE(pid_alive(a));
  REQUIRE(pid_alive(b));
  REQUIRE(::kill(task.shim_pid(), SIGKILL) == 0);
  CHECK(c.wait_eof());  // the control plane sees the shim gone
  CHECK(wait_until([&] { return !pid_alive(a) && !pid_alive(b); }));
  // The runtime state and cgroups are what a new shim or berthd cleans up;
  // this test does it as the control plane would.
  for (const std::string name : {"a", "b"}) {
    auto rid = task.container_state(hello["result"]["state"], name)["runtime_id"];
    CHECK(wait_until([&] {
      auto r = rt.exec({"delete", "--force", rid.get<std::string>()});
      return r.exit_code == 0;
    }));
  }
}

TEST_CASE("shim: an essential container's exit stops the task", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("app", {"/bin/sh", "-c", "sleep 0.5; exit 5"});
  task.add("sidecar", kTermable, {{"essential", false}});
  auto c = task.start_subscribed();
  auto app = c->wait_event(exited_event("app"));
  REQUIRE(app);
  CHECK((*app)["container"]["exit_code"] == 5);
  REQUIRE(c->wait_eof());
  auto s = task.state_file();
  CHECK(s["status"] == "STOPPED");
  CHECK(s["stopped_reason"] == "EssentialContainerExited: app");
  CHECK(task.container_state(s, "app")["exit_code"] == 5);
  CHECK(task.container_state(s, "sidecar")["exit_code"] == 143);
  CHECK(task.container_state(s, "sidecar")["reason"] ==
        "TaskStopped: EssentialContainerExited: app");
}

TEST_CASE("shim: dependsOn orders starts and settles unmet conditions", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("init", {"/bin/sh", "-c", "sleep 0.3; exit 0"}, {{"essential", false}});
  task.add("app", {"/bin/sh", "-c", "sleep 0.3; exit 0"},
           {{"depends_on", Json::array({{{"container", "init"}, {"condition", "SUCCESS"}}})}});
  task.add("watcher", {"/bin/sleep", "1000"},
           {{"essential", false},
            {"stop_timeout", 1},
            {"depends_on", Json::array({{{"container", "app"}, {"condition", "START"}}})}});
  task.add("never", {"/bin/true"},
           {{"essential", false},
            {"depends_on", Json::array({{{"container", "watcher"}, {"condition", "SUCCESS"}}})}});
  auto c = task.start_subscribed();
  REQUIRE(c->wait_eof());
  auto s = task.state_file();
  auto init = task.container_state(s, "init");
  auto app = task.container_state(s, "app");
  auto watcher = task.container_state(s, "watcher");
  CHECK(init["exit_code"] == 0);
  CHECK(rfc3339_ns(app["started_at"]) >= rfc3339_ns(init["finished_at"]));
  CHECK(rfc3339_ns(watcher["started_at"]) >= rfc3339_ns(app["started_at"]));
  CHECK(watcher["exit_code"] == 137);  // stopped with the task when app (essential) ended
  auto never = task.container_state(s, "never");
  CHECK(never["exit_code"].is_null());
  CHECK(never["started_at"] == "");
  CHECK_THAT(never["reason"].get<std::string>(),
             Catch::StartsWith("TaskStopped") || Catch::StartsWith("DependencyConditionNotMet"));

  // SUCCESS that fails: the dependent never starts.
  Task task2(rt);
  task2.add("init", {"/bin/sh", "-c", "exit 1"}, {{"essential", false}});
  task2.add("app", {"/bin/true"},
            {{"depends_on", Json::array({{{"container", "init"}, {"condition", "SUCCESS"}}})}});
  task2.start();
  REQUIRE(wait_until([&] { return !pid_alive(task2.shim_pid()); }));
  auto s2 = task2.state_file();
  CHECK(task2.container_state(s2, "app")["reason"] == "DependencyConditionNotMet: init SUCCESS");
  CHECK(s2["stopped_reason"] == "EssentialContainerExited: app");
}

TEST_CASE("shim: an OOM kill is reported as such", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  auto& b = task.add("hog", {"/bin/sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"});
  b.config()["linux"]["resources"]["memory"] = {{"limit", 32 << 20}, {"swap", 32 << 20}};
  b.save();
  task.start();
  REQUIRE(wait_until([&] { return !pid_alive(task.shim_pid()); }, 120s));
  auto hog = task.container_state(task.state_file(), "hog");
  CHECK(hog["oom_killed"] == true);
  CHECK(hog["exit_code"] == 137);
  CHECK(hog["reason"] == "OutOfMemoryError: Container killed due to memory usage");
}

TEST_CASE("shim: a bad task is refused before the shim detaches", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("a", {"/bin/true"},
           {{"depends_on", Json::array({{{"container", "b"}, {"condition", "START"}}})}});
  auto r = task.start_raw();
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("no container named \"b\""));
  CHECK_FALSE(stdfs::exists(task.socket()));
}

TEST_CASE("shim: restartPolicy restarts with backoff, gives up after the period", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  // A period of 8 s: the streak (runs + backoffs of 1 s and 2 s) reaches a
  // second restart well within it even when a start takes seconds on a
  // loaded machine; the 4 s backoff after it ends the streak at the latest.
  task.add("flaky", {"/bin/sh", "-c", "echo run; sleep 0.2; exit 1"},
           {{"restart_policy",
             {{"enabled", true}, {"ignored_exit_codes", {0}}, {"restart_attempt_period", 8}}}});
  // Subscribed before the first start: every start and exit is seen.
  auto c = task.start_subscribed();
  std::vector<int64_t> starts, exits;  // full timestamps, ns
  std::optional<Json> last_exit;
  while (auto e = c->wait_event(
             [](const Json& e) {
               return e["event"] == "container_started" || e["event"] == "container_exited" ||
                      e["event"] == "task_stopped";
             },
             120s)) {
    if ((*e)["event"] == "task_stopped") break;
    if ((*e)["event"] == "container_started") {
      starts.push_back(rfc3339_ns((*e)["container"]["started_at"]));
    } else {
      last_exit = (*e)["container"];
      exits.push_back(rfc3339_ns((*e)["container"]["finished_at"]));
      if ((*e)["container"]["status"] == "RESTARTING") {
        CHECK((*e)["container"]["exit_code"] == 1);
      }
    }
  }
  REQUIRE(last_exit);
  CHECK((*last_exit)["status"] == "STOPPED");
  CHECK_THAT((*last_exit)["reason"].get<std::string>(), Catch::Contains("not restarted"));
  int restarts = (*last_exit)["restart_count"];
  CHECK(restarts >= 2);
  // The first start and every restart; each exit but the last is followed
  // by a restart after the backoff: 1 s, then 2 s, then 4 s.
  REQUIRE(starts.size() == static_cast<size_t>(restarts) + 1);
  REQUIRE(exits.size() == starts.size());
  const int64_t kSecond = 1000000000;
  for (size_t i = 0; i + 1 < starts.size(); ++i) {
    INFO("restart " << i + 1);
    CHECK(exits[i] >= starts[i]);
    CHECK(starts[i + 1] - exits[i] >= (int64_t{1} << i) * kSecond);
  }
  CHECK(task.state_file()["stopped_reason"] == "EssentialContainerExited: flaky");
  // Every run wrote to the same log.
  std::string log = read_file(task.dir() + "/logs/flaky.log");
  size_t runs = 0;
  for (size_t p = 0; (p = log.find(" stdout F run\n", p)) != std::string::npos; ++p) runs++;
  CHECK(runs == starts.size());
}

TEST_CASE("shim: ignoredExitCodes are not restarted", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("done", {"/bin/sh", "-c", "exit 3"},
           {{"restart_policy",
             {{"enabled", true}, {"ignored_exit_codes", {0, 3}}, {"restart_attempt_period", 60}}}});
  task.start();
  REQUIRE(wait_until([&] { return !pid_alive(task.shim_pid()); }));
  auto s = task.container_state(task.state_file(), "done");
  CHECK(s["exit_code"] == 3);
  CHECK(s["restart_count"] == 0);
}

TEST_CASE("shim: initProcessEnabled reaps zombies and forwards signals", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  // An orphan that exits: reparented to pid 1, which must reap it. The
  // container waits (up to 60 s) for the orphan's pid to vanish — it stays
  // a zombie forever if pid 1 does not reap — instead of a fixed window.
  task.add("app",
           {"/bin/sh", "-c",
            "o=$(sh -c 'sleep 0.2 >/dev/null 2>&1 & echo $!'); i=0; "
            "while [ -e /proc/$o ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done; "
            "if [ -e /proc/$o ]; then echo orphan=left; else echo orphan=reaped; fi; "
            "echo zombies=$(cat /proc/[0-9]*/stat | grep -c ') Z '); "
            "echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); echo ready; "
            "while true; do sleep 0.2; done"},
           {{"init_process", true}, {"stop_timeout", 20}});
  auto cp = task.start_subscribed();
  ShimClient& c = *cp;
  std::string data;
  REQUIRE(wait_until(
      [&] {
        data = c.call({{"op", "logs"}, {"container", "app"}})["result"]["data"];
        return data.find(" F ready\n") != std::string::npos;
      },
      120s, 100ms));
  INFO(data);
  CHECK(data.find("orphan=reaped") != std::string::npos);
  CHECK(data.find("zombies=0") != std::string::npos);
  CHECK(data.find("pid1=/proc/self/exe init -- /bin/sh") != std::string::npos);
  // sh is not pid 1 under the init: the forwarded SIGTERM ends it at once.
  c.call({{"op", "stop"}});
  auto e = c.wait_event(exited_event("app"));
  REQUIRE(e);
  CHECK((*e)["container"]["exit_code"] == 143);
  CHECK(c.wait_eof());
}

TEST_CASE("shim: health checks go HEALTHY, then UNHEALTHY, HEALTHY gates dependents", "[shim]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  // Healthy while /dev/shm/ok exists (the container's own tmpfs: the check
  // must run in the container's mount namespace to see it); SIGUSR1 makes
  // the container remove it.
  task.add("app",
           {"/bin/sh", "-c",
            "trap 'rm -f /dev/shm/ok' USR1; touch /dev/shm/ok; while true; do sleep 0.2; done"},
           {{"stop_timeout", 1},
            {"health_check",
             {{"command", {"CMD-SHELL", "test -e /dev/shm/ok"}},
              {"interval", 1},
              {"timeout", 30},  // a slow exec on a loaded host is not a failed check
              {"retries", 2}}}});
  task.add("web", {"/bin/sh", "-c", "touch /dev/shm/x; while true; do sleep 0.2; done"},
           {{"stop_timeout", 1},
            {"depends_on", Json::array({{{"container", "app"}, {"condition", "HEALTHY"}}})}});
  task.start(/*hold=*/true);
  ShimClient c(task.socket());
  auto hello = c.call({{"op", "hello"}, {"subscribe", true}});
  CHECK(task.container_state(hello["result"]["state"], "app")["health_status"] == "UNKNOWN");
  CHECK(task.container_state(hello["result"]["state"], "web")["status"] == "PENDING");
  REQUIRE(c.call({{"op", "start"}})["ok"] == true);
  auto app_started = c.wait_event([](const Json& e) {
    return e["event"] == "container_started" && e["container"]["name"] == "app";
  });
  REQUIRE(app_started);
  CHECK((*app_started)["container"]["health_status"] == "UNKNOWN");

  auto healthy = c.wait_event([](const Json& e) {
    return e["event"] == "health_changed" && e["container"]["health_status"] == "HEALTHY";
  });
  REQUIRE(healthy);
  auto web = c.wait_event([](const Json& e) {
    return e["event"] == "container_started" && e["container"]["name"] == "web";
  });
  REQUIRE(web);
  CHECK(rfc3339_ns((*web)["container"]["started_at"]) >=
        rfc3339_ns((*healthy)["container"]["started_at"]));

  // Make the check fail: the container removes /dev/shm/ok.
  auto sig = c.call({{"op", "signal"}, {"container", "app"}, {"signal", SIGUSR1}});
  REQUIRE(sig["ok"] == true);
  auto unhealthy = c.wait_event([](const Json& e) {
    return e["event"] == "health_changed" && e["container"]["health_status"] == "UNHEALTHY";
  });
  REQUIRE(unhealthy);
  CHECK((*unhealthy)["container"]["health_output"] == "exit code 1");
  CHECK(task.container_state(task.state_file(), "app")["health_status"] == "UNHEALTHY");
  c.call({{"op", "stop"}});
  CHECK(c.wait_eof());
}

TEST_CASE("shim: 200 tasks at once, each shim's memory is reported", "[shim][shim-200]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  constexpr int kTasks = 200;
  Runtime rt;
  std::vector<std::unique_ptr<Task>> tasks;
  for (int i = 0; i < kTasks; ++i) {
    tasks.push_back(std::make_unique<Task>(rt));
    tasks.back()->add("c", {"/bin/sleep", "1000"}, {{"stop_timeout", 0}});
    tasks.back()->start();
  }
  auto status_kb = [](pid_t pid, const std::string& key) {
    for (const auto& line : split_lines(read_file("/proc/" + std::to_string(pid) + "/status"))) {
      if (line.starts_with(key + ":")) return std::stoul(line.substr(key.size() + 1));
    }
    return 0ul;
  };
  auto pss_kb = [](pid_t pid) {
    for (const auto& line :
         split_lines(read_file("/proc/" + std::to_string(pid) + "/smaps_rollup"))) {
      if (line.starts_with("Pss:")) return std::stoul(line.substr(4));
    }
    return 0ul;
  };
  unsigned long rss = 0, rss_max = 0, anon = 0, pss = 0, pss_max = 0;
  for (auto& t : tasks) {
    REQUIRE(t->container_state(t->state_file(), "c")["status"] == "RUNNING");
    unsigned long r = status_kb(t->shim_pid(), "VmRSS"), p = pss_kb(t->shim_pid());
    rss += r;
    rss_max = std::max(rss_max, r);
    anon += status_kb(t->shim_pid(), "RssAnon");
    pss += p;
    pss_max = std::max(pss_max, p);
  }
  WARN("berth-shim memory with " << kTasks << " tasks, KiB per shim: RSS mean " << rss / kTasks
                                 << " max " << rss_max << " (binary text shared by all), PSS mean "
                                 << pss / kTasks << " max " << pss_max << ", RssAnon mean "
                                 << anon / kTasks);
  CHECK(pss / kTasks <= 1536);
  for (auto& t : tasks) {
    ShimClient c(t->socket());
    c.call({{"op", "stop"}});
  }
  for (auto& t : tasks) {
    CHECK(wait_until([&] { return !pid_alive(t->shim_pid()); }, 120s));
    CHECK(t->state_file()["status"] == "STOPPED");
  }
}

TEST_CASE("shim: tasks whose ids and names share dashes do not touch each other's containers",
          "[shim][shim-ids]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  // Joined with "-", task "<x>-a"'s container "b" and task "<x>"'s container
  // "a-b" were one runtime id, and each shim force-deleted it before its
  // start: the second task killed the first one's container.
  const std::string base = unique_name();
  Task first(rt, base + "-a");
  first.add("b", {"/bin/sleep", "1000"}, {{"stop_timeout", 0}});
  auto c1 = first.start_subscribed();
  auto s1 = c1->wait_event([](const Json& e) { return e["event"] == "container_started"; });
  REQUIRE(s1);
  pid_t first_pid = (*s1)["container"]["pid"];
  CHECK((*s1)["container"]["runtime_id"] == base + "-a.b");

  Task second(rt, base);
  second.add("a-b", {"/bin/sleep", "1000"}, {{"stop_timeout", 0}});
  auto c2 = second.start_subscribed();
  auto s2 = c2->wait_event([](const Json& e) { return e["event"] == "container_started"; });
  REQUIRE(s2);
  CHECK((*s2)["container"]["runtime_id"] == base + ".a-b");
  pid_t second_pid = (*s2)["container"]["pid"];

  // Both run, side by side; the first task saw no exit.
  CHECK(pid_alive(first_pid));
  CHECK(pid_alive(second_pid));
  CHECK_FALSE(c1->wait_event(exited_event("b"), 1s));
  CHECK(task_state_is(first, "RUNNING"));
  for (auto* c : {c1.get(), c2.get()}) c->call({{"op", "stop"}});
  CHECK(c1->wait_eof());
  CHECK(c2->wait_eof());
  CHECK(first.container_state(first.state_file(), "b")["reason"] == "TaskStopped: StopTask");
}

TEST_CASE("shim: a container under the task's runtime id that another task owns is not deleted",
          "[shim][shim-ids]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("web", {"/bin/sleep", "1000"});
  // Somebody else's container already has the id this task's "web" gets
  // (made by hand here, annotated as another task's).
  Bundle foreign(rt);
  foreign.config()["process"]["args"] = {"/bin/sleep", "1000"};
  foreign.config()["annotations"]["berth.task"] = "somebody-else";
  foreign.config()["linux"]["cgroupsPath"] = unique_name();
  foreign.save();
  const std::string rid = task.runtime_id("web");
  auto created = rt.exec({"create", "--bundle", foreign.dir(), rid},
                         {.output_file = foreign.dir() + "/out.log"});
  INFO(created);
  REQUIRE(created.exit_code == 0);
  auto before = Json::parse(rt.exec({"state", rid}).out);
  pid_t foreign_pid = before["pid"];

  auto c = task.start_subscribed();
  auto e = c->wait_event(exited_event("web"));
  REQUIRE(e);
  CHECK_THAT((*e)["container"]["reason"].get<std::string>(),
             Catch::StartsWith("CannotStartContainerError: ") &&
                 Catch::Contains("is not this task's") && Catch::Contains("somebody-else"));
  CHECK(c->wait_eof());
  // The foreign container is still there, untouched.
  auto after = rt.exec({"state", rid});
  REQUIRE(after.exit_code == 0);
  CHECK(Json::parse(after.out)["pid"] == foreign_pid);
  CHECK(pid_alive(foreign_pid));
  CHECK(rt.exec({"delete", "--force", rid}).exit_code == 0);
  for (const auto& dir : cgroup_dirs(foreign.config()["linux"]["cgroupsPath"])) {
    CHECK(wait_until([&] { return !stdfs::exists(dir); }));
  }
}

TEST_CASE("shim: negative offsets, sizes and timeouts are refused", "[shim][shim-args]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  task.add("web", kTermable, {{"stop_timeout", 5}});
  auto c = task.start_subscribed();
  auto logs = [&](Json extra) {
    Json req = {{"op", "logs"}, {"container", "web"}};
    for (auto& [k, v] : extra.items()) req[k] = v;
    return c->call(req);
  };
  auto r = logs({{"offset", -1}});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "logs: \"offset\" must be an integer 0 or more, got -1");
  r = logs({{"max_bytes", -5}});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "logs: \"max_bytes\" must be an integer 1 or more, got -5");
  r = logs({{"offset", "0"}});
  CHECK(r["ok"] == false);
  r = c->call({{"op", "stop"}, {"timeout", -1}});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "stop: \"timeout\" must be an integer number of seconds 0-86400, got -1");
  // Nothing was stopped by the refused request.
  CHECK(task_state_is(task, "RUNNING"));
  CHECK(logs({{"offset", 0}, {"max_bytes", 10}})["ok"] == true);
  CHECK(c->call({{"op", "stop"}, {"timeout", 5}})["ok"] == true);
  CHECK(c->wait_eof());
}

// CVE-2019-5736 through the shim (see cve_2019_5736_test.cc for the attack):
// the shim runs health checks in the container and berth-init as its pid 1,
// both from the shim's own binary. The attacked shim is a copy.
namespace {

// A task run by a copy of berth-shim, with one container, the attacker,
// which writes its log to /out.
struct ShimAttack {
  Runtime rt;
  BinaryCopies bins;
  TempDir out;
  Task task{rt};

  ShimAttack() { task.use_shim(bins.path("berth-shim")); }
  Bundle& add(const std::vector<std::string>& args, Json extra) {
    Bundle& b = task.add("app", args, std::move(extra));
    add_out_mount(b.config(), out.path());
    return b;
  }
  // Starts the task, waits for the attacker's verdict, stops the task, and
  // checks that the attack failed.
  AttackLog run(const Bundle& b, const std::string& what) {
    b.save();
    task.start();
    AttackLog log;
    wait_until(
        [&] {
          log = read_attack_log(out.path() + "/attack.log");
          return log.done();
        },
        120s);
    // The task may be stopping already (its container, the attacker, exits
    // when done); SIGTERM stops it the same way as the `stop` op.
    if (pid_alive(task.shim_pid())) ::kill(task.shim_pid(), SIGTERM);
    CHECK(wait_until([&] { return !pid_alive(task.shim_pid()); }));
    check_attack_failed(log, bins, "berth-shim", what);
    return log;
  }
};

}  // namespace

TEST_CASE("CVE-2019-5736: a health check of #!/proc/self/exe cannot reach berth-shim's binary",
          "[shim][security][cve]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("attacks berth-shim's binary");
  ShimAttack a;
  // The check runs the script: the shim's binary in `init` mode execs the
  // script again, a chain of the shim's binary that lasts until the pids
  // limit stops it; the attacker gets a handle on one of them.
  Bundle& b = a.add(
      {"/bin/probe", "attack-exe", "/out/attack.log"},
      {{"stop_timeout", 1},
       {"health_check",
        {{"command", {"CMD", "/bin/evil"}}, {"interval", 1}, {"timeout", 5}, {"retries", 10}}}});
  add_evil_script(b.rootfs(), "/proc/self/exe init");
  b.config()["linux"]["resources"]["pids"] = {{"limit", 32}};
  a.run(b, "berth-shim health check");
}

TEST_CASE("CVE-2019-5736: initProcessEnabled gives a CAP_SYS_ADMIN container no writable shim",
          "[shim][security][cve]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("attacks berth-shim's binary");
  ShimAttack a;
  // pid 1 is berth-init; the attacker, its child, goes for /proc/1/exe and
  // tries to remount it (and /sbin/berth-init, where older shims bound the
  // host's binary) writable: a privileged container, no seccomp filter.
  Bundle& b = a.add({"/bin/probe", "attack-exe", "/out/attack.log", "1"},
                    {{"init_process", true}, {"stop_timeout", 1}});
  for (const char* set : {"bounding", "effective", "permitted"}) {
    b.config()["process"]["capabilities"][set].push_back("CAP_SYS_ADMIN");
  }
  b.config()["linux"].erase("seccomp");
  auto log = a.run(b, "berth-shim initProcessEnabled");
  CHECK(log.text.find("/sbin/berth-init") == std::string::npos);
}

TEST_CASE("shim: a bundle wrapped by an older shim loses its bind of the host's berth-shim",
          "[shim][security][cve]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("berth-shim drives the berth runtime library");
  Runtime rt;
  Task task(rt);
  // What an older shim left in config.json: the host's binary bound at
  // /sbin/berth-init and the args wrapped with it.
  Bundle& b = task.add("app",
                       {"/sbin/berth-init", "init", "--", "/bin/sh", "-c",
                        "echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); "
                        "echo binds=$(grep -c berth-init /proc/self/mountinfo); echo ready; "
                        "while true; do sleep 0.2; done"},
                       {{"init_process", true}, {"stop_timeout", 1}});
  b.config()["mounts"].push_back({{"destination", "/sbin/berth-init"},
                                  {"type", "bind"},
                                  {"source", kShim},
                                  {"options", {"bind", "ro", "nosuid", "nodev"}}});
  b.config()["annotations"]["berth.init-process"] = "true";
  b.save();
  task.start();
  ShimClient c(task.socket());
  std::string data;
  REQUIRE(wait_until([&] {
    data = c.call({{"op", "logs"}, {"container", "app"}})["result"]["data"];
    return data.find(" F ready\n") != std::string::npos;
  }));
  INFO(data);
  CHECK(data.find("pid1=/proc/self/exe init -- /bin/sh") != std::string::npos);
  CHECK(data.find("binds=0") != std::string::npos);
  c.call({{"op", "stop"}});
  CHECK(c.wait_eof());
}
