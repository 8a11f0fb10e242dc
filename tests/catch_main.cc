// The unit tests' main: Catch2's, plus the visible-skip markers of
// tests/skip.h once the run is over.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tests/skip.h"

int main(int argc, char** argv) {
  return berth::test::finish_skips(Catch::Session().run(argc, argv));
}
