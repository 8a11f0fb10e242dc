#include "runtime/lsm.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "common/fd.h"
#include "common/fs.h"

namespace berth::runtime {

bool apparmor_enabled() {
  // runc's test: the module says so, and its securityfs directory exists.
  auto enabled = fs::read_file("/sys/module/apparmor/parameters/enabled");
  return enabled && enabled->starts_with('Y') && fs::exists("/sys/kernel/security/apparmor");
}

bool selinux_enabled() {
  return fs::exists("/sys/fs/selinux/enforce");
}

Result<void> check_lsm_fields(const Spec& spec) {
  if (spec.process && !spec.process->apparmor_profile.empty() && !apparmor_enabled()) {
    return errno_error("spec", EOPNOTSUPP,
                       "process.apparmorProfile \"{}\": AppArmor is not enabled on this host",
                       spec.process->apparmor_profile);
  }
  auto refuse_selinux = [](std::string_view field) {
    return errno_error("spec", EOPNOTSUPP, "{}: {}", field,
                       selinux_enabled() ? "berth does not apply SELinux labels"
                                         : "SELinux is not enabled on this host");
  };
  if (spec.process && !spec.process->selinux_label.empty()) {
    return refuse_selinux("process.selinuxLabel");
  }
  if (!spec.linux.mount_label.empty()) return refuse_selinux("linux.mountLabel");
  return {};
}

Result<void> apply_apparmor_profile(const std::string& profile) {
  if (profile.empty()) return {};
  const std::string value = "exec " + profile;
  for (const char* path : {"/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"}) {
    UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
    if (!fd && errno == ENOENT) continue;
    if (!fd) return sys_error("apparmor", "open {}", path);
    if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
      return sys_error("apparmor", "set profile \"{}\" for exec", profile);
    }
    return {};
  }
  return errno_error("apparmor", ENOENT, "set profile \"{}\": no /proc/self/attr/*/exec", profile);
}

}  // namespace berth::runtime
