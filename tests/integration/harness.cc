// The integration harness, and the suite's main(): the run is wrapped in a
// before/after check that nothing of this process (mounts, cgroups, temp
// dirs, containers) outlives it.
#define CATCH_CONFIG_RUNNER
#include "tests/integration/harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace fs = std::filesystem;

namespace berth::test {

// ---- environment -----------------------------------------------------------

const std::string& runtime_path() {
  static const std::string path = [] {
    const char* env = std::getenv("BERTH_TEST_RUNTIME");
    return std::string(env && *env ? env : BERTH_BIN_DIR "/berth-runtime");
  }();
  return path;
}

bool runtime_is_berth() {
  static const bool berth = [] {
    if (fs::path(runtime_path()).filename().string().find("runc") != std::string::npos)
      return false;
    // A runc installed under another name still says who it is.
    CommandResult r = exec_command({runtime_path(), "--version"}, {.timeout = 30s});
    return r.out.rfind("runc version", 0) != 0;
  }();
  return berth;
}

const std::string& probe_path() {
  static const std::string path = [] {
    const char* env = std::getenv("BERTH_TEST_PROBE");
    return std::string(env && *env ? env : BERTH_BIN_DIR "/berth-probe");
  }();
  return path;
}

const std::string& name_prefix() {
  static const std::string prefix = "berth-it-" + std::to_string(getpid());
  return prefix;
}

bool is_ours(const std::string& name) {
  return name.rfind(name_prefix() + "-", 0) == 0;
}

std::string unique_name() {
  static std::atomic<int> counter{0};
  return name_prefix() + "-" + std::to_string(++counter);
}

std::optional<std::string> privileged_skip_reason() {
  if (geteuid() != 0) return "needs root (creates namespaces, cgroups and mounts)";
  if (!fs::exists("/proc/self/cgroup")) return "no /proc/self/cgroup on this host";
  return std::nullopt;
}

// ---- commands --------------------------------------------------------------

std::ostream& operator<<(std::ostream& os, const CommandResult& r) {
  return os << "$ " << r.command << "\nexit " << r.exit_code << "\nstdout: " << r.out
            << "\nstderr: " << r.err;
}

namespace {

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

std::string read_all(int fd) {
  std::string out;
  char buf[8192];
  lseek(fd, 0, SEEK_SET);
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int checked(int fd, const std::string& what) {
  if (fd < 0) throw std::runtime_error(what + ": " + std::strerror(errno));
  return fd;
}

// In the child between fork and exec: only async-signal-safe calls.
[[noreturn]] void exec_child(const std::vector<std::string>& argv, const ExecOptions& opts, int out,
                             int err) {
  setpgid(0, 0);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
  if (!opts.cwd.empty() && chdir(opts.cwd.c_str()) != 0) _exit(126);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  const char msg[] = "exec failed\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(127);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

CommandResult exec_command(const std::vector<std::string>& argv, const ExecOptions& opts) {
  CommandResult result{.command = join(argv)};
  Fd out_mem(checked(memfd_create("stdout", MFD_CLOEXEC), "memfd_create"));
  Fd err_mem(checked(memfd_create("stderr", MFD_CLOEXEC), "memfd_create"));
  Fd file(opts.output_file.empty() ? -1
                                   : checked(open(opts.output_file.c_str(),
                                                  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644),
                                             "open " + opts.output_file));
  int out = file.get() >= 0 ? file.get() : out_mem.get();
  int err = file.get() >= 0 ? file.get() : err_mem.get();

  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) exec_child(argv, opts, out, err);
  setpgid(pid, pid);  // both sides set it: whichever runs first wins the race

  Fd pidfd(checked(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)), "pidfd_open"));
  pollfd pfd{.fd = pidfd.get(), .events = POLLIN, .revents = 0};
  int ready;
  do {
    ready = poll(&pfd, 1, static_cast<int>(opts.timeout.count() * 1000));
  } while (ready < 0 && errno == EINTR);
  int status = 0;
  if (ready == 0) {
    // The whole group: a runtime's helper children must not outlive the test.
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    throw std::runtime_error("timed out after " + std::to_string(opts.timeout.count()) +
                             " s (killed): " + result.command + "\nstdout: " +
                             read_all(out_mem.get()) + "\nstderr: " + read_all(err_mem.get()));
  }
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = exit_code_of(status);
  result.out = read_all(out_mem.get());
  result.err = read_all(err_mem.get());
  return result;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

// ---- leaks -------------------------------------------------------------------

namespace {
std::vector<std::string>& leaks() {
  static std::vector<std::string> list;
  return list;
}
}  // namespace

void record_leak(const std::string& what) {
  std::cerr << "LEAK: " << what << "\n";
  leaks().push_back(what);
}

// ---- files -------------------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string read_link(const std::string& path) {
  std::error_code ec;
  auto target = fs::read_symlink(path, ec);
  return ec ? "" : target.string();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) parts.push_back(part);
  return parts;
}

// mountinfo's fields: id parent major:minor root mountpoint options ... - type
// source superoptions. Octal escapes (\040) are left as they are.
struct MountEntry {
  std::string root, mount_point, type, super_options, line;
};

std::vector<MountEntry> read_mountinfo(const std::string& path = "/proc/self/mountinfo") {
  std::vector<MountEntry> entries;
  for (const auto& line : split_lines(read_file(path))) {
    auto f = split(line, ' ');
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4) continue;
    entries.push_back({f[3], f[4], dash[1], dash[3], line});
  }
  return entries;
}

bool path_under(const std::string& path, const std::string& dir) {
  return path == dir || path.rfind(dir + "/", 0) == 0;
}

// Lazily detaches any mount below `dir` (deepest first), so that removing the
// directory never descends into a mounted host filesystem.
void detach_mounts_under(const std::string& dir) {
  std::vector<std::string> points;
  for (const auto& m : read_mountinfo())
    if (path_under(m.mount_point, dir)) points.push_back(m.mount_point);
  std::sort(points.rbegin(), points.rend());
  for (const auto& p : points) {
    record_leak("mount left at " + p);
    umount2(p.c_str(), MNT_DETACH);
  }
}

void remove_tree(const std::string& dir) {
  if (dir.empty() || !fs::exists(dir)) return;
  detach_mounts_under(dir);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) std::cerr << "warning: cannot remove " << dir << ": " << ec.message() << "\n";
}

}  // namespace

// ---- cgroups -------------------------------------------------------------------

std::vector<CgroupHierarchy> cgroup_hierarchies() {
  auto mounts = read_mountinfo();
  std::vector<CgroupHierarchy> result;
  for (const auto& line : split_lines(read_file("/proc/self/cgroup"))) {
    auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string own = line.substr(second + 1);
    auto wanted = split(controllers, ',');
    for (const auto& m : mounts) {
      bool v2 = m.type == "cgroup2";
      if (controllers.empty() != v2 || (m.type != "cgroup" && !v2)) continue;
      auto opts = split(m.super_options, ',');
      bool all = std::all_of(wanted.begin(), wanted.end(), [&](const std::string& c) {
        return std::find(opts.begin(), opts.end(), c) != opts.end();
      });
      if (!all) continue;
      // A mount of a sub-cgroup (inside a cgroup namespace) shows it as root.
      std::string rel = own;
      if (m.root != "/" && rel.rfind(m.root, 0) == 0) rel = rel.substr(m.root.size());
      if (rel == "/") rel.clear();
      result.push_back({m.mount_point, controllers, rel});
      break;
    }
  }
  return result;
}

std::string cgroup_dir(const std::string& controller, const std::string& cgroups_path) {
  for (const auto& h : cgroup_hierarchies()) {
    auto ctrls = split(h.controllers, ',');
    bool match = controller.empty()
                     ? h.controllers.empty()
                     : std::find(ctrls.begin(), ctrls.end(), controller) != ctrls.end();
    if (match) return h.mount + h.own + "/" + cgroups_path;
  }
  // Pure v2: every controller is in the one (unnamed) hierarchy.
  const auto all = cgroup_hierarchies();
  if (!controller.empty() && all.size() == 1 && all[0].controllers.empty()) {
    return cgroup_dir("", cgroups_path);
  }
  return "";
}

std::vector<std::string> cgroup_dirs(const std::string& cgroups_path) {
  std::vector<std::string> dirs;
  for (const auto& h : cgroup_hierarchies()) dirs.push_back(h.mount + h.own + "/" + cgroups_path);
  return dirs;
}

bool remove_cgroup_tree(const std::string& dir) {
  if (!fs::is_directory(dir)) return true;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) remove_cgroup_tree(e.path());
  // A frozen task never handles SIGKILL: thaw first (v1 freezer, v2 tree).
  if (fs::exists(dir + "/freezer.state")) std::ofstream(dir + "/freezer.state") << "THAWED";
  if (fs::exists(dir + "/cgroup.freeze")) std::ofstream(dir + "/cgroup.freeze") << "0";
  auto procs = [&] { return read_file(dir + "/cgroup.procs"); };
  for (const auto& pid : split_lines(procs()))
    if (!pid.empty()) ::kill(std::stoi(pid), SIGKILL);
  // A killed task leaves its cgroup asynchronously: rmdir says EBUSY until then.
  return wait_until([&] { return rmdir(dir.c_str()) == 0 || errno == ENOENT; }, 10s);
}

namespace {

std::set<std::string> controller_set(const std::string& text) {
  std::set<std::string> set;
  std::istringstream in(text);
  for (std::string c; in >> c;) set.insert(c);
  return set;
}

std::string subtree_control(const std::string& dir) {
  return read_file(dir + "/cgroup.subtree_control");
}

// "+c" / "-c" into <dir>/cgroup.subtree_control; "" or what failed.
std::string change_subtree_control(const std::string& dir, const std::string& change) {
  int fd = ::open((dir + "/cgroup.subtree_control").c_str(), O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::write(fd, change.data(), change.size()) == ssize_t(change.size());
  std::string failed = ok ? "" : " " + change + " (" + std::strerror(errno) + ")";
  if (fd >= 0) ::close(fd);
  return failed;
}

// The v2 tree's mount and this process's cgroup in it; empty if none.
std::pair<std::string, std::string> v2_mount_and_own() {
  for (const auto& h : cgroup_hierarchies())
    if (h.controllers.empty()) return {h.mount, h.mount + (h.own == "/" ? "" : h.own)};
  return {};
}

}  // namespace

SubtreeControlGuard::SubtreeControlGuard() : own_(v2_mount_and_own().second) {
  if (!own_.empty()) saved_.emplace_back(own_, subtree_control(own_));
}

void SubtreeControlGuard::watch(const std::string& cgroups_path) {
  if (own_.empty()) return;
  auto parts = split(cgroups_path, '/');
  std::erase(parts, "");
  if (parts.empty()) return;
  parts.pop_back();  // the container's own cgroup: removed by delete
  // An absolute cgroupsPath is placed below the tree's root.
  std::string dir = own_;
  if (cgroups_path.starts_with("/")) {
    dir = v2_mount_and_own().first;
    if (dir != own_) saved_.emplace(saved_.begin(), dir, subtree_control(dir));  // restored last
  }
  for (const auto& p : parts) {
    dir += "/" + p;
    if (fs::is_directory(dir)) saved_.emplace_back(dir, subtree_control(dir));
  }
}

SubtreeControlGuard::~SubtreeControlGuard() {
  try {
    // Children first: a controller a child enables cannot be disabled above.
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      const auto& [dir, saved] = *it;
      std::error_code ec;
      if (!fs::is_directory(dir, ec)) continue;
      const auto want = controller_set(saved), now = controller_set(subtree_control(dir));
      std::string failed;
      for (const auto& c : now)
        if (!want.contains(c)) failed += change_subtree_control(dir, "-" + c);
      for (const auto& c : want)
        if (!now.contains(c)) failed += change_subtree_control(dir, "+" + c);
      if (!failed.empty())
        record_leak("cgroup.subtree_control of " + dir + " not restored:" + failed);
    }
  } catch (const std::exception& e) {
    record_leak(std::string("restoring cgroup.subtree_control failed: ") + e.what());
  }
}

// ---- the runtime -------------------------------------------------------------

Runtime::Runtime() : root_("/tmp/" + unique_name() + "-root") {
  if (access(runtime_path().c_str(), X_OK) != 0)
    throw std::runtime_error("runtime " + runtime_path() +
                             " not found or not executable (build berth-runtime, or set "
                             "BERTH_TEST_RUNTIME=/usr/sbin/runc)");
  remove_tree(root_);
  fs::create_directories(root_);
}

Runtime::~Runtime() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_, ec))
    if (is_ours(e.path().filename().string()))
      record_leak("state left in runtime root: " + e.path().string());
  remove_tree(root_);
}

CommandResult Runtime::exec(const std::vector<std::string>& args, const ExecOptions& opts) const {
  std::vector<std::string> argv = {runtime_path(), "--root", root_};
  argv.insert(argv.end(), args.begin(), args.end());
  return exec_command(argv, opts);
}

// ---- bundles and containers ------------------------------------------------------

TempDir::TempDir() : path_("/tmp/" + unique_name()) {
  remove_tree(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  remove_tree(path_);
}

Bundle::Bundle(const Runtime& rt) : dir_("/tmp/" + unique_name()) {
  if (access(probe_path().c_str(), X_OK) != 0)
    throw std::runtime_error("probe " + probe_path() + " not found (build berth-probe)");
  remove_tree(dir_);
  // 0755, not mkdtemp's 0700: a container in a user namespace runs as an
  // unprivileged host uid and must still reach its rootfs.
  fs::create_directories(dir_);
  fs::permissions(dir_, fs::perms(0755));
  try {
    populate(rt);
  } catch (...) {
    remove_tree(dir_);  // no destructor runs for a half-built object
    throw;
  }
}

void Bundle::populate(const Runtime& rt) {
  auto mk = exec_command(
      {"bash", BERTH_SOURCE_DIR "/tests/scripts/make-rootfs.sh", rootfs(), probe_path()});
  if (mk.exit_code != 0) throw std::runtime_error("make-rootfs.sh failed:\n" + mk.err);
  auto spec = rt.exec({"spec", "--bundle", dir_}, {.cwd = dir_});
  config_ = Json::parse(read_file(dir_ + "/config.json"), nullptr, false);
  if (spec.exit_code != 0 || config_.is_discarded() || !config_.is_object()) {
    std::ostringstream msg;
    msg << "`spec` wrote no usable " << dir_ << "/config.json:\n" << spec;
    throw std::runtime_error(msg.str());
  }
  config_["process"]["terminal"] = false;  // no tty in tests
  config_["linux"]["cgroupsPath"] = fs::path(dir_).filename().string();
}

Bundle::~Bundle() {
  remove_tree(dir_);
}

void Bundle::save() const {
  std::ofstream out(dir_ + "/config.json", std::ios::trunc);
  out << config_.dump(2);
  if (!out) throw std::runtime_error("cannot write " + dir_ + "/config.json");
}

Container::Container(const Runtime& rt) : rt_(rt), bundle_(rt), id_(unique_name()) {}

Container::~Container() {
  try {
    rt_.exec({"delete", "--force", id_});
    if (fs::exists(state_dir())) {
      record_leak("state dir left after delete --force: " + state_dir());
      remove_tree(state_dir());
    }
    for (const auto& dir : cgroup_dirs()) {
      if (!fs::exists(dir)) continue;
      record_leak("cgroup left after delete --force: " + dir);
      if (!remove_cgroup_tree(dir)) std::cerr << "warning: cannot remove cgroup " << dir << "\n";
    }
  } catch (const std::exception& e) {
    record_leak("cleanup of container " + id_ + " failed: " + e.what());
  }
}

void Container::set_args(const std::vector<std::string>& args) {
  config()["process"]["args"] = args;
}

std::string Container::cgroups_path() const {
  return bundle_.config()["linux"].value("cgroupsPath", "");
}

std::vector<std::string> Container::cgroup_dirs() const {
  return berth::test::cgroup_dirs(cgroups_path());
}

CommandResult Container::run(const std::vector<std::string>& extra) {
  bundle_.save();
  std::vector<std::string> args = {"run", "--bundle", bundle_.dir()};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(id_);
  return rt_.exec(args);
}

CommandResult Container::create(const std::vector<std::string>& extra) {
  bundle_.save();
  std::vector<std::string> args = {"create", "--bundle", bundle_.dir(), "--pid-file",
                                   bundle_.dir() + "/pid"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(id_);
  auto r = rt_.exec(args, {.output_file = bundle_.dir() + "/container.log"});
  r.err = output();  // the runtime's messages went to the same file
  return r;
}

CommandResult Container::start() {
  return rt_.exec({"start", id_});
}

CommandResult Container::kill(const std::string& signal) {
  return rt_.exec({"kill", id_, signal});
}

CommandResult Container::remove(bool force) {
  if (force) return rt_.exec({"delete", "--force", id_});
  return rt_.exec({"delete", id_});
}

CommandResult Container::state() {
  return rt_.exec({"state", id_});
}

Json Container::state_json() {
  auto r = state();
  Json j = Json::parse(r.out, nullptr, false);
  if (r.exit_code != 0 || j.is_discarded() || !j.is_object()) {
    std::ostringstream msg;
    msg << "`state` gave no JSON object:\n" << r;
    throw std::runtime_error(msg.str());
  }
  return j;
}

bool Container::wait_for_status(const std::string& status, std::chrono::milliseconds timeout) {
  return wait_until([&] { return state_json().value("status", "") == status; }, timeout);
}

std::string Container::output() const {
  return read_file(bundle_.dir() + "/container.log");
}

// ---- expectations ---------------------------------------------------------------

int capability_number(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  cap_value_t value;
  if (cap_from_name(lower.c_str(), &value) != 0)
    throw std::runtime_error("unknown capability " + name);
  return value;
}

uint64_t capability_mask(const Json& names) {
  uint64_t mask = 0;
  if (!names.is_array()) return 0;
  for (const auto& n : names) mask |= uint64_t{1} << capability_number(n.get<std::string>());
  return mask;
}

std::map<std::string, std::string> parse_status(const std::string& text) {
  std::map<std::string, std::string> fields;
  for (const auto& line : split_lines(text)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    fields[line.substr(0, colon)] = value;
  }
  return fields;
}

// ---- the run's before/after check -----------------------------------------------

namespace {

struct Snapshot {
  std::multiset<std::string> mounts;  // mount point + root + type
  std::string v2_cgroup;              // this process's cgroup in the v2 tree
  std::string subtree_control;        // and its cgroup.subtree_control
};

Snapshot take_snapshot() {
  Snapshot s;
  for (const auto& m : read_mountinfo())
    s.mounts.insert(m.mount_point + " " + m.root + " " + m.type);
  s.v2_cgroup = v2_mount_and_own().second;
  if (!s.v2_cgroup.empty()) s.subtree_control = subtree_control(s.v2_cgroup);
  return s;
}

// Controllers enabled for children (tests use SubtreeControlGuard).
void check_subtree_control(const Snapshot& before) {
  if (before.v2_cgroup.empty()) return;
  const std::string after = subtree_control(before.v2_cgroup);
  if (controller_set(after) != controller_set(before.subtree_control))
    record_leak(before.v2_cgroup + "/cgroup.subtree_control changed during the run: \"" +
                before.subtree_control + "\" -> \"" + after + "\"");
}

// Everything named with this process's prefix: cgroups below our own cgroup
// in every hierarchy, and temp dirs. Found ones are leaks; they are removed.
void sweep_named_leftovers() {
  for (const auto& h : cgroup_hierarchies()) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(h.mount + h.own, ec)) {
      if (!e.is_directory() || !is_ours(e.path().filename().string())) continue;
      record_leak("cgroup left: " + e.path().string());
      remove_cgroup_tree(e.path());
    }
  }
  for (const auto& e : fs::directory_iterator("/tmp")) {
    if (!is_ours(e.path().filename().string())) continue;
    record_leak("temp dir left: " + e.path().string());
    remove_tree(e.path());
  }
}

void check_mounts(const Snapshot& before) {
  Snapshot after = take_snapshot();
  std::vector<std::string> added;
  std::set_difference(after.mounts.begin(), after.mounts.end(), before.mounts.begin(),
                      before.mounts.end(), std::back_inserter(added));
  for (const auto& m : added) record_leak("mount added during the run: " + m);
  if (before.mounts.size() != after.mounts.size())
    std::cerr << "mount count: " << before.mounts.size() << " before, " << after.mounts.size()
              << " after\n";
}

bool listing_only(const Catch::ConfigData& c) {
  return c.listTests || c.listTestNamesOnly || c.listTags || c.listReporters;
}

}  // namespace

}  // namespace berth::test

int main(int argc, char** argv) {
  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  if (berth::test::listing_only(session.configData()) || geteuid() != 0) {
    return berth::test::finish_skips(session.run());
  }

  auto before = berth::test::take_snapshot();
  int failed = session.run();
  berth::test::sweep_named_leftovers();
  berth::test::check_mounts(before);
  berth::test::check_subtree_control(before);
  if (!berth::test::leaks().empty()) {
    std::cerr << "FAILED: " << berth::test::leaks().size()
              << " leftover(s) from this run (see LEAK lines above)\n";
    return berth::test::finish_skips(failed ? failed : 1);
  }
  return berth::test::finish_skips(failed);
}
