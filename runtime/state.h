// The runtime's record of a container: <root>/<id>/state.json, written
// atomically, plus the status derived from the live process. The directory
// is created with mkdir, which is what makes an id exclusive.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/error.h"

namespace berth::runtime {

enum class Status { creating, created, running, stopped };
const char* status_name(Status s);

struct ContainerState {
  std::string id;
  std::string bundle;
  std::string rootfs;
  Status status = Status::creating;  // as recorded; see refresh_status
  pid_t pid = 0;
  uint64_t pid_start_time = 0;  // /proc/<pid>/stat field 22: guards against pid reuse
  std::string created;          // RFC 3339
  std::map<std::string, std::string> annotations;
  std::vector<std::string> cgroup_paths;
  bool cgroup_ns = false;
  // Device nodes the init may make in the rootfs that were not there
  // before; `delete` removes those it finds (devices.h).
  std::vector<std::string> device_nodes;

  // The OCI state JSON (`state` command, hooks' stdin).
  std::string oci_json() const;
};

// Container ids: runc's rule, [A-Za-z0-9_+.-], 1..1024, not "." or "..".
Result<void> validate_id(const std::string& id);

std::string container_dir(const std::string& root, const std::string& id);
Result<void> save_state(const std::string& root, const ContainerState& st);
Result<ContainerState> load_state(const std::string& root, const std::string& id);
// Recomputes the status from the process: a dead, zombie or reused pid is
// "stopped"; a live init in the "created" record is "created", etc.
Status refresh_status(const ContainerState& st);
// Start time of `pid` in clock ticks since boot, 0 if it is gone.
uint64_t process_start_time(pid_t pid);
std::vector<std::string> list_containers(const std::string& root);

}  // namespace berth::runtime
