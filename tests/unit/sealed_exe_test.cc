#include "runtime/sealed_exe.h"

#include <cstdlib>
#include <string>

#include <catch2/catch.hpp>

using namespace berth::runtime;

TEST_CASE("sealed_exe_method: a binary on a writable filesystem is not protected", "[sealed-exe]") {
  // The test binary runs from the build directory, as built.
  auto m = sealed_exe_method();
  REQUIRE_FALSE(m);
  CHECK(m.error().str().find("neither a sealed memfd nor on a read-only overlay") !=
        std::string::npos);
}

TEST_CASE("ensure_sealed_exe: a re-executed image that is not protected refuses to run",
          "[sealed-exe]") {
  // The environment says this image is the protected copy; /proc/self/exe
  // says otherwise: an error, never a silent run, and no re-exec.
  ::setenv("_BERTH_SEALED_EXE", "overlay", 1);
  char arg0[] = "berth-unit-tests";
  char* argv[] = {arg0, nullptr};
  auto r = ensure_sealed_exe(argv, SealMethod::overlay);
  CHECK(std::getenv("_BERTH_SEALED_EXE") == nullptr);
  REQUIRE_FALSE(r);
  CHECK(r.error().str().find("refusing to run unprotected") != std::string::npos);
}
