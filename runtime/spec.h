// The OCI runtime-spec (1.x) config.json, as typed structs.
//
// parse_spec() turns JSON into a Spec and validates it; every error names the
// JSON path and the reason ("spec: linux.namespaces[2].type: unknown namespace
// type \"foo\""). Fields this parser does not know are ignored, as runc does,
// so that bundles made for other runtimes run unchanged; a field it knows is
// applied or refused, never accepted and dropped. A JSON null is the same as
// an absent field.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace berth::runtime {

struct Root {
  std::string path;  // as written; resolved against the bundle by the caller
  bool readonly = false;
};

struct Mount {
  std::string destination;
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

struct Hook {
  std::string path;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::optional<int> timeout;  // seconds
};

struct Hooks {
  std::vector<Hook> prestart;
  std::vector<Hook> create_runtime;
  std::vector<Hook> create_container;
  std::vector<Hook> start_container;
  std::vector<Hook> poststart;
  std::vector<Hook> poststop;
};

struct Rlimit {
  std::string type;  // "RLIMIT_NOFILE"
  int resource = 0;  // resolved RLIMIT_* value
  uint64_t soft = 0;
  uint64_t hard = 0;
};

struct Capabilities {
  std::vector<std::string> bounding;
  std::vector<std::string> effective;
  std::vector<std::string> inheritable;
  std::vector<std::string> permitted;
  std::vector<std::string> ambient;
};

struct User {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::optional<uint32_t> umask;
  std::vector<uint32_t> additional_gids;
};

struct ConsoleSize {
  unsigned height = 0;
  unsigned width = 0;
};

// process.scheduler: sched_setattr(2) in the init and exec child.
struct Scheduler {
  int policy = 0;  // SCHED_OTHER, SCHED_FIFO, ... (the kernel's numbers)
  int32_t nice = 0;
  int32_t priority = 0;
  uint64_t flags = 0;  // SCHED_FLAG_* bits
  uint64_t runtime = 0;
  uint64_t deadline = 0;
  uint64_t period = 0;
};

// process.ioPriority: ioprio_set(IOPRIO_WHO_PROCESS) in the init and exec child.
struct IoPriority {
  int io_class = 0;  // IOPRIO_CLASS_RT = 1, BE = 2, IDLE = 3
  int priority = 0;  // 0..7
};

struct Process {
  bool terminal = false;
  std::optional<ConsoleSize> console_size;
  User user;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd = "/";
  std::optional<Capabilities> capabilities;
  std::vector<Rlimit> rlimits;
  bool no_new_privileges = false;
  std::optional<int> oom_score_adj;
  std::string apparmor_profile;  // applied when AppArmor is enabled, else refused (lsm.h)
  std::string selinux_label;     // refused (lsm.h)
  std::optional<Scheduler> scheduler;
  std::optional<IoPriority> io_priority;
};

enum class NamespaceType { pid, network, mount, ipc, uts, user, cgroup, time };

struct Namespace {
  NamespaceType type;
  std::string path;  // empty: create a new one
};

struct IdMapping {
  uint32_t container_id = 0;
  uint32_t host_id = 0;
  uint32_t size = 0;
};

struct DeviceRule {  // linux.resources.devices (v1 devices controller)
  bool allow = false;
  std::string type;  // "a", "c", "b" (empty = all)
  std::optional<int64_t> major, minor;
  std::string access;  // "rwm"
};

struct Device {  // linux.devices: nodes to create in /dev
  std::string path;
  std::string type;  // c, b, u, p
  int64_t major = 0, minor = 0;
  std::optional<uint32_t> file_mode;
  std::optional<uint32_t> uid, gid;
};

struct MemoryResources {
  std::optional<int64_t> limit;        // bytes; -1 = unlimited
  std::optional<int64_t> reservation;  // soft limit (v1) / memory.low (v2)
  std::optional<int64_t> swap;         // memory+swap limit, as in runtime-spec
  std::optional<uint64_t> swappiness;
  std::optional<bool> disable_oom_killer;
  std::optional<int64_t> kernel_tcp;  // v1 memory.kmem.tcp.limit_in_bytes; -1 = unlimited
  std::optional<int64_t> kernel;      // v1 memory.kmem.limit_in_bytes (deprecated); 0 = not set
  std::optional<bool> use_hierarchy;  // v1 memory.use_hierarchy; v2 is always hierarchical
  // Refuse a limit below the cgroup's current usage instead of reclaiming.
  std::optional<bool> check_before_update;
};

struct HugepageLimit {    // linux.resources.hugepageLimits[]
  std::string page_size;  // "2MB", "1GB": the kernel's hugetlb.<size>.* spelling
  uint64_t limit = 0;     // bytes
};

struct InterfacePriority {  // linux.resources.network.priorities[]
  std::string name;
  uint32_t priority = 0;
};

struct NetworkResources {  // v1 net_cls / net_prio
  std::optional<uint32_t> class_id;
  std::vector<InterfacePriority> priorities;
};

struct CpuResources {
  std::optional<uint64_t> shares;           // v1 cpu.shares; converted for v2 cpu.weight
  std::optional<int64_t> quota;             // usec per period; -1 = unlimited
  std::optional<uint64_t> period;           // usec
  std::string cpus;                         // cpuset.cpus
  std::string mems;                         // cpuset.mems
  std::optional<uint64_t> burst;            // v1 cpu.cfs_burst_us / v2 cpu.max.burst; 0 = none
  std::optional<int64_t> realtime_runtime;  // v1 cpu.rt_runtime_us; 0 = not set
  std::optional<uint64_t> realtime_period;  // v1 cpu.rt_period_us; 0 = not set
  std::optional<int64_t> idle;              // cpu.idle: 0 default, 1 SCHED_IDLE
};

struct BlockIoDeviceValue {
  int64_t major = 0, minor = 0;
  uint64_t rate = 0;  // throttle: bytes or ops per second; weight: weight
};

struct BlockIoResources {
  std::optional<uint16_t> weight;
  std::optional<uint16_t> leaf_weight;  // v1 blkio.leaf_weight (CFQ only); 0 = not set
  std::vector<BlockIoDeviceValue> weight_device;
  std::vector<BlockIoDeviceValue> leaf_weight_device;  // weightDevice[].leafWeight
  std::vector<BlockIoDeviceValue> throttle_read_bps;
  std::vector<BlockIoDeviceValue> throttle_write_bps;
  std::vector<BlockIoDeviceValue> throttle_read_iops;
  std::vector<BlockIoDeviceValue> throttle_write_iops;
};

struct RdmaLimit {  // linux.resources.rdma["<device>"]; absent = no limit
  std::optional<uint32_t> hca_handles;
  std::optional<uint32_t> hca_objects;
};

struct Resources {
  std::optional<MemoryResources> memory;
  std::optional<CpuResources> cpu;
  std::optional<int64_t> pids_limit;  // -1 / 0 = unlimited
  std::optional<BlockIoResources> block_io;
  std::vector<DeviceRule> devices;
  std::vector<HugepageLimit> hugepage_limits;
  std::optional<NetworkResources> network;
  std::map<std::string, RdmaLimit> rdma;       // rdma.max, by device name
  std::map<std::string, std::string> unified;  // raw v2 files ("memory.high": "1G")
};

enum class SeccompAction {
  kill,          // SCMP_ACT_KILL (kill thread)
  kill_process,  // SCMP_ACT_KILL_PROCESS
  kill_thread,   // SCMP_ACT_KILL_THREAD
  trap,
  errno_ret,  // SCMP_ACT_ERRNO
  trace,
  allow,
  log,
  notify,
};

enum class SeccompOp { ne, lt, le, eq, ge, gt, masked_eq };

struct SeccompArg {
  unsigned index = 0;
  uint64_t value = 0;
  uint64_t value_two = 0;
  SeccompOp op = SeccompOp::eq;
};

struct SeccompSyscall {
  std::vector<std::string> names;
  SeccompAction action = SeccompAction::allow;
  std::optional<unsigned> errno_ret;
  std::vector<SeccompArg> args;
};

struct Seccomp {
  SeccompAction default_action = SeccompAction::allow;
  std::optional<unsigned> default_errno_ret;
  std::vector<std::string> architectures;  // "SCMP_ARCH_X86_64"
  std::vector<std::string> flags;          // "SECCOMP_FILTER_FLAG_LOG", ...
  std::string listener_path;               // for SCMP_ACT_NOTIFY
  std::vector<SeccompSyscall> syscalls;
};

struct Personality {
  std::string domain;              // "LINUX" or "LINUX32"
  std::vector<std::string> flags;  // none are defined yet by the runtime-spec
};

struct Linux {
  std::vector<Namespace> namespaces;
  std::vector<IdMapping> uid_mappings;
  std::vector<IdMapping> gid_mappings;
  std::vector<Device> devices;
  std::string cgroups_path;
  std::optional<Resources> resources;
  std::map<std::string, std::string> sysctl;
  std::optional<Seccomp> seccomp;
  std::string rootfs_propagation;  // "", "private", "rprivate", "slave", "rslave", "shared",
                                   // "rshared", "unbindable", "runbindable"
  std::vector<std::string> masked_paths;
  std::vector<std::string> readonly_paths;
  std::string mount_label;  // refused (lsm.h)
  std::optional<Personality> personality;

  bool has_namespace(NamespaceType t) const;
  const Namespace* find_namespace(NamespaceType t) const;
};

struct Spec {
  std::string oci_version;
  Root root;
  std::optional<Process> process;
  std::string hostname;
  std::string domainname;
  std::vector<Mount> mounts;
  Hooks hooks;
  std::map<std::string, std::string> annotations;
  Linux linux;
};

// Parses and validates a config.json text.
Result<Spec> parse_spec(std::string_view json_text);
// The largest config.json load_spec reads (Docker's biggest real configs are
// well under 1 MiB; parsing costs several times the text's size in memory).
inline constexpr uint64_t kMaxConfigSize = 16u << 20;

// Reads <bundle>/config.json; larger than kMaxConfigSize is an error (EFBIG)
// found before the text is read.
Result<Spec> load_spec(const std::string& bundle_dir);
// What create/run need beyond a valid spec: a process with a non-empty
// args[0] and an absolute cwd. parse_spec accepts a spec without a process
// (the runtime-spec allows it); the caller that is about to start one checks.
Result<void> validate_for_run(const Spec& spec);

// Name ↔ value helpers shared by the parser, the CLI and `features`.
const char* namespace_name(NamespaceType t);  // "pid", "network", ...
std::optional<NamespaceType> namespace_from_name(std::string_view name);
std::optional<SeccompAction> seccomp_action_from_name(std::string_view name);
const char* seccomp_action_name(SeccompAction a);
std::optional<SeccompOp> seccomp_op_from_name(std::string_view name);
const char* seccomp_op_name(SeccompOp op);
std::optional<int> rlimit_from_name(std::string_view name);

}  // namespace berth::runtime
