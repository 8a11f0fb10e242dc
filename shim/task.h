// What berth-shim runs: the task description the control plane writes into
// the task's state directory as task.json before it starts the shim.
//
//   {"version": 1, "task_id": "t1", "runtime_root": "/run/berth/runtime",
//    "containers": [{"name": "web", "bundle": "/abs/bundle",
//                    "essential": true, "stop_timeout": 30,
//                    "depends_on": [{"container": "db", "condition": "START"}],
//                    "restart_policy": {"enabled": true, "ignored_exit_codes": [0],
//                                       "restart_attempt_period": 300},
//                    "init_process": true,
//                    "health_check": {"command": ["CMD-SHELL", "test -f /ready"],
//                                     "interval": 30, "timeout": 5, "retries": 3,
//                                     "start_period": 0},
//                    "log": {"max_bytes": 10485760, "max_files": 3}}],
//    "cgroup_parent": "berth",
//    "limits": {"cpu": 512, "memory": 1024, "memory_reservation": 512, "pids": 4096}}
//
// `cgroup_parent` and `limits` (both optional; either one turns the task
// cgroup on, the parent defaulting to "berth") make the microhost's cgroup
// layout: the shim creates <cgroup_parent>/<task_id> (relative to its own
// cgroup, or absolute) with the task's limits before the first container,
// runs each container in the leaf <cgroup_parent>/<task_id>/<name> (this
// overrides the bundle's cgroupsPath), and removes the task cgroup when the
// task has stopped. limits.cpu is in CPU units (1024 = 1 vCPU), memory and
// memory_reservation in MiB, as in an ECS task definition.
//
// Each bundle is an OCI bundle the control plane prepared (config.json with
// root.path on the container's overlay, the microhost's netns path, cgroup
// limits). The runtime id of a container is "<task_id>.<name>": both parts are
// [A-Za-z0-9_-], so the "." between them is unambiguous (task "a-b" with
// container "c" and task "a" with container "b-c" do not collide), and the
// shim marks each bundle with the annotation berth.task = <task_id>, which
// the runtime records, so that it never deletes or kills a container it does
// not own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "runtime/microhost_cgroup.h"

namespace berth::shim {

enum class Condition { start, complete, success, healthy };
const char* condition_name(Condition c);

struct Dependency {
  std::string container;
  Condition condition = Condition::start;
};

// ECS restartPolicy as berth runs it: a container that exits with a code not
// in ignored_exit_codes is restarted in place (same bundle, same writable
// layer) after a backoff of 1 s doubling up to 30 s; a run that lasted
// attempt_period_s resets the backoff; a container that keeps failing for
// longer than attempt_period_s since its streak began is not restarted again.
struct RestartPolicy {
  bool enabled = false;
  std::vector<int> ignored_exit_codes;
  int attempt_period_s = 300;
};

// ECS healthCheck: `command` is ["CMD", exe, args...] or
// ["CMD-SHELL", "shell command"]; run inside the container (its namespaces,
// cgroup, user, capabilities and seccomp filter) every interval_s, failed
// when it exits non-zero or outlives timeout_s; UNHEALTHY after `retries`
// consecutive failures; failures within start_period_s do not count.
struct HealthCheck {
  std::vector<std::string> command;  // as given (with CMD / CMD-SHELL)
  int interval_s = 30;
  int timeout_s = 5;
  int retries = 3;
  int start_period_s = 0;

  // What to exec: CMD-SHELL wraps in /bin/sh -c.
  std::vector<std::string> argv() const;
};

struct ContainerSpec {
  std::string name;
  std::string bundle;
  bool essential = true;
  int stop_timeout_s = 30;
  std::vector<Dependency> depends_on;
  RestartPolicy restart;
  std::optional<HealthCheck> health;
  // A minimal init as pid 1 (berth-shim's own `init` mode, run from the
  // shim's protected copy of its binary) that reaps zombies and forwards
  // signals.
  bool init_process = false;
  uint64_t log_max_bytes = 10 << 20;
  int log_max_files = 3;
};

// Between the task id and the container name in a runtime id; neither may
// contain it.
inline constexpr char kRuntimeIdSeparator = '.';
// The bundle annotation (and so the runtime state's) naming the owning task.
inline constexpr std::string_view kOwnerAnnotation = "berth.task";

struct TaskSpec {
  std::string task_id;
  std::string runtime_root;
  std::vector<ContainerSpec> containers;
  // The task cgroup (see above): set when task.json has cgroup_parent or
  // limits.
  std::optional<std::string> cgroup_parent;
  runtime::TaskLimits limits;

  std::string runtime_id(const ContainerSpec& c) const {
    return task_id + std::string(1, kRuntimeIdSeparator) + c.name;
  }
  const ContainerSpec* find(std::string_view name) const;
};

// Parses and validates task.json: task id and names [A-Za-z0-9_-]{1,64}
// (no "."), names unique,
// bundles absolute, dependencies on existing containers and acyclic, at
// least one essential container. Errors name the field.
Result<TaskSpec> parse_task(std::string_view json);
Result<TaskSpec> load_task(const std::string& task_dir);

}  // namespace berth::shim
