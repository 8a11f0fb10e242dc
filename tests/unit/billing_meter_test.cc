// The meter against the real scheduler and the real SQLite store, with the
// fake agent (cp_fakes.h) and an injected clock, so hours of task time are
// billed without waiting: exact amounts, periods, days, crashes, usage
// mode, quotas and spending caps.
#include <chrono>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "controlplane/billing/meter.h"
#include "controlplane/model/ecs_json.h"
#include "controlplane/scheduler/task_manager.h"
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

constexpr const char* kAlice = "111111111111";
constexpr const char* kBob = "222222222222";

// 2026-12-04T22:30:00Z: a task of a few hours crosses a UTC midnight.
TimePoint start_time() {
  return TimePoint(std::chrono::seconds(1796423400));
}

int64_t ms(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TaskDefinition definition(const std::string& family, const std::string& cpu,
                          const std::string& memory) {
  Account a;
  a.id = kAlice;
  json body = {{"family", family},
               {"cpu", cpu},
               {"memory", memory},
               {"networkMode", "awsvpc"},
               {"requiresCompatibilities", {"FARGATE"}},
               {"containerDefinitions", {{{"name", "app"}, {"image", "busybox"}}}}};
  auto d = parse_task_definition(body, a);
  REQUIRE(d);
  d->revision = 1;
  return *d;
}

// One berthd's worth of scheduler and meter over a store that outlives it
// (a restart is a new World on the same database).
struct World {
  explicit World(const std::string& db, fake::FakeAgent& agent, TimePoint* now,
                 std::mutex* clock_mu, std::map<std::string, Account> accounts = {},
                 PricingConfig pricing = {})
      : agent(agent) {
    auto s = SqliteStore::open(db);
    REQUIRE(s);
    store = std::move(*s);
    auto clock = [now, clock_mu] {
      std::lock_guard lock(*clock_mu);
      return *now;
    };
    MeterOptions mo;
    mo.pricing = pricing;
    mo.clock = clock;
    mo.background = false;
    mo.account = [accounts](const std::string& id) -> std::optional<Account> {
      if (auto it = accounts.find(id); it != accounts.end()) return it->second;
      Account a;
      a.id = id;
      return a;
    };
    meter = std::make_unique<Meter>(*store, agent, mo);
    TaskManagerOptions to;
    to.region = "us-test-1";
    to.capacity = {65536, 262144};
    to.worker_threads = 2;
    to.clock = clock;
    to.on_change = [this](const Task& t) { meter->on_change(t); };
    to.admit = [this](const std::string& account, NodeCapacity mine,
                      NodeCapacity size) -> std::optional<std::pair<std::string, std::string>> {
      auto r =
          meter->admit(account, mine.cpu_units, mine.memory_mib, size.cpu_units, size.memory_mib);
      if (!r) return std::nullopt;
      return std::make_pair(r->reason, r->detail);
    };
    tasks = std::make_unique<TaskManager>(*store, agent, to);
    meter->attach(*tasks);
  }
  ~World() {
    tasks->drain();
    agent.flush();
    meter->shutdown();
    tasks->shutdown();
  }

  std::string run(const std::string& account, const TaskDefinition& def) {
    RunTaskRequest req;
    auto r = tasks->run_task(account, "default", def, req);
    REQUIRE(r);
    REQUIRE(r->failures.empty());
    REQUIRE(r->tasks.size() == 1);
    std::string id = r->tasks[0].id;
    REQUIRE(fake::eventually([&] { return status(account, id) == TaskStatus::running; }));
    return id;
  }
  TaskStatus status(const std::string& account, const std::string& id) {
    auto t = tasks->get_task(account, id);
    REQUIRE(t);
    REQUIRE(*t);
    return (*t)->last_status;
  }
  void stop(const std::string& account, const std::string& id) {
    REQUIRE(tasks->stop_task(account, std::nullopt, id, ""));
    REQUIRE(fake::eventually([&] { return status(account, id) == TaskStatus::stopped; }));
    tasks->drain();
  }
  std::vector<LedgerRecord> records(const std::string& account, const std::string& task = "") {
    LedgerQuery q;
    q.account = account;
    q.task_id = task;
    auto rows = store->ledger(q);
    REQUIRE(rows);
    std::vector<LedgerRecord> out;
    for (const auto& row : *rows) {
      auto r = ledger_from_doc(row.doc);
      REQUIRE(r);
      r->seq = row.seq;
      out.push_back(*r);
    }
    return out;
  }

  fake::FakeAgent& agent;
  std::unique_ptr<SqliteStore> store;
  std::unique_ptr<Meter> meter;
  std::unique_ptr<TaskManager> tasks;
};

struct Clocked {
  bt::TempDir dir;
  std::string db = dir / "berthd.db";
  TimePoint now = start_time();
  std::mutex mu;
  fake::FakeAgent agent;
  void advance(std::chrono::milliseconds d) {
    std::lock_guard lock(mu);
    now += d;
  }
  TimePoint at() {
    std::lock_guard lock(mu);
    return now;
  }
};

int64_t sum_amounts(const std::vector<LedgerRecord>& rs) {
  int64_t s = 0;
  for (const auto& r : rs) s += r.amount_micro_usd;
  return s;
}

}  // namespace

TEST_CASE("A 3 s task at cpu 512 / memory 1024 is billed the 60 s minimum", "[billing-meter]") {
  Clocked c;
  World w(c.db, c.agent, &c.now, &c.mu);
  std::string id = w.run(kAlice, definition("short", "512", "1024"));
  c.advance(3s);
  w.stop(kAlice, id);
  w.meter->tick();
  auto rs = w.records(kAlice, id);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].final);
  CHECK(rs[0].billed_seconds == 60);
  CHECK(rs[0].cumulative_billed_seconds == 60);
  // (512 * 60 * 40480 + 1024 * 60 * 4445) / (1024 * 3600)
  //   = (1,243,545,600 + 273,100,800) / 3,686,400 = 411.41... -> 411
  CHECK(rs[0].amount_micro_usd == 411);
  CHECK(rs[0].family == "short");
  CHECK(rs[0].revision == 1);
  CHECK(rs[0].cluster == "default");
  CHECK(rs[0].account == kAlice);
  CHECK(rs[0].cpu_units == 512);
  CHECK(rs[0].memory_mib == 1024);
  // The task's bill says the same, and is closed.
  auto t = w.tasks->get_task(kAlice, id);
  REQUIRE(t);
  auto bill = w.meter->bill(**t);
  REQUIRE(bill);
  CHECK(bill->final);
  CHECK(bill->billed_seconds == 60);
  CHECK(bill->amount_micro_usd == 411);
  // Another pass writes nothing more.
  w.meter->tick();
  CHECK(w.records(kAlice, id).size() == 1);
}

TEST_CASE("A 75.2 s task is billed 76 s", "[billing-meter]") {
  Clocked c;
  World w(c.db, c.agent, &c.now, &c.mu);
  std::string id = w.run(kAlice, definition("mid", "512", "1024"));
  c.advance(75200ms);
  w.stop(kAlice, id);
  w.meter->tick();
  auto rs = w.records(kAlice, id);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].billed_seconds == 76);
  // (512 * 76 * 40480 + 1024 * 76 * 4445) / 3,686,400 = 521.13... -> 521
  CHECK(rs[0].amount_micro_usd == 521);
  CHECK(rs[0].to_ms - rs[0].from_ms == 75200);
}

TEST_CASE("A long task gets one record per hour, and sums per account, family and day match",
          "[billing-meter]") {
  Clocked c;
  World w(c.db, c.agent, &c.now, &c.mu);
  auto web = definition("web", "1024", "2048");
  auto job = definition("job", "256", "512");
  std::string a = w.run(kAlice, web);  // 22:30 .. 01:40: 3 h 10 min
  std::string b = w.run(kAlice, job);  // 22:30 .. 23:00:00.5
  std::string other = w.run(kBob, job);
  // Checkpoints every 15 s for 3 h 10 min.
  for (int i = 0; i < 4 * 190; ++i) {
    c.advance(15s);
    if (i == 119) {
      c.advance(500ms);
      w.stop(kAlice, b);
    }
    w.meter->tick();
  }
  w.stop(kAlice, a);
  w.stop(kBob, other);
  w.meter->tick();

  auto ra = w.records(kAlice, a);
  // 22:30-23:00, 23:00-00:00, 00:00-01:00, 01:00-01:40 (final).
  REQUIRE(ra.size() == 4);
  CHECK(ra[0].from_ms == ms(start_time()));
  for (size_t i = 0; i + 1 < ra.size(); ++i) {
    CHECK_FALSE(ra[i].final);
    CHECK(ra[i].to_ms == ra[i + 1].from_ms);
    CHECK(ra[i].to_ms % 3600000 == 0);
  }
  CHECK(ra.back().final);
  int64_t secs = 3 * 3600 + 600;  // 3 h 10 min, plus the 0.5 s stop delay
  CHECK(ra.back().cumulative_billed_seconds == secs + 1);
  int64_t total = reserved_amount(1024, 2048, secs + 1, PricingConfig{});
  CHECK(sum_amounts(ra) == total);
  CHECK(ra.back().cumulative_amount_micro_usd == total);
  int64_t billed = 0;
  for (const auto& r : ra) billed += r.billed_seconds;
  CHECK(billed == secs + 1);

  auto rb = w.records(kAlice, b);
  REQUIRE(rb.size() == 2);  // 22:30-23:00 closed at 23:00, then 0.5 s in the next hour
  CHECK(rb[1].final);
  CHECK(rb.back().cumulative_billed_seconds == 1801);
  CHECK(sum_amounts(rb) == reserved_amount(256, 512, 1801, PricingConfig{}));

  // The usage report: per task, family and day, sums to the micro-unit.
  UsageQuery q;
  q.account = kAlice;
  for (auto g : {UsageGroup::task, UsageGroup::family, UsageGroup::day}) {
    q.group = g;
    auto rep = w.meter->usage(q);
    REQUIRE(rep);
    int64_t lines = 0;
    for (const auto& l : rep->lines) lines += l.amount_micro_usd;
    CHECK(lines == rep->total.amount_micro_usd);
    CHECK(rep->total.amount_micro_usd == sum_amounts(ra) + sum_amounts(rb));
    if (g == UsageGroup::day) {
      REQUIRE(rep->lines.size() == 2);
      CHECK(rep->lines[0].key == "2026-12-04");
      CHECK(rep->lines[1].key == "2026-12-05");
      // 04th: a's 22:30-00:00 and b whole; 05th: a's 00:00-01:40.
      CHECK(rep->lines[1].amount_micro_usd == ra[2].amount_micro_usd + ra[3].amount_micro_usd);
    }
    if (g == UsageGroup::family) {
      REQUIRE(rep->lines.size() == 2);
      CHECK(rep->lines[0].key == "job");
      CHECK(rep->lines[0].amount_micro_usd == sum_amounts(rb));
      CHECK(rep->lines[1].key == "web");
    }
  }
  // Bob's usage is his alone.
  q.account = kBob;
  q.group = UsageGroup::task;
  auto bob = w.meter->usage(q);
  REQUIRE(bob);
  REQUIRE(bob->lines.size() == 1);
  CHECK(bob->lines[0].key == other);
  auto chains = w.meter->verify("");
  REQUIRE(chains);
  REQUIRE(chains->size() == 2);
  for (const auto& ch : *chains) CHECK(ch.ok());
  auto by = w.meter->billed_by_account();
  CHECK(by[kAlice] == sum_amounts(ra) + sum_amounts(rb));
}

TEST_CASE("A restart in the middle of a task bills it once, exactly", "[billing-meter]") {
  Clocked c;
  std::string id;
  std::string stale_checkpoint;
  {
    World w(c.db, c.agent, &c.now, &c.mu);
    id = w.run(kAlice, definition("web", "1024", "2048"));
    c.advance(20min);
    w.meter->tick();
    auto cp = w.store->get_checkpoint(kAlice, id);
    REQUIRE(cp);
    REQUIRE(*cp);
    stale_checkpoint = (*cp)->doc;
    c.advance(20min);  // 23:10: the 22:30-23:00 record is written
    w.meter->tick();
    REQUIRE(w.records(kAlice, id).size() == 1);
    // berthd dies here (nothing is finished; the World goes away as after
    // kill -9: no final record, the shim keeps the task).
  }
  // The crash happened between the record and its checkpoint: the store
  // has the older checkpoint.
  {
    auto s = SqliteStore::open(c.db);
    REQUIRE(s);
    REQUIRE((*s)->put_checkpoint({kAlice, id, stale_checkpoint}));
  }
  c.advance(30min);  // 23:40, berthd is back
  c.agent.adopt_results[id] = {
      id,
      true,
      {{"status", "RUNNING"},
       {"containers", {{{"name", "app"}, {"status", "RUNNING"}, {"essential", true}}}}}};
  World w(c.db, c.agent, &c.now, &c.mu);
  REQUIRE(w.meter->recover());
  REQUIRE(w.tasks->recover());
  c.advance(30min);  // 00:10
  w.meter->tick();
  w.stop(kAlice, id);
  w.meter->tick();
  auto rs = w.records(kAlice, id);
  // 22:30-23:00 (once, though written twice), 23:00-00:00, 00:00-00:10.
  REQUIRE(rs.size() == 3);
  CHECK(rs[2].final);
  int64_t secs = 100 * 60;
  CHECK(rs[2].cumulative_billed_seconds == secs);
  CHECK(sum_amounts(rs) == reserved_amount(1024, 2048, secs, PricingConfig{}));
  auto chains = w.meter->verify(kAlice);
  REQUIRE(chains);
  REQUIRE(chains->size() == 1);
  CHECK((*chains)[0].ok());
  CHECK((*chains)[0].records == 3);
}

TEST_CASE("A task that ended while berthd was down is billed to its shim's exit time",
          "[billing-meter]") {
  Clocked c;
  std::string id;
  {
    World w(c.db, c.agent, &c.now, &c.mu);
    id = w.run(kAlice, definition("web", "512", "1024"));
    c.advance(2min);
    w.meter->tick();
  }
  // It exited 90 s after it was created; berthd came back an hour later.
  TimePoint exit = start_time() + 90s;
  std::time_t secs = std::chrono::system_clock::to_time_t(exit);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000000000Z", std::gmtime(&secs));
  c.advance(1h);
  c.agent.adopt_results[id] = {id,
                               false,
                               {{"status", "STOPPED"},
                                {"containers",
                                 {{{"name", "app"},
                                   {"status", "STOPPED"},
                                   {"exit_code", 0},
                                   {"finished_at", std::string(buf)}}}}}};
  World w(c.db, c.agent, &c.now, &c.mu);
  REQUIRE(w.meter->recover());
  REQUIRE(w.tasks->recover());
  REQUIRE(fake::eventually([&] { return w.status(kAlice, id) == TaskStatus::stopped; }));
  w.tasks->drain();
  w.meter->tick();
  auto rs = w.records(kAlice, id);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].final);
  CHECK(rs[0].cumulative_billed_seconds == 90);
  CHECK(rs[0].amount_micro_usd == reserved_amount(512, 1024, 90, PricingConfig{}));
}

TEST_CASE("Usage mode bills the CPU time and memory the agent measured", "[billing-meter]") {
  Clocked c;
  std::map<std::string, Account> accounts;
  Account a;
  a.id = kAlice;
  a.pricing_mode = "usage";
  accounts[kAlice] = a;
  World w(c.db, c.agent, &c.now, &c.mu, accounts);
  std::string id = w.run(kAlice, definition("burn", "1024", "2048"));
  // 10 s of one CPU and 512 MiB steady, sampled every 15 s for 2 minutes.
  int64_t mem = 512ll << 20;
  for (int i = 1; i <= 8; ++i) {
    c.advance(15s);
    UsageSample s;
    s.at = c.at();
    s.cpu_usec = std::min(i * 15, 10) * 1000000ll;
    s.memory_bytes = mem;
    s.memory_peak_bytes = mem;
    s.net_rx_bytes = 1000 * i;
    s.net_tx_bytes = 2000 * i;
    c.agent.set_usage(id, s);
    w.meter->tick();
  }
  w.stop(kAlice, id);
  w.meter->tick();
  auto rs = w.records(kAlice, id);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].mode == PricingMode::usage);
  CHECK(rs[0].cpu_usec == 10000000);
  CHECK(rs[0].net_rx_bytes == 8000);
  CHECK(rs[0].net_tx_bytes == 16000);
  CHECK(rs[0].memory_peak_bytes == mem);
  // 512 MiB from the first sample (15 s) to the last (120 s): 105 s.
  CHECK(rs[0].memory_kib_seconds == 512 * 1024 * 105);
  CHECK(rs[0].amount_micro_usd == usage_amount(10000000, 512 * 1024 * 105, PricingConfig{}));
  CHECK(rs[0].billed_seconds == 120);  // informational: no minimum in usage mode
  // The average: 512 MiB for 105 of the task's 120 s.
  auto t = w.tasks->get_task(kAlice, id);
  REQUIRE(t);
  auto bill = w.meter->bill(**t);
  REQUIRE(bill);
  CHECK(bill->memory_average_bytes == mem * 105 / 120);
  CHECK(bill->memory_peak_bytes == mem);
  CHECK(bill->cpu_usec == 10000000);
}

TEST_CASE("Quotas: a task beyond the account's concurrent vCPU or memory fails with the reason",
          "[billing-meter]") {
  Clocked c;
  std::map<std::string, Account> accounts;
  Account a;
  a.id = kAlice;
  a.max_cpu_units = 1024;
  a.max_memory_mib = 2560;
  accounts[kAlice] = a;
  World w(c.db, c.agent, &c.now, &c.mu, accounts);
  auto half = definition("half", "512", "1024");
  w.run(kAlice, half);
  std::string second = w.run(kAlice, half);
  RunTaskRequest req;
  auto r = w.tasks->run_task(kAlice, "default", half, req);
  REQUIRE(r);
  CHECK(r->tasks.empty());
  REQUIRE(r->failures.size() == 1);
  CHECK(r->failures[0].reason == "QUOTA:CPU");
  CHECK(r->failures[0].detail ==
        "account 111111111111 may reserve 1024 CPU units (1 vCPU) at once; its tasks "
        "reserve 1024 and this task needs 512");
  // Bob has no quota.
  CHECK(w.tasks->run_task(kBob, "default", half, req)->failures.empty());
  // Stopping one frees the quota; memory is the limit next.
  w.stop(kAlice, second);
  auto big = definition("big", "256", "2048");
  r = w.tasks->run_task(kAlice, "default", big, req);
  REQUIRE(r);
  REQUIRE(r->failures.size() == 1);
  CHECK(r->failures[0].reason == "QUOTA:MEMORY");
  CHECK(r->failures[0].detail.find("may reserve 2560 MiB") != std::string::npos);
}

TEST_CASE("A spending cap stops the account's tasks with the reason and refuses new ones",
          "[billing-meter]") {
  Clocked c;
  std::map<std::string, Account> accounts;
  Account a;
  a.id = kAlice;
  a.spending_cap_micro_usd = 1000;  // $0.001
  accounts[kAlice] = a;
  World w(c.db, c.agent, &c.now, &c.mu, accounts);
  auto def = definition("web", "512", "1024");
  std::string id = w.run(kAlice, def);
  std::string bobs = w.run(kBob, def);
  c.advance(60s);
  w.meter->tick();  // $0.000411 so far
  CHECK(w.status(kAlice, id) == TaskStatus::running);
  c.advance(90s);  // 150 s: 3,791,616,000 / 3,686,400 = 1028.54 -> $0.001029
  w.meter->tick();
  REQUIRE(fake::eventually([&] { return w.status(kAlice, id) == TaskStatus::stopped; }));
  auto t = w.tasks->get_task(kAlice, id);
  REQUIRE(t);
  CHECK(
      (*t)->stopped_reason.starts_with("Spending cap reached: account 111111111111 has been "
                                       "billed $0.001029 this month; its cap is $0.001000"));
  CHECK(w.status(kBob, bobs) == TaskStatus::running);
  RunTaskRequest req;
  auto r = w.tasks->run_task(kAlice, "default", def, req);
  REQUIRE(r);
  REQUIRE(r->failures.size() == 1);
  CHECK(r->failures[0].reason == "QUOTA:SPENDING");
  // Next month the account may run again.
  c.advance(std::chrono::hours(24 * 31));
  w.meter->tick();
  CHECK(w.tasks->run_task(kAlice, "default", def, req)->failures.empty());
}
