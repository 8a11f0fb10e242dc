// seccomp_cache: the key (which changes of a spec change it, which do not),
// the structural check of a BPF program, and the files read and written.
#include "runtime/seccomp_cache.h"

#include <linux/seccomp.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/unit/temp_dir.h"

using berth::runtime::BpfProgram;
using berth::runtime::check_bpf_program;
using berth::runtime::parse_bpf_program;
using berth::runtime::read_cached_program;
using berth::runtime::Seccomp;
using berth::runtime::seccomp_cache_key;
using berth::runtime::seccomp_cache_path;
using berth::runtime::seccomp_canonical_form;
using berth::runtime::SeccompAction;
using berth::runtime::SeccompOp;
using berth::runtime::SeccompSyscall;
using berth::runtime::write_cached_program;
using berth::test::TempDir;

namespace {

Seccomp sample() {
  Seccomp s;
  s.default_action = SeccompAction::errno_ret;
  s.default_errno_ret = EPERM;
  s.architectures = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"};
  SeccompSyscall r;
  r.names = {"read", "write"};
  r.action = SeccompAction::allow;
  r.args = {{0, 1, 0, SeccompOp::eq}};
  s.syscalls.push_back(r);
  return s;
}

std::string key_of(const Seccomp& s) {
  auto key = seccomp_cache_key(s);
  REQUIRE(key.has_value());
  return *key;
}

std::string check_error(const BpfProgram& p) {
  auto r = check_bpf_program(p);
  REQUIRE_FALSE(r.has_value());
  return r.error().str();
}

constexpr sock_filter kAllow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
constexpr sock_filter kLoadNr = BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0);

}  // namespace

TEST_CASE("seccomp cache key: 64 hex digits, stable for the same spec", "[seccomp_cache]") {
  const std::string key = key_of(sample());
  CHECK(key.size() == 64);
  CHECK(key.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(key_of(sample()) == key);
}

TEST_CASE("seccomp cache key: every field that shapes the program changes it", "[seccomp_cache]") {
  const std::string base = key_of(sample());
  const std::pair<const char*, std::function<void(Seccomp&)>> changes[] = {
      {"default action", [](Seccomp& s) { s.default_action = SeccompAction::kill_process; }},
      {"default errno", [](Seccomp& s) { s.default_errno_ret = EACCES; }},
      {"default errno absent", [](Seccomp& s) { s.default_errno_ret.reset(); }},
      {"architecture order", [](Seccomp& s) { std::swap(s.architectures[0], s.architectures[1]); }},
      {"flags", [](Seccomp& s) { s.flags = {"SECCOMP_FILTER_FLAG_LOG"}; }},
      {"names regrouped",
       [](Seccomp& s) {
         s.syscalls[0].names = {"rea", "dwrite"};
       }},
      {"action", [](Seccomp& s) { s.syscalls[0].action = SeccompAction::log; }},
      {"errnoRet", [](Seccomp& s) { s.syscalls[0].errno_ret = 0; }},
      {"arg index", [](Seccomp& s) { s.syscalls[0].args[0].index = 1; }},
      {"arg value", [](Seccomp& s) { s.syscalls[0].args[0].value = 2; }},
      {"arg valueTwo", [](Seccomp& s) { s.syscalls[0].args[0].value_two = 2; }},
      {"arg op", [](Seccomp& s) { s.syscalls[0].args[0].op = SeccompOp::ne; }},
      {"rule split", [](Seccomp& s) {
         s.syscalls.push_back(s.syscalls[0]);
         s.syscalls[0].names = {"read"};
         s.syscalls[1].names = {"write"};
       }}};
  for (const auto& [what, change] : changes) {
    INFO(what);
    Seccomp s = sample();
    change(s);
    CHECK(seccomp_canonical_form(s) != seccomp_canonical_form(sample()));
    CHECK(key_of(s) != base);
  }
}

TEST_CASE("seccomp cache key: the notify listener does not change it", "[seccomp_cache]") {
  Seccomp s = sample();
  s.listener_path = "/run/agent.sock";
  CHECK(key_of(s) == key_of(sample()));
}

TEST_CASE("seccomp cache: structural check of a program", "[seccomp_cache]") {
  CHECK(check_bpf_program(BpfProgram{kLoadNr, kAllow}).has_value());
  CHECK(check_error({}) == "seccomp: 0 instructions, outside the kernel's 1..4096");
  CHECK(check_error(BpfProgram(BPF_MAXINSNS + 1, kAllow)) ==
        "seccomp: 4097 instructions, outside the kernel's 1..4096");
  CHECK(check_error({kAllow, kLoadNr}) == "seccomp: the last instruction is not a return");
  // jt of 1 from instruction 0 lands on index 2: past a 2-instruction end.
  CHECK(check_error({BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1, 1, 0), kAllow}) ==
        "seccomp: instruction 0 jumps past the end");
  CHECK(check_error({BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0), kAllow}) ==
        "seccomp: instruction 0 jumps past the end");
  CHECK(check_bpf_program(BpfProgram{BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 1), kAllow, kAllow})
            .has_value());
}

TEST_CASE("seccomp cache: raw bytes to a program", "[seccomp_cache]") {
  const BpfProgram program = {kLoadNr, kAllow};
  const std::string bytes(reinterpret_cast<const char*>(program.data()),
                          program.size() * sizeof(sock_filter));
  auto parsed = parse_bpf_program(bytes);
  REQUIRE(parsed.has_value());
  REQUIRE(parsed->size() == 2);
  CHECK(std::memcmp(parsed->data(), program.data(), bytes.size()) == 0);

  auto odd = parse_bpf_program(bytes.substr(0, 12));
  REQUIRE_FALSE(odd.has_value());
  CHECK(odd.error().str() == "seccomp: 12 bytes is not a whole number of 8-byte instructions");
  auto empty = parse_bpf_program("");
  REQUIRE_FALSE(empty.has_value());
  CHECK(empty.error().str() == "seccomp: 0 instructions, outside the kernel's 1..4096");
}

TEST_CASE("seccomp cache: files written and read back", "[seccomp_cache]") {
  TempDir tmp;
  const std::string dir = tmp / "a/cache";
  const std::string key(64, 'f');
  const BpfProgram program = {kLoadNr, kAllow};

  CHECK_FALSE(read_cached_program(dir, key).has_value());  // no directory yet
  REQUIRE(write_cached_program(dir, key, program).has_value());
  const std::string path = seccomp_cache_path(dir, key);
  CHECK(path == dir + "/" + key + ".bpf");
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_size == static_cast<off_t>(2 * sizeof(sock_filter)));
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);

  auto read = read_cached_program(dir, key);
  REQUIRE(read.has_value());
  REQUIRE(read->size() == 2);
  CHECK(std::memcmp(read->data(), program.data(), 2 * sizeof(sock_filter)) == 0);

  // Not a whole number of instructions: ignored.
  std::ofstream(path, std::ios::binary | std::ios::app) << "xyz";
  CHECK_FALSE(read_cached_program(dir, key).has_value());

  // A program the kernel would refuse is not stored.
  auto bad = write_cached_program(dir, key, BpfProgram{kLoadNr});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().str() == "seccomp: the last instruction is not a return");
}
