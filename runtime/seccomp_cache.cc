#include "runtime/seccomp_cache.h"

#include <nettle/sha2.h>
#include <seccomp.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <string_view>

#include <fmt/format.h>

#include "common/fs.h"
#include "common/log.h"

namespace berth::runtime {

namespace {

constexpr std::string_view kStep = "seccomp";

// "<length>:<bytes>;" so no name can run into the next one.
void put_string(std::string& out, std::string_view s) {
  fmt::format_to(std::back_inserter(out), "{}:{};", s.size(), s);
}

void put_number(std::string& out, uint64_t v) {
  fmt::format_to(std::back_inserter(out), "{};", v);
}

void put_optional(std::string& out, const std::optional<unsigned>& v) {
  if (v) {
    put_number(out, *v);
  } else {
    out += "-;";
  }
}

void put_strings(std::string& out, const std::vector<std::string>& v) {
  put_number(out, v.size());
  for (const auto& s : v) put_string(out, s);
}

void put_rule(std::string& out, const SeccompSyscall& rule) {
  put_strings(out, rule.names);
  put_number(out, static_cast<uint64_t>(rule.action));
  put_optional(out, rule.errno_ret);
  put_number(out, rule.args.size());
  for (const auto& a : rule.args) {
    put_number(out, a.index);
    put_number(out, a.value);
    put_number(out, a.value_two);
    put_number(out, static_cast<uint64_t>(a.op));
  }
}

// The host facts a compiled program depends on besides the spec: libseccomp
// writes different code per version and native architecture, and checks
// the running kernel's supported actions and flags while compiling, so a
// program is only known good for the kernel it was compiled on.
std::string host_form() {
  std::string out = "berth-seccomp-cache;";
  put_number(out, kSeccompCacheFormat);
  const scmp_version* v = seccomp_version();
  put_number(out, v->major);
  put_number(out, v->minor);
  put_number(out, v->micro);
  put_number(out, seccomp_arch_native());
  struct utsname uts {};
  // uname(2) cannot fail with a valid buffer; an empty release would only
  // make the key less specific.
  if (::uname(&uts) == 0) put_string(out, uts.release);
  return out;
}

Result<std::string> sha256_hex(std::string_view data) {
  sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, data.size(), reinterpret_cast<const uint8_t*>(data.data()));
  uint8_t md[SHA256_DIGEST_SIZE];
  sha256_digest(&ctx, sizeof md, md);
  std::string hex;
  for (uint8_t b : md) fmt::format_to(std::back_inserter(hex), "{:02x}", b);
  return hex;
}

}  // namespace

std::string seccomp_canonical_form(const Seccomp& spec) {
  std::string out;
  put_number(out, static_cast<uint64_t>(spec.default_action));
  put_optional(out, spec.default_errno_ret);
  put_strings(out, spec.architectures);
  put_strings(out, spec.flags);
  put_number(out, spec.syscalls.size());
  for (const auto& rule : spec.syscalls) put_rule(out, rule);
  return out;
}

Result<std::string> seccomp_cache_key(const Seccomp& spec) {
  return sha256_hex(host_form() + seccomp_canonical_form(spec));
}

Result<void> check_bpf_program(std::span<const sock_filter> program) {
  if (program.empty() || program.size() > BPF_MAXINSNS) {
    return error(kStep, "{} instructions, outside the kernel's 1..{}", program.size(),
                 BPF_MAXINSNS);
  }
  for (size_t i = 0; i < program.size(); ++i) {
    const sock_filter& insn = program[i];
    if (BPF_CLASS(insn.code) != BPF_JMP) continue;
    // Classic BPF only jumps forward, relative to the next instruction.
    const size_t after = program.size() - i - 1;
    const bool inside =
        BPF_OP(insn.code) == BPF_JA ? insn.k < after : insn.jt < after && insn.jf < after;
    if (!inside) return error(kStep, "instruction {} jumps past the end", i);
  }
  if (BPF_CLASS(program.back().code) != BPF_RET) {
    return error(kStep, "the last instruction is not a return");
  }
  return {};
}

Result<BpfProgram> parse_bpf_program(std::string_view bytes) {
  if (bytes.size() % sizeof(sock_filter) != 0) {
    return error(kStep, "{} bytes is not a whole number of {}-byte instructions", bytes.size(),
                 sizeof(sock_filter));
  }
  BpfProgram program(bytes.size() / sizeof(sock_filter));
  if (!bytes.empty()) std::memcpy(program.data(), bytes.data(), bytes.size());
  BERTH_TRY(check_bpf_program(program));
  return program;
}

std::string seccomp_cache_path(const std::string& dir, const std::string& key) {
  return fs::join(dir, key + ".bpf");
}

std::optional<BpfProgram> read_cached_program(const std::string& dir, const std::string& key) {
  const std::string path = seccomp_cache_path(dir, key);
  auto bytes = fs::read_file(path);
  if (!bytes) {
    if (bytes.error().err != ENOENT) {
      log::debug("seccomp: cache: {}; recompiling", bytes.error().str());
    }
    return std::nullopt;
  }
  auto program = parse_bpf_program(*bytes);
  if (!program) {
    log::debug("seccomp: cache: {} ignored: {}; recompiling", path, program.error().message);
    return std::nullopt;
  }
  return std::move(*program);
}

Result<void> write_cached_program(const std::string& dir, const std::string& key,
                                  std::span<const sock_filter> program) {
  BERTH_TRY(check_bpf_program(program));
  BERTH_TRY(fs::mkdir_p(dir, 0700));
  const std::string_view bytes(reinterpret_cast<const char*>(program.data()), program.size_bytes());
  // No fsync: a file torn by a crash is zero-filled or short, which
  // parse_bpf_program refuses (no final return), and then recompiled.
  return fs::write_file_atomic(seccomp_cache_path(dir, key), bytes, 0600, fs::Durable::no);
}

}  // namespace berth::runtime
