// JSON without exceptions. runtime/ and netns/ are built with
// -fno-exceptions, and nlohmann's inline templates are shared by every object
// file of a binary: the whole project is therefore built with
// JSON_NOEXCEPTION (a nlohmann "throw" aborts), and JSON is parsed with
// parse_json() and read with find()/is_*()/get_ptr() only — never at(),
// never get<T>() on an unchecked type.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace berth {

// " (line 1, column 9, byte 9): syntax error while parsing ..." for invalid
// JSON, "" for valid JSON.
std::string describe_json_error(std::string_view text);

// Parses `text`; the error names `what` ("manifest", "index.json") and where
// the text is wrong.
Result<nlohmann::json> parse_json(std::string_view text, std::string_view what);

}  // namespace berth
