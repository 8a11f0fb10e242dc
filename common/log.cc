#include "common/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>

namespace berth::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::warn)};
std::shared_ptr<spdlog::logger> g_logger;
Format g_format = Format::text;

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
  g_level = static_cast<int>(opts.level);
  g_format = opts.format;
  try {
    if (opts.file.empty()) {
      g_logger = spdlog::stderr_logger_mt("berth-stderr");
    } else {
      g_logger = spdlog::basic_logger_mt("berth-file", opts.file);
    }
  } catch (const spdlog::spdlog_ex& e) {
    std::fprintf(stderr, "log: cannot open %s: %s\n", opts.file.c_str(), e.what());
    return false;
  }
  if (opts.format == Format::json) {
    g_logger->set_pattern(R"({"level":"%l","time":"%Y-%m-%dT%H:%M:%S.%fZ","msg":"%v"})",
                          spdlog::pattern_time_type::utc);
  } else {
    g_logger->set_pattern("%Y-%m-%dT%H:%M:%S.%f %l %v");
  }
  g_logger->set_level(to_spd(opts.level));
  g_logger->flush_on(spdlog::level::warn);
  return true;
}

bool enabled(Level level) {
  return static_cast<int>(level) >= g_level.load();
}

void write(Level level, std::string_view msg) {
  if (!g_logger) {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(msg.size()), msg.data());
    return;
  }
  if (g_format == Format::json) {
    g_logger->log(to_spd(level), "{}", json_escape(msg));
  } else {
    g_logger->log(to_spd(level), "{}", msg);
  }
}

void flush() {
  if (g_logger) g_logger->flush();
}

}  // namespace berth::log
