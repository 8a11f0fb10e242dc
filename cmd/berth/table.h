// Aligned text tables as `docker ps` prints them (columns padded to the
// widest cell, three spaces apart, the last column unpadded), and the time
// formats of the tables.
#pragma once

#include <string>
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

}  // namespace berth::cli
