// ARNs, ids and timestamps as ECS writes them (docs/ECS-API.md, "Objects").
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "controlplane/model/model.h"

namespace berth::cp {

std::string cluster_arn(std::string_view region, std::string_view account, std::string_view name);
std::string task_definition_arn(std::string_view region, std::string_view account,
                                std::string_view family, int revision);
std::string task_arn(std::string_view region, std::string_view account, std::string_view cluster,
                     std::string_view task_id);
std::string container_arn(std::string_view region, std::string_view account,
                          std::string_view cluster, std::string_view task_id,
                          std::string_view container_id);
std::string service_arn(std::string_view region, std::string_view account, std::string_view cluster,
                        std::string_view name);

// arn:aws:ecs:<region>:<account>:<type>/<rest>
struct Arn {
  std::string region;
  std::string account;
  std::string type;  // cluster | task-definition | task | container | service
  std::string rest;  // what follows "<type>/"
};
// nullopt when `s` is not an ECS ARN.
std::optional<Arn> parse_arn(std::string_view s);

// 32 lowercase hex digits from the kernel's CSPRNG (a task id).
std::string new_task_id();
// A random (version 4) UUID.
std::string new_uuid();

// Epoch seconds with millisecond fractions, as ECS writes timestamps.
double epoch_seconds(TimePoint t);
TimePoint from_epoch_seconds(double s);
bool is_set(TimePoint t);

}  // namespace berth::cp
