#include <catch2/catch.hpp>

#include "common/fs.h"
#include "runtime/hooks.h"
#include "temp_dir.h"

using namespace berth::runtime;
using berth::test::TempDir;

TEST_CASE("a hook gets the state on stdin, its args and env", "[hooks]") {
  TempDir d;
  Hook h;
  h.path = "/bin/sh";
  h.args = {"sh", "-c", "cat > \"$OUT\"; echo \"$1\" >> \"$OUT\"", "sh", "arg1"};
  h.env = {"OUT=" + (d / "out")};
  REQUIRE(run_hooks({h}, R"({"id":"c"})", "prestart"));
  CHECK(*berth::fs::read_file(d / "out") == "{\"id\":\"c\"}arg1\n");
}

TEST_CASE("a failing hook stops the sequence and is named", "[hooks]") {
  TempDir d;
  Hook bad{"/bin/sh", {"sh", "-c", "exit 3"}, {}, std::nullopt};
  Hook after{"/bin/sh", {"sh", "-c", "touch " + (d / "ran")}, {}, std::nullopt};
  auto r = run_hooks({bad, after}, "{}", "createRuntime");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() == "hooks: createRuntime hook 0 (/bin/sh) exited with status 3");
  CHECK_FALSE(berth::fs::exists(d / "ran"));
}

TEST_CASE("a hook past its timeout is killed", "[hooks]") {
  Hook slow{"/bin/sh", {"sh", "-c", "exec sleep 60"}, {}, 1};
  auto r = run_hooks({slow}, "{}", "poststart");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "hooks: poststart hook 0 (/bin/sh) timed out after 1s: Connection timed out");
}

TEST_CASE("a hook that cannot be executed fails with 127", "[hooks]") {
  Hook missing{"/nonexistent/hook", {}, {}, std::nullopt};
  auto r = run_hooks({missing}, "{}", "poststop");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() == "hooks: poststop hook 0 (/nonexistent/hook) exited with status 127");
}

TEST_CASE("poststart/poststop failures only warn, and the rest still run", "[hooks]") {
  TempDir d;
  Hook bad{"/bin/sh", {"sh", "-c", "exit 3"}, {}, std::nullopt};
  Hook after{"/bin/sh", {"sh", "-c", "touch " + (d / "ran")}, {}, std::nullopt};
  CHECK(run_hooks({bad, after}, "{}", "poststop", HookFailure::warn));
  CHECK(berth::fs::exists(d / "ran"));
}
