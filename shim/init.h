// `berth-shim init -- CMD...`: the minimal init of initProcessEnabled, run
// as pid 1 inside a container (the shim's protected copy of its static
// binary, exec'd as /proc/self/exe by the container's init; see
// Shim::add_init_process). It starts CMD, forwards every signal it can catch to
// it, reaps every zombie (orphans are reparented to pid 1), and exits with
// CMD's status (128+n when CMD was killed by signal n) — what tini and
// docker-init do.
#pragma once

namespace berth::shim {

// argv: the arguments after "init" (optionally starting with "--").
int run_init(int argc, char** argv);

}  // namespace berth::shim
