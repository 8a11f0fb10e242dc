#include "shim/shim.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "runtime/container.h"
#include "runtime/exec.h"
#include "runtime/microhost_cgroup.h"
#include "runtime/sealed_exe.h"
#include "shim/log_file.h"

namespace berth::shim {
namespace {

using json = nlohmann::json;
constexpr std::string_view kStep = "shim";
// A client that does not read its events is dropped past this (it can
// reconnect and get the whole state from `hello`).
constexpr size_t kMaxClientBuffer = 4 << 20;
constexpr size_t kMaxRequest = 64 << 10;

std::string now_rfc3339() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  char buf[40];
  size_t n = ::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  ::snprintf(buf + n, sizeof buf - n, ".%09ldZ", ts.tv_nsec);
  return buf;
}

int64_t monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

enum class Status { pending, running, restarting, stopped };

const char* status_name(Status s) {
  switch (s) {
    case Status::pending:
      return "PENDING";
    case Status::running:
      return "RUNNING";
    case Status::restarting:
      return "RESTARTING";
    case Status::stopped:
      return "STOPPED";
  }
  return "?";
}

struct Container {
  const ContainerSpec* spec = nullptr;
  std::string runtime_id;
  Status status = Status::pending;
  bool started = false;  // reached RUNNING at some point
  pid_t pid = -1;
  std::string started_at;
  std::string finished_at;
  std::optional<int> exit_code;  // 128+n when killed by signal n
  bool oom_killed = false;
  std::string reason;
  int restart_count = 0;
  std::string log_path;
  std::unique_ptr<LogFile> log;
  UniqueFd out, err;           // read ends of the stdout/stderr pipes
  int64_t kill_deadline = -1;  // monotonic ms: SIGKILL after SIGTERM
  // Restart policy bookkeeping (monotonic ms).
  int64_t run_started = -1;
  int64_t streak_started = -1;  // first early failure of the current streak
  int64_t backoff = 0;
  int64_t restart_at = -1;
  // Health checks (monotonic ms).
  std::string health = "UNKNOWN";  // HEALTHY / UNHEALTHY / UNKNOWN
  int health_failures = 0;         // consecutive, outside the start period
  std::string health_output;       // why the last check failed
  int64_t next_check = -1;
  pid_t check_pid = -1;
  int64_t check_deadline = -1;
};

constexpr int64_t kFirstBackoffMs = 1000;
constexpr int64_t kMaxBackoffMs = 30000;

struct Client {
  UniqueFd fd;
  std::string in;
  std::string out;
  bool subscribed = false;
};

class Shim {
 public:
  Shim(const TaskSpec& task, const ShimOptions& opts) : task_(task), opts_(opts) {}
  int run(int ready_fd);

 private:
  Result<void> setup();
  Result<void> loop();
  void start_ready();
  void schedule();
  void start_container(Container& c);
  void on_exit(Container& c, int wait_status);
  bool plan_restart(Container& c);
  void run_health_check(Container& c);
  void on_health_result(Container& c, bool ok, const std::string& why);
  Result<void> add_init_process(const ContainerSpec& spec);
  Result<void> claim_bundle(const ContainerSpec& spec);
  Result<bool> owns(const Container& c) const;
  void delete_if_owned(const Container& c);
  void reap();
  void begin_stop(const std::string& reason, std::optional<int> timeout_s);
  void on_timer();
  void arm_timer();
  bool finished() const;
  void finish();
  void release();  // --hold: start the task

  // Protocol.
  void accept_clients();
  void on_client(int fd, uint32_t events);
  void handle_request(Client& cl, std::string_view line);
  void send(Client& cl, const json& msg);
  void broadcast(const json& event);
  void flush_client(Client& cl);
  void drop_client(int fd);

  void on_pipe(int fd);
  void drain(Container& c, UniqueFd& pipe, Stream stream);

  json state_json() const;
  json container_json(const Container& c) const;
  // Durable first, announced second.
  void persist_and_announce(const char* event, const Container* c);

  Container* by_name(std::string_view name);
  Container* by_pid(pid_t pid);
  Container* by_pipe(int fd);

  Result<void> watch(int fd, uint32_t events);
  void unwatch(int fd);

  const TaskSpec& task_;
  ShimOptions opts_;
  std::vector<Container> containers_;
  std::map<int, Client> clients_;
  UniqueFd epoll_, sigfd_, listen_, timer_;
  std::string status_ = "RUNNING";
  std::string stopped_reason_;
  std::string stopping_at_;
  bool stopping_ = false;
  bool done_ = false;
  bool held_ = false;  // --hold and no `start` yet
  UniqueFd devnull_;
  // The microhost's task cgroup (task.json cgroup_parent/limits): the
  // containers' leaves are below it; the shim itself stays in the cgroup it
  // was started in (see README, "Microhost cgroup layout").
  std::optional<runtime::TaskCgroup> task_cgroup_;
  json final_usage_;  // the task cgroup's counters when it ended (null before)
};

Result<void> Shim::watch(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return sys_error(kStep, "epoll_ctl add fd {}", fd);
  }
  return {};
}

void Shim::unwatch(int fd) {
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

Container* Shim::by_name(std::string_view name) {
  for (Container& c : containers_) {
    if (c.spec->name == name) return &c;
  }
  return nullptr;
}

Container* Shim::by_pid(pid_t pid) {
  for (Container& c : containers_) {
    if (c.pid == pid && c.status == Status::running) return &c;
  }
  return nullptr;
}

Container* Shim::by_pipe(int fd) {
  for (Container& c : containers_) {
    if (c.out.get() == fd || c.err.get() == fd) return &c;
  }
  return nullptr;
}

Result<void> Shim::setup() {
  if (opts_.socket_path.empty()) opts_.socket_path = fs::join(opts_.task_dir, "shim.sock");
  BERTH_TRY(fs::mkdir_p(fs::join(opts_.task_dir, "logs"), 0700));
  int raw = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (raw < 0) return sys_error(kStep, "open /dev/null");
  devnull_.reset(raw);

  for (const ContainerSpec& spec : task_.containers) {
    Container c;
    c.spec = &spec;
    c.runtime_id = task_.runtime_id(spec);
    c.log_path = fs::join(opts_.task_dir, "logs/" + spec.name + ".log");
    BERTH_ASSIGN(LogFile log,
                 LogFile::open(c.log_path, LogLimits{spec.log_max_bytes, spec.log_max_files}));
    c.log = std::make_unique<LogFile>(std::move(log));
    containers_.push_back(std::move(c));
    BERTH_TRY(claim_bundle(spec));
    if (spec.init_process) BERTH_TRY(add_init_process(spec));
  }

  if (task_.cgroup_parent) {
    BERTH_ASSIGN(runtime::CgroupLayout layout, runtime::CgroupLayout::detect());
    BERTH_ASSIGN(task_cgroup_, runtime::TaskCgroup::create(layout, *task_.cgroup_parent,
                                                           task_.task_id, task_.limits));
  }

  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return sys_error(kStep, "epoll_create1");

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return sys_error(kStep, "sigprocmask");
  ::signal(SIGPIPE, SIG_IGN);
  sigfd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd_) return sys_error(kStep, "signalfd");
  BERTH_TRY(watch(sigfd_.get(), EPOLLIN));

  timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer_) return sys_error(kStep, "timerfd_create");
  BERTH_TRY(watch(timer_.get(), EPOLLIN));

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (opts_.socket_path.size() >= sizeof addr.sun_path) {
    return error(kStep, "socket path {} is longer than {} bytes", opts_.socket_path,
                 sizeof addr.sun_path - 1);
  }
  std::copy(opts_.socket_path.begin(), opts_.socket_path.end(), addr.sun_path);
  listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_) return sys_error(kStep, "socket");
  (void)::unlink(opts_.socket_path.c_str());
  if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return sys_error(kStep, "bind {}", opts_.socket_path);
  }
  ::chmod(opts_.socket_path.c_str(), 0600);
  if (::listen(listen_.get(), 64) != 0) return sys_error(kStep, "listen {}", opts_.socket_path);
  BERTH_TRY(watch(listen_.get(), EPOLLIN));
  return {};
}

// ---- containers -----------------------------------------------------------------

// initProcessEnabled: berth-shim itself (static) runs as pid 1 in `init`
// mode in front of the container's command. It is not bind-mounted into the
// container: that would put the host's inode there, and a container with
// CAP_SYS_ADMIN could remount a read-only bind writable. The container's init
// is a clone of this shim, which runs from a protected copy of its binary
// (runtime/sealed_exe.h), and execs that copy through /proc/self/exe: the
// container sees no host file, only the copy as /proc/1/exe, which nothing
// can write. The bundle's config.json is rewritten once (marked by an
// annotation, so a restarted container is not wrapped twice); a bundle
// wrapped by an older shim (a bind of the host binary at /sbin/berth-init)
// is rewritten again.
namespace {

// A string member of a mounts[] entry, "" if absent or not a string (value()
// would abort on a wrong type: JSON_NOEXCEPTION).
std::string mount_field(const json& m, const char* key) {
  if (!m.is_object()) return {};
  auto it = m.find(key);
  return it != m.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

Result<void> Shim::add_init_process(const ContainerSpec& spec) {
  constexpr std::string_view kMarker = "berth.init-process";
  constexpr std::string_view kVersion = "self-exe";
  constexpr std::string_view kOldPath = "/sbin/berth-init";
  if (auto sealed = runtime::sealed_exe_method(); !sealed) {
    return wrap(sealed.error(), "initProcessEnabled needs berth-shim to run from a protected copy");
  }
  std::string path = fs::join(spec.bundle, "config.json");
  BERTH_ASSIGN(std::string text, fs::read_file(path));
  BERTH_ASSIGN(json cfg, parse_json(text, path));
  auto ann = cfg.find("annotations");
  bool wrapped_before = ann != cfg.end() && ann->is_object() && ann->contains(kMarker);
  if (wrapped_before) {
    const json& v = (*ann)[std::string(kMarker)];
    if (v.is_string() && v.get<std::string>() == kVersion) return {};
  }
  auto proc = cfg.find("process");
  if (proc == cfg.end() || !proc->is_object()) return error(kStep, "{}: no process", path);
  auto args = proc->find("args");
  if (args == proc->end() || !args->is_array()) return error(kStep, "{}: no process.args", path);
  if (wrapped_before) {
    if (args->empty() || !args->front().is_string() ||
        args->front().get<std::string>() != kOldPath) {
      return error(kStep, "{}: marked {} but process.args does not start with {}", path, kMarker,
                   kOldPath);
    }
    args->erase(args->begin(), args->begin() + std::min<size_t>(3, args->size()));
    if (cfg.contains("mounts") && cfg["mounts"].is_array()) {
      auto& mounts = cfg["mounts"];
      for (auto it = mounts.begin(); it != mounts.end();) {
        it = mount_field(*it, "destination") == kOldPath ? mounts.erase(it) : std::next(it);
      }
    }
  }
  // /proc/self/exe is resolved in the container's /proc.
  bool has_proc = false;
  if (cfg.contains("mounts") && cfg["mounts"].is_array()) {
    for (const json& m : cfg["mounts"]) {
      has_proc = has_proc ||
                 (mount_field(m, "destination") == "/proc" && mount_field(m, "type") == "proc");
    }
  }
  if (!has_proc) {
    return error(kStep, "{}: initProcessEnabled needs a proc mount at /proc in the container",
                 path);
  }
  json wrapped = json::array({"/proc/self/exe", "init", "--"});
  for (const json& a : *args) wrapped.push_back(a);
  *args = wrapped;
  cfg["annotations"][std::string(kMarker)] = kVersion;
  return fs::write_file_atomic(path, cfg.dump(2) + "\n", 0644, fs::Durable::yes);
}

// Marks the bundle as this task's (annotation berth.task, which the runtime
// copies into the container's state), so that the shim can tell its own
// containers from anybody else's before it deletes or kills one.
Result<void> Shim::claim_bundle(const ContainerSpec& spec) {
  const std::string key(kOwnerAnnotation);
  std::string path = fs::join(spec.bundle, "config.json");
  BERTH_ASSIGN(std::string text, fs::read_file(path));
  BERTH_ASSIGN(json cfg, parse_json(text, path));
  if (!cfg.is_object()) return error(kStep, "{}: not a JSON object", path);
  auto ann = cfg.find("annotations");
  if (ann != cfg.end() && !ann->is_null() && !ann->is_object()) {
    return error(kStep, "{}: annotations must be an object", path);
  }
  if (ann != cfg.end() && ann->is_object() && ann->value(key, "") == task_.task_id) return {};
  cfg["annotations"][key] = task_.task_id;
  return fs::write_file_atomic(path, cfg.dump(2) + "\n", 0644, fs::Durable::yes);
}

// True if the runtime has a container under c's id that this task owns,
// false if there is none; an error (naming the owner) if it is somebody
// else's.
Result<bool> Shim::owns(const Container& c) const {
  auto st = runtime::load_state(task_.runtime_root, c.runtime_id);
  if (!st) {
    if (st.error().err == ENOENT) return false;
    return std::unexpected(st.error());
  }
  auto it = st->annotations.find(std::string(kOwnerAnnotation));
  if (it == st->annotations.end() || it->second != task_.task_id) {
    return kind_error(ErrorKind::exists, kStep,
                      "container {} exists and is not this task's (annotation {}: {:?})",
                      c.runtime_id, kOwnerAnnotation,
                      it == st->annotations.end() ? std::string("none") : it->second);
  }
  return true;
}

void Shim::delete_if_owned(const Container& c) {
  auto own = owns(c);
  if (!own) {
    log::error("not deleting: {}", own.error().str());
    return;
  }
  if (!*own) return;
  if (auto d = runtime::delete_container(task_.runtime_root, c.runtime_id, true); !d) {
    log::error("delete container {}: {}", c.runtime_id, d.error().str());
  }
}

void Shim::start_container(Container& c) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    c.status = Status::stopped;
    c.reason = fmt::format("CannotStartContainerError: pipe: {}", std::strerror(errno));
    c.finished_at = now_rfc3339();
    persist_and_announce("container_exited", &c);
    return;
  }
  UniqueFd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  runtime::CreateOptions co;
  co.id = c.runtime_id;
  co.bundle = c.spec->bundle;
  co.root = task_.runtime_root;
  co.start_now = true;
  co.stdio[0] = devnull_.get();
  co.stdio[1] = out_w.get();
  co.stdio[2] = err_w.get();
  co.die_with_parent = true;
  if (task_cgroup_) co.cgroups_path = task_cgroup_->container_cgroups_path(c.spec->name);
  // A leftover of an earlier shim of this task (crash) would block the id;
  // a container of anybody else is left alone (and create fails on it).
  auto own = owns(c);
  if (own && *own) delete_if_owned(c);
  auto created = own ? runtime::create_container(co)
                     : Result<runtime::CreatedContainer>(std::unexpected(own.error()));
  Result<void> started = created ? runtime::wait_exec(*created, task_.runtime_root)
                                 : Result<void>(std::unexpected(created.error()));
  if (!started) {
    if (created) delete_if_owned(c);
    c.status = Status::stopped;
    c.reason = "CannotStartContainerError: " + started.error().str();
    c.finished_at = now_rfc3339();
    log::error("container {}: {}", c.spec->name, c.reason);
    persist_and_announce("container_exited", &c);
    return;
  }
  c.pid = created->state.pid;
  c.status = Status::running;
  c.started = true;
  c.run_started = monotonic_ms();
  c.restart_at = -1;
  if (c.spec->health) {
    c.health = "UNKNOWN";
    c.health_failures = 0;
    c.next_check = c.run_started + 1000LL * c.spec->health->interval_s;
  }
  c.started_at = now_rfc3339();
  c.out = std::move(out_r);
  c.err = std::move(err_r);
  for (int fd : {c.out.get(), c.err.get()}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (auto w = watch(fd, EPOLLIN); !w) log::error("{}", w.error().str());
  }
  persist_and_announce("container_started", &c);
  arm_timer();  // its health checks
}

// Starts what may start; settles what never can.
void Shim::schedule() {
  bool changed = true;
  while (changed && !stopping_) {
    changed = false;
    for (Container& c : containers_) {
      if (c.status != Status::pending) continue;
      bool ready = true;
      std::string unmet;
      for (const Dependency& d : c.spec->depends_on) {
        const Container* dep = by_name(d.container);
        bool ok = false, never = false;
        switch (d.condition) {
          case Condition::start:
            ok = dep->started;
            never = dep->status == Status::stopped && !dep->started;
            break;
          case Condition::complete:
            ok = dep->status == Status::stopped && dep->started;
            never = dep->status == Status::stopped && !dep->started;
            break;
          case Condition::success:
            ok = dep->status == Status::stopped && dep->exit_code == 0;
            never = dep->status == Status::stopped && dep->exit_code != 0;
            break;
          case Condition::healthy:
            ok = dep->status == Status::running && dep->health == "HEALTHY";
            never = dep->status == Status::stopped;
            break;
        }
        if (never) unmet = fmt::format("{} {}", d.container, condition_name(d.condition));
        ready = ready && ok;
      }
      if (!unmet.empty()) {
        c.status = Status::stopped;
        c.reason = "DependencyConditionNotMet: " + unmet;
        c.finished_at = now_rfc3339();
        persist_and_announce("container_exited", &c);
        if (c.spec->essential) begin_stop("EssentialContainerExited: " + c.spec->name, {});
        changed = true;
      } else if (ready) {
        start_container(c);
        if (c.status == Status::stopped && c.spec->essential) {
          begin_stop("EssentialContainerExited: " + c.spec->name, {});
        }
        changed = true;
      }
      if (stopping_) break;
    }
  }
}

void Shim::drain(Container& c, UniqueFd& pipe, Stream stream) {
  if (!pipe) return;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(pipe.get(), buf, sizeof buf);
    if (n > 0) {
      if (auto w = c.log->write(stream, std::string_view(buf, static_cast<size_t>(n))); !w) {
        log::error("log of {}: {}", c.spec->name, w.error().str());
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    // EOF (every writer gone) or an error: done with this pipe.
    unwatch(pipe.get());
    pipe.reset();
    if (!c.out && !c.err) (void)c.log->flush();
    return;
  }
}

void Shim::on_pipe(int fd) {
  Container* c = by_pipe(fd);
  if (!c) return;
  uint64_t before = c->log->end_offset();
  if (c->out.get() == fd) drain(*c, c->out, Stream::out);
  if (c->err.get() == fd) drain(*c, c->err, Stream::err);
  if (c->log->end_offset() != before) {
    broadcast(
        {{"event", "log"}, {"container", c->spec->name}, {"end_offset", c->log->end_offset()}});
  }
}

void Shim::on_exit(Container& c, int ws) {
  c.next_check = -1;
  if (c.check_pid > 0) ::kill(c.check_pid, SIGKILL);  // reaped by reap() later
  c.exit_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  c.finished_at = now_rfc3339();
  c.kill_deadline = -1;
  // OOM kills counted by the container's memory cgroup (v2 memory.events
  // oom_kill, v1 memory.oom_control oom_kill), read before it goes.
  if (auto st = runtime::container_stats(task_.runtime_root, c.runtime_id); st) {
    c.oom_killed = st->oom_kills > 0;
  }
  if (c.oom_killed) {
    c.reason = "OutOfMemoryError: Container killed due to memory usage";
  } else if (stopping_) {
    c.reason = "TaskStopped: " + stopped_reason_;
  } else {
    c.reason = fmt::format("Essential container exited with {}", *c.exit_code);
    if (!c.spec->essential) c.reason = fmt::format("Exited with {}", *c.exit_code);
  }
  // What is still in the pipes belongs to this run.
  drain(c, c.out, Stream::out);
  drain(c, c.err, Stream::err);
  delete_if_owned(c);
  if (plan_restart(c)) {
    c.status = Status::restarting;
    persist_and_announce("container_exited", &c);
    arm_timer();
    return;
  }
  c.status = Status::stopped;
  persist_and_announce("container_exited", &c);
  if (c.spec->essential && !stopping_) begin_stop("EssentialContainerExited: " + c.spec->name, {});
  schedule();
}

// The restart policy's decision for a container that just exited; sets
// restart_at when it is to be restarted.
bool Shim::plan_restart(Container& c) {
  const RestartPolicy& rp = c.spec->restart;
  if (!rp.enabled || stopping_ || !c.exit_code) return false;
  if (std::ranges::find(rp.ignored_exit_codes, *c.exit_code) != rp.ignored_exit_codes.end()) {
    return false;
  }
  int64_t now = monotonic_ms();
  int64_t period = int64_t{rp.attempt_period_s} * 1000;
  if (now - c.run_started >= period) {
    c.streak_started = -1;  // a good run: start afresh
    c.backoff = 0;
  }
  if (c.streak_started < 0) c.streak_started = c.run_started;
  if (now - c.streak_started > period) {
    c.reason += fmt::format(" (not restarted: failing for over {} s after {} restarts)",
                            rp.attempt_period_s, c.restart_count);
    return false;
  }
  c.backoff = c.backoff == 0 ? kFirstBackoffMs : std::min(c.backoff * 2, kMaxBackoffMs);
  c.restart_at = now + c.backoff;
  return true;
}

void Shim::run_health_check(Container& c) {
  const HealthCheck& h = *c.spec->health;
  c.next_check = monotonic_ms() + 1000LL * h.interval_s;
  runtime::ExecOptions eo;
  eo.args = h.argv();
  eo.stdio[0] = eo.stdio[1] = eo.stdio[2] = devnull_.get();
  auto p = runtime::exec_in_container(task_.runtime_root, c.runtime_id, eo);
  if (!p) {
    on_health_result(c, false, p.error().str());
    return;
  }
  c.check_pid = p->pid;
  c.check_deadline = monotonic_ms() + 1000LL * h.timeout_s;
}

void Shim::on_health_result(Container& c, bool ok, const std::string& why) {
  const HealthCheck& h = *c.spec->health;
  std::string before = c.health;
  if (ok) {
    c.health_failures = 0;
    c.health = "HEALTHY";
    c.health_output.clear();
  } else {
    c.health_output = why;
    bool in_start_period = monotonic_ms() - c.run_started < 1000LL * h.start_period_s;
    if (!in_start_period && ++c.health_failures >= h.retries) c.health = "UNHEALTHY";
  }
  if (c.health != before) {
    persist_and_announce("health_changed", &c);
    schedule();  // HEALTHY dependencies
  }
}

void Shim::reap() {
  while (true) {
    int ws = 0;
    pid_t pid = ::waitpid(-1, &ws, WNOHANG);
    if (pid <= 0) return;
    // Anything else is an orphan reparented to us (we are a subreaper).
    if (Container* c = by_pid(pid)) {
      on_exit(*c, ws);
      continue;
    }
    for (Container& c : containers_) {
      if (c.check_pid != pid) continue;
      c.check_pid = -1;
      bool timed_out = c.check_deadline < 0;  // on_timer killed it
      c.check_deadline = -1;
      bool ok = !timed_out && WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
      std::string why = timed_out ? fmt::format("timed out after {} s", c.spec->health->timeout_s)
                        : WIFEXITED(ws) ? fmt::format("exit code {}", WEXITSTATUS(ws))
                                        : fmt::format("killed by signal {}", WTERMSIG(ws));
      if (c.status == Status::running) on_health_result(c, ok, ok ? "" : why);
    }
  }
}

void Shim::begin_stop(const std::string& reason, std::optional<int> timeout_s) {
  if (stopping_) return;
  stopping_ = true;
  held_ = false;
  status_ = "STOPPING";
  stopped_reason_ = reason;
  stopping_at_ = now_rfc3339();
  int64_t now = monotonic_ms();
  for (Container& c : containers_) {
    if (c.status == Status::pending || c.status == Status::restarting) {
      c.restart_at = -1;
      c.status = Status::stopped;
      c.reason = "TaskStopped: " + reason;
      c.finished_at = now_rfc3339();
    } else if (c.status == Status::running) {
      if (::kill(c.pid, SIGTERM) != 0 && errno != ESRCH) {
        log::error("SIGTERM {}: {}", c.runtime_id, std::strerror(errno));
      }
      c.kill_deadline = now + 1000LL * timeout_s.value_or(c.spec->stop_timeout_s);
    }
  }
  persist_and_announce("task_stopping", nullptr);
  arm_timer();
}

void Shim::arm_timer() {
  int64_t next = -1;
  for (const Container& c : containers_) {
    if (c.status == Status::running && c.kill_deadline >= 0 &&
        (next < 0 || c.kill_deadline < next)) {
      next = c.kill_deadline;
    }
    if (c.status == Status::restarting && (next < 0 || c.restart_at < next)) {
      next = c.restart_at;
    }
    for (int64_t t : {c.next_check, c.check_deadline}) {
      if (c.status == Status::running && t >= 0 && (next < 0 || t < next)) next = t;
    }
  }
  itimerspec its{};
  if (next >= 0) {
    int64_t delta = std::max<int64_t>(1, next - monotonic_ms());
    its.it_value.tv_sec = delta / 1000;
    its.it_value.tv_nsec = (delta % 1000) * 1000000;
  }
  ::timerfd_settime(timer_.get(), 0, &its, nullptr);
}

void Shim::on_timer() {
  uint64_t expirations;
  (void)!::read(timer_.get(), &expirations, sizeof expirations);
  int64_t now = monotonic_ms();
  for (Container& c : containers_) {
    if (c.status == Status::running && c.kill_deadline >= 0 && c.kill_deadline <= now) {
      // Everything in the container, not only its init.
      (void)runtime::kill_container(task_.runtime_root, c.runtime_id, SIGKILL, /*all=*/true);
      ::kill(c.pid, SIGKILL);
      c.kill_deadline = -1;
    }
    if (c.status == Status::running && c.check_deadline >= 0 && c.check_deadline <= now) {
      ::kill(c.check_pid, SIGKILL);
      c.check_deadline = -1;  // marks the timeout for reap()
    }
    if (c.status == Status::running && c.next_check >= 0 && c.next_check <= now &&
        c.check_pid < 0 && !stopping_) {
      run_health_check(c);
    }
    if (c.status == Status::restarting && c.restart_at <= now && !stopping_) {
      c.restart_count++;
      start_container(c);
      if (c.status == Status::stopped && c.spec->essential) {
        begin_stop("EssentialContainerExited: " + c.spec->name, {});
      }
      schedule();
    }
  }
  arm_timer();
}

void Shim::release() {
  if (!held_ || stopping_) return;
  held_ = false;
  status_ = "RUNNING";
  persist_and_announce("task_started", nullptr);
  schedule();
  if (finished() && !done_) finish();
}

bool Shim::finished() const {
  return std::ranges::all_of(containers_,
                             [](const Container& c) { return c.status == Status::stopped; });
}

void Shim::finish() {
  for (Container& c : containers_) (void)c.log->flush();
  status_ = "STOPPED";
  if (stopped_reason_.empty()) stopped_reason_ = "EssentialContainerExited";
  // Every container has been deleted: the task cgroup goes before the task
  // is announced stopped, so a control plane may reuse the name at once.
  if (task_cgroup_) {
    // The task's final use, read while its cgroup still counts (the
    // control plane bills it: state "usage").
    if (auto st = task_cgroup_->stats()) {
      final_usage_ = {{"cpu_usec", st->cpu_usage_usec},
                      {"memory_bytes", st->memory_current},
                      {"memory_peak_bytes", st->memory_peak}};
    } else {
      log::warn("{}", st.error().str());
    }
    if (auto r = task_cgroup_->destroy(); !r) log::error("{}", r.error().str());
  }
  persist_and_announce("task_stopped", nullptr);
  // Let clients read their last events before the socket goes.
  for (auto& [fd, cl] : clients_) {
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    flush_client(cl);
  }
  (void)::unlink(opts_.socket_path.c_str());
  done_ = true;
}

// ---- state ---------------------------------------------------------------------

json Shim::container_json(const Container& c) const {
  json j = {{"name", c.spec->name},
            {"runtime_id", c.runtime_id},
            {"status", status_name(c.status)},
            {"essential", c.spec->essential},
            {"pid", c.pid},
            {"started_at", c.started_at},
            {"finished_at", c.finished_at},
            {"exit_code", c.exit_code ? json(*c.exit_code) : json(nullptr)},
            {"oom_killed", c.oom_killed},
            {"reason", c.reason},
            {"restart_count", c.restart_count},
            {"health_status", c.spec->health ? json(c.health) : json(nullptr)},
            {"health_output", c.health_output},
            {"log", c.log_path},
            {"log_end_offset", c.log->end_offset()}};
  return j;
}

json Shim::state_json() const {
  json cs = json::array();
  for (const Container& c : containers_) cs.push_back(container_json(c));
  return {{"version", kProtocolVersion}, {"task_id", task_.task_id},
          {"status", status_},           {"stopped_reason", stopped_reason_},
          {"stopping_at", stopping_at_}, {"shim_pid", ::getpid()},
          {"usage", final_usage_},       {"containers", cs}};
}

void Shim::persist_and_announce(const char* event, const Container* c) {
  std::string path = fs::join(opts_.task_dir, "state.json");
  if (auto w = fs::write_file_atomic(path, state_json().dump() + "\n", 0644, fs::Durable::yes);
      !w) {
    log::error("{}", w.error().str());
  }
  json ev = {{"event", event}};
  if (c) {
    ev["container"] = container_json(*c);
  } else {
    ev["state"] = state_json();
  }
  broadcast(ev);
}

// ---- protocol ------------------------------------------------------------------

void Shim::send(Client& cl, const json& msg) {
  cl.out += msg.dump();
  cl.out += '\n';
  flush_client(cl);
}

void Shim::broadcast(const json& event) {
  std::string line = event.dump() + "\n";
  std::vector<int> drop;
  for (auto& [fd, cl] : clients_) {
    if (!cl.subscribed) continue;
    if (cl.out.size() + line.size() > kMaxClientBuffer) {
      drop.push_back(fd);
      continue;
    }
    cl.out += line;
    flush_client(cl);
  }
  for (int fd : drop) drop_client(fd);
}

void Shim::flush_client(Client& cl) {
  while (!cl.out.empty()) {
    ssize_t n = ::send(cl.fd.get(), cl.out.data(), cl.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      cl.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT;
      ev.data.fd = cl.fd.get();
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, cl.fd.get(), &ev);
      return;
    }
    cl.out.clear();  // peer gone: on_client sees the hang-up
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = cl.fd.get();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, cl.fd.get(), &ev);
}

void Shim::drop_client(int fd) {
  unwatch(fd);
  clients_.erase(fd);
}

void Shim::accept_clients() {
  while (true) {
    int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    Client cl;
    cl.fd.reset(fd);
    if (!watch(fd, EPOLLIN)) continue;
    clients_.emplace(fd, std::move(cl));
  }
}

void Shim::on_client(int fd, uint32_t events) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& cl = it->second;
  if (events & EPOLLOUT) flush_client(cl);
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    char buf[4096];
    while (true) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        cl.in.append(buf, static_cast<size_t>(n));
        if (cl.in.size() > kMaxRequest && cl.in.find('\n') == std::string::npos) {
          drop_client(fd);
          return;
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      drop_client(fd);  // EOF or error: the client went away
      return;
    }
    size_t nl;
    while ((nl = cl.in.find('\n')) != std::string::npos) {
      std::string line = cl.in.substr(0, nl);
      cl.in.erase(0, nl + 1);
      handle_request(cl, line);
      if (!clients_.contains(fd)) return;
    }
  }
}

void Shim::handle_request(Client& cl, std::string_view line) {
  json reply = {{"id", nullptr}};
  auto fail = [&](const std::string& why) {
    reply["ok"] = false;
    reply["error"] = why;
    send(cl, reply);
  };
  auto req = parse_json(line, "request");
  if (!req || !req->is_object())
    return fail(req ? "request: not a JSON object" : req.error().str());
  if (auto id = req->find("id"); id != req->end()) reply["id"] = *id;
  auto op_it = req->find("op");
  if (op_it == req->end() || !op_it->is_string()) return fail("request: \"op\" must be a string");
  std::string op = op_it->get<std::string>();
  auto container_arg = [&]() -> Container* {
    auto n = req->find("container");
    if (n == req->end() || !n->is_string()) return nullptr;
    return by_name(n->get<std::string>());
  };
  reply["ok"] = true;
  if (op == "hello") {
    reply["result"] = {{"version", kProtocolVersion}, {"state", state_json()}};
    if (auto sub = req->find("subscribe"); sub != req->end() && sub->is_boolean()) {
      cl.subscribed = sub->get<bool>();
    }
  } else if (op == "status") {
    reply["result"] = state_json();
  } else if (op == "subscribe") {
    cl.subscribed = true;
    reply["result"] = state_json();
  } else if (op == "start") {
    // --hold: the client has subscribed (or not); now the containers go.
    reply["result"] = state_json();
    send(cl, reply);
    release();
    return;
  } else if (op == "stop") {
    auto timeout = parse_stop_timeout(*req);
    if (!timeout) return fail(timeout.error().str());
    std::string reason = "StopTask";
    if (auto r = req->find("reason"); r != req->end() && r->is_string()) {
      reason = r->get<std::string>();
    }
    send(cl, reply);
    begin_stop(reason, *timeout);
    if (finished() && !done_) finish();
    return;
  } else if (op == "signal") {
    Container* c = container_arg();
    auto sig = req->find("signal");
    if (!c) return fail("signal: no such container");
    if (sig == req->end() || !sig->is_number_integer() || sig->get<int>() < 1 ||
        sig->get<int>() > 64) {
      return fail("signal: \"signal\" must be a number 1-64");
    }
    if (c->status != Status::running)
      return fail("signal: container " + c->spec->name + " is not running");
    if (::kill(c->pid, sig->get<int>()) != 0) {
      return fail(fmt::format("signal: kill {}: {}", c->pid, std::strerror(errno)));
    }
  } else if (op == "stats") {
    Container* c = container_arg();
    if (!c) return fail("stats: no such container");
    if (c->status != Status::running)
      return fail("stats: container " + c->spec->name + " is not running");
    auto st = runtime::container_stats(task_.runtime_root, c->runtime_id);
    if (!st) return fail("stats: " + st.error().str());
    reply["result"] = {{"cpu_usage_usec", st->cpu_usage_usec},
                       {"memory_current", st->memory_current},
                       {"memory_peak", st->memory_peak},
                       {"pids_current", st->pids_current},
                       {"oom_kills", st->oom_kills}};
  } else if (op == "logs") {
    Container* c = container_arg();
    if (!c) return fail("logs: no such container");
    auto args = parse_logs_request(*req);
    if (!args) return fail(args.error().str());
    auto chunk = c->log->read(args->offset, args->max_bytes);
    if (!chunk) return fail("logs: " + chunk.error().str());
    reply["result"] = {{"data", chunk->data},
                       {"next_offset", chunk->next_offset},
                       {"truncated_before", chunk->truncated_before},
                       {"end_offset", c->log->end_offset()}};
  } else {
    return fail("unknown op \"" + op + "\"");
  }
  send(cl, reply);
}

// ---- loop ------------------------------------------------------------------------

Result<void> Shim::loop() {
  epoll_event events[32];
  while (!done_) {
    int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(kStep, "epoll_wait");
    }
    for (int i = 0; i < n && !done_; ++i) {
      int fd = events[i].data.fd;
      if (fd == sigfd_.get()) {
        signalfd_siginfo si;
        while (::read(sigfd_.get(), &si, sizeof si) == sizeof si) {
          if (si.ssi_signo == SIGCHLD) {
            reap();
          } else {
            begin_stop(fmt::format("shim received signal {}", si.ssi_signo), {});
          }
        }
      } else if (fd == timer_.get()) {
        on_timer();
      } else if (fd == listen_.get()) {
        accept_clients();
      } else if (clients_.contains(fd)) {
        on_client(fd, events[i].events);
      } else {
        on_pipe(fd);
      }
      if (!done_ && finished()) finish();
    }
  }
  return {};
}

int Shim::run(int ready_fd) {
  if (auto s = setup(); !s) {
    log::error("{}", s.error().str());
    if (ready_fd >= 0) ::close(ready_fd);
    return 1;
  }
  held_ = opts_.hold;
  if (held_) status_ = "PENDING";
  persist_and_announce("task_created", nullptr);
  if (!held_) schedule();
  if (ready_fd >= 0) {
    char ok = 'R';
    (void)!::write(ready_fd, &ok, 1);
    ::close(ready_fd);
  }
  if (finished()) finish();
  if (auto l = loop(); !l) {
    log::error("{}", l.error().str());
    return 1;
  }
  return 0;
}

}  // namespace

namespace {

// JSON text gives unsigned numbers for what is not negative; a json built
// in C++ from an int has a signed one.
bool non_negative_integer(const json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

}  // namespace

Result<LogsRequest> parse_logs_request(const json& req) {
  LogsRequest r;
  if (auto o = req.find("offset"); o != req.end() && !o->is_null()) {
    if (!non_negative_integer(*o)) {
      return kind_error(ErrorKind::invalid, "logs",
                        "\"offset\" must be an integer 0 or more, got {}", o->dump());
    }
    r.offset = o->get<uint64_t>();
  }
  if (auto m = req.find("max_bytes"); m != req.end() && !m->is_null()) {
    if (!non_negative_integer(*m) || m->get<uint64_t>() == 0) {
      return kind_error(ErrorKind::invalid, "logs",
                        "\"max_bytes\" must be an integer 1 or more, got {}", m->dump());
    }
    r.max_bytes = static_cast<size_t>(std::min<uint64_t>(m->get<uint64_t>(), 1 << 20));
  }
  return r;
}

Result<std::optional<int>> parse_stop_timeout(const json& req) {
  auto t = req.find("timeout");
  if (t == req.end() || t->is_null()) return std::optional<int>();
  if (!t->is_number_integer() || t->get<int64_t>() < 0 || t->get<int64_t>() > 86400) {
    return kind_error(ErrorKind::invalid, "stop",
                      "\"timeout\" must be an integer number of seconds 0-86400, got {}",
                      t->dump());
  }
  return std::optional<int>(static_cast<int>(t->get<int64_t>()));
}

int run_shim(const TaskSpec& task, const ShimOptions& opts, int ready_fd) {
  Shim shim(task, opts);
  return shim.run(ready_fd);
}

}  // namespace berth::shim
