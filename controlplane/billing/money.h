// Money and billed quantities: integers only, no floating point anywhere on
// the money path.
//
// Units:
//   money           micro-dollars (1 USD = 1,000,000), int64_t
//   prices          micro-dollars per unit-hour (config: dollars with at most
//                   6 decimals, parsed as decimal text, config.cc)
//   CPU reserved    task cpu units (1024 = 1 vCPU)
//   memory reserved task memory in MiB ("GB" in Fargate's price = GiB)
//   CPU used        microseconds (cgroup v2 cpu.stat usage_usec, v1
//                   cpuacct.usage / 1000)
//   memory used     KiB-seconds: the integral of the sampled memory use over
//                   time
//
// The rounding rule (the one rule, documented in docs/billing.md):
//   1. A task's billed time is its allocation interval (createdAt, i.e.
//      PROVISIONING, to stoppedAt) rounded UP to the whole second, and at
//      least `minimum_seconds` (60 by default, Fargate's rule; 0 allowed).
//      For a running task the same formula runs up to "now".
//   2. A task's amount is computed from its cumulative quantities with
//      exact integer arithmetic (128-bit intermediates) and rounded to the
//      micro-dollar once, half up: amount = floor((N + D/2) / D).
//   3. A ledger record's amount is the difference between the task's
//      cumulative amount at the record's end and at the previous record's
//      end, so a task's records always sum to exactly its cumulative amount,
//      however many records it has (no rounding drift per period), and every
//      total (per account, family, service, day) is a plain sum of records.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace berth::cp {

enum class PricingMode {
  reserved,  // Fargate's: reserved vCPU and GB per second
  usage,     // pay-per-use: CPU-seconds used + GB-seconds of measured memory
};
std::string_view pricing_mode_name(PricingMode m);  // "reserved" | "usage"
Result<PricingMode> parse_pricing_mode(std::string_view s);

struct PricingConfig {
  // Published Fargate Linux/x86 us-east-1 rates, in micro-dollars per unit
  // hour (integers: no floating point on the money path).
  int64_t vcpu_hour_micro_usd = 40480;
  int64_t gb_hour_micro_usd = 4445;
  int minimum_seconds = 60;
  PricingMode mode = PricingMode::reserved;
  // Usage mode: per CPU-hour actually used, per GB-hour of measured memory
  // (its average over the task's life is what is billed).
  int64_t cpu_used_hour_micro_usd = 40480;
  int64_t gb_used_hour_micro_usd = 4445;
  // Running tasks are sampled and checkpointed this often (a crash of
  // berthd loses at most this much usage metering; reserved time is never
  // lost: it comes from the task's timestamps).
  int checkpoint_seconds = 15;
  // One ledger record per task per period; periods are aligned to the
  // epoch (3600: whole UTC hours, so a day is a whole number of periods).
  int period_seconds = 3600;
};

// ceil(ns / 1e9), at least minimum_seconds; 0 for ns <= 0 with minimum 0.
int64_t billed_seconds(int64_t elapsed_ns, int minimum_seconds);

// Round-half-up of num / den for den > 0: floor((2 num + den) / (2 den)),
// exact for odd den too (num < 0 rounds toward +infinity at .5 as well).
// A result beyond int64_t saturates; den <= 0 gives 0.
int64_t div_round_half_up(__int128 num, __int128 den);

// Reserved mode: a task of `cpu_units` and `memory_mib` held for `seconds`.
//   round((cpu_units * seconds * vcpu_hour + memory_mib * seconds * gb_hour)
//         / (1024 * 3600))
int64_t reserved_amount(int64_t cpu_units, int64_t memory_mib, int64_t seconds,
                        const PricingConfig& p);

// Usage mode: round(cpu_usec * cpu_used_hour / (3600 * 1e6)
//                   + memory_kib_seconds * gb_used_hour / (1024 * 1024 * 3600))
int64_t usage_amount(int64_t cpu_usec, int64_t memory_kib_seconds, const PricingConfig& p);

// "0.000411" (6 decimals, a leading '-' for negatives); "$" is the caller's.
std::string format_usd(int64_t micro_usd);
// "0.04048" -> 40480; at most 6 decimals, at most 9 whole digits, no sign
// ("1." is 1 USD; "", ".5", "-1", "+1", "1e-5", " 1" are refused: kind
// invalid, the message quotes the text and says "is not a price in dollars
// with at most 6 decimals").
Result<int64_t> parse_usd(std::string_view text);

}  // namespace berth::cp
