// The usage API (GET /v1/usage, /v1/usage/verify), the berthBilling
// extension of DescribeTasks and /v1/tasks, and the billed-amount metric,
// through the router with the real Meter, the real SQLite store on a
// temporary file and the fake agent (cp_fakes.h). The meter runs without
// its thread: the tests call tick() themselves, on a clock they advance.
#include <chrono>
#include <future>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "controlplane/api/router.h"
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

struct UsageEnv {
  UsageEnv() {
    auto s = SqliteStore::open(db_path());
    REQUIRE(s);
    store = std::move(*s);
    ControlPlaneOptions o;
    o.tasks.region = "us-test-1";
    o.tasks.capacity = {8192, 16384};
    o.tasks.worker_threads = 2;
    auto clock = [this] {
      std::lock_guard lock(clock_mu);
      return Clock::now() + skew;
    };
    o.tasks.clock = clock;
    o.meter.clock = clock;
    o.meter.background = false;
    o.api_threads = 2;
    cp = std::make_unique<ControlPlane>(*store, agent, o);
    REQUIRE(cp->recover());
    cp->start();
    handler = cp->handler();
  }
  ~UsageEnv() {
    cp->tasks().drain();
    agent.flush();
    cp->shutdown();
  }

  HttpResponse send(HttpRequest req) {
    std::promise<HttpResponse> p;
    auto f = p.get_future();
    handler(std::move(req), [&p](HttpResponse r) { p.set_value(std::move(r)); });
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    return f.get();
  }

  HttpResponse native(const std::string& path, std::map<std::string, std::string> query = {},
                      const std::string& account = kAccountA, const std::string& method = "GET",
                      const std::string& body = "") {
    HttpRequest r;
    r.method = method;
    r.path = path;
    r.query = std::move(query);
    r.account = account;
    r.body = body;
    return send(std::move(r));
  }

  json native_ok(const std::string& path, std::map<std::string, std::string> query = {},
                 const std::string& account = kAccountA) {
    auto r = native(path, query, account);
    INFO(path << " -> " << r.status << " " << r.body);
    REQUIRE(r.status == 200);
    auto j = json::parse(r.body, nullptr, false);
    REQUIRE(j.is_object());
    return j;
  }

  // {status, exception name, message} of a native call that must fail.
  std::tuple<int, std::string, std::string> native_error(const std::string& path,
                                                         std::map<std::string, std::string> query,
                                                         const std::string& account = kAccountA) {
    auto r = native(path, std::move(query), account);
    auto j = json::parse(r.body, nullptr, false);
    INFO(path << " -> " << r.status << " " << r.body);
    REQUIRE(j.is_object());
    std::string type = j.value("__type", "");
    return {r.status, type.substr(type.find('#') + 1), j.value("message", "")};
  }

  json ecs(const std::string& op, const json& body, const std::string& account = kAccountA) {
    HttpRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers["x-amz-target"] = "AmazonEC2ContainerServiceV20141113." + op;
    r.body = body.dump();
    r.account = account;
    auto resp = send(std::move(r));
    INFO(op << " " << body.dump() << " -> " << resp.status << " " << resp.body);
    REQUIRE(resp.status == 200);
    auto j = json::parse(resp.body, nullptr, false);
    REQUIRE(j.is_object());
    return j;
  }

  json describe(const std::string& id, const std::string& account = kAccountA) {
    auto j = ecs("DescribeTasks", {{"tasks", {id}}}, account);
    REQUIRE(j["tasks"].size() == 1);
    return j["tasks"][0];
  }

  // Runs an inline task of `family` for `account` (POST /v1/tasks): its id.
  std::string run(const std::string& family, const std::string& account = kAccountA) {
    json def = {{"family", family},
                {"cpu", "256"},
                {"memory", "512"},
                {"containerDefinitions",
                 {{{"name", "app"}, {"image", "busybox"}, {"command", {"sleep", "1000"}}}}}};
    auto r = native("/v1/tasks", {}, account, "POST", def.dump());
    INFO(r.body);
    REQUIRE(r.status == 200);
    std::string arn = json::parse(r.body)["task"]["taskArn"];
    return arn.substr(arn.rfind('/') + 1);
  }

  void wait_status(const std::string& id, const std::string& status,
                   const std::string& account = kAccountA) {
    REQUIRE(fake::eventually([&] { return describe(id, account)["lastStatus"] == status; }));
  }

  // Runs a task, holds it `held` on the test clock, stops it and closes
  // its bill: its final DescribeTasks object.
  json run_and_stop(const std::string& family, std::chrono::milliseconds held,
                    const std::string& account = kAccountA) {
    std::string id = run(family, account);
    wait_status(id, "RUNNING", account);
    advance(held);
    auto r = native("/v1/tasks/" + id, {}, account, "DELETE");
    REQUIRE(r.status == 200);
    wait_status(id, "STOPPED", account);
    cp->tasks().drain();
    json t;
    REQUIRE(fake::eventually([&] {
      cp->meter().tick();
      t = describe(id, account);
      return t.contains("berthBilling") && t["berthBilling"].value("final", false);
    }));
    return t;
  }

  std::string db_path() const { return dir / "berthd.db"; }

  void advance(Clock::duration d) {
    std::lock_guard lock(clock_mu);
    skew += d;
  }

  bt::TempDir dir;
  std::unique_ptr<SqliteStore> store;
  fake::FakeAgent agent;
  std::mutex clock_mu;
  Clock::duration skew{};
  std::unique_ptr<ControlPlane> cp;
  Handler handler;
};

std::string task_id(const json& t) {
  std::string arn = t["taskArn"];
  return arn.substr(arn.rfind('/') + 1);
}

// ceil(stoppedAt - createdAt), at least 60 s (DescribeTasks' times are
// epoch seconds with milliseconds).
int64_t expected_billed_seconds(const json& t) {
  auto ms = [](double s) { return static_cast<int64_t>(s * 1000 + 0.5); };
  int64_t elapsed_ms = ms(t["stoppedAt"].get<double>()) - ms(t["createdAt"].get<double>());
  return std::max<int64_t>(60, (elapsed_ms + 999) / 1000);
}

int64_t sum_lines(const json& report) {
  int64_t sum = 0;
  for (const auto& l : report["lineItems"]) sum += l["amountMicroUsd"].get<int64_t>();
  return sum;
}

}  // namespace

TEST_CASE("usage: the time forms of from and to", "[cp-usage-api]") {
  CHECK(parse_usage_time("2026-12-05T00:00:00Z") == 1796428800000);
  CHECK(parse_usage_time("2026-12-05") == 1796428800000);
  CHECK(parse_usage_time("1796428800") == 1796428800000);
  CHECK(parse_usage_time("2026-12-05T01:02:03.456Z") == 1796428800000 + 3723456);
  CHECK(parse_usage_time("2026-12-05t01:02:03z") == 1796428800000 + 3723000);
  CHECK(parse_usage_time("2026-12-05T02:00:00+02:00") == 1796428800000);
  CHECK(parse_usage_time("2026-12-04T22:30:00-01:30") == 1796428800000);
  CHECK(parse_usage_time("0") == 0);
  for (const char* bad : {"", "yesterday", "2026-13-01", "2026-02-30", "2026-12-05T00:00:00",
                          "2026-12-05T24:00:00Z", "2026-12-05 00:00:00Z", "-5", "1.5",
                          "2026-12-05T00:00:00.Z", "2026-12-05T00:00:00Zjunk", "9999999999999"}) {
    INFO(bad);
    CHECK(!parse_usage_time(bad));
  }
  CHECK(month_start_ms(1796428800000 + 3723456) == 1796083200000);  // 2026-12-01
  CHECK(month_start_ms(1796083200000) == 1796083200000);
}

TEST_CASE("usage: bad parameters are 400 InvalidParameterException naming them", "[cp-usage-api]") {
  UsageEnv env;
  for (auto [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"from", "yesterday"},
                                                        {"to", "2026-13-01"},
                                                        {"from", "2026-12-05T00:00:00"},
                                                        {"groupBy", "week"},
                                                        {"groupBy", "none"}}) {
    auto [status, type, message] = env.native_error("/v1/usage", {{key, value}});
    CHECK(status == 400);
    CHECK(type == "InvalidParameterException");
    CHECK(message.find(key) != std::string::npos);
  }
  auto [status, type, message] =
      env.native_error("/v1/usage", {{"from", "2026-12-06"}, {"to", "2026-12-05"}});
  CHECK(status == 400);
  CHECK(type == "InvalidParameterException");
  // Every accepted form.
  for (const char* from : {"2026-12-05T00:00:00Z", "2026-12-05", "1796428800"}) {
    auto j = env.native_ok("/v1/usage", {{"from", from}, {"to", "2999-01-01"}});
    CHECK(j["lineItems"].empty());
    CHECK(j["total"]["amountMicroUsd"] == 0);
  }
}

TEST_CASE("usage: another account's usage is refused and never visible", "[cp-usage-api]") {
  UsageEnv env;
  json b_task = env.run_and_stop("secret", 3s, kAccountB);
  std::string b_id = task_id(b_task);
  env.run_and_stop("mine", 3s, kAccountA);

  auto [status, type, message] = env.native_error("/v1/usage", {{"account", kAccountB}});
  CHECK(status == 403);
  CHECK(type == "AccessDeniedException");
  CHECK(message.find(kAccountB) != std::string::npos);

  // B's own usage has its task; A's never shows it, in any grouping.
  auto b = env.native_ok("/v1/usage", {{"account", kAccountB}, {"from", "0"}}, kAccountB);
  REQUIRE(b["lineItems"].size() == 1);
  CHECK(b["lineItems"][0]["key"] == b_id);
  for (const char* group : {"task", "family", "service", "day"}) {
    auto a = env.native_ok("/v1/usage", {{"from", "0"}, {"to", "2999-01-01"}, {"groupBy", group}});
    CHECK(a["account"] == kAccountA);
    CHECK(a.dump().find(b_id) == std::string::npos);
    CHECK(a.dump().find("secret") == std::string::npos);
    CHECK(a["total"]["amountMicroUsd"] == sum_lines(a));
  }
  // Nor does B's task, by id, through the task endpoints.
  CHECK(env.native("/v1/tasks/" + b_id).status == 404);

  // verify covers the caller's chain only.
  auto va = env.native_ok("/v1/usage/verify");
  CHECK(va["account"] == kAccountA);
  CHECK(va["ok"] == true);
  CHECK(va["records"].get<int64_t>() >= 1);
  CHECK(va["head"].get<std::string>().size() == 64);
  CHECK(va["problems"].empty());
  auto vb = env.native_ok("/v1/usage/verify", {}, kAccountB);
  CHECK(vb["account"] == kAccountB);
  CHECK(vb["head"] != va["head"]);
}

TEST_CASE("usage: groupBy task, family, service and day sum the same records", "[cp-usage-api]") {
  UsageEnv env;
  json t1 = env.run_and_stop("alpha", 3s);           // the 60 s minimum
  json t2 = env.run_and_stop("alpha", 75s + 200ms);  // 76 s
  json t3 = env.run_and_stop("beta", 2min);          // 120 s (and a bit)
  std::set<std::string> ids{task_id(t1), task_id(t2), task_id(t3)};
  int64_t expected_total = 0;
  for (const json* t : {&t1, &t2, &t3}) {
    int64_t billed = (*t)["berthBilling"]["billedSeconds"];
    CHECK(billed == expected_billed_seconds(*t));
    int64_t amount = (*t)["berthBilling"]["amountMicroUsd"];
    CHECK(amount == reserved_amount(256, 512, billed, PricingConfig{}));
    expected_total += amount;
  }
  CHECK(t1["berthBilling"]["billedSeconds"] == 60);
  CHECK(t1["berthBilling"]["amountMicroUsd"] == 206);  // round(758323200 / 3686400)
  CHECK(t2["berthBilling"]["billedSeconds"].get<int64_t>() >= 76);

  auto report = [&](const std::string& group) {
    return env.native_ok("/v1/usage", {{"from", "0"}, {"to", "2999-01-01"}, {"groupBy", group}});
  };
  auto by_task = report("task");
  std::set<std::string> keys;
  for (const auto& l : by_task["lineItems"]) keys.insert(l["key"].get<std::string>());
  CHECK(keys == ids);
  CHECK(by_task["total"]["amountMicroUsd"] == expected_total);
  CHECK(by_task["total"]["tasks"] == 3);

  auto by_family = report("family");
  REQUIRE(by_family["lineItems"].size() == 2);
  CHECK(by_family["lineItems"][0]["key"] == "alpha");
  CHECK(by_family["lineItems"][0]["tasks"] == 2);
  CHECK(by_family["lineItems"][1]["key"] == "beta");
  CHECK(by_family["total"]["amountMicroUsd"] == expected_total);

  auto by_service = report("service");
  REQUIRE(by_service["lineItems"].size() == 1);
  CHECK(by_service["lineItems"][0]["key"] == "");  // no service
  CHECK(by_service["total"]["amountMicroUsd"] == expected_total);

  auto by_day = report("day");
  REQUIRE(by_day["lineItems"].size() >= 1);
  CHECK(by_day["lineItems"][0]["key"].get<std::string>().size() == 10);  // YYYY-MM-DD
  CHECK(by_day["total"]["amountMicroUsd"] == expected_total);
  for (const auto& r : {by_task, by_family, by_service, by_day}) {
    CHECK(r["total"]["amountMicroUsd"] == sum_lines(r));
  }

  // The default (task) grouping, from the start of the month to now.
  auto dflt = env.native_ok("/v1/usage");
  CHECK(dflt["lineItems"].size() <= 3);
  CHECK(dflt["total"]["amountMicroUsd"] == sum_lines(dflt));

  // An interval before every record: nothing.
  auto before = env.native_ok("/v1/usage", {{"from", "0"}, {"to", "86400"}});
  CHECK(before["lineItems"].empty());

  // The metric counts what the records billed.
  HttpRequest metrics_req;
  metrics_req.method = "GET";
  metrics_req.path = "/metrics";
  auto metrics = env.send(std::move(metrics_req));
  REQUIRE(metrics.status == 200);
  CHECK(metrics.body.find("# TYPE berth_billed_micro_usd_total counter\n") != std::string::npos);
  CHECK(metrics.body.find(fmt::format("berth_billed_micro_usd_total{{account=\"{}\"}} {}\n",
                                      kAccountA, expected_total)) != std::string::npos);
}

TEST_CASE("berthBilling is in DescribeTasks and /v1/tasks answers, never in the store",
          "[cp-usage-api]") {
  UsageEnv env;
  std::string id = env.run("billed");
  env.wait_status(id, "RUNNING");
  env.advance(30s);
  json running = env.describe(id);
  REQUIRE(running.contains("berthBilling"));
  CHECK(running["berthBilling"]["final"] == false);
  CHECK(running["berthBilling"]["billedSeconds"].get<int64_t>() >= 60);  // the minimum
  CHECK(running["berthBilling"]["amountMicroUsd"].is_number_integer());

  auto one = env.native_ok("/v1/tasks/" + id);
  REQUIRE(one["task"].contains("berthBilling"));
  CHECK(one["task"]["berthBilling"]["final"] == false);
  auto list = env.native_ok("/v1/tasks", {{"status", "RUNNING"}});
  REQUIRE(list["tasks"].size() == 1);
  CHECK(list["tasks"][0].contains("berthBilling"));

  // The stored document has no such member.
  auto rec = env.store->get_task(kAccountA, id);
  REQUIRE(rec);
  REQUIRE(*rec);
  CHECK((*rec)->doc.find("berthBilling") == std::string::npos);

  env.advance(100s);
  REQUIRE(env.native("/v1/tasks/" + id, {}, kAccountA, "DELETE").status == 200);
  env.wait_status(id, "STOPPED");
  env.cp->tasks().drain();
  json stopped;
  REQUIRE(fake::eventually([&] {
    env.cp->meter().tick();
    stopped = env.native_ok("/v1/tasks/" + id)["task"];
    return stopped["berthBilling"].value("final", false);
  }));
  CHECK(stopped["berthBilling"]["billedSeconds"] == expected_billed_seconds(stopped));
  CHECK(stopped["berthBilling"]["amountMicroUsd"] ==
        reserved_amount(256, 512, expected_billed_seconds(stopped), PricingConfig{}));
  // The bill is closed: time passing no longer changes it.
  env.advance(1h);
  env.cp->meter().tick();
  CHECK(env.describe(id)["berthBilling"] == stopped["berthBilling"]);
}

TEST_CASE("usage/verify names a ledger record edited by hand in the store", "[cp-usage-api]") {
  UsageEnv env;
  json t1 = env.run_and_stop("edited", 3s);
  json t2 = env.run_and_stop("edited", 3s);
  auto before = env.native_ok("/v1/usage/verify");
  REQUIRE(before["ok"] == true);
  REQUIRE(before["records"].get<int64_t>() >= 2);
  std::string victim = task_id(t1);

  // As an operator with a shell would: drop the guard, change one amount.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(env.db_path().c_str(), &db) == SQLITE_OK);
  std::string sql =
      "DROP TRIGGER IF EXISTS ledger_no_update; "
      "UPDATE ledger SET doc = replace(doc, '\"amount_micro_usd\":206', "
      "'\"amount_micro_usd\":1') WHERE task_id = '" +
      victim + "';";
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string message = err ? err : "";
  sqlite3_free(err);
  int changed = sqlite3_changes(db);
  sqlite3_close(db);
  INFO(message);
  REQUIRE(rc == SQLITE_OK);
  REQUIRE(changed >= 1);

  auto after = env.native_ok("/v1/usage/verify");
  INFO(after.dump());
  CHECK(after["ok"] == false);
  REQUIRE(!after["problems"].empty());
  CHECK(after["problems"][0]["taskId"] == victim);
  CHECK(after["problems"][0]["seq"].get<int64_t>() >= 1);
  CHECK(after["problems"][0]["what"].get<std::string>().find("hash") != std::string::npos);
  for (const auto& p : after["problems"]) CHECK(p["taskId"] != task_id(t2));
  // Another account's chain is untouched and not reported here.
  CHECK(env.native_ok("/v1/usage/verify", {}, kAccountB)["ok"] == true);
}
