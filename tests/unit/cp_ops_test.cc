// The control plane's operations: the scheduler's task lifecycle and the
// ECS / native API through the router, with a fake agent (cp_fakes.h) and
// the real SQLite store on a temporary file. No network: HttpRequest
// objects go straight to the Handler.
#include <chrono>
#include <future>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "controlplane/api/router.h"
#include "controlplane/model/arn.h"
#include "controlplane/store/sqlite_store.h"
#include "cp_fakes.h"
#include "temp_dir.h"

using namespace berth;
using namespace berth::cp;
using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fake = berth::cp::test;
namespace bt = berth::test;

namespace {

constexpr const char* kAccountA = "111111111111";
constexpr const char* kAccountB = "222222222222";

// A BodyWriter that collects what a stream writes.
class CollectWriter : public BodyWriter {
 public:
  bool write(std::string chunk) override {
    std::lock_guard lock(mu);
    data += chunk;
    return !gone;
  }
  void close() override {
    std::lock_guard lock(mu);
    closed = true;
  }
  void on_close(std::function<void()> f) override {
    std::lock_guard lock(mu);
    on_close_ = std::move(f);
  }
  void client_leaves() {
    std::function<void()> f;
    {
      std::lock_guard lock(mu);
      gone = true;
      f = on_close_;
    }
    if (f) f();
  }
  std::string text() {
    std::lock_guard lock(mu);
    return data;
  }
  bool is_closed() {
    std::lock_guard lock(mu);
    return closed;
  }

 private:
  std::mutex mu;
  std::string data;
  bool closed = false;
  bool gone = false;
  std::function<void()> on_close_;
};

struct Env {
  explicit Env(NodeCapacity capacity = {8192, 16384}, fake::FakeAgent* shared_agent = nullptr,
               const std::string& db = "")
      : agent_ptr(shared_agent ? shared_agent : &own_agent) {
    db_path = db.empty() ? dir / "berthd.db" : db;
    auto s = SqliteStore::open(db_path);
    REQUIRE(s);
    store = std::move(*s);
    ControlPlaneOptions o;
    o.tasks.region = "us-test-1";
    o.tasks.capacity = capacity;
    o.tasks.worker_threads = 2;
    o.tasks.clock = [this] {
      std::lock_guard lock(clock_mu);
      return Clock::now() + skew;
    };
    o.api_threads = 2;
    o.native.log_poll = 10ms;
    cp = std::make_unique<ControlPlane>(*store, *agent_ptr, o);
    handler = cp->handler();
  }
  ~Env() {
    cp->tasks().drain();
    agent_ptr->flush();
    cp->shutdown();
  }

  fake::FakeAgent& agent() { return *agent_ptr; }

  HttpResponse send(HttpRequest req) {
    std::promise<HttpResponse> p;
    auto f = p.get_future();
    handler(std::move(req), [&p](HttpResponse r) { p.set_value(std::move(r)); });
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    return f.get();
  }

  HttpResponse ecs_raw(const std::string& op, const std::string& body,
                       const std::string& account = kAccountA) {
    HttpRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers["x-amz-target"] = "AmazonEC2ContainerServiceV20141113." + op;
    r.headers["content-type"] = "application/x-amz-json-1.1";
    r.body = body;
    r.account = account;
    r.request_id = "req-1";
    return send(std::move(r));
  }

  // The JSON answer of an ECS operation that must succeed.
  json ecs(const std::string& op, const json& body, const std::string& account = kAccountA) {
    auto r = ecs_raw(op, body.dump(), account);
    INFO(op << " " << body.dump() << " -> " << r.status << " " << r.body);
    REQUIRE(r.status == 200);
    REQUIRE(r.headers["content-type"] == "application/x-amz-json-1.1");
    REQUIRE(r.headers["x-amzn-RequestId"] == "req-1");
    auto j = json::parse(r.body, nullptr, false);
    REQUIRE(!j.is_discarded());
    return j;
  }

  // {status, __type} of an ECS operation that must fail.
  std::pair<int, std::string> ecs_error(const std::string& op, const std::string& body,
                                        const std::string& account = kAccountA) {
    auto r = ecs_raw(op, body, account);
    INFO(op << " " << body << " -> " << r.status << " " << r.body);
    auto j = json::parse(r.body, nullptr, false);
    REQUIRE(j.is_object());
    REQUIRE(j.contains("message"));
    return {r.status, j.value("__type", "")};
  }

  HttpResponse native(const std::string& method, const std::string& path,
                      std::map<std::string, std::string> query = {}, const std::string& body = "",
                      const std::string& account = kAccountA) {
    HttpRequest r;
    r.method = method;
    r.path = path;
    r.query = std::move(query);
    r.body = body;
    r.account = account;
    return send(std::move(r));
  }

  // DescribeTasks in the task's cluster (named by its ARN).
  json describe(const std::string& task_arn, const std::string& account = kAccountA) {
    auto rest = task_arn.substr(task_arn.find(":task/") + 6);
    std::string cluster = rest.substr(0, rest.find('/'));
    auto j = ecs("DescribeTasks", {{"cluster", cluster}, {"tasks", {task_arn}}}, account);
    REQUIRE(j["tasks"].size() == 1);
    return j["tasks"][0];
  }

  bool wait_status(const std::string& arn, const std::string& status) {
    return fake::eventually([&] { return describe(arn)["lastStatus"] == status; });
  }

  void advance(std::chrono::seconds d) {
    std::lock_guard lock(clock_mu);
    skew += d;
  }

  bt::TempDir dir;
  std::string db_path;
  std::unique_ptr<SqliteStore> store;
  fake::FakeAgent own_agent;
  fake::FakeAgent* agent_ptr;
  std::mutex clock_mu;
  Clock::duration skew{};
  std::unique_ptr<ControlPlane> cp;
  Handler handler;
};

json web_definition(const std::string& family = "web", const std::string& image = "busybox") {
  return {
      {"family", family},
      {"requiresCompatibilities", {"FARGATE"}},
      {"networkMode", "awsvpc"},
      {"cpu", "256"},
      {"memory", "512"},
      {"containerDefinitions",
       {{{"name", "app"}, {"image", image}, {"essential", true}, {"command", {"sleep", "1000"}}}}}};
}

std::string run_one(Env& env, const json& extra = json::object()) {
  json body = {{"taskDefinition", "web"}};
  body.update(extra);
  auto r = env.ecs("RunTask", body);
  REQUIRE(r["failures"].empty());
  REQUIRE(r["tasks"].size() == 1);
  return r["tasks"][0]["taskArn"];
}

}  // namespace

TEST_CASE("RunTask answers PROVISIONING and the task reaches RUNNING with its timestamps",
          "[cp-ops]") {
  Env env;
  auto reg = env.ecs("RegisterTaskDefinition", web_definition());
  CHECK(reg["taskDefinition"]["revision"] == 1);
  auto run = env.ecs("RunTask", {{"taskDefinition", "web"}, {"startedBy", "ci"}});
  REQUIRE(run["tasks"].size() == 1);
  CHECK(run["failures"].empty());
  json t = run["tasks"][0];
  CHECK(t["lastStatus"] == "PROVISIONING");
  CHECK(t["desiredStatus"] == "RUNNING");
  CHECK(t["launchType"] == "FARGATE");
  CHECK(t["startedBy"] == "ci");
  CHECK(t["group"] == "family:web");
  std::string arn = t["taskArn"];
  CHECK(arn.starts_with("arn:aws:ecs:us-test-1:111111111111:task/default/"));

  REQUIRE(env.wait_status(arn, "RUNNING"));
  json d = env.describe(arn);
  CHECK(d.contains("createdAt"));
  CHECK(d.contains("pullStartedAt"));
  CHECK(d.contains("pullStoppedAt"));
  CHECK(d.contains("startedAt"));
  CHECK(d["startedAt"].get<double>() >= d["createdAt"].get<double>());
  CHECK(d["containers"][0]["lastStatus"] == "RUNNING");
  CHECK(d["containers"][0]["imageDigest"].get<std::string>().starts_with("sha256:"));
  CHECK(d.dump().find("10.77.0.") != std::string::npos);

  // The default cluster was created by the first RunTask, with counts.
  auto clusters = env.ecs("DescribeClusters", json::object());
  REQUIRE(clusters["clusters"].size() == 1);
  CHECK(clusters["clusters"][0]["clusterName"] == "default");
  CHECK(clusters["clusters"][0]["runningTasksCount"] == 1);

  auto stop = env.ecs("StopTask", {{"task", arn}});
  CHECK(stop["task"]["desiredStatus"] == "STOPPED");
  REQUIRE(env.wait_status(arn, "STOPPED"));
  d = env.describe(arn);
  CHECK(d["stopCode"] == "UserInitiated");
  CHECK(d["stoppedReason"] == "Task stopped by user");
  CHECK(d["containers"][0]["lastStatus"] == "STOPPED");
  CHECK(d["containers"][0]["exitCode"] == 143);
  for (const char* k : {"stoppingAt", "executionStoppedAt", "stoppedAt"}) CHECK(d.contains(k));
  std::string id = arn.substr(arn.rfind('/') + 1);
  env.cp->tasks().drain();
  auto releases = env.agent().recorded(env.agent().releases);
  CHECK(std::find(releases.begin(), releases.end(), id) != releases.end());
  CHECK(env.cp->tasks().reserved().cpu_units == 0);
  CHECK(env.cp->tasks().reserved().memory_mib == 0);
}

TEST_CASE("A stop reason given to StopTask is the task's stoppedReason", "[cp-ops]") {
  Env env;
  env.ecs("RegisterTaskDefinition", web_definition());
  std::string arn = run_one(env);
  REQUIRE(env.wait_status(arn, "RUNNING"));
  env.ecs("StopTask", {{"task", arn}, {"reason", "deploy 42"}});
  REQUIRE(env.wait_status(arn, "STOPPED"));
  CHECK(env.describe(arn)["stoppedReason"] == "deploy 42");
}

TEST_CASE("Tasks that do not fit the node fail with RESOURCE:CPU or RESOURCE:MEMORY", "[cp-ops]") {
  SECTION("cpu") {
    Env env({512, 65536});
    env.ecs("RegisterTaskDefinition", web_definition());
    auto r = env.ecs("RunTask", {{"taskDefinition", "web"}, {"count", 3}});
    CHECK(r["tasks"].size() == 2);
    REQUIRE(r["failures"].size() == 1);
    CHECK(r["failures"][0]["reason"] == "RESOURCE:CPU");
  }
  SECTION("memory") {
    Env env({65536, 1024});
    env.ecs("RegisterTaskDefinition", web_definition());
    auto r = env.ecs("RunTask", {{"taskDefinition", "web"}, {"count", 3}});
    CHECK(r["tasks"].size() == 2);
    REQUIRE(r["failures"].size() == 1);
    CHECK(r["failures"][0]["reason"] == "RESOURCE:MEMORY");
  }
}

TEST_CASE("Capacity is returned when a task stops", "[cp-ops]") {
  Env env({256, 512});
  env.ecs("RegisterTaskDefinition", web_definition());
  std::string arn = run_one(env);
  auto full = env.ecs("RunTask", {{"taskDefinition", "web"}});
  REQUIRE(full["failures"].size() == 1);
  REQUIRE(env.wait_status(arn, "RUNNING"));
  env.ecs("StopTask", {{"task", arn}});
  REQUIRE(env.wait_status(arn, "STOPPED"));
  env.cp->tasks().drain();
  auto again = env.ecs("RunTask", {{"taskDefinition", "web"}});
  CHECK(again["tasks"].size() == 1);
}

TEST_CASE("A launch that fails stops the task with TaskFailedToStart and the reason", "[cp-ops]") {
  Env env;
  env.agent().scripts["no/such:image"] = {
      std::string("CannotPullContainerError: pull access denied"), true};
  env.ecs("RegisterTaskDefinition", web_definition("bad", "no/such:image"));
  auto r = env.ecs("RunTask", {{"taskDefinition", "bad"}});
  std::string arn = r["tasks"][0]["taskArn"];
  REQUIRE(env.wait_status(arn, "STOPPED"));
  json d = env.describe(arn);
  CHECK(d["stopCode"] == "TaskFailedToStart");
  CHECK(d["stoppedReason"].get<std::string>().find(
            "CannotPullContainerError: pull access denied") != std::string::npos);
  CHECK(d["desiredStatus"] == "STOPPED");
  CHECK(fake::eventually([&] { return env.cp->tasks().reserved().cpu_units == 0; }));
}

TEST_CASE("An OOM-killed essential container stops the task with ECS's reasons", "[cp-ops]") {
  Env env;
  env.ecs("RegisterTaskDefinition", web_definition());
  std::string arn = run_one(env);
  REQUIRE(env.wait_status(arn, "RUNNING"));
  env.agent().exit_container(arn.substr(arn.rfind('/') + 1), "app", 137, true);
  REQUIRE(env.wait_status(arn, "STOPPED"));
  json d = env.describe(arn);
  CHECK(d["stopCode"] == "EssentialContainerExited");
  CHECK(d["stoppedReason"] == "Essential container in task exited");
  CHECK(d["containers"][0]["exitCode"] == 137);
  CHECK(d["containers"][0]["reason"] == "OutOfMemoryError: Container killed due to memory usage");
}

TEST_CASE("A StopTask before the launch ends the task without launching it", "[cp-ops]") {
  Env env;
  env.ecs("RegisterTaskDefinition", web_definition());
  // Whether the stop comes before the launch or during it, the task ends
  // STOPPED as the user asked.
  auto r = env.ecs("RunTask", {{"taskDefinition", "web"}, {"count", 1}});
  std::string arn = r["tasks"][0]["taskArn"];
  env.ecs("StopTask", {{"task", arn}});
  REQUIRE(env.wait_status(arn, "STOPPED"));
  CHECK(env.describe(arn)["stopCode"] == "UserInitiated");
}

TEST_CASE("Recovery keeps tasks whose shim lives and stops those whose shim died", "[cp-ops]") {
  bt::TempDir keep;
  std::string db = keep / "berthd.db";
  std::string alive_arn, dead_arn;
  {
    Env env({8192, 16384}, nullptr, db);
    env.ecs("RegisterTaskDefinition", web_definition());
    alive_arn = run_one(env);
    dead_arn = run_one(env);
    REQUIRE(env.wait_status(alive_arn, "RUNNING"));
    REQUIRE(env.wait_status(dead_arn, "RUNNING"));
  }
  std::string alive = alive_arn.substr(alive_arn.rfind('/') + 1);
  std::string dead = dead_arn.substr(dead_arn.rfind('/') + 1);
  fake::FakeAgent agent;
  agent.adopt_results[alive] = {
      alive,
      true,
      {{"status", "RUNNING"},
       {"containers", {{{"name", "app"}, {"status", "RUNNING"}, {"essential", true}}}}}};
  agent.adopt_results[dead] = {
      dead,
      false,
      {{"status", "STOPPED"},
       {"containers",
        {{{"name", "app"}, {"status", "STOPPED"}, {"exit_code", 3}, {"oom_killed", false}}}}}};
  Env env({8192, 16384}, &agent, db);
  REQUIRE(env.cp->recover());
  REQUIRE(agent.adopt_calls.size() == 1);
  CHECK(agent.adopt_calls[0].size() == 2);
  CHECK(env.describe(alive_arn)["lastStatus"] == "RUNNING");
  REQUIRE(env.wait_status(dead_arn, "STOPPED"));
  json d = env.describe(dead_arn);
  CHECK(d["containers"][0]["exitCode"] == 3);
  CHECK(d["stopCode"] == "EssentialContainerExited");
  CHECK(fake::eventually([&] { return env.cp->tasks().reserved().cpu_units == 256; }));
  // The adopted task is stoppable.
  env.ecs("StopTask", {{"task", alive_arn}});
  REQUIRE(env.wait_status(alive_arn, "STOPPED"));
  CHECK(fake::eventually([&] { return env.cp->tasks().reserved().cpu_units == 0; }));
}

TEST_CASE("Stopped tasks expire after the retention and are purged", "[cp-ops]") {
  Env env;
  env.ecs("RegisterTaskDefinition", web_definition());
  std::string arn = run_one(env);
  std::string live = run_one(env);
  REQUIRE(env.wait_status(arn, "RUNNING"));
  env.ecs("StopTask", {{"task", arn}});
  REQUIRE(env.wait_status(arn, "STOPPED"));
  CHECK(env.cp->tasks().sweep_expired() == 0);
  CHECK(env.describe(arn)["lastStatus"] == "STOPPED");  // still describable
  env.advance(std::chrono::hours(2));
  CHECK(env.cp->tasks().sweep_expired() == 1);
  auto r = env.ecs("DescribeTasks", {{"tasks", {arn, live}}});
  CHECK(r["tasks"].size() == 1);
  REQUIRE(r["failures"].size() == 1);
  CHECK(r["failures"][0]["reason"] == "MISSING");
  CHECK(r["failures"][0]["arn"] == arn);
  auto purges = env.agent().recorded(env.agent().purges);
  CHECK(purges == std::vector<std::string>{arn.substr(arn.rfind('/') + 1)});
}

TEST_CASE("Cluster operations: create, describe with MISSING, list with pages, delete",
          "[cp-ops]") {
  Env env;
  for (const char* n : {"a", "b", "c"}) {
    auto c = env.ecs("CreateCluster", {{"clusterName", n}});
    CHECK(c["cluster"]["clusterName"] == n);
    CHECK(c["cluster"]["status"] == "ACTIVE");
    CHECK(c["cluster"]["clusterArn"] ==
          std::string("arn:aws:ecs:us-test-1:111111111111:cluster/") + n);
  }
  auto d = env.ecs("DescribeClusters", {{"clusters", {"a", "nope"}}});
  CHECK(d["clusters"].size() == 1);
  REQUIRE(d["failures"].size() == 1);
  CHECK(d["failures"][0]["reason"] == "MISSING");

  auto p1 = env.ecs("ListClusters", {{"maxResults", 2}});
  CHECK(p1["clusterArns"].size() == 2);
  REQUIRE(p1.contains("nextToken"));
  auto p2 = env.ecs("ListClusters", {{"maxResults", 2}, {"nextToken", p1["nextToken"]}});
  CHECK(p2["clusterArns"].size() == 1);
  CHECK(!p2.contains("nextToken"));

  env.ecs("RegisterTaskDefinition", web_definition());
  std::string arn = run_one(env, {{"cluster", "a"}});
  CHECK(env.ecs_error("DeleteCluster", R"({"cluster":"a"})") ==
        std::pair<int, std::string>{400, "ClusterContainsTasksException"});
  auto del = env.ecs("DeleteCluster", {{"cluster", "b"}});
  CHECK(del["cluster"]["status"] == "INACTIVE");
  CHECK(env.ecs_error("DeleteCluster", R"({"cluster":"zz"})").second == "ClusterNotFoundException");
  CHECK(env.ecs_error("RunTask", R"({"cluster":"b","taskDefinition":"web"})").second ==
        "ClusterNotFoundException");
  auto list = env.ecs("ListClusters", json::object());
  CHECK(list["clusterArns"].size() == 2);
  REQUIRE(env.wait_status(arn, "RUNNING"));
}

TEST_CASE("Task definition operations: revisions, describe forms, tags, lists with pages",
          "[cp-ops]") {
  Env env;
  json def = web_definition();
  def["tags"] = {{{"key", "team"}, {"value", "blue"}}};
  auto r1 = env.ecs("RegisterTaskDefinition", def);
  CHECK(r1["taskDefinition"]["taskDefinitionArn"] ==
        "arn:aws:ecs:us-test-1:111111111111:task-definition/web:1");
  CHECK(r1["taskDefinition"]["status"] == "ACTIVE");
  CHECK(r1["tags"][0]["key"] == "team");
  env.ecs("RegisterTaskDefinition", web_definition());
  env.ecs("RegisterTaskDefinition", web_definition("worker"));
  env.ecs("RegisterTaskDefinition", web_definition("webapp"));

  CHECK(env.ecs("DescribeTaskDefinition",
                {{"taskDefinition", "web"}})["taskDefinition"]["revision"] == 2);
  CHECK(env.ecs("DescribeTaskDefinition",
                {{"taskDefinition", "web:1"}})["taskDefinition"]["revision"] == 1);
  auto by_arn =
      env.ecs("DescribeTaskDefinition",
              {{"taskDefinition", "arn:aws:ecs:us-test-1:111111111111:task-definition/web:1"},
               {"include", {"TAGS"}}});
  CHECK(by_arn["taskDefinition"]["revision"] == 1);
  REQUIRE(by_arn["tags"].size() == 1);
  CHECK(by_arn["tags"][0]["value"] == "blue");
  CHECK(env.ecs_error("DescribeTaskDefinition", R"({"taskDefinition":"nope"})") ==
        std::pair<int, std::string>{400, "ClientException"});

  // familyPrefix is the whole family: web, not webapp.
  auto l1 = env.ecs("ListTaskDefinitions", {{"familyPrefix", "web"}, {"maxResults", 1}});
  REQUIRE(l1["taskDefinitionArns"].size() == 1);
  CHECK(l1["taskDefinitionArns"][0] == "arn:aws:ecs:us-test-1:111111111111:task-definition/web:1");
  REQUIRE(l1.contains("nextToken"));
  auto l2 = env.ecs("ListTaskDefinitions",
                    {{"familyPrefix", "web"}, {"maxResults", 1}, {"nextToken", l1["nextToken"]}});
  REQUIRE(l2["taskDefinitionArns"].size() == 1);
  CHECK(l2["taskDefinitionArns"][0] == "arn:aws:ecs:us-test-1:111111111111:task-definition/web:2");
  auto all = env.ecs("ListTaskDefinitions", {{"sort", "DESC"}});
  CHECK(all["taskDefinitionArns"].size() == 4);
  CHECK(all["taskDefinitionArns"][0] ==
        "arn:aws:ecs:us-test-1:111111111111:task-definition/worker:1");

  auto fam = env.ecs("ListTaskDefinitionFamilies", {{"familyPrefix", "web"}});
  CHECK(fam["families"] == json({"web", "webapp"}));

  auto dereg = env.ecs("DeregisterTaskDefinition", {{"taskDefinition", "web:2"}});
  CHECK(dereg["taskDefinition"]["status"] == "INACTIVE");
  CHECK(env.ecs("DescribeTaskDefinition",
                {{"taskDefinition", "web"}})["taskDefinition"]["revision"] == 1);
  auto inactive = env.ecs("ListTaskDefinitions", {{"status", "INACTIVE"}});
  CHECK(inactive["taskDefinitionArns"] ==
        json({"arn:aws:ecs:us-test-1:111111111111:task-definition/web:2"}));
  CHECK(env.ecs_error("DeregisterTaskDefinition", R"({"taskDefinition":"web"})").second ==
        "InvalidParameterException");
  CHECK(env.ecs_error("RunTask", R"({"taskDefinition":"web:2"})").second == "ClientException");
}

TEST_CASE("ListTasks filters by desiredStatus, family, startedBy and pages with opaque tokens",
          "[cp-ops]") {
  Env env;
  env.ecs("RegisterTaskDefinition", web_definition());
  env.ecs("RegisterTaskDefinition", web_definition("other"));
  auto r = env.ecs("RunTask", {{"taskDefinition", "web"}, {"count", 3}, {"startedBy", "me"}});
  REQUIRE(r["tasks"].size() == 3);
  auto o = env.ecs("RunTask", {{"taskDefinition", "other"}});
  std::string other = o["tasks"][0]["taskArn"];
  REQUIRE(env.wait_status(other, "RUNNING"));
  env.ecs("StopTask", {{"task", other}});
  REQUIRE(env.wait_status(other, "STOPPED"));

  CHECK(env.ecs("ListTasks", json::object())["taskArns"].size() == 3);
  auto stopped = env.ecs("ListTasks", {{"desiredStatus", "STOPPED"}});
  CHECK(stopped["taskArns"] == json({other}));
  CHECK(env.ecs("ListTasks", {{"family", "other"}})["taskArns"].empty());
  CHECK(env.ecs("ListTasks", {{"startedBy", "me"}})["taskArns"].size() == 3);
  // No such service: ECS's error, not an empty list.
  CHECK(env.ecs_error("ListTasks", R"({"serviceName": "svc"})") ==
        std::pair<int, std::string>{400, "ServiceNotFoundException"});

  std::set<std::string> seen;
  json body = {{"maxResults", 2}};
  int pages = 0;
  for (;;) {
    auto page = env.ecs("ListTasks", body);
    ++pages;
    for (const auto& a : page["taskArns"]) seen.insert(a.get<std::string>());
    if (!page.contains("nextToken")) break;
    std::string token = page["nextToken"];
    CHECK(token.find_first_not_of(
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          std::string::npos);
    body["nextToken"] = token;
  }
  CHECK(pages == 2);
  CHECK(seen.size() == 3);
  CHECK(env.ecs_error("ListTasks", R"({"maxResults":101})").second == "InvalidParameterException");
  CHECK(env.ecs_error("ListTasks", R"({"nextToken":"!!"})").second == "InvalidParameterException");
  CHECK(env.ecs_error("ListTasks", R"({"cluster":"nope"})").second == "ClusterNotFoundException");
}

TEST_CASE("Tags on clusters, task definitions and tasks", "[cp-ops]") {
  Env env;
  env.ecs("CreateCluster", {{"clusterName", "default"}});
  std::string carn = "arn:aws:ecs:us-test-1:111111111111:cluster/default";
  env.ecs("TagResource", {{"resourceArn", carn}, {"tags", {{{"key", "env"}, {"value", "dev"}}}}});
  auto tags = env.ecs("ListTagsForResource", {{"resourceArn", carn}});
  CHECK(tags["tags"] == json::parse(R"([{"key":"env","value":"dev"}])"));
  env.ecs("UntagResource", {{"resourceArn", carn}, {"tagKeys", {"env"}}});
  CHECK(env.ecs("ListTagsForResource", {{"resourceArn", carn}})["tags"].empty());

  env.ecs("RegisterTaskDefinition", web_definition());
  auto r =
      env.ecs("RunTask", {{"taskDefinition", "web"}, {"tags", {{{"key", "k"}, {"value", "v"}}}}});
  std::string arn = r["tasks"][0]["taskArn"];
  auto withtags = env.ecs("DescribeTasks", {{"tasks", {arn}}, {"include", {"TAGS"}}});
  CHECK(withtags["tasks"][0]["tags"] == json::parse(R"([{"key":"k","value":"v"}])"));
  CHECK(env.ecs("ListTagsForResource", {{"resourceArn", arn}})["tags"].size() == 1);
  CHECK(env.ecs_error(
               "TagResource",
               R"({"resourceArn":"arn:aws:ecs:us-test-1:111111111111:cluster/nope","tags":[]})")
            .second == "ClusterNotFoundException");
  CHECK(env.ecs_error("ListTagsForResource", R"({"resourceArn":"nonsense"})").second ==
        "InvalidParameterException");
}

TEST_CASE("An account sees and touches only its own objects", "[cp-ops]") {
  Env env;
  env.ecs("RegisterTaskDefinition", web_definition());
  std::string arn = run_one(env);
  REQUIRE(env.wait_status(arn, "RUNNING"));
  std::string id = arn.substr(arn.rfind('/') + 1);
  env.ecs("CreateCluster", {{"clusterName", "default"}}, kAccountB);

  auto d = env.ecs("DescribeTasks", {{"tasks", {arn, id}}}, kAccountB);
  CHECK(d["tasks"].empty());
  REQUIRE(d["failures"].size() == 2);
  CHECK(d["failures"][0]["reason"] == "MISSING");
  CHECK(d["failures"][1]["reason"] == "MISSING");
  CHECK(env.ecs_error("StopTask", json({{"task", arn}}).dump(), kAccountB).second ==
        "InvalidParameterException");
  CHECK(env.ecs("ListTasks", json::object(), kAccountB)["taskArns"].empty());
  CHECK(env.ecs_error("DescribeTaskDefinition", R"({"taskDefinition":"web"})", kAccountB).second ==
        "ClientException");
  CHECK(env.ecs_error(
               "DescribeTaskDefinition",
               R"({"taskDefinition":"arn:aws:ecs:us-test-1:111111111111:task-definition/web:1"})",
               kAccountB)
            .second == "ClientException");
  CHECK(env.ecs("DescribeClusters",
                {{"clusters", {"arn:aws:ecs:us-test-1:111111111111:cluster/default"}}},
                kAccountB)["failures"][0]["reason"] == "MISSING");
  CHECK(env.native("GET", "/v1/tasks/" + id, {}, "", kAccountB).status == 404);
  CHECK(env.native("DELETE", "/v1/tasks/" + id, {}, "", kAccountB).status == 404);
  CHECK(env.describe(arn)["desiredStatus"] == "RUNNING");
}

TEST_CASE("Bad input gets the right ECS error type and status", "[cp-ops]") {
  Env env;
  using P = std::pair<int, std::string>;
  CHECK(env.ecs_error("RegisterTaskDefinition", "{not json") == P{400, "SerializationException"});
  CHECK(env.ecs_error("RegisterTaskDefinition", "[1]") == P{400, "SerializationException"});
  CHECK(env.ecs_error("CreateCapacityProvider", "{}") == P{400, "UnknownOperationException"});
  CHECK(env.ecs_error("CreateService", "{}") == P{400, "InvalidParameterException"});
  CHECK(env.ecs_error("RunTask", "{}") == P{400, "InvalidParameterException"});
  CHECK(env.ecs_error("RunTask", R"({"taskDefinition": 5})") ==
        P{400, "InvalidParameterException"});
  CHECK(env.ecs_error("DescribeTasks", "{}") == P{400, "InvalidParameterException"});
  json bad_cpu = web_definition();
  bad_cpu["cpu"] = "300";
  CHECK(env.ecs_error("RegisterTaskDefinition", bad_cpu.dump()).second == "ClientException");
  json bad_field = web_definition();
  bad_field["containerDefinitions"][0]["foo"] = 1;
  auto r = env.ecs_raw("RegisterTaskDefinition", bad_field.dump());
  CHECK(r.status == 400);
  CHECK(r.body.find("InvalidParameterException") != std::string::npos);
  CHECK(r.body.find("foo") != std::string::npos);
  env.ecs("RegisterTaskDefinition", web_definition());
  CHECK(env.ecs_error("RunTask", R"({"taskDefinition":"web","launchType":"EC2"})") ==
        P{400, "InvalidParameterException"});
  CHECK(env.ecs_error("RunTask", R"({"taskDefinition":"web","count":11})") ==
        P{400, "InvalidParameterException"});
  CHECK(env.ecs_error("RunTask", R"({"taskDefinition":"web","overrides":{"cpu":"300"}})").second ==
        "ClientException");

  HttpRequest no_target;
  no_target.method = "POST";
  no_target.path = "/";
  no_target.account = kAccountA;
  no_target.body = "{}";
  auto nt = env.send(no_target);
  CHECK(nt.status == 400);
  CHECK(nt.body.find("UnknownOperationException") != std::string::npos);

  HttpRequest other;
  other.method = "GET";
  other.path = "/nothing";
  CHECK(env.send(other).status == 404);

  // An empty body is {}.
  CHECK(env.ecs_raw("ListClusters", "").status == 200);
  // Unauthenticated operations are refused.
  CHECK(env.ecs_error("ListClusters", "{}", "") == P{403, "AccessDeniedException"});
}

TEST_CASE("Native API: run inline, list, describe, stop, logs, events", "[cp-ops]") {
  Env env;
  auto sse = std::make_shared<CollectWriter>();
  auto ev = env.native("GET", "/v1/events");
  REQUIRE(ev.status == 200);
  CHECK(ev.headers["content-type"] == "text/event-stream");
  REQUIRE(ev.stream);
  ev.stream(sse);

  json def = web_definition();
  def.erase("family");
  auto created = env.native("POST", "/v1/tasks", {}, def.dump());
  INFO(created.body);
  REQUIRE(created.status == 200);
  auto task = json::parse(created.body)["task"];
  std::string arn = task["taskArn"];
  std::string id = arn.substr(arn.rfind('/') + 1);
  CHECK(task["taskDefinitionArn"] == "arn:aws:ecs:us-test-1:111111111111:task-definition/inline:1");
  REQUIRE(env.wait_status(arn, "RUNNING"));

  auto got = env.native("GET", "/v1/tasks/" + id);
  REQUIRE(got.status == 200);
  CHECK(json::parse(got.body)["task"]["lastStatus"] == "RUNNING");
  CHECK(env.native("GET", "/v1/tasks/" + arn).status == 200);
  CHECK(env.native("GET", "/v1/tasks/" + std::string(32, '0')).status == 404);
  CHECK(json::parse(env.native("GET", "/v1/tasks/" + std::string(32, '0')).body)["__type"] ==
        "ResourceNotFoundException");

  auto list = env.native("GET", "/v1/tasks", {{"status", "RUNNING"}});
  CHECK(json::parse(list.body)["tasks"].size() == 1);
  CHECK(json::parse(env.native("GET", "/v1/tasks", {{"status", "STOPPED"}}).body)["tasks"].empty());
  CHECK(env.native("GET", "/v1/tasks", {{"cluster", "nope"}}).status == 404);

  std::string line = "2026-12-05T02:00:00.000000000Z stdout F hello\n";
  env.agent().append_log(id, "app", line);
  auto logs = env.native("GET", "/v1/tasks/" + id + "/logs");
  CHECK(logs.status == 200);
  CHECK(logs.body == line);
  CHECK(env.native("GET", "/v1/tasks/" + id + "/logs", {{"container", "nope"}}).status == 404);

  auto follow = env.native("GET", "/v1/tasks/" + id + "/logs", {{"follow", "true"}});
  REQUIRE(follow.stream);
  auto fw = std::make_shared<CollectWriter>();
  follow.stream(fw);
  REQUIRE(fake::eventually([&] { return fw->text() == line; }));
  env.agent().append_log(id, "app", "2026-12-05T02:00:01.000000000Z stderr F bye\n");
  REQUIRE(fake::eventually([&] { return fw->text().find("bye") != std::string::npos; }));
  CHECK(!fw->is_closed());

  auto stopped = env.native("DELETE", "/v1/tasks/" + id, {{"reason", "done"}});
  REQUIRE(stopped.status == 200);
  CHECK(json::parse(stopped.body)["task"]["desiredStatus"] == "STOPPED");
  REQUIRE(env.wait_status(arn, "STOPPED"));
  env.agent().end_logs(id);
  REQUIRE(fake::eventually([&] { return fw->is_closed(); }));

  REQUIRE(fake::eventually(
      [&] { return sse->text().find("\"lastStatus\":\"STOPPED\"") != std::string::npos; }));
  std::string events = sse->text();
  CHECK(events.starts_with("event: TaskStateChange\ndata: {\"task\":"));
  for (const char* s : {"PROVISIONING", "PENDING", "RUNNING", "DEPROVISIONING"}) {
    CHECK(events.find(std::string("\"lastStatus\":\"") + s + "\"") != std::string::npos);
  }
  sse->client_leaves();
  REQUIRE(fake::eventually([&] { return sse->is_closed(); }));

  // Another account's stream sees none of this.
  CHECK(env.native("GET", "/v1/nothing").status == 404);
  CHECK(env.native("POST", "/v1/tasks", {}, "{bad").status == 400);
}

TEST_CASE("healthz and metrics", "[cp-ops]") {
  Env env;
  env.ecs("RegisterTaskDefinition", web_definition());
  std::string arn = run_one(env);
  REQUIRE(env.wait_status(arn, "RUNNING"));
  HttpRequest h;
  h.method = "GET";
  h.path = "/healthz";
  auto hr = env.send(h);
  CHECK(hr.status == 200);
  CHECK(hr.body == "ok\n");
  h.path = "/metrics";
  auto m = env.send(h);
  REQUIRE(m.status == 200);
  CHECK(m.body.find("berth_tasks{state=\"RUNNING\"} 1") != std::string::npos);
  CHECK(m.body.find("berth_run_task_to_running_seconds_count 1") != std::string::npos);
  CHECK(m.body.find("berth_run_task_to_running_seconds_bucket{le=\"0.001\"}") != std::string::npos);
  CHECK(m.body.find("berth_api_requests_total{operation=\"RunTask\",code=\"200\"} 1") !=
        std::string::npos);
  CHECK(m.body.find("berth_api_request_duration_seconds_count{operation=\"RunTask\"} 1") !=
        std::string::npos);
  CHECK(m.body.find("berth_microhost_pool_size 0") != std::string::npos);
}

TEST_CASE("Event bus: per-account delivery and bounded queues", "[cp-ops]") {
  EventBus bus(2);
  auto a = bus.subscribe(kAccountA);
  auto b = bus.subscribe(kAccountB);
  for (int i = 0; i < 3; ++i) {
    Task t;
    t.id = std::to_string(i);
    bus.publish({kAccountA, t, std::nullopt});
  }
  CHECK(!b->next(0ms));
  CHECK(a->dropped() == 1);
  CHECK(a->next(0ms)->task.id == "1");
  CHECK(a->next(0ms)->task.id == "2");
  CHECK(!a->next(0ms));
  bus.close_all();
  CHECK(a->closed());
}
