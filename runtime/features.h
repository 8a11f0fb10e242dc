// `berth-runtime features`: what this runtime supports, in the
// runtime-spec features.md format, so that callers can probe instead of
// guessing.
#pragma once

#include <nlohmann/json.hpp>

namespace berth::runtime {

nlohmann::json features_json();

}  // namespace berth::runtime
