// The running program as a copy that no container can write
// (CVE-2019-5736 and its kind).
//
// A container's init and every `exec`'d process start as a clone of the
// runtime (berth-runtime, or berth-shim, which links the runtime in-process):
// until their execve, /proc/<pid>/exe is the runtime's binary, and an image
// that runs `#!/proc/self/exe` makes the runtime's binary run inside the
// container, dumpable, where pid 1 can open /proc/<pid>/exe and, once the
// process is gone, reopen it for writing. So before anything touches a
// container, the runtime re-executes itself from a protected copy, and every
// clone inherits that copy as its exe:
//
//   overlay  a detached, read-only overlayfs with only lower layers (the
//            binary's directory over an empty one), made with fsopen/fsmount
//            and never attached anywhere (no mount event, nothing to clean
//            up): no copy, the page cache is the binary's own, and without an
//            upper layer no write can reach the binary, not even after a
//            remount by CAP_SYS_ADMIN (runc >= 1.2).
//   memfd    a private copy in a memfd sealed against every change
//            (F_SEAL_SEAL|SHRINK|GROW|WRITE): about 1 ms for a 3 MB static
//            binary, and the binary's size in memory while the process lives
//            (runc's cloned_binary).
//
// The preferred method is tried first, the other one if it fails; if both
// fail the caller gets an error and must not go on unprotected.
#pragma once

#include <string>

#include "common/error.h"

namespace berth::runtime {

enum class SealMethod { overlay, memfd };

const char* seal_method_name(SealMethod m);

// Returns once /proc/self/exe is a protected copy: at once when this process
// was already re-executed by an earlier call (the environment variable
// _BERTH_SEALED_EXE says so; it is removed and the claim checked), otherwise
// never on success (execveat of the copy with the same argv and environment).
// `why_fallback` receives why the preferred method was not used, if it was
// not. argv must be main()'s.
Result<SealMethod> ensure_sealed_exe(char** argv, SealMethod preferred,
                                     std::string* why_fallback = nullptr);

// What /proc/self/exe is now: a sealed memfd, or a file on a read-only
// overlayfs; an error otherwise.
Result<SealMethod> sealed_exe_method();

}  // namespace berth::runtime
