// The control plane's objects, in the words of ECS (docs/ECS-API.md):
// accounts, clusters, task definitions and their container definitions,
// tasks and their containers. Plain data; parsing, validation and the ECS
// JSON shapes are in model/ecs_json.h, ARNs and ids in model/arn.h.
//
// Timestamps are wall-clock (system_clock) time points: ECS writes them as
// epoch seconds with fractions.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace berth::cp {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

// A tenant. Every cluster, task definition, task and bill belongs to one.
struct Account {
  std::string id;    // 12 digits; appears in ARNs
  std::string name;  // "alice"
  std::string access_key_id;
  std::string secret_access_key;
  std::vector<uint32_t> unix_uids;  // peers on the unix socket that act as it
  // Linux capabilities (names without CAP_) linuxParameters.capabilities.add
  // may add beyond Fargate's rule (which allows only SYS_PTRACE).
  std::vector<std::string> allowed_capabilities;
  // Quotas (config [[accounts]] max_vcpu, max_memory_gb; 0 = none): what the
  // account's tasks may reserve at once. RunTask beyond them fails with
  // QUOTA:CPU / QUOTA:MEMORY.
  int64_t max_cpu_units = 0;
  int64_t max_memory_mib = 0;
  // Spending cap per UTC calendar month (spending_cap_usd; 0 = none): when
  // the month's billed amount reaches it, the account's tasks are stopped
  // and RunTask fails with QUOTA:SPENDING until the month ends.
  int64_t spending_cap_micro_usd = 0;
  // "reserved" | "usage"; "" = the config's [pricing] mode.
  std::string pricing_mode;
};

struct Tag {
  std::string key;
  std::string value;
  bool operator==(const Tag&) const = default;
};

struct Cluster {
  std::string account;
  std::string name;
  std::string status = "ACTIVE";  // ACTIVE | INACTIVE (deleted)
  std::vector<Tag> tags;
  TimePoint created_at{};
};

// ---------------------------------------------------------------------------
// Task definitions.

struct KeyValue {
  std::string name;
  std::string value;
  bool operator==(const KeyValue&) const = default;
};

struct PortMappingDef {
  uint16_t container_port = 0;
  std::optional<uint16_t> host_port;  // absent or 0: an ephemeral host port
  std::string protocol = "tcp";       // tcp | udp
  std::string name;
};

struct UlimitDef {
  std::string name;  // ECS names: nofile, nproc, core, ...
  int64_t soft_limit = 0;
  int64_t hard_limit = 0;
};

struct TmpfsDef {
  std::string container_path;
  int size_mib = 0;
  std::vector<std::string> mount_options;
};

struct LinuxParametersDef {
  std::vector<std::string> cap_add;  // without CAP_, as ECS writes them
  std::vector<std::string> cap_drop;
  std::optional<bool> init_process_enabled;
  std::optional<int> shared_memory_size_mib;
  std::vector<TmpfsDef> tmpfs;
  std::optional<int> max_swap_mib;
  std::optional<int> swappiness;
};

struct HealthCheckDef {
  std::vector<std::string> command;  // ["CMD", ...] or ["CMD-SHELL", "..."]
  int interval_s = 30;
  int timeout_s = 5;
  int retries = 3;
  int start_period_s = 0;
};

struct DependencyDef {
  std::string container_name;
  std::string condition;  // START | COMPLETE | SUCCESS | HEALTHY
};

struct RestartPolicyDef {
  bool enabled = false;
  std::vector<int> ignored_exit_codes;
  std::optional<int> restart_attempt_period_s;
};

struct HostEntry {
  std::string hostname;
  std::string ip_address;
};

struct SystemControl {
  std::string name;  // "namespace" in ECS JSON, e.g. net.ipv4.tcp_keepalive_time
  std::string value;
};

struct ContainerDefinition {
  std::string name;
  std::string image;
  int cpu = 0;                                // CPU units
  std::optional<int> memory_mib;              // hard limit
  std::optional<int> memory_reservation_mib;  // soft limit
  bool essential = true;
  std::vector<std::string> entry_point;  // empty: the image's
  std::vector<std::string> command;      // empty: the image's
  std::vector<KeyValue> environment;
  std::vector<PortMappingDef> port_mappings;
  LinuxParametersDef linux_parameters;
  std::vector<DependencyDef> depends_on;
  std::optional<int> start_timeout_s;
  std::optional<int> stop_timeout_s;  // default 30
  std::string hostname;
  std::string user;  // "uid", "uid:gid", "name", "name:group"
  std::string working_directory;
  bool readonly_root_filesystem = false;
  std::vector<std::string> dns_servers;
  std::vector<HostEntry> extra_hosts;
  std::vector<UlimitDef> ulimits;
  std::optional<HealthCheckDef> health_check;
  std::vector<SystemControl> system_controls;
  std::optional<RestartPolicyDef> restart_policy;
  // repositoryCredentials.credentialsParameter: the name of a registry
  // credential in berthd's config.
  std::string repository_credentials;
  // Accepted, stored and returned; what berth does with it is documented
  // (awslogs -> the local log store).
  std::optional<nlohmann::json> log_configuration;
};

struct TaskDefinition {
  std::string account;
  std::string family;
  int revision = 0;
  std::string status = "ACTIVE";  // ACTIVE | INACTIVE
  std::vector<ContainerDefinition> containers;
  std::string cpu;                      // task-level, as ECS writes it ("256"); empty: unset
  std::string memory;                   // MiB as a string ("512"); empty: unset
  std::string network_mode = "awsvpc";  // awsvpc | bridge | host | none
  std::vector<std::string> requires_compatibilities;  // FARGATE, ...
  int ephemeral_storage_gib = 0;                      // 0: the default (20 GiB)
  std::string pid_mode;                               // "" | task | host (refused)
  std::string ipc_mode;                               // "" | task | none | host (refused)
  // Meaningful only inside AWS: accepted, stored, returned.
  std::string execution_role_arn;
  std::string task_role_arn;
  std::optional<nlohmann::json> runtime_platform;
  std::vector<Tag> tags;
  TimePoint registered_at{};
  TimePoint deregistered_at{};  // zero while ACTIVE

  // Task cpu units and memory MiB, resolved from the strings ("1 vCPU",
  // "1GB" as ECS accepts them are normalised at registration).
  int cpu_units() const;
  int memory_mib() const;
};

// ---------------------------------------------------------------------------
// Tasks.

enum class TaskStatus {
  provisioning,
  pending,
  activating,
  running,
  deactivating,
  stopping,
  deprovisioning,
  stopped,
};
// "PROVISIONING", ... as ECS writes them.
const char* task_status_name(TaskStatus s);
std::optional<TaskStatus> parse_task_status(std::string_view s);

struct ContainerOverride {
  std::string name;
  std::optional<std::vector<std::string>> command;
  std::vector<KeyValue> environment;  // added to / replacing the definition's
  std::optional<int> cpu;
  std::optional<int> memory_mib;
  std::optional<int> memory_reservation_mib;
};

struct TaskOverrides {
  std::vector<ContainerOverride> container_overrides;
  std::string cpu;
  std::string memory;
};

struct NetworkBinding {
  std::string bind_ip = "0.0.0.0";
  uint16_t container_port = 0;
  uint16_t host_port = 0;
  std::string protocol = "tcp";
};

struct TaskContainer {
  std::string id;  // uuid, the last part of the container ARN
  std::string name;
  std::string image;
  std::string image_digest;             // sha256:... of the manifest
  std::string runtime_id;               // <task id>.<name>
  std::string last_status = "PENDING";  // PENDING | RUNNING | STOPPED
  std::optional<int> exit_code;
  std::string reason;
  std::string health_status = "UNKNOWN";  // HEALTHY | UNHEALTHY | UNKNOWN
  std::vector<NetworkBinding> network_bindings;
  int cpu = 0;
  std::optional<int> memory_mib;
  std::optional<int> memory_reservation_mib;
};

struct Task {
  std::string account;
  std::string cluster;  // name
  std::string id;       // 32 hex digits
  std::string task_definition_arn;
  std::string family;
  int revision = 0;
  std::string group;  // family:<f> or service:<name>
  std::string started_by;
  std::string launch_type = "FARGATE";  // FARGATE | FARGATE_SPOT
  std::string cpu;                      // task-level units, as a string
  std::string memory;                   // MiB, as a string
  TaskStatus last_status = TaskStatus::provisioning;
  TaskStatus desired_status = TaskStatus::running;
  std::string health_status = "UNKNOWN";
  std::vector<TaskContainer> containers;
  TaskOverrides overrides;
  std::vector<Tag> tags;
  // The microhost's address (empty for host/none network modes).
  std::string private_ipv4;
  std::string mac_address;
  std::string network_interface_id;  // "eni-<hex>", stable per task
  // Timestamps; zero = not happened yet.
  TimePoint created_at{};
  TimePoint pull_started_at{};
  TimePoint pull_stopped_at{};
  TimePoint started_at{};
  TimePoint stopping_at{};
  TimePoint execution_stopped_at{};
  TimePoint stopped_at{};
  std::string stop_code;  // TaskFailedToStart | EssentialContainerExited | UserInitiated | ...
  std::string stopped_reason;
  int64_t version = 1;  // bumped on every change
  // The node side: where the agent keeps the task (its state directory),
  // which the control plane needs after a restart.
  std::string node_ref;
};

}  // namespace berth::cp
