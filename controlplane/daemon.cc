#include "controlplane/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "common/fd.h"
#include "common/log.h"
#include "controlplane/agent/node_agent.h"
#include "controlplane/api/auth.h"
#include "controlplane/api/http_server.h"
#include "controlplane/api/router.h"
#include "controlplane/store/sqlite_store.h"

namespace berth::cp {
namespace {

constexpr std::string_view kStep = "berthd";

log::Level parse_level(const std::string& s) {
  if (s == "debug" || s == "trace") return log::Level::debug;
  if (s == "warn" || s == "warning") return log::Level::warn;
  if (s == "error") return log::Level::error;
  return log::Level::info;
}

// SIGTERM/SIGINT/SIGHUP are taken by sigwait in the main thread only: the
// mask is set before any thread exists, and every thread inherits it.
sigset_t block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A client that goes away mid-answer is an EPIPE, not a dead daemon.
  signal(SIGPIPE, SIG_IGN);
  return set;
}

Result<void> make_dir(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return errno_error(kStep, ec.value(), "mkdir {}", path);
  if (::chmod(path.c_str(), mode) != 0) return sys_error(kStep, "chmod {}", path);
  return {};
}

// One daemon per state and run dir: a second one would adopt (and gc) the
// first one's tasks. The lock lives as long as the process.
Result<UniqueFd> lock_instance(const std::string& dir) {
  std::string path = dir + "/berthd.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return sys_error(kStep, "open {}", path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return kind_error(ErrorKind::busy, kStep, "another berthd is running on {} (lock {} is held)",
                        dir, path);
    }
    return sys_error(kStep, "flock {}", path);
  }
  return fd;
}

AgentConfig agent_config(const Config& c, bool move_self) {
  AgentConfig a;
  a.state_dir = c.state_dir;
  a.run_dir = c.run_dir;
  a.network.bridge = c.bridge;
  a.network.subnet = c.subnet;
  a.network.run_dir = c.run_dir;
  a.network.state_dir = c.state_dir;
  a.network.link_prefix = c.link_prefix;
  a.firewall.table = c.nft_table;
  a.firewall.bridge = c.bridge;
  a.firewall.subnet = c.subnet;
  a.cgroup_name = c.cgroup_name;
  a.move_self_to_daemon_cgroup = move_self;
  a.images_dir = c.images_dir;
  a.warm_pool = move_self ? c.warm_pool : 0;
  a.insecure_registries = c.insecure_registries;
  for (const auto& cred : c.credentials) {
    a.registry_credentials[cred.name] = rootfs::Credentials{cred.username, cred.password};
  }
  for (const auto& r : c.registries) {
    rootfs::RegistryHost h;
    h.host = r.host;
    h.ca_file = r.ca_file;
    h.client_cert = r.client_cert;
    h.client_key = r.client_key;
    h.mirrors = r.mirrors;
    h.insecure = r.insecure;
    a.registry_hosts.push_back(std::move(h));
  }
  a.region = c.region;
  return a;
}

Result<ServerConfig> server_config(const Config& c) {
  ServerConfig s;
  s.unix_path = c.socket_path();
  s.tcp_listen = c.listen;
  s.io_threads = c.io_threads;
  if (!c.socket_group.empty()) {
    struct group* g = ::getgrnam(c.socket_group.c_str());
    if (g == nullptr) {
      return kind_error(ErrorKind::invalid, kStep, "socket_group: no group named {:?}",
                        c.socket_group);
    }
    s.socket_group = g->gr_gid;
  }
  return s;
}

ControlPlaneOptions control_plane_options(const Config& c) {
  ControlPlaneOptions o;
  o.tasks.region = c.region;
  if (c.cpu_units > 0) o.tasks.capacity.cpu_units = static_cast<int>(c.cpu_units);
  if (c.memory_mib > 0) o.tasks.capacity.memory_mib = static_cast<int>(c.memory_mib);
  o.tasks.worker_threads = c.worker_threads;
  std::vector<Account> accounts = c.accounts;
  o.ecs.account = [accounts](const std::string& id) -> std::optional<Account> {
    for (const auto& a : accounts) {
      if (a.id == id) return a;
    }
    return std::nullopt;
  };
  o.meter.pricing = c.pricing;
  o.meter.account = o.ecs.account;
  o.supervisor.plan.backoff_base = std::chrono::seconds(c.services.backoff_base_seconds);
  o.supervisor.plan.backoff_cap = std::chrono::seconds(c.services.backoff_cap_seconds);
  o.supervisor.resync = std::chrono::milliseconds(c.services.resync_ms);
  o.supervisor.plan.stable_after = std::chrono::seconds(c.services.stable_seconds);
  return o;
}

int fail(const Error& e) {
  log::error("{}", e.str());
  log::flush();
  std::fprintf(stderr, "berthd: %s\n", e.str().c_str());
  return 1;
}

// The parts, in start order; destroyed in reverse (the server first).
struct Parts {
  UniqueFd state_lock, run_lock;
  std::unique_ptr<SqliteStore> store;
  std::unique_ptr<NodeAgent> agent;
  std::unique_ptr<ControlPlane> control;
  std::unique_ptr<AccountDirectory> accounts;
  std::unique_ptr<HttpServer> server;

  ~Parts() {
    if (server) server->stop();
    if (control) control->shutdown();
    if (agent) agent->shutdown();
  }
};

Result<void> lock_dirs(const Config& c, Parts& p) {
  BERTH_TRY(make_dir(c.state_dir, 0700));
  BERTH_TRY(make_dir(c.run_dir, 0755));
  BERTH_ASSIGN(p.state_lock, lock_instance(c.state_dir));
  if (c.run_dir != c.state_dir) {
    BERTH_ASSIGN(p.run_lock, lock_instance(c.run_dir));
  }
  return {};
}

Result<void> start_parts(const Config& c, Parts& p) {
  BERTH_TRY(lock_dirs(c, p));
  BERTH_ASSIGN(p.store, SqliteStore::open(c.database_path()));
  BERTH_ASSIGN(p.agent, NodeAgent::create(agent_config(c, /*move_self=*/true)));
  p.control = std::make_unique<ControlPlane>(*p.store, *p.agent, control_plane_options(c));
  // Recovery before serving: no client sees a task the restart has not
  // reconciled yet.
  BERTH_TRY(p.control->recover());
  p.control->start();
  sigv4::Config sig;
  sig.region = c.region;
  p.accounts = std::make_unique<AccountDirectory>(c.accounts, sig);
  BERTH_ASSIGN(ServerConfig sc, server_config(c));
  Authenticator auth = make_authenticator(*p.accounts);
  auto server = HttpServer::start(std::move(sc), p.control->handler(), std::move(auth));
  if (!server) return std::unexpected(std::move(server).error());
  p.server = std::move(*server);
  return {};
}

void remove_daemon_leaves(const AgentCgroups& cg, const std::string& name) {
  for (const auto& shims : cg.shims_dirs()) {
    std::string daemon =
        shims.substr(0, shims.size() - std::string_view(".shims").size()) + ".daemon";
    if (::rmdir(daemon.c_str()) != 0 && errno != ENOENT) {
      log::warn("teardown: rmdir {}: {}", daemon, std::strerror(errno));
    }
  }
  (void)name;
}

}  // namespace

int run_daemon(const Config& c) {
  log::setup({.file = "", .format = log::Format::text, .level = parse_level(c.log_level)});
  sigset_t signals = block_signals();
  if (::geteuid() != 0) {
    return fail(Error{std::string(kStep), EPERM,
                      "berthd runs as root (it makes namespaces, cgroups and mounts)",
                      ErrorKind::unsupported});
  }
  Parts parts;
  if (auto r = start_parts(c, parts); !r) return fail(r.error());
  log::info("berthd: serving on {}{}{}", c.socket_path(), c.listen.empty() ? "" : " and ",
            c.listen);
  int sig = 0;
  while (sigwait(&signals, &sig) == 0) {
    if (sig == SIGTERM || sig == SIGINT) break;
    log::info("berthd: signal {} ignored (SIGTERM or SIGINT stops berthd)", sig);
  }
  log::info("berthd: signal {}: stopping (tasks keep running)", sig);
  return 0;  // ~Parts: server, control plane, agent, store, locks
}

int run_teardown(const Config& c) {
  log::setup({.file = "", .format = log::Format::text, .level = parse_level(c.log_level)});
  block_signals();
  if (::geteuid() != 0) {
    return fail(Error{std::string(kStep), EPERM, "teardown runs as root", ErrorKind::unsupported});
  }
  Parts parts;
  if (auto r = lock_dirs(c, parts); !r) return fail(r.error());
  auto agent = NodeAgent::create(agent_config(c, /*move_self=*/false));
  if (!agent) return fail(agent.error());
  // Nothing is live: every shim of the instance is stopped, every microhost,
  // overlay and firewall rule released.
  if (auto r = (*agent)->adopt({}); !r) log::warn("teardown: {}", r.error().str());
  (*agent)->shutdown();
  int rc = 0;
  if (auto r = netns::Firewall(agent_config(c, false).firewall).teardown(); !r) {
    log::error("teardown: {}", r.error().str());
    rc = 1;
  }
  if (auto r = netns::Network(agent_config(c, false).network).teardown(); !r) {
    log::error("teardown: {}", r.error().str());
    rc = 1;
  }
  if (auto r = (*agent)->cgroups().remove_empty(); !r) {
    log::error("teardown: {}", r.error().str());
    rc = 1;
  }
  remove_daemon_leaves((*agent)->cgroups(), c.cgroup_name);
  agent->reset();
  std::error_code ec;
  std::filesystem::remove(c.socket_path(), ec);
  return rc;
}

}  // namespace berth::cp
