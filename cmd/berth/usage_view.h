// `berth usage` and `berth usage verify`: GET /v1/usage and
// /v1/usage/verify answers read through the typed reader, rendered as an
// aligned table, CSV (RFC 4180) or the verify lines; and the billing line
// of `berth describe` (the task's "berthBilling" member).
//
// No floating point on the money path: amounts are printed from the
// integer micro-dollar members ("amountMicroUsd"), quantities from their
// integer milli / micro units.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace berth::cli {

// One line of a usage report (ledger.h UsageLine as usage_report_json
// writes it).
struct UsageLineView {
  std::string key;
  int64_t records = 0;
  int64_t tasks = 0;
  int64_t billed_seconds = 0;
  int64_t vcpu_milli_seconds = 0;
  int64_t gb_milli_seconds = 0;
  int64_t cpu_usec = 0;
  int64_t net_rx_bytes = 0;  // into the tasks: NET-IN
  int64_t net_tx_bytes = 0;  // out of the tasks: NET-OUT
  int64_t amount_micro_usd = 0;
};

struct UsageView {
  std::string account;
  std::string group_by;
  std::vector<UsageLineView> lines;
  UsageLineView total;
};

// {"account", "groupBy", "lineItems": [...], "total": {...}}.
Result<UsageView> read_usage(const nlohmann::json& answer);

// Columns KEY, TASKS, BILLED-S, vCPU-S, GB-S, CPU-USED-S, NET-IN, NET-OUT,
// AMOUNT (USD, 6 decimals), one row per line and a TOTAL row. An empty key
// (tasks of no service) shows as "-".
std::string usage_table(const UsageView& u);
// A header and one row per line (no total row: a sheet sums itself), RFC
// 4180: fields with a comma, quote, CR or LF quoted, quotes doubled, CRLF
// line ends. Quantities in plain units (seconds with 3 decimals, bytes),
// amount in USD with 6 decimals.
std::string usage_csv(const UsageView& u);
std::string csv_field(const std::string& s);

// "0.000411" from 411 (a leading '-' for negatives).
std::string format_micro_usd(int64_t micro_usd);
// `value` / 10^decimals with exactly `decimals` decimals: (1234, 3) -> "1.234".
std::string fixed_point(int64_t value, int decimals);
// "0 B", "512 B", "1.5 KiB", "12.0 MiB" (IEC, one decimal, rounded half up).
std::string human_bytes(int64_t bytes);

// GET /v1/usage/verify.
struct ChainProblemView {
  int64_t seq = 0;
  std::string task_id;
  std::string what;
};
struct VerifyView {
  std::string account;
  int64_t records = 0;
  bool ok = false;
  std::string head;
  int64_t total_micro_usd = 0;
  std::vector<ChainProblemView> problems;
};
Result<VerifyView> read_verify(const nlohmann::json& answer);
// Intact: "ledger of account X: N records, chain intact, head <hash>\n",
// exit 0. Broken: one line per problem, "ledger of account X: record SEQ
// (task ID): WHAT\n", exit 1 (a broken chain without a listed problem still
// gets a line).
std::string verify_text(const VerifyView& v, int* exit_code);

// A task's "berthBilling" member (DescribeTasks, /v1/tasks).
struct BillingView {
  int64_t billed_seconds = 0;
  int64_t amount_micro_usd = 0;
  bool final = false;
};
// nullopt when the task object has no "berthBilling".
Result<std::optional<BillingView>> read_billing(const nlohmann::json& task);
// "76 s, $0.000411 (running)" / "(final)".
std::string billing_text(const BillingView& b);

}  // namespace berth::cli
