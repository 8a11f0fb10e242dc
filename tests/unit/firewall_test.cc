// The pure parts of netns/firewall and netns/nft: the exact nft scripts of
// every operation, reading rules back from `nft -j -a` output, owner
// comments, host port picking, config checks and sysctl writing. The
// privileged side (real rules, real traffic) is in
// tests/integration/firewall_test.cc.
#include <fstream>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "common/fs.h"
#include "netns/firewall.h"
#include "netns/nft.h"
#include "temp_dir.h"

using namespace berth::netns;
using berth::test::TempDir;

namespace {

FirewallConfig test_config() {
  FirewallConfig cfg;
  cfg.table = "berth_t";
  cfg.bridge = "bt0";
  cfg.subnet = "10.88.0.0/16";
  return cfg;
}

constexpr uint32_t ip(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d;
}

// Captured from `nft -j -a list table ip berth_t` (nft 1.0.6) after ensure,
// a tcp+udp port mapping and a load balancer; plus one rule without a
// comment, which berth must leave alone.
constexpr const char* kListing = R"({"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "berth_t", "handle": 6}},
{"chain": {"family": "ip", "table": "berth_t", "name": "output", "handle": 2, "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}},
{"rule": {"family": "ip", "table": "berth_t", "chain": "output", "handle": 8, "comment": "berth:task-1", "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}}, {"dnat": {"addr": "10.88.0.2", "port": 80}}]}},
{"rule": {"family": "ip", "table": "berth_t", "chain": "output", "handle": 10, "comment": "berth:task-1", "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 5353}}, {"dnat": {"addr": "10.88.0.2", "port": 53}}]}},
{"rule": {"family": "ip", "table": "berth_t", "chain": "output", "handle": 14, "comment": "berth:svc", "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9000}}, {"dnat": {"family": "ip", "addr": {"map": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "data": {"set": [[0, {"concat": ["10.88.0.11", 80]}], [1, {"concat": ["10.88.0.12", 81]}]]}}}}}]}},
{"rule": {"family": "ip", "table": "berth_t", "chain": "postrouting", "handle": 5, "comment": "berth:@egress", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}}, {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "bt0"}}, {"masquerade": null}]}},
{"rule": {"family": "ip", "table": "berth_t", "chain": "postrouting", "handle": 20, "expr": [{"accept": null}]}}
]})";

}  // namespace

TEST_CASE("ensure script creates the table, chains and masquerade rules in one go", "[firewall]") {
  CHECK(build_ensure_script(test_config()) ==
        "add table ip berth_t\n"
        "add chain ip berth_t prerouting { type nat hook prerouting priority dstnat; policy "
        "accept; }\n"
        "add chain ip berth_t output { type nat hook output priority -100; policy accept; }\n"
        "add chain ip berth_t postrouting { type nat hook postrouting priority srcnat; policy "
        "accept; }\n"
        "flush chain ip berth_t postrouting\n"
        "add rule ip berth_t postrouting ip saddr 10.88.0.0/16 oifname != \"bt0\" masquerade "
        "comment \"berth:@egress\"\n"
        "add rule ip berth_t postrouting oifname \"bt0\" ct status dnat ip saddr 10.88.0.0/16 "
        "masquerade comment \"berth:@hairpin\"\n"
        "add rule ip berth_t postrouting oifname \"bt0\" ct status dnat fib saddr type local "
        "masquerade comment \"berth:@host\"\n");
}

TEST_CASE("teardown script is idempotent: add, then delete the table", "[firewall]") {
  CHECK(build_teardown_script(test_config()) == "add table ip berth_t\ndelete table ip berth_t\n");
}

TEST_CASE("port mapping script DNATs in prerouting and output, per protocol", "[firewall]") {
  std::vector<PortMapping> maps = {{Protocol::tcp, 8080, 80}, {Protocol::udp, 5353, 53}};
  CHECK(build_port_mapping_script(test_config(), "task-1", ip(10, 88, 0, 2), maps) ==
        "add rule ip berth_t prerouting fib daddr type local tcp dport 8080 dnat to 10.88.0.2:80 "
        "comment \"berth:task-1\"\n"
        "add rule ip berth_t output fib daddr type local tcp dport 8080 dnat to 10.88.0.2:80 "
        "comment \"berth:task-1\"\n"
        "add rule ip berth_t prerouting fib daddr type local udp dport 5353 dnat to 10.88.0.2:53 "
        "comment \"berth:task-1\"\n"
        "add rule ip berth_t output fib daddr type local udp dport 5353 dnat to 10.88.0.2:53 "
        "comment \"berth:task-1\"\n");
}

TEST_CASE("load balancer script replaces the old rules in the same transaction", "[firewall]") {
  std::vector<Backend> backends = {{ip(10, 88, 0, 11), 80}, {ip(10, 88, 0, 12), 81}};
  std::vector<RuleRef> old = {{"prerouting", 7}, {"output", 8}};
  CHECK(build_load_balancer_script(test_config(), "svc", Protocol::tcp, 9000, backends, old) ==
        "delete rule ip berth_t prerouting handle 7\n"
        "delete rule ip berth_t output handle 8\n"
        "add rule ip berth_t prerouting fib daddr type local tcp dport 9000 dnat ip to numgen "
        "random mod 2 map { 0 : 10.88.0.11 . 80, 1 : 10.88.0.12 . 81 } comment \"berth:svc\"\n"
        "add rule ip berth_t output fib daddr type local tcp dport 9000 dnat ip to numgen random "
        "mod 2 map { 0 : 10.88.0.11 . 80, 1 : 10.88.0.12 . 81 } comment \"berth:svc\"\n");
}

TEST_CASE("load balancer script with no backends only deletes", "[firewall]") {
  CHECK(build_load_balancer_script(test_config(), "svc", Protocol::udp, 53, {},
                                   {{"prerouting", 3}, {"output", 4}}) ==
        "delete rule ip berth_t prerouting handle 3\n"
        "delete rule ip berth_t output handle 4\n");
  CHECK(build_load_balancer_script(test_config(), "svc", Protocol::udp, 53, {}, {}).empty());
}

TEST_CASE("delete script names chain and handle of each rule", "[firewall]") {
  CHECK(build_delete_script(test_config(), {{"prerouting", 12}, {"output", 13}}) ==
        "delete rule ip berth_t prerouting handle 12\n"
        "delete rule ip berth_t output handle 13\n");
  CHECK(build_delete_script(test_config(), {}).empty());
}

TEST_CASE("owner comes from a berth: comment", "[firewall]") {
  CHECK(comment_owner("berth:task-1") == "task-1");
  CHECK(comment_owner("berth:@egress") == "@egress");
  CHECK(comment_owner("berth:") == std::nullopt);
  CHECK(comment_owner("docker:task-1") == std::nullopt);
  CHECK(comment_owner("") == std::nullopt);
}

TEST_CASE("owners are checked before they reach a comment", "[firewall]") {
  CHECK(validate_owner("task-1_a.b:c"));
  CHECK(validate_owner(std::string(64, 'a')));
  CHECK_FALSE(validate_owner(std::string(65, 'a')));
  CHECK_FALSE(validate_owner(""));
  CHECK_FALSE(validate_owner("@egress"));
  auto r = validate_owner("x\" accept #");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "firewall: invalid owner \"x\" accept #\": 1-64 letters, digits and _.:- (not starting "
        "with @)");
}

TEST_CASE("config values spliced into scripts are checked", "[firewall]") {
  CHECK(validate_config(test_config()));
  auto cfg = test_config();
  cfg.table = "berth; flush ruleset";
  auto r = validate_config(cfg);
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "firewall: invalid table name \"berth; flush ruleset\": 1-64 letters, digits and _, not "
        "starting with a digit");

  cfg = test_config();
  cfg.bridge = "a-very-long-bridge";
  r = validate_config(cfg);
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "firewall: invalid bridge name \"a-very-long-bridge\": 1-15 letters, digits and _.-");

  for (const char* bad : {"10.88.0.1/16", "10.88.0.0", "10.88.0.0/33", "10.88.0/16", "x/8",
                          "10.88.0.0/1x", "10.88.0.0/"}) {
    cfg = test_config();
    cfg.subnet = bad;
    r = validate_config(cfg);
    REQUIRE_FALSE(r);
    CHECK(r.error().str() == fmt::format("firewall: invalid subnet \"{}\": want a network like "
                                         "10.88.0.0/16",
                                         bad));
  }
  cfg = test_config();
  cfg.subnet = "192.168.7.128/25";
  CHECK(validate_config(cfg));

  cfg = test_config();
  cfg.ephemeral_low = 5000;
  cfg.ephemeral_high = 4000;
  r = validate_config(cfg);
  REQUIRE_FALSE(r);
  CHECK(r.error().str() == "firewall: invalid host port range 5000-4000");
}

TEST_CASE("rules are read back from nft's JSON listing", "[firewall][nft]") {
  auto rules = nft::parse_rules(kListing);
  REQUIRE(rules);
  REQUIRE(rules->size() == 5);

  const auto& tcp = (*rules)[0];
  CHECK(tcp.chain == "output");
  CHECK(tcp.handle == 8);
  CHECK(tcp.comment == "berth:task-1");
  CHECK(tcp.l4proto == "tcp");
  CHECK(tcp.dport == 8080);
  CHECK_FALSE(tcp.numgen);

  CHECK((*rules)[1].l4proto == "udp");
  CHECK((*rules)[1].dport == 5353);

  const auto& lb = (*rules)[2];
  CHECK(lb.comment == "berth:svc");
  CHECK(lb.dport == 9000);
  CHECK(lb.numgen);

  const auto& egress = (*rules)[3];
  CHECK(egress.chain == "postrouting");
  CHECK(egress.handle == 5);
  CHECK(comment_owner(egress.comment) == "@egress");
  CHECK(egress.l4proto.empty());
  CHECK(egress.dport == 0);

  CHECK((*rules)[4].comment.empty());
  CHECK((*rules)[4].handle == 20);
}

TEST_CASE("unexpected JSON is an error, not a crash", "[firewall][nft]") {
  auto r = nft::parse_rules("not json");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() == "nft: cannot parse JSON output: not json");
  r = nft::parse_rules(R"({"something": 1})");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "nft: unexpected JSON output (no \"nftables\" array): {\"something\": 1}");
  // Wrong types inside are skipped, not dereferenced.
  r = nft::parse_rules(
      R"({"nftables": [{"rule": {"chain": 5, "handle": "x", "expr": {"match": 1}}}, {"rule": 3}]})");
  REQUIRE(r);
  REQUIRE(r->size() == 1);
  CHECK((*r)[0].chain.empty());
  CHECK((*r)[0].handle == 0);
}

TEST_CASE("table names are read from `list tables`", "[firewall][nft]") {
  auto names = nft::parse_table_names(
      R"({"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "a", "handle": 1}}, {"table": {"family": "ip", "name": "berth_t", "handle": 6}}]})");
  REQUIRE(names);
  CHECK(*names == std::vector<std::string>{"a", "berth_t"});
  auto none = nft::parse_table_names(R"({"nftables": [{"metainfo": {"version": "1.0.6"}}]})");
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("nft's error buffer is reduced to one line with the failing command", "[nft]") {
  CHECK(nft::compact_error("/proc/self/fd/4:2:15-21: Error: Could not process rule: No such file "
                           "or directory\n"
                           "add rule ip x nochain tcp dport 1 accept\n"
                           "              ^^^^^^^\n") ==
        "Error: Could not process rule: No such file or directory (in: add rule ip x nochain tcp "
        "dport 1 accept)");
  CHECK(nft::compact_error("Error: a\nfirst cmd\n^^^\nError: b\nsecond cmd\n  ~~~^^\n") ==
        "Error: a (in: first cmd); Error: b (in: second cmd)");
  CHECK(nft::compact_error("something odd\n\nhappened\n") == "something odd; happened");
  CHECK(nft::compact_error("") == "nft failed without a message");
}

TEST_CASE("host port picking skips used and bound ports and wraps around", "[firewall]") {
  auto all = [](uint16_t) { return true; };
  CHECK(pick_host_port(100, 105, 100, {}, all) == 100);
  CHECK(pick_host_port(100, 105, 100, {100, 101}, all) == 102);
  // Searching starts at `start` (after the last pick) and wraps to low.
  CHECK(pick_host_port(100, 105, 104, {104, 105}, all) == 100);
  // A start outside the range begins at low.
  CHECK(pick_host_port(100, 105, 106, {}, all) == 100);
  CHECK(pick_host_port(100, 105, 7, {100}, all) == 101);
  // Not bindable on the host (a process listens there): skipped.
  CHECK(pick_host_port(100, 105, 100, {101}, [](uint16_t p) { return p != 100 && p != 102; }) ==
        103);
  CHECK(pick_host_port(100, 102, 100, {100, 101, 102}, all) == std::nullopt);
  CHECK(pick_host_port(100, 102, 100, {}, [](uint16_t) { return false; }) == std::nullopt);
  // The whole 16-bit range, without overflow.
  CHECK(pick_host_port(65535, 65535, 65535, {}, all) == 65535);
  CHECK(pick_host_port(1, 65535, 65535, {65535}, all) == 1);
}

TEST_CASE("sysctls are written only when they differ", "[firewall]") {
  TempDir root;
  REQUIRE(berth::fs::mkdir_p(root / "net/ipv4/conf/bt0"));
  {
    std::ofstream(root / "net/ipv4/ip_forward") << "0\n";
    std::ofstream(root / "net/ipv4/conf/bt0/route_localnet") << "1\n";
  }
  auto wrote = ensure_sysctl(root.path(), "net/ipv4/ip_forward", "1");
  REQUIRE(wrote);
  CHECK(*wrote);
  CHECK(berth::fs::read_file(root / "net/ipv4/ip_forward").value() == "1");
  wrote = ensure_sysctl(root.path(), "net/ipv4/ip_forward", "1");
  REQUIRE(wrote);
  CHECK_FALSE(*wrote);
  wrote = ensure_sysctl(root.path(), "net/ipv4/conf/bt0/route_localnet", "1");
  REQUIRE(wrote);
  CHECK_FALSE(*wrote);

  auto missing = ensure_sysctl(root.path(), "net/ipv4/conf/nope/route_localnet", "1");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().str() ==
        "fs: open " + root.path() +
            "/net/ipv4/conf/nope/route_localnet: No such file or directory");
}

TEST_CASE("Firewall checks its input before touching nftables", "[firewall]") {
  auto cfg = test_config();
  cfg.proc_sys = "/nonexistent";
  Firewall fw(cfg);
  auto r = fw.add_port_mappings("@egress", ip(10, 88, 0, 2), {{Protocol::tcp, 80, 80}});
  REQUIRE_FALSE(r);
  CHECK(r.error().message.starts_with("invalid owner \"@egress\""));
  r = fw.add_port_mappings("t1", 0, {{Protocol::tcp, 80, 80}});
  REQUIRE_FALSE(r);
  CHECK(r.error().str() == "firewall: add port mappings for owner t1: no container address");
  auto lb = fw.set_load_balancer("svc", Protocol::tcp, 0, {});
  REQUIRE_FALSE(lb);
  CHECK(lb.error().str() ==
        "firewall: set load balancer of tcp host port 0 for owner svc: a load balancer needs a "
        "host port");
  lb = fw.set_load_balancer("svc", Protocol::tcp, 80, {{ip(10, 88, 0, 2), 0}});
  REQUIRE_FALSE(lb);
  CHECK(lb.error().str() ==
        "firewall: set load balancer of tcp host port 80 for owner svc: invalid backend "
        "10.88.0.2:0");
  auto e = fw.ensure();
  REQUIRE_FALSE(e);
  CHECK(e.error().str() ==
        "firewall: ensure table ip berth_t: bridge bt0 does not exist (no "
        "/nonexistent/net/ipv4/conf/bt0)");
}
