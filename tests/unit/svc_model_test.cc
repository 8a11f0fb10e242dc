// The service model (controlplane/model/service.h): the ECS service object,
// its stored form read back, deployments and events, and the request
// parsing of CreateService / UpdateService / DeleteService /
// DescribeServices / ListServices with ECS's errors naming the field.
#include "controlplane/model/service.h"

#include <functional>
#include <regex>
#include <set>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "controlplane/model/arn.h"
#include "tests/unit/result_check.h"

using namespace berth;
using namespace berth::cp;
using json = nlohmann::json;
using berth::test::fails;
using berth::test::ok;

namespace {

constexpr const char* kAccount = "111111111111";
constexpr const char* kRegion = "us-test-1";

TimePoint at(double s) {
  return from_epoch_seconds(s);
}

Service sample() {
  Service s;
  s.account = kAccount;
  s.cluster = "prod";
  s.name = "web";
  s.desired_count = 3;
  s.created_at = at(1700000000.5);
  s.deployment_configuration.circuit_breaker = {true, true};
  s.load_balancers.push_back({"app", 8080, 9000, "", "berth-9000"});
  s.health_check_grace_period_s = 30;
  s.start_deployment("ecs-svc/1234567890123456789",
                     task_definition_arn(kRegion, kAccount, "web", 2), at(1700000001.25));
  Deployment& d = *s.primary();
  d.running_count = 2;
  d.pending_count = 1;
  d.tasks = {"a", "b", "c"};
  d.consecutive_failures = 1;
  d.next_launch_at = at(1700000100);
  s.running_count = 2;
  s.pending_count = 1;
  s.add_event({"e1", at(1700000002), "(service web) has started 3 tasks: (task a)."});
  s.version = 7;
  return s;
}

json create_body() {
  return json::parse(R"({
    "cluster": "prod", "serviceName": "web", "taskDefinition": "web:2", "desiredCount": 3
  })");
}

}  // namespace

TEST_CASE("svc model: the service object has ECS's members, ARNs and epoch timestamps",
          "[svc-model]") {
  Service s = sample();
  json j = service_json(s, kRegion);
  CHECK(j["serviceArn"] == "arn:aws:ecs:us-test-1:111111111111:service/prod/web");
  CHECK(j["clusterArn"] == "arn:aws:ecs:us-test-1:111111111111:cluster/prod");
  CHECK(j["serviceName"] == "web");
  CHECK(j["status"] == "ACTIVE");
  CHECK(j["desiredCount"] == 3);
  CHECK(j["runningCount"] == 2);
  CHECK(j["pendingCount"] == 1);
  CHECK(j["launchType"] == "FARGATE");
  CHECK(j["schedulingStrategy"] == "REPLICA");
  CHECK(j["taskDefinition"] == "arn:aws:ecs:us-test-1:111111111111:task-definition/web:2");
  CHECK(j["createdAt"] == 1700000000.5);
  CHECK(j["healthCheckGracePeriodSeconds"] == 30);
  CHECK(j["deploymentConfiguration"] ==
        json::parse(R"({"deploymentCircuitBreaker": {"enable": true, "rollback": true},
                        "maximumPercent": 200, "minimumHealthyPercent": 100})"));
  CHECK(j["loadBalancers"] == json::parse(R"([{"containerName": "app", "containerPort": 8080,
        "loadBalancerName": "berth-9000", "berthListenerPort": 9000}])"));
  CHECK(j["deploymentController"] == json{{"type", "ECS"}});
  REQUIRE(j["deployments"].size() == 1);
  json d = j["deployments"][0];
  CHECK(d == json::parse(R"({"id": "ecs-svc/1234567890123456789", "status": "PRIMARY",
        "taskDefinition": "arn:aws:ecs:us-test-1:111111111111:task-definition/web:2",
        "desiredCount": 3, "pendingCount": 1, "runningCount": 2, "failedTasks": 0,
        "launchType": "FARGATE", "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": "ECS deployment ecs-svc/1234567890123456789 in progress.",
        "createdAt": 1700000001.25, "updatedAt": 1700000001.25})"));
  REQUIRE(j["events"].size() == 1);
  CHECK(j["events"][0] == json::parse(R"({"id": "e1", "createdAt": 1700000002,
        "message": "(service web) has started 3 tasks: (task a)."})"));
  // berth's bookkeeping is only in the stored form.
  CHECK_FALSE(j.contains("berth"));
  CHECK_FALSE(d.contains("berth"));
}

TEST_CASE("svc model: the stored form reads back to the same service", "[svc-model]") {
  Service s = sample();
  s.status = "INACTIVE";
  s.deleted_at = at(1700009999);
  s.steady = true;
  s.network_configuration = json::parse(R"({"awsvpcConfiguration": {"subnets": ["s-1"]}})");
  s.tags = {{"team", "a"}};
  s.start_deployment("ecs-svc/9999999999999999999", "arn:x", at(1700000050));
  json stored = service_json(s, kRegion, true);
  CHECK(stored["berth"]["version"] == 7);
  Service back = ok(service_from_json(stored, kAccount));
  CHECK(back == s);
  CHECK(back.deployments.size() == 2);
  CHECK(back.deployments[1].tasks == std::vector<std::string>{"a", "b", "c"});
  // A document that is not a stored service names what is wrong.
  auto e = fails(service_from_json(json{{"serviceName", "x"}}, kAccount));
  CHECK(e.str() == "stored service: clusterArn: required field is missing");
}

TEST_CASE("svc model: deployments, ids and the event bound", "[svc-model]") {
  std::regex id_form("ecs-svc/[1-9][0-9]{18}");
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    auto id = new_deployment_id();
    CHECK(std::regex_match(id, id_form));
    ids.insert(id);
  }
  CHECK(ids.size() == 50);

  Service s = sample();
  s.start_deployment("ecs-svc/2222222222222222222", "arn:td:3", at(1700000060));
  REQUIRE(s.deployments.size() == 2);
  CHECK(s.deployments[0].id == "ecs-svc/2222222222222222222");
  CHECK(s.deployments[0].status == "PRIMARY");
  CHECK(s.deployments[0].desired_count == 3);
  CHECK(s.deployments[1].status == "ACTIVE");
  CHECK(s.primary()->id == "ecs-svc/2222222222222222222");
  CHECK(s.task_definition == "arn:td:3");
  CHECK(s.deployment("ecs-svc/1234567890123456789") == &s.deployments[1]);
  CHECK(s.deployment("nope") == nullptr);

  for (int i = 0; i < 150; ++i) s.add_event({std::to_string(i), at(i), "m"});
  CHECK(s.events.size() == kMaxServiceEvents);
  CHECK(s.events.front().id == "149");
  CHECK(s.events.back().id == "50");
}

TEST_CASE("svc model: CreateService takes the AWS CLI's input with ECS's defaults", "[svc-model]") {
  auto r = ok(parse_create_service(json::parse(R"({
    "cluster": "prod", "serviceName": "web", "taskDefinition": "web:2", "desiredCount": 3,
    "launchType": "FARGATE", "clientToken": "tok", "platformVersion": "LATEST",
    "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"],
                             "assignPublicIp": "DISABLED"}},
    "deploymentConfiguration": {"maximumPercent": 150, "minimumHealthyPercent": 50,
        "deploymentCircuitBreaker": {"enable": true, "rollback": false}},
    "loadBalancers": [{"containerName": "app", "containerPort": 80, "berthListenerPort": 8080},
                      {"containerName": "app", "containerPort": 81,
                       "loadBalancerName": "berth-8081"}],
    "healthCheckGracePeriodSeconds": 15, "schedulingStrategy": "REPLICA",
    "deploymentController": {"type": "ECS"}, "propagateTags": "NONE",
    "enableECSManagedTags": false, "placementConstraints": [], "serviceRegistries": [],
    "tags": [{"key": "team", "value": "a"}]
  })")));
  CHECK(r.cluster == "prod");
  CHECK(r.service_name == "web");
  CHECK(r.task_definition == "web:2");
  CHECK(r.desired_count == 3);
  CHECK(r.platform_version == "LATEST");
  CHECK(r.deployment_configuration == DeploymentConfiguration{150, 50, {true, false}});
  REQUIRE(r.load_balancers.size() == 2);
  CHECK(r.load_balancers[0] == ServiceLoadBalancer{"app", 80, 8080, "", ""});
  CHECK(r.load_balancers[1] == ServiceLoadBalancer{"app", 81, 8081, "", "berth-8081"});
  CHECK(r.health_check_grace_period_s == 15);
  CHECK(r.network_configuration.has_value());
  CHECK(r.tags == std::vector<Tag>{{"team", "a"}});

  auto d = ok(parse_create_service(create_body()));
  CHECK(d.cluster == "prod");
  CHECK(d.launch_type == "FARGATE");
  CHECK(d.deployment_configuration == DeploymentConfiguration{200, 100, {false, false}});
  CHECK(d.load_balancers.empty());
  CHECK_FALSE(d.health_check_grace_period_s.has_value());
}

TEST_CASE("svc model: CreateService refuses what berth cannot honour, naming the field",
          "[svc-model]") {
  auto refused = [](const std::function<void(json&)>& edit) {
    json b = create_body();
    edit(b);
    auto e = fails(parse_create_service(b));
    CHECK(e.step == "InvalidParameterException");
    return e.message;
  };
  CHECK(refused([](json& b) { b["schedulingStrategy"] = "DAEMON"; }) ==
        "schedulingStrategy: DAEMON is not supported: berth runs REPLICA services");
  CHECK(refused([](json& b) { b["schedulingStrategy"] = "X"; }) ==
        "schedulingStrategy: must be REPLICA, got \"X\"");
  CHECK(refused([](json& b) { b.erase("desiredCount"); }) ==
        "desiredCount: required field is missing (schedulingStrategy is REPLICA)");
  CHECK(refused([](json& b) { b.erase("serviceName"); }) ==
        "serviceName: required field is missing");
  CHECK(refused([](json& b) { b.erase("taskDefinition"); }) ==
        "taskDefinition: required field is missing");
  CHECK(refused([](json& b) { b["serviceName"] = "a b"; }).starts_with("serviceName: \"a b\": "));
  CHECK(refused([](json& b) { b["desiredCount"] = -1; }) ==
        "desiredCount: -1 is out of range 0..1000");
  CHECK(refused([](json& b) { b["frobnicate"] = 1; }) == "frobnicate: unknown field");
  CHECK(refused([](json& b) { b["launchType"] = "EC2"; }) ==
        "launchType: EC2 is not supported: berth runs FARGATE and FARGATE_SPOT tasks");
  CHECK(refused([](json& b) { b["placementStrategy"] = json::parse(R"([{"type": "spread"}])"); }) ==
        "placementStrategy: not supported by berth");
  CHECK(refused([](json& b) { b["enableExecuteCommand"] = true; }) ==
        "enableExecuteCommand: not supported by berth");
  CHECK(refused([](json& b) {
          b["deploymentConfiguration"] = {{"maximumPercent", 99}};
        }) == "deploymentConfiguration.maximumPercent: 99 is out of range 100..400");
  CHECK(refused([](json& b) {
          b["deploymentConfiguration"] = {{"minimumHealthyPercent", 101}};
        }) == "deploymentConfiguration.minimumHealthyPercent: 101 is out of range 0..100");
  CHECK(refused([](json& b) {
          b["deploymentConfiguration"] = {{"deploymentCircuitBreaker", {{"enable", true}}}};
        }) ==
        "deploymentConfiguration.deploymentCircuitBreaker.rollback: required field is "
        "missing");
  CHECK(refused([](json& b) { b["loadBalancers"] = json::parse(R"([{"containerPort": 80}])"); }) ==
        "loadBalancers[0].containerName: required field is missing");
  CHECK(refused([](json& b) { b["loadBalancers"] = json::parse(R"([{"containerName": "a"}])"); }) ==
        "loadBalancers[0].containerPort: required field is missing");
  CHECK(refused([](json& b) {
          b["loadBalancers"] = json::parse(R"([{"containerName": "a", "containerPort": 0}])");
        }) == "loadBalancers[0].containerPort: 0 is out of range 1..65535");
  CHECK(refused([](json& b) {
          b["loadBalancers"] = json::parse(R"([{"containerName": "a", "containerPort": 1,
              "berthListenerPort": 80, "loadBalancerName": "berth-81"}])");
        }) == "loadBalancers[0].berthListenerPort: 80 differs from loadBalancerName \"berth-81\"");
  CHECK(refused([](json& b) {
          b["loadBalancers"] = json::parse(R"([
              {"containerName": "a", "containerPort": 1, "berthListenerPort": 80},
              {"containerName": "a", "containerPort": 2, "berthListenerPort": 80}])");
        }) == "loadBalancers[1]: listener port 80 is used twice");
  CHECK(refused([](json& b) { b["propagateTags"] = "SERVICE"; }) ==
        "propagateTags: SERVICE is not supported by berth (only NONE)");
  CHECK(refused([](json& b) {
          b["deploymentController"] = {{"type", "CODE_DEPLOY"}};
        }) ==
        "deploymentController.type: CODE_DEPLOY is not supported: berth deploys as ECS does "
        "(ECS)");
  CHECK(refused([](json& b) { b["desiredCount"] = "3"; }) ==
        "desiredCount: expected a 32-bit integer, got string");
}

TEST_CASE("svc model: UpdateService, DeleteService, DescribeServices, ListServices requests",
          "[svc-model]") {
  auto u = ok(parse_update_service(json::parse(R"({"cluster": "prod", "service": "web",
      "desiredCount": 5, "taskDefinition": "web:3", "forceNewDeployment": true,
      "deploymentConfiguration": {"maximumPercent": 100, "minimumHealthyPercent": 50},
      "healthCheckGracePeriodSeconds": 5})")));
  CHECK(u.service == "web");
  CHECK(u.desired_count == 5);
  CHECK(u.task_definition == "web:3");
  CHECK(u.force_new_deployment);
  CHECK(u.deployment_configuration == DeploymentConfiguration{100, 50, {}});
  CHECK(u.health_check_grace_period_s == 5);
  auto bare = ok(parse_update_service(json{{"service", "web"}}));
  CHECK_FALSE(bare.desired_count);
  CHECK_FALSE(bare.task_definition);
  CHECK_FALSE(bare.force_new_deployment);
  CHECK_FALSE(bare.deployment_configuration);
  CHECK(fails(parse_update_service(json::object())).message ==
        "service: required field is missing");
  CHECK(fails(parse_update_service(json{{"service", "web"}, {"loadBalancers", json::array()}}))
            .message == "loadBalancers: unknown field");

  auto d = ok(parse_delete_service(json{{"service", "web"}, {"force", true}}));
  CHECK(d.service == "web");
  CHECK(d.force);
  CHECK_FALSE(ok(parse_delete_service(json{{"service", "web"}})).force);
  CHECK(fails(parse_delete_service(json{{"service", ""}})).message == "service: must not be empty");

  auto ds = ok(parse_describe_services(
      json::parse(R"({"cluster": "prod", "services": ["web", "api"], "include": ["TAGS"]})")));
  CHECK(ds.services == std::vector<std::string>{"web", "api"});
  CHECK(ds.include_tags);
  CHECK(fails(parse_describe_services(json::object())).message ==
        "services: required field is missing");
  CHECK(fails(parse_describe_services(json{{"services", json::array()}})).message ==
        "services: must name 1 to 10 services, got 0");
  CHECK(fails(parse_describe_services(json{{"services", {"a"}}, {"include", {"X"}}})).message ==
        "include[0]: must be TAGS");

  auto l = ok(parse_list_services(json::object()));
  CHECK(l.max_results == 10);
  CHECK(l.next_token.empty());
  auto l2 = ok(parse_list_services(
      json{{"maxResults", 100}, {"nextToken", "abc"}, {"schedulingStrategy", "REPLICA"}}));
  CHECK(l2.max_results == 100);
  CHECK(l2.next_token == "abc");
  CHECK(fails(parse_list_services(json{{"maxResults", 101}})).message ==
        "maxResults: 101 is out of range 1..100");
  CHECK(fails(parse_list_services(json{{"launchType", "X"}})).step == "InvalidParameterException");
}

TEST_CASE("svc model: service references by name and ARN, of this account only", "[svc-model]") {
  auto r = parse_service_ref("web", kAccount);
  REQUIRE(r);
  CHECK(r->name == "web");
  CHECK(r->cluster.empty());
  r = parse_service_ref(service_arn(kRegion, kAccount, "prod", "web"), kAccount);
  REQUIRE(r);
  CHECK(r->name == "web");
  CHECK(r->cluster == "prod");
  r = parse_service_ref("arn:aws:ecs:us-test-1:111111111111:service/web", kAccount);
  REQUIRE(r);
  CHECK(r->name == "web");
  CHECK(r->cluster.empty());
  CHECK_FALSE(parse_service_ref(service_arn(kRegion, "222222222222", "prod", "web"), kAccount));
  CHECK_FALSE(parse_service_ref(cluster_arn(kRegion, kAccount, "prod"), kAccount));
  CHECK_FALSE(parse_service_ref("a/b", kAccount));
  CHECK_FALSE(parse_service_ref("", kAccount));
}
