#include "controlplane/billing/money.h"

#include <algorithm>
#include <charconv>
#include <climits>

#include <fmt/format.h>

namespace berth::cp {

namespace {

constexpr std::string_view kStep = "money";
constexpr int64_t kMicro = 1000000;
constexpr int kMaxWholeDigits = 9;
constexpr int kDecimals = 6;

// Floor division for a positive denominator (C++ truncates toward zero).
__int128 floor_div(__int128 num, __int128 den) {
  __int128 q = num / den;
  if (num % den != 0 && num < 0) --q;
  return q;
}

int64_t saturate(__int128 v) {
  if (v > INT64_MAX) return INT64_MAX;
  if (v < INT64_MIN) return INT64_MIN;
  return static_cast<int64_t>(v);
}

bool all_digits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= '0' && c <= '9'; });
}

int64_t digits_value(std::string_view s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);  // callers checked: digits, <= 9 of them
  return v;
}

}  // namespace

std::string_view pricing_mode_name(PricingMode m) {
  return m == PricingMode::usage ? "usage" : "reserved";
}

Result<PricingMode> parse_pricing_mode(std::string_view s) {
  if (s == "reserved") return PricingMode::reserved;
  if (s == "usage") return PricingMode::usage;
  return kind_error(ErrorKind::invalid, kStep, "pricing mode {:?} is not 'reserved' or 'usage'", s);
}

int64_t billed_seconds(int64_t elapsed_ns, int minimum_seconds) {
  int64_t seconds = 0;
  if (elapsed_ns > 0) seconds = elapsed_ns / 1000000000 + (elapsed_ns % 1000000000 != 0 ? 1 : 0);
  return std::max<int64_t>(seconds, minimum_seconds);
}

int64_t div_round_half_up(__int128 num, __int128 den) {
  if (den <= 0) return 0;  // never with the callers' constant denominators
  // floor(num / den + 1/2) = floor((2 num + den) / (2 den)), exact for odd
  // denominators too; floor (not truncation) keeps "half up" for num < 0.
  return saturate(floor_div(2 * num + den, 2 * den));
}

int64_t reserved_amount(int64_t cpu_units, int64_t memory_mib, int64_t seconds,
                        const PricingConfig& p) {
  __int128 num = __int128{cpu_units} * seconds * p.vcpu_hour_micro_usd +
                 __int128{memory_mib} * seconds * p.gb_hour_micro_usd;
  return div_round_half_up(num, __int128{1024} * 3600);
}

int64_t usage_amount(int64_t cpu_usec, int64_t memory_kib_seconds, const PricingConfig& p) {
  // One rounding of the exact sum: over the common denominator
  // lcm(3600 * 10^6, 1024 * 1024 * 3600) = 2^24 * 3^2 * 5^8, the CPU term's
  // factor is 2^14 and the memory term's 5^6.
  constexpr __int128 kLcm = (__int128{1} << 24) * 9 * 390625;
  static_assert(kLcm == __int128{3600} * 1000000 * 16384);
  static_assert(kLcm == __int128{1024} * 1024 * 3600 * 15625);
  __int128 num = __int128{cpu_usec} * p.cpu_used_hour_micro_usd * 16384 +
                 __int128{memory_kib_seconds} * p.gb_used_hour_micro_usd * 15625;
  return div_round_half_up(num, kLcm);
}

std::string format_usd(int64_t micro_usd) {
  // Through __int128: -INT64_MIN does not fit an int64_t.
  __int128 v = micro_usd;
  bool negative = v < 0;
  if (negative) v = -v;
  auto whole = static_cast<uint64_t>(v / kMicro);
  auto frac = static_cast<uint64_t>(v % kMicro);
  return fmt::format("{}{}.{:06}", negative ? "-" : "", whole, frac);
}

Result<int64_t> parse_usd(std::string_view text) {
  size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? "" : text.substr(dot + 1);
  if (whole.empty() || !all_digits(whole) || !all_digits(frac) || frac.size() > kDecimals ||
      whole.size() > kMaxWholeDigits) {
    return kind_error(ErrorKind::invalid, kStep,
                      "{:?} is not a price in dollars with at most 6 decimals (digits only, at "
                      "most 9 before the point, no sign)",
                      text);
  }
  int64_t micro = digits_value(frac);
  for (size_t i = frac.size(); i < kDecimals; ++i) micro *= 10;
  return digits_value(whole) * kMicro + micro;
}

}  // namespace berth::cp
