// Device rules for real: a container with berth's default profile has
// CAP_MKNOD and a tmpfs /dev without nodev, so it can make a node of the
// host's disk; the device rules (the v1 devices controller, or on cgroup v2
// the eBPF program of runtime/devices_bpf.cc) must refuse to open it. Runs
// on any cgroup layout; `make test-v2` runs it on a pure v2 kernel.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "common/fd.h"
#include "harness.h"

using berth::UniqueFd;
using namespace berth::test;
namespace stdfs = std::filesystem;

namespace {

struct Disk {
  std::string name;  // vda
  std::string dev;   // "254:0"
};

// The first disk of the machine (/sys/block/<name>/dev, not a loop, ram or
// zram device), if any.
std::optional<Disk> first_disk() {
  if (!stdfs::exists("/sys/block")) return std::nullopt;
  std::vector<std::string> names;
  for (const auto& e : stdfs::directory_iterator("/sys/block")) {
    std::string n = e.path().filename();
    if (n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram")) continue;
    names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    std::ifstream in("/sys/block/" + n + "/dev");
    std::string dev;
    if (std::getline(in, dev) && dev.find(':') != std::string::npos) return Disk{n, dev};
  }
  return std::nullopt;
}

// A shell line run in the container: make a node of `dev` ("b MAJ MIN") at
// /dev/berth-node, then `what` on it; prints "mknod=<rc>" and the result.
std::vector<std::string> node_script(const std::string& dev, const std::string& what) {
  return {
      "/bin/sh", "-c",
      "/bin/busybox mknod /dev/berth-node " + dev + "; echo mknod=$?; " + what + "; echo rc=$?"};
}

}  // namespace

TEST_CASE("devices: a container cannot read a disk node it makes, /dev/null works",
          "[privileged][devices]") {
  REQUIRE_PRIVILEGED();
  const auto found = first_disk();
  if (!found) BERTH_SKIP("no disk in /sys/block to make a node of");
  const std::string disk = found->dev;
  const std::string dev =
      "b " + disk.substr(0, disk.find(':')) + " " + disk.substr(disk.find(':') + 1);
  INFO("disk " << dev);
  Runtime rt;

  SECTION("the default profile: mknod works, open for reading is refused with EPERM") {
    Container c(rt);
    c.set_args(node_script(dev,
                           "/bin/busybox head -c 16 /dev/berth-node | /bin/busybox wc -c; "
                           "echo x >/dev/null && echo null=ok"));
    auto r = c.run();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    // The node is made on the writable /dev (so no EROFS hides the result) ...
    CHECK(r.out.find("mknod=0") != std::string::npos);
    // ... and opening it is refused by the device rules, not by the mount.
    CHECK(r.err.find("Operation not permitted") != std::string::npos);
    CHECK(r.err.find("Read-only file system") == std::string::npos);
    CHECK(r.out.find("\n16\n") == std::string::npos);
    CHECK(r.out.find("null=ok") != std::string::npos);
  }
  SECTION("allowed devices: /dev/null, /dev/zero, and the disk read-only by a spec rule") {
    // Some sandboxes deny the disk to the host's root too (this project's
    // development machines do): then an allowed read cannot be shown.
    UniqueFd host_fd(::open(("/dev/" + found->name).c_str(), O_RDONLY | O_CLOEXEC));
    if (!host_fd) BERTH_SKIP("this host itself cannot read /dev/" + found->name);
    Container c(rt);
    auto& rules = c.config()["linux"]["resources"]["devices"];
    const auto colon = disk.find(':');
    rules.push_back({{"allow", true},
                     {"type", "b"},
                     {"major", std::stoll(disk.substr(0, colon))},
                     {"minor", std::stoll(disk.substr(colon + 1))},
                     {"access", "r"}});
    c.set_args(
        node_script(dev,
                    "echo x >/dev/null && /bin/busybox head -c 4 /dev/zero | /bin/busybox wc -c && "
                    "/bin/busybox head -c 16 /dev/berth-node | /bin/busybox wc -c && "
                    "(: >>/dev/berth-node)"));
    auto r = c.run();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("mknod=0") != std::string::npos);
    CHECK(r.out.find("4\n16\n") != std::string::npos);  // zero, then the disk read
    // The rule grants r only: opening for writing (nothing is written) is
    // refused.
    CHECK(r.err.find("Operation not permitted") != std::string::npos);
    CHECK(r.out.find("rc=0") == std::string::npos);
  }
}
