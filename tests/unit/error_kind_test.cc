// Error kinds: what the control plane maps to ECS exceptions without
// matching message text.
#include <cerrno>

#include <catch2/catch.hpp>

#include "common/error.h"
#include "runtime/spec.h"
#include "runtime/state.h"
#include "shim/task.h"
#include "tests/unit/temp_dir.h"

using namespace berth;

namespace {

Result<int> fails_with_internal() {
  return error("step", "something broke {}", 1);
}

Result<int> propagates() {
  BERTH_ASSIGN(int v, [] { return Result<int>(kind_error(ErrorKind::busy, "x", "busy now")); }());
  return v;
}

}  // namespace

TEST_CASE("error kinds: helpers default to internal, the source API is unchanged", "[error]") {
  auto e = fails_with_internal();
  REQUIRE_FALSE(e);
  CHECK(e.error().kind == ErrorKind::internal);
  CHECK(e.error().str() == "step: something broke 1");
  errno = ENOENT;
  CHECK(sys_error("s", "open {}", "/x").error().kind == ErrorKind::internal);
  CHECK(errno_error("s", EEXIST, "m").error().kind == ErrorKind::internal);
  // Aggregate initialisation as before (three fields) still compiles.
  Error plain{"step", 0, "message"};
  CHECK(plain.kind == ErrorKind::internal);
  CHECK(error_kind_name(ErrorKind::not_found) == std::string("not_found"));
  CHECK(error_kind_name(ErrorKind::invalid) == std::string("invalid"));
}

TEST_CASE("error kinds: set, kept by wrap and BERTH_TRY, not part of the text", "[error]") {
  auto k = kind_error(ErrorKind::invalid, "spec", "bad {}", "value");
  CHECK(k.error().kind == ErrorKind::invalid);
  CHECK(k.error().str() == "spec: bad value");
  auto w = wrap(k.error(), "creating container c1");
  CHECK(w.error().kind == ErrorKind::invalid);
  CHECK(w.error().str() == "spec: creating container c1: bad value");
  auto n = with_kind(ErrorKind::not_found, errno_error("container", ENOENT, "gone"));
  CHECK(n.error().kind == ErrorKind::not_found);
  CHECK(n.error().err == ENOENT);
  auto p = propagates();
  REQUIRE_FALSE(p);
  CHECK(p.error().kind == ErrorKind::busy);
}

TEST_CASE("error kinds: the obvious sites say what went wrong", "[error]") {
  SECTION("a bad spec is invalid") {
    auto s = runtime::parse_spec(R"({"ociVersion": "1.0.2", "process": 5})");
    REQUIRE_FALSE(s);
    CHECK(s.error().kind == ErrorKind::invalid);
    auto j = runtime::parse_spec("{not json");
    REQUIRE_FALSE(j);
    CHECK(j.error().kind == ErrorKind::invalid);
  }
  SECTION("a bad container id is invalid") {
    auto v = runtime::validate_id("a/b");
    REQUIRE_FALSE(v);
    CHECK(v.error().kind == ErrorKind::invalid);
  }
  SECTION("a missing container is not_found") {
    test::TempDir root;
    auto st = runtime::load_state(root.path(), "nope");
    REQUIRE_FALSE(st);
    CHECK(st.error().kind == ErrorKind::not_found);
    CHECK(st.error().err == ENOENT);
  }
  SECTION("a bad task is invalid") {
    auto t = shim::parse_task(R"({"version":1,"task_id":"a.b","runtime_root":"/r",
                                  "containers":[{"name":"c","bundle":"/b"}]})");
    REQUIRE_FALSE(t);
    CHECK(t.error().kind == ErrorKind::invalid);
    auto j = shim::parse_task("[");
    REQUIRE_FALSE(j);
    CHECK(j.error().kind == ErrorKind::invalid);
  }
}
