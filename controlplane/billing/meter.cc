// The meter (billing/meter.h). One mutex guards the tracked tasks; store
// and agent calls happen outside it, serialised by work_mu so that two
// passes never write the same task's records at once.
#include "controlplane/billing/meter.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <set>

#include "common/json.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "controlplane/model/arn.h"
#include "controlplane/scheduler/task_manager.h"

namespace berth::cp {

namespace {

constexpr jr::Document kCheckpointDoc{"meter checkpoint", "checkpoint"};

int64_t to_ms(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// The first millisecond of the UTC calendar month holding `ms`.
int64_t month_start_ms(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

std::string service_of(const Task& t) {
  constexpr std::string_view kPrefix = "service:";
  if (t.group.starts_with(kPrefix)) return t.group.substr(kPrefix.size());
  return "";
}

int64_t parse_size(const std::string& s) {
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + (c - '0');
    if (v > (int64_t{1} << 40)) return 0;
  }
  return v;
}

// 1536 -> "1.5" (cpu units as vCPUs, exact: 1024ths have a finite decimal).
std::string vcpus(int64_t units) {
  std::string s = format_usd(units * 1000000 / 1024);
  while (s.ends_with('0')) s.pop_back();
  if (s.ends_with('.')) s.pop_back();
  return s;
}

}  // namespace

// Everything the meter knows of one task it bills.
struct Tracked {
  // Tags and sizes.
  std::string account, cluster, family, service, task_id;
  int revision = 0;
  int64_t cpu_units = 0, memory_mib = 0;
  PricingMode mode = PricingMode::reserved;
  int64_t created_ms = 0;
  int64_t stopped_ms = 0;  // 0 while not stopped
  bool launched = false;
  // What the ledger holds: records through billed_through_ms, and the
  // task's totals at that point.
  int64_t billed_through_ms = 0;
  int64_t cum_billed_seconds = 0, cum_amount = 0;
  int64_t cum_cpu_usec = 0, cum_mem_kib_s = 0, cum_rx = 0, cum_tx = 0;
  // The latest sample (cumulative counters), and the memory integral
  // through sample_ms.
  int64_t sample_ms = 0;
  int64_t cpu_usec = 0, rx = 0, tx = 0, mem_bytes = 0, mem_kib_s = 0;
  int64_t peak = 0;        // highest memory since billed_through_ms
  int64_t peak_all = 0;    // highest memory of the task's life
  bool persisted = false;  // has a checkpoint in the store
};

struct Meter::State {
  std::mutex mu;
  std::map<std::string, Tracked> tasks;         // by task id
  std::set<std::string> finals;                 // stopped tasks whose final record is due
  std::map<std::string, int64_t> billed;        // by account: amounts of records written
  std::set<std::string> capped;                 // accounts over their spending cap
  std::map<std::string, int64_t> month_billed;  // accounts with a cap: this month's records
  int64_t month_of = 0;                         // month_start_ms the map is for
  std::mutex work_mu;
  std::condition_variable_any cv;
  bool wake = false;
  bool stopping = false;
};

namespace {

nlohmann::json checkpoint_json(const Tracked& k) {
  return {{"account", k.account},
          {"cluster", k.cluster},
          {"family", k.family},
          {"revision", k.revision},
          {"service", k.service},
          {"taskId", k.task_id},
          {"cpuUnits", k.cpu_units},
          {"memoryMib", k.memory_mib},
          {"mode", pricing_mode_name(k.mode)},
          {"createdMs", k.created_ms},
          {"stoppedMs", k.stopped_ms},
          {"launched", k.launched},
          {"billedThroughMs", k.billed_through_ms},
          {"cumBilledSeconds", k.cum_billed_seconds},
          {"cumAmount", k.cum_amount},
          {"cumCpuUsec", k.cum_cpu_usec},
          {"cumMemKibS", k.cum_mem_kib_s},
          {"cumRx", k.cum_rx},
          {"cumTx", k.cum_tx},
          {"sampleMs", k.sample_ms},
          {"cpuUsec", k.cpu_usec},
          {"rx", k.rx},
          {"tx", k.tx},
          {"memBytes", k.mem_bytes},
          {"memKibS", k.mem_kib_s},
          {"peak", k.peak},
          {"peakAll", k.peak_all}};
}

Result<Tracked> checkpoint_from(const std::string& doc) {
  BERTH_ASSIGN(auto j, parse_json(doc, "meter checkpoint"));
  jr::Node n = jr::Node::root(j, kCheckpointDoc);
  BERTH_TRY(jr::expect_object(n));
  Tracked k;
  std::string mode;
  BERTH_TRY(jr::read(n.member("account"), k.account));
  BERTH_TRY(jr::read(n.member("cluster"), k.cluster));
  BERTH_TRY(jr::read(n.member("family"), k.family));
  BERTH_TRY(jr::read(n.member("revision"), k.revision));
  BERTH_TRY(jr::read(n.member("service"), k.service));
  BERTH_TRY(jr::read(n.member("taskId"), k.task_id));
  BERTH_TRY(jr::read(n.member("cpuUnits"), k.cpu_units));
  BERTH_TRY(jr::read(n.member("memoryMib"), k.memory_mib));
  BERTH_TRY(jr::read(n.member("mode"), mode));
  BERTH_TRY(jr::read(n.member("createdMs"), k.created_ms));
  BERTH_TRY(jr::read(n.member("stoppedMs"), k.stopped_ms));
  BERTH_TRY(jr::read(n.member("launched"), k.launched));
  BERTH_TRY(jr::read(n.member("billedThroughMs"), k.billed_through_ms));
  BERTH_TRY(jr::read(n.member("cumBilledSeconds"), k.cum_billed_seconds));
  BERTH_TRY(jr::read(n.member("cumAmount"), k.cum_amount));
  BERTH_TRY(jr::read(n.member("cumCpuUsec"), k.cum_cpu_usec));
  BERTH_TRY(jr::read(n.member("cumMemKibS"), k.cum_mem_kib_s));
  BERTH_TRY(jr::read(n.member("cumRx"), k.cum_rx));
  BERTH_TRY(jr::read(n.member("cumTx"), k.cum_tx));
  BERTH_TRY(jr::read(n.member("sampleMs"), k.sample_ms));
  BERTH_TRY(jr::read(n.member("cpuUsec"), k.cpu_usec));
  BERTH_TRY(jr::read(n.member("rx"), k.rx));
  BERTH_TRY(jr::read(n.member("tx"), k.tx));
  BERTH_TRY(jr::read(n.member("memBytes"), k.mem_bytes));
  BERTH_TRY(jr::read(n.member("memKibS"), k.mem_kib_s));
  BERTH_TRY(jr::read(n.member("peak"), k.peak));
  BERTH_TRY(jr::read(n.member("peakAll"), k.peak_all));  // absent before it existed
  BERTH_ASSIGN(k.mode, parse_pricing_mode(mode));
  if (k.task_id.empty() || k.account.empty()) {
    return error("meter checkpoint", "checkpoint without account or task id");
  }
  k.persisted = true;
  return k;
}

// The task's cumulative billed seconds and amount when its allocation
// (and measured use) ran through `to_ms` (money.h's rule).
std::pair<int64_t, int64_t> cumulative_at(const Tracked& k, int64_t to_ms, int64_t cpu_usec,
                                          int64_t mem_kib_s, const PricingConfig& p) {
  int64_t elapsed_ns = std::max<int64_t>(0, to_ms - k.created_ms) * 1000000;
  if (k.mode == PricingMode::usage) {
    return {billed_seconds(elapsed_ns, 0), usage_amount(cpu_usec, mem_kib_s, p)};
  }
  int64_t secs = billed_seconds(elapsed_ns, p.minimum_seconds);
  return {secs, reserved_amount(k.cpu_units, k.memory_mib, secs, p)};
}

// Folds a sample into the task's counters: the memory integral grows by
// the trapezoid since the previous sample (KiB-seconds, integers).
void fold_sample(Tracked& k, const UsageSample& s, int64_t at_ms) {
  if (k.sample_ms != 0 && at_ms > k.sample_ms) {
    __int128 byte_ms =
        static_cast<__int128>(at_ms - k.sample_ms) * (k.mem_bytes + s.memory_bytes) / 2;
    k.mem_kib_s += static_cast<int64_t>(byte_ms / (1024 * 1000));
  }
  if (at_ms > k.sample_ms) k.sample_ms = at_ms;
  // Counters only grow; a smaller value is a sample from before a restart.
  k.cpu_usec = std::max(k.cpu_usec, s.cpu_usec);
  k.rx = std::max(k.rx, s.net_rx_bytes);
  k.tx = std::max(k.tx, s.net_tx_bytes);
  k.mem_bytes = s.memory_bytes;
  k.peak = std::max({k.peak, s.memory_bytes, s.memory_peak_bytes});
  k.peak_all = std::max(k.peak_all, k.peak);
}

}  // namespace

nlohmann::json task_bill_json(const TaskBill& b) {
  return {{"pricingMode", pricing_mode_name(b.mode)},
          {"billedSeconds", b.billed_seconds},
          {"amountMicroUsd", b.amount_micro_usd},
          {"amountUsd", format_usd(b.amount_micro_usd)},
          {"cpuSecondsUsed", format_usd(b.cpu_usec)},  // usec as seconds, 6 decimals
          {"memoryPeakBytes", b.memory_peak_bytes},
          {"memoryAverageBytes", b.memory_average_bytes},
          {"networkBytesIn", b.net_rx_bytes},
          {"networkBytesOut", b.net_tx_bytes},
          {"final", b.final}};
}

Meter::Meter(Store& store, Agent& agent, MeterOptions opts)
    : s_(std::make_unique<State>()), store_(store), agent_(agent), opts_(std::move(opts)) {
  if (!opts_.clock) opts_.clock = [] { return Clock::now(); };
}

Meter::~Meter() {
  shutdown();
}

void Meter::start() {
  if (!opts_.background || thread_.joinable()) return;
  thread_ = std::jthread([this](std::stop_token st) {
    auto interval = std::chrono::seconds(opts_.pricing.checkpoint_seconds);
    auto next = std::chrono::steady_clock::now() + interval;
    while (!st.stop_requested()) {
      bool due = false;
      {
        std::unique_lock lock(s_->mu);
        s_->cv.wait_until(lock, st, next, [&] { return s_->wake || s_->stopping; });
        if (s_->stopping) return;
        s_->wake = false;
        due = std::chrono::steady_clock::now() >= next;
      }
      if (due) {
        tick();
        next = std::chrono::steady_clock::now() + interval;
      } else {
        finish_stopped();
      }
    }
  });
}

void Meter::shutdown() {
  {
    std::lock_guard lock(s_->mu);
    s_->stopping = true;
  }
  s_->cv.notify_all();
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

PricingMode Meter::mode_of(const std::string& account) const {
  if (opts_.account) {
    if (auto a = opts_.account(account); a && !a->pricing_mode.empty()) {
      if (auto m = parse_pricing_mode(a->pricing_mode)) return *m;
    }
  }
  return opts_.pricing.mode;
}

void Meter::on_change(const Task& t) {
  bool first = false;
  Tracked snapshot;
  {
    std::lock_guard lock(s_->mu);
    auto it = s_->tasks.find(t.id);
    if (it == s_->tasks.end()) {
      // A stopped task not tracked any more has its final record already
      // (or recover() brings its checkpoint back).
      Tracked k;
      k.account = t.account;
      k.cluster = t.cluster;
      k.family = t.family;
      k.revision = t.revision;
      k.service = service_of(t);
      k.task_id = t.id;
      k.cpu_units = parse_size(t.cpu);
      k.memory_mib = parse_size(t.memory);
      k.mode = mode_of(t.account);
      k.created_ms = to_ms(t.created_at);
      k.billed_through_ms = k.created_ms;
      it = s_->tasks.emplace(t.id, std::move(k)).first;
      first = true;
    }
    Tracked& k = it->second;
    if (!t.node_ref.empty()) k.launched = true;
    if (t.last_status == TaskStatus::stopped && k.stopped_ms == 0) {
      k.stopped_ms =
          std::max(k.created_ms, to_ms(is_set(t.stopped_at) ? t.stopped_at : opts_.clock()));
      s_->finals.insert(t.id);
      s_->wake = true;
    }
    if (first) snapshot = k;
  }
  if (first) {
    // Persisted at once, so a crash before the first checkpoint still
    // leaves a trace to bill from.
    if (auto r = store_.put_checkpoint(
            {snapshot.account, snapshot.task_id, checkpoint_json(snapshot).dump()});
        !r) {
      log::error("meter: checkpoint of task {}: {}", snapshot.task_id, r.error().str());
    } else {
      std::lock_guard lock(s_->mu);
      if (auto it = s_->tasks.find(snapshot.task_id); it != s_->tasks.end()) {
        it->second.persisted = true;
      }
    }
  }
  if (!opts_.background) return;
  s_->cv.notify_all();
}

// Appends the task's record for [billed_through_ms, to_ms) and advances
// `k` to it. An existing record for the same (task, period) is the truth:
// `k` takes its totals (a restart that writes a record again bills nothing
// twice).
Result<void> Meter::append_record(Tracked& k, int64_t to_ms, bool final) {
  const PricingConfig& p = opts_.pricing;
  int64_t period_ms = int64_t{p.period_seconds} * 1000;
  LedgerRecord r;
  r.account = k.account;
  r.cluster = k.cluster;
  r.family = k.family;
  r.revision = k.revision;
  r.service = k.service;
  r.task_id = k.task_id;
  r.from_ms = k.billed_through_ms;
  r.to_ms = std::max(to_ms, k.billed_through_ms);
  r.period = r.from_ms / period_ms;
  r.final = final;
  r.mode = k.mode;
  r.cpu_units = k.cpu_units;
  r.memory_mib = k.memory_mib;
  auto [cum_secs, cum_amount] = cumulative_at(k, r.to_ms, k.cpu_usec, k.mem_kib_s, p);
  // Totals never go back (a task stopped inside a period already closed).
  cum_secs = std::max(cum_secs, k.cum_billed_seconds);
  cum_amount = std::max(cum_amount, k.cum_amount);
  r.billed_seconds = cum_secs - k.cum_billed_seconds;
  r.amount_micro_usd = cum_amount - k.cum_amount;
  r.cpu_usec = std::max<int64_t>(0, k.cpu_usec - k.cum_cpu_usec);
  r.memory_kib_seconds = std::max<int64_t>(0, k.mem_kib_s - k.cum_mem_kib_s);
  r.memory_peak_bytes = k.peak;
  r.net_rx_bytes = std::max<int64_t>(0, k.rx - k.cum_rx);
  r.net_tx_bytes = std::max<int64_t>(0, k.tx - k.cum_tx);
  r.cumulative_billed_seconds = cum_secs;
  r.cumulative_amount_micro_usd = cum_amount;
  std::string doc = ledger_doc(r);
  BERTH_ASSIGN(auto appended,
               store_.append_ledger(k.account, k.task_id, r.period, final, r.from_ms,
                                    [&](const std::string& prev) -> Result<StoredLedgerRow> {
                                      StoredLedgerRow row;
                                      row.account = k.account;
                                      row.task_id = k.task_id;
                                      row.period = r.period;
                                      row.final = final;
                                      row.doc = doc;
                                      row.prev_hash = prev;
                                      row.hash = ledger_hash(prev, doc);
                                      return row;
                                    }));
  LedgerRecord stored = r;
  if (!appended.appended) {
    BERTH_ASSIGN(stored, ledger_from_doc(appended.row.doc));
    log::info("meter: task {} period {}: record exists already (seq {}), not billed again",
              k.task_id, r.period, appended.row.seq);
  }
  k.billed_through_ms = stored.to_ms;
  k.cum_billed_seconds = stored.cumulative_billed_seconds;
  k.cum_amount = stored.cumulative_amount_micro_usd;
  k.cum_cpu_usec += stored.cpu_usec;
  k.cum_mem_kib_s += stored.memory_kib_seconds;
  k.cum_rx += stored.net_rx_bytes;
  k.cum_tx += stored.net_tx_bytes;
  k.peak = 0;
  if (appended.appended) {
    std::lock_guard lock(s_->mu);
    s_->billed[k.account] += stored.amount_micro_usd;
    if (s_->month_billed.contains(k.account) && month_start_ms(stored.from_ms) == s_->month_of) {
      s_->month_billed[k.account] += stored.amount_micro_usd;
    }
  }
  if (stored.final && !final) {
    // The task's bill was closed already (before a restart).
    return kind_error(ErrorKind::exists, "meter", "task {}: bill closed", k.task_id);
  }
  return {};
}

// Closes every period of `k` that ended by `until_ms`.
Result<void> Meter::close_periods(Tracked& k, int64_t until_ms) {
  int64_t period_ms = int64_t{opts_.pricing.period_seconds} * 1000;
  while (true) {
    int64_t end = (k.billed_through_ms / period_ms + 1) * period_ms;
    if (end > until_ms) return {};
    BERTH_TRY(append_record(k, end, false));
  }
}

// Writes the final records of the stopped tasks.
void Meter::finish_stopped() {
  std::lock_guard work(s_->work_mu);
  std::vector<Tracked> due;
  {
    std::lock_guard lock(s_->mu);
    for (const auto& id : s_->finals) {
      if (auto it = s_->tasks.find(id); it != s_->tasks.end()) due.push_back(it->second);
    }
  }
  for (auto& k : due) {
    if (k.launched) {
      // The agent took a final sample at release; without one (a task
      // whose microhost is gone) the last checkpoint stands.
      if (auto u = agent_.usage(k.task_id)) {
        fold_sample(k, *u, std::min(to_ms(u->at), k.stopped_ms));
      } else {
        log::warn("meter: final sample of task {}: {}", k.task_id, u.error().str());
      }
    }
    Result<void> r = close_periods(k, k.stopped_ms);
    if (r) r = append_record(k, k.stopped_ms, true);
    if (!r && r.error().kind != ErrorKind::exists) {
      log::error("meter: final record of task {}: {}", k.task_id, r.error().str());
      continue;  // tried again at the next pass
    }
    (void)store_.erase_checkpoint(k.account, k.task_id);
    std::lock_guard lock(s_->mu);
    s_->finals.erase(k.task_id);
    s_->tasks.erase(k.task_id);
  }
}

void Meter::tick() {
  int64_t now = to_ms(opts_.clock());
  {
    std::lock_guard work(s_->work_mu);
    std::vector<Tracked> live;
    {
      std::lock_guard lock(s_->mu);
      for (const auto& [id, k] : s_->tasks) {
        if (k.stopped_ms == 0) live.push_back(k);
      }
    }
    for (auto& k : live) {
      if (k.launched) {
        if (auto u = agent_.usage(k.task_id)) {
          fold_sample(k, *u, now);
        } else if (u.error().kind != ErrorKind::not_found) {
          log::warn("meter: sampling task {}: {}", k.task_id, u.error().str());
        }
      }
      int64_t period_ms = int64_t{opts_.pricing.period_seconds} * 1000;
      if ((k.billed_through_ms / period_ms + 1) * period_ms <= now) {
        // A period ended. The task may have stopped unseen since (its
        // STOPPED change is in flight): its final record closes it then.
        auto t = store_.get_task(k.account, k.task_id);
        bool stopped = t && *t && (*t)->last_status == "STOPPED";
        if (!stopped) {
          if (auto r = close_periods(k, now); !r) {
            if (r.error().kind != ErrorKind::exists) {
              log::error("meter: closing a period of task {}: {}", k.task_id, r.error().str());
            }
          }
        }
      }
      if (auto r = store_.put_checkpoint({k.account, k.task_id, checkpoint_json(k).dump()}); !r) {
        log::error("meter: checkpoint of task {}: {}", k.task_id, r.error().str());
      }
      std::lock_guard lock(s_->mu);
      auto it = s_->tasks.find(k.task_id);
      if (it == s_->tasks.end() || it->second.stopped_ms != 0) {
        // Stopped meanwhile: keep the newer counters, the final is due.
        if (it != s_->tasks.end()) {
          int64_t stopped = it->second.stopped_ms;
          bool launched = it->second.launched || k.launched;
          it->second = k;
          it->second.stopped_ms = stopped;
          it->second.launched = launched;
        }
        continue;
      }
      bool launched = it->second.launched || k.launched;
      it->second = k;
      it->second.launched = launched;
      it->second.persisted = true;
    }
  }
  finish_stopped();
  enforce_caps(now);
}

void Meter::enforce_caps(int64_t now_ms) {
  if (!opts_.account) return;
  (void)now_ms;
  std::map<std::string, std::vector<std::string>> running;  // account -> live task ids
  {
    std::lock_guard lock(s_->mu);
    for (const auto& [id, k] : s_->tasks) {
      if (k.stopped_ms == 0) running[k.account].push_back(id);
    }
  }
  std::set<std::string> accounts;
  for (const auto& [a, ids] : running) accounts.insert(a);
  {
    std::lock_guard lock(s_->mu);
    for (const auto& a : s_->capped) accounts.insert(a);
  }
  for (const auto& account : accounts) {
    auto a = opts_.account(account);
    if (!a || a->spending_cap_micro_usd <= 0) continue;
    int64_t spent = month_to_date(account, opts_.clock());
    bool over = spent >= a->spending_cap_micro_usd;
    {
      std::lock_guard lock(s_->mu);
      if (over) {
        s_->capped.insert(account);
      } else {
        s_->capped.erase(account);
      }
    }
    if (!over || tasks_ == nullptr) continue;
    std::string reason = fmt::format(
        "Spending cap reached: account {} has been billed ${} this month; its cap is ${}", account,
        format_usd(spent), format_usd(a->spending_cap_micro_usd));
    for (const auto& id : running[account]) {
      log::warn("meter: stopping task {}: {}", id, reason);
      if (auto r = tasks_->stop_task(account, std::nullopt, id, reason); !r) {
        log::warn("meter: stopping task {} (spending cap): {}", id, r.error().str());
      }
    }
  }
}

int64_t Meter::month_to_date(const std::string& account, TimePoint at) {
  int64_t now = to_ms(at);
  int64_t month = month_start_ms(now);
  int64_t recorded = 0;
  bool cached = false;
  {
    std::lock_guard lock(s_->mu);
    if (s_->month_of != month) {
      s_->month_of = month;
      s_->month_billed.clear();
    }
    if (auto it = s_->month_billed.find(account); it != s_->month_billed.end()) {
      recorded = it->second;
      cached = true;
    }
  }
  if (!cached) {
    LedgerQuery q;
    q.account = account;
    q.from_ms = month;
    int64_t sum = 0;
    while (true) {
      auto rows = store_.ledger(q);
      if (!rows) {
        log::error("meter: reading the ledger of {}: {}", account, rows.error().str());
        break;
      }
      for (const auto& row : *rows) {
        if (auto rec = ledger_from_doc(row.doc)) sum += rec->amount_micro_usd;
        q.after_seq = row.seq;
      }
      if (static_cast<int>(rows->size()) < q.limit) break;
    }
    std::lock_guard lock(s_->mu);
    if (s_->month_of == month) s_->month_billed[account] = sum;
    recorded = sum;
  }
  // What running (and stopping) tasks have accrued since their last record.
  int64_t accrued = 0;
  std::lock_guard lock(s_->mu);
  for (const auto& [id, k] : s_->tasks) {
    if (k.account != account) continue;
    int64_t until = k.stopped_ms != 0 ? k.stopped_ms : now;
    auto [secs, amount] = cumulative_at(k, until, k.cpu_usec, k.mem_kib_s, opts_.pricing);
    accrued += std::max<int64_t>(0, amount - k.cum_amount);
  }
  return recorded + accrued;
}

std::optional<Meter::Refusal> Meter::admit(const std::string& account, int64_t reserved_cpu_units,
                                           int64_t reserved_memory_mib, int64_t cpu_units,
                                           int64_t memory_mib) const {
  if (!opts_.account) return std::nullopt;
  auto a = opts_.account(account);
  if (!a) return std::nullopt;
  if (a->max_cpu_units > 0 && reserved_cpu_units + cpu_units > a->max_cpu_units) {
    return Refusal{"QUOTA:CPU",
                   fmt::format("account {} may reserve {} CPU units ({} vCPU) at once; its tasks "
                               "reserve {} and this task needs {}",
                               account, a->max_cpu_units, vcpus(a->max_cpu_units),
                               reserved_cpu_units, cpu_units)};
  }
  if (a->max_memory_mib > 0 && reserved_memory_mib + memory_mib > a->max_memory_mib) {
    return Refusal{"QUOTA:MEMORY",
                   fmt::format("account {} may reserve {} MiB of memory at once; its tasks "
                               "reserve {} MiB and this task needs {} MiB",
                               account, a->max_memory_mib, reserved_memory_mib, memory_mib)};
  }
  if (a->spending_cap_micro_usd > 0) {
    std::lock_guard lock(s_->mu);
    if (s_->capped.contains(account)) {
      return Refusal{"QUOTA:SPENDING",
                     fmt::format("account {} has reached its spending cap of ${} for this month",
                                 account, format_usd(a->spending_cap_micro_usd))};
    }
  }
  return std::nullopt;
}

Result<void> Meter::recover() {
  BERTH_ASSIGN(auto cps, store_.checkpoints());
  for (const auto& c : cps) {
    auto k = checkpoint_from(c.doc);
    if (!k) {
      log::error("meter: checkpoint of task {} ({}): {}", c.task_id, c.account, k.error().str());
      continue;
    }
    // The task's state now (TaskManager::recover ran first).
    auto t = store_.get_task(k->account, k->task_id);
    std::lock_guard lock(s_->mu);
    auto [it, inserted] = s_->tasks.emplace(k->task_id, *k);
    if (!inserted) {
      // on_change saw the task first (recover's own updates): keep the
      // checkpoint's ledger position and counters, and what it learned.
      int64_t stopped = it->second.stopped_ms;
      bool launched = it->second.launched || k->launched;
      it->second = *k;
      it->second.stopped_ms = stopped != 0 ? stopped : k->stopped_ms;
      it->second.launched = launched;
    }
    Tracked& tr = it->second;
    if (t && *t && (*t)->last_status == "STOPPED" && tr.stopped_ms == 0) {
      tr.stopped_ms = std::max(tr.created_ms, static_cast<int64_t>((*t)->stopped_at * 1000));
    }
    if (t && !*t && tr.stopped_ms == 0) {
      // The task is gone from the store (expired): bill it to its last sample.
      tr.stopped_ms = std::max(tr.created_ms, tr.sample_ms);
    }
    if (tr.stopped_ms != 0) s_->finals.insert(tr.task_id);
  }
  // Totals for the metrics.
  BERTH_ASSIGN(auto accounts, store_.ledger_accounts());
  for (const auto& account : accounts) {
    LedgerQuery q;
    q.account = account;
    int64_t sum = 0;
    while (true) {
      BERTH_ASSIGN(auto rows, store_.ledger(q));
      for (const auto& row : rows) {
        if (auto rec = ledger_from_doc(row.doc)) sum += rec->amount_micro_usd;
        q.after_seq = row.seq;
      }
      if (static_cast<int>(rows.size()) < q.limit) break;
    }
    std::lock_guard lock(s_->mu);
    s_->billed[account] = sum;
  }
  return {};
}

Result<TaskBill> Meter::bill(const Task& t) {
  TaskBill b;
  b.mode = mode_of(t.account);
  {
    std::lock_guard lock(s_->mu);
    if (auto it = s_->tasks.find(t.id); it != s_->tasks.end()) {
      const Tracked& k = it->second;
      int64_t until = k.stopped_ms != 0 ? k.stopped_ms : to_ms(opts_.clock());
      auto [secs, amount] = cumulative_at(k, until, k.cpu_usec, k.mem_kib_s, opts_.pricing);
      b.mode = k.mode;
      b.billed_seconds = std::max(secs, k.cum_billed_seconds);
      b.amount_micro_usd = std::max(amount, k.cum_amount);
      b.cpu_usec = k.cpu_usec;
      b.memory_peak_bytes = std::max(k.peak, k.peak_all);
      if (k.sample_ms > k.created_ms) {
        b.memory_average_bytes = static_cast<int64_t>(static_cast<__int128>(k.mem_kib_s) * 1024 *
                                                      1000 / (k.sample_ms - k.created_ms));
      }
      b.net_rx_bytes = k.rx;
      b.net_tx_bytes = k.tx;
      return b;
    }
  }
  // Not tracked: its bill is closed; the ledger has it.
  LedgerQuery q;
  q.account = t.account;
  q.task_id = t.id;
  BERTH_ASSIGN(auto rows, store_.ledger(q));
  int64_t kib_s = 0, span_ms = 0;
  for (const auto& row : rows) {
    BERTH_ASSIGN(LedgerRecord r, ledger_from_doc(row.doc));
    kib_s += r.memory_kib_seconds;
    span_ms += r.to_ms - r.from_ms;
    b.mode = r.mode;
    b.billed_seconds = r.cumulative_billed_seconds;
    b.amount_micro_usd = r.cumulative_amount_micro_usd;
    b.cpu_usec += r.cpu_usec;
    b.memory_peak_bytes = std::max(b.memory_peak_bytes, r.memory_peak_bytes);
    b.net_rx_bytes += r.net_rx_bytes;
    b.net_tx_bytes += r.net_tx_bytes;
    b.final = b.final || r.final;
  }
  if (span_ms > 0) {
    b.memory_average_bytes =
        static_cast<int64_t>(static_cast<__int128>(kib_s) * 1024 * 1000 / span_ms);
  }
  return b;
}

Result<UsageReport> Meter::usage(const UsageQuery& q) {
  if (q.account.empty()) return kind_error(ErrorKind::invalid, "usage", "no account");
  if (q.to_ms < q.from_ms) {
    return kind_error(ErrorKind::invalid, "usage", "'to' is before 'from'");
  }
  LedgerQuery lq;
  lq.account = q.account;
  lq.from_ms = q.from_ms;
  lq.to_ms = q.to_ms;
  std::vector<LedgerRecord> records;
  while (true) {
    BERTH_ASSIGN(auto rows, store_.ledger(lq));
    for (const auto& row : rows) {
      BERTH_ASSIGN(LedgerRecord r, ledger_from_doc(row.doc));
      r.seq = row.seq;
      r.prev_hash = row.prev_hash;
      r.hash = row.hash;
      records.push_back(std::move(r));
      lq.after_seq = row.seq;
    }
    if (static_cast<int>(rows.size()) < lq.limit) break;
  }
  return build_usage_report(q.account, q.from_ms, q.to_ms, q.group, records);
}

Result<std::vector<ChainReport>> Meter::verify(const std::string& account) {
  std::vector<std::string> accounts;
  if (account.empty()) {
    BERTH_ASSIGN(accounts, store_.ledger_accounts());
  } else {
    accounts.push_back(account);
  }
  std::vector<ChainReport> out;
  for (const auto& a : accounts) {
    LedgerQuery q;
    q.account = a;
    std::vector<StoredLedgerRow> all;
    while (true) {
      BERTH_ASSIGN(auto rows, store_.ledger(q));
      bool more = static_cast<int>(rows.size()) >= q.limit;
      for (auto& row : rows) {
        q.after_seq = row.seq;
        all.push_back(std::move(row));
      }
      if (!more) break;
    }
    out.push_back(verify_chain(a, all));
  }
  return out;
}

std::map<std::string, int64_t> Meter::billed_by_account() const {
  std::lock_guard lock(s_->mu);
  return s_->billed;
}

}  // namespace berth::cp
