// CVE-2019-5736: a container overwrites the runtime's binary on the host.
// The image has /bin/evil = "#!/proc/self/exe"; when the runtime execs it,
// the kernel runs the runtime's own exe inside the container. The attacker,
// pid 1 of the container (`probe attack-exe`), opens that process's
// /proc/PID/exe, waits for it to exit and reopens the handle for writing.
// berth-runtime runs its container-side steps from a copy no container can
// write (runtime/sealed_exe.h): the attack must fail and the host's binary
// stay as built. The attacked binaries are copies in a temp dir, so that a
// successful attack cannot corrupt the build. The shim's cases (health
// checks, initProcessEnabled) are in shim_test.cc.
#include <filesystem>

#include "tests/integration/attack.h"
#include "tests/integration/harness.h"

using namespace berth::test;

namespace {

// The attacker's container, started by a copy of berth-runtime (run -d):
// pid 1 is the attacker, /out its log, /bin/evil the script.
struct Attacker {
  explicit Attacker(std::string bin_subdir = "bin") : bins(std::move(bin_subdir)) {
    c.set_args({"/bin/probe", "attack-exe", "/out/attack.log"});
    add_out_mount(c.config(), out.path());
    add_evil_script(c.bundle().rootfs(), "/proc/self/exe");
    c.bundle().save();
    auto r = runtime({"run", "-d", "--bundle", c.bundle().dir(), c.id()},
                     {.output_file = out.path() + "/container.out"});
    INFO(r);
    REQUIRE(r.exit_code == 0);
  }
  CommandResult runtime(const std::vector<std::string>& args, const ExecOptions& o = {}) const {
    std::vector<std::string> argv = {bins.path("berth-runtime"), "--root", rt.root()};
    argv.insert(argv.end(), args.begin(), args.end());
    return exec_command(argv, o);
  }
  // The same command with stderr on `err`, in the background.
  pid_t spawn(const std::vector<std::string>& args, const FullPipe& err) const {
    std::vector<std::string> argv = {bins.path("berth-runtime"), "--root", rt.root()};
    argv.insert(argv.end(), args.begin(), args.end());
    return spawn_with_stderr(argv, err.writer());
  }
  int pid() const {
    auto r = runtime({"state", c.id()});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    return Json::parse(r.out)["pid"].get<int>();
  }
  AttackLog wait_log(bool (AttackLog::*what)() const) const {
    AttackLog l;
    wait_until(
        [&] {
          l = read_attack_log(out.path() + "/attack.log");
          return (l.*what)();
        },
        120s);
    return l;
  }
  // Once the attacker holds the exe of the process blocked on `err`, lets
  // that process go (and waits for `child`, if any), then checks the
  // attacker's verdict.
  void finish(FullPipe& err, pid_t child, const std::string& what) {
    wait_log(&AttackLog::found);
    CHECK(err.drain());
    INFO("the runtime's binary in the container wrote: " << err.text());
    if (child > 0) wait_child(child);
    check_attack_failed(wait_log(&AttackLog::done), bins, "berth-runtime", what);
  }

  Runtime rt;
  BinaryCopies bins;
  TempDir out;
  Container c{rt};
};

}  // namespace

TEST_CASE("CVE-2019-5736: `exec` of #!/proc/self/exe cannot overwrite berth-runtime",
          "[privileged][security][cve]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("attacks berth-runtime's binary");
  Attacker a;
  // The exec'd runtime binary prints its usage error into a full pipe and
  // waits there until the attacker holds its exe.
  FullPipe err;
  pid_t exec = a.spawn({"exec", a.c.id(), "/bin/evil"}, err);
  a.finish(err, exec, "berth-runtime exec");
}

TEST_CASE("CVE-2019-5736: `exec` with the sealed memfd fallback cannot overwrite berth-runtime",
          "[privileged][security][cve]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("attacks berth-runtime's binary");
  // A ',' in the binary's directory rules the overlay out (sealed_exe.cc):
  // the runtime runs from a sealed memfd copy instead.
  Attacker a("bin,memfd");
  FullPipe err;
  pid_t exec = a.spawn({"exec", a.c.id(), "/bin/evil"}, err);
  a.finish(err, exec, "berth-runtime exec, memfd fallback");
  CHECK(a.wait_log(&AttackLog::done).text.find("exe=/memfd:berth-sealed-exe") != std::string::npos);
}

TEST_CASE("CVE-2019-5736: `run` of #!/proc/self/exe cannot overwrite berth-runtime",
          "[privileged][security][cve]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("attacks berth-runtime's binary");
  Attacker a;
  // A second container in the attacker's pid namespace whose process is the
  // script: its init execs the runtime's binary there.
  Container victim(a.rt);
  victim.set_args({"/bin/evil"});
  add_evil_script(victim.bundle().rootfs(), "/proc/self/exe");
  for (auto& ns : victim.config()["linux"]["namespaces"]) {
    if (ns["type"] == "pid") ns["path"] = "/proc/" + std::to_string(a.pid()) + "/ns/pid";
  }
  victim.bundle().save();
  FullPipe err;
  pid_t run = a.spawn({"run", "-d", "--bundle", victim.bundle().dir(), victim.id()}, err);
  CHECK(wait_child(run) == 0);
  a.finish(err, -1, "berth-runtime run");
}
