// Capabilities: name resolution and its errors, then the real sets a forked
// child ends up with after prepare_capabilities + apply_capabilities, as the
// kernel reports them in /proc/self/status.
#include "runtime/caps.h"

#include <fcntl.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "tests/skip.h"

#include "common/fd.h"

using berth::UniqueFd;
using berth::runtime::apply_capabilities;
using berth::runtime::Capabilities;
using berth::runtime::prepare_capabilities;
using berth::runtime::resolve_capabilities;

namespace {

bool has_effective_setpcap() {
  cap_t caps = cap_get_proc();
  if (caps == nullptr) return false;
  cap_flag_value_t v = CAP_CLEAR;
  const bool ok = cap_get_flag(caps, CAP_SETPCAP, CAP_EFFECTIVE, &v) == 0 && v == CAP_SET;
  cap_free(caps);
  return ok;
}

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// What the child reports: the Cap* lines of /proc/self/status, plus
// "KeepCaps:" lines, or "error: <message>" if a step failed.
std::string status_caps() {
  UniqueFd fd(open("/proc/self/status", O_RDONLY | O_CLOEXEC));
  if (!fd) return "error: open /proc/self/status\n";
  std::istringstream in(read_all(fd.get()));
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.starts_with("Cap")) out += line + "\n";
  }
  return out;
}

// Forks, runs prepare + apply in the child (which is what they are for: they
// change the calling process for good) and returns what the child wrote.
std::string caps_in_child(const Capabilities& caps) {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  UniqueFd rd(fds[0]), wr(fds[1]);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::string out;
    if (auto r = prepare_capabilities(caps); !r) {
      out = "error: " + r.error().str() + "\n";
    } else {
      out = "KeepCapsAfterPrepare: " + std::to_string(prctl(PR_GET_KEEPCAPS)) + "\n";
      if (auto a = apply_capabilities(caps); !a) {
        out += "error: " + a.error().str() + "\n";
      } else {
        out += "KeepCapsAfterApply: " + std::to_string(prctl(PR_GET_KEEPCAPS)) + "\n";
        out += status_caps();
      }
    }
    write_all(wr.get(), out);
    _exit(0);
  }
  wr.reset();
  std::string out = read_all(rd.get());
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  REQUIRE(r == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  return out;
}

std::map<std::string, std::string> parse_report(const std::string& report) {
  std::map<std::string, std::string> out;
  std::istringstream in(report);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    out[line.substr(0, colon)] = value;
  }
  return out;
}

uint64_t hex(const std::string& s) {
  return std::stoull(s, nullptr, 16);
}

constexpr uint64_t bit(int cap) {
  return uint64_t{1} << cap;
}

}  // namespace

TEST_CASE("caps: names resolve to numbers", "[caps]") {
  auto caps = resolve_capabilities({"CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"});
  REQUIRE(caps.has_value());
  CHECK(*caps == std::vector<int>{CAP_CHOWN, CAP_KILL, CAP_SYS_ADMIN});
  auto empty = resolve_capabilities({});
  REQUIRE(empty.has_value());
  CHECK(empty->empty());
}

TEST_CASE("caps: unknown names are errors", "[caps]") {
  // cap_from_name alone accepts the last three; the spec's spelling is
  // CAP_ in upper case.
  for (const char* name : {"CAP_FOO", "cap_chown", "12", "CHOWN", "CAP_"}) {
    auto caps = resolve_capabilities({"CAP_KILL", name});
    REQUIRE_FALSE(caps.has_value());
    CHECK(caps.error().str() == std::string("capabilities: unknown capability \"") + name + "\"");
  }
}

TEST_CASE("caps: names the kernel does not know are dropped", "[caps]") {
  // CAP_CHECKPOINT_RESTORE (40) is libcap 2.66's newest; only a kernel
  // older than 5.9 lacks it.
  if (cap_max_bits() > CAP_CHECKPOINT_RESTORE) {
    BERTH_SKIP("this kernel knows every capability libcap knows (cap_max_bits " << cap_max_bits()
                                                                                << ")");
  }
  auto caps = resolve_capabilities({"CAP_KILL", "CAP_CHECKPOINT_RESTORE"});
  REQUIRE(caps.has_value());
  CHECK(*caps == std::vector<int>{CAP_KILL});
}

TEST_CASE("caps: a child ends up with exactly the spec's sets", "[caps]") {
  if (!has_effective_setpcap()) {
    BERTH_SKIP("dropping from the bounding set needs CAP_SETPCAP");
  }
  Capabilities caps;
  caps.bounding = {"CAP_KILL", "CAP_CHOWN"};
  caps.effective = {"CAP_KILL"};
  caps.permitted = {"CAP_KILL"};
  const std::string report = caps_in_child(caps);
  INFO(report);
  auto r = parse_report(report);
  REQUIRE(r.count("error") == 0);
  CHECK(r["KeepCapsAfterPrepare"] == "1");
  CHECK(r["KeepCapsAfterApply"] == "0");
  CHECK(hex(r["CapBnd"]) == (bit(CAP_KILL) | bit(CAP_CHOWN)));
  CHECK(hex(r["CapEff"]) == bit(CAP_KILL));
  CHECK(hex(r["CapPrm"]) == bit(CAP_KILL));
  CHECK(hex(r["CapInh"]) == 0);
  CHECK(hex(r["CapAmb"]) == 0);
}

TEST_CASE("caps: ambient capabilities are raised", "[caps]") {
  if (!has_effective_setpcap()) {
    BERTH_SKIP("dropping from the bounding set needs CAP_SETPCAP");
  }
  Capabilities caps;
  caps.bounding = {"CAP_KILL", "CAP_NET_BIND_SERVICE"};
  caps.effective = {"CAP_KILL", "CAP_NET_BIND_SERVICE"};
  caps.permitted = {"CAP_KILL", "CAP_NET_BIND_SERVICE"};
  caps.inheritable = {"CAP_NET_BIND_SERVICE"};
  caps.ambient = {"CAP_NET_BIND_SERVICE"};
  const std::string report = caps_in_child(caps);
  INFO(report);
  auto r = parse_report(report);
  REQUIRE(r.count("error") == 0);
  CHECK(hex(r["CapInh"]) == bit(CAP_NET_BIND_SERVICE));
  CHECK(hex(r["CapAmb"]) == bit(CAP_NET_BIND_SERVICE));
  CHECK(hex(r["CapBnd"]) == (bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE)));
}

TEST_CASE("caps: an ambient cap outside permitted+inheritable is an error", "[caps]") {
  if (!has_effective_setpcap()) {
    BERTH_SKIP("dropping from the bounding set needs CAP_SETPCAP");
  }
  Capabilities caps;
  caps.bounding = {"CAP_KILL", "CAP_CHOWN"};
  caps.effective = {"CAP_KILL"};
  caps.permitted = {"CAP_KILL", "CAP_CHOWN"};
  caps.inheritable = {"CAP_KILL"};
  caps.ambient = {"CAP_KILL", "CAP_CHOWN"};
  const std::string report = caps_in_child(caps);
  CHECK(parse_report(report)["error"] ==
        "capabilities: ambient capability \"CAP_CHOWN\" is not in the permitted and "
        "inheritable sets");
}

TEST_CASE("caps: unknown names in a set are errors", "[caps]") {
  Capabilities caps;
  caps.bounding = {"CAP_KILL", "CAP_NOPE"};
  CHECK(parse_report(caps_in_child(caps))["error"] ==
        "capabilities: unknown capability \"CAP_NOPE\"");
  caps.bounding = {"CAP_KILL"};
  caps.ambient = {"CAP_NOPE2"};
  const auto r = parse_report(caps_in_child(caps));
  // apply_capabilities fails, but only after prepare_capabilities, which
  // needs CAP_SETPCAP; without it the prepare error comes first.
  if (has_effective_setpcap()) {
    CHECK(r.at("error") == "capabilities: unknown capability \"CAP_NOPE2\"");
  } else {
    CHECK(r.count("error") == 1);
  }
}
