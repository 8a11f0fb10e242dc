// berthd's configuration: embedded defaults, then the TOML file given by
// --config (its keys are the flags' names with underscores, as containerd's
// config is), then the command-line flags. docs/INTERFACES.md ("berthd")
// lists them; examples/berthd.toml is a commented example.
//
// Every path and name an instance uses comes from here (state dir, run dir,
// bridge, subnet, cgroup subtree, nftables table), so two daemons with
// distinct values run side by side without touching each other.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "controlplane/billing/money.h"
#include "controlplane/model/model.h"

namespace berth::cp {

// A registry as containerd's hosts.toml / Docker's certs.d describe one.
struct RegistryConfig {
  std::string host;  // "registry.example.com" or "127.0.0.1:5000"
  std::string ca_file;
  std::string client_cert;
  std::string client_key;
  std::vector<std::string> mirrors;  // "https://mirror.example.com", tried in order
  bool insecure = false;             // plain http (loopback registries are always)
};

// Registry credentials a container definition names in
// repositoryCredentials.credentialsParameter.
struct RegistryCredential {
  std::string name;
  std::string username;
  std::string password;
};

struct Config {
  std::string state_dir = "/var/lib/berth";
  std::string run_dir = "/run/berth";
  std::string listen;  // "HOST:PORT" for the TCP API; empty: off
  std::string bridge = "berth0";
  std::string subnet = "10.88.0.0/16";
  std::string cgroup_name = "berth";
  std::string nft_table = "berth";
  // Prefix of host-side veth names (1-9 chars); default from the bridge name
  // so two instances with distinct bridges never take each other's links.
  std::string link_prefix;
  std::string images_dir;  // default /var/lib/berth/rootfs (berth-rootfs's store)
  int warm_pool = 4;
  std::string region = "us-east-1";
  int io_threads = 2;
  int worker_threads = 8;
  // Node capacity; 0 = the host's (online CPUs x 1024, MemTotal).
  int64_t cpu_units = 0;
  int64_t memory_mib = 0;
  std::string log_level = "info";
  // The group that may use the unix socket besides root (mode 0660).
  std::string socket_group;
  std::vector<std::string> insecure_registries;
  std::vector<RegistryConfig> registries;
  std::vector<RegistryCredential> credentials;
  std::vector<Account> accounts;  // empty: the default account (uid 0)
  PricingConfig pricing;
  // [services]: the supervisor (api/supervisor.h, scheduler/service_plan.h).
  struct Services {
    int backoff_base_seconds = 10;  // the second consecutive failure waits this; doubling
    int backoff_cap_seconds = 900;  // ... up to this
    int resync_ms = 5000;           // a full reconcile pass at least this often
    int stable_seconds = 5;         // healthy this long: rollout COMPLETED, failure streak reset
  } services;

  std::string socket_path() const { return run_dir + "/berthd.sock"; }
  std::string database_path() const { return state_dir + "/berthd.db"; }
};

// The account berthd serves when the config names none: id 000000000000,
// root (uid 0) on the unix socket, no access keys (TCP refuses every
// request until accounts with keys are configured).
Account default_account();

// Reads `path` over `base` (keys present in the file replace base's).
// Unknown keys are errors naming them (a typo never goes unnoticed).
Result<Config> load_config_file(const std::string& path, Config base);
// Parses TOML text (what load_config_file reads); `origin` names it in
// errors.
Result<Config> parse_config(std::string_view toml, std::string_view origin, Config base);
// Checks values and fills derived defaults (link_prefix, images_dir,
// accounts): ids, subnet, names, unique uids and access keys.
Result<Config> finish_config(Config c);

}  // namespace berth::cp
