// The ECS service operations (controlplane/api/service_api.h) and the
// supervisor (controlplane/api/supervisor.h) over the real SQLite store, a
// TaskManager and the fake agent (cp_fakes.h). The tests drive the
// supervisor's passes themselves (reconcile()), so that the service object
// is checked the way the AWS CLI's `aws ecs wait services-stable` reads it.
#include "controlplane/api/service_api.h"
#include "controlplane/api/supervisor.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "controlplane/model/arn.h"
#include "controlplane/scheduler/service_plan.h"
#include "controlplane/store/sqlite_store.h"
#include "cp_fakes.h"
#include "temp_dir.h"

using namespace berth;
using namespace berth::cp;
using json = nlohmann::json;
namespace fake = berth::cp::test;

namespace {

constexpr const char* kA = "111111111111";
constexpr const char* kB = "222222222222";

struct World {
  berth::test::TempDir dir;
  std::unique_ptr<SqliteStore> store;
  fake::FakeAgent agent;
  std::unique_ptr<TaskManager> tasks;
  std::unique_ptr<EcsApi> ecs;
  std::unique_ptr<ServiceApi> svc;
  std::unique_ptr<Supervisor> sup;
  std::atomic<std::chrono::seconds> skew{std::chrono::seconds(0)};

  World() {
    auto s = SqliteStore::open(dir / "berthd.db");
    REQUIRE(s);
    store = std::move(*s);
    TaskManagerOptions to;
    to.region = "us-test-1";
    to.capacity = {65536, 262144};
    to.worker_threads = 2;
    // Real time plus an offset the tests move forward (backoff).
    to.clock = [this] { return std::chrono::system_clock::now() + skew.load(); };
    tasks = std::make_unique<TaskManager>(*store, agent, to);
    ecs = std::make_unique<EcsApi>(*store, *tasks);
    svc = std::make_unique<ServiceApi>(*ecs, *tasks);
    ecs->set_services(svc.get());
    sup = std::make_unique<Supervisor>(*ecs, *svc, *tasks, agent);
    ecs_call("RegisterTaskDefinition", json::parse(R"({"family": "web",
        "containerDefinitions": [{"name": "app", "image": "web:1", "memory": 64,
                                  "portMappings": [{"containerPort": 80}]}]})"));
    ecs_call("RegisterTaskDefinition", json::parse(R"({"family": "web",
        "containerDefinitions": [{"name": "app", "image": "web:2", "memory": 64,
                                  "portMappings": [{"containerPort": 80}]}]})"));
  }
  ~World() {
    tasks->drain();
    agent.flush();
    tasks->shutdown();
  }

  json ecs_call(const std::string& op, const json& body, const std::string& account = kA) {
    auto r = ecs->call(account, op, body.dump());
    INFO(op << " " << body.dump() << ": " << (r ? "" : r.error().str()));
    REQUIRE(r);
    return *r;
  }

  json call(const std::string& op, const json& body, const std::string& account = kA) {
    auto r = svc->call(account, op, body.dump());
    INFO(op << " " << body.dump() << ": " << (r ? "" : r.error().str()));
    REQUIRE(r);
    return *r;
  }

  // {exception, message} of an operation that must fail.
  std::pair<std::string, std::string> error(const std::string& op, const json& body,
                                            const std::string& account = kA) {
    auto r = svc->call(account, op, body.dump());
    REQUIRE_FALSE(r);
    return {r.error().step, r.error().message};
  }

  json describe(const std::string& name, const std::string& account = kA) {
    return call("DescribeServices", {{"services", {name}}}, account);
  }

  // botocore's services_stable waiter: failure on MISSING, DRAINING or
  // INACTIVE; success when no service has other than one deployment and
  // runningCount == desiredCount.
  std::string waiter_state(const std::string& name) {
    json d = describe(name);
    for (const auto& f : d["failures"])
      if (f["reason"] == "MISSING") return "failure";
    for (const auto& s : d["services"]) {
      if (s["status"] == "DRAINING" || s["status"] == "INACTIVE") return "failure";
    }
    for (const auto& s : d["services"]) {
      if (!(s["deployments"].size() == 1 && s["runningCount"] == s["desiredCount"])) {
        return "retry";
      }
    }
    return "success";
  }

  // One reconcile pass of service `name` by the real supervisor (not
  // started: the test drives it).
  void reconcile(const std::string& name, const std::string& cluster = "default") {
    auto r = sup->reconcile(kA, cluster, name);
    INFO("reconcile " << name << ": " << (r ? "" : r.error().str()));
    REQUIRE(r);
  }

  // Reconciles until the waiter succeeds (or the deadline passes).
  bool settle(const std::string& name) {
    return fake::eventually([&] {
      reconcile(name);
      return waiter_state(name) == "success";
    });
  }
};

json create(const std::string& name, int desired, const std::string& td = "web:1") {
  return {{"serviceName", name}, {"taskDefinition", td}, {"desiredCount", desired}};
}

}  // namespace

TEST_CASE("svc api: CreateService answers the service object and stores it", "[svc-api]") {
  World w;
  json r = w.call("CreateService", create("web", 2));
  json s = r["service"];
  CHECK(s["serviceArn"] == "arn:aws:ecs:us-test-1:111111111111:service/default/web");
  CHECK(s["clusterArn"] == "arn:aws:ecs:us-test-1:111111111111:cluster/default");
  CHECK(s["status"] == "ACTIVE");
  CHECK(s["desiredCount"] == 2);
  CHECK(s["runningCount"] == 0);
  CHECK(s["taskDefinition"] == "arn:aws:ecs:us-test-1:111111111111:task-definition/web:1");
  REQUIRE(s["deployments"].size() == 1);
  CHECK(s["deployments"][0]["status"] == "PRIMARY");
  CHECK(s["deployments"][0]["rolloutState"] == "IN_PROGRESS");
  CHECK(s["deployments"][0]["taskDefinition"] == s["taskDefinition"]);
  CHECK_FALSE(s.contains("berth"));

  json d = w.describe("web");
  REQUIRE(d["services"].size() == 1);
  CHECK(d["failures"].empty());
  CHECK(d["services"][0]["deployments"][0]["id"] == s["deployments"][0]["id"]);
  CHECK(w.waiter_state("web") == "retry");

  CHECK(w.error("CreateService", create("web", 1)) ==
        std::pair<std::string, std::string>{"InvalidParameterException",
                                            "Creation of service was not idempotent."});
  CHECK(w.error("CreateService", create("x", 1, "nope")) ==
        std::pair<std::string, std::string>{"ClientException", "TaskDefinition not found."});
  CHECK(w.error("CreateService", create("x", 1, "web:9")).second == "TaskDefinition not found.");
  json daemon = create("x", 1);
  daemon["schedulingStrategy"] = "DAEMON";
  CHECK(w.error("CreateService", daemon).second ==
        "schedulingStrategy: DAEMON is not supported: berth runs REPLICA services");
  json other_cluster = create("x", 1);
  other_cluster["cluster"] = "nope";
  CHECK(w.error("CreateService", other_cluster).first == "ClusterNotFoundException");
  json lb = create("x", 1);
  lb["loadBalancers"] = json::parse(R"([{"containerName": "db", "containerPort": 80}])");
  CHECK(w.error("CreateService", lb).second ==
        "The container db does not exist in the task definition.");
  lb["loadBalancers"] = json::parse(R"([{"containerName": "app", "containerPort": 81}])");
  CHECK(w.error("CreateService", lb).second ==
        "The container app did not have a container port 81 defined.");
  lb["loadBalancers"] =
      json::parse(R"([{"containerName": "app", "containerPort": 80, "berthListenerPort": 8080}])");
  json with_lb = w.call("CreateService", lb)["service"];
  CHECK(with_lb["loadBalancers"][0]["berthListenerPort"] == 8080);
  CHECK(w.error("CreateService", json::parse("{}")).first == "InvalidParameterException");
  // One balancer per service; a listener port is one service's (across
  // accounts, without naming the other).
  json two = create("two", 1);
  two["loadBalancers"] = {{{"containerName", "app"}, {"containerPort", 80}},
                          {{"containerName", "app"}, {"containerPort", 80}}};
  CHECK(w.error("CreateService", two).second ==
        "loadBalancers: berth balances one load balancer per service, got 2");
  w.ecs_call("RegisterTaskDefinition", json::parse(R"({"family": "web",
        "containerDefinitions": [{"name": "app", "image": "web:1", "memory": 64,
                                  "portMappings": [{"containerPort": 80}]}]})"),
             kB);
  json steal = create("steal", 1);
  steal["loadBalancers"] = {
      {{"containerName", "app"}, {"containerPort", 80}, {"berthListenerPort", 8080}}};
  CHECK(w.error("CreateService", steal, kB) ==
        std::pair<std::string, std::string>{
            "InvalidParameterException",
            "loadBalancers: listener port 8080 is in use by another service"});
  auto bad = w.svc->call(kA, "CreateService", "{not json");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().step == "InvalidParameterException");
}

TEST_CASE("svc api: the services-stable waiter succeeds once the tasks run", "[svc-api]") {
  World w;
  w.call("CreateService", create("web", 2));
  REQUIRE(w.settle("web"));
  json s = w.describe("web")["services"][0];
  CHECK(s["runningCount"] == 2);
  CHECK(s["pendingCount"] == 0);
  CHECK(s["deployments"][0]["rolloutState"] == "COMPLETED");
  CHECK(s["events"][0]["message"] == "(service web) has reached a steady state.");
  // The service's tasks: group service:web, startedBy the deployment id.
  json list = w.ecs_call("ListTasks", json::object());
  CHECK(list["taskArns"].size() == 2);
  json tasks = w.ecs_call("DescribeTasks", {{"tasks", list["taskArns"]}});
  for (const auto& t : tasks["tasks"]) {
    CHECK(t["group"] == "service:web");
    CHECK(t["startedBy"] == s["deployments"][0]["id"]);
  }
}

TEST_CASE("svc api: UpdateService scales in place and deploys a new task definition", "[svc-api]") {
  World w;
  w.call("CreateService", create("web", 1));
  REQUIRE(w.settle("web"));
  std::string first = w.describe("web")["services"][0]["deployments"][0]["id"];

  json s = w.call("UpdateService", {{"service", "web"}, {"desiredCount", 3}})["service"];
  CHECK(s["desiredCount"] == 3);
  CHECK(s["deployments"].size() == 1);
  CHECK(s["deployments"][0]["desiredCount"] == 3);
  CHECK(w.waiter_state("web") == "retry");
  REQUIRE(w.settle("web"));
  CHECK(w.describe("web")["services"][0]["runningCount"] == 3);

  s = w.call("UpdateService", {{"service", "web"}, {"taskDefinition", "web:2"}})["service"];
  REQUIRE(s["deployments"].size() == 2);
  CHECK(s["deployments"][0]["status"] == "PRIMARY");
  CHECK(s["deployments"][0]["taskDefinition"] ==
        "arn:aws:ecs:us-test-1:111111111111:task-definition/web:2");
  CHECK(s["deployments"][1]["id"] == first);
  CHECK(s["deployments"][1]["status"] == "ACTIVE");
  CHECK(s["taskDefinition"] == "arn:aws:ecs:us-test-1:111111111111:task-definition/web:2");
  REQUIRE(w.settle("web"));
  s = w.describe("web")["services"][0];
  CHECK(s["deployments"].size() == 1);
  CHECK(s["deployments"][0]["taskDefinition"] ==
        "arn:aws:ecs:us-test-1:111111111111:task-definition/web:2");
  CHECK(s["runningCount"] == 3);

  // The same definition again is no new deployment; forceNewDeployment is.
  s = w.call("UpdateService", {{"service", "web"}, {"taskDefinition", "web:2"}})["service"];
  CHECK(s["deployments"].size() == 1);
  s = w.call("UpdateService", {{"service", "web"}, {"forceNewDeployment", true}})["service"];
  CHECK(s["deployments"].size() == 2);
  REQUIRE(w.settle("web"));

  s = w.call("UpdateService",
             {{"service", "arn:aws:ecs:us-test-1:111111111111:service/default/web"},
              {"deploymentConfiguration",
               {{"maximumPercent", 100}, {"minimumHealthyPercent", 50}}}})["service"];
  CHECK(s["deploymentConfiguration"]["maximumPercent"] == 100);
  CHECK(s["deploymentConfiguration"]["minimumHealthyPercent"] == 50);

  CHECK(w.error("UpdateService", {{"service", "nope"}, {"desiredCount", 1}}) ==
        std::pair<std::string, std::string>{"ServiceNotFoundException", "Service not found."});
  CHECK(w.error("UpdateService", {{"service", "web"}, {"taskDefinition", "nope"}}).second ==
        "TaskDefinition not found.");
}

TEST_CASE("svc api: DeleteService drains to INACTIVE, which stays describable", "[svc-api]") {
  World w;
  w.call("CreateService", create("web", 2));
  REQUIRE(w.settle("web"));
  CHECK(w.error("DeleteService", {{"service", "web"}}) ==
        std::pair<std::string, std::string>{
            "InvalidParameterException",
            "The service cannot be stopped while it is scaled above 0."});
  json s = w.call("DeleteService", {{"service", "web"}, {"force", true}})["service"];
  CHECK(s["status"] == "DRAINING");
  CHECK(s["desiredCount"] == 0);
  CHECK(w.waiter_state("web") == "failure");
  CHECK(
      w.error("UpdateService", {{"service", "web"}, {"desiredCount", 1}}) ==
      std::pair<std::string, std::string>{"ServiceNotActiveException", "Service was not ACTIVE."});
  // Deleting a DRAINING service again answers it as it is.
  CHECK(w.call("DeleteService", {{"service", "web"}, {"force", true}})["service"]["status"] ==
        "DRAINING");
  REQUIRE(fake::eventually([&] {
    w.reconcile("web");
    return w.describe("web")["services"][0]["status"] == "INACTIVE";
  }));
  CHECK(w.ecs_call("ListTasks", json::object())["taskArns"].empty());
  CHECK(w.call("ListServices", json::object())["serviceArns"].empty());
  CHECK(w.error("DeleteService", {{"service", "web"}, {"force", true}}).first ==
        "ServiceNotActiveException");
  // The name is free again.
  json again = w.call("CreateService", create("web", 1))["service"];
  CHECK(again["status"] == "ACTIVE");
  CHECK(again["events"].empty());

  // Scaled to 0 first, no force is needed.
  w.call("CreateService", create("idle", 0));
  CHECK(w.call("DeleteService", {{"service", "idle"}})["service"]["status"] == "DRAINING");
}

TEST_CASE("svc api: ListServices pages by name, and another account sees nothing", "[svc-api]") {
  World w;
  for (auto n : {"c", "a", "e", "b", "d"}) w.call("CreateService", create(n, 0));
  std::vector<std::string> seen;
  json body = {{"maxResults", 2}};
  for (int page = 0; page < 5; ++page) {
    json r = w.call("ListServices", body);
    for (const auto& arn : r["serviceArns"]) seen.push_back(arn.get<std::string>());
    if (!r.contains("nextToken")) break;
    body["nextToken"] = r["nextToken"];
  }
  std::vector<std::string> want;
  for (auto n : {"a", "b", "c", "d", "e"}) {
    want.push_back(std::string("arn:aws:ecs:us-test-1:111111111111:service/default/") + n);
  }
  CHECK(seen == want);
  CHECK(w.call("ListServices", {{"schedulingStrategy", "DAEMON"}})["serviceArns"].empty());
  CHECK(w.call("ListServices", {{"launchType", "FARGATE"}})["serviceArns"].size() == 5);
  CHECK(w.error("ListServices", {{"nextToken", "%%"}}).second == "Invalid nextToken.");

  // Account B: its default cluster has no services, and A's ARN is MISSING.
  w.ecs_call("CreateCluster", {{"clusterName", "default"}}, kB);
  CHECK(w.call("ListServices", json::object(), kB)["serviceArns"].empty());
  json d = w.call("DescribeServices", {{"services", {want[0], "a"}}}, kB);
  CHECK(d["services"].empty());
  REQUIRE(d["failures"].size() == 2);
  CHECK(d["failures"][0] == json{{"arn", want[0]}, {"reason", "MISSING"}});
  CHECK(d["failures"][1] == json{{"arn", "arn:aws:ecs:us-test-1:222222222222:service/default/a"},
                                 {"reason", "MISSING"}});
  CHECK(w.error("DeleteService", {{"service", want[0]}, {"force", true}}, kB).first ==
        "ServiceNotFoundException");
}

// ---------------------------------------------------------------------------
// The supervisor (controlplane/api/supervisor.h) over the fake agent.

namespace {

// The fake agent's endpoint of service `name` (default cluster, account A).
std::optional<ServiceEndpoint> endpoint_of(World& w, const std::string& name) {
  auto got = w.svc->get(kA, "default", name);
  REQUIRE(got);
  REQUIRE(*got);
  return w.agent.endpoint(Supervisor::endpoint_id(**got, "us-test-1"));
}

// The service's tasks by lastStatus (DescribeTasks of ListTasks RUNNING and STOPPED).
std::vector<json> service_tasks(World& w, const std::string& name, const std::string& desired) {
  json list = w.ecs_call("ListTasks", {{"serviceName", name}, {"desiredStatus", desired}});
  if (list["taskArns"].empty()) return {};
  json d = w.ecs_call("DescribeTasks", {{"tasks", list["taskArns"]}});
  return d["tasks"].get<std::vector<json>>();
}

std::set<std::string> backend_ips(const ServiceEndpoint& ep) {
  std::set<std::string> out;
  for (const auto& b : ep.backends) out.insert(b.ip);
  return out;
}

}  // namespace

TEST_CASE("svc supervisor: desired count kept, its endpoint follows the healthy tasks",
          "[svc-supervisor]") {
  World w;
  json body = create("web", 3);
  body["loadBalancers"] = {
      {{"containerName", "app"}, {"containerPort", 80}, {"berthListenerPort", 18080}}};
  w.call("CreateService", body);
  REQUIRE(w.settle("web"));
  // The endpoint: the VIP stored, three distinct backends on port 80, the
  // listener, the name.
  auto ep = endpoint_of(w, "web");
  REQUIRE(ep);
  CHECK(ep->name == "web.default.berth");
  CHECK(ep->account == kA);
  CHECK(ep->container_port == 80);
  CHECK(ep->listener_port == 18080);
  CHECK(ep->vip.starts_with("10.88.255."));
  auto running = service_tasks(w, "web", "RUNNING");
  REQUIRE(running.size() == 3);
  std::set<std::string> ips;
  for (const auto& t : running) {
    ips.insert(t["attachments"][0]["details"][2]["value"].get<std::string>());
  }
  CHECK(backend_ips(*ep) == ips);
  for (const auto& b : ep->backends) CHECK(b.port == 80);
  json s = w.describe("web")["services"][0];
  CHECK(s["berthEndpoint"] == json{{"name", "web.default.berth"},
                                   {"address", ep->vip},
                                   {"containerPort", 80},
                                   {"listenerPort", 18080}});
  // Gauges.
  auto g = w.sup->gauges();
  REQUIRE(g.size() == 1);
  CHECK(g[0].name == "web");
  CHECK(g[0].desired == 3);
  CHECK(g[0].running == 3);
  CHECK(g[0].pending == 0);
  Metrics m;
  m.services = [&] { return w.sup->gauges(); };
  std::string text = m.render();
  CHECK(text.find("berth_service_desired_tasks{account=\"111111111111\",cluster=\"default\","
                  "service=\"web\"} 3\n") != std::string::npos);
  CHECK(text.find("berth_service_running_tasks{account=\"111111111111\",cluster=\"default\","
                  "service=\"web\"} 3\n") != std::string::npos);
  CHECK(text.find("# TYPE berth_service_pending_tasks gauge") != std::string::npos);

  // A task's essential container exits: it is replaced, the dead one
  // leaves the endpoint, the new one joins it, the VIP stays.
  std::string dead = running[0]["taskArn"].get<std::string>().substr(
      running[0]["taskArn"].get<std::string>().rfind('/') + 1);
  std::string dead_ip = running[0]["attachments"][0]["details"][2]["value"];
  w.agent.exit_container(dead, "app", 1, false);
  REQUIRE(fake::eventually([&] {
    auto t = w.tasks->get_task(kA, dead);
    return t && *t && (*t)->last_status == TaskStatus::stopped;
  }));
  REQUIRE(w.settle("web"));
  s = w.describe("web")["services"][0];
  CHECK(s["runningCount"] == 3);
  CHECK(s["deployments"][0]["failedTasks"] == 1);
  bool replaced = false;
  for (const auto& e : s["events"]) {
    replaced |= e["message"].get<std::string>().starts_with("(service web) has started 1 tasks");
  }
  CHECK(replaced);
  auto ep2 = endpoint_of(w, "web");
  REQUIRE(ep2);
  CHECK(ep2->vip == ep->vip);
  CHECK(ep2->backends.size() == 3);
  CHECK_FALSE(backend_ips(*ep2).contains(dead_ip));

  // Scale in to 1: the surplus is stopped by the scheduler (stopCode
  // ServiceSchedulerInitiated, SIGTERM's 143) and has left the endpoint.
  w.call("UpdateService", {{"service", "web"}, {"desiredCount", 1}});
  REQUIRE(w.settle("web"));
  auto ep3 = endpoint_of(w, "web");
  REQUIRE(ep3);
  CHECK(ep3->backends.size() == 1);
  int scheduler_stops = 0;
  REQUIRE(fake::eventually([&] {
    scheduler_stops = 0;
    for (const auto& t : service_tasks(w, "web", "STOPPED")) {
      if (t["stopCode"] == "ServiceSchedulerInitiated" && t["lastStatus"] == "STOPPED") {
        CHECK(t["containers"][0]["exitCode"] == 143);
        ++scheduler_stops;
      }
    }
    return scheduler_stops == 2;
  }));
  // Drained first: no task was stopped while still a backend.
  CHECK(w.agent.recorded(w.agent.stopped_while_backend).empty());

  // Deleted: the endpoint goes once the service is INACTIVE.
  w.call("DeleteService", {{"service", "web"}, {"force", true}});
  REQUIRE(fake::eventually([&] {
    w.reconcile("web");
    return w.describe("web")["services"][0]["status"] == "INACTIVE";
  }));
  CHECK_FALSE(w.agent.endpoint(Supervisor::endpoint_id(
      [&] {
        Service x;
        x.account = kA;
        x.cluster = "default";
        x.name = "web";
        return x;
      }(),
      "us-test-1")));
}

TEST_CASE(
    "svc supervisor: a task that keeps failing is relaunched with growing delays and the "
    "circuit breaker stops the deployment",
    "[svc-supervisor]") {
  World w;
  w.agent.scripts["bad:1"].fail_launch = "CannotPullContainerError: no such image bad:1";
  w.ecs_call("RegisterTaskDefinition", json::parse(R"({"family": "bad",
      "containerDefinitions": [{"name": "app", "image": "bad:1", "memory": 64}]})"));
  w.call("CreateService", create("bad", 1, "bad:1"));
  // Each pass launches what the backoff allows; the test moves the clock
  // to the next allowed launch and records the delays.
  auto rounds = [&](int n, std::vector<std::chrono::seconds>& delays) {
    std::string state;
    for (int round = 0; round < n; ++round) {
      w.reconcile("bad");
      w.tasks->drain();
      w.agent.flush();
      w.reconcile("bad");
      json s = w.describe("bad")["services"][0];
      state = s["deployments"][0]["rolloutState"];
      if (state == "FAILED") break;
      auto got = w.svc->get(kA, "default", "bad");
      REQUIRE(got);
      REQUIRE(*got);
      TimePoint next = (*got)->deployments.front().next_launch_at;
      auto wait = std::chrono::ceil<std::chrono::seconds>(next - w.tasks->now());
      if (wait > std::chrono::seconds(0)) {
        delays.push_back(wait);
        w.skew.store(w.skew.load() + wait + std::chrono::seconds(1));
      }
    }
    return state;
  };
  // Without the breaker: relaunched again and again, 10 s doubling.
  std::vector<std::chrono::seconds> delays;
  CHECK(rounds(6, delays) == "IN_PROGRESS");
  for (auto d : delays) UNSCOPED_INFO("delay " << d.count() << " s");
  REQUIRE(delays.size() >= 4);
  CHECK(delays[0] == std::chrono::seconds(10));
  for (size_t i = 1; i < delays.size(); ++i) CHECK(delays[i] == 2 * delays[i - 1]);
  json s = w.describe("bad")["services"][0];
  CHECK(s["deployments"][0]["failedTasks"].get<int>() >= 5);
  bool throttled = false;
  for (const auto& e : s["events"]) {
    throttled |= e["message"].get<std::string>().find("is unable to consistently start tasks") !=
                 std::string::npos;
  }
  CHECK(throttled);

  // A new deployment with the breaker: it trips after
  // max(3, ceil(desired / 2)) failed tasks, and nothing more is launched.
  json up = {{"service", "bad"},
             {"forceNewDeployment", true},
             {"deploymentConfiguration",
              {{"deploymentCircuitBreaker", {{"enable", true}, {"rollback", false}}}}}};
  w.call("UpdateService", up);
  std::vector<std::chrono::seconds> more;
  CHECK(rounds(10, more) == "FAILED");
  s = w.describe("bad")["services"][0];
  CHECK(s["deployments"][0]["failedTasks"] == 3);
  CHECK(s["deployments"][0]["rolloutStateReason"].get<std::string>().find("circuit breaker") !=
        std::string::npos);
  size_t launched = w.agent.recorded(w.agent.launches).size();
  w.skew.store(w.skew.load() + std::chrono::hours(1));
  w.reconcile("bad");
  w.tasks->drain();
  CHECK(w.agent.recorded(w.agent.launches).size() == launched);
}

TEST_CASE("svc supervisor: a new supervisor adopts the live tasks and starts none twice",
          "[svc-supervisor]") {
  World w;
  w.call("CreateService", create("web", 2));
  // A berthd that died after launching but before recording: the tasks
  // exist (startedBy the deployment), the service does not remember them.
  auto got = w.svc->get(kA, "default", "web");
  REQUIRE(got);
  REQUIRE(*got);
  std::string dep = (*got)->deployments.front().id;
  auto cl = w.ecs->cluster(kA, "default", false);
  REQUIRE(cl);
  auto def = w.ecs->definition(kA, "web:1", "missing");
  REQUIRE(def);
  RunTaskRequest req;
  req.count = 2;
  req.started_by = dep;
  req.group = "service:web";
  REQUIRE(w.tasks->run_task(kA, "default", *def, req));
  w.sup = std::make_unique<Supervisor>(*w.ecs, *w.svc, *w.tasks, w.agent);
  REQUIRE(w.settle("web"));
  CHECK(w.agent.recorded(w.agent.launches).size() == 2);
  CHECK(w.describe("web")["services"][0]["runningCount"] == 2);
}

TEST_CASE("svc supervisor: the loop reconciles on its own and service events reach the bus",
          "[svc-supervisor]") {
  World w;
  auto sub = w.tasks->events().subscribe(kA);
  w.svc->on_put = [&] { w.sup->wake(); };
  w.sup->start();
  w.call("CreateService", create("web", 2));
  REQUIRE(fake::eventually([&] { return w.waiter_state("web") == "success"; }));
  bool steady = false;
  REQUIRE(fake::eventually([&] {
    while (auto c = sub->next(std::chrono::milliseconds(10))) {
      if (c->service_event &&
          (*c->service_event)["message"] == "(service web) has reached a steady state.") {
        CHECK((*c->service_event)["serviceName"] == "web");
        steady = true;
      }
    }
    return steady;
  }));
  w.sup->shutdown();
}
