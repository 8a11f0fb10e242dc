// The pure parts of the berth CLI's argument handling: what `run` was given,
// --env values, task references, exit codes. No I/O, unit-tested.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cmd/berth/task_view.h"
#include "common/error.h"

namespace berth::cli {

// Exit codes (docker's convention for 125).
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitFailedToStart = 125;

// A usage error: exit code 2 instead of 1.
std::unexpected<Error> usage_error(std::string message);
int exit_code_for(const Error& e);

// `berth run ARG`: a task definition file or a registered FAMILY[:REV] (or
// a task-definition ARN).
struct RunTarget {
  bool is_file = false;
  std::string value;
};
// ARG is a file when it exists as one, or looks like a path (contains '/'
// and is not an ARN, or ends in .json); otherwise a task definition
// reference, checked against ECS's family rule ([A-Za-z0-9_-]{1,255},
// optional ":<revision>").
Result<RunTarget> classify_run_target(std::string_view arg, bool exists_as_file);

// FAMILY[:REVISION] by ECS's family rule, or a task-definition ARN.
bool is_definition_ref(std::string_view arg);

// "K=V" -> {K, V}; K must be non-empty, else the usage error
// `<flag> "<kv>": expected <form>` (--tag "x": expected KEY=VALUE).
Result<std::pair<std::string, std::string>> parse_assignment(std::string_view flag,
                                                             std::string_view form,
                                                             std::string_view kv);
// parse_assignment("--env", "NAME=VALUE", kv).
Result<std::pair<std::string, std::string>> parse_env(std::string_view kv);

// Adds/replaces `env` in every container definition's `environment` of a
// task definition (the file form of `run --env`).
Result<void> apply_env_to_definition(nlohmann::json& definition,
                                     const std::vector<std::pair<std::string, std::string>>& env);
// RunTask's overrides.containerOverrides setting `env` in each named
// container (ECS merges override environment with the definition's).
nlohmann::json env_overrides(const std::vector<std::string>& containers,
                             const std::vector<std::pair<std::string, std::string>>& env);

// A reference berthd resolves by itself: a 32-hex task id or a task ARN.
bool is_full_task_ref(std::string_view ref);
// The one task whose id starts with `prefix` (docker-style short ids):
// ResourceNotFoundException when none, an error listing the ambiguity when
// several.
Result<std::string> match_task_prefix(std::string_view prefix, const std::vector<TaskView>& tasks);

}  // namespace berth::cli
