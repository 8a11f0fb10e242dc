#include "netns/nft.h"

#include <nftables/libnftables.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "common/fd.h"

namespace berth::netns::nft {

namespace {

using Json = nlohmann::json;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

// A member of a JSON object, or nullptr: never operator[] or at() on data
// that nft printed (both abort under -fno-exceptions when it is not there).
const Json* member(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string string_member(const Json& j, const char* key) {
  const Json* m = member(j, key);
  return m != nullptr && m->is_string() ? m->get<std::string>() : std::string();
}

bool contains_key(const Json& j, const char* key) {
  if (j.is_object()) {
    if (j.contains(key)) return true;
    for (const auto& [k, v] : j.items()) {
      if (contains_key(v, key)) return true;
    }
  } else if (j.is_array()) {
    for (const auto& v : j) {
      if (contains_key(v, key)) return true;
    }
  }
  return false;
}

// `tcp dport 8080` is {"match": {"op": "==", "left": {"payload": {"protocol":
// "tcp", "field": "dport"}}, "right": 8080}}.
void read_dport_match(const Json& expr, Rule& rule) {
  const Json* match = member(expr, "match");
  if (match == nullptr || string_member(*match, "op") != "==") return;
  const Json* left = member(*match, "left");
  const Json* payload = left != nullptr ? member(*left, "payload") : nullptr;
  const Json* right = member(*match, "right");
  if (payload == nullptr || right == nullptr || !right->is_number_unsigned()) return;
  std::string proto = string_member(*payload, "protocol");
  if (string_member(*payload, "field") != "dport" || (proto != "tcp" && proto != "udp")) return;
  uint64_t port = right->get<uint64_t>();
  if (port > 65535) return;
  rule.l4proto = proto;
  rule.dport = static_cast<uint16_t>(port);
}

Rule read_rule(const Json& obj) {
  Rule rule;
  rule.chain = string_member(obj, "chain");
  rule.comment = string_member(obj, "comment");
  if (const Json* h = member(obj, "handle"); h != nullptr && h->is_number_unsigned())
    rule.handle = h->get<uint64_t>();
  if (const Json* expr = member(obj, "expr"); expr != nullptr && expr->is_array()) {
    for (const auto& e : *expr) read_dport_match(e, rule);
    rule.numgen = contains_key(*expr, "numgen");
  }
  return rule;
}

// The objects of {"nftables": [{"metainfo": ...}, {"table": ...}, ...]}.
Result<const Json*> nftables_array(const Json& doc, std::string_view text) {
  const Json* items = member(doc, "nftables");
  if (items == nullptr || !items->is_array())
    return error("nft", "unexpected JSON output (no \"nftables\" array): {:.200}", text);
  return items;
}

}  // namespace

void Context::Free::operator()(nft_ctx* ctx) const {
  nft_ctx_free(ctx);
}

Result<Context> Context::open(Output output) {
  nft_ctx* raw = nft_ctx_new(NFT_CTX_DEFAULT);
  if (raw == nullptr) return error("nft", "nft_ctx_new failed");
  Context ctx(raw);
  // Buffered, so that nothing reaches our stdout/stderr and errors can be
  // returned with nft's own text.
  if (nft_ctx_buffer_output(raw) != 0 || nft_ctx_buffer_error(raw) != 0)
    return error("nft", "cannot buffer libnftables output");
  if (output == Output::json)
    nft_ctx_output_set_flags(raw, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE);
  return ctx;
}

Result<std::string> Context::run(const std::string& script) const {
  // The script goes through a memfd and nft_run_cmd_from_filename rather
  // than nft_run_cmd_from_buffer: both make one transaction of the whole
  // script, but for a buffer libnftables 1.0 quotes the script's first line
  // in its error, whatever line failed; for a file it quotes the right one.
  UniqueFd fd(::memfd_create("berth-nft", MFD_CLOEXEC));
  if (!fd) return sys_error("nft", "memfd_create for the script");
  for (std::string_view rest = script; !rest.empty();) {
    ssize_t n = ::write(fd.get(), rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error("nft", "write the script to a memfd");
    rest.remove_prefix(static_cast<size_t>(n));
  }
  std::string path = fmt::format("/proc/self/fd/{}", fd.get());
  int rc = nft_run_cmd_from_filename(ctx_.get(), path.c_str());
  // Both buffers are read (and so reset) after every command.
  std::string out = nft_ctx_get_output_buffer(ctx_.get());
  std::string err = nft_ctx_get_error_buffer(ctx_.get());
  if (rc != 0) return error("nft", "{}", compact_error(err));
  return out;
}

std::string compact_error(std::string_view text) {
  auto lines = lines_of(text);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    size_t at = lines[i].find("Error:");
    if (at == std::string_view::npos) continue;
    if (!out.empty()) out += "; ";
    out += trim(lines[i].substr(at));
    // The next line is the offending command (then a line of carets).
    if (i + 1 < lines.size()) {
      std::string_view cmd = trim(lines[i + 1]);
      if (!cmd.empty() && cmd.find_first_not_of("^~ ") != std::string_view::npos) {
        out += " (in: ";
        out += cmd;
        out += ")";
      }
    }
  }
  if (!out.empty()) return out;
  for (auto line : lines) {
    if (trim(line).empty()) continue;
    if (!out.empty()) out += "; ";
    out += trim(line);
  }
  return out.empty() ? "nft failed without a message" : out;
}

Result<std::vector<Rule>> parse_rules(std::string_view json_text) {
  Json doc = Json::parse(json_text, nullptr, false);
  if (doc.is_discarded()) return error("nft", "cannot parse JSON output: {:.200}", json_text);
  BERTH_ASSIGN(const Json* items, nftables_array(doc, json_text));
  std::vector<Rule> rules;
  for (const auto& item : *items) {
    if (const Json* rule = member(item, "rule"); rule != nullptr && rule->is_object())
      rules.push_back(read_rule(*rule));
  }
  return rules;
}

namespace {

// The "name" of every object of `kind` ("table", "chain") in a listing.
Result<std::vector<std::string>> parse_names(std::string_view json_text, const char* kind) {
  Json doc = Json::parse(json_text, nullptr, false);
  if (doc.is_discarded()) return error("nft", "cannot parse JSON output: {:.200}", json_text);
  BERTH_ASSIGN(const Json* items, nftables_array(doc, json_text));
  std::vector<std::string> names;
  for (const auto& item : *items) {
    if (const Json* obj = member(item, kind); obj != nullptr)
      names.push_back(string_member(*obj, "name"));
  }
  return names;
}

}  // namespace

Result<std::vector<SetElement>> parse_set_elements(std::string_view json_text) {
  Json doc = Json::parse(json_text, nullptr, false);
  if (doc.is_discarded()) return error("nft", "cannot parse JSON output: {:.200}", json_text);
  BERTH_ASSIGN(const Json* items, nftables_array(doc, json_text));
  std::vector<SetElement> out;
  for (const auto& item : *items) {
    const Json* set = member(item, "set");
    if (set == nullptr) continue;
    const Json* elems = member(*set, "elem");
    if (elems == nullptr || !elems->is_array()) continue;
    std::string name = string_member(*set, "name");
    for (const auto& e : *elems) {
      SetElement el{.set = name};
      if (e.is_string()) {
        el.value = e.get<std::string>();
      } else if (const Json* inner = member(e, "elem"); inner != nullptr) {
        el.value = string_member(*inner, "val");
        el.comment = string_member(*inner, "comment");
      }
      if (!el.value.empty()) out.push_back(std::move(el));
    }
  }
  return out;
}

Result<std::vector<std::string>> parse_chain_names(std::string_view json_text) {
  return parse_names(json_text, "chain");
}

Result<std::vector<std::string>> parse_table_names(std::string_view json_text) {
  return parse_names(json_text, "table");
}

}  // namespace berth::netns::nft
