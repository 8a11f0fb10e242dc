// RegisterTaskDefinition: the task-level fields, the Fargate size table and
// the JSON of a task definition (ecs_json.h).
//
// Decisions where ECS leaves room (documented in ecs_json.h too):
// - networkMode awsvpc (the default) and bridge both give the task its own
//   network namespace with a veth and an address (bridge is awsvpc-like:
//   hostPort publishes on the host); host shares the host's; none gets a
//   namespace with only loopback.
// - pidMode/ipcMode "host" are refused; "task" (one namespace shared by the
//   task's containers) is refused too, not implemented yet; ipcMode "none"
//   is honoured (every container has its own IPC namespace anyway).
// - Without task-level memory, every container needs memory or
//   memoryReservation (ECS's rule for EC2).
#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <set>

#include "controlplane/model/arn.h"
#include "controlplane/model/container_definition.h"
#include "controlplane/model/ecs_json.h"
#include "controlplane/model/errors.h"

namespace berth::cp {

using namespace ecs;

namespace {

struct FargateCpu {
  int cpu;
  int min_mib;
  int max_mib;
  int step_mib;  // 0: only the listed values below
};

// ECS-API.md, "Fargate sizing".
constexpr FargateCpu kFargate[] = {
    {256, 512, 2048, 0},          {512, 1024, 4096, 1024},   {1024, 2048, 8192, 1024},
    {2048, 4096, 16384, 1024},    {4096, 8192, 30720, 1024}, {8192, 16384, 61440, 4096},
    {16384, 32768, 122880, 8192},
};

bool fargate_memory_ok(const FargateCpu& f, int mib) {
  if (f.step_mib == 0) return mib == 512 || mib == 1024 || mib == 2048;
  return mib >= f.min_mib && mib <= f.max_mib && (mib - f.min_mib) % f.step_mib == 0;
}

bool has(const std::vector<std::string>& v, std::string_view s) {
  return std::ranges::find(v, s) != v.end();
}

bool valid_family(std::string_view f) {
  return !f.empty() && f.size() <= 255 && std::ranges::all_of(f, [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

Result<void> read_network_mode(const jr::Node& n, TaskDefinition& d) {
  BERTH_TRY(jr::read(n, d.network_mode));
  for (std::string_view m : {"awsvpc", "bridge", "host", "none"}) {
    if (d.network_mode == m) return {};
  }
  return jr::fail(n, "{:?}: must be awsvpc, bridge, host or none", d.network_mode);
}

Result<void> read_compatibilities(const jr::Node& n, TaskDefinition& d) {
  BERTH_TRY(read_strings(n, d.requires_compatibilities));
  for (size_t i = 0; i < d.requires_compatibilities.size(); ++i) {
    const auto& c = d.requires_compatibilities[i];
    if (c != "FARGATE" && c != "EC2" && c != "EXTERNAL") {
      return jr::fail(n.element(i), "{:?}: must be FARGATE, EC2 or EXTERNAL", c);
    }
  }
  return {};
}

Result<void> read_namespace_modes(const jr::Node& n, TaskDefinition& d) {
  BERTH_TRY(jr::read(n.member("pidMode"), d.pid_mode));
  if (!d.pid_mode.empty()) {
    return jr::fail(n.member("pidMode"), "{:?}: not supported by berth ({})", d.pid_mode,
                    d.pid_mode == "host" ? "it would share the host's processes"
                                         : "containers of a task have their own pid namespaces");
  }
  BERTH_TRY(jr::read(n.member("ipcMode"), d.ipc_mode));
  if (!d.ipc_mode.empty() && d.ipc_mode != "none") {
    return jr::fail(n.member("ipcMode"), "{:?}: not supported by berth (only \"none\")",
                    d.ipc_mode);
  }
  return {};
}

Result<void> read_ephemeral_storage(const jr::Node& n, TaskDefinition& d) {
  if (!n.present()) return {};
  BERTH_TRY(refuse_unknown(n, {"sizeInGiB"}));
  std::optional<int> size;
  BERTH_TRY(read_int(n.member("sizeInGiB"), size, 21, 200));
  if (!size) return jr::fail(n.member("sizeInGiB"), "required field is missing");
  d.ephemeral_storage_gib = *size;
  return {};
}

Result<void> read_runtime_platform(const jr::Node& n, TaskDefinition& d) {
  if (!n.present()) return {};
  BERTH_TRY(refuse_unknown(n, {"operatingSystemFamily", "cpuArchitecture"}));
  std::string os, arch;
  BERTH_TRY(jr::read(n.member("operatingSystemFamily"), os));
  if (n.member("operatingSystemFamily").present() && os != "LINUX") {
    return jr::fail(n.member("operatingSystemFamily"), "{:?}: berth runs only LINUX", os);
  }
  BERTH_TRY(jr::read(n.member("cpuArchitecture"), arch));
  if (n.member("cpuArchitecture").present() && arch != host_cpu_architecture()) {
    return jr::fail(n.member("cpuArchitecture"), "{:?}: this host is {}", arch,
                    host_cpu_architecture());
  }
  d.runtime_platform = *n.value;
  return {};
}

Result<void> refuse_unsupported_task_fields(const jr::Node& n) {
  BERTH_TRY(refuse_if_set(n, "volumes", "berth has no volumes yet"));
  BERTH_TRY(refuse_if_set(n, "placementConstraints", "not supported by berth"));
  BERTH_TRY(refuse_if_set(n, "proxyConfiguration", "not supported by berth"));
  return refuse_if_set(n, "inferenceAccelerators", "not supported by berth");
}

Result<void> read_containers(const jr::Node& n, const Account* account, TaskDefinition& d) {
  if (!n.present()) return jr::fail(n, "required field is missing");
  BERTH_TRY(jr::read_array(n, d.containers, [&](const jr::Node& e) {
    return parse_container_definition(e, account, d.network_mode);
  }));
  if (d.containers.empty() || d.containers.size() > 10) {
    return jr::fail(n, "must hold 1 to 10 container definitions");
  }
  return {};
}

// Names unique, dependencies on existing containers without cycles, a
// HEALTHY condition only on a container with a health check, at least one
// essential container.
Result<void> check_container_graph(const TaskDefinition& d) {
  std::map<std::string, const ContainerDefinition*> by_name;
  for (size_t i = 0; i < d.containers.size(); ++i) {
    if (!by_name.emplace(d.containers[i].name, &d.containers[i]).second) {
      return ecs_error(kInvalidParameter, "containerDefinitions[{}].name: {:?} is used twice", i,
                       d.containers[i].name);
    }
  }
  for (size_t i = 0; i < d.containers.size(); ++i) {
    const auto& deps = d.containers[i].depends_on;
    for (size_t k = 0; k < deps.size(); ++k) {
      auto it = by_name.find(deps[k].container_name);
      if (it == by_name.end() || it->first == d.containers[i].name) {
        return ecs_error(kInvalidParameter,
                         "containerDefinitions[{}].dependsOn[{}].containerName: {:?} is not "
                         "another container of the task",
                         i, k, deps[k].container_name);
      }
      if (deps[k].condition == "HEALTHY" && !it->second->health_check) {
        return ecs_error(kInvalidParameter,
                         "containerDefinitions[{}].dependsOn[{}].condition: HEALTHY needs a "
                         "healthCheck on {:?}",
                         i, k, deps[k].container_name);
      }
    }
  }
  std::map<std::string, int> colour;
  std::function<bool(const ContainerDefinition&)> cyclic = [&](const ContainerDefinition& c) {
    colour[c.name] = 1;
    for (const auto& dep : c.depends_on) {
      int col = colour[dep.container_name];
      if (col == 1 || (col == 0 && cyclic(*by_name[dep.container_name]))) return true;
    }
    colour[c.name] = 2;
    return false;
  };
  for (const auto& c : d.containers) {
    if (colour[c.name] == 0 && cyclic(c)) {
      return ecs_error(kInvalidParameter,
                       "containerDefinitions: dependsOn has a cycle through {:?}", c.name);
    }
  }
  if (std::ranges::none_of(d.containers, &ContainerDefinition::essential)) {
    return ecs_error(kClientException,
                     "A task definition must have at least one essential "
                     "container.");
  }
  return {};
}

// Container sizes against the task's.
Result<void> check_container_sizes(const TaskDefinition& d) {
  int64_t cpu = 0, mem = 0;
  for (const auto& c : d.containers) {
    if (d.memory.empty() && !c.memory_mib && !c.memory_reservation_mib) {
      return ecs_error(kClientException,
                       "Invalid setting for container '{}'. At least one of 'memory' or "
                       "'memoryReservation' must be specified.",
                       c.name);
    }
    if (!d.memory.empty() && c.memory_mib && *c.memory_mib > d.memory_mib()) {
      return ecs_error(kClientException,
                       "Invalid setting for container '{}'. 'memory' ({} MiB) exceeds the task "
                       "memory ({} MiB).",
                       c.name, *c.memory_mib, d.memory_mib());
    }
    cpu += c.cpu;
    mem += c.memory_reservation_mib.value_or(c.memory_mib.value_or(0));
  }
  if (!d.cpu.empty() && cpu > d.cpu_units()) {
    return ecs_error(kClientException,
                     "The containers' cpu ({} units) exceeds the task cpu ({} units).", cpu,
                     d.cpu_units());
  }
  if (!d.memory.empty() && mem > d.memory_mib()) {
    return ecs_error(kClientException,
                     "The containers' memory reservations ({} MiB) exceed the task memory ({} "
                     "MiB).",
                     mem, d.memory_mib());
  }
  return {};
}

Result<void> check_fargate(const TaskDefinition& d) {
  if (!has(d.requires_compatibilities, "FARGATE")) return {};
  if (d.network_mode != "awsvpc") {
    return ecs_error(kClientException, "Fargate only supports network mode 'awsvpc'.");
  }
  if (d.cpu.empty()) {
    return ecs_error(kClientException, "Fargate requires that 'cpu' be defined at the task level.");
  }
  if (d.memory.empty()) {
    return ecs_error(kClientException,
                     "Fargate requires that 'memory' be defined at the task level.");
  }
  return check_fargate_size(d.cpu, d.memory);
}

// The fields of a definition, as a client or the store wrote them.
// `account` null: a stored definition.
Result<TaskDefinition> parse_definition(const jr::Node& root, const Account* account,
                                        std::initializer_list<std::string_view> known) {
  BERTH_TRY(refuse_unknown(root, known));
  BERTH_TRY(refuse_unsupported_task_fields(root));
  TaskDefinition d;
  BERTH_TRY(jr::read(root.member("family"), d.family));
  BERTH_TRY(read_network_mode(root.member("networkMode"), d));
  BERTH_TRY(read_compatibilities(root.member("requiresCompatibilities"), d));
  BERTH_TRY(read_task_cpu(root.member("cpu"), d.cpu));
  BERTH_TRY(read_task_memory(root.member("memory"), d.memory));
  BERTH_TRY(read_namespace_modes(root, d));
  BERTH_TRY(read_ephemeral_storage(root.member("ephemeralStorage"), d));
  BERTH_TRY(read_runtime_platform(root.member("runtimePlatform"), d));
  BERTH_TRY(jr::read(root.member("executionRoleArn"), d.execution_role_arn));
  BERTH_TRY(jr::read(root.member("taskRoleArn"), d.task_role_arn));
  BERTH_ASSIGN(d.tags, parse_tags(root.member("tags")));
  BERTH_TRY(read_containers(root.member("containerDefinitions"), account, d));
  BERTH_TRY(check_container_graph(d));
  BERTH_TRY(check_fargate(d));
  BERTH_TRY(check_container_sizes(d));
  return d;
}

#define BERTH_TASK_DEFINITION_FIELDS                                                           \
  "family", "containerDefinitions", "cpu", "memory", "networkMode", "requiresCompatibilities", \
      "volumes", "pidMode", "ipcMode", "ephemeralStorage", "runtimePlatform", "tags",          \
      "executionRoleArn", "taskRoleArn", "placementConstraints", "proxyConfiguration",         \
      "inferenceAccelerators"

json linux_parameters_json(const LinuxParametersDef& lp) {
  json out{{"capabilities", {{"add", lp.cap_add}, {"drop", lp.cap_drop}}},
           {"devices", json::array()}};
  if (lp.init_process_enabled) out["initProcessEnabled"] = *lp.init_process_enabled;
  if (lp.shared_memory_size_mib) out["sharedMemorySize"] = *lp.shared_memory_size_mib;
  json tmpfs = json::array();
  for (const auto& t : lp.tmpfs) {
    tmpfs.push_back({{"containerPath", t.container_path},
                     {"size", t.size_mib},
                     {"mountOptions", t.mount_options}});
  }
  out["tmpfs"] = std::move(tmpfs);
  return out;
}

bool linux_parameters_set(const LinuxParametersDef& lp) {
  return !lp.cap_add.empty() || !lp.cap_drop.empty() || lp.init_process_enabled ||
         lp.shared_memory_size_mib || !lp.tmpfs.empty();
}

json port_mappings_json(const std::vector<PortMappingDef>& ports) {
  json out = json::array();
  for (const auto& p : ports) {
    json m{{"containerPort", p.container_port}, {"protocol", p.protocol}};
    if (p.host_port) m["hostPort"] = *p.host_port;
    if (!p.name.empty()) m["name"] = p.name;
    out.push_back(std::move(m));
  }
  return out;
}

void lifecycle_json(const ContainerDefinition& c, json& out) {
  if (!c.depends_on.empty()) {
    json deps = json::array();
    for (const auto& d : c.depends_on) {
      deps.push_back({{"containerName", d.container_name}, {"condition", d.condition}});
    }
    out["dependsOn"] = std::move(deps);
  }
  if (c.start_timeout_s) out["startTimeout"] = *c.start_timeout_s;
  if (c.stop_timeout_s) out["stopTimeout"] = *c.stop_timeout_s;
  if (c.health_check) {
    const auto& h = *c.health_check;
    out["healthCheck"] = {{"command", h.command},
                          {"interval", h.interval_s},
                          {"timeout", h.timeout_s},
                          {"retries", h.retries},
                          {"startPeriod", h.start_period_s}};
  }
  if (c.restart_policy) {
    const auto& r = *c.restart_policy;
    out["restartPolicy"] = {{"enabled", r.enabled}, {"ignoredExitCodes", r.ignored_exit_codes}};
    if (r.restart_attempt_period_s) {
      out["restartPolicy"]["restartAttemptPeriod"] = *r.restart_attempt_period_s;
    }
  }
}

void process_json(const ContainerDefinition& c, json& out) {
  if (!c.entry_point.empty()) out["entryPoint"] = c.entry_point;
  if (!c.command.empty()) out["command"] = c.command;
  out["environment"] = key_values_json(c.environment);
  if (!c.user.empty()) out["user"] = c.user;
  if (!c.working_directory.empty()) out["workingDirectory"] = c.working_directory;
  if (!c.hostname.empty()) out["hostname"] = c.hostname;
  out["readonlyRootFilesystem"] = c.readonly_root_filesystem;
  if (!c.ulimits.empty()) {
    json u = json::array();
    for (const auto& l : c.ulimits) {
      u.push_back({{"name", l.name}, {"softLimit", l.soft_limit}, {"hardLimit", l.hard_limit}});
    }
    out["ulimits"] = std::move(u);
  }
}

json container_definition_json(const ContainerDefinition& c) {
  json out{{"name", c.name}, {"image", c.image}, {"cpu", c.cpu}, {"essential", c.essential}};
  if (!c.repository_credentials.empty()) {
    out["repositoryCredentials"] = {{"credentialsParameter", c.repository_credentials}};
  }
  if (c.memory_mib) out["memory"] = *c.memory_mib;
  if (c.memory_reservation_mib) out["memoryReservation"] = *c.memory_reservation_mib;
  out["portMappings"] = port_mappings_json(c.port_mappings);
  process_json(c, out);
  lifecycle_json(c, out);
  out["mountPoints"] = json::array();
  out["volumesFrom"] = json::array();
  if (linux_parameters_set(c.linux_parameters)) {
    out["linuxParameters"] = linux_parameters_json(c.linux_parameters);
  }
  json sysctls = json::array();
  for (const auto& s : c.system_controls) {
    sysctls.push_back({{"namespace", s.name}, {"value", s.value}});
  }
  out["systemControls"] = std::move(sysctls);
  if (c.log_configuration) out["logConfiguration"] = *c.log_configuration;
  return out;
}

// ECS answers which launch types a definition could run on.
json compatibilities_json(const TaskDefinition& d) {
  json out = json::array({"EC2"});
  if (d.network_mode == "awsvpc" && !d.cpu.empty() && !d.memory.empty() &&
      check_fargate_size(d.cpu, d.memory)) {
    out.push_back("FARGATE");
  }
  return out;
}

}  // namespace

Result<void> check_fargate_size(const std::string& cpu, const std::string& memory) {
  auto c = normalise_cpu(cpu);
  const FargateCpu* row = nullptr;
  for (const auto& f : kFargate) {
    if (c && *c == std::to_string(f.cpu)) row = &f;
  }
  if (row == nullptr) return ecs_error(kClientException, "Invalid 'cpu' setting for task.");
  auto m = normalise_memory(memory);
  if (!m) return ecs_error(kClientException, "Invalid 'memory' setting for task.");
  int mib = std::stoi(*m);
  if (fargate_memory_ok(*row, mib)) return {};
  std::string allowed = row->step_mib == 0 ? std::string("512, 1024 or 2048")
                                           : fmt::format("{} to {} in steps of {}", row->min_mib,
                                                         row->max_mib, row->step_mib);
  return ecs_error(kClientException,
                   "Invalid 'memory' setting for task. {} MiB is not valid for cpu {} (memory "
                   "must be {} MiB).",
                   mib, row->cpu, allowed);
}

Result<TaskDefinition> parse_task_definition(const nlohmann::json& body, const Account& account,
                                             std::string_view default_family) {
  auto root = jr::Node::root(body, kRequest);
  BERTH_ASSIGN(TaskDefinition d, parse_definition(root, &account, {BERTH_TASK_DEFINITION_FIELDS}));
  if (!root.member("family").present()) {
    if (default_family.empty()) return jr::fail(root.member("family"), "required field is missing");
    d.family = std::string(default_family);
  }
  if (!valid_family(d.family)) {
    return jr::fail(root.member("family"), "{:?}: must be 1-255 of [A-Za-z0-9_-]", d.family);
  }
  d.account = account.id;
  return d;
}

nlohmann::json task_definition_json(const TaskDefinition& d, std::string_view region) {
  json containers = json::array();
  for (const auto& c : d.containers) containers.push_back(container_definition_json(c));
  json out{
      {"taskDefinitionArn", task_definition_arn(region, d.account, d.family, d.revision)},
      {"family", d.family},
      {"revision", d.revision},
      {"status", d.status},
      {"containerDefinitions", std::move(containers)},
      {"networkMode", d.network_mode},
      {"volumes", json::array()},
      {"placementConstraints", json::array()},
      {"requiresCompatibilities", d.requires_compatibilities},
      {"compatibilities", compatibilities_json(d)},
      {"registeredAt", epoch_seconds(d.registered_at)},
  };
  if (!d.cpu.empty()) out["cpu"] = d.cpu;
  if (!d.memory.empty()) out["memory"] = d.memory;
  if (!d.ipc_mode.empty()) out["ipcMode"] = d.ipc_mode;
  if (d.ephemeral_storage_gib != 0)
    out["ephemeralStorage"] = {{"sizeInGiB", d.ephemeral_storage_gib}};
  if (d.runtime_platform) out["runtimePlatform"] = *d.runtime_platform;
  if (!d.execution_role_arn.empty()) out["executionRoleArn"] = d.execution_role_arn;
  if (!d.task_role_arn.empty()) out["taskRoleArn"] = d.task_role_arn;
  if (is_set(d.deregistered_at)) out["deregisteredAt"] = epoch_seconds(d.deregistered_at);
  // Not an ECS member of TaskDefinition (ECS returns tags beside it); kept
  // so that the stored document is complete. Clients ignore it.
  out["tags"] = tags_json(d.tags);
  return out;
}

Result<TaskDefinition> task_definition_from_json(const nlohmann::json& j,
                                                 std::string_view account) {
  static constexpr jr::Document kStored{"stored task definition", "task definition"};
  auto root = jr::Node::root(j, kRequest);
  auto d = parse_definition(root, nullptr,
                            {BERTH_TASK_DEFINITION_FIELDS, "taskDefinitionArn", "revision",
                             "status", "compatibilities", "registeredAt", "deregisteredAt"});
  if (!d) {
    Error e = std::move(d).error();
    e.step = std::string(kStored.step);
    e.kind = ErrorKind::internal;
    return std::unexpected(std::move(e));
  }
  auto stored = jr::Node::root(j, kStored);
  BERTH_TRY(jr::read_required(stored.member("revision"), d->revision));
  BERTH_TRY(jr::read(stored.member("status"), d->status));
  double registered = 0, deregistered = 0;
  BERTH_TRY(jr::read(stored.member("registeredAt"), registered));
  BERTH_TRY(jr::read(stored.member("deregisteredAt"), deregistered));
  d->registered_at = from_epoch_seconds(registered);
  d->deregistered_at = from_epoch_seconds(deregistered);
  d->account = std::string(account);
  return d;
}

}  // namespace berth::cp
