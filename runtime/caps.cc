#include "runtime/caps.h"

#include <sys/capability.h>
#include <sys/prctl.h>

#include <cctype>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace berth::runtime {

namespace {

constexpr std::string_view kStep = "capabilities";

// One bit per capability. The kernel has 41 today and the capability ABI
// (v3) stops at 64, so a 64-bit mask holds every set without allocating in
// the child.
using CapMask = uint64_t;
constexpr int kMaskBits = 64;

constexpr CapMask bit(int cap) {
  return CapMask{1} << cap;
}

// Caps are numbered 0..cap_max_bits()-1 on the running kernel; libcap
// probes the kernel for this when it is loaded.
int kernel_cap_count() {
  const int n = static_cast<int>(cap_max_bits());
  return n < kMaskBits ? n : kMaskBits;
}

// The spelling of the OCI spec, as runc accepts it: "CAP_" and upper case.
// cap_from_name alone would also take "cap_chown" or "12".
bool is_spec_cap_name(std::string_view name) {
  if (!name.starts_with("CAP_") || name.size() == 4) return false;
  for (char c : name) {
    if (!(std::isupper(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return false;
    }
  }
  return true;
}

// nullopt: a capability libcap knows but the running kernel does not.
Result<std::optional<int>> resolve_one(const std::string& name) {
  cap_value_t value = 0;
  if (!is_spec_cap_name(name) || cap_from_name(name.c_str(), &value) != 0) {
    return error(kStep, "unknown capability \"{}\"", name);
  }
  if (value >= kernel_cap_count()) return std::optional<int>();
  return std::optional<int>(value);
}

Result<CapMask> resolve_mask(const std::vector<std::string>& names) {
  CapMask mask = 0;
  for (const auto& name : names) {
    BERTH_ASSIGN(std::optional<int> cap, resolve_one(name));
    if (cap) mask |= bit(*cap);
  }
  return mask;
}

// For error messages only: "CAP_SYS_ADMIN", or the number if libcap has no
// name for it.
std::string cap_display_name(int cap) {
  char* raw = cap_to_name(cap);
  if (raw == nullptr) return std::to_string(cap);
  std::string out(raw);
  cap_free(raw);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

struct CapFree {
  void operator()(cap_t c) const { cap_free(c); }
};
using UniqueCap = std::unique_ptr<std::remove_pointer_t<cap_t>, CapFree>;

Result<void> set_flag(cap_t state, cap_flag_t flag, CapMask mask, std::string_view set_name) {
  cap_value_t values[kMaskBits];
  int n = 0;
  for (int cap = 0; cap < kMaskBits; ++cap) {
    if (mask & bit(cap)) values[n++] = cap;
  }
  if (n == 0) return {};
  if (cap_set_flag(state, flag, n, values, CAP_SET) != 0) {
    return sys_error(kStep, "build the {} set", set_name);
  }
  return {};
}

Result<void> set_process_caps(CapMask effective, CapMask permitted, CapMask inheritable) {
  UniqueCap state(cap_init());
  if (!state) return sys_error(kStep, "cap_init");
  BERTH_TRY(set_flag(state.get(), CAP_EFFECTIVE, effective, "effective"));
  BERTH_TRY(set_flag(state.get(), CAP_PERMITTED, permitted, "permitted"));
  BERTH_TRY(set_flag(state.get(), CAP_INHERITABLE, inheritable, "inheritable"));
  if (cap_set_proc(state.get()) != 0) {
    return sys_error(kStep, "set effective, permitted and inheritable sets");
  }
  return {};
}

// The kernel only lets a cap into the ambient set if it is already both
// permitted and inheritable; say which one is wrong before it says EPERM.
Result<void> check_ambient(CapMask ambient, CapMask permitted, CapMask inheritable) {
  const CapMask missing = ambient & ~(permitted & inheritable);
  for (int cap = 0; cap < kMaskBits; ++cap) {
    if (missing & bit(cap)) {
      return error(kStep, "ambient capability \"{}\" is not in the permitted and inheritable sets",
                   cap_display_name(cap));
    }
  }
  return {};
}

Result<void> raise_ambient(CapMask ambient) {
  // Start from an empty ambient set: whatever the runtime inherited must not
  // leak into the container.
  if (cap_reset_ambient() != 0) return sys_error(kStep, "clear the ambient set");
  for (int cap = 0; cap < kMaskBits; ++cap) {
    if ((ambient & bit(cap)) && cap_set_ambient(cap, CAP_SET) != 0) {
      return sys_error(kStep, "raise ambient capability \"{}\"", cap_display_name(cap));
    }
  }
  return {};
}

}  // namespace

Result<std::vector<int>> resolve_capabilities(const std::vector<std::string>& names) {
  std::vector<int> out;
  for (const auto& name : names) {
    BERTH_ASSIGN(std::optional<int> cap, resolve_one(name));
    if (cap) out.push_back(*cap);
  }
  return out;
}

Result<void> prepare_capabilities(const Capabilities& caps) {
  BERTH_ASSIGN(const CapMask bounding, resolve_mask(caps.bounding));
  // Dropping from the bounding set needs CAP_SETPCAP, so this runs before
  // the uid switch and before apply_capabilities narrows the effective set.
  for (int cap = 0; cap < kernel_cap_count(); ++cap) {
    // Already gone (a nested runtime, a restricted host): nothing to drop,
    // and PR_CAPBSET_DROP would want CAP_SETPCAP for the no-op.
    if ((bounding & bit(cap)) || cap_get_bound(cap) != 1) continue;
    if (cap_drop_bound(cap) != 0) {
      return sys_error(kStep, "drop \"{}\" from the bounding set", cap_display_name(cap));
    }
  }
  // setuid() to a non-root uid clears the permitted set unless KEEPCAPS is
  // on; apply_capabilities then sets exactly the spec's sets.
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return sys_error(kStep, "prctl(PR_SET_KEEPCAPS, 1)");
  return {};
}

Result<void> apply_capabilities(const Capabilities& caps) {
  BERTH_ASSIGN(const CapMask effective, resolve_mask(caps.effective));
  BERTH_ASSIGN(const CapMask permitted, resolve_mask(caps.permitted));
  BERTH_ASSIGN(const CapMask inheritable, resolve_mask(caps.inheritable));
  BERTH_ASSIGN(const CapMask ambient, resolve_mask(caps.ambient));
  BERTH_TRY(check_ambient(ambient, permitted, inheritable));
  BERTH_TRY(set_process_caps(effective, permitted, inheritable));
  // Ambient last: raising it needs the permitted and inheritable sets above.
  BERTH_TRY(raise_ambient(ambient));
  // KEEPCAPS was only for the uid switch; off again so that a setuid() in
  // the container behaves as on any host.
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return sys_error(kStep, "prctl(PR_SET_KEEPCAPS, 0)");
  return {};
}

}  // namespace berth::runtime
