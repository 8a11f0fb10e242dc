// The privileged integration-test harness: runs an OCI runtime CLI (berth's or
// runc, chosen by BERTH_TEST_RUNTIME) against real bundles and cleans up after
// every test, failing or not.
//
//   Runtime rt;                       // a private --root under /tmp
//   Container c(rt);                  // a bundle: busybox + probe, `spec` config
//   c.set_args({"/bin/probe", "pid"});
//   auto r = c.run();                 // foreground `run`, stdout captured
//   REQUIRE(r.exit_code == 0);
//
// Everything a test creates is named "berth-it-<pid>-<n>" (temp dirs, container
// ids, cgroupsPath), so main() can prove after the run that nothing of this
// process was left behind, even while other test runs share the machine.
//
// Test code: exceptions are fine here (Catch2 needs them); a harness failure
// (a command that hangs past its timeout, a bundle that cannot be built)
// throws std::runtime_error and Catch reports it as the test's failure.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/skip.h"

namespace berth::test {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// ---- environment -----------------------------------------------------------

// BERTH_TEST_RUNTIME, or BERTH_BIN_DIR/berth-runtime.
const std::string& runtime_path();
// False for runc (the binary's name or its --version says so).
bool runtime_is_berth();
// BERTH_BIN_DIR/berth-probe (BERTH_TEST_PROBE overrides).
const std::string& probe_path();
// "berth-it-<pid>": the prefix of every name this process creates.
const std::string& name_prefix();
// True for a name made by unique_name() in this process.
bool is_ours(const std::string& name);
// name_prefix() + "-<n>", unique within the process.
std::string unique_name();

// Skips the current test (BERTH_SKIP, tests/skip.h) unless the runtime is
// berth.
#define BERTH_ONLY(why)                                                                       \
  do {                                                                                        \
    if (!::berth::test::runtime_is_berth()) {                                                 \
      BERTH_SKIP("[berth-only] " << why << "; runtime is " << ::berth::test::runtime_path()); \
    }                                                                                         \
  } while (0)

// Skips unless the test runs as root. (A missing runtime or probe is a
// failure, not a skip: Runtime and Bundle throw.)
#define REQUIRE_PRIVILEGED()                                  \
  do {                                                        \
    if (auto why = ::berth::test::privileged_skip_reason()) { \
      BERTH_SKIP(*why);                                       \
    }                                                         \
  } while (0)
std::optional<std::string> privileged_skip_reason();

// ---- commands --------------------------------------------------------------

struct CommandResult {
  std::string command;  // for messages
  int exit_code = -1;   // 128+N when killed by signal N, as a shell reports it
  std::string out;
  std::string err;
};
std::ostream& operator<<(std::ostream& os, const CommandResult& r);

struct ExecOptions {
  std::chrono::seconds timeout = 60s;
  // Send stdout and stderr to this file (appended) instead of capturing them:
  // for `create`, whose container keeps the runtime's stdio open long after
  // the runtime has exited.
  std::string output_file;
  std::string cwd;
};

// fork + exec with stdin from /dev/null; throws when the command outlives
// its timeout (after killing its process group).
CommandResult exec_command(const std::vector<std::string>& argv, const ExecOptions& opts = {});

// Polls `cond` until it is true or `timeout` passes; no fixed sleeps.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 30s,
                std::chrono::milliseconds interval = 20ms);

// ---- the runtime -------------------------------------------------------------

class Runtime {
 public:
  Runtime();  // creates the private state root
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const std::string& root() const { return root_; }
  // RUNTIME --root ROOT ARGS...
  CommandResult exec(const std::vector<std::string>& args, const ExecOptions& opts = {}) const;

 private:
  std::string root_;
};

// ---- cgroups -------------------------------------------------------------------

struct CgroupHierarchy {
  std::string mount;        // /sys/fs/cgroup/memory, /sys/fs/cgroup/unified
  std::string controllers;  // "memory", "name=systemd", "" for v2
  std::string own;          // this process's cgroup in it ("/process_api/x")
};
// Every mounted hierarchy this process belongs to (/proc/self/cgroup joined
// with /proc/self/mountinfo).
std::vector<CgroupHierarchy> cgroup_hierarchies();
// The directory of a relative cgroupsPath in the hierarchy carrying
// `controller` ("memory", "pids", "" = the v2 tree), or "" if none.
std::string cgroup_dir(const std::string& controller, const std::string& cgroups_path);
// The directories of a relative cgroupsPath in every hierarchy.
std::vector<std::string> cgroup_dirs(const std::string& cgroups_path);
// Kills what is left in a cgroup directory tree and removes it; true if
// nothing remains.
bool remove_cgroup_tree(const std::string& dir);

// Saves cgroup.subtree_control of this process's cgroup in the v2 tree, and
// of the existing parents of each cgroupsPath given to watch(), and puts each
// back on destruction, deepest first: a runtime enabling a controller for a
// container (hugepageLimits on a hybrid host) enables it in every ancestor,
// as runc does, and never disables it again. Declare it before the Container
// so that it restores after the container's cgroup is gone. A value it cannot
// put back is recorded as a leak.
class SubtreeControlGuard {
 public:
  SubtreeControlGuard();
  ~SubtreeControlGuard();
  SubtreeControlGuard(const SubtreeControlGuard&) = delete;
  SubtreeControlGuard& operator=(const SubtreeControlGuard&) = delete;
  void watch(const std::string& cgroups_path);

 private:
  std::string own_;                                         // "" without a v2 tree
  std::vector<std::pair<std::string, std::string>> saved_;  // dir, its subtree_control
};

// ---- bundles and containers ------------------------------------------------------

// An empty directory /tmp/<unique_name()>, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A bundle dir under /tmp: rootfs from make-rootfs.sh, config.json from
// `RUNTIME spec`, with terminal off (tests have no tty) and a unique relative
// cgroupsPath. Removed on destruction.
class Bundle {
 public:
  explicit Bundle(const Runtime& rt);
  ~Bundle();
  Bundle(const Bundle&) = delete;
  Bundle& operator=(const Bundle&) = delete;

  const std::string& dir() const { return dir_; }
  std::string rootfs() const { return dir_ + "/rootfs"; }
  Json& config() { return config_; }
  const Json& config() const { return config_; }
  void save() const;  // writes config.json

 private:
  void populate(const Runtime& rt);

  std::string dir_;
  Json config_;
};

// One container: its bundle, its id, and on destruction `delete --force`, a
// check that its cgroups and state dir are gone (anything left is recorded as
// a leak, which fails the run, and removed), then the bundle's removal.
class Container {
 public:
  explicit Container(const Runtime& rt);
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  const std::string& id() const { return id_; }
  Bundle& bundle() { return bundle_; }
  Json& config() { return bundle_.config(); }
  void set_args(const std::vector<std::string>& args);
  std::string cgroups_path() const;
  std::vector<std::string> cgroup_dirs() const;
  std::string state_dir() const { return rt_.root() + "/" + id_; }

  // Each saves config.json first where it matters.
  CommandResult run(const std::vector<std::string>& extra = {});  // foreground
  // Container output goes to output(). `extra` flags (--console-socket S)
  // come before the id.
  CommandResult create(const std::vector<std::string>& extra = {});
  CommandResult start();
  CommandResult kill(const std::string& signal);
  CommandResult remove(bool force = false);  // `delete`
  CommandResult state();
  // `state` parsed; throws if the command fails or prints no JSON object.
  Json state_json();
  // Polls `state` until "status" is `status`.
  bool wait_for_status(const std::string& status, std::chrono::milliseconds timeout = 30s);
  // What a created container wrote to stdout/stderr so far.
  std::string output() const;

 private:
  const Runtime& rt_;
  Bundle bundle_;
  std::string id_;
};

// ---- expectations ---------------------------------------------------------------

// "CAP_KILL" -> 5; throws on an unknown name.
int capability_number(const std::string& name);
// The /proc/<pid>/status hex mask of a list of names (a missing list is 0).
uint64_t capability_mask(const Json& names);
// "CapEff:\t0000...\n..." -> {"CapEff": "0000..."}; values trimmed.
std::map<std::string, std::string> parse_status(const std::string& text);
std::vector<std::string> split_lines(const std::string& text);
// A host symlink's target ("" if unreadable).
std::string read_link(const std::string& path);
std::string read_file(const std::string& path);

// Records a leak found while cleaning up; main() fails the run if any.
void record_leak(const std::string& what);

}  // namespace berth::test
