// RAII for libnl-route-3 objects, and the few rtnetlink requests task
// networking makes. Every libnl object has exactly one owner (a unique_ptr
// with the library's put/free as deleter), so no error branch frees by hand.
//
// A netlink socket acts in the network namespace it was created in, for its
// whole life: a socket made inside a task's netns configures that netns from
// any thread (see netns_mount.h).
//
// libnl's errors are its own codes (-NLE_*), not errno; nl_error() puts
// nl_geterror()'s text in the message:
//   network: add address 10.88.0.2/16 to eth0 in /run/berth/netns/t1: Object exists
#pragma once

#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace berth::netns::nl {

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Socket = std::unique_ptr<nl_sock, Deleter<nl_sock, nl_socket_free>>;
using Link = std::unique_ptr<rtnl_link, Deleter<rtnl_link, rtnl_link_put>>;
using Addr = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr, rtnl_addr_put>>;
using Route = std::unique_ptr<rtnl_route, Deleter<rtnl_route, rtnl_route_put>>;
using Address = std::unique_ptr<nl_addr, Deleter<nl_addr, nl_addr_put>>;
using Cache = std::unique_ptr<nl_cache, Deleter<nl_cache, nl_cache_free>>;

// An error from a libnl call returning -NLE_*; the message ends with
// nl_geterror()'s text.
template <class... Args>
std::unexpected<Error> nl_error(std::string_view step, int nlerr, fmt::format_string<Args...> f,
                                Args&&... args) {
  return std::unexpected(Error{
      std::string(step), 0,
      fmt::format("{}: {}", fmt::format(f, std::forward<Args>(args)...), nl_geterror(nlerr))});
}

// A NETLINK_ROUTE socket in the calling thread's network namespace.
Result<Socket> connect_route();

// An IPv4 address (host byte order) with a prefix length, as libnl takes it.
Address ipv4(uint32_t addr, unsigned prefix = 32);
// A locally administered unicast MAC address carrying `ip`: 02:b7:<ip>.
Address mac_for(uint32_t ip);

struct LinkInfo {
  std::string name;
  int ifindex = 0;
  std::string type;    // "veth", "bridge", "" when the kernel gives none
  int master = 0;      // ifindex of the bridge it is a port of, 0 if none
  unsigned flags = 0;  // IFF_*
};

// The link named `name`, or nullopt when there is none.
Result<std::optional<LinkInfo>> find_link(nl_sock* sk, const std::string& name);
// Every link of the socket's namespace.
Result<std::vector<LinkInfo>> list_links(nl_sock* sk);
// Deletes the link named `name`; false if there was none (a veth's deletion
// takes its peer with it, wherever that lives).
Result<bool> delete_link(nl_sock* sk, const std::string& name);
// Brings a link up by index (lo is always ifindex 1 in any namespace).
Result<void> set_up(nl_sock* sk, int ifindex, const std::string& what);
// Adds ip/prefix to a link; `exist_ok` accepts an address already there.
Result<void> add_address(nl_sock* sk, int ifindex, uint32_t ip, unsigned prefix,
                         const std::string& what, bool exist_ok = false);
struct AddressInfo {
  uint32_t ip = 0;  // host byte order
  unsigned prefix = 0;
};
// The IPv4 addresses of link `ifindex`.
Result<std::vector<AddressInfo>> list_addresses(nl_sock* sk, int ifindex);
// Deletes ip/prefix from a link; false if it was not there.
Result<bool> delete_address(nl_sock* sk, int ifindex, uint32_t ip, unsigned prefix,
                            const std::string& what);
// A default route via `gateway` out of `ifindex`, in the main table.
Result<void> add_default_route(nl_sock* sk, int ifindex, uint32_t gateway, const std::string& what);

}  // namespace berth::netns::nl
