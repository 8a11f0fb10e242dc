// Tenant isolation and anti-spoofing on the real kernel (netns/firewall.h,
// "Tenant isolation"): microhosts made by netns::Network on a bridge of this
// test, registered with Firewall::add_tenant_port, and real TCP between them:
//
//      A1, A2: account 111111111111     B1: account 222222222222
//      each serving TCP on port 80 ("pong <name>"); B1's port 80 also
//      published on the host (DNAT)
//
// A1 reaches A2 directly, not B1 (only through B1's host port); a task that
// changes its address or MAC reaches nobody, and cannot steal a neighbour's
// place in the bridge's forwarding table. Bridge, subnet, link prefix,
// table and directories are unique to the process; the fixture tears
// everything down even when a check fails. Traffic stays between the
// namespaces of this test and the host's own addresses.
//
// Test code: exceptions are fine here (Catch2 needs them).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "netns/firewall.h"
#include "netns/network.h"

using namespace berth::netns;
using namespace std::chrono_literals;
using berth::test::exec_command;

namespace {

constexpr const char* kAccountA = "111111111111";
constexpr const char* kAccountB = "222222222222";
constexpr uint16_t kServicePort = 80;

berth::test::CommandResult run(const std::vector<std::string>& argv) {
  return exec_command(argv, {.timeout = std::chrono::seconds(30)});
}

void run_ok(const std::vector<std::string>& argv) {
  auto r = run(argv);
  if (r.exit_code != 0) {
    std::ostringstream os;
    os << r;
    throw std::runtime_error("command failed:\n" + os.str());
  }
}

std::optional<std::string> skip_reason() {
  if (auto why = berth::test::privileged_skip_reason()) return why;
  if (run({"ip", "-V"}).exit_code != 0) return "iproute2 (`ip`) is not installed";
  auto nft = run({"nft", "list", "tables"});
  if (nft.exit_code != 0) return "nftables does not work here: " + nft.err;
  return std::nullopt;
}

// 10.S.T.0/24, S from the pid, moved on while the host routes it already.
std::string pick_subnet() {
  int start = static_cast<int>(::getpid() % 200);
  for (int i = 0; i < 200; ++i) {
    int t = (start + i) % 200;
    std::string net = "10.251." + std::to_string(t) + ".0/24";
    auto r = run({"ip", "-4", "route", "show", "root", net});
    if (r.exit_code == 0 && r.out.empty()) return net;
  }
  throw std::runtime_error("no free 10.251.T.0/24 for the test");
}

sockaddr_in sockaddr_of(uint32_t ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(ip);
  a.sin_port = htons(port);
  return a;
}

// Connects to ip:port within `deadline` and reads the answer: the answer
// text, or "timeout", "refused", "unreachable", "error ...".
std::string try_request(uint32_t ip, uint16_t port, std::chrono::milliseconds deadline) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return std::string("error socket: ") + std::strerror(errno);
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close_s{s};
  sockaddr_in a = sockaddr_of(ip, port);
  int rc = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0 && errno != EINPROGRESS) return std::string("error connect: ") + std::strerror(errno);
  pollfd p{.fd = s, .events = POLLOUT, .revents = 0};
  if (::poll(&p, 1, static_cast<int>(deadline.count())) != 1) return "timeout";
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err == ECONNREFUSED) return "refused";
  if (err == EHOSTUNREACH || err == ENETUNREACH) return "unreachable";
  if (err != 0) return std::string("error connect: ") + std::strerror(err);
  (void)!::write(s, "ping\n", 5);
  p = {.fd = s, .events = POLLIN, .revents = 0};
  if (::poll(&p, 1, 20000) != 1) return "error: no answer";
  char buf[64] = {};
  if (::read(s, buf, sizeof buf - 1) <= 0) return "error: no answer";
  return buf;
}

// A forked child in the network namespace mounted at `netns` running `fn`;
// its result comes back through a pipe. Killed and reaped on destruction.
class InNetns {
 public:
  using Fn = std::function<std::string(int ready_fd)>;
  InNetns(const std::string& netns, const Fn& fn) {
    int out[2], ready[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(ready, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe2 failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::alarm(120);  // a wedged child must not outlive a hung test
      std::string result;
      int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0)
        result = "error setns " + netns + ": " + std::strerror(errno);
      else
        result = fn(ready[1]);
      (void)!::write(out[1], result.data(), result.size());
      ::_exit(0);
    }
    ::close(out[1]);
    ::close(ready[1]);
    out_ = out[0];
    ready_ = ready[0];
  }
  ~InNetns() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
    ::close(ready_);
  }
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;

  bool wait_ready() {
    pollfd p{.fd = ready_, .events = POLLIN, .revents = 0};
    char c = 0;
    return ::poll(&p, 1, 30000) == 1 && ::read(ready_, &c, 1) == 1;
  }
  std::string wait() {
    std::string text;
    for (;;) {
      pollfd p{.fd = out_, .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 60000) != 1) throw std::runtime_error("child timed out: " + text);
      char buf[512];
      ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return text;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int ready_ = -1;
};

// Serves "pong <name>\n" on ip:port to every connection until killed.
std::string serve_forever(uint32_t ip, const std::string& name, int ready) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = sockaddr_of(ip, kServicePort);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 16) != 0)
    return std::string("error listen: ") + std::strerror(errno);
  (void)!::write(ready, "R", 1);
  std::string answer = "pong " + name + "\n";
  for (;;) {
    int c = ::accept4(s, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    char buf[64];
    (void)!::read(c, buf, sizeof buf);
    (void)!::write(c, answer.data(), answer.size());
    ::close(c);
  }
}

// The network, the firewall and the restored sysctl, torn down in reverse.
class Tenants {
 public:
  Tenants() {
    std::string pid = std::to_string(::getpid());
    ncfg_.bridge = "tn" + pid;
    ncfg_.subnet = pick_subnet();
    ncfg_.run_dir = dir_.path() + "/run";
    ncfg_.state_dir = dir_.path() + "/state";
    ncfg_.link_prefix = "w" + pid + "z";  // ends in a non-hex char
    if (ncfg_.link_prefix.size() > 9) throw std::runtime_error("pid too long for a link prefix");
    fcfg_.table = "berth_tn" + pid;
    fcfg_.bridge = ncfg_.bridge;
    fcfg_.subnet = ncfg_.subnet;
    std::ifstream("/proc/sys/net/ipv4/ip_forward") >> ip_forward_;
    net_ = std::make_unique<Network>(ncfg_);
    fw_ = std::make_unique<Firewall>(fcfg_);
  }
  ~Tenants() {
    if (auto r = fw_->teardown(); !r) berth::test::record_leak("firewall: " + r.error().str());
    if (auto r = net_->teardown(); !r) berth::test::record_leak("network: " + r.error().str());
    if (!ip_forward_.empty()) std::ofstream("/proc/sys/net/ipv4/ip_forward") << ip_forward_;
    for (const auto& family : {"ip", "bridge"}) {
      if (run({"nft", "list", "table", family, fcfg_.table}).exit_code == 0) {
        berth::test::record_leak(std::string("nft table left: ") + family + " " + fcfg_.table);
        run({"nft", "delete", "table", family, fcfg_.table});
      }
    }
    for (const auto& e : std::filesystem::directory_iterator("/sys/class/net")) {
      std::string l = e.path().filename().string();
      if (l != ncfg_.bridge && !l.starts_with(ncfg_.link_prefix)) continue;
      berth::test::record_leak("link left: " + l);
      run({"ip", "link", "del", l});
    }
  }
  Tenants(const Tenants&) = delete;
  Tenants& operator=(const Tenants&) = delete;

  Network& net() { return *net_; }
  Firewall& fw() { return *fw_; }
  const FirewallConfig& fcfg() const { return fcfg_; }

  Microhost task(const std::string& id, const std::string& account) {
    auto mh = net_->create_microhost(id, NetworkMode::awsvpc);
    INFO("create_microhost " << id << ": " << (mh ? "" : mh.error().str()));
    REQUIRE(mh);
    auto reg = fw_->add_tenant_port(
        id, {.account = account, .host_veth = mh->host_veth, .ip = mh->ip, .mac = mh->mac});
    INFO("add_tenant_port " << id << ": " << (reg ? "" : reg.error().str()));
    REQUIRE(reg);
    return *mh;
  }

  // The bridge table as `nft list` prints it.
  std::string bridge_rules() { return run({"nft", "list", "table", "bridge", fcfg_.table}).out; }

 private:
  berth::test::TempDir dir_;  // first: destroyed last
  NetworkConfig ncfg_;
  FirewallConfig fcfg_;
  std::string ip_forward_;
  std::unique_ptr<Network> net_;
  std::unique_ptr<Firewall> fw_;
};

// A request from inside `from` (a netns path) with a short deadline: the
// negative cases wait for it, so it is short, and long enough for ARP and
// the handshake on a loaded machine in the positive ones (which are also
// checked, so a too-short deadline fails loudly instead of passing).
std::string request_from(const Microhost& from, uint32_t ip, uint16_t port) {
  InNetns client(from.netns_path, [&](int) { return try_request(ip, port, 3000ms); });
  return client.wait();
}

// `ip ARGS...` inside the microhost's namespace.
void ip_in(const Microhost& mh, std::vector<std::string> args) {
  args.insert(args.begin(), {"nsenter", "--net=" + mh.netns_path, "ip"});
  run_ok(args);
}

// Gives eth0 in `mh` the address `ip` and the MAC `mac` (down and up again,
// with the default route back), as a task with NET_ADMIN could.
void readdress(const Microhost& mh, uint32_t ip, const std::string& mac) {
  ip_in(mh, {"link", "set", "eth0", "down"});
  ip_in(mh, {"link", "set", "eth0", "address", mac});
  ip_in(mh, {"addr", "flush", "dev", "eth0"});
  ip_in(mh, {"addr", "add", ipv4_str(ip) + "/" + std::to_string(mh.prefix), "dev", "eth0"});
  ip_in(mh, {"link", "set", "eth0", "up"});
  ip_in(mh, {"route", "replace", "default", "via", ipv4_str(mh.gateway), "dev", "eth0"});
  ip_in(mh, {"neigh", "flush", "dev", "eth0"});
}

}  // namespace

TEST_CASE("tenants reach their own account's tasks and others' only through published ports",
          "[privileged][netns][firewall][tenant-net]") {
  if (auto why = skip_reason()) BERTH_SKIP(*why);
  Tenants t;
  REQUIRE(t.net().ensure_bridge());
  auto ensured = t.fw().ensure();
  INFO((ensured ? "" : ensured.error().str()));
  REQUIRE(ensured);

  Microhost a1 = t.task("a1", kAccountA);
  Microhost a2 = t.task("a2", kAccountA);
  Microhost b1 = t.task("b1", kAccountB);
  CHECK(a1.mac == mac_for_ip(a1.ip));
  // Microhost::mac is what eth0 really has.
  auto link = run({"nsenter", "--net=" + a1.netns_path, "ip", "-o", "link", "show", "eth0"});
  CHECK(link.out.find("link/ether " + a1.mac + " ") != std::string::npos);
  uint16_t host_port = static_cast<uint16_t>(21000 + ::getpid() % 4000);
  auto maps = t.fw().add_port_mappings("b1", b1.ip, {{Protocol::tcp, host_port, kServicePort}});
  INFO((maps ? "" : maps.error().str()));
  REQUIRE(maps);

  InNetns srv_a1(a1.netns_path, [&](int ready) { return serve_forever(a1.ip, "a1", ready); });
  InNetns srv_a2(a2.netns_path, [&](int ready) { return serve_forever(a2.ip, "a2", ready); });
  InNetns srv_b1(b1.netns_path, [&](int ready) { return serve_forever(b1.ip, "b1", ready); });
  REQUIRE(srv_a1.wait_ready());
  REQUIRE(srv_a2.wait_ready());
  REQUIRE(srv_b1.wait_ready());

  // The host reaches every task (the bridge's own traffic is not filtered):
  // B1 is up, so what fails below fails because of the rules.
  CHECK(try_request(b1.ip, kServicePort, 10000ms) == "pong b1\n");
  CHECK(try_request(a2.ip, kServicePort, 10000ms) == "pong a2\n");

  // Same account: direct.
  CHECK(request_from(a1, a2.ip, kServicePort) == "pong a2\n");
  CHECK(request_from(a2, a1.ip, kServicePort) == "pong a1\n");
  // Other account: not directly, either way (not even ARP gets through:
  // "timeout" or "unreachable", never "refused").
  std::string cross = request_from(a1, b1.ip, kServicePort);
  CHECK((cross == "timeout" || cross == "unreachable"));
  std::string back = request_from(b1, a1.ip, kServicePort);
  CHECK((back == "timeout" || back == "unreachable"));
  // Other account: through the port it published on the host.
  CHECK(request_from(a1, a1.gateway, host_port) == "pong b1\n");

  SECTION("a task that changes its address or MAC reaches nobody") {
    const std::string own_mac = a1.mac;
    uint32_t free_ip = (b1.ip & ~0xffu) | 200;
    // Another address in the subnet, own MAC.
    readdress(a1, free_ip, own_mac);
    std::string r = request_from(a1, a2.ip, kServicePort);
    CHECK((r == "timeout" || r == "unreachable"));
    r = request_from(a1, a1.gateway, host_port);
    CHECK((r == "timeout" || r == "unreachable"));
    // B1's address and MAC: B1 impersonated towards A2 and the host.
    readdress(a1, b1.ip, b1.mac);
    r = request_from(a1, a2.ip, kServicePort);
    CHECK((r == "timeout" || r == "unreachable"));
    r = request_from(a1, a1.gateway, host_port);
    CHECK((r == "timeout" || r == "unreachable"));
    // A2's address and MAC, towards B1 and the host.
    readdress(a1, a2.ip, a2.mac);
    r = request_from(a1, b1.ip, kServicePort);
    CHECK((r == "timeout" || r == "unreachable"));
    r = request_from(a1, a1.gateway, host_port);
    CHECK((r == "timeout" || r == "unreachable"));
    // Own address, another MAC.
    readdress(a1, a1.ip, "02:b7:de:ad:be:ef");
    r = request_from(a1, a2.ip, kServicePort);
    CHECK((r == "timeout" || r == "unreachable"));
    // The dropped frames never taught the bridge that B1 or A2 live on A1's
    // port: the host still reaches both.
    CHECK(try_request(b1.ip, kServicePort, 10000ms) == "pong b1\n");
    CHECK(try_request(a2.ip, kServicePort, 10000ms) == "pong a2\n");
    // Back to its own: reachable again.
    readdress(a1, a1.ip, own_mac);
    CHECK(request_from(a1, a2.ip, kServicePort) == "pong a2\n");
  }

  SECTION("removing, re-registering and gc keep the bridge table tidy") {
    // Re-registering replaces (no duplicate rules).
    REQUIRE(t.fw().add_tenant_port(
        "a2", {.account = kAccountA, .host_veth = a2.host_veth, .ip = a2.ip, .mac = a2.mac}));
    std::string listing = t.bridge_rules();
    size_t a2_rules = 0;
    for (size_t at = listing.find("\"berth:a2\""); at != std::string::npos;
         at = listing.find("\"berth:a2\"", at + 1))
      ++a2_rules;
    CHECK(a2_rules == 9);
    // B1 unregistered: its account chain goes with its last port, and it is
    // no longer isolated from... nobody registered (A1 still cannot reach it:
    // tenant_src drops towards unregistered ports).
    REQUIRE(t.fw().remove_tenant_port("b1"));
    CHECK(t.bridge_rules().find(std::string("acct_") + kAccountB) == std::string::npos);
    std::string r = request_from(a1, b1.ip, kServicePort);
    CHECK((r == "timeout" || r == "unreachable"));
    REQUIRE(t.fw().remove_tenant_port("b1"));  // idempotent
    // A stale owner of a third account: gc removes it and its chain.
    REQUIRE(t.fw().add_tenant_port("ghost", {.account = "333333333333",
                                             .host_veth = "wghost0",
                                             .ip = (a1.ip & ~0xffu) | 250,
                                             .mac = "02:b7:00:00:00:fa"}));
    CHECK(t.bridge_rules().find("acct_333333333333") != std::string::npos);
    auto removed = t.fw().gc({"a1", "a2"});
    REQUIRE(removed);
    CHECK(*removed == std::vector<std::string>{"b1", "ghost"});  // b1: its port mapping
    listing = t.bridge_rules();
    CHECK(listing.find("acct_333333333333") == std::string::npos);
    CHECK(listing.find("berth:ghost") == std::string::npos);
    CHECK(listing.find("berth:a1") != std::string::npos);
    CHECK(request_from(a1, a2.ip, kServicePort) == "pong a2\n");
    // teardown takes both tables.
    REQUIRE(t.fw().teardown());
    CHECK(run({"nft", "list", "table", "bridge", t.fcfg().table}).exit_code != 0);
    CHECK(run({"nft", "list", "table", "ip", t.fcfg().table}).exit_code != 0);
  }
}
