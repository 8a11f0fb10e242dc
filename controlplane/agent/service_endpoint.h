// The pure pieces of the node agent's service endpoints (agent.h:
// ServiceEndpoint): input checks, the persisted JSON, the firewall rules an
// endpoint makes, and the services section of a task's /etc/hosts.
//
// A task's hosts file is what the launch wrote (netns::Network::hosts_file)
// followed by a section of the endpoints of its account:
//   # berth services
//   10.88.0.9\tweb.default.berth
// The section is the file's tail, from the marker line on; rewriting it
// leaves everything above alone. The file is bind-mounted into the
// container, so it is rewritten in place (same inode), never replaced.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "controlplane/agent/agent.h"
#include "netns/firewall.h"
#include "netns/network.h"

namespace berth::cp {

// "svc-" + 16 lowercase hex digits.
bool valid_service_endpoint_id(std::string_view id);

// Every field of `ep` (agent.h): id, account (12 digits), name (1-253 of
// [a-z0-9.-], no empty label), container
// port, protocol tcp|udp, vip ("" or a host address of `subnet` other than
// the gateway), backends (addresses of `subnet`, ports not 0). The error
// (kind invalid) names the endpoint and the field.
Result<void> validate_service_endpoint(const ServiceEndpoint& ep, const netns::Ipv4Net& subnet);

nlohmann::json service_endpoint_json(const ServiceEndpoint& ep);
// Read through common/json_reader.h; `path` names the file in errors.
Result<ServiceEndpoint> parse_service_endpoint(const std::string& text, const std::string& path);

// The firewall rules of a validated endpoint whose VIP is `vip`.
Result<netns::ServiceRules> service_rules(const ServiceEndpoint& ep, uint32_t vip);

inline constexpr std::string_view kServicesHostsMarker = "# berth services\n";
// "<vip>\t<name>\n" for each endpoint of `account` that has a VIP, sorted by
// name (then id): the same input always makes the same file.
std::string service_hosts_lines(const std::vector<ServiceEndpoint>& endpoints,
                                const std::string& account);
// `current` with its services section (the marker line and all after it)
// replaced by the marker and `lines`; no section at all when `lines` is
// empty.
std::string with_service_hosts(std::string_view current, std::string_view lines);
// Rewrites the file at `path` in place: the same inode (a bind mount of it
// keeps showing the new content), written from the start and truncated to
// the new length.
Result<void> rewrite_in_place(const std::string& path, std::string_view content);

}  // namespace berth::cp
