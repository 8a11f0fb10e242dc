// OCI hooks: each runs as a child process with the container state JSON on
// its stdin, its own args and env, and an optional timeout after which it is
// killed. A failing hook fails the lifecycle step that ran it, except
// poststart and poststop where the runtime only warns (runtime-spec).
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {

enum class HookFailure {
  stop,  // the first failure ends the sequence and is returned
  warn,  // each failure is logged and the rest still run (poststart, poststop)
};

// Runs `hooks` in order. `kind` names them in errors ("prestart", ...).
Result<void> run_hooks(const std::vector<Hook>& hooks, const std::string& state_json,
                       const char* kind, HookFailure on_failure = HookFailure::stop);

}  // namespace berth::runtime
