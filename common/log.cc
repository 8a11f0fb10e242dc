#include "common/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <utility>

namespace berth::log {
namespace {

// setup() may run while other threads log (berthd reconfigures; tests call
// it from many threads): the logger and its format are swapped together
// under g_mutex, and write() logs through its own reference, so a logger
// being replaced stays alive until its last line is written. The loggers are
// not registered with spdlog (its registry refuses a second logger of the
// same name, which made a second setup fail).
std::atomic<int> g_level{static_cast<int>(Level::warn)};
std::mutex g_mutex;
std::shared_ptr<spdlog::logger> g_logger;  // guarded by g_mutex
Format g_format = Format::text;            // guarded by g_mutex

struct Current {
  std::shared_ptr<spdlog::logger> logger;
  Format format;
};

Current current() {
  std::lock_guard lock(g_mutex);
  return {g_logger, g_format};
}

spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// runc's --log-format json writes {"level":..,"msg":..,"time":..}; the
// message is escaped by us, the rest comes from the pattern.
std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace

bool setup(const Options& opts) {
  // The new logger is built completely before anybody can see it.
  std::shared_ptr<spdlog::logger> logger;
  try {
    spdlog::sink_ptr sink;
    if (opts.file.empty()) {
      sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(opts.file);
    }
    logger = std::make_shared<spdlog::logger>(opts.file.empty() ? "berth-stderr" : "berth-file",
                                              std::move(sink));
  } catch (const spdlog::spdlog_ex& e) {
    std::fprintf(stderr, "log: cannot open %s: %s\n", opts.file.c_str(), e.what());
    return false;
  }
  if (opts.format == Format::json) {
    logger->set_pattern(R"({"level":"%l","time":"%Y-%m-%dT%H:%M:%S.%fZ","msg":"%v"})",
                        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%f %l %v");
  }
  logger->set_level(to_spd(opts.level));
  logger->flush_on(spdlog::level::warn);
  std::shared_ptr<spdlog::logger> old;
  {
    std::lock_guard lock(g_mutex);
    old = std::exchange(g_logger, std::move(logger));
    g_format = opts.format;
    g_level = static_cast<int>(opts.level);
  }
  if (old) old->flush();  // outside the lock; destroyed once its writers are done
  return true;
}

bool enabled(Level level) {
  return static_cast<int>(level) >= g_level.load();
}

void write(Level level, std::string_view msg) {
  Current cur = current();
  if (!cur.logger) {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(msg.size()), msg.data());
    return;
  }
  if (cur.format == Format::json) {
    cur.logger->log(to_spd(level), "{}", json_escape(msg));
  } else {
    cur.logger->log(to_spd(level), "{}", msg);
  }
}

void flush() {
  if (auto cur = current(); cur.logger) cur.logger->flush();
}

}  // namespace berth::log
