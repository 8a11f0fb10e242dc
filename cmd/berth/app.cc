#include "cmd/berth/app.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>

#include <fmt/format.h>

#include "cmd/berth/args.h"
#include "cmd/berth/client.h"
#include "cmd/berth/commands.h"
#include "cmd/berth/service_commands.h"

namespace berth::cli {

namespace {

struct Options {
  std::string host;
  std::string output = "table";
  RunOptions run;
  PsOptions ps;
  LogsOptions logs;
  StopOptions stop;
  UsageOptions usage;
  ServiceCreateOptions svc_create;
  ServiceUpdateOptions svc_update;
  ServiceScaleOptions svc_scale;
  ServiceListOptions svc_ls;
  ServiceDescribeOptions svc_describe;
  ServiceRemoveOptions svc_rm;
  bool csv_ok = false;  // the chosen command takes -o csv
  std::string file;
  std::string task;
};

using Command = std::function<berth::Result<int>(Context&)>;

void add_services(CLI::App& app, Options& o, Command& chosen);

// Declares the subcommands; `chosen` is set by the one that is parsed.
void add_commands(CLI::App& app, Options& o, Command& chosen) {
  auto* reg = app.add_subcommand("register", "Register a task definition (prints family:revision)");
  reg->add_option("FILE", o.file, "RegisterTaskDefinition JSON")->required();
  reg->callback([&] { chosen = [&](Context& c) { return cmd_register(c, o.file); }; });

  auto* run = app.add_subcommand("run", "Run a task from a file or a registered definition");
  run->add_option("TARGET", o.run.target, "FILE, FAMILY[:REVISION] or task definition ARN")
      ->required();
  run->add_option("--cluster", o.run.cluster, "Cluster (default: default)");
  run->add_option("--count", o.run.count, "Number of tasks (1-10)");
  run->add_flag("--wait,-w", o.run.wait,
                "Wait until STOPPED; exit with the essential container's code");
  run->add_option("--env,-e", o.run.env, "NAME=VALUE for every container (repeatable)");
  run->callback([&] { chosen = [&](Context& c) { return cmd_run(c, o.run); }; });

  auto* ps = app.add_subcommand("ps", "List tasks (not stopped; -a: all)");
  ps->add_flag("--all,-a", o.ps.all, "Show stopped tasks too");
  ps->add_option("--cluster", o.ps.cluster, "Only this cluster");
  ps->callback([&] { chosen = [&](Context& c) { return cmd_ps(c, o.ps); }; });

  auto* describe = app.add_subcommand("describe", "Show a task in detail");
  describe->add_option("TASK", o.task, "Task id, id prefix or ARN")->required();
  describe->callback([&] { chosen = [&](Context& c) { return cmd_describe(c, o.task); }; });

  auto* logs = app.add_subcommand("logs", "Print a container's logs");
  logs->add_option("TASK", o.logs.task, "Task id, id prefix or ARN")->required();
  logs->add_option("CONTAINER", o.logs.container, "Container name (optional with one container)");
  logs->add_flag("--follow,-f", o.logs.follow, "Follow until the task stops");
  logs->add_flag("--timestamps,-t", o.logs.timestamps, "Prefix each line with its time");
  logs->callback([&] { chosen = [&](Context& c) { return cmd_logs(c, o.logs); }; });

  auto* stop = app.add_subcommand("stop", "Stop a task (SIGTERM, then SIGKILL after stopTimeout)");
  stop->add_option("TASK", o.stop.task, "Task id, id prefix or ARN")->required();
  stop->add_option("--reason", o.stop.reason, "Stopped reason to record");
  stop->callback([&] { chosen = [&](Context& c) { return cmd_stop(c, o.stop); }; });

  auto* clusters = app.add_subcommand("clusters", "List clusters with their task counts");
  clusters->callback([&] { chosen = [](Context& c) { return cmd_clusters(c); }; });

  auto* usage = app.add_subcommand("usage", "Show the account's billed usage (the ledger)");
  usage->fallthrough();  // berth usage -o csv
  usage->require_subcommand(0, 1);
  usage->add_option("--from", o.usage.from,
                    "Start: RFC 3339, YYYY-MM-DD or epoch seconds (default: month start, UTC)");
  usage->add_option("--to", o.usage.to, "End, exclusive (default: now)");
  usage
      ->add_option("--group-by", o.usage.group_by,
                   "Lines per task (default), family, service or day")
      ->check(CLI::IsMember({"task", "family", "service", "day"}));
  auto* verify =
      usage->add_subcommand("verify", "Re-check the ledger's hash chain (exit 1 if broken)");
  verify->fallthrough();
  usage->callback([&o, &chosen, verify] {
    if (verify->parsed()) {
      chosen = [](Context& c) { return cmd_usage_verify(c); };
      return;
    }
    o.csv_ok = true;
    chosen = [&](Context& c) { return cmd_usage(c, o.usage); };
  });

  add_services(app, o, chosen);
}

void add_wait_flags(CLI::App* cmd, ServiceWaitOptions& w, const char* until) {
  cmd->add_flag("--wait,-w", w.wait, fmt::format("Wait until the service is {}", until));
  cmd->add_option("--timeout", w.timeout_s, "Seconds --wait waits at most (default 600)")
      ->check(CLI::Range(1, 86400));
}

void add_deployment_flags(CLI::App* cmd, DeploymentFlags& d, bool update) {
  cmd->add_option("--max-percent", d.maximum_percent,
                  "deploymentConfiguration.maximumPercent (100-400, default 200)")
      ->check(CLI::Range(100, 400));
  cmd->add_option("--min-healthy-percent", d.minimum_healthy_percent,
                  "deploymentConfiguration.minimumHealthyPercent (0-100, default 100)")
      ->check(CLI::Range(0, 100));
  cmd->add_flag("--circuit-breaker", d.circuit_breaker,
                "Stop a deployment whose tasks keep failing (rolloutState FAILED)");
  cmd->add_flag("--rollback", d.rollback,
                "With --circuit-breaker: roll back to the last completed deployment");
  if (update)
    cmd->add_flag("--no-circuit-breaker", d.no_circuit_breaker, "Turn the circuit breaker off");
}

void add_services(CLI::App& app, Options& o, Command& chosen) {
  auto* svc = app.add_subcommand(
      "services", "Manage services: desired count, rolling deployments, load balancer");
  svc->fallthrough();  // berth services ls -o json
  svc->require_subcommand(1);
  auto sub = [svc](const char* name, const char* help) {
    auto* c = svc->add_subcommand(name, help);
    c->fallthrough();
    return c;
  };
  auto count_check = CLI::Range(0, 1000);
  auto port_check = CLI::Range(1, 65535);

  auto* create = sub("create", "Create a service (prints its name)");
  ServiceCreateOptions& c = o.svc_create;
  create->add_option("NAME", c.name, "Service name")->required();
  create
      ->add_option("--task-definition,-t", c.task_definition,
                   "FAMILY[:REVISION] or task definition ARN")
      ->required();
  create->add_option("--desired-count,-n", c.desired_count, "Tasks to keep running (0-1000)")
      ->required()
      ->check(count_check);
  create->add_option("--cluster", c.cluster, "Cluster (default: default)");
  create->add_option("--container-name", c.container_name, "Container the balancer sends to");
  create->add_option("--container-port", c.container_port, "Its port the balancer sends to")
      ->check(port_check);
  create
      ->add_option("--listener-port", c.listener_port, "Host TCP port berth's balancer listens on")
      ->check(port_check);
  add_deployment_flags(create, c.deployment, false);
  create
      ->add_option("--grace-period", c.grace_period_s,
                   "healthCheckGracePeriodSeconds: health checks ignored after a start")
      ->check(CLI::Range(0, 2147483647));
  create->add_option("--tag", c.tags, "KEY=VALUE (repeatable)")->allow_extra_args(false);
  add_wait_flags(create, c.wait, "steady");
  create->callback([&] { chosen = [&](Context& x) { return cmd_services_create(x, c); }; });

  auto* update = sub("update", "Change a service's count, task definition or deployment");
  ServiceUpdateOptions& u = o.svc_update;
  update->add_option("NAME", u.name, "Service name or ARN")->required();
  update->add_option("--task-definition,-t", u.task_definition,
                     "FAMILY[:REVISION] or ARN: a new deployment");
  update->add_option("--desired-count,-n", u.desired_count, "Tasks to keep running (0-1000)")
      ->check(count_check);
  update->add_flag("--force-new-deployment", u.force_new_deployment,
                   "Replace every task (a new deployment of the same definition)");
  update->add_option("--cluster", u.cluster, "Cluster (default: default)");
  add_deployment_flags(update, u.deployment, true);
  update->add_option("--grace-period", u.grace_period_s, "healthCheckGracePeriodSeconds")
      ->check(CLI::Range(0, 2147483647));
  add_wait_flags(update, u.wait, "steady");
  update->callback([&] { chosen = [&](Context& x) { return cmd_services_update(x, u); }; });

  auto* scale = sub("scale", "Set a service's desired count");
  ServiceScaleOptions& s = o.svc_scale;
  scale->add_option("NAME", s.name, "Service name or ARN")->required();
  scale->add_option("COUNT", s.desired_count, "Desired count (0-1000)")
      ->required()
      ->check(count_check);
  scale->add_option("--cluster", s.cluster, "Cluster (default: default)");
  add_wait_flags(scale, s.wait, "steady");
  scale->callback([&] { chosen = [&](Context& x) { return cmd_services_scale(x, s); }; });

  auto* ls = sub("ls", "List the services of a cluster");
  ls->add_option("--cluster", o.svc_ls.cluster, "Cluster (default: default)");
  ls->callback([&] { chosen = [&](Context& x) { return cmd_services_ls(x, o.svc_ls); }; });

  auto* describe = sub("describe", "Show a service: deployments, endpoint, events");
  describe->add_option("NAME", o.svc_describe.name, "Service name or ARN")->required();
  describe->add_option("--cluster", o.svc_describe.cluster, "Cluster (default: default)");
  describe->callback(
      [&] { chosen = [&](Context& x) { return cmd_services_describe(x, o.svc_describe); }; });

  auto* rm = sub("rm", "Delete a service (--force: also when its desired count is above 0)");
  ServiceRemoveOptions& r = o.svc_rm;
  rm->add_option("NAME", r.name, "Service name or ARN")->required();
  rm->add_flag("--force,-f", r.force, "Scale it to 0 and delete it");
  rm->add_option("--cluster", r.cluster, "Cluster (default: default)");
  add_wait_flags(rm, r.wait, "INACTIVE (its tasks stopped)");
  rm->callback([&] { chosen = [&](Context& x) { return cmd_services_rm(x, r); }; });
}

int run_command(const Options& o, const Command& command, std::FILE* out, std::FILE* err) {
  auto endpoint = parse_host(o.host);
  if (!endpoint) {
    std::fprintf(err, "berth: %s\n", endpoint.error().message.c_str());
    return kExitUsage;
  }
  if (o.output == "csv" && !o.csv_ok) {
    std::fprintf(err, "berth: -o csv is only for `berth usage`\n");
    return kExitUsage;
  }
  Context ctx{Client(std::move(*endpoint), credentials_from_env()), o.output == "json",
              o.output == "csv", out, err};
  auto rc = command(ctx);
  if (!rc) {
    const berth::Error& e = rc.error();
    std::fprintf(err, "berth: %s\n", e.step == "usage" ? e.message.c_str() : e.str().c_str());
    return exit_code_for(e);
  }
  return *rc;
}

}  // namespace

int run_cli(int argc, const char* const* argv, std::FILE* out, std::FILE* err) {
  CLI::App app{"berth: run and inspect tasks and services on berthd"};
  app.require_subcommand(1);
  Options o;
  const char* env_host = std::getenv("BERTH_HOST");
  o.host = env_host != nullptr && *env_host != '\0' ? env_host : kDefaultHost;
  app.add_option("-H,--host", o.host, "berthd address (env BERTH_HOST)")->capture_default_str();
  app.add_option("-o,--output", o.output, "Output format")
      ->check(CLI::IsMember({"table", "json", "csv"}))
      ->capture_default_str();
  Command chosen;
  add_commands(app, o, chosen);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and friends exit 0; every real usage error exits 2.
    std::ostringstream out_text, err_text;
    int code = app.exit(e, out_text, err_text);
    std::fputs(out_text.str().c_str(), out);
    std::fputs(err_text.str().c_str(), err);
    return code == 0 ? 0 : kExitUsage;
  }
  int rc = run_command(o, chosen, out, err);
  std::fflush(out);
  std::fflush(err);
  return rc;
}

}  // namespace berth::cli
