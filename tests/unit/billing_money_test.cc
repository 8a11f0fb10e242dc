// The money path (controlplane/billing/money.h): billed seconds, the one
// rounding rule, reserved and usage amounts, exact to the micro-dollar, and
// the decimal text of dollars both ways. No floating point anywhere here
// either: every expected amount is an integer worked out by hand.
#include "controlplane/billing/money.h"

#include <climits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

using berth::ErrorKind;
using namespace berth::cp;

namespace {

constexpr int64_t kSecond = 1000000000;  // ns

// A reserved-mode price table with only a vCPU price (memory free), for
// rounding cases that are easy to reason about.
PricingConfig vcpu_only(int64_t vcpu_hour_micro_usd) {
  PricingConfig p;
  p.vcpu_hour_micro_usd = vcpu_hour_micro_usd;
  p.gb_hour_micro_usd = 0;
  return p;
}

}  // namespace

TEST_CASE("billing-money: a 3 s task at cpu 512 / memory 1024 is billed the 60 s minimum",
          "[billing-money]") {
  PricingConfig p;  // defaults: $0.04048 per vCPU-hour, $0.004445 per GB-hour, minimum 60 s
  REQUIRE(p.vcpu_hour_micro_usd == 40480);
  REQUIRE(p.gb_hour_micro_usd == 4445);
  REQUIRE(p.minimum_seconds == 60);
  int64_t seconds = billed_seconds(3 * kSecond, p.minimum_seconds);
  CHECK(seconds == 60);
  // By hand: 0.5 vCPU and 1 GiB for 60 s.
  //   vCPU:   512 units * 60 s * 40480 micro-USD/vCPU-h =   1,243,545,600
  //   memory: 1024 MiB  * 60 s *  4445 micro-USD/GiB-h  =     273,100,800
  //   sum                                               =   1,516,646,400
  //   / (1024 units-or-MiB * 3600 s/h = 3,686,400)      =   411.4166...
  //   rounded half up                                   =   411 micro-USD ($0.000411)
  CHECK(reserved_amount(512, 1024, seconds, p) == 411);
  CHECK(format_usd(reserved_amount(512, 1024, seconds, p)) == "0.000411");
  // Shorter still, and exactly zero time: the minimum all the same.
  CHECK(billed_seconds(1, 60) == 60);
  CHECK(billed_seconds(0, 60) == 60);
  CHECK(billed_seconds(60 * kSecond, 60) == 60);
  CHECK(billed_seconds(60 * kSecond + 1, 60) == 61);
}

TEST_CASE("billing-money: billed time is rounded up to the whole second", "[billing-money]") {
  CHECK(billed_seconds(75 * kSecond + 200000000, 60) == 76);  // 75.2 s
  CHECK(billed_seconds(75 * kSecond + 1, 60) == 76);          // 75.000000001 s
  CHECK(billed_seconds(75 * kSecond, 60) == 75);              // exactly 75 s
  CHECK(billed_seconds(76 * kSecond - 1, 60) == 76);
  // 76 s of 0.5 vCPU + 1 GiB: 76 * (512 * 40480 + 1024 * 4445) = 1,921,085,440;
  // / 3,686,400 = 521.127... -> 521.
  CHECK(reserved_amount(512, 1024, 76, PricingConfig{}) == 521);
}

TEST_CASE("billing-money: a minimum of 0 bills only the time used", "[billing-money]") {
  CHECK(billed_seconds(0, 0) == 0);
  CHECK(billed_seconds(-5 * kSecond, 0) == 0);
  CHECK(billed_seconds(1, 0) == 1);
  CHECK(billed_seconds(kSecond, 0) == 1);
  CHECK(billed_seconds(kSecond + 1, 0) == 2);
  CHECK(billed_seconds(3 * kSecond, 0) == 3);
  // 3 s of 0.5 vCPU + 1 GiB: 3 * 25,277,440 = 75,832,320; / 3,686,400 = 20.57 -> 21.
  CHECK(reserved_amount(512, 1024, 3, PricingConfig{}) == 21);
  CHECK(reserved_amount(512, 1024, 0, PricingConfig{}) == 0);
}

TEST_CASE("billing-money: amounts are rounded half up, once, at the .5 boundary",
          "[billing-money]") {
  CHECK(div_round_half_up(0, 7) == 0);
  CHECK(div_round_half_up(1, 2) == 1);   // 0.5 -> 1
  CHECK(div_round_half_up(3, 2) == 2);   // 1.5 -> 2
  CHECK(div_round_half_up(5, 10) == 1);  // 0.5 -> 1
  CHECK(div_round_half_up(4, 10) == 0);  // 0.4 -> 0
  CHECK(div_round_half_up(14, 10) == 1);
  CHECK(div_round_half_up(15, 10) == 2);
  CHECK(div_round_half_up(1, 3) == 0);  // odd denominators: 0.33 -> 0, 0.67 -> 1
  CHECK(div_round_half_up(2, 3) == 1);
  CHECK(div_round_half_up(-5, 10) == 0);  // -0.5 -> 0 (up, toward +infinity)
  CHECK(div_round_half_up(-6, 10) == -1);
  // Through a price: 1 micro-USD per vCPU-hour, 1 vCPU for 1800 s is half a
  // micro-dollar exactly: 1024 * 1800 * 1 / 3,686,400 = 0.5 -> 1; 1799 s is
  // 0.49972 -> 0; 5400 s is 1.5 -> 2.
  CHECK(reserved_amount(1024, 0, 1800, vcpu_only(1)) == 1);
  CHECK(reserved_amount(1024, 0, 1799, vcpu_only(1)) == 0);
  CHECK(reserved_amount(1024, 0, 5400, vcpu_only(1)) == 2);
  // The vCPU and memory parts are summed exactly before the one rounding:
  // 0.25 + 0.25 is 0.5 -> 1, where rounding each part would give 0 + 0.
  PricingConfig p;
  p.vcpu_hour_micro_usd = 1;
  p.gb_hour_micro_usd = 1;
  CHECK(reserved_amount(1024, 0, 900, p) == 0);     // 0.25
  CHECK(reserved_amount(0, 1024, 900, p) == 0);     // 0.25
  CHECK(reserved_amount(1024, 1024, 900, p) == 1);  // 0.5
  CHECK(reserved_amount(1024, 1024, 899, p) == 0);  // 0.4994
}

TEST_CASE("billing-money: cumulative amounts telescope: the records of a task sum to its total",
          "[billing-money]") {
  std::mt19937_64 rng(20261205);  // fixed seed: the same splits every run
  const int64_t cpus[] = {256, 512, 1024, 2048, 4096, 16384};
  const int64_t mems[] = {512, 1024, 3072, 8192, 30720, 122880};
  PricingConfig p;
  int drifted = 0;  // splits where rounding each record on its own would be off
  for (int trial = 0; trial < 2000; ++trial) {
    int64_t cpu = cpus[rng() % 6];
    int64_t mem = mems[rng() % 6];
    int64_t total_seconds = 1 + static_cast<int64_t>(rng() % (30 * 86400));
    std::set<int64_t> cuts;
    int pieces = 1 + static_cast<int>(rng() % 50);
    for (int i = 0; i < pieces; ++i) cuts.insert(static_cast<int64_t>(rng() % total_seconds));
    cuts.insert(total_seconds);
    int64_t sum = 0, prev_cumulative = 0, prev_cut = 0, naive = 0;
    for (int64_t cut : cuts) {
      int64_t cumulative = reserved_amount(cpu, mem, cut, p);
      sum += cumulative - prev_cumulative;  // the record's amount (money.h rule 3)
      naive += reserved_amount(cpu, mem, cut - prev_cut, p);
      prev_cumulative = cumulative;
      prev_cut = cut;
    }
    INFO("trial " << trial << ": cpu " << cpu << " mem " << mem << " seconds " << total_seconds
                  << " in " << cuts.size() << " records");
    REQUIRE(sum == reserved_amount(cpu, mem, total_seconds, p));
    if (naive != sum) ++drifted;
  }
  // What the rule is for: rounding each record separately would drift.
  CHECK(drifted > 0);

  // The same holds for usage amounts.
  for (int trial = 0; trial < 500; ++trial) {
    int64_t total_usec = static_cast<int64_t>(rng() % (int64_t{86400} * 1000000 * 16));
    int64_t total_kib_s = static_cast<int64_t>(rng() % (int64_t{86400} * 1024 * 1024 * 8));
    int64_t sum = 0, prev = 0;
    for (int i = 1; i <= 10; ++i) {
      int64_t c = usage_amount(total_usec * i / 10, total_kib_s * i / 10, p);
      sum += c - prev;
      prev = c;
    }
    REQUIRE(sum == usage_amount(total_usec, total_kib_s, p));
  }
}

TEST_CASE("billing-money: huge tasks and long times do not overflow", "[billing-money]") {
  PricingConfig p;
  constexpr int64_t kTenYears = int64_t{10} * 365 * 86400;  // 315,360,000 s
  constexpr int64_t kMib120G = 120 * 1024;                  // 120 GiB in MiB
  // 16 vCPU (16384 units) and 120 GiB for ten years, by hand:
  //   16 vCPU * 87,600 h * 40480 = 56,736,768,000
  //   120 GiB * 87,600 h *  4445 = 46,725,840,000
  //   sum, exact (no rounding)   = 103,462,608,000 micro-USD = $103,462.608
  CHECK(reserved_amount(16384, kMib120G, kTenYears, p) == 103462608000);
  CHECK(format_usd(103462608000) == "103462.608000");
  CHECK(billed_seconds(kTenYears * kSecond, 60) == kTenYears);
  // A price of $1,000,000 per vCPU-hour makes the intermediate product
  // (16384 * 315,360,000 * 10^12 = 5.2e24) far beyond int64_t; the result,
  // 16 * 87,600 * 10^12 = 1,401,600,000,000,000,000, fits and is exact.
  CHECK(reserved_amount(16384, 0, kTenYears, vcpu_only(1000000000000)) == 1401600000000000000);
  // Beyond int64_t the amount saturates instead of wrapping.
  CHECK(reserved_amount(16384, kMib120G, kTenYears, vcpu_only(999999999999999)) == INT64_MAX);
  // Usage: 16 CPUs busy for ten years, 120 GiB held all along.
  //   CPU:    16 * 87,600 h * 40480                  = 56,736,768,000
  //   memory: 120 GiB = 125,829,120 KiB over 315,360,000 s: 120 * 87,600 h * 4445
  //                                                  = 46,725,840,000
  int64_t usec = 16 * kTenYears * 1000000;
  int64_t kib_s = int64_t{125829120} * kTenYears;
  CHECK(usage_amount(usec, kib_s, p) == 103462608000);
}

TEST_CASE("billing-money: usage amounts bill CPU time used and memory held", "[billing-money]") {
  PricingConfig p;  // usage prices default to the reserved ones
  constexpr int64_t kHourUsec = int64_t{3600} * 1000000;
  constexpr int64_t kGibHourKibS = int64_t{1024} * 1024 * 3600;
  CHECK(usage_amount(0, 0, p) == 0);
  CHECK(usage_amount(kHourUsec, 0, p) == 40480);             // one CPU-hour
  CHECK(usage_amount(0, kGibHourKibS, p) == 4445);           // one GiB-hour
  CHECK(usage_amount(kHourUsec, kGibHourKibS, p) == 44925);  // both
  CHECK(usage_amount(kHourUsec / 2, kGibHourKibS * 2, p) == 20240 + 8890);
  // 1.5 s of CPU: 1,500,000 * 40480 / 3.6e9 = 16.866 -> 17.
  CHECK(usage_amount(1500000, 0, p) == 17);
  // Half up, across both terms summed exactly: with prices of 1, half an
  // hour of CPU is 0.5 -> 1; a quarter hour of CPU and a quarter GiB-hour
  // are 0.25 + 0.25 = 0.5 -> 1.
  PricingConfig one;
  one.cpu_used_hour_micro_usd = 1;
  one.gb_used_hour_micro_usd = 1;
  CHECK(usage_amount(kHourUsec / 2, 0, one) == 1);
  CHECK(usage_amount(kHourUsec / 2 - 1, 0, one) == 0);
  CHECK(usage_amount(kHourUsec / 4, kGibHourKibS / 4, one) == 1);
  CHECK(usage_amount(kHourUsec / 4, kGibHourKibS / 4 - 1, one) == 0);
}

TEST_CASE("billing-money: dollars are written with 6 decimals", "[billing-money]") {
  CHECK(format_usd(0) == "0.000000");
  CHECK(format_usd(1) == "0.000001");
  CHECK(format_usd(411) == "0.000411");
  CHECK(format_usd(40480) == "0.040480");
  CHECK(format_usd(1000000) == "1.000000");
  CHECK(format_usd(123456789012) == "123456.789012");
  CHECK(format_usd(-411) == "-0.000411");
  CHECK(format_usd(-1000001) == "-1.000001");
  CHECK(format_usd(INT64_MAX) == "9223372036854.775807");
  CHECK(format_usd(INT64_MIN) == "-9223372036854.775808");
}

TEST_CASE("billing-money: dollars are parsed from decimal text, exactly", "[billing-money]") {
  auto parsed = [](std::string_view s) {
    auto r = parse_usd(s);
    INFO(s << ": " << (r ? "" : r.error().str()));
    REQUIRE(r.has_value());
    return *r;
  };
  CHECK(parsed("0.04048") == 40480);
  CHECK(parsed("0.004445") == 4445);
  CHECK(parsed("0") == 0);
  CHECK(parsed("1") == 1000000);
  CHECK(parsed("1.") == 1000000);
  CHECK(parsed("0.000001") == 1);
  CHECK(parsed("12.5") == 12500000);
  CHECK(parsed("007.000100") == 7000100);
  CHECK(parsed("999999999.999999") == 999999999999999);
  // Round trip of what format_usd writes.
  for (int64_t v :
       {int64_t{0}, int64_t{1}, int64_t{411}, int64_t{40480}, int64_t{999999999999999}}) {
    CHECK(parsed(format_usd(v)) == v);
  }

  for (std::string_view bad :
       {"",     ".",    ".5",         "0.0000001",    "1.1234567", "-1",  "+1",
        "-0.5", "1e-5", "4.048e-2",   " 1",           "1 ",        "1,5", "1.2.3",
        "abc",  "0x10", "1000000000", "1234567890.5", "$1",        "NaN", "inf"}) {
    INFO("'" << bad << "'");
    auto r = parse_usd(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::invalid);
    CHECK_THAT(r.error().str(),
               Catch::Contains("is not a price in dollars with at most 6 decimals"));
  }
  // An embedded NUL is not a digit either.
  CHECK_FALSE(parse_usd(std::string_view("1\0", 2)).has_value());
}

TEST_CASE("billing-money: pricing modes by name", "[billing-money]") {
  CHECK(pricing_mode_name(PricingMode::reserved) == "reserved");
  CHECK(pricing_mode_name(PricingMode::usage) == "usage");
  CHECK(parse_pricing_mode("reserved").value() == PricingMode::reserved);
  CHECK(parse_pricing_mode("usage").value() == PricingMode::usage);
  for (std::string_view bad : {"", "Reserved", "USAGE", "spot", "reserved "}) {
    auto r = parse_pricing_mode(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::invalid);
  }
}
