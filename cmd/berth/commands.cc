#include "cmd/berth/commands.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "cmd/berth/answer.h"
#include "cmd/berth/args.h"
#include "cmd/berth/logs.h"
#include "cmd/berth/table.h"
#include "cmd/berth/task_view.h"
#include "cmd/berth/usage_view.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/json_reader.h"

namespace berth::cli {
namespace {

using json = nlohmann::json;
using Env = std::vector<std::pair<std::string, std::string>>;

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<json> read_definition_file(const std::string& file) {
  BERTH_ASSIGN(std::string text, fs::read_file(file));
  BERTH_ASSIGN(json def, parse_json(text, file));
  if (!def.is_object())
    return error("task definition", "{}: expected a JSON object (a RegisterTaskDefinition input)",
                 file);
  return def;
}

Result<Env> parse_envs(const std::vector<std::string>& kvs) {
  Env env;
  for (const auto& kv : kvs) {
    BERTH_ASSIGN(auto pair, parse_env(kv));
    env.push_back(std::move(pair));
  }
  return env;
}

QueryParams cluster_query(const std::string& cluster) {
  if (cluster.empty()) return {};
  return {{"cluster", cluster}};
}

// RunTask's answer: the tasks, with failures[] reported on stderr. No task
// at all is a failure to start.
Result<json> check_run_failures(Context& ctx, json answer) {
  BERTH_ASSIGN(auto failures, read_failures(answer));
  if (failures.empty()) return answer;
  std::string reasons;
  for (const auto& f : failures)
    reasons += fmt::format("{}{}{}", reasons.empty() ? "" : "; ", f.reason,
                           f.detail.empty() ? "" : " (" + f.detail + ")");
  auto tasks = answer.find("tasks");
  if (tasks == answer.end() || !tasks->is_array() || tasks->empty())
    return std::unexpected(Error{"cannot run task", 0, reasons, ErrorKind::unsupported});
  std::fprintf(ctx.err, "berth: some tasks did not start: %s\n", reasons.c_str());
  return answer;
}

Result<json> describe_definition(Context& ctx, const std::string& ref) {
  return ctx.client.ecs("DescribeTaskDefinition", {{"taskDefinition", ref}});
}

// `run FILE`: one task through the native endpoint; several through
// RegisterTaskDefinition + RunTask (POST /v1/tasks runs one per call, and
// each call would register a new revision).
Result<json> run_file(Context& ctx, const RunOptions& o, const Env& env) {
  BERTH_ASSIGN(json def, read_definition_file(o.target));
  BERTH_TRY(apply_env_to_definition(def, env));
  if (o.count == 1) {
    BERTH_ASSIGN(json answer,
                 ctx.client.native("POST", "/v1/tasks", cluster_query(o.cluster), def.dump()));
    BERTH_TRY(read_task_answer(answer));
    return json{{"tasks", json::array({answer["task"]})}, {"failures", json::array()}};
  }
  if (!def.contains("family")) def["family"] = "inline";
  BERTH_ASSIGN(json reg, ctx.client.ecs("RegisterTaskDefinition", def));
  BERTH_ASSIGN(std::string arn, read_string(reg, {"taskDefinition", "taskDefinitionArn"}));
  json input{{"taskDefinition", arn}, {"count", o.count}};
  if (!o.cluster.empty()) input["cluster"] = o.cluster;
  BERTH_ASSIGN(json answer, ctx.client.ecs("RunTask", input));
  return check_run_failures(ctx, std::move(answer));
}

Result<json> run_registered(Context& ctx, const RunOptions& o, const Env& env) {
  json input{{"taskDefinition", o.target}, {"count", o.count}};
  if (!o.cluster.empty()) input["cluster"] = o.cluster;
  if (!env.empty()) {
    BERTH_ASSIGN(json described, describe_definition(ctx, o.target));
    BERTH_ASSIGN(auto defs, read_container_definitions(described));
    std::vector<std::string> names;
    for (const auto& d : defs) names.push_back(d.name);
    input["overrides"] = env_overrides(names, env);
  }
  BERTH_ASSIGN(json answer, ctx.client.ecs("RunTask", input));
  return check_run_failures(ctx, std::move(answer));
}

Result<TaskView> get_task(Context& ctx, const std::string& id, json* raw = nullptr) {
  BERTH_ASSIGN(json answer, ctx.client.native("GET", "/v1/tasks/" + id));
  BERTH_ASSIGN(TaskView t, read_task_answer(answer));
  if (raw != nullptr) *raw = std::move(answer["task"]);
  return t;
}

// Polls until the task is STOPPED: 100 ms at first (short jobs finish in
// milliseconds), backing off to 1 s.
Result<TaskView> wait_stopped(Context& ctx, const std::string& id, json* raw) {
  auto delay = std::chrono::milliseconds(100);
  for (;;) {
    BERTH_ASSIGN(TaskView t, get_task(ctx, id, raw));
    if (t.last_status == "STOPPED") return t;
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

Result<int> wait_for_tasks(Context& ctx, const std::vector<TaskView>& tasks) {
  // Without the definition every container counts as essential.
  std::set<std::string> essential;
  if (auto d = describe_definition(ctx, tasks.front().definition_arn)) {
    if (auto defs = read_container_definitions(*d)) essential = essential_names(*defs);
  }
  int status = kExitOk;
  json finals = json::array();
  for (const auto& t : tasks) {
    json raw;
    BERTH_ASSIGN(TaskView stopped, wait_stopped(ctx, t.id, &raw));
    finals.push_back(std::move(raw));
    std::string why;
    int s = run_exit_status(stopped, essential, &why);
    if (s != 0 && status == kExitOk) {
      status = s;
      std::fprintf(ctx.err, "berth: %s\n", why.c_str());
    }
  }
  if (ctx.json_output) print_json(ctx, {{"tasks", std::move(finals)}});
  return status;
}

// A task id, ARN or unique id prefix -> what GET /v1/tasks/{id} takes.
Result<std::string> resolve_task(Context& ctx, const std::string& ref) {
  if (is_full_task_ref(ref)) return ref;
  BERTH_ASSIGN(json answer, ctx.client.native("GET", "/v1/tasks", {{"status", "ALL"}}));
  BERTH_ASSIGN(auto tasks, read_tasks(answer));
  return match_task_prefix(ref, tasks);
}

}  // namespace

Result<std::vector<std::string>> list_all(Context& ctx, std::string_view operation, json input,
                                          std::string_view arns_key) {
  std::vector<std::string> arns;
  for (;;) {
    BERTH_ASSIGN(json page, ctx.client.ecs(operation, input));
    std::vector<std::string> page_arns;
    std::string next;
    jr::Node root = jr::Node::root(page, kAnswer);
    BERTH_TRY(jr::expect_object(root));
    BERTH_TRY(jr::read(root.member(arns_key), page_arns));
    BERTH_TRY(jr::read(root.member("nextToken"), next));
    for (auto& a : page_arns) arns.push_back(std::move(a));
    if (next.empty()) return arns;
    input["nextToken"] = next;
  }
}

void print_json(Context& ctx, const json& j) {
  // Names and log text come from users: never abort on bad UTF-8.
  std::fprintf(ctx.out, "%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

void print_text(Context& ctx, std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), ctx.out);
}

Result<int> cmd_register(Context& ctx, const std::string& file) {
  BERTH_ASSIGN(json def, read_definition_file(file));
  BERTH_ASSIGN(json answer, ctx.client.ecs("RegisterTaskDefinition", def));
  if (ctx.json_output) {
    print_json(ctx, answer);
    return kExitOk;
  }
  BERTH_ASSIGN(std::string arn, read_string(answer, {"taskDefinition", "taskDefinitionArn"}));
  std::fprintf(ctx.out, "%s\n", arn_tail(arn).c_str());
  return kExitOk;
}

Result<int> cmd_run(Context& ctx, const RunOptions& o) {
  if (o.count < 1 || o.count > 10) return usage_error("run: --count must be 1..10");
  BERTH_ASSIGN(Env env, parse_envs(o.env));
  BERTH_ASSIGN(RunTarget target, classify_run_target(o.target, is_regular_file(o.target)));
  Result<json> answer = target.is_file ? run_file(ctx, o, env) : run_registered(ctx, o, env);
  if (!answer) {
    if (answer.error().kind != ErrorKind::unsupported) return std::unexpected(answer.error());
    std::fprintf(ctx.err, "berth: %s\n", answer.error().str().c_str());
    return kExitFailedToStart;
  }
  BERTH_ASSIGN(auto tasks, read_tasks(*answer));
  if (tasks.empty()) return error("run", "berthd answered without a task");
  // Some of --count N did not start (reported on stderr already): the run
  // as a whole failed to start, after the started ones are followed.
  auto failures = answer->find("failures");
  int partial = failures != answer->end() && failures->is_array() && !failures->empty()
                    ? kExitFailedToStart
                    : kExitOk;
  if (ctx.json_output && !o.wait) print_json(ctx, *answer);
  if (!ctx.json_output) {
    for (const auto& t : tasks) std::fprintf(ctx.out, "%s\n", t.id.c_str());
    std::fflush(ctx.out);
  }
  if (!o.wait) return partial;
  BERTH_ASSIGN(int status, wait_for_tasks(ctx, tasks));
  return status != kExitOk ? status : partial;
}

Result<int> cmd_ps(Context& ctx, const PsOptions& o) {
  QueryParams q = cluster_query(o.cluster);
  q.emplace_back("status", "ALL");
  BERTH_ASSIGN(json answer, ctx.client.native("GET", "/v1/tasks", q));
  BERTH_ASSIGN(auto tasks, read_tasks(answer));
  if (ctx.json_output) {
    // The raw task objects of the tasks the table would show.
    json shown = json::array();
    auto selected = ps_selection(tasks, o.all);
    for (const auto& t : selected)
      for (const auto& raw : answer["tasks"])
        if (auto arn = raw.find("taskArn"); arn != raw.end() && *arn == t.arn) shown.push_back(raw);
    print_json(ctx, {{"tasks", std::move(shown)}});
    return kExitOk;
  }
  std::fputs(ps_table(std::move(tasks), o.all, now_epoch_seconds()).c_str(), ctx.out);
  return kExitOk;
}

Result<int> cmd_describe(Context& ctx, const std::string& task) {
  BERTH_ASSIGN(std::string id, resolve_task(ctx, task));
  json raw;
  BERTH_ASSIGN(TaskView t, get_task(ctx, id, &raw));
  if (ctx.json_output) {
    print_json(ctx, {{"task", std::move(raw)}});
    return kExitOk;
  }
  std::fputs(describe_text(t, now_epoch_seconds()).c_str(), ctx.out);
  return kExitOk;
}

Result<int> cmd_logs(Context& ctx, const LogsOptions& o) {
  BERTH_ASSIGN(std::string id, resolve_task(ctx, o.task));
  QueryParams q;
  if (!o.container.empty()) q.emplace_back("container", o.container);
  if (o.follow) q.emplace_back("follow", "true");
  LineSplitter lines;
  auto emit = [&o, &ctx](std::string_view line) {
    LogOutput out = render_log_line(line, o.timestamps);
    FILE* f = out.is_stderr ? ctx.err : ctx.out;
    std::fwrite(out.text.data(), 1, out.text.size(), f);
    if (o.follow) std::fflush(f);
  };
  BERTH_TRY(ctx.client.stream("/v1/tasks/" + id + "/logs", q, [&](std::string_view chunk) {
    lines.feed(chunk, emit);
    return true;
  }));
  lines.finish(emit);
  return kExitOk;
}

Result<int> cmd_stop(Context& ctx, const StopOptions& o) {
  BERTH_ASSIGN(std::string id, resolve_task(ctx, o.task));
  QueryParams q;
  if (!o.reason.empty()) q.emplace_back("reason", o.reason);
  BERTH_ASSIGN(json answer, ctx.client.native("DELETE", "/v1/tasks/" + id, q));
  if (ctx.json_output) {
    print_json(ctx, answer);
    return kExitOk;
  }
  BERTH_ASSIGN(TaskView t, read_task_answer(answer));
  std::fprintf(ctx.out, "%s\n", t.id.c_str());
  return kExitOk;
}

Result<int> cmd_clusters(Context& ctx) {
  BERTH_ASSIGN(std::vector<std::string> names,
               list_all(ctx, "ListClusters", json::object(), "clusterArns"));
  json arns = names;
  json described{{"clusters", json::array()}, {"failures", json::array()}};
  if (!arns.empty()) {
    BERTH_ASSIGN(described, ctx.client.ecs("DescribeClusters", {{"clusters", arns}}));
  }
  if (ctx.json_output) {
    print_json(ctx, described);
    return kExitOk;
  }
  BERTH_ASSIGN(std::string table, clusters_table(described));
  std::fputs(table.c_str(), ctx.out);
  return kExitOk;
}

Result<int> cmd_usage(Context& ctx, const UsageOptions& o) {
  QueryParams q;
  if (!o.from.empty()) q.emplace_back("from", o.from);
  if (!o.to.empty()) q.emplace_back("to", o.to);
  if (!o.group_by.empty()) q.emplace_back("groupBy", o.group_by);
  BERTH_ASSIGN(json answer, ctx.client.native("GET", "/v1/usage", q));
  if (ctx.json_output) {
    print_json(ctx, answer);
    return kExitOk;
  }
  BERTH_ASSIGN(UsageView u, read_usage(answer));
  std::string text = ctx.csv_output ? usage_csv(u) : usage_table(u);
  std::fwrite(text.data(), 1, text.size(), ctx.out);
  return kExitOk;
}

Result<int> cmd_usage_verify(Context& ctx) {
  BERTH_ASSIGN(json answer, ctx.client.native("GET", "/v1/usage/verify"));
  BERTH_ASSIGN(VerifyView v, read_verify(answer));
  int status = kExitOk;
  std::string text = verify_text(v, &status);
  if (ctx.json_output) {
    print_json(ctx, answer);
  } else {
    std::fwrite(text.data(), 1, text.size(), ctx.out);
  }
  return status;
}

}  // namespace berth::cli
