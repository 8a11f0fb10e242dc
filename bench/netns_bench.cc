// berth-netns-bench: create and release of a microhost network (netns, veth
// on a bridge, address, default route, lo up), berth's netns library against
// Debian's CNI bridge plugin with host-local IPAM, invoked as a CNI runtime
// invokes it (env + config on stdin), on the same machine in one process.
//
//   berth-netns-bench [--rounds N] [--cni-path DIR]
//
// CNI plugins do not create the namespace (the container runtime does), so
// the CNI side's create is "a netns bind-mounted the way berth does it, then
// ADD" and its release "DEL, then the netns unmounted": the same work as
// berth's create_microhost / release_microhost. ADD and DEL alone are shown
// too. Rounds alternate which side goes first, so a slow phase of the host
// hits both.
//
// Everything it makes (two bridges, netns mounts, IPAM dirs, one temp dir) is
// removed at exit, also after SIGINT/SIGTERM (the round in flight finishes
// first). The CNI plugin with isGateway turns on net.ipv4.ip_forward; the
// previous value is put back if it changed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/fs.h"
#include "netns/netlink.h"
#include "netns/netns_mount.h"
#include "netns/network.h"

namespace {

using namespace berth;
using namespace berth::netns;

constexpr double kTargetCreateMs = 2.0;
constexpr int kWarmup = 5;

std::atomic<bool> g_stop{false};

struct Options {
  int rounds = 200;
  std::string cni_path = "/usr/lib/cni";
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "netns-bench: %s\n", msg.c_str());
  std::exit(1);
}

// A failure once things exist: thrown, so that ~Bench removes them.
[[noreturn]] void fail(const std::string& msg) {
  throw std::runtime_error(msg);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) die("missing value for " + a);
    if (a == "--rounds")
      o.rounds = std::atoi(argv[++i]);
    else if (a == "--cni-path")
      o.cni_path = argv[++i];
    else
      die("unknown argument " + a + " (usage: berth-netns-bench [--rounds N] [--cni-path DIR])");
  }
  if (o.rounds < 1) die("--rounds must be at least 1");
  return o;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least p of the samples <= it.
  size_t rank = static_cast<size_t>(p * static_cast<double>(v.size()) + 0.999999);
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// 10.a.0.0/16 and 10.(a+1).0.0/16 for some a that no route of the host
// already covers.
unsigned pick_second_octet() {
  std::ifstream in("/proc/net/route");
  std::string line, used;
  std::getline(in, line);
  while (std::getline(in, line)) used += line + "\n";
  for (unsigned a = 200 + ::getpid() % 40; a < 254; a += 2) {
    bool clash = false;
    std::istringstream routes(used);
    while (std::getline(routes, line)) {
      std::istringstream f(line);
      std::string dev, dst, gw, flags, refcnt, use, metric, mask;
      f >> dev >> dst >> gw >> flags >> refcnt >> use >> metric >> mask;
      uint32_t d = ntohl(static_cast<uint32_t>(std::stoul(dst, nullptr, 16)));
      uint32_t m = ntohl(static_cast<uint32_t>(std::stoul(mask, nullptr, 16)));
      uint32_t ours = (10u << 24) | (a << 16), ours_mask = 0xfffe0000u;
      if (m != 0 && (d & ours_mask & m) == (ours & ours_mask & m)) clash = true;
    }
    if (!clash) return a;
  }
  fail("no free 10.x.0.0/15 for the benchmark's subnets");
}

// ---- the CNI side ---------------------------------------------------------------

struct Cni {
  std::string plugin_dir, bridge, subnet, data_dir, netns_dir, config;
};

std::string cni_config(const Cni& c) {
  return "{\"cniVersion\":\"1.0.0\",\"name\":\"berth-bench\",\"type\":\"bridge\",\"bridge\":\"" +
         c.bridge +
         "\",\"isGateway\":true,\"ipMasq\":false,\"mtu\":1500,\"ipam\":{\"type\":"
         "\"host-local\",\"ranges\":[[{\"subnet\":\"" +
         c.subnet + "\"}]],\"routes\":[{\"dst\":\"0.0.0.0/0\"}],\"dataDir\":\"" + c.data_dir +
         "\"}}";
}

// Runs the bridge plugin as a CNI runtime does; "" on success, else what
// went wrong with the plugin's output.
std::string try_cni_exec(const Cni& c, const std::string& command, const std::string& id,
                         const std::string& netns, const std::string& out_file) {
  int in[2];
  if (::pipe2(in, O_CLOEXEC) != 0) fail(std::string("pipe: ") + std::strerror(errno));
  std::string plugin = c.plugin_dir + "/bridge";
  std::vector<std::string> env = {"CNI_COMMAND=" + command,   "CNI_CONTAINERID=" + id,
                                  "CNI_NETNS=" + netns,       "CNI_IFNAME=eth0",
                                  "CNI_PATH=" + c.plugin_dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  pid_t pid = ::fork();
  if (pid < 0) fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0 || ::dup2(in[0], 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) ::_exit(126);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    char* argv[] = {plugin.data(), nullptr};
    ::execve(argv[0], argv, envp.data());
    ::_exit(127);
  }
  ::close(in[0]);
  (void)!::write(in[1], c.config.data(), c.config.size());
  ::close(in[1]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  auto out = fs::read_file(out_file);
  return "CNI " + command + " " + id + " failed (status " + std::to_string(status) +
         "): " + (out ? *out : out.error().str());
}

// A benchmark of a failing plugin would mean nothing: its failure ends the run.
void cni_exec(const Cni& c, const std::string& command, const std::string& id,
              const std::string& netns, const std::string& out_file) {
  if (auto err = try_cni_exec(c, command, id, netns, out_file); !err.empty()) fail(err);
}

// ---- rounds -------------------------------------------------------------------

struct Samples {
  std::vector<double> create, release, add, del;
};

void berth_round(Network& net, const std::string& id, Samples* s) {
  auto t0 = std::chrono::steady_clock::now();
  auto mh = net.create_microhost(id, NetworkMode::awsvpc);
  double create = ms_since(t0);
  if (!mh) fail("berth create: " + mh.error().str());
  auto t1 = std::chrono::steady_clock::now();
  auto r = net.release_microhost(*mh);
  double release = ms_since(t1);
  if (!r) fail("berth release: " + r.error().str());
  if (s) {
    s->create.push_back(create);
    s->release.push_back(release);
  }
}

void cni_round(const Cni& c, const std::string& id, const std::string& work, Samples* s) {
  std::string netns = c.netns_dir + "/" + id;
  auto t0 = std::chrono::steady_clock::now();
  auto ns = create_netns(netns);
  if (!ns) fail("netns for CNI: " + ns.error().str());
  auto t_add = std::chrono::steady_clock::now();
  cni_exec(c, "ADD", id, netns, work + "/cni-out");
  double add = ms_since(t_add), create = ms_since(t0);
  ns->fd.reset();  // the mount holds the namespace, as for berth
  ns->route.reset();
  auto t1 = std::chrono::steady_clock::now();
  cni_exec(c, "DEL", id, netns, work + "/cni-out");
  double del = ms_since(t1);
  if (auto r = remove_netns(netns); !r) fail("netns for CNI: " + r.error().str());
  double release = ms_since(t1);
  if (s) {
    s->create.push_back(create);
    s->release.push_back(release);
    s->add.push_back(add);
    s->del.push_back(del);
  }
}

// ---- set-up and clean-up ------------------------------------------------------------

class Bench {
 public:
  // Only what cannot fail after the temp dir exists: ~Bench runs for a
  // constructed Bench only.
  explicit Bench(const Options& o) {
    unsigned a = pick_second_octet();
    char tmpl[] = "/tmp/berth-netns-bench.XXXXXX";
    if (!::mkdtemp(tmpl)) fail(std::string("mkdtemp: ") + std::strerror(errno));
    work_ = tmpl;
    std::string pid = std::to_string(::getpid());
    net_ = std::make_unique<Network>(
        NetworkConfig{.bridge = "bnb" + pid,
                      .subnet = fmt::format("10.{}.0.0/16", a),
                      .run_dir = work_ + "/run",
                      .state_dir = work_ + "/state",
                      // <= 9 chars, ends in a non-hex one
                      .link_prefix = "nb" + std::to_string(::getpid() % 1000000) + "x"});
    cni_ = Cni{.plugin_dir = o.cni_path,
               .bridge = "bnc" + pid,
               .subnet = fmt::format("10.{}.0.0/16", a + 1),
               .data_dir = work_ + "/cni-ipam",
               .netns_dir = work_ + "/cni-netns"};
    cni_.config = cni_config(cni_);
    auto fwd = fs::read_file("/proc/sys/net/ipv4/ip_forward");
    ip_forward_ = fwd ? *fwd : "";
  }

  ~Bench() {
    if (auto r = net_->teardown(); !r)
      std::fprintf(stderr, "netns-bench: teardown: %s\n", r.error().str().c_str());
    std::error_code ec;
    // A round cut short by a failure: DEL takes the plugin's veth and address.
    for (const auto& e : std::filesystem::directory_iterator(cni_.netns_dir, ec)) {
      (void)try_cni_exec(cni_, "DEL", e.path().filename(), e.path(), work_ + "/cni-out");
      (void)remove_netns(e.path().string());
    }
    if (auto sk = nl::connect_route(); sk) (void)nl::delete_link(sk->get(), cni_.bridge);
    restore_ip_forward();
    std::filesystem::remove_all(work_, ec);
    if (ec)
      std::fprintf(stderr, "netns-bench: remove %s: %s\n", work_.c_str(), ec.message().c_str());
  }

  // Only if it changed: writing back a value read long ago would undo what
  // another process on the machine set meanwhile.
  void restore_ip_forward() const {
    const char* path = "/proc/sys/net/ipv4/ip_forward";
    auto now = fs::read_file(path);
    if (ip_forward_.empty() || !now || *now == ip_forward_) return;
    if (auto r = fs::write_file(path, ip_forward_); !r)
      std::fprintf(stderr, "netns-bench: restore %s: %s\n", path, r.error().str().c_str());
  }

  void run(int rounds) {
    if (auto r = fs::mkdir_p(cni_.netns_dir); !r) fail(r.error().str());
    if (auto r = net_->ensure_bridge(); !r) fail("ensure_bridge: " + r.error().str());
    for (int i = 0; i < kWarmup && !g_stop; ++i) {
      berth_round(*net_, "w" + std::to_string(i), nullptr);
      cni_round(cni_, "w" + std::to_string(i), work_, nullptr);
    }
    for (int i = 0; i < rounds && !g_stop; ++i) {
      std::string id = "r" + std::to_string(i);
      for (int k = 0; k < 2; ++k) {
        if ((i + k) % 2 == 0)
          berth_round(*net_, id, &berth_);
        else
          cni_round(cni_, id, work_, &cni_samples_);
      }
    }
  }

  void report() const {
    if (berth_.create.empty() || cni_samples_.create.empty()) fail("interrupted before any round");
    std::printf("\nmicrohost network create/release, %zu rounds (after %d warm-up), wall ms\n",
                berth_.create.size(), kWarmup);
    std::printf("  berth: netns library (libnl), bridge %s\n", net_->config().bridge.c_str());
    std::printf("  cni:   %s/bridge + host-local, bridge %s (netns made as berth does)\n",
                cni_.plugin_dir.c_str(), cni_.bridge.c_str());
    std::printf("%-26s %10s %10s\n", "", "median", "p99");
    auto row = [](const char* name, const std::vector<double>& v) {
      std::printf("%-26s %10.2f %10.2f\n", name, percentile(v, 0.5), percentile(v, 0.99));
    };
    row("berth create", berth_.create);
    row("berth release", berth_.release);
    row("cni create (netns + ADD)", cni_samples_.create);
    row("cni release (DEL + netns)", cni_samples_.release);
    row("cni ADD alone", cni_samples_.add);
    row("cni DEL alone", cni_samples_.del);
    double create = percentile(berth_.create, 0.5);
    std::printf("cni/berth (median): create %.1fx, release %.1fx\n",
                percentile(cni_samples_.create, 0.5) / create,
                percentile(cni_samples_.release, 0.5) / percentile(berth_.release, 0.5));
    std::printf("berth create median %.2f ms (target <= %.1f ms)%s\n", create, kTargetCreateMs,
                create <= kTargetCreateMs ? "" : "  [target missed]");
  }

 private:
  std::string work_;
  std::unique_ptr<Network> net_;
  Cni cni_;
  std::string ip_forward_;
  Samples berth_, cni_samples_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  if (::geteuid() != 0) die("must run as root (creates namespaces, bridges and veths)");
  if (::access((o.cni_path + "/bridge").c_str(), X_OK) != 0 ||
      ::access((o.cni_path + "/host-local").c_str(), X_OK) != 0)
    die(o.cni_path +
        "/bridge or host-local not found (containernetworking-plugins, from "
        "scripts/install-deps.sh)");
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = true; };
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  try {
    Bench bench(o);
    bench.run(o.rounds);
    bench.report();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "netns-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
