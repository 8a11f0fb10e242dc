// The container's minimal /dev: null, zero, full, random, urandom, tty (bound
// from the host in a user namespace, mknod'ed otherwise), the spec's
// linux.devices, /dev/pts + /dev/ptmx, /dev/shm, the fd/stdin/stdout/stderr
// links and /dev/console when a terminal is asked for. Child side, before
// pivot_root; `rootfs` is the absolute path of the container root.
#pragma once

#include <string>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {

Result<void> populate_dev(const Spec& spec, const std::string& rootfs, bool in_user_namespace,
                          const std::string& console_path);

}  // namespace berth::runtime
