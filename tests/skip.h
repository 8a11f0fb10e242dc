// Visible skips. Catch2 v2 has no SKIP, so a test that cannot run on this
// host says so with BERTH_SKIP(reason): a WARN in Catch's report, a return
// from the test case, and one line `BERTH-SKIPPED: <reason>` on stdout, which
// ctest's SKIP_REGULAR_EXPRESSION turns into "Skipped" (tests/CMakeLists.txt).
// scripts/check-skips.sh then fails `make test` for any skip that
// tests/expected-skips.txt does not list.
//
//   if (!have_tool) BERTH_SKIP("mkfs.ext4 not installed");
//
// BERTH_SKIP_NOTE(reason) records the same without returning: for helpers
// that decide for their caller (`if (!layout()) return;`).
//
// The marker lines are printed by the test binary's main (finish_skips) once
// the run is over, and only if it passed: a test that failed before it
// skipped must show as failed, not as skipped (ctest's skip expression wins
// over the exit code).
#pragma once

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace berth::test {

inline std::vector<std::string>& recorded_skips() {
  static std::vector<std::string> skips;
  return skips;
}

// Newlines in the reason become spaces: the marker stays one line.
inline void record_skip(std::string why) {
  for (char& c : why) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  recorded_skips().push_back(std::move(why));
}

// Called by main() with the run's result; returns it unchanged.
inline int finish_skips(int result) {
  for (const std::string& why : recorded_skips()) {
    if (result == 0) {
      std::cout << "BERTH-SKIPPED: " << why << std::endl;
    } else {
      std::cout << "(a skip that does not count, the run failed: " << why << ")" << std::endl;
    }
  }
  return result;
}

}  // namespace berth::test

#define BERTH_SKIP_NOTE(why)                           \
  do {                                                 \
    std::ostringstream berth_skip_why_;                \
    berth_skip_why_ << why;                            \
    WARN("skipped: " << berth_skip_why_.str());        \
    ::berth::test::record_skip(berth_skip_why_.str()); \
  } while (0)

#define BERTH_SKIP(why)   \
  do {                    \
    BERTH_SKIP_NOTE(why); \
    return;               \
  } while (0)
