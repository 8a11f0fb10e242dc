// Aligned text tables as `docker ps` prints them (columns padded to the
// widest cell, three spaces apart, the last column unpadded), and the time
// formats of the tables.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace berth::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : rows_{std::move(headers)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render() const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0]: the headers
};

// The first 12 hex digits of a task id, as docker shortens container ids.
std::string short_id(const std::string& id);

// "Less than a second ago", "5 seconds ago", "About a minute ago",
// "3 minutes ago", "About an hour ago", "2 hours ago", "4 days ago";
// "-" for an unset time (0).
std::string human_ago(double then, double now);

// "2026-12-05T02:10:38.123Z" (UTC, milliseconds); "-" for 0.
std::string rfc3339(double epoch_seconds);

double now_epoch_seconds();

// A line of a describe page: "Label:          value\n", the label padded to
// `width`, "-" for an empty value.
std::string page_line(std::string_view label, const std::string& value, size_t width);
// "Label:          2026-12-05T02:10:38.123Z (5 minutes ago)\n".
std::string page_time_line(std::string_view label, double at, double now, size_t width);
// Every line of `text` prefixed with `prefix`.
std::string indent(std::string_view text, std::string_view prefix);

}  // namespace berth::cli
