#include "cmd/berth/args.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "common/json_reader.h"

namespace berth::cli {
namespace {

using json = nlohmann::json;

bool is_family_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

bool is_hex(std::string_view s) {
  return std::ranges::all_of(s,
                             [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

std::unexpected<Error> usage_error(std::string message) {
  return std::unexpected(Error{"usage", 0, std::move(message), ErrorKind::invalid});
}

int exit_code_for(const Error& e) {
  return e.step == "usage" ? kExitUsage : kExitError;
}

bool is_definition_ref(std::string_view arg) {
  if (arg.starts_with("arn:")) return true;
  std::string_view family = arg.substr(0, arg.find(':'));
  std::string_view revision =
      family.size() < arg.size() ? arg.substr(family.size() + 1) : std::string_view{};
  bool family_ok =
      !family.empty() && family.size() <= 255 && std::ranges::all_of(family, is_family_char);
  bool revision_ok = family.size() == arg.size() ||
                     (!revision.empty() && std::ranges::all_of(revision, [](char c) {
                       return std::isdigit(static_cast<unsigned char>(c));
                     }));
  return family_ok && revision_ok;
}

Result<RunTarget> classify_run_target(std::string_view arg, bool exists_as_file) {
  if (arg.empty()) return usage_error("run: empty task definition argument");
  bool arn = arg.starts_with("arn:");
  if (exists_as_file || arg.ends_with(".json") || (!arn && arg.find('/') != std::string_view::npos))
    return RunTarget{true, std::string(arg)};
  if (!is_definition_ref(arg))
    return usage_error(
        fmt::format("run: {:?} is neither a file nor a task definition FAMILY[:REVISION]", arg));
  return RunTarget{false, std::string(arg)};
}

Result<std::pair<std::string, std::string>> parse_assignment(std::string_view flag,
                                                             std::string_view form,
                                                             std::string_view kv) {
  size_t eq = kv.find('=');
  if (eq == std::string_view::npos || eq == 0)
    return usage_error(fmt::format("{} {:?}: expected {}", flag, kv, form));
  return std::pair{std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1))};
}

Result<std::pair<std::string, std::string>> parse_env(std::string_view kv) {
  return parse_assignment("--env", "NAME=VALUE", kv);
}

Result<void> apply_env_to_definition(json& definition,
                                     const std::vector<std::pair<std::string, std::string>>& env) {
  if (env.empty()) return {};
  static constexpr jr::Document kDoc{"task definition", "task definition"};
  jr::Node root = jr::Node::root(definition, kDoc);
  BERTH_TRY(jr::expect_object(root));
  auto it = definition.find("containerDefinitions");
  if (it == definition.end() || !it->is_array())
    return jr::fail(root.member("containerDefinitions"), "expected an array of containers");
  for (json& c : *it) {
    if (!c.is_object()) continue;  // berthd names the bad element
    json& list = c["environment"];
    if (!list.is_array()) list = json::array();
    for (const auto& [name, value] : env) {
      auto same = std::ranges::find_if(list, [&name](const json& e) {
        auto n = e.is_object() ? e.find("name") : e.end();
        return e.is_object() && n != e.end() && n->is_string() && *n == name;
      });
      if (same != list.end())
        (*same)["value"] = value;
      else
        list.push_back({{"name", name}, {"value", value}});
    }
  }
  return {};
}

json env_overrides(const std::vector<std::string>& containers,
                   const std::vector<std::pair<std::string, std::string>>& env) {
  json overrides = json::array();
  for (const auto& name : containers) {
    json e = json::array();
    for (const auto& [k, v] : env) e.push_back({{"name", k}, {"value", v}});
    overrides.push_back({{"name", name}, {"environment", std::move(e)}});
  }
  return {{"containerOverrides", std::move(overrides)}};
}

bool is_full_task_ref(std::string_view ref) {
  return ref.starts_with("arn:") || (ref.size() == 32 && is_hex(ref));
}

Result<std::string> match_task_prefix(std::string_view prefix, const std::vector<TaskView>& tasks) {
  if (prefix.empty()) return usage_error("empty task id");
  std::vector<const TaskView*> found;
  for (const auto& t : tasks)
    if (t.id.starts_with(prefix)) found.push_back(&t);
  if (found.empty())
    return std::unexpected(
        Error{"ResourceNotFoundException", 0, fmt::format("no task matches {:?}", prefix)});
  if (found.size() > 1) {
    std::string ids;
    for (const auto* t : found) ids += (ids.empty() ? "" : ", ") + t->id;
    return error("task", "{:?} matches {} tasks: {}", prefix, found.size(), ids);
  }
  return found.front()->id;
}

}  // namespace berth::cli
