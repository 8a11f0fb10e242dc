// Logging for every part of berth. The library code only formats and calls
// log::write; where the lines go (stderr, a --log file, text or JSON) is set
// up once by the binary's main through log::setup, backed by spdlog.
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

namespace berth::log {

enum class Level { debug = 0, info, warn, error };
enum class Format { text, json };

struct Options {
  std::string file;  // empty: stderr
  Format format = Format::text;
  Level level = Level::warn;
};

// Returns false (and leaves stderr logging in place) if the file cannot be
// opened; the reason is written to stderr.
bool setup(const Options& opts);
void write(Level level, std::string_view msg);
bool enabled(Level level);
void flush();

template <class... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::info)) write(Level::info, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::warn)) write(Level::warn, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void error(fmt::format_string<A...> f, A&&... a) {
  write(Level::error, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace berth::log
