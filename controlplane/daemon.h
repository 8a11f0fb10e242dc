// berthd's life: the parts put together in order, run until SIGTERM or
// SIGINT, then a graceful stop. The ordering constraints:
//  - signals are blocked before the first thread starts, so every thread
//    inherits the mask and only the main thread's sigwait sees them;
//  - the instance lock is taken before anything under the state or run dir
//    is touched: a second berthd on the same directories must not gc the
//    first one's microhosts;
//  - the store opens before the agent adopts (the live set comes from it),
//    and recovery completes before the API answers, so no client sees a
//    task in a state the restart has not reconciled yet;
//  - on stop, the API closes first (no new work), then the scheduler, then
//    the agent; shims keep running and are adopted by the next berthd.
#pragma once

#include "controlplane/config.h"

namespace berth::cp {

// Returns the process exit code: 0 after a clean stop, 1 when start-up
// failed (the reason on stderr and in the log).
int run_daemon(const Config& config);

// `berthd --teardown`: removes what this instance made on the host — every
// shim (and so every task) is stopped, microhosts, overlays, firewall
// rules, the bridge, the nftables table and the cgroup subtree go. The
// state dir (database, logs) stays. For operators removing an instance, and
// for tests and the demo. Refused while a berthd of the instance runs.
int run_teardown(const Config& config);

}  // namespace berth::cp
