#include "runtime/seccomp.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"

namespace berth::runtime {

namespace {

constexpr std::string_view kStep = "seccomp";
// The kernel passes six syscall arguments; libseccomp indexes them 0..5.
constexpr unsigned kMaxArgs = 6;

struct ActionResult {
  uint32_t action = 0;
  bool ok = false;
};

// runc's semantics: errnoRet applies to ERRNO and TRACE, EPERM when absent.
ActionResult to_scmp_action(SeccompAction a, std::optional<unsigned> errno_ret) {
  const unsigned ret = errno_ret.value_or(EPERM);
  switch (a) {
    case SeccompAction::kill:
      return {SCMP_ACT_KILL, true};
    case SeccompAction::kill_process:
      return {SCMP_ACT_KILL_PROCESS, true};
    case SeccompAction::kill_thread:
      return {SCMP_ACT_KILL_THREAD, true};
    case SeccompAction::trap:
      return {SCMP_ACT_TRAP, true};
    case SeccompAction::errno_ret:
      return {SCMP_ACT_ERRNO(ret), true};
    case SeccompAction::trace:
      return {SCMP_ACT_TRACE(ret), true};
    case SeccompAction::allow:
      return {SCMP_ACT_ALLOW, true};
    case SeccompAction::log:
      return {SCMP_ACT_LOG, true};
    case SeccompAction::notify:
      return {SCMP_ACT_NOTIFY, true};
  }
  return {};
}

std::optional<scmp_compare> to_scmp_op(SeccompOp op) {
  switch (op) {
    case SeccompOp::ne:
      return SCMP_CMP_NE;
    case SeccompOp::lt:
      return SCMP_CMP_LT;
    case SeccompOp::le:
      return SCMP_CMP_LE;
    case SeccompOp::eq:
      return SCMP_CMP_EQ;
    case SeccompOp::ge:
      return SCMP_CMP_GE;
    case SeccompOp::gt:
      return SCMP_CMP_GT;
    case SeccompOp::masked_eq:
      return SCMP_CMP_MASKED_EQ;
  }
  return std::nullopt;
}

// "SCMP_ARCH_X86_64" -> "x86_64", libseccomp's own spelling.
std::string arch_token_name(std::string_view spec_name) {
  constexpr std::string_view prefix = "SCMP_ARCH_";
  if (spec_name.starts_with(prefix)) spec_name.remove_prefix(prefix.size());
  std::string out(spec_name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<void> add_architectures(scmp_filter_ctx ctx, const std::vector<std::string>& arches) {
  for (const auto& name : arches) {
    const std::string token_name = arch_token_name(name);
    const uint32_t token = seccomp_arch_resolve_name(token_name.c_str());
    if (token == 0) return error(kStep, "unknown architecture \"{}\"", name);
    // The native architecture is always in a new filter, and a profile may
    // list an architecture twice: both are fine.
    if (int rc = seccomp_arch_add(ctx, token); rc < 0 && rc != -EEXIST) {
      return errno_error(kStep, -rc, "add architecture \"{}\"", name);
    }
  }
  return {};
}

Result<void> set_attr(scmp_filter_ctx ctx, scmp_filter_attr attr, uint32_t value,
                      std::string_view what) {
  if (int rc = seccomp_attr_set(ctx, attr, value); rc < 0) {
    return errno_error(kStep, -rc, "set {}", what);
  }
  return {};
}

Result<void> apply_flags(scmp_filter_ctx ctx, const std::vector<std::string>& flags) {
  for (const auto& flag : flags) {
    if (flag == "SECCOMP_FILTER_FLAG_LOG") {
      BERTH_TRY(set_attr(ctx, SCMP_FLTATR_CTL_LOG, 1, flag));
    } else if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") {
      BERTH_TRY(set_attr(ctx, SCMP_FLTATR_CTL_SSB, 1, flag));
    } else if (flag == "SECCOMP_FILTER_FLAG_TSYNC") {
      BERTH_TRY(set_attr(ctx, SCMP_FLTATR_CTL_TSYNC, 1, flag));
    } else {
      return error(kStep, "unknown flag \"{}\"", flag);
    }
  }
  return {};
}

using Conditions = std::vector<scmp_arg_cmp>;

struct RuleRef {
  size_t index;           // position in spec.syscalls, for error messages
  std::string_view name;  // the syscall name being added
};

Result<Conditions> to_conditions(const SeccompSyscall& rule, size_t index) {
  Conditions conds;
  for (size_t i = 0; i < rule.args.size(); ++i) {
    const SeccompArg& arg = rule.args[i];
    if (arg.index >= kMaxArgs) {
      return error(kStep, "syscalls[{}].args[{}]: index {} out of range (0..{})", index, i,
                   arg.index, kMaxArgs - 1);
    }
    auto op = to_scmp_op(arg.op);
    if (!op) {
      return error(kStep, "syscalls[{}].args[{}]: unknown operator {}", index, i,
                   static_cast<int>(arg.op));
    }
    conds.push_back(scmp_arg_cmp{arg.index, *op, arg.value, arg.value_two});
  }
  return conds;
}

// Several comparisons on the same argument cannot be one libseccomp rule
// (they would be ANDed, and libseccomp rejects the repetition), so runc
// turns them into one rule per comparison, which ORs them. Comparisons on
// distinct arguments stay one rule: AND.
bool has_repeated_index(const Conditions& conds) {
  std::array<unsigned, kMaxArgs> count{};
  for (const auto& c : conds) {
    if (++count[c.arg] > 1) return true;
  }
  return false;
}

Result<void> add_rule(scmp_filter_ctx ctx, uint32_t action, int nr, const Conditions& conds,
                      const RuleRef& ref) {
  auto add = [&](unsigned n, const scmp_arg_cmp* c) -> Result<void> {
    // _array rather than _exact: libseccomp may rewrite the rule for
    // multiplexed syscalls (socketcall, ipc on x86).
    if (int rc = seccomp_rule_add_array(ctx, action, nr, n, c); rc < 0) {
      return errno_error(kStep, -rc, "syscalls[{}] \"{}\": add rule", ref.index, ref.name);
    }
    return {};
  };
  if (!has_repeated_index(conds)) {
    return add(static_cast<unsigned>(conds.size()), conds.data());
  }
  for (const auto& c : conds) BERTH_TRY(add(1, &c));
  return {};
}

Result<void> add_syscall_rule(scmp_filter_ctx ctx, const SeccompSyscall& rule, size_t index,
                              uint32_t default_action) {
  const ActionResult act = to_scmp_action(rule.action, rule.errno_ret);
  if (!act.ok) {
    return error(kStep, "syscalls[{}]: unknown action {}", index, static_cast<int>(rule.action));
  }
  BERTH_ASSIGN(const Conditions conds, to_conditions(rule, index));
  // libseccomp refuses a rule that repeats the default action (EACCES); it
  // would be a no-op anyway, so skip it as runc does.
  if (act.action == default_action) return {};
  for (const auto& name : rule.names) {
    const RuleRef ref{index, name};
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      // One profile serves several kernels and libseccomp versions.
      log::debug("seccomp: syscalls[{}]: unknown syscall \"{}\" skipped", index, name);
      continue;
    }
    BERTH_TRY(add_rule(ctx, act.action, nr, conds, ref));
  }
  return {};
}

bool rule_uses_notify(const Seccomp& spec) {
  for (const auto& rule : spec.syscalls) {
    if (rule.action == SeccompAction::notify) return true;
  }
  return false;
}

}  // namespace

void SeccompCtxDeleter::operator()(void* ctx) const {
  if (ctx != nullptr) seccomp_release(static_cast<scmp_filter_ctx>(ctx));
}

Result<SeccompFilter> compile_seccomp(const Seccomp& spec) {
  const ActionResult def = to_scmp_action(spec.default_action, spec.default_errno_ret);
  if (!def.ok) {
    return error(kStep, "unknown default action {}", static_cast<int>(spec.default_action));
  }
  // Nobody would be listening yet when the child's own next syscall
  // (sending the listener fd) hit the filter; runc refuses this too.
  if (spec.default_action == SeccompAction::notify) {
    return error(kStep, "SCMP_ACT_NOTIFY cannot be the default action");
  }
  scmp_filter_ctx raw = seccomp_init(def.action);
  if (raw == nullptr) {
    return error(kStep, "init filter with default action {:#x}", def.action);
  }
  SeccompFilter filter(raw);
  // The orchestrator sets no_new_privs itself, at the point the spec asks
  // for it (as runc does); libseccomp must not set it behind its back.
  BERTH_TRY(set_attr(raw, SCMP_FLTATR_CTL_NNP, 0, "no_new_privs attribute"));
  BERTH_TRY(add_architectures(raw, spec.architectures));
  BERTH_TRY(apply_flags(raw, spec.flags));
  for (size_t i = 0; i < spec.syscalls.size(); ++i) {
    BERTH_TRY(add_syscall_rule(raw, spec.syscalls[i], i, def.action));
  }
  filter.set_uses_notify(rule_uses_notify(spec));
  return filter;
}

Result<UniqueFd> load_seccomp(const SeccompFilter& filter) {
  auto ctx = static_cast<scmp_filter_ctx>(filter.ctx());
  if (ctx == nullptr) return error(kStep, "load: no filter compiled");
  if (int rc = seccomp_load(ctx); rc < 0) return errno_error(kStep, -rc, "load filter");
  if (!filter.uses_notify()) return UniqueFd();
  // The kernel creates the listener with O_CLOEXEC; libseccomp only keeps
  // the number, so the caller owns it from here.
  int fd = seccomp_notify_fd(ctx);
  if (fd < 0) return errno_error(kStep, -fd, "get notify listener fd");
  return UniqueFd(fd);
}

Result<std::string> export_seccomp_pfc(const SeccompFilter& filter) {
  auto ctx = static_cast<scmp_filter_ctx>(filter.ctx());
  if (ctx == nullptr) return error(kStep, "export: no filter compiled");
  UniqueFd fd(memfd_create("berth-seccomp-pfc", MFD_CLOEXEC));
  if (!fd) return sys_error(kStep, "memfd_create for the pfc export");
  if (int rc = seccomp_export_pfc(ctx, fd.get()); rc < 0) {
    return errno_error(kStep, -rc, "export pfc");
  }
  if (lseek(fd.get(), 0, SEEK_SET) < 0) return sys_error(kStep, "rewind pfc export");
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(kStep, "read pfc export");
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace berth::runtime
