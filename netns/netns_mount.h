// Network namespaces held by a bind mount (like `ip netns add`), so that a
// microhost's namespace outlives every process in it and can be joined by
// path (setns) by the runtime, the shim and the tests.
#pragma once

#include <string>

#include "common/error.h"
#include "common/fd.h"
#include "netns/netlink.h"

namespace berth::netns {

struct NewNetns {
  UniqueFd fd;       // the namespace (an nsfs fd, usable as IFLA_NET_NS_FD)
  nl::Socket route;  // a NETLINK_ROUTE socket acting inside it
};

// Creates a new network namespace and bind-mounts it on `path` (a new, empty
// file: an existing one is an error, EEXIST). Its lo is still down.
Result<NewNetns> create_netns(const std::string& path);

// Unmounts and unlinks a netns mount; a path that is gone or no longer a
// mount point is fine (release and gc are idempotent).
Result<void> remove_netns(const std::string& path);

}  // namespace berth::netns
