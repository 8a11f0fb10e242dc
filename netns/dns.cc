// /etc/hosts and /etc/resolv.conf for a task.
#include <arpa/inet.h>

#include <sstream>

#include "common/fs.h"
#include "netns/network.h"

namespace berth::netns {

namespace {

constexpr std::string_view kStep = "network";

bool is_ip(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool is_loopback(const std::string& ip) {
  return ip.starts_with("127.") || ip == "::1";
}

// "nameserver 127.0.0.53" -> "127.0.0.53"; "" for any other line.
std::string nameserver_of(const std::string& line) {
  std::istringstream in(line);
  std::string key, value;
  in >> key >> value;
  return key == "nameserver" ? value : "";
}

}  // namespace

std::string Network::hosts_file(const Microhost& mh, const std::string& hostname) const {
  std::string out =
      "127.0.0.1\tlocalhost\n"
      "::1\tlocalhost ip6-localhost ip6-loopback\n"
      "fe00::0\tip6-localnet\n"
      "ff00::0\tip6-mcastprefix\n"
      "ff02::1\tip6-allnodes\n"
      "ff02::2\tip6-allrouters\n";
  if (hostname.empty()) return out;
  // Without an address of its own (host and none modes) the hostname gets
  // Debian's 127.0.1.1, so that resolving it never needs a nameserver.
  out += fmt::format("{}\t{}\n", mh.ip != 0 ? ipv4_str(mh.ip) : "127.0.1.1", hostname);
  return out;
}

Result<std::string> Network::resolv_conf() const {
  if (!cfg_.resolvers.empty()) {
    std::string out;
    for (const auto& r : cfg_.resolvers) {
      if (!is_ip(r)) return error(kStep, "resolver \"{}\" is not an IP address", r);
      out += "nameserver " + r + "\n";
    }
    return out;
  }
  BERTH_ASSIGN(std::string host, fs::read_file(cfg_.host_resolv_conf));
  std::istringstream in(host);
  std::string out, line, dropped;
  bool any = false;
  while (std::getline(in, line)) {
    std::string ns = nameserver_of(line);
    if (!ns.empty() && is_loopback(ns)) {
      dropped += (dropped.empty() ? "" : ", ") + ns;
      continue;
    }
    any = any || !ns.empty();
    out += line + "\n";
  }
  if (!any) {
    std::string why = dropped.empty() ? "" : " (only loopback ones: " + dropped + ")";
    return error(kStep,
                 "{} has no nameserver a task can reach{}; set resolvers in the network config",
                 cfg_.host_resolv_conf, why);
  }
  return out;
}

}  // namespace berth::netns
