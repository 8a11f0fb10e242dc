// containerDefinitions[]: every field of ECS-API.md is honoured or refused
// by name (InvalidParameterException with its JSON path).
//
// What berth does with the fields it cannot run as ECS describes them:
// - mountPoints, volumesFrom (and the task's volumes): refused when not
//   empty; berth has no volumes yet.
// - privileged, linuxParameters.devices, disableNetworking: refused; they
//   would change the isolation berth promises.
// - dnsServers, extraHosts: refused, as ECS refuses them for awsvpc; a
//   task's /etc/resolv.conf and /etc/hosts are the microhost's.
// - linuxParameters.maxSwap / swappiness: refused, as on Fargate.
// - startTimeout: accepted only without dependsOn (where it has no effect);
//   the shim has no dependency timeout yet.
// - logConfiguration: any driver is stored and returned; berth writes every
//   container's stdout/stderr to its local log store whatever the driver
//   (awslogs included), readable with GET /v1/tasks/{id}/logs.
// - repositoryCredentials.credentialsParameter: the name of a registry
//   credential in berthd's config.
#include "controlplane/model/container_definition.h"

#include <algorithm>
#include <cctype>

#include "controlplane/model/errors.h"
#include "runtime/caps.h"

namespace berth::cp::ecs {

namespace {

bool valid_container_name(std::string_view n) {
  // The shim joins "<task id>.<name>" into runtime ids: no '.', at most 64.
  return !n.empty() && n.size() <= 64 && std::ranges::all_of(n, [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

Result<PortMappingDef> parse_port_mapping(const jr::Node& n, const std::string& network_mode) {
  BERTH_TRY(refuse_unknown(n, {"containerPort", "hostPort", "protocol", "name"}));
  PortMappingDef p;
  std::optional<int> container_port;
  BERTH_TRY(read_int(n.member("containerPort"), container_port, 1, 65535));
  if (!container_port) return jr::fail(n.member("containerPort"), "required field is missing");
  p.container_port = static_cast<uint16_t>(*container_port);
  std::optional<int> host_port;
  BERTH_TRY(read_int(n.member("hostPort"), host_port, 0, 65535));
  if (host_port) p.host_port = static_cast<uint16_t>(*host_port);
  if (network_mode == "host" && host_port && *host_port != 0 && *host_port != *container_port) {
    return jr::fail(n.member("hostPort"),
                    "must equal containerPort ({}) in network mode host, as in ECS",
                    *container_port);
  }
  BERTH_TRY(jr::read(n.member("protocol"), p.protocol));
  if (p.protocol != "tcp" && p.protocol != "udp") {
    return jr::fail(n.member("protocol"), "{:?}: must be tcp or udp", p.protocol);
  }
  BERTH_TRY(jr::read(n.member("name"), p.name));
  return p;
}

// A capability name as ECS writes it (no CAP_ prefix), known to the runtime.
Result<std::string> read_capability(const jr::Node& n) {
  std::string cap;
  BERTH_TRY(jr::read_required(n, cap));
  if (cap == "ALL") return cap;
  if (cap.starts_with("CAP_") || !runtime::resolve_capabilities({"CAP_" + cap})) {
    return jr::fail(n, "{:?}: not a Linux capability (ECS names them without CAP_: SYS_PTRACE)",
                    cap);
  }
  return cap;
}

// Fargate's rule: only SYS_PTRACE may be added, unless the account's policy
// allows more (Account::allowed_capabilities). `account` null: a stored
// definition, checked when it was registered.
Result<void> check_cap_allowed(const jr::Node& n, const std::string& cap, const Account* account) {
  if (cap == "SYS_PTRACE" || account == nullptr) return {};
  if (std::ranges::find(account->allowed_capabilities, cap) !=
      account->allowed_capabilities.end()) {
    return {};
  }
  return jr::fail(n,
                  "{} may not be added: only SYS_PTRACE may be (as on Fargate) unless the "
                  "account's policy allows it",
                  cap);
}

Result<void> parse_capabilities(const jr::Node& n, const Account* account, LinuxParametersDef& lp) {
  if (!n.present()) return {};
  BERTH_TRY(refuse_unknown(n, {"add", "drop"}));
  jr::Node add = n.member("add");
  BERTH_TRY(jr::read_array(add, lp.cap_add, read_capability));
  for (size_t i = 0; i < lp.cap_add.size(); ++i) {
    BERTH_TRY(check_cap_allowed(add.element(i), lp.cap_add[i], account));
  }
  return jr::read_array(n.member("drop"), lp.cap_drop, read_capability);
}

Result<TmpfsDef> parse_tmpfs(const jr::Node& n) {
  BERTH_TRY(refuse_unknown(n, {"containerPath", "size", "mountOptions"}));
  TmpfsDef t;
  BERTH_TRY(jr::read_required(n.member("containerPath"), t.container_path));
  if (!t.container_path.starts_with('/') || t.container_path == "/") {
    return jr::fail(n.member("containerPath"), "{:?}: must be an absolute path below /",
                    t.container_path);
  }
  BERTH_TRY(jr::check_no_nul(n.member("containerPath"), t.container_path));
  std::optional<int> size;
  BERTH_TRY(read_int(n.member("size"), size, 1, 1 << 20));
  if (!size) return jr::fail(n.member("size"), "required field is missing");
  t.size_mib = *size;
  BERTH_TRY(read_strings(n.member("mountOptions"), t.mount_options));
  return t;
}

Result<void> parse_linux_parameters(const jr::Node& n, const Account* account,
                                    LinuxParametersDef& lp) {
  if (!n.present()) return {};
  BERTH_TRY(refuse_unknown(n, {"capabilities", "devices", "initProcessEnabled", "sharedMemorySize",
                               "tmpfs", "maxSwap", "swappiness"}));
  BERTH_TRY(refuse_if_set(n, "devices", "host devices are not supported by berth"));
  BERTH_TRY(refuse_if_set(n, "maxSwap", "not supported (as on Fargate)"));
  BERTH_TRY(refuse_if_set(n, "swappiness", "not supported (as on Fargate)"));
  BERTH_TRY(parse_capabilities(n.member("capabilities"), account, lp));
  BERTH_TRY(jr::read(n.member("initProcessEnabled"), lp.init_process_enabled));
  BERTH_TRY(read_int(n.member("sharedMemorySize"), lp.shared_memory_size_mib, 1, 1 << 20));
  return jr::read_array(n.member("tmpfs"), lp.tmpfs, parse_tmpfs);
}

Result<DependencyDef> parse_dependency(const jr::Node& n) {
  BERTH_TRY(refuse_unknown(n, {"containerName", "condition"}));
  DependencyDef d;
  BERTH_TRY(jr::read_required(n.member("containerName"), d.container_name));
  BERTH_TRY(jr::read_required(n.member("condition"), d.condition));
  for (std::string_view c : {"START", "COMPLETE", "SUCCESS", "HEALTHY"}) {
    if (d.condition == c) return d;
  }
  return jr::fail(n.member("condition"), "{:?}: must be START, COMPLETE, SUCCESS or HEALTHY",
                  d.condition);
}

Result<HealthCheckDef> parse_health_check(const jr::Node& n) {
  BERTH_TRY(refuse_unknown(n, {"command", "interval", "timeout", "retries", "startPeriod"}));
  HealthCheckDef h;
  jr::Node cmd = n.member("command");
  if (!cmd.present()) return jr::fail(cmd, "required field is missing");
  BERTH_TRY(read_strings(cmd, h.command));
  if (h.command.size() < 2 || (h.command[0] != "CMD" && h.command[0] != "CMD-SHELL")) {
    return jr::fail(cmd, "must be [\"CMD\", executable, args...] or [\"CMD-SHELL\", command]");
  }
  // The ranges ECS accepts.
  BERTH_TRY(read_int(n.member("interval"), h.interval_s, 5, 300));
  BERTH_TRY(read_int(n.member("timeout"), h.timeout_s, 2, 60));
  BERTH_TRY(read_int(n.member("retries"), h.retries, 1, 10));
  BERTH_TRY(read_int(n.member("startPeriod"), h.start_period_s, 0, 300));
  return h;
}

Result<RestartPolicyDef> parse_restart_policy(const jr::Node& n) {
  BERTH_TRY(refuse_unknown(n, {"enabled", "ignoredExitCodes", "restartAttemptPeriod"}));
  RestartPolicyDef r;
  BERTH_TRY(jr::read_required(n.member("enabled"), r.enabled));
  jr::Node codes = n.member("ignoredExitCodes");
  BERTH_TRY(jr::read_array(codes, r.ignored_exit_codes, [](const jr::Node& e) -> Result<int> {
    int v = 0;
    BERTH_TRY(jr::read_required(e, v));
    BERTH_TRY(jr::check_range(e, std::optional<int>(v), 0, 255));
    return v;
  }));
  if (r.ignored_exit_codes.size() > 50) return jr::fail(codes, "at most 50 exit codes");
  BERTH_TRY(read_int(n.member("restartAttemptPeriod"), r.restart_attempt_period_s, 60, 1800));
  return r;
}

constexpr std::string_view kUlimitNames[] = {
    "core",   "cpu",   "data", "fsize",  "locks",  "memlock",    "msgqueue", "nice",
    "nofile", "nproc", "rss",  "rtprio", "rttime", "sigpending", "stack",
};

Result<UlimitDef> parse_ulimit(const jr::Node& n) {
  BERTH_TRY(refuse_unknown(n, {"name", "softLimit", "hardLimit"}));
  UlimitDef u;
  BERTH_TRY(jr::read_required(n.member("name"), u.name));
  if (std::ranges::find(kUlimitNames, u.name) == std::end(kUlimitNames)) {
    return jr::fail(n.member("name"), "{:?}: not an ulimit ECS knows (nofile, nproc, core, ...)",
                    u.name);
  }
  BERTH_TRY(jr::read_required(n.member("softLimit"), u.soft_limit));
  BERTH_TRY(jr::read_required(n.member("hardLimit"), u.hard_limit));
  if (u.soft_limit < 0 || u.hard_limit < 0) {
    return jr::fail(n, "softLimit and hardLimit must not be negative");
  }
  if (u.soft_limit > u.hard_limit) {
    return jr::fail(n.member("softLimit"), "{} exceeds hardLimit {}", u.soft_limit, u.hard_limit);
  }
  return u;
}

// Only sysctls namespaced with the container: those of its network
// namespace (not in host mode, where that is the host's) and of its IPC
// namespace.
bool namespaced_sysctl(std::string_view name, std::string_view network_mode) {
  if (name.starts_with("net.")) return network_mode != "host";
  for (std::string_view ipc :
       {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}) {
    if (name == ipc) return true;
  }
  return false;
}

Result<SystemControl> parse_system_control(const jr::Node& n, std::string_view network_mode) {
  BERTH_TRY(refuse_unknown(n, {"namespace", "value"}));
  SystemControl s;
  BERTH_TRY(jr::read_required(n.member("namespace"), s.name));
  BERTH_TRY(jr::read_required(n.member("value"), s.value));
  BERTH_TRY(jr::check_no_nul(n.member("value"), s.value));
  if (!namespaced_sysctl(s.name, network_mode)) {
    return jr::fail(n.member("namespace"),
                    "{:?}: only namespaced sysctls may be set (net.* outside network mode host, "
                    "kernel.msg*, kernel.sem, kernel.shm*)",
                    s.name);
  }
  return s;
}

Result<void> parse_log_configuration(const jr::Node& n, ContainerDefinition& c) {
  if (!n.present()) return {};
  BERTH_TRY(refuse_unknown(n, {"logDriver", "options", "secretOptions"}));
  std::string driver;
  BERTH_TRY(jr::read_required(n.member("logDriver"), driver));
  std::map<std::string, std::string> options;
  BERTH_TRY(jr::read(n.member("options"), options));
  c.log_configuration = *n.value;
  return {};
}

Result<void> parse_repository_credentials(const jr::Node& n, ContainerDefinition& c) {
  if (!n.present()) return {};
  BERTH_TRY(refuse_unknown(n, {"credentialsParameter"}));
  return jr::read_required(n.member("credentialsParameter"), c.repository_credentials);
}

// Fields ECS has that berth refuses unless empty: what they would do is not
// implemented, and silently dropping them would run something else than
// the user asked for.
Result<void> refuse_unsupported(const jr::Node& n, const std::string& network_mode) {
  constexpr std::string_view kNoVolumes = "berth has no volumes yet";
  BERTH_TRY(refuse_if_set(n, "mountPoints", kNoVolumes));
  BERTH_TRY(refuse_if_set(n, "volumesFrom", kNoVolumes));
  BERTH_TRY(refuse_if_set(n, "privileged", "privileged containers are not supported"));
  BERTH_TRY(
      refuse_if_set(n, "disableNetworking", "not supported (use the task's networkMode \"none\")"));
  std::string why = network_mode == "awsvpc"
                        ? "not supported with network mode awsvpc (as in ECS)"
                        : "not supported by berth (the task's files come from its microhost)";
  BERTH_TRY(refuse_if_set(n, "dnsServers", why));
  BERTH_TRY(refuse_if_set(n, "extraHosts", why));
  for (std::string_view f :
       {"links", "dnsSearchDomains", "dockerSecurityOptions", "dockerLabels", "secrets",
        "environmentFiles", "resourceRequirements", "firelensConfiguration", "credentialSpecs",
        "interactive", "pseudoTerminal"}) {
    BERTH_TRY(refuse_if_set(n, f, "not supported by berth"));
  }
  return {};
}

Result<void> parse_identity(const jr::Node& n, ContainerDefinition& c) {
  BERTH_TRY(jr::read_required(n.member("name"), c.name));
  if (!valid_container_name(c.name)) {
    return jr::fail(n.member("name"), "{:?}: must be 1-64 of [A-Za-z0-9_-]", c.name);
  }
  BERTH_TRY(jr::read_required(n.member("image"), c.image));
  if (c.image.empty()) return jr::fail(n.member("image"), "must not be empty");
  BERTH_TRY(jr::check_no_nul(n.member("image"), c.image));
  return parse_repository_credentials(n.member("repositoryCredentials"), c);
}

Result<void> parse_resources(const jr::Node& n, ContainerDefinition& c) {
  BERTH_TRY(read_int(n.member("cpu"), c.cpu, 0, 196608));
  // ECS's floors: 6 MiB for a hard limit, 4 MiB for a reservation.
  BERTH_TRY(read_int(n.member("memory"), c.memory_mib, 6, 1 << 24));
  BERTH_TRY(read_int(n.member("memoryReservation"), c.memory_reservation_mib, 4, 1 << 24));
  if (c.memory_mib && c.memory_reservation_mib && *c.memory_reservation_mib > *c.memory_mib) {
    return jr::fail(n.member("memoryReservation"), "{} MiB exceeds memory ({} MiB)",
                    *c.memory_reservation_mib, *c.memory_mib);
  }
  return {};
}

Result<void> parse_process(const jr::Node& n, ContainerDefinition& c) {
  BERTH_TRY(read_strings(n.member("entryPoint"), c.entry_point));
  BERTH_TRY(read_strings(n.member("command"), c.command));
  BERTH_TRY(read_key_values(n.member("environment"), c.environment));
  BERTH_TRY(jr::read(n.member("user"), c.user));
  BERTH_TRY(jr::check_no_nul(n.member("user"), c.user));
  if (n.member("user").present() && (c.user.empty() || c.user.front() == ':' ||
                                     c.user.back() == ':' || std::ranges::count(c.user, ':') > 1)) {
    return jr::fail(n.member("user"), "{:?}: must be user, user:group, uid or uid:gid", c.user);
  }
  BERTH_TRY(jr::read(n.member("workingDirectory"), c.working_directory));
  if (!c.working_directory.empty() && !c.working_directory.starts_with('/')) {
    return jr::fail(n.member("workingDirectory"), "{:?}: must be an absolute path",
                    c.working_directory);
  }
  BERTH_TRY(jr::check_no_nul(n.member("workingDirectory"), c.working_directory));
  BERTH_TRY(jr::read(n.member("hostname"), c.hostname));
  bool host_ok = c.hostname.size() <= 63 && std::ranges::all_of(c.hostname, [](char ch) {
                   return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.';
                 });
  if (!host_ok) return jr::fail(n.member("hostname"), "{:?}: not a valid hostname", c.hostname);
  BERTH_TRY(jr::read(n.member("readonlyRootFilesystem"), c.readonly_root_filesystem));
  return jr::read_array(n.member("ulimits"), c.ulimits, parse_ulimit);
}

Result<void> parse_lifecycle(const jr::Node& n, ContainerDefinition& c) {
  BERTH_TRY(jr::read(n.member("essential"), c.essential));
  BERTH_TRY(jr::read_array(n.member("dependsOn"), c.depends_on, parse_dependency));
  BERTH_TRY(read_int(n.member("startTimeout"), c.start_timeout_s, 2, 600));
  if (c.start_timeout_s && !c.depends_on.empty()) {
    return jr::fail(n.member("startTimeout"),
                    "not supported with dependsOn (berth has no dependency timeout yet)");
  }
  BERTH_TRY(read_int(n.member("stopTimeout"), c.stop_timeout_s, 0, 120));
  BERTH_TRY(jr::read_object(n.member("healthCheck"), c.health_check, parse_health_check));
  return jr::read_object(n.member("restartPolicy"), c.restart_policy, parse_restart_policy);
}

}  // namespace

Result<ContainerDefinition> parse_container_definition(const jr::Node& n, const Account* account,
                                                       const std::string& network_mode) {
  BERTH_TRY(refuse_unknown(n, {"name",
                               "image",
                               "repositoryCredentials",
                               "cpu",
                               "memory",
                               "memoryReservation",
                               "essential",
                               "entryPoint",
                               "command",
                               "environment",
                               "portMappings",
                               "mountPoints",
                               "volumesFrom",
                               "linuxParameters",
                               "dependsOn",
                               "startTimeout",
                               "stopTimeout",
                               "hostname",
                               "user",
                               "workingDirectory",
                               "disableNetworking",
                               "privileged",
                               "readonlyRootFilesystem",
                               "dnsServers",
                               "extraHosts",
                               "ulimits",
                               "logConfiguration",
                               "healthCheck",
                               "systemControls",
                               "restartPolicy",
                               "links",
                               "dnsSearchDomains",
                               "dockerSecurityOptions",
                               "dockerLabels",
                               "secrets",
                               "environmentFiles",
                               "resourceRequirements",
                               "firelensConfiguration",
                               "credentialSpecs",
                               "interactive",
                               "pseudoTerminal"}));
  BERTH_TRY(refuse_unsupported(n, network_mode));
  ContainerDefinition c;
  BERTH_TRY(parse_identity(n, c));
  BERTH_TRY(parse_resources(n, c));
  BERTH_TRY(parse_process(n, c));
  BERTH_TRY(parse_lifecycle(n, c));
  BERTH_TRY(jr::read_array(n.member("portMappings"), c.port_mappings,
                           [&](const jr::Node& e) { return parse_port_mapping(e, network_mode); }));
  BERTH_TRY(parse_linux_parameters(n.member("linuxParameters"), account, c.linux_parameters));
  BERTH_TRY(jr::read_array(n.member("systemControls"), c.system_controls, [&](const jr::Node& e) {
    return parse_system_control(e, network_mode);
  }));
  BERTH_TRY(parse_log_configuration(n.member("logConfiguration"), c));
  return c;
}

}  // namespace berth::cp::ecs
