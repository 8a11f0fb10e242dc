// The ledger's pure parts (controlplane/billing/ledger.h): the canonical
// document and its round trip, the SHA-256 chain and verify_chain against
// every kind of tampering, hostile documents, and usage reports whose sums
// match their line items to the micro-dollar.
#include "controlplane/billing/ledger.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

using berth::ErrorKind;
using namespace berth::cp;

namespace {

constexpr const char* kA = "111111111111";
constexpr int64_t kHourMs = 3600 * 1000;
constexpr int64_t kDec5 = 1796428800000;  // 2026-12-05T00:00:00Z

LedgerRecord record(const std::string& task, int64_t period, int64_t amount) {
  LedgerRecord r;
  r.account = kA;
  r.cluster = "default";
  r.family = "web";
  r.revision = 3;
  r.service = "front";
  r.task_id = task;
  r.period = period;
  r.from_ms = period * kHourMs;
  r.to_ms = r.from_ms + kHourMs;
  r.cpu_units = 512;
  r.memory_mib = 1024;
  r.billed_seconds = 3600;
  r.cpu_usec = 1234567;
  r.memory_kib_seconds = 987654321;
  r.memory_peak_bytes = 268435456;
  r.net_rx_bytes = 1000;
  r.net_tx_bytes = 2000;
  r.amount_micro_usd = amount;
  r.cumulative_billed_seconds = 7200;
  r.cumulative_amount_micro_usd = 2 * amount;
  return r;
}

// Rows as the store keeps them: chained from genesis in order.
std::vector<StoredLedgerRow> chain(const std::vector<LedgerRecord>& records) {
  std::vector<StoredLedgerRow> rows;
  std::string prev(kGenesisHash);
  int64_t seq = 0;
  for (const LedgerRecord& r : records) {
    StoredLedgerRow row;
    row.seq = seq += 3;  // seqs are shared by all accounts: gaps are normal
    row.account = r.account;
    row.task_id = r.task_id;
    row.period = r.period;
    row.final = r.final;
    row.doc = ledger_doc(r);
    row.prev_hash = prev;
    row.hash = ledger_hash(prev, row.doc);
    prev = row.hash;
    rows.push_back(row);
  }
  return rows;
}

std::vector<LedgerRecord> many(int n) {
  std::vector<LedgerRecord> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(record("t" + std::to_string(i % 37), 490000 + i, 100 + i));
  }
  return out;
}

// Whether `report` names (seq, task) with a message containing `what`.
bool names(const ChainReport& report, int64_t seq, const std::string& task,
           const std::string& what) {
  return std::any_of(report.problems.begin(), report.problems.end(), [&](const ChainProblem& p) {
    return p.seq == seq && p.task_id == task && p.what.find(what) != std::string::npos;
  });
}

std::string describe(const ChainReport& report) {
  std::string out;
  for (const auto& p : report.problems) {
    out += std::to_string(p.seq) + " " + p.task_id + ": " + p.what + "\n";
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Documents

TEST_CASE("billing-ledger: a record survives its document unchanged", "[billing-ledger]") {
  LedgerRecord r = record("task-1", 499007, 411);
  r.final = true;
  r.mode = PricingMode::usage;
  r.service = "";
  r.family = "we\"ird\\fam\n\x01ly ü";  // escaped, not mangled
  r.memory_peak_bytes = INT64_MAX;
  r.net_rx_bytes = 0;
  r.amount_micro_usd = -5;  // a correction would be negative: integers both ways
  std::string doc = ledger_doc(r);
  auto back = ledger_from_doc(doc);
  INFO(doc << "\n" << (back ? "" : back.error().str()));
  REQUIRE(back.has_value());
  // seq, prev_hash and hash are the store's, not the doc's.
  CHECK(back->seq == 0);
  CHECK(back->prev_hash.empty());
  CHECK(back->hash.empty());
  CHECK(ledger_doc(*back) == doc);
  CHECK(back->account == r.account);
  CHECK(back->cluster == r.cluster);
  CHECK(back->family == r.family);
  CHECK(back->revision == r.revision);
  CHECK(back->service == r.service);
  CHECK(back->task_id == r.task_id);
  CHECK(back->period == r.period);
  CHECK(back->final == r.final);
  CHECK(back->from_ms == r.from_ms);
  CHECK(back->to_ms == r.to_ms);
  CHECK(back->mode == r.mode);
  CHECK(back->cpu_units == r.cpu_units);
  CHECK(back->memory_mib == r.memory_mib);
  CHECK(back->billed_seconds == r.billed_seconds);
  CHECK(back->cpu_usec == r.cpu_usec);
  CHECK(back->memory_kib_seconds == r.memory_kib_seconds);
  CHECK(back->memory_peak_bytes == r.memory_peak_bytes);
  CHECK(back->net_rx_bytes == r.net_rx_bytes);
  CHECK(back->net_tx_bytes == r.net_tx_bytes);
  CHECK(back->amount_micro_usd == r.amount_micro_usd);
  CHECK(back->cumulative_billed_seconds == r.cumulative_billed_seconds);
  CHECK(back->cumulative_amount_micro_usd == r.cumulative_amount_micro_usd);
}

TEST_CASE("billing-ledger: the document is canonical: fixed order, integers, same bytes",
          "[billing-ledger]") {
  LedgerRecord r = record("task-1", 499007, 411);
  std::string doc = ledger_doc(r);
  CHECK(doc ==
        "{\"v\":1,\"account\":\"111111111111\",\"cluster\":\"default\",\"family\":\"web\","
        "\"revision\":3,\"service\":\"front\",\"task_id\":\"task-1\",\"period\":499007,"
        "\"final\":false,\"from_ms\":1796425200000,\"to_ms\":1796428800000,\"mode\":\"reserved\","
        "\"cpu_units\":512,\"memory_mib\":1024,\"billed_seconds\":3600,\"cpu_usec\":1234567,"
        "\"memory_kib_seconds\":987654321,\"memory_peak_bytes\":268435456,\"net_rx_bytes\":1000,"
        "\"net_tx_bytes\":2000,\"amount_micro_usd\":411,\"cumulative_billed_seconds\":7200,"
        "\"cumulative_amount_micro_usd\":822}");
  // The same record, however it was made, gives the same bytes; seq and the
  // hashes do not enter the document.
  LedgerRecord copy = r;
  copy.seq = 99;
  copy.prev_hash = std::string(64, 'f');
  copy.hash = "x";
  CHECK(ledger_doc(copy) == doc);
  auto back = ledger_from_doc(doc);
  REQUIRE(back.has_value());
  CHECK(ledger_doc(*back) == doc);
  // A reordered or respaced document reads back to the same record, but it
  // is not the canonical text, so its hash differs: the chain is over bytes.
  std::string respaced = doc;
  respaced.insert(1, " ");
  auto again = ledger_from_doc(respaced);
  REQUIRE(again.has_value());
  CHECK(ledger_doc(*again) == doc);
  CHECK(ledger_hash(kGenesisHash, respaced) != ledger_hash(kGenesisHash, doc));
}

TEST_CASE("billing-ledger: hashes are SHA-256 of prev_hash, a newline and the doc",
          "[billing-ledger]") {
  // Worked out with another implementation (Python's hashlib).
  CHECK(ledger_hash("", "") ==
        "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b");  // sha256("\n")
  CHECK(ledger_hash(kGenesisHash, "{}") ==
        "5649d09ed68c17156095d175eef152856c5b1a81c117c409c1e00f096aa6838e");  // 64 zeros \n {}
  CHECK(ledger_hash(kGenesisHash, "{}").size() == 64);
  CHECK(ledger_hash(kGenesisHash, "{}") != ledger_hash(kGenesisHash, "{} "));
  CHECK(ledger_hash(kGenesisHash, "{}") != ledger_hash(std::string(63, '0') + "1", "{}"));
  std::string h = ledger_hash(kGenesisHash, "{}");
  CHECK(std::all_of(h.begin(), h.end(),
                    [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }));
}

TEST_CASE("billing-ledger: the API form has camelCase members and amounts as strings",
          "[billing-ledger]") {
  LedgerRecord r = record("task-1", 499007, 411);
  r.seq = 7;
  r.prev_hash = std::string(kGenesisHash);
  r.hash = "abc";
  auto j = ledger_json(r);
  CHECK(j["seq"] == 7);
  CHECK(j["taskId"] == "task-1");
  CHECK(j["amountMicroUsd"] == 411);
  CHECK(j["amountUsd"] == "0.000411");
  CHECK(j["cumulativeAmountMicroUsd"] == 822);
  CHECK(j["cumulativeAmountUsd"] == "0.000822");
  CHECK(j["from"] == "2026-12-04T23:00:00Z");
  CHECK(j["to"] == "2026-12-05T00:00:00Z");
  CHECK(j["mode"] == "reserved");
  CHECK(j["prevHash"] == std::string(kGenesisHash));
  CHECK(j["hash"] == "abc");
  for (const auto& [key, value] : j.items()) {
    INFO(key);
    CHECK(key.find('_') == std::string::npos);
    CHECK_FALSE(value.is_number_float());
  }
}

// ---------------------------------------------------------------------------
// Hostile documents

TEST_CASE("billing-ledger: hostile documents are errors naming the problem, never a crash",
          "[billing-ledger]") {
  const std::string good = ledger_doc(record("task-1", 1, 2));
  auto with = [&](const std::string& member, const std::string& value) {
    std::string doc = good;
    auto at = doc.find("\"" + member + "\":");
    REQUIRE(at != std::string::npos);
    auto start = at + member.size() + 3;
    auto end = doc.find_first_of(",}", start);
    return doc.substr(0, start) + value + doc.substr(end);
  };
  auto without = [&](const std::string& member) {
    std::string doc = good;
    auto at = doc.find(",\"" + member + "\":");
    REQUIRE(at != std::string::npos);
    auto end = doc.find_first_of(",}", at + 1);
    return doc.substr(0, at) + doc.substr(end);
  };
  struct Case {
    std::string name;
    std::string doc;
    std::string says;  // in the error's text
  };
  std::vector<Case> cases = {
      {"empty", "", "not valid JSON"},
      {"not JSON", "ledger", "not valid JSON"},
      {"truncated", good.substr(0, good.size() / 2), "not valid JSON"},
      {"an array", "[1,2]", "expected an object"},
      {"a string", "\"x\"", "expected an object"},
      {"null", "null", ""},
      {"revision a string", with("revision", "\"3\""), "revision"},
      {"final a number", with("final", "1"), "final"},
      {"amount a float", with("amount_micro_usd", "411.5"), "amount_micro_usd"},
      {"amount huge", with("amount_micro_usd", "1e30"), "amount_micro_usd"},
      {"amount beyond int64", with("amount_micro_usd", "9223372036854775808"), "amount_micro_usd"},
      {"revision beyond int", with("revision", "4294967296"), "revision"},
      {"account a number", with("account", "5"), "account"},
      {"account an object", with("account", "{}"), "account"},
      {"account null", with("account", "null"), "account"},
      {"mode unknown", with("mode", "\"free\""), "mode"},
      {"version 2", with("v", "2"), "v"},
      {"missing task", without("task_id"), "task_id"},
      {"missing amount", without("amount_micro_usd"), "amount_micro_usd"},
      {"missing final", without("final"), "final"},
      {"unknown member", "{\"extra\":1," + good.substr(1), "extra"},
      {"duplicate-looking trailing garbage", good + "x", "not valid JSON"},
  };
  for (const Case& c : cases) {
    INFO(c.name << ": " << c.doc.substr(0, 200));
    auto r = ledger_from_doc(c.doc);
    REQUIRE_FALSE(r.has_value());
    CHECK_THAT(r.error().str(), Catch::Contains(c.says));
  }

  SECTION("100000 levels of nesting") {
    for (const auto& [open, close] : {std::pair<std::string, std::string>{"[", "]"},
                                      std::pair<std::string, std::string>{"{\"a\":", "}"}}) {
      std::string deep;
      for (int i = 0; i < 100000; ++i) deep += open;
      deep += "1";
      for (int i = 0; i < 100000; ++i) deep += close;
      auto r = ledger_from_doc(deep);
      REQUIRE_FALSE(r.has_value());
      CHECK_THAT(r.error().str(),
                 Catch::Contains("expected an object") || Catch::Contains("unknown member"));
      // Unbalanced: a parse error, not a stack overflow.
      auto u = ledger_from_doc(deep.substr(0, deep.size() - 1));
      CHECK_FALSE(u.has_value());
    }
  }
  SECTION("a 10 MB string") {
    std::string huge(10 * 1024 * 1024, 'x');
    auto r = ledger_from_doc(with("account", "\"" + huge + "\""));
    REQUIRE_FALSE(r.has_value());
    CHECK_THAT(r.error().str(), Catch::Contains("more than the"));
    // Below the size limit a long string is just a long string.
    std::string long_family(500 * 1024, 'f');
    auto ok = ledger_from_doc(with("family", "\"" + long_family + "\""));
    REQUIRE(ok.has_value());
    CHECK(ok->family == long_family);
    // An unterminated 10 MB string.
    CHECK_FALSE(ledger_from_doc("{\"account\":\"" + huge).has_value());
  }
  SECTION("in a chain, a hostile doc is a problem of its row") {
    auto rows = chain(many(3));
    rows[1].doc = "[[[[";
    rows[1].hash = ledger_hash(rows[1].prev_hash, rows[1].doc);
    rows[2].prev_hash = rows[1].hash;
    rows[2].hash = ledger_hash(rows[2].prev_hash, rows[2].doc);
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    REQUIRE(report.problems.size() == 1);
    CHECK(names(report, rows[1].seq, rows[1].task_id, "doc does not parse"));
  }
}

// ---------------------------------------------------------------------------
// The chain

TEST_CASE("billing-ledger: a chain of 1000 records verifies", "[billing-ledger]") {
  auto records = many(1000);
  auto rows = chain(records);
  auto report = verify_chain(kA, rows);
  INFO(describe(report));
  CHECK(report.ok());
  CHECK(report.account == kA);
  CHECK(report.records == 1000);
  CHECK(report.head == rows.back().hash);
  int64_t total = 0;
  for (const auto& r : records) total += r.amount_micro_usd;
  CHECK(report.total_micro_usd == total);
  // And an empty one.
  auto empty = verify_chain(kA, {});
  CHECK(empty.ok());
  CHECK(empty.records == 0);
  CHECK(empty.head.empty());
}

TEST_CASE("billing-ledger: tampering makes verify_chain fail and name the record",
          "[billing-ledger]") {
  auto rows = chain(many(1000));
  const size_t i = 417;
  const int64_t seq = rows[i].seq;
  const std::string task = rows[i].task_id;

  SECTION("an amount edited in a doc") {
    auto at = rows[i].doc.find("\"amount_micro_usd\":");
    REQUIRE(at != std::string::npos);
    rows[i].doc.replace(at, std::string("\"amount_micro_usd\":517").size(),
                        "\"amount_micro_usd\":999");
    REQUIRE(ledger_from_doc(rows[i].doc).has_value());
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK(report.problems.size() == 1);
    CHECK(names(report, seq, task, "hash does not match its contents"));
  }
  SECTION("an amount edited and the row's hash recomputed") {
    auto at = rows[i].doc.find("\"amount_micro_usd\":517");
    REQUIRE(at != std::string::npos);
    rows[i].doc.replace(at, std::string("\"amount_micro_usd\":517").size(),
                        "\"amount_micro_usd\":1");
    rows[i].hash = ledger_hash(rows[i].prev_hash, rows[i].doc);
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK(report.problems.size() == 1);
    CHECK(names(report, rows[i + 1].seq, rows[i + 1].task_id,
                "prev_hash does not match record " + std::to_string(seq)));
  }
  SECTION("a row deleted") {
    rows.erase(rows.begin() + static_cast<ptrdiff_t>(i));
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK(report.problems.size() == 1);
    // The record after the gap no longer links to its predecessor.
    CHECK(names(report, rows[i].seq, rows[i].task_id,
                "prev_hash does not match record " + std::to_string(rows[i - 1].seq)));
  }
  SECTION("the first row deleted") {
    int64_t second_seq = rows[1].seq;
    std::string second_task = rows[1].task_id;
    rows.erase(rows.begin());
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK(report.problems.size() == 1);
    CHECK(names(report, second_seq, second_task, "genesis"));
  }
  SECTION("two rows swapped") {
    std::swap(rows[i], rows[i + 1]);
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK_FALSE(report.ok());
    CHECK(names(report, rows[i].seq, rows[i].task_id, "prev_hash does not match"));
    CHECK(names(report, rows[i + 1].seq, rows[i + 1].task_id, "seq is not after"));
    CHECK(names(report, rows[i + 2].seq, rows[i + 2].task_id, "prev_hash does not match"));
  }
  SECTION("two rows' contents swapped under their seqs") {
    std::swap(rows[i].doc, rows[i + 1].doc);
    std::swap(rows[i].prev_hash, rows[i + 1].prev_hash);
    std::swap(rows[i].hash, rows[i + 1].hash);
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK_FALSE(report.ok());
    // Each row's doc now names the other row's task and period.
    CHECK(names(report, seq, task, "doc's period"));
    CHECK(names(report, seq, task, "prev_hash does not match"));
  }
  SECTION("a prev_hash changed") {
    rows[i].prev_hash = std::string(64, 'a');
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    // Its own hash no longer matches either: both are named at the row.
    CHECK(names(report, seq, task, "prev_hash does not match record"));
    CHECK(names(report, seq, task, "hash does not match its contents"));
    for (const auto& p : report.problems) CHECK(p.seq == seq);
  }
  SECTION("a row's columns disagree with its doc") {
    rows[i].task_id = "someone-else";
    rows[i].period += 1;
    rows[i].final = true;
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK(names(report, seq, "someone-else", "doc's task"));
    CHECK(names(report, seq, "someone-else", "doc's period"));
    CHECK(names(report, seq, "someone-else", "doc's final"));
    CHECK(report.problems.size() == 3);
  }
  SECTION("another account's row in the chain") {
    rows[i].account = "222222222222";
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK(names(report, seq, task, "row is account 222222222222's"));
    CHECK(names(report, seq, task, "doc's account"));
  }
  SECTION("every problem is reported, not only the first") {
    rows[10].hash = std::string(64, 'b');
    rows[500].doc += " ";
    rows[900].prev_hash = std::string(kGenesisHash);
    auto report = verify_chain(kA, rows);
    INFO(describe(report));
    CHECK(names(report, rows[10].seq, rows[10].task_id, "hash does not match its contents"));
    CHECK(names(report, rows[11].seq, rows[11].task_id, "prev_hash does not match"));
    CHECK(names(report, rows[500].seq, rows[500].task_id, "hash does not match its contents"));
    CHECK(names(report, rows[900].seq, rows[900].task_id, "prev_hash does not match"));
  }
}

// ---------------------------------------------------------------------------
// Usage reports

TEST_CASE("billing-ledger: usage groups by name", "[billing-ledger]") {
  for (auto g : {UsageGroup::task, UsageGroup::family, UsageGroup::service, UsageGroup::day,
                 UsageGroup::none}) {
    CHECK(parse_usage_group(usage_group_name(g)).value() == g);
  }
  for (std::string_view bad : {"", "Task", "account", "hour", "tasks"}) {
    auto r = parse_usage_group(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::invalid);
  }
}

TEST_CASE("billing-ledger: usage reports sum to their line items to the micro-dollar",
          "[billing-ledger]") {
  // 300 records of 20 tasks in 3 families and 3 services (one: none), over
  // three UTC days, with awkward amounts.
  std::mt19937_64 rng(1205);
  std::vector<LedgerRecord> records;
  const std::string families[] = {"web", "batch", "cron"};
  const std::string services[] = {"", "front", "back"};
  for (int i = 0; i < 300; ++i) {
    int t = static_cast<int>(rng() % 20);
    LedgerRecord r = record("task-" + std::to_string(t), 0, 0);
    r.family = families[t % 3];
    r.service = services[t % 3];
    r.from_ms = kDec5 - kHourMs + static_cast<int64_t>(rng() % (3 * 24)) * kHourMs;
    r.period = r.from_ms / kHourMs;
    r.to_ms = r.from_ms + kHourMs;
    r.cpu_units = 256 << (t % 4);
    r.memory_mib = 512 * (1 + t % 5);
    r.billed_seconds = 1 + static_cast<int64_t>(rng() % 3600);
    r.amount_micro_usd = static_cast<int64_t>(rng() % 100000);
    r.cpu_usec = static_cast<int64_t>(rng() % 3600000000);
    r.memory_peak_bytes = static_cast<int64_t>(rng() % (int64_t{1} << 34));
    records.push_back(r);
  }
  int64_t amount = 0, seconds = 0, usec = 0, peak = 0;
  std::set<std::string> tasks;
  for (const auto& r : records) {
    amount += r.amount_micro_usd;
    seconds += r.billed_seconds;
    usec += r.cpu_usec;
    peak = std::max(peak, r.memory_peak_bytes);
    tasks.insert(r.task_id);
  }

  for (auto g : {UsageGroup::task, UsageGroup::family, UsageGroup::service, UsageGroup::day}) {
    INFO(usage_group_name(g));
    auto report = build_usage_report(kA, kDec5 - kHourMs, kDec5 + 3 * 86400000, g, records);
    CHECK(report.total.key == "total");
    // By hand, per key.
    std::map<std::string, std::pair<int64_t, std::set<std::string>>> expected;
    for (const auto& r : records) {
      std::string key = g == UsageGroup::task     ? r.task_id
                        : g == UsageGroup::family ? r.family
                        : g == UsageGroup::service
                            ? r.service
                            : (r.from_ms < kDec5                  ? "2026-12-04"
                               : r.from_ms < kDec5 + 86400000     ? "2026-12-05"
                               : r.from_ms < kDec5 + 2 * 86400000 ? "2026-12-06"
                                                                  : "2026-12-07");
      expected[key].first += r.amount_micro_usd;
      expected[key].second.insert(r.task_id);
    }
    REQUIRE(report.lines.size() == expected.size());
    int64_t line_amounts = 0, line_records = 0, line_seconds = 0, line_usec = 0, line_vcpu = 0,
            line_gb = 0;
    for (size_t k = 0; k < report.lines.size(); ++k) {
      const UsageLine& l = report.lines[k];
      INFO(l.key);
      if (k > 0) CHECK(report.lines[k - 1].key < l.key);  // sorted
      REQUIRE(expected.count(l.key) == 1);
      CHECK(l.amount_micro_usd == expected[l.key].first);
      CHECK(l.tasks == static_cast<int64_t>(expected[l.key].second.size()));
      line_amounts += l.amount_micro_usd;
      line_records += l.records;
      line_seconds += l.billed_seconds;
      line_usec += l.cpu_usec;
      line_vcpu += l.vcpu_milli_seconds;
      line_gb += l.gb_milli_seconds;
    }
    CHECK(report.total.amount_micro_usd == amount);
    CHECK(line_amounts == amount);
    CHECK(report.total.records == 300);
    CHECK(line_records == 300);
    CHECK(report.total.billed_seconds == seconds);
    CHECK(line_seconds == seconds);
    CHECK(report.total.cpu_usec == usec);
    CHECK(line_usec == usec);
    CHECK(report.total.vcpu_milli_seconds == line_vcpu);
    CHECK(report.total.gb_milli_seconds == line_gb);
    CHECK(report.total.memory_peak_bytes == peak);
    CHECK(report.total.tasks == static_cast<int64_t>(tasks.size()));

    auto j = usage_report_json(report);
    CHECK(j["account"] == kA);
    CHECK(j["groupBy"] == std::string(usage_group_name(g)));
    CHECK(j["from"] == "2026-12-04T23:00:00Z");
    CHECK(j["to"] == "2026-12-08T00:00:00Z");
    REQUIRE(j["lineItems"].size() == report.lines.size());
    int64_t json_sum = 0;
    for (const auto& item : j["lineItems"]) json_sum += item["amountMicroUsd"].get<int64_t>();
    CHECK(json_sum == amount);
    CHECK(j["total"]["amountMicroUsd"] == amount);
    CHECK(j["total"]["amountUsd"] == format_usd(amount));
  }

  // No grouping: the total alone.
  auto none = build_usage_report(kA, 0, INT64_MAX, UsageGroup::none, records);
  CHECK(none.lines.empty());
  CHECK(none.total.amount_micro_usd == amount);
  CHECK(none.total.records == 300);
  CHECK(usage_report_json(none)["to"].is_null());
}

TEST_CASE("billing-ledger: a record's day is the UTC day of its start, midnight to midnight",
          "[billing-ledger]") {
  auto at = [](int64_t from_ms, int64_t amount) {
    LedgerRecord r = record("t", from_ms / kHourMs, amount);
    r.from_ms = from_ms;
    return r;
  };
  std::vector<LedgerRecord> records = {
      at(kDec5 - 1, 1),               // 2026-12-04T23:59:59.999Z
      at(kDec5, 10),                  // 2026-12-05T00:00:00Z: the new day
      at(kDec5 + 86400000 - 1, 100),  // the last millisecond of the 5th
      at(kDec5 + 86400000, 1000),     // 2026-12-06
      at(1709164800000, 10000),       // 2024-02-29 (a leap day)
      at(-1000, 100000),              // 1969-12-31T23:59:59Z (before the epoch)
      at(0, 1000000),                 // 1970-01-01
  };
  auto report = build_usage_report(kA, INT64_MIN, INT64_MAX, UsageGroup::day, records);
  std::vector<std::pair<std::string, int64_t>> got;
  for (const auto& l : report.lines) got.emplace_back(l.key, l.amount_micro_usd);
  CHECK(got == std::vector<std::pair<std::string, int64_t>>{{"1969-12-31", 100000},
                                                            {"1970-01-01", 1000000},
                                                            {"2024-02-29", 10000},
                                                            {"2026-12-04", 1},
                                                            {"2026-12-05", 110},
                                                            {"2026-12-06", 1000}});
  CHECK(report.total.amount_micro_usd == 1111111);
  CHECK(report.total.tasks == 1);
  auto j = usage_report_json(report);
  CHECK(j["from"].is_null());  // INT64_MIN cannot be written in RFC 3339
  CHECK(j["fromMs"] == INT64_MIN);
}

TEST_CASE("billing-ledger: vCPU and GB milli-seconds are per record, exact for Fargate sizes",
          "[billing-ledger]") {
  LedgerRecord r = record("t", 1, 1);
  r.cpu_units = 256;      // 0.25 vCPU
  r.memory_mib = 512;     // 0.5 GB
  r.billed_seconds = 61;  // 15.25 vCPU-s, 30.5 GB-s
  LedgerRecord s = r;
  s.cpu_units = 100;  // not a Fargate size: rounded half up per record
  s.memory_mib = 1000;
  auto report = build_usage_report(kA, 0, INT64_MAX, UsageGroup::task, {r});
  REQUIRE(report.lines.size() == 1);
  CHECK(report.lines[0].vcpu_milli_seconds == 15250);
  CHECK(report.lines[0].gb_milli_seconds == 30500);
  auto odd = build_usage_report(kA, 0, INT64_MAX, UsageGroup::task, {s});
  // 100 * 61 * 1000 / 1024 = 5957.03 -> 5957; 1000 * 61 * 1000 / 1024 = 59570.3 -> 59570.
  CHECK(odd.lines[0].vcpu_milli_seconds == 5957);
  CHECK(odd.lines[0].gb_milli_seconds == 59570);
}
