// Task definitions -> OCI config.json and the shim's task.json: argument
// merging as Docker documents it, environment, user lookup in a fixture
// rootfs, ulimits, capabilities, tmpfs, /dev/shm, readonly root, sysctls.
#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <fstream>

#include "controlplane/agent/oci_spec.h"
#include "controlplane/model/ecs_json.h"
#include "runtime/default_profile.h"
#include "shim/task.h"
#include "tests/unit/temp_dir.h"

using namespace berth::cp;
using berth::rootfs::ImageConfig;
using nlohmann::json;
using Args = std::vector<std::string>;

namespace {

ContainerDefinition def(Args entry_point, Args command) {
  ContainerDefinition c;
  c.name = "web";
  c.image = "busybox";
  c.entry_point = std::move(entry_point);
  c.command = std::move(command);
  return c;
}

ImageConfig image(Args entrypoint, Args cmd) {
  ImageConfig i;
  i.entrypoint = std::move(entrypoint);
  i.cmd = std::move(cmd);
  return i;
}

Args merged(const ContainerDefinition& c, const ImageConfig& i,
            const ContainerOverride* o = nullptr) {
  auto a = merged_args(c, o, i);
  REQUIRE(a);
  return *a;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A rootfs with /etc/passwd and /etc/group, as an image carries them.
struct FixtureRootfs {
  berth::test::TempDir dir;
  FixtureRootfs() {
    std::filesystem::create_directories(dir / "etc");
    write(dir / "etc/passwd",
          "root:x:0:0:root:/root:/bin/sh\n"
          "# a comment\n"
          "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
          "app:x:1000:1000::/home/app:/bin/sh\n");
    write(dir / "etc/group",
          "root:x:0:\n"
          "www-data:x:33:\n"
          "app:x:1000:\n"
          "audio:x:29:app,other\n"
          "video:x:44:other\n");
  }
};

struct Built {
  TaskDefinition d;
  ImageConfig img;
  FixtureRootfs rootfs;
  MicrohostView mh{"/run/netns/t1", "/tmp/hosts", "/tmp/resolv.conf", "/tmp/hostname"};

  Built() {
    d.family = "f";
    d.containers.push_back(def({}, {"sh", "-c", "true"}));
    img.env = {"PATH=/bin", "A=image"};
  }
  ContainerDefinition& c() { return d.containers[0]; }
  berth::Result<json> build(const ContainerOverride* o = nullptr) {
    ContainerBuild b;
    b.definition = &d;
    b.container = &d.containers[0];
    b.override_ = o;
    b.image = &img;
    b.rootfs_path = rootfs.dir.path();
    b.microhost = mh;
    b.default_hostname = "0123456789ab";
    return build_oci_spec(b);
  }
  json spec(const ContainerOverride* o = nullptr) {
    auto s = build(o);
    if (!s) FAIL(s.error().str());
    return *s;
  }
};

const json* find_mount(const json& spec, const std::string& dest) {
  for (const json& m : spec["mounts"]) {
    if (m["destination"] == dest) return &m;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("cp oci spec: entryPoint and command merge as Docker does", "[cp-oci-spec]") {
  // Docker docs, "Understand how CMD and ENTRYPOINT interact".
  ImageConfig none = image({}, {});
  ImageConfig cmd_only = image({}, {"nginx", "-g", "daemon off;"});
  ImageConfig both = image({"/docker-entrypoint.sh"}, {"nginx"});
  CHECK(merged(def({}, {}), cmd_only) == Args{"nginx", "-g", "daemon off;"});
  CHECK(merged(def({}, {}), both) == Args{"/docker-entrypoint.sh", "nginx"});
  // command replaces Cmd, the image's Entrypoint stays.
  CHECK(merged(def({}, {"echo", "hi"}), both) == Args{"/docker-entrypoint.sh", "echo", "hi"});
  CHECK(merged(def({}, {"echo", "hi"}), cmd_only) == Args{"echo", "hi"});
  // entryPoint replaces Entrypoint and drops the image's Cmd.
  CHECK(merged(def({"/bin/sh", "-c"}, {}), both) == Args{"/bin/sh", "-c"});
  CHECK(merged(def({"/bin/sh", "-c"}, {"date"}), both) == Args{"/bin/sh", "-c", "date"});
  CHECK(merged(def({"top"}, {}), none) == Args{"top"});
  // A RunTask override's command replaces the definition's and the image's.
  ContainerOverride o;
  o.name = "web";
  o.command = Args{"sleep", "1"};
  CHECK(merged(def({}, {"echo"}), both, &o) == Args{"/docker-entrypoint.sh", "sleep", "1"});
  CHECK(merged(def({"/bin/sh", "-c"}, {"a"}), none, &o) == Args{"/bin/sh", "-c", "sleep", "1"});
  // Nothing to run.
  auto e = merged_args(def({}, {}), nullptr, none);
  REQUIRE_FALSE(e);
  CHECK(e.error().step == "ClientException");
  CHECK(e.error().message ==
        "containerDefinitions.web.command: nothing to run: neither the definition (entryPoint, "
        "command) nor the image (Entrypoint, Cmd) names a program");
}

TEST_CASE("cp oci spec: the defaults of a container", "[cp-oci-spec]") {
  Built b;
  json s = b.spec();
  CHECK(s["ociVersion"] == "1.0.2");
  CHECK(s["root"] == json{{"path", b.rootfs.dir.path()}, {"readonly", false}});
  CHECK(s["hostname"] == "0123456789ab");
  const json& p = s["process"];
  CHECK(p["args"] == json::array({"sh", "-c", "true"}));
  CHECK(p["cwd"] == "/");
  CHECK(p["user"] == json{{"uid", 0}, {"gid", 0}});
  CHECK(p["terminal"] == false);
  CHECK(p["noNewPrivileges"] == false);
  // Fargate's 65535, unless this host's own hard limit is lower.
  struct rlimit rl {};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
  uint64_t nofile = std::min<uint64_t>(65535, rl.rlim_max);
  CHECK(p["rlimits"] ==
        json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", nofile}, {"soft", nofile}}}));
  CHECK(p["capabilities"]["bounding"] == json(berth::runtime::default_capabilities()));
  CHECK(p["capabilities"]["effective"] == p["capabilities"]["bounding"]);
  CHECK(p["capabilities"]["ambient"] == json::array());
  const json& l = s["linux"];
  CHECK(l["namespaces"] == json::parse(R"([{"type":"pid"},{"type":"ipc"},{"type":"uts"},
      {"type":"mount"},{"type":"cgroup"},{"type":"network","path":"/run/netns/t1"}])"));
  CHECK(l["resources"]["cpu"]["shares"] == 2);
  CHECK_FALSE(l["resources"].contains("memory"));
  CHECK(l["resources"]["devices"] == json::parse(R"([{"allow":false,"access":"rwm"}])"));
  CHECK(l["maskedPaths"] == json(berth::runtime::default_masked_paths()));
  CHECK(l["readonlyPaths"] == json(berth::runtime::default_readonly_paths()));
  CHECK(l["seccomp"] == berth::runtime::default_seccomp_json());
  CHECK_FALSE(l.contains("sysctl"));
  CHECK_FALSE(s.contains("cgroupsPath"));
  for (const char* dest : {"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys"}) {
    CAPTURE(dest);
    CHECK(find_mount(s, dest));
  }
  CHECK((*find_mount(s, "/dev/shm"))["options"] ==
        json::array({"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}));
  CHECK((*find_mount(s, "/sys/fs/cgroup"))["options"].back() == "ro");
  const json* hosts = find_mount(s, "/etc/hosts");
  REQUIRE(hosts);
  CHECK((*hosts)["source"] == "/tmp/hosts");
  CHECK((*hosts)["type"] == "bind");
  CHECK((*find_mount(s, "/etc/resolv.conf"))["options"][1] == "ro");
  CHECK((*find_mount(s, "/etc/hostname"))["source"] == "/tmp/hostname");

  // Host mode: no network namespace entry at all.
  b.mh.netns_path.clear();
  json host = b.spec();
  CHECK(host["linux"]["namespaces"].size() == 5);
  for (const json& ns : host["linux"]["namespaces"]) CHECK(ns["type"] != "network");
}

TEST_CASE("cp oci spec: environment", "[cp-oci-spec]") {
  Built b;
  b.c().environment = {{"A", "def"}, {"B", "def"}};
  ContainerOverride o;
  o.name = "web";
  o.environment = {{"B", "override"}, {"C", "x=y"}};
  json s = b.spec(&o);
  CHECK(s["process"]["env"] ==
        json::array({"PATH=/bin", "A=def", "B=override", "C=x=y", "HOSTNAME=0123456789ab"}));
  b.img.env.clear();
  b.c().hostname = "web-1";
  json d = b.spec();
  CHECK(d["hostname"] == "web-1");
  CHECK(d["process"]["env"] ==
        json::array({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=def",
                     "B=def", "HOSTNAME=web-1"}));
}

TEST_CASE("cp oci spec: working directory", "[cp-oci-spec]") {
  Built b;
  b.img.working_dir = "/srv";
  CHECK(b.spec()["process"]["cwd"] == "/srv");
  b.c().working_directory = "/app";
  CHECK(b.spec()["process"]["cwd"] == "/app");
}

TEST_CASE("cp oci spec: users by id and by name from the rootfs", "[cp-oci-spec]") {
  Built b;
  auto user = [&](const std::string& u) {
    b.c().user = u;
    return b.spec()["process"]["user"];
  };
  CHECK(user("1000") == json{{"uid", 1000}, {"gid", 1000}, {"additionalGids", {29}}});
  CHECK(user("1234") == json{{"uid", 1234}, {"gid", 0}});
  CHECK(user("1234:5") == json{{"uid", 1234}, {"gid", 5}});
  CHECK(user("www-data") == json{{"uid", 33}, {"gid", 33}});
  CHECK(user("app") == json{{"uid", 1000}, {"gid", 1000}, {"additionalGids", {29}}});
  CHECK(user("app:video") == json{{"uid", 1000}, {"gid", 44}, {"additionalGids", {29}}});
  CHECK(user("www-data:0") == json{{"uid", 33}, {"gid", 0}});
  // The image's User when the definition has none.
  b.c().user.clear();
  b.img.user = "www-data";
  CHECK(b.spec()["process"]["user"] == json{{"uid", 33}, {"gid", 33}});

  b.c().user = "nobody";
  auto e = b.build();
  REQUIRE_FALSE(e);
  CHECK(e.error().str() ==
        "ClientException: containerDefinitions.web.user: user \"nobody\" is not in the image's "
        "/etc/passwd");
  b.c().user = "app:wheel";
  e = b.build();
  REQUIRE_FALSE(e);
  CHECK(e.error().message ==
        "containerDefinitions.web.user: group \"wheel\" is not in the image's /etc/group");

  // A symlinked /etc/passwd resolves inside the rootfs, never on the host.
  std::filesystem::remove(b.rootfs.dir / "etc/passwd");
  std::filesystem::create_symlink("/etc/shadow-of-the-host", b.rootfs.dir / "etc/passwd");
  b.c().user = "root";
  e = b.build();
  REQUIRE_FALSE(e);
  CHECK(e.error().message ==
        "containerDefinitions.web.user: user \"root\" is not in the image's /etc/passwd");
  std::filesystem::remove(b.rootfs.dir / "etc/passwd");
  // A link that climbs above the root stays inside it (no host file has this name).
  write(b.rootfs.dir / "etc/berth-alt-passwd", "svc:x:77:78::/:/bin/sh\n");
  std::filesystem::create_symlink("../../../../etc/berth-alt-passwd", b.rootfs.dir / "etc/passwd");
  b.c().user = "svc";
  CHECK(b.spec()["process"]["user"] == json{{"uid", 77}, {"gid", 78}});
}

TEST_CASE("cp oci spec: ulimits", "[cp-oci-spec]") {
  Built b;
  b.c().ulimits = {{"nofile", 1024, 4096}, {"nproc", 100, 200}, {"memlock", -1 + 1, 0}};
  CHECK(b.spec()["process"]["rlimits"] == json::parse(R"([
      {"type":"RLIMIT_NOFILE","hard":4096,"soft":1024},
      {"type":"RLIMIT_NPROC","hard":200,"soft":100},
      {"type":"RLIMIT_MEMLOCK","hard":0,"soft":0}])"));
  b.c().ulimits = {{"core", 0, 0}};
  CHECK(b.spec()["process"]["rlimits"].size() == 2);  // core + the default nofile
}

TEST_CASE("cp oci spec: capabilities add and drop", "[cp-oci-spec]") {
  Built b;
  auto caps = [&]() { return b.spec()["process"]["capabilities"]["bounding"]; };
  b.c().linux_parameters.cap_add = {"SYS_PTRACE"};
  b.c().linux_parameters.cap_drop = {"MKNOD", "KILL"};
  json c = caps();
  CHECK(std::ranges::count(c, json("CAP_SYS_PTRACE")) == 1);
  CHECK(std::ranges::count(c, json("CAP_MKNOD")) == 0);
  CHECK(std::ranges::count(c, json("CAP_KILL")) == 0);
  CHECK(std::ranges::count(c, json("CAP_CHOWN")) == 1);
  // SYS_PTRACE brings the tracing syscalls into the seccomp profile.
  json last = b.spec()["linux"]["seccomp"]["syscalls"].back();
  CHECK(last["names"] ==
        json::array({"kcmp", "pidfd_getfd", "process_vm_readv", "process_vm_writev", "ptrace"}));

  b.c().linux_parameters.cap_add = {"NET_ADMIN"};
  b.c().linux_parameters.cap_drop = {"ALL"};
  CHECK(caps() == json::array({"CAP_NET_ADMIN"}));
  CHECK(b.spec()["linux"]["seccomp"] == berth::runtime::default_seccomp_json());
  b.c().linux_parameters.cap_add = {"ALL"};
  b.c().linux_parameters.cap_drop = {};
  CHECK(caps().size() == 41);
  // Dropping what is also added keeps it (add wins, as Docker).
  b.c().linux_parameters.cap_add = {"CHOWN"};
  b.c().linux_parameters.cap_drop = {"CHOWN"};
  CHECK(std::ranges::count(caps(), json("CAP_CHOWN")) == 1);
}

TEST_CASE("cp oci spec: tmpfs, shm and ipcMode none", "[cp-oci-spec]") {
  Built b;
  b.c().linux_parameters.tmpfs = {{"/scratch", 64, {"noexec", "mode=1770"}}};
  b.c().linux_parameters.shared_memory_size_mib = 256;
  json s = b.spec();
  const json* t = find_mount(s, "/scratch");
  REQUIRE(t);
  CHECK(*t == json::parse(R"({"destination":"/scratch","type":"tmpfs","source":"tmpfs",
      "options":["nosuid","nodev","size=65536k","noexec","mode=1770"]})"));
  CHECK((*find_mount(s, "/dev/shm"))["options"].back() == "size=262144k");
  // Docker's default mode when the options name none.
  b.c().linux_parameters.tmpfs = {{"/scratch", 1, {}}};
  CHECK((*find_mount(b.spec(), "/scratch"))["options"] ==
        json::array({"nosuid", "nodev", "size=1024k", "mode=1777"}));
  b.d.ipc_mode = "none";
  CHECK_FALSE(find_mount(b.spec(), "/dev/shm"));
}

TEST_CASE("cp oci spec: readonly root, resources and sysctls", "[cp-oci-spec]") {
  Built b;
  b.c().readonly_root_filesystem = true;
  b.c().cpu = 512;
  b.c().memory_mib = 256;
  b.c().memory_reservation_mib = 128;
  b.c().system_controls = {{"net.ipv4.tcp_keepalive_time", "60"}, {"kernel.shmmax", "1000"}};
  json s = b.spec();
  CHECK(s["root"]["readonly"] == true);
  CHECK(s["linux"]["resources"]["cpu"]["shares"] == 512);
  CHECK(s["linux"]["resources"]["memory"] ==
        json{{"limit", 256 << 20}, {"reservation", 128 << 20}});
  CHECK(s["linux"]["sysctl"] ==
        json{{"net.ipv4.tcp_keepalive_time", "60"}, {"kernel.shmmax", "1000"}});
  // RunTask overrides win.
  ContainerOverride o;
  o.name = "web";
  o.cpu = 1024;
  o.memory_mib = 512;
  json os = b.spec(&o);
  CHECK(os["linux"]["resources"]["cpu"]["shares"] == 1024);
  CHECK(os["linux"]["resources"]["memory"]["limit"] == 512 << 20);
}

TEST_CASE("cp oci spec: a registered definition builds end to end", "[cp-oci-spec]") {
  Account a;
  a.id = "123456789012";
  auto d = parse_task_definition(json::parse(R"({"family":"f","cpu":"256","memory":"512",
      "requiresCompatibilities":["FARGATE"],
      "containerDefinitions":[{"name":"web","image":"busybox","command":["true"],
        "readonlyRootFilesystem":true,"linuxParameters":{"initProcessEnabled":true}}]})"),
                                 a);
  REQUIRE(d);
  Built b;
  b.d = *d;
  json s = b.spec();
  CHECK(s["process"]["args"] == json::array({"true"}));
  CHECK(s["root"]["readonly"] == true);
}

TEST_CASE("cp oci spec: the shim's task.json", "[cp-oci-spec]") {
  TaskDefinition d;
  d.family = "f";
  d.cpu = "512";
  d.memory = "1024";
  ContainerDefinition db = def({}, {"db"});
  db.name = "db";
  db.memory_reservation_mib = 256;
  db.health_check = HealthCheckDef{{"CMD-SHELL", "test -f /ready"}, 10, 2, 3, 0};
  ContainerDefinition web = def({}, {"web"});
  web.essential = false;
  web.stop_timeout_s = 5;
  web.memory_reservation_mib = 128;
  web.depends_on = {{"db", "HEALTHY"}};
  web.restart_policy = RestartPolicyDef{true, {0}, std::nullopt};
  web.linux_parameters.init_process_enabled = true;
  d.containers = {db, web};
  Task t;
  t.id = "0123456789abcdef0123456789abcdef";
  ShimTaskBuild sb{&t, &d, "/run/berth/runtime", "berth/tasks", {"/b/db", "/b/web"}};
  auto j = build_shim_task(sb);
  REQUIRE(j);
  CHECK((*j)["limits"] == json{{"cpu", 512}, {"memory", 1024}, {"memory_reservation", 384}});
  CHECK((*j)["cgroup_parent"] == "berth/tasks");
  const json& w = (*j)["containers"][1];
  CHECK(w["stop_timeout"] == 5);
  CHECK(w["essential"] == false);
  CHECK(w["init_process"] == true);
  CHECK(w["depends_on"] == json::parse(R"([{"container":"db","condition":"HEALTHY"}])"));
  CHECK(w["restart_policy"] ==
        json::parse(R"({"enabled":true,"ignored_exit_codes":[0],"restart_attempt_period":300})"));
  CHECK((*j)["containers"][0]["stop_timeout"] == 30);
  CHECK((*j)["containers"][0]["health_check"]["interval"] == 10);

  // The shim accepts what we write.
  auto parsed = berth::shim::parse_task(j->dump());
  REQUIRE(parsed);
  CHECK(parsed->limits.memory_bytes == 1024LL << 20);
  CHECK(parsed->find("web")->restart.enabled);

  // Without task memory: the sum of the containers' hard limits.
  d.memory.clear();
  d.cpu.clear();
  d.containers[0].memory_mib = 300;
  d.containers[1].memory_mib = 200;
  t.memory.clear();
  j = build_shim_task(sb);
  REQUIRE(j);
  CHECK((*j)["limits"] == json{{"memory", 500}, {"memory_reservation", 384}});
  t.overrides.container_overrides.push_back({"web", std::nullopt, {}, {}, 400, {}});
  CHECK((*build_shim_task(sb))["limits"]["memory"] == 700);
  // A RunTask override of the task size is in Task::cpu/memory.
  t.cpu = "1024";
  t.memory = "2048";
  CHECK((*build_shim_task(sb))["limits"]["memory"] == 2048);

  sb.bundles.pop_back();
  CHECK_FALSE(build_shim_task(sb));
}
