// The ledger: append-only, tamper-evident billing records, one per task per
// billing period (plus the task's last, `final`, record), kept in the
// control plane's store (Store::append_ledger, store/store.h).
//
// Each record is written once as a canonical JSON document (to_doc: fixed
// member order, integers only) and chained per account:
//   hash = hex(SHA-256(prev_hash || "\n" || doc))
// where prev_hash is the hash of the account's previous record (64 zeros for
// its first). verify_chain() recomputes every link, so a record edited,
// removed or inserted by hand in the store is found and named. (The chain
// is not signed: someone who rewrites every later record and its hash as
// well is not detected. docs/billing.md says so.)
//
// Quantities in a record are for its own interval [from_ms, to_ms) (the
// part of one period the task was allocated), except the cumulative_*
// members, which are the task's totals through to_ms (what a restart
// resumes from and what makes per-record rounding telescope, money.h).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "controlplane/billing/money.h"

namespace berth::cp {

struct LedgerRecord {
  int64_t seq = 0;  // assigned by the store: increasing over all accounts
  std::string account;
  std::string cluster;
  std::string family;
  int revision = 0;
  std::string service;  // "" unless the task's group is "service:<name>"
  std::string task_id;
  int64_t period = 0;   // the period's index: floor(from_ms / (period_seconds * 1000))
  bool final = false;   // the task's last record (it has stopped)
  int64_t from_ms = 0;  // epoch milliseconds
  int64_t to_ms = 0;
  PricingMode mode = PricingMode::reserved;
  int64_t cpu_units = 0;   // reserved (1024 = 1 vCPU)
  int64_t memory_mib = 0;  // reserved
  // This record's quantities.
  int64_t billed_seconds = 0;  // of the task's billed seconds, this record's share
  int64_t cpu_usec = 0;
  int64_t memory_kib_seconds = 0;
  int64_t memory_peak_bytes = 0;  // the highest seen in the interval (0: unknown)
  int64_t net_rx_bytes = 0;       // into the task
  int64_t net_tx_bytes = 0;       // out of the task
  int64_t amount_micro_usd = 0;
  // The task's totals through to_ms.
  int64_t cumulative_billed_seconds = 0;
  int64_t cumulative_amount_micro_usd = 0;
  // Chain.
  std::string prev_hash;  // 64 hex digits
  std::string hash;
};

inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// The canonical document (everything but seq, prev_hash and hash): one line,
// no spaces, members in this fixed order, integers only:
//   {"v":1,"account":"...","cluster":"...","family":"...","revision":N,
//    "service":"...","task_id":"...","period":N,"final":true|false,
//    "from_ms":N,"to_ms":N,"mode":"reserved"|"usage","cpu_units":N,
//    "memory_mib":N,"billed_seconds":N,"cpu_usec":N,"memory_kib_seconds":N,
//    "memory_peak_bytes":N,"net_rx_bytes":N,"net_tx_bytes":N,
//    "amount_micro_usd":N,"cumulative_billed_seconds":N,
//    "cumulative_amount_micro_usd":N}
// Strings are escaped as JSON (bytes that are not UTF-8 become U+FFFD), so
// the same record always gives the same bytes.
std::string ledger_doc(const LedgerRecord& r);
// Reads a document written by ledger_doc (seq / prev_hash / hash are the
// store's columns and are not in it). Errors name the member; every member
// is required, unknown ones and docs over 1 MiB are refused.
Result<LedgerRecord> ledger_from_doc(std::string_view doc);
// hex(SHA-256(prev_hash + "\n" + doc)).
std::string ledger_hash(std::string_view prev_hash, std::string_view doc);

// The API / CLI form of a record (every member, amounts also as "0.000411"
// strings: "amountUsd"): {"seq","account","cluster","family","revision",
// "service","taskId","period","final","fromMs","toMs","from","to" (RFC 3339
// UTC, null if not writable), "mode","cpuUnits","memoryMib","billedSeconds",
// "cpuUsec","memoryKibSeconds","memoryPeakBytes","netRxBytes","netTxBytes",
// "amountMicroUsd","amountUsd","cumulativeBilledSeconds",
// "cumulativeAmountMicroUsd","cumulativeAmountUsd","prevHash","hash"}.
nlohmann::json ledger_json(const LedgerRecord& r);

// One account's records in seq order, as the store has them (doc, hashes).
struct StoredLedgerRow {
  int64_t seq = 0;
  std::string account;
  std::string task_id;
  int64_t period = 0;
  bool final = false;
  std::string doc;
  std::string prev_hash;
  std::string hash;
};

struct ChainProblem {
  int64_t seq = 0;
  std::string task_id;
  std::string
      what;  // "hash does not match its contents", "prev_hash does not match record 41", ...
};

struct ChainReport {
  std::string account;
  int64_t records = 0;
  int64_t total_micro_usd = 0;
  std::string head;                    // the last record's hash
  std::vector<ChainProblem> problems;  // empty: the chain holds
  bool ok() const { return problems.empty(); }
};

// Re-checks one account's chain: every doc parses, its account/task/period
// match the row's columns, its hash is right, and each prev_hash is the
// previous row's hash (the first: kGenesisHash). Reports every problem,
// each with the row's seq and task id (rows out of seq order and rows of
// another account are problems too). A removed record is reported at the
// record after it (its prev_hash); a removal of the last records is not
// detectable from the rows alone (compare `head` with one kept elsewhere).
// total_micro_usd sums the amounts of the docs that parse.
ChainReport verify_chain(const std::string& account, const std::vector<StoredLedgerRow>& rows);

// Usage reports (GET /v1/usage, berth usage).
enum class UsageGroup { task, family, service, day, none };
// "task" | "family" | "service" | "day" | "none" (no lines: the total only).
Result<UsageGroup> parse_usage_group(std::string_view s);
std::string_view usage_group_name(UsageGroup g);

struct UsageLine {
  std::string key;  // task id | family | service ("" for tasks of no service) | "YYYY-MM-DD"
  int64_t records = 0;
  int64_t tasks = 0;  // distinct task ids
  int64_t billed_seconds = 0;
  // Sums of cpu_units (memory_mib) * billed_seconds * 1000 / 1024 per
  // record, each rounded half up (exact for multiples of 128).
  int64_t vcpu_milli_seconds = 0;
  int64_t gb_milli_seconds = 0;
  int64_t cpu_usec = 0;
  int64_t memory_kib_seconds = 0;
  int64_t memory_peak_bytes = 0;  // max
  int64_t net_rx_bytes = 0;
  int64_t net_tx_bytes = 0;
  int64_t amount_micro_usd = 0;
};

struct UsageReport {
  std::string account;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  UsageGroup group = UsageGroup::task;
  std::vector<UsageLine> lines;  // sorted by key
  UsageLine total;               // key "total"; every sum of `lines` (memory_peak_bytes: their
                                 // max; tasks: the distinct task ids of all records)
};

// Groups records (already filtered to one account and [from, to)) into
// lines. A record belongs to the day (UTC) of its from_ms; periods never
// cross a UTC midnight when period_seconds divides 86400.
UsageReport build_usage_report(const std::string& account, int64_t from_ms, int64_t to_ms,
                               UsageGroup group, const std::vector<LedgerRecord>& records);
// {"account": "...",
//  "from": "2026-12-05T00:00:00Z", "to": "..." (RFC 3339 UTC, ".123" when
//      not a whole second; null when RFC 3339 cannot write it, e.g. an open
//      end INT64_MAX), "fromMs": N, "toMs": N,
//  "groupBy": "task" | "family" | "service" | "day" | "none",
//  "lineItems": [line, ...] (sorted by key),
//  "total": line (key "total")}
// where a line is {"key","records","tasks","billedSeconds","vcpuMilliSeconds",
// "gbMilliSeconds","cpuUsec","memoryKibSeconds","memoryPeakBytes",
// "netRxBytes","netTxBytes","amountMicroUsd" (integer),"amountUsd"
// ("0.000411")}.
nlohmann::json usage_report_json(const UsageReport& r);

}  // namespace berth::cp
