// Device rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program built from
// linux.resources.devices (v2 has no devices.allow/deny files), attached to
// the container's cgroup with BPF_F_ALLOW_MULTI as runc and crun do, so that
// an ancestor's program still applies too. The instructions are generated
// here from linux/bpf.h and loaded with bpf(2); no libbpf.
#pragma once

#include <linux/bpf.h>

#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {

// The devices every container has on both cgroup drivers, as runc's
// AllowedDevices: mknod of any node (the runtime creates /dev inside the
// container's cgroup), the nodes of a minimal /dev, the pty master and
// slaves, and tun. Applied after the spec's rules, so no spec can take
// /dev/null away.
const std::vector<DeviceRule>& default_device_rules();

// The program for `rules` (in spec order; the defaults are not added here).
// Semantics, as the v1 devices controller and runc: everything is denied
// unless a rule says otherwise, and of the rules that match a request the
// last one decides. A rule of type "a" (or none) with both numbers wildcard
// and access "rwm" resets the decision for every device (the rules before it
// no longer matter). An allow rule matches when it grants all the access
// asked for; a deny rule matches when it denies any of it (stricter than
// runc's program for partial deny rules, the same as v1's effect). A number
// < 0 or absent is a wildcard. Fails on a type other than a/b/c (or empty)
// or an access with letters other than r, w, m.
Result<std::vector<bpf_insn>> device_filter_program(const std::vector<DeviceRule>& rules);

// Loads `prog` and attaches it to the cgroup directory `cgroup_fd` with
// BPF_F_ALLOW_MULTI. The kernel keeps it attached for the cgroup's lifetime.
Result<void> attach_device_filter(int cgroup_fd, const std::vector<bpf_insn>& prog);

}  // namespace berth::runtime
