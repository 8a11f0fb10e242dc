// The ECS JSON 1.1 operations (docs/ECS-API.md): POST / with
// X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>. Each operation
// reads its body through the typed reader (an empty body is {}), acts for
// the caller's account only (another account's ARN is simply not found) and
// answers the ECS shapes. Blocking (store, agent): run on a worker thread.
//
// Decisions where ECS leaves room, documented here:
// - RunTask without `launchType` runs as FARGATE, but the Fargate size table
//   is enforced only when the definition requires FARGATE or launchType /
//   capacityProviderStrategy names FARGATE or FARGATE_SPOT explicitly: a
//   definition without task-level cpu/memory can then still run (its
//   containers' sizes are reserved).
// - Tags of every resource live in the store's tag table (by ARN); objects
//   show them with include=["TAGS"] (and RegisterTaskDefinition / RunTask
//   echo the tags they were given).
// - ListTaskDefinitions' familyPrefix is the full family name (as ECS
//   documents it); ListTaskDefinitionFamilies' is a true prefix.
// - Pagination tokens are opaque base64url strings.
// - The berth extension: with a meter, every task object of a
//   DescribeTasks answer (and of the native /v1/tasks answers) carries
//   "berthBilling": task_bill_json(meter.bill(task)) (billing/meter.h),
//   the task's billed seconds and amount so far. It is added to the answer
//   only, never to the stored task document; the AWS CLI and SDKs ignore
//   members they do not know. When the meter cannot answer (a store error),
//   the member is left out and the error logged: the task is still
//   described.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "controlplane/api/http.h"
#include "controlplane/model/model.h"
#include "controlplane/scheduler/task_manager.h"
#include "controlplane/store/store.h"

namespace berth::cp {

inline constexpr std::string_view kEcsTargetPrefix = "AmazonEC2ContainerServiceV20141113.";
inline constexpr std::string_view kAmzJson = "application/x-amz-json-1.1";

struct EcsApiOptions {
  // The account's settings (allowed capabilities) by id; default: an
  // account with only Fargate's rule.
  std::function<std::optional<Account>(const std::string& id)> account;
};

class Meter;
class ServiceApi;

class EcsApi {
 public:
  // `meter`: the bills of DescribeTasks' "berthBilling" (none without).
  EcsApi(Store& store, TaskManager& tasks, EcsApiOptions opts = {}, Meter* meter = nullptr);

  static bool known_operation(std::string_view op);
  // The service operations (CreateService .. ListServices) and ListTasks'
  // serviceName go to `services` (api/service_api.h); without it they fail.
  void set_services(ServiceApi* services) { services_ = services; }
  // Runs `op` for `account` on the raw request body. Blocks.
  Result<nlohmann::json> call(const std::string& account, std::string_view op,
                              const std::string& body);

  // Shared with the native API.
  Account account_of(const std::string& id) const;
  // The ACTIVE cluster `ref` (name or ARN); "default" is created on first
  // use when `create_default`.
  Result<Cluster> cluster(const std::string& account, const std::string& ref, bool create_default);
  // The task definition `ref` (family, family:revision or ARN) of this
  // account, INACTIVE ones included; ClientException `not_found` when there
  // is none. (Public for ServiceApi, controlplane/api/service_api.h.)
  Result<TaskDefinition> definition(const std::string& account, const std::string& ref,
                                    std::string_view not_found);
  // Registration checks beyond parsing (the Fargate table when the
  // definition requires FARGATE).
  Result<void> check_definition(const TaskDefinition& d) const;
  // Registers `d` (no revision yet): the next revision, stored and tagged.
  // ACTIVE services of the cluster (its activeServicesCount).
  Result<int> active_services(const Cluster& c);
  Result<TaskDefinition> register_definition(const std::string& account, TaskDefinition d);
  // Task id (32 hex) or task ARN of this account; nullopt when not found or
  // not in `cluster` (when given).
  Result<std::optional<Task>> find_task(const std::string& account, const std::string& ref,
                                        const std::optional<std::string>& cluster);
  // The ECS task object; with its tags from the store when `tags`.
  Result<nlohmann::json> task_out(const Task& t, bool tags);
  // Adds "berthBilling" to the task object `out` of `t` (the berth
  // extension above). Blocks on the store.
  void add_billing(nlohmann::json& out, const Task& t);
  Meter* meter() { return meter_; }
  // RunTask's core: checks, then TaskManager::run_task.
  Result<RunTaskResult> run(const std::string& account, const Cluster& c, const TaskDefinition& d,
                            RunTaskRequest req, bool fargate_check);

  const std::string& region() const { return tasks_.region(); }
  Store& store() { return store_; }

 private:
  Result<nlohmann::json> create_cluster(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> describe_clusters(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> list_clusters(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> delete_cluster(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> register_task_definition(const std::string& a, const nlohmann::json& j);
  Result<nlohmann::json> deregister_task_definition(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> describe_task_definition(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> list_task_definitions(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> list_task_definition_families(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> run_task(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> stop_task(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> describe_tasks(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> list_tasks(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> tag_resource(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> untag_resource(const std::string& a, const jr::Node& b);
  Result<nlohmann::json> list_tags_for_resource(const std::string& a, const jr::Node& b);

  Result<nlohmann::json> cluster_out(const Cluster& c, bool tags);
  Result<std::vector<Tag>> tags_of(const std::string& account, const std::string& arn);
  Result<void> check_resource(const std::string& account, const std::string& arn);

  Store& store_;
  TaskManager& tasks_;
  EcsApiOptions opts_;
  Meter* meter_ = nullptr;
  ServiceApi* services_ = nullptr;
};

// The ECS error shape for `e` (errors.h: 400, ServerException and internal
// errors 500 without their text; `native` maps not-found exceptions to
// 404 and AccessDenied to 403 as the /v1 contract says).
HttpResponse error_response(const Error& e, bool native = false);
HttpResponse json_response(int status, const nlohmann::json& body, std::string_view content_type);

// Opaque pagination tokens.
std::string encode_token(const std::string& plain);
std::optional<std::string> decode_token(const std::string& token);

}  // namespace berth::cp
