// seccomp: the spec's linux.seccomp compiled to a BPF filter with libseccomp.
//
// Parent side: compile_seccomp() builds and validates the filter (unknown
// syscall names are skipped with a debug line, as runc does, so one profile
// serves several kernels; unknown actions, operators or architectures are
// errors). Child side: load_seccomp() installs it, the last step before
// execve when no_new_privileges is set.
#pragma once

#include <memory>
#include <string>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/spec.h"

namespace berth::runtime {

struct SeccompCtxDeleter {
  void operator()(void* ctx) const;  // seccomp_release
};

class SeccompFilter {
 public:
  SeccompFilter() = default;
  explicit SeccompFilter(void* ctx) : ctx_(ctx) {}
  void* ctx() const { return ctx_.get(); }
  bool uses_notify() const { return notify_; }
  void set_uses_notify(bool v) { notify_ = v; }

 private:
  std::unique_ptr<void, SeccompCtxDeleter> ctx_;
  bool notify_ = false;
};

Result<SeccompFilter> compile_seccomp(const Seccomp& spec);

// Loads the filter into the calling process. When the filter uses
// SCMP_ACT_NOTIFY, returns the listener fd (to be sent to listenerPath),
// otherwise an empty UniqueFd.
Result<UniqueFd> load_seccomp(const SeccompFilter& filter);

// The filter in libseccomp's pseudo-filter-code text (for tests and --debug).
Result<std::string> export_seccomp_pfc(const SeccompFilter& filter);

}  // namespace berth::runtime
