// Privileges: capabilities, seccomp, no_new_privs, and the runtime's own
// leftovers (fds, cwd, /proc/self/exe) that past runc CVEs turned into escapes.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "tests/integration/harness.h"

using namespace berth::test;

namespace {

uint64_t hex(const std::string& s) {
  return std::stoull(s, nullptr, 16);
}

Json caps_at(const Json& config, const char* set) {
  const Json& caps = config["process"].value("capabilities", Json::object());
  return caps.value(set, Json::array());
}

// What the kernel can grant: an ambient capability must also be permitted and
// inheritable (capabilities(7)); runtimes skip the others, as runc does.
uint64_t expected_ambient(const Json& config) {
  return capability_mask(caps_at(config, "ambient")) &
         capability_mask(caps_at(config, "inheritable")) &
         capability_mask(caps_at(config, "permitted"));
}

std::map<std::string, std::string> run_status(Container& c) {
  c.set_args({"/bin/probe", "status"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  return parse_status(r.out);
}

// An fd the test process leaks on purpose into the runtime it starts: the
// runtime must not hand it to the container. A high number, so that the
// runtime's own fds (a Go exec's ExtraFiles start at 3) do not replace it.
class InheritedDirFd {
 public:
  explicit InheritedDirFd(const char* path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    REQUIRE(fd >= 0);
    fd_ = fcntl(fd, F_DUPFD, 200);  // without FD_CLOEXEC: inherited on exec
    close(fd);
    REQUIRE(fd_ >= 200);
  }
  ~InheritedDirFd() { close(fd_); }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

}  // namespace

TEST_CASE("the container's capability sets are exactly the spec's",
          "[privileged][security][caps]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  SECTION("the runtime's default spec") {}
  SECTION("a custom set, with an ambient capability") {
    Json set = {"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"};
    c.config()["process"]["capabilities"] = {{"bounding", set},
                                             {"effective", set},
                                             {"permitted", set},
                                             {"inheritable", {"CAP_KILL"}},
                                             {"ambient", {"CAP_KILL"}}};
  }
  auto status = run_status(c);
  INFO("capabilities in the spec: " << c.config()["process"]["capabilities"].dump());
  CHECK(hex(status["CapEff"]) == capability_mask(caps_at(c.config(), "effective")));
  CHECK(hex(status["CapBnd"]) == capability_mask(caps_at(c.config(), "bounding")));
  CHECK(hex(status["CapPrm"]) == capability_mask(caps_at(c.config(), "permitted")));
  CHECK(hex(status["CapInh"]) == capability_mask(caps_at(c.config(), "inheritable")));
  CHECK(hex(status["CapAmb"]) == expected_ambient(c.config()));
  // Root in the container is not root on the host: far fewer than all caps.
  CHECK(hex(status["CapBnd"]) != hex(parse_status(read_file("/proc/self/status"))["CapBnd"]));
}

TEST_CASE("noNewPrivileges sets the no_new_privs bit", "[privileged][security]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  bool nnp = GENERATE(true, false);
  c.config()["process"]["noNewPrivileges"] = nnp;
  // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, which the
  // container does not have once its caps are dropped; no filter here.
  c.config()["linux"].erase("seccomp");
  auto status = run_status(c);
  CHECK(status["NoNewPrivs"] == (nnp ? "1" : "0"));
}

TEST_CASE("a seccomp filter from the spec is installed and denies with its errno",
          "[privileged][security][seccomp]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/sh", "-c", "/bin/probe status && /bin/probe syscall-denied"});
  SECTION("with the filter") {
    c.config()["linux"]["seccomp"] = {
        {"defaultAction", "SCMP_ACT_ALLOW"},
        {"syscalls",
         {{{"names", {"keyctl"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 1}},
          {{"names", {"unshare"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 38}}}}};
    auto r = c.run();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    auto status = parse_status(r.out);
    CHECK(status["Seccomp"] == "2");  // SECCOMP_MODE_FILTER
    CHECK(r.out.find("keyctl=EPERM\n") != std::string::npos);
    CHECK(r.out.find("unshare=ENOSYS\n") != std::string::npos);
  }
  SECTION("without a filter (control: the same calls are not denied)") {
    c.config()["linux"].erase("seccomp");
    auto r = c.run();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    CHECK(parse_status(r.out)["Seccomp"] == "0");
    CHECK(r.out.find("keyctl=EPERM\n") == std::string::npos);
    CHECK(r.out.find("unshare=ENOSYS\n") == std::string::npos);
  }
}

TEST_CASE("berth-only: berth's default spec confines the container with seccomp",
          "[privileged][security][seccomp][berth-only]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc's `spec` writes no seccomp profile");
  Runtime rt;
  Container c(rt);
  REQUIRE(c.config()["linux"].contains("seccomp"));
  c.set_args({"/bin/sh", "-c", "/bin/probe status && /bin/probe syscall-denied"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto status = parse_status(r.out);
  CHECK(status["Seccomp"] == "2");
  CHECK(status["NoNewPrivs"] == "1");
  // Docker's profile denies all three for a container without CAP_SYS_ADMIN.
  CHECK(r.out.find("keyctl=EPERM\n") != std::string::npos);
  CHECK(r.out.find("unshare=EPERM\n") != std::string::npos);
  CHECK(r.out.find("mount=EPERM\n") != std::string::npos);
}

TEST_CASE("no fd of the runtime or its caller reaches the container",
          "[privileged][security][fds]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  InheritedDirFd leaked("/tmp");
  Container c(rt);
  c.set_args({"/bin/probe", "fds"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.empty());
}

TEST_CASE("the cwd resolves inside the container root, even through a leaked fd",
          "[privileged][security][fds]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  SECTION("a plain cwd") {
    Container c(rt);
    c.config()["process"]["cwd"] = "/tmp";
    c.set_args({"/bin/probe", "cwd"});
    auto r = c.run();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == "/tmp\n");
  }
  SECTION("cwd /proc/self/fd/N naming a host directory (CVE-2024-21626)") {
    InheritedDirFd leaked("/tmp");
    Container c(rt);
    c.config()["process"]["cwd"] = "/proc/self/fd/" + std::to_string(leaked.get());
    c.set_args({"/bin/probe", "cwd"});
    auto r = c.run();
    INFO(r);
    // Refusing is right; so is a cwd inside the root. Running with the host's
    // /tmp as cwd is the escape: getcwd() then reports it unreachable.
    CHECK(r.err.find("probe: getcwd") == std::string::npos);
    if (r.exit_code == 0) CHECK(r.out.rfind("/", 0) == 0);
  }
}

TEST_CASE("the container's process starts with no blocked signals",
          "[privileged][security][signals]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  // A runtime that blocks signals for itself (signalfd, a sync pipe) must
  // restore the mask before exec: a blocked SIGTERM makes `kill` a no-op.
  auto status = run_status(c);
  CHECK(hex(status["SigBlk"]) == 0);
}

TEST_CASE("/proc/self/exe in the container is the container's binary, not the runtime",
          "[privileged][security]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "exe"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  // CVE-2019-5736: a runtime binary reachable through /proc/self/exe could be
  // overwritten from inside.
  CHECK(r.out == "/bin/probe\n");
}

TEST_CASE("the runtime's own syscalls do not depend on what the seccomp profile allows",
          "[privileged][security][seccomp]") {
  REQUIRE_PRIVILEGED();
  BERTH_ONLY("runc's `spec` writes no seccomp profile to trim");
  // Berth's default profile without close_range and getcwd, as in older
  // Docker profiles: the runtime marks fds close-on-exec and checks the cwd
  // itself, and must not fail because the user's filter refuses them (with
  // noNewPrivileges off, the filter is loaded before those steps).
  bool nnp = GENERATE(false, true);
  Runtime rt;
  Container c(rt);
  REQUIRE(c.config()["linux"].contains("seccomp"));
  c.config()["process"]["noNewPrivileges"] = nnp;
  c.config()["process"]["cwd"] = "/tmp";
  auto trim_profile = [&] {
    Json& profile = c.config()["linux"]["seccomp"];
    profile["defaultAction"] = "SCMP_ACT_ERRNO";
    for (auto& rule : profile["syscalls"]) {
      Json kept = Json::array();
      for (const auto& name : rule["names"]) {
        if (name != "close_range" && name != "getcwd") kept.push_back(name);
      }
      rule["names"] = kept;
    }
    auto& rules = profile["syscalls"];
    rules.erase(std::remove_if(rules.begin(), rules.end(),
                               [](const Json& rule) { return rule["names"].empty(); }),
                rules.end());
  };
  INFO("noNewPrivileges " << nnp);
  SECTION("run") {
    trim_profile();
    c.set_args({"/bin/probe", "pid"});
    auto r = c.run();
    INFO(r);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "1\n");
  }
  SECTION("exec") {
    c.set_args({"/bin/probe", "sleep", "600"});
    auto created = c.create();
    INFO(created);
    REQUIRE(created.exit_code == 0);
    REQUIRE(c.start().exit_code == 0);
    // exec reads config.json again: only the exec'd processes get the
    // trimmed profile.
    trim_profile();
    c.bundle().save();
    auto r = rt.exec({"exec", c.id(), "/bin/probe", "status"});
    INFO(r);
    CHECK(r.exit_code == 0);
    CHECK(parse_status(r.out)["Seccomp"] == "2");
    // getcwd is refused to the process itself: the filter is in force.
    auto cwd = rt.exec({"exec", c.id(), "/bin/probe", "cwd"});
    INFO(cwd);
    CHECK(cwd.err.rfind("probe: getcwd: E", 0) == 0);
  }
}
