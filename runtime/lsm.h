// Linux security modules: process.apparmorProfile, process.selinuxLabel and
// linux.mountLabel. What this host can apply is applied, the rest refused
// with an error naming the field (runc also refuses an AppArmor profile when
// AppArmor is off); nothing is accepted and dropped.
//
// AppArmor: the profile is set for the next execve ("exec <profile>" into
// /proc/self/attr/apparmor/exec, or attr/exec on kernels before 5.8), the
// init's last step before it execs the process. SELinux labels are refused:
// when SELinux is off because they cannot apply, when it is on because berth
// does not implement labelling.
#pragma once

#include <string>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {

bool apparmor_enabled();
bool selinux_enabled();

// Parent side, before anything is created.
Result<void> check_lsm_fields(const Spec& spec);

// Child side: the AppArmor profile of the process after its next execve.
// An empty profile changes nothing.
Result<void> apply_apparmor_profile(const std::string& profile);

}  // namespace berth::runtime
