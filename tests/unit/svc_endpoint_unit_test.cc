// The pure pieces of service endpoints (issue 13): the nft scripts of a
// service's VIP and listener and of the per-account address sets, reading
// set elements back, the endpoint checks and JSON, the hosts section, the
// in-place rewrite, and the IPAM's exact reservation. The privileged side
// is tests/integration/svc_endpoint_test.cc.
#include <sys/stat.h>

#include <string>

#include <catch2/catch.hpp>

#include "common/fs.h"
#include "controlplane/agent/service_endpoint.h"
#include "netns/firewall.h"
#include "netns/network.h"
#include "netns/nft.h"
#include "temp_dir.h"

using namespace berth::netns;
using namespace berth::cp;
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

ServiceRules web_rules() {
  ServiceRules r;
  r.account = "111111111111";
  r.vip = ip(10, 88, 0, 9);
  r.vip_port = 80;
  r.listener_port = 8080;
  r.backends = {{ip(10, 88, 0, 2), 80}, {ip(10, 88, 0, 3), 81}};
  return r;
}

ServiceEndpoint web_endpoint() {
  ServiceEndpoint ep;
  ep.id = "svc-0123456789abcdef";
  ep.account = "111111111111";
  ep.name = "web.default.berth";
  ep.container_port = 80;
  ep.listener_port = 8080;
  ep.backends = {{"10.88.0.2", 80}, {"10.88.0.3", 81}};
  return ep;
}

Ipv4Net subnet() {
  return *Ipv4Net::parse("10.88.0.0/16");
}

std::string invalid(ServiceEndpoint ep) {
  auto r = validate_service_endpoint(ep, subnet());
  return r ? "ok" : r.error().message;
}

}  // namespace

TEST_CASE("service chains: VIP filter before NAT, VIP NAT before the port mappings", "[svc-net]") {
  CHECK(build_service_ensure_script(test_config()) ==
        "add chain ip berth_t vip_filter { type filter hook prerouting priority -150; policy "
        "accept; }\n"
        "add chain ip berth_t vip_nat { type nat hook prerouting priority -101; policy accept; "
        "}\n"
        "add chain ip berth_t vip_local { type filter hook input priority 0; policy accept; }\n"
        "add chain ip berth_t vip_host { type filter hook output priority 0; policy accept; }\n");
}

TEST_CASE("service script: VIP for the account's set only, listener balanced, one transaction",
          "[svc-net]") {
  CHECK(build_service_script(test_config(), "svc-1", web_rules(), {{"vip_nat", 4}}) ==
        "delete rule ip berth_t vip_nat handle 4\n"
        "add set ip berth_t acct_111111111111 { type ipv4_addr; }\n"
        "add rule ip berth_t vip_filter ip daddr 10.88.0.9 ip saddr @acct_111111111111 tcp dport "
        "80 accept comment \"berth:svc-1\"\n"
        "add rule ip berth_t vip_filter ip daddr 10.88.0.9 drop comment \"berth:svc-1\"\n"
        "add rule ip berth_t vip_nat ip daddr 10.88.0.9 tcp dport 80 dnat ip to numgen random "
        "mod 2 map { 0 : 10.88.0.2 . 80, 1 : 10.88.0.3 . 81 } comment \"berth:svc-1\"\n"
        "add rule ip berth_t vip_local ip daddr 10.88.0.9 meta l4proto tcp reject with tcp reset "
        "comment \"berth:svc-1\"\n"
        "add rule ip berth_t vip_local ip daddr 10.88.0.9 reject comment \"berth:svc-1\"\n"
        "add rule ip berth_t vip_host ip daddr 10.88.0.9 drop comment \"berth:svc-1\"\n"
        "add rule ip berth_t prerouting fib daddr type local tcp dport 8080 dnat ip to numgen "
        "random mod 2 map { 0 : 10.88.0.2 . 80, 1 : 10.88.0.3 . 81 } comment \"berth:svc-1\"\n"
        "add rule ip berth_t output fib daddr type local tcp dport 8080 dnat ip to numgen random "
        "mod 2 map { 0 : 10.88.0.2 . 80, 1 : 10.88.0.3 . 81 } comment \"berth:svc-1\"\n");
}

TEST_CASE("service script without backends: VIP and listener stay, refused at once", "[svc-net]") {
  ServiceRules r = web_rules();
  r.backends = {};
  r.protocol = Protocol::udp;
  std::string s = build_service_script(test_config(), "svc-1", r, {});
  CHECK(s.find("dnat") == std::string::npos);
  CHECK(s.find("vip_filter ip daddr 10.88.0.9 ip saddr @acct_111111111111 udp dport 80 accept") !=
        std::string::npos);
  CHECK(s.find("add rule ip berth_t prerouting fib daddr type local udp dport 8080 accept "
               "comment \"berth:svc-1\"\n") != std::string::npos);
  CHECK(s.find("add rule ip berth_t output fib daddr type local udp dport 8080 accept") !=
        std::string::npos);
  CHECK(
      s.find("add rule ip berth_t vip_local fib daddr type local udp dport 8080 reject comment") !=
      std::string::npos);
  // No VIP, no listener: nothing but the deletions.
  ServiceRules none;
  none.account = "111111111111";
  CHECK(build_service_script(test_config(), "svc-1", none, {{"prerouting", 3}}) ==
        "delete rule ip berth_t prerouting handle 3\n");
}

TEST_CASE("service rules are checked before they reach a script", "[svc-net]") {
  ServiceRules r = web_rules();
  CHECK(validate_service_rules(r).has_value());
  r.account = "1\" drop";
  CHECK(validate_service_rules(r).error().message ==
        "invalid account \"1\" drop\": 1-32 letters, digits and _");
  r = web_rules();
  r.vip_port = 0;
  CHECK(validate_service_rules(r).error().message == "service address 10.88.0.9 without a port");
  r = web_rules();
  r.backends.push_back({ip(10, 88, 0, 4), 0});
  CHECK(validate_service_rules(r).error().message == "invalid backend 10.88.0.4:0");
}

TEST_CASE("tenant set script: the port's address in its account's set, owned, stale ones replaced",
          "[svc-net]") {
  TenantPort p{.account = "111111111111",
               .host_veth = "bth0123456789ab",
               .ip = ip(10, 88, 0, 2),
               .mac = "02:b7:0a:58:00:02"};
  CHECK(build_tenant_set_script(
            test_config(), "task-1", p,
            {{"acct_222222222222", "10.88.0.2"}, {"acct_111111111111", "10.88.0.2"}}) ==
        "add set ip berth_t acct_111111111111 { type ipv4_addr; }\n"
        "delete element ip berth_t acct_222222222222 { 10.88.0.2 }\n"
        "add element ip berth_t acct_111111111111 { 10.88.0.2 }\n"
        "delete element ip berth_t acct_111111111111 { 10.88.0.2 }\n"
        "add element ip berth_t acct_111111111111 { 10.88.0.2 comment \"berth:task-1\" }\n");
  CHECK(account_set("111111111111") == "acct_111111111111");
  CHECK(build_set_delete_script(test_config(), {{"acct_1", "10.88.0.5"}}) ==
        "delete element ip berth_t acct_1 { 10.88.0.5 }\n");
  CHECK(build_set_delete_script(test_config(), {}).empty());
}

TEST_CASE("set elements are read back from nft's JSON listing", "[svc-net]") {
  // Captured from `nft -j -a list table ip ...` (nft 1.0.6).
  auto els = nft::parse_set_elements(R"({"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "snettest", "handle": 989}},
{"set": {"family": "ip", "name": "acct_1", "table": "snettest", "type": "ipv4_addr", "handle": 1,
  "elem": [{"elem": {"val": "10.0.0.2", "comment": "berth:x"}}, "10.0.0.3"]}},
{"set": {"family": "ip", "name": "empty", "table": "snettest", "type": "ipv4_addr", "handle": 2}}
]})");
  REQUIRE(els.has_value());
  CHECK(*els == std::vector<nft::SetElement>{{"acct_1", "10.0.0.2", "berth:x"},
                                             {"acct_1", "10.0.0.3", ""}});
  CHECK_FALSE(nft::parse_set_elements("not json").has_value());
  CHECK_FALSE(nft::parse_set_elements(R"({"x": 1})").has_value());
}

TEST_CASE("service endpoint checks name the field that is wrong", "[svc-net]") {
  CHECK(invalid(web_endpoint()) == "ok");
  CHECK(valid_service_endpoint_id("svc-0123456789abcdef"));
  CHECK_FALSE(valid_service_endpoint_id("svc-0123456789ABCDEF"));
  CHECK_FALSE(valid_service_endpoint_id("svc-0123456789abcde"));
  auto with = [](auto f) {
    ServiceEndpoint ep = web_endpoint();
    f(ep);
    return invalid(ep);
  };
  CHECK(with([](ServiceEndpoint& e) { e.id = "web"; }) ==
        "web: id \"web\" is not \"svc-\" and 16 lowercase hex digits");
  CHECK(with([](ServiceEndpoint& e) { e.account = "12345"; }) ==
        "svc-0123456789abcdef: account \"12345\" is not 12 digits");
  CHECK(with([](ServiceEndpoint& e) {
          e.name = "Web.default";
        }).starts_with("svc-0123456789abcdef: name \"Web.default\" is not a host name"));
  CHECK(with([](ServiceEndpoint& e) { e.name = "a..b"; }).find("is not a host name") !=
        std::string::npos);
  CHECK(with([](ServiceEndpoint& e) { e.name = ".a.b"; }).find("is not a host name") !=
        std::string::npos);
  CHECK(with([](ServiceEndpoint& e) {
          e.name = std::string(254, 'a');
        }).find("is not a host name") != std::string::npos);
  CHECK(with([](ServiceEndpoint& e) { e.name = "a\nb"; }).find("is not a host name") !=
        std::string::npos);
  CHECK(with([](ServiceEndpoint& e) { e.name = "a."; }).find("is not a host name") !=
        std::string::npos);
  // What the supervisor makes of any ECS service name (lower-cased, '_' to '-').
  CHECK(with([](ServiceEndpoint& e) {
          e.name = "-my-svc--" + std::string(70, 'x') + ".c.berth";
        }) == "ok");
  CHECK(with([](ServiceEndpoint& e) { e.container_port = 0; }) ==
        "svc-0123456789abcdef: containerPort 0: want the VIP's port");
  CHECK(with([](ServiceEndpoint& e) { e.protocol = "sctp"; }) ==
        "svc-0123456789abcdef: protocol \"sctp\" is not tcp or udp");
  CHECK(with([](ServiceEndpoint& e) { e.vip = "10.88.0.1"; }) ==
        "svc-0123456789abcdef: vip 10.88.0.1 is not a host address of the subnet 10.88.0.0/16 "
        "(besides the gateway)");
  CHECK(with([](ServiceEndpoint& e) { e.vip = "10.88.x"; }) ==
        "svc-0123456789abcdef: vip \"10.88.x\" is not an IPv4 address");
  CHECK(with([](ServiceEndpoint& e) { e.vip = "10.88.3.4"; }) == "ok");
  CHECK(with([](ServiceEndpoint& e) { e.backends[1].ip = "192.0.2.1"; }) ==
        "svc-0123456789abcdef: backends[1]: 192.0.2.1 is not a task address of the subnet "
        "10.88.0.0/16");
  CHECK(with([](ServiceEndpoint& e) { e.backends[0].port = 0; }) ==
        "svc-0123456789abcdef: backends[0]: port 0");
  CHECK(with([](ServiceEndpoint& e) { e.backends.clear(); }) == "ok");
}

TEST_CASE("service endpoints round-trip through their JSON file", "[svc-net]") {
  ServiceEndpoint ep = web_endpoint();
  ep.vip = "10.88.0.9";
  ep.protocol = "udp";
  auto back = parse_service_endpoint(service_endpoint_json(ep).dump(), "/x/svc.json");
  REQUIRE(back.has_value());
  CHECK(*back == ep);
  auto bad = parse_service_endpoint(R"({"id": "svc-1", "account": 5})", "/x/svc.json");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().str().find("/x/svc.json") != std::string::npos);
  CHECK(bad.error().str().find("account") != std::string::npos);
  CHECK_FALSE(parse_service_endpoint("{", "/x/svc.json").has_value());
  auto port = parse_service_endpoint(
      R"({"id": "a", "account": "1", "name": "n", "container_port": 70000})", "/x/svc.json");
  CHECK_FALSE(port.has_value());
}

TEST_CASE("service rules of an endpoint", "[svc-net]") {
  auto r = service_rules(web_endpoint(), ip(10, 88, 0, 9));
  REQUIRE(r.has_value());
  CHECK(*r == web_rules());
}

TEST_CASE("hosts section: the account's endpoints, sorted, replacing the old section",
          "[svc-net]") {
  ServiceEndpoint a = web_endpoint();
  a.vip = "10.88.0.9";
  ServiceEndpoint b = a;
  b.id = "svc-0000000000000002";
  b.name = "api.default.berth";
  b.vip = "10.88.0.10";
  ServiceEndpoint other = a;
  other.id = "svc-0000000000000003";
  other.account = "222222222222";
  other.name = "secret.default.berth";
  ServiceEndpoint novip = a;
  novip.id = "svc-0000000000000004";
  novip.name = "pending.default.berth";
  novip.vip = "";
  std::string lines = service_hosts_lines({a, b, other, novip}, "111111111111");
  CHECK(lines == "10.88.0.10\tapi.default.berth\n10.88.0.9\tweb.default.berth\n");
  CHECK(service_hosts_lines({a, b}, "333333333333").empty());

  const std::string base = "127.0.0.1\tlocalhost\n10.88.0.2\thost1\n";
  std::string with = with_service_hosts(base, lines);
  CHECK(with == base + "# berth services\n" + lines);
  // Replaced, not appended to.
  CHECK(with_service_hosts(with, "10.88.0.9\tweb.default.berth\n") ==
        base + "# berth services\n10.88.0.9\tweb.default.berth\n");
  // No lines: no section.
  CHECK(with_service_hosts(with, "") == base);
  CHECK(with_service_hosts(base, "") == base);
  // A file without a final newline, and a file that is only the section.
  CHECK(with_service_hosts("127.0.0.1 localhost", "x\n") ==
        "127.0.0.1 localhost\n# berth services\nx\n");
  CHECK(with_service_hosts("# berth services\nold\n", "new\n") == "# berth services\nnew\n");
}

TEST_CASE("hosts files are rewritten in place: same inode, shorter and longer", "[svc-net]") {
  TempDir dir;
  std::string path = dir / "hosts";
  REQUIRE(berth::fs::write_file_atomic(path, "a fairly long first content\n").has_value());
  struct stat before {};
  REQUIRE(::stat(path.c_str(), &before) == 0);
  REQUIRE(rewrite_in_place(path, "short\n").has_value());
  CHECK(*berth::fs::read_file(path) == "short\n");
  REQUIRE(rewrite_in_place(path, "a much longer content than anything before it\n").has_value());
  CHECK(*berth::fs::read_file(path) == "a much longer content than anything before it\n");
  struct stat after {};
  REQUIRE(::stat(path.c_str(), &after) == 0);
  CHECK(before.st_ino == after.st_ino);
  CHECK_FALSE(rewrite_in_place(dir / "missing", "x").has_value());
}

TEST_CASE("IPAM reserves exactly an address, once per owner", "[svc-net]") {
  TempDir dir;
  Ipam ipam(dir / "ipam", *Ipv4Net::parse("10.89.0.0/24"));
  REQUIRE(ipam.reserve(ip(10, 89, 0, 7), "svc-a").has_value());
  CHECK(ipam.reserve(ip(10, 89, 0, 7), "svc-a").has_value());  // again: fine
  auto taken = ipam.reserve(ip(10, 89, 0, 7), "svc-b");
  REQUIRE_FALSE(taken.has_value());
  CHECK(taken.error().message == "address 10.89.0.7 is held by svc-a, not svc-b");
  CHECK(ipam.reserve(ip(10, 89, 0, 1), "svc-b").error().message ==
        "10.89.0.1 is not a host address of 10.89.0.0/24 (besides the gateway)");
  CHECK_FALSE(ipam.reserve(ip(10, 89, 1, 7), "svc-b").has_value());
  CHECK_FALSE(ipam.reserve(ip(10, 89, 0, 255), "svc-b").has_value());
  // allocate() skips it.
  auto a = ipam.allocate("task-1");
  REQUIRE(a.has_value());
  CHECK(*a == ip(10, 89, 0, 2));
  auto all = ipam.allocations();
  REQUIRE(all.has_value());
  CHECK(all->size() == 2);
}
