// common/log: set up and used from many threads at once (berthd's shape).
#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/log.h"
#include "tests/unit/temp_dir.h"

using namespace berth;

TEST_CASE("log: setup and write are safe from many threads", "[log]") {
  test::TempDir dir;
  const std::string a = dir / "a.log", b = dir / "b.log";
  std::atomic<bool> stop{false};
  std::atomic<int> setups_ok{0}, setups{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        log::Options o;
        o.file = (i + t) % 2 ? a : b;
        o.level = log::Level::info;
        o.format = i % 3 ? log::Format::text : log::Format::json;
        setups++;
        if (log::setup(o)) setups_ok++;
      }
    });
  }
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (!stop) {
        log::info("writer line {}", 1);
        log::error("writer error {}", 2);
      }
    });
  }
  for (int t = 0; t < 4; ++t) threads[static_cast<size_t>(t)].join();
  stop = true;
  for (size_t t = 4; t < threads.size(); ++t) threads[t].join();
  // Every setup worked (a second setup used to fail: spdlog's registry
  // refused a second logger of the same name).
  CHECK(setups_ok == setups);

  // The last set-up is the one in use, whole.
  const std::string last = dir / "last.log";
  log::Options o;
  o.file = last;
  o.level = log::Level::info;
  REQUIRE(log::setup(o));
  log::info("the final line {}", 42);
  log::flush();
  std::ifstream in(last);
  std::stringstream text;
  text << in.rdbuf();
  CHECK_THAT(text.str(), Catch::Contains("info the final line 42"));

  // Back to stderr at the default level for the other tests.
  REQUIRE(log::setup(log::Options{}));
}
