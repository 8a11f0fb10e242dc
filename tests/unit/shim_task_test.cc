#include <catch2/catch.hpp>

#include "shim/task.h"

using namespace berth::shim;

namespace {

std::string task_with(const std::string& containers) {
  return R"({"version":1,"task_id":"t1","runtime_root":"/run/x","containers":)" + containers + "}";
}

std::string parse_error(const std::string& text) {
  auto t = parse_task(text);
  REQUIRE_FALSE(t);
  return t.error().str();
}

}  // namespace

TEST_CASE("shim task: a full task parses with ECS defaults", "[shim-task]") {
  auto t = parse_task(task_with(R"([
    {"name":"db","bundle":"/b/db"},
    {"name":"web","bundle":"/b/web","essential":false,"stop_timeout":5,
     "depends_on":[{"container":"db","condition":"HEALTHY"}],
     "restart_policy":{"enabled":true,"ignored_exit_codes":[0,2],"restart_attempt_period":60},
     "init_process":true,
     "log":{"max_bytes":65536,"max_files":2}}])"));
  REQUIRE_FALSE(t);  // HEALTHY on a container without a health check
  CHECK_THAT(t.error().str(), Catch::Contains("no health_check"));

  auto ok = parse_task(task_with(R"([
    {"name":"db","bundle":"/b/db","health_check":{"command":["CMD-SHELL","pg_isready"]}},
    {"name":"web","bundle":"/b/web","essential":false,"stop_timeout":5,
     "depends_on":[{"container":"db","condition":"HEALTHY"}],
     "restart_policy":{"enabled":true,"ignored_exit_codes":[0,2],"restart_attempt_period":60},
     "init_process":true,
     "log":{"max_bytes":65536,"max_files":2}}])"));
  REQUIRE(ok);
  CHECK(ok->task_id == "t1");
  const ContainerSpec* db = ok->find("db");
  REQUIRE(db);
  CHECK(db->essential);
  CHECK(db->stop_timeout_s == 30);
  REQUIRE(db->health);
  CHECK(db->health->interval_s == 30);
  CHECK(db->health->timeout_s == 5);
  CHECK(db->health->retries == 3);
  CHECK(db->health->argv() == std::vector<std::string>{"/bin/sh", "-c", "pg_isready"});
  const ContainerSpec* web = ok->find("web");
  REQUIRE(web);
  CHECK_FALSE(web->essential);
  CHECK(web->restart.enabled);
  CHECK(web->restart.ignored_exit_codes == std::vector<int>{0, 2});
  CHECK(web->restart.attempt_period_s == 60);
  CHECK(web->init_process);
  CHECK(web->log_max_bytes == 65536);
  CHECK(ok->runtime_id(*web) == "t1.web");
}

TEST_CASE("shim task: bad tasks name what is wrong", "[shim-task]") {
  CHECK_THAT(parse_error("{"), Catch::Contains("not valid JSON"));
  CHECK_THAT(parse_error(task_with("[]")),
             Catch::Contains("containers: must be a non-empty array"));
  CHECK_THAT(parse_error(task_with(R"([{"name":"a b","bundle":"/x"}])")),
             Catch::Contains("containers[0].name"));
  CHECK_THAT(parse_error(task_with(R"([{"name":"a","bundle":"rel"}])")),
             Catch::Contains("containers[0].bundle: must be an absolute path"));
  CHECK_THAT(parse_error(task_with(R"([{"name":"a","bundle":"/x"},{"name":"a","bundle":"/y"}])")),
             Catch::Contains("used twice"));
  CHECK_THAT(parse_error(task_with(R"([{"name":"a","bundle":"/x","essential":false}])")),
             Catch::Contains("at least one container must be essential"));
  CHECK_THAT(
      parse_error(task_with(
          R"([{"name":"a","bundle":"/x","depends_on":[{"container":"b","condition":"START"}]}])")),
      Catch::Contains("no container named \"b\""));
  CHECK_THAT(
      parse_error(task_with(
          R"([{"name":"a","bundle":"/x","depends_on":[{"container":"a","condition":"START"}]}])")),
      Catch::Contains("depends on itself"));
  CHECK_THAT(
      parse_error(task_with(
          R"([{"name":"a","bundle":"/x","depends_on":[{"container":"b","condition":"START"}]},
                                {"name":"b","bundle":"/y","depends_on":[{"container":"a","condition":"COMPLETE"}]}])")),
      Catch::Contains("cycle"));
  CHECK_THAT(
      parse_error(task_with(
          R"([{"name":"a","bundle":"/x","depends_on":[{"container":"a","condition":"READY"}]}])")),
      Catch::Contains("one of START, COMPLETE, SUCCESS, HEALTHY"));
  CHECK_THAT(parse_error(task_with(
                 R"([{"name":"a","bundle":"/x","health_check":{"command":["RUN","x"]}}])")),
             Catch::Contains("must start with \"CMD\" or \"CMD-SHELL\""));
  CHECK_THAT(parse_error(task_with(R"([{"name":"a","bundle":"/x","stop_timeout":-1}])")),
             Catch::Contains("stop_timeout: must be between 0 and 86400"));
  CHECK_THAT(parse_error(task_with(
                 R"([{"name":"a","bundle":"/x","restart_policy":{"ignored_exit_codes":[300]}}])")),
             Catch::Contains("exit codes 0-255"));
}
