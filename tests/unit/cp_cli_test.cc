// The berth CLI's pure logic (cmd/berth/*.cc without main.cc): host parsing,
// ECS error answers, SigV4 signing (checked against botocore's signer),
// tables, the task view, `run --wait` exit codes, run targets and --env,
// task id prefixes, CRI log lines, `berth usage` (table, CSV, verify) and
// describe's billing line. `berth services` (the end of the file) is also
// run whole (run_cli) against an in-process berthd with the fake agent.
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <catch2/catch.hpp>

#include "cmd/berth/app.h"
#include "cmd/berth/args.h"
#include "cmd/berth/client.h"
#include "cmd/berth/logs.h"
#include "cmd/berth/service_commands.h"
#include "cmd/berth/service_view.h"
#include "cmd/berth/sigv4_sign.h"
#include "cmd/berth/table.h"
#include "cmd/berth/task_view.h"
#include "cmd/berth/usage_view.h"
#include "controlplane/api/http_server.h"
#include "controlplane/api/router.h"
#include "controlplane/store/sqlite_store.h"
#include "cp_fakes.h"
#include "temp_dir.h"

using namespace berth::cli;
using berth::Error;
using json = nlohmann::json;

namespace {

constexpr const char* kTaskArn =
    "arn:aws:ecs:us-east-1:000000000001:task/default/0123456789abcdef0123456789abcdef";

json sample_task() {
  auto j = json::parse(R"({
    "taskArn": "arn:aws:ecs:us-east-1:000000000001:task/default/0123456789abcdef0123456789abcdef",
    "clusterArn": "arn:aws:ecs:us-east-1:000000000001:cluster/default",
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000001:task-definition/web:3",
    "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "healthStatus": "HEALTHY",
    "cpu": "256", "memory": "512", "launchType": "FARGATE",
    "createdAt": 1000.5, "startedAt": 1001.25,
    "attachments": [{"type": "ElasticNetworkInterface", "status": "ATTACHED",
      "details": [{"name": "macAddress", "value": "02:00:00:00:00:01"},
                  {"name": "privateIPv4Address", "value": "10.88.0.9"}]}],
    "containers": [
      {"name": "web", "image": "busybox:latest", "lastStatus": "RUNNING",
       "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 8080, "hostPort": 18080,
                            "protocol": "tcp"}]},
      {"name": "sidecar", "image": "busybox:latest", "lastStatus": "RUNNING"}]
  })",
                       nullptr, false);
  REQUIRE(!j.is_discarded());
  return j;
}

TaskView stopped(std::vector<std::pair<std::string, std::optional<int>>> exits,
                 std::string stop_code = "EssentialContainerExited") {
  TaskView t;
  t.id = "0123456789abcdef0123456789abcdef";
  t.last_status = "STOPPED";
  t.stop_code = std::move(stop_code);
  t.stopped_reason = "Essential container in task exited";
  for (auto& [name, code] : exits) t.containers.push_back({.name = name, .exit_code = code});
  return t;
}

}  // namespace

TEST_CASE("cli: --host forms", "[cp-cli]") {
  auto u = parse_host("unix:///run/berth/berthd.sock");
  REQUIRE(u);
  CHECK(u->unix_socket == "/run/berth/berthd.sock");
  CHECK(u->base_url == "http://berth");
  auto bare = parse_host("/tmp/b.sock");
  REQUIRE(bare);
  CHECK(bare->unix_socket == "/tmp/b.sock");
  auto t = parse_host("http://127.0.0.1:8080/");
  REQUIRE(t);
  CHECK(t->unix_socket.empty());
  CHECK(t->base_url == "http://127.0.0.1:8080");
  CHECK(t->authority == "127.0.0.1:8080");

  auto bad = parse_host("tcp://x:1");
  REQUIRE(!bad);
  CHECK(exit_code_for(bad.error()) == kExitUsage);
  CHECK(bad.error().message ==
        "--host tcp://x:1: expected unix:///path/to/berthd.sock or http://HOST:PORT");
  CHECK(!parse_host("unix://relative.sock"));
  CHECK(!parse_host("http://host:1/path"));
}

TEST_CASE("cli: ECS error answers become 'Name: message'", "[cp-cli]") {
  Error e = response_error(
      400, R"({"__type":"com.amazonaws.ecs#InvalidParameterException","message":"bad cpu"})");
  CHECK(e.str() == "InvalidParameterException: bad cpu");
  CHECK(exit_code_for(e) == kExitError);
  CHECK(response_error(400, R"({"__type":"ClientException","Message":"Unable"})").str() ==
        "ClientException: Unable");
  CHECK(response_error(502, "<html>bad gateway\nmore").str() == "HTTP 502: <html>bad gateway");
  CHECK(response_error(500, "").str() == "HTTP 500: (empty answer)");
  // A wrong type in the error body is not a crash.
  CHECK(response_error(400, R"({"__type": 5})").str() == R"(HTTP 400: {"__type": 5})");
}

TEST_CASE("cli: SigV4 signatures match botocore's", "[cp-cli]") {
  Credentials c{.access_key_id = "AKIDEXAMPLE",
                .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
  SigningRequest post{
      .method = "POST",
      .host = "127.0.0.1:8080",
      .path = "/",
      .headers = {{"Content-Type", "application/x-amz-json-1.1"},
                  {"X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters"}},
      .body = "{}",
      .amz_date = "20261205T020000Z"};
  // The values below were computed by botocore.auth.SigV4Auth (botocore 1.43).
  CHECK(canonical_request(post) ==
        "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:127.0.0.1:8080\n"
        "x-amz-date:20261205T020000Z\nx-amz-target:AmazonEC2ContainerServiceV20141113."
        "ListClusters\n\ncontent-type;host;x-amz-date;x-amz-target\n"
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  auto h = sigv4_headers(post, c);
  REQUIRE(h.size() == 2);
  CHECK(h[0] == "X-Amz-Date: 20261205T020000Z");
  CHECK(h[1] ==
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/us-east-1/ecs/"
        "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
        "Signature=572913d2d895c761c9b3a036d97b43c059a9626dc3cb2aeb66c7f50ed62a2696");

  SigningRequest get{.method = "GET",
                     .host = "127.0.0.1:8080",
                     .path = "/v1/tasks",
                     .query = {{"status", "ALL"}, {"cluster", "a b"}},
                     .amz_date = "20261205T020000Z"};
  auto g = sigv4_headers(get, c);
  REQUIRE(g.size() == 2);
  CHECK(
      g[1].ends_with("SignedHeaders=host;x-amz-date, "
                     "Signature=68fcbff9eb72c730e6141ec8536b50010ea143b359a893790cbefcd62c3c7b0e"));

  c.session_token = "TOKEN";
  auto s = sigv4_headers(get, c);
  REQUIRE(s.size() == 3);
  CHECK(s[1].find("SignedHeaders=host;x-amz-date;x-amz-security-token,") != std::string::npos);
  CHECK(s[2] == "X-Amz-Security-Token: TOKEN");
}

TEST_CASE("cli: query strings are encoded and sorted", "[cp-cli]") {
  CHECK(canonical_query({{"status", "ALL"}, {"cluster", "a b/c"}}) ==
        "cluster=a%20b%2Fc&status=ALL");
  CHECK(canonical_query({}) == "");
  CHECK(uri_encode("/v1/tasks/x y", true) == "/v1/tasks/x%20y");
  CHECK(uri_encode("a~b-c_d.e", false) == "a~b-c_d.e");
}

TEST_CASE("cli: tables align like docker ps", "[cp-cli]") {
  Table t({"TASK ID", "STATUS", "IP"});
  t.add({"0123456789ab", "RUNNING", "10.88.0.2"});
  t.add({"ab", "STOPPED (exit 3)", "-"});
  CHECK(t.render() ==
        "TASK ID        STATUS             IP\n"
        "0123456789ab   RUNNING            10.88.0.2\n"
        "ab             STOPPED (exit 3)   -\n");
  CHECK(short_id("0123456789abcdef0123456789abcdef") == "0123456789ab");
}

TEST_CASE("cli: times", "[cp-cli]") {
  CHECK(human_ago(0, 100) == "-");
  CHECK(human_ago(100, 100.5) == "Less than a second ago");
  CHECK(human_ago(100, 101) == "1 second ago");
  CHECK(human_ago(100, 145) == "45 seconds ago");
  CHECK(human_ago(100, 190) == "About a minute ago");
  CHECK(human_ago(100, 100 + 5 * 60) == "5 minutes ago");
  CHECK(human_ago(100, 100 + 3600) == "About an hour ago");
  CHECK(human_ago(100, 100 + 5 * 3600) == "5 hours ago");
  CHECK(human_ago(100, 100 + 3 * 86400) == "3 days ago");
  CHECK(rfc3339(0) == "-");
  CHECK(rfc3339(1557134011.644) == "2019-05-06T09:13:31.644Z");
  CHECK(rfc3339(1.9996) == "1970-01-01T00:00:02.000Z");
}

TEST_CASE("cli: the task view reads ECS task JSON", "[cp-cli]") {
  auto t = read_task(sample_task());
  REQUIRE(t);
  CHECK(t->id == "0123456789abcdef0123456789abcdef");
  CHECK(t->cluster == "default");
  CHECK(t->definition == "web:3");
  CHECK(t->ip == "10.88.0.9");  // from the attachment
  CHECK(t->created_at == 1000.5);
  REQUIRE(t->containers.size() == 2);
  REQUIRE(t->containers[0].ports.size() == 1);
  CHECK(t->containers[0].ports[0].host_port == 18080);
  CHECK(status_text(*t) == "RUNNING (healthy)");

  json j = sample_task();
  j["containers"][0]["networkInterfaces"] = json::array({{{"privateIpv4Address", "10.88.0.7"}}});
  CHECK(read_task(j)->ip == "10.88.0.7");  // the containers' address first

  j["containers"][0]["exitCode"] = "3";
  auto bad = read_task(j);
  REQUIRE(!bad);
  CHECK(bad.error().str() ==
        "berthd answer: containers[0].exitCode: expected a 32-bit integer, got string");

  auto list = read_tasks(json{{"tasks", json::array({sample_task()})}});
  REQUIRE(list);
  CHECK(list->size() == 1);
  auto missing = read_task_answer(json::object());
  REQUIRE(!missing);
  CHECK(missing.error().str() == "berthd answer: task: required field is missing");
}

TEST_CASE("cli: ps shows live tasks newest first, -a all", "[cp-cli]") {
  auto a = *read_task(sample_task());
  auto b = a;
  b.id = "ffffffffffff0000000000000000000f";
  b.created_at = 2000;
  b.last_status = "STOPPED";
  b.health_status = "UNKNOWN";
  b.containers[0].exit_code = 0;
  b.containers[1].exit_code = 2;
  auto c = a;
  c.id = "cccccccccccc0000000000000000000c";
  c.created_at = 3000;
  c.last_status = "PENDING";
  c.health_status = "UNKNOWN";
  c.ip.clear();
  CHECK(ps_table({a, b, c}, false, 3030) ==
        "TASK ID        DEFINITION   CLUSTER   STATUS              IP          CREATED\n"
        "cccccccccccc   web:3        default   PENDING             -           30 seconds ago\n"
        "0123456789ab   web:3        default   RUNNING (healthy)   10.88.0.9   33 minutes ago\n");
  auto all = ps_selection({a, b, c}, true);
  REQUIRE(all.size() == 3);
  CHECK(all[1].id == b.id);
  CHECK(status_text(all[1]) == "STOPPED (exit 2)");
}

TEST_CASE("cli: run --wait exit status", "[cp-cli]") {
  std::string why;
  CHECK(run_exit_status(stopped({{"web", 0}, {"side", 0}}), {"web"}, &why) == 0);
  // Only essential containers count, in task order.
  CHECK(run_exit_status(stopped({{"web", 0}, {"side", 7}}), {"web"}, &why) == 0);
  CHECK(run_exit_status(stopped({{"a", 0}, {"b", 3}, {"c", 4}}), {"a", "b", "c"}, &why) == 3);
  CHECK(why == "task 0123456789abcdef0123456789abcdef: essential container b exited with code 3");
  // No definition: every container is essential.
  CHECK(run_exit_status(stopped({{"a", 0}, {"b", 137}}), {}, &why) == 137);

  auto oom = stopped({{"hog", 137}});
  oom.containers[0].reason = "OutOfMemoryError: Container killed due to memory usage";
  CHECK(run_exit_status(oom, {"hog"}, &why) == 137);
  CHECK(why ==
        "task 0123456789abcdef0123456789abcdef: essential container hog exited with code 137 "
        "(OutOfMemoryError: Container killed due to memory usage)");

  auto failed = stopped({{"web", std::nullopt}}, "TaskFailedToStart");
  failed.stopped_reason = "CannotPullContainerError: busybox:nope: not found";
  CHECK(run_exit_status(failed, {"web"}, &why) == kExitFailedToStart);
  CHECK(why ==
        "task 0123456789abcdef0123456789abcdef failed to start: CannotPullContainerError: "
        "busybox:nope: not found");
  CHECK(run_exit_status(stopped({{"web", std::nullopt}}, "UserInitiated"), {"web"}, &why) ==
        kExitFailedToStart);
}

TEST_CASE("cli: essential containers from DescribeTaskDefinition", "[cp-cli]") {
  json d{{"taskDefinition",
          {{"containerDefinitions", json::array({{{"name", "web"}},
                                                 {{"name", "side"}, {"essential", false}},
                                                 {{"name", "init"}, {"essential", true}}})}}}};
  auto defs = read_container_definitions(d);
  REQUIRE(defs);
  REQUIRE(defs->size() == 3);
  CHECK(essential_names(*defs) == std::set<std::string>{"web", "init"});
  d["taskDefinition"]["containerDefinitions"][1]["essential"] = "no";
  CHECK(!read_container_definitions(d));
}

TEST_CASE("cli: run targets", "[cp-cli]") {
  auto file = classify_run_target("examples/job.json", false);
  REQUIRE(file);
  CHECK(file->is_file);
  CHECK(classify_run_target("job", true)->is_file);  // an existing file wins
  CHECK(classify_run_target("task.json", false)->is_file);
  auto fam = classify_run_target("web:3", false);
  REQUIRE(fam);
  CHECK(!fam->is_file);
  CHECK(!classify_run_target("my_job-2", false)->is_file);
  CHECK(!classify_run_target("arn:aws:ecs:us-east-1:1:task-definition/web:3", false)->is_file);
  for (const char* bad : {"web:", "web:x", "a b", ":3", ""}) {
    auto r = classify_run_target(bad, false);
    INFO(bad);
    REQUIRE(!r);
    CHECK(exit_code_for(r.error()) == kExitUsage);
  }
  CHECK(classify_run_target("web:x", false).error().message ==
        R"(run: "web:x" is neither a file nor a task definition FAMILY[:REVISION])");
}

TEST_CASE("cli: --env", "[cp-cli]") {
  auto kv = parse_env("A=b=c");
  REQUIRE(kv);
  CHECK(kv->first == "A");
  CHECK(kv->second == "b=c");
  CHECK(parse_env("EMPTY=")->second == "");
  CHECK(!parse_env("=x"));
  CHECK(parse_env("NOEQ").error().message == R"(--env "NOEQ": expected NAME=VALUE)");

  json def{{"containerDefinitions",
            json::array(
                {{{"name", "a"}, {"environment", json::array({{{"name", "X"}, {"value", "old"}}})}},
                 {{"name", "b"}}})}};
  REQUIRE(apply_env_to_definition(def, {{"X", "new"}, {"Y", "1"}}));
  CHECK(def["containerDefinitions"][0]["environment"] ==
        json::array({{{"name", "X"}, {"value", "new"}}, {{"name", "Y"}, {"value", "1"}}}));
  CHECK(def["containerDefinitions"][1]["environment"] ==
        json::array({{{"name", "X"}, {"value", "new"}}, {{"name", "Y"}, {"value", "1"}}}));
  json no_containers = json::object();
  auto r = apply_env_to_definition(no_containers, {{"X", "1"}});
  REQUIRE(!r);
  CHECK(r.error().str() ==
        "task definition: containerDefinitions: expected an array of containers");

  CHECK(env_overrides({"a", "b"}, {{"K", "V"}}) == json::parse(R"({"containerOverrides": [
          {"name": "a", "environment": [{"name": "K", "value": "V"}]},
          {"name": "b", "environment": [{"name": "K", "value": "V"}]}]})"));
}

TEST_CASE("cli: task references and id prefixes", "[cp-cli]") {
  CHECK(is_full_task_ref("0123456789abcdef0123456789abcdef"));
  CHECK(is_full_task_ref(kTaskArn));
  CHECK(!is_full_task_ref("0123456789ab"));
  CHECK(!is_full_task_ref("0123456789abcdef0123456789abcdeg"));

  std::vector<TaskView> tasks(3);
  tasks[0].id = "aaaa0000000000000000000000000001";
  tasks[1].id = "aaaa0000000000000000000000000002";
  tasks[2].id = "bbbb0000000000000000000000000003";
  CHECK(*match_task_prefix("bbbb", tasks) == tasks[2].id);
  CHECK(*match_task_prefix("aaaa0000000000000000000000000001", tasks) == tasks[0].id);
  CHECK(match_task_prefix("aaaa", tasks).error().str() ==
        "task: \"aaaa\" matches 2 tasks: aaaa0000000000000000000000000001, "
        "aaaa0000000000000000000000000002");
  CHECK(match_task_prefix("cc", tasks).error().str() ==
        "ResourceNotFoundException: no task matches \"cc\"");
  CHECK(exit_code_for(match_task_prefix("", tasks).error()) == kExitUsage);
}

TEST_CASE("cli: CRI log lines", "[cp-cli]") {
  auto l = parse_cri_line("2026-12-05T02:00:00.000000001Z stderr F oops: a b");
  REQUIRE(l);
  CHECK(l->time == "2026-12-05T02:00:00.000000001Z");
  CHECK(l->is_stderr);
  CHECK(!l->partial);
  CHECK(l->text == "oops: a b");
  auto empty = parse_cri_line("2026-12-05T02:00:00Z stdout F");
  REQUIRE(empty);
  CHECK(empty->text == "");
  CHECK(parse_cri_line("2026-12-05T02:00:00Z stdout P part")->partial);
  CHECK(!parse_cri_line("plain text"));
  CHECK(!parse_cri_line("t stdin F x"));

  CHECK(render_log_line("2026-12-05T02:00:00Z stdout F hi", false).text == "hi\n");
  CHECK(render_log_line("2026-12-05T02:00:00Z stdout P hi", false).text == "hi");
  CHECK(render_log_line("2026-12-05T02:00:00Z stderr F hi", true).text ==
        "2026-12-05T02:00:00Z hi\n");
  CHECK(render_log_line("2026-12-05T02:00:00Z stderr F hi", true).is_stderr);
  CHECK(render_log_line("not cri", false).text == "not cri\n");

  LineSplitter s;
  std::vector<std::string> lines;
  auto emit = [&lines](std::string_view line) { lines.emplace_back(line); };
  s.feed("one\ntw", emit);
  s.feed("o\n", emit);
  s.feed("thr", emit);
  s.feed("ee", emit);
  CHECK(lines == std::vector<std::string>{"one", "two"});
  s.finish(emit);
  CHECK(lines == std::vector<std::string>{"one", "two", "three"});
}

TEST_CASE("cli: clusters table and describe page", "[cp-cli]") {
  json d{{"clusters", json::array({{{"clusterName", "web"},
                                    {"status", "ACTIVE"},
                                    {"runningTasksCount", 12},
                                    {"pendingTasksCount", 1},
                                    {"activeServicesCount", 0}},
                                   {{"clusterName", "default"}, {"status", "ACTIVE"}}})}};
  CHECK(*clusters_table(d) ==
        "NAME      STATUS   RUNNING   PENDING   SERVICES\n"
        "default   ACTIVE   0         0         0\n"
        "web       ACTIVE   12        1         0\n");

  auto t = *read_task(sample_task());
  t.containers[1].exit_code = 0;
  std::string page = describe_text(t, 1060.5);
  CHECK(page.starts_with("Task:           0123456789abcdef0123456789abcdef\n"));
  CHECK(page.find("Status:         RUNNING (desired RUNNING)\n") != std::string::npos);
  CHECK(page.find("IP:             10.88.0.9\n") != std::string::npos);
  CHECK(page.find("Created:        1970-01-01T00:16:40.500Z (1 minute ago)\n") ==
        std::string::npos);
  CHECK(page.find("Created:        1970-01-01T00:16:40.500Z (About a minute ago)\n") !=
        std::string::npos);
  CHECK(page.find("  web\n    Image:      busybox:latest\n    Status:     RUNNING\n"
                  "    Exit code:  -\n") != std::string::npos);
  CHECK(page.find("    Ports:      18080 -> 8080/tcp\n") != std::string::npos);
  CHECK(page.find("  sidecar\n") != std::string::npos);
  CHECK(page.find("    Exit code:  0\n") != std::string::npos);
}

namespace {

// A GET /v1/usage answer as usage_report_json writes it.
json usage_line(std::string key, int64_t tasks, int64_t billed, int64_t vcpu_ms, int64_t gb_ms,
                int64_t cpu_usec, int64_t rx, int64_t tx, int64_t micro_usd) {
  return {{"key", std::move(key)},
          {"records", tasks},
          {"tasks", tasks},
          {"billedSeconds", billed},
          {"vcpuMilliSeconds", vcpu_ms},
          {"gbMilliSeconds", gb_ms},
          {"cpuUsec", cpu_usec},
          {"memoryKibSeconds", 0},
          {"memoryPeakBytes", 0},
          {"netRxBytes", rx},
          {"netTxBytes", tx},
          {"amountMicroUsd", micro_usd},
          {"amountUsd", "ignored: the CLI formats the integer"}};
}

json sample_usage() {
  return {{"account", "000000000001"},
          {"groupBy", "family"},
          {"lineItems",
           json::array({usage_line("job", 2, 120, 60000, 120000, 1234567, 2048, 512, 2428),
                        usage_line("web, \"api\"", 1, 76, 19000, 38000, 999, 1536, 1258291, 411)})},
          {"total", usage_line("total", 3, 196, 79000, 158000, 1235566, 3584, 1258803, 2839)}};
}

}  // namespace

TEST_CASE("cli: integer money and quantity formats", "[cp-cli]") {
  CHECK(format_micro_usd(0) == "0.000000");
  CHECK(format_micro_usd(411) == "0.000411");
  CHECK(format_micro_usd(12345678) == "12.345678");
  CHECK(format_micro_usd(-5) == "-0.000005");
  CHECK(format_micro_usd(INT64_MIN) == "-9223372036854.775808");
  CHECK(fixed_point(1234, 3) == "1.234");
  CHECK(fixed_point(5, 3) == "0.005");
  CHECK(fixed_point(7, 0) == "7");
  CHECK(human_bytes(0) == "0 B");
  CHECK(human_bytes(1023) == "1023 B");
  CHECK(human_bytes(1024) == "1.0 KiB");
  CHECK(human_bytes(1536) == "1.5 KiB");
  CHECK(human_bytes(1048575) == "1.0 MiB");  // 1023.999 KiB rounds up to the next unit
  CHECK(human_bytes(1258291) == "1.2 MiB");
  CHECK(human_bytes(int64_t{5} << 40) == "5.0 TiB");
}

TEST_CASE("cli: berth usage as a table", "[cp-cli]") {
  auto u = read_usage(sample_usage());
  REQUIRE(u);
  CHECK(u->account == "000000000001");
  CHECK(u->group_by == "family");
  REQUIRE(u->lines.size() == 2);
  CHECK(u->total.amount_micro_usd == 2839);
  CHECK(
      usage_table(*u) ==
      "KEY          TASKS   BILLED-S   vCPU-S   GB-S      CPU-USED-S   NET-IN    NET-OUT   AMOUNT\n"
      "job          2       120        60.000   120.000   1.235        2.0 KiB   512 B     "
      "0.002428\n"
      "web, \"api\"   1       76         19.000   38.000    0.001        1.5 KiB   1.2 MiB   "
      "0.000411\n"
      "TOTAL        3       196        79.000   158.000   1.236        3.5 KiB   1.2 MiB   "
      "0.002839\n");

  // No line at all: the TOTAL row alone. A service-less line shows "-".
  json empty = sample_usage();
  empty["lineItems"] = json::array({usage_line("", 1, 60, 15000, 30000, 0, 0, 0, 0)});
  auto e = read_usage(empty);
  REQUIRE(e);
  CHECK(usage_table(*e).find("\n-     ") != std::string::npos);

  json bad = sample_usage();
  bad["lineItems"][1]["amountMicroUsd"] = 0.000411;  // a float is never money
  auto b = read_usage(bad);
  REQUIRE(!b);
  CHECK(b.error().str() ==
        "berthd answer: lineItems[1].amountMicroUsd: expected a 64-bit integer, got 0.000411");
  json no_total = sample_usage();
  no_total.erase("total");
  REQUIRE(!read_usage(no_total));
}

TEST_CASE("cli: berth usage -o csv is RFC 4180", "[cp-cli]") {
  auto u = read_usage(sample_usage());
  REQUIRE(u);
  CHECK(usage_csv(*u) ==
        "key,tasks,billed_seconds,vcpu_seconds,gb_seconds,cpu_used_seconds,net_in_bytes,"
        "net_out_bytes,amount_usd\r\n"
        "job,2,120,60.000,120.000,1.235,2048,512,0.002428\r\n"
        "\"web, \"\"api\"\"\",1,76,19.000,38.000,0.001,1536,1258291,0.000411\r\n");
  CHECK(csv_field("plain") == "plain");
  CHECK(csv_field("a\nb") == "\"a\nb\"");
  CHECK(csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
}

TEST_CASE("cli: berth usage verify lines and exit codes", "[cp-cli]") {
  std::string head(64, 'a');
  json intact = {{"account", "000000000001"},
                 {"records", 3},
                 {"ok", true},
                 {"head", head},
                 {"totalMicroUsd", 2839},
                 {"problems", json::array()}};
  auto v = read_verify(intact);
  REQUIRE(v);
  int status = -1;
  CHECK(verify_text(*v, &status) ==
        "ledger of account 000000000001: 3 records, chain intact, head " + head + "\n");
  CHECK(status == 0);

  json broken = intact;
  broken["ok"] = false;
  broken["problems"] = json::array({{{"seq", 41},
                                     {"taskId", "0123456789abcdef0123456789abcdef"},
                                     {"what", "hash does not match its contents"}},
                                    {{"seq", 42},
                                     {"taskId", "fedcba9876543210fedcba9876543210"},
                                     {"what", "prev_hash does not match record 41"}}});
  v = read_verify(broken);
  REQUIRE(v);
  status = -1;
  CHECK(verify_text(*v, &status) ==
        "ledger of account 000000000001: record 41 (task 0123456789abcdef0123456789abcdef): hash "
        "does not match its contents\n"
        "ledger of account 000000000001: record 42 (task fedcba9876543210fedcba9876543210): "
        "prev_hash does not match record 41\n");
  CHECK(status == 1);

  // "ok": false without a listed problem is still a failure.
  broken["problems"] = json::array();
  v = read_verify(broken);
  REQUIRE(v);
  verify_text(*v, &status);
  CHECK(status == 1);

  json missing_ok = intact;
  missing_ok.erase("ok");
  REQUIRE(!read_verify(missing_ok));
}

TEST_CASE("cli: describe shows the task's bill", "[cp-cli]") {
  auto plain = read_task(sample_task());
  REQUIRE(plain);
  CHECK(!plain->billing);
  CHECK(describe_text(*plain, 1060.5).find("Billed:") == std::string::npos);

  json j = sample_task();
  j["berthBilling"] = {{"mode", "reserved"},
                       {"billedSeconds", 76},
                       {"amountMicroUsd", 411},
                       {"amountUsd", "0.000411"},
                       {"final", false}};
  auto t = read_task(j);
  REQUIRE(t);
  REQUIRE(t->billing);
  CHECK(describe_text(*t, 1060.5).find("Billed:         76 s, $0.000411 (running)\n") !=
        std::string::npos);
  j["berthBilling"]["final"] = true;
  j["berthBilling"]["amountMicroUsd"] = 1234567;
  CHECK(describe_text(*read_task(j), 1060.5).find("Billed:         76 s, $1.234567 (final)\n") !=
        std::string::npos);
  j["berthBilling"]["amountMicroUsd"] = "411";
  auto bad = read_task(j);
  REQUIRE(!bad);
  CHECK(bad.error().str() ==
        "berthd answer: berthBilling.amountMicroUsd: expected a 64-bit integer, got string");
}

// ---------------------------------------------------------------------------
// `berth services`: the service view (pure), then the whole command line
// (run_cli: CLI11 parsing, the HTTP client, output and exit codes) against
// an in-process berthd: the router and the supervisor over the real SQLite
// store and the fake agent (cp_fakes.h, which starts tasks at once), served
// by the real HTTP transport on a unix socket in a temp dir.

namespace {

json sample_service() {
  auto j = json::parse(R"({
    "serviceArn": "arn:aws:ecs:us-east-1:000000000001:service/default/web",
    "serviceName": "web",
    "clusterArn": "arn:aws:ecs:us-east-1:000000000001:cluster/default",
    "status": "ACTIVE", "desiredCount": 3, "runningCount": 2, "pendingCount": 1,
    "launchType": "FARGATE",
    "taskDefinition": "arn:aws:ecs:us-east-1:000000000001:task-definition/web:4",
    "deploymentConfiguration": {"maximumPercent": 150, "minimumHealthyPercent": 50,
      "deploymentCircuitBreaker": {"enable": true, "rollback": true}},
    "healthCheckGracePeriodSeconds": 30,
    "createdAt": 1000.25,
    "loadBalancers": [{"containerName": "app", "containerPort": 80, "berthListenerPort": 18080}],
    "berthEndpoint": {"name": "web.default.berth", "address": "10.88.255.1",
                      "containerPort": 80, "listenerPort": 18080},
    "deployments": [
      {"id": "ecs-svc/1111111111111111111", "status": "ACTIVE",
       "taskDefinition": "arn:aws:ecs:us-east-1:000000000001:task-definition/web:3",
       "desiredCount": 3, "runningCount": 1, "pendingCount": 0, "failedTasks": 0,
       "rolloutState": "COMPLETED", "createdAt": 1000.25, "updatedAt": 1010},
      {"id": "ecs-svc/2222222222222222222", "status": "PRIMARY",
       "taskDefinition": "arn:aws:ecs:us-east-1:000000000001:task-definition/web:4",
       "desiredCount": 3, "runningCount": 1, "pendingCount": 1, "failedTasks": 2,
       "rolloutState": "IN_PROGRESS",
       "rolloutStateReason": "ECS deployment ecs-svc/2222222222222222222 in progress.",
       "createdAt": 1050, "updatedAt": 1055}],
    "events": [
      {"id": "e3", "createdAt": 1055, "message": "(service web) has started 1 tasks: (task c)."},
      {"id": "e2", "createdAt": 1010, "message": "(service web) has reached a steady state."},
      {"id": "e1", "createdAt": 1001, "message": "(service web) has started 3 tasks."}],
    "tags": [{"key": "team", "value": "a"}]
  })",
                       nullptr, false);
  REQUIRE(!j.is_discarded());
  return j;
}

}  // namespace

TEST_CASE("cli services: the service view reads ECS service JSON", "[cp-cli][svc-cli]") {
  auto s = read_service(sample_service());
  REQUIRE(s);
  CHECK(s->name == "web");
  CHECK(s->cluster == "default");
  CHECK(s->definition == "web:4");
  CHECK(s->maximum_percent == 150);
  CHECK(s->rollback);
  CHECK(s->grace_period_s == 30);
  REQUIRE(s->deployments.size() == 2);
  CHECK(s->deployments[0].status == "PRIMARY");  // first, whatever the answer's order
  CHECK(s->deployments[0].definition == "web:4");
  REQUIRE(s->endpoint);
  CHECK(s->endpoint->address == "10.88.255.1");
  CHECK(rollout_text(*s) == "IN_PROGRESS (2 deployments)");
  CHECK(endpoint_text(*s) == "web.default.berth 10.88.255.1:80, host :18080");

  json j = sample_service();
  j["deployments"][1]["failedTasks"] = "2";
  auto bad = read_service(j);
  REQUIRE(!bad);
  CHECK(bad.error().str() ==
        "berthd answer: deployments[1].failedTasks: expected a 32-bit integer, got string");
  CHECK(read_service_answer(json::object()).error().str() ==
        "berthd answer: service: required field is missing");

  json plain = sample_service();
  plain.erase("berthEndpoint");
  plain["serviceName"] = "api";
  plain["deployments"].erase(0);
  auto p = read_service(plain);
  REQUIRE(p);
  CHECK(endpoint_text(*p) == "-");
  CHECK(services_table({*s, *p}) ==
        "NAME   STATUS   DESIRED   RUNNING   PENDING   TASK-DEFINITION   ROLLOUT                 "
        "      ENDPOINT\n"
        "api    ACTIVE   3         2         1         web:4             IN_PROGRESS             "
        "      -\n"
        "web    ACTIVE   3         2         1         web:4             IN_PROGRESS (2 "
        "deployments)   web.default.berth 10.88.255.1:80, host :18080\n");
}

TEST_CASE("cli services: the describe page", "[cp-cli][svc-cli]") {
  auto s = read_service(sample_service());
  REQUIRE(s);
  std::string page = service_describe_text(*s, 1060.25, 2);
  INFO(page);
  CHECK(page.starts_with("Service:         web\n"));
  CHECK(page.find("Status:          ACTIVE\n") != std::string::npos);
  CHECK(page.find("Task definition: web:4\n") != std::string::npos);
  CHECK(page.find("Tasks:           3 desired, 2 running, 1 pending\n") != std::string::npos);
  CHECK(page.find("Deployment:      max 150%, min healthy 50%, circuit breaker on (rollback)\n") !=
        std::string::npos);
  CHECK(page.find("Grace period:    30 s\n") != std::string::npos);
  CHECK(page.find("Created:         1970-01-01T00:16:40.250Z (About a minute ago)\n") !=
        std::string::npos);
  CHECK(page.find("Tags:            team=a\n") != std::string::npos);
  CHECK(page.find("Endpoint:        web.default.berth\n"
                  "  Address:       10.88.255.1:80\n"
                  "  Host port:     18080\n") != std::string::npos);
  CHECK(page.find("Load balancers:\n  app:80, host port 18080\n") != std::string::npos);
  CHECK(
      page.find("Deployments:\n"
                "  ID                            STATUS    TASK-DEFINITION   ROLLOUT       DESIRED"
                "   RUNNING   PENDING   FAILED   UPDATED\n"
                "  ecs-svc/2222222222222222222   PRIMARY   web:4             IN_PROGRESS   3    "
                "     1         1         2        5 seconds ago\n"
                "  ecs-svc/1111111111111111111   ACTIVE    web:3             COMPLETED     3    "
                "     1         0         0        50 seconds ago\n"
                "  ecs-svc/2222222222222222222: ECS deployment ecs-svc/2222222222222222222 in "
                "progress.\n") != std::string::npos);
  // The last 2 events, oldest first.
  CHECK(
      page.ends_with("Events:\n"
                     "  1970-01-01T00:16:50.000Z  (service web) has reached a steady state.\n"
                     "  1970-01-01T00:17:35.000Z  (service web) has started 1 tasks: (task c).\n"));
}

TEST_CASE("cli services: when --wait is done", "[cp-cli][svc-cli]") {
  auto s = *read_service(sample_service());
  std::string why;
  CHECK(steady_state(s, "", &why) == WaitState::waiting);
  CHECK(progress_line(s) ==
        "web: ACTIVE, 2/3 running, 1 pending, rollout IN_PROGRESS (2 deployments)");
  s.deployments.pop_back();
  s.deployments[0].rollout_state = "COMPLETED";
  s.running = 3;
  CHECK(steady_state(s, "", &why) == WaitState::waiting);  // one pending
  s.pending = 0;
  CHECK(steady_state(s, "", &why) == WaitState::done);

  auto f = *read_service(sample_service());
  f.deployments[0].rollout_state = "FAILED";
  f.deployments[0].rollout_state_reason = "tasks failed to start";
  CHECK(steady_state(f, "ecs-svc/2222222222222222222", &why) == WaitState::failed);
  CHECK(why == "deployment ecs-svc/2222222222222222222 failed: tasks failed to start");
  // Another deployment's failure is not the watched one's.
  CHECK(steady_state(f, "ecs-svc/1111111111111111111", &why) == WaitState::waiting);
  f.status = "DRAINING";
  CHECK(steady_state(f, "ecs-svc/1111111111111111111", &why) == WaitState::failed);
  CHECK(why == "service web is DRAINING");
}

TEST_CASE("cli services: request bodies from the flags", "[cp-cli][svc-cli]") {
  ServiceCreateOptions c;
  c.name = "web";
  c.task_definition = "web:2";
  c.desired_count = 2;
  c.container_name = "app";
  c.container_port = 80;
  c.listener_port = 18080;
  c.deployment.circuit_breaker = true;
  c.deployment.rollback = true;
  c.tags = {"team=a", "env=x=y"};
  auto in = create_service_input(c);
  REQUIRE(in);
  CHECK(*in == json::parse(R"({"serviceName": "web", "taskDefinition": "web:2",
      "desiredCount": 2,
      "loadBalancers": [{"containerName": "app", "containerPort": 80, "berthListenerPort": 18080}],
      "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": true, "rollback": true}},
      "tags": [{"key": "team", "value": "a"}, {"key": "env", "value": "x=y"}]})"));

  auto bad = [](ServiceCreateOptions o) {
    auto r = create_service_input(o);
    REQUIRE(!r);
    CHECK(exit_code_for(r.error()) == kExitUsage);
    return r.error().message;
  };
  ServiceCreateOptions b = c;
  b.container_port = 0;
  CHECK(bad(b) == "services create: --container-name and --container-port go together");
  b = c;
  b.container_name.clear();
  b.container_port = 0;
  CHECK(bad(b) == "services create: --listener-port needs --container-name and --container-port");
  b = c;
  b.deployment.circuit_breaker = false;
  CHECK(bad(b) == "--rollback needs --circuit-breaker");
  b = c;
  b.tags = {"novalue"};
  CHECK(bad(b) == R"(--tag "novalue": expected KEY=VALUE)");
  b = c;
  b.task_definition = "web:x";
  CHECK(
      bad(b) ==
      R"(services create: --task-definition "web:x": expected FAMILY[:REVISION] or a task definition ARN)");

  // Update: the deployment flags change the current configuration member by member.
  ServiceUpdateOptions u;
  u.name = "web";
  u.cluster = "prod";
  u.deployment.maximum_percent = 300;
  auto current = *read_service(sample_service());
  auto up = update_service_input(u, &current);
  REQUIRE(up);
  CHECK(*up == json::parse(R"({"service": "web", "cluster": "prod",
      "deploymentConfiguration": {"maximumPercent": 300, "minimumHealthyPercent": 50,
        "deploymentCircuitBreaker": {"enable": true, "rollback": true}}})"));
  u.deployment = {};
  u.deployment.no_circuit_breaker = true;
  CHECK(
      (*update_service_input(u, &current))["deploymentConfiguration"]["deploymentCircuitBreaker"] ==
      json::parse(R"({"enable": false, "rollback": false})"));
  u.deployment = {};
  u.force_new_deployment = true;
  u.desired_count = 0;
  CHECK(
      *update_service_input(u, nullptr) ==
      json::parse(
          R"({"service": "web", "cluster": "prod", "desiredCount": 0, "forceNewDeployment": true})"));
  u.force_new_deployment = false;
  u.desired_count = -1;
  auto nothing = update_service_input(u, nullptr);
  REQUIRE(!nothing);
  CHECK(exit_code_for(nothing.error()) == kExitUsage);
}

namespace {

constexpr const char* kSvcAccount = "000000000001";

// berthd in-process: ControlPlane (router, supervisor) + the HTTP transport
// on a unix socket, and run_cli() as `berth -H unix://SOCK ...`.
struct Berthd {
  berth::test::TempDir dir;
  std::unique_ptr<berth::cp::SqliteStore> store;
  berth::cp::test::FakeAgent agent;
  std::unique_ptr<berth::cp::ControlPlane> cp;
  std::unique_ptr<berth::cp::HttpServer> server;

  Berthd() {
    // An image whose launch always fails, one whose containers never start.
    agent.scripts["fail:1"].fail_launch = "CannotPullContainerError: fail:1: not found";
    agent.scripts["hang:1"].start = false;
    auto s = berth::cp::SqliteStore::open(dir / "berthd.db");
    REQUIRE(s);
    store = std::move(*s);
    berth::cp::ControlPlaneOptions o;
    o.tasks.region = "us-test-1";
    o.tasks.capacity = {65536, 262144};
    o.tasks.worker_threads = 2;
    o.api_threads = 2;
    o.supervisor.plan.backoff_base = std::chrono::seconds(0);  // replace failed tasks at once
    o.supervisor.resync = std::chrono::milliseconds(200);
    cp = std::make_unique<berth::cp::ControlPlane>(*store, agent, o);
    REQUIRE(cp->recover());
    cp->start();
    berth::cp::ServerConfig cfg;
    cfg.unix_path = dir / "berthd.sock";
    cfg.io_threads = 2;
    auto srv = berth::cp::HttpServer::start(
        cfg, cp->handler(),
        [](const berth::cp::HttpRequest&) -> berth::Result<std::string> { return kSvcAccount; });
    REQUIRE(srv);
    server = std::move(*srv);
    for (const char* image : {"web:1", "fail:1", "hang:1"}) {
      std::string family = std::string(image).substr(0, std::string(image).find(':'));
      std::string file = dir / (family + ".json");
      std::ofstream(file) << json{{"family", family},
                                  {"containerDefinitions",
                                   {{{"name", "app"},
                                     {"image", image},
                                     {"memory", 64},
                                     {"portMappings", {{{"containerPort", 80}}}}}}}}
                                 .dump();
      auto r = run({"register", file});
      INFO(r.err);
      REQUIRE(r.code == 0);
    }
  }
  ~Berthd() {
    server->stop();
    cp->tasks().drain();
    agent.flush();
    cp->shutdown();
  }

  struct Run {
    int code = -1;
    std::string out, err;
  };

  Run run(std::vector<std::string> args) {
    std::vector<std::string> all{"berth", "-H", "unix://" + dir / "berthd.sock"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<const char*> argv;
    for (const auto& a : all) argv.push_back(a.c_str());
    char *out_buf = nullptr, *err_buf = nullptr;
    size_t out_len = 0, err_len = 0;
    FILE* out = open_memstream(&out_buf, &out_len);
    FILE* err = open_memstream(&err_buf, &err_len);
    REQUIRE(out != nullptr);
    REQUIRE(err != nullptr);
    Run r;
    r.code = run_cli(static_cast<int>(argv.size()), argv.data(), out, err);
    std::fclose(out);
    std::fclose(err);
    r.out.assign(out_buf, out_len);
    r.err.assign(err_buf, err_len);
    std::free(out_buf);
    std::free(err_buf);
    return r;
  }

  // The command must succeed: its stdout.
  std::string ok(std::vector<std::string> args) {
    auto r = run(args);
    INFO("berth " << fmt::format("{}", fmt::join(args, " ")) << "\nstdout: " << r.out
                  << "\nstderr: " << r.err);
    REQUIRE(r.code == 0);
    return r.out;
  }

  json ok_json(std::vector<std::string> args) {
    args.insert(args.begin(), {"-o", "json"});
    auto j = json::parse(ok(args), nullptr, false);
    REQUIRE(j.is_object());
    return j;
  }

  json service(const std::string& name) {
    return ok_json({"services", "describe", name})["service"];
  }
};

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("cli services: create, ls, describe, scale, update, rm against berthd",
          "[cp-cli][svc-cli]") {
  Berthd d;
  std::string out =
      d.ok({"services", "create", "web", "--task-definition", "web", "--desired-count", "2",
            "--container-name", "app", "--container-port", "80", "--listener-port", "18080",
            "--tag", "team=a", "--wait", "--timeout", "60"});
  INFO(out);
  // Progress lines, the last one steady.
  CHECK(out.ends_with("web: ACTIVE, 2/2 running, 0 pending, rollout COMPLETED\n"));

  // The endpoint is set by the supervisor once the service has its VIP.
  REQUIRE(berth::cp::test::eventually([&] { return d.service("web").contains("berthEndpoint"); }));
  json svc = d.service("web");
  std::string vip = svc["berthEndpoint"]["address"];
  CHECK(svc["berthEndpoint"]["listenerPort"] == 18080);
  CHECK(svc["loadBalancers"][0]["berthListenerPort"] == 18080);
  CHECK(svc["tags"] == json::parse(R"([{"key": "team", "value": "a"}])"));

  std::string ls = d.ok({"services", "ls"});
  CHECK(ls ==
        "NAME   STATUS   DESIRED   RUNNING   PENDING   TASK-DEFINITION   ROLLOUT     ENDPOINT\n"
        "web    ACTIVE   2         2         0         web:1             COMPLETED   "
        "web.default.berth " +
            vip + ":80, host :18080\n");
  json lsj = d.ok_json({"services", "ls"});
  REQUIRE(lsj["services"].size() == 1);
  CHECK(lsj["services"][0]["serviceName"] == "web");
  CHECK(lsj["services"][0]["runningCount"] == 2);
  CHECK(lsj["failures"].empty());
  // Global options after the subcommand too.
  CHECK(json::parse(d.ok({"services", "ls", "-o", "json"}))["services"].size() == 1);

  std::string page = d.ok({"services", "describe", "web"});
  INFO(page);
  CHECK(page.starts_with("Service:         web\n"));
  CHECK(contains(page, "Tasks:           2 desired, 2 running, 0 pending\n"));
  CHECK(contains(page, "Endpoint:        web.default.berth\n  Address:       " + vip +
                           ":80\n  Host port:     18080\n"));
  CHECK(contains(page, "Load balancers:\n  app:80, host port 18080\n"));
  std::string first_deployment = svc["deployments"][0]["id"];
  CHECK(contains(page, "  " + first_deployment + "   PRIMARY   web:1             COMPLETED"));
  CHECK(contains(page, "(service web) has reached a steady state.\n"));
  CHECK(contains(page, "Tags:            team=a\n"));

  // scale 2 -> 3 (and `berth services scale` prints the name without --wait).
  CHECK(d.ok({"services", "scale", "web", "3", "--wait", "--timeout", "60"})
            .ends_with("web: ACTIVE, 3/3 running, 0 pending, rollout COMPLETED\n"));
  CHECK(d.service("web")["runningCount"] == 3);
  CHECK(d.ok({"services", "scale", "web", "1"}) == "web\n");
  REQUIRE(berth::cp::test::eventually([&] {
    json s = d.service("web");
    return s["runningCount"] == 1 && s["pendingCount"] == 0;
  }));

  // --force-new-deployment: UpdateService answers the new PRIMARY beside
  // the old one; the rollout then completes with the new one alone.
  json up = d.ok_json({"services", "update", "web", "--force-new-deployment"});
  REQUIRE(up["service"]["deployments"].size() == 2);
  CHECK(up["service"]["deployments"][0]["status"] == "PRIMARY");
  CHECK(up["service"]["deployments"][0]["rolloutState"] == "IN_PROGRESS");
  std::string second = up["service"]["deployments"][0]["id"];
  CHECK(second != first_deployment);
  CHECK(up["service"]["deployments"][1]["id"] == first_deployment);
  std::string waited =
      d.ok({"services", "update", "web", "--max-percent", "300", "--wait", "--timeout", "60"});
  CHECK(waited.ends_with("web: ACTIVE, 1/1 running, 0 pending, rollout COMPLETED\n"));
  svc = d.service("web");
  REQUIRE(svc["deployments"].size() == 1);
  CHECK(svc["deployments"][0]["id"] == second);
  CHECK(svc["deploymentConfiguration"]["maximumPercent"] == 300);
  CHECK(svc["deploymentConfiguration"]["minimumHealthyPercent"] == 100);  // kept

  // A new revision rolls out; `berth clusters` counts the service.
  std::string file = d.dir / "web2.json";
  std::ofstream(file) << json{{"family", "web"},
                              {"containerDefinitions",
                               {{{"name", "app"},
                                 {"image", "web:2"},
                                 {"memory", 64},
                                 {"portMappings", {{{"containerPort", 80}}}}}}}}
                             .dump();
  CHECK(d.ok({"register", file}) == "web:2\n");
  CHECK(d.ok({"services", "update", "web", "-t", "web:2", "-n", "2", "--wait", "--timeout", "60"})
            .ends_with("web: ACTIVE, 2/2 running, 0 pending, rollout COMPLETED\n"));
  CHECK(
      contains(d.ok({"services", "ls"}), "web    ACTIVE   2         2         0         web:2   "));
  CHECK(d.ok({"clusters"}) ==
        "NAME      STATUS   RUNNING   PENDING   SERVICES\n"
        "default   ACTIVE   2         0         1\n");

  // rm: refused while scaled above 0, with the way out named.
  auto refused = d.run({"services", "rm", "web"});
  CHECK(refused.code == 1);
  CHECK(refused.err ==
        "berth: InvalidParameterException: The service cannot be stopped while it is scaled above "
        "0. (use `berth services rm --force web`, or `berth services scale web 0` first)\n");
  std::string rm = d.ok({"services", "rm", "web", "--force", "--wait", "--timeout", "60"});
  CHECK(rm.ends_with("web: INACTIVE, 0/0 running, 0 pending, rollout COMPLETED\n"));
  CHECK(d.ok({"services", "ls"}) ==
        "NAME   STATUS   DESIRED   RUNNING   PENDING   TASK-DEFINITION   ROLLOUT   ENDPOINT\n");
  CHECK(d.service("web")["status"] == "INACTIVE");
}

TEST_CASE("cli services: errors and bad flags", "[cp-cli][svc-cli]") {
  Berthd d;
  // Before any service or task, the default cluster does not exist yet.
  auto no_cluster = d.run({"services", "ls"});
  CHECK(no_cluster.code == 1);
  CHECK(no_cluster.err == "berth: ClusterNotFoundException: Cluster not found.\n");
  CHECK(d.ok({"services", "create", "web", "-t", "web", "-n", "0"}) == "web\n");
  auto nope = d.run({"services", "describe", "nope"});
  CHECK(nope.code == 1);
  CHECK(nope.err ==
        "berth: ServiceNotFoundException: service \"nope\" not found in cluster default "
        "(MISSING)\n");
  auto scale = d.run({"services", "scale", "nope", "2"});
  CHECK(scale.code == 1);
  CHECK(scale.err == "berth: ServiceNotFoundException: Service not found.\n");
  auto rm = d.run({"services", "rm", "nope", "--force"});
  CHECK(rm.code == 1);
  CHECK(contains(rm.err, "berth: ServiceNotFoundException: "));

  // berthd's own checks, named as ECS names them.
  auto port = d.run({"services", "create", "x", "-t", "web", "-n", "1", "--container-name", "app",
                     "--container-port", "81"});
  CHECK(port.code == 1);
  CHECK(port.err.starts_with("berth: InvalidParameterException: "));
  auto family = d.run({"services", "create", "x", "-t", "nosuchfamily", "-n", "1"});
  CHECK(family.code == 1);
  CHECK(family.err.starts_with("berth: "));

  // Usage errors (exit 2) name the flag.
  struct Bad {
    std::vector<std::string> args;
    std::string err;
  };
  for (const auto& b : std::vector<Bad>{
           {{"services", "create", "x", "-t", "web", "-n", "-1"}, "--desired-count"},
           {{"services", "create", "x", "-t", "web"}, "--desired-count is required"},
           {{"services", "create", "x", "-t", "web", "-n", "1", "--max-percent", "50"},
            "--max-percent"},
           {{"services", "create", "x", "-t", "web", "-n", "1", "--container-port", "70000"},
            "--container-port"},
           {{"services", "create", "x", "-t", "web:x", "-n", "1"},
            "berth: services create: --task-definition \"web:x\": expected FAMILY[:REVISION] or a "
            "task definition ARN\n"},
           {{"services", "create", "x", "-t", "web", "-n", "1", "--container-name", "app"},
            "berth: services create: --container-name and --container-port go together\n"},
           {{"services", "create", "x", "-t", "web", "-n", "1", "--tag", "novalue"},
            "berth: --tag \"novalue\": expected KEY=VALUE\n"},
           {{"services", "create", "x", "-t", "web", "-n", "1", "--rollback"},
            "berth: --rollback needs --circuit-breaker\n"},
           {{"services", "update", "x"}, "berth: services update: nothing to change"},
           {{"services", "scale", "x", "many"}, "COUNT"},
           {{"services", "scale", "x"}, "COUNT is required"},
           {{"services", "create", "x", "-t", "web", "-n", "1", "--wait", "--timeout", "0"},
            "--timeout"},
           {{"services", "frobnicate"}, "A subcommand is required"},
       }) {
    auto r = d.run(b.args);
    INFO(fmt::format("{}", fmt::join(b.args, " ")) << " -> " << r.code << " " << r.err);
    CHECK(r.code == kExitUsage);
    CHECK(contains(r.err, b.err));
  }
  // None of them created anything.
  CHECK(d.ok_json({"services", "ls"})["services"].size() == 1);
}

TEST_CASE("cli services: --wait fails on a FAILED rollout and on its timeout",
          "[cp-cli][svc-cli]") {
  Berthd d;
  // Every launch fails: the circuit breaker trips after 3 failed tasks.
  auto broken = d.run({"services", "create", "broken", "-t", "fail", "-n", "1", "--circuit-breaker",
                       "--wait", "--timeout", "120"});
  INFO(broken.out << broken.err);
  CHECK(broken.code == 1);
  CHECK(broken.err.starts_with("berth: service broken: deployment ecs-svc/"));
  CHECK(contains(broken.err, " failed: "));
  json svc = d.service("broken");
  CHECK(svc["deployments"][0]["rolloutState"] == "FAILED");

  // Containers that never start: never steady.
  auto slow =
      d.run({"services", "create", "slow", "-t", "hang", "-n", "1", "--wait", "--timeout", "1"});
  CHECK(slow.code == 1);
  CHECK(
      slow.err.starts_with("berth: service slow: not steady after 1 s (--timeout): slow: "
                           "ACTIVE, 0/1 running"));
  // -o json: progress on stderr, and stdout only the final object once steady.
  d.ok({"services", "rm", "slow", "--force"});
  json waited = d.ok_json({"services", "create", "ok", "-t", "web", "-n", "1", "--wait"});
  CHECK(waited["service"]["runningCount"] == 1);
}
