// The ECS service operations (controlplane/api/service_api.h) over the real
// SQLite store, a TaskManager and the fake agent (cp_fakes.h), called
// directly (they are not routed yet). A minimal reconcile step here (read,
// plan, write, launch, stop: what the supervisor slice will run in a loop)
// moves the tasks, so that the service object is checked the way the AWS
// CLI's `aws ecs wait services-stable` reads it.
#include "controlplane/api/service_api.h"

#include <chrono>
#include <memory>
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

  World() {
    auto s = SqliteStore::open(dir / "berthd.db");
    REQUIRE(s);
    store = std::move(*s);
    TaskManagerOptions to;
    to.region = "us-test-1";
    to.capacity = {65536, 262144};
    to.worker_threads = 2;
    tasks = std::make_unique<TaskManager>(*store, agent, to);
    ecs = std::make_unique<EcsApi>(*store, *tasks);
    svc = std::make_unique<ServiceApi>(*ecs, *tasks);
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

  // One reconcile step of service `name`, as the supervisor will run it.
  ServicePlan reconcile(const std::string& name, const std::string& cluster = "default") {
    auto got = svc->get(kA, cluster, name);
    REQUIRE(got);
    REQUIRE(*got);
    Service s = **got;
    TaskQuery q;
    q.account = kA;
    q.cluster = cluster;
    q.group = "service:" + name;
    auto recs = store->list_tasks(q, nullptr);
    REQUIRE(recs);
    std::vector<PlanTask> in;
    for (const auto& rec : *recs) {
      auto t = tasks->from_record(rec);
      REQUIRE(t);
      PlanTask pt;
      pt.id = t->id;
      pt.deployment_id = t->started_by;
      pt.last_status = t->last_status;
      pt.desired_status = t->desired_status;
      pt.health_status = t->health_status;
      pt.started_at = t->started_at;
      pt.stopped_at = t->stopped_at;
      pt.stop_code = t->stop_code;
      in.push_back(pt);
    }
    ServicePlan plan = plan_service(s, in, tasks->now());
    Service next = plan.service;
    auto cl = ecs->cluster(kA, cluster, false);
    REQUIRE(cl);
    for (const auto& l : plan.launch) {
      auto def = ecs->definition(kA, l.task_definition, "missing");
      REQUIRE(def);
      RunTaskRequest req;
      req.count = l.count;
      req.started_by = l.deployment_id;
      req.group = "service:" + name;
      auto r = ecs->run(kA, *cl, *def, req, false);
      REQUIRE(r);
      REQUIRE(r->failures.empty());
      std::vector<std::string> ids;
      for (const auto& t : r->tasks) ids.push_back(t.id);
      record_started(next, l.deployment_id, ids, tasks->now());
    }
    for (const auto& st : plan.stop) {
      REQUIRE(tasks->stop_task(kA, cluster, st.task_id, st.reason));
    }
    if (plan.changed || !plan.launch.empty()) REQUIRE(svc->put(next));
    return plan;
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
