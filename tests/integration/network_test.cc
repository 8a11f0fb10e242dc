// Task networking on the real kernel: bridges, netns mounts, veths, addresses
// and routes, and TCP between namespaces. Every bridge, link prefix, subnet
// and directory is unique to the test process (its pid) and to the test; a
// TestNet guard tears everything down even when an assertion fails. Traffic
// only flows between namespaces the tests create and the test bridge.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "harness.h"
#include "netns/firewall.h"
#include "netns/network.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace berth::netns;
using berth::test::TempDir;

namespace {

// ---- unique names ------------------------------------------------------------

int next_instance() {
  static std::atomic<int> n{0};
  return n++;
}

// A Network with names of its own and a subnet 10.<pid%200+20>.<n>.0/<len>;
// on destruction: teardown, then whatever a failed teardown left (links with
// the prefix, mounts under the dir) is removed and recorded as a leak.
class TestNet {
 public:
  explicit TestNet(unsigned prefix_len = 24, unsigned mtu = 1400) : n_(next_instance()) {
    pid_t pid = ::getpid();
    cfg_.bridge = "bt" + std::to_string(pid) + "x" + std::to_string(n_);
    cfg_.subnet = fmt::format("10.{}.{}.0/{}", pid % 200 + 20, n_ % 256, prefix_len);
    cfg_.mtu = mtu;
    cfg_.run_dir = dir_.path() + "/run";
    cfg_.state_dir = dir_.path() + "/state";
    // Ends in a non-hex letter: no other instance's prefix extends it.
    cfg_.link_prefix = "v" + std::to_string(pid) + static_cast<char>('g' + n_ % 20);
    REQUIRE(cfg_.bridge.size() <= 15);
    REQUIRE(cfg_.link_prefix.size() <= 9);
    net_ = std::make_unique<Network>(cfg_);
  }
  ~TestNet() {
    auto r = net_->teardown();
    if (!r) berth::test::record_leak("network teardown failed: " + r.error().str());
    sweep();
  }
  TestNet(const TestNet&) = delete;
  TestNet& operator=(const TestNet&) = delete;

  Network& net() { return *net_; }
  const NetworkConfig& cfg() const { return cfg_; }
  Ipv4Net subnet() const { return *Ipv4Net::parse(cfg_.subnet); }
  // A fresh Network object on the same config: what a restarted daemon has.
  std::unique_ptr<Network> restart() const { return std::make_unique<Network>(cfg_); }

 private:
  void sweep();

  TempDir dir_;  // first: destroyed last, after the mounts in it are gone
  int n_;
  NetworkConfig cfg_;
  std::unique_ptr<Network> net_;
};

std::vector<std::string> host_links() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator("/sys/class/net"))
    out.push_back(e.path().filename().string());
  return out;
}

std::vector<std::string> mounts_under(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    f >> id >> parent >> dev >> root >> point;
    if (point.rfind(dir + "/", 0) == 0) out.push_back(point);
  }
  return out;
}

// This instance's links: the bridge and every name with the link prefix.
// (Counting all of /sys/class/net would also count the links that other
// test processes on the machine create and remove meanwhile.)
bool is_instance_link(const NetworkConfig& cfg, const std::string& name) {
  return name == cfg.bridge || name.rfind(cfg.link_prefix, 0) == 0;
}

// Routes through this instance's links: IPv4 of the main table, IPv6 of
// every table. Not the bridge's IPv6 routes: those come and go with its
// carrier and the DAD of its link-local address, on the kernel's schedule.
size_t count_routes(const NetworkConfig& cfg) {
  size_t n = 0;
  std::string line;
  std::ifstream v4("/proc/net/route");
  while (std::getline(v4, line)) {
    std::string dev = line.substr(0, line.find_first_of(" \t"));
    if (is_instance_link(cfg, dev)) ++n;
  }
  std::ifstream v6("/proc/net/ipv6_route");
  while (std::getline(v6, line)) {
    std::istringstream f(line);
    std::string field, dev;
    while (f >> field) dev = field;  // the device is the last column
    if (dev != cfg.bridge && is_instance_link(cfg, dev)) ++n;
  }
  return n;
}

// What microhosts add to on the host: links, netns mounts, routes.
struct HostCounts {
  size_t links, mounts, routes;
  bool operator==(const HostCounts&) const = default;
};
std::ostream& operator<<(std::ostream& os, const HostCounts& c) {
  return os << "{links " << c.links << ", mounts " << c.mounts << ", routes " << c.routes << "}";
}
HostCounts host_counts(const NetworkConfig& cfg) {
  auto links = host_links();
  return {static_cast<size_t>(std::count_if(
              links.begin(), links.end(), [&](const auto& l) { return is_instance_link(cfg, l); })),
          mounts_under(cfg.run_dir).size(), count_routes(cfg)};
}

void TestNet::sweep() {
  for (const auto& m : mounts_under(cfg_.run_dir)) {
    berth::test::record_leak("netns mount left: " + m);
    ::umount2(m.c_str(), MNT_DETACH);
  }
  for (const auto& l : host_links()) {
    if (!is_instance_link(cfg_, l)) continue;
    berth::test::record_leak("link left: " + l);
    berth::test::exec_command({"ip", "link", "del", l});
  }
}

size_t ipam_entries(const NetworkConfig& cfg) {
  std::error_code ec;
  auto it = fs::directory_iterator(cfg.state_dir + "/ipam", ec);
  return ec ? 0 : static_cast<size_t>(std::distance(it, {}));
}

Microhost create(Network& net, const std::string& id, NetworkMode mode = NetworkMode::awsvpc) {
  auto mh = net.create_microhost(id, mode);
  INFO("create_microhost " << id << ": " << (mh ? "" : mh.error().str()));
  REQUIRE(mh);
  return *mh;
}

// Releases on scope exit, so a failed assertion leaves nothing behind.
class Held {
 public:
  Held(Network& net, Microhost mh) : net_(net), mh_(std::move(mh)) {}
  ~Held() {
    if (auto r = net_.release_microhost(mh_); !r)
      berth::test::record_leak("release " + mh_.id + ": " + r.error().str());
  }
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  const Microhost& operator*() const { return mh_; }
  const Microhost* operator->() const { return &mh_; }

 private:
  Network& net_;
  Microhost mh_;
};

// ---- running code inside a namespace ------------------------------------------

// A forked child that joins the network namespace mounted at `netns` ("" =
// stays in the host's), runs `fn` and sends back what it returns. `fn` gets
// a fd to report readiness on (a server writes its port there once it
// listens). Killed and reaped on destruction if still running.
class NetnsChild {
 public:
  using Fn = std::function<std::string(int ready_fd)>;
  NetnsChild(const std::string& netns, Fn fn) {
    int out[2], ready[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) run_child(netns, fn, out[1], ready[1]);
    ::close(out[1]);
    ::close(ready[1]);
    out_ = out[0];
    ready_ = ready[0];
  }
  ~NetnsChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
    ::close(ready_);
  }
  NetnsChild(const NetnsChild&) = delete;
  NetnsChild& operator=(const NetnsChild&) = delete;

  // The port the child reported, or 0 if it died first.
  uint16_t wait_ready(std::chrono::seconds timeout = 30s) {
    uint16_t port = 0;
    pollfd p{.fd = ready_, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count() * 1000)) != 1) return 0;
    return ::read(ready_, &port, sizeof port) == sizeof port ? port : 0;
  }

  // The child's output; "error: ..." texts and exit codes other than 0 fail.
  std::string wait(std::chrono::seconds timeout = 30s) {
    std::string text;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{.fd = out_, .events = POLLIN, .revents = 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1)
        throw std::runtime_error("child in netns timed out; output so far: " + text);
      char buf[4096];
      ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("child in netns failed (status " + std::to_string(status) +
                               "): " + text);
    return text;
  }

 private:
  [[noreturn]] static void run_child(const std::string& netns, const Fn& fn, int out, int ready) {
    ::alarm(60);  // a wedged child must not outlive a hung test
    std::string result;
    if (!netns.empty()) {
      int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0)
        result = "error: setns " + netns + ": " + std::strerror(errno);
    }
    if (result.empty()) {
      try {
        result = fn(ready);
      } catch (const std::exception& e) {
        result = std::string("error: ") + e.what();
      }
    }
    (void)!::write(out, result.data(), result.size());
    ::_exit(result.rfind("error:", 0) == 0 ? 1 : 0);
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int ready_ = -1;
};

std::string errno_text(const std::string& what) {
  return "error: " + what + ": " + std::strerror(errno);
}

sockaddr_in sockaddr_of(uint32_t ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(ip);
  a.sin_port = htons(port);
  return a;
}

// In a child: accepts one TCP connection on ip:<any port>, reads a line and
// answers "pong"; returns the peer's address.
std::string serve_once(uint32_t ip, int ready) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = sockaddr_of(ip, 0);
  socklen_t len = sizeof a;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return errno_text("bind " + berth::netns::ipv4_str(ip));
  if (::listen(s, 1) != 0 || ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return errno_text("listen");
  uint16_t port = ntohs(a.sin_port);
  (void)!::write(ready, &port, sizeof port);
  pollfd p{.fd = s, .events = POLLIN, .revents = 0};
  if (::poll(&p, 1, 30000) != 1) return "error: no connection within 30 s";
  sockaddr_in peer{};
  len = sizeof peer;
  int c = ::accept4(s, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
  if (c < 0) return errno_text("accept");
  char buf[64] = {};
  if (::read(c, buf, sizeof buf - 1) <= 0) return errno_text("read");
  (void)!::write(c, "pong\n", 5);
  return berth::netns::ipv4_str(ntohl(peer.sin_addr.s_addr));
}

// serve_once on a fixed port (a task's containerPort).
std::string serve_on(uint32_t ip, uint16_t port, int ready) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = sockaddr_of(ip, port);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 4) != 0)
    return errno_text("listen on " + berth::netns::ipv4_str(ip));
  (void)!::write(ready, &port, sizeof port);
  std::string peers;
  for (int i = 0; i < 2; ++i) {  // the host via 127.0.0.1, then via the gateway
    pollfd p{.fd = s, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 30000) != 1) return "error: no connection within 30 s";
    int c = ::accept4(s, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return errno_text("accept");
    char buf[64] = {};
    if (::read(c, buf, sizeof buf - 1) <= 0) return errno_text("read");
    (void)!::write(c, "pong\n", 5);
    ::close(c);
  }
  return "served 2";
}

// In a child: connects to ip:port, sends "ping", returns the answer.
std::string request(uint32_t ip, uint16_t port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{.tv_sec = 20, .tv_usec = 0};
  ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a = sockaddr_of(ip, port);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return errno_text("connect to " + berth::netns::ipv4_str(ip) + ":" + std::to_string(port));
  (void)!::write(s, "ping\n", 5);
  char buf[64] = {};
  if (::read(s, buf, sizeof buf - 1) <= 0) return errno_text("read the answer");
  return buf;
}

// One TCP exchange: a server in `server_ns` on `server_ip`, a client in
// `client_ns`. Returns {the client's answer, the peer address the server saw}.
std::pair<std::string, std::string> tcp_exchange(const std::string& server_ns, uint32_t server_ip,
                                                 const std::string& client_ns) {
  NetnsChild server(server_ns, [&](int ready) { return serve_once(server_ip, ready); });
  uint16_t port = server.wait_ready();
  if (port == 0) return {"server did not start: " + server.wait(), ""};
  NetnsChild client(client_ns, [&](int) { return request(server_ip, port); });
  std::string answer = client.wait();
  return {answer, server.wait()};
}

// In a child: what the namespace looks like from inside, as key=value lines.
std::string describe_netns(int) {
  std::ostringstream out;
  // /proc/net follows the reader's network namespace (unlike /sys/class/net,
  // which shows the namespace sysfs was mounted in).
  std::ifstream dev("/proc/net/dev");
  std::string line, ifaces;
  while (std::getline(dev, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    ifaces += (ifaces.empty() ? "" : ",") + name;
  }
  out << "ifaces=" << ifaces << "\n";
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  for (const char* name : {"lo", "eth0"}) {
    ifreq r{};
    std::strncpy(r.ifr_name, name, IFNAMSIZ - 1);
    if (::ioctl(s, SIOCGIFFLAGS, &r) != 0) continue;
    out << name << ".up=" << ((r.ifr_flags & IFF_UP) ? 1 : 0) << "\n";
    if (::ioctl(s, SIOCGIFMTU, &r) == 0) out << name << ".mtu=" << r.ifr_mtu << "\n";
    if (::ioctl(s, SIOCGIFADDR, &r) == 0)
      out << name << ".addr="
          << ipv4_str(ntohl(reinterpret_cast<sockaddr_in*>(&r.ifr_addr)->sin_addr.s_addr)) << "\n";
    if (::ioctl(s, SIOCGIFNETMASK, &r) == 0)
      out << name << ".mask="
          << ipv4_str(ntohl(reinterpret_cast<sockaddr_in*>(&r.ifr_netmask)->sin_addr.s_addr))
          << "\n";
  }
  std::ifstream route("/proc/net/route");
  std::getline(route, line);  // header
  int routes = 0;
  while (std::getline(route, line)) {
    std::istringstream f(line);
    std::string iface, dst, gw;
    f >> iface >> dst >> gw;
    ++routes;
    if (dst == "00000000")
      out << "default=" << ipv4_str(ntohl(std::stoul(gw, nullptr, 16))) << " dev " << iface << "\n";
  }
  out << "routes=" << routes << "\n";
  return out.str();
}

std::map<std::string, std::string> inside_view(const std::string& netns) {
  NetnsChild child(netns, describe_netns);
  std::map<std::string, std::string> kv;
  std::istringstream in(child.wait());
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

}  // namespace

TEST_CASE("two microhosts reach each other and the gateway", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  REQUIRE(t.net().ensure_bridge());
  Held a(t.net(), create(t.net(), "a"));
  Held b(t.net(), create(t.net(), "b"));
  CHECK(a->ip != b->ip);

  auto [answer, peer] = tcp_exchange(a->netns_path, a->ip, b->netns_path);
  CHECK(answer == "pong\n");
  CHECK(peer == ipv4_str(b->ip));  // straight over the bridge, no NAT

  auto [answer2, peer2] = tcp_exchange(b->netns_path, b->ip, a->netns_path);
  CHECK(answer2 == "pong\n");
  CHECK(peer2 == ipv4_str(a->ip));

  // The gateway is the bridge's address in the host's namespace.
  auto [answer3, peer3] = tcp_exchange("", a->gateway, b->netns_path);
  CHECK(answer3 == "pong\n");
  CHECK(peer3 == ipv4_str(b->ip));
}

TEST_CASE("creating a microhost leaves the caller in its own namespace", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  REQUIRE(t.net().ensure_bridge());
  std::string before = berth::test::read_link("/proc/thread-self/ns/net");
  Held a(t.net(), create(t.net(), "a"));
  Held n(t.net(), create(t.net(), "n", NetworkMode::none));
  CHECK(berth::test::read_link("/proc/thread-self/ns/net") == before);
  CHECK(berth::test::read_link("/proc/self/ns/net") == before);
  // The microhosts' namespaces are others, each its own.
  std::set<std::string> seen = {before};
  for (const auto* mh : {&*a, &*n}) {
    NetnsChild child(mh->netns_path,
                     [](int) { return berth::test::read_link("/proc/self/ns/net"); });
    seen.insert(child.wait());
  }
  CHECK(seen.size() == 3);
}

TEST_CASE("a microhost has eth0 with its address, MTU and default route, and lo up",
          "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t(24, /*mtu=*/1400);
  REQUIRE(t.net().ensure_bridge());
  Held mh(t.net(), create(t.net(), "m1"));
  CHECK(mh->netns_path == t.cfg().run_dir + "/netns/m1");
  CHECK(mh->prefix == 24);
  CHECK(mh->gateway == t.subnet().gateway());
  CHECK(t.subnet().contains(mh->ip));

  auto kv = inside_view(mh->netns_path);
  INFO("inside: " << [&] {
    std::string s;
    for (const auto& [k, v] : kv) s += k + "=" + v + " ";
    return s;
  }());
  CHECK(kv["ifaces"] == "lo,eth0");
  CHECK(kv["lo.up"] == "1");
  CHECK(kv["eth0.up"] == "1");
  CHECK(kv["eth0.mtu"] == "1400");
  CHECK(kv["eth0.addr"] == ipv4_str(mh->ip));
  CHECK(kv["eth0.mask"] == "255.255.255.0");
  CHECK(kv["default"] == ipv4_str(mh->gateway) + " dev eth0");
  CHECK(kv["routes"] == "2");  // the default and the connected subnet

  // The host side: named by the id, on the bridge, up, same MTU.
  std::string sys = "/sys/class/net/" + mh->host_veth;
  CHECK(mh->host_veth == t.net().veth_name("m1"));
  CHECK(berth::test::read_link(sys + "/master").ends_with("/" + t.cfg().bridge));
  CHECK(berth::test::read_file(sys + "/mtu") == "1400\n");
  CHECK((std::stoul(berth::test::read_file(sys + "/flags"), nullptr, 16) & IFF_UP) != 0);
}

TEST_CASE("ensure_bridge creates the bridge once and leaves it intact", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  REQUIRE(t.net().ensure_bridge());
  std::string sys = "/sys/class/net/" + t.cfg().bridge;
  REQUIRE(fs::exists(sys + "/bridge"));
  std::string ifindex = berth::test::read_file(sys + "/ifindex");
  Held mh(t.net(), create(t.net(), "keep"));

  // A restarted daemon: same bridge, and the running microhost stays on it.
  auto again = t.restart();
  REQUIRE(again->ensure_bridge());
  CHECK(berth::test::read_file(sys + "/ifindex") == ifindex);
  CHECK(berth::test::read_link("/sys/class/net/" + mh->host_veth + "/master")
            .ends_with("/" + t.cfg().bridge));
  auto [answer, peer] = tcp_exchange("", mh->gateway, mh->netns_path);
  CHECK(answer == "pong\n");
}

TEST_CASE("a restarted network object never hands out an address in use", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  REQUIRE(t.net().ensure_bridge());
  Held a(t.net(), create(t.net(), "a"));
  Held b(t.net(), create(t.net(), "b"));

  auto restarted = t.restart();
  Held c(*restarted, create(*restarted, "c"));
  std::set<uint32_t> ips = {a->ip, b->ip, c->ip};
  CHECK(ips.size() == 3);
  auto all = Ipam(t.cfg().state_dir + "/ipam", t.subnet()).allocations();
  REQUIRE(all);
  CHECK(all->size() == 3);

  // The same id twice is refused, and the refused attempt keeps nothing.
  auto dup = restarted->create_microhost("a", NetworkMode::awsvpc);
  REQUIRE_FALSE(dup);
  CHECK(dup.error().str() == "netns: create netns mount point " + a->netns_path + ": File exists");
  CHECK(ipam_entries(t.cfg()) == 3);
}

TEST_CASE("an exhausted subnet is a clear error that leaves nothing behind",
          "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t(/*prefix_len=*/30);
  REQUIRE(t.net().ensure_bridge());
  Held only(t.net(), create(t.net(), "only"));
  CHECK(only->ip == t.subnet().addr + 2);
  HostCounts before = host_counts(t.cfg());

  auto second = t.net().create_microhost("second", NetworkMode::awsvpc);
  REQUIRE_FALSE(second);
  CHECK(second.error().str() == "ipam: no free address in " + t.subnet().str());
  // Links and mounts: the routes of `only`'s veth still change with its DAD.
  HostCounts after = host_counts(t.cfg());
  CHECK(after.links == before.links);
  CHECK(after.mounts == before.mounts);
  CHECK(ipam_entries(t.cfg()) == 1);
  CHECK_FALSE(fs::exists(t.cfg().run_dir + "/netns/second"));
}

TEST_CASE("a create that fails half-way undoes its steps", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  // No ensure_bridge: there is nothing to attach the veth to.
  auto r = t.net().create_microhost("x", NetworkMode::awsvpc);
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "network: bridge " + t.cfg().bridge + " does not exist (ensure_bridge creates it)");
  REQUIRE(t.net().ensure_bridge());
  HostCounts before = host_counts(t.cfg());
  // A link with the veth's name already there: the veth step fails after the
  // address and the netns were taken, and both are given back.
  std::string squatter = t.net().veth_name("x");
  REQUIRE(berth::test::exec_command({"ip", "link", "add", squatter, "type", "bridge"}).exit_code ==
          0);
  auto clash = t.net().create_microhost("x", NetworkMode::awsvpc);
  berth::test::exec_command({"ip", "link", "del", squatter});
  REQUIRE_FALSE(clash);
  CHECK(clash.error().str() == "network: create veth " + squatter + " with peer eth0 in " +
                                   t.cfg().run_dir + "/netns/x: Object exists");
  CHECK(host_counts(t.cfg()) == before);
  CHECK(ipam_entries(t.cfg()) == 0);
  CHECK_FALSE(fs::exists(t.cfg().run_dir + "/netns/x"));
}

TEST_CASE("50 microhosts created concurrently are all released without a trace",
          "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  REQUIRE(t.net().ensure_bridge());
  HostCounts before = host_counts(t.cfg());

  constexpr int kCount = 50;
  std::vector<std::optional<berth::Result<Microhost>>> made(kCount);
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < kCount; ++i)
      threads.emplace_back([&, i] {
        made[i] = t.net().create_microhost("c" + std::to_string(i), NetworkMode::awsvpc);
      });
    for (auto& th : threads) th.join();
  }
  std::vector<std::unique_ptr<Held>> held;
  std::set<uint32_t> ips;
  for (int i = 0; i < kCount; ++i) {
    INFO("microhost c" << i << ": " << (*made[i] ? "" : made[i]->error().str()));
    REQUIRE(*made[i]);
    ips.insert((*made[i])->ip);
    held.push_back(std::make_unique<Held>(t.net(), **made[i]));
  }
  CHECK(ips.size() == kCount);
  HostCounts during = host_counts(t.cfg());
  CHECK(during.links == before.links + kCount);
  CHECK(during.mounts == before.mounts + kCount);
  CHECK(ipam_entries(t.cfg()) == kCount);

  // Concurrent releases too (Held's destructor releases).
  {
    std::vector<std::thread> threads;
    for (auto& h : held) threads.emplace_back([&h] { h.reset(); });
    for (auto& th : threads) th.join();
  }
  CHECK(host_counts(t.cfg()) == before);
  CHECK(ipam_entries(t.cfg()) == 0);
  CHECK(fs::is_empty(t.cfg().run_dir + "/netns"));
}

TEST_CASE("gc removes what crashed microhosts left and keeps the live ones",
          "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  REQUIRE(t.net().ensure_bridge());
  HostCounts before = host_counts(t.cfg());
  {
    // A daemon that "crashes": its Network and Microhost objects are gone,
    // nothing was released.
    auto crashed = t.restart();
    create(*crashed, "lost1");
    create(*crashed, "lost2");
  }
  auto restarted = t.restart();
  Held live(*restarted, create(*restarted, "live"));

  auto removed = restarted->gc({"live"});
  REQUIRE(removed);
  std::set<std::string> got(removed->begin(), removed->end());
  INFO("removed: " << [&] {
    std::string s;
    for (const auto& r : got) s += r + "; ";
    return s;
  }());
  CHECK(got.size() == 6);
  for (const std::string id : {"lost1", "lost2"}) {
    CHECK(got.contains("link " + restarted->veth_name(id)));
    CHECK(got.contains("netns " + t.cfg().run_dir + "/netns/" + id));
    CHECK(std::count_if(got.begin(), got.end(), [&](const std::string& r) {
            return r.starts_with("address ") && r.ends_with(" of " + id);
          }) == 1);
  }
  auto left = Ipam(t.cfg().state_dir + "/ipam", t.subnet()).allocations();
  REQUIRE(left);
  REQUIRE(left->size() == 1);
  CHECK(left->front().first == "live");
  CHECK(mounts_under(t.cfg().run_dir).size() == 1);

  // The live microhost still works, and a gc with no live id takes it too.
  auto [answer, peer] = tcp_exchange("", live->gateway, live->netns_path);
  CHECK(answer == "pong\n");
  auto all = restarted->gc({});
  REQUIRE(all);
  CHECK(all->size() == 3);
  CHECK(host_counts(t.cfg()) == before);
  CHECK(ipam_entries(t.cfg()) == 0);
}

TEST_CASE("none mode: a namespace with only lo, up", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  HostCounts before = host_counts(t.cfg());
  {
    Held mh(t.net(), create(t.net(), "n1", NetworkMode::none));
    CHECK(mh->ip == 0);
    CHECK(mh->host_veth.empty());
    CHECK(mh->netns_path == t.cfg().run_dir + "/netns/n1");
    CHECK(mounts_under(t.cfg().run_dir).size() == 1);
    auto kv = inside_view(mh->netns_path);
    CHECK(kv["ifaces"] == "lo");
    CHECK(kv["lo.up"] == "1");
    CHECK(kv["lo.addr"] == "127.0.0.1");
    CHECK(kv["routes"] == "0");
    // lo works: a server and a client on 127.0.0.1 inside it.
    auto [answer, peer] = tcp_exchange(mh->netns_path, 0x7f000001, mh->netns_path);
    CHECK(answer == "pong\n");
    CHECK(host_counts(t.cfg()).links == before.links);
  }
  CHECK(host_counts(t.cfg()) == before);
}

TEST_CASE("host mode: the task shares the host's namespace", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  HostCounts before = host_counts(t.cfg());
  auto mh = create(t.net(), "h1", NetworkMode::host);
  CHECK(mh.netns_path.empty());
  CHECK(mh.ip == 0);
  CHECK(host_counts(t.cfg()) == before);
  REQUIRE(t.net().release_microhost(mh));
  CHECK(host_counts(t.cfg()) == before);
}

TEST_CASE("a second release of a microhost is harmless", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  REQUIRE(t.net().ensure_bridge());
  HostCounts before = host_counts(t.cfg());
  Microhost mh = create(t.net(), "twice");
  Held other(t.net(), create(t.net(), "other"));
  REQUIRE(t.net().release_microhost(mh));
  auto again = t.net().release_microhost(mh);
  INFO((again ? std::string() : again.error().str()));
  CHECK(again);
  HostCounts after = host_counts(t.cfg());
  CHECK(after.links == before.links + 1);  // `other` only
  CHECK(after.mounts == before.mounts + 1);
  CHECK(ipam_entries(t.cfg()) == 1);
}

TEST_CASE("release refuses a netns path that is not the instance's", "[privileged][netns]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  Microhost forged{.id = "f", .mode = NetworkMode::none, .netns_path = "/proc/1/ns/net"};
  auto r = t.net().release_microhost(forged);
  REQUIRE_FALSE(r);
  CHECK(r.error().str() == "network: microhost f: netns /proc/1/ns/net is not this instance's (" +
                               t.cfg().run_dir + "/netns/f)");
}

// Issue 3 end to end: a microhost made by Network, its containerPort mapped
// by Firewall, reached from the host through the host port.
TEST_CASE("a microhost's mapped port answers on the host's addresses",
          "[privileged][netns][firewall]") {
  REQUIRE_PRIVILEGED();
  TestNet t;
  REQUIRE(t.net().ensure_bridge());
  std::string ip_forward;  // put back afterwards: ensure() turns forwarding on
  std::ifstream("/proc/sys/net/ipv4/ip_forward") >> ip_forward;
  berth::netns::FirewallConfig fc;
  fc.table = "berth_e" + std::to_string(::getpid());
  fc.bridge = t.cfg().bridge;
  fc.subnet = t.cfg().subnet;
  berth::netns::Firewall fw(fc);
  struct Teardown {
    berth::netns::Firewall& fw;
    std::string ip_forward;
    ~Teardown() {
      if (auto r = fw.teardown(); !r) berth::test::record_leak("firewall: " + r.error().str());
      std::ofstream("/proc/sys/net/ipv4/ip_forward") << ip_forward;
    }
  } teardown{fw, ip_forward};
  auto ensured = fw.ensure();
  INFO((ensured ? "" : ensured.error().str()));
  REQUIRE(ensured);

  Held web(t.net(), create(t.net(), "web"));
  auto maps = fw.add_port_mappings("web", web->ip, {{berth::netns::Protocol::tcp, 0, 8080}});
  INFO((maps ? "" : maps.error().str()));
  REQUIRE(maps);
  REQUIRE(maps->size() == 1);
  uint16_t host_port = (*maps)[0].host_port;
  CHECK(host_port != 0);

  NetnsChild server(web->netns_path, [&](int ready) { return serve_on(web->ip, 8080, ready); });
  REQUIRE(server.wait_ready() == 8080);
  NetnsChild local("", [&](int) { return request(0x7f000001, host_port); });
  CHECK(local.wait() == "pong\n");
  NetnsChild via_gateway("", [&](int) { return request(web->gateway, host_port); });
  CHECK(via_gateway.wait() == "pong\n");
  CHECK(server.wait() == "served 2");
  REQUIRE(fw.remove_port_mappings("web"));
}
