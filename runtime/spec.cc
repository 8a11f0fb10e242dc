// config.json -> Spec. Every error names the JSON path of the value it is
// about ("linux.namespaces[2].type") so that the operator can find it.
//
// runtime/ is built with -fno-exceptions, where any nlohmann throw aborts the
// process: the text is parsed with the non-throwing overload and values are
// read only through get_ptr<>, which returns nullptr on a type mismatch.
//
// JSON null is taken as "absent", as Go's encoding/json (runc) does, so that
// generators that write `"seccomp": null` work unchanged.
#include "runtime/spec.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <concepts>
#include <limits>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/json.h"
#include "common/json_reader.h"

namespace berth::runtime {
namespace {

using json = nlohmann::json;

constexpr std::string_view kStep = "spec";

// ---------------------------------------------------------------------------
// Name tables.

template <class T>
struct Named {
  const char* name;
  T value;
};

constexpr std::array<Named<NamespaceType>, 8> kNamespaces{{
    {"pid", NamespaceType::pid},
    {"network", NamespaceType::network},
    {"mount", NamespaceType::mount},
    {"ipc", NamespaceType::ipc},
    {"uts", NamespaceType::uts},
    {"user", NamespaceType::user},
    {"cgroup", NamespaceType::cgroup},
    {"time", NamespaceType::time},
}};

constexpr std::array<Named<SeccompAction>, 9> kSeccompActions{{
    {"SCMP_ACT_KILL", SeccompAction::kill},
    {"SCMP_ACT_KILL_PROCESS", SeccompAction::kill_process},
    {"SCMP_ACT_KILL_THREAD", SeccompAction::kill_thread},
    {"SCMP_ACT_TRAP", SeccompAction::trap},
    {"SCMP_ACT_ERRNO", SeccompAction::errno_ret},
    {"SCMP_ACT_TRACE", SeccompAction::trace},
    {"SCMP_ACT_ALLOW", SeccompAction::allow},
    {"SCMP_ACT_LOG", SeccompAction::log},
    {"SCMP_ACT_NOTIFY", SeccompAction::notify},
}};

constexpr std::array<Named<SeccompOp>, 7> kSeccompOps{{
    {"SCMP_CMP_NE", SeccompOp::ne},
    {"SCMP_CMP_LT", SeccompOp::lt},
    {"SCMP_CMP_LE", SeccompOp::le},
    {"SCMP_CMP_EQ", SeccompOp::eq},
    {"SCMP_CMP_GE", SeccompOp::ge},
    {"SCMP_CMP_GT", SeccompOp::gt},
    {"SCMP_CMP_MASKED_EQ", SeccompOp::masked_eq},
}};

constexpr std::array<Named<int>, 16> kRlimits{{
    {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
}};

constexpr std::array<std::string_view, 8> kPropagations{
    "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"};

template <class T, size_t N>
std::optional<T> lookup(const std::array<Named<T>, N>& table, std::string_view name) {
  for (const auto& e : table) {
    if (name == e.name) return e.value;
  }
  return std::nullopt;
}

template <class T, size_t N>
const char* name_of(const std::array<Named<T>, N>& table, T value) {
  for (const auto& e : table) {
    if (e.value == value) return e.name;
  }
  return "unknown";
}

// ---------------------------------------------------------------------------
// Typed reading with paths (common/json_reader.h).

using jr::check_range;
using jr::expect_object;
using jr::index_path;
using jr::Node;
using jr::read;
using jr::read_array;
using jr::read_object;
using jr::read_required;
using jr::type_error;

constexpr jr::Document kSpecDocument{kStep, "config.json"};

template <class... A>
std::unexpected<Error> fail(std::string_view path, fmt::format_string<A...> f, A&&... args) {
  return jr::fail_at(kSpecDocument, path, fmt::format(f, std::forward<A>(args)...));
}

Result<void> check_absolute(const Node& n, const std::string& value) {
  if (!value.starts_with('/')) return fail(n.path, "must be an absolute path, got {:?}", value);
  return {};
}

Result<std::string> parse_absolute_path(const Node& n) {
  std::string p;
  BERTH_TRY(read(n, p));
  BERTH_TRY(check_absolute(n, p));
  return p;
}

// ---------------------------------------------------------------------------
// Top level: version, root, mounts, hooks.

Result<std::string> parse_oci_version(const Node& n) {
  std::string v;
  BERTH_TRY(read_required(n, v));
  // Semantic versioning: within a major version the format only grows, and
  // unknown fields are ignored, so every 1.x reads the same way.
  if (v != "1" && !v.starts_with("1.")) {
    return fail(n.path, "unsupported version {:?} (berth supports 1.x)", v);
  }
  return v;
}

Result<Root> parse_root(const Node& n) {
  if (!n.present()) return fail(n.path, "required field is missing");
  BERTH_TRY(expect_object(n));
  Root root;
  Node path = n.member("path");
  BERTH_TRY(read_required(path, root.path));
  if (root.path.empty()) return fail(path.path, "must not be empty");
  BERTH_TRY(read(n.member("readonly"), root.readonly));
  return root;
}

Result<IdMapping> parse_id_mapping(const Node& n) {
  BERTH_TRY(expect_object(n));
  IdMapping m;
  BERTH_TRY(read_required(n.member("containerID"), m.container_id));
  BERTH_TRY(read_required(n.member("hostID"), m.host_id));
  Node size = n.member("size");
  BERTH_TRY(read_required(size, m.size));
  // The kernel rejects the whole uid_map write for an empty range.
  if (m.size == 0) return fail(size.path, "must be greater than 0");
  return m;
}

Result<Mount> parse_mount(const Node& n) {
  BERTH_TRY(expect_object(n));
  Mount m;
  Node destination = n.member("destination");
  BERTH_TRY(read_required(destination, m.destination));
  BERTH_TRY(check_absolute(destination, m.destination));
  BERTH_TRY(read(n.member("type"), m.type));
  BERTH_TRY(read(n.member("source"), m.source));
  BERTH_TRY(read(n.member("options"), m.options));
  // Idmapped mounts: parsed, then refused rather than mounted without the
  // mapping.
  for (const char* key : {"uidMappings", "gidMappings"}) {
    Node mappings = n.member(key);
    std::vector<IdMapping> parsed;
    BERTH_TRY(read_array(mappings, parsed, parse_id_mapping));
    if (!parsed.empty()) return fail(mappings.path, "idmapped mounts are not supported");
  }
  return m;
}

Result<std::string> parse_env_entry(const Node& n) {
  std::string e;
  BERTH_TRY(read(n, e));
  size_t eq = e.find('=');
  if (eq == std::string::npos || eq == 0) return fail(n.path, "{:?} is not KEY=VALUE", e);
  return e;
}

Result<Hook> parse_hook(const Node& n) {
  BERTH_TRY(expect_object(n));
  Hook h;
  Node path = n.member("path");
  BERTH_TRY(read_required(path, h.path));
  BERTH_TRY(check_absolute(path, h.path));
  BERTH_TRY(read(n.member("args"), h.args));
  BERTH_TRY(read_array(n.member("env"), h.env, parse_env_entry));
  Node timeout = n.member("timeout");
  BERTH_TRY(read(timeout, h.timeout));
  if (h.timeout && *h.timeout <= 0) {
    return fail(timeout.path, "must be greater than 0, got {}", *h.timeout);
  }
  return h;
}

Result<Hooks> parse_hooks(const Node& n) {
  Hooks h;
  if (!n.present()) return h;
  BERTH_TRY(expect_object(n));
  BERTH_TRY(read_array(n.member("prestart"), h.prestart, parse_hook));
  BERTH_TRY(read_array(n.member("createRuntime"), h.create_runtime, parse_hook));
  BERTH_TRY(read_array(n.member("createContainer"), h.create_container, parse_hook));
  BERTH_TRY(read_array(n.member("startContainer"), h.start_container, parse_hook));
  BERTH_TRY(read_array(n.member("poststart"), h.poststart, parse_hook));
  BERTH_TRY(read_array(n.member("poststop"), h.poststop, parse_hook));
  return h;
}

// ---------------------------------------------------------------------------
// process

Result<ConsoleSize> parse_console_size(const Node& n) {
  BERTH_TRY(expect_object(n));
  ConsoleSize c;
  BERTH_TRY(read_required(n.member("height"), c.height));
  BERTH_TRY(read_required(n.member("width"), c.width));
  return c;
}

// An absent user (or uid/gid) is root, as in runc.
Result<User> parse_user(const Node& n) {
  User u;
  if (!n.present()) return u;
  BERTH_TRY(expect_object(n));
  BERTH_TRY(read(n.member("uid"), u.uid));
  BERTH_TRY(read(n.member("gid"), u.gid));
  BERTH_TRY(read(n.member("umask"), u.umask));
  BERTH_TRY(read(n.member("additionalGids"), u.additional_gids));
  return u;
}

Result<Capabilities> parse_capabilities(const Node& n) {
  BERTH_TRY(expect_object(n));
  Capabilities c;
  BERTH_TRY(read(n.member("bounding"), c.bounding));
  BERTH_TRY(read(n.member("effective"), c.effective));
  BERTH_TRY(read(n.member("inheritable"), c.inheritable));
  BERTH_TRY(read(n.member("permitted"), c.permitted));
  BERTH_TRY(read(n.member("ambient"), c.ambient));
  return c;
}

Result<Rlimit> parse_rlimit(const Node& n) {
  BERTH_TRY(expect_object(n));
  Rlimit r;
  Node type = n.member("type");
  BERTH_TRY(read_required(type, r.type));
  std::optional<int> resource = rlimit_from_name(r.type);
  if (!resource) return fail(type.path, "unknown rlimit {:?}", r.type);
  r.resource = *resource;
  BERTH_TRY(read_required(n.member("soft"), r.soft));
  BERTH_TRY(read_required(n.member("hard"), r.hard));
  // setrlimit(2) would fail with EINVAL in the child, far from the cause.
  if (r.soft > r.hard) {
    return fail(n.path, "soft limit {} is greater than hard limit {}", r.soft, r.hard);
  }
  return r;
}

Result<void> read_rlimits(const Node& n, std::vector<Rlimit>& out) {
  BERTH_TRY(read_array(n, out, parse_rlimit));
  // The later entry would silently win: a bundle with two is a mistake.
  for (size_t i = 0; i < out.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (out[i].resource == out[j].resource) {
        return fail(index_path(n.path, i) + ".type", "duplicate rlimit {:?} (also at {})",
                    out[i].type, index_path(n.path, j));
      }
    }
  }
  return {};
}

// process.scheduler: the policies sched_setattr(2) knows (SCHED_ISO is
// reserved in the uapi and refused by the kernel, so it is refused here).
constexpr std::array<Named<int>, 6> kSchedPolicies{{
    {"SCHED_OTHER", 0},
    {"SCHED_FIFO", 1},
    {"SCHED_RR", 2},
    {"SCHED_BATCH", 3},
    {"SCHED_IDLE", 5},
    {"SCHED_DEADLINE", 6},
}};

constexpr std::array<Named<uint64_t>, 7> kSchedFlags{{
    {"SCHED_FLAG_RESET_ON_FORK", 0x01},
    {"SCHED_FLAG_RECLAIM", 0x02},
    {"SCHED_FLAG_DL_OVERRUN", 0x04},
    {"SCHED_FLAG_KEEP_POLICY", 0x08},
    {"SCHED_FLAG_KEEP_PARAMS", 0x10},
    {"SCHED_FLAG_UTIL_CLAMP_MIN", 0x20},
    {"SCHED_FLAG_UTIL_CLAMP_MAX", 0x40},
}};

constexpr int kSchedFifo = 1;
constexpr int kSchedRr = 2;
constexpr int kSchedDeadline = 6;

// A required name from `table`; `what` is "policy", "class", ... for the
// error, which lists the names accepted.
template <class T, size_t N>
Result<T> read_required_name(const Node& n, const std::array<Named<T>, N>& table,
                             std::string_view what) {
  std::string name;
  BERTH_TRY(read_required(n, name));
  if (std::optional<T> v = lookup(table, name)) return *v;
  std::string names;
  for (size_t i = 0; i < N; ++i) {
    names += i == 0 ? "" : (i + 1 == N ? " or " : ", ");
    names += table[i].name;
  }
  return fail(n.path, "unknown {} {:?} (expected {})", what, name, names);
}

Result<Scheduler> parse_scheduler(const Node& n) {
  BERTH_TRY(expect_object(n));
  Scheduler s;
  BERTH_ASSIGN(s.policy, read_required_name(n.member("policy"), kSchedPolicies, "policy"));
  const char* name = name_of(kSchedPolicies, s.policy);
  Node nice = n.member("nice");
  std::optional<int32_t> nice_value;
  BERTH_TRY(read(nice, nice_value));
  BERTH_TRY(check_range(nice, nice_value, -20, 19));
  s.nice = nice_value.value_or(0);
  Node priority = n.member("priority");
  BERTH_TRY(read(priority, s.priority));
  bool realtime = s.policy == kSchedFifo || s.policy == kSchedRr;
  if (realtime && (s.priority < 1 || s.priority > 99)) {
    return fail(priority.path, "must be 1..99 for {}, got {}", name, s.priority);
  }
  if (!realtime && s.priority != 0) {
    return fail(priority.path, "must be 0 for {} (only SCHED_FIFO and SCHED_RR use it)", name);
  }
  std::vector<std::string> flags;
  Node flags_node = n.member("flags");
  BERTH_TRY(read(flags_node, flags));
  for (size_t i = 0; i < flags.size(); ++i) {
    std::optional<uint64_t> bit = lookup(kSchedFlags, flags[i]);
    if (!bit) return fail(index_path(flags_node.path, i), "unknown flag {:?}", flags[i]);
    s.flags |= *bit;
  }
  BERTH_TRY(read(n.member("runtime"), s.runtime));
  BERTH_TRY(read(n.member("deadline"), s.deadline));
  BERTH_TRY(read(n.member("period"), s.period));
  if (s.policy == kSchedDeadline) {
    if (s.runtime == 0) return fail(n.member("runtime").path, "required for SCHED_DEADLINE");
    if (s.deadline == 0) return fail(n.member("deadline").path, "required for SCHED_DEADLINE");
    if (s.runtime > s.deadline || (s.period != 0 && s.deadline > s.period)) {
      return fail(n.path, "SCHED_DEADLINE needs runtime <= deadline <= period");
    }
  } else if (s.runtime != 0 || s.deadline != 0 || s.period != 0) {
    return fail(n.path, "runtime, deadline and period are only for SCHED_DEADLINE");
  }
  return s;
}

constexpr std::array<Named<int>, 3> kIoPriorityClasses{{
    {"IOPRIO_CLASS_RT", 1},
    {"IOPRIO_CLASS_BE", 2},
    {"IOPRIO_CLASS_IDLE", 3},
}};

Result<IoPriority> parse_io_priority(const Node& n) {
  BERTH_TRY(expect_object(n));
  IoPriority io;
  BERTH_ASSIGN(io.io_class, read_required_name(n.member("class"), kIoPriorityClasses, "class"));
  Node priority = n.member("priority");
  std::optional<int> value;
  BERTH_TRY(read(priority, value));
  BERTH_TRY(check_range(priority, value, 0, 7));
  io.priority = value.value_or(0);
  return io;
}

// A field berth parses but cannot honour: absent, null or empty is accepted,
// anything else is refused with `why`, never accepted and ignored.
Result<void> refuse_unless_empty(const Node& n, std::string_view why) {
  if (!n.present()) return {};
  BERTH_TRY(expect_object(n));
  if (n.value->empty()) return {};
  return fail(n.path, "{}", why);
}

// process.execCPUAffinity: {"initial": "0-3", "final": "..."}; both empty is
// accepted.
Result<void> refuse_exec_cpu_affinity(const Node& n) {
  if (!n.present()) return {};
  BERTH_TRY(expect_object(n));
  std::string initial, final_cpus;
  BERTH_TRY(read(n.member("initial"), initial));
  BERTH_TRY(read(n.member("final"), final_cpus));
  if (initial.empty() && final_cpus.empty()) return {};
  return fail(n.path, "setting the CPU affinity of exec'd processes is not supported");
}

Result<Process> parse_process(const Node& n) {
  BERTH_TRY(expect_object(n));
  Process p;
  BERTH_TRY(read(n.member("terminal"), p.terminal));
  BERTH_TRY(read_object(n.member("consoleSize"), p.console_size, parse_console_size));
  BERTH_ASSIGN(p.user, parse_user(n.member("user")));
  BERTH_TRY(read(n.member("args"), p.args));
  BERTH_TRY(read_array(n.member("env"), p.env, parse_env_entry));
  Node cwd = n.member("cwd");
  BERTH_TRY(read(cwd, p.cwd));
  BERTH_TRY(check_absolute(cwd, p.cwd));
  BERTH_TRY(read_object(n.member("capabilities"), p.capabilities, parse_capabilities));
  BERTH_TRY(read_rlimits(n.member("rlimits"), p.rlimits));
  BERTH_TRY(read(n.member("noNewPrivileges"), p.no_new_privileges));
  Node oom = n.member("oomScoreAdj");
  BERTH_TRY(read(oom, p.oom_score_adj));
  BERTH_TRY(check_range(oom, p.oom_score_adj, -1000, 1000));
  BERTH_TRY(read(n.member("apparmorProfile"), p.apparmor_profile));
  BERTH_TRY(read(n.member("selinuxLabel"), p.selinux_label));
  BERTH_TRY(read_object(n.member("scheduler"), p.scheduler, parse_scheduler));
  BERTH_TRY(read_object(n.member("ioPriority"), p.io_priority, parse_io_priority));
  BERTH_TRY(refuse_exec_cpu_affinity(n.member("execCPUAffinity")));
  return p;
}

// ---------------------------------------------------------------------------
// linux: namespaces, id mappings, devices

Result<Namespace> parse_namespace(const Node& n) {
  BERTH_TRY(expect_object(n));
  Node type = n.member("type");
  std::string name;
  BERTH_TRY(read_required(type, name));
  std::optional<NamespaceType> t = namespace_from_name(name);
  if (!t) return fail(type.path, "unknown namespace type {:?}", name);
  Namespace ns{*t, {}};
  Node path = n.member("path");
  BERTH_TRY(read(path, ns.path));
  // An empty path is the same as none (Go's omitempty): a new namespace.
  if (!ns.path.empty()) BERTH_TRY(check_absolute(path, ns.path));
  return ns;
}

Result<void> read_namespaces(const Node& n, std::vector<Namespace>& out) {
  BERTH_TRY(read_array(n, out, parse_namespace));
  for (size_t i = 0; i < out.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (out[i].type == out[j].type) {
        return fail(index_path(n.path, i) + ".type", "duplicate namespace type {:?} (also at {})",
                    namespace_name(out[i].type), index_path(n.path, j));
      }
    }
  }
  return {};
}

Result<Device> parse_device(const Node& n) {
  BERTH_TRY(expect_object(n));
  Device d;
  Node path = n.member("path");
  BERTH_TRY(read_required(path, d.path));
  BERTH_TRY(check_absolute(path, d.path));
  Node type = n.member("type");
  BERTH_TRY(read_required(type, d.type));
  if (d.type != "c" && d.type != "b" && d.type != "u" && d.type != "p") {
    return fail(type.path, "unknown device type {:?} (expected c, b, u or p)", d.type);
  }
  // A FIFO has no device number; every other node needs both halves.
  if (d.type == "p") {
    BERTH_TRY(read(n.member("major"), d.major));
    BERTH_TRY(read(n.member("minor"), d.minor));
  } else {
    BERTH_TRY(read_required(n.member("major"), d.major));
    BERTH_TRY(read_required(n.member("minor"), d.minor));
  }
  BERTH_TRY(read(n.member("fileMode"), d.file_mode));
  BERTH_TRY(read(n.member("uid"), d.uid));
  BERTH_TRY(read(n.member("gid"), d.gid));
  return d;
}

// ---------------------------------------------------------------------------
// linux.resources

Result<void> read_memory_bytes(const Node& n, std::optional<int64_t>& out) {
  BERTH_TRY(read(n, out));
  if (out && *out < -1) return fail(n.path, "{} is not a byte count (-1 means unlimited)", *out);
  return {};
}

Result<void> read_swappiness(const Node& n, std::optional<uint64_t>& out) {
  BERTH_TRY(read(n, out));
  // Engines have sent Docker's "-1 = unset" through Go's uint64 as 2^64-1;
  // runc takes that value as unset, and so do we.
  if (out == std::numeric_limits<uint64_t>::max()) {
    out.reset();
    return {};
  }
  return check_range<uint64_t>(n, out, 0, 100);
}

Result<MemoryResources> parse_memory(const Node& n) {
  BERTH_TRY(expect_object(n));
  MemoryResources m;
  BERTH_TRY(read_memory_bytes(n.member("limit"), m.limit));
  BERTH_TRY(read_memory_bytes(n.member("reservation"), m.reservation));
  BERTH_TRY(read_memory_bytes(n.member("swap"), m.swap));
  BERTH_TRY(read_swappiness(n.member("swappiness"), m.swappiness));
  BERTH_TRY(read(n.member("disableOOMKiller"), m.disable_oom_killer));
  BERTH_TRY(read_memory_bytes(n.member("kernelTCP"), m.kernel_tcp));
  BERTH_TRY(read_memory_bytes(n.member("kernel"), m.kernel));
  BERTH_TRY(read(n.member("useHierarchy"), m.use_hierarchy));
  BERTH_TRY(read(n.member("checkBeforeUpdate"), m.check_before_update));
  return m;
}

// "2MB", "1GB", "64KB": digits then KB, MB or GB, as the kernel names its
// hugetlb.<size>.* files (and as runc validates pageSize).
Result<HugepageLimit> parse_hugepage_limit(const Node& n) {
  BERTH_TRY(expect_object(n));
  HugepageLimit h;
  Node size = n.member("pageSize");
  BERTH_TRY(read_required(size, h.page_size));
  const std::string_view v = h.page_size;
  const size_t digits = v.find_first_not_of("0123456789");
  const bool ok =
      digits != 0 && digits != std::string_view::npos &&
      (v.substr(digits) == "KB" || v.substr(digits) == "MB" || v.substr(digits) == "GB");
  if (!ok) return fail(size.path, "{:?} is not a page size like \"2MB\" or \"1GB\"", h.page_size);
  BERTH_TRY(read_required(n.member("limit"), h.limit));
  return h;
}

Result<InterfacePriority> parse_interface_priority(const Node& n) {
  BERTH_TRY(expect_object(n));
  InterfacePriority p;
  Node name = n.member("name");
  BERTH_TRY(read_required(name, p.name));
  // One "<name> <priority>" line of net_prio.ifpriomap.
  if (p.name.empty() || p.name.size() >= 16 || p.name.find_first_of(" \n/") != std::string::npos) {
    return fail(name.path, "{:?} is not a network interface name", p.name);
  }
  BERTH_TRY(read_required(n.member("priority"), p.priority));
  return p;
}

Result<NetworkResources> parse_network(const Node& n) {
  BERTH_TRY(expect_object(n));
  NetworkResources r;
  BERTH_TRY(read(n.member("classID"), r.class_id));
  BERTH_TRY(read_array(n.member("priorities"), r.priorities, parse_interface_priority));
  return r;
}

// linux.resources.rdma: {"<device>": {"hcaHandles": n, "hcaObjects": n}}, one
// "<device> hca_handle=n hca_object=n" line of rdma.max each.
Result<void> read_rdma(const Node& n, std::map<std::string, RdmaLimit>& out) {
  if (!n.present()) return {};
  BERTH_TRY(expect_object(n));
  out.clear();
  for (auto it = n.value->begin(); it != n.value->end(); ++it) {
    Node entry = n.entry(it.key(), it.value());
    const std::string& name = it.key();
    if (name.empty() || name.find_first_of(" \t\n/=") != std::string::npos ||
        name.find('\0') != std::string::npos) {
      return fail(entry.path, "{:?} is not an RDMA device name", name);
    }
    BERTH_TRY(expect_object(entry));
    RdmaLimit l;
    BERTH_TRY(read(entry.member("hcaHandles"), l.hca_handles));
    BERTH_TRY(read(entry.member("hcaObjects"), l.hca_objects));
    if (!l.hca_handles && !l.hca_objects) return fail(entry.path, "needs hcaHandles or hcaObjects");
    out.emplace(name, l);
  }
  return {};
}

Result<CpuResources> parse_cpu(const Node& n) {
  BERTH_TRY(expect_object(n));
  CpuResources c;
  BERTH_TRY(read(n.member("shares"), c.shares));
  BERTH_TRY(read(n.member("quota"), c.quota));
  BERTH_TRY(read(n.member("period"), c.period));
  BERTH_TRY(read(n.member("cpus"), c.cpus));
  BERTH_TRY(read(n.member("mems"), c.mems));
  Node burst = n.member("burst");
  BERTH_TRY(read(burst, c.burst));
  if (c.burst && c.quota.value_or(0) > 0 && *c.burst > static_cast<uint64_t>(*c.quota)) {
    return fail(burst.path, "{} is larger than quota = {} (config-linux: burst MUST be no larger)",
                *c.burst, *c.quota);
  }
  Node rt_runtime = n.member("realtimeRuntime");
  BERTH_TRY(read(rt_runtime, c.realtime_runtime));
  if (c.realtime_runtime && *c.realtime_runtime < -1) {
    return fail(rt_runtime.path, "{} is not a time in microseconds (-1 means unlimited)",
                *c.realtime_runtime);
  }
  BERTH_TRY(read(n.member("realtimePeriod"), c.realtime_period));
  Node idle = n.member("idle");
  BERTH_TRY(read(idle, c.idle));
  BERTH_TRY(check_range<int64_t>(idle, c.idle, 0, 1));
  return c;
}

Result<void> read_pids(const Node& n, std::optional<int64_t>& limit) {
  if (!n.present()) return {};
  BERTH_TRY(expect_object(n));
  return read(n.member("limit"), limit);
}

Result<BlockIoDeviceValue> parse_block_io_device(const Node& n) {
  BERTH_TRY(expect_object(n));
  BlockIoDeviceValue d;
  BERTH_TRY(read_required(n.member("major"), d.major));
  BERTH_TRY(read_required(n.member("minor"), d.minor));
  return d;
}

Result<BlockIoDeviceValue> parse_throttle_device(const Node& n) {
  BERTH_ASSIGN(BlockIoDeviceValue d, parse_block_io_device(n));
  BERTH_TRY(read_required(n.member("rate"), d.rate));
  return d;
}

// weightDevice[]: weight, leafWeight or both; each goes to its own list.
Result<void> read_weight_devices(const Node& n, BlockIoResources& b) {
  if (!n.present()) return {};
  if (!n.value->is_array()) return type_error(n, "an array");
  for (size_t i = 0; i < n.value->size(); ++i) {
    Node e = n.element(i);
    BERTH_ASSIGN(BlockIoDeviceValue d, parse_block_io_device(e));
    std::optional<uint16_t> weight, leaf;
    BERTH_TRY(read(e.member("weight"), weight));
    BERTH_TRY(read(e.member("leafWeight"), leaf));
    if (!weight && !leaf) return fail(e.path, "needs a weight or a leafWeight");
    if (weight) b.weight_device.push_back({d.major, d.minor, *weight});
    if (leaf) b.leaf_weight_device.push_back({d.major, d.minor, *leaf});
  }
  return {};
}

Result<BlockIoResources> parse_block_io(const Node& n) {
  BERTH_TRY(expect_object(n));
  BlockIoResources b;
  BERTH_TRY(read(n.member("weight"), b.weight));
  BERTH_TRY(read(n.member("leafWeight"), b.leaf_weight));
  BERTH_TRY(read_weight_devices(n.member("weightDevice"), b));
  BERTH_TRY(
      read_array(n.member("throttleReadBpsDevice"), b.throttle_read_bps, parse_throttle_device));
  BERTH_TRY(
      read_array(n.member("throttleWriteBpsDevice"), b.throttle_write_bps, parse_throttle_device));
  BERTH_TRY(
      read_array(n.member("throttleReadIOPSDevice"), b.throttle_read_iops, parse_throttle_device));
  BERTH_TRY(read_array(n.member("throttleWriteIOPSDevice"), b.throttle_write_iops,
                       parse_throttle_device));
  return b;
}

Result<DeviceRule> parse_device_rule(const Node& n) {
  BERTH_TRY(expect_object(n));
  DeviceRule r;
  BERTH_TRY(read_required(n.member("allow"), r.allow));
  Node type = n.member("type");
  BERTH_TRY(read(type, r.type));
  if (!r.type.empty() && r.type != "a" && r.type != "c" && r.type != "b") {
    return fail(type.path, "unknown device type {:?} (expected a, c or b)", r.type);
  }
  BERTH_TRY(read(n.member("major"), r.major));
  BERTH_TRY(read(n.member("minor"), r.minor));
  Node access = n.member("access");
  BERTH_TRY(read(access, r.access));
  if (r.access.find_first_not_of("rwm") != std::string::npos) {
    return fail(access.path, "{:?} may only contain r, w and m", r.access);
  }
  return r;
}

Result<Resources> parse_resources(const Node& n) {
  BERTH_TRY(expect_object(n));
  Resources r;
  BERTH_TRY(read_object(n.member("memory"), r.memory, parse_memory));
  BERTH_TRY(read_object(n.member("cpu"), r.cpu, parse_cpu));
  BERTH_TRY(read_pids(n.member("pids"), r.pids_limit));
  BERTH_TRY(read_object(n.member("blockIO"), r.block_io, parse_block_io));
  BERTH_TRY(read_array(n.member("devices"), r.devices, parse_device_rule));
  BERTH_TRY(read_array(n.member("hugepageLimits"), r.hugepage_limits, parse_hugepage_limit));
  BERTH_TRY(read_object(n.member("network"), r.network, parse_network));
  BERTH_TRY(read_rdma(n.member("rdma"), r.rdma));
  BERTH_TRY(read(n.member("unified"), r.unified));
  return r;
}

// ---------------------------------------------------------------------------
// linux.seccomp

Result<void> read_action(const Node& n, SeccompAction& out) {
  std::string name;
  BERTH_TRY(read_required(n, name));
  std::optional<SeccompAction> a = seccomp_action_from_name(name);
  if (!a) return fail(n.path, "unknown seccomp action {:?}", name);
  out = *a;
  return {};
}

Result<SeccompArg> parse_seccomp_arg(const Node& n) {
  BERTH_TRY(expect_object(n));
  SeccompArg a;
  Node index = n.member("index");
  BERTH_TRY(read_required(index, a.index));
  // seccomp_data.args has six slots, one per system call argument.
  if (a.index > 5) return fail(index.path, "{} is out of range 0..5", a.index);
  BERTH_TRY(read_required(n.member("value"), a.value));
  BERTH_TRY(read(n.member("valueTwo"), a.value_two));
  Node op = n.member("op");
  std::string name;
  BERTH_TRY(read_required(op, name));
  std::optional<SeccompOp> o = seccomp_op_from_name(name);
  if (!o) return fail(op.path, "unknown seccomp operator {:?}", name);
  a.op = *o;
  return a;
}

Result<SeccompSyscall> parse_syscall(const Node& n) {
  BERTH_TRY(expect_object(n));
  SeccompSyscall s;
  Node names = n.member("names");
  BERTH_TRY(read_required(names, s.names));
  if (s.names.empty()) return fail(names.path, "must be a non-empty array of strings");
  BERTH_TRY(read_action(n.member("action"), s.action));
  BERTH_TRY(read(n.member("errnoRet"), s.errno_ret));
  BERTH_TRY(read_array(n.member("args"), s.args, parse_seccomp_arg));
  return s;
}

Result<void> check_notify(const Node& n, const Seccomp& s) {
  // The listener fd is sent to listenerPath after the filter is loaded, with
  // system calls that a notifying default action would hold forever.
  if (s.default_action == SeccompAction::notify) {
    return fail(n.member("defaultAction").path, "SCMP_ACT_NOTIFY cannot be the default action");
  }
  auto notify = std::ranges::find(s.syscalls, SeccompAction::notify, &SeccompSyscall::action);
  Node listener = n.member("listenerPath");
  if (notify != s.syscalls.end() && s.listener_path.empty()) {
    size_t i = static_cast<size_t>(notify - s.syscalls.begin());
    return fail(listener.path, "required because {}.action is SCMP_ACT_NOTIFY",
                index_path(n.member("syscalls").path, i));
  }
  if (notify == s.syscalls.end() && !s.listener_path.empty()) {
    return fail(listener.path, "set, but no syscall action is SCMP_ACT_NOTIFY");
  }
  return {};
}

Result<Seccomp> parse_seccomp(const Node& n) {
  BERTH_TRY(expect_object(n));
  Seccomp s;
  BERTH_TRY(read_action(n.member("defaultAction"), s.default_action));
  BERTH_TRY(read(n.member("defaultErrnoRet"), s.default_errno_ret));
  BERTH_TRY(read(n.member("architectures"), s.architectures));
  BERTH_TRY(read(n.member("flags"), s.flags));
  BERTH_TRY(read(n.member("listenerPath"), s.listener_path));
  // Sent by runc as containerProcessState.metadata; berth sends the agent
  // the container's state alone, so it has nowhere to go.
  Node metadata = n.member("listenerMetadata");
  std::string listener_metadata;
  BERTH_TRY(read(metadata, listener_metadata));
  if (!listener_metadata.empty()) {
    return fail(metadata.path,
                "cannot be passed on: berth sends the seccomp agent the container's state, "
                "which has no metadata field (no containerProcessState)");
  }
  BERTH_TRY(read_array(n.member("syscalls"), s.syscalls, parse_syscall));
  BERTH_TRY(check_notify(n, s));
  return s;
}

// ---------------------------------------------------------------------------
// linux: the rest

Result<void> read_propagation(const Node& n, std::string& out) {
  BERTH_TRY(read(n, out));
  if (out.empty() || std::ranges::find(kPropagations, out) != kPropagations.end()) return {};
  return fail(n.path,
              "unknown propagation {:?} (expected private, rprivate, slave, rslave, shared, "
              "rshared, unbindable or runbindable)",
              out);
}

Result<Personality> parse_personality(const Node& n) {
  BERTH_TRY(expect_object(n));
  Personality p;
  Node domain = n.member("domain");
  BERTH_TRY(read_required(domain, p.domain));
  if (p.domain != "LINUX" && p.domain != "LINUX32") {
    return fail(domain.path, "unknown domain {:?} (expected LINUX or LINUX32)", p.domain);
  }
  BERTH_TRY(read(n.member("flags"), p.flags));
  return p;
}

Result<Linux> parse_linux(const Node& n) {
  Linux l;
  if (!n.present()) return l;
  BERTH_TRY(expect_object(n));
  BERTH_TRY(read_namespaces(n.member("namespaces"), l.namespaces));
  BERTH_TRY(read_array(n.member("uidMappings"), l.uid_mappings, parse_id_mapping));
  BERTH_TRY(read_array(n.member("gidMappings"), l.gid_mappings, parse_id_mapping));
  BERTH_TRY(read_array(n.member("devices"), l.devices, parse_device));
  BERTH_TRY(read(n.member("cgroupsPath"), l.cgroups_path));
  BERTH_TRY(read_object(n.member("resources"), l.resources, parse_resources));
  BERTH_TRY(read(n.member("sysctl"), l.sysctl));
  BERTH_TRY(read_object(n.member("seccomp"), l.seccomp, parse_seccomp));
  BERTH_TRY(read_propagation(n.member("rootfsPropagation"), l.rootfs_propagation));
  BERTH_TRY(read_array(n.member("maskedPaths"), l.masked_paths, parse_absolute_path));
  BERTH_TRY(read_array(n.member("readonlyPaths"), l.readonly_paths, parse_absolute_path));
  BERTH_TRY(read(n.member("mountLabel"), l.mount_label));
  BERTH_TRY(read_object(n.member("personality"), l.personality, parse_personality));
  BERTH_TRY(refuse_unless_empty(n.member("intelRdt"),
                                "berth does not manage resctrl groups (Intel RDT); remove the "
                                "field"));
  BERTH_TRY(refuse_unless_empty(n.member("memoryPolicy"),
                                "setting a NUMA memory policy (set_mempolicy) is not supported"));
  BERTH_TRY(refuse_unless_empty(n.member("netDevices"),
                                "moving host network devices into the container is not supported"));
  BERTH_TRY(refuse_unless_empty(n.member("timeOffsets"),
                                "time namespace offsets (timens_offsets) are not supported"));
  return l;
}

// ---------------------------------------------------------------------------
// Rules across fields. A namespace joined by path counts as the container's
// own, as in runc's validator.

Result<void> validate_uts(const Spec& s) {
  if (s.linux.has_namespace(NamespaceType::uts)) return {};
  if (!s.hostname.empty()) {
    return fail("hostname", "unable to set hostname without a private UTS namespace");
  }
  if (!s.domainname.empty()) {
    return fail("domainname", "unable to set domainname without a private UTS namespace");
  }
  return {};
}

Result<void> validate_user_namespace(const Linux& l) {
  const Namespace* user = l.find_namespace(NamespaceType::user);
  if (user == nullptr) {
    if (!l.uid_mappings.empty()) {
      return fail("linux.uidMappings", "set, but linux.namespaces has no user namespace");
    }
    if (!l.gid_mappings.empty()) {
      return fail("linux.gidMappings", "set, but linux.namespaces has no user namespace");
    }
    return {};
  }
  // Joining by path takes the namespace's existing mappings. A new one left
  // unmapped runs everything as the overflow id and cannot setuid/setgid.
  if (!user->path.empty()) return {};
  if (l.uid_mappings.empty()) {
    return fail("linux.uidMappings", "required for a new user namespace (one without a path)");
  }
  if (l.gid_mappings.empty()) {
    return fail("linux.gidMappings", "required for a new user namespace (one without a path)");
  }
  return {};
}

// sysctl(8) also accepts '/' as the separator ("net/ipv4/conf/eth0.100/x");
// the dotted form swaps the two, as runc does before checking.
std::string dotted_sysctl(std::string_view name) {
  std::string out(name);
  size_t first = out.find_first_of("./");
  if (first == std::string::npos || out[first] == '.') return out;
  for (char& c : out) {
    if (c == '.') {
      c = '/';
    } else if (c == '/') {
      c = '.';
    }
  }
  return out;
}

// The namespace that isolates a sysctl, if any: /proc/sys is only partly
// namespaced, and writing any other entry would change the host.
std::optional<NamespaceType> sysctl_namespace(std::string_view name) {
  static constexpr std::array<std::string_view, 8> kIpc{
      "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
      "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"};
  if (std::ranges::find(kIpc, name) != kIpc.end() || name.starts_with("fs.mqueue.")) {
    return NamespaceType::ipc;
  }
  if (name.starts_with("net.")) return NamespaceType::network;
  if (name == "kernel.hostname" || name == "kernel.domainname") return NamespaceType::uts;
  return std::nullopt;
}

Result<void> validate_sysctls(const Spec& s) {
  for (const auto& [name, value] : s.linux.sysctl) {
    std::string path = fmt::format("linux.sysctl[{:?}]", name);
    std::string dotted = dotted_sysctl(name);
    std::optional<NamespaceType> ns = sysctl_namespace(dotted);
    if (!ns) return fail(path, "not in a separate kernel namespace; it would change the host");
    if (!s.linux.has_namespace(*ns)) {
      return fail(path, "requires linux.namespaces to include {:?}", namespace_name(*ns));
    }
    if (dotted == "kernel.hostname" && !s.hostname.empty()) {
      return fail(path, "conflicts with the hostname field");
    }
  }
  return {};
}

Result<void> validate_cross_fields(const Spec& s) {
  BERTH_TRY(validate_uts(s));
  BERTH_TRY(validate_user_namespace(s.linux));
  BERTH_TRY(validate_sysctls(s));
  return {};
}

Result<Spec> parse_document(const json& doc) {
  Node top = Node::root(doc, kSpecDocument);
  BERTH_TRY(expect_object(top));
  Spec s;
  BERTH_ASSIGN(s.oci_version, parse_oci_version(top.member("ociVersion")));
  BERTH_ASSIGN(s.root, parse_root(top.member("root")));
  BERTH_TRY(read_object(top.member("process"), s.process, parse_process));
  BERTH_TRY(read(top.member("hostname"), s.hostname));
  BERTH_TRY(read(top.member("domainname"), s.domainname));
  BERTH_TRY(read_array(top.member("mounts"), s.mounts, parse_mount));
  BERTH_ASSIGN(s.hooks, parse_hooks(top.member("hooks")));
  BERTH_TRY(read(top.member("annotations"), s.annotations));
  BERTH_ASSIGN(s.linux, parse_linux(top.member("linux")));
  BERTH_TRY(validate_cross_fields(s));
  return s;
}

std::unexpected<Error> invalid_json(std::string_view text) {
  return error(kStep, "config.json is not valid JSON{}", describe_json_error(text));
}

}  // namespace

// ---------------------------------------------------------------------------
// Public interface.

bool Linux::has_namespace(NamespaceType t) const {
  return find_namespace(t) != nullptr;
}

const Namespace* Linux::find_namespace(NamespaceType t) const {
  auto it = std::ranges::find(namespaces, t, &Namespace::type);
  return it == namespaces.end() ? nullptr : &*it;
}

const char* namespace_name(NamespaceType t) {
  return name_of(kNamespaces, t);
}

std::optional<NamespaceType> namespace_from_name(std::string_view name) {
  return lookup(kNamespaces, name);
}

std::optional<SeccompAction> seccomp_action_from_name(std::string_view name) {
  return lookup(kSeccompActions, name);
}

const char* seccomp_action_name(SeccompAction a) {
  return name_of(kSeccompActions, a);
}

std::optional<SeccompOp> seccomp_op_from_name(std::string_view name) {
  return lookup(kSeccompOps, name);
}

const char* seccomp_op_name(SeccompOp op) {
  return name_of(kSeccompOps, op);
}

std::optional<int> rlimit_from_name(std::string_view name) {
  return lookup(kRlimits, name);
}

Result<Spec> parse_spec(std::string_view json_text) {
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  // Whatever is wrong with the document is the caller's input.
  Result<Spec> spec = doc.is_discarded() ? invalid_json(json_text) : parse_document(doc);
  if (!spec) spec.error().kind = ErrorKind::invalid;
  return spec;
}

namespace {

// Reads at most kMaxConfigSize bytes: the size check comes before any
// allocation, and the read stops at the cap whatever fstat said (a FIFO or a
// character device has no size).
Result<std::string> read_config(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return sys_error(kStep, "open {}", path);
  auto too_big = [&] {
    return errno_error(kStep, EFBIG, "{}: larger than the {} MiB limit on config.json", path,
                       kMaxConfigSize >> 20);
  };
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error(kStep, "stat {}", path);
  if (S_ISDIR(st.st_mode)) return errno_error(kStep, EISDIR, "{}: is a directory", path);
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigSize) return too_big();
  std::string out;
  out.reserve(static_cast<size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(kStep, "read {}", path);
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > kMaxConfigSize) return too_big();
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

Result<Spec> load_spec(const std::string& bundle_dir) {
  BERTH_ASSIGN(const std::string text, read_config(fs::join(bundle_dir, "config.json")));
  return parse_spec(text);
}

Result<void> validate_for_run(const Spec& spec) {
  if (!spec.process) return fail("process", "required to create or run a container");
  const Process& p = *spec.process;
  if (p.args.empty()) return fail("process.args", "must be a non-empty array of strings");
  if (p.args[0].empty()) return fail("process.args[0]", "must not be empty");
  if (!p.cwd.starts_with('/')) {
    return fail("process.cwd", "must be an absolute path, got {:?}", p.cwd);
  }
  return {};
}

}  // namespace berth::runtime
