// seccomp: the spec's linux.seccomp compiled to a BPF filter with libseccomp.
//
// Parent side: compile_seccomp() builds and validates the filter (unknown
// syscall names are skipped with a debug line, as runc does, so one profile
// serves several kernels; unknown actions, operators or architectures are
// errors; listed architectures this host cannot run are skipped). Given a
// cache directory it reuses the program compiled for the same spec before
// (runtime/seccomp_cache.h). Child side: load_seccomp() installs it, the
// last step before execve when no_new_privileges is set.
#pragma once

#include <linux/filter.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/spec.h"

namespace berth::runtime {

struct SeccompCtxDeleter {
  void operator()(void* ctx) const;  // seccomp_release
};

// A compiled filter in one of two forms: a libseccomp context, loaded with
// seccomp_load (the only way to get a SCMP_ACT_NOTIFY listener fd), or a raw
// BPF program with its seccomp(2) load flags (libseccomp's attributes LOG,
// SSB and TSYNC are load flags, not part of the exported program).
class SeccompFilter {
 public:
  SeccompFilter() = default;
  explicit SeccompFilter(void* ctx) : ctx_(ctx) {}
  SeccompFilter(std::vector<sock_filter> program, unsigned load_flags, bool from_cache)
      : program_(std::move(program)), load_flags_(load_flags), from_cache_(from_cache) {}

  void* ctx() const { return ctx_.get(); }
  // Empty for a context filter.
  const std::vector<sock_filter>& program() const { return program_; }
  unsigned load_flags() const { return load_flags_; }
  // True when the program was read from the cache without compiling.
  bool from_cache() const { return from_cache_; }
  bool uses_notify() const { return notify_; }
  void set_uses_notify(bool v) { notify_ = v; }

 private:
  std::unique_ptr<void, SeccompCtxDeleter> ctx_;
  std::vector<sock_filter> program_;
  unsigned load_flags_ = 0;
  bool from_cache_ = false;
  bool notify_ = false;
};

// Without `cache_dir`, or when a rule uses SCMP_ACT_NOTIFY, the result is a
// libseccomp context. Otherwise it is a raw program: read from
// <cache_dir>/<key>.bpf, or compiled, exported and stored there (a failure
// to store is logged at debug and otherwise ignored: a read-only root still
// runs containers).
Result<SeccompFilter> compile_seccomp(const Seccomp& spec, const std::string& cache_dir = "");

// Loads the filter into the calling process. When the filter uses
// SCMP_ACT_NOTIFY, returns the listener fd (to be sent to listenerPath),
// otherwise an empty UniqueFd.
Result<UniqueFd> load_seccomp(const SeccompFilter& filter);

// The filter in libseccomp's pseudo-filter-code text (for tests and --debug);
// only a context filter has it.
Result<std::string> export_seccomp_pfc(const SeccompFilter& filter);

}  // namespace berth::runtime
