// berth-runtime: an OCI runtime command line over the runtime library, with
// runc's commands, global flags and exit codes, so that anything that drives
// runc can drive berth.
//
// CLI11 reports usage errors with exceptions, caught here; the runtime
// library itself is exception-free.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "common/fs.h"
#include "common/log.h"
#include "runtime/container.h"
#include "runtime/default_profile.h"
#include "runtime/exec.h"
#include "runtime/features.h"
#include "runtime/sealed_exe.h"
#include "runtime/sync.h"

namespace rt = berth::runtime;
using berth::Error;
using berth::Result;

namespace {

// The overlay for berth-runtime too, although it lives for milliseconds: it
// copies nothing (measured on a loaded 2-core host: 0.3-3 ms to build it,
// against 13 ms to copy and seal a 3.6 MB stripped binary, 220 ms unstripped).
constexpr rt::SealMethod kSealMethod = rt::SealMethod::overlay;

int fail(const Error& e) {
  std::string text = e.str();
  berth::log::error("{}", text);
  berth::log::flush();
  // With --log going to a file, the caller still needs the reason on stderr
  // (runc prints it on both).
  std::fprintf(stderr, "berth-runtime: %s\n", text.c_str());
  return 1;
}

std::string absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof cwd) == nullptr) return path;
  return path.empty() || path == "." ? std::string(cwd) : berth::fs::join(cwd, path);
}

// "KILL", "SIGKILL", "9" -> 9
std::optional<int> parse_signal(const std::string& s) {
  if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0]))) {
    char* end;
    long v = std::strtol(s.c_str(), &end, 10);
    if (*end == '\0' && v > 0 && v < NSIG) return static_cast<int>(v);
    return std::nullopt;
  }
  std::string name = s.rfind("SIG", 0) == 0 ? s.substr(3) : s;
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev != nullptr && name == abbrev) return sig;
  }
  return std::nullopt;
}

struct Globals {
  std::string root = "/run/berth-runtime";
  std::string log_file;
  std::string log_format = "text";
  bool debug = false;
  bool systemd_cgroup = false;
};

// ---- run in the foreground ---------------------------------------------

// Copies between our stdio and the container's pty until the container's
// side closes. Our terminal goes raw for the duration, as runc does.
class TerminalRelay {
 public:
  explicit TerminalRelay(berth::UniqueFd master) : master_(std::move(master)) {
    if (::tcgetattr(STDIN_FILENO, &saved_) == 0) {
      struct termios raw = saved_;
      ::cfmakeraw(&raw);
      restore_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
  }
  ~TerminalRelay() {
    if (restore_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  int fd() const { return master_.get(); }
  bool stdin_open() const { return stdin_open_; }
  // Returns false once the pty is closed.
  bool pump(short in_events, short master_events) {
    char buf[4096];
    if (in_events & (POLLIN | POLLHUP)) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n > 0) {
        (void)!::write(master_.get(), buf, static_cast<size_t>(n));
      } else {
        stdin_open_ = false;
      }
    }
    if (master_events & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(master_.get(), buf, sizeof buf);
      if (n <= 0) return false;
      (void)!::write(STDOUT_FILENO, buf, static_cast<size_t>(n));
    }
    return true;
  }

 private:
  berth::UniqueFd master_;
  struct termios saved_ {};
  bool restore_ = false;
  bool stdin_open_ = true;
};

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

// Forwards the signals a user sends to `run` to the container's init and
// returns the init's exit code when it is gone. The signals are blocked and
// read from a signalfd, so one poll waits for them and the terminal alike.
int wait_and_forward(pid_t pid, const sigset_t& forwarded, TerminalRelay* relay) {
  berth::UniqueFd sfd(::signalfd(-1, &forwarded, SFD_CLOEXEC));
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) break;
    struct pollfd p[3] = {{sfd.get(), POLLIN, 0},
                          {relay != nullptr && relay->stdin_open() ? STDIN_FILENO : -1, POLLIN, 0},
                          {relay != nullptr ? relay->fd() : -1, POLLIN, 0}};
    if (::poll(p, 3, -1) < 0 && errno != EINTR) break;
    if (p[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (::read(sfd.get(), &si, sizeof si) == sizeof si) {
        int sig = static_cast<int>(si.ssi_signo);
        if (sig != SIGCHLD && sig != SIGWINCH && sig != SIGURG) ::kill(pid, sig);
      }
    }
    if (relay != nullptr && !relay->pump(p[1].revents, p[2].revents)) relay = nullptr;
  }
  return exit_code(status);
}

int cmd_run(const Globals& g, rt::CreateOptions opts, bool detach) {
  opts.start_now = true;
  // The signals we forward must not kill us before the init exists.
  sigset_t all, old;
  sigfillset(&all);
  for (int s : {SIGILL, SIGFPE, SIGSEGV, SIGBUS, SIGTRAP, SIGABRT}) sigdelset(&all, s);
  ::sigprocmask(SIG_BLOCK, &all, &old);

  auto spec = rt::load_spec(opts.bundle);
  bool terminal = spec && spec->process && spec->process->terminal;
  berth::UniqueFd console_ours, console_theirs;
  if (terminal && opts.console_socket.empty()) {
    if (detach) {
      return fail(
          Error{"terminal", 0, "cannot allocate a tty when detaching without --console-socket"});
    }
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
      return fail(Error{"terminal", errno, "socketpair"});
    }
    console_ours.reset(sp[0]);
    console_theirs.reset(sp[1]);
    opts.console_fd = console_theirs.get();
  }
  auto created = rt::create_container(opts);
  if (!created) return fail(created.error());
  console_theirs.reset();
  if (auto r = rt::wait_exec(*created, g.root); !r) {
    (void)rt::delete_container(g.root, opts.id, true);
    return fail(r.error());
  }
  if (detach) return 0;

  std::optional<TerminalRelay> relay;
  if (console_ours) {
    auto master = rt::recv_fd(console_ours.get());
    if (master) relay.emplace(std::move(*master));
  }
  int code = wait_and_forward(created->state.pid, all, relay ? &*relay : nullptr);
  relay.reset();
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (auto r = rt::delete_container(g.root, opts.id, true); !r) fail(r.error());
  return code;
}

// ---- exec --------------------------------------------------------------------

// --env K=V entries override the container process's variable K, or are
// added (runc's rule).
std::vector<std::string> merge_env(std::vector<std::string> env,
                                   const std::vector<std::string>& extra) {
  for (const auto& e : extra) {
    std::string key = e.substr(0, e.find('='));
    std::erase_if(env, [&](const std::string& v) { return v.substr(0, v.find('=')) == key; });
    env.push_back(e);
  }
  return env;
}

int cmd_exec(const Globals& g, const std::string& id, rt::ExecOptions opts,
             const std::vector<std::string>& extra_env) {
  if (!extra_env.empty()) {
    auto st = rt::container_state(g.root, id);
    if (!st) return fail(st.error());
    auto spec = rt::load_spec(st->bundle);
    if (!spec) return fail(spec.error());
    if (spec->process) opts.env = merge_env(spec->process->env, extra_env);
  }
  // As in `run`: the signals we forward must not kill us first.
  sigset_t all, old;
  sigfillset(&all);
  for (int s : {SIGILL, SIGFPE, SIGSEGV, SIGBUS, SIGTRAP, SIGABRT}) sigdelset(&all, s);
  ::sigprocmask(SIG_BLOCK, &all, &old);
  auto proc = rt::exec_in_container(g.root, id, opts);
  if (!proc) return fail(proc.error());
  int code = wait_and_forward(proc->pid, all, nullptr);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  return code;
}

// ---- spec ------------------------------------------------------------------

int cmd_spec(const std::string& bundle, bool rootless) {
  std::string path = berth::fs::join(absolute(bundle), "config.json");
  if (berth::fs::exists(path)) {
    return fail(Error{"spec", EEXIST, path + " exists; remove it first"});
  }
  rt::DefaultSpecOptions o;
  o.rootless = rootless;
  auto r = berth::fs::write_file_atomic(path, rt::default_spec_json(o).dump(2) + "\n", 0644);
  return r ? 0 : fail(r.error());
}

int print_json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

int cmd_events_stats(const Globals& g, const std::string& id) {
  auto s = rt::container_stats(g.root, id);
  if (!s) return fail(s.error());
  nlohmann::json j = {
      {"type", "stats"},
      {"id", id},
      {"data",
       {{"cpu", {{"usage_usec", s->cpu_usage_usec}}},
        {"memory",
         {{"current", s->memory_current}, {"peak", s->memory_peak}, {"oom_kills", s->oom_kills}}},
        {"pids", {{"current", s->pids_current}}}}}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int cmd_list(const Globals& g) {
  std::printf("%-24s %-8s %-10s %s\n", "ID", "PID", "STATUS", "BUNDLE");
  for (const auto& id : rt::list_containers(g.root)) {
    auto st = rt::container_state(g.root, id);
    if (!st) continue;
    std::printf("%-24s %-8d %-10s %s\n", id.c_str(),
                st->status == rt::Status::stopped ? 0 : st->pid, rt::status_name(st->status),
                st->bundle.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"berth-runtime: an OCI container runtime (namespaces, cgroups v1/v2, seccomp)"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--root", g.root, "root directory for container state")->capture_default_str();
  app.add_option("--log", g.log_file, "log file (default: stderr)");
  app.add_option("--log-format", g.log_format, "log format: text or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--debug", g.debug, "log debug messages");
  app.add_flag("--systemd-cgroup", g.systemd_cgroup, "not supported: berth drives cgroupfs");

  rt::CreateOptions copts;
  std::string bundle = ".";
  auto add_create_flags = [&](CLI::App* c) {
    c->add_option("-b,--bundle", bundle, "path to the bundle directory");
    c->add_option("--pid-file", copts.pid_file, "file to write the init's pid to");
    c->add_option("--console-socket", copts.console_socket,
                  "unix socket that receives the pty master when process.terminal is set");
    c->add_option("--preserve-fds", copts.preserve_fds, "pass N extra fds (from 3) to the process");
    c->add_option("id", copts.id, "container id")->required();
  };

  auto* create =
      app.add_subcommand("create", "create a container, waiting before the user process");
  add_create_flags(create);
  bool detach = false;
  auto* run = app.add_subcommand("run", "create and start a container");
  add_create_flags(run);
  run->add_flag("-d,--detach", detach, "do not wait for the container to exit");

  std::string id;
  auto* start = app.add_subcommand("start", "start the user process of a created container");
  start->add_option("id", id)->required();
  auto* state = app.add_subcommand("state", "print the OCI state of a container");
  state->add_option("id", id)->required();
  std::string signal_name = "SIGTERM";
  bool all = false;
  auto* kill = app.add_subcommand("kill", "send a signal to the container's init");
  kill->add_option("id", id)->required();
  kill->add_option("signal", signal_name, "signal name or number")->capture_default_str();
  kill->add_flag("-a,--all", all, "signal every process of the container");
  bool force = false;
  auto* del = app.add_subcommand("delete", "delete a container and its resources");
  del->add_option("id", id)->required();
  del->add_flag("-f,--force", force, "kill a created or running container first");
  bool rootless = false;
  auto* spec = app.add_subcommand("spec", "write berth's default config.json");
  spec->add_option("-b,--bundle", bundle, "directory to write config.json to");
  spec->add_flag("--rootless", rootless, "a spec with a user namespace for the caller's ids");
  auto* features = app.add_subcommand("features", "print the features this runtime supports");
  bool stats = false;
  auto* events = app.add_subcommand("events", "print container resource statistics");
  events->add_option("id", id)->required();
  events->add_flag("--stats", stats, "print statistics once and exit")->required();
  auto* list = app.add_subcommand("list", "list containers");
  rt::ExecOptions eopts;
  std::vector<std::string> exec_env;
  auto* exec = app.add_subcommand("exec", "run a process in a running container");
  exec->add_option("--cwd", eopts.cwd, "working directory in the container (absolute)");
  exec->add_option("-e,--env", exec_env, "set an environment variable (K=V; repeatable)")
      ->allow_extra_args(false);
  exec->add_option("id", id, "container id")->required();
  exec->add_option("args", eopts.args, "the program and its arguments (after --)")->required();
  // Everything after the id is the program's, dashes included (runc's
  // `exec ID ARGS...` form works too).
  exec->positionals_at_end();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  berth::log::Options lo;
  lo.file = g.log_file;
  lo.format = g.log_format == "json" ? berth::log::Format::json : berth::log::Format::text;
  lo.level = g.debug ? berth::log::Level::debug : berth::log::Level::warn;
  berth::log::setup(lo);
  if (g.systemd_cgroup) {
    return fail(Error{"cgroup", 0, "--systemd-cgroup is not supported: berth drives cgroupfs"});
  }
  if (*create || *run || *exec) {
    // Everything that puts a process into a container runs from a copy no
    // container can write (runtime/sealed_exe.h); the cheap commands do not
    // pay for it.
    std::string why;
    auto sealed = rt::ensure_sealed_exe(argv, kSealMethod, &why);
    if (!sealed) return fail(sealed.error());
    if (!why.empty()) berth::log::debug("sealed exe: {} ({})", rt::seal_method_name(*sealed), why);
  }
  g.root = absolute(g.root);
  copts.root = g.root;
  copts.bundle = absolute(bundle);

  if (*create) {
    auto r = rt::create_container(copts);
    return r ? 0 : fail(r.error());
  }
  if (*run) return cmd_run(g, copts, detach);
  if (*start) {
    auto r = rt::start_container(g.root, id);
    return r ? 0 : fail(r.error());
  }
  if (*state) {
    auto st = rt::container_state(g.root, id);
    if (!st) return fail(st.error());
    return print_json(nlohmann::json::parse(st->oci_json()));
  }
  if (*kill) {
    auto sig = parse_signal(signal_name);
    if (!sig) return fail(Error{"kill", EINVAL, "unknown signal \"" + signal_name + "\""});
    auto r = rt::kill_container(g.root, id, *sig, all);
    return r ? 0 : fail(r.error());
  }
  if (*del) {
    auto r = rt::delete_container(g.root, id, force);
    return r ? 0 : fail(r.error());
  }
  if (*spec) return cmd_spec(bundle, rootless);
  if (*features) return print_json(rt::features_json());
  if (*events) return cmd_events_stats(g, id);
  if (*list) return cmd_list(g);
  if (*exec) {
    // With positionals_at_end, CLI11 keeps the `--` that separates the id
    // from the program.
    if (!eopts.args.empty() && eopts.args[0] == "--") eopts.args.erase(eopts.args.begin());
    if (eopts.args.empty()) return fail(Error{"exec", 0, "no program given after the id"});
    return cmd_exec(g, id, eopts, exec_env);
  }
  return 1;
}
