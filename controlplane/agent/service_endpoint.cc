#include "controlplane/agent/service_endpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/fd.h"
#include "common/json.h"
#include "common/json_reader.h"

namespace berth::cp {

namespace {

constexpr std::string_view kStep = "service endpoint";
constexpr size_t kMaxName = 253;

bool is_lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Hostname-safe: 1-253 of [a-z0-9.-], no empty label (no leading,
// trailing or doubled dot). Labels are not limited to 63 characters nor
// kept from starting with '-': a hosts file takes any such name, and ECS
// service names (up to 255 of [A-Za-z0-9_-]) would otherwise fail here.
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxName) return false;
  if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos)
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '.';
  });
}

template <class... A>
std::unexpected<Error> invalid(const ServiceEndpoint& ep, fmt::format_string<A...> f, A&&... args) {
  return kind_error(ErrorKind::invalid, kStep, "{}: {}", ep.id.empty() ? "(no id)" : ep.id,
                    fmt::format(f, std::forward<A>(args)...));
}

}  // namespace

bool valid_service_endpoint_id(std::string_view id) {
  return id.size() == 20 && id.starts_with("svc-") &&
         std::all_of(id.begin() + 4, id.end(), is_lower_hex);
}

Result<void> validate_service_endpoint(const ServiceEndpoint& ep, const netns::Ipv4Net& subnet) {
  if (!valid_service_endpoint_id(ep.id))
    return invalid(ep, "id {:?} is not \"svc-\" and 16 lowercase hex digits", ep.id);
  if (ep.account.size() != 12 || !std::all_of(ep.account.begin(), ep.account.end(), is_digit))
    return invalid(ep, "account {:?} is not 12 digits", ep.account);
  if (!valid_name(ep.name))
    return invalid(ep, "name {:?} is not a host name (1-{} of [a-z0-9.-], no empty label)", ep.name,
                   kMaxName);
  if (ep.container_port == 0) return invalid(ep, "containerPort 0: want the VIP's port");
  if (ep.protocol != "tcp" && ep.protocol != "udp")
    return invalid(ep, "protocol {:?} is not tcp or udp", ep.protocol);
  if (!ep.vip.empty()) {
    auto vip = netns::parse_ipv4(ep.vip);
    if (!vip) return invalid(ep, "vip {:?} is not an IPv4 address", ep.vip);
    if (!subnet.contains(*vip) || *vip <= subnet.gateway() || *vip >= subnet.broadcast())
      return invalid(ep, "vip {} is not a host address of the subnet {} (besides the gateway)",
                     ep.vip, subnet.str());
  }
  for (size_t i = 0; i < ep.backends.size(); ++i) {
    const ServiceBackend& b = ep.backends[i];
    auto ip = netns::parse_ipv4(b.ip);
    if (!ip) return invalid(ep, "backends[{}]: {:?} is not an IPv4 address", i, b.ip);
    if (!subnet.contains(*ip) || *ip == subnet.addr || *ip == subnet.broadcast())
      return invalid(ep, "backends[{}]: {} is not a task address of the subnet {}", i, b.ip,
                     subnet.str());
    if (b.port == 0) return invalid(ep, "backends[{}]: port 0", i);
  }
  return {};
}

nlohmann::json service_endpoint_json(const ServiceEndpoint& ep) {
  nlohmann::json backends = nlohmann::json::array();
  for (const auto& b : ep.backends) backends.push_back({{"ip", b.ip}, {"port", b.port}});
  return {{"id", ep.id},
          {"account", ep.account},
          {"name", ep.name},
          {"vip", ep.vip},
          {"container_port", ep.container_port},
          {"listener_port", ep.listener_port},
          {"protocol", ep.protocol},
          {"backends", std::move(backends)}};
}

Result<ServiceEndpoint> parse_service_endpoint(const std::string& text, const std::string& path) {
  static constexpr jr::Document kDoc{"service endpoint", "endpoint"};
  BERTH_ASSIGN(nlohmann::json j, parse_json(text, path));
  jr::Node root = jr::Node::root(j, kDoc);
  auto read = [&]() -> Result<ServiceEndpoint> {
    BERTH_TRY(jr::expect_object(root));
    ServiceEndpoint ep;
    BERTH_TRY(jr::read_required(root.member("id"), ep.id));
    BERTH_TRY(jr::read_required(root.member("account"), ep.account));
    BERTH_TRY(jr::read_required(root.member("name"), ep.name));
    BERTH_TRY(jr::read(root.member("vip"), ep.vip));
    BERTH_TRY(jr::read_required(root.member("container_port"), ep.container_port));
    BERTH_TRY(jr::read(root.member("listener_port"), ep.listener_port));
    BERTH_TRY(jr::read(root.member("protocol"), ep.protocol));
    BERTH_TRY(jr::read_array(root.member("backends"), ep.backends,
                             [](const jr::Node& e) -> Result<ServiceBackend> {
                               BERTH_TRY(jr::expect_object(e));
                               ServiceBackend b;
                               BERTH_TRY(jr::read_required(e.member("ip"), b.ip));
                               BERTH_TRY(jr::read_required(e.member("port"), b.port));
                               return b;
                             }));
    return ep;
  };
  auto ep = read();
  if (!ep) return wrap(ep.error(), path);
  return ep;
}

Result<netns::ServiceRules> service_rules(const ServiceEndpoint& ep, uint32_t vip) {
  netns::ServiceRules r;
  r.account = ep.account;
  r.vip = vip;
  r.protocol = ep.protocol == "udp" ? netns::Protocol::udp : netns::Protocol::tcp;
  r.vip_port = ep.container_port;
  r.listener_port = ep.listener_port;
  for (const auto& b : ep.backends) {
    BERTH_ASSIGN(uint32_t ip, netns::parse_ipv4(b.ip));
    r.backends.push_back({ip, b.port});
  }
  return r;
}

std::string service_hosts_lines(const std::vector<ServiceEndpoint>& endpoints,
                                const std::string& account) {
  std::vector<const ServiceEndpoint*> mine;
  for (const auto& ep : endpoints) {
    if (ep.account == account && !ep.vip.empty()) mine.push_back(&ep);
  }
  std::sort(mine.begin(), mine.end(), [](const ServiceEndpoint* a, const ServiceEndpoint* b) {
    return std::tie(a->name, a->id) < std::tie(b->name, b->id);
  });
  std::string out;
  for (const auto* ep : mine) out += fmt::format("{}\t{}\n", ep->vip, ep->name);
  return out;
}

std::string with_service_hosts(std::string_view current, std::string_view lines) {
  std::string out(current);
  size_t at = out.starts_with(kServicesHostsMarker)
                  ? 0
                  : out.find(fmt::format("\n{}", kServicesHostsMarker));
  if (at != std::string::npos) out.resize(at == 0 ? 0 : at + 1);
  if (!out.empty() && out.back() != '\n') out += '\n';
  if (!lines.empty()) {
    out += kServicesHostsMarker;
    out += lines;
  }
  return out;
}

Result<void> rewrite_in_place(const std::string& path, std::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return sys_error(kStep, "open {}", path);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n =
        ::pwrite(fd.get(), content.data() + done, content.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error(kStep, "write {}", path);
    done += static_cast<size_t>(n);
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(content.size())) != 0)
    return sys_error(kStep, "truncate {}", path);
  return {};
}

}  // namespace berth::cp
