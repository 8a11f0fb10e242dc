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
//  - tenant isolation and anti-spoofing on the bridge (add_tenant_port), in a
//    bridge-family table of the same name, below.
// Every rule carries a comment "berth:<owner>", which is how remove() and
// gc() find what belongs to whom. Owners starting with '@' are the table's
// own rules (egress and hairpin masquerade, the published mark, the bridge
// forward chain's jumps), rewritten by ensure().
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
  bool operator==(const Backend&) const = default;
};

// One microhost's port on the bridge, as add_tenant_port registers it.
struct TenantPort {
  // The account the microhost's task belongs to: 1-32 of [A-Za-z0-9_] (an
  // account id is 12 digits); it names the account's chain "acct_<account>".
  std::string account;
  std::string host_veth;  // Microhost::host_veth
  uint32_t ip = 0;        // Microhost::ip, host byte order
  std::string mac;        // Microhost::mac, "02:b7:0a:58:00:02"
};

// Tenant isolation and anti-spoofing (issue 11, "Accounts").
//
// Threat: a task (possibly granted NET_RAW/NET_ADMIN) that talks directly,
// over the bridge, to another account's task, or that sends as a neighbour
// (its IP or MAC) to get the neighbour's replies, to poison ARP caches or to
// slip past the isolation by wearing another account's address. Traffic
// between two microhost veths is bridged (L2): it never reaches the ip
// family's forward hook (unless br_netfilter is loaded, which berth does not
// rely on; the bridge-family rules below work with and without it), so the
// rules live in a bridge-family table named like the ip table ("table bridge
// <table>"). Only bridge-family payload and iifname/oifname matches are used:
// kernels without nf_conntrack_bridge or NFT_BRIDGE_META (no `ct`, no
// `meta ibrname` in the bridge family) run them.
//
//   chain prerouting (filter hook, every frame entering from a port, bridged
//   or for the host): per registered port, five rules (owner-tagged) drop
//   what the port sends with an Ethernet source other than its MAC, with an
//   EtherType other than IPv4 and ARP (IPv6 included: tasks get no IPv6
//   address; VLAN-tagged frames, which would hide an IP header from the
//   address match), an IPv4 source other than its address (0.0.0.0 too:
//   there is no DHCP), or an ARP sender MAC/IP other than its own. A task
//   that changes its address or MAC reaches nobody, the host included.
//
//   chain forward (filter hook, frames bridged port to port): jumps to
//   tenant_src, then tenant_dst (the table's own rules, rewritten by
//   ensure()).
//     tenant_src: per port P of account A, "iifname P jump acct_A" then
//       "iifname P drop": a frame from P is accepted only towards a port
//       in acct_A, and dropped towards any other (ARP broadcasts included:
//       the bridge floods a copy to each port through this hook, so another
//       account's ports never even see the ARP requests).
//     acct_A: per port Q of account A, "oifname Q accept". Created with the
//       account's first port, deleted with its last.
//     tenant_dst: per port P, "oifname P drop": frames from a port that is
//       not registered (a microhost not yet given to a task) never reach a
//       registered one. Frames between two unregistered ports pass, and so
//       does every frame on other bridges of the host (no rule matches them).
//
//   Before them, forward accepts frames carrying FirewallConfig::
//   published_mark: with br_netfilter loaded (Docker and Kubernetes hosts
//   load it), a connection DNAT'd to a task on the same bridge is bridged
//   from the client's port straight to the task's, and so are its answers;
//   the ip table's "published" chain (filter, prerouting, right after DNAT)
//   marks every packet of a DNAT'd connection. Tasks cannot forge the mark
//   (it is cleared when a packet leaves a netns through a veth), and a
//   packet sent to the task's own address belongs to another, untranslated
//   connection.
//
// What stays allowed: the host (the gateway address, frames up to the
// bridge device are not forwarded) and everything routed through it — a
// port another account published on the host (DNAT in the ip table; without
// br_netfilter the translated packet leaves through the bridge's output
// hook, not forward; with it, the mark above lets it through) and egress. So a task reaches another
// account's task only through the ports that task published, as the issue asks.
//
// The per-port rules are linear lists (one match per registered port per
// frame); a verdict map keyed by iifname would make the lookup constant
// once hundreds of ports per node matter.
// Services (issue 13): a service's stable virtual address on the bridge
// (VIP) and its listener on a host port, both balancing new connections over
// the service's backends (numgen random mod N), set and replaced as one
// transaction per change by set_service(), all under the service's owner.
//
//   Who may use the VIP: the ip table keeps a named set per account,
//   "acct_<account>" (type ipv4_addr), of the addresses of the account's
//   registered ports; add_tenant_port / remove_tenant_port / gc update it in
//   the same transaction as the bridge rules (each element carries the
//   port owner's comment). The bridge's anti-spoofing rules guarantee a
//   port sends from its own address only, so `ip saddr @acct_A` is "a task
//   of account A".
//
//   chain vip_filter (filter, prerouting -150: before any NAT, every packet):
//     ip daddr VIP ip saddr @acct_A <proto> dport P accept
//     ip daddr VIP drop          (another account, the host's other
//                                 sources, any other port or protocol)
//   chain vip_nat (nat, prerouting -101: before the port mappings' chain, so
//   that a host port equal to P never takes VIP traffic):
//     ip daddr VIP <proto> dport P dnat to numgen random mod N map {...}
//   chain vip_local (filter, input): what reaches the VIP itself was not
//     DNAT'd (no backends): refused at once (tcp reset / icmp
//     port-unreachable), so no socket of the host on that address or on
//     0.0.0.0 is ever reached through the VIP; a listener port without
//     backends is refused here too.
//   chain vip_host (filter, output): the host's own sockets never reach the
//     VIP (ip daddr VIP drop).
// The answers come back through the host: the DNAT'd connection leaves on
// the bridge from a subnet address, which the table's @hairpin masquerade
// rewrites to the gateway's.
//
// The listener: as set_load_balancer (prerouting and output, fib daddr type
// local), or, without backends, "accept" rules that keep the host port
// reserved for the owner (no NAT: the vip_local rule refuses it).
struct ServiceRules {
  std::string account;  // 1-32 of [A-Za-z0-9_], as TenantPort::account
  uint32_t vip = 0;     // host byte order; 0: no VIP
  Protocol protocol = Protocol::tcp;
  uint16_t vip_port = 0;       // the VIP's port (required with a VIP)
  uint16_t listener_port = 0;  // 0: no host listener
  std::vector<Backend> backends;
  bool operator==(const ServiceRules&) const = default;
};

struct FirewallConfig {
  std::string table = "berth";
  std::string bridge = "berth0";
  std::string subnet = "10.88.0.0/16";
  // Host ports picked for hostPort 0 come from this range.
  uint16_t ephemeral_low = 32768;
  uint16_t ephemeral_high = 60999;
  // The packet mark bit(s) set on connections to published ports (see the
  // isolation notes above: they may be bridged port to port when
  // br_netfilter is loaded). OR-ed into the mark, other bits kept: pick one
  // that nothing else on the host uses (kube-proxy: 0x4000, 0x8000).
  uint32_t published_mark = 0x01000000;
  // Where net.ipv4.* sysctls are written (a fixture tree in unit tests).
  std::string proc_sys = "/proc/sys";
};

class Firewall {
 public:
  explicit Firewall(FirewallConfig cfg);
  Firewall(const Firewall&) = delete;
  Firewall& operator=(const Firewall&) = delete;

  // Creates the tables and chains if missing and (re)writes the masquerade
  // and the bridge forward chain's rules; sets net.ipv4.ip_forward and route_localnet on the bridge
  // where they are not 1 yet. The bridge must exist.
  Result<void> ensure();
  // Deletes both tables (nothing to do if they are gone). Sysctls are left as
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
  // Sets the rules of service `owner` (see ServiceRules above), replacing
  // every rule it had, in one transaction. A listener port mapped or
  // balanced by another owner is an error naming it. ensure() first.
  Result<void> set_service(const std::string& owner, const ServiceRules& rules);
  // Removes every rule of `owner` in the ip table (nothing to do if none).
  Result<void> remove_service(const std::string& owner);
  // Registers `port` (see TenantPort and the isolation notes above) for
  // `owner` (the microhost id), in one transaction; rules `owner` had
  // already (a re-registration after a daemon restart, or a new account)
  // are replaced in the same transaction. ensure() first. Call it before the
  // task's processes start (a warm microhost: when it is given to a task);
  // until then the port reaches only the host and other unregistered ports.
  // One owner per veth: registering a veth under a second owner is not
  // detected.
  Result<void> add_tenant_port(const std::string& owner, const TenantPort& port);
  // Removes the tenant-port rules of `owner`, and its account's chain if it
  // was the last port of the account; nothing to do if there are none.
  Result<void> remove_tenant_port(const std::string& owner);
  // Removes every rule whose owner is not in `live` (microhost ids and load
  // balancer owners alike), in the ip and the bridge table, and account
  // chains left empty; returns the owners removed, sorted.
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

// ---- tenant ports (the bridge table) ----
// The account's chain: "acct_<account>".
std::string account_chain(const std::string& account);
// Account 1-32 of [A-Za-z0-9_]; veth a link name; ip not 0; mac six
// lowercase hex pairs, unicast.
Result<void> validate_tenant_port(const TenantPort& port);
// The bridge table, its chains and the forward chain's own rules (run in the
// same transaction as build_ensure_script).
std::string build_tenant_ensure_script(const FirewallConfig& cfg);
// The account's address set in the ip table: "acct_<account>".
std::string account_set(const std::string& account);
// The ip table's service chains (run with build_ensure_script).
std::string build_service_ensure_script(const FirewallConfig& cfg);
// An element of an account set and its owner, as listed.
struct SetElementRef {
  std::string set;
  std::string value;
  bool operator==(const SetElementRef&) const = default;
};
// Deletes `elements` from their sets in the ip table.
std::string build_set_delete_script(const FirewallConfig& cfg,
                                    const std::vector<SetElementRef>& elements);
// The port's address in its account's set (created if missing), owned by
// `owner`, after deleting `replaced` (the owner's elements found); any
// element of the same address (a stale owner's) is replaced too.
std::string build_tenant_set_script(const FirewallConfig& cfg, const std::string& owner,
                                    const TenantPort& port,
                                    const std::vector<SetElementRef>& replaced);
// Deletes `replaced` (rules of the ip table) and adds the service's rules.
std::string build_service_script(const FirewallConfig& cfg, const std::string& owner,
                                 const ServiceRules& rules, const std::vector<RuleRef>& replaced);
// Account 1-32 of [A-Za-z0-9_]; a VIP needs a vip_port; backends have an
// address and a port.
Result<void> validate_service_rules(const ServiceRules& rules);

// Deletes the bridge table, idempotently.
std::string build_tenant_teardown_script(const FirewallConfig& cfg);
// Deletes `rules` and then the chains `empty_chains` of the bridge table.
std::string build_tenant_delete_script(const FirewallConfig& cfg, const std::vector<RuleRef>& rules,
                                       const std::vector<std::string>& empty_chains);
// Deletes `replaced` (and `empty_chains`), then adds the port's rules.
std::string build_tenant_port_script(const FirewallConfig& cfg, const std::string& owner,
                                     const TenantPort& port, const std::vector<RuleRef>& replaced,
                                     const std::vector<std::string>& empty_chains);

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
