#include "runtime/devices_bpf.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <optional>
#include <string>

#include "common/fd.h"

namespace berth::runtime {
namespace {

// Registers: R1 holds the context (struct bpf_cgroup_dev_ctx) on entry; the
// prologue loads R2 = device type (BPF_DEVCG_DEV_*), R3 = access
// (BPF_DEVCG_ACC_*), R4 = major, R5 = minor. R1 is then a scratch register.
constexpr uint8_t R0 = BPF_REG_0, R1 = BPF_REG_1, R2 = BPF_REG_2, R3 = BPF_REG_3, R4 = BPF_REG_4,
                  R5 = BPF_REG_5;

constexpr bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}
constexpr bpf_insn ldx_w(uint8_t dst, uint8_t src, int16_t off) {
  return insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0);
}
constexpr bpf_insn alu32_imm(uint8_t op, uint8_t dst, int32_t imm) {
  return insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm);
}
constexpr bpf_insn mov32_reg(uint8_t dst, uint8_t src) {
  return insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0);
}
constexpr bpf_insn jmp_imm(uint8_t op, uint8_t dst, int32_t imm, int16_t off) {
  return insn(BPF_JMP | op | BPF_K, dst, 0, off, imm);
}
constexpr bpf_insn jmp_reg(uint8_t op, uint8_t dst, uint8_t src, int16_t off) {
  return insn(BPF_JMP | op | BPF_X, dst, src, off, 0);
}
constexpr bpf_insn exit_insn() {
  return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

// A rule's access letters as BPF_DEVCG_ACC_* bits; nullopt on a bad letter.
std::optional<int32_t> access_bits(const std::string& access) {
  if (access.empty()) return BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;
  int32_t bits = 0;
  for (char c : access) {
    switch (c) {
      case 'r':
        bits |= BPF_DEVCG_ACC_READ;
        break;
      case 'w':
        bits |= BPF_DEVCG_ACC_WRITE;
        break;
      case 'm':
        bits |= BPF_DEVCG_ACC_MKNOD;
        break;
      default:
        return std::nullopt;
    }
  }
  return bits;
}

constexpr int32_t kAllAccess = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;

bool wildcard(const std::optional<int64_t>& n) {
  return !n || *n < 0;
}

struct Rule {
  bool allow;
  int32_t type;  // BPF_DEVCG_DEV_*, or 0 for any
  std::optional<int64_t> major, minor;
  int32_t access;
};

long bpf(int cmd, bpf_attr* attr) {
  return ::syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

}  // namespace

const std::vector<DeviceRule>& default_device_rules() {
  static const std::vector<DeviceRule> rules = [] {
    auto allow = [](const char* type, std::optional<int64_t> major, std::optional<int64_t> minor,
                    const char* access) {
      return DeviceRule{
          .allow = true, .type = type, .major = major, .minor = minor, .access = access};
    };
    return std::vector<DeviceRule>{
        allow("c", std::nullopt, std::nullopt, "m"),  // mknod
        allow("b", std::nullopt, std::nullopt, "m"),
        allow("c", 1, 3, "rwm"),               // null
        allow("c", 1, 8, "rwm"),               // random
        allow("c", 1, 7, "rwm"),               // full
        allow("c", 5, 0, "rwm"),               // tty
        allow("c", 1, 5, "rwm"),               // zero
        allow("c", 1, 9, "rwm"),               // urandom
        allow("c", 136, std::nullopt, "rwm"),  // /dev/pts/*
        allow("c", 5, 2, "rwm"),               // ptmx
        allow("c", 10, 200, "rwm"),            // net/tun
    };
  }();
  return rules;
}

Result<std::vector<bpf_insn>> device_filter_program(const std::vector<DeviceRule>& rules) {
  // The rules that still matter, and the decision when none matches.
  bool default_allow = false;
  std::vector<Rule> kept;
  for (const DeviceRule& r : rules) {
    int32_t type = 0;
    if (r.type == "b") {
      type = BPF_DEVCG_DEV_BLOCK;
    } else if (r.type == "c") {
      type = BPF_DEVCG_DEV_CHAR;
    } else if (!r.type.empty() && r.type != "a") {
      return error("devices", "device rule type \"{}\" is not a, b or c", r.type);
    }
    auto access = access_bits(r.access);
    if (!access) return error("devices", "device rule access \"{}\" is not of r, w, m", r.access);
    if (type == 0 && wildcard(r.major) && wildcard(r.minor) && *access == kAllAccess) {
      default_allow = r.allow;
      kept.clear();
      continue;
    }
    kept.push_back(Rule{r.allow, type, r.major, r.minor, *access});
  }

  std::vector<bpf_insn> prog = {
      ldx_w(R2, R1, offsetof(bpf_cgroup_dev_ctx, access_type)),
      alu32_imm(BPF_AND, R2, 0xffff),
      ldx_w(R3, R1, offsetof(bpf_cgroup_dev_ctx, access_type)),
      alu32_imm(BPF_RSH, R3, 16),
      ldx_w(R4, R1, offsetof(bpf_cgroup_dev_ctx, major)),
      ldx_w(R5, R1, offsetof(bpf_cgroup_dev_ctx, minor)),
  };
  // Last rule first: the first block that matches returns its decision; a
  // check that fails jumps past the end of its block (off counts from the
  // next instruction, so jump i of an n-instruction block skips n - i - 1).
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
    std::vector<bpf_insn> block;
    if (it->type != 0) block.push_back(jmp_imm(BPF_JNE, R2, it->type, 0));
    if (it->access != kAllAccess) {
      block.push_back(mov32_reg(R1, R3));
      block.push_back(alu32_imm(BPF_AND, R1, it->access));
      // allow: (asked & rule) != asked -> no match; deny: (asked & rule) == 0.
      block.push_back(it->allow ? jmp_reg(BPF_JNE, R1, R3, 0) : jmp_imm(BPF_JEQ, R1, 0, 0));
    }
    if (!wildcard(it->major)) block.push_back(jmp_imm(BPF_JNE, R4, int32_t(*it->major), 0));
    if (!wildcard(it->minor)) block.push_back(jmp_imm(BPF_JNE, R5, int32_t(*it->minor), 0));
    block.push_back(alu32_imm(BPF_MOV, R0, it->allow ? 1 : 0));
    block.push_back(exit_insn());
    const auto n = static_cast<int16_t>(block.size());
    for (int16_t i = 0; i < n; ++i) {
      if (BPF_CLASS(block[i].code) == BPF_JMP && BPF_OP(block[i].code) != BPF_EXIT) {
        block[i].off = static_cast<int16_t>(n - i - 1);
      }
    }
    prog.insert(prog.end(), block.begin(), block.end());
  }
  prog.push_back(alu32_imm(BPF_MOV, R0, default_allow ? 1 : 0));
  prog.push_back(exit_insn());
  return prog;
}

Result<void> attach_device_filter(int cgroup_fd, const std::vector<bpf_insn>& prog) {
  static const char kLicense[] = "Apache";
  char log[4096] = {};
  bpf_attr load{};
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = reinterpret_cast<uint64_t>(prog.data());
  load.insn_cnt = static_cast<uint32_t>(prog.size());
  load.license = reinterpret_cast<uint64_t>(kLicense);
  load.log_buf = reinterpret_cast<uint64_t>(log);
  load.log_size = sizeof(log);
  load.log_level = 1;
  long fd = bpf(BPF_PROG_LOAD, &load);
  if (fd < 0 && errno == ENOSPC) {  // the log did not fit; load without it
    load.log_buf = 0;
    load.log_size = 0;
    load.log_level = 0;
    fd = bpf(BPF_PROG_LOAD, &load);
  }
  if (fd < 0) {
    return sys_error("devices", "load the cgroup device program ({} instructions){}{}", prog.size(),
                     log[0] ? ": verifier: " : "", log);
  }
  UniqueFd prog_fd(static_cast<int>(fd));
  bpf_attr attach{};
  attach.target_fd = static_cast<uint32_t>(cgroup_fd);
  attach.attach_bpf_fd = static_cast<uint32_t>(prog_fd.get());
  attach.attach_type = BPF_CGROUP_DEVICE;
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  if (bpf(BPF_PROG_ATTACH, &attach) != 0) {
    return sys_error("devices", "attach the device program to the cgroup");
  }
  return {};
}

}  // namespace berth::runtime
