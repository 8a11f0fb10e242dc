// One containerDefinitions[] entry of RegisterTaskDefinition (internal to
// controlplane/model/; see ecs_json.h and container_definition.cc for what
// berth does with each field).
#pragma once

#include <string>

#include "common/json_reader.h"
#include "controlplane/model/ecs_json_util.h"
#include "controlplane/model/model.h"

namespace berth::cp::ecs {

// `account` decides which capabilities linuxParameters may add (null: a
// stored definition, not checked again). `network_mode` is the task's.
Result<ContainerDefinition> parse_container_definition(const jr::Node& n, const Account* account,
                                                       const std::string& network_mode);

}  // namespace berth::cp::ecs
