// End to end: the real berthd (tests/integration/berthd_fixture.h) with real
// tasks, driven over its unix socket and its TCP listener by raw HTTP, the
// berth CLI, curl, the AWS CLI v2 and boto3.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/integration/berthd_fixture.h"
#include "tests/integration/harness.h"
#include "tests/skip.h"

using namespace berth::test;
using json = nlohmann::json;

namespace {

std::string task_id(const std::string& arn) {
  return arn.substr(arn.rfind('/') + 1);
}

std::string run_task(Berthd& d, const json& def) {
  json reg = d.ecs_ok("RegisterTaskDefinition", def);
  std::string td = reg["taskDefinition"]["taskDefinitionArn"];
  json run = d.ecs_ok("RunTask", {{"taskDefinition", td}});
  INFO(run.dump());
  REQUIRE(run["failures"].empty());
  REQUIRE(run["tasks"].size() == 1);
  return run["tasks"][0]["taskArn"];
}

void require_privileged() {
  if (auto why = privileged_skip_reason()) BERTH_SKIP(*why);
}

std::string field(const json& j, const char* k) {
  return j.value(k, std::string{});
}

}  // namespace

TEST_CASE(
    "e2e: a task submitted over the socket runs in its own microhost and stops with its exit code",
    "[cp-e2e]") {
  require_privileged();
  Berthd d;
  std::string arn = run_task(
      d, definition("e2e-job",
                    {container("main", {"sh", "-c", "echo hello from $(hostname); exit 7"})}));
  json t = d.wait_task_status(arn, "STOPPED");
  CHECK(field(t, "stopCode") == "EssentialContainerExited");
  CHECK(field(t, "stoppedReason") == "Essential container in task exited");
  REQUIRE(t["containers"].size() == 1);
  CHECK(t["containers"][0].value("exitCode", -1) == 7);
  for (const char* ts : {"createdAt", "pullStartedAt", "pullStoppedAt", "startedAt",
                         "executionStoppedAt", "stoppedAt"}) {
    INFO(ts);
    CHECK(t.contains(ts));
  }
  HttpResult logs = d.call({.target = "/v1/tasks/" + task_id(arn) + "/logs"});
  CHECK(logs.status == 200);
  CHECK_THAT(logs.body, Catch::Contains("hello from"));
}

TEST_CASE("e2e: POST /v1/tasks with an inline definition, GET, DELETE", "[cp-e2e]") {
  require_privileged();
  Berthd d;
  json def = definition("", {container("sleeper", sleeper())});
  def.erase("family");
  HttpResult r = d.call({.method = "POST", .target = "/v1/tasks", .body = def.dump()});
  INFO(r.body);
  REQUIRE(r.status == 200);
  std::string arn = r.json()["task"]["taskArn"];
  json t = d.wait_task_status(arn, "RUNNING");
  CHECK_FALSE(t["attachments"].empty());
  CHECK_FALSE(t["containers"][0]["networkInterfaces"].empty());
  HttpResult g = d.call({.target = "/v1/tasks/" + task_id(arn)});
  CHECK(g.status == 200);
  CHECK(g.json()["task"]["taskArn"] == arn);
  HttpResult del = d.call({.method = "DELETE", .target = "/v1/tasks/" + task_id(arn)});
  CHECK(del.status == 200);
  t = d.wait_task_status(arn, "STOPPED");
  CHECK(field(t, "stopCode") == "UserInitiated");
  CHECK(t["containers"][0].value("exitCode", -1) == 143);
}

TEST_CASE(
    "e2e: a web server and a sidecar reach each other on localhost and a client reaches the web "
    "server through its host port",
    "[cp-e2e]") {
  require_privileged();
  Berthd d;
  json web = container("web", {"httpd", "-f", "-p", "8080", "-h", "/etc"},
                       {{"portMappings", {{{"containerPort", 8080}, {"hostPort", 0}}}}});
  json side = container(
      "sidecar",
      {"sh", "-c",
       "while true; do wget -q -O - http://127.0.0.1:8080/hostname && "
       "echo fetched; sleep 0.2; done"},
      {{"essential", false}, {"dependsOn", {{{"containerName", "web"}, {"condition", "START"}}}}});
  std::string arn = run_task(d, definition("e2e-web", {web, side}));
  json t = d.wait_task_status(arn, "RUNNING");
  std::string ip;
  for (const auto& a : t["attachments"]) {
    for (const auto& det : a["details"]) {
      if (det.value("name", "") == "privateIPv4Address") ip = det.value("value", "");
    }
  }
  CHECK_FALSE(ip.empty());
  int host_port = 0;
  for (const auto& c : t["containers"]) {
    for (const auto& b : c.value("networkBindings", json::array()))
      host_port = b.value("hostPort", 0);
  }
  REQUIRE(host_port > 0);
  // The sidecar fetched from the web server over the task's loopback.
  bool fetched = wait_until(
      [&] {
        HttpResult l = d.call({.target = "/v1/tasks/" + task_id(arn) + "/logs?container=sidecar"});
        return l.body.find("fetched") != std::string::npos;
      },
      std::chrono::seconds(60));
  CHECK(fetched);
  // A client in another network namespace (another task's microhost)
  // reaches the web server through the host port on the bridge's address.
  std::string gateway = d.subnet().substr(0, d.subnet().rfind('.')) + ".1";
  std::string url = "http://" + gateway + ":" + std::to_string(host_port) + "/hostname";
  std::string client =
      run_task(d, definition("e2e-client", {container("client", {"wget", "-q", "-O", "-", url})}));
  json ct = d.wait_task_status(client, "STOPPED");
  CHECK(ct["containers"][0].value("exitCode", -1) == 0);
  HttpResult got = d.call({.target = "/v1/tasks/" + task_id(client) + "/logs"});
  CHECK_THAT(got.body, Catch::Contains(task_id(arn).substr(0, 12)));
  // And from the host itself.
  auto r = exec_command({"curl", "-sf", "--max-time", "10",
                         "http://127.0.0.1:" + std::to_string(host_port) + "/hostname"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains(task_id(arn).substr(0, 12)));
  d.ecs_ok("StopTask", {{"task", arn}, {"reason", "test done"}});
  t = d.wait_task_status(arn, "STOPPED");
  CHECK(field(t, "stoppedReason") == "test done");
}

TEST_CASE("e2e: an OOM-killed task shows the OOM reason", "[cp-e2e]") {
  require_privileged();
  Berthd d;
  json hog = container("hog", {"sh", "-c", "x=a; while true; do x=$x$x; done"}, {{"memory", 64}});
  std::string arn = run_task(d, definition("e2e-oom", {hog}));
  json t = d.wait_task_status(arn, "STOPPED", std::chrono::seconds(180));
  REQUIRE(t["containers"].size() == 1);
  CHECK(t["containers"][0].value("exitCode", -1) == 137);
  CHECK(field(t["containers"][0], "reason") ==
        "OutOfMemoryError: Container killed due to memory usage");
}

TEST_CASE("e2e: bad input gets the right ECS error and berthd stays up", "[cp-e2e]") {
  require_privileged();
  Berthd d;
  auto type_of = [](const HttpResult& r) {
    json j = r.json();
    return j.is_object() ? j.value("__type", std::string{}) : std::string{};
  };
  SECTION("malformed JSON") {
    HttpResult r =
        d.call({.method = "POST",
                .target = "/",
                .body = "{\"family\": ",
                .headers = {{"X-Amz-Target",
                             "AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition"}}});
    CHECK(r.status == 400);
    CHECK_FALSE(type_of(r).empty());
  }
  SECTION("unknown operation") {
    HttpResult r = d.ecs("LaunchRockets", json::object());
    CHECK(r.status == 400);
    CHECK(type_of(r) == "UnknownOperationException");
  }
  SECTION("missing field") {
    HttpResult r = d.ecs("RegisterTaskDefinition", {{"family", "x"}});
    CHECK(r.status == 400);
    CHECK_THAT(r.body, Catch::Contains("containerDefinitions"));
  }
  SECTION("invalid task cpu") {
    json def = definition("bad-cpu", {container("c", {"true"})});
    def["cpu"] = "300";
    HttpResult r = d.ecs("RegisterTaskDefinition", def);
    CHECK(r.status == 400);
    CHECK(type_of(r) == "ClientException");
    CHECK_THAT(r.body, Catch::Contains("Invalid 'cpu' setting for task."));
  }
  SECTION("unknown container field") {
    json def = definition("bad-field", {container("c", {"true"}, {{"flux", true}})});
    HttpResult r = d.ecs("RegisterTaskDefinition", def);
    CHECK(r.status == 400);
    CHECK(type_of(r) == "InvalidParameterException");
    CHECK_THAT(r.body, Catch::Contains("flux"));
  }
  SECTION("a 100 MB body") {
    std::string big(100u << 20, 'a');
    HttpResult r = d.call({.method = "POST", .target = "/", .body = big});
    CHECK(r.status == 413);
  }
  SECTION("an unsigned request on TCP") {
    HttpResult r = http_tcp(
        d.port(),
        {.method = "POST",
         .target = "/",
         .body = "{}",
         .headers = {{"X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters"}}});
    CHECK(r.status == 403);
  }
  // Alive and answering after all of it.
  CHECK(d.running());
  CHECK(d.call({.target = "/healthz"}).status == 200);
}

TEST_CASE("e2e: the AWS CLI v2 and boto3 against berthd", "[cp-e2e]") {
  require_privileged();
  if (::access("/usr/bin/aws", X_OK) != 0)
    BERTH_SKIP("the AWS CLI (/usr/bin/aws) is not installed");
  Berthd d;
  std::string home = "/tmp/" + unique_name() + "-home";
  std::filesystem::create_directories(home);
  struct HomeGuard {
    std::string dir;
    ~HomeGuard() { std::filesystem::remove_all(dir); }
  } guard{home};
  std::string env_prefix = "HOME=" + home +
                           " AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=us-east-1"
                           " AWS_ACCESS_KEY_ID=" +
                           Berthd::kAliceKey + " AWS_SECRET_ACCESS_KEY=" + Berthd::kAliceSecret +
                           " BERTH_ENDPOINT=http://127.0.0.1:" + std::to_string(d.port()) +
                           " BERTH_SOCKET=" + d.socket() + " BERTH_SOURCE_DIR=" + BERTH_SOURCE_DIR;
  std::string clients = std::string(BERTH_SOURCE_DIR) + "/tests/clients/";
  SECTION("aws ecs (register, run, wait, stop, list, an error)") {
    auto r = exec_command({"sh", "-c", env_prefix + " bash " + clients + "aws_cli_flow.sh"},
                          {.timeout = std::chrono::seconds(600)});
    INFO(r.out << r.err << "\nberthd log:\n" << d.log());
    CHECK(r.exit_code == 0);
  }
  SECTION("boto3 (paginator, waiters, MISSING)") {
    auto r = exec_command({"sh", "-c", env_prefix + " python3 " + clients + "boto3_flow.py"},
                          {.timeout = std::chrono::seconds(600)});
    INFO(r.out << r.err << "\nberthd log:\n" << d.log());
    CHECK(r.exit_code == 0);
  }
  SECTION("the berth CLI (run --wait exit codes, logs, ps, describe, stop, errors)") {
    auto r = exec_command({"sh", "-c",
                           env_prefix + " BERTH=" + BERTH_BIN_DIR + "/berth BERTH_HOST=unix://" +
                               d.socket() + " bash " + clients + "berth_cli_flow.sh"},
                          {.timeout = std::chrono::seconds(600)});
    INFO(r.out << r.err << "\nberthd log:\n" << d.log());
    CHECK(r.exit_code == 0);
  }
  SECTION("curl --unix-socket with an inline task") {
    auto r = exec_command({"sh", "-c", env_prefix + " bash " + clients + "curl_flow.sh"},
                          {.timeout = std::chrono::seconds(600)});
    INFO(r.out << r.err << "\nberthd log:\n" << d.log());
    CHECK(r.exit_code == 0);
  }
}

TEST_CASE("e2e: an account sees only its own tasks", "[cp-e2e]") {
  require_privileged();
  Berthd d;
  std::string arn = run_task(d, definition("e2e-mine", {container("c", sleeper())}));
  // bob, over TCP with his own keys: the AWS CLI signs for him.
  std::string home = "/tmp/" + unique_name() + "-home";
  std::filesystem::create_directories(home);
  struct HomeGuard {
    std::string dir;
    ~HomeGuard() { std::filesystem::remove_all(dir); }
  } guard{home};
  auto r = exec_command(
      {"sh", "-c",
       "HOME=" + home +
           " AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=" +
           Berthd::kBobKey + " AWS_SECRET_ACCESS_KEY=" + Berthd::kBobSecret +
           " sh -c 'aws ecs create-cluster --endpoint-url http://127.0.0.1:" +
           std::to_string(d.port()) +
           " >/dev/null && aws ecs describe-tasks --output json --endpoint-url http://127.0.0.1:" +
           std::to_string(d.port()) + " --tasks " + arn + "'"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  json j = json::parse(r.out, nullptr, false);
  CHECK(j["tasks"].empty());
  REQUIRE(j["failures"].size() == 1);
  CHECK(j["failures"][0]["reason"] == "MISSING");
  d.ecs_ok("StopTask", {{"task", arn}});
}

TEST_CASE(
    "e2e: kill -9 of berthd with running tasks: all re-adopted, an exit during the outage recorded",
    "[cp-e2e]") {
  require_privileged();
  Berthd d;
  constexpr int kTasks = 20;
  json reg =
      d.ecs_ok("RegisterTaskDefinition", definition("e2e-restart", {container("c", sleeper())}));
  std::string td = reg["taskDefinition"]["taskDefinitionArn"];
  std::vector<std::string> arns;
  for (int i = 0; i < kTasks; i += 10) {
    json run = d.ecs_ok("RunTask", {{"taskDefinition", td}, {"count", 10}});
    for (const auto& t : run["tasks"]) arns.push_back(t["taskArn"]);
  }
  REQUIRE(arns.size() == kTasks);
  std::string quitter = run_task(d, definition("e2e-quitter", {container("q", sleeper())}));
  for (const auto& a : arns) d.wait_task_status(a, "RUNNING");
  d.wait_task_status(quitter, "RUNNING");

  d.kill9();
  // During the outage the quitter's process is killed; its shim records the
  // exit (state.json in the task's directory, shim/PROTOCOL.md) and exits.
  std::string state = d.dir() + "/state/tasks/" + task_id(quitter) + "/state.json";
  auto read_state = [&] {
    std::ifstream f(state);
    return json::parse(f, nullptr, false);
  };
  json s = read_state();
  INFO(state << ": " << s.dump());
  REQUIRE(s.is_object());
  int pid = s["containers"][0].value("pid", 0);
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGKILL) == 0);
  CHECK(wait_until([&] { return read_state().value("status", "") == "STOPPED"; }));
  d.start();
  for (const auto& a : arns) {
    json t = d.wait_task_status(a, "RUNNING");
    CHECK(t.value("version", 0) > 0);
  }
  json q = d.wait_task_status(quitter, "STOPPED");
  CHECK(q["containers"][0].value("exitCode", -1) == 137);
  // No duplicates: exactly the tasks started, each once.
  json list = d.ecs_ok("ListTasks", {{"family", "e2e-restart"}, {"maxResults", 100}});
  std::set<std::string> listed(list["taskArns"].begin(), list["taskArns"].end());
  CHECK(listed == std::set<std::string>(arns.begin(), arns.end()));
  // Stoppable.
  for (const auto& a : arns) d.ecs_ok("StopTask", {{"task", a}});
  for (const auto& a : arns) d.wait_task_status(a, "STOPPED");
}

TEST_CASE("e2e: two berthd instances with distinct names run side by side", "[cp-e2e]") {
  require_privileged();
  Berthd a;
  Berthd b;
  std::string ta = run_task(a, definition("side-a", {container("c", sleeper())}));
  std::string tb = run_task(b, definition("side-b", {container("c", sleeper())}));
  a.wait_task_status(ta, "RUNNING");
  b.wait_task_status(tb, "RUNNING");
  // Each sees only its own.
  json la = a.ecs_ok("ListTasks", json::object());
  json lb = b.ecs_ok("ListTasks", json::object());
  CHECK(la["taskArns"] == json::array({ta}));
  CHECK(lb["taskArns"] == json::array({tb}));
  a.terminate();
  // b is untouched by a's stop.
  CHECK(b.wait_task_status(tb, "RUNNING")["lastStatus"] == "RUNNING");
}

namespace {

// The AWS CLI as bob (TCP, SigV4 with his keys): `args` after "aws ecs".
CommandResult aws_as_bob(const Berthd& d, const std::string& home, const std::string& args) {
  return exec_command(
      {"sh", "-c",
       "HOME=" + home +
           " AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=" +
           Berthd::kBobKey + " AWS_SECRET_ACCESS_KEY=" + Berthd::kBobSecret +
           " aws ecs --output json --endpoint-url http://127.0.0.1:" + std::to_string(d.port()) +
           " " + args},
      {.timeout = std::chrono::seconds(120)});
}

std::string task_ip(const json& t) {
  for (const auto& a : t.value("attachments", json::array())) {
    for (const auto& det : a.value("details", json::array())) {
      if (det.value("name", "") == "privateIPv4Address") return det.value("value", "");
    }
  }
  return "";
}

int exit_code_of(Berthd& d, const std::string& arn) {
  json t = d.wait_task_status(arn, "STOPPED");
  return t["containers"][0].value("exitCode", -1);
}

}  // namespace

TEST_CASE(
    "e2e: tasks reach their own account's tasks, not another's, and a spoofed address reaches "
    "nobody",
    "[cp-e2e]") {
  require_privileged();
  if (::access("/usr/bin/aws", X_OK) != 0)
    BERTH_SKIP("the AWS CLI (/usr/bin/aws) is not installed");
  Berthd d;
  std::string home = "/tmp/" + unique_name() + "-home";
  std::filesystem::create_directories(home);
  struct HomeGuard {
    std::string dir;
    ~HomeGuard() { std::filesystem::remove_all(dir); }
  } guard{home};
  // alice's web server.
  std::string web = run_task(
      d, definition("tenant-web", {container("web", {"sh", "-c",
                                                     "echo alice > /tmp/index.html; exec httpd -f "
                                                     "-p 8080 -h /tmp"})}));
  std::string ip = task_ip(d.wait_task_status(web, "RUNNING"));
  REQUIRE_FALSE(ip.empty());
  std::string url = "http://" + ip + ":8080/index.html";
  auto fetch = [&](const std::string& name) {
    return container(name, {"sh", "-c", "timeout 10 wget -q -O - " + url});
  };
  // alice's client: reaches it.
  std::string a2 = run_task(d, definition("tenant-a2", {fetch("client")}));
  CHECK(exit_code_of(d, a2) == 0);
  // bob's client (the same definition, registered and run by bob): does not.
  json def = definition("tenant-b1", {fetch("client")});
  std::string def_file = home + "/b1.json";
  std::ofstream(def_file) << def.dump();
  auto r = aws_as_bob(d, home, "register-task-definition --cli-input-json file://" + def_file);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  r = aws_as_bob(d, home, "create-cluster");
  REQUIRE(r.exit_code == 0);
  r = aws_as_bob(d, home, "run-task --task-definition tenant-b1");
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  json run = json::parse(r.out, nullptr, false);
  REQUIRE(run["tasks"].size() == 1);
  std::string b1 = run["tasks"][0]["taskArn"];
  int bob_exit = -1;
  bool stopped = wait_until(
      [&] {
        auto dr = aws_as_bob(d, home, "describe-tasks --tasks " + b1);
        json j = json::parse(dr.out, nullptr, false);
        if (!j.is_object() || !j.contains("tasks") || j["tasks"].empty() ||
            j["tasks"][0].value("lastStatus", "") != "STOPPED") {
          return false;
        }
        bob_exit = j["tasks"][0]["containers"][0].value("exitCode", -1);
        return true;
      },
      std::chrono::seconds(120), std::chrono::milliseconds(500));
  CHECK(stopped);
  // wget's failure (a timeout: the frames are dropped on the bridge).
  CHECK(bob_exit != 0);
  CHECK(bob_exit != -1);
  // alice's task with NET_ADMIN takes another address and a new MAC: its
  // packets are dropped on the bridge, it reaches nobody.
  std::string gw = d.subnet().substr(0, d.subnet().rfind('.')) + ".1";
  std::string spoof_ip = d.subnet().substr(0, d.subnet().rfind('.')) + ".250";
  json spoofer = container(
      "spoofer",
      {"sh", "-c",
       "ip link set eth0 address 02:00:00:00:00:42 && ip addr flush dev eth0 && ip addr add " +
           spoof_ip + "/24 dev eth0 && ip route add default via " + gw +
           " && timeout 10 wget -q -O - " + url},
      {{"linuxParameters", {{"capabilities", {{"add", {"NET_ADMIN"}}}}}}});
  std::string a3 = run_task(d, definition("tenant-a3", {spoofer}));
  int spoofed = exit_code_of(d, a3);
  HttpResult logs = d.call({.target = "/v1/tasks/" + task_id(a3) + "/logs"});
  INFO(logs.body);
  CHECK(spoofed != 0);
  CHECK(logs.body.find("alice") == std::string::npos);
  d.ecs_ok("StopTask", {{"task", web}});
}

TEST_CASE("e2e: /v1/events streams every state change and /metrics counts tasks", "[cp-e2e]") {
  require_privileged();
  Berthd d;
  // A raw streaming read of /v1/events on its own connection.
  std::atomic<bool> done{false};
  std::string seen;
  std::mutex mu;
  std::thread reader([&] {
    try {
      http_unix(d.socket(), {.target = "/v1/events"}, std::chrono::seconds(60),
                [&](const std::string& chunk) {
                  std::lock_guard l(mu);
                  seen += chunk;
                  return !done.load();
                });
    } catch (const std::exception&) {
    }
  });
  std::string arn = run_task(d, definition("e2e-events", {container("c", {"sh", "-c", "exit 0"})}));
  d.wait_task_status(arn, "STOPPED");
  bool all = wait_until([&] {
    std::lock_guard l(mu);
    return seen.find("\"STOPPED\"") != std::string::npos;
  });
  done = true;
  d.call({.target = "/healthz"});  // the stream's next event or keepalive ends the reader
  {
    std::lock_guard l(mu);
    INFO(seen);
    CHECK(all);
    CHECK_THAT(seen, Catch::Contains("event: TaskStateChange"));
    for (const char* s : {"PROVISIONING", "RUNNING", "STOPPED"})
      CHECK_THAT(seen, Catch::Contains(s));
  }
  HttpResult m = d.call({.target = "/metrics"});
  CHECK(m.status == 200);
  CHECK_THAT(m.body, Catch::Contains("berth_tasks{state=\"STOPPED\"} 1"));
  CHECK_THAT(m.body, Catch::Contains("berth_run_task_to_running_seconds_count 1"));
  CHECK_THAT(m.body, Catch::Contains("berth_microhost_pool_size"));
  // The reader ends at the latest when berthd stops (the fixture's
  // destructor): detach-free, join after stopping.
  d.terminate();
  reader.join();
}

TEST_CASE(
    "e2e: 20 concurrent clients running and stopping tasks: no 5xx, no stuck task, no leaked "
    "microhost",
    "[cp-e2e]") {
  require_privileged();
  Berthd d({.warm_pool = 4});
  constexpr int kClients = 20;
  const auto duration = std::chrono::seconds(60);
  json reg =
      d.ecs_ok("RegisterTaskDefinition", definition("e2e-load", {container("c", sleeper())}));
  std::string td = reg["taskDefinition"]["taskDefinitionArn"];
  std::atomic<int> requests{0}, server_errors{0}, cycles{0};
  std::mutex mu;
  std::vector<std::string> failures;
  auto until = std::chrono::steady_clock::now() + duration;
  auto ecs = [&](const std::string& op, const json& body) {
    HttpResult r = d.ecs(op, body);
    ++requests;
    if (r.status >= 500) {
      ++server_errors;
      std::lock_guard l(mu);
      failures.push_back(op + ": " + std::to_string(r.status) + " " + r.body);
    }
    return r;
  };
  auto status_of = [&](const std::string& arn) {
    json j = ecs("DescribeTasks", {{"tasks", {arn}}}).json();
    return j.contains("tasks") && !j["tasks"].empty() ? j["tasks"][0].value("lastStatus", "")
                                                      : std::string();
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      while (std::chrono::steady_clock::now() < until) {
        json run = ecs("RunTask", {{"taskDefinition", td}}).json();
        if (!run.contains("tasks") || run["tasks"].empty()) continue;
        std::string arn = run["tasks"][0]["taskArn"];
        wait_until(
            [&] {
              std::string s = status_of(arn);
              return s == "RUNNING" || s == "STOPPED";
            },
            std::chrono::seconds(120), std::chrono::milliseconds(20));
        ecs("StopTask", {{"task", arn}});
        bool stopped = wait_until([&] { return status_of(arn) == "STOPPED"; },
                                  std::chrono::seconds(120), std::chrono::milliseconds(20));
        if (!stopped) {
          std::lock_guard l(mu);
          failures.push_back("stuck: " + arn + " " + status_of(arn));
        }
        ++cycles;
      }
    });
  }
  for (auto& c : clients) c.join();
  double rate = requests.load() / static_cast<double>(duration.count());
  std::cout << "e2e load: " << kClients << " clients, " << duration.count()
            << " s: " << requests.load() << " requests (" << rate << "/s), " << cycles.load()
            << " tasks run and stopped, " << server_errors.load() << " 5xx" << std::endl;
  INFO([&] {
    std::string all;
    for (const auto& f : failures) all += f + "\n";
    return all;
  }());
  CHECK(server_errors.load() == 0);
  CHECK(failures.empty());
  CHECK(cycles.load() > 0);
  // Nothing live is left but the warm pool: no task netns, veth or overlay.
  json list = d.ecs_ok("ListTasks", {{"desiredStatus", "RUNNING"}});
  CHECK(list["taskArns"].empty());
  bool settled = wait_until([&] {
    size_t netns = 0;
    for (const auto& e : std::filesystem::directory_iterator(d.dir() + "/run/netns")) {
      (void)e;
      ++netns;
    }
    return netns <= 4;
  });
  CHECK(settled);
  size_t overlays = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(d.dir() + "/images/containers", ec)) {
    (void)e;
    ++overlays;
  }
  CHECK(overlays == 0);
}
