// The microhost network orchestrator: bridge, netns, veth, address, routes.
//
// create_microhost, in order:
//   1. the bridge must exist (ensure_bridge at daemon start): its ifindex is
//      the veth's master;
//   2. an address from the IPAM, before anything in the kernel, so that an
//      exhausted pool costs nothing to undo;
//   3. a new netns bind-mounted at <run_dir>/netns/<id>, with a netlink socket
//      inside it;
//   4. the veth, in one RTM_NEWLINK: the host side named by the id's hash,
//      enslaved to the bridge and up; the peer created *directly* in the
//      netns (IFLA_NET_NS_FD) as eth0, with the MTU and a MAC derived from
//      its address. Moving a link to another netns after the fact (as
//      CNI's bridge plugin does) unregisters and re-registers it, and the
//      kernel waits for an rcu_barrier() after every unregistration;
//   5. inside the netns: eth0 up, its address, the default route via the
//      gateway (up and address first: the gateway has to be reachable
//      through the connected route they make), lo up.
// Each step is undone by a Rollback if a later one fails.
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <netlink/route/link/veth.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <set>
#include <utility>

#include "common/fs.h"
#include "common/log.h"
#include "netns/netlink.h"
#include "netns/netns_mount.h"
#include "netns/network.h"

namespace berth::netns {

namespace {

constexpr std::string_view kStep = "network";
// The loopback device has this index in every network namespace.
constexpr int kLoopbackIfindex = 1;
constexpr size_t kMaxLinkName = 15;   // IFNAMSIZ - 1
constexpr size_t kMaxLinkPrefix = 9;  // leaves 6 hex digits of hash

// Runs `undo` at scope exit unless dismissed: the rollback of one step of
// create_microhost.
template <class F>
class Rollback {
 public:
  explicit Rollback(F undo) : undo_(std::move(undo)) {}
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() {
    if (armed_) undo_();
  }
  void dismiss() { armed_ = false; }

 private:
  F undo_;
  bool armed_ = true;
};

// FNV-1a: stable across processes and builds (std::hash is not promised to
// be), because gc() recomputes the names of live microhosts' links.
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

Result<void> check_id(const std::string& id) {
  bool ok =
      !id.empty() && id.size() <= 200 && id != "." && id != ".." &&
      std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
      });
  if (!ok) return error(kStep, "invalid microhost id \"{}\" (1-200 of [A-Za-z0-9_.-])", id);
  return {};
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Keeps the first error of a sequence of best-effort steps.
void keep_first(Result<void>& first, Result<void> r) {
  if (!r && first) first = std::move(r);
}

}  // namespace

Result<NetworkMode> parse_network_mode(const std::string& s) {
  if (s == "awsvpc") return NetworkMode::awsvpc;
  if (s == "bridge") return NetworkMode::bridge;
  if (s == "host") return NetworkMode::host;
  if (s == "none") return NetworkMode::none;
  return error(kStep, "unknown network mode \"{}\" (awsvpc, bridge, host or none)", s);
}

Network::Network(NetworkConfig cfg) : cfg_(std::move(cfg)), subnet_(Ipv4Net::parse(cfg_.subnet)) {}

std::string Network::veth_name(const std::string& id) const {
  size_t digits = kMaxLinkName - std::min(cfg_.link_prefix.size(), kMaxLinkName);
  return cfg_.link_prefix + fmt::format("{:016x}", fnv1a(id)).substr(0, digits);
}

std::string Network::netns_dir() const {
  return fs::join(cfg_.run_dir, "netns");
}

std::string Network::ipam_dir() const {
  return fs::join(cfg_.state_dir, "ipam");
}

Result<void> Network::check_config() const {
  if (!subnet_) return std::unexpected(subnet_.error());
  if (subnet_->prefix > 30)
    return error(kStep, "subnet {} has no room for a gateway and a host", subnet_->str());
  if (cfg_.bridge.empty() || cfg_.bridge.size() > kMaxLinkName)
    return error(kStep, "bridge name \"{}\" must be 1-{} chars", cfg_.bridge, kMaxLinkName);
  if (cfg_.link_prefix.empty() || cfg_.link_prefix.size() > kMaxLinkPrefix)
    return error(kStep, "link prefix \"{}\" must be 1-{} chars", cfg_.link_prefix, kMaxLinkPrefix);
  if (cfg_.mtu < 68 || cfg_.mtu > 65535)
    return error(kStep, "mtu {} out of range (68-65535)", cfg_.mtu);
  return {};
}

// ---- the bridge ---------------------------------------------------------------

namespace {

Result<void> create_bridge(nl_sock* sk, const NetworkConfig& cfg, uint32_t gateway) {
  nl::Link br(rtnl_link_alloc());
  nl::Address mac = nl::mac_for(gateway);
  if (!br || !mac) return nl::nl_error(kStep, -NLE_NOMEM, "create bridge {}", cfg.bridge);
  if (int err = rtnl_link_set_type(br.get(), "bridge"); err < 0)
    return nl::nl_error(kStep, err, "create bridge {}", cfg.bridge);
  rtnl_link_set_name(br.get(), cfg.bridge.c_str());
  rtnl_link_set_mtu(br.get(), cfg.mtu);
  // A bridge without an explicit MAC takes the lowest of its ports' and
  // changes it as ports come and go, which leaves every task's ARP entry for
  // the gateway stale; a set address is never changed by the bridge.
  rtnl_link_set_addr(br.get(), mac.get());
  rtnl_link_set_flags(br.get(), IFF_UP);
  int err = rtnl_link_add(sk, br.get(), NLM_F_CREATE | NLM_F_EXCL);
  // Another daemon process racing on the same config created it first.
  if (err < 0 && err != -NLE_EXIST) return nl::nl_error(kStep, err, "create bridge {}", cfg.bridge);
  return {};
}

}  // namespace

Result<void> Network::ensure_bridge() {
  BERTH_TRY(check_config());
  BERTH_ASSIGN(nl::Socket sk, nl::connect_route());
  BERTH_ASSIGN(auto found, nl::find_link(sk.get(), cfg_.bridge));
  if (found && found->type != "bridge")
    return error(kStep, "link {} exists and is not a bridge (type \"{}\")", cfg_.bridge,
                 found->type);
  if (!found) {
    BERTH_TRY(create_bridge(sk.get(), cfg_, subnet_->gateway()));
    BERTH_ASSIGN(found, nl::find_link(sk.get(), cfg_.bridge));
    if (!found) return error(kStep, "bridge {} vanished right after its creation", cfg_.bridge);
    log::info("network: created bridge {}", cfg_.bridge);
  }
  // An existing bridge keeps everything it has; only what a crash during a
  // previous ensure_bridge could have left out is added.
  BERTH_TRY(nl::add_address(sk.get(), found->ifindex, subnet_->gateway(), subnet_->prefix,
                            "bridge " + cfg_.bridge, /*exist_ok=*/true));
  if (!(found->flags & IFF_UP)) BERTH_TRY(nl::set_up(sk.get(), found->ifindex, cfg_.bridge));
  return {};
}

Result<void> Network::teardown() {
  Result<void> first;
  auto removed = gc({});
  if (!removed) keep_first(first, std::unexpected(removed.error()));
  auto sk = nl::connect_route();
  if (!sk) return std::unexpected(sk.error());
  auto deleted = nl::delete_link(sk->get(), cfg_.bridge);
  if (!deleted) keep_first(first, std::unexpected(deleted.error()));
  for (const std::string& dir : {ipam_dir(), netns_dir()}) {
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT)
      keep_first(first, sys_error(kStep, "remove {}", dir));
  }
  return first;
}

// ---- microhosts -------------------------------------------------------------

Result<Microhost> Network::create_microhost(const std::string& id, NetworkMode mode) {
  BERTH_TRY(check_id(id));
  BERTH_TRY(check_config());
  switch (mode) {
    case NetworkMode::host:
      return Microhost{.id = id, .mode = mode};
    case NetworkMode::none:
      return create_isolated(id);
    case NetworkMode::awsvpc:
    case NetworkMode::bridge:
      break;
  }
  return create_bridged(id, mode);
}

Result<Microhost> Network::create_isolated(const std::string& id) {
  BERTH_TRY(fs::mkdir_p(netns_dir(), 0755));
  std::string path = fs::join(netns_dir(), id);
  BERTH_ASSIGN(NewNetns ns, create_netns(path));
  Rollback undo_netns([&] { (void)remove_netns(path); });
  BERTH_TRY(nl::set_up(ns.route.get(), kLoopbackIfindex, "lo in " + path));
  undo_netns.dismiss();
  return Microhost{.id = id, .mode = NetworkMode::none, .netns_path = path};
}

namespace {

// Step 4 of the recipe at the top: one RTM_NEWLINK for both ends.
Result<void> add_veth(nl_sock* host, const Microhost& mh, int bridge, int netns_fd, unsigned mtu) {
  nl::Link veth(rtnl_link_veth_alloc());
  nl::Link peer(veth ? rtnl_link_veth_get_peer(veth.get()) : nullptr);  // a new reference
  nl::Address mac = nl::mac_for(mh.ip);
  if (!veth || !peer || !mac)
    return nl::nl_error(kStep, -NLE_NOMEM, "create veth {}", mh.host_veth);
  rtnl_link_set_name(veth.get(), mh.host_veth.c_str());
  rtnl_link_set_mtu(veth.get(), mtu);
  rtnl_link_set_master(veth.get(), bridge);
  rtnl_link_set_flags(veth.get(), IFF_UP);
  rtnl_link_set_name(peer.get(), "eth0");
  rtnl_link_set_mtu(peer.get(), mtu);
  rtnl_link_set_ns_fd(peer.get(), netns_fd);
  // A MAC derived from the address: a neighbour that cached it for this IP
  // stays right when the IPAM hands the address to the next microhost.
  // (No IFF_UP for the peer here: the kernel opens it before the pair is
  // linked, and veth_open fails with ENOTCONN.)
  rtnl_link_set_addr(peer.get(), mac.get());
  if (int err = rtnl_link_add(host, veth.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0)
    return nl::nl_error(kStep, err, "create veth {} with peer eth0 in {}", mh.host_veth,
                        mh.netns_path);
  return {};
}

// Step 5, through the socket that lives in the microhost's netns.
Result<void> configure_inside(nl_sock* inside, const Microhost& mh) {
  std::string eth0 = "eth0 in " + mh.netns_path;
  BERTH_ASSIGN(auto link, nl::find_link(inside, "eth0"));
  if (!link) return error(kStep, "{}: not found right after its creation", eth0);
  BERTH_TRY(nl::set_up(inside, link->ifindex, eth0));
  BERTH_TRY(nl::add_address(inside, link->ifindex, mh.ip, mh.prefix, eth0));
  BERTH_TRY(nl::add_default_route(inside, link->ifindex, mh.gateway, eth0));
  return nl::set_up(inside, kLoopbackIfindex, "lo in " + mh.netns_path);
}

}  // namespace

Result<Microhost> Network::create_bridged(const std::string& id, NetworkMode mode) {
  BERTH_ASSIGN(nl::Socket host, nl::connect_route());
  BERTH_ASSIGN(auto bridge, nl::find_link(host.get(), cfg_.bridge));
  if (!bridge)
    return error(kStep, "bridge {} does not exist (ensure_bridge creates it)", cfg_.bridge);

  Ipam ipam(ipam_dir(), *subnet_);
  BERTH_ASSIGN(uint32_t ip, ipam.allocate(id));
  Rollback undo_ip([&] { (void)ipam.release(ip, id); });

  Microhost mh{.id = id,
               .mode = mode,
               .netns_path = fs::join(netns_dir(), id),
               .ip = ip,
               .gateway = subnet_->gateway(),
               .prefix = subnet_->prefix,
               .host_veth = veth_name(id),
               .mac = mac_for_ip(ip)};
  BERTH_TRY(fs::mkdir_p(netns_dir(), 0755));
  BERTH_ASSIGN(NewNetns ns, create_netns(mh.netns_path));
  Rollback undo_netns([&] { (void)remove_netns(mh.netns_path); });

  BERTH_TRY(add_veth(host.get(), mh, bridge->ifindex, ns.fd.get(), cfg_.mtu));
  Rollback undo_veth([&] { (void)nl::delete_link(host.get(), mh.host_veth); });

  BERTH_TRY(configure_inside(ns.route.get(), mh));
  undo_veth.dismiss();
  undo_netns.dismiss();
  undo_ip.dismiss();
  log::debug("network: microhost {}: {}/{} on {} via {}, netns {}", id, ipv4_str(ip), mh.prefix,
             mh.host_veth, cfg_.bridge, mh.netns_path);
  return mh;
}

Result<void> Network::release_microhost(const Microhost& mh) {
  BERTH_TRY(check_id(mh.id));
  Result<void> first;
  // The veth first, while its netns still exists: deleting the host side
  // removes eth0 with it. This is where release spends its time: after
  // unregistering a device the kernel waits for an rcu_barrier()
  // (netdev_run_todo), with the rtnl lock already dropped, so concurrent
  // creates are not held up. Leaving the veth to die with the namespace
  // would return sooner but leave it alive (and its address in use) for
  // as long as any process still holds the namespace.
  if (!mh.host_veth.empty()) {
    auto sk = nl::connect_route();
    if (!sk) return std::unexpected(sk.error());
    auto deleted = nl::delete_link(sk->get(), mh.host_veth);
    if (!deleted) keep_first(first, std::unexpected(deleted.error()));
  }
  if (!mh.netns_path.empty()) {
    // Only ever unmount what create_microhost mounted.
    if (mh.netns_path != fs::join(netns_dir(), mh.id))
      return error(kStep, "microhost {}: netns {} is not this instance's ({})", mh.id,
                   mh.netns_path, fs::join(netns_dir(), mh.id));
    keep_first(first, remove_netns(mh.netns_path));
  }
  // The address last: it must not be handed out while the old link lives.
  if (mh.ip != 0 && subnet_) keep_first(first, Ipam(ipam_dir(), *subnet_).release(mh.ip, mh.id));
  return first;
}

// ---- garbage collection -------------------------------------------------------

namespace {

Result<void> gc_links(nl_sock* sk, const Network& net, const std::vector<std::string>& live,
                      std::vector<std::string>& removed) {
  const NetworkConfig& cfg = net.config();
  std::set<std::string> keep;
  for (const auto& id : live) keep.insert(net.veth_name(id));
  BERTH_ASSIGN(auto bridge, nl::find_link(sk, cfg.bridge));
  int bridge_index = bridge ? bridge->ifindex : 0;
  BERTH_ASSIGN(auto links, nl::list_links(sk));
  Result<void> first;
  for (const auto& l : links) {
    // Ours: named <prefix><hex> at full length, a veth, and a port of our
    // bridge (or of none, if the bridge went first).
    bool ours = l.type == "veth" && l.name.size() == kMaxLinkName &&
                l.name.starts_with(cfg.link_prefix) &&
                is_hex(std::string_view(l.name).substr(cfg.link_prefix.size())) &&
                (l.master == 0 || l.master == bridge_index);
    if (!ours || keep.contains(l.name)) continue;
    auto deleted = nl::delete_link(sk, l.name);
    if (!deleted) keep_first(first, std::unexpected(deleted.error()));
    if (deleted && *deleted) removed.push_back("link " + l.name);
  }
  return first;
}

Result<void> gc_netns(const std::string& netns_dir, const std::vector<std::string>& live,
                      std::vector<std::string>& removed) {
  std::set<std::string> keep(live.begin(), live.end());
  std::error_code ec;
  Result<void> first;
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(netns_dir, ec))
    names.push_back(e.path().filename().string());
  if (ec && ec != std::errc::no_such_file_or_directory)
    return errno_error(kStep, ec.value(), "list {}", netns_dir);
  for (const auto& name : names) {
    if (keep.contains(name)) continue;
    std::string path = fs::join(netns_dir, name);
    auto r = remove_netns(path);
    if (r) removed.push_back("netns " + path);
    keep_first(first, std::move(r));
  }
  return first;
}

Result<void> gc_addresses(Ipam ipam, const std::vector<std::string>& live,
                          std::vector<std::string>& removed) {
  std::set<std::string> keep(live.begin(), live.end());
  BERTH_ASSIGN(auto all, ipam.allocations());
  Result<void> first;
  for (const auto& [owner, addr] : all) {
    if (keep.contains(owner)) continue;
    auto r = ipam.release(addr);
    if (r) removed.push_back(fmt::format("address {} of {}", ipv4_str(addr), owner));
    keep_first(first, std::move(r));
  }
  return first;
}

// The bridge's VIPs (/32 addresses of the subnet) that no allocation holds.
Result<void> gc_vips(nl_sock* sk, const NetworkConfig& cfg, const Ipv4Net& subnet, const Ipam& ipam,
                     std::vector<std::string>& removed) {
  BERTH_ASSIGN(auto bridge, nl::find_link(sk, cfg.bridge));
  if (!bridge) return {};
  BERTH_ASSIGN(auto all, ipam.allocations());
  std::set<uint32_t> held;
  for (const auto& [owner, addr] : all) held.insert(addr);
  BERTH_ASSIGN(auto addrs, nl::list_addresses(sk, bridge->ifindex));
  Result<void> first;
  for (const auto& a : addrs) {
    if (a.prefix != 32 || !subnet.contains(a.ip) || a.ip == subnet.gateway() || held.contains(a.ip))
      continue;
    auto r = nl::delete_address(sk, bridge->ifindex, a.ip, 32, "bridge " + cfg.bridge);
    if (r && *r) removed.push_back(fmt::format("service address {}", ipv4_str(a.ip)));
    if (!r) keep_first(first, std::unexpected(r.error()));
  }
  return first;
}

}  // namespace

Result<uint32_t> Network::add_vip(const std::string& owner, std::optional<uint32_t> wanted) {
  BERTH_TRY(check_id(owner));
  BERTH_TRY(check_config());
  BERTH_ASSIGN(nl::Socket sk, nl::connect_route());
  BERTH_ASSIGN(auto bridge, nl::find_link(sk.get(), cfg_.bridge));
  if (!bridge)
    return error(kStep, "bridge {} does not exist (ensure_bridge creates it)", cfg_.bridge);
  Ipam ipam(ipam_dir(), *subnet_);
  uint32_t addr = 0;
  bool fresh = false;
  if (wanted) {
    BERTH_TRY(ipam.reserve(*wanted, owner));
    addr = *wanted;
  } else {
    // The owner's address already (a repeated call that lost its answer).
    BERTH_ASSIGN(auto all, ipam.allocations());
    for (const auto& [who, a] : all) {
      if (who == owner) addr = a;
    }
    if (addr == 0) {
      BERTH_ASSIGN(addr, ipam.allocate(owner));
      fresh = true;
    }
  }
  auto added = nl::add_address(sk.get(), bridge->ifindex, addr, 32, "bridge " + cfg_.bridge,
                               /*exist_ok=*/true);
  if (!added) {
    if (fresh) (void)ipam.release(addr, owner);
    return std::unexpected(added.error());
  }
  return addr;
}

Result<void> Network::remove_vip(const std::string& owner, uint32_t addr) {
  BERTH_TRY(check_id(owner));
  BERTH_TRY(check_config());
  BERTH_ASSIGN(nl::Socket sk, nl::connect_route());
  BERTH_ASSIGN(auto bridge, nl::find_link(sk.get(), cfg_.bridge));
  Ipam ipam(ipam_dir(), *subnet_);
  BERTH_ASSIGN(auto all, ipam.allocations());
  // Gone to another owner since (a stale, repeated removal): not ours to touch.
  bool others = std::any_of(all.begin(), all.end(),
                            [&](const auto& a) { return a.second == addr && a.first != owner; });
  if (bridge && !others) {
    auto deleted = nl::delete_address(sk.get(), bridge->ifindex, addr, 32, "bridge " + cfg_.bridge);
    if (!deleted) return std::unexpected(deleted.error());
  }
  // The address last, as for a microhost.
  return ipam.release(addr, owner);
}

Result<std::vector<std::string>> Network::gc(const std::vector<std::string>& live) {
  BERTH_TRY(check_config());
  BERTH_ASSIGN(nl::Socket sk, nl::connect_route());
  std::vector<std::string> removed;
  // Same order as release_microhost: links, then namespaces, then addresses.
  Result<void> first;
  keep_first(first, gc_links(sk.get(), *this, live, removed));
  keep_first(first, gc_netns(netns_dir(), live, removed));
  keep_first(first, gc_addresses(Ipam(ipam_dir(), *subnet_), live, removed));
  keep_first(first, gc_vips(sk.get(), cfg_, *subnet_, Ipam(ipam_dir(), *subnet_), removed));
  for (const auto& what : removed) log::info("network: gc removed {}", what);
  if (!first) return std::unexpected(first.error());
  return removed;
}

}  // namespace berth::netns
