// process.terminal: a pseudo-terminal from the container's own devpts
// instance, its slave as the process's controlling terminal and stdio and
// bound on /dev/console, its master handed to the caller over the console
// socket (SCM_RIGHTS), as runc's --console-socket does.
#pragma once

#include <optional>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {

// Child side, after pivot_root (so /dev/ptmx is the container's).
Result<void> setup_terminal(int console_socket, const std::optional<ConsoleSize>& size);

}  // namespace berth::runtime
