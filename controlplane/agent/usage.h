// Reading a task's measured usage (agent.h: UsageSample) from the kernel,
// as small functions of a directory, so that unit tests run them against a
// fake tree and the v2 VM against the real cgroupfs.
//
//   cgroup v2      <dir>/cpu.stat "usage_usec", <dir>/memory.current,
//                  <dir>/memory.peak (Linux 5.19+; absent: unknown)
//   cgroup v1      <cpuacct dir>/cpuacct.usage (ns, reported in usec),
//                  <memory dir>/memory.usage_in_bytes and
//                  memory.max_usage_in_bytes
//   host veth      <net dir>/<link>/statistics/{rx,tx}_bytes, as the HOST
//                  counts them: its rx is what the task sent (net_tx_bytes),
//                  its tx what the task received (net_rx_bytes)
//
// Every file must be there (but memory.peak) and hold one non-negative
// decimal number that fits int64 (after the unit conversion); anything else
// is an error naming the file and what it held. The number parsing is the
// runtime's (runtime/cgroup_util.h).
//
// usage.json (the final sample a release keeps in the task's directory) is
// written and read here too.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "controlplane/agent/agent.h"

namespace berth::cp {

struct CgroupCounters {
  int64_t cpu_usec = 0;
  int64_t memory_bytes = 0;
  std::optional<int64_t> memory_peak_bytes;  // nullopt: the kernel keeps no peak
};

// A pure cgroup v2 cgroup.
Result<CgroupCounters> read_cgroup_v2_counters(const std::string& dir);
// The same cgroup in the v1 cpuacct and memory hierarchies.
Result<CgroupCounters> read_cgroup_v1_counters(const std::string& cpuacct_dir,
                                               const std::string& memory_dir);

struct NetCounters {
  int64_t rx_bytes = 0;  // into the task (the host side's tx_bytes)
  int64_t tx_bytes = 0;  // out of the task (the host side's rx_bytes)
};
// The task's traffic through its host-side veth `link`; `net_dir` is
// /sys/class/net on a real host.
Result<NetCounters> read_veth_counters(const std::string& net_dir, const std::string& link);

// usage.json: {"at_ns", "cpu_usec", "memory_bytes", "memory_peak_bytes",
// "net_rx_bytes", "net_tx_bytes", "final"}; `at` in nanoseconds since the
// Unix epoch.
std::string usage_sample_json(const UsageSample& s);
// `what` names the document in errors (its path).
Result<UsageSample> parse_usage_sample(std::string_view text, const std::string& what);

}  // namespace berth::cp
