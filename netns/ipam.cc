// IPv4 subnets and the persistent address allocator.
//
// One file per allocated address, <dir>/<a.b.c.d>, holding the owner's id.
// O_CREAT|O_EXCL makes the claim atomic across threads and processes, and the
// file is the whole state: nothing to load, nothing to lock, and a restarted
// daemon sees exactly what is in use. No fsync: the state must survive the
// daemon, not the machine (a reboot takes every namespace with it too).
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <memory>
#include <set>

#include "common/fs.h"
#include "common/log.h"
#include "netns/network.h"

namespace berth::netns {

namespace {

constexpr std::string_view kStep = "ipam";

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

// The addresses named by the files in `dir`; a missing dir holds none.
Result<std::set<uint32_t>> addresses_in(const std::string& dir) {
  std::set<uint32_t> out;
  std::unique_ptr<DIR, DirCloser> d(::opendir(dir.c_str()));
  if (!d) {
    if (errno == ENOENT) return out;
    return sys_error(kStep, "open directory {}", dir);
  }
  while (dirent* e = ::readdir(d.get())) {
    if (auto a = parse_ipv4(e->d_name)) out.insert(*a);
  }
  return out;
}

// Claims `path` for `owner`; false if another allocation holds it.
Result<bool> claim(const std::string& dir, const std::string& path, const std::string& owner) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT) {
    BERTH_TRY(fs::mkdir_p(dir, 0700));
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  }
  if (fd < 0 && errno == EEXIST) return false;
  if (fd < 0) return sys_error(kStep, "create {}", path);
  UniqueFd file(fd);
  if (::write(fd, owner.data(), owner.size()) != static_cast<ssize_t>(owner.size())) {
    auto e = sys_error(kStep, "write owner {} to {}", owner, path);
    ::unlink(path.c_str());
    return e;
  }
  return true;
}

}  // namespace

std::string ipv4_str(uint32_t addr) {
  return fmt::format("{}.{}.{}.{}", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff,
                     addr & 0xff);
}

std::string mac_for_ip(uint32_t addr) {
  return fmt::format("02:b7:{:02x}:{:02x}:{:02x}:{:02x}", addr >> 24, (addr >> 16) & 0xff,
                     (addr >> 8) & 0xff, addr & 0xff);
}

Result<uint32_t> parse_ipv4(const std::string& s) {
  in_addr a{};
  // inet_pton, not inet_aton: only the four-part dotted decimal form.
  if (::inet_pton(AF_INET, s.c_str(), &a) != 1)
    return error(kStep, "\"{}\" is not an IPv4 address", s);
  return ntohl(a.s_addr);
}

Result<Ipv4Net> Ipv4Net::parse(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos)
    return error(kStep, "subnet \"{}\" has no prefix length (like 10.88.0.0/16)", cidr);
  auto addr = parse_ipv4(cidr.substr(0, slash));
  if (!addr) return error(kStep, "subnet \"{}\": not an IPv4 address", cidr);
  std::string_view len = std::string_view(cidr).substr(slash + 1);
  unsigned prefix = 0;
  auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), prefix);
  if (len.empty() || ec != std::errc() || end != len.data() + len.size() || prefix > 32)
    return error(kStep, "subnet \"{}\": prefix length must be 0-32", cidr);
  Ipv4Net net{.addr = *addr, .prefix = prefix};
  if ((*addr & net.mask()) != *addr)
    return error(kStep, "subnet \"{}\" has host bits set (the network is {}/{})", cidr,
                 ipv4_str(*addr & net.mask()), prefix);
  return net;
}

std::string Ipv4Net::str() const {
  return fmt::format("{}/{}", ipv4_str(addr), prefix);
}

Ipam::Ipam(std::string dir, Ipv4Net subnet) : dir_(std::move(dir)), subnet_(subnet) {}

Result<uint32_t> Ipam::allocate(const std::string& owner) {
  if (owner.empty() || owner.find_first_of("\n/") != std::string::npos)
    return error(kStep, "invalid owner \"{}\"", owner);
  BERTH_ASSIGN(std::set<uint32_t> used, addresses_in(dir_));
  // Below /30 there is no host address beside the gateway and broadcast.
  if (subnet_.prefix <= 30) {
    for (uint32_t a = subnet_.gateway() + 1; a < subnet_.broadcast(); ++a) {
      if (used.contains(a)) continue;
      // Another thread or process may have claimed it since the listing.
      BERTH_ASSIGN(bool claimed, claim(dir_, fs::join(dir_, ipv4_str(a)), owner));
      if (claimed) return a;
    }
  }
  return error(kStep, "no free address in {}", subnet_.str());
}

Result<void> Ipam::release(uint32_t addr) {
  std::string path = fs::join(dir_, ipv4_str(addr));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sys_error(kStep, "unlink {}", path);
  return {};
}

Result<void> Ipam::release(uint32_t addr, const std::string& owner) {
  std::string path = fs::join(dir_, ipv4_str(addr));
  auto holder = fs::read_file(path);
  if (!holder) {
    if (holder.error().err == ENOENT) return {};
    return std::unexpected(std::move(holder).error());
  }
  if (*holder != owner) {
    log::warn("ipam: not releasing {}: it belongs to {}, not {}", ipv4_str(addr), *holder, owner);
    return {};
  }
  return release(addr);
}

Result<void> Ipam::release_owner(const std::string& owner) {
  BERTH_ASSIGN(auto all, allocations());
  for (const auto& [who, addr] : all) {
    if (who == owner) BERTH_TRY(release(addr));
  }
  return {};
}

Result<void> Ipam::reserve(uint32_t addr, const std::string& owner) {
  if (owner.empty() || owner.find_first_of("\n/") != std::string::npos)
    return error(kStep, "invalid owner \"{}\"", owner);
  if (!subnet_.contains(addr) || addr <= subnet_.gateway() || addr >= subnet_.broadcast())
    return error(kStep, "{} is not a host address of {} (besides the gateway)", ipv4_str(addr),
                 subnet_.str());
  std::string path = fs::join(dir_, ipv4_str(addr));
  BERTH_ASSIGN(bool claimed, claim(dir_, path, owner));
  if (claimed) return {};
  BERTH_ASSIGN(std::string holder, fs::read_file(path));
  if (holder != owner)
    return error(kStep, "address {} is held by {}, not {}", ipv4_str(addr), holder, owner);
  return {};
}

Result<std::vector<std::pair<std::string, uint32_t>>> Ipam::allocations() const {
  BERTH_ASSIGN(std::set<uint32_t> used, addresses_in(dir_));
  std::vector<std::pair<std::string, uint32_t>> out;
  for (uint32_t a : used) {
    auto owner = fs::read_file(fs::join(dir_, ipv4_str(a)));
    if (!owner) {
      if (owner.error().err == ENOENT) continue;  // released meanwhile
      return std::unexpected(std::move(owner).error());
    }
    // An empty owner is a claim cut short by a crash between create and
    // write: it is listed, so that gc frees it (no live id is empty).
    out.emplace_back(std::move(*owner), a);
  }
  return out;
}

}  // namespace berth::netns
