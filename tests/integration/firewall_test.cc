// netns/firewall against the real kernel: real nft rules in a table of this
// process (berth_t<pid>), real traffic between network namespaces that the
// test makes itself (each held by a child process; links, addresses and
// routes set with iproute2):
//
//            client netns                 outside netns
//            10.S.1.2 (eth0)              10.S.2.2 (eth0), no default route
//                 |                            |
//            bt<pid>c 10.S.1.1            bt<pid>o 10.S.2.1        <- the host
//                          bridge bt<pid> 10.S.0.1/24
//               /            |            |            \.
//        task 10.S.0.2   b1 10.S.0.11  b2 10.S.0.12  b3 10.S.0.13
//        tcp 8080,udp 53  tcp 80 each, replying with their names
//
// Every server replies "<name> <peer address it sees>". Traffic never leaves
// these namespaces and the host's own addresses. Names carry the pid; the
// fixture removes everything (namespaces, links, table) even when a check
// fails, and puts net.ipv4.ip_forward back as it found it.
//
// Test code: exceptions are fine here (Catch2 needs them).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "harness.h"
#include "netns/firewall.h"

using namespace berth::netns;
using berth::test::exec_command;
using Json = nlohmann::json;

namespace {

// ---- commands and names --------------------------------------------------------

std::string pid_str() {
  return std::to_string(::getpid());
}
std::string table_name() {
  return "berth_t" + pid_str();
}
// Link names: "bt<pid><suffix>", at most 15 characters.
std::string link_name(const std::string& suffix) {
  return "bt" + pid_str() + suffix;
}

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

std::optional<std::string> firewall_skip_reason() {
  if (auto why = berth::test::privileged_skip_reason()) return why;
  if (run({"ip", "-V"}).exit_code != 0) return "iproute2 (`ip`) is not installed";
  auto nft = run({"nft", "list", "tables"});
  if (nft.exit_code != 0) return "nftables does not work here: " + nft.err;
  return std::nullopt;
}

#define REQUIRE_FIREWALL_HOST()              \
  do {                                       \
    if (auto why = firewall_skip_reason()) { \
      BERTH_SKIP(*why);                      \
    }                                        \
  } while (0)

// 10.S.0.0/16 for this process: S from the pid, moved on while the host
// already routes anything inside it.
int pick_second_octet() {
  int start = 100 + static_cast<int>(::getpid() % 150);
  for (int i = 0; i < 150; ++i) {
    int s = 100 + (start - 100 + i) % 150;
    auto r = run({"ip", "-4", "route", "show", "root", "10." + std::to_string(s) + ".0.0/16"});
    if (r.exit_code == 0 && r.out.empty()) return s;
  }
  throw std::runtime_error("no free 10.S.0.0/16 for the test topology");
}

uint32_t parse_ip(const std::string& s) {
  in_addr a{};
  if (::inet_pton(AF_INET, s.c_str(), &a) != 1) throw std::runtime_error("bad address " + s);
  return ntohl(a.s_addr);
}

// Host ports for fixed mappings: below the ephemeral range (so that picks
// for hostPort 0 never meet them) and per pid (so that a concurrent run of
// this suite maps other ports).
uint16_t fixed_port(int n) {
  return static_cast<uint16_t>(20000 + (::getpid() % 2000) * 5 + n);
}

// ---- RAII for what the test creates --------------------------------------------

// A network namespace held by a child process that does nothing else; reached
// through /proc/<pid>/ns/net. (Not `ip netns add`: its /run/netns mount would
// outlive the run.) The namespace goes away with its last process.
class NetnsHolder {
 public:
  NetnsHolder() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      bool ok = ::unshare(CLONE_NEWNET) == 0;
      (void)!::write(p[1], ok ? "R" : "E", 1);
      for (;;) ::pause();
    }
    ::close(p[1]);
    char c = 0;
    ssize_t n = ::read(p[0], &c, 1);
    ::close(p[0]);
    if (n != 1 || c != 'R') {
      reap();
      throw std::runtime_error("cannot create a network namespace");
    }
  }
  ~NetnsHolder() { reap(); }
  NetnsHolder(const NetnsHolder&) = delete;
  NetnsHolder& operator=(const NetnsHolder&) = delete;

  std::string pid() const { return std::to_string(pid_); }
  std::string path() const { return "/proc/" + pid() + "/ns/net"; }
  // `ip ARGS...` run inside the namespace.
  std::vector<std::string> ip(std::vector<std::string> args) const {
    args.insert(args.begin(), {"nsenter", "--net=" + path(), "ip"});
    return args;
  }

 private:
  void reap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  pid_t pid_ = -1;
};

class LinkGuard {
 public:
  LinkGuard(std::string name, const std::vector<std::string>& create) : name_(std::move(name)) {
    run_ok(create);
  }
  ~LinkGuard() {
    if (run({"ip", "link", "show", name_}).exit_code == 0 &&
        run({"ip", "link", "del", name_}).exit_code != 0)
      berth::test::record_leak("link left: " + name_);
  }
  LinkGuard(const LinkGuard&) = delete;
  LinkGuard& operator=(const LinkGuard&) = delete;

 private:
  std::string name_;
};

// Deletes the table however the test ended.
class TableGuard {
 public:
  explicit TableGuard(std::string table) : table_(std::move(table)) {}
  ~TableGuard() {
    for (const char* family : {"ip", "bridge"}) {
      if (run({"nft", "list", "table", family, table_}).exit_code == 0) {
        run({"nft", "delete", "table", family, table_});
      }
    }
  }
  TableGuard(const TableGuard&) = delete;
  TableGuard& operator=(const TableGuard&) = delete;

 private:
  std::string table_;
};

// ensure() turns forwarding on; the host gets back what it had.
class IpForwardGuard {
 public:
  IpForwardGuard() : before_(berth::test::read_file(kPath)) {}
  ~IpForwardGuard() {
    if (berth::test::read_file(kPath) != before_) std::ofstream(kPath) << before_;
  }
  IpForwardGuard(const IpForwardGuard&) = delete;
  IpForwardGuard& operator=(const IpForwardGuard&) = delete;

 private:
  static constexpr const char* kPath = "/proc/sys/net/ipv4/ip_forward";
  std::string before_;
};

// ---- sockets --------------------------------------------------------------------

void enter_netns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(120);
  ::close(fd);
}

std::string peer_of(const sockaddr_in& sa) {
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &sa.sin_addr, buf, sizeof buf);
  return buf;
}

sockaddr_in socket_address(const std::string& ip, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(parse_ip(ip));
  return sa;
}

// In the server child: answers every connection or datagram with
// "<name> <peer address>" until killed.
[[noreturn]] void serve(int ready, Protocol proto, uint16_t port, const std::string& name) {
  bool tcp = proto == Protocol::tcp;
  int fd = ::socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in any = socket_address("0.0.0.0", port);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0 ||
      (tcp && ::listen(fd, 128) != 0)) {
    (void)!::write(ready, "E", 1);
    ::_exit(121);
  }
  (void)!::write(ready, "R", 1);
  ::close(ready);
  for (;;) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    if (tcp) {
      int c = ::accept4(fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string reply = name + " " + peer_of(peer);
      (void)!::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      ::close(c);
    } else {
      char buf[512];
      ssize_t n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &len);
      if (n < 0) continue;
      std::string reply = name + " " + peer_of(peer);
      ::sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
    }
  }
}

// A server in a forked child inside a netns; killed and reaped on scope exit.
class Server {
 public:
  Server(const std::string& netns, Protocol proto, uint16_t port, const std::string& name) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::close(p[0]);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      enter_netns(netns);
      serve(p[1], proto, port, name);
    }
    ::close(p[1]);
    char c = 0;
    ssize_t n = ::read(p[0], &c, 1);
    ::close(p[0]);
    if (n != 1 || c != 'R') throw std::runtime_error("server " + name + " did not start");
  }
  ~Server() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

 private:
  pid_t pid_ = -1;
};

// One request from the current network namespace: the server's reply, or
// "ERR <what>".
std::string request(Protocol proto, const std::string& ip, uint16_t port) {
  bool tcp = proto == Protocol::tcp;
  int fd = ::socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
  if (fd < 0) return "ERR socket";
  timeval tv{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in sa = socket_address(ip, port);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    reply = std::string("ERR connect: ") + std::strerror(errno);
  } else if (tcp) {
    char buf[512];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) reply.append(buf, static_cast<size_t>(n));
    if (n < 0) reply = std::string("ERR read: ") + std::strerror(errno);
  } else {
    // UDP may lose a datagram; a few tries, each with its own deadline.
    reply = "ERR no answer";
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (::send(fd, "ping", 4, 0) != 4) continue;
      pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
      if (::poll(&pfd, 1, 2000) != 1) continue;
      char buf[512];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      reply = n > 0 ? std::string(buf, static_cast<size_t>(n))
                    : std::string("ERR recv: ") + std::strerror(errno);
      break;
    }
  }
  ::close(fd);
  return reply;
}

// `count` requests from inside `netns` (a forked child), one reply each.
std::vector<std::string> requests_from(const std::string& netns, Protocol proto,
                                       const std::string& ip, uint16_t port, int count = 1) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(p[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    enter_netns(netns);
    for (int i = 0; i < count; ++i) {
      std::string line = request(proto, ip, port) + "\n";
      if (::write(p[1], line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        ::_exit(122);
    }
    ::_exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("client child failed with status " + std::to_string(status));
  return berth::test::split_lines(out);
}

std::string request_from(const std::string& netns, Protocol proto, const std::string& ip,
                         uint16_t port) {
  auto replies = requests_from(netns, proto, ip, port, 1);
  return replies.empty() ? "ERR no reply" : replies[0];
}

// "b1 10.S.1.2" -> "b1"
std::string name_of(const std::string& reply) {
  return reply.substr(0, reply.find(' '));
}

// ---- nft, read independently of the library ----------------------------------------

// The comments of every rule of `table` ("" for rules without one); empty if
// the table does not exist.
std::vector<std::string> rule_comments(const std::string& table) {
  auto r = run({"nft", "-j", "list", "table", "ip", table});
  if (r.exit_code != 0) return {};
  std::vector<std::string> comments;
  const Json doc = Json::parse(r.out);  // not in the for: the temporary would die first
  for (const auto& item : doc.at("nftables")) {
    if (item.contains("rule")) comments.push_back(item["rule"].value("comment", ""));
  }
  return comments;
}

size_t count_comment(const std::string& table, const std::string& comment) {
  auto c = rule_comments(table);
  return static_cast<size_t>(std::count(c.begin(), c.end(), comment));
}

// Rules of this process's table, counted in the whole ruleset.
size_t ruleset_rules_of_this_process() {
  auto r = run({"nft", "-j", "list", "ruleset"});
  REQUIRE(r.exit_code == 0);
  size_t n = 0;
  const Json doc = Json::parse(r.out);
  for (const auto& item : doc.at("nftables")) {
    if (item.contains("rule") && item["rule"].value("table", "") == table_name()) ++n;
  }
  return n;
}

// "bt<pid>" and "bt<pid><letter>...", not another pid that starts with ours.
bool is_our_link(const std::string& name) {
  const std::string prefix = link_name("");
  if (!name.starts_with(prefix)) return false;
  return name.size() == prefix.size() ||
         !std::isdigit(static_cast<unsigned char>(name[prefix.size()]));
}

std::vector<std::string> links_of_this_process() {
  std::vector<std::string> found;
  auto r = run({"ip", "-o", "link", "show"});
  for (const auto& line : berth::test::split_lines(r.out)) {
    // "12: bt1234t@if2: <...": the name sits between the first ": " and '@'/':'.
    auto start = line.find(": ");
    if (start == std::string::npos) continue;
    std::string name = line.substr(start + 2);
    name = name.substr(0, name.find_first_of("@:"));
    if (is_our_link(name)) found.push_back(name);
  }
  return found;
}

// ---- the topology ---------------------------------------------------------------------

struct Addresses {
  explicit Addresses(int s) : net("10." + std::to_string(s) + ".") {}
  std::string net;
  std::string subnet() const { return net + "0.0/24"; }
  std::string gateway() const { return net + "0.1"; }
  std::string task() const { return net + "0.2"; }
  std::string backend(int i) const { return net + "0." + std::to_string(10 + i); }
  std::string host_client_side() const { return net + "1.1"; }
  std::string client() const { return net + "1.2"; }
  std::string host_outside_side() const { return net + "2.1"; }
  std::string outside() const { return net + "2.2"; }
};

constexpr uint16_t kTaskTcpPort = 8080;
constexpr uint16_t kTaskUdpPort = 53;
constexpr uint16_t kBackendPort = 80;
constexpr uint16_t kOutsidePort = 7000;

// Namespaces are known by their /proc/<pid>/ns/net path.
class Topology {
 public:
  Topology() : addr(pick_second_octet()) {
    bridge_ = std::make_unique<LinkGuard>(
        link_name(""),
        std::vector<std::string>{"ip", "link", "add", link_name(""), "type", "bridge"});
    run_ok({"ip", "addr", "add", addr.gateway() + "/24", "dev", link_name("")});
    run_ok({"ip", "link", "set", link_name(""), "up"});

    task = add_bridged("t", addr.task());
    for (int i = 1; i <= 3; ++i)
      backends.push_back(add_bridged("b" + std::to_string(i), addr.backend(i)));
    client = add_routed("c", addr.host_client_side(), addr.client(), true);
    outside = add_routed("o", addr.host_outside_side(), addr.outside(), false);

    servers_.push_back(std::make_unique<Server>(task, Protocol::tcp, kTaskTcpPort, "task-tcp"));
    servers_.push_back(std::make_unique<Server>(task, Protocol::udp, kTaskUdpPort, "task-udp"));
    for (int i = 1; i <= 3; ++i) {
      servers_.push_back(std::make_unique<Server>(backends[i - 1], Protocol::tcp, kBackendPort,
                                                  "b" + std::to_string(i)));
    }
    servers_.push_back(std::make_unique<Server>(outside, Protocol::tcp, kOutsidePort, "outside"));
  }

  ~Topology() {
    servers_.clear();
    // Links before namespaces: deleting a veth end takes its peer at once,
    // while a namespace's own links go in the kernel's deferred netns
    // cleanup, after the checks for leftovers may have run.
    links_.clear();
    namespaces_.clear();
    bridge_.reset();
  }

  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  size_t namespace_count() const { return namespaces_.size(); }

  Addresses addr;
  std::string task, client, outside;
  std::vector<std::string> backends;

 private:
  const NetnsHolder& add_netns() {
    namespaces_.push_back(std::make_unique<NetnsHolder>());
    const auto& ns = *namespaces_.back();
    run_ok(ns.ip({"link", "set", "lo", "up"}));
    return ns;
  }

  // A veth whose peer is created as eth0 directly inside the namespace.
  void add_veth(const std::string& host_side, const NetnsHolder& ns) {
    links_.push_back(std::make_unique<LinkGuard>(
        host_side, std::vector<std::string>{"ip", "link", "add", host_side, "type", "veth", "peer",
                                            "name", "eth0", "netns", ns.pid()}));
  }

  void configure_eth0(const NetnsHolder& ns, const std::string& ip, const std::string& via) {
    run_ok(ns.ip({"addr", "add", ip + "/24", "dev", "eth0"}));
    run_ok(ns.ip({"link", "set", "eth0", "up"}));
    if (!via.empty()) run_ok(ns.ip({"route", "add", "default", "via", via}));
  }

  // A namespace on the bridge, like a microhost.
  std::string add_bridged(const std::string& suffix, const std::string& ip) {
    const auto& ns = add_netns();
    add_veth(link_name(suffix), ns);
    run_ok({"ip", "link", "set", link_name(suffix), "master", link_name(""), "up"});
    configure_eth0(ns, ip, addr.gateway());
    return ns.path();
  }

  // A namespace on a point-to-point link of its own with the host.
  std::string add_routed(const std::string& suffix, const std::string& host_ip,
                         const std::string& ip, bool default_route) {
    const auto& ns = add_netns();
    add_veth(link_name(suffix), ns);
    run_ok({"ip", "addr", "add", host_ip + "/24", "dev", link_name(suffix)});
    run_ok({"ip", "link", "set", link_name(suffix), "up"});
    configure_eth0(ns, ip, default_route ? host_ip : "");
    return ns.path();
  }

  std::unique_ptr<LinkGuard> bridge_;
  std::vector<std::unique_ptr<NetnsHolder>> namespaces_;
  std::vector<std::unique_ptr<LinkGuard>> links_;
  std::vector<std::unique_ptr<Server>> servers_;
};

FirewallConfig config_for(const Topology& topo) {
  FirewallConfig cfg;
  cfg.table = table_name();
  cfg.bridge = link_name("");
  cfg.subnet = topo.addr.subnet();
  return cfg;
}

// The topology, a Firewall on it with ensure() done, and cleanup in the
// right order: table, then namespaces and links, then the sysctl.
struct Fixture {
  explicit Fixture(const std::function<void(FirewallConfig&)>& tweak = {})
      : guard(table_name()), fw(make_config(topo, tweak)) {
    auto r = fw.ensure();
    if (!r) throw std::runtime_error("ensure: " + r.error().str());
  }
  ~Fixture() {
    if (auto r = fw.teardown(); !r) berth::test::record_leak("teardown: " + r.error().str());
  }

  static FirewallConfig make_config(const Topology& topo,
                                    const std::function<void(FirewallConfig&)>& tweak) {
    auto cfg = config_for(topo);
    if (tweak) tweak(cfg);
    return cfg;
  }

  IpForwardGuard forward;
  Topology topo;
  TableGuard guard;
  Firewall fw;
};

std::map<std::string, int> tally(const std::vector<std::string>& replies) {
  std::map<std::string, int> by_name;
  for (const auto& r : replies) ++by_name[name_of(r)];
  return by_name;
}

}  // namespace

TEST_CASE("ensure is idempotent and sets the sysctls", "[privileged][firewall]") {
  REQUIRE_FIREWALL_HOST();
  Fixture f;
  CHECK(berth::test::read_file("/proc/sys/net/ipv4/ip_forward") == "1\n");
  CHECK(berth::test::read_file("/proc/sys/net/ipv4/conf/" + link_name("") + "/route_localnet") ==
        "1\n");
  auto before = rule_comments(table_name());
  // The ip table's rules (the published-port mark of tenant isolation among
  // them); the bridge table's are tests/integration/tenant_net_test.cc's.
  CHECK(before == std::vector<std::string>{"berth:@egress", "berth:@hairpin", "berth:@host",
                                           "berth:@published"});
  REQUIRE(f.fw.ensure());
  REQUIRE(f.fw.ensure());
  CHECK(rule_comments(table_name()) == before);
}

TEST_CASE("mapped ports answer from another namespace and from the host",
          "[privileged][firewall]") {
  REQUIRE_FIREWALL_HOST();
  Fixture f;
  const auto& a = f.topo.addr;
  const uint16_t tcp_port = fixed_port(0), udp_port = fixed_port(1);
  auto maps = f.fw.add_port_mappings(
      "task-1", parse_ip(a.task()),
      {{Protocol::tcp, tcp_port, kTaskTcpPort}, {Protocol::udp, udp_port, kTaskUdpPort}});
  REQUIRE(maps);
  CHECK(*maps == std::vector<PortMapping>{{Protocol::tcp, tcp_port, kTaskTcpPort},
                                          {Protocol::udp, udp_port, kTaskUdpPort}});
  CHECK(count_comment(table_name(), "berth:task-1") == 4);

  // From the client namespace, to the host's address on its link: the
  // client's own address reaches the task (no masquerade on the way in).
  CHECK(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), tcp_port) ==
        "task-tcp " + a.client());
  CHECK(request_from(f.topo.client, Protocol::udp, a.host_client_side(), udp_port) ==
        "task-udp " + a.client());

  // From the host itself, over loopback and over one of its addresses: the
  // task sees the bridge's address (it could not answer 127.0.0.1).
  for (const auto& host_ip : {std::string("127.0.0.1"), a.host_client_side()}) {
    INFO("from the host to " << host_ip);
    CHECK(request(Protocol::tcp, host_ip, tcp_port) == "task-tcp " + a.gateway());
    CHECK(request(Protocol::udp, host_ip, udp_port) == "task-udp " + a.gateway());
  }

  // Hairpin: a sibling on the bridge through the host's address.
  CHECK(request_from(f.topo.backends[0], Protocol::tcp, a.host_client_side(), tcp_port) ==
        "task-tcp " + a.gateway());

  // A second owner asking for the same port gets an error naming it; tcp and
  // udp are separate spaces.
  auto clash = f.fw.add_port_mappings("task-2", parse_ip(a.backend(1)),
                                      {{Protocol::tcp, tcp_port, kBackendPort}});
  REQUIRE_FALSE(clash);
  CHECK(clash.error().str() ==
        fmt::format("firewall: add port mappings for owner task-2: tcp host port {} is already "
                    "mapped (owner task-1)",
                    tcp_port));
  auto lb_clash = f.fw.set_load_balancer("svc", Protocol::udp, udp_port,
                                         {{parse_ip(a.backend(1)), kBackendPort}});
  REQUIRE_FALSE(lb_clash);
  CHECK(lb_clash.error().message.find(
            fmt::format("udp host port {} is already mapped", udp_port)) != std::string::npos);

  // Removal: the port is the host's own again (nothing listens: refused).
  REQUIRE(f.fw.remove_port_mappings("task-1"));
  CHECK(count_comment(table_name(), "berth:task-1") == 0);
  CHECK(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), tcp_port) ==
        "ERR connect: Connection refused");
  CHECK(request(Protocol::tcp, "127.0.0.1", tcp_port) == "ERR connect: Connection refused");
  REQUIRE(f.fw.remove_port_mappings("task-1"));  // nothing left to remove: fine
}

TEST_CASE("egress from a task is masqueraded", "[privileged][firewall]") {
  REQUIRE_FIREWALL_HOST();
  Fixture f;
  const auto& a = f.topo.addr;
  // The outside namespace has no route to the task subnet: only the host's
  // address on its link can be answered.
  CHECK(request_from(f.topo.task, Protocol::tcp, a.outside(), kOutsidePort) ==
        "outside " + a.host_outside_side());
}

TEST_CASE("a load-balanced port spreads connections and drops a removed backend",
          "[privileged][firewall]") {
  REQUIRE_FIREWALL_HOST();
  Fixture f;
  const auto& a = f.topo.addr;
  const uint16_t port = fixed_port(2);
  std::vector<Backend> three;
  for (int i = 1; i <= 3; ++i) three.push_back({parse_ip(a.backend(i)), kBackendPort});
  REQUIRE(f.fw.set_load_balancer("svc-1", Protocol::tcp, port, three));
  CHECK(count_comment(table_name(), "berth:svc-1") == 2);

  auto replies = requests_from(f.topo.client, Protocol::tcp, a.host_client_side(), port, 100);
  REQUIRE(replies.size() == 100);
  auto by_name = tally(replies);
  INFO("replies by backend: b1=" << by_name["b1"] << " b2=" << by_name["b2"]
                                 << " b3=" << by_name["b3"]);
  // Random over 3: the chance that one gets none of 100 is 3 * (2/3)^100.
  CHECK(by_name["b1"] > 0);
  CHECK(by_name["b2"] > 0);
  CHECK(by_name["b3"] > 0);
  CHECK(by_name["b1"] + by_name["b2"] + by_name["b3"] == 100);

  // Replaced in one transaction: still two rules, and b3 gets nothing more.
  three.pop_back();
  REQUIRE(f.fw.set_load_balancer("svc-1", Protocol::tcp, port, three));
  CHECK(count_comment(table_name(), "berth:svc-1") == 2);
  replies = requests_from(f.topo.client, Protocol::tcp, a.host_client_side(), port, 30);
  REQUIRE(replies.size() == 30);
  by_name = tally(replies);
  INFO("after removing b3: b1=" << by_name["b1"] << " b2=" << by_name["b2"]
                                << " b3=" << by_name["b3"]);
  CHECK(by_name["b3"] == 0);
  CHECK(by_name["b1"] + by_name["b2"] == 30);

  // From the host too.
  auto from_host = name_of(request(Protocol::tcp, "127.0.0.1", port));
  CHECK((from_host == "b1" || from_host == "b2"));

  // No backends: the balancer is gone.
  REQUIRE(f.fw.set_load_balancer("svc-1", Protocol::tcp, port, {}));
  CHECK(count_comment(table_name(), "berth:svc-1") == 0);
  CHECK(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), port) ==
        "ERR connect: Connection refused");
}

TEST_CASE("hostPort 0 picks a free port in range, skipping bound ones", "[privileged][firewall]") {
  REQUIRE_FIREWALL_HOST();
  // A port the kernel hands out is free; holding it bound makes it the one
  // the firewall must skip, at the bottom of a small range.
  int held = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(held >= 0);
  std::unique_ptr<int, void (*)(int*)> close_held(&held, [](int* fd) { ::close(*fd); });
  sockaddr_in sa = socket_address("0.0.0.0", 0);
  REQUIRE(::bind(held, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(::getsockname(held, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  const uint16_t low = ntohs(sa.sin_port);
  const uint16_t high = static_cast<uint16_t>(std::min(low + 50, 65535));

  Fixture f([&](FirewallConfig& cfg) {
    cfg.ephemeral_low = low;
    cfg.ephemeral_high = high;
  });
  const auto& a = f.topo.addr;
  auto maps =
      f.fw.add_port_mappings("task-1", parse_ip(a.task()),
                             {{Protocol::tcp, 0, kTaskTcpPort}, {Protocol::udp, 0, kTaskUdpPort}});
  REQUIRE(maps);
  REQUIRE(maps->size() == 2);
  const auto tcp_port = (*maps)[0].host_port, udp_port = (*maps)[1].host_port;
  INFO("held " << low << ", picked tcp " << tcp_port << " udp " << udp_port);
  CHECK(tcp_port >= low);
  CHECK(tcp_port <= high);
  CHECK(tcp_port != low);
  CHECK(udp_port >= low);
  CHECK(udp_port <= high);
  CHECK(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), tcp_port) ==
        "task-tcp " + a.client());
  CHECK(request_from(f.topo.client, Protocol::udp, a.host_client_side(), udp_port) ==
        "task-udp " + a.client());

  // Another owner's pick avoids the ports already mapped.
  auto more =
      f.fw.add_port_mappings("task-2", parse_ip(a.backend(1)), {{Protocol::tcp, 0, kBackendPort}});
  REQUIRE(more);
  const auto other = (*more)[0].host_port;
  CHECK(other != tcp_port);
  CHECK(other != low);
  CHECK(name_of(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), other)) == "b1");
}

TEST_CASE("gc removes the rules of dead owners only", "[privileged][firewall]") {
  REQUIRE_FIREWALL_HOST();
  Fixture f;
  const auto& a = f.topo.addr;
  const uint16_t live_port = fixed_port(3), dead_port = fixed_port(4), lb_port = fixed_port(2);
  REQUIRE(f.fw.add_port_mappings("live-1", parse_ip(a.task()),
                                 {{Protocol::tcp, live_port, kTaskTcpPort}}));
  REQUIRE(f.fw.add_port_mappings("dead-1", parse_ip(a.backend(1)),
                                 {{Protocol::tcp, dead_port, kBackendPort}}));
  REQUIRE(f.fw.set_load_balancer("dead-svc", Protocol::tcp, lb_port,
                                 {{parse_ip(a.backend(2)), kBackendPort}}));
  REQUIRE(name_of(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), dead_port)) ==
          "b1");

  auto removed = f.fw.gc({"live-1", "someone-else"});
  REQUIRE(removed);
  CHECK(*removed == std::vector<std::string>{"dead-1", "dead-svc"});
  CHECK(rule_comments(table_name()) == std::vector<std::string>{"berth:live-1", "berth:live-1",
                                                                "berth:@egress", "berth:@hairpin",
                                                                "berth:@host", "berth:@published"});
  CHECK(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), live_port) ==
        "task-tcp " + a.client());
  CHECK(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), dead_port) ==
        "ERR connect: Connection refused");
  CHECK(request_from(f.topo.client, Protocol::tcp, a.host_client_side(), lb_port) ==
        "ERR connect: Connection refused");

  // Nothing dead left: a second pass removes nothing.
  removed = f.fw.gc({"live-1"});
  REQUIRE(removed);
  CHECK(removed->empty());
}

TEST_CASE("teardown leaves no rules or links", "[privileged][firewall]") {
  REQUIRE_FIREWALL_HOST();
  REQUIRE(ruleset_rules_of_this_process() == 0);
  REQUIRE(links_of_this_process().empty());
  {
    Fixture f;
    const auto& a = f.topo.addr;
    REQUIRE(
        f.fw.add_port_mappings("task-1", parse_ip(a.task()), {{Protocol::tcp, 0, kTaskTcpPort}}));
    REQUIRE(f.fw.set_load_balancer("svc-1", Protocol::tcp, fixed_port(2),
                                   {{parse_ip(a.backend(1)), kBackendPort}}));
    // ip: 4 own + 2 mapping + 2 balancer; bridge: 3 own (tenant isolation)
    CHECK(ruleset_rules_of_this_process() == 11);
    CHECK(links_of_this_process().size() == 7);  // bridge + 6 veths
    CHECK(f.topo.namespace_count() == 6);
    REQUIRE(f.fw.teardown());
    CHECK(ruleset_rules_of_this_process() == 0);
    CHECK(run({"nft", "list", "table", "ip", table_name()}).exit_code != 0);
    CHECK(run({"nft", "list", "table", "bridge", table_name()}).exit_code != 0);
    REQUIRE(f.fw.teardown());  // idempotent
  }
  CHECK(ruleset_rules_of_this_process() == 0);
  CHECK(links_of_this_process().empty());
}

// libnftables waits for netlink with select(2); an nft socket on an fd at or
// above FD_SETSIZE made glibc abort the whole process. berthd holds a socket
// and a pidfd per task, so at ~500 tasks every firewall operation aborted
// berthd. The operations of a process that has 2000 fds open must work.
TEST_CASE("firewall operations work in a process holding more than FD_SETSIZE fds",
          "[privileged][firewall]") {
  REQUIRE_FIREWALL_HOST();
  Fixture f;
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child: raise the soft limit if it can, open fds until well past
    // 1024, then map and unmap a port (list, add, delete transactions).
    struct rlimit rl {};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2100) _exit(3);
    for (int i = 0; i < 2000; ++i) {
      if (::open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) _exit(4);
    }
    auto added =
        f.fw.add_port_mappings("fds-owner", parse_ip(f.topo.addr.task()), {{Protocol::tcp, 0, 80}});
    if (!added) _exit(5);
    if (!f.fw.remove_port_mappings("fds-owner")) _exit(6);
    _exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("child status " << status << (WIFSIGNALED(status) ? " (killed by a signal)" : ""));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3) BERTH_SKIP("RLIMIT_NOFILE is below 2100");
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
