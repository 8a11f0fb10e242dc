#include "runtime/seccomp.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"
#include "runtime/seccomp_cache.h"

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

// The ABIs a kernel of each native architecture can run (Docker's archMap):
// a filter for any other architecture is dead code that libseccomp would
// still spend milliseconds compiling.
struct ArchFamily {
  uint32_t native;
  std::string_view name;
  std::array<uint32_t, 2> compat;  // 0: none
};

constexpr ArchFamily kArchFamilies[] = {
    {SCMP_ARCH_X86_64, "x86_64", {SCMP_ARCH_X86, SCMP_ARCH_X32}},
    {SCMP_ARCH_X32, "x32", {SCMP_ARCH_X86_64, SCMP_ARCH_X86}},
    {SCMP_ARCH_X86, "x86", {}},
    {SCMP_ARCH_AARCH64, "aarch64", {SCMP_ARCH_ARM}},
    {SCMP_ARCH_ARM, "arm", {}},
    {SCMP_ARCH_MIPS64, "mips64", {SCMP_ARCH_MIPS64N32, SCMP_ARCH_MIPS}},
    {SCMP_ARCH_MIPS64N32, "mips64n32", {SCMP_ARCH_MIPS64, SCMP_ARCH_MIPS}},
    {SCMP_ARCH_MIPSEL64, "mipsel64", {SCMP_ARCH_MIPSEL64N32, SCMP_ARCH_MIPSEL}},
    {SCMP_ARCH_MIPSEL64N32, "mipsel64n32", {SCMP_ARCH_MIPSEL64, SCMP_ARCH_MIPSEL}},
    {SCMP_ARCH_PPC64, "ppc64", {SCMP_ARCH_PPC}},
    {SCMP_ARCH_PPC64LE, "ppc64le", {}},
    {SCMP_ARCH_S390X, "s390x", {SCMP_ARCH_S390}},
    {SCMP_ARCH_RISCV64, "riscv64", {}},
};

const ArchFamily* find_family(uint32_t native) {
  for (const auto& f : kArchFamilies) {
    if (f.native == native) return &f;
  }
  return nullptr;
}

std::string native_arch_name(uint32_t native) {
  const ArchFamily* f = find_family(native);
  return f != nullptr ? std::string(f->name) : fmt::format("{:#x}", native);
}

bool runs_on(uint32_t native, uint32_t arch) {
  if (arch == native) return true;
  const ArchFamily* f = find_family(native);
  return f != nullptr && std::ranges::find(f->compat, arch) != f->compat.end();
}

struct Arch {
  uint32_t token;         // libseccomp's SCMP_ARCH_*
  std::string_view name;  // as the spec spells it
};

// The listed architectures this host can run. An empty list means the
// native one only (libseccomp's default); a list of which none can run here
// is surely a spec meant for another host.
Result<std::vector<Arch>> runnable_architectures(const std::vector<std::string>& arches) {
  const uint32_t native = seccomp_arch_native();
  std::vector<Arch> out;
  for (const auto& name : arches) {
    const std::string token_name = arch_token_name(name);
    const uint32_t token = seccomp_arch_resolve_name(token_name.c_str());
    if (token == 0) return error(kStep, "unknown architecture \"{}\"", name);
    if (runs_on(native, token)) {
      out.push_back({token, name});
    } else {
      log::debug("seccomp: architecture {} skipped: it cannot run on this {} host", name,
                 native_arch_name(native));
    }
  }
  if (!arches.empty() && out.empty()) {
    return error(kStep, "none of the architectures [{}] can run on this {} host",
                 fmt::join(arches, ", "), native_arch_name(native));
  }
  return out;
}

Result<void> add_architectures(scmp_filter_ctx ctx, const std::vector<Arch>& arches) {
  for (const Arch& arch : arches) {
    // The native architecture is always in a new filter, and a profile may
    // list an architecture twice: both are fine.
    if (int rc = seccomp_arch_add(ctx, arch.token); rc < 0 && rc != -EEXIST) {
      return errno_error(kStep, -rc, "add architecture \"{}\"", arch.name);
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

struct FilterFlag {
  std::string_view name;
  unsigned load_flag;     // seccomp(2) SECCOMP_FILTER_FLAG_*
  scmp_filter_attr attr;  // the libseccomp attribute that sets it
};

constexpr FilterFlag kFilterFlags[] = {
    {"SECCOMP_FILTER_FLAG_TSYNC", SECCOMP_FILTER_FLAG_TSYNC, SCMP_FLTATR_CTL_TSYNC},
    {"SECCOMP_FILTER_FLAG_LOG", SECCOMP_FILTER_FLAG_LOG, SCMP_FLTATR_CTL_LOG},
    {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", SECCOMP_FILTER_FLAG_SPEC_ALLOW, SCMP_FLTATR_CTL_SSB},
};

Result<unsigned> load_flags_of(const std::vector<std::string>& flags) {
  unsigned out = 0;
  for (const auto& flag : flags) {
    auto it = std::ranges::find(kFilterFlags, flag, &FilterFlag::name);
    if (it == std::end(kFilterFlags)) return error(kStep, "unknown flag \"{}\"", flag);
    out |= it->load_flag;
  }
  return out;
}

// libseccomp also checks that the running kernel supports each flag.
Result<void> apply_flags(scmp_filter_ctx ctx, unsigned load_flags) {
  for (const auto& f : kFilterFlags) {
    if ((load_flags & f.load_flag) != 0) BERTH_TRY(set_attr(ctx, f.attr, 1, f.name));
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

Result<uint32_t> default_action_of(const Seccomp& spec) {
  const ActionResult def = to_scmp_action(spec.default_action, spec.default_errno_ret);
  if (!def.ok) {
    return error(kStep, "unknown default action {}", static_cast<int>(spec.default_action));
  }
  // Nobody would be listening yet when the child's own next syscall
  // (sending the listener fd) hit the filter; runc refuses this too.
  if (spec.default_action == SeccompAction::notify) {
    return error(kStep, "SCMP_ACT_NOTIFY cannot be the default action");
  }
  return def.action;
}

// ---- the ENOSYS stub ----

bool enosys_stub_applies(const Seccomp& spec) {
  // A permissive default has nothing to fall back from, and a default of
  // ENOSYS is the stub's answer already.
  if (spec.default_action == SeccompAction::allow || spec.default_action == SeccompAction::log) {
    return false;
  }
  return !(spec.default_action == SeccompAction::errno_ret &&
           spec.default_errno_ret.value_or(EPERM) == ENOSYS);
}

// The highest number, on `arch`, of a syscall the profile names (in any rule,
// whatever its action); nullopt when it names none libseccomp knows there.
std::optional<uint32_t> last_named_syscall(const Seccomp& spec, uint32_t arch) {
  std::optional<uint32_t> last;
  for (const auto& rule : spec.syscalls) {
    for (const auto& name : rule.names) {
      // Negative: unknown, or a pseudo-syscall that does not exist on `arch`.
      const int nr = seccomp_syscall_resolve_name_arch(arch, name.c_str());
      if (nr < 0) continue;
      last = std::max(last.value_or(0), static_cast<uint32_t>(nr));
    }
  }
  return last;
}

// x32 syscalls are made with the x86_64 audit arch and this bit set.
constexpr uint32_t kX32SyscallBit = 0x40000000;
constexpr uint32_t kRetEnosys = SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA);
constexpr uint32_t kNrOffset = 0;    // offsetof(seccomp_data, nr)
constexpr uint32_t kArchOffset = 4;  // offsetof(seccomp_data, arch)

// One architecture's section of the stub, with jumps by label (an index
// into the section) until it is placed; `to_filter` marks the final jump to
// the instruction after the stub, whose distance is only known at the end.
struct StubInsn {
  sock_filter insn;
  int jt = -1, jf = -1;  // labels; -1: none
  bool to_filter = false;
};

std::vector<StubInsn> stub_section(uint32_t audit_arch, std::optional<uint32_t> native_last,
                                   std::optional<uint32_t> x32_last) {
  std::vector<StubInsn> body;
  body.push_back({BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNrOffset)});
  // Labels, filled in once the layout is known.
  const bool split = audit_arch == AUDIT_ARCH_X86_64;
  const int jset = split ? static_cast<int>(body.size()) : -1;
  if (split) body.push_back({BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, kX32SyscallBit, 0, 0)});
  const int native_check = native_last ? static_cast<int>(body.size()) : -1;
  if (native_last) body.push_back({BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, *native_last, 0, 0)});
  const int x32_check = x32_last ? static_cast<int>(body.size()) : -1;
  if (x32_last) body.push_back({BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, *x32_last, 0, 0)});
  const int ret = static_cast<int>(body.size());
  body.push_back({BPF_STMT(BPF_RET | BPF_K, kRetEnosys)});
  const int out = static_cast<int>(body.size());
  body.push_back({BPF_STMT(BPF_JMP | BPF_JA, 0), -1, -1, true});
  if (split) {
    body[jset].jt = x32_check >= 0 ? x32_check : out;
    body[jset].jf = native_check >= 0 ? native_check : out;
  }
  for (int check : {native_check, x32_check}) {
    if (check < 0) continue;
    body[check].jt = ret;
    body[check].jf = out;
  }
  return body;
}

// Appends a section with its labels resolved to relative jumps.
void place(BpfProgram& out, std::vector<size_t>& to_filter, const std::vector<StubInsn>& body) {
  const size_t base = out.size();
  for (size_t i = 0; i < body.size(); ++i) {
    sock_filter insn = body[i].insn;
    // Sections are a handful of instructions: every label fits in 8 bits.
    if (body[i].jt >= 0) insn.jt = static_cast<uint8_t>(body[i].jt - static_cast<int>(i) - 1);
    if (body[i].jf >= 0) insn.jf = static_cast<uint8_t>(body[i].jf - static_cast<int>(i) - 1);
    if (body[i].to_filter) to_filter.push_back(base + i);
    out.push_back(insn);
  }
}

// What compile_seccomp validated up front, before any libseccomp work.
struct Plan {
  uint32_t default_action = 0;
  std::vector<Arch> arches;  // views into the spec's names
  unsigned load_flags = 0;
};

Result<SeccompFilter> build_context(const Seccomp& spec, const Plan& plan) {
  scmp_filter_ctx raw = seccomp_init(plan.default_action);
  if (raw == nullptr) {
    return error(kStep, "init filter with default action {:#x}", plan.default_action);
  }
  SeccompFilter filter(raw);
  // The orchestrator sets no_new_privs itself, at the point the spec asks
  // for it (as runc does); libseccomp must not set it behind its back.
  BERTH_TRY(set_attr(raw, SCMP_FLTATR_CTL_NNP, 0, "no_new_privs attribute"));
  // A binary search over the syscall numbers instead of a linear chain:
  // Docker's profile allows ~370 syscalls, and a syscall late in the chain
  // (or a denied one) would otherwise run hundreds of comparisons each time.
  BERTH_TRY(set_attr(raw, SCMP_FLTATR_CTL_OPTIMIZE, 2, "binary tree optimization"));
  BERTH_TRY(add_architectures(raw, plan.arches));
  BERTH_TRY(apply_flags(raw, plan.load_flags));
  for (size_t i = 0; i < spec.syscalls.size(); ++i) {
    BERTH_TRY(add_syscall_rule(raw, spec.syscalls[i], i, plan.default_action));
  }
  return filter;
}

Result<std::string> read_memfd(int fd, std::string_view what) {
  if (lseek(fd, 0, SEEK_SET) < 0) return sys_error(kStep, "rewind {} export", what);
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(kStep, "read {} export", what);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<BpfProgram> export_program(scmp_filter_ctx ctx) {
  UniqueFd fd(memfd_create("berth-seccomp-bpf", MFD_CLOEXEC));
  if (!fd) return sys_error(kStep, "memfd_create for the bpf export");
  if (int rc = seccomp_export_bpf(ctx, fd.get()); rc < 0) {
    return errno_error(kStep, -rc, "export bpf");
  }
  BERTH_ASSIGN(const std::string bytes, read_memfd(fd.get(), "bpf"));
  // Checked here rather than by the kernel in the child: a profile too big
  // for BPF_MAXINSNS fails before any process exists.
  auto program = parse_bpf_program(bytes);
  if (!program) return wrap(std::move(program).error(), "the compiled filter");
  return std::move(*program);
}

// The exported program with the ENOSYS stub in front when it applies.
Result<BpfProgram> patched_program(const Seccomp& spec, const SeccompFilter& compiled) {
  BERTH_ASSIGN(BpfProgram program, export_program(static_cast<scmp_filter_ctx>(compiled.ctx())));
  BpfProgram stub = seccomp_enosys_stub(seccomp_enosys_bounds(spec));
  if (stub.empty()) return program;
  stub.insert(stub.end(), program.begin(), program.end());
  if (auto ok = check_bpf_program(stub); !ok) {
    return wrap(std::move(ok).error(), "the compiled filter with its ENOSYS stub");
  }
  return stub;
}

// Hit: the stored program, no libseccomp. Miss: compile, export, store.
Result<SeccompFilter> compile_cached(const Seccomp& spec, const Plan& plan, const std::string& key,
                                     const std::string& cache_dir) {
  if (auto cached = read_cached_program(cache_dir, key)) {
    log::debug("seccomp: cache hit {}", seccomp_cache_path(cache_dir, key));
    return SeccompFilter(std::move(*cached), plan.load_flags, true);
  }
  BERTH_ASSIGN(const SeccompFilter compiled, build_context(spec, plan));
  BERTH_ASSIGN(BpfProgram program, patched_program(spec, compiled));
  if (auto stored = write_cached_program(cache_dir, key, program); !stored) {
    // Not the message: fs's write error quotes the (binary) data.
    const Error& e = stored.error();
    log::debug("seccomp: cache: cannot store {}: {}", seccomp_cache_path(cache_dir, key),
               e.err != 0 ? std::strerror(e.err) : e.message);
  } else {
    log::debug("seccomp: cache miss, stored {}", seccomp_cache_path(cache_dir, key));
  }
  return SeccompFilter(std::move(program), plan.load_flags, false);
}

// seccomp(2) directly, as seccomp_load would: no_new_privs (or
// CAP_SYS_ADMIN) is the caller's business. With `notify`, the kernel hands
// back the listener fd (close-on-exec), as seccomp_load asks it to.
Result<UniqueFd> load_program(const BpfProgram& program, unsigned flags, bool notify) {
  if (notify) {
    flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
    // TSYNC reports a failed thread in the return value, which NEW_LISTENER
    // needs for the fd: TSYNC_ESRCH makes it an error instead.
    if ((flags & SECCOMP_FILTER_FLAG_TSYNC) != 0) flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
  }
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program.size());
  prog.filter = const_cast<sock_filter*>(program.data());
  const long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (rc < 0) {
    return sys_error(kStep, "seccomp(SECCOMP_SET_MODE_FILTER, {:#x}) of {} instructions", flags,
                     program.size());
  }
  if (notify) return UniqueFd(static_cast<int>(rc));
  // With TSYNC, a positive return is the thread that could not be synced.
  if (rc > 0) {
    return errno_error(kStep, ESRCH, "SECCOMP_FILTER_FLAG_TSYNC: thread {} could not be synced",
                       rc);
  }
  return UniqueFd();
}

Result<UniqueFd> load_context(const SeccompFilter& filter) {
  auto ctx = static_cast<scmp_filter_ctx>(filter.ctx());
  if (int rc = seccomp_load(ctx); rc < 0) return errno_error(kStep, -rc, "load filter");
  if (!filter.uses_notify()) return UniqueFd();
  // The kernel creates the listener with O_CLOEXEC; libseccomp only keeps
  // the number, so the caller owns it from here.
  int fd = seccomp_notify_fd(ctx);
  if (fd < 0) return errno_error(kStep, -fd, "get notify listener fd");
  return UniqueFd(fd);
}

}  // namespace

void SeccompCtxDeleter::operator()(void* ctx) const {
  if (ctx != nullptr) seccomp_release(static_cast<scmp_filter_ctx>(ctx));
}

Result<SeccompFilter> compile_seccomp(const Seccomp& spec, const std::string& cache_dir) {
  Plan plan;
  BERTH_ASSIGN(plan.default_action, default_action_of(spec));
  BERTH_ASSIGN(plan.arches, runnable_architectures(spec.architectures));
  BERTH_ASSIGN(plan.load_flags, load_flags_of(spec.flags));
  const bool notify = rule_uses_notify(spec);
  // A notify filter must go through seccomp_load, which alone hands out the
  // listener fd.
  if (!cache_dir.empty() && !notify) {
    auto key = seccomp_cache_key(spec);
    if (key) return compile_cached(spec, plan, *key, cache_dir);
    log::debug("{}; compiling without the cache", key.error().str());
  }
  BERTH_ASSIGN(SeccompFilter filter, build_context(spec, plan));
  filter.set_uses_notify(notify);
  if (!seccomp_enosys_bounds(spec).empty()) {
    BERTH_ASSIGN(BpfProgram program, patched_program(spec, filter));
    filter.set_program(std::move(program), plan.load_flags);
  }
  return filter;
}

std::vector<EnosysBound> seccomp_enosys_bounds(const Seccomp& spec) {
  if (!enosys_stub_applies(spec)) return {};
  // The filter's architectures: the native one always, and the listed ones
  // this host runs (a spec whose list is wrong fails to compile anyway).
  std::vector<uint32_t> arches{seccomp_arch_native()};
  if (auto listed = runnable_architectures(spec.architectures)) {
    for (const Arch& a : *listed) {
      if (std::ranges::find(arches, a.token) == arches.end()) arches.push_back(a.token);
    }
  }
  std::vector<EnosysBound> out;
  for (uint32_t arch : arches) {
    auto last = last_named_syscall(spec, arch);
    if (!last) continue;
    // SCMP_ARCH_X32 is libseccomp's own value; the kernel reports x86_64.
    const bool x32 = arch == SCMP_ARCH_X32;
    out.push_back({x32 ? static_cast<uint32_t>(AUDIT_ARCH_X86_64) : arch, x32, *last});
  }
  return out;
}

BpfProgram seccomp_enosys_stub(std::span<const EnosysBound> bounds) {
  if (bounds.empty()) return {};
  BpfProgram out{BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArchOffset)};
  std::vector<size_t> to_filter;
  std::vector<uint32_t> done;
  for (const EnosysBound& b : bounds) {
    if (std::ranges::find(done, b.audit_arch) != done.end()) continue;
    done.push_back(b.audit_arch);
    // x86_64 and x32 share a section.
    std::optional<uint32_t> native_last, x32_last;
    for (const EnosysBound& other : bounds) {
      if (other.audit_arch != b.audit_arch) continue;
      (other.x32 ? x32_last : native_last) = other.last_syscall;
    }
    const auto body = stub_section(b.audit_arch, native_last, x32_last);
    // Another architecture: skip this section, the accumulator still holds
    // the arch.
    out.push_back(
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, b.audit_arch, 0, static_cast<uint8_t>(body.size())));
    place(out, to_filter, body);
  }
  for (size_t at : to_filter) out[at].k = static_cast<uint32_t>(out.size() - at - 1);
  return out;
}

Result<UniqueFd> load_seccomp(const SeccompFilter& filter) {
  if (!filter.program().empty()) {
    return load_program(filter.program(), filter.load_flags(), filter.uses_notify());
  }
  if (filter.ctx() == nullptr) return error(kStep, "load: no filter compiled");
  return load_context(filter);
}

Result<std::string> export_seccomp_pfc(const SeccompFilter& filter) {
  auto ctx = static_cast<scmp_filter_ctx>(filter.ctx());
  if (ctx == nullptr) {
    if (!filter.program().empty()) {
      return error(kStep, "export: pfc needs a libseccomp context, not a raw program");
    }
    return error(kStep, "export: no filter compiled");
  }
  UniqueFd fd(memfd_create("berth-seccomp-pfc", MFD_CLOEXEC));
  if (!fd) return sys_error(kStep, "memfd_create for the pfc export");
  if (int rc = seccomp_export_pfc(ctx, fd.get()); rc < 0) {
    return errno_error(kStep, -rc, "export pfc");
  }
  return read_memfd(fd.get(), "pfc");
}

}  // namespace berth::runtime
