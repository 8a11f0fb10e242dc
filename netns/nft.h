// A thin RAII layer over libnftables: one nft context per owner, output and
// errors captured in buffers (never printed), so that a failure carries nft's
// own message ("Error: Could not process rule: No such file or directory").
// A script of several commands given to run() is one netlink batch, i.e. one
// transaction: it applies completely or not at all.
//
// Also the reading side: the rules of a `list` in JSON (with handles), reduced
// to what berth needs to find and replace its own rules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

struct nft_ctx;

namespace berth::netns::nft {

class Context {
 public:
  enum class Output { text, json };

  // `json`: list commands print JSON with rule handles (`nft -j -a`).
  static Result<Context> open(Output output = Output::text);

  // Runs `script` (commands separated by newlines) as one transaction and
  // returns what nft printed. On failure the error is nft's own text on one
  // line (compact_error), step "nft".
  Result<std::string> run(const std::string& script) const;

 private:
  struct Free {
    void operator()(nft_ctx* ctx) const;
  };
  explicit Context(nft_ctx* ctx) : ctx_(ctx) {}
  std::unique_ptr<nft_ctx, Free> ctx_;
};

// nft's error buffer ("<file>:<line>:<cols>: Error: <message>", the offending
// command, a line of carets; possibly several times) on one line:
//   "Error: Could not process rule: No such file or directory (in: delete table ip x)"
std::string compact_error(std::string_view text);

// A rule as `nft -j -a list ...` shows it, reduced to what berth matches on.
struct Rule {
  std::string chain;
  uint64_t handle = 0;
  std::string comment;  // "" when it has none
  std::string l4proto;  // "tcp"/"udp" of a `tcp dport N` match, "" if none
  uint16_t dport = 0;
  bool numgen = false;  // uses a numgen expression (a load balancer)
};

// The rules in the JSON output of a list command (other objects ignored).
Result<std::vector<Rule>> parse_rules(std::string_view json_text);

// An element of a named set, as `nft -j list ...` shows it.
struct SetElement {
  std::string set;
  std::string value;    // "10.88.0.2"
  std::string comment;  // "" when it has none
  bool operator==(const SetElement&) const = default;
};

// The elements of every set in the JSON output of a list command (plain
// values and {"elem": {"val": ..., "comment": ...}} alike; values that are
// not strings, such as ranges or concatenations, are skipped).
Result<std::vector<SetElement>> parse_set_elements(std::string_view json_text);

// The names of the chains in the JSON output of a list command.
Result<std::vector<std::string>> parse_chain_names(std::string_view json_text);

// The names of the tables in the JSON output of `list tables`.
Result<std::vector<std::string>> parse_table_names(std::string_view json_text);

}  // namespace berth::netns::nft
