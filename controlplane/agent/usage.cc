#include "controlplane/agent/usage.h"

#include <chrono>
#include <limits>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/json.h"
#include "common/json_reader.h"
#include "runtime/cgroup_util.h"

namespace berth::cp {

namespace {

namespace cgu = runtime::cgroup_util;

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

Result<int64_t> to_counter(uint64_t v, const std::string& dir, std::string_view file) {
  if (v > kInt64Max) {
    return error("usage", "{}: {} does not fit a signed 64-bit counter", fs::join(dir, file), v);
  }
  return static_cast<int64_t>(v);
}

// A file of one number, divided by `unit` (ns -> usec).
Result<int64_t> read_counter(const std::string& dir, std::string_view file, uint64_t unit = 1) {
  BERTH_ASSIGN(uint64_t v, cgu::read_u64(dir, file));
  return to_counter(v / unit, dir, file);
}

// The value of `key` in a "key value" file (cpu.stat).
Result<int64_t> read_keyed_counter(const std::string& dir, std::string_view file,
                                   std::string_view key) {
  BERTH_ASSIGN(std::string text, cgu::read_file(dir, file));
  auto v = cgu::keyed_value(text, key);
  if (!v) {
    return error("usage", "{}: no \"{} <number>\" line in \"{}\"", fs::join(dir, file), key,
                 text.substr(0, 200));
  }
  return to_counter(*v, dir, file);
}

}  // namespace

Result<CgroupCounters> read_cgroup_v2_counters(const std::string& dir) {
  CgroupCounters c;
  BERTH_ASSIGN(c.cpu_usec, read_keyed_counter(dir, "cpu.stat", "usage_usec"));
  BERTH_ASSIGN(c.memory_bytes, read_counter(dir, "memory.current"));
  // memory.peak appeared in Linux 5.19.
  if (cgu::has_file(dir, "memory.peak")) {
    BERTH_ASSIGN(c.memory_peak_bytes, read_counter(dir, "memory.peak"));
  }
  return c;
}

Result<CgroupCounters> read_cgroup_v1_counters(const std::string& cpuacct_dir,
                                               const std::string& memory_dir) {
  CgroupCounters c;
  BERTH_ASSIGN(c.cpu_usec, read_counter(cpuacct_dir, "cpuacct.usage", 1000));
  BERTH_ASSIGN(c.memory_bytes, read_counter(memory_dir, "memory.usage_in_bytes"));
  BERTH_ASSIGN(c.memory_peak_bytes, read_counter(memory_dir, "memory.max_usage_in_bytes"));
  return c;
}

Result<NetCounters> read_veth_counters(const std::string& net_dir, const std::string& link) {
  if (link.empty() || link.find('/') != std::string::npos || link == "." || link == "..") {
    return error("usage", "{:?} is not a network link name", link);
  }
  const std::string stats = fs::join(fs::join(net_dir, link), "statistics");
  NetCounters n;
  BERTH_ASSIGN(n.rx_bytes, read_counter(stats, "tx_bytes"));
  BERTH_ASSIGN(n.tx_bytes, read_counter(stats, "rx_bytes"));
  return n;
}

std::string usage_sample_json(const UsageSample& s) {
  int64_t at_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(s.at.time_since_epoch()).count();
  nlohmann::json j = {{"at_ns", at_ns},
                      {"cpu_usec", s.cpu_usec},
                      {"memory_bytes", s.memory_bytes},
                      {"memory_peak_bytes", s.memory_peak_bytes},
                      {"net_rx_bytes", s.net_rx_bytes},
                      {"net_tx_bytes", s.net_tx_bytes},
                      {"final", s.final}};
  return j.dump(2) + "\n";
}

Result<UsageSample> parse_usage_sample(std::string_view text, const std::string& what) {
  static constexpr jr::Document kDoc{"usage", "usage sample"};
  auto j = parse_json(text, what);
  if (!j) return std::unexpected(j.error());
  auto root = jr::Node::root(*j, kDoc);
  UsageSample s;
  int64_t at_ns = 0;
  Result<void> r = jr::expect_object(root);
  auto field = [&](const char* key, auto& out) {
    if (r) r = jr::read_required(root.member(key), out);
  };
  field("at_ns", at_ns);
  field("cpu_usec", s.cpu_usec);
  field("memory_bytes", s.memory_bytes);
  field("memory_peak_bytes", s.memory_peak_bytes);
  field("net_rx_bytes", s.net_rx_bytes);
  field("net_tx_bytes", s.net_tx_bytes);
  field("final", s.final);
  if (!r) return wrap(r.error(), what);
  s.at =
      TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(at_ns)));
  return s;
}

}  // namespace berth::cp
