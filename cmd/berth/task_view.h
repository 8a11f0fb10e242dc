// The ECS task object as the CLI shows it: read from berthd's JSON answer
// through the typed reader (a missing field is empty, a wrongly typed one an
// error naming its path), then rendered as a ps row, a describe page, or the
// exit code of `berth run --wait`.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmd/berth/usage_view.h"
#include "common/error.h"

namespace berth::cli {

struct PortBinding {
  int container_port = 0;
  int host_port = 0;
  std::string protocol = "tcp";
};

struct ContainerView {
  std::string name;
  std::string image;
  std::string last_status;
  std::optional<int> exit_code;
  std::string reason;
  std::string health_status;
  std::vector<PortBinding> ports;
};

struct TaskView {
  std::string arn;
  std::string id;          // the 32-hex tail of the ARN
  std::string cluster;     // name, from clusterArn
  std::string definition;  // family:revision, from taskDefinitionArn
  std::string definition_arn;
  std::string last_status;
  std::string desired_status;
  std::string health_status;
  std::string launch_type;
  std::string cpu;
  std::string memory;
  std::string ip;
  std::string stop_code;
  std::string stopped_reason;
  std::string group;
  std::string started_by;
  // Epoch seconds; 0 = not happened yet.
  double created_at = 0;
  double pull_started_at = 0;
  double pull_stopped_at = 0;
  double started_at = 0;
  double stopping_at = 0;
  double stopped_at = 0;
  std::vector<ContainerView> containers;
  // The berth extension "berthBilling" (absent: berthd meters nothing).
  std::optional<BillingView> billing;
};

Result<TaskView> read_task(const nlohmann::json& task);
// {"tasks": [...]} (GET /v1/tasks, DescribeTasks, RunTask).
Result<std::vector<TaskView>> read_tasks(const nlohmann::json& answer);
// {"task": {...}} (GET/DELETE /v1/tasks/{id}, POST /v1/tasks).
Result<TaskView> read_task_answer(const nlohmann::json& answer);

// The last path element of an ARN: ".../task/default/0123abcd" -> "0123abcd";
// "…:task-definition/web:3" -> "web:3".
std::string arn_tail(const std::string& arn);

// The status column of `berth ps`: "RUNNING", "RUNNING (healthy)",
// "STOPPED (exit 3)", "STOPPED (failed to start)".
std::string status_text(const TaskView& t);

struct ContainerDefinitionView {
  std::string name;
  bool essential = true;  // ECS's default
};
// The containers of a DescribeTaskDefinition answer
// ({"taskDefinition": {"containerDefinitions": [...]}}).
Result<std::vector<ContainerDefinitionView>> read_container_definitions(
    const nlohmann::json& describe_answer);
std::set<std::string> essential_names(const std::vector<ContainerDefinitionView>& defs);

// The exit status of `berth run --wait` for a stopped task:
//  - 125 when the task failed to start (stopCode TaskFailedToStart) or an
//    essential container never ran (no exit code);
//  - else the exit code of the first essential container (task order) that
//    exited non-zero, or 0.
// `why` gets a one-line explanation when the status is not 0. An empty
// `essential` set means "every container is essential".
int run_exit_status(const TaskView& t, const std::set<std::string>& essential, std::string* why);

// `berth ps`: newest first; without `all`, STOPPED tasks are left out.
// Columns TASK ID (12 hex), DEFINITION, CLUSTER, STATUS, IP, CREATED.
std::string ps_table(std::vector<TaskView> tasks, bool all, double now);
// The tasks `berth ps` shows, newest first.
std::vector<TaskView> ps_selection(std::vector<TaskView> tasks, bool all);

// `berth clusters` from a DescribeClusters answer: NAME, STATUS, RUNNING,
// PENDING, SERVICES.
Result<std::string> clusters_table(const nlohmann::json& describe_answer);

// `berth describe`'s page; `now` in epoch seconds for the "ago" parts. With
// a bill, a line "Billed:         76 s, $0.000411 (running)" ("(final)" once
// stopped).
std::string describe_text(const TaskView& t, double now);

}  // namespace berth::cli
