// berth: the command-line client of berthd.
//
//   berth [--host unix:///run/berth/berthd.sock|http://HOST:PORT] [-o table|json|csv] COMMAND
//
// -o csv is for `berth usage` only (a usage error elsewhere). Global
// options may also follow `usage` / `usage verify` (berth usage -o csv).
//
// The host also comes from BERTH_HOST. On TCP, requests are SigV4-signed
// when BERTH_ACCESS_KEY_ID/BERTH_SECRET_ACCESS_KEY (or the AWS_* names) are
// set. Exit codes: 0 success, 1 an error (printed as "berth: <what>:
// <message>", ECS errors as "berth: InvalidParameterException: message"),
// 2 a usage error, and for `run --wait` the essential container's exit code
// (125 when the task failed to start). docs/berth-cli.md has the reference.
#include <curl/curl.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "cmd/berth/args.h"
#include "cmd/berth/client.h"
#include "cmd/berth/commands.h"

namespace cli = berth::cli;

namespace {

struct Options {
  std::string host;
  std::string output = "table";
  cli::RunOptions run;
  cli::PsOptions ps;
  cli::LogsOptions logs;
  cli::StopOptions stop;
  cli::UsageOptions usage;
  bool csv_ok = false;  // the chosen command takes -o csv
  std::string file;
  std::string task;
};

using Command = std::function<berth::Result<int>(cli::Context&)>;

// Declares the subcommands; `chosen` is set by the one that is parsed.
void add_commands(CLI::App& app, Options& o, Command& chosen) {
  auto* reg = app.add_subcommand("register", "Register a task definition (prints family:revision)");
  reg->add_option("FILE", o.file, "RegisterTaskDefinition JSON")->required();
  reg->callback([&] { chosen = [&](cli::Context& c) { return cli::cmd_register(c, o.file); }; });

  auto* run = app.add_subcommand("run", "Run a task from a file or a registered definition");
  run->add_option("TARGET", o.run.target, "FILE, FAMILY[:REVISION] or task definition ARN")
      ->required();
  run->add_option("--cluster", o.run.cluster, "Cluster (default: default)");
  run->add_option("--count", o.run.count, "Number of tasks (1-10)");
  run->add_flag("--wait,-w", o.run.wait,
                "Wait until STOPPED; exit with the essential container's code");
  run->add_option("--env,-e", o.run.env, "NAME=VALUE for every container (repeatable)");
  run->callback([&] { chosen = [&](cli::Context& c) { return cli::cmd_run(c, o.run); }; });

  auto* ps = app.add_subcommand("ps", "List tasks (not stopped; -a: all)");
  ps->add_flag("--all,-a", o.ps.all, "Show stopped tasks too");
  ps->add_option("--cluster", o.ps.cluster, "Only this cluster");
  ps->callback([&] { chosen = [&](cli::Context& c) { return cli::cmd_ps(c, o.ps); }; });

  auto* describe = app.add_subcommand("describe", "Show a task in detail");
  describe->add_option("TASK", o.task, "Task id, id prefix or ARN")->required();
  describe->callback(
      [&] { chosen = [&](cli::Context& c) { return cli::cmd_describe(c, o.task); }; });

  auto* logs = app.add_subcommand("logs", "Print a container's logs");
  logs->add_option("TASK", o.logs.task, "Task id, id prefix or ARN")->required();
  logs->add_option("CONTAINER", o.logs.container, "Container name (optional with one container)");
  logs->add_flag("--follow,-f", o.logs.follow, "Follow until the task stops");
  logs->add_flag("--timestamps,-t", o.logs.timestamps, "Prefix each line with its time");
  logs->callback([&] { chosen = [&](cli::Context& c) { return cli::cmd_logs(c, o.logs); }; });

  auto* stop = app.add_subcommand("stop", "Stop a task (SIGTERM, then SIGKILL after stopTimeout)");
  stop->add_option("TASK", o.stop.task, "Task id, id prefix or ARN")->required();
  stop->add_option("--reason", o.stop.reason, "Stopped reason to record");
  stop->callback([&] { chosen = [&](cli::Context& c) { return cli::cmd_stop(c, o.stop); }; });

  auto* clusters = app.add_subcommand("clusters", "List clusters with their task counts");
  clusters->callback([&] { chosen = [](cli::Context& c) { return cli::cmd_clusters(c); }; });

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
      chosen = [](cli::Context& c) { return cli::cmd_usage_verify(c); };
      return;
    }
    o.csv_ok = true;
    chosen = [&](cli::Context& c) { return cli::cmd_usage(c, o.usage); };
  });
}

int run_command(const Options& o, const Command& command) {
  auto endpoint = cli::parse_host(o.host);
  if (!endpoint) {
    std::fprintf(stderr, "berth: %s\n", endpoint.error().message.c_str());
    return cli::kExitUsage;
  }
  if (o.output == "csv" && !o.csv_ok) {
    std::fprintf(stderr, "berth: -o csv is only for `berth usage`\n");
    return cli::kExitUsage;
  }
  cli::Context ctx{cli::Client(std::move(*endpoint), cli::credentials_from_env()),
                   o.output == "json", o.output == "csv"};
  auto rc = command(ctx);
  if (!rc) {
    const berth::Error& e = rc.error();
    std::fprintf(stderr, "berth: %s\n", e.step == "usage" ? e.message.c_str() : e.str().c_str());
    return cli::exit_code_for(e);
  }
  return *rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"berth: run and inspect tasks on berthd"};
  app.require_subcommand(1);
  Options o;
  const char* env_host = std::getenv("BERTH_HOST");
  o.host = env_host != nullptr && *env_host != '\0' ? env_host : cli::kDefaultHost;
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
    return app.exit(e) == 0 ? 0 : cli::kExitUsage;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    std::fprintf(stderr, "berth: curl_global_init failed\n");
    return cli::kExitError;
  }
  int rc = run_command(o, chosen);
  curl_global_cleanup();
  return rc;
}
