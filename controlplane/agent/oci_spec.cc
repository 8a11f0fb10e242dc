// ECS container definitions -> OCI config.json, and the shim's task.json
// (oci_spec.h).
//
// The spec starts from berth-runtime's own default (runtime/
// default_profile.h: Docker's capability set, masked and read-only paths,
// the seccomp allowlist, a deny-all device rule the runtime completes with
// the default devices) and changes only what the definition decides, so
// that `berth-runtime spec` and a task's containers never drift apart.
//
// Where Docker's defaults differ from berth-runtime's, the container gets
// Docker's, as ECS users expect: noNewPrivileges false, nofile 65535
// (Fargate's), 64 MiB /dev/shm, a read-only cgroup mount.
//
// initProcessEnabled is passed to the shim (task.json init_process), which
// adds its sealed init binary to the bundle itself (shim/PROTOCOL.md).
#include "controlplane/agent/oci_spec.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "common/fs.h"
#include "controlplane/model/errors.h"
#include "runtime/default_profile.h"
#include "runtime/microhost_cgroup.h"
#include "runtime/mounts.h"

namespace berth::cp {

namespace {

using json = nlohmann::json;

constexpr int64_t kMiB = 1 << 20;
constexpr std::string_view kDefaultPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Every capability ECS accepts, for "ALL" in capabilities.add.
constexpr std::string_view kAllCapabilities[] = {
    "AUDIT_CONTROL",   "AUDIT_READ",   "AUDIT_WRITE",
    "BLOCK_SUSPEND",   "BPF",          "CHECKPOINT_RESTORE",
    "CHOWN",           "DAC_OVERRIDE", "DAC_READ_SEARCH",
    "FOWNER",          "FSETID",       "IPC_LOCK",
    "IPC_OWNER",       "KILL",         "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN",    "MAC_OVERRIDE",
    "MKNOD",           "NET_ADMIN",    "NET_BIND_SERVICE",
    "NET_BROADCAST",   "NET_RAW",      "PERFMON",
    "SETFCAP",         "SETGID",       "SETPCAP",
    "SETUID",          "SYSLOG",       "SYS_ADMIN",
    "SYS_BOOT",        "SYS_CHROOT",   "SYS_MODULE",
    "SYS_NICE",        "SYS_PACCT",    "SYS_PTRACE",
    "SYS_RAWIO",       "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG",  "WAKE_ALARM",
};

std::string container_field(const ContainerDefinition& c, std::string_view field) {
  return fmt::format("containerDefinitions.{}.{}", c.name, field);
}

// ---- environment -------------------------------------------------------------

// Sets NAME=value in `env`, replacing an earlier NAME in place (Docker keeps
// the image's order and lets the container's values win).
void set_env(std::vector<std::string>& env, std::string_view name, std::string_view value) {
  std::string entry = fmt::format("{}={}", name, value);
  for (auto& e : env) {
    if (e.starts_with(name) && e.size() > name.size() && e[name.size()] == '=') {
      e = std::move(entry);
      return;
    }
  }
  env.push_back(std::move(entry));
}

bool has_env(const std::vector<std::string>& env, std::string_view name) {
  return std::ranges::any_of(env, [&](const std::string& e) {
    return e.starts_with(name) && e.size() > name.size() && e[name.size()] == '=';
  });
}

std::vector<std::string> merged_env(const ContainerBuild& b, const std::string& hostname) {
  std::vector<std::string> env = b.image->env;
  for (const auto& kv : b.container->environment) set_env(env, kv.name, kv.value);
  if (b.override_ != nullptr) {
    for (const auto& kv : b.override_->environment) set_env(env, kv.name, kv.value);
  }
  if (!has_env(env, "PATH")) env.insert(env.begin(), std::string(kDefaultPath));
  set_env(env, "HOSTNAME", hostname);
  return env;
}

// ---- user --------------------------------------------------------------------

std::optional<uint32_t> numeric_id(std::string_view s) {
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// The file at container path `path` in the rootfs, resolved inside it
// (a symlinked /etc/passwd cannot make us read a host file). Empty when the
// file does not exist.
Result<std::string> read_in_rootfs(const std::string& rootfs, std::string_view path) {
  BERTH_ASSIGN(runtime::RootDir root, runtime::RootDir::open(rootfs));
  auto fd = runtime::open_in_root(root, path, runtime::Create::none);
  if (!fd) {
    if (fd.error().err == ENOENT) return std::string();
    return std::unexpected(std::move(fd).error());
  }
  return fs::read_file(runtime::proc_fd_path(fd->get()));
}

// The colon-separated fields of each line of an /etc/passwd or /etc/group.
std::vector<std::vector<std::string_view>> colon_lines(std::string_view text) {
  std::vector<std::vector<std::string_view>> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line.starts_with('#')) continue;
    std::vector<std::string_view> fields;
    for (size_t pos = 0;;) {
      size_t colon = line.find(':', pos);
      fields.push_back(line.substr(pos, colon - pos));
      if (colon == std::string_view::npos) break;
      pos = colon + 1;
    }
    out.push_back(std::move(fields));
  }
  return out;
}

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// By name, or by uid when `name` is numeric.
std::optional<PasswdEntry> find_passwd(std::string_view passwd, std::string_view name) {
  auto uid = numeric_id(name);
  for (const auto& f : colon_lines(passwd)) {
    if (f.size() < 4) continue;
    auto u = numeric_id(f[2]);
    auto g = numeric_id(f[3]);
    if (!u || !g) continue;
    if (uid ? *u == *uid : f[0] == name) return PasswdEntry{std::string(f[0]), *u, *g};
  }
  return std::nullopt;
}

std::optional<uint32_t> find_group(std::string_view group, std::string_view name) {
  for (const auto& f : colon_lines(group)) {
    if (f.size() >= 3 && f[0] == name) return numeric_id(f[2]);
  }
  return std::nullopt;
}

// Groups listing `user` as a member (Docker's additional gids).
std::vector<uint32_t> member_groups(std::string_view group, std::string_view user,
                                    uint32_t primary) {
  std::vector<uint32_t> out;
  for (const auto& f : colon_lines(group)) {
    if (f.size() < 4) continue;
    auto gid = numeric_id(f[2]);
    if (!gid || *gid == primary) continue;
    std::string_view members = f[3];
    while (!members.empty()) {
      size_t comma = members.find(',');
      if (members.substr(0, comma) == user) out.push_back(*gid);
      members.remove_prefix(comma == std::string_view::npos ? members.size() : comma + 1);
    }
  }
  return out;
}

// "uid[:gid]" or names resolved against the container's /etc/passwd and
// /etc/group, as Docker does: a numeric uid not in /etc/passwd runs with
// gid 0; a name that is not there is an error.
Result<json> resolve_user(const ContainerBuild& b) {
  const ContainerDefinition& c = *b.container;
  std::string spec = !c.user.empty() ? c.user : b.image->user;
  if (spec.empty()) return json{{"uid", 0}, {"gid", 0}};
  size_t colon = spec.find(':');
  std::string user = spec.substr(0, colon);
  std::string group = colon == std::string::npos ? "" : spec.substr(colon + 1);
  BERTH_ASSIGN(std::string passwd, read_in_rootfs(b.rootfs_path, "/etc/passwd"));
  BERTH_ASSIGN(std::string groups, read_in_rootfs(b.rootfs_path, "/etc/group"));
  auto entry = find_passwd(passwd, user);
  if (!entry && !numeric_id(user)) {
    return ecs_error(kClientException, "{}: user {:?} is not in the image's /etc/passwd",
                     container_field(c, "user"), user);
  }
  uint32_t uid = entry ? entry->uid : *numeric_id(user);
  uint32_t gid = entry ? entry->gid : 0;
  if (!group.empty()) {
    auto g = numeric_id(group);
    if (!g) g = find_group(groups, group);
    if (!g) {
      return ecs_error(kClientException, "{}: group {:?} is not in the image's /etc/group",
                       container_field(c, "user"), group);
    }
    gid = *g;
  }
  json out{{"uid", uid}, {"gid", gid}};
  if (entry) {
    auto extra = member_groups(groups, entry->name, gid);
    if (!extra.empty()) out["additionalGids"] = extra;
  }
  return out;
}

// ---- limits and capabilities ---------------------------------------------------

// Fargate's default nofile, 65535, or the host's own hard limit where that
// is lower: raising a hard limit needs CAP_SYS_RESOURCE in the host's user
// namespace, which a runtime started from a confined service may lack.
uint64_t default_nofile() {
  constexpr uint64_t kFargateNofile = 65535;
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY) return kFargateNofile;
  return std::min<uint64_t>(kFargateNofile, rl.rlim_max);
}

Result<json> rlimits_json(const ContainerDefinition& c) {
  json out = json::array();
  bool nofile = false;
  for (const auto& u : c.ulimits) {
    std::string name = "RLIMIT_" + u.name;
    std::ranges::transform(name, name.begin(), [](char ch) {
      return static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    });
    if (!runtime::rlimit_from_name(name)) {
      return ecs_error(kInvalidParameter, "{}: {:?} is not a resource limit",
                       container_field(c, "ulimits"), u.name);
    }
    nofile = nofile || u.name == "nofile";
    out.push_back({{"type", name}, {"hard", u.hard_limit}, {"soft", u.soft_limit}});
  }
  if (!nofile) {
    auto n = default_nofile();
    out.push_back({{"type", "RLIMIT_NOFILE"}, {"hard", n}, {"soft", n}});
  }
  return out;
}

// Docker's rule: ALL in add is every capability, ALL in drop starts from
// none; otherwise the default set plus add minus drop.
std::vector<std::string> capability_set(const LinuxParametersDef& lp) {
  auto has_all = [](const std::vector<std::string>& v) {
    return std::ranges::find(v, "ALL") != v.end();
  };
  std::vector<std::string> caps;
  if (has_all(lp.cap_add)) {
    for (auto n : kAllCapabilities) caps.push_back("CAP_" + std::string(n));
    return caps;
  }
  if (!has_all(lp.cap_drop)) caps = runtime::default_capabilities();
  for (const auto& a : lp.cap_add) {
    std::string n = "CAP_" + a;
    if (std::ranges::find(caps, n) == caps.end()) caps.push_back(n);
  }
  std::erase_if(caps, [&](const std::string& n) {
    return std::ranges::find(lp.cap_drop, n.substr(4)) != lp.cap_drop.end() &&
           std::ranges::find(lp.cap_add, n.substr(4)) == lp.cap_add.end();
  });
  return caps;
}

// Docker's profile allows the tracing syscalls to a container granted
// CAP_SYS_PTRACE; berth's default keeps them out otherwise.
json seccomp_json(const std::vector<std::string>& caps) {
  json profile = runtime::default_seccomp_json();
  if (std::ranges::find(caps, "CAP_SYS_PTRACE") != caps.end()) {
    profile["syscalls"].push_back(
        {{"names", {"kcmp", "pidfd_getfd", "process_vm_readv", "process_vm_writev", "ptrace"}},
         {"action", "SCMP_ACT_ALLOW"}});
  }
  return profile;
}

json capabilities_json(const std::vector<std::string>& caps) {
  return json{{"bounding", caps},
              {"effective", caps},
              {"permitted", caps},
              {"inheritable", json::array()},
              {"ambient", json::array()}};
}

json resources_json(const ContainerDefinition& c, const ContainerOverride* o) {
  int cpu = o && o->cpu ? *o->cpu : c.cpu;
  auto memory = o && o->memory_mib ? o->memory_mib : c.memory_mib;
  auto reservation =
      o && o->memory_reservation_mib ? o->memory_reservation_mib : c.memory_reservation_mib;
  // ECS gives a container without cpu units the minimum share, 2.
  json res = runtime::default_spec_json()["linux"]["resources"];
  res["cpu"] = {{"shares", std::max(cpu, 2)}};
  json mem = json::object();
  if (memory) mem["limit"] = *memory * kMiB;
  if (reservation) mem["reservation"] = *reservation * kMiB;
  if (!mem.empty()) res["memory"] = std::move(mem);
  return res;
}

// ---- mounts and namespaces -------------------------------------------------------

json mount_json(std::string_view dest, std::string_view type, std::string_view source,
                std::vector<std::string> options) {
  return json{{"destination", dest}, {"type", type}, {"source", source}, {"options", options}};
}

json mounts_json(const ContainerBuild& b) {
  const auto& lp = b.container->linux_parameters;
  json mounts = json::array();
  json defaults = runtime::default_spec_json();
  for (json& m : defaults["mounts"]) {
    if (m["destination"] == "/dev/shm") {
      if (b.definition->ipc_mode == "none") continue;  // Docker's "none": no /dev/shm
      int64_t shm = lp.shared_memory_size_mib.value_or(64);
      m["options"] = {"nosuid", "noexec", "nodev", "mode=1777",
                      fmt::format("size={}k", shm * 1024)};
    }
    mounts.push_back(std::move(m));
  }
  mounts.push_back(mount_json("/sys/fs/cgroup", "cgroup", "cgroup",
                              {"nosuid", "noexec", "nodev", "relatime", "ro"}));
  const MicrohostView& mh = b.microhost;
  for (auto [dest, source] : {std::pair{"/etc/hosts", &mh.hosts_file},
                              std::pair{"/etc/resolv.conf", &mh.resolv_conf_file},
                              std::pair{"/etc/hostname", &mh.hostname_file}}) {
    if (!source->empty()) {
      mounts.push_back(
          mount_json(dest, "bind", *source, {"rbind", "ro", "nosuid", "nodev", "noexec"}));
    }
  }
  for (const auto& t : lp.tmpfs) {
    std::vector<std::string> opts = {"nosuid", "nodev", fmt::format("size={}k", t.size_mib * 1024)};
    for (const auto& o : t.mount_options) opts.push_back(o);
    // Docker's default tmpfs mode: world-writable with the sticky bit.
    if (std::ranges::none_of(opts, [](const std::string& o) { return o.starts_with("mode="); })) {
      opts.push_back("mode=1777");
    }
    mounts.push_back(mount_json(t.container_path, "tmpfs", "tmpfs", std::move(opts)));
  }
  return mounts;
}

json namespaces_json(const MicrohostView& mh) {
  json ns = json::array();
  for (const char* type : {"pid", "ipc", "uts", "mount", "cgroup"}) ns.push_back({{"type", type}});
  // Without a netns of its own the container shares the host's (mode host).
  if (!mh.netns_path.empty()) ns.push_back({{"type", "network"}, {"path", mh.netns_path}});
  return ns;
}

json sysctl_json(const ContainerDefinition& c) {
  json out = json::object();
  for (const auto& s : c.system_controls) out[s.name] = s.value;
  return out;
}

Result<json> process_json(const ContainerBuild& b, const std::string& hostname) {
  const ContainerDefinition& c = *b.container;
  BERTH_ASSIGN(auto args, merged_args(c, b.override_, *b.image));
  BERTH_ASSIGN(json user, resolve_user(b));
  BERTH_ASSIGN(json rlimits, rlimits_json(c));
  std::string cwd = !c.working_directory.empty()    ? c.working_directory
                    : !b.image->working_dir.empty() ? b.image->working_dir
                                                    : "/";
  return json{
      {"terminal", false},
      {"user", std::move(user)},
      {"args", std::move(args)},
      {"env", merged_env(b, hostname)},
      {"cwd", cwd},
      {"capabilities", capabilities_json(capability_set(c.linux_parameters))},
      {"rlimits", std::move(rlimits)},
      // Docker's default: setuid programs in the image keep working.
      {"noNewPrivileges", false},
  };
}

// ---- the shim's task.json ------------------------------------------------------------

json shim_container_json(const ContainerDefinition& c, const std::string& bundle) {
  json out{{"name", c.name},
           {"bundle", bundle},
           {"essential", c.essential},
           {"stop_timeout", c.stop_timeout_s.value_or(30)},
           {"init_process", c.linux_parameters.init_process_enabled.value_or(false)}};
  json deps = json::array();
  for (const auto& d : c.depends_on) {
    deps.push_back({{"container", d.container_name}, {"condition", d.condition}});
  }
  out["depends_on"] = std::move(deps);
  if (c.restart_policy) {
    const auto& r = *c.restart_policy;
    out["restart_policy"] = {{"enabled", r.enabled},
                             {"ignored_exit_codes", r.ignored_exit_codes},
                             {"restart_attempt_period", r.restart_attempt_period_s.value_or(300)}};
  }
  if (c.health_check) {
    const auto& h = *c.health_check;
    out["health_check"] = {{"command", h.command},
                           {"interval", h.interval_s},
                           {"timeout", h.timeout_s},
                           {"retries", h.retries},
                           {"start_period", h.start_period_s}};
  }
  out["log"] = {{"max_bytes", 10 << 20}, {"max_files", 3}};
  return out;
}

int parse_units(const std::string& s) {
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

const ContainerOverride* find_override(const Task& t, const std::string& name) {
  for (const auto& o : t.overrides.container_overrides) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

// The task cgroup's limits: the task's cpu and memory (the RunTask
// overrides already applied to Task::cpu/memory), else the sum of the
// containers' hard limits when every container has one (containerOverrides
// counted).
json shim_limits_json(const Task& t, const TaskDefinition& d) {
  int cpu = parse_units(!t.cpu.empty() ? t.cpu : d.cpu);
  int memory = parse_units(!t.memory.empty() ? t.memory : d.memory);
  int64_t reservation = 0;
  bool all_limited = true;
  int sum_limits = 0;
  for (const auto& c : d.containers) {
    const ContainerOverride* o = find_override(t, c.name);
    auto limit = o && o->memory_mib ? o->memory_mib : c.memory_mib;
    auto reserved =
        o && o->memory_reservation_mib ? o->memory_reservation_mib : c.memory_reservation_mib;
    reservation += reserved.value_or(0);
    all_limited = all_limited && limit.has_value();
    sum_limits += limit.value_or(0);
  }
  if (memory == 0 && all_limited) memory = sum_limits;
  json out = json::object();
  if (cpu >= static_cast<int>(runtime::kMinCpuUnits)) out["cpu"] = cpu;
  if (memory > 0) out["memory"] = memory;
  if (memory > 0) reservation = std::min<int64_t>(reservation, memory);
  if (reservation >= runtime::kMinMemoryBytes / kMiB) out["memory_reservation"] = reservation;
  return out;
}

}  // namespace

Result<std::vector<std::string>> merged_args(const ContainerDefinition& c,
                                             const ContainerOverride* o,
                                             const rootfs::ImageConfig& image) {
  std::vector<std::string> args = !c.entry_point.empty() ? c.entry_point : image.entrypoint;
  if (o != nullptr && o->command) {
    args.insert(args.end(), o->command->begin(), o->command->end());
  } else if (!c.command.empty()) {
    args.insert(args.end(), c.command.begin(), c.command.end());
  } else if (c.entry_point.empty()) {
    args.insert(args.end(), image.cmd.begin(), image.cmd.end());
  }
  if (args.empty() || args.front().empty()) {
    return ecs_error(kClientException,
                     "{}: nothing to run: neither the definition (entryPoint, command) nor the "
                     "image (Entrypoint, Cmd) names a program",
                     container_field(c, "command"));
  }
  return args;
}

Result<nlohmann::json> build_oci_spec(const ContainerBuild& b) {
  if (!b.definition || !b.container || !b.image || b.rootfs_path.empty()) {
    return ecs_error(kServerException,
                     "build_oci_spec: definition, container, image and rootfs "
                     "are required");
  }
  const ContainerDefinition& c = *b.container;
  std::string hostname = !c.hostname.empty() ? c.hostname : b.default_hostname;
  BERTH_ASSIGN(json process, process_json(b, hostname));
  const json& caps = process["capabilities"]["bounding"];
  json linux{
      {"namespaces", namespaces_json(b.microhost)},
      {"resources", resources_json(c, b.override_)},
      {"maskedPaths", runtime::default_masked_paths()},
      {"readonlyPaths", runtime::default_readonly_paths()},
      {"seccomp", seccomp_json(caps.get<std::vector<std::string>>())},
  };
  if (!c.system_controls.empty()) linux["sysctl"] = sysctl_json(c);
  return json{
      {"ociVersion", "1.0.2"},
      {"process", std::move(process)},
      {"root", {{"path", b.rootfs_path}, {"readonly", c.readonly_root_filesystem}}},
      {"hostname", hostname},
      {"mounts", mounts_json(b)},
      {"linux", std::move(linux)},
  };
}

Result<nlohmann::json> build_shim_task(const ShimTaskBuild& b) {
  if (!b.task || !b.definition || b.bundles.size() != b.definition->containers.size()) {
    return ecs_error(kServerException,
                     "build_shim_task: a task, its definition and one bundle per container are "
                     "required");
  }
  json containers = json::array();
  for (size_t i = 0; i < b.bundles.size(); ++i) {
    containers.push_back(shim_container_json(b.definition->containers[i], b.bundles[i]));
  }
  json out{{"version", 1},
           {"task_id", b.task->id},
           {"runtime_root", b.runtime_root},
           {"containers", std::move(containers)},
           {"limits", shim_limits_json(*b.task, *b.definition)}};
  if (!b.cgroup_parent.empty()) out["cgroup_parent"] = b.cgroup_parent;
  return out;
}

}  // namespace berth::cp
