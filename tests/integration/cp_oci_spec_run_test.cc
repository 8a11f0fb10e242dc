// A config.json built by build_oci_spec (controlplane/agent/oci_spec.h) from
// the busybox test rootfs runs to completion under berth-runtime and under
// runc alike, with the expected output and exit code: in network mode host,
// and in a network namespace the test made.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "controlplane/agent/oci_spec.h"
#include "tests/integration/harness.h"

extern char** environ;

namespace berth::test {
namespace {

namespace fs = std::filesystem;

// The runtimes to run the spec with: berth's, and runc where installed.
std::vector<std::string> runtimes() {
  std::vector<std::string> out = {BERTH_BIN_DIR "/berth-runtime"};
  for (const char* runc : {"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"}) {
    if (::access(runc, X_OK) == 0) {
      out.emplace_back(runc);
      break;
    }
  }
  if (out.size() == 1) WARN("runc is not installed: only berth-runtime ran the specs");
  return out;
}

// A network namespace held by `unshare -n sleep` (no /run/netns mount to
// leak); gone with its process.
class Netns {
 public:
  Netns() {
    const char* argv[] = {"unshare", "--net", "sleep", "3600", nullptr};
    // Its stdio is /dev/null: it must not hold the test run's output open.
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    for (int fd : {0, 1, 2}) posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", O_RDWR, 0);
    int rc = ::posix_spawnp(&pid_, "unshare", &fa, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot spawn unshare");
    std::string own = read_link("/proc/self/ns/net");
    bool ready = wait_until([&] {
      std::string l = read_link(path());
      return !l.empty() && l != own;
    });
    if (!ready) throw std::runtime_error("unshare --net did not make a network namespace");
  }
  ~Netns() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  std::string path() const { return "/proc/" + std::to_string(pid_) + "/ns/net"; }

 private:
  pid_t pid_ = -1;
};

struct Fixture {
  TempDir dir;
  std::string rootfs = dir.path() + "/rootfs";
  cp::TaskDefinition def;
  rootfs::ImageConfig image;
  cp::MicrohostView mh;

  Fixture() {
    auto mk = exec_command(
        {"bash", BERTH_SOURCE_DIR "/tests/scripts/make-rootfs.sh", rootfs, probe_path()});
    if (mk.exit_code != 0) throw std::runtime_error("make-rootfs.sh failed:\n" + mk.err);
    write("hosts", "127.0.0.1 localhost\n");
    write("resolv.conf", "nameserver 127.0.0.53\n");
    write("hostname", "task-host\n");
    mh.hosts_file = dir.path() + "/hosts";
    mh.resolv_conf_file = dir.path() + "/resolv.conf";
    mh.hostname_file = dir.path() + "/hostname";
    image.cmd = {"/bin/sh", "-c", "exit 9"};
    image.env = {"FROM_IMAGE=1"};
    cp::ContainerDefinition c;
    c.name = "main";
    c.image = "busybox";
    c.memory_mib = 64;
    def.family = "spec-run";
    def.containers.push_back(c);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir.path() + "/" + name) << text;
  }
  // config.json in a bundle dir of its own (the rootfs is shared by path).
  std::string bundle() {
    cp::ContainerBuild b{&def, &def.containers[0], nullptr, &image, rootfs, mh, "0123456789ab"};
    auto spec = cp::build_oci_spec(b);
    if (!spec) FAIL(spec.error().str());
    std::string bdir = dir.path() + "/bundle-" + unique_name();
    fs::create_directories(bdir);
    std::ofstream(bdir + "/config.json") << spec->dump(2);
    return bdir;
  }
};

CommandResult run(const std::string& runtime, const std::string& bundle) {
  TempDir root;
  return exec_command({runtime, "--root", root.path(), "run", "--bundle", bundle, unique_name()},
                      {.timeout = 120s});
}

}  // namespace

// The definition of the host-mode case: a shell that reports what the
// spec decided.
static void host_mode_definition(cp::ContainerDefinition& c) {
  c.entry_point = {"/bin/sh", "-c"};
  c.command = {
      "echo out:$FROM_IMAGE:$GREETING:$HOSTNAME; hostname; cat /etc/hostname; "
      "cat /etc/resolv.conf; /bin/probe id; /bin/probe rlimit NOFILE; /bin/probe rlimit NPROC; "
      "pwd; echo tmpfs > /scratch/f && cat /scratch/f; "
      "(echo x > /written) 2>/dev/null || echo readonly; exit 7"};
  c.ulimits = {{"nproc", 500, 600}};
  c.environment = {{"GREETING", "hi"}};
  c.user = "nobody";
  c.working_directory = "/tmp";
  c.readonly_root_filesystem = true;
  c.linux_parameters.tmpfs = {{"/scratch", 8, {}}};
}

TEST_CASE("cp oci spec run: host mode, output and exit code under each runtime",
          "[cp-oci-spec-run]") {
  REQUIRE_PRIVILEGED();
  // Fargate's nofile, or this host's hard limit where it is lower.
  struct rlimit rl {};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
  uint64_t nofile = std::min<uint64_t>(65535, rl.rlim_max);
  for (const auto& rt : runtimes()) {
    CAPTURE(rt);
    // A fresh rootfs each: runc gives a tmpfs the mode of a mount point
    // that already exists, and the first run would have made /scratch.
    Fixture f;
    host_mode_definition(f.def.containers[0]);
    CommandResult r = run(rt, f.bundle());
    CAPTURE(r);
    CHECK(r.exit_code == 7);
    auto lines = split_lines(r.out);
    REQUIRE(lines.size() >= 10);
    CHECK(lines[0] == "out:1:hi:0123456789ab");
    CHECK(lines[1] == "0123456789ab");
    CHECK(lines[2] == "task-host");
    CHECK(lines[3] == "nameserver 127.0.0.53");
    CHECK(lines[4] == "uid=65534 gid=65534 groups=");
    CHECK(lines[5] == fmt::format("{} {}", nofile, nofile));
    CHECK(lines[6] == "500 600");
    CHECK(lines[7] == "/tmp");
    CHECK(lines[8] == "tmpfs");
    CHECK(lines[9] == "readonly");
  }
}

TEST_CASE("cp oci spec run: in the task's network namespace under each runtime",
          "[cp-oci-spec-run]") {
  REQUIRE_PRIVILEGED();
  Fixture f;
  Netns ns;
  f.mh.netns_path = ns.path();
  f.def.containers[0].command = {"/bin/probe", "ns", "net"};
  // The image's Cmd is replaced; its (absent) Entrypoint stays.
  std::string bundle = f.bundle();
  for (const auto& rt : runtimes()) {
    CAPTURE(rt);
    CommandResult r = run(rt, bundle);
    CAPTURE(r);
    CHECK(r.exit_code == 0);
    auto lines = split_lines(r.out);
    REQUIRE_FALSE(lines.empty());
    CHECK(lines.front() == read_link(ns.path()));
  }
  // Without a command of its own the image's Cmd runs.
  f.def.containers[0].command.clear();
  std::string image_cmd = f.bundle();
  for (const auto& rt : runtimes()) {
    CAPTURE(rt);
    CHECK(run(rt, image_cmd).exit_code == 9);
  }
}

}  // namespace berth::test
