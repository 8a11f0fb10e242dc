// The shim's request arguments and runtime ids (shim/shim.h, shim/task.h).
#include <catch2/catch.hpp>

#include "shim/shim.h"
#include "shim/task.h"

using namespace berth;
using namespace berth::shim;
using json = nlohmann::json;

namespace {

std::string task_error(const std::string& task_id, const std::string& name) {
  json t = {{"version", 1},
            {"task_id", task_id},
            {"runtime_root", "/run/x"},
            {"containers", json::array({{{"name", name}, {"bundle", "/b"}}})}};
  auto r = parse_task(t.dump());
  if (r) return "";
  CHECK(r.error().kind == ErrorKind::invalid);
  return r.error().str();
}

}  // namespace

TEST_CASE("shim requests: logs offset and max_bytes are checked", "[shim-request]") {
  auto ok = parse_logs_request(json::object());
  REQUIRE(ok);
  CHECK(ok->offset == 0);
  CHECK(ok->max_bytes == 256u << 10);
  auto set = parse_logs_request({{"offset", 42}, {"max_bytes", 100}});
  REQUIRE(set);
  CHECK(set->offset == 42);
  CHECK(set->max_bytes == 100);
  auto big = parse_logs_request({{"max_bytes", 1LL << 40}});
  REQUIRE(big);
  CHECK(big->max_bytes == 1u << 20);

  auto neg = parse_logs_request({{"offset", -1}});
  REQUIRE_FALSE(neg);
  CHECK(neg.error().str() == "logs: \"offset\" must be an integer 0 or more, got -1");
  CHECK(neg.error().kind == ErrorKind::invalid);
  auto neg_max = parse_logs_request({{"max_bytes", -5}});
  REQUIRE_FALSE(neg_max);
  CHECK(neg_max.error().str() == "logs: \"max_bytes\" must be an integer 1 or more, got -5");
  CHECK_FALSE(parse_logs_request({{"max_bytes", 0}}));
  CHECK_FALSE(parse_logs_request({{"offset", "10"}}));
  CHECK_FALSE(parse_logs_request({{"offset", 1.5}}));
}

TEST_CASE("shim requests: the stop timeout is checked", "[shim-request]") {
  auto none = parse_stop_timeout(json::object());
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  auto five = parse_stop_timeout({{"timeout", 5}});
  REQUIRE(five);
  CHECK(**five == 5);
  auto zero = parse_stop_timeout({{"timeout", 0}});
  REQUIRE(zero);
  CHECK(**zero == 0);
  auto neg = parse_stop_timeout({{"timeout", -1}});
  REQUIRE_FALSE(neg);
  CHECK(neg.error().str() ==
        "stop: \"timeout\" must be an integer number of seconds 0-86400, got -1");
  CHECK(neg.error().kind == ErrorKind::invalid);
  CHECK_FALSE(parse_stop_timeout({{"timeout", 86401}}));
  CHECK_FALSE(parse_stop_timeout({{"timeout", "5"}}));
}

TEST_CASE("shim ids: task ids and names cannot hold the separator", "[shim-request]") {
  CHECK(task_error("a-b", "c").empty());
  CHECK(task_error("a", "b-c").empty());
  CHECK_THAT(task_error("a.b", "c"), Catch::Contains("task_id: \"a.b\": must be 1-64 of"));
  CHECK_THAT(task_error("a", "b.c"),
             Catch::Contains("containers[0].name: \"b.c\": must be 1-64 of") &&
                 Catch::Contains("separates the task id from the container name"));
  // Task "a-b" with container "c" and task "a" with container "b-c": the
  // ids that used to collide ("a-b-c") now differ.
  auto parse = [](const std::string& id, const std::string& name) {
    json t = {{"version", 1},
              {"task_id", id},
              {"runtime_root", "/run/x"},
              {"containers", json::array({{{"name", name}, {"bundle", "/b"}}})}};
    auto r = parse_task(t.dump());
    REQUIRE(r);
    return r->runtime_id(r->containers[0]);
  };
  CHECK(parse("a-b", "c") == "a-b.c");
  CHECK(parse("a", "b-c") == "a.b-c");
  CHECK(parse("a-b", "c") != parse("a", "b-c"));
}
