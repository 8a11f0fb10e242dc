// The config.json parser: the runtime's input boundary. Values of a full spec,
// then every rule with its exact error text.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "runtime/lsm.h"
#include "runtime/spec.h"

using berth::runtime::load_spec;
using berth::runtime::NamespaceType;
using berth::runtime::parse_spec;
using berth::runtime::SeccompAction;
using berth::runtime::SeccompOp;
using berth::runtime::Spec;
using json = nlohmann::json;

namespace {

const std::string kFullBundle = std::string(BERTH_TEST_DATA_DIR) + "/spec/full";

json full_json() {
  std::ifstream in(kFullBundle + "/config.json");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

json minimal_json() {
  return {{"ociVersion", "1.0.2"}, {"root", {{"path", "rootfs"}}}};
}

Spec parse_text_ok(const std::string& text) {
  auto r = parse_spec(text);
  INFO((r ? std::string() : r.error().str()));
  REQUIRE(r.has_value());
  return *r;
}

Spec parse_ok(const json& j) {
  return parse_text_ok(j.dump());
}

std::string error_of_text(const std::string& text) {
  auto r = parse_spec(text);
  REQUIRE_FALSE(r.has_value());
  return r.error().str();
}

std::string error_of(const json& j) {
  return error_of_text(j.dump());
}

// The error for `j` with the value at `pointer` ("/process/user/uid") replaced.
std::string error_with(json j, const std::string& pointer, json value) {
  j[json::json_pointer(pointer)] = std::move(value);
  return error_of(j);
}

std::string full_error_with(const std::string& pointer, json value) {
  return error_with(full_json(), pointer, std::move(value));
}

std::string full_error_without(const std::string& pointer) {
  json j = full_json();
  json::json_pointer p(pointer);
  j.at(p.parent_pointer()).erase(p.back());
  return error_of(j);
}

// A temporary bundle directory, removed on scope exit even when a check fails.
class TempBundle {
 public:
  TempBundle() {
    std::string tmpl = (std::filesystem::temp_directory_path() /
                        ("berth-spec-test-" + std::to_string(::getpid()) + "-XXXXXX"))
                           .string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
  }
  ~TempBundle() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  TempBundle(const TempBundle&) = delete;
  TempBundle& operator=(const TempBundle&) = delete;

  const std::string& dir() const { return dir_; }
  void write_config(const std::string& text) const {
    std::ofstream out(dir_ + "/config.json");
    out << text;
    REQUIRE(out.good());
  }

 private:
  std::string dir_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Valid specs

TEST_CASE("spec: a full runc-style spec parses into the right values", "[spec]") {
  auto r = load_spec(kFullBundle);
  INFO((r ? std::string() : r.error().str()));
  REQUIRE(r.has_value());
  const Spec& s = *r;

  CHECK(s.oci_version == "1.0.2-dev");
  CHECK(s.root.path == "rootfs");
  CHECK(s.root.readonly);
  CHECK(s.hostname == "berth");
  CHECK(s.domainname == "example.org");

  REQUIRE(s.process.has_value());
  const auto& p = *s.process;
  CHECK(p.terminal);
  REQUIRE(p.console_size.has_value());
  CHECK(p.console_size->height == 24);
  CHECK(p.console_size->width == 80);
  CHECK(p.user.uid == 1000);
  CHECK(p.user.gid == 1001);
  CHECK(p.user.umask == std::optional<uint32_t>(18));
  CHECK(p.user.additional_gids == std::vector<uint32_t>{5, 10});
  CHECK(p.args == std::vector<std::string>{"sh", "-c", "echo hello"});
  REQUIRE(p.env.size() == 3);
  CHECK(p.env[1] == "TERM=xterm");
  CHECK(p.env[2] == "EMPTY=");
  CHECK(p.cwd == "/home/user");
  REQUIRE(p.capabilities.has_value());
  CHECK(p.capabilities->bounding ==
        std::vector<std::string>{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"});
  CHECK(p.capabilities->effective == std::vector<std::string>{"CAP_AUDIT_WRITE", "CAP_KILL"});
  CHECK(p.capabilities->inheritable.empty());
  CHECK(p.capabilities->permitted.size() == 3);
  CHECK(p.capabilities->ambient == std::vector<std::string>{"CAP_NET_BIND_SERVICE"});
  REQUIRE(p.rlimits.size() == 2);
  CHECK(p.rlimits[0].type == "RLIMIT_NOFILE");
  CHECK(p.rlimits[0].resource == RLIMIT_NOFILE);
  CHECK(p.rlimits[0].soft == 512);
  CHECK(p.rlimits[0].hard == 1024);
  CHECK(p.rlimits[1].resource == RLIMIT_CORE);
  CHECK(p.rlimits[1].soft == 0);
  CHECK(p.rlimits[1].hard == RLIM_INFINITY);
  CHECK(p.no_new_privileges);
  CHECK(p.oom_score_adj == std::optional<int>(-500));
  CHECK(p.apparmor_profile == "berth-default");
  CHECK(p.selinux_label == "system_u:system_r:container_t:s0:c1,c2");

  REQUIRE(s.mounts.size() == 8);
  CHECK(s.mounts[0].destination == "/proc");
  CHECK(s.mounts[0].type == "proc");
  CHECK(s.mounts[0].source == "proc");
  CHECK(s.mounts[0].options.empty());
  CHECK(s.mounts[2].options == std::vector<std::string>{"nosuid", "noexec", "newinstance",
                                                        "ptmxmode=0666", "mode=0620", "gid=5"});
  CHECK(s.mounts[7].destination == "/data");
  CHECK(s.mounts[7].type.empty());
  CHECK(s.mounts[7].source == "/srv/data");

  REQUIRE(s.hooks.prestart.size() == 1);
  CHECK(s.hooks.prestart[0].path == "/usr/bin/fix-mounts");
  CHECK(s.hooks.prestart[0].args == std::vector<std::string>{"fix-mounts", "arg1"});
  CHECK(s.hooks.prestart[0].env == std::vector<std::string>{"key1=value1"});
  CHECK_FALSE(s.hooks.prestart[0].timeout.has_value());
  REQUIRE(s.hooks.create_runtime.size() == 1);
  CHECK(s.hooks.create_runtime[0].timeout == std::optional<int>(5));
  REQUIRE(s.hooks.create_container.size() == 1);
  CHECK(s.hooks.create_container[0].path == "/usr/bin/create-container");
  REQUIRE(s.hooks.start_container.size() == 1);
  CHECK(s.hooks.start_container[0].path == "/usr/bin/refresh-ldcache");
  REQUIRE(s.hooks.poststart.size() == 1);
  CHECK(s.hooks.poststart[0].timeout == std::optional<int>(1));
  REQUIRE(s.hooks.poststop.size() == 2);
  CHECK(s.hooks.poststop[1].path == "/usr/bin/second");

  CHECK(s.annotations ==
        std::map<std::string, std::string>{{"com.example.key1", "value1"},
                                           {"org.opencontainers.image.title", "demo"}});

  const auto& l = s.linux;
  REQUIRE(l.namespaces.size() == 8);
  CHECK(l.namespaces[0].type == NamespaceType::pid);
  CHECK(l.namespaces[0].path.empty());
  CHECK(l.namespaces[1].type == NamespaceType::network);
  CHECK(l.namespaces[1].path == "/var/run/netns/berth");
  CHECK(l.namespaces[7].type == NamespaceType::time);
  REQUIRE(l.uid_mappings.size() == 1);
  CHECK(l.uid_mappings[0].container_id == 0);
  CHECK(l.uid_mappings[0].host_id == 100000);
  CHECK(l.uid_mappings[0].size == 65536);
  REQUIRE(l.gid_mappings.size() == 2);
  CHECK(l.gid_mappings[1].container_id == 1000);
  CHECK(l.gid_mappings[1].host_id == 300000);
  CHECK(l.gid_mappings[1].size == 1);

  REQUIRE(l.devices.size() == 3);
  CHECK(l.devices[0].path == "/dev/fuse");
  CHECK(l.devices[0].type == "c");
  CHECK(l.devices[0].major == 10);
  CHECK(l.devices[0].minor == 229);
  CHECK(l.devices[0].file_mode == std::optional<uint32_t>(0666));
  CHECK(l.devices[0].uid == std::optional<uint32_t>(0));
  CHECK(l.devices[0].gid == std::optional<uint32_t>(0));
  CHECK(l.devices[1].type == "b");
  CHECK_FALSE(l.devices[1].file_mode.has_value());
  CHECK(l.devices[2].type == "p");
  CHECK(l.devices[2].major == 0);

  CHECK(l.cgroups_path == "/berth/full");
  REQUIRE(l.resources.has_value());
  const auto& res = *l.resources;
  REQUIRE(res.devices.size() == 3);
  CHECK_FALSE(res.devices[0].allow);
  CHECK(res.devices[0].type.empty());
  CHECK_FALSE(res.devices[0].major.has_value());
  CHECK(res.devices[0].access == "rwm");
  CHECK(res.devices[1].allow);
  CHECK(res.devices[1].type == "c");
  CHECK(res.devices[1].major == std::optional<int64_t>(10));
  CHECK(res.devices[1].minor == std::optional<int64_t>(229));
  CHECK(res.devices[2].minor == std::optional<int64_t>(-1));
  REQUIRE(res.memory.has_value());
  CHECK(res.memory->limit == std::optional<int64_t>(536870912));
  CHECK(res.memory->reservation == std::optional<int64_t>(268435456));
  CHECK(res.memory->swap == std::optional<int64_t>(-1));
  CHECK(res.memory->swappiness == std::optional<uint64_t>(60));
  CHECK(res.memory->disable_oom_killer == std::optional<bool>(true));
  REQUIRE(res.cpu.has_value());
  CHECK(res.cpu->shares == std::optional<uint64_t>(512));
  CHECK(res.cpu->quota == std::optional<int64_t>(50000));
  CHECK(res.cpu->period == std::optional<uint64_t>(100000));
  CHECK(res.cpu->cpus == "0-1");
  CHECK(res.cpu->mems == "0");
  CHECK(res.cpu->realtime_runtime == std::optional<int64_t>(950000));
  CHECK(res.cpu->realtime_period == std::optional<uint64_t>(1000000));
  CHECK(res.memory->kernel == std::optional<int64_t>(-1));
  CHECK(res.pids_limit == std::optional<int64_t>(128));
  REQUIRE(res.block_io.has_value());
  const auto& bio = *res.block_io;
  CHECK(bio.weight == std::optional<uint16_t>(500));
  REQUIRE(bio.weight_device.size() == 1);
  CHECK(bio.weight_device[0].major == 8);
  CHECK(bio.weight_device[0].minor == 0);
  CHECK(bio.weight_device[0].rate == 700);
  CHECK(bio.leaf_weight == std::optional<uint16_t>(300));
  REQUIRE(bio.leaf_weight_device.size() == 1);
  CHECK(bio.leaf_weight_device[0].major == 8);
  CHECK(bio.leaf_weight_device[0].rate == 50);
  REQUIRE(bio.throttle_read_bps.size() == 1);
  CHECK(bio.throttle_read_bps[0].rate == 1048576);
  REQUIRE(bio.throttle_write_bps.size() == 1);
  CHECK(bio.throttle_write_bps[0].minor == 16);
  CHECK(bio.throttle_write_bps[0].rate == 2097152);
  REQUIRE(bio.throttle_read_iops.size() == 1);
  CHECK(bio.throttle_read_iops[0].rate == 300);
  REQUIRE(bio.throttle_write_iops.size() == 1);
  CHECK(bio.throttle_write_iops[0].minor == 48);
  CHECK(bio.throttle_write_iops[0].rate == 400);
  CHECK(res.unified ==
        std::map<std::string, std::string>{{"io.weight", "default 100"}, {"memory.high", "400M"}});

  CHECK(l.sysctl.size() == 5);
  CHECK(l.sysctl.at("net/ipv4/conf/eth0.100/rp_filter") == "0");
  CHECK(l.sysctl.at("kernel.shmmax") == "4096");

  REQUIRE(l.seccomp.has_value());
  const auto& sc = *l.seccomp;
  CHECK(sc.default_action == SeccompAction::errno_ret);
  CHECK(sc.default_errno_ret == std::optional<unsigned>(1));
  CHECK(sc.architectures ==
        std::vector<std::string>{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"});
  CHECK(sc.flags == std::vector<std::string>{"SECCOMP_FILTER_FLAG_LOG"});
  CHECK(sc.listener_path == "/run/seccomp-agent.sock");
  REQUIRE(sc.syscalls.size() == 6);
  CHECK(sc.syscalls[0].names == std::vector<std::string>{"read", "write", "exit_group"});
  CHECK(sc.syscalls[0].action == SeccompAction::allow);
  CHECK_FALSE(sc.syscalls[0].errno_ret.has_value());
  CHECK(sc.syscalls[0].args.empty());
  CHECK(sc.syscalls[1].action == SeccompAction::errno_ret);
  CHECK(sc.syscalls[1].errno_ret == std::optional<unsigned>(38));
  REQUIRE(sc.syscalls[2].args.size() == 1);
  CHECK(sc.syscalls[2].args[0].index == 0);
  CHECK(sc.syscalls[2].args[0].value == 8);
  CHECK(sc.syscalls[2].args[0].value_two == 0);
  CHECK(sc.syscalls[2].args[0].op == SeccompOp::eq);
  REQUIRE(sc.syscalls[3].args.size() == 1);
  CHECK(sc.syscalls[3].args[0].value == 2114060288);
  CHECK(sc.syscalls[3].args[0].op == SeccompOp::masked_eq);
  CHECK(sc.syscalls[4].action == SeccompAction::notify);
  CHECK(sc.syscalls[5].action == SeccompAction::kill_process);

  CHECK(l.rootfs_propagation == "rslave");
  REQUIRE(l.masked_paths.size() == 10);
  CHECK(l.masked_paths[0] == "/proc/acpi");
  CHECK(l.masked_paths[9] == "/proc/scsi");
  CHECK(l.readonly_paths == std::vector<std::string>{"/proc/bus", "/proc/fs", "/proc/irq",
                                                     "/proc/sys", "/proc/sysrq-trigger"});
  CHECK(l.mount_label == "system_u:object_r:container_file_t:s0:c1,c2");
  REQUIRE(l.personality.has_value());
  CHECK(l.personality->domain == "LINUX32");
  CHECK(l.personality->flags.empty());

  CHECK(berth::runtime::validate_for_run(s).has_value());
}

TEST_CASE("spec: a minimal spec gets the defaults", "[spec]") {
  Spec s = parse_ok(minimal_json());
  CHECK(s.oci_version == "1.0.2");
  CHECK(s.root.path == "rootfs");
  CHECK_FALSE(s.root.readonly);
  CHECK_FALSE(s.process.has_value());
  CHECK(s.hostname.empty());
  CHECK(s.mounts.empty());
  CHECK(s.hooks.prestart.empty());
  CHECK(s.annotations.empty());
  CHECK(s.linux.namespaces.empty());
  CHECK_FALSE(s.linux.resources.has_value());
  CHECK_FALSE(s.linux.seccomp.has_value());
  CHECK_FALSE(s.linux.personality.has_value());

  json j = minimal_json();
  j["process"] = {{"args", {"true"}}};
  s = parse_ok(j);
  REQUIRE(s.process.has_value());
  CHECK(s.process->cwd == "/");
  CHECK(s.process->user.uid == 0);
  CHECK(s.process->user.gid == 0);
  CHECK_FALSE(s.process->user.umask.has_value());
  CHECK_FALSE(s.process->terminal);
  CHECK_FALSE(s.process->capabilities.has_value());
  CHECK_FALSE(s.process->oom_score_adj.has_value());
  CHECK_FALSE(s.process->no_new_privileges);
}

// Fields of the runtime-spec itself are parsed, applied or refused (see the
// intelRdt/timeOffsets test); only fields the spec does not define, or other
// platforms' sections, are ignored.
TEST_CASE("spec: unknown fields are ignored at every level", "[spec]") {
  json j = full_json();
  j["windows"] = {{"layerFolders", {"C:\\x"}}};
  j["vm"] = {{"hypervisor", {{"path", "/usr/bin/qemu"}}}};
  j["process"]["user"]["username"] = "someone";
  j["process"]["ioPriority"] = {{"class", "IOPRIO_CLASS_IDLE"}, {"priority", 4}};
  j["process"]["scheduler"] = {{"policy", "SCHED_OTHER"}};
  j["mounts"][0]["uidMappings"] = json::array();
  j["hooks"]["futureHook"] = {{{"path", "relative/is/not/checked"}}};
  j["linux"]["resources"]["rdma"] = {{"mlx5_1", {{"hcaHandles", 3}}}};
  j["linux"]["seccomp"]["syscalls"][0]["comment"] = "allowed";
  j["linux"]["namespaces"][0]["extra"] = true;
  Spec s = parse_ok(j);
  CHECK(s.linux.namespaces.size() == 8);
  CHECK(s.process->user.uid == 1000);
}

TEST_CASE("spec: JSON null is the same as an absent field", "[spec]") {
  json j = minimal_json();
  j["process"] = {{"args", {"sh"}}, {"capabilities", nullptr}, {"cwd", nullptr}};
  j["hooks"] = nullptr;
  j["linux"] = {{"seccomp", nullptr}, {"resources", {{"memory", nullptr}}}};
  Spec s = parse_ok(j);
  REQUIRE(s.process.has_value());
  CHECK_FALSE(s.process->capabilities.has_value());
  CHECK(s.process->cwd == "/");
  CHECK_FALSE(s.linux.seccomp.has_value());
  REQUIRE(s.linux.resources.has_value());
  CHECK_FALSE(s.linux.resources->memory.has_value());

  // Inside an array a null is a value of the wrong type, not a gap.
  j["process"]["args"] = {"sh", nullptr};
  CHECK(error_of(j) == "spec: process.args[1]: expected a string, got null");
}

// ---------------------------------------------------------------------------
// Malformed JSON and the top level

TEST_CASE("spec: malformed JSON says where it goes wrong", "[spec]") {
  CHECK(error_of_text("") ==
        "spec: config.json is not valid JSON (line 1, column 1, byte 1): syntax error while "
        "parsing value - unexpected end of input; expected '[', '{', or a literal");
  CHECK(error_of_text("{\"ociVersion\": \"1.0.2\",") ==
        "spec: config.json is not valid JSON (line 1, column 24, byte 24): syntax error while "
        "parsing object key - unexpected end of input; expected string literal");
  CHECK(error_of_text("{\n  \"a\": x\n}") ==
        "spec: config.json is not valid JSON (line 2, column 8, byte 10): syntax error while "
        "parsing value - invalid literal");
  CHECK(error_of_text("{} {}") ==
        "spec: config.json is not valid JSON (line 1, column 4, byte 4): syntax error while "
        "parsing value - unexpected '{'; expected end of input");
  // An unterminated string: the message must not echo the rest of the file.
  CHECK(error_of_text("{\"a\": \"" + std::string(5000, 'x')) ==
        "spec: config.json is not valid JSON (line 1, column 5008, byte 5008): syntax error "
        "while parsing value - invalid string: missing closing quote");
  CHECK(error_of_text("{\"a\": 1e400}") ==
        "spec: config.json is not valid JSON (byte 11): number overflow parsing '1e400'");
  CHECK(error_of_text("{\"a\": \"\xff\"}") ==
        "spec: config.json is not valid JSON (line 1, column 8, byte 8): syntax error while "
        "parsing value - invalid string: ill-formed UTF-8 byte");
}

TEST_CASE("spec: the document must be an object", "[spec]") {
  CHECK(error_of_text("[]") == "spec: config.json: expected an object, got array");
  CHECK(error_of_text("null") == "spec: config.json: expected an object, got null");
  CHECK(error_of_text("\"1.0.2\"") == "spec: config.json: expected an object, got string");
}

TEST_CASE("spec: ociVersion", "[spec]") {
  json j = minimal_json();
  j.erase("ociVersion");
  CHECK(error_of(j) == "spec: ociVersion: required field is missing");
  j["ociVersion"] = 1;
  CHECK(error_of(j) == "spec: ociVersion: expected a string, got number");
  j["ociVersion"] = "2.0.0";
  CHECK(error_of(j) == "spec: ociVersion: unsupported version \"2.0.0\" (berth supports 1.x)");
  j["ociVersion"] = "0.6.0";
  CHECK(error_of(j) == "spec: ociVersion: unsupported version \"0.6.0\" (berth supports 1.x)");
  j["ociVersion"] = "10.0.0";
  CHECK(error_of(j) == "spec: ociVersion: unsupported version \"10.0.0\" (berth supports 1.x)");
  j["ociVersion"] = "";
  CHECK(error_of(j) == "spec: ociVersion: unsupported version \"\" (berth supports 1.x)");
  for (const char* ok : {"1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.3.0-rc.1"}) {
    j["ociVersion"] = ok;
    CHECK(parse_ok(j).oci_version == ok);
  }
}

TEST_CASE("spec: root", "[spec]") {
  json j = minimal_json();
  j.erase("root");
  CHECK(error_of(j) == "spec: root: required field is missing");
  j["root"] = "rootfs";
  CHECK(error_of(j) == "spec: root: expected an object, got string");
  j["root"] = json::object();
  CHECK(error_of(j) == "spec: root.path: required field is missing");
  j["root"] = {{"path", ""}};
  CHECK(error_of(j) == "spec: root.path: must not be empty");
  j["root"] = {{"path", 7}};
  CHECK(error_of(j) == "spec: root.path: expected a string, got number");
  j["root"] = {{"path", "rootfs"}, {"readonly", "yes"}};
  CHECK(error_of(j) == "spec: root.readonly: expected a boolean, got string");
  j["root"] = {{"path", "/abs/rootfs"}, {"readonly", false}};
  CHECK(parse_ok(j).root.path == "/abs/rootfs");
}

// ---------------------------------------------------------------------------
// Numbers

TEST_CASE("spec: unsigned fields reject strings, negatives, fractions and overflow", "[spec]") {
  const std::string uid = "spec: process.user.uid: expected an unsigned 32-bit integer, got ";
  CHECK(full_error_with("/process/user/uid", "0") == uid + "string");
  CHECK(full_error_with("/process/user/uid", -1) == uid + "-1");
  CHECK(full_error_with("/process/user/uid", 1.5) == uid + "1.5");
  CHECK(full_error_with("/process/user/uid", 1.0) == uid + "1.0");
  CHECK(full_error_with("/process/user/uid", 4294967296ULL) == uid + "4294967296");
  CHECK(full_error_with("/process/user/uid", true) == uid + "boolean");
  CHECK(full_error_with("/process/user/uid", json::array()) == uid + "array");
  CHECK(full_error_with("/process/user/gid", -5) ==
        "spec: process.user.gid: expected an unsigned 32-bit integer, got -5");
  CHECK(full_error_with("/process/user/umask", "022") ==
        "spec: process.user.umask: expected an unsigned 32-bit integer, got string");
  CHECK(full_error_with("/process/user/additionalGids/1", -10) ==
        "spec: process.user.additionalGids[1]: expected an unsigned 32-bit integer, got -10");
  CHECK(full_error_with("/process/consoleSize/height", -24) ==
        "spec: process.consoleSize.height: expected an unsigned 32-bit integer, got -24");
  CHECK(full_error_with("/process/rlimits/1/hard", -1) ==
        "spec: process.rlimits[1].hard: expected an unsigned 64-bit integer, got -1");
  CHECK(full_error_with("/process/rlimits/0/soft", 18446744073709551616.0) ==
        "spec: process.rlimits[0].soft: expected an unsigned 64-bit integer, got "
        "1.8446744073709552e+19");
  CHECK(full_error_with("/linux/uidMappings/0/hostID", "100000") ==
        "spec: linux.uidMappings[0].hostID: expected an unsigned 32-bit integer, got string");
  CHECK(full_error_with("/linux/devices/0/fileMode", -1) ==
        "spec: linux.devices[0].fileMode: expected an unsigned 32-bit integer, got -1");
  CHECK(full_error_with("/linux/resources/cpu/shares", -2) ==
        "spec: linux.resources.cpu.shares: expected an unsigned 64-bit integer, got -2");
  CHECK(full_error_with("/linux/resources/blockIO/weight", 70000) ==
        "spec: linux.resources.blockIO.weight: expected an unsigned 16-bit integer, got 70000");
  CHECK(full_error_with("/linux/resources/blockIO/weightDevice/0/weight", 65536) ==
        "spec: linux.resources.blockIO.weightDevice[0].weight: expected an unsigned 16-bit "
        "integer, got 65536");
  CHECK(full_error_with("/linux/resources/blockIO/throttleReadBpsDevice/0/rate", "1M") ==
        "spec: linux.resources.blockIO.throttleReadBpsDevice[0].rate: expected an unsigned "
        "64-bit integer, got string");
  CHECK(full_error_with("/linux/seccomp/defaultErrnoRet", -1) ==
        "spec: linux.seccomp.defaultErrnoRet: expected an unsigned 32-bit integer, got -1");
  CHECK(full_error_with("/linux/seccomp/syscalls/1/errnoRet", 38.5) ==
        "spec: linux.seccomp.syscalls[1].errnoRet: expected an unsigned 32-bit integer, got 38.5");
  CHECK(full_error_with("/linux/seccomp/syscalls/2/args/0/value", -8) ==
        "spec: linux.seccomp.syscalls[2].args[0].value: expected an unsigned 64-bit integer, got "
        "-8");
}

TEST_CASE("spec: signed fields take negatives but not strings or fractions", "[spec]") {
  CHECK(full_error_with("/linux/resources/memory/limit", "1G") ==
        "spec: linux.resources.memory.limit: expected a 64-bit integer, got string");
  CHECK(full_error_with("/linux/resources/memory/limit", 0.5) ==
        "spec: linux.resources.memory.limit: expected a 64-bit integer, got 0.5");
  CHECK(full_error_with("/linux/resources/memory/limit", 9223372036854775808ULL) ==
        "spec: linux.resources.memory.limit: expected a 64-bit integer, got 9223372036854775808");
  CHECK(full_error_with("/linux/devices/1/major", "8") ==
        "spec: linux.devices[1].major: expected a 64-bit integer, got string");
  CHECK(full_error_with("/process/oomScoreAdj", 1.5) ==
        "spec: process.oomScoreAdj: expected a 32-bit integer, got 1.5");
  CHECK(full_error_with("/hooks/poststart/0/timeout", "1s") ==
        "spec: hooks.poststart[0].timeout: expected a 32-bit integer, got string");

  json j = full_json();
  j["linux"]["resources"]["memory"]["limit"] = -1;
  j["linux"]["resources"]["memory"]["reservation"] = -1;
  j["linux"]["resources"]["cpu"]["quota"] = -1;
  j["linux"]["resources"]["pids"]["limit"] = -1;
  j["linux"]["resources"]["memory"]["swap"] = 9223372036854775807LL;
  Spec s = parse_ok(j);
  CHECK(s.linux.resources->memory->limit == std::optional<int64_t>(-1));
  CHECK(s.linux.resources->memory->reservation == std::optional<int64_t>(-1));
  CHECK(s.linux.resources->memory->swap ==
        std::optional<int64_t>(std::numeric_limits<int64_t>::max()));
  CHECK(s.linux.resources->cpu->quota == std::optional<int64_t>(-1));
  CHECK(s.linux.resources->pids_limit == std::optional<int64_t>(-1));
}

// ---------------------------------------------------------------------------
// process

TEST_CASE("spec: process types at nested paths", "[spec]") {
  CHECK(full_error_with("/process", json::array()) ==
        "spec: process: expected an object, got array");
  CHECK(full_error_with("/process/terminal", "true") ==
        "spec: process.terminal: expected a boolean, got string");
  CHECK(full_error_with("/process/consoleSize", 80) ==
        "spec: process.consoleSize: expected an object, got number");
  CHECK(full_error_without("/process/consoleSize/width") ==
        "spec: process.consoleSize.width: required field is missing");
  CHECK(full_error_with("/process/user", "root") ==
        "spec: process.user: expected an object, got string");
  CHECK(full_error_with("/process/args", "sh -c true") ==
        "spec: process.args: expected an array, got string");
  CHECK(full_error_with("/process/args/2", 1) ==
        "spec: process.args[2]: expected a string, got number");
  CHECK(full_error_with("/process/env", json::object()) ==
        "spec: process.env: expected an array, got object");
  CHECK(full_error_with("/process/capabilities", json::array({"CAP_KILL"})) ==
        "spec: process.capabilities: expected an object, got array");
  CHECK(full_error_with("/process/capabilities/ambient/0", false) ==
        "spec: process.capabilities.ambient[0]: expected a string, got boolean");
  CHECK(full_error_with("/process/noNewPrivileges", 1) ==
        "spec: process.noNewPrivileges: expected a boolean, got number");
  CHECK(full_error_with("/process/apparmorProfile", json::object()) ==
        "spec: process.apparmorProfile: expected a string, got object");
  CHECK(full_error_with("/process/selinuxLabel", 0) ==
        "spec: process.selinuxLabel: expected a string, got number");
}

TEST_CASE("spec: process.env entries are KEY=VALUE", "[spec]") {
  CHECK(full_error_with("/process/env/1", "TERM") ==
        "spec: process.env[1]: \"TERM\" is not KEY=VALUE");
  CHECK(full_error_with("/process/env/0", "=value") ==
        "spec: process.env[0]: \"=value\" is not KEY=VALUE");
  CHECK(full_error_with("/process/env/0", "") == "spec: process.env[0]: \"\" is not KEY=VALUE");
  CHECK(full_error_with("/hooks/prestart/0/env/0", "novalue") ==
        "spec: hooks.prestart[0].env[0]: \"novalue\" is not KEY=VALUE");
  json j = full_json();
  j["process"]["env"] = {"A==b", "B=c=d"};
  CHECK(parse_ok(j).process->env == std::vector<std::string>{"A==b", "B=c=d"});
}

TEST_CASE("spec: process.cwd must be absolute", "[spec]") {
  CHECK(full_error_with("/process/cwd", "home/user") ==
        "spec: process.cwd: must be an absolute path, got \"home/user\"");
  CHECK(full_error_with("/process/cwd", "") ==
        "spec: process.cwd: must be an absolute path, got \"\"");
  CHECK(full_error_with("/process/cwd", 1) == "spec: process.cwd: expected a string, got number");
}

TEST_CASE("spec: process.rlimits", "[spec]") {
  CHECK(full_error_with("/process/rlimits/1/type", "RLIMIT_FOO") ==
        "spec: process.rlimits[1].type: unknown rlimit \"RLIMIT_FOO\"");
  CHECK(full_error_with("/process/rlimits/1/type", "nofile") ==
        "spec: process.rlimits[1].type: unknown rlimit \"nofile\"");
  CHECK(full_error_without("/process/rlimits/0/type") ==
        "spec: process.rlimits[0].type: required field is missing");
  CHECK(full_error_without("/process/rlimits/0/hard") ==
        "spec: process.rlimits[0].hard: required field is missing");
  CHECK(full_error_without("/process/rlimits/0/soft") ==
        "spec: process.rlimits[0].soft: required field is missing");
  CHECK(full_error_with("/process/rlimits/0/soft", 2048) ==
        "spec: process.rlimits[0]: soft limit 2048 is greater than hard limit 1024");
  CHECK(full_error_with("/process/rlimits/0", "RLIMIT_NOFILE") ==
        "spec: process.rlimits[0]: expected an object, got string");

  json j = full_json();
  j["process"]["rlimits"].push_back({{"type", "RLIMIT_NOFILE"}, {"soft", 1}, {"hard", 1}});
  CHECK(error_of(j) ==
        "spec: process.rlimits[2].type: duplicate rlimit \"RLIMIT_NOFILE\" (also at "
        "process.rlimits[0])");
}

TEST_CASE("spec: process.oomScoreAdj is within -1000..1000", "[spec]") {
  CHECK(full_error_with("/process/oomScoreAdj", 1001) ==
        "spec: process.oomScoreAdj: 1001 is out of range -1000..1000");
  CHECK(full_error_with("/process/oomScoreAdj", -1001) ==
        "spec: process.oomScoreAdj: -1001 is out of range -1000..1000");
  CHECK(full_error_with("/process/oomScoreAdj", 4294967296LL) ==
        "spec: process.oomScoreAdj: expected a 32-bit integer, got 4294967296");
  json j = full_json();
  j["process"]["oomScoreAdj"] = 1000;
  CHECK(parse_ok(j).process->oom_score_adj == std::optional<int>(1000));
  j["process"]["oomScoreAdj"] = -1000;
  CHECK(parse_ok(j).process->oom_score_adj == std::optional<int>(-1000));
}

TEST_CASE("spec: a NUL byte inside a string is refused", "[spec]") {
  CHECK(full_error_with("/process/cwd", std::string("/home\0/x", 8)) ==
        "spec: process.cwd: contains a NUL byte");
  CHECK(full_error_with("/process/args/0", std::string("sh\0", 3)) ==
        "spec: process.args[0]: contains a NUL byte");
  json j = full_json();
  j["annotations"][std::string("a\0b", 3)] = "v";
  CHECK(error_of(j) == "spec: annotations[\"a\\x00b\"]: contains a NUL byte");
}

// ---------------------------------------------------------------------------
// validate_for_run

TEST_CASE("spec: validate_for_run needs a process with args and an absolute cwd", "[spec]") {
  using berth::runtime::validate_for_run;
  Spec s = parse_ok(minimal_json());
  auto r = validate_for_run(s);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().str() == "spec: process: required to create or run a container");

  s.process.emplace();
  r = validate_for_run(s);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().str() == "spec: process.args: must be a non-empty array of strings");

  s.process->args = {""};
  r = validate_for_run(s);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().str() == "spec: process.args[0]: must not be empty");

  s.process->args = {"sh"};
  s.process->cwd = "relative";
  r = validate_for_run(s);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().str() == "spec: process.cwd: must be an absolute path, got \"relative\"");

  s.process->cwd = "/";
  CHECK(validate_for_run(s).has_value());

  // The parser accepts an empty args array: only running needs one.
  json j = minimal_json();
  j["process"] = {{"args", json::array()}};
  Spec parsed = parse_ok(j);
  r = validate_for_run(parsed);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().str() == "spec: process.args: must be a non-empty array of strings");
}

// ---------------------------------------------------------------------------
// mounts, hooks, annotations

TEST_CASE("spec: mounts", "[spec]") {
  CHECK(full_error_with("/mounts", json::object()) ==
        "spec: mounts: expected an array, got object");
  CHECK(full_error_with("/mounts/3/destination", "dev/shm") ==
        "spec: mounts[3].destination: must be an absolute path, got \"dev/shm\"");
  CHECK(full_error_without("/mounts/0/destination") ==
        "spec: mounts[0].destination: required field is missing");
  CHECK(full_error_with("/mounts/3/options/1", 1) ==
        "spec: mounts[3].options[1]: expected a string, got number");
  CHECK(full_error_with("/mounts/3/options", "nosuid,noexec") ==
        "spec: mounts[3].options: expected an array, got string");
  CHECK(full_error_with("/mounts/1/type", false) ==
        "spec: mounts[1].type: expected a string, got boolean");
  CHECK(full_error_with("/mounts/1/source", 0) ==
        "spec: mounts[1].source: expected a string, got number");
  CHECK(full_error_with("/mounts/2", "/dev/pts") ==
        "spec: mounts[2]: expected an object, got string");
}

TEST_CASE("spec: hooks", "[spec]") {
  CHECK(full_error_with("/hooks", json::array()) == "spec: hooks: expected an object, got array");
  CHECK(full_error_with("/hooks/prestart", json::object()) ==
        "spec: hooks.prestart: expected an array, got object");
  CHECK(full_error_with("/hooks/poststop/1/path", "second") ==
        "spec: hooks.poststop[1].path: must be an absolute path, got \"second\"");
  CHECK(full_error_without("/hooks/createContainer/0/path") ==
        "spec: hooks.createContainer[0].path: required field is missing");
  CHECK(full_error_with("/hooks/createRuntime/0/timeout", 0) ==
        "spec: hooks.createRuntime[0].timeout: must be greater than 0, got 0");
  CHECK(full_error_with("/hooks/startContainer/0/timeout", -3) ==
        "spec: hooks.startContainer[0].timeout: must be greater than 0, got -3");
  CHECK(full_error_with("/hooks/prestart/0/args/1", json::object()) ==
        "spec: hooks.prestart[0].args[1]: expected a string, got object");
}

TEST_CASE("spec: annotations are a string map", "[spec]") {
  CHECK(full_error_with("/annotations/com.example.key1", 1) ==
        "spec: annotations[\"com.example.key1\"]: expected a string, got number");
  CHECK(full_error_with("/annotations", json::array({"a=b"})) ==
        "spec: annotations: expected an object, got array");
}

// ---------------------------------------------------------------------------
// linux

TEST_CASE("spec: linux.namespaces", "[spec]") {
  CHECK(full_error_with("/linux", "linux") == "spec: linux: expected an object, got string");
  CHECK(full_error_with("/linux/namespaces", json::object()) ==
        "spec: linux.namespaces: expected an array, got object");
  CHECK(full_error_with("/linux/namespaces/2/type", "foo") ==
        "spec: linux.namespaces[2].type: unknown namespace type \"foo\"");
  CHECK(full_error_with("/linux/namespaces/2/type", "IPC") ==
        "spec: linux.namespaces[2].type: unknown namespace type \"IPC\"");
  CHECK(full_error_with("/linux/namespaces/2/type", 1) ==
        "spec: linux.namespaces[2].type: expected a string, got number");
  CHECK(full_error_without("/linux/namespaces/3/type") ==
        "spec: linux.namespaces[3].type: required field is missing");
  CHECK(full_error_with("/linux/namespaces/1/path", "var/run/netns/x") ==
        "spec: linux.namespaces[1].path: must be an absolute path, got \"var/run/netns/x\"");

  json j = full_json();
  j["linux"]["namespaces"].push_back({{"type", "pid"}, {"path", "/proc/1/ns/pid"}});
  CHECK(error_of(j) ==
        "spec: linux.namespaces[8].type: duplicate namespace type \"pid\" (also at "
        "linux.namespaces[0])");

  // An empty path means a new namespace, as an absent one does.
  j = full_json();
  j["linux"]["namespaces"][0]["path"] = "";
  Spec s = parse_ok(j);
  CHECK(s.linux.namespaces[0].path.empty());
}

TEST_CASE("spec: Linux::has_namespace and find_namespace", "[spec]") {
  Spec s = parse_ok(full_json());
  CHECK(s.linux.has_namespace(NamespaceType::time));
  const auto* net = s.linux.find_namespace(NamespaceType::network);
  REQUIRE(net != nullptr);
  CHECK(net->path == "/var/run/netns/berth");

  json j = minimal_json();
  j["linux"] = {{"namespaces", {{{"type", "mount"}}}}};
  s = parse_ok(j);
  CHECK(s.linux.has_namespace(NamespaceType::mount));
  CHECK_FALSE(s.linux.has_namespace(NamespaceType::pid));
  CHECK(s.linux.find_namespace(NamespaceType::user) == nullptr);
}

TEST_CASE("spec: linux.uidMappings and gidMappings", "[spec]") {
  CHECK(full_error_with("/linux/uidMappings/0/size", 0) ==
        "spec: linux.uidMappings[0].size: must be greater than 0");
  CHECK(full_error_without("/linux/gidMappings/1/hostID") ==
        "spec: linux.gidMappings[1].hostID: required field is missing");
  CHECK(full_error_without("/linux/gidMappings/0/containerID") ==
        "spec: linux.gidMappings[0].containerID: required field is missing");
  CHECK(full_error_with("/linux/uidMappings", json::object()) ==
        "spec: linux.uidMappings: expected an array, got object");
}

TEST_CASE("spec: mappings need a user namespace and a new user namespace needs mappings",
          "[spec]") {
  json mapping = {{{"containerID", 0}, {"hostID", 1000}, {"size", 1}}};
  json j = minimal_json();
  j["linux"] = {{"namespaces", {{{"type", "mount"}}}}, {"uidMappings", mapping}};
  CHECK(error_of(j) == "spec: linux.uidMappings: set, but linux.namespaces has no user namespace");
  j["linux"].erase("uidMappings");
  j["linux"]["gidMappings"] = mapping;
  CHECK(error_of(j) == "spec: linux.gidMappings: set, but linux.namespaces has no user namespace");

  j["linux"] = {{"namespaces", {{{"type", "user"}}}}};
  CHECK(error_of(j) ==
        "spec: linux.uidMappings: required for a new user namespace (one without a path)");
  j["linux"]["uidMappings"] = mapping;
  CHECK(error_of(j) ==
        "spec: linux.gidMappings: required for a new user namespace (one without a path)");
  j["linux"]["gidMappings"] = mapping;
  CHECK(parse_ok(j).linux.uid_mappings.size() == 1);

  // Joining an existing user namespace takes its mappings.
  j["linux"] = {{"namespaces", {{{"type", "user"}, {"path", "/proc/42/ns/user"}}}}};
  CHECK(parse_ok(j).linux.find_namespace(NamespaceType::user)->path == "/proc/42/ns/user");
}

TEST_CASE("spec: linux.devices", "[spec]") {
  CHECK(full_error_with("/linux/devices/0/type", "x") ==
        "spec: linux.devices[0].type: unknown device type \"x\" (expected c, b, u or p)");
  CHECK(full_error_without("/linux/devices/0/type") ==
        "spec: linux.devices[0].type: required field is missing");
  CHECK(full_error_with("/linux/devices/1/path", "dev/sda") ==
        "spec: linux.devices[1].path: must be an absolute path, got \"dev/sda\"");
  CHECK(full_error_without("/linux/devices/0/path") ==
        "spec: linux.devices[0].path: required field is missing");
  CHECK(full_error_without("/linux/devices/0/major") ==
        "spec: linux.devices[0].major: required field is missing");
  CHECK(full_error_without("/linux/devices/1/minor") ==
        "spec: linux.devices[1].minor: required field is missing");
  CHECK(full_error_with("/linux/devices/0/uid", -1) ==
        "spec: linux.devices[0].uid: expected an unsigned 32-bit integer, got -1");
}

TEST_CASE("spec: linux.resources", "[spec]") {
  CHECK(full_error_with("/linux/resources", json::array()) ==
        "spec: linux.resources: expected an object, got array");
  CHECK(full_error_with("/linux/resources/memory/limit", -2) ==
        "spec: linux.resources.memory.limit: -2 is not a byte count (-1 means unlimited)");
  CHECK(full_error_with("/linux/resources/memory/swap", -100) ==
        "spec: linux.resources.memory.swap: -100 is not a byte count (-1 means unlimited)");
  CHECK(full_error_with("/linux/resources/memory/reservation", -2) ==
        "spec: linux.resources.memory.reservation: -2 is not a byte count (-1 means unlimited)");
  CHECK(full_error_with("/linux/resources/memory/swappiness", 101) ==
        "spec: linux.resources.memory.swappiness: 101 is out of range 0..100");
  CHECK(full_error_with("/linux/resources/memory/swappiness", -1) ==
        "spec: linux.resources.memory.swappiness: expected an unsigned 64-bit integer, got -1");
  CHECK(full_error_with("/linux/resources/memory/disableOOMKiller", "true") ==
        "spec: linux.resources.memory.disableOOMKiller: expected a boolean, got string");
  CHECK(full_error_with("/linux/resources/cpu/cpus", json::array({0, 1})) ==
        "spec: linux.resources.cpu.cpus: expected a string, got array");
  CHECK(full_error_with("/linux/resources/pids", 100) ==
        "spec: linux.resources.pids: expected an object, got number");
  CHECK(full_error_without("/linux/resources/blockIO/throttleWriteIOPSDevice/0/major") ==
        "spec: linux.resources.blockIO.throttleWriteIOPSDevice[0].major: required field is "
        "missing");
  CHECK(full_error_without("/linux/resources/blockIO/throttleReadIOPSDevice/0/rate") ==
        "spec: linux.resources.blockIO.throttleReadIOPSDevice[0].rate: required field is "
        "missing");
  CHECK(full_error_with("/linux/resources/blockIO/throttleWriteBpsDevice/0/minor", "16") ==
        "spec: linux.resources.blockIO.throttleWriteBpsDevice[0].minor: expected a 64-bit "
        "integer, got string");
  CHECK(full_error_with("/linux/resources/unified/memory.high", 400) ==
        "spec: linux.resources.unified[\"memory.high\"]: expected a string, got number");

  // runc takes swappiness 2^64-1 (a Go uint64 -1) as "unset".
  json j = full_json();
  j["linux"]["resources"]["memory"]["swappiness"] = std::numeric_limits<uint64_t>::max();
  CHECK_FALSE(parse_ok(j).linux.resources->memory->swappiness.has_value());
  j["linux"]["resources"]["memory"]["swappiness"] = 100;
  CHECK(parse_ok(j).linux.resources->memory->swappiness == std::optional<uint64_t>(100));
  j["linux"]["resources"]["pids"] = json::object();
  CHECK_FALSE(parse_ok(j).linux.resources->pids_limit.has_value());
}

TEST_CASE("spec: linux.resources.devices rules", "[spec]") {
  CHECK(full_error_without("/linux/resources/devices/1/allow") ==
        "spec: linux.resources.devices[1].allow: required field is missing");
  CHECK(full_error_with("/linux/resources/devices/1/allow", "true") ==
        "spec: linux.resources.devices[1].allow: expected a boolean, got string");
  CHECK(full_error_with("/linux/resources/devices/1/type", "p") ==
        "spec: linux.resources.devices[1].type: unknown device type \"p\" (expected a, c or b)");
  CHECK(full_error_with("/linux/resources/devices/0/access", "rwx") ==
        "spec: linux.resources.devices[0].access: \"rwx\" may only contain r, w and m");
  CHECK(full_error_with("/linux/resources/devices/2/major", "*") ==
        "spec: linux.resources.devices[2].major: expected a 64-bit integer, got string");
  json j = full_json();
  j["linux"]["resources"]["devices"][0]["type"] = "a";
  CHECK(parse_ok(j).linux.resources->devices[0].type == "a");
}

TEST_CASE("spec: linux.sysctl must be namespaced by the container's namespaces", "[spec]") {
  auto with = [](json namespaces, json sysctl) {
    json j = minimal_json();
    j["linux"] = {{"namespaces", std::move(namespaces)}, {"sysctl", std::move(sysctl)}};
    return j;
  };
  json none = json::array();
  json ipc = {{{"type", "ipc"}}};
  json net = {{{"type", "network"}}};
  json uts = {{{"type", "uts"}}};

  for (const char* name :
       {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced", "fs.mqueue.queues_max"}) {
    INFO(name);
    CHECK(error_of(with(none, {{name, "1"}})) ==
          std::string("spec: linux.sysctl[\"") + name +
              "\"]: requires linux.namespaces to include \"ipc\"");
    CHECK(parse_ok(with(ipc, {{name, "1"}})).linux.sysctl.at(name) == "1");
  }
  CHECK(error_of(with(ipc, {{"net.ipv4.ip_forward", "1"}})) ==
        "spec: linux.sysctl[\"net.ipv4.ip_forward\"]: requires linux.namespaces to include "
        "\"network\"");
  CHECK(error_of(with(ipc, {{"net/ipv4/ip_forward", "1"}})) ==
        "spec: linux.sysctl[\"net/ipv4/ip_forward\"]: requires linux.namespaces to include "
        "\"network\"");
  CHECK(parse_ok(with(net, {{"net.ipv4.ip_forward", "1"}})).linux.sysctl.size() == 1);
  // A netns joined by path (a pod's) is the container's own too.
  json joined_net = {{{"type", "network"}, {"path", "/var/run/netns/pod"}}};
  CHECK(parse_ok(with(joined_net, {{"net.core.somaxconn", "1024"}})).linux.sysctl.size() == 1);

  CHECK(error_of(with(none, {{"kernel.domainname", "x"}})) ==
        "spec: linux.sysctl[\"kernel.domainname\"]: requires linux.namespaces to include "
        "\"uts\"");
  CHECK(parse_ok(with(uts, {{"kernel.domainname", "x"}, {"kernel.hostname", "h"}}))
            .linux.sysctl.size() == 2);

  json both = json::array({{{"type", "ipc"}}, {{"type", "network"}}, {{"type", "uts"}}});
  CHECK(error_of(with(both, {{"vm.swappiness", "10"}})) ==
        "spec: linux.sysctl[\"vm.swappiness\"]: not in a separate kernel namespace; it would "
        "change the host");
  CHECK(error_of(with(both, {{"kernel.pid_max", "10"}})) ==
        "spec: linux.sysctl[\"kernel.pid_max\"]: not in a separate kernel namespace; it would "
        "change the host");
  CHECK(error_of(with(both, {{"netfilter.x", "1"}})) ==
        "spec: linux.sysctl[\"netfilter.x\"]: not in a separate kernel namespace; it would "
        "change the host");

  json j = with(uts, {{"kernel.hostname", "other"}});
  j["hostname"] = "berth";
  CHECK(error_of(j) ==
        "spec: linux.sysctl[\"kernel.hostname\"]: conflicts with the hostname field");

  CHECK(error_of(with(both, {{"net.ipv4.ip_forward", 1}})) ==
        "spec: linux.sysctl[\"net.ipv4.ip_forward\"]: expected a string, got number");
}

TEST_CASE("spec: hostname and domainname need a UTS namespace", "[spec]") {
  json j = minimal_json();
  j["hostname"] = "berth";
  CHECK(error_of(j) == "spec: hostname: unable to set hostname without a private UTS namespace");
  j.erase("hostname");
  j["domainname"] = "example.org";
  CHECK(error_of(j) ==
        "spec: domainname: unable to set domainname without a private UTS namespace");
  j["linux"] = {{"namespaces", {{{"type", "uts"}}}}};
  j["hostname"] = "berth";
  Spec s = parse_ok(j);
  CHECK(s.hostname == "berth");
  CHECK(s.domainname == "example.org");
  CHECK(full_error_with("/hostname", 1) == "spec: hostname: expected a string, got number");
}

TEST_CASE("spec: linux.seccomp", "[spec]") {
  CHECK(full_error_with("/linux/seccomp", "default") ==
        "spec: linux.seccomp: expected an object, got string");
  CHECK(full_error_without("/linux/seccomp/defaultAction") ==
        "spec: linux.seccomp.defaultAction: required field is missing");
  CHECK(full_error_with("/linux/seccomp/defaultAction", "SCMP_ACT_DENY") ==
        "spec: linux.seccomp.defaultAction: unknown seccomp action \"SCMP_ACT_DENY\"");
  CHECK(full_error_with("/linux/seccomp/syscalls/3/action", "allow") ==
        "spec: linux.seccomp.syscalls[3].action: unknown seccomp action \"allow\"");
  CHECK(full_error_without("/linux/seccomp/syscalls/0/action") ==
        "spec: linux.seccomp.syscalls[0].action: required field is missing");
  CHECK(full_error_without("/linux/seccomp/syscalls/0/names") ==
        "spec: linux.seccomp.syscalls[0].names: required field is missing");
  CHECK(full_error_with("/linux/seccomp/syscalls/0/names", json::array()) ==
        "spec: linux.seccomp.syscalls[0].names: must be a non-empty array of strings");
  CHECK(full_error_with("/linux/seccomp/syscalls/0/names/2", 231) ==
        "spec: linux.seccomp.syscalls[0].names[2]: expected a string, got number");
  CHECK(full_error_with("/linux/seccomp/syscalls/2/args/0/op", "SCMP_CMP_FOO") ==
        "spec: linux.seccomp.syscalls[2].args[0].op: unknown seccomp operator \"SCMP_CMP_FOO\"");
  CHECK(full_error_without("/linux/seccomp/syscalls/2/args/0/op") ==
        "spec: linux.seccomp.syscalls[2].args[0].op: required field is missing");
  CHECK(full_error_with("/linux/seccomp/syscalls/2/args/0/index", 6) ==
        "spec: linux.seccomp.syscalls[2].args[0].index: 6 is out of range 0..5");
  CHECK(full_error_without("/linux/seccomp/syscalls/3/args/0/value") ==
        "spec: linux.seccomp.syscalls[3].args[0].value: required field is missing");
  CHECK(full_error_with("/linux/seccomp/architectures/1", 3) ==
        "spec: linux.seccomp.architectures[1]: expected a string, got number");
  CHECK(full_error_with("/linux/seccomp/flags", "SECCOMP_FILTER_FLAG_LOG") ==
        "spec: linux.seccomp.flags: expected an array, got string");
}

TEST_CASE("spec: seccomp listenerPath is required exactly when an action notifies", "[spec]") {
  CHECK(full_error_without("/linux/seccomp/listenerPath") ==
        "spec: linux.seccomp.listenerPath: required because linux.seccomp.syscalls[4].action is "
        "SCMP_ACT_NOTIFY");
  CHECK(full_error_with("/linux/seccomp/syscalls/4/action", "SCMP_ACT_ERRNO") ==
        "spec: linux.seccomp.listenerPath: set, but no syscall action is SCMP_ACT_NOTIFY");
  CHECK(full_error_with("/linux/seccomp/defaultAction", "SCMP_ACT_NOTIFY") ==
        "spec: linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action");

  json j = full_json();
  j["linux"]["seccomp"].erase("listenerPath");
  j["linux"]["seccomp"]["syscalls"][4]["action"] = "SCMP_ACT_LOG";
  Spec s = parse_ok(j);
  CHECK(s.linux.seccomp->listener_path.empty());
  CHECK(s.linux.seccomp->syscalls[4].action == SeccompAction::log);
}

// listenerMetadata would be containerProcessState.metadata, which berth does
// not send: refused by name rather than dropped; empty asks for nothing.
TEST_CASE("spec: seccomp listenerMetadata is refused, not dropped", "[spec]") {
  CHECK(full_error_with("/linux/seccomp/listenerMetadata", "agent-metadata") ==
        "spec: linux.seccomp.listenerMetadata: cannot be passed on: berth sends the seccomp agent "
        "the container's state, which has no metadata field (no containerProcessState)");
  json j = full_json();
  j["linux"]["seccomp"]["listenerMetadata"] = "";
  CHECK(parse_ok(j).linux.seccomp->listener_path == "/run/seccomp-agent.sock");
}

TEST_CASE("spec: linux.rootfsPropagation is one of the mount propagations", "[spec]") {
  for (const char* p : {"private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
                        "runbindable", ""}) {
    json j = full_json();
    j["linux"]["rootfsPropagation"] = p;
    CHECK(parse_ok(j).linux.rootfs_propagation == p);
  }
  CHECK(full_error_with("/linux/rootfsPropagation", "recursive") ==
        "spec: linux.rootfsPropagation: unknown propagation \"recursive\" (expected private, "
        "rprivate, slave, rslave, shared, rshared, unbindable or runbindable)");
  CHECK(full_error_with("/linux/rootfsPropagation", "rprivate,") ==
        "spec: linux.rootfsPropagation: unknown propagation \"rprivate,\" (expected private, "
        "rprivate, slave, rslave, shared, rshared, unbindable or runbindable)");
}

TEST_CASE("spec: masked and read-only paths are absolute", "[spec]") {
  CHECK(full_error_with("/linux/maskedPaths/2", "proc/kcore") ==
        "spec: linux.maskedPaths[2]: must be an absolute path, got \"proc/kcore\"");
  CHECK(full_error_with("/linux/readonlyPaths/4", "") ==
        "spec: linux.readonlyPaths[4]: must be an absolute path, got \"\"");
  CHECK(full_error_with("/linux/readonlyPaths/0", 0) ==
        "spec: linux.readonlyPaths[0]: expected a string, got number");
}

TEST_CASE("spec: linux.personality, cgroupsPath and mountLabel", "[spec]") {
  CHECK(full_error_with("/linux/personality/domain", "LINUX64") ==
        "spec: linux.personality.domain: unknown domain \"LINUX64\" (expected LINUX or LINUX32)");
  CHECK(full_error_without("/linux/personality/domain") ==
        "spec: linux.personality.domain: required field is missing");
  CHECK(full_error_with("/linux/personality/flags", "x") ==
        "spec: linux.personality.flags: expected an array, got string");
  CHECK(full_error_with("/linux/cgroupsPath", json::array()) ==
        "spec: linux.cgroupsPath: expected a string, got array");
  CHECK(full_error_with("/linux/mountLabel", 1) ==
        "spec: linux.mountLabel: expected a string, got number");
  json j = full_json();
  j["linux"]["personality"] = {{"domain", "LINUX"}};
  CHECK(parse_ok(j).linux.personality->domain == "LINUX");
}

// ---------------------------------------------------------------------------
// Name helpers

TEST_CASE("spec: namespace names round-trip", "[spec]") {
  using berth::runtime::namespace_from_name;
  using berth::runtime::namespace_name;
  for (const char* n : {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}) {
    auto t = namespace_from_name(n);
    REQUIRE(t.has_value());
    CHECK(std::string(namespace_name(*t)) == n);
  }
  CHECK(namespace_from_name("net") == std::nullopt);
  CHECK(namespace_from_name("") == std::nullopt);
  CHECK(std::string(namespace_name(NamespaceType::network)) == "network");
}

TEST_CASE("spec: seccomp action and operator names round-trip", "[spec]") {
  using berth::runtime::seccomp_action_from_name;
  using berth::runtime::seccomp_action_name;
  using berth::runtime::seccomp_op_from_name;
  using berth::runtime::seccomp_op_name;
  const std::pair<const char*, SeccompAction> actions[] = {
      {"SCMP_ACT_KILL", SeccompAction::kill},
      {"SCMP_ACT_KILL_PROCESS", SeccompAction::kill_process},
      {"SCMP_ACT_KILL_THREAD", SeccompAction::kill_thread},
      {"SCMP_ACT_TRAP", SeccompAction::trap},
      {"SCMP_ACT_ERRNO", SeccompAction::errno_ret},
      {"SCMP_ACT_TRACE", SeccompAction::trace},
      {"SCMP_ACT_ALLOW", SeccompAction::allow},
      {"SCMP_ACT_LOG", SeccompAction::log},
      {"SCMP_ACT_NOTIFY", SeccompAction::notify},
  };
  for (const auto& [name, action] : actions) {
    INFO(name);
    CHECK(seccomp_action_from_name(name) == std::optional<SeccompAction>(action));
    CHECK(std::string(seccomp_action_name(action)) == name);
  }
  CHECK(seccomp_action_from_name("SCMP_ACT_FOO") == std::nullopt);
  CHECK(seccomp_action_from_name("scmp_act_allow") == std::nullopt);

  const std::pair<const char*, SeccompOp> ops[] = {
      {"SCMP_CMP_NE", SeccompOp::ne},
      {"SCMP_CMP_LT", SeccompOp::lt},
      {"SCMP_CMP_LE", SeccompOp::le},
      {"SCMP_CMP_EQ", SeccompOp::eq},
      {"SCMP_CMP_GE", SeccompOp::ge},
      {"SCMP_CMP_GT", SeccompOp::gt},
      {"SCMP_CMP_MASKED_EQ", SeccompOp::masked_eq},
  };
  for (const auto& [name, op] : ops) {
    INFO(name);
    CHECK(seccomp_op_from_name(name) == std::optional<SeccompOp>(op));
    CHECK(std::string(seccomp_op_name(op)) == name);
  }
  CHECK(seccomp_op_from_name("SCMP_CMP_MASKED") == std::nullopt);
}

TEST_CASE("spec: every RLIMIT name resolves to its value", "[spec]") {
  using berth::runtime::rlimit_from_name;
  const std::pair<const char*, int> limits[] = {
      {"RLIMIT_AS", RLIMIT_AS},
      {"RLIMIT_CORE", RLIMIT_CORE},
      {"RLIMIT_CPU", RLIMIT_CPU},
      {"RLIMIT_DATA", RLIMIT_DATA},
      {"RLIMIT_FSIZE", RLIMIT_FSIZE},
      {"RLIMIT_LOCKS", RLIMIT_LOCKS},
      {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
      {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
      {"RLIMIT_NICE", RLIMIT_NICE},
      {"RLIMIT_NOFILE", RLIMIT_NOFILE},
      {"RLIMIT_NPROC", RLIMIT_NPROC},
      {"RLIMIT_RSS", RLIMIT_RSS},
      {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
      {"RLIMIT_RTTIME", RLIMIT_RTTIME},
      {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
      {"RLIMIT_STACK", RLIMIT_STACK},
  };
  for (const auto& [name, value] : limits) {
    INFO(name);
    CHECK(rlimit_from_name(name) == std::optional<int>(value));
  }
  CHECK(rlimit_from_name("RLIMIT_NLIMITS") == std::nullopt);
  CHECK(rlimit_from_name("NOFILE") == std::nullopt);
}

// ---------------------------------------------------------------------------
// load_spec

TEST_CASE("spec: load_spec names the path it could not read", "[spec]") {
  std::string bundle = "/nonexistent-berth-bundle-" + std::to_string(::getpid());
  auto r = load_spec(bundle);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == ENOENT);
  CHECK(r.error().str() == "spec: open " + bundle + "/config.json: No such file or directory");
}

TEST_CASE("spec: load_spec reads <bundle>/config.json", "[spec]") {
  TempBundle bundle;
  bundle.write_config(minimal_json().dump());
  auto r = load_spec(bundle.dir());
  INFO((r ? std::string() : r.error().str()));
  REQUIRE(r.has_value());
  CHECK(r->root.path == "rootfs");

  // A trailing slash on the bundle path is fine.
  r = load_spec(bundle.dir() + "/");
  CHECK(r.has_value());

  bundle.write_config("{\"ociVersion\": ");
  r = load_spec(bundle.dir());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().str() ==
        "spec: config.json is not valid JSON (line 1, column 16, byte 16): syntax error while "
        "parsing value - unexpected end of input; expected '[', '{', or a literal");
}

// ---------------------------------------------------------------------------
// The size cap on config.json (issue: a 200 MB config took 835 MB of memory
// before failing).

TEST_CASE("spec: a config.json over the size limit is refused before it is read", "[spec]") {
  TempBundle b;
  const std::string path = b.dir() + "/config.json";
  b.write_config("{}");
  // Sparse: 200 MiB of size, no blocks, nothing a read could allocate for.
  REQUIRE(::truncate(path.c_str(), 200 << 20) == 0);
  auto r = load_spec(b.dir());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == EFBIG);
  CHECK(r.error().str().find("larger than the 16 MiB limit on config.json") != std::string::npos);

  // Just over the limit, and exactly at it: the limit itself is allowed
  // (then refused for what it holds, zero bytes, which is not JSON).
  REQUIRE(::truncate(path.c_str(), static_cast<off_t>(berth::runtime::kMaxConfigSize) + 1) == 0);
  CHECK(load_spec(b.dir()).error().err == EFBIG);
  REQUIRE(::truncate(path.c_str(), static_cast<off_t>(berth::runtime::kMaxConfigSize)) == 0);
  auto at_limit = load_spec(b.dir());
  REQUIRE_FALSE(at_limit.has_value());
  CHECK(at_limit.error().err != EFBIG);
}

TEST_CASE("spec: a config.json without a size (a FIFO) is read only up to the limit", "[spec]") {
  TempBundle b;
  const std::string path = b.dir() + "/config.json";
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  // A writer that would go on forever; the reader must stop at the cap.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = ::open(path.c_str(), O_WRONLY);
    static char block[65536];
    std::memset(block, ' ', sizeof block);
    while (fd >= 0 && ::write(fd, block, sizeof block) > 0) {
    }
    _exit(0);
  }
  auto r = load_spec(b.dir());
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == EFBIG);
}

// ---------------------------------------------------------------------------
// Fields that used to be dropped silently: parsed now, then applied or
// refused (cgroup drivers, runtime/lsm.h).

TEST_CASE("spec: linux.resources network, hugepageLimits and memory.kernelTCP", "[spec]") {
  json j = minimal_json();
  j["linux"]["resources"] = {
      {"memory", {{"kernelTCP", 1 << 20}}},
      {"hugepageLimits",
       {{{"pageSize", "2MB"}, {"limit", 4 << 20}}, {{"pageSize", "1GB"}, {"limit", 0}}}},
      {"network", {{"classID", 0x100001}, {"priorities", {{{"name", "eth0"}, {"priority", 5}}}}}}};
  const Spec s = parse_ok(j);
  const auto& r = *s.linux.resources;
  CHECK(r.memory->kernel_tcp == std::optional<int64_t>(1 << 20));
  REQUIRE(r.hugepage_limits.size() == 2);
  CHECK(r.hugepage_limits[0].page_size == "2MB");
  CHECK(r.hugepage_limits[0].limit == 4u << 20);
  CHECK(r.hugepage_limits[1].page_size == "1GB");
  REQUIRE(r.network.has_value());
  CHECK(r.network->class_id == std::optional<uint32_t>(0x100001));
  REQUIRE(r.network->priorities.size() == 1);
  CHECK(r.network->priorities[0].name == "eth0");
  CHECK(r.network->priorities[0].priority == 5);

  auto with = [&](const std::string& pointer, json value) {
    return error_with(j, pointer, std::move(value));
  };
  CHECK(with("/linux/resources/memory/kernelTCP", -2) ==
        "spec: linux.resources.memory.kernelTCP: -2 is not a byte count (-1 means unlimited)");
  CHECK(with("/linux/resources/hugepageLimits/0/pageSize", "2M") ==
        "spec: linux.resources.hugepageLimits[0].pageSize: \"2M\" is not a page size like "
        "\"2MB\" or \"1GB\"");
  CHECK(with("/linux/resources/hugepageLimits/0/pageSize", "../x/2MB") ==
        "spec: linux.resources.hugepageLimits[0].pageSize: \"../x/2MB\" is not a page size like "
        "\"2MB\" or \"1GB\"");
  CHECK(with("/linux/resources/hugepageLimits/1/limit", -1) ==
        "spec: linux.resources.hugepageLimits[1].limit: expected an unsigned 64-bit integer, got "
        "-1");
  CHECK(with("/linux/resources/network/classID", -1) ==
        "spec: linux.resources.network.classID: expected an unsigned 32-bit integer, got -1");
  CHECK(with("/linux/resources/network/priorities/0/name", "eth0 9\nlo") ==
        "spec: linux.resources.network.priorities[0].name: \"eth0 9\\nlo\" is not a network "
        "interface name");
}

TEST_CASE("spec: linux.resources cpu rt/idle/burst, memory kernel/hierarchy, leafWeight, rdma",
          "[spec]") {
  json j = minimal_json();
  j["linux"]["resources"] = {
      {"memory", {{"kernel", 64 << 20}, {"useHierarchy", true}, {"checkBeforeUpdate", true}}},
      {"cpu",
       {{"realtimeRuntime", 10000},
        {"realtimePeriod", 1000000},
        {"idle", 1},
        {"burst", 20000},
        {"quota", 50000}}},
      {"blockIO",
       {{"leafWeight", 200},
        {"weightDevice",
         {{{"major", 8}, {"minor", 0}, {"leafWeight", 40}},
          {{"major", 8}, {"minor", 16}, {"weight", 300}}}}}},
      {"rdma",
       {{"mlx5_0", {{"hcaHandles", 3}, {"hcaObjects", 10000}}}, {"mlx4_1", {{"hcaHandles", 1}}}}}};
  const Spec s = parse_ok(j);
  const auto& r = *s.linux.resources;
  CHECK(r.memory->kernel == std::optional<int64_t>(64 << 20));
  CHECK(r.memory->use_hierarchy == std::optional<bool>(true));
  CHECK(r.memory->check_before_update == std::optional<bool>(true));
  CHECK(r.cpu->realtime_runtime == std::optional<int64_t>(10000));
  CHECK(r.cpu->realtime_period == std::optional<uint64_t>(1000000));
  CHECK(r.cpu->idle == std::optional<int64_t>(1));
  CHECK(r.cpu->burst == std::optional<uint64_t>(20000));
  CHECK(r.block_io->leaf_weight == std::optional<uint16_t>(200));
  REQUIRE(r.block_io->leaf_weight_device.size() == 1);  // only the entry that has one
  CHECK(r.block_io->leaf_weight_device[0].minor == 0);
  CHECK(r.block_io->leaf_weight_device[0].rate == 40);
  REQUIRE(r.block_io->weight_device.size() == 1);
  CHECK(r.block_io->weight_device[0].minor == 16);
  REQUIRE(r.rdma.size() == 2);
  CHECK(r.rdma.at("mlx5_0").hca_handles == std::optional<uint32_t>(3));
  CHECK(r.rdma.at("mlx5_0").hca_objects == std::optional<uint32_t>(10000));
  CHECK(r.rdma.at("mlx4_1").hca_handles == std::optional<uint32_t>(1));
  CHECK_FALSE(r.rdma.at("mlx4_1").hca_objects.has_value());

  auto with = [&](const std::string& pointer, json value) {
    return error_with(j, pointer, std::move(value));
  };
  CHECK(with("/linux/resources/cpu/realtimeRuntime", -2) ==
        "spec: linux.resources.cpu.realtimeRuntime: -2 is not a time in microseconds (-1 means "
        "unlimited)");
  CHECK(with("/linux/resources/cpu/idle", 2) ==
        "spec: linux.resources.cpu.idle: 2 is out of range 0..1");
  CHECK(with("/linux/resources/cpu/burst", -1) ==
        "spec: linux.resources.cpu.burst: expected an unsigned 64-bit integer, got -1");
  CHECK(with("/linux/resources/memory/kernel", -2) ==
        "spec: linux.resources.memory.kernel: -2 is not a byte count (-1 means unlimited)");
  CHECK(with("/linux/resources/memory/useHierarchy", 1) ==
        "spec: linux.resources.memory.useHierarchy: expected a boolean, got number");
  CHECK(with("/linux/resources/blockIO/leafWeight", 70000) ==
        "spec: linux.resources.blockIO.leafWeight: expected an unsigned 16-bit integer, got 70000");
  CHECK(with("/linux/resources/blockIO/weightDevice/0", json{{"major", 8}, {"minor", 0}}) ==
        "spec: linux.resources.blockIO.weightDevice[0]: needs a weight or a leafWeight");
  CHECK(with("/linux/resources/rdma/mlx5_0/hcaHandles", -1) ==
        "spec: linux.resources.rdma[\"mlx5_0\"].hcaHandles: expected an unsigned 32-bit integer, "
        "got -1");
  CHECK(with("/linux/resources/rdma", json{{"mlx5_0 hca_handle=0\nx", json::object()}}) ==
        "spec: linux.resources.rdma[\"mlx5_0 hca_handle=0\\nx\"]: \"mlx5_0 hca_handle=0\\nx\" is "
        "not an RDMA device name");
  CHECK(with("/linux/resources/rdma/mlx4_1", json::object()) ==
        "spec: linux.resources.rdma[\"mlx4_1\"]: needs hcaHandles or hcaObjects");
  CHECK(with("/linux/resources/cpu/burst", 50001) ==
        "spec: linux.resources.cpu.burst: 50001 is larger than quota = 50000 (config-linux: burst "
        "MUST be no larger)");
  CHECK(with("/linux/resources/rdma", json::array()) ==
        "spec: linux.resources.rdma: expected an object, got array");
}

TEST_CASE("spec: LSM fields this host cannot apply are refused, naming the field", "[spec][lsm]") {
  using berth::runtime::check_lsm_fields;
  json j = minimal_json();
  j["process"] = {{"args", {"sh"}}, {"cwd", "/"}};
  CHECK(check_lsm_fields(parse_ok(j)).has_value());

  SECTION("process.apparmorProfile") {
    j["process"]["apparmorProfile"] = "berth-test";
    auto r = check_lsm_fields(parse_ok(j));
    if (berth::runtime::apparmor_enabled()) {
      CHECK(r.has_value());
    } else {
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().str().find("process.apparmorProfile \"berth-test\": AppArmor is not enabled "
                                 "on this host") != std::string::npos);
    }
  }
  SECTION("process.selinuxLabel") {
    j["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0";
    auto r = check_lsm_fields(parse_ok(j));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().str().starts_with("spec: process.selinuxLabel: "));
  }
  SECTION("linux.mountLabel") {
    j["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0";
    auto r = check_lsm_fields(parse_ok(j));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().str().starts_with("spec: linux.mountLabel: "));
  }
}

TEST_CASE("spec: process.scheduler and process.ioPriority are parsed and validated", "[spec]") {
  json j = full_json();
  j["process"]["scheduler"] = {
      {"policy", "SCHED_BATCH"}, {"nice", 5}, {"flags", {"SCHED_FLAG_RESET_ON_FORK"}}};
  j["process"]["ioPriority"] = {{"class", "IOPRIO_CLASS_BE"}, {"priority", 6}};
  Spec s = parse_ok(j);
  REQUIRE(s.process->scheduler.has_value());
  CHECK(s.process->scheduler->policy == 3);
  CHECK(s.process->scheduler->nice == 5);
  CHECK(s.process->scheduler->priority == 0);
  CHECK(s.process->scheduler->flags == 0x01);
  REQUIRE(s.process->io_priority.has_value());
  CHECK(s.process->io_priority->io_class == 2);
  CHECK(s.process->io_priority->priority == 6);

  j["process"]["scheduler"] = {{"policy", "SCHED_FIFO"}, {"priority", 10}};
  s = parse_ok(j);
  CHECK(s.process->scheduler->policy == 1);
  CHECK(s.process->scheduler->priority == 10);
  j["process"]["scheduler"] = {
      {"policy", "SCHED_DEADLINE"}, {"runtime", 1000}, {"deadline", 2000}, {"period", 3000}};
  s = parse_ok(j);
  CHECK(s.process->scheduler->deadline == 2000);

  auto with = [&](const std::string& pointer, json value) {
    return error_with(j, pointer, std::move(value));
  };
  CHECK(with("/process/scheduler", json{{"policy", "SCHED_ISO"}}) ==
        "spec: process.scheduler.policy: unknown policy \"SCHED_ISO\" (expected SCHED_OTHER, "
        "SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE or SCHED_DEADLINE)");
  CHECK(with("/process/scheduler", json{{"nice", 1}}) ==
        "spec: process.scheduler.policy: required field is missing");
  CHECK(with("/process/scheduler", json{{"policy", "SCHED_OTHER"}, {"nice", 20}})
            .starts_with("spec: process.scheduler.nice:"));
  CHECK(with("/process/scheduler", json{{"policy", "SCHED_RR"}}) ==
        "spec: process.scheduler.priority: must be 1..99 for SCHED_RR, got 0");
  CHECK(with("/process/scheduler", json{{"policy", "SCHED_OTHER"}, {"priority", 3}}) ==
        "spec: process.scheduler.priority: must be 0 for SCHED_OTHER (only SCHED_FIFO and "
        "SCHED_RR use it)");
  CHECK(with("/process/scheduler", json{{"policy", "SCHED_OTHER"}, {"flags", {"SCHED_X"}}}) ==
        "spec: process.scheduler.flags[0]: unknown flag \"SCHED_X\"");
  CHECK(with("/process/scheduler", json{{"policy", "SCHED_OTHER"}, {"runtime", 5}}) ==
        "spec: process.scheduler: runtime, deadline and period are only for SCHED_DEADLINE");
  CHECK(with("/process/scheduler", json{{"policy", "SCHED_DEADLINE"}, {"deadline", 5}}) ==
        "spec: process.scheduler.runtime: required for SCHED_DEADLINE");
  CHECK(with("/process/scheduler",
             json{{"policy", "SCHED_DEADLINE"}, {"runtime", 9}, {"deadline", 5}}) ==
        "spec: process.scheduler: SCHED_DEADLINE needs runtime <= deadline <= period");
  CHECK(with("/process/ioPriority", json{{"class", "IOPRIO_CLASS_NONE"}}) ==
        "spec: process.ioPriority.class: unknown class \"IOPRIO_CLASS_NONE\" (expected "
        "IOPRIO_CLASS_RT, IOPRIO_CLASS_BE or IOPRIO_CLASS_IDLE)");
  CHECK(with("/process/ioPriority", json{{"priority", 1}}) ==
        "spec: process.ioPriority.class: required field is missing");
  CHECK(with("/process/ioPriority/priority", 8).starts_with("spec: process.ioPriority.priority:"));
}

TEST_CASE("spec: intelRdt, memoryPolicy, netDevices, timeOffsets, execCPUAffinity are refused",
          "[spec]") {
  json j = full_json();
  // Absent, null or empty values are accepted.
  j["linux"]["intelRdt"] = json::object();
  j["linux"]["memoryPolicy"] = nullptr;
  j["linux"]["netDevices"] = json::object();
  j["linux"]["timeOffsets"] = json::object();
  j["process"]["execCPUAffinity"] = {{"initial", ""}};
  parse_ok(j);

  auto with = [&](const std::string& pointer, json value) {
    return error_with(j, pointer, std::move(value));
  };
  CHECK(with("/linux/intelRdt", json{{"closID", "c1"}, {"l3CacheSchema", "L3:0=f"}}) ==
        "spec: linux.intelRdt: berth does not manage resctrl groups (Intel RDT); remove the field");
  CHECK(with("/linux/memoryPolicy", json{{"mode", "MPOL_BIND"}, {"nodes", "0"}}) ==
        "spec: linux.memoryPolicy: setting a NUMA memory policy (set_mempolicy) is not supported");
  CHECK(with("/linux/netDevices", json{{"eth1", json::object()}}) ==
        "spec: linux.netDevices: moving host network devices into the container is not "
        "supported");
  CHECK(with("/linux/timeOffsets", json{{"monotonic", {{"secs", 10}}}}) ==
        "spec: linux.timeOffsets: time namespace offsets (timens_offsets) are not supported");
  CHECK(with("/process/execCPUAffinity", json{{"initial", "0"}, {"final", "0-1"}}) ==
        "spec: process.execCPUAffinity: setting the CPU affinity of exec'd processes is not "
        "supported");
  CHECK(with("/mounts/0/uidMappings", json{{{"containerID", 0}, {"hostID", 1000}, {"size", 1}}}) ==
        "spec: mounts[0].uidMappings: idmapped mounts are not supported");
  CHECK(with("/mounts/0/gidMappings", json{{{"containerID", 0}, {"hostID", 1000}, {"size", 0}}}) ==
        "spec: mounts[0].gidMappings[0].size: must be greater than 0");
  CHECK(with("/linux/intelRdt", "x") == "spec: linux.intelRdt: expected an object, got string");
  CHECK(with("/process/execCPUAffinity/final", 1) ==
        "spec: process.execCPUAffinity.final: expected a string, got number");
}
