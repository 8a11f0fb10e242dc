// berth's built-in default profile, written by `berth-runtime spec`: the
// capabilities, masked and read-only paths and seccomp allowlist of Docker's
// default profile or stricter, with no_new_privileges on.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "runtime/spec.h"

namespace berth::runtime {

struct DefaultSpecOptions {
  std::vector<std::string> args = {"sh"};
  bool terminal = false;
  bool rootless = false;  // adds a user namespace with the caller's ids mapped
};

// The default config.json as JSON (what `spec` writes).
nlohmann::json default_spec_json(const DefaultSpecOptions& opts = {});

// Building blocks, also used by the control plane when it turns a task
// definition into a spec.
std::vector<std::string> default_capabilities();
std::vector<std::string> default_masked_paths();
std::vector<std::string> default_readonly_paths();
nlohmann::json default_seccomp_json();

}  // namespace berth::runtime
