// Task networking: one bridge per daemon instance, and per microhost a
// network namespace (held by a bind mount under the run dir) with a veth
// pair whose peer is created directly in it, an address from the IPAM, a
// default route via the bridge, and lo up. All through netlink (libnl-route-3);
// no shelling out to `ip`.
//
// Every name comes from NetworkConfig, so two daemons with different
// settings run side by side: an instance's host-side links carry its prefix
// and its netns mounts live under its run dir, which is how gc() recognises
// what is its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace berth::netns {

struct Ipv4Net {
  uint32_t addr = 0;  // host byte order; the network address (no host bits)
  unsigned prefix = 0;
  // "10.88.0.0/16"; host bits set ("10.88.0.1/16") are an error, naming the
  // network that was probably meant.
  static Result<Ipv4Net> parse(const std::string& cidr);
  std::string str() const;
  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  uint32_t broadcast() const { return addr | ~mask(); }
  uint32_t gateway() const { return addr + 1; }  // the first host address
  bool contains(uint32_t a) const { return (a & mask()) == addr; }
};
std::string ipv4_str(uint32_t addr);  // host byte order -> "10.88.0.2"
// The MAC a microhost's eth0 gets: locally administered, unicast, carrying
// its address, so that it is known without asking the kernel and stays
// right for a neighbour that cached it when the address is reused:
// 10.88.0.2 -> "02:b7:0a:58:00:02".
std::string mac_for_ip(uint32_t addr);
Result<uint32_t> parse_ipv4(const std::string& s);  // "10.88.0.2" -> host byte order

struct NetworkConfig {
  std::string bridge = "berth0";
  std::string subnet = "10.88.0.0/16";  // the gateway is the first host address
  unsigned mtu = 1500;
  std::string run_dir = "/run/berth";        // netns mounts: <run_dir>/netns/<id>
  std::string state_dir = "/var/lib/berth";  // IPAM: <state_dir>/ipam/
  // Prefix of host-side veth names: <prefix><hex hash of id>, exactly 15
  // chars, so 1-9 chars of prefix. gc() takes as its own every veth named so
  // that is a port of the bridge or of none: end the prefix with a non-hex
  // char if one instance's prefix could otherwise extend another's.
  std::string link_prefix = "bth";
  std::vector<std::string> resolvers;  // empty: the host's resolv.conf, below
  std::string host_resolv_conf = "/etc/resolv.conf";
};

// ECS network modes.
enum class NetworkMode { awsvpc, bridge, host, none };
Result<NetworkMode> parse_network_mode(const std::string& s);

struct Microhost {
  std::string id;
  NetworkMode mode = NetworkMode::awsvpc;
  // The bind-mounted netns, <run_dir>/netns/<id>. Empty for NetworkMode::host:
  // the task gets no network namespace of its own and shares the one of
  // whoever starts it (the daemon's). Not "/proc/self/ns/net", which names a
  // different namespace in every reader, nor "/proc/1/ns/net", which is not
  // the daemon's when the daemon itself runs in a container.
  std::string netns_path;
  uint32_t ip = 0;  // 0 for host/none
  uint32_t gateway = 0;
  unsigned prefix = 0;
  std::string host_veth;  // host-side link name; empty for host/none
  // eth0's MAC inside the netns (mac_for_ip(ip), set at creation); empty for
  // host/none. The bridge's anti-spoofing rules (Firewall::add_tenant_port)
  // let the veth send from this address only.
  std::string mac;
};

// Persistent address allocation from the subnet: one file per address under
// <state_dir>/ipam/ (created with O_EXCL, so concurrent allocations in one
// or several processes never hand out the same address), surviving restarts.
class Ipam {
 public:
  Ipam(std::string dir, Ipv4Net subnet);
  // The lowest free address (skipping network, gateway and broadcast);
  // "no free address in 10.88.0.0/30" when exhausted.
  Result<uint32_t> allocate(const std::string& owner);
  Result<void> release(uint32_t addr);
  // Releases `addr` only if `owner` holds it: a stale, repeated release must
  // not free an address that has since gone to another microhost.
  Result<void> release(uint32_t addr, const std::string& owner);
  Result<void> release_owner(const std::string& owner);
  // Claims exactly `addr` for `owner` (a host address of the subnet, not the
  // gateway); holding it already is fine, another owner's is an error
  // naming it.
  Result<void> reserve(uint32_t addr, const std::string& owner);
  // owner -> address for every allocation on disk.
  Result<std::vector<std::pair<std::string, uint32_t>>> allocations() const;

 private:
  std::string dir_;
  Ipv4Net subnet_;
};

// One daemon instance's task networking. Holds no state beyond its config
// (the kernel and the IPAM dir are the state), so several threads may
// create and release microhosts at once, and a new Network on the same
// config carries on where a crashed one stopped.
class Network {
 public:
  explicit Network(NetworkConfig cfg);
  // Creates the bridge with the gateway address if missing (left intact when
  // it exists: daemons restart without disturbing running tasks).
  Result<void> ensure_bridge();
  // Removes the bridge, every netns mount and link of this instance, and the
  // IPAM state (the teardown command).
  Result<void> teardown();
  // `id`: 1-200 of [A-Za-z0-9_.-], unique among live microhosts (it names
  // the netns mount, the host-side veth and the IPAM owner).
  Result<Microhost> create_microhost(const std::string& id, NetworkMode mode);
  // Deletes the veth (both ends), unmounts and unlinks the netns, releases
  // the address; carries on past a failed step and returns the first error.
  // Releasing again is harmless, until the id is created anew.
  Result<void> release_microhost(const Microhost& mh);
  // Removes links, netns mounts and addresses of this instance that no id in
  // `live` owns (after a crash), and the bridge's VIPs (/32 addresses of the
  // subnet) whose address no live id holds any more. Returns what was removed, for logging. Run it
  // while no create_microhost is in flight (at start-up): a microhost being
  // created is not in `live` yet.
  Result<std::vector<std::string>> gc(const std::vector<std::string>& live);
  // Service addresses (VIPs, issue 13): an address of the subnet from the
  // IPAM (owner `owner`), or exactly `wanted` when given (a restart: the
  // supervisor passes back the address it was given), added as <addr>/32 to
  // the bridge so that the host answers ARP for it there. Idempotent.
  Result<uint32_t> add_vip(const std::string& owner, std::optional<uint32_t> wanted);
  // Removes <addr>/32 from the bridge and releases the address if `owner`
  // holds it. Idempotent.
  Result<void> remove_vip(const std::string& owner, uint32_t addr);
  // /etc/hosts and /etc/resolv.conf content for a task. Without configured
  // resolvers, the host's file minus its loopback nameservers (a stub
  // resolver on the host's 127.0.0.x is unreachable from a task's netns); an
  // error if none is left.
  std::string hosts_file(const Microhost& mh, const std::string& hostname) const;
  Result<std::string> resolv_conf() const;
  const NetworkConfig& config() const { return cfg_; }
  // The host-side veth name of microhost `id`.
  std::string veth_name(const std::string& id) const;

 private:
  Result<void> check_config() const;
  std::string netns_dir() const;
  std::string ipam_dir() const;
  Result<Microhost> create_isolated(const std::string& id);
  Result<Microhost> create_bridged(const std::string& id, NetworkMode mode);

  NetworkConfig cfg_;
  Result<Ipv4Net> subnet_;  // cfg_.subnet, parsed once
};

}  // namespace berth::netns
