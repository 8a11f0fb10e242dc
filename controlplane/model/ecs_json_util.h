// Helpers shared by the ECS JSON readers and writers (model/ecs_json.h);
// internal to controlplane/model/.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_reader.h"
#include "controlplane/model/model.h"

namespace berth::cp::ecs {

using json = nlohmann::json;

// Client input: every error is an InvalidParameterException naming the
// JSON path.
inline constexpr jr::Document kRequest{"InvalidParameterException", "request"};

// Refuses the first member of object `n` not in `known`, by name.
Result<void> refuse_unknown(const jr::Node& n, std::initializer_list<std::string_view> known);

// Refuses member `key` of `n` when it holds anything but null, false, an
// empty array or an empty object: what berth cannot honour yet is refused,
// never ignored, while the empty lists the AWS CLI's own output carries
// (mountPoints: [], volumesFrom: []) still register.
Result<void> refuse_if_set(const jr::Node& n, std::string_view key, std::string_view why);

// Reads an optional integer member and checks it is within lo..hi.
Result<void> read_int(const jr::Node& n, std::optional<int>& out, int lo, int hi);
Result<void> read_int(const jr::Node& n, int& out, int lo, int hi);

// A list of strings; each free of NUL bytes.
Result<void> read_strings(const jr::Node& n, std::vector<std::string>& out);

// [{name, value}] (environment).
Result<void> read_key_values(const jr::Node& n, std::vector<KeyValue>& out);

// "256", "0.25 vCPU", "1 vCPU" -> "256"; "512", "1GB", "1 GB" -> "512" (MiB).
// nullopt when the text is neither.
std::optional<std::string> normalise_cpu(std::string_view s);
std::optional<std::string> normalise_memory(std::string_view s);

// Task cpu / memory strings as clients send them (string or integer), in
// normalised form; ClientException "Invalid 'cpu' setting for task." /
// "Invalid 'memory' setting for task." when unreadable.
Result<void> read_task_cpu(const jr::Node& n, std::string& out);
Result<void> read_task_memory(const jr::Node& n, std::string& out);

// The host's architecture as ECS names it (X86_64, ARM64).
std::string_view host_cpu_architecture();

json key_values_json(const std::vector<KeyValue>& kv);

}  // namespace berth::cp::ecs
