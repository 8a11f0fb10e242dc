// The meter: turns tasks' lifetimes and their measured use into ledger
// records (billing/ledger.h), enforces accounts' quotas and spending caps,
// and answers usage queries.
//
//   TaskManager --on_change(task)--> Meter       (every persisted change)
//   Meter thread, every checkpoint_seconds:
//     agent.usage(task) -> checkpoint in the store (counters, memory integral)
//     a period that ended -> its ledger record (append_ledger, idempotent)
//     spending caps -> stop the account's tasks (reason recorded)
//   task STOPPED -> final record: billed to stoppedAt, usage from the
//     agent's final sample (taken at release)
//
// Crash safety: reserved quantities come from the task's own timestamps
// (createdAt .. stoppedAt in the store), so they are exact after any crash;
// measured quantities resume from the last checkpoint (the cgroup and veth
// counters are cumulative, so CPU time and bytes are exact too; only the
// memory integral loses the outage). recover() (before the task manager's)
// resumes every billed task from its checkpoint; every record is keyed (task, period), so writing
// one again is a no-op.
//
// Thread safety: every public method may be called from any thread; the
// query methods block on the store (not for I/O threads).
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "controlplane/agent/agent.h"
#include "controlplane/billing/ledger.h"
#include "controlplane/billing/money.h"
#include "controlplane/model/model.h"
#include "controlplane/store/store.h"

namespace berth::cp {

class TaskManager;
struct Tracked;  // meter.cc

struct MeterOptions {
  PricingConfig pricing;
  // Accounts' quotas, caps and pricing mode by id (model.h Account).
  std::function<std::optional<Account>(const std::string& id)> account;
  // Injectable for tests; default system_clock::now.
  std::function<TimePoint()> clock;
  // false: no background thread (tests drive tick() themselves).
  bool background = true;
};

// A task's bill so far (DescribeTasks' "berthBilling", berth describe).
struct TaskBill {
  PricingMode mode = PricingMode::reserved;
  int64_t billed_seconds = 0;
  int64_t amount_micro_usd = 0;
  int64_t cpu_usec = 0;
  int64_t memory_peak_bytes = 0;
  int64_t memory_average_bytes = 0;  // the measured memory's time average so far
  int64_t net_rx_bytes = 0;
  int64_t net_tx_bytes = 0;
  bool final = false;  // the task has stopped and its bill is closed
};
nlohmann::json task_bill_json(
    const TaskBill& b);  // {"billedSeconds", "amountMicroUsd", "amountUsd", ...}

struct UsageQuery {
  std::string account;  // required: an account reads only its own usage
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;
  UsageGroup group = UsageGroup::task;
};

class Meter {
 public:
  Meter(Store& store, Agent& agent, MeterOptions opts);
  ~Meter();
  Meter(const Meter&) = delete;
  Meter& operator=(const Meter&) = delete;

  // The task manager to stop tasks through (spending caps). Set before
  // start().
  void attach(TaskManager& tasks) { tasks_ = &tasks; }

  // BEFORE TaskManager::recover() (whose changes reach on_change): resumes
  // every task with a checkpoint from it; tasks the store has STOPPED (or
  // no longer has) get their final records at the next pass (tick(), or
  // the thread once started). Tasks that ended during the outage come
  // through on_change when TaskManager::recover() stops them.
  Result<void> recover();
  void start();     // the checkpoint thread (if opts.background)
  void shutdown();  // stops it; idempotent

  // TaskManager's hook: called after every persisted change of a task.
  void on_change(const Task& t);
  // One pass: sample and checkpoint running tasks, close ended periods,
  // write final records of stopped tasks, enforce caps (tests call it).
  void tick();

  // Admission for RunTask: nullopt, or {reason, detail} (QUOTA:CPU,
  // QUOTA:MEMORY, QUOTA:SPENDING). `reserved_now` is what the account's
  // live tasks reserve; `size` the new task's.
  struct Refusal {
    std::string reason;
    std::string detail;
  };
  std::optional<Refusal> admit(const std::string& account, int64_t reserved_cpu_units,
                               int64_t reserved_memory_mib, int64_t cpu_units,
                               int64_t memory_mib) const;

  // The task's bill now (running: up to now; stopped: its final records).
  Result<TaskBill> bill(const Task& t);

  Result<UsageReport> usage(const UsageQuery& q);
  // account "" = every account with records.
  Result<std::vector<ChainReport>> verify(const std::string& account);
  // Billed amount (records written) by account: the Prometheus counter.
  std::map<std::string, int64_t> billed_by_account() const;
  // Amount billed to the account in the UTC calendar month of `at`,
  // including what running tasks have accrued since their last record.
  int64_t month_to_date(const std::string& account, TimePoint at);

 private:
  struct State;
  PricingMode mode_of(const std::string& account) const;
  Result<void> append_record(Tracked& k, int64_t to_ms, bool final);
  Result<void> close_periods(Tracked& k, int64_t until_ms);
  void finish_stopped();
  void enforce_caps(int64_t now_ms);
  std::unique_ptr<State> s_;
  Store& store_;
  Agent& agent_;
  TaskManager* tasks_ = nullptr;
  MeterOptions opts_;
  std::jthread thread_;
};

}  // namespace berth::cp
