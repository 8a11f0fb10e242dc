// The ECS service operations (docs/ECS-API.md): CreateService,
// UpdateService, DeleteService, DescribeServices, ListServices over the
// store, for the caller's account only, answering the service object of
// model/service.h.
//
// EcsApi::call hands these five to the ServiceApi set with
// EcsApi::set_services(); ListTasks' serviceName filter is the task group
// "service:<name>".
//
// What the operations do (the supervisor, a later slice, does the rest):
// - CreateService: the cluster ("default" is created on first use, as for
//   RunTask) and the ACTIVE task definition are resolved; every
//   loadBalancers[].containerName must be a container of the definition
//   with containerPort among its portMappings (ECS's
//   InvalidParameterException otherwise); the service is stored ACTIVE
//   with one PRIMARY deployment (IN_PROGRESS). A name in use by a service
//   that is not INACTIVE: InvalidParameterException "Creation of service
//   was not idempotent.".
// - UpdateService: desiredCount, deploymentConfiguration and
//   healthCheckGracePeriodSeconds are changed in place; a different task
//   definition, or forceNewDeployment, starts a new PRIMARY deployment.
//   Only an ACTIVE service can be updated (ServiceNotActiveException).
// - DeleteService: without force the desired count must be 0 (ECS's
//   InvalidParameterException "The service cannot be stopped while it is
//   scaled above 0."); the service becomes DRAINING with desiredCount 0
//   (the planner stops its tasks and makes it INACTIVE). Deleting a
//   DRAINING service answers it as it is; an INACTIVE one is
//   ServiceNotActiveException.
// - DescribeServices: INACTIVE services are described (until expiry);
//   unknown ones are failures {arn, reason MISSING}.
// - ListServices: ACTIVE and DRAINING services of the cluster, by name,
//   maxResults (default 10) per page with an opaque nextToken.
// Writes are compare-and-swap on the service's version, re-read and
// re-applied when the supervisor (or another request) wrote first.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "controlplane/api/ecs_api.h"
#include "controlplane/model/service.h"
#include "controlplane/scheduler/task_manager.h"
#include "controlplane/store/store.h"

namespace berth::cp {

class ServiceApi {
 public:
  ServiceApi(EcsApi& ecs, TaskManager& tasks) : ecs_(ecs), tasks_(tasks) {}

  static bool known_operation(std::string_view op);
  // Runs `op` for `account` on the raw request body ("" is {}). Blocks.
  Result<nlohmann::json> call(const std::string& account, std::string_view op,
                              const std::string& body);

  // The stored service `name` of `cluster` (nullopt when there is none).
  Result<std::optional<Service>> get(const std::string& account, const std::string& cluster,
                                     const std::string& name);
  // Writes `s` with compare-and-swap on its version (bumps it); then calls
  // on_put (the supervisor's wake-up).
  Result<void> put(Service& s);
  // A stored service record read back (its version the record's).
  static Result<Service> decode(const ServiceRecord& r);
  std::function<void()> on_put;
  // The service `ref` (name or ARN) in `cluster`: ServiceNotFoundException
  // when there is none.
  Result<Service> find(const std::string& account, const Cluster& cluster, const std::string& ref);

 private:
  Result<nlohmann::json> create_service(const std::string& a, const nlohmann::json& b);
  Result<nlohmann::json> update_service(const std::string& a, const nlohmann::json& b);
  Result<nlohmann::json> delete_service(const std::string& a, const nlohmann::json& b);
  Result<nlohmann::json> describe_services(const std::string& a, const nlohmann::json& b);
  Result<nlohmann::json> list_services(const std::string& a, const nlohmann::json& b);

  // Reads, changes and writes a service until the compare-and-swap holds.
  Result<Service> modify(const std::string& account, const Cluster& cluster, const std::string& ref,
                         const std::function<Result<void>(Service&)>& change);

  // InvalidParameterException when a live service (any account) listens
  // on `port` (0: none).
  Result<void> check_listener_free(uint16_t port);

  EcsApi& ecs_;
  TaskManager& tasks_;
  std::mutex create_mu_;
};

}  // namespace berth::cp
