#include "netns/netlink.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <netlink/route/nexthop.h>

#include <array>
#include <cstring>

#include "netns/network.h"

namespace berth::netns::nl {

namespace {

constexpr std::string_view kStep = "network";

LinkInfo info_of(rtnl_link* link) {
  const char* name = rtnl_link_get_name(link);
  const char* type = rtnl_link_get_type(link);
  return LinkInfo{.name = name ? name : "",
                  .ifindex = rtnl_link_get_ifindex(link),
                  .type = type ? type : "",
                  .master = rtnl_link_get_master(link),
                  .flags = rtnl_link_get_flags(link)};
}

}  // namespace

Result<Socket> connect_route() {
  Socket sk(nl_socket_alloc());
  if (!sk) return nl_error(kStep, -NLE_NOMEM, "allocate a netlink socket");
  // libnl picks the port id from its own map (under a lock, so sockets may be
  // made by many threads at once); it holds 1024 per process.
  if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0)
    return nl_error(kStep, err, "connect a NETLINK_ROUTE socket");
  return sk;
}

Address ipv4(uint32_t addr, unsigned prefix) {
  uint32_t be = htonl(addr);
  Address a(nl_addr_build(AF_INET, &be, sizeof be));
  if (a) nl_addr_set_prefixlen(a.get(), static_cast<int>(prefix));
  return a;
}

Address mac_for(uint32_t ip) {
  // Parsed from mac_for_ip's text, so that the address given to the kernel
  // and the one recorded in Microhost::mac (and the bridge's anti-spoofing
  // rules) cannot differ.
  nl_addr* raw = nullptr;
  if (nl_addr_parse(mac_for_ip(ip).c_str(), AF_LLC, &raw) < 0) return Address();
  return Address(raw);
}

Result<std::optional<LinkInfo>> find_link(nl_sock* sk, const std::string& name) {
  rtnl_link* raw = nullptr;
  int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &raw);
  Link link(raw);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return std::nullopt;
  if (err < 0) return nl_error(kStep, err, "look up link {}", name);
  return info_of(link.get());
}

Result<std::vector<LinkInfo>> list_links(nl_sock* sk) {
  nl_cache* raw = nullptr;
  int err = rtnl_link_alloc_cache(sk, AF_UNSPEC, &raw);
  Cache cache(raw);
  if (err < 0) return nl_error(kStep, err, "list links");
  std::vector<LinkInfo> links;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o))
    links.push_back(info_of(reinterpret_cast<rtnl_link*>(o)));
  return links;
}

Result<bool> delete_link(nl_sock* sk, const std::string& name) {
  Link link(rtnl_link_alloc());
  if (!link) return nl_error(kStep, -NLE_NOMEM, "delete link {}", name);
  rtnl_link_set_name(link.get(), name.c_str());
  int err = rtnl_link_delete(sk, link.get());
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return false;
  if (err < 0) return nl_error(kStep, err, "delete link {}", name);
  return true;
}

Result<void> set_up(nl_sock* sk, int ifindex, const std::string& what) {
  Link orig(rtnl_link_alloc());
  Link change(rtnl_link_alloc());
  if (!orig || !change) return nl_error(kStep, -NLE_NOMEM, "bring up {}", what);
  rtnl_link_set_ifindex(orig.get(), ifindex);
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int err = rtnl_link_change(sk, orig.get(), change.get(), 0); err < 0)
    return nl_error(kStep, err, "bring up {}", what);
  return {};
}

Result<void> add_address(nl_sock* sk, int ifindex, uint32_t ip, unsigned prefix,
                         const std::string& what, bool exist_ok) {
  Addr addr(rtnl_addr_alloc());
  Address local = ipv4(ip, prefix);
  if (!addr || !local) return nl_error(kStep, -NLE_NOMEM, "add an address to {}", what);
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), AF_INET);
  if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0)
    return nl_error(kStep, err, "add an address to {}", what);
  int err = rtnl_addr_add(sk, addr.get(), NLM_F_EXCL);
  if (err == -NLE_EXIST && exist_ok) return {};
  if (err < 0) {
    char buf[INET_ADDRSTRLEN] = "";
    uint32_t be = htonl(ip);
    inet_ntop(AF_INET, &be, buf, sizeof buf);
    return nl_error(kStep, err, "add address {}/{} to {}", buf, prefix, what);
  }
  return {};
}

Result<std::vector<AddressInfo>> list_addresses(nl_sock* sk, int ifindex) {
  nl_cache* raw = nullptr;
  int err = rtnl_addr_alloc_cache(sk, &raw);
  Cache cache(raw);
  if (err < 0) return nl_error(kStep, err, "list addresses");
  std::vector<AddressInfo> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != AF_INET) continue;
    nl_addr* local = rtnl_addr_get_local(a);
    if (local == nullptr || nl_addr_get_len(local) != sizeof(uint32_t)) continue;
    uint32_t be = 0;
    std::memcpy(&be, nl_addr_get_binary_addr(local), sizeof be);
    out.push_back({ntohl(be), static_cast<unsigned>(rtnl_addr_get_prefixlen(a))});
  }
  return out;
}

Result<bool> delete_address(nl_sock* sk, int ifindex, uint32_t ip, unsigned prefix,
                            const std::string& what) {
  Addr addr(rtnl_addr_alloc());
  Address local = ipv4(ip, prefix);
  if (!addr || !local) return nl_error(kStep, -NLE_NOMEM, "delete an address of {}", what);
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), AF_INET);
  if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0)
    return nl_error(kStep, err, "delete an address of {}", what);
  int err = rtnl_addr_delete(sk, addr.get(), 0);
  if (err == -NLE_NOADDR || err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return false;
  if (err < 0)
    return nl_error(kStep, err, "delete address {}/{} of {}", ipv4_str(ip), prefix, what);
  return true;
}

Result<void> add_default_route(nl_sock* sk, int ifindex, uint32_t gateway,
                               const std::string& what) {
  Route route(rtnl_route_alloc());
  Address dst = ipv4(0, 0);
  Address via = ipv4(gateway);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!route || !dst || !via || !nh) {
    if (nh) rtnl_route_nh_free(nh);
    return nl_error(kStep, -NLE_NOMEM, "add the default route of {}", what);
  }
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_nh_set_gateway(nh, via.get());
  rtnl_route_add_nexthop(route.get(), nh);  // the route owns nh from here
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0)
    return nl_error(kStep, err, "add the default route of {}", what);
  if (int err = rtnl_route_add(sk, route.get(), NLM_F_EXCL); err < 0)
    return nl_error(kStep, err, "add the default route of {}", what);
  return {};
}

}  // namespace berth::netns::nl
