#include "controlplane/model/arn.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

namespace berth::cp {

namespace {

constexpr std::string_view kArnPrefix = "arn:aws:ecs:";

std::string arn(std::string_view region, std::string_view account, std::string_view resource) {
  return fmt::format("{}{}:{}:{}", kArnPrefix, region, account, resource);
}

// Fills `buf` from the kernel's CSPRNG. getrandom() on a buffer of at most
// 256 bytes never returns short once the pool is initialised; EINTR is
// retried. A failure here (ENOSYS on an ancient kernel) cannot be recovered
// from sensibly and is not input-driven, so it aborts.
template <size_t N>
std::array<uint8_t, N> random_bytes() {
  std::array<uint8_t, N> buf{};
  size_t got = 0;
  while (got < N) {
    ssize_t n = getrandom(buf.data() + got, N - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::abort();
    }
    got += static_cast<size_t>(n);
  }
  return buf;
}

template <size_t N>
std::string hex(const std::array<uint8_t, N>& b, size_t from = 0, size_t to = N) {
  std::string out;
  out.reserve((to - from) * 2);
  for (size_t i = from; i < to; ++i) out += fmt::format("{:02x}", b[i]);
  return out;
}

}  // namespace

std::string cluster_arn(std::string_view region, std::string_view account, std::string_view name) {
  return arn(region, account, fmt::format("cluster/{}", name));
}

std::string task_definition_arn(std::string_view region, std::string_view account,
                                std::string_view family, int revision) {
  return arn(region, account, fmt::format("task-definition/{}:{}", family, revision));
}

std::string task_arn(std::string_view region, std::string_view account, std::string_view cluster,
                     std::string_view task_id) {
  return arn(region, account, fmt::format("task/{}/{}", cluster, task_id));
}

std::string container_arn(std::string_view region, std::string_view account,
                          std::string_view cluster, std::string_view task_id,
                          std::string_view container_id) {
  return arn(region, account, fmt::format("container/{}/{}/{}", cluster, task_id, container_id));
}

std::string service_arn(std::string_view region, std::string_view account, std::string_view cluster,
                        std::string_view name) {
  return arn(region, account, fmt::format("service/{}/{}", cluster, name));
}

std::optional<Arn> parse_arn(std::string_view s) {
  if (!s.starts_with(kArnPrefix)) return std::nullopt;
  s.remove_prefix(kArnPrefix.size());
  size_t c1 = s.find(':');
  if (c1 == std::string_view::npos || c1 == 0) return std::nullopt;
  size_t c2 = s.find(':', c1 + 1);
  if (c2 == std::string_view::npos || c2 == c1 + 1) return std::nullopt;
  std::string_view resource = s.substr(c2 + 1);
  size_t slash = resource.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == resource.size()) {
    return std::nullopt;
  }
  Arn a{std::string(s.substr(0, c1)), std::string(s.substr(c1 + 1, c2 - c1 - 1)),
        std::string(resource.substr(0, slash)), std::string(resource.substr(slash + 1))};
  for (std::string_view t : {"cluster", "task-definition", "task", "container", "service"}) {
    if (a.type == t) return a;
  }
  return std::nullopt;
}

std::string new_task_id() {
  return hex(random_bytes<16>());
}

std::string new_uuid() {
  auto b = random_bytes<16>();
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return fmt::format("{}-{}-{}-{}-{}", hex(b, 0, 4), hex(b, 4, 6), hex(b, 6, 8), hex(b, 8, 10),
                     hex(b, 10, 16));
}

double epoch_seconds(TimePoint t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  return static_cast<double>(ms) / 1000.0;
}

TimePoint from_epoch_seconds(double s) {
  auto ms = static_cast<int64_t>(std::llround(s * 1000.0));
  return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(ms)));
}

bool is_set(TimePoint t) {
  return t.time_since_epoch().count() != 0;
}

}  // namespace berth::cp
