// Capabilities: the five sets of process.capabilities, applied with libcap.
//
// Order matters (see apply_capabilities): the bounding set is reduced while we
// still hold CAP_SETPCAP, the uid switch keeps the permitted set
// (PR_SET_KEEPCAPS), then effective/permitted/inheritable are set and the
// ambient set raised last, since ambient caps must be permitted and
// inheritable already.
#pragma once

#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {

// Resolves names ("CAP_NET_ADMIN") to numbers; an unknown name is an error
// naming it. Names the running kernel does not know (cap > CAP_LAST_CAP) are
// dropped silently, as runc does.
Result<std::vector<int>> resolve_capabilities(const std::vector<std::string>& names);

// Child side, step 1 (before setuid): drop every cap not in the bounding set
// and set PR_SET_KEEPCAPS.
Result<void> prepare_capabilities(const Capabilities& caps);
// Child side, step 2 (after setuid/setgid): set E/P/I and raise ambient caps.
Result<void> apply_capabilities(const Capabilities& caps);

}  // namespace berth::runtime
