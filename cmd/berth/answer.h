// Shared readers and formats of berthd's answers: the document name the
// typed reader's errors carry ("berthd answer: tasks[0].cpu: ..."), one
// required string by its path, the ECS failures[] list, and "-" for an
// empty table cell.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_reader.h"

namespace berth::cli {

inline constexpr jr::Document kAnswer{"berthd answer", "answer"};

// answer[path[0]][path[1]]...: a required string.
Result<std::string> read_string(const nlohmann::json& answer,
                                std::initializer_list<std::string_view> path);

// An entry of failures[] (RunTask, DescribeServices, DescribeClusters).
struct FailureView {
  std::string arn;
  std::string reason;  // "MISSING", "RESOURCE:MEMORY", ...
  std::string detail;
};
// The answer's failures[] (none when absent).
Result<std::vector<FailureView>> read_failures(const nlohmann::json& answer);

std::string or_dash(const std::string& s);

}  // namespace berth::cli
