// berthd: the control plane daemon. A thin main: flags over the config file
// over the embedded defaults (controlplane/config.h), then the daemon
// (controlplane/daemon.h) runs until SIGTERM or SIGINT.
#include <cstdio>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "controlplane/config.h"
#include "controlplane/daemon.h"  // IWYU pragma: keep

namespace {

// Flags are optional overrides: only those given replace the file's value.
struct Flags {
  std::string config;
  std::optional<std::string> state_dir, run_dir, listen, bridge, subnet, cgroup_name, nft_table,
      region, log_level;
  std::optional<int> warm_pool;
  bool check = false;
  bool teardown = false;
};

void apply(const Flags& f, berth::cp::Config& c) {
  auto set = [](const auto& from, auto& to) {
    if (from) to = *from;
  };
  set(f.state_dir, c.state_dir);
  set(f.run_dir, c.run_dir);
  set(f.listen, c.listen);
  set(f.bridge, c.bridge);
  set(f.subnet, c.subnet);
  set(f.cgroup_name, c.cgroup_name);
  set(f.nft_table, c.nft_table);
  set(f.region, c.region);
  set(f.log_level, c.log_level);
  set(f.warm_pool, c.warm_pool);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"berthd: the berth control plane (ECS API on a unix socket and TCP)"};
  Flags f;
  app.add_option("--config", f.config, "TOML config file (keys: the flags with underscores)");
  app.add_option("--state-dir", f.state_dir, "durable state (default /var/lib/berth)");
  app.add_option("--run-dir", f.run_dir, "sockets and netns mounts (default /run/berth)");
  app.add_option("--listen", f.listen, "HOST:PORT of the TCP API (SigV4; off by default)");
  app.add_option("--bridge", f.bridge, "the instance's bridge (default berth0)");
  app.add_option("--subnet", f.subnet, "task addresses (default 10.88.0.0/16)");
  app.add_option("--cgroup-name", f.cgroup_name, "cgroup subtree name (default berth)");
  app.add_option("--nft-table", f.nft_table, "nftables table name (default berth)");
  app.add_option("--warm-pool", f.warm_pool, "ready microhosts kept (default 4)");
  app.add_option("--region", f.region, "region in ARNs and SigV4 (default us-east-1)");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error");
  app.add_flag("--check-config", f.check, "validate the configuration and exit");
  app.add_flag("--teardown", f.teardown,
               "stop every task of this instance and remove what it made on the host");
  CLI11_PARSE(app, argc, argv);

  berth::Result<berth::cp::Config> cfg = berth::cp::Config{};
  if (!f.config.empty()) cfg = berth::cp::load_config_file(f.config, *cfg);
  if (cfg) {
    apply(f, *cfg);
    cfg = berth::cp::finish_config(std::move(*cfg));
  }
  if (!cfg) {
    std::fprintf(stderr, "berthd: %s\n", cfg.error().str().c_str());
    return 2;
  }
  if (f.check) {
    std::printf("berthd: configuration ok\n");
    return 0;
  }
  if (f.teardown) return berth::cp::run_teardown(*cfg);
  return berth::cp::run_daemon(*cfg);
}
