// The cgroup v2 device program (runtime/devices_bpf.cc): the generated
// instructions are run by a small interpreter of the opcodes the generator
// emits, for requests against rule sets, so the decisions (last match wins,
// wildcards, resets, partial access) are checked without a kernel. The VM
// suite (tests/integration/devices_v2_test.cc) checks the kernel's view.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "runtime/devices_bpf.h"

using berth::runtime::default_device_rules;
using berth::runtime::device_filter_program;
using berth::runtime::DeviceRule;

namespace {

struct Request {
  char type;  // 'b' or 'c'
  uint32_t major, minor;
  std::string access;  // "r", "w", "m", "rw", ...
};

// Runs `prog` on `req` like the kernel would; fails the test on an opcode
// the generator is not meant to emit or a jump out of the program.
int run(const std::vector<bpf_insn>& prog, const Request& req) {
  uint32_t access = 0;
  for (char c : req.access) {
    access |= c == 'r' ? BPF_DEVCG_ACC_READ : c == 'w' ? BPF_DEVCG_ACC_WRITE : BPF_DEVCG_ACC_MKNOD;
  }
  bpf_cgroup_dev_ctx ctx{};
  ctx.access_type = (access << 16) | (req.type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR);
  ctx.major = req.major;
  ctx.minor = req.minor;
  uint64_t reg[11] = {};
  size_t pc = 0;
  while (true) {
    REQUIRE(pc < prog.size());
    const bpf_insn& i = prog[pc++];
    const uint64_t src = BPF_SRC(i.code) == BPF_X ? reg[i.src_reg] : uint64_t(int64_t(i.imm));
    switch (BPF_CLASS(i.code)) {
      case BPF_LDX: {
        REQUIRE(i.code == (BPF_LDX | BPF_MEM | BPF_W));
        REQUIRE(i.src_reg == BPF_REG_1);  // the context is only read through R1
        REQUIRE((i.off >= 0 && size_t(i.off) + 4 <= sizeof(ctx)));
        uint32_t v;
        std::memcpy(&v, reinterpret_cast<const char*>(&ctx) + i.off, 4);
        reg[i.dst_reg] = v;
        break;
      }
      case BPF_ALU: {
        uint32_t d = uint32_t(reg[i.dst_reg]), s = uint32_t(src);
        switch (BPF_OP(i.code)) {
          case BPF_MOV:
            d = s;
            break;
          case BPF_AND:
            d &= s;
            break;
          case BPF_RSH:
            d >>= s;
            break;
          default:
            FAIL("unexpected ALU op " << int(i.code));
        }
        reg[i.dst_reg] = d;
        break;
      }
      case BPF_JMP: {
        if (BPF_OP(i.code) == BPF_EXIT) return int(reg[BPF_REG_0]);
        bool taken = false;
        switch (BPF_OP(i.code)) {
          case BPF_JNE:
            taken = reg[i.dst_reg] != src;
            break;
          case BPF_JEQ:
            taken = reg[i.dst_reg] == src;
            break;
          default:
            FAIL("unexpected JMP op " << int(i.code));
        }
        if (taken) pc += i.off;
        break;
      }
      default:
        FAIL("unexpected instruction class " << int(i.code));
    }
  }
}

DeviceRule rule(bool allow, std::string type, std::optional<int64_t> major,
                std::optional<int64_t> minor, std::string access) {
  return DeviceRule{.allow = allow,
                    .type = std::move(type),
                    .major = major,
                    .minor = minor,
                    .access = std::move(access)};
}

// The rules berth's default spec gives (deny all) followed by the runtime's
// defaults, as cgroup_v2.cc builds them.
std::vector<bpf_insn> default_profile_program(std::vector<DeviceRule> extra = {}) {
  std::vector<DeviceRule> rules = {rule(false, "a", std::nullopt, std::nullopt, "rwm")};
  rules.insert(rules.end(), extra.begin(), extra.end());
  rules.insert(rules.end(), default_device_rules().begin(), default_device_rules().end());
  auto prog = device_filter_program(rules);
  REQUIRE(prog.has_value());
  return *prog;
}

}  // namespace

TEST_CASE("devices bpf: the default profile denies disks and allows the minimal /dev",
          "[devices]") {
  auto prog = default_profile_program();
  // mknod of anything (the runtime makes /dev inside the cgroup) ...
  CHECK(run(prog, {'b', 254, 0, "m"}) == 1);
  CHECK(run(prog, {'c', 4, 1, "m"}) == 1);
  // ... but no block device can be opened, and no char device beyond /dev's.
  CHECK(run(prog, {'b', 254, 0, "r"}) == 0);
  CHECK(run(prog, {'b', 8, 0, "rw"}) == 0);
  CHECK(run(prog, {'b', 254, 0, "rwm"}) == 0);
  CHECK(run(prog, {'c', 1, 1, "r"}) == 0);   // /dev/mem
  CHECK(run(prog, {'c', 4, 1, "rw"}) == 0);  // tty1
  for (auto [major, minor] : {std::pair{1u, 3u},
                              {1u, 5u},
                              {1u, 7u},
                              {1u, 8u},
                              {1u, 9u},
                              {5u, 0u},
                              {5u, 2u},
                              {10u, 200u},
                              {136u, 0u},
                              {136u, 17u}}) {
    CAPTURE(major, minor);
    CHECK(run(prog, {'c', major, minor, "rw"}) == 1);
    CHECK(run(prog, {'b', major, minor, "r"}) == 0);  // the type matters
  }
}

TEST_CASE("devices bpf: the last matching rule decides, wildcards and partial access",
          "[devices]") {
  // The spec allows a whole major read-only, then denies one minor of it.
  auto prog = default_profile_program(
      {rule(true, "c", 99, std::nullopt, "r"), rule(false, "c", 99, 1, "rwm")});
  CHECK(run(prog, {'c', 99, 0, "r"}) == 1);
  CHECK(run(prog, {'c', 99, 7, "r"}) == 1);
  CHECK(run(prog, {'c', 99, 0, "rw"}) == 0);  // w is not granted
  CHECK(run(prog, {'c', 99, 0, "w"}) == 0);
  CHECK(run(prog, {'c', 99, 1, "r"}) == 0);  // the later deny wins
  CHECK(run(prog, {'b', 99, 0, "r"}) == 0);

  // A later allow re-opens what an earlier deny closed.
  auto reopen = device_filter_program({rule(false, "c", 7, 7, "rwm"), rule(true, "c", 7, 7, "r")});
  REQUIRE(reopen);
  CHECK(run(*reopen, {'c', 7, 7, "r"}) == 1);
  CHECK(run(*reopen, {'c', 7, 7, "w"}) == 0);

  // A deny of part of the access refuses a request asking for that part.
  auto partial = device_filter_program(
      {rule(true, "a", std::nullopt, std::nullopt, "rwm"), rule(false, "c", 1, 3, "w")});
  REQUIRE(partial);
  CHECK(run(*partial, {'c', 1, 3, "r"}) == 1);
  CHECK(run(*partial, {'c', 1, 3, "rw"}) == 0);
  CHECK(run(*partial, {'c', 1, 3, "w"}) == 0);
  CHECK(run(*partial, {'b', 8, 0, "rw"}) == 1);

  // Type "a" with numbers matches both types; -1 is a wildcard.
  auto any_type = device_filter_program({rule(true, "a", 42, -1, "rw")});
  REQUIRE(any_type);
  CHECK(run(*any_type, {'c', 42, 3, "rw"}) == 1);
  CHECK(run(*any_type, {'b', 42, 9, "r"}) == 1);
  CHECK(run(*any_type, {'b', 42, 9, "m"}) == 0);
  CHECK(run(*any_type, {'b', 43, 9, "r"}) == 0);
}

TEST_CASE("devices bpf: an allow-all or deny-all rule resets what came before", "[devices]") {
  auto allow_all = device_filter_program(
      {rule(false, "b", 8, 0, "rwm"), rule(true, "a", std::nullopt, std::nullopt, "rwm")});
  REQUIRE(allow_all);
  CHECK(run(*allow_all, {'b', 8, 0, "rw"}) == 1);
  CHECK(allow_all->size() == 6 + 2);  // prologue + the default decision only

  auto deny_all = device_filter_program(
      {rule(true, "b", 8, 0, "rwm"), rule(false, "", std::nullopt, std::nullopt, "")});
  REQUIRE(deny_all);
  CHECK(run(*deny_all, {'b', 8, 0, "r"}) == 0);
  CHECK(run(*deny_all, {'c', 1, 3, "r"}) == 0);

  auto empty = device_filter_program({});
  REQUIRE(empty);
  CHECK(run(*empty, {'c', 1, 3, "r"}) == 0);
}

TEST_CASE("devices bpf: bad rule types and access letters are refused", "[devices]") {
  auto bad_type = device_filter_program({rule(true, "x", 1, 3, "rwm")});
  REQUIRE_FALSE(bad_type);
  CHECK(bad_type.error().str() == "devices: device rule type \"x\" is not a, b or c");
  auto bad_access = device_filter_program({rule(true, "c", 1, 3, "rx")});
  REQUIRE_FALSE(bad_access);
  CHECK(bad_access.error().str() == "devices: device rule access \"rx\" is not of r, w, m");
}
