// Namespaces and the mount table: what the container sees of the host.
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "tests/integration/harness.h"

namespace fs = std::filesystem;
using namespace berth::test;

namespace {

// One /proc/self/mountinfo line: the fields the checks need.
struct ContainerMount {
  std::string root, mount_point, options, type;
};

std::vector<ContainerMount> parse_mountinfo(const std::string& text) {
  std::vector<ContainerMount> mounts;
  for (const auto& line : split_lines(text)) {
    std::istringstream in(line);
    std::vector<std::string> f;
    for (std::string w; in >> w;) f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 6 || dash == f.end() || dash + 1 == f.end()) continue;
    mounts.push_back({f[3], f[4], f[5], dash[1]});
  }
  return mounts;
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || dir == "/" || path.rfind(dir + "/", 0) == 0;
}

std::vector<std::string> strings_at(const Json& config, const Json::json_pointer& ptr) {
  std::vector<std::string> out;
  if (config.contains(ptr) && config[ptr].is_array())
    for (const auto& s : config[ptr]) out.push_back(s.get<std::string>());
  return out;
}

std::string hostname_of_host() {
  char name[256] = {0};
  gethostname(name, sizeof name - 1);
  return name;
}

}  // namespace

TEST_CASE("the container's process is pid 1 of a new pid namespace", "[privileged][isolation]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "pid"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "1\n");

  Container ns(rt);
  ns.set_args({"/bin/probe", "ns", "pid"});
  auto n = ns.run();
  INFO(n);
  REQUIRE(n.exit_code == 0);
  CHECK(n.out.rfind("pid:[", 0) == 0);
  CHECK(n.out != read_link("/proc/self/ns/pid") + "\n");
}

TEST_CASE("the spec's hostname is set in the container's own uts namespace",
          "[privileged][isolation]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  std::string before = hostname_of_host();
  c.config()["hostname"] = "berth-it-host";
  c.set_args({"/bin/probe", "hostname"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "berth-it-host\n");
  CHECK(hostname_of_host() == before);
}

TEST_CASE("masked paths are covered and read-only paths refuse writes",
          "[privileged][isolation][mounts]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "mountinfo"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto mounts = parse_mountinfo(r.out);
  REQUIRE(!mounts.empty());
  auto mounted_at = [&](const std::string& p) {
    return std::find_if(mounts.begin(), mounts.end(),
                        [&](const ContainerMount& m) { return m.mount_point == p; });
  };

  // A path the kernel does not have (/proc/kcore without CONFIG_PROC_KCORE)
  // needs no mask: runc and berth both skip it.
  auto masked = strings_at(c.config(), "/linux/maskedPaths"_json_pointer);
  REQUIRE(!masked.empty());
  int checked = 0;
  for (const auto& path : masked) {
    if (!fs::exists(path)) continue;
    INFO("masked path " << path);
    CHECK(mounted_at(path) != mounts.end());
    ++checked;
    if (!fs::is_regular_file(path)) continue;
    Container cat(rt);
    cat.set_args({"/bin/probe", "cat", path});
    auto content = cat.run();
    INFO(content);
    CHECK(content.exit_code == 0);
    CHECK(content.out.empty());
  }
  CHECK(checked > 0);

  for (const auto& path : strings_at(c.config(), "/linux/readonlyPaths"_json_pointer)) {
    if (!fs::exists(path)) continue;
    INFO("read-only path " << path);
    auto m = mounted_at(path);
    REQUIRE(m != mounts.end());
    CHECK(m->options.rfind("ro", 0) == 0);
  }

  // /proc/sys is the classic escape hatch (core_pattern, ...).
  Container w(rt);
  w.set_args({"/bin/probe", "write", "/proc/sys/kernel/hostname"});
  auto write = w.run();
  INFO(write);
  REQUIRE(write.exit_code == 0);
  CHECK(write.out == "EROFS\n");
}

TEST_CASE("no host mount is visible in the container", "[privileged][isolation][mounts]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container c(rt);
  c.set_args({"/bin/probe", "mountinfo"});
  auto r = c.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto mounts = parse_mountinfo(r.out);
  REQUIRE(!mounts.empty());

  // Every mount point must be the root or come from the spec: a mount, a
  // masked or a read-only path, or below one of them (/dev/null binds,
  // runc's per-controller /sys/fs/cgroup/<name>).
  std::vector<std::string> allowed = {"/"};
  for (const auto& m : c.config()["mounts"]) allowed.push_back(m["destination"]);
  for (const auto& p : strings_at(c.config(), "/linux/maskedPaths"_json_pointer))
    allowed.push_back(p);
  for (const auto& p : strings_at(c.config(), "/linux/readonlyPaths"_json_pointer))
    allowed.push_back(p);
  const std::string rootfs = fs::canonical(c.bundle().rootfs()).string();
  for (const auto& m : mounts) {
    INFO("container mount " << m.mount_point << " (root " << m.root << ", " << m.type << ")");
    bool from_spec = m.mount_point == "/" ||
                     std::any_of(allowed.begin() + 1, allowed.end(),
                                 [&](const std::string& a) { return under(m.mount_point, a); });
    CHECK(from_spec);
    for (const char* host : {"/work", "/home", "/root", "/mnt"}) CHECK(!under(m.mount_point, host));
    // A bind mount from a disk filesystem may only come from the rootfs.
    if (m.type == "ext4" || m.type == "xfs" || m.type == "btrfs" || m.type == "overlay")
      CHECK(under(m.root, rootfs));
  }
}

TEST_CASE("root.readonly makes the container's root read-only", "[privileged][isolation][mounts]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  SECTION("readonly: true") {
    Container c(rt);
    c.config()["root"]["readonly"] = true;
    c.set_args({"/bin/probe", "write", "/written-by-test"});
    auto r = c.run();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == "EROFS\n");
    CHECK(!fs::exists(c.bundle().rootfs() + "/written-by-test"));
  }
  SECTION("readonly: false") {
    Container c(rt);
    c.config()["root"]["readonly"] = false;
    c.set_args({"/bin/probe", "write", "/written-by-test"});
    auto r = c.run();
    INFO(r);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == "ok\n");
    CHECK(fs::exists(c.bundle().rootfs() + "/written-by-test"));
  }
}

TEST_CASE("a user namespace maps container root to an unprivileged host range",
          "[privileged][isolation][userns]") {
  REQUIRE_PRIVILEGED();
  if (!fs::exists("/proc/self/ns/user") ||
      std::stoi(read_file("/proc/sys/user/max_user_namespaces")) == 0) {
    BERTH_SKIP("user namespaces are disabled on this host");
  }
  Runtime rt;
  auto with_userns = [](Container& c) {
    c.config()["linux"]["namespaces"].push_back({{"type", "user"}});
    Json map = Json::array({{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}});
    c.config()["linux"]["uidMappings"] = map;
    c.config()["linux"]["gidMappings"] = map;
  };
  Container id(rt);
  with_userns(id);
  id.set_args({"/bin/probe", "id"});
  auto r = id.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.rfind("uid=0 gid=0 ", 0) == 0);

  Container map(rt);
  with_userns(map);
  map.set_args({"/bin/probe", "cat", "/proc/self/uid_map"});
  auto m = map.run();
  INFO(m);
  REQUIRE(m.exit_code == 0);
  std::istringstream in(m.out);
  long inside = -1, outside = -1, size = -1;
  in >> inside >> outside >> size;
  CHECK(inside == 0);
  CHECK(outside == 100000);
  CHECK(size == 65536);

  // Seen from the host, the container's root is the unprivileged uid 100000.
  Container host_view(rt);
  with_userns(host_view);
  host_view.set_args({"/bin/probe", "sleep", "600"});
  auto created = host_view.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);
  REQUIRE(host_view.start().exit_code == 0);
  REQUIRE(host_view.wait_for_status("running"));
  const std::string status_file =
      "/proc/" + std::to_string(host_view.state_json().value("pid", 0)) + "/status";
  // Polled: "running" may be reported a moment before the process has
  // switched to its final credentials.
  CHECK(wait_until(
      [&] { return parse_status(read_file(status_file))["Uid"].rfind("100000\t", 0) == 0; }));
  auto status = parse_status(read_file(status_file));
  INFO(status_file << ": Uid " << status["Uid"] << ", Gid " << status["Gid"]);
  CHECK(status["Uid"].rfind("100000\t", 0) == 0);
  CHECK(status["Gid"].rfind("100000\t", 0) == 0);
}

TEST_CASE("a container joins another container's network namespace by path",
          "[privileged][isolation][netns]") {
  REQUIRE_PRIVILEGED();
  Runtime rt;
  Container a(rt);
  a.set_args({"/bin/probe", "sleep", "600"});
  auto created = a.create();
  INFO(created);
  REQUIRE(created.exit_code == 0);
  int pid = a.state_json().value("pid", 0);
  REQUIRE(pid > 0);
  std::string a_net = read_link("/proc/" + std::to_string(pid) + "/ns/net");
  REQUIRE(!a_net.empty());
  REQUIRE(a_net != read_link("/proc/self/ns/net"));

  Container b(rt);
  for (auto& ns : b.config()["linux"]["namespaces"])
    if (ns["type"] == "network") ns["path"] = "/proc/" + std::to_string(pid) + "/ns/net";
  b.set_args({"/bin/probe", "ns", "net"});
  auto r = b.run();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == a_net + "\n");
}
