// The nftables side of task networking, driven through libnftables, in one
// table per daemon instance (name from config) so that instances never touch
// each other's rules:
//  - egress NAT: masquerade for traffic from the subnet leaving via any
//    interface but the bridge;
//  - port mappings (ECS portMappings): hostPort -> containerIP:containerPort,
//    tcp and udp, answering from other namespaces and from the host itself
//    (prerouting and output DNAT, plus masquerade of hairpin/local traffic);
//  - load balancing: one host port spread over a set of backends
//    (numgen random mod N map), replaced atomically in one transaction when
//    the backend set changes.
// Every rule carries a comment "berth:<owner>", which is how remove() and
// gc() find what belongs to whom. Owners starting with '@' are the table's
// own rules (egress and hairpin masquerade), rewritten by ensure().
//
// Every operation is one nft transaction: a concurrent reader sees the rule
// set before or after it, never half of it. Operations of one Firewall are
// serialised (a port is checked free and taken under one lock); two Firewall
// objects must not share a table.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace berth::netns {

enum class Protocol { tcp, udp };
std::string_view protocol_name(Protocol p);  // "tcp", "udp"

struct PortMapping {
  Protocol protocol = Protocol::tcp;
  uint16_t host_port = 0;  // 0: pick a free one
  uint16_t container_port = 0;
  bool operator==(const PortMapping&) const = default;
};

struct Backend {
  uint32_t ip = 0;  // host byte order
  uint16_t port = 0;
};

struct FirewallConfig {
  std::string table = "berth";
  std::string bridge = "berth0";
  std::string subnet = "10.88.0.0/16";
  // Host ports picked for hostPort 0 come from this range.
  uint16_t ephemeral_low = 32768;
  uint16_t ephemeral_high = 60999;
  // Where net.ipv4.* sysctls are written (a fixture tree in unit tests).
  std::string proc_sys = "/proc/sys";
};

class Firewall {
 public:
  explicit Firewall(FirewallConfig cfg);
  Firewall(const Firewall&) = delete;
  Firewall& operator=(const Firewall&) = delete;

  // Creates the table and chains if missing and (re)writes the masquerade
  // rules; sets net.ipv4.ip_forward and route_localnet on the bridge where
  // they are not 1 yet. The bridge must exist.
  Result<void> ensure();
  // Deletes the table (nothing to do if it is gone). Sysctls are left as
  // they are: other software on the host may rely on forwarding.
  Result<void> teardown();
  // Adds the mappings for `owner` (a microhost id) to `ip`; returns them with
  // the host ports actually used. A host port that is already mapped (same
  // protocol) is an error naming it.
  Result<std::vector<PortMapping>> add_port_mappings(const std::string& owner, uint32_t ip,
                                                     const std::vector<PortMapping>& maps);
  // Removes the port mappings of `owner` (not its load balancers).
  Result<void> remove_port_mappings(const std::string& owner);
  // Load balancing of host_port over `backends`: replaces the owner's
  // balancer of that port in one transaction (empty: removes it).
  Result<void> set_load_balancer(const std::string& owner, Protocol proto, uint16_t host_port,
                                 const std::vector<Backend>& backends);
  // Removes every rule whose owner is not in `live` (microhost ids and load
  // balancer owners alike); returns the owners removed, sorted.
  Result<std::vector<std::string>> gc(const std::vector<std::string>& live);

  const FirewallConfig& config() const { return cfg_; }

 private:
  FirewallConfig cfg_;
  std::mutex mu_;
  uint32_t next_port_;  // where the search for a free host port starts
};

// ---- pure pieces, exposed for unit tests -----------------------------------

inline constexpr std::string_view kCommentPrefix = "berth:";
// "berth:<owner>" -> owner; nullopt for other comments.
std::optional<std::string> comment_owner(std::string_view comment);
// Owners are letters, digits and _.:- (they end up in nft comments), at most
// 64 characters, not starting with '@' (reserved for the table's own rules).
Result<void> validate_owner(const std::string& owner);
// Table, bridge and subnet are spliced into nft scripts: checked strictly.
Result<void> validate_config(const FirewallConfig& cfg);

// A rule to delete: its chain and handle.
struct RuleRef {
  std::string chain;
  uint64_t handle = 0;
  bool operator==(const RuleRef&) const = default;
};

std::string build_ensure_script(const FirewallConfig& cfg);
std::string build_teardown_script(const FirewallConfig& cfg);
// `maps` have their host ports resolved (none is 0).
std::string build_port_mapping_script(const FirewallConfig& cfg, const std::string& owner,
                                      uint32_t ip, const std::vector<PortMapping>& maps);
// Deletes `replaced` and, if `backends` is not empty, adds the balancer.
std::string build_load_balancer_script(const FirewallConfig& cfg, const std::string& owner,
                                       Protocol proto, uint16_t host_port,
                                       const std::vector<Backend>& backends,
                                       const std::vector<RuleRef>& replaced);
std::string build_delete_script(const FirewallConfig& cfg, const std::vector<RuleRef>& rules);

// The first port of [low, high], searching from `start` and wrapping around,
// that is not in `used` and for which `bindable` is true.
std::optional<uint16_t> pick_host_port(uint16_t low, uint16_t high, uint32_t start,
                                       const std::set<uint16_t>& used,
                                       const std::function<bool(uint16_t)>& bindable);
// True if a socket of `proto` can bind INADDR_ANY:port right now.
bool host_port_bindable(Protocol proto, uint16_t port);

// Writes `value` to <proc_sys>/<key> unless the file already holds it;
// returns whether it wrote. key: "net/ipv4/ip_forward".
Result<bool> ensure_sysctl(const std::string& proc_sys, const std::string& key,
                           std::string_view value);

}  // namespace berth::netns
