// The ECS JSON shapes of the model (docs/ECS-API.md): request bodies read
// through the typed reader (common/json_reader.h: no abort on any input),
// responses written as the AWS CLI and boto3 expect them, and the stored
// form (the same JSON, read back by the *_from_json functions).
//
// Errors are ECS errors (model/errors.h) that name the field:
// InvalidParameterException "containerDefinitions[0].foo: unknown field",
// ClientException "Invalid 'cpu' setting for task." for a Fargate size that
// is not in the table.
//
// What berth does with the fields ECS leaves open (container_definition.cc
// and task_definition.cc say it next to the code):
// - Refused unless empty/false, by name: volumes, mountPoints, volumesFrom
//   (no volumes yet), privileged, linuxParameters.devices,
//   disableNetworking, maxSwap/swappiness (as on Fargate), dnsServers and
//   extraHosts (as ECS refuses them for awsvpc; the microhost writes the
//   task's resolv.conf and hosts), pidMode (host, and task: containers have
//   their own pid namespaces), ipcMode other than "none", startTimeout with
//   dependsOn (no dependency timeout yet), and the ECS fields berth does not
//   implement (links, secrets, dockerLabels, environmentFiles, ...).
//   Unknown fields are refused by name.
// - networkMode: awsvpc (default) and bridge both get a netns of their own
//   (bridge is taken as awsvpc-like: hostPort publishes on the host); host
//   shares the host's; none has only loopback.
// - capabilities.add: only SYS_PTRACE, or what Account::allowed_capabilities
//   lists (ALL included); names as ECS writes them, without CAP_.
// - systemControls: only namespaced sysctls (net.* outside network mode
//   host, kernel.msg*, kernel.sem, kernel.shm*).
// - logConfiguration (any driver), executionRoleArn, taskRoleArn,
//   runtimePlatform (LINUX, the host's cpuArchitecture only),
//   repositoryCredentials, ephemeralStorage (21..200 GiB) are stored and
//   returned; logs always go to berth's local log store (awslogs included).
// - Task cpu/memory are normalised at registration ("0.25 vCPU" -> "256",
//   "1 GB" -> "1024"); without task memory every container needs memory or
//   memoryReservation (ECS's EC2 rule); with FARGATE in
//   requiresCompatibilities both are required, the size table applies and
//   networkMode must be awsvpc.
// - Stored documents: task_definition_json carries "tags" (ECS returns them
//   beside the definition; clients ignore the extra member), task_json
//   carries "berthNodeRef" (Task::node_ref, needed to re-adopt after a
//   restart) when set, cluster_json carries "berthCreatedAt". The
//   *_from_json readers take exactly what the writers produce; their errors
//   have step "stored task definition" / "stored task" / "stored cluster".
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_reader.h"
#include "controlplane/model/model.h"

namespace berth::cp {

// RegisterTaskDefinition's input (also the inline definition of
// POST /v1/tasks, where `family` is optional: `default_family` fills it).
// Every container-definition field of ECS-API.md is honoured or refused by
// name; fields only meaningful inside AWS are kept. `account` decides which
// capabilities linuxParameters may add. The returned definition has no
// revision yet.
Result<TaskDefinition> parse_task_definition(const nlohmann::json& body, const Account& account,
                                             std::string_view default_family = {});

// The Fargate cpu/memory table (ECS-API.md), for launch types FARGATE and
// FARGATE_SPOT: ClientException "Invalid 'cpu' setting for task." /
// "Invalid 'memory' setting for task." / "... is not valid for cpu ...".
Result<void> check_fargate_size(const std::string& cpu, const std::string& memory);

// RunTask's `overrides`.
Result<TaskOverrides> parse_overrides(const jr::Node& n);

nlohmann::json task_definition_json(const TaskDefinition& d, std::string_view region);
Result<TaskDefinition> task_definition_from_json(const nlohmann::json& j, std::string_view account);

nlohmann::json tags_json(const std::vector<Tag>& tags);
Result<std::vector<Tag>> parse_tags(const jr::Node& n);

// The task object of DescribeTasks / RunTask (ECS field names; timestamps in
// epoch seconds; containers with ARNs, networkInterfaces, networkBindings;
// attachments with the ENI details).
nlohmann::json task_json(const Task& t, std::string_view region);
Result<Task> task_from_json(const nlohmann::json& j, std::string_view account);

struct ClusterCounts {
  int running_tasks = 0;
  int pending_tasks = 0;
  int active_services = 0;
};
nlohmann::json cluster_json(const Cluster& c, std::string_view region, const ClusterCounts& counts);
Result<Cluster> cluster_from_json(const nlohmann::json& j, std::string_view account);

}  // namespace berth::cp
