#include "controlplane/billing/ledger.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "common/json.h"
#include "common/json_reader.h"
#include "controlplane/api/sigv4.h"

namespace berth::cp {

namespace {

using json = nlohmann::json;

constexpr std::string_view kStep = "ledger";
constexpr int kDocVersion = 1;
// A document is well under 2 KiB; anything far larger is not one of ours
// and is refused before it is parsed.
constexpr size_t kMaxDocBytes = 1 << 20;
constexpr int64_t kDayMs = 86400000;

// A JSON string literal, escaped the one way nlohmann writes it (bytes that
// are not UTF-8 become U+FFFD rather than aborting the process).
std::string quoted(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && (a < 0) != (b < 0)) --q;
  return q;
}

struct Civil {
  int64_t year;
  unsigned month;
  unsigned day;
};

// Days since 1970-01-01 to the proleptic Gregorian date (H. Hinnant's
// civil_from_days, in 64-bit arithmetic: no input overflows it).
Civil civil_from_days(int64_t z) {
  z += 719468;
  int64_t era = floor_div(z, 146097);
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  auto d = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
  auto m = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

// "YYYY-MM-DD" of the UTC day holding epoch millisecond `ms`.
std::string utc_day(int64_t ms) {
  Civil c = civil_from_days(floor_div(ms, kDayMs));
  return fmt::format("{:04}-{:02}-{:02}", c.year, c.month, c.day);
}

// "2026-12-05T05:48:30Z" (".123" before the Z when not a whole second);
// null for instants RFC 3339 cannot write (years outside 0000..9999, e.g.
// an open end INT64_MAX).
json rfc3339(int64_t ms) {
  int64_t days = floor_div(ms, kDayMs);
  Civil c = civil_from_days(days);
  if (c.year < 0 || c.year > 9999) return nullptr;
  int64_t in_day = ms - days * kDayMs;
  int64_t s = in_day / 1000;
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", c.year, c.month, c.day,
                                s / 3600, s / 60 % 60, s % 60);
  if (in_day % 1000 != 0) out += fmt::format(".{:03}", in_day % 1000);
  return out + "Z";
}

int64_t milli_units(int64_t units_of_1024, int64_t seconds) {
  return div_round_half_up(__int128{units_of_1024} * seconds * 1000, 1024);
}

// ---------------------------------------------------------------------------
// The document's members, in their canonical order, as (name, accessor)
// pairs shared by the writer and the reader so that the two cannot drift.

template <class T>
using Member = std::pair<std::string_view, T LedgerRecord::*>;

constexpr Member<std::string> kStringsHead[] = {
    {"account", &LedgerRecord::account},
    {"cluster", &LedgerRecord::cluster},
    {"family", &LedgerRecord::family},
};
constexpr Member<std::string> kStringsTail[] = {
    {"service", &LedgerRecord::service},
    {"task_id", &LedgerRecord::task_id},
};
constexpr Member<int64_t> kWindow[] = {
    {"from_ms", &LedgerRecord::from_ms},
    {"to_ms", &LedgerRecord::to_ms},
};
constexpr Member<int64_t> kQuantities[] = {
    {"cpu_units", &LedgerRecord::cpu_units},
    {"memory_mib", &LedgerRecord::memory_mib},
    {"billed_seconds", &LedgerRecord::billed_seconds},
    {"cpu_usec", &LedgerRecord::cpu_usec},
    {"memory_kib_seconds", &LedgerRecord::memory_kib_seconds},
    {"memory_peak_bytes", &LedgerRecord::memory_peak_bytes},
    {"net_rx_bytes", &LedgerRecord::net_rx_bytes},
    {"net_tx_bytes", &LedgerRecord::net_tx_bytes},
    {"amount_micro_usd", &LedgerRecord::amount_micro_usd},
    {"cumulative_billed_seconds", &LedgerRecord::cumulative_billed_seconds},
    {"cumulative_amount_micro_usd", &LedgerRecord::cumulative_amount_micro_usd},
};

template <class T, size_t N>
Result<void> read_members(const jr::Node& root, LedgerRecord& r, const Member<T> (&members)[N]) {
  for (const auto& [name, field] : members)
    BERTH_TRY(jr::read_required(root.member(name), r.*field));
  return {};
}

const jr::Document kDoc{"ledger", "ledger doc"};

}  // namespace

// ---------------------------------------------------------------------------
// Documents and hashes

// {"v":1,"account":...,"cluster":...,"family":...,"revision":N,"service":...,
//  "task_id":...,"period":N,"final":B,"from_ms":N,"to_ms":N,"mode":"reserved",
//  "cpu_units":N,...,"cumulative_amount_micro_usd":N}: no spaces, this order.
std::string ledger_doc(const LedgerRecord& r) {
  std::string out = fmt::format("{{\"v\":{}", kDocVersion);
  auto str = [&](std::string_view name, const std::string& v) {
    out += fmt::format(",\"{}\":{}", name, quoted(v));
  };
  auto num = [&](std::string_view name, int64_t v) { out += fmt::format(",\"{}\":{}", name, v); };
  for (const auto& [name, field] : kStringsHead) str(name, r.*field);
  num("revision", r.revision);
  for (const auto& [name, field] : kStringsTail) str(name, r.*field);
  num("period", r.period);
  out += fmt::format(",\"final\":{}", r.final);
  for (const auto& [name, field] : kWindow) num(name, r.*field);
  str("mode", std::string(pricing_mode_name(r.mode)));
  for (const auto& [name, field] : kQuantities) num(name, r.*field);
  return out + "}";
}

Result<LedgerRecord> ledger_from_doc(std::string_view doc) {
  if (doc.size() > kMaxDocBytes) {
    return kind_error(ErrorKind::invalid, kStep, "ledger doc: {} bytes, more than the {} allowed",
                      doc.size(), kMaxDocBytes);
  }
  BERTH_ASSIGN(json j, parse_json(doc, "ledger doc"));
  jr::Node root = jr::Node::root(j, kDoc);
  BERTH_TRY(jr::expect_object(root));
  auto unknown = jr::unknown_members(root, {"v",
                                            "account",
                                            "cluster",
                                            "family",
                                            "revision",
                                            "service",
                                            "task_id",
                                            "period",
                                            "final",
                                            "from_ms",
                                            "to_ms",
                                            "mode",
                                            "cpu_units",
                                            "memory_mib",
                                            "billed_seconds",
                                            "cpu_usec",
                                            "memory_kib_seconds",
                                            "memory_peak_bytes",
                                            "net_rx_bytes",
                                            "net_tx_bytes",
                                            "amount_micro_usd",
                                            "cumulative_billed_seconds",
                                            "cumulative_amount_micro_usd"});
  if (!unknown.empty()) return jr::fail(root.member(unknown.front()), "unknown member");
  int version = 0;
  BERTH_TRY(jr::read_required(root.member("v"), version));
  if (version != kDocVersion) {
    return jr::fail(root.member("v"), "version {} is not {}", version, kDocVersion);
  }
  LedgerRecord r;
  BERTH_TRY(read_members(root, r, kStringsHead));
  BERTH_TRY(jr::read_required(root.member("revision"), r.revision));
  BERTH_TRY(read_members(root, r, kStringsTail));
  BERTH_TRY(jr::read_required(root.member("period"), r.period));
  BERTH_TRY(jr::read_required(root.member("final"), r.final));
  BERTH_TRY(read_members(root, r, kWindow));
  std::string mode;
  BERTH_TRY(jr::read_required(root.member("mode"), mode));
  auto parsed_mode = parse_pricing_mode(mode);
  if (!parsed_mode) return jr::fail(root.member("mode"), "{}", parsed_mode.error().message);
  r.mode = *parsed_mode;
  BERTH_TRY(read_members(root, r, kQuantities));
  return r;
}

std::string ledger_hash(std::string_view prev_hash, std::string_view doc) {
  std::string input;
  input.reserve(prev_hash.size() + 1 + doc.size());
  input.append(prev_hash).append("\n").append(doc);
  return sigv4::hex_sha256(input);
}

json ledger_json(const LedgerRecord& r) {
  return json{
      {"seq", r.seq},
      {"account", r.account},
      {"cluster", r.cluster},
      {"family", r.family},
      {"revision", r.revision},
      {"service", r.service},
      {"taskId", r.task_id},
      {"period", r.period},
      {"final", r.final},
      {"fromMs", r.from_ms},
      {"toMs", r.to_ms},
      {"from", rfc3339(r.from_ms)},
      {"to", rfc3339(r.to_ms)},
      {"mode", pricing_mode_name(r.mode)},
      {"cpuUnits", r.cpu_units},
      {"memoryMib", r.memory_mib},
      {"billedSeconds", r.billed_seconds},
      {"cpuUsec", r.cpu_usec},
      {"memoryKibSeconds", r.memory_kib_seconds},
      {"memoryPeakBytes", r.memory_peak_bytes},
      {"memoryAverageBytes",
       r.to_ms > r.from_ms ? static_cast<int64_t>(static_cast<__int128>(r.memory_kib_seconds) *
                                                  1024 * 1000 / (r.to_ms - r.from_ms))
                           : int64_t{0}},
      {"netRxBytes", r.net_rx_bytes},
      {"netTxBytes", r.net_tx_bytes},
      {"amountMicroUsd", r.amount_micro_usd},
      {"amountUsd", format_usd(r.amount_micro_usd)},
      {"cumulativeBilledSeconds", r.cumulative_billed_seconds},
      {"cumulativeAmountMicroUsd", r.cumulative_amount_micro_usd},
      {"cumulativeAmountUsd", format_usd(r.cumulative_amount_micro_usd)},
      {"prevHash", r.prev_hash},
      {"hash", r.hash},
  };
}

// ---------------------------------------------------------------------------
// Verification

ChainReport verify_chain(const std::string& account, const std::vector<StoredLedgerRow>& rows) {
  ChainReport report;
  report.account = account;
  report.records = static_cast<int64_t>(rows.size());
  auto problem = [&](const StoredLedgerRow& row, std::string what) {
    report.problems.push_back({row.seq, row.task_id, std::move(what)});
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    const StoredLedgerRow& row = rows[i];
    if (row.account != account) problem(row, fmt::format("row is account {}'s", row.account));
    if (i > 0 && row.seq <= rows[i - 1].seq) {
      problem(row, fmt::format("seq is not after record {}'s", rows[i - 1].seq));
    }
    if (auto rec = ledger_from_doc(row.doc); !rec) {
      problem(row, fmt::format("doc does not parse: {}", rec.error().str()));
    } else {
      report.total_micro_usd += rec->amount_micro_usd;
      if (rec->account != row.account) {
        problem(row,
                fmt::format("doc's account {} is not the row's {}", rec->account, row.account));
      }
      if (rec->task_id != row.task_id) {
        problem(row, fmt::format("doc's task {} is not the row's {}", rec->task_id, row.task_id));
      }
      if (rec->period != row.period) {
        problem(row, fmt::format("doc's period {} is not the row's {}", rec->period, row.period));
      }
      if (rec->final != row.final) {
        problem(row, fmt::format("doc's final {} is not the row's {}", rec->final, row.final));
      }
    }
    if (ledger_hash(row.prev_hash, row.doc) != row.hash) {
      problem(row, "hash does not match its contents");
    }
    if (i == 0) {
      if (row.prev_hash != kGenesisHash) {
        problem(row,
                "prev_hash is not the genesis hash, but this is the account's first record "
                "(the records before it are missing)");
      }
    } else if (row.prev_hash != rows[i - 1].hash) {
      problem(row, fmt::format("prev_hash does not match record {}'s hash (a record between them "
                               "was removed or inserted, or the records were reordered)",
                               rows[i - 1].seq));
    }
  }
  if (!rows.empty()) report.head = rows.back().hash;
  return report;
}

// ---------------------------------------------------------------------------
// Usage reports

Result<UsageGroup> parse_usage_group(std::string_view s) {
  for (UsageGroup g : {UsageGroup::task, UsageGroup::family, UsageGroup::service, UsageGroup::day,
                       UsageGroup::none}) {
    if (s == usage_group_name(g)) return g;
  }
  return kind_error(ErrorKind::invalid, kStep,
                    "groupBy {:?} is not one of task, family, service, day, none", s);
}

std::string_view usage_group_name(UsageGroup g) {
  switch (g) {
    case UsageGroup::task:
      return "task";
    case UsageGroup::family:
      return "family";
    case UsageGroup::service:
      return "service";
    case UsageGroup::day:
      return "day";
    case UsageGroup::none:
      return "none";
  }
  return "none";
}

namespace {

std::string group_key(UsageGroup g, const LedgerRecord& r) {
  switch (g) {
    case UsageGroup::task:
      return r.task_id;
    case UsageGroup::family:
      return r.family;
    case UsageGroup::service:
      return r.service;
    case UsageGroup::day:
      return utc_day(r.from_ms);
    case UsageGroup::none:
      break;
  }
  return "";
}

// One record as a line of its own (records 1; tasks is the caller's).
UsageLine record_line(const LedgerRecord& r) {
  UsageLine l;
  l.records = 1;
  l.billed_seconds = r.billed_seconds;
  l.vcpu_milli_seconds = milli_units(r.cpu_units, r.billed_seconds);
  l.gb_milli_seconds = milli_units(r.memory_mib, r.billed_seconds);
  l.cpu_usec = r.cpu_usec;
  l.memory_kib_seconds = r.memory_kib_seconds;
  l.memory_peak_bytes = r.memory_peak_bytes;
  l.net_rx_bytes = r.net_rx_bytes;
  l.net_tx_bytes = r.net_tx_bytes;
  l.amount_micro_usd = r.amount_micro_usd;
  return l;
}

void add_line(UsageLine& total, const UsageLine& l) {
  total.records += l.records;
  total.billed_seconds += l.billed_seconds;
  total.vcpu_milli_seconds += l.vcpu_milli_seconds;
  total.gb_milli_seconds += l.gb_milli_seconds;
  total.cpu_usec += l.cpu_usec;
  total.memory_kib_seconds += l.memory_kib_seconds;
  total.memory_peak_bytes = std::max(total.memory_peak_bytes, l.memory_peak_bytes);
  total.net_rx_bytes += l.net_rx_bytes;
  total.net_tx_bytes += l.net_tx_bytes;
  total.amount_micro_usd += l.amount_micro_usd;
}

json line_json(const UsageLine& l) {
  return json{
      {"key", l.key},
      {"records", l.records},
      {"tasks", l.tasks},
      {"billedSeconds", l.billed_seconds},
      {"vcpuMilliSeconds", l.vcpu_milli_seconds},
      {"gbMilliSeconds", l.gb_milli_seconds},
      {"cpuUsec", l.cpu_usec},
      {"memoryKibSeconds", l.memory_kib_seconds},
      {"memoryPeakBytes", l.memory_peak_bytes},
      {"netRxBytes", l.net_rx_bytes},
      {"netTxBytes", l.net_tx_bytes},
      {"amountMicroUsd", l.amount_micro_usd},
      {"amountUsd", format_usd(l.amount_micro_usd)},
  };
}

}  // namespace

UsageReport build_usage_report(const std::string& account, int64_t from_ms, int64_t to_ms,
                               UsageGroup group, const std::vector<LedgerRecord>& records) {
  UsageReport report;
  report.account = account;
  report.from_ms = from_ms;
  report.to_ms = to_ms;
  report.group = group;
  std::map<std::string, std::pair<UsageLine, std::set<std::string>>> lines;
  std::set<std::string> all_tasks;
  for (const LedgerRecord& r : records) {
    all_tasks.insert(r.task_id);
    if (group == UsageGroup::none) continue;
    auto& [line, tasks] = lines[group_key(group, r)];
    add_line(line, record_line(r));
    tasks.insert(r.task_id);
  }
  report.total.key = "total";
  for (auto& [key, entry] : lines) {
    auto& [line, tasks] = entry;
    line.key = key;
    line.tasks = static_cast<int64_t>(tasks.size());
    add_line(report.total, line);
    report.lines.push_back(std::move(line));
  }
  if (group == UsageGroup::none) {
    for (const LedgerRecord& r : records) add_line(report.total, record_line(r));
  }
  report.total.tasks = static_cast<int64_t>(all_tasks.size());
  return report;
}

json usage_report_json(const UsageReport& r) {
  json lines = json::array();
  for (const UsageLine& l : r.lines) lines.push_back(line_json(l));
  return json{
      {"account", r.account},
      {"from", rfc3339(r.from_ms)},
      {"to", rfc3339(r.to_ms)},
      {"fromMs", r.from_ms},
      {"toMs", r.to_ms},
      {"groupBy", usage_group_name(r.group)},
      {"lineItems", std::move(lines)},
      {"total", line_json(r.total)},
  };
}

}  // namespace berth::cp
