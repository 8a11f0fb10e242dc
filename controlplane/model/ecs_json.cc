// Tags, RunTask overrides, and the task and cluster objects (ecs_json.h).
#include "controlplane/model/ecs_json.h"

#include "controlplane/model/arn.h"
#include "controlplane/model/ecs_json_util.h"
#include "controlplane/model/errors.h"

namespace berth::cp {

using namespace ecs;

namespace {

constexpr jr::Document kStoredTask{"stored task", "task"};
constexpr jr::Document kStoredCluster{"stored cluster", "cluster"};

Result<Tag> parse_tag(const jr::Node& n) {
  BERTH_TRY(refuse_unknown(n, {"key", "value"}));
  Tag t;
  BERTH_TRY(jr::read_required(n.member("key"), t.key));
  BERTH_TRY(jr::read(n.member("value"), t.value));
  if (t.key.empty() || t.key.size() > 128) {
    return jr::fail(n.member("key"), "must be 1-128 characters");
  }
  if (t.key.starts_with("aws:")) {
    return jr::fail(n.member("key"), "{:?}: the aws: prefix is reserved", t.key);
  }
  if (t.value.size() > 256) return jr::fail(n.member("value"), "longer than 256 characters");
  return t;
}

Result<ContainerOverride> parse_container_override(const jr::Node& n) {
  BERTH_TRY(refuse_unknown(n, {"name", "command", "environment", "cpu", "memory",
                               "memoryReservation", "environmentFiles", "resourceRequirements"}));
  BERTH_TRY(refuse_if_set(n, "environmentFiles", "not supported by berth"));
  BERTH_TRY(refuse_if_set(n, "resourceRequirements", "not supported by berth"));
  ContainerOverride o;
  BERTH_TRY(jr::read_required(n.member("name"), o.name));
  if (n.member("command").present()) {
    o.command.emplace();
    BERTH_TRY(read_strings(n.member("command"), *o.command));
  }
  BERTH_TRY(read_key_values(n.member("environment"), o.environment));
  BERTH_TRY(read_int(n.member("cpu"), o.cpu, 0, 196608));
  BERTH_TRY(read_int(n.member("memory"), o.memory_mib, 6, 1 << 24));
  BERTH_TRY(read_int(n.member("memoryReservation"), o.memory_reservation_mib, 4, 1 << 24));
  return o;
}

json container_override_json(const ContainerOverride& o) {
  json out{{"name", o.name}};
  if (o.command) out["command"] = *o.command;
  if (!o.environment.empty()) out["environment"] = key_values_json(o.environment);
  if (o.cpu) out["cpu"] = *o.cpu;
  if (o.memory_mib) out["memory"] = *o.memory_mib;
  if (o.memory_reservation_mib) out["memoryReservation"] = *o.memory_reservation_mib;
  return out;
}

json overrides_json(const TaskOverrides& o) {
  json cs = json::array();
  for (const auto& c : o.container_overrides) cs.push_back(container_override_json(c));
  json out{{"containerOverrides", std::move(cs)}};
  if (!o.cpu.empty()) out["cpu"] = o.cpu;
  if (!o.memory.empty()) out["memory"] = o.memory;
  return out;
}

// The ENI attachment's id: a UUID-shaped rendering of the task id, stable
// and derived so it needs no field of its own.
std::string attachment_id(const Task& t) {
  if (t.id.size() != 32) return t.id;
  return fmt::format("{}-{}-{}-{}-{}", t.id.substr(0, 8), t.id.substr(8, 4), t.id.substr(12, 4),
                     t.id.substr(16, 4), t.id.substr(20));
}

bool has_network(const Task& t) {
  return !t.private_ipv4.empty() || !t.network_interface_id.empty();
}

json attachments_json(const Task& t) {
  json out = json::array();
  if (!has_network(t)) return out;
  const char* status = t.last_status == TaskStatus::provisioning ? "PRECREATED"
                       : t.last_status == TaskStatus::stopped    ? "DELETED"
                                                                 : "ATTACHED";
  json details = json::array();
  auto detail = [&](const char* name, const std::string& value) {
    if (!value.empty()) details.push_back({{"name", name}, {"value", value}});
  };
  detail("networkInterfaceId", t.network_interface_id);
  detail("macAddress", t.mac_address);
  detail("privateIPv4Address", t.private_ipv4);
  out.push_back({{"id", attachment_id(t)},
                 {"type", "ElasticNetworkInterface"},
                 {"status", status},
                 {"details", std::move(details)}});
  return out;
}

json network_bindings_json(const std::vector<NetworkBinding>& bindings) {
  json out = json::array();
  for (const auto& b : bindings) {
    out.push_back({{"bindIP", b.bind_ip},
                   {"containerPort", b.container_port},
                   {"hostPort", b.host_port},
                   {"protocol", b.protocol}});
  }
  return out;
}

json task_container_json(const Task& t, const TaskContainer& c, std::string_view region) {
  json out{
      {"containerArn", container_arn(region, t.account, t.cluster, t.id, c.id)},
      {"taskArn", task_arn(region, t.account, t.cluster, t.id)},
      {"name", c.name},
      {"image", c.image},
      {"lastStatus", c.last_status},
      {"networkBindings", network_bindings_json(c.network_bindings)},
      {"networkInterfaces", json::array()},
      {"healthStatus", c.health_status},
      {"cpu", std::to_string(c.cpu)},
  };
  if (!c.image_digest.empty()) out["imageDigest"] = c.image_digest;
  if (!c.runtime_id.empty()) out["runtimeId"] = c.runtime_id;
  if (c.exit_code) out["exitCode"] = *c.exit_code;
  if (!c.reason.empty()) out["reason"] = c.reason;
  if (!t.private_ipv4.empty()) {
    out["networkInterfaces"].push_back(
        {{"attachmentId", attachment_id(t)}, {"privateIpv4Address", t.private_ipv4}});
  }
  if (c.memory_mib) out["memory"] = std::to_string(*c.memory_mib);
  if (c.memory_reservation_mib) {
    out["memoryReservation"] = std::to_string(*c.memory_reservation_mib);
  }
  return out;
}

void timestamps_json(const Task& t, json& out) {
  std::pair<const char*, TimePoint> stamps[] = {
      {"createdAt", t.created_at},          {"pullStartedAt", t.pull_started_at},
      {"pullStoppedAt", t.pull_stopped_at}, {"startedAt", t.started_at},
      {"stoppingAt", t.stopping_at},        {"executionStoppedAt", t.execution_stopped_at},
      {"stoppedAt", t.stopped_at},
  };
  for (const auto& [name, at] : stamps) {
    if (is_set(at)) out[name] = epoch_seconds(at);
  }
}

// --- reading the stored task back -------------------------------------------

Result<TimePoint> read_time(const jr::Node& n) {
  double s = 0;
  BERTH_TRY(jr::read(n, s));
  return from_epoch_seconds(s);
}

Result<TaskStatus> read_status(const jr::Node& n) {
  std::string s;
  BERTH_TRY(jr::read_required(n, s));
  auto st = parse_task_status(s);
  if (!st) return jr::fail(n, "{:?}: not a task status", s);
  return *st;
}

// "<size>" strings as ECS writes container cpu/memory in a task.
Result<void> read_int_string(const jr::Node& n, std::optional<int>& out) {
  std::string s;
  BERTH_TRY(jr::read(n, s));
  if (!n.present()) return {};
  auto v = normalise_memory(s);
  if (!v && s != "0") return jr::fail(n, "{:?}: not a number", s);
  out = v ? std::stoi(*v) : 0;
  return {};
}

Result<NetworkBinding> read_binding(const jr::Node& n) {
  NetworkBinding b;
  BERTH_TRY(jr::read(n.member("bindIP"), b.bind_ip));
  BERTH_TRY(jr::read(n.member("containerPort"), b.container_port));
  BERTH_TRY(jr::read(n.member("hostPort"), b.host_port));
  BERTH_TRY(jr::read(n.member("protocol"), b.protocol));
  return b;
}

Result<TaskContainer> read_task_container(const jr::Node& n) {
  TaskContainer c;
  std::string arn;
  BERTH_TRY(jr::read_required(n.member("containerArn"), arn));
  c.id = arn.substr(arn.rfind('/') + 1);
  BERTH_TRY(jr::read_required(n.member("name"), c.name));
  BERTH_TRY(jr::read(n.member("image"), c.image));
  BERTH_TRY(jr::read(n.member("imageDigest"), c.image_digest));
  BERTH_TRY(jr::read(n.member("runtimeId"), c.runtime_id));
  BERTH_TRY(jr::read(n.member("lastStatus"), c.last_status));
  BERTH_TRY(jr::read(n.member("exitCode"), c.exit_code));
  BERTH_TRY(jr::read(n.member("reason"), c.reason));
  BERTH_TRY(jr::read(n.member("healthStatus"), c.health_status));
  BERTH_TRY(jr::read_array(n.member("networkBindings"), c.network_bindings, read_binding));
  std::optional<int> cpu;
  BERTH_TRY(read_int_string(n.member("cpu"), cpu));
  c.cpu = cpu.value_or(0);
  BERTH_TRY(read_int_string(n.member("memory"), c.memory_mib));
  BERTH_TRY(read_int_string(n.member("memoryReservation"), c.memory_reservation_mib));
  return c;
}

Result<void> read_attachment(const jr::Node& n, Task& t) {
  if (!n.present() || !n.value->is_array() || n.value->empty()) return {};
  jr::Node details = n.element(0).member("details");
  if (!details.present() || !details.value->is_array()) return {};
  for (size_t i = 0; i < details.value->size(); ++i) {
    std::string name, value;
    BERTH_TRY(jr::read(details.element(i).member("name"), name));
    BERTH_TRY(jr::read(details.element(i).member("value"), value));
    if (name == "networkInterfaceId") t.network_interface_id = value;
    if (name == "macAddress") t.mac_address = value;
    if (name == "privateIPv4Address") t.private_ipv4 = value;
  }
  return {};
}

Result<void> read_task_timestamps(const jr::Node& n, Task& t) {
  BERTH_ASSIGN(t.created_at, read_time(n.member("createdAt")));
  BERTH_ASSIGN(t.pull_started_at, read_time(n.member("pullStartedAt")));
  BERTH_ASSIGN(t.pull_stopped_at, read_time(n.member("pullStoppedAt")));
  BERTH_ASSIGN(t.started_at, read_time(n.member("startedAt")));
  BERTH_ASSIGN(t.stopping_at, read_time(n.member("stoppingAt")));
  BERTH_ASSIGN(t.execution_stopped_at, read_time(n.member("executionStoppedAt")));
  BERTH_ASSIGN(t.stopped_at, read_time(n.member("stoppedAt")));
  return {};
}

// Cluster, id, family and revision from the ARNs.
Result<void> read_task_identity(const jr::Node& n, Task& t) {
  std::string arn_text;
  BERTH_TRY(jr::read_required(n.member("taskArn"), arn_text));
  auto a = parse_arn(arn_text);
  size_t slash = a ? a->rest.find('/') : std::string::npos;
  if (!a || a->type != "task" || slash == std::string::npos) {
    return jr::fail(n.member("taskArn"), "{:?}: not a task ARN", arn_text);
  }
  t.cluster = a->rest.substr(0, slash);
  t.id = a->rest.substr(slash + 1);
  BERTH_TRY(jr::read_required(n.member("taskDefinitionArn"), t.task_definition_arn));
  auto d = parse_arn(t.task_definition_arn);
  size_t colon = d ? d->rest.rfind(':') : std::string::npos;
  if (!d || d->type != "task-definition" || colon == std::string::npos) {
    return jr::fail(n.member("taskDefinitionArn"), "{:?}: not a task definition ARN",
                    t.task_definition_arn);
  }
  t.family = d->rest.substr(0, colon);
  t.revision = std::atoi(d->rest.c_str() + colon + 1);
  return {};
}

Result<void> read_task_fields(const jr::Node& n, Task& t) {
  BERTH_TRY(jr::read(n.member("group"), t.group));
  BERTH_TRY(jr::read(n.member("startedBy"), t.started_by));
  BERTH_TRY(jr::read(n.member("launchType"), t.launch_type));
  BERTH_TRY(jr::read(n.member("cpu"), t.cpu));
  BERTH_TRY(jr::read(n.member("memory"), t.memory));
  BERTH_ASSIGN(t.last_status, read_status(n.member("lastStatus")));
  BERTH_ASSIGN(t.desired_status, read_status(n.member("desiredStatus")));
  BERTH_TRY(jr::read(n.member("healthStatus"), t.health_status));
  BERTH_TRY(jr::read(n.member("stopCode"), t.stop_code));
  BERTH_TRY(jr::read(n.member("stoppedReason"), t.stopped_reason));
  BERTH_TRY(jr::read(n.member("version"), t.version));
  BERTH_TRY(jr::read(n.member("berthNodeRef"), t.node_ref));
  return {};
}

}  // namespace

nlohmann::json tags_json(const std::vector<Tag>& tags) {
  json out = json::array();
  for (const auto& t : tags) out.push_back({{"key", t.key}, {"value", t.value}});
  return out;
}

Result<std::vector<Tag>> parse_tags(const jr::Node& n) {
  std::vector<Tag> tags;
  BERTH_TRY(jr::read_array(n, tags, parse_tag));
  if (tags.size() > 50) return jr::fail(n, "at most 50 tags");
  for (size_t i = 0; i < tags.size(); ++i) {
    for (size_t k = 0; k < i; ++k) {
      if (tags[k].key == tags[i].key) {
        return jr::fail(n.element(i).member("key"), "{:?} is given twice", tags[i].key);
      }
    }
  }
  return tags;
}

Result<TaskOverrides> parse_overrides(const jr::Node& n) {
  TaskOverrides o;
  if (!n.present()) return o;
  // executionRoleArn / taskRoleArn mean something only inside AWS: accepted
  // and not kept.
  BERTH_TRY(
      refuse_unknown(n, {"containerOverrides", "cpu", "memory", "executionRoleArn", "taskRoleArn",
                         "ephemeralStorage", "inferenceAcceleratorOverrides"}));
  BERTH_TRY(refuse_if_set(n, "ephemeralStorage", "not supported by berth"));
  BERTH_TRY(refuse_if_set(n, "inferenceAcceleratorOverrides", "not supported by berth"));
  std::string role;
  BERTH_TRY(jr::read(n.member("executionRoleArn"), role));
  BERTH_TRY(jr::read(n.member("taskRoleArn"), role));
  BERTH_TRY(jr::read_array(n.member("containerOverrides"), o.container_overrides,
                           parse_container_override));
  BERTH_TRY(read_task_cpu(n.member("cpu"), o.cpu));
  BERTH_TRY(read_task_memory(n.member("memory"), o.memory));
  return o;
}

nlohmann::json task_json(const Task& t, std::string_view region) {
  json containers = json::array();
  for (const auto& c : t.containers) containers.push_back(task_container_json(t, c, region));
  json out{
      {"taskArn", task_arn(region, t.account, t.cluster, t.id)},
      {"clusterArn", cluster_arn(region, t.account, t.cluster)},
      {"taskDefinitionArn", t.task_definition_arn},
      {"group", t.group},
      {"cpu", t.cpu},
      {"memory", t.memory},
      {"lastStatus", task_status_name(t.last_status)},
      {"desiredStatus", task_status_name(t.desired_status)},
      {"healthStatus", t.health_status},
      {"launchType", t.launch_type},
      {"connectivity", t.last_status == TaskStatus::stopped ? "DISCONNECTED" : "CONNECTED"},
      {"attachments", attachments_json(t)},
      {"containers", std::move(containers)},
      {"overrides", overrides_json(t.overrides)},
      {"tags", tags_json(t.tags)},
      {"version", t.version},
  };
  if (!t.started_by.empty()) out["startedBy"] = t.started_by;
  if (!t.stop_code.empty()) out["stopCode"] = t.stop_code;
  if (!t.stopped_reason.empty()) out["stoppedReason"] = t.stopped_reason;
  timestamps_json(t, out);
  // berth's own member: the task's state directory on its node, which the
  // store needs to re-adopt the task after a restart. Clients ignore it.
  if (!t.node_ref.empty()) out["berthNodeRef"] = t.node_ref;
  return out;
}

Result<Task> task_from_json(const nlohmann::json& j, std::string_view account) {
  auto n = jr::Node::root(j, kStoredTask);
  BERTH_TRY(jr::expect_object(n));
  Task t;
  t.account = std::string(account);
  BERTH_TRY(read_task_identity(n, t));
  BERTH_TRY(read_task_fields(n, t));
  BERTH_TRY(read_task_timestamps(n, t));
  BERTH_TRY(read_attachment(n.member("attachments"), t));
  BERTH_TRY(jr::read_array(n.member("containers"), t.containers, read_task_container));
  BERTH_ASSIGN(t.tags, parse_tags(n.member("tags")));
  auto overrides = parse_overrides(n.member("overrides"));
  if (!overrides) return wrap(std::move(overrides).error(), "stored task");
  t.overrides = std::move(*overrides);
  return t;
}

nlohmann::json cluster_json(const Cluster& c, std::string_view region,
                            const ClusterCounts& counts) {
  return json{
      {"clusterArn", cluster_arn(region, c.account, c.name)},
      {"clusterName", c.name},
      {"status", c.status},
      {"registeredContainerInstancesCount", 0},
      {"runningTasksCount", counts.running_tasks},
      {"pendingTasksCount", counts.pending_tasks},
      {"activeServicesCount", counts.active_services},
      {"statistics", json::array()},
      {"tags", tags_json(c.tags)},
      {"settings", json::array()},
      {"capacityProviders", json::array()},
      {"defaultCapacityProviderStrategy", json::array()},
      // Not an ECS member; the stored document's creation time.
      {"berthCreatedAt", epoch_seconds(c.created_at)},
  };
}

Result<Cluster> cluster_from_json(const nlohmann::json& j, std::string_view account) {
  auto n = jr::Node::root(j, kStoredCluster);
  BERTH_TRY(jr::expect_object(n));
  Cluster c;
  c.account = std::string(account);
  BERTH_TRY(jr::read_required(n.member("clusterName"), c.name));
  BERTH_TRY(jr::read(n.member("status"), c.status));
  BERTH_ASSIGN(c.tags, parse_tags(n.member("tags")));
  double created = 0;
  BERTH_TRY(jr::read(n.member("berthCreatedAt"), created));
  c.created_at = from_epoch_seconds(created);
  return c;
}

}  // namespace berth::cp
