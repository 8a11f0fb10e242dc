// exec: a process started in a running container (`berth-runtime exec`, and
// runtime::exec_in_container, which the task shim's health checks call) gets
// the container's namespaces, cgroups, credentials and seccomp filter, its
// exit code reaches the caller, and failures come back as errors.
//
// The CLI tests also run against runc (same `exec [--cwd] [--env] ID -- ARGS`);
// the library tests and exact error texts are berth's.
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "common/fd.h"
#include "runtime/exec.h"
#include "tests/integration/harness.h"

namespace fs = std::filesystem;
namespace brt = berth::runtime;
using namespace berth::test;
using berth::UniqueFd;

namespace {

std::string proc_path(int pid, const std::string& rest) {
  return "/proc/" + std::to_string(pid) + "/" + rest;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Creates and starts `c` as a long-running container whose shell leaves a
// marker in the container's own /dev/shm (a tmpfs of its mount namespace)
// before it becomes the probe (or that runs `args`, a probe); returns the
// init's host pid once the probe runs.
int start_running(Container& c, const std::vector<std::string>& args = {}) {
  c.config()["hostname"] = "berth-exec";
  if (args.empty()) {
    c.set_args({"/bin/sh", "-c", "echo from-init > /dev/shm/marker && exec /bin/probe sleep 600"});
  } else {
    c.set_args(args);
  }
  auto created = c.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);
  auto started = c.start();
  INFO(started);
  REQUIRE(started.exit_code == 0);
  REQUIRE(c.wait_for_status("running"));
  int pid = c.state_json().value("pid", 0);
  REQUIRE(pid > 0);
  REQUIRE(wait_until([&] { return trim(read_file(proc_path(pid, "comm"))) == "probe"; }));
  return pid;
}

// `RUNTIME exec [flags] ID -- ARGS...`; runc takes everything after the id
// as the program's and would run "--".
CommandResult exec_cli(const Runtime& rt, const Container& c, const std::vector<std::string>& args,
                       const std::vector<std::string>& flags = {}) {
  std::vector<std::string> argv = {"exec"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.push_back(c.id());
  if (runtime_is_berth()) argv.push_back("--");
  argv.insert(argv.end(), args.begin(), args.end());
  return rt.exec(argv);
}

// A process from exec_in_container: killed and reaped if the test leaves
// before it has exited.
class Execed {
 public:
  explicit Execed(brt::ExecedProcess p) : p_(std::move(p)) {}
  ~Execed() {
    if (p_.pid <= 0) return;
    ::kill(p_.pid, SIGKILL);
    ::waitpid(p_.pid, nullptr, 0);
  }
  Execed(const Execed&) = delete;
  Execed& operator=(const Execed&) = delete;

  pid_t pid() const { return p_.pid; }
  // Its exit code as a shell reports it; throws if it outlives `timeout`.
  int wait(std::chrono::milliseconds timeout = 60s) {
    pollfd p{.fd = p_.pidfd.get(), .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1)
      throw std::runtime_error("exec'd process " + std::to_string(p_.pid) + " did not exit");
    int status = 0;
    if (::waitpid(p_.pid, &status, 0) != p_.pid) throw std::runtime_error("waitpid failed");
    p_.pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  brt::ExecedProcess p_;
};

struct LibResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
std::ostream& operator<<(std::ostream& os, const LibResult& r) {
  return os << "exit " << r.exit_code << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err;
}

UniqueFd open_or_throw(const std::string& path, int flags) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, 0600));
  if (!fd) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  return fd;
}

// exec_in_container with stdin from /dev/null and stdout/stderr captured
// in files; throws if it fails to start.
LibResult exec_lib(const Runtime& rt, const Container& c, const std::vector<std::string>& args,
                   brt::ExecOptions opts = {}) {
  TempDir tmp;
  UniqueFd in = open_or_throw("/dev/null", O_RDONLY);
  UniqueFd out = open_or_throw(tmp.path() + "/out", O_WRONLY | O_CREAT | O_TRUNC);
  UniqueFd err = open_or_throw(tmp.path() + "/err", O_WRONLY | O_CREAT | O_TRUNC);
  opts.args = args;
  opts.stdio[0] = in.get();
  opts.stdio[1] = out.get();
  opts.stdio[2] = err.get();
  auto p = brt::exec_in_container(rt.root(), c.id(), opts);
  if (!p) throw std::runtime_error("exec_in_container: " + p.error().str());
  Execed proc(std::move(*p));
  LibResult r;
  r.exit_code = proc.wait();
  r.out = read_file(tmp.path() + "/out");
  r.err = read_file(tmp.path() + "/err");
  return r;
}

std::vector<std::string> split_nul(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string e; std::getline(in, e, '\0');) out.push_back(e);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

UniqueFd listen_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd.get(), 4) == 0);
  return fd;
}

// The next seccomp listener sent to `lfd` (one connection, one SCM_RIGHTS
// message with the container state), or an invalid fd after the deadline.
UniqueFd accept_listener(int lfd, std::string& state) {
  pollfd p = {lfd, POLLIN, 0};
  if (::poll(&p, 1, 30000) != 1) return UniqueFd();
  UniqueFd conn(::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn) return UniqueFd();
  pollfd q = {conn.get(), POLLIN, 0};
  if (::poll(&q, 1, 30000) != 1) return UniqueFd();
  char buf[8192];
  iovec iov = {buf, sizeof buf};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(conn.get(), &mh, MSG_CMSG_CLOEXEC);
  if (n < 0) return UniqueFd();
  state.assign(buf, static_cast<size_t>(n));
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return UniqueFd();
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return UniqueFd(fd);
}

}  // namespace

// ---- namespaces ------------------------------------------------------------------

TEST_CASE("exec joins every namespace of the container's init", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  int init = start_running(c);
  for (std::string ns : {"pid", "net", "mnt", "uts", "ipc", "cgroup"}) {
    INFO("namespace " << ns);
    auto r = exec_cli(rt, c, {"/bin/probe", "ns", ns});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    std::string want = read_link(proc_path(init, "ns/" + ns));
    REQUIRE(!want.empty());
    CHECK(trim(r.out) == want);
  }
  // And not the host's (the test's own) where the spec makes a new one
  // (runc's default spec has no cgroup namespace, berth's has).
  for (const auto& ns : c.config()["linux"]["namespaces"]) {
    std::string type = ns.value("type", "");
    std::string file = type == "network" ? "net" : type == "mount" ? "mnt" : type;
    INFO("namespace " << type);
    auto r = exec_cli(rt, c, {"/bin/probe", "ns", file});
    REQUIRE(r.exit_code == 0);
    CHECK(trim(r.out) != read_link("/proc/self/ns/" + file));
  }
}

TEST_CASE("exec sees the container's processes and is not its pid 1", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  start_running(c);
  // The shell's own pid and the container's /proc, seen by one process: in
  // the container's pid namespace it finds itself there, and it is not 1.
  auto ls = exec_cli(rt, c, {"/bin/sh", "-c", "echo $$; ls /proc"});
  INFO(ls);
  REQUIRE(ls.exit_code == 0);
  auto lines = split_lines(ls.out);
  REQUIRE(!lines.empty());
  std::string self = lines[0];
  CHECK(self != "1");
  std::vector<std::string> pids;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (!lines[i].empty() && std::isdigit(static_cast<unsigned char>(lines[i][0])))
      pids.push_back(lines[i]);
  }
  CHECK(contains(pids, "1"));
  CHECK(contains(pids, self));
  // The init, the shell and perhaps `ls`: none of the host's processes.
  CHECK(pids.size() <= 3);
  // pid 1 is the container's init, the probe sleeping.
  auto cmdline = exec_cli(rt, c, {"/bin/probe", "cat", "/proc/1/cmdline"});
  INFO(cmdline);
  REQUIRE(cmdline.exit_code == 0);
  CHECK(split_nul(cmdline.out) == std::vector<std::string>{"/bin/probe", "sleep", "600"});
}

TEST_CASE("exec sees the container's hostname and mounts", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  start_running(c);
  auto host = exec_cli(rt, c, {"/bin/probe", "hostname"});
  INFO(host);
  REQUIRE(host.exit_code == 0);
  CHECK(host.out == "berth-exec\n");
  // Written by the init into a tmpfs that exists only in the container's
  // mount namespace: the host's view of the rootfs has no such file.
  auto marker = exec_cli(rt, c, {"/bin/probe", "cat", "/dev/shm/marker"});
  INFO(marker);
  REQUIRE(marker.exit_code == 0);
  CHECK(marker.out == "from-init\n");
  CHECK(!fs::exists(c.bundle().rootfs() + "/dev/shm/marker"));
  // And its root is the container's rootfs: a directory of the host's root
  // that the rootfs lacks is not there.
  REQUIRE(fs::exists("/usr"));
  REQUIRE(!fs::exists(c.bundle().rootfs() + "/usr"));
  auto usr = exec_cli(rt, c, {"/bin/probe", "mode", "/usr"});
  INFO(usr);
  CHECK(usr.exit_code == 1);
  CHECK(usr.err == "probe: /usr: ENOENT\n");
}

// ---- cgroups and credentials ---------------------------------------------------------

TEST_CASE("exec's process is in the container's cgroups", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  start_running(c);
  // Seen from inside (the container has a cgroup namespace): a process left
  // outside the container's cgroup would show a path like "/../..".
  auto self = exec_cli(rt, c, {"/bin/probe", "cat", "/proc/self/cgroup"});
  auto init = exec_cli(rt, c, {"/bin/probe", "cat", "/proc/1/cgroup"});
  INFO(self);
  INFO(init);
  REQUIRE(self.exit_code == 0);
  REQUIRE(init.exit_code == 0);
  CHECK(self.out == init.out);
  CHECK(self.out.find("..") == std::string::npos);
}

TEST_CASE("berth-only: exec_in_container places a child of the caller in every cgroup",
          "[privileged][exec][berth-only]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("calls berth's runtime library");
  Runtime rt;
  Container c(rt);
  int init = start_running(c);
  auto p = brt::exec_in_container(rt.root(), c.id(), {.args = {"/bin/probe", "sleep", "600"}});
  REQUIRE(p);
  Execed proc(std::move(*p));
  CHECK(read_file(proc_path(proc.pid(), "cgroup")) == read_file(proc_path(init, "cgroup")));
  // Every container cgroup that holds the init holds the exec'd process.
  int hierarchies = 0;
  for (const auto& dir : c.cgroup_dirs()) {
    INFO(dir);
    auto procs = split_lines(read_file(dir + "/cgroup.procs"));
    if (!contains(procs, std::to_string(init))) continue;
    ++hierarchies;
    CHECK(contains(procs, std::to_string(proc.pid())));
  }
  CHECK(hierarchies > 0);
  // A direct child of the caller, so that the caller reaps it.
  auto status = parse_status(read_file(proc_path(proc.pid(), "status")));
  CHECK(status["PPid"] == std::to_string(::getpid()));
  ::kill(proc.pid(), SIGTERM);
  CHECK(proc.wait() == 128 + SIGTERM);
}

TEST_CASE("exec has the container's capabilities, seccomp filter and no_new_privs",
          "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  // berth's default spec has Docker's profile; runc's has none: give it one
  // that denies keyctl as Docker's does.
  if (!c.config()["linux"].contains("seccomp")) {
    c.config()["linux"]["seccomp"] = {
        {"defaultAction", "SCMP_ACT_ALLOW"},
        {"syscalls", {{{"names", {"keyctl"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 1}}}}};
  }
  int init = start_running(c);
  auto r = exec_cli(rt, c, {"/bin/sh", "-c", "/bin/probe status && /bin/probe syscall-denied"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto got = parse_status(r.out);
  auto want = parse_status(read_file(proc_path(init, "status")));
  for (std::string key : {"CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"}) {
    INFO(key);
    CHECK(got[key] == want[key]);
  }
  CHECK(
      got["CapEff"] ==
      fmt::format("{:016x}", capability_mask(c.config()["process"]["capabilities"]["effective"])));
  CHECK(got["Seccomp"] == "2");
  CHECK(got["NoNewPrivs"] == "1");
  CHECK(got["Uid"] == want["Uid"]);
  CHECK(got["Seccomp"] == want["Seccomp"]);
  // The filter is the container's, not just any filter.
  CHECK(r.out.find("keyctl=EPERM\n") != std::string::npos);
}

TEST_CASE("exec runs as the spec's user with its groups, umask and ambient capabilities",
          "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.config()["process"]["user"] = {
      {"uid", 1234}, {"gid", 2345}, {"additionalGids", {3456}}, {"umask", 027}};
  // A non-root process keeps only its ambient capabilities across execve:
  // they show that the capability sets were applied after the uid switch.
  Json caps = {"CAP_KILL", "CAP_NET_BIND_SERVICE"};
  for (const char* set : {"bounding", "effective", "permitted", "inheritable", "ambient"})
    c.config()["process"]["capabilities"][set] = caps;
  int init = start_running(c);
  auto status = exec_cli(rt, c, {"/bin/probe", "status"});
  INFO(status);
  REQUIRE(status.exit_code == 0);
  auto got = parse_status(status.out);
  auto want = parse_status(read_file(proc_path(init, "status")));
  std::string mask = fmt::format("{:016x}", capability_mask(caps));
  CHECK(got["CapAmb"] == mask);
  CHECK(got["CapEff"] == mask);
  CHECK(got["CapEff"] == want["CapEff"]);
  CHECK(got["CapBnd"] == want["CapBnd"]);
  auto id = exec_cli(rt, c, {"/bin/probe", "id"});
  INFO(id);
  REQUIRE(id.exit_code == 0);
  CHECK(id.out == "uid=1234 gid=2345 groups=3456\n");
  auto umask = exec_cli(rt, c, {"/bin/probe", "umask"});
  INFO(umask);
  REQUIRE(umask.exit_code == 0);
  // runc's exec leaves user.umask out (its process gets 0022).
  if (runtime_is_berth()) CHECK(umask.out == "0027\n");
}

TEST_CASE("exec gets the spec's rlimits and oom_score_adj", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  // Values the runtime itself does not have, so that the exec'd process
  // cannot just have inherited them. (The hard limit stays low: raising it
  // above the caller's needs CAP_SYS_RESOURCE, which some test hosts lack.)
  c.config()["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 64}, {"hard", 4096}}};
  c.config()["process"]["oomScoreAdj"] = 321;
  start_running(c);
  auto nofile = exec_cli(rt, c, {"/bin/probe", "rlimit", "NOFILE"});
  INFO(nofile);
  REQUIRE(nofile.exit_code == 0);
  CHECK(nofile.out == "64 4096\n");
  auto oom = exec_cli(rt, c, {"/bin/probe", "cat", "/proc/self/oom_score_adj"});
  INFO(oom);
  REQUIRE(oom.exit_code == 0);
  CHECK(oom.out == "321\n");
}

TEST_CASE("exec joins a container's user namespace", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  if (!fs::exists("/proc/self/ns/user") ||
      std::stoi(read_file("/proc/sys/user/max_user_namespaces")) == 0) {
    BERTH_SKIP("user namespaces are disabled on this host");
  }
  Runtime rt;
  Container c(rt);
  c.config()["linux"]["namespaces"].push_back({{"type", "user"}});
  Json map = Json::array({{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}});
  c.config()["linux"]["uidMappings"] = map;
  c.config()["linux"]["gidMappings"] = map;
  int init = start_running(c);
  auto r = exec_cli(rt, c, {"/bin/sh", "-c", "/bin/probe id && /bin/probe ns user"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto lines = split_lines(r.out);
  REQUIRE(lines.size() >= 2);
  CHECK(lines[0] == "uid=0 gid=0 groups=");
  CHECK(lines[1] == read_link(proc_path(init, "ns/user")));
}

TEST_CASE("berth-only: exec sends its own seccomp listener to listenerPath",
          "[privileged][exec][berth-only][seccomp]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("calls berth's runtime library; runc sends listeners in its own format");
  Runtime rt;
  Container c(rt);
  TempDir dir;
  const std::string path = dir.path() + "/seccomp.sock";
  UniqueFd lfd = listen_unix(path);
  c.config()["linux"]["seccomp"] = {
      {"defaultAction", "SCMP_ACT_ALLOW"},
      {"listenerPath", path},
      {"syscalls", {{{"names", {"getcwd"}}, {"action", "SCMP_ACT_NOTIFY"}}}}};
  // Not the shell: it calls getcwd() at start-up.
  start_running(c, {"/bin/probe", "sleep", "600"});
  std::string state;
  UniqueFd init_listener = accept_listener(lfd.get(), state);
  REQUIRE(init_listener);

  // The exec'd probe's getcwd() waits for a verdict on its own listener.
  TempDir out;
  UniqueFd err(::open((out.path() + "/err").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  REQUIRE(err);
  brt::ExecOptions opts{.args = {"/bin/probe", "cwd"}};
  opts.stdio[2] = err.get();
  auto p = brt::exec_in_container(rt.root(), c.id(), opts);
  REQUIRE(p);
  Execed proc(std::move(*p));
  UniqueFd listener = accept_listener(lfd.get(), state);
  REQUIRE(listener);
  CHECK(state.find(c.id()) != std::string::npos);
  pollfd n = {listener.get(), POLLIN, 0};
  REQUIRE(::poll(&n, 1, 30000) == 1);
  seccomp_notif req = {};
  REQUIRE(::ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_RECV, &req) == 0);
  CHECK(req.data.nr == SYS_getcwd);
  CHECK(static_cast<pid_t>(req.pid) == proc.pid());
  seccomp_notif_resp resp = {};
  resp.id = req.id;
  resp.error = -EXDEV;
  REQUIRE(::ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0);
  CHECK(proc.wait() == 1);
  CHECK(read_file(out.path() + "/err") == "probe: getcwd: EXDEV\n");
}

// ---- exit codes, options ----------------------------------------------------------

TEST_CASE("exec exits with the process's exit code", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  start_running(c);
  CHECK(exec_cli(rt, c, {"/bin/probe", "exit", "0"}).exit_code == 0);
  CHECK(exec_cli(rt, c, {"/bin/probe", "exit", "7"}).exit_code == 7);
  // Killed by a signal: 128+N, as a shell reports it.
  CHECK(exec_cli(rt, c, {"/bin/sh", "-c", "kill -KILL $$"}).exit_code == 128 + SIGKILL);
  // The container goes on.
  CHECK(c.state_json().value("status", "") == "running");
}

TEST_CASE("exec takes the program after the id, with or without --", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  start_running(c);
  // runc's form: options of the program (-c) are not the runtime's.
  auto plain = rt.exec({"exec", c.id(), "/bin/sh", "-c", "exit 3"});
  INFO(plain);
  CHECK(plain.exit_code == 3);
  if (runtime_is_berth()) {
    auto dashed = rt.exec({"exec", "--cwd", "/dev", c.id(), "--", "/bin/sh", "-c", "pwd; exit 4"});
    INFO(dashed);
    CHECK(dashed.exit_code == 4);
    CHECK(dashed.out == "/dev\n");
    auto none = rt.exec({"exec", c.id(), "--"});
    INFO(none);
    CHECK(none.exit_code != 0);
    CHECK(none.err.find("no program given") != std::string::npos);
  }
}

TEST_CASE("exec's --env adds to the container's env and --cwd sets the cwd", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.config()["process"]["env"] = {"PATH=/bin", "BERTH_A=spec", "BERTH_B=spec"};
  start_running(c);
  auto plain = exec_cli(rt, c, {"/bin/probe", "cat", "/proc/self/environ"});
  INFO(plain);
  REQUIRE(plain.exit_code == 0);
  auto env = split_nul(plain.out);
  CHECK(contains(env, "BERTH_A=spec"));
  CHECK(contains(env, "PATH=/bin"));

  auto r = exec_cli(rt, c, {"/bin/probe", "cat", "/proc/self/environ"},
                    {"--env", "BERTH_B=exec", "--env", "BERTH_C=new"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  env = split_nul(r.out);
  CHECK(contains(env, "BERTH_A=spec"));
  CHECK(contains(env, "BERTH_B=exec"));
  CHECK(!contains(env, "BERTH_B=spec"));
  CHECK(contains(env, "BERTH_C=new"));

  auto cwd = exec_cli(rt, c, {"/bin/probe", "cwd"}, {"--cwd", "/bin"});
  INFO(cwd);
  REQUIRE(cwd.exit_code == 0);
  CHECK(cwd.out == "/bin\n");
}

TEST_CASE("berth-only: exec_in_container's env replaces the spec's, stdio goes where asked",
          "[privileged][exec][berth-only]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("calls berth's runtime library");
  Runtime rt;
  Container c(rt);
  start_running(c);
  auto env = exec_lib(rt, c, {"/bin/probe", "cat", "/proc/self/environ"},
                      {.env = {"PATH=/bin", "ONLY=this"}});
  INFO(env);
  REQUIRE(env.exit_code == 0);
  CHECK(env.out == std::string("PATH=/bin\0ONLY=this\0", 20));
  auto cwd = exec_lib(rt, c, {"/bin/probe", "cwd"}, {.cwd = "/dev"});
  INFO(cwd);
  REQUIRE(cwd.exit_code == 0);
  CHECK(cwd.out == "/dev\n");
  auto err = exec_lib(rt, c, {"/bin/sh", "-c", "echo on-stderr >&2"});
  INFO(err);
  REQUIRE(err.exit_code == 0);
  CHECK(err.out.empty());
  CHECK(err.err == "on-stderr\n");
}

// ---- failures ----------------------------------------------------------------------

TEST_CASE("berth-only: a program that is not there is an error naming it",
          "[privileged][exec][berth-only]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("checks berth's error text");
  Runtime rt;
  Container c(rt);
  start_running(c);
  auto lib = brt::exec_in_container(rt.root(), c.id(), {.args = {"no-such-program"}});
  REQUIRE(!lib);
  INFO(lib.error().str());
  CHECK(lib.error().step == "process");
  CHECK(lib.error().err == ENOENT);
  CHECK(lib.error().message ==
        "exec in container " + c.id() +
            ": executable \"no-such-program\" not found in $PATH "
            "(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)");

  auto abs = brt::exec_in_container(rt.root(), c.id(), {.args = {"/bin/no-such-program"}});
  REQUIRE(!abs);
  CHECK(abs.error().str() == "exec: exec in container " + c.id() +
                                 ": exec /bin/no-such-program: No such file or directory");

  auto cli = exec_cli(rt, c, {"no-such-program"});
  INFO(cli);
  CHECK(cli.exit_code == 1);
  CHECK(cli.err.find("executable \"no-such-program\" not found") != std::string::npos);

  auto cwd = brt::exec_in_container(rt.root(), c.id(), {.args = {"/bin/true"}, .cwd = "/nowhere"});
  REQUIRE(!cwd);
  CHECK(cwd.error().str() == "process: exec in container " + c.id() +
                                 ": chdir to cwd /nowhere: No such file or directory");
  // None of the failed attempts left a process in the container.
  auto ls = exec_cli(rt, c, {"ls", "/proc"});
  int pids = 0;
  for (const auto& e : split_lines(ls.out))
    pids += !e.empty() && std::isdigit(static_cast<unsigned char>(e[0]));
  CHECK(pids == 2);
}

TEST_CASE("exec into a container that is not running is refused", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "exit", "0"});
  auto created = c.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);
  REQUIRE(c.start().exit_code == 0);
  REQUIRE(c.wait_for_status("stopped"));
  auto r = exec_cli(rt, c, {"/bin/probe", "pid"});
  INFO(r);
  CHECK(r.exit_code != 0);
  CHECK(r.out.empty());
  if (runtime_is_berth()) {
    CHECK(r.err.find("cannot exec in container " + c.id() + ": it is stopped, not running") !=
          std::string::npos);
    auto lib = brt::exec_in_container(rt.root(), c.id(), {.args = {"/bin/probe", "pid"}});
    REQUIRE(!lib);
    CHECK(lib.error().str() ==
          "exec: cannot exec in container " + c.id() + ": it is stopped, not running");
  }
}

TEST_CASE("berth-only: exec into a created container is refused",
          "[privileged][exec][berth-only]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc execs into a created container");
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "sleep", "600"});
  auto created = c.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);
  auto lib = brt::exec_in_container(rt.root(), c.id(), {.args = {"/bin/probe", "pid"}});
  REQUIRE(!lib);
  CHECK(lib.error().str() ==
        "exec: cannot exec in container " + c.id() + ": it is created, not running");
  auto missing = brt::exec_in_container(rt.root(), unique_name(), {.args = {"/bin/probe"}});
  REQUIRE(!missing);
  CHECK(missing.error().err == ENOENT);
}

// ---- fds ----------------------------------------------------------------------------

TEST_CASE("exec's process inherits no fd but stdio", "[privileged][exec]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  start_running(c);
  auto r = exec_cli(rt, c, {"/bin/probe", "fds"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.empty());
}

TEST_CASE("berth-only: no fd of exec_in_container's caller leaks into the container",
          "[privileged][exec][berth-only][cve]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("calls berth's runtime library");
  Runtime rt;
  Container c(rt);
  start_running(c);
  // Inheritable fds of the caller: a host directory (the CVE-2024-21626
  // escape route), a file and a socket.
  UniqueFd dir(::open("/", O_RDONLY | O_DIRECTORY));
  UniqueFd file(::open((c.bundle().dir() + "/config.json").c_str(), O_RDONLY));
  int sp[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
  UniqueFd s0(sp[0]), s1(sp[1]);
  REQUIRE(dir);
  REQUIRE(file);
  auto r = exec_lib(rt, c, {"/bin/probe", "fds"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.empty());
}
