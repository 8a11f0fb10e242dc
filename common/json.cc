#include "common/json.h"

namespace berth {
namespace {

using json = nlohmann::json;

// json::parse(..., false) only says "discarded"; the SAX interface is the
// way to get the position and reason without exceptions.
class ParseErrorLocator final : public nlohmann::json_sax<json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    failed_ = true;
    position_ = position;
    what_ = ex.what();
    return false;
  }

  // " (line 1, column 9, byte 9): syntax error while parsing ..."
  std::string describe() const;

 private:
  bool failed_ = false;
  size_t position_ = 0;
  std::string what_;
};

std::string ParseErrorLocator::describe() const {
  if (!failed_) return "";
  // what_: "[json.exception.parse_error.101] parse error at line 1, column 9:
  // syntax error while parsing value - invalid literal; last read: 'x';
  // expected ..."
  std::string_view what = what_;
  if (size_t p = what.find("] "); p != std::string_view::npos) what.remove_prefix(p + 2);
  std::string_view where;
  constexpr std::string_view kAt = "parse error at ";
  if (size_t colon = what.find(": "); what.starts_with(kAt) && colon != std::string_view::npos) {
    where = what.substr(kAt.size(), colon - kAt.size());
    what.remove_prefix(colon + 2);
  }
  // The last-read token of an unterminated string is the rest of the file.
  std::string reason(what);
  if (size_t lr = reason.find("; last read: "); lr != std::string::npos) {
    size_t expected = reason.rfind("; expected ");
    reason.erase(
        lr, expected == std::string::npos || expected < lr ? std::string::npos : expected - lr);
  }
  if (where.empty()) return fmt::format(" (byte {}): {}", position_, reason);
  return fmt::format(" ({}, byte {}): {}", where, position_, reason);
}

}  // namespace

std::string describe_json_error(std::string_view text) {
  ParseErrorLocator locator;
  json::sax_parse(text, &locator);
  return locator.describe();
}

Result<json> parse_json(std::string_view text, std::string_view what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return error(what, "not valid JSON{}", describe_json_error(text));
  return j;
}

}  // namespace berth
