// The pure parts of tenant isolation and anti-spoofing (netns/firewall.h,
// "Tenant isolation"): the exact nft scripts for the bridge table, tenant
// port validation, chain names, and the microhost MAC. The real rules with
// real traffic are in tests/integration/tenant_net_test.cc.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "netns/firewall.h"
#include "netns/network.h"
#include "netns/nft.h"

using namespace berth::netns;

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

TenantPort port_a1() {
  return {.account = "111111111111",
          .host_veth = "bth0123456789ab",
          .ip = ip(10, 88, 0, 2),
          .mac = "02:b7:0a:58:00:02"};
}

}  // namespace

TEST_CASE("microhost MACs carry the address, locally administered", "[firewall-tenant]") {
  CHECK(mac_for_ip(ip(10, 88, 0, 2)) == "02:b7:0a:58:00:02");
  CHECK(mac_for_ip(ip(192, 168, 255, 254)) == "02:b7:c0:a8:ff:fe");
}

TEST_CASE("tenant ensure script: published mark, bridge table, chains, forward's own rules",
          "[firewall-tenant]") {
  CHECK(build_tenant_ensure_script(test_config()) ==
        "add chain ip berth_t published { type filter hook prerouting priority -99; policy "
        "accept; }\n"
        "flush chain ip berth_t published\n"
        "add rule ip berth_t published ct status dnat meta mark set meta mark or 0x1000000 "
        "comment \"berth:@published\"\n"
        "add table bridge berth_t\n"
        "add chain bridge berth_t prerouting { type filter hook prerouting priority -200; policy "
        "accept; }\n"
        "add chain bridge berth_t forward { type filter hook forward priority 0; policy accept; "
        "}\n"
        "add chain bridge berth_t tenant_src\n"
        "add chain bridge berth_t tenant_dst\n"
        "flush chain bridge berth_t forward\n"
        "add rule bridge berth_t forward meta mark and 0x1000000 != 0 accept comment "
        "\"berth:@published\"\n"
        "add rule bridge berth_t forward jump tenant_src comment \"berth:@tenant-src\"\n"
        "add rule bridge berth_t forward jump tenant_dst comment \"berth:@tenant-dst\"\n");
}

TEST_CASE("tenant teardown script is idempotent", "[firewall-tenant]") {
  CHECK(build_tenant_teardown_script(test_config()) ==
        "add table bridge berth_t\ndelete table bridge berth_t\n");
}

TEST_CASE("tenant port script: anti-spoofing, then isolation by account", "[firewall-tenant]") {
  CHECK(build_tenant_port_script(test_config(), "task-1", port_a1(), {}, {}) ==
        "add chain bridge berth_t acct_111111111111\n"
        "add rule bridge berth_t prerouting iifname \"bth0123456789ab\" ether saddr != "
        "02:b7:0a:58:00:02 drop comment \"berth:task-1\"\n"
        "add rule bridge berth_t prerouting iifname \"bth0123456789ab\" ether type != { ip, arp } "
        "drop comment \"berth:task-1\"\n"
        "add rule bridge berth_t prerouting iifname \"bth0123456789ab\" ip saddr != 10.88.0.2 "
        "drop comment \"berth:task-1\"\n"
        "add rule bridge berth_t prerouting iifname \"bth0123456789ab\" arp saddr ether != "
        "02:b7:0a:58:00:02 drop comment \"berth:task-1\"\n"
        "add rule bridge berth_t prerouting iifname \"bth0123456789ab\" arp saddr ip != 10.88.0.2 "
        "drop comment \"berth:task-1\"\n"
        "add rule bridge berth_t tenant_src iifname \"bth0123456789ab\" jump acct_111111111111 "
        "comment \"berth:task-1\"\n"
        "add rule bridge berth_t tenant_src iifname \"bth0123456789ab\" drop comment "
        "\"berth:task-1\"\n"
        "add rule bridge berth_t tenant_dst oifname \"bth0123456789ab\" drop comment "
        "\"berth:task-1\"\n"
        "add rule bridge berth_t acct_111111111111 oifname \"bth0123456789ab\" accept comment "
        "\"berth:task-1\"\n");
}

TEST_CASE("re-registering a tenant port replaces its rules in the same transaction",
          "[firewall-tenant]") {
  std::string s = build_tenant_port_script(test_config(), "task-1", port_a1(),
                                           {{"prerouting", 7}, {"acct_222222222222", 12}},
                                           {"acct_222222222222"});
  CHECK(
      s.starts_with("delete rule bridge berth_t prerouting handle 7\n"
                    "delete rule bridge berth_t acct_222222222222 handle 12\n"
                    "delete chain bridge berth_t acct_222222222222\n"
                    "add chain bridge berth_t acct_111111111111\n"));
}

TEST_CASE("tenant delete script: rules first, then emptied chains", "[firewall-tenant]") {
  CHECK(build_tenant_delete_script(test_config(), {{"tenant_src", 3}, {"acct_1", 9}}, {"acct_1"}) ==
        "delete rule bridge berth_t tenant_src handle 3\n"
        "delete rule bridge berth_t acct_1 handle 9\n"
        "delete chain bridge berth_t acct_1\n");
  CHECK(build_tenant_delete_script(test_config(), {}, {}).empty());
}

TEST_CASE("account chains are named after the account", "[firewall-tenant]") {
  CHECK(account_chain("123456789012") == "acct_123456789012");
}

TEST_CASE("tenant ports are checked before they reach a script", "[firewall-tenant]") {
  CHECK(validate_tenant_port(port_a1()));
  auto with = [](auto change) {
    TenantPort p = port_a1();
    change(p);
    auto r = validate_tenant_port(p);
    REQUIRE_FALSE(r);
    return r.error().message;
  };
  CHECK(with([](TenantPort& p) { p.account = ""; }) ==
        "invalid account \"\": 1-32 letters, digits and _");
  CHECK(with([](TenantPort& p) { p.account = "a\" drop"; }) ==
        "invalid account \"a\" drop\": 1-32 letters, digits and _");
  CHECK(
      with([](TenantPort& p) { p.account = std::string(33, '1'); }).starts_with("invalid account"));
  CHECK(with([](TenantPort& p) { p.host_veth = "x\" accept"; }) ==
        "invalid veth name \"x\" accept\": 1-15 letters, digits and _.-");
  CHECK(with([](TenantPort& p) { p.host_veth = "0123456789abcdef"; }).starts_with("invalid veth"));
  CHECK(with([](TenantPort& p) { p.ip = 0; }) == "veth bth0123456789ab: no address");
  CHECK(with([](TenantPort& p) { p.mac = "02:B7:0a:58:00:02"; }) ==
        "veth bth0123456789ab: invalid MAC \"02:B7:0a:58:00:02\": want a unicast address like "
        "02:b7:0a:58:00:02");
  CHECK(with([](TenantPort& p) { p.mac = "03:b7:0a:58:00:02"; }).find("invalid MAC") !=
        std::string::npos);  // multicast
  CHECK(with([](TenantPort& p) { p.mac = "02:b7:0a:58:00"; }).find("invalid MAC") !=
        std::string::npos);
  CHECK(with([](TenantPort& p) { p.mac = "02-b7-0a-58-00-02"; }).find("invalid MAC") !=
        std::string::npos);
}

TEST_CASE("a published mark of 0 is refused", "[firewall-tenant]") {
  FirewallConfig cfg = test_config();
  cfg.published_mark = 0;
  auto r = validate_config(cfg);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "invalid published_mark 0: want the packet mark bit(s) to use");
}

TEST_CASE("Firewall checks tenant ports before touching nftables", "[firewall-tenant]") {
  Firewall fw(test_config());
  TenantPort bad = port_a1();
  bad.account = "no-dash";
  auto r = fw.add_tenant_port("task-1", bad);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "invalid account \"no-dash\": 1-32 letters, digits and _");
  auto o = fw.add_tenant_port("@own", port_a1());
  REQUIRE_FALSE(o);
  CHECK(o.error().message.starts_with("invalid owner \"@own\""));
  auto rm = fw.remove_tenant_port("bad owner");
  REQUIRE_FALSE(rm);
  CHECK(rm.error().message.starts_with("invalid owner \"bad owner\""));
}

TEST_CASE("chain names are read from a listing", "[firewall-tenant][nft]") {
  auto names = nft::parse_chain_names(R"({"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "bridge", "name": "berth_t", "handle": 84}},
{"chain": {"family": "bridge", "table": "berth_t", "name": "prerouting", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -200, "policy": "accept"}},
{"chain": {"family": "bridge", "table": "berth_t", "name": "acct_111111111111", "handle": 5}},
{"rule": {"family": "bridge", "table": "berth_t", "chain": "acct_111111111111", "handle": 17, "comment": "berth:t1", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "vx1"}}, {"accept": null}]}}
]})");
  REQUIRE(names);
  CHECK(*names == std::vector<std::string>{"prerouting", "acct_111111111111"});
  CHECK_FALSE(nft::parse_chain_names("{"));
}
