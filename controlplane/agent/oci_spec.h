// ECS container definitions -> OCI runtime specs, and the task -> the shim's
// task.json (shim/PROTOCOL.md). One config.json per container, runnable by
// berth-runtime and runc alike: no berth-only field is needed to run it.
//
// Built from berth-runtime's default spec (runtime/default_profile.h: caps,
// masked/read-only paths, seccomp, device rule) with Docker's defaults where
// ECS users expect them: noNewPrivileges false, nofile 65535 (Fargate's;
// the host's hard limit where that is lower), /dev/shm 64 MiB
// (sharedMemorySize; none with ipcMode "none"), a read-only cgroup mount,
// tmpfs mode 1777 unless mountOptions set one, cpu shares = container cpu
// (0 -> 2), memory limit/reservation from the container (RunTask overrides
// win). A granted SYS_PTRACE also allows the tracing syscalls in the
// seccomp profile, as Docker's does. User names are resolved in the
// rootfs's /etc/passwd and /etc/group (inside the rootfs: a symlink cannot
// point the lookup at a host file); additionalGids as Docker computes them.
// initProcessEnabled goes to the shim (task.json init_process), which adds
// its sealed init to the bundle itself (shim/PROTOCOL.md).
//
// Pure functions: the agent supplies what it made (rootfs path, netns path,
// the files it wrote for /etc/hosts and /etc/resolv.conf), so these are unit
// tested without root.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "controlplane/model/model.h"
#include "rootfs-tools/image.h"

namespace berth::cp {

// What the microhost gives every container of the task.
struct MicrohostView {
  std::string netns_path;        // empty: network mode host (no netns of its own)
  std::string hosts_file;        // host path, bind-mounted read-only at /etc/hosts
  std::string resolv_conf_file;  // host path, bind-mounted read-only at /etc/resolv.conf
  std::string hostname_file;     // host path, bind-mounted read-only at /etc/hostname
};

struct ContainerBuild {
  const TaskDefinition* definition = nullptr;
  const ContainerDefinition* container = nullptr;
  const ContainerOverride* override_ = nullptr;  // may be null
  const rootfs::ImageConfig* image = nullptr;
  std::string rootfs_path;  // the container's overlay (root.path)
  MicrohostView microhost;
  // The hostname (container's `hostname`, else the task id's first 12 hex
  // digits as Docker does).
  std::string default_hostname;
};

// entryPoint/command merged with the image's Entrypoint/Cmd as Docker and
// ECS do: an entryPoint in the definition replaces the image's Entrypoint
// and drops its Cmd; a command replaces Cmd. Error when nothing is left to
// run.
Result<std::vector<std::string>> merged_args(const ContainerDefinition& c,
                                             const ContainerOverride* o,
                                             const rootfs::ImageConfig& image);

// The container's config.json. Errors are ECS errors naming the field that
// cannot be honoured.
Result<nlohmann::json> build_oci_spec(const ContainerBuild& b);

struct ShimTaskBuild {
  const Task* task = nullptr;
  const TaskDefinition* definition = nullptr;
  std::string runtime_root;
  std::string cgroup_parent;  // the instance's cgroup subtree (--cgroup-name)
  // Bundle directory per container, in definition order.
  std::vector<std::string> bundles;
};

// The shim's task.json: essential, stopTimeout, dependsOn, healthCheck,
// restartPolicy, initProcessEnabled, and the task-level limits (task cpu /
// memory, the containers' memoryReservation) for the microhost's task cgroup.
Result<nlohmann::json> build_shim_task(const ShimTaskBuild& b);

}  // namespace berth::cp
