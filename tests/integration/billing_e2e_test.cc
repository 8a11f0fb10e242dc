// Billing end to end: the real berthd (berthd_fixture.h) bills real tasks;
// the bill is read back over /v1/usage, DescribeTasks, /metrics and the
// berth CLI, checked against the task's own timestamps and its cgroup's
// own counters, survives kill -9, refuses what a quota forbids, shows no
// account another's usage, and a ledger record edited in berthd.db is
// found and named by `berth usage verify`.
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "controlplane/billing/money.h"
#include "tests/integration/berthd_fixture.h"
#include "tests/integration/harness.h"
#include "tests/skip.h"

using namespace berth::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// One container "main" running `command`, of the given size.
json sized_definition(const std::string& family, std::vector<std::string> command,
                      const std::string& cpu = "256", const std::string& memory = "512") {
  json d = definition(family, {container("main", std::move(command))});
  d["cpu"] = cpu;
  d["memory"] = memory;
  return d;
}

void require_privileged() {
  if (auto why = privileged_skip_reason()) BERTH_SKIP(*why);
}

std::string task_id(const std::string& arn) {
  return arn.substr(arn.rfind('/') + 1);
}

json run_result(Berthd& d, const json& def) {
  json reg = d.ecs_ok("RegisterTaskDefinition", def);
  return d.ecs_ok("RunTask", {{"taskDefinition", reg["taskDefinition"]["taskDefinitionArn"]}});
}

std::string run_task(Berthd& d, const json& def) {
  json run = run_result(d, def);
  INFO(run.dump());
  REQUIRE(run["failures"].empty());
  REQUIRE(run["tasks"].size() == 1);
  return run["tasks"][0]["taskArn"];
}

json usage(Berthd& d, const std::string& query = "groupBy=task") {
  HttpResult r = d.call({.target = "/v1/usage?" + query});
  INFO(r.body);
  REQUIRE(r.status == 200);
  return r.json();
}

// The usage line of one task once its final record is in the ledger.
json wait_task_line(Berthd& d, const std::string& id) {
  json line;
  bool found = wait_until(
      [&] {
        json u = usage(d, "groupBy=task&from=2000-01-01");
        for (const auto& l : u["lineItems"]) {
          if (l.value("key", "") == id) {
            line = l;
            // The final record is written once the task is STOPPED.
            HttpResult t = d.call({.target = "/v1/tasks/" + id});
            return t.json()["task"]["berthBilling"].value("final", false);
          }
        }
        return false;
      },
      60s, 100ms);
  INFO("berthd log:\n" << d.log());
  REQUIRE(found);
  return line;
}

int64_t ms_of(const json& t, const char* k) {
  return std::llround(t.value(k, 0.0) * 1000);
}

// ceil((stoppedAt - createdAt) in whole seconds), as the meter rounds.
int64_t task_seconds(const json& t) {
  int64_t ms = ms_of(t, "stoppedAt") - ms_of(t, "createdAt");
  return (ms + 999) / 1000;
}

CommandResult berth_cli(const Berthd& d, const std::string& args) {
  return exec_command(
      {"sh", "-c", std::string(BERTH_BIN_DIR) + "/berth --host unix://" + d.socket() + " " + args},
      {.timeout = 60s});
}

// The directory of the task's cgroup that counts its CPU time, and the
// count in microseconds (v2 cpu.stat usage_usec, v1 cpuacct.usage).
std::optional<int64_t> cgroup_cpu_usec(const std::string& id) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           "/sys/fs/cgroup", std::filesystem::directory_options::skip_permission_denied, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it.depth() > 8) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_directory(ec) || it->path().filename() != id) continue;
    std::ifstream acct(it->path() / "cpuacct.usage");
    int64_t ns = 0;
    if (acct >> ns) return ns / 1000;
    std::ifstream stat(it->path() / "cpu.stat");
    std::string key;
    int64_t v = 0;
    while (stat >> key >> v) {
      if (key == "usage_usec") return v;
    }
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE(
    "e2e billing: a task's bill in DescribeTasks, /v1/usage, the CLI and /metrics, exact to its "
    "timestamps, and an edited ledger record is named by berth usage verify",
    "[billing-e2e]") {
  require_privileged();
  Berthd d;
  std::string arn = run_task(d, sized_definition("bill-web", sleeper()));
  std::string id = task_id(arn);
  json t = d.wait_task_status(arn, "RUNNING");
  // The running bill: the 60 s minimum at once.
  REQUIRE(t.contains("berthBilling"));
  CHECK(t["berthBilling"]["billedSeconds"] == 60);
  // (256*60*40480 + 512*60*4445) / 3,686,400 = 205.7 -> 206
  CHECK(t["berthBilling"]["amountMicroUsd"] == 206);
  CHECK(t["berthBilling"]["final"] == false);
  d.ecs_ok("StopTask", {{"task", arn}});
  t = d.wait_task_status(arn, "STOPPED");
  json line = wait_task_line(d, id);
  int64_t secs = std::max<int64_t>(60, task_seconds(t));
  CHECK(line["billedSeconds"] == secs);
  int64_t amount = berth::cp::reserved_amount(256, 512, secs, berth::cp::PricingConfig{});
  CHECK(line["amountMicroUsd"] == amount);
  t = d.wait_task_status(arn, "STOPPED");
  CHECK(t["berthBilling"]["final"] == true);
  CHECK(t["berthBilling"]["amountMicroUsd"] == amount);

  // A second task of another family: per-family sums equal the lines.
  std::string job = run_task(d, sized_definition("bill-job", {"sh", "-c", "exit 0"}));
  d.wait_task_status(job, "STOPPED");
  wait_task_line(d, task_id(job));
  json by_task = usage(d, "groupBy=task&from=2000-01-01");
  json by_family = usage(d, "groupBy=family&from=2000-01-01");
  int64_t sum = 0;
  for (const auto& l : by_family["lineItems"]) sum += l["amountMicroUsd"].get<int64_t>();
  CHECK(sum == by_family["total"]["amountMicroUsd"].get<int64_t>());
  CHECK(by_family["total"]["amountMicroUsd"] == by_task["total"]["amountMicroUsd"]);
  CHECK(by_family["lineItems"].size() == 2);

  // The CLI: table, json, csv.
  auto table = berth_cli(d, "usage --from 2000-01-01 --group-by task");
  INFO(table);
  REQUIRE(table.exit_code == 0);
  CHECK_THAT(table.out, Catch::Contains(id));
  CHECK_THAT(table.out, Catch::Contains("TOTAL"));
  CHECK_THAT(table.out, Catch::Contains(berth::cp::format_usd(amount)));
  auto js = berth_cli(d, "usage --from 2000-01-01 --group-by task -o json");
  REQUIRE(js.exit_code == 0);
  json cli = json::parse(js.out, nullptr, false);
  REQUIRE_FALSE(cli.is_discarded());
  CHECK(cli["total"]["amountMicroUsd"] == by_task["total"]["amountMicroUsd"]);
  auto csv = berth_cli(d, "usage --from 2000-01-01 --group-by family -o csv");
  REQUIRE(csv.exit_code == 0);
  CHECK_THAT(csv.out, Catch::Contains("bill-web"));
  auto describe = berth_cli(d, "describe " + id);
  CHECK_THAT(describe.out, Catch::Contains(berth::cp::format_usd(amount)));

  // Prometheus.
  HttpResult m = d.call({.target = "/metrics"});
  CHECK_THAT(m.body,
             Catch::Contains("berth_billed_micro_usd_total{account=\"000000000001\"} " +
                             std::to_string(by_task["total"]["amountMicroUsd"].get<int64_t>())));

  // The chain holds; then a record edited by hand in berthd.db breaks it,
  // and verify names that record.
  auto ok = berth_cli(d, "usage verify");
  INFO(ok);
  CHECK(ok.exit_code == 0);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((d.dir() + "/state/berthd.db").c_str(), &db) == SQLITE_OK);
  struct Closer {
    sqlite3* db;
    ~Closer() { sqlite3_close(db); }
  } closer{db};
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT seq, doc FROM ledger WHERE task_id = ?", -1, &st,
                             nullptr) == SQLITE_OK);
  sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int64_t seq = sqlite3_column_int64(st, 0);
  std::string doc = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
  sqlite3_finalize(st);
  json edited = json::parse(doc, nullptr, false);
  REQUIRE(edited.contains("amount_micro_usd"));
  edited["amount_micro_usd"] = 1;
  // The store refuses UPDATE (a trigger); whoever edits the file by hand
  // drops it first.
  REQUIRE(sqlite3_exec(db, "DROP TRIGGER IF EXISTS ledger_no_update", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_prepare_v2(db, "UPDATE ledger SET doc = ? WHERE seq = ?", -1, &st, nullptr) ==
          SQLITE_OK);
  std::string text = edited.dump();
  sqlite3_bind_text(st, 1, text.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, seq);
  REQUIRE(sqlite3_step(st) == SQLITE_DONE);
  sqlite3_finalize(st);
  auto bad = berth_cli(d, "usage verify");
  INFO(bad);
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.out + bad.err, Catch::Contains(std::to_string(seq)));
  CHECK_THAT(bad.out + bad.err, Catch::Contains(id));
}

TEST_CASE(
    "e2e billing: kill -9 of berthd during a running task, restart, stop: one record set, no "
    "double charge, within one checkpoint interval of the truth",
    "[billing-e2e]") {
  require_privileged();
  Berthd::Options o;
  o.extra_toml = "[pricing]\nminimum_seconds = 0\ncheckpoint_seconds = 1\n";
  Berthd d(o);
  auto t0 = std::chrono::system_clock::now();
  std::string arn = run_task(d, sized_definition("bill-crash", sleeper()));
  std::string id = task_id(arn);
  d.wait_task_status(arn, "RUNNING");
  // Let it be checkpointed (its running bill grows past 2 s).
  REQUIRE(wait_until(
      [&] {
        HttpResult r = d.call({.target = "/v1/tasks/" + id});
        return r.json()["task"]["berthBilling"].value("billedSeconds", 0) >= 3;
      },
      60s, 100ms));
  d.kill9();
  d.start();
  d.wait_task_status(arn, "RUNNING");
  d.ecs_ok("StopTask", {{"task", arn}});
  json t = d.wait_task_status(arn, "STOPPED");
  auto t1 = std::chrono::system_clock::now();
  json line = wait_task_line(d, id);
  // One task, one record set: one record, or two if an hour began meanwhile.
  CHECK(line["tasks"] == 1);
  CHECK(line["records"].get<int>() <= 2);
  int64_t billed = line["billedSeconds"];
  // The API's timestamps are decimal seconds: a millisecond of rounding
  // may move the ceiling across a whole second.
  CHECK(std::llabs(billed - task_seconds(t)) <= 1);
  int64_t truth = std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count();
  CHECK(billed * 1000 <= truth + 1000 + 1000);  // rounding up + one checkpoint interval
  CHECK(billed * 1000 >= ms_of(t, "stoppedAt") - ms_of(t, "createdAt") - 1);
  CHECK(
      line["amountMicroUsd"] ==
      berth::cp::reserved_amount(256, 512, billed, berth::cp::PricingConfig{.minimum_seconds = 0}));
  auto v = berth_cli(d, "usage verify");
  INFO(v);
  CHECK(v.exit_code == 0);
}

TEST_CASE(
    "e2e billing: usage mode bills a task burning one CPU within 2% of its cgroup's own counter",
    "[billing-e2e]") {
  require_privileged();
  Berthd::Options o;
  o.extra_toml = "[pricing]\nmode = \"usage\"\ncheckpoint_seconds = 1\n";
  Berthd d(o);
  std::string arn = run_task(
      d, sized_definition("bill-burn",
                          {"sh", "-c",
                           "end=$(($(date +%s)+3)); while [ $(date +%s) -lt $end ]; do :; done; "
                           "echo burned; trap 'exit 143' TERM; sleep 3600 & wait"},
                          "1024", "2048"));
  std::string id = task_id(arn);
  d.wait_task_status(arn, "RUNNING");
  REQUIRE(wait_until(
      [&] {
        HttpResult r = d.call({.target = "/v1/tasks/" + id + "/logs"});
        return r.body.find("burned") != std::string::npos;
      },
      120s, 100ms));
  auto counted = cgroup_cpu_usec(id);
  REQUIRE(counted);
  CHECK(*counted > 1000000);  // it did burn (at least 1 s of the 3 on a loaded machine)
  d.ecs_ok("StopTask", {{"task", arn}});
  d.wait_task_status(arn, "STOPPED");
  json line = wait_task_line(d, id);
  int64_t billed = line["cpuUsec"];
  INFO("billed " << billed << " us, cgroup " << *counted << " us\nberthd log:\n" << d.log());
  CHECK(std::llabs(billed - *counted) <= *counted / 50);
  CHECK(line["amountMicroUsd"].get<int64_t>() > 0);
}

TEST_CASE("e2e billing: RunTask over the account's vCPU quota fails with the stated reason",
          "[billing-e2e]") {
  require_privileged();
  Berthd::Options o;
  o.alice_toml = "max_vcpu = 0.5\n";
  Berthd d(o);
  std::string a = run_task(d, sized_definition("quota", sleeper()));
  std::string b = run_task(d, sized_definition("quota", sleeper()));
  json over = run_result(d, sized_definition("quota", sleeper()));
  INFO(over.dump());
  CHECK(over["tasks"].empty());
  REQUIRE(over["failures"].size() == 1);
  CHECK(over["failures"][0]["reason"] == "QUOTA:CPU");
  CHECK(over["failures"][0]["detail"] ==
        "account 000000000001 may reserve 512 CPU units (0.5 vCPU) at once; its tasks reserve "
        "512 and this task needs 256");
  d.ecs_ok("StopTask", {{"task", a}});
  d.wait_task_status(a, "STOPPED");
  CHECK(run_result(d, sized_definition("quota", sleeper()))["failures"].empty());
}

TEST_CASE("e2e billing: another account's usage is never visible", "[billing-e2e]") {
  require_privileged();
  Berthd d;
  std::string arn = run_task(d, sized_definition("mine", {"sh", "-c", "exit 0"}));
  d.wait_task_status(arn, "STOPPED");
  wait_task_line(d, task_id(arn));
  // bob over TCP, signed with his keys (curl's SigV4), asks for alice's.
  std::string sign = std::string(
                         "curl -s -o /dev/stderr -w '%{http_code}' --aws-sigv4 "
                         "aws:amz:us-east-1:ecs --user ") +
                     Berthd::kBobKey + ":" + Berthd::kBobSecret +
                     " 'http://127.0.0.1:" + std::to_string(d.port());
  auto other = exec_command({"sh", "-c", sign + "/v1/usage?account=000000000001'"});
  INFO(other);
  CHECK(other.out == "403");
  auto own = exec_command({"sh", "-c", sign + "/v1/usage?from=2000-01-01&groupBy=task'"});
  INFO(own);
  CHECK(own.out == "200");
  json body = json::parse(own.err, nullptr, false);
  REQUIRE_FALSE(body.is_discarded());
  CHECK(body["account"] == "000000000002");
  CHECK(body["lineItems"].empty());
  CHECK(body["total"]["amountMicroUsd"] == 0);
  CHECK(body.dump().find(task_id(arn)) == std::string::npos);
}
