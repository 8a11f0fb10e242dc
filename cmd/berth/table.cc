#include "cmd/berth/table.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>

#include <fmt/format.h>

namespace berth::cli {
namespace {

constexpr size_t kGap = 3;

// Display width: UTF-8 continuation bytes take no column.
size_t width(const std::string& s) {
  return static_cast<size_t>(
      std::ranges::count_if(s, [](unsigned char c) { return (c & 0xC0) != 0x80; }));
}

std::string plural(long n, const char* unit) {
  return fmt::format("{} {}{} ago", n, unit, n == 1 ? "" : "s");
}

}  // namespace

std::string Table::render() const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], width(row[i]));
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - width(row[i]) + kGap, ' ');
    }
    while (line.ends_with(' ')) line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string short_id(const std::string& id) {
  return id.substr(0, 12);
}

std::string human_ago(double then, double now) {
  if (then <= 0) return "-";
  double d = std::max(0.0, now - then);
  if (d < 1) return "Less than a second ago";
  auto s = static_cast<long>(d);
  if (s < 60) return plural(s, "second");
  if (s < 120) return "About a minute ago";
  if (s < 3600) return plural(s / 60, "minute");
  if (s < 7200) return "About an hour ago";
  if (s < 48 * 3600) return plural(s / 3600, "hour");
  return plural(s / 86400, "day");
}

std::string rfc3339(double epoch_seconds) {
  if (epoch_seconds <= 0) return "-";
  double whole = std::floor(epoch_seconds);
  auto t = static_cast<std::time_t>(whole);
  auto ms = static_cast<int>(std::lround((epoch_seconds - whole) * 1000));
  if (ms == 1000) {
    ++t;
    ms = 0;
  }
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms);
}

double now_epoch_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string page_line(std::string_view label, const std::string& value, size_t width) {
  return fmt::format("{:<{}}{}\n", label, width, value.empty() ? "-" : value);
}

std::string page_time_line(std::string_view label, double at, double now, size_t width) {
  return page_line(label, fmt::format("{} ({})", rfc3339(at), human_ago(at, now)), width);
}

std::string indent(std::string_view text, std::string_view prefix) {
  std::string out;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    size_t len = eol == std::string_view::npos ? text.size() : eol + 1;
    out.append(prefix).append(text.substr(0, len));
    text.remove_prefix(len);
  }
  return out;
}

}  // namespace berth::cli
