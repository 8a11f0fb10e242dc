#include "cmd/berth/task_view.h"

#include <algorithm>

#include <fmt/format.h>

#include "cmd/berth/answer.h"
#include "cmd/berth/table.h"
#include "common/json_reader.h"

namespace berth::cli {
namespace {

using json = nlohmann::json;

Result<PortBinding> read_binding(const jr::Node& n) {
  BERTH_TRY(jr::expect_object(n));
  PortBinding b;
  BERTH_TRY(jr::read(n.member("containerPort"), b.container_port));
  BERTH_TRY(jr::read(n.member("hostPort"), b.host_port));
  BERTH_TRY(jr::read(n.member("protocol"), b.protocol));
  return b;
}

// The task's address: the first container's networkInterfaces entry.
Result<std::string> read_container_ip(const jr::Node& c) {
  std::vector<std::string> ips;
  BERTH_TRY(jr::read_array(c.member("networkInterfaces"), ips,
                           [](const jr::Node& e) -> Result<std::string> {
                             BERTH_TRY(jr::expect_object(e));
                             std::string ip;
                             BERTH_TRY(jr::read(e.member("privateIpv4Address"), ip));
                             return ip;
                           }));
  return ips.empty() ? std::string() : ips.front();
}

Result<ContainerView> read_container(const jr::Node& n, std::string* ip) {
  BERTH_TRY(jr::expect_object(n));
  ContainerView c;
  BERTH_TRY(jr::read(n.member("name"), c.name));
  BERTH_TRY(jr::read(n.member("image"), c.image));
  BERTH_TRY(jr::read(n.member("lastStatus"), c.last_status));
  BERTH_TRY(jr::read(n.member("exitCode"), c.exit_code));
  BERTH_TRY(jr::read(n.member("reason"), c.reason));
  BERTH_TRY(jr::read(n.member("healthStatus"), c.health_status));
  BERTH_TRY(jr::read_array(n.member("networkBindings"), c.ports, read_binding));
  BERTH_ASSIGN(std::string container_ip, read_container_ip(n));
  if (ip->empty()) *ip = container_ip;
  return c;
}

// attachments[].details[{name: privateIPv4Address, value}], when the
// containers do not carry the address.
Result<std::string> read_attachment_ip(const jr::Node& task) {
  jr::Node atts = task.member("attachments");
  if (!atts.present()) return std::string();
  if (!atts.value->is_array()) return jr::type_error(atts, "an array");
  for (size_t i = 0; i < atts.value->size(); ++i) {
    jr::Node details = atts.element(i).member("details");
    if (!details.present() || !details.value->is_array()) continue;
    for (size_t k = 0; k < details.value->size(); ++k) {
      std::string name, value;
      BERTH_TRY(jr::read(details.element(k).member("name"), name));
      BERTH_TRY(jr::read(details.element(k).member("value"), value));
      if (name == "privateIPv4Address") return value;
    }
  }
  return std::string();
}

Result<void> read_times(const jr::Node& n, TaskView& t) {
  BERTH_TRY(jr::read(n.member("createdAt"), t.created_at));
  BERTH_TRY(jr::read(n.member("pullStartedAt"), t.pull_started_at));
  BERTH_TRY(jr::read(n.member("pullStoppedAt"), t.pull_stopped_at));
  BERTH_TRY(jr::read(n.member("startedAt"), t.started_at));
  BERTH_TRY(jr::read(n.member("stoppingAt"), t.stopping_at));
  BERTH_TRY(jr::read(n.member("stoppedAt"), t.stopped_at));
  return {};
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string ports_text(const std::vector<PortBinding>& ports) {
  std::string out;
  for (const auto& p : ports)
    out += fmt::format("{}{} -> {}/{}", out.empty() ? "" : ", ", p.host_port, p.container_port,
                       p.protocol);
  return or_dash(out);
}

constexpr size_t kLabelWidth = 16;

std::string time_line(const char* label, double at, double now) {
  return page_time_line(label, at, now, kLabelWidth);
}

}  // namespace

std::string arn_tail(const std::string& arn) {
  size_t slash = arn.rfind('/');
  return slash == std::string::npos ? arn : arn.substr(slash + 1);
}

Result<TaskView> read_task(const json& task) {
  jr::Node n = jr::Node::root(task, kAnswer);
  BERTH_TRY(jr::expect_object(n));
  TaskView t;
  BERTH_TRY(jr::read(n.member("taskArn"), t.arn));
  t.id = arn_tail(t.arn);
  std::string cluster_arn;
  BERTH_TRY(jr::read(n.member("clusterArn"), cluster_arn));
  t.cluster = arn_tail(cluster_arn);
  BERTH_TRY(jr::read(n.member("taskDefinitionArn"), t.definition_arn));
  t.definition = arn_tail(t.definition_arn);
  BERTH_TRY(jr::read(n.member("lastStatus"), t.last_status));
  BERTH_TRY(jr::read(n.member("desiredStatus"), t.desired_status));
  BERTH_TRY(jr::read(n.member("healthStatus"), t.health_status));
  BERTH_TRY(jr::read(n.member("launchType"), t.launch_type));
  BERTH_TRY(jr::read(n.member("cpu"), t.cpu));
  BERTH_TRY(jr::read(n.member("memory"), t.memory));
  BERTH_TRY(jr::read(n.member("stopCode"), t.stop_code));
  BERTH_TRY(jr::read(n.member("stoppedReason"), t.stopped_reason));
  BERTH_TRY(jr::read(n.member("group"), t.group));
  BERTH_TRY(jr::read(n.member("startedBy"), t.started_by));
  BERTH_TRY(read_times(n, t));
  BERTH_TRY(jr::read_array(n.member("containers"), t.containers,
                           [&t](const jr::Node& c) { return read_container(c, &t.ip); }));
  if (t.ip.empty()) {
    BERTH_ASSIGN(t.ip, read_attachment_ip(n));
  }
  BERTH_ASSIGN(t.billing, read_billing(task));
  return t;
}

Result<std::vector<TaskView>> read_tasks(const json& answer) {
  jr::Node n = jr::Node::root(answer, kAnswer);
  BERTH_TRY(jr::expect_object(n));
  std::vector<TaskView> tasks;
  BERTH_TRY(jr::read_array(n.member("tasks"), tasks,
                           [](const jr::Node& e) { return read_task(*e.value); }));
  return tasks;
}

Result<TaskView> read_task_answer(const json& answer) {
  jr::Node n = jr::Node::root(answer, kAnswer);
  BERTH_TRY(jr::expect_object(n));
  jr::Node task = n.member("task");
  if (!task.present()) return jr::fail(task, "required field is missing");
  return read_task(*task.value);
}

std::string status_text(const TaskView& t) {
  if (t.last_status == "STOPPED") {
    if (t.stop_code == "TaskFailedToStart") return "STOPPED (failed to start)";
    int code = 0;
    bool any = false;
    for (const auto& c : t.containers) {
      if (!c.exit_code) continue;
      any = true;
      if (code == 0) code = *c.exit_code;
    }
    return any ? fmt::format("STOPPED (exit {})", code) : "STOPPED";
  }
  if (t.health_status == "HEALTHY" || t.health_status == "UNHEALTHY")
    return fmt::format("{} ({})", t.last_status, lower(t.health_status));
  return t.last_status;
}

Result<std::vector<ContainerDefinitionView>> read_container_definitions(
    const json& describe_answer) {
  jr::Node root = jr::Node::root(describe_answer, kAnswer);
  BERTH_TRY(jr::expect_object(root));
  std::vector<ContainerDefinitionView> defs;
  BERTH_TRY(jr::read_array(root.member("taskDefinition").member("containerDefinitions"), defs,
                           [](const jr::Node& c) -> Result<ContainerDefinitionView> {
                             BERTH_TRY(jr::expect_object(c));
                             ContainerDefinitionView d;
                             BERTH_TRY(jr::read(c.member("name"), d.name));
                             BERTH_TRY(jr::read(c.member("essential"), d.essential));
                             return d;
                           }));
  return defs;
}

std::set<std::string> essential_names(const std::vector<ContainerDefinitionView>& defs) {
  std::set<std::string> names;
  for (const auto& d : defs)
    if (d.essential) names.insert(d.name);
  return names;
}

int run_exit_status(const TaskView& t, const std::set<std::string>& essential, std::string* why) {
  constexpr int kFailedToStart = 125;
  if (t.stop_code == "TaskFailedToStart") {
    *why = fmt::format("task {} failed to start: {}", t.id, or_dash(t.stopped_reason));
    return kFailedToStart;
  }
  for (const auto& c : t.containers) {
    if (!essential.empty() && !essential.contains(c.name)) continue;
    if (!c.exit_code) {
      *why = fmt::format("task {}: essential container {} did not run: {}", t.id, c.name,
                         or_dash(c.reason.empty() ? t.stopped_reason : c.reason));
      return kFailedToStart;
    }
    if (*c.exit_code != 0) {
      *why = fmt::format("task {}: essential container {} exited with code {}{}", t.id, c.name,
                         *c.exit_code, c.reason.empty() ? "" : " (" + c.reason + ")");
      return *c.exit_code;
    }
  }
  return 0;
}

std::vector<TaskView> ps_selection(std::vector<TaskView> tasks, bool all) {
  if (!all) std::erase_if(tasks, [](const TaskView& t) { return t.last_status == "STOPPED"; });
  std::ranges::stable_sort(
      tasks, [](const TaskView& a, const TaskView& b) { return a.created_at > b.created_at; });
  return tasks;
}

std::string ps_table(std::vector<TaskView> tasks, bool all, double now) {
  Table table({"TASK ID", "DEFINITION", "CLUSTER", "STATUS", "IP", "CREATED"});
  for (const auto& t : ps_selection(std::move(tasks), all))
    table.add({short_id(t.id), or_dash(t.definition), or_dash(t.cluster), status_text(t),
               or_dash(t.ip), human_ago(t.created_at, now)});
  return table.render();
}

Result<std::string> clusters_table(const json& describe_answer) {
  struct Row {
    std::string name, status;
    int running = 0, pending = 0, services = 0;
  };
  jr::Node root = jr::Node::root(describe_answer, kAnswer);
  BERTH_TRY(jr::expect_object(root));
  std::vector<Row> rows;
  BERTH_TRY(jr::read_array(root.member("clusters"), rows, [](const jr::Node& c) -> Result<Row> {
    BERTH_TRY(jr::expect_object(c));
    Row r;
    BERTH_TRY(jr::read(c.member("clusterName"), r.name));
    BERTH_TRY(jr::read(c.member("status"), r.status));
    BERTH_TRY(jr::read(c.member("runningTasksCount"), r.running));
    BERTH_TRY(jr::read(c.member("pendingTasksCount"), r.pending));
    BERTH_TRY(jr::read(c.member("activeServicesCount"), r.services));
    return r;
  }));
  std::ranges::sort(rows, {}, &Row::name);
  Table table({"NAME", "STATUS", "RUNNING", "PENDING", "SERVICES"});
  for (const auto& r : rows)
    table.add({r.name, or_dash(r.status), std::to_string(r.running), std::to_string(r.pending),
               std::to_string(r.services)});
  return table.render();
}

std::string describe_text(const TaskView& t, double now) {
  std::string out;
  auto line = [&out](const char* label, const std::string& value) {
    out += page_line(label, value, kLabelWidth);
  };
  line("Task:", t.id);
  line("ARN:", t.arn);
  line("Cluster:", t.cluster);
  line("Definition:", t.definition);
  line("Status:", fmt::format("{} (desired {})", t.last_status, or_dash(t.desired_status)));
  line("Health:", t.health_status);
  line("Launch type:", t.launch_type);
  line("CPU / memory:", fmt::format("{} units / {} MiB", or_dash(t.cpu), or_dash(t.memory)));
  line("IP:", t.ip);
  if (!t.group.empty()) line("Group:", t.group);
  if (!t.started_by.empty()) line("Started by:", t.started_by);
  out += time_line("Created:", t.created_at, now);
  if (t.pull_started_at > 0) out += time_line("Pull started:", t.pull_started_at, now);
  if (t.pull_stopped_at > 0) out += time_line("Pull stopped:", t.pull_stopped_at, now);
  out += time_line("Started:", t.started_at, now);
  if (t.stopping_at > 0) out += time_line("Stopping:", t.stopping_at, now);
  if (t.stopped_at > 0) out += time_line("Stopped:", t.stopped_at, now);
  if (!t.stop_code.empty()) line("Stop code:", t.stop_code);
  if (!t.stopped_reason.empty()) line("Stopped reason:", t.stopped_reason);
  if (t.billing) line("Billed:", billing_text(*t.billing));
  out += "Containers:\n";
  for (const auto& c : t.containers) {
    out += fmt::format("  {}\n", c.name);
    auto cline = [&out](const char* label, const std::string& value) {
      out += "    " + page_line(label, value, 12);
    };
    cline("Image:", c.image);
    cline("Status:", c.last_status);
    cline("Exit code:", c.exit_code ? std::to_string(*c.exit_code) : "");
    cline("Reason:", c.reason);
    cline("Health:", c.health_status);
    cline("Ports:", ports_text(c.ports));
  }
  return out;
}

}  // namespace berth::cli
