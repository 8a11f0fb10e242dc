#include "cmd/berth/usage_view.h"

#include <fmt/format.h>

#include "cmd/berth/answer.h"
#include "cmd/berth/table.h"
#include "common/json_reader.h"

namespace berth::cli {
namespace {

using json = nlohmann::json;

Result<UsageLineView> read_line(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  UsageLineView l;
  BERTH_TRY(jr::read(n.member("key"), l.key));
  BERTH_TRY(jr::read(n.member("records"), l.records));
  BERTH_TRY(jr::read(n.member("tasks"), l.tasks));
  BERTH_TRY(jr::read(n.member("billedSeconds"), l.billed_seconds));
  BERTH_TRY(jr::read(n.member("vcpuMilliSeconds"), l.vcpu_milli_seconds));
  BERTH_TRY(jr::read(n.member("gbMilliSeconds"), l.gb_milli_seconds));
  BERTH_TRY(jr::read(n.member("cpuUsec"), l.cpu_usec));
  BERTH_TRY(jr::read(n.member("netRxBytes"), l.net_rx_bytes));
  BERTH_TRY(jr::read(n.member("netTxBytes"), l.net_tx_bytes));
  BERTH_TRY(jr::read_required(n.member("amountMicroUsd"), l.amount_micro_usd));
  return l;
}

// Microseconds as seconds with 3 decimals, rounded half up.
std::string usec_as_seconds(int64_t usec) {
  return fixed_point(usec >= 0 ? (usec + 500) / 1000 : -((-usec + 500) / 1000), 3);
}

std::vector<std::string> table_row(const std::string& key, const UsageLineView& l) {
  return {key.empty() ? "-" : key,
          std::to_string(l.tasks),
          std::to_string(l.billed_seconds),
          fixed_point(l.vcpu_milli_seconds, 3),
          fixed_point(l.gb_milli_seconds, 3),
          usec_as_seconds(l.cpu_usec),
          human_bytes(l.net_rx_bytes),
          human_bytes(l.net_tx_bytes),
          format_micro_usd(l.amount_micro_usd)};
}

}  // namespace

Result<UsageView> read_usage(const json& answer) {
  jr::Node root = jr::Node::root(answer, kAnswer);
  BERTH_TRY(jr::expect_object(root));
  UsageView u;
  BERTH_TRY(jr::read(root.member("account"), u.account));
  BERTH_TRY(jr::read(root.member("groupBy"), u.group_by));
  BERTH_TRY(jr::read_array(root.member("lineItems"), u.lines, read_line));
  if (!root.member("total").present())
    return jr::fail(root.member("total"), "required field is missing");
  BERTH_ASSIGN(u.total, read_line(root.member("total")));
  return u;
}

std::string fixed_point(int64_t value, int decimals) {
  if (decimals <= 0) return std::to_string(value);
  // In unsigned arithmetic: INT64_MIN has no positive counterpart.
  bool negative = value < 0;
  uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
  uint64_t scale = 1;
  for (int i = 0; i < decimals; ++i) scale *= 10;
  return fmt::format("{}{}.{:0{}}", negative ? "-" : "", magnitude / scale, magnitude % scale,
                     decimals);
}

std::string format_micro_usd(int64_t micro_usd) {
  return fixed_point(micro_usd, 6);
}

std::string human_bytes(int64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  // Tenths of the unit, rounded half up; the next unit once they reach 1024.0.
  auto tenths = [bytes](__int128 divisor) {
    return static_cast<int64_t>((static_cast<__int128>(bytes) * 10 + divisor / 2) / divisor);
  };
  __int128 divisor = 1024;
  size_t unit = 0;
  while (unit + 1 < std::size(kUnits) && tenths(divisor) >= 10240) {
    divisor *= 1024;
    ++unit;
  }
  return fmt::format("{} {}", fixed_point(tenths(divisor), 1), kUnits[unit]);
}

std::string usage_table(const UsageView& u) {
  Table t(
      {"KEY", "TASKS", "BILLED-S", "vCPU-S", "GB-S", "CPU-USED-S", "NET-IN", "NET-OUT", "AMOUNT"});
  for (const auto& l : u.lines) t.add(table_row(l.key, l));
  t.add(table_row("TOTAL", u.total));
  return t.render();
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string usage_csv(const UsageView& u) {
  std::string out =
      "key,tasks,billed_seconds,vcpu_seconds,gb_seconds,cpu_used_seconds,net_in_bytes,"
      "net_out_bytes,amount_usd\r\n";
  for (const auto& l : u.lines) {
    out += fmt::format("{},{},{},{},{},{},{},{},{}\r\n", csv_field(l.key), l.tasks,
                       l.billed_seconds, fixed_point(l.vcpu_milli_seconds, 3),
                       fixed_point(l.gb_milli_seconds, 3), usec_as_seconds(l.cpu_usec),
                       l.net_rx_bytes, l.net_tx_bytes, format_micro_usd(l.amount_micro_usd));
  }
  return out;
}

Result<VerifyView> read_verify(const json& answer) {
  jr::Node root = jr::Node::root(answer, kAnswer);
  BERTH_TRY(jr::expect_object(root));
  VerifyView v;
  BERTH_TRY(jr::read(root.member("account"), v.account));
  BERTH_TRY(jr::read(root.member("records"), v.records));
  BERTH_TRY(jr::read_required(root.member("ok"), v.ok));
  BERTH_TRY(jr::read(root.member("head"), v.head));
  BERTH_TRY(jr::read(root.member("totalMicroUsd"), v.total_micro_usd));
  BERTH_TRY(jr::read_array(root.member("problems"), v.problems,
                           [](const jr::Node& n) -> Result<ChainProblemView> {
                             BERTH_TRY(jr::expect_object(n));
                             ChainProblemView p;
                             BERTH_TRY(jr::read(n.member("seq"), p.seq));
                             BERTH_TRY(jr::read(n.member("taskId"), p.task_id));
                             BERTH_TRY(jr::read(n.member("what"), p.what));
                             return p;
                           }));
  return v;
}

std::string verify_text(const VerifyView& v, int* exit_code) {
  bool intact = v.ok && v.problems.empty();
  *exit_code = intact ? 0 : 1;
  if (intact) {
    return fmt::format("ledger of account {}: {} record{}, chain intact, head {}\n", v.account,
                       v.records, v.records == 1 ? "" : "s", v.head);
  }
  std::string out;
  for (const auto& p : v.problems) {
    out += fmt::format("ledger of account {}: record {} (task {}): {}\n", v.account, p.seq,
                       p.task_id.empty() ? "-" : p.task_id, p.what);
  }
  if (out.empty()) {
    out = fmt::format("ledger of account {}: the chain does not hold (no problem listed)\n",
                      v.account);
  }
  return out;
}

Result<std::optional<BillingView>> read_billing(const json& task) {
  jr::Node n = jr::Node::root(task, kAnswer).member("berthBilling");
  if (!n.present()) return std::optional<BillingView>{};
  BERTH_TRY(jr::expect_object(n));
  BillingView b;
  BERTH_TRY(jr::read(n.member("billedSeconds"), b.billed_seconds));
  BERTH_TRY(jr::read_required(n.member("amountMicroUsd"), b.amount_micro_usd));
  BERTH_TRY(jr::read(n.member("final"), b.final));
  return std::optional<BillingView>(b);
}

std::string billing_text(const BillingView& b) {
  return fmt::format("{} s, ${} ({})", b.billed_seconds, format_micro_usd(b.amount_micro_usd),
                     b.final ? "final" : "running");
}

}  // namespace berth::cli
