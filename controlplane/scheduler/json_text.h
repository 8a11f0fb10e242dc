// JSON text for the control plane's answers and documents.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace berth::cp {
// JSON text that never aborts: a string that is not valid UTF-8 (a query
// parameter, a reason read from a shim) is written with U+FFFD instead of
// making nlohmann throw, which JSON_NOEXCEPTION turns into an abort.
inline std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
}  // namespace berth::cp
