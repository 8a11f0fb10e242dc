#include "netns/firewall.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "common/fd.h"
#include "common/fs.h"
#include "netns/nft.h"

namespace berth::netns {

namespace {

constexpr std::string_view kPrerouting = "prerouting";
constexpr std::string_view kOutput = "output";
constexpr size_t kMaxOwnerLength = 64;

std::string ipv4(uint32_t addr) {
  in_addr a{htonl(addr)};
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

bool all_of_chars(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

// The operation's name in front of an inner error, which keeps its errno:
// "firewall: add port mappings for owner web-1: nft: Error: ...".
std::unexpected<Error> failed(std::string_view what, Error e) {
  std::string inner = e.step.empty() || e.step == "fs" ? e.message : e.step + ": " + e.message;
  return std::unexpected(Error{"firewall", e.err, fmt::format("{}: {}", what, inner)});
}

// libnftables 1.0 waits for netlink's answers with select(2), which cannot
// watch an fd at or above FD_SETSIZE (1024): glibc's fortified FD_SET
// aborts the process ("bit out of range 0 - FD_SETSIZE on fd_set"). A
// context opens its netlink socket when it is made, on the lowest free fd,
// so a context made while berthd holds a socket and a pidfd per task would
// abort berthd at about 500 tasks. The contexts are made once, at the
// process's first firewall operation (start-up, few fds open), and reused
// by every Firewall of the process, one operation at a time.
struct SharedContexts {
  std::mutex mu;
  std::optional<nft::Context> text, json;
};

SharedContexts& shared_contexts() {
  static SharedContexts s;
  return s;
}

// Runs f(context) with the process's context of `output`, made on first use.
template <class F>
auto with_context(nft::Context::Output output, std::string_view what, F f)
    -> decltype(f(std::declval<const nft::Context&>())) {
  SharedContexts& s = shared_contexts();
  std::lock_guard lock(s.mu);
  std::optional<nft::Context>& slot = output == nft::Context::Output::json ? s.json : s.text;
  if (!slot) {
    auto ctx = nft::Context::open(output);
    if (!ctx) return failed(what, ctx.error());
    slot.emplace(std::move(*ctx));
  }
  return f(*slot);
}

Result<std::string> run_nft(const std::string& script, std::string_view what) {
  return with_context(nft::Context::Output::text, what,
                      [&](const nft::Context& ctx) -> Result<std::string> {
                        auto out = ctx.run(script);
                        if (!out) return failed(what, out.error());
                        return out;
                      });
}

// The JSON listing of `family` table cfg.table, or nullopt if it does not
// exist.
Result<std::optional<std::string>> list_table(const FirewallConfig& cfg, std::string_view family,
                                              std::string_view what) {
  return with_context(nft::Context::Output::json, what,
                      [&](const nft::Context& ctx) -> Result<std::optional<std::string>> {
                        // Listing a missing table fails with only "No such file or
                        // directory": look for it first, so that absence is not mistaken
                        // for other failures.
                        auto tables = ctx.run(fmt::format("list tables {}", family));
                        if (!tables) return failed(what, tables.error());
                        auto names = nft::parse_table_names(*tables);
                        if (!names) return failed(what, names.error());
                        if (std::find(names->begin(), names->end(), cfg.table) == names->end())
                          return std::optional<std::string>();
                        auto listing = ctx.run(fmt::format("list table {} {}", family, cfg.table));
                        if (!listing) return failed(what, listing.error());
                        return std::optional(std::move(*listing));
                      });
}

// The rules of the ip table, or nullopt if the table does not exist.
Result<std::optional<std::vector<nft::Rule>>> list_rules(const FirewallConfig& cfg,
                                                         std::string_view what) {
  BERTH_ASSIGN(auto listing, list_table(cfg, "ip", what));
  if (!listing) return std::optional<std::vector<nft::Rule>>();
  auto rules = nft::parse_rules(*listing);
  if (!rules) return failed(what, rules.error());
  return std::optional(std::move(*rules));
}

// The ip table: its rules and the elements of its sets.
struct IpTable {
  std::vector<nft::Rule> rules;
  std::vector<nft::SetElement> elements;
};

Result<std::optional<IpTable>> list_ip_table(const FirewallConfig& cfg, std::string_view what) {
  BERTH_ASSIGN(auto listing, list_table(cfg, "ip", what));
  if (!listing) return std::optional<IpTable>();
  auto rules = nft::parse_rules(*listing);
  if (!rules) return failed(what, rules.error());
  auto elements = nft::parse_set_elements(*listing);
  if (!elements) return failed(what, elements.error());
  return std::optional(IpTable{std::move(*rules), std::move(*elements)});
}

// The bridge table: its rules and chains.
struct BridgeTable {
  std::vector<nft::Rule> rules;
  std::vector<std::string> chains;
};

Result<std::optional<BridgeTable>> list_bridge_table(const FirewallConfig& cfg,
                                                     std::string_view what) {
  BERTH_ASSIGN(auto listing, list_table(cfg, "bridge", what));
  if (!listing) return std::optional<BridgeTable>();
  auto rules = nft::parse_rules(*listing);
  if (!rules) return failed(what, rules.error());
  auto chains = nft::parse_chain_names(*listing);
  if (!chains) return failed(what, chains.error());
  return std::optional(BridgeTable{std::move(*rules), std::move(*chains)});
}

constexpr std::string_view kAccountChainPrefix = "acct_";

// The account chains that hold no rule once `removed` are gone, except
// `keep` (the chain a new port is about to be added to).
std::vector<std::string> emptied_account_chains(const BridgeTable& table,
                                                const std::vector<RuleRef>& removed,
                                                const std::string& keep = "") {
  std::map<std::string, size_t> left;
  for (const auto& c : table.chains) {
    if (c.starts_with(kAccountChainPrefix) && c != keep) left[c] = 0;
  }
  for (const auto& r : table.rules) {
    auto it = left.find(r.chain);
    if (it == left.end()) continue;
    bool going =
        std::find(removed.begin(), removed.end(), RuleRef{r.chain, r.handle}) != removed.end();
    if (!going) ++it->second;
  }
  std::vector<std::string> empty;
  for (const auto& [chain, n] : left) {
    if (n == 0) empty.push_back(chain);
  }
  return empty;
}

bool has_owner(const nft::Rule& rule, const std::string& owner) {
  auto o = comment_owner(rule.comment);
  return o && *o == owner;
}

// The account-set elements whose owner `pred` picks.
template <class Pred>
std::vector<SetElementRef> account_elements(const std::vector<nft::SetElement>& elements,
                                            Pred pred) {
  std::vector<SetElementRef> out;
  for (const auto& e : elements) {
    auto o = comment_owner(e.comment);
    if (e.set.starts_with(kAccountChainPrefix) && o && pred(*o)) out.push_back({e.set, e.value});
  }
  return out;
}

std::string comment(const std::string& owner) {
  return fmt::format("comment \"{}{}\"", kCommentPrefix, owner);
}

// The chains whose rules take host ports (the service chains match VIP
// ports, which are not the host's).
bool host_port_chain(const std::string& chain) {
  return chain == kPrerouting || chain == kOutput;
}

// Who maps each (protocol, host port) already.
using PortOwners = std::map<std::pair<std::string, uint16_t>, std::string>;

PortOwners port_owners(const std::vector<nft::Rule>& rules) {
  PortOwners owners;
  for (const auto& r : rules) {
    if (r.l4proto.empty() || !host_port_chain(r.chain)) continue;
    owners[{r.l4proto, r.dport}] = comment_owner(r.comment).value_or(r.comment);
  }
  return owners;
}

std::unexpected<Error> port_taken(std::string_view what, Protocol proto, uint16_t port,
                                  const std::string& owner) {
  return error("firewall", "{}: {} host port {} is already mapped (owner {})", what,
               protocol_name(proto), port, owner);
}

Result<void> validate_subnet(const std::string& subnet) {
  size_t slash = subnet.find('/');
  std::string ip = subnet.substr(0, slash);
  std::string len = slash == std::string::npos ? "" : subnet.substr(slash + 1);
  in_addr addr{};
  unsigned prefix = 99;
  auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), prefix);
  bool ok = ::inet_pton(AF_INET, ip.c_str(), &addr) == 1 && ec == std::errc() &&
            end == len.data() + len.size() && prefix <= 32;
  // Host bits set ("10.88.0.1/16") would be a typo for some other network.
  if (ok) ok = (ntohl(addr.s_addr) & (prefix == 32 ? 0 : 0xffffffffu >> prefix)) == 0;
  if (!ok)
    return error("firewall", "invalid subnet \"{}\": want a network like 10.88.0.0/16", subnet);
  return {};
}

}  // namespace

std::string_view protocol_name(Protocol p) {
  return p == Protocol::tcp ? "tcp" : "udp";
}

// ---- pure pieces -------------------------------------------------------------

std::optional<std::string> comment_owner(std::string_view comment) {
  if (!comment.starts_with(kCommentPrefix) || comment.size() == kCommentPrefix.size())
    return std::nullopt;
  return std::string(comment.substr(kCommentPrefix.size()));
}

Result<void> validate_owner(const std::string& owner) {
  if (owner.empty() || owner.size() > kMaxOwnerLength || owner.front() == '@' ||
      !all_of_chars(owner, "_.:-"))
    return error("firewall",
                 "invalid owner \"{}\": 1-{} letters, digits and _.:- (not starting with @)", owner,
                 kMaxOwnerLength);
  return {};
}

Result<void> validate_config(const FirewallConfig& cfg) {
  const auto& t = cfg.table;
  if (t.empty() || t.size() > 64 || !all_of_chars(t, "_") || (t.front() >= '0' && t.front() <= '9'))
    return error("firewall",
                 "invalid table name \"{}\": 1-64 letters, digits and _, not starting with a digit",
                 t);
  const auto& b = cfg.bridge;
  // IFNAMSIZ - 1.
  if (b.empty() || b.size() > 15 || !all_of_chars(b, "_.-"))
    return error("firewall", "invalid bridge name \"{}\": 1-15 letters, digits and _.-", b);
  BERTH_TRY(validate_subnet(cfg.subnet));
  if (cfg.published_mark == 0)
    return error("firewall", "invalid published_mark 0: want the packet mark bit(s) to use");
  if (cfg.ephemeral_low == 0 || cfg.ephemeral_low > cfg.ephemeral_high)
    return error("firewall", "invalid host port range {}-{}", cfg.ephemeral_low,
                 cfg.ephemeral_high);
  return {};
}

std::string build_ensure_script(const FirewallConfig& cfg) {
  const std::string t = "ip " + cfg.table;
  // No filter forward chain: an accept in this table cannot overrule a drop
  // in another (every base chain on a hook runs), and with no drop anywhere
  // forwarded traffic passes already.
  std::string s;
  s += fmt::format("add table {}\n", t);
  s += fmt::format(
      "add chain {} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n",
      t);
  // nft 1.0 knows the "dstnat" priority name only in prerouting; -100 is its
  // value.
  s += fmt::format("add chain {} output {{ type nat hook output priority -100; policy accept; }}\n",
                   t);
  s += fmt::format(
      "add chain {} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n",
      t);
  // postrouting holds only the table's own rules: flushing and refilling it
  // in the same transaction makes ensure() idempotent, and a restarted daemon
  // with a changed subnet or bridge rewrites them without a window.
  s += fmt::format("flush chain {} postrouting\n", t);
  // Egress: the subnet's traffic leaving anywhere but the bridge.
  s += fmt::format("add rule {} postrouting ip saddr {} oifname != \"{}\" masquerade {}\n", t,
                   cfg.subnet, cfg.bridge, comment("@egress"));
  // Hairpin: a task reaching a mapped port of its own or a sibling's. Without
  // it (and without br_netfilter, which un-NATs bridged frames) the answer
  // goes straight back over the bridge from the container's address, which
  // the client never talked to.
  s += fmt::format(
      "add rule {} postrouting oifname \"{}\" ct status dnat ip saddr {} masquerade {}\n", t,
      cfg.bridge, cfg.subnet, comment("@hairpin"));
  // The host's own connections to a mapped port: from 127.0.0.1 (routable to
  // the bridge only with route_localnet) the task could not answer at all.
  s += fmt::format(
      "add rule {} postrouting oifname \"{}\" ct status dnat fib saddr type local masquerade {}\n",
      t, cfg.bridge, comment("@host"));
  return s;
}

std::string build_teardown_script(const FirewallConfig& cfg) {
  // `add` first: deleting a table that is not there is an error, and
  // teardown is idempotent.
  return fmt::format("add table ip {0}\ndelete table ip {0}\n", cfg.table);
}

std::string build_port_mapping_script(const FirewallConfig& cfg, const std::string& owner,
                                      uint32_t ip, const std::vector<PortMapping>& maps) {
  std::string s;
  for (const auto& m : maps) {
    // prerouting: from other namespaces; output: from the host itself. Both
    // for any of the host's addresses, as a published port does.
    for (auto chain : {kPrerouting, kOutput}) {
      s += fmt::format("add rule ip {} {} fib daddr type local {} dport {} dnat to {}:{} {}\n",
                       cfg.table, chain, protocol_name(m.protocol), m.host_port, ipv4(ip),
                       m.container_port, comment(owner));
    }
  }
  return s;
}

namespace {

// "dnat ip to numgen random mod N map { 0 : a . p, ... }". numgen picks per
// new connection (NAT rules see only a connection's first packet);
// established ones stay on their backend through conntrack.
std::string balanced_dnat(const std::vector<Backend>& backends) {
  std::string map;
  for (size_t i = 0; i < backends.size(); ++i) {
    if (i > 0) map += ", ";
    map += fmt::format("{} : {} . {}", i, ipv4(backends[i].ip), backends[i].port);
  }
  return fmt::format("dnat ip to numgen random mod {} map {{ {} }}", backends.size(), map);
}

}  // namespace

std::string build_load_balancer_script(const FirewallConfig& cfg, const std::string& owner,
                                       Protocol proto, uint16_t host_port,
                                       const std::vector<Backend>& backends,
                                       const std::vector<RuleRef>& replaced) {
  std::string s = build_delete_script(cfg, replaced);
  if (backends.empty()) return s;
  for (auto chain : {kPrerouting, kOutput}) {
    s += fmt::format("add rule ip {} {} fib daddr type local {} dport {} {} {}\n", cfg.table, chain,
                     protocol_name(proto), host_port, balanced_dnat(backends), comment(owner));
  }
  return s;
}

std::string account_set(const std::string& account) {
  return std::string(kAccountChainPrefix) + account;
}

std::string build_service_ensure_script(const FirewallConfig& cfg) {
  const std::string t = "ip " + cfg.table;
  std::string s;
  // Before conntrack's NAT (-100): every packet, with its original address.
  s += fmt::format(
      "add chain {} vip_filter {{ type filter hook prerouting priority -150; policy accept; }}\n",
      t);
  // Before the port mappings' chain: the first chain that NATs a connection
  // wins, the later ones are skipped for it.
  s += fmt::format(
      "add chain {} vip_nat {{ type nat hook prerouting priority -101; policy accept; }}\n", t);
  s += fmt::format(
      "add chain {} vip_local {{ type filter hook input priority 0; policy accept; }}\n", t);
  s += fmt::format(
      "add chain {} vip_host {{ type filter hook output priority 0; policy accept; }}\n", t);
  return s;
}

std::string build_set_delete_script(const FirewallConfig& cfg,
                                    const std::vector<SetElementRef>& elements) {
  std::string s;
  for (const auto& e : elements)
    s += fmt::format("delete element ip {} {} {{ {} }}\n", cfg.table, e.set, e.value);
  return s;
}

std::string build_tenant_set_script(const FirewallConfig& cfg, const std::string& owner,
                                    const TenantPort& port,
                                    const std::vector<SetElementRef>& replaced) {
  const std::string t = "ip " + cfg.table;
  const std::string set = account_set(port.account);
  const std::string addr = ipv4(port.ip);
  std::string s = fmt::format("add set {} {} {{ type ipv4_addr; }}\n", t, set);
  std::vector<SetElementRef> others;
  for (const auto& e : replaced) {
    if (!(e.set == set && e.value == addr)) others.push_back(e);
  }
  s += build_set_delete_script(cfg, others);
  // add (a no-op if it is there), delete, add: the element ends up with this
  // owner's comment whoever held it before (a stale owner's, after a crash).
  s += fmt::format("add element {} {} {{ {} }}\n", t, set, addr);
  s += fmt::format("delete element {} {} {{ {} }}\n", t, set, addr);
  s += fmt::format("add element {} {} {{ {} {} }}\n", t, set, addr, comment(owner));
  return s;
}

std::string build_service_script(const FirewallConfig& cfg, const std::string& owner,
                                 const ServiceRules& r, const std::vector<RuleRef>& replaced) {
  std::string s = build_delete_script(cfg, replaced);
  const std::string t = "ip " + cfg.table;
  const std::string c = comment(owner);
  const std::string_view proto = protocol_name(r.protocol);
  if (r.vip != 0) {
    const std::string vip = ipv4(r.vip);
    const std::string set = account_set(r.account);
    s += fmt::format("add set {} {} {{ type ipv4_addr; }}\n", t, set);
    s += fmt::format("add rule {} vip_filter ip daddr {} ip saddr @{} {} dport {} accept {}\n", t,
                     vip, set, proto, r.vip_port, c);
    s += fmt::format("add rule {} vip_filter ip daddr {} drop {}\n", t, vip, c);
    if (!r.backends.empty()) {
      s += fmt::format("add rule {} vip_nat ip daddr {} {} dport {} {} {}\n", t, vip, proto,
                       r.vip_port, balanced_dnat(r.backends), c);
    }
    s += fmt::format(
        "add rule {} vip_local ip daddr {} meta l4proto tcp reject with tcp reset {}\n", t, vip, c);
    s += fmt::format("add rule {} vip_local ip daddr {} reject {}\n", t, vip, c);
    s += fmt::format("add rule {} vip_host ip daddr {} drop {}\n", t, vip, c);
  }
  if (r.listener_port != 0) {
    if (!r.backends.empty()) {
      s += build_load_balancer_script(cfg, owner, r.protocol, r.listener_port, r.backends, {});
    } else {
      // Reserved for the owner (no other mapping takes it), refused at once.
      for (auto chain : {kPrerouting, kOutput}) {
        s += fmt::format("add rule {} {} fib daddr type local {} dport {} accept {}\n", t, chain,
                         proto, r.listener_port, c);
      }
      s += fmt::format("add rule {} vip_local fib daddr type local {} dport {} {} {}\n", t, proto,
                       r.listener_port,
                       r.protocol == Protocol::tcp ? "reject with tcp reset" : "reject", c);
    }
  }
  return s;
}

Result<void> validate_service_rules(const ServiceRules& r) {
  if (r.account.empty() || r.account.size() > 32 || !all_of_chars(r.account, "_"))
    return error("firewall", "invalid account \"{}\": 1-32 letters, digits and _", r.account);
  if (r.vip != 0 && r.vip_port == 0)
    return error("firewall", "service address {} without a port", ipv4(r.vip));
  for (const auto& b : r.backends) {
    if (b.ip == 0 || b.port == 0)
      return error("firewall", "invalid backend {}:{}", ipv4(b.ip), b.port);
  }
  return {};
}

std::string build_delete_script(const FirewallConfig& cfg, const std::vector<RuleRef>& rules) {
  std::string s;
  for (const auto& r : rules)
    s += fmt::format("delete rule ip {} {} handle {}\n", cfg.table, r.chain, r.handle);
  return s;
}

// ---- tenant ports ----

std::string account_chain(const std::string& account) {
  return std::string(kAccountChainPrefix) + account;
}

namespace {

bool is_mac(std::string_view mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    char c = mac[i];
    bool ok = i % 3 == 2 ? c == ':' : (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    if (!ok) return false;
  }
  // The low bit of the first octet marks a group address: never a source.
  int first = (mac[0] >= 'a' ? mac[0] - 'a' + 10 : mac[0] - '0') * 16 +
              (mac[1] >= 'a' ? mac[1] - 'a' + 10 : mac[1] - '0');
  return (first & 1) == 0;
}

}  // namespace

Result<void> validate_tenant_port(const TenantPort& port) {
  if (port.account.empty() || port.account.size() > 32 || !all_of_chars(port.account, "_"))
    return error("firewall", "invalid account \"{}\": 1-32 letters, digits and _", port.account);
  const auto& v = port.host_veth;
  if (v.empty() || v.size() > 15 || !all_of_chars(v, "_.-"))
    return error("firewall", "invalid veth name \"{}\": 1-15 letters, digits and _.-", v);
  if (port.ip == 0) return error("firewall", "veth {}: no address", v);
  if (!is_mac(port.mac))
    return error("firewall",
                 "veth {}: invalid MAC \"{}\": want a unicast address like 02:b7:0a:58:00:02", v,
                 port.mac);
  return {};
}

std::string build_tenant_ensure_script(const FirewallConfig& cfg) {
  const std::string t = "bridge " + cfg.table;
  const std::string ip = "ip " + cfg.table;
  std::string s;
  // Right after DNAT (dstnat = -100), for every packet of a translated
  // connection (NAT chains see only the first), both directions.
  s += fmt::format(
      "add chain {} published {{ type filter hook prerouting priority -99; policy accept; }}\n",
      ip);
  s += fmt::format("flush chain {} published\n", ip);
  s += fmt::format("add rule {} published ct status dnat meta mark set meta mark or {:#x} {}\n", ip,
                   cfg.published_mark, comment("@published"));
  s += fmt::format("add table {}\n", t);
  // Before anything else on the hook (filter = -200 in the bridge family).
  s += fmt::format(
      "add chain {} prerouting {{ type filter hook prerouting priority -200; policy accept; }}\n",
      t);
  s += fmt::format(
      "add chain {} forward {{ type filter hook forward priority 0; policy accept; }}\n", t);
  s += fmt::format("add chain {} tenant_src\n", t);
  s += fmt::format("add chain {} tenant_dst\n", t);
  // forward holds only the table's own rules: flushed and refilled in the
  // same transaction, as the ip table's postrouting.
  s += fmt::format("flush chain {} forward\n", t);
  // Connections to published ports (DNAT to a task): with br_netfilter
  // loaded, a packet that DNAT sends to another port of the same bridge is
  // bridged there directly (its answers too), through this hook, from the
  // client's port. The bridge family cannot see conntrack here (no
  // nf_conntrack_bridge), so the ip table's "published" chain marks them.
  // Tasks cannot forge the mark: it is cleared when a packet crosses from
  // a netns over a veth.
  s += fmt::format("add rule {} forward meta mark and {:#x} != 0 accept {}\n", t,
                   cfg.published_mark, comment("@published"));
  s += fmt::format("add rule {} forward jump tenant_src {}\n", t, comment("@tenant-src"));
  s += fmt::format("add rule {} forward jump tenant_dst {}\n", t, comment("@tenant-dst"));
  return s;
}

std::string build_tenant_teardown_script(const FirewallConfig& cfg) {
  return fmt::format("add table bridge {0}\ndelete table bridge {0}\n", cfg.table);
}

std::string build_tenant_delete_script(const FirewallConfig& cfg, const std::vector<RuleRef>& rules,
                                       const std::vector<std::string>& empty_chains) {
  std::string s;
  // Rules first: a chain is deleted only once no jump refers to it (the
  // kernel counts references as the transaction goes).
  for (const auto& r : rules)
    s += fmt::format("delete rule bridge {} {} handle {}\n", cfg.table, r.chain, r.handle);
  for (const auto& c : empty_chains) s += fmt::format("delete chain bridge {} {}\n", cfg.table, c);
  return s;
}

std::string build_tenant_port_script(const FirewallConfig& cfg, const std::string& owner,
                                     const TenantPort& port, const std::vector<RuleRef>& replaced,
                                     const std::vector<std::string>& empty_chains) {
  std::string s = build_tenant_delete_script(cfg, replaced, empty_chains);
  const std::string t = "bridge " + cfg.table;
  const std::string acct = account_chain(port.account);
  const std::string in = fmt::format("iifname \"{}\"", port.host_veth);
  const std::string c = comment(owner);
  const std::string addr = ipv4(port.ip);
  s += fmt::format("add chain {} {}\n", t, acct);
  // Anti-spoofing: only its own MAC, IPv4 and ARP, its own address.
  s += fmt::format("add rule {} prerouting {} ether saddr != {} drop {}\n", t, in, port.mac, c);
  s += fmt::format("add rule {} prerouting {} ether type != {{ ip, arp }} drop {}\n", t, in, c);
  s += fmt::format("add rule {} prerouting {} ip saddr != {} drop {}\n", t, in, addr, c);
  s += fmt::format("add rule {} prerouting {} arp saddr ether != {} drop {}\n", t, in, port.mac, c);
  s += fmt::format("add rule {} prerouting {} arp saddr ip != {} drop {}\n", t, in, addr, c);
  // Isolation: to its account's ports only; from registered ports only.
  s += fmt::format("add rule {} tenant_src {} jump {} {}\n", t, in, acct, c);
  s += fmt::format("add rule {} tenant_src {} drop {}\n", t, in, c);
  s += fmt::format("add rule {} tenant_dst oifname \"{}\" drop {}\n", t, port.host_veth, c);
  s += fmt::format("add rule {} {} oifname \"{}\" accept {}\n", t, acct, port.host_veth, c);
  return s;
}

std::optional<uint16_t> pick_host_port(uint16_t low, uint16_t high, uint32_t start,
                                       const std::set<uint16_t>& used,
                                       const std::function<bool(uint16_t)>& bindable) {
  if (low > high) return std::nullopt;
  uint32_t n = uint32_t{high} - low + 1;
  uint32_t first = start >= low && start <= high ? start - low : 0;
  for (uint32_t i = 0; i < n; ++i) {
    auto port = static_cast<uint16_t>(low + (first + i) % n);
    if (!used.contains(port) && bindable(port)) return port;
  }
  return std::nullopt;
}

bool host_port_bindable(Protocol proto, uint16_t port) {
  int type = proto == Protocol::tcp ? SOCK_STREAM : SOCK_DGRAM;
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
}

Result<bool> ensure_sysctl(const std::string& proc_sys, const std::string& key,
                           std::string_view value) {
  std::string path = fs::join(proc_sys, key);
  BERTH_ASSIGN(std::string current, fs::read_file(path));
  while (!current.empty() && (current.back() == '\n' || current.back() == ' ')) current.pop_back();
  if (current == value) return false;
  BERTH_TRY(fs::write_file(path, value));
  return true;
}

// ---- Firewall ------------------------------------------------------------------

Firewall::Firewall(FirewallConfig cfg) : cfg_(std::move(cfg)), next_port_(cfg_.ephemeral_low) {}

Result<void> Firewall::ensure() {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("ensure table ip {}", cfg_.table);
  BERTH_TRY(validate_config(cfg_));
  std::string bridge_conf = "net/ipv4/conf/" + cfg_.bridge;
  if (!fs::exists(fs::join(cfg_.proc_sys, bridge_conf)))
    return error("firewall", "{}: bridge {} does not exist (no {})", what, cfg_.bridge,
                 fs::join(cfg_.proc_sys, bridge_conf));
  BERTH_TRY(run_nft(build_ensure_script(cfg_) + build_tenant_ensure_script(cfg_) +
                        build_service_ensure_script(cfg_),
                    what));
  // Forwarding carries everything between the bridge and the rest of the
  // host; route_localnet lets DNAT send 127.0.0.1-sourced packets (a host
  // process connecting to 127.0.0.1:hostPort) out of the bridge instead of
  // dropping them as martians.
  for (const auto& key : {std::string("net/ipv4/ip_forward"), bridge_conf + "/route_localnet"}) {
    auto wrote = ensure_sysctl(cfg_.proc_sys, key, "1");
    if (!wrote) return failed(what, wrote.error());
  }
  return {};
}

Result<void> Firewall::teardown() {
  std::lock_guard lock(mu_);
  BERTH_TRY(validate_config(cfg_));
  BERTH_TRY(run_nft(build_teardown_script(cfg_) + build_tenant_teardown_script(cfg_),
                    fmt::format("delete tables ip and bridge {}", cfg_.table)));
  return {};
}

Result<std::vector<PortMapping>> Firewall::add_port_mappings(const std::string& owner, uint32_t ip,
                                                             const std::vector<PortMapping>& maps) {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("add port mappings for owner {}", owner);
  BERTH_TRY(validate_config(cfg_));
  BERTH_TRY(validate_owner(owner));
  if (ip == 0) return error("firewall", "{}: no container address", what);
  if (maps.empty()) return maps;
  BERTH_ASSIGN(auto rules, list_rules(cfg_, what));
  if (!rules)
    return error("firewall", "{}: table ip {} does not exist (ensure() first)", what, cfg_.table);
  PortOwners owners = port_owners(*rules);
  std::vector<PortMapping> resolved;
  for (auto m : maps) {
    auto proto = std::string(protocol_name(m.protocol));
    if (m.container_port == 0)
      return error("firewall", "{}: {} mapping without a container port", what, proto);
    if (m.host_port == 0) {
      std::set<uint16_t> used;
      for (const auto& [key, o] : owners) {
        if (key.first == proto) used.insert(key.second);
      }
      auto port = pick_host_port(cfg_.ephemeral_low, cfg_.ephemeral_high, next_port_, used,
                                 [&](uint16_t p) { return host_port_bindable(m.protocol, p); });
      if (!port)
        return error("firewall", "{}: no free {} host port in {}-{}", what, proto,
                     cfg_.ephemeral_low, cfg_.ephemeral_high);
      m.host_port = *port;
      // Not the same port again right away: conntrack entries of a mapping
      // just removed (UDP ones especially) would still lead to the old task.
      next_port_ = uint32_t{*port} + 1;
    } else if (auto it = owners.find({proto, m.host_port}); it != owners.end()) {
      return port_taken(what, m.protocol, m.host_port, it->second);
    }
    owners[{proto, m.host_port}] = owner;  // also catches duplicates within `maps`
    resolved.push_back(m);
  }
  BERTH_TRY(run_nft(build_port_mapping_script(cfg_, owner, ip, resolved), what));
  return resolved;
}

Result<void> Firewall::remove_port_mappings(const std::string& owner) {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("remove port mappings of owner {}", owner);
  BERTH_TRY(validate_config(cfg_));
  BERTH_TRY(validate_owner(owner));
  BERTH_ASSIGN(auto rules, list_rules(cfg_, what));
  if (!rules) return {};
  std::vector<RuleRef> refs;
  for (const auto& r : *rules) {
    if (has_owner(r, owner) && !r.numgen) refs.push_back({r.chain, r.handle});
  }
  if (refs.empty()) return {};
  BERTH_TRY(run_nft(build_delete_script(cfg_, refs), what));
  return {};
}

Result<void> Firewall::set_load_balancer(const std::string& owner, Protocol proto,
                                         uint16_t host_port, const std::vector<Backend>& backends) {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("set load balancer of {} host port {} for owner {}",
                                       protocol_name(proto), host_port, owner);
  BERTH_TRY(validate_config(cfg_));
  BERTH_TRY(validate_owner(owner));
  if (host_port == 0) return error("firewall", "{}: a load balancer needs a host port", what);
  for (const auto& b : backends) {
    if (b.ip == 0 || b.port == 0)
      return error("firewall", "{}: invalid backend {}:{}", what, ipv4(b.ip), b.port);
  }
  BERTH_ASSIGN(auto rules, list_rules(cfg_, what));
  if (!rules) {
    if (backends.empty()) return {};
    return error("firewall", "{}: table ip {} does not exist (ensure() first)", what, cfg_.table);
  }
  std::vector<RuleRef> replaced;
  for (const auto& r : *rules) {
    if (r.l4proto != protocol_name(proto) || r.dport != host_port || !host_port_chain(r.chain))
      continue;
    if (!has_owner(r, owner) || !r.numgen)
      return port_taken(what, proto, host_port, comment_owner(r.comment).value_or(r.comment));
    replaced.push_back({r.chain, r.handle});
  }
  if (replaced.empty() && backends.empty()) return {};
  BERTH_TRY(
      run_nft(build_load_balancer_script(cfg_, owner, proto, host_port, backends, replaced), what));
  return {};
}

Result<void> Firewall::set_service(const std::string& owner, const ServiceRules& rules) {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("set service rules of owner {}", owner);
  BERTH_TRY(validate_config(cfg_));
  BERTH_TRY(validate_owner(owner));
  if (auto v = validate_service_rules(rules); !v) return failed(what, v.error());
  BERTH_ASSIGN(auto current, list_rules(cfg_, what));
  if (!current)
    return error("firewall", "{}: table ip {} does not exist (ensure() first)", what, cfg_.table);
  std::vector<RuleRef> replaced;
  for (const auto& r : *current) {
    if (has_owner(r, owner)) {
      replaced.push_back({r.chain, r.handle});
    } else if (rules.listener_port != 0 && host_port_chain(r.chain) &&
               r.l4proto == protocol_name(rules.protocol) && r.dport == rules.listener_port) {
      return port_taken(what, rules.protocol, rules.listener_port,
                        comment_owner(r.comment).value_or(r.comment));
    }
  }
  BERTH_TRY(run_nft(build_service_script(cfg_, owner, rules, replaced), what));
  return {};
}

Result<void> Firewall::remove_service(const std::string& owner) {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("remove service rules of owner {}", owner);
  BERTH_TRY(validate_config(cfg_));
  BERTH_TRY(validate_owner(owner));
  BERTH_ASSIGN(auto rules, list_rules(cfg_, what));
  if (!rules) return {};
  std::vector<RuleRef> refs;
  for (const auto& r : *rules) {
    if (has_owner(r, owner)) refs.push_back({r.chain, r.handle});
  }
  if (refs.empty()) return {};
  BERTH_TRY(run_nft(build_delete_script(cfg_, refs), what));
  return {};
}

Result<void> Firewall::add_tenant_port(const std::string& owner, const TenantPort& port) {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("add tenant port {} of account {} for owner {}",
                                       port.host_veth, port.account, owner);
  BERTH_TRY(validate_config(cfg_));
  BERTH_TRY(validate_owner(owner));
  BERTH_TRY(validate_tenant_port(port));
  BERTH_ASSIGN(auto table, list_bridge_table(cfg_, what));
  if (!table)
    return error("firewall", "{}: table bridge {} does not exist (ensure() first)", what,
                 cfg_.table);
  std::vector<RuleRef> replaced;
  for (const auto& r : table->rules) {
    if (has_owner(r, owner)) replaced.push_back({r.chain, r.handle});
  }
  auto empty = emptied_account_chains(*table, replaced, account_chain(port.account));
  BERTH_ASSIGN(auto ip, list_ip_table(cfg_, what));
  if (!ip)
    return error("firewall", "{}: table ip {} does not exist (ensure() first)", what, cfg_.table);
  auto elements = account_elements(ip->elements, [&](const std::string& o) { return o == owner; });
  // One transaction: the bridge rules and the account set's element.
  BERTH_TRY(run_nft(build_tenant_port_script(cfg_, owner, port, replaced, empty) +
                        build_tenant_set_script(cfg_, owner, port, elements),
                    what));
  return {};
}

Result<void> Firewall::remove_tenant_port(const std::string& owner) {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("remove tenant port of owner {}", owner);
  BERTH_TRY(validate_config(cfg_));
  BERTH_TRY(validate_owner(owner));
  BERTH_ASSIGN(auto table, list_bridge_table(cfg_, what));
  BERTH_ASSIGN(auto ip, list_ip_table(cfg_, what));
  std::string script;
  if (table) {
    std::vector<RuleRef> refs;
    for (const auto& r : table->rules) {
      if (has_owner(r, owner)) refs.push_back({r.chain, r.handle});
    }
    if (!refs.empty())
      script += build_tenant_delete_script(cfg_, refs, emptied_account_chains(*table, refs));
  }
  if (ip) {
    script += build_set_delete_script(
        cfg_, account_elements(ip->elements, [&](const std::string& o) { return o == owner; }));
  }
  if (script.empty()) return {};
  BERTH_TRY(run_nft(script, what));
  return {};
}

namespace {

// The rules of owners not in `alive` ('@' ones are the table's own, rules
// without our comment not ours to judge); their owners go to `dead`.
std::vector<RuleRef> dead_rules(const std::vector<nft::Rule>& rules,
                                const std::set<std::string>& alive, std::set<std::string>& dead) {
  std::vector<RuleRef> refs;
  for (const auto& r : rules) {
    auto owner = comment_owner(r.comment);
    if (!owner || owner->front() == '@' || alive.contains(*owner)) continue;
    dead.insert(*owner);
    refs.push_back({r.chain, r.handle});
  }
  return refs;
}

}  // namespace

Result<std::vector<std::string>> Firewall::gc(const std::vector<std::string>& live) {
  std::lock_guard lock(mu_);
  const std::string what = fmt::format("gc of tables ip and bridge {}", cfg_.table);
  BERTH_TRY(validate_config(cfg_));
  std::set<std::string> alive(live.begin(), live.end());
  std::set<std::string> dead;
  BERTH_ASSIGN(auto ip, list_ip_table(cfg_, what));
  BERTH_ASSIGN(auto bridge, list_bridge_table(cfg_, what));
  std::string script;
  if (ip) {
    script += build_delete_script(cfg_, dead_rules(ip->rules, alive, dead));
    auto elements = account_elements(ip->elements, [&](const std::string& o) {
      bool gone = o.front() != '@' && !alive.contains(o);
      if (gone) dead.insert(o);
      return gone;
    });
    script += build_set_delete_script(cfg_, elements);
  }
  if (bridge) {
    auto refs = dead_rules(bridge->rules, alive, dead);
    script += build_tenant_delete_script(cfg_, refs, emptied_account_chains(*bridge, refs));
  }
  // One transaction for both tables.
  if (!script.empty()) BERTH_TRY(run_nft(script, what));
  return std::vector<std::string>(dead.begin(), dead.end());
}

}  // namespace berth::netns
