// The container's minimal /dev: null, zero, full, random, urandom, tty (bound
// from the host in a user namespace, mknod'ed otherwise), the spec's
// linux.devices, /dev/pts + /dev/ptmx, /dev/shm, the fd/stdin/stdout/stderr
// links and /dev/console when a terminal is asked for. Child side, before
// pivot_root; `rootfs` is the absolute path of the container root.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {

Result<void> populate_dev(const Spec& spec, const std::string& rootfs, bool in_user_namespace,
                          const std::string& console_path);

// Parent side, before the init exists: the device paths populate_dev may
// create that nothing in the rootfs holds yet. Most land on the /dev tmpfs
// and vanish with the container, but a linux.devices path outside /dev is
// made on the rootfs's own filesystem; `delete` removes what is recorded
// here (remove_device_nodes), so no node outlives the container.
std::vector<std::string> device_nodes_to_create(const Spec& spec, const std::string& rootfs);

// Removes the device nodes (char, block, FIFO) found at `paths` in the
// rootfs, resolved inside it; missing paths and non-nodes are left alone.
Result<void> remove_device_nodes(const std::string& rootfs, const std::vector<std::string>& paths);

}  // namespace berth::runtime
