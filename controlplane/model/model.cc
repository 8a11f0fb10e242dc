#include "controlplane/model/model.h"

#include <charconv>

namespace berth::cp {

namespace {

// The task-level strings are normalised to plain integers at registration
// (parse_task_definition); anything else reads as 0 (unset).
int parse_int(const std::string& s) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0) return 0;
  return v;
}

constexpr std::pair<TaskStatus, const char*> kStatusNames[] = {
    {TaskStatus::provisioning, "PROVISIONING"},     {TaskStatus::pending, "PENDING"},
    {TaskStatus::activating, "ACTIVATING"},         {TaskStatus::running, "RUNNING"},
    {TaskStatus::deactivating, "DEACTIVATING"},     {TaskStatus::stopping, "STOPPING"},
    {TaskStatus::deprovisioning, "DEPROVISIONING"}, {TaskStatus::stopped, "STOPPED"},
};

}  // namespace

int TaskDefinition::cpu_units() const {
  return parse_int(cpu);
}

int TaskDefinition::memory_mib() const {
  return parse_int(memory);
}

const char* task_status_name(TaskStatus s) {
  for (const auto& [status, name] : kStatusNames) {
    if (status == s) return name;
  }
  return "UNKNOWN";
}

std::optional<TaskStatus> parse_task_status(std::string_view s) {
  for (const auto& [status, name] : kStatusNames) {
    if (s == name) return status;
  }
  return std::nullopt;
}

}  // namespace berth::cp
