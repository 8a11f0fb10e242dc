#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "runtime/state.h"
#include "temp_dir.h"

using namespace berth::runtime;
using berth::test::TempDir;

TEST_CASE("container ids follow runc's rule", "[state]") {
  CHECK(validate_id("web-1_a.b+c"));
  CHECK_FALSE(validate_id(""));
  CHECK_FALSE(validate_id(".."));
  auto r = validate_id("a/b");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "container: invalid container id \"a/b\": only letters, digits and _+.- are allowed");
}

TEST_CASE("state round-trips through state.json", "[state]") {
  TempDir root;
  REQUIRE(berth::fs::mkdir_p(container_dir(root.path(), "c1")));
  ContainerState st;
  st.id = "c1";
  st.bundle = "/b";
  st.rootfs = "/b/rootfs";
  st.status = Status::created;
  st.pid = 1234;
  st.pid_start_time = 99;
  st.created = "2026-01-01T00:00:00Z";
  st.annotations = {{"k", "v"}};
  st.cgroup_paths = {"/sys/fs/cgroup/pids/x"};
  REQUIRE(save_state(root.path(), st));
  auto back = load_state(root.path(), "c1");
  REQUIRE(back);
  CHECK(back->bundle == "/b");
  CHECK(back->status == Status::created);
  CHECK(back->pid == 1234);
  CHECK(back->pid_start_time == 99);
  CHECK(back->annotations.at("k") == "v");
  CHECK(back->cgroup_paths == st.cgroup_paths);
}

TEST_CASE("a missing container is named in the error", "[state]") {
  TempDir root;
  auto r = load_state(root.path(), "nope");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "container: container \"nope\" does not exist: No such file or directory");
}

TEST_CASE("a corrupt state file is reported, not trusted", "[state]") {
  TempDir root;
  REQUIRE(berth::fs::mkdir_p(container_dir(root.path(), "c2")));
  REQUIRE(berth::fs::write_file_atomic(root / "c2/state.json", "{not json"));
  auto r = load_state(root.path(), "c2");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("is corrupt") != std::string::npos);
}

TEST_CASE("status follows the live process and guards against pid reuse", "[state]") {
  ContainerState st;
  st.status = Status::running;
  st.pid = ::getpid();
  st.pid_start_time = process_start_time(::getpid());
  REQUIRE(st.pid_start_time > 0);
  CHECK(refresh_status(st) == Status::running);
  st.pid_start_time += 1;  // same pid, another process
  CHECK(refresh_status(st) == Status::stopped);
  st.pid = 0x3ffffff;  // beyond pid_max: no such process
  CHECK(refresh_status(st) == Status::stopped);
}

TEST_CASE("the OCI state JSON has the spec's fields", "[state]") {
  ContainerState st;
  st.id = "x";
  st.bundle = "/b";
  st.status = Status::running;
  st.pid = 42;
  auto j = nlohmann::json::parse(st.oci_json());
  CHECK(j["ociVersion"] == "1.0.2");
  CHECK(j["id"] == "x");
  CHECK(j["status"] == "running");
  CHECK(j["pid"] == 42);
  CHECK(j["bundle"] == "/b");
  st.status = Status::stopped;
  CHECK_FALSE(nlohmann::json::parse(st.oci_json()).contains("pid"));
}
