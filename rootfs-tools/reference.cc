#include "rootfs-tools/reference.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

namespace berth::rootfs {
namespace {

constexpr std::string_view kStep = "reference";
constexpr std::string_view kDockerHub = "docker.io";

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// One path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
bool valid_component(std::string_view c) {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) return false;
  size_t i = 0;
  while (i < c.size()) {
    if (is_lower_alnum(c[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    if (c[i] == '-') {
      while (j < c.size() && c[j] == '-') ++j;
    } else if (c[i] == '.') {
      j = i + 1;
    } else if (c[i] == '_') {
      j = i + 1;
      if (j < c.size() && c[j] == '_') ++j;
    } else {
      return false;
    }
    if (j >= c.size() || !is_lower_alnum(c[j])) return false;
    i = j;
  }
  return true;
}

// [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t.front())) return false;
  return std::ranges::all_of(t, [&](char c) { return word(c) || c == '.' || c == '-'; });
}

bool valid_port(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  if (!std::ranges::all_of(p, [](char c) { return c >= '0' && c <= '9'; })) return false;
  int v = std::stoi(std::string(p));
  return v > 0 && v <= 65535;
}

// host[:port], host = dns name (labels of [A-Za-z0-9-]) or [ipv6].
bool valid_domain(std::string_view d) {
  std::string_view host = d;
  std::string_view port;
  if (d.starts_with('[')) {
    size_t close = d.find(']');
    if (close == std::string_view::npos) return false;
    std::string addr(d.substr(1, close - 1));
    in6_addr a6{};
    if (inet_pton(AF_INET6, addr.c_str(), &a6) != 1) return false;
    std::string_view rest = d.substr(close + 1);
    if (rest.empty()) return true;
    return rest.front() == ':' && valid_port(rest.substr(1));
  }
  if (size_t colon = d.rfind(':'); colon != std::string_view::npos) {
    host = d.substr(0, colon);
    port = d.substr(colon + 1);
    if (!valid_port(port)) return false;
  }
  if (host.empty()) return false;
  size_t start = 0;
  while (start <= host.size()) {
    size_t dot = host.find('.', start);
    std::string_view label = host.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

}  // namespace

Result<Reference> Reference::parse(std::string_view s) {
  auto bad = [&](std::string_view why) {
    return error(kStep, "invalid reference {:?}: {}", s, why);
  };
  if (s.empty()) return bad("empty");
  Reference r;
  std::string_view rest = s;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    Result<Digest> d = Digest::parse(rest.substr(at + 1));
    if (!d) return bad(fmt::format("digest: {}", d.error().message));
    r.digest = *d;
    rest = rest.substr(0, at);
  }
  // A tag is after the last ':' that follows the last '/'.
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    std::string_view tag = rest.substr(colon + 1);
    if (!valid_tag(tag)) {
      return bad(
          fmt::format("tag {:?}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'", tag));
    }
    r.tag = std::string(tag);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return bad("no repository name");

  std::string_view path = rest;
  size_t first = rest.find('/');
  if (first != std::string_view::npos) {
    std::string_view head = rest.substr(0, first);
    bool has_upper = std::ranges::any_of(head, [](char c) { return c >= 'A' && c <= 'Z'; });
    if (head.find_first_of(".:") != std::string_view::npos || head == "localhost" ||
        head.starts_with('[') || has_upper) {
      if (!valid_domain(head)) return bad(fmt::format("registry {:?} is not host[:port]", head));
      r.registry = std::string(head);
      path = rest.substr(first + 1);
    }
  }
  if (r.registry.empty() || r.registry == "index.docker.io" ||
      r.registry == "registry-1.docker.io") {
    r.registry = std::string(kDockerHub);
  }
  if (path.empty()) return bad("no repository name");
  size_t start = 0;
  while (true) {
    size_t next = path.find('/', start);
    std::string_view comp =
        path.substr(start, next == std::string_view::npos ? next : next - start);
    if (!valid_component(comp)) {
      return bad(fmt::format(
          "repository component {:?}: lowercase letters, digits and single separators (. _ __ -) "
          "only",
          comp));
    }
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  r.repository = std::string(path);
  if (r.registry == kDockerHub && r.repository.find('/') == std::string::npos) {
    r.repository = "library/" + r.repository;
  }
  if (r.name().size() > 255) return bad("name longer than 255 characters");
  if (r.tag.empty() && !r.digest) r.tag = "latest";
  return r;
}

std::string Reference::name() const {
  return registry + "/" + repository;
}

std::string Reference::str() const {
  std::string s = name();
  if (!tag.empty()) s += ":" + tag;
  if (digest) s += "@" + digest->str();
  return s;
}

std::string Reference::api_host() const {
  return registry == kDockerHub ? std::string("registry-1.docker.io") : registry;
}

std::string Reference::manifest_ref() const {
  return digest ? digest->str() : tag;
}

bool is_loopback_registry(std::string_view host) {
  // Strip the port: "[::1]:5000", "127.0.0.1:5000", "localhost:5000".
  std::string h;
  if (host.starts_with('[')) {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    h = std::string(host.substr(1, close - 1));
  } else {
    h = std::string(host.substr(0, host.find(':')));
  }
  if (h == "localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, h.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

}  // namespace berth::rootfs
