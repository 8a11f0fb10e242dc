// seccomp cache: compiled BPF programs kept on disk (as crun does), so a
// container started with a profile this host has compiled before skips
// libseccomp entirely; compiling Docker's profile costs milliseconds, reading
// it back costs microseconds.
//
// A program is named by the SHA-256 of everything its bytes depend on: the
// spec's seccomp section, the libseccomp version, the native architecture,
// the kernel release and kSeccompCacheFormat. The directory lives under the
// runtime's --root (root-owned, 0700): whoever can write it can already
// rewrite any container's state, so its files are trusted like that state,
// but still checked for structure so a torn or truncated file is recompiled
// rather than handed to the kernel.
#pragma once

#include <linux/filter.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace berth::runtime {

using BpfProgram = std::vector<sock_filter>;

// Bump whenever compile_seccomp changes how a spec becomes a program (rule
// translation, libseccomp attributes such as the optimization level), so
// programs of an older berth are not reused.
inline constexpr int kSeccompCacheFormat = 2;  // 2: the ENOSYS stub

// Every field of the spec that decides the compiled program, with strings
// length-prefixed so that two different specs never serialize alike. The
// flags are in too: they are load flags, but libseccomp checks while
// compiling that the kernel supports them. The listener path and metadata
// are left out: they do not change the program (and notify filters are
// never cached).
std::string seccomp_canonical_form(const Seccomp& spec);

// 64 hex digits: SHA-256 over this host's environment and the canonical form.
Result<std::string> seccomp_cache_key(const Seccomp& spec);

// The kernel's own structural rules for a classic BPF program (1 to
// BPF_MAXINSNS instructions, every jump inside the program, a return at the
// end), checked before a program is stored or trusted from disk.
Result<void> check_bpf_program(std::span<const sock_filter> program);

// Raw bytes (seccomp_export_bpf's output, a cache file) as a program that
// passes check_bpf_program.
Result<BpfProgram> parse_bpf_program(std::string_view bytes);

// The program cached under `key`, or nullopt when there is none or the file
// is unusable (the reason is logged at debug; the caller recompiles and
// overwrites it).
std::optional<BpfProgram> read_cached_program(const std::string& dir, const std::string& key);

// Stores `program` as <dir>/<key>.bpf (dir 0700, file 0600), atomically (a
// rename) so a concurrent reader sees the old file or the new one, never
// half of it.
Result<void> write_cached_program(const std::string& dir, const std::string& key,
                                  std::span<const sock_filter> program);

std::string seccomp_cache_path(const std::string& dir, const std::string& key);

}  // namespace berth::runtime
