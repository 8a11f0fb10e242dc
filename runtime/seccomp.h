// seccomp: the spec's linux.seccomp compiled to a BPF filter with libseccomp.
//
// Parent side: compile_seccomp() builds and validates the filter (unknown
// syscall names are skipped with a debug line, as runc does, so one profile
// serves several kernels; unknown actions, operators or architectures are
// errors; listed architectures this host cannot run are skipped). Given a
// cache directory it reuses the program compiled for the same spec before
// (runtime/seccomp_cache.h). Child side: load_seccomp() installs it, the
// last step before execve when no_new_privileges is set.
//
// As runc does, a program whose default action denies gets a stub in front
// that returns ENOSYS for any syscall numbered above the highest one the
// profile names (per architecture): a syscall newer than the profile is one
// its author could not have meant to deny, and ENOSYS is what makes libc
// fall back (clone3 -> clone, openat2 -> openat, faccessat2 -> faccessat).
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/seccomp_cache.h"
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

  // A context filter whose program had to be patched (the ENOSYS stub):
  // loaded from the program, the context kept for the pfc export.
  void set_program(std::vector<sock_filter> program, unsigned load_flags) {
    program_ = std::move(program);
    load_flags_ = load_flags;
  }

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

// The ENOSYS stub's bound on one architecture the filter covers: syscall
// numbers above `last_syscall` get ENOSYS. `audit_arch` is the AUDIT_ARCH_*
// value the kernel reports; x86_64 and x32 share one and are told apart by
// the x32 bit of the syscall number (`x32` true for the x32 bound).
struct EnosysBound {
  uint32_t audit_arch = 0;
  bool x32 = false;
  uint32_t last_syscall = 0;
};

// The bounds for `spec` on this host: empty when the stub does not apply
// (default action allow or log, or a default errno that is ENOSYS already),
// and architectures of which the profile names no syscall are left out.
std::vector<EnosysBound> seccomp_enosys_bounds(const Seccomp& spec);

// The stub program for `bounds`, to run before the filter proper: it ends by
// falling through to the instruction right after it. Empty for no bounds.
BpfProgram seccomp_enosys_stub(std::span<const EnosysBound> bounds);

// Loads the filter into the calling process. When the filter uses
// SCMP_ACT_NOTIFY, returns the listener fd (to be sent to listenerPath),
// otherwise an empty UniqueFd.
Result<UniqueFd> load_seccomp(const SeccompFilter& filter);

// The filter in libseccomp's pseudo-filter-code text (for tests and --debug);
// only a context filter has it.
Result<std::string> export_seccomp_pfc(const SeccompFilter& filter);

}  // namespace berth::runtime
