// Task networking without the kernel: subnets, the persistent IPAM, link
// names, /etc/hosts and /etc/resolv.conf, and the errors a bad config gets.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "netns/network.h"
#include "temp_dir.h"

using namespace berth::netns;
using berth::test::TempDir;

namespace {

Ipv4Net net(const std::string& cidr) {
  auto n = Ipv4Net::parse(cidr);
  REQUIRE(n);
  return *n;
}

uint32_t ip(const std::string& s) {
  auto a = parse_ipv4(s);
  REQUIRE(a);
  return *a;
}

size_t files_in(const std::string& dir) {
  std::error_code ec;
  auto it = std::filesystem::directory_iterator(dir, ec);
  return ec ? 0 : static_cast<size_t>(std::distance(it, {}));
}

}  // namespace

TEST_CASE("Ipv4Net parses and prints CIDR subnets", "[network]") {
  Ipv4Net n = net("10.88.0.0/16");
  CHECK(n.addr == 0x0a580000u);
  CHECK(n.prefix == 16);
  CHECK(n.str() == "10.88.0.0/16");
  CHECK(n.mask() == 0xffff0000u);
  CHECK(ipv4_str(n.gateway()) == "10.88.0.1");
  CHECK(ipv4_str(n.broadcast()) == "10.88.255.255");
  CHECK(n.contains(ip("10.88.3.4")));
  CHECK_FALSE(n.contains(ip("10.89.0.1")));
  CHECK(net("0.0.0.0/0").mask() == 0);
  CHECK(net("192.168.1.4/30").str() == "192.168.1.4/30");
  CHECK(ipv4_str(0xc0a80102u) == "192.168.1.2");
}

TEST_CASE("Ipv4Net rejects malformed subnets with the reason", "[network]") {
  auto text = [](const std::string& cidr) {
    auto r = Ipv4Net::parse(cidr);
    REQUIRE_FALSE(r);
    return r.error().str();
  };
  CHECK(text("10.88.0.1/16") ==
        "ipam: subnet \"10.88.0.1/16\" has host bits set (the network is 10.88.0.0/16)");
  CHECK(text("10.88.0.0") == "ipam: subnet \"10.88.0.0\" has no prefix length (like 10.88.0.0/16)");
  CHECK(text("10.88.0.0/33") == "ipam: subnet \"10.88.0.0/33\": prefix length must be 0-32");
  CHECK(text("10.88.0.0/") == "ipam: subnet \"10.88.0.0/\": prefix length must be 0-32");
  CHECK(text("10.88.0.0/1x") == "ipam: subnet \"10.88.0.0/1x\": prefix length must be 0-32");
  CHECK(text("10.88.0/16") == "ipam: subnet \"10.88.0/16\": not an IPv4 address");
  CHECK(text("a.b.c.d/8") == "ipam: subnet \"a.b.c.d/8\": not an IPv4 address");
  CHECK_FALSE(parse_ipv4("10.0.0.256"));
  CHECK_FALSE(parse_ipv4("10.1"));  // inet_aton would take it; we do not
}

TEST_CASE("Ipam hands out the lowest free address and reuses released ones", "[network]") {
  TempDir dir;
  Ipam ipam(dir / "ipam", net("10.1.2.0/29"));  // .2 to .6: .1 is the gateway
  std::vector<std::string> got;
  for (int i = 0; i < 5; ++i) {
    auto a = ipam.allocate("t" + std::to_string(i));
    REQUIRE(a);
    got.push_back(ipv4_str(*a));
  }
  CHECK(got ==
        std::vector<std::string>{"10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"});

  auto full = ipam.allocate("t5");
  REQUIRE_FALSE(full);
  CHECK(full.error().str() == "ipam: no free address in 10.1.2.0/29");

  REQUIRE(ipam.release(ip("10.1.2.3")));
  auto again = ipam.allocate("t6");
  REQUIRE(again);
  CHECK(ipv4_str(*again) == "10.1.2.3");
}

TEST_CASE("Ipam on a /30 has one address, then a clear error", "[network]") {
  TempDir dir;
  Ipam ipam(dir / "ipam", net("10.9.9.0/30"));
  auto a = ipam.allocate("only");
  REQUIRE(a);
  CHECK(ipv4_str(*a) == "10.9.9.2");
  auto b = ipam.allocate("second");
  REQUIRE_FALSE(b);
  CHECK(b.error().str() == "ipam: no free address in 10.9.9.0/30");
  CHECK(files_in(dir / "ipam") == 1);  // the failed attempt left no file
}

TEST_CASE("Ipam state persists across Ipam objects on the same dir", "[network]") {
  TempDir dir;
  {
    Ipam first(dir / "ipam", net("10.1.0.0/24"));
    REQUIRE(first.allocate("a"));
    REQUIRE(first.allocate("b"));
  }
  Ipam restarted(dir / "ipam", net("10.1.0.0/24"));
  auto all = restarted.allocations();
  REQUIRE(all);
  std::vector<std::pair<std::string, uint32_t>> want = {{"a", ip("10.1.0.2")},
                                                        {"b", ip("10.1.0.3")}};
  CHECK(*all == want);
  auto c = restarted.allocate("c");
  REQUIRE(c);
  CHECK(ipv4_str(*c) == "10.1.0.4");
}

TEST_CASE("Ipam releases by owner, and never someone else's address", "[network]") {
  TempDir dir;
  Ipam ipam(dir / "ipam", net("10.1.0.0/24"));
  auto a = ipam.allocate("a");
  auto b = ipam.allocate("b");
  REQUIRE(a);
  REQUIRE(b);
  // A stale release naming the wrong owner leaves the address alone.
  REQUIRE(ipam.release(*a, "b"));
  CHECK(ipam.allocations()->size() == 2);
  REQUIRE(ipam.release(*a, "a"));
  REQUIRE(ipam.release(*a, "a"));  // twice is fine
  REQUIRE(ipam.release_owner("b"));
  CHECK(ipam.allocations()->empty());
}

TEST_CASE("Ipam rejects owners that cannot be stored", "[network]") {
  TempDir dir;
  Ipam ipam(dir / "ipam", net("10.1.0.0/24"));
  CHECK(ipam.allocate("").error().str() == "ipam: invalid owner \"\"");
  CHECK_FALSE(ipam.allocate("a/b"));
  CHECK_FALSE(ipam.allocate("a\nb"));
}

TEST_CASE("Ipam gives concurrent allocations distinct addresses", "[network]") {
  TempDir dir;
  constexpr int kThreads = 8, kEach = 20;
  std::vector<std::vector<uint32_t>> got(kThreads);
  std::vector<std::string> errors(kThreads);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        // One Ipam per thread, as separate daemons would have.
        Ipam ipam(dir / "ipam", Ipv4Net{.addr = 0x0a010000u, .prefix = 24});
        for (int i = 0; i < kEach; ++i) {
          auto a = ipam.allocate("t" + std::to_string(t) + "-" + std::to_string(i));
          if (!a) {
            errors[t] = a.error().str();
            return;
          }
          got[t].push_back(*a);
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  std::set<uint32_t> all;
  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t << ": " << errors[t]);
    CHECK(errors[t].empty());
    all.insert(got[t].begin(), got[t].end());
  }
  CHECK(all.size() == kThreads * kEach);
  CHECK(*all.begin() == 0x0a010002u);
  CHECK(*all.rbegin() == 0x0a010002u + kThreads * kEach - 1);  // no holes either
  CHECK(files_in(dir / "ipam") == kThreads * kEach);
}

TEST_CASE("network modes parse by their ECS names", "[network]") {
  CHECK(parse_network_mode("awsvpc") == NetworkMode::awsvpc);
  CHECK(parse_network_mode("bridge") == NetworkMode::bridge);
  CHECK(parse_network_mode("host") == NetworkMode::host);
  CHECK(parse_network_mode("none") == NetworkMode::none);
  auto bad = parse_network_mode("nat");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().str() ==
        "network: unknown network mode \"nat\" (awsvpc, bridge, host or none)");
}

TEST_CASE("host-side veth names are 15 chars, stable, and distinct per id", "[network]") {
  Network a(NetworkConfig{.link_prefix = "bth"});
  std::string n1 = a.veth_name("task-1");
  CHECK(n1.size() == 15);
  CHECK(n1.starts_with("bth"));
  CHECK(n1 == Network(NetworkConfig{.link_prefix = "bth"}).veth_name("task-1"));
  CHECK(n1 != a.veth_name("task-2"));
  CHECK(Network(NetworkConfig{.link_prefix = "v1234567g"}).veth_name("x").size() == 15);
}

TEST_CASE("a bad network config is reported before anything is touched", "[network]") {
  TempDir dir;
  NetworkConfig cfg{.run_dir = dir / "run", .state_dir = dir / "state"};
  auto text = [&](NetworkConfig c) {
    auto r = Network(std::move(c)).create_microhost("t1", NetworkMode::awsvpc);
    REQUIRE_FALSE(r);
    return r.error().str();
  };
  NetworkConfig c = cfg;
  c.bridge = "a-very-long-bridge-name";
  CHECK(text(c) == "network: bridge name \"a-very-long-bridge-name\" must be 1-15 chars");
  c = cfg;
  c.link_prefix = "toolongprefix";
  CHECK(text(c) == "network: link prefix \"toolongprefix\" must be 1-9 chars");
  c = cfg;
  c.subnet = "10.0.0.0/31";
  CHECK(text(c) == "network: subnet 10.0.0.0/31 has no room for a gateway and a host");
  c = cfg;
  c.subnet = "10.0.0.1/24";
  CHECK(text(c) == "ipam: subnet \"10.0.0.1/24\" has host bits set (the network is 10.0.0.0/24)");
  c = cfg;
  c.mtu = 20;
  CHECK(text(c) == "network: mtu 20 out of range (68-65535)");
  CHECK(Network(cfg).create_microhost("../x", NetworkMode::awsvpc).error().str() ==
        "network: invalid microhost id \"../x\" (1-200 of [A-Za-z0-9_.-])");
  CHECK_FALSE(Network(cfg).create_microhost("", NetworkMode::none));
  CHECK(files_in(dir.path()) == 0);
}

TEST_CASE("host mode needs no namespace and nothing to release", "[network]") {
  TempDir dir;
  Network n(NetworkConfig{.run_dir = dir / "run", .state_dir = dir / "state"});
  auto mh = n.create_microhost("h1", NetworkMode::host);
  REQUIRE(mh);
  CHECK(mh->netns_path.empty());
  CHECK(mh->ip == 0);
  CHECK(mh->host_veth.empty());
  CHECK(n.release_microhost(*mh));
  CHECK(files_in(dir.path()) == 0);
}

TEST_CASE("hosts file maps the task's hostname to its address", "[network]") {
  Network n(NetworkConfig{});
  Microhost mh{.id = "t1", .ip = 0x0a580002u};
  std::string hosts = n.hosts_file(mh, "web");
  CHECK(hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"));
  CHECK(hosts.ends_with("ff02::2\tip6-allrouters\n10.88.0.2\tweb\n"));
  // No address of its own (host, none): the hostname still resolves locally.
  CHECK(n.hosts_file(Microhost{.id = "t2"}, "db").ends_with("\n127.0.1.1\tdb\n"));
  CHECK(n.hosts_file(mh, "").ends_with("ff02::2\tip6-allrouters\n"));
}

TEST_CASE("resolv.conf comes from the config's resolvers", "[network]") {
  Network n(NetworkConfig{.resolvers = {"192.0.2.53", "2001:db8::53"}});
  auto r = n.resolv_conf();
  REQUIRE(r);
  CHECK(*r == "nameserver 192.0.2.53\nnameserver 2001:db8::53\n");
  auto bad = Network(NetworkConfig{.resolvers = {"dns.example"}}).resolv_conf();
  REQUIRE_FALSE(bad);
  CHECK(bad.error().str() == "network: resolver \"dns.example\" is not an IP address");
}

TEST_CASE("resolv.conf copies the host's without loopback nameservers", "[network]") {
  TempDir dir;
  std::ofstream(dir / "resolv.conf") << "# host\nsearch example.com\nnameserver 127.0.0.53\n"
                                        "nameserver 192.0.2.1\noptions edns0\nnameserver ::1\n";
  auto r = Network(NetworkConfig{.host_resolv_conf = dir / "resolv.conf"}).resolv_conf();
  REQUIRE(r);
  CHECK(*r == "# host\nsearch example.com\nnameserver 192.0.2.1\noptions edns0\n");

  std::ofstream(dir / "stub.conf") << "nameserver 127.0.0.53\nsearch lan\n";
  auto stub = Network(NetworkConfig{.host_resolv_conf = dir / "stub.conf"}).resolv_conf();
  REQUIRE_FALSE(stub);
  CHECK(stub.error().str() == "network: " + dir / "stub.conf" +
                                  " has no nameserver a task can reach (only loopback ones: "
                                  "127.0.0.53); set resolvers in the network config");

  auto missing = Network(NetworkConfig{.host_resolv_conf = dir / "none.conf"}).resolv_conf();
  REQUIRE_FALSE(missing);
  CHECK(missing.error().str() == "fs: open " + dir / "none.conf" + ": No such file or directory");
}
