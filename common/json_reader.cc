#include "common/json_reader.h"

#include <algorithm>

namespace berth::jr {

Node Node::member(std::string_view key) const {
  std::string p = path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
  if (value == nullptr || !value->is_object()) return {nullptr, std::move(p), doc};
  auto it = value->find(std::string(key));
  if (it == value->end() || it->is_null()) return {nullptr, std::move(p), doc};
  return {&*it, std::move(p), doc};
}

Node Node::element(size_t i) const {
  return {&(*value)[i], index_path(path, i), doc};
}

Node Node::entry(const std::string& key, const json& v) const {
  return {&v, fmt::format("{}[{:?}]", path, key), doc};
}

std::string index_path(std::string_view path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

std::unexpected<Error> fail_at(const Document& d, std::string_view path, std::string message) {
  return std::unexpected(Error{std::string(d.step), 0,
                               fmt::format("{}: {}", path.empty() ? d.root_name : path, message),
                               ErrorKind::invalid});
}

std::unexpected<Error> type_error(const Node& n, std::string_view expected) {
  return fail(n, "expected {}, got {}", expected, n.value->type_name());
}

Result<void> expect_object(const Node& n) {
  if (!n.value->is_object()) return type_error(n, "an object");
  return {};
}

Result<void> check_no_nul(const Node& n, const std::string& s) {
  if (s.find('\0') != std::string::npos) return fail(n, "contains a NUL byte");
  return {};
}

Result<void> read(const Node& n, std::string& out) {
  if (!n.present()) return {};
  const auto* s = n.value->get_ptr<const json::string_t*>();
  if (s == nullptr) return type_error(n, "a string");
  BERTH_TRY(check_no_nul(n, *s));
  out = *s;
  return {};
}

Result<void> read(const Node& n, bool& out) {
  if (!n.present()) return {};
  const auto* b = n.value->get_ptr<const json::boolean_t*>();
  if (b == nullptr) return type_error(n, "a boolean");
  out = *b;
  return {};
}

Result<void> read(const Node& n, double& out) {
  if (!n.present()) return {};
  const json& j = *n.value;
  if (const auto* f = j.get_ptr<const json::number_float_t*>()) {
    out = *f;
  } else if (const auto* u = j.get_ptr<const json::number_unsigned_t*>()) {
    out = static_cast<double>(*u);
  } else if (const auto* i = j.get_ptr<const json::number_integer_t*>()) {
    out = static_cast<double>(*i);
  } else {
    return type_error(n, "a number");
  }
  return {};
}

Result<void> read(const Node& n, std::map<std::string, std::string>& out) {
  if (!n.present()) return {};
  BERTH_TRY(expect_object(n));
  out.clear();
  for (auto it = n.value->begin(); it != n.value->end(); ++it) {
    Node e = n.entry(it.key(), it.value());
    BERTH_TRY(check_no_nul(e, it.key()));
    std::string v;
    BERTH_TRY(read(e, v));
    out.emplace(it.key(), std::move(v));
  }
  return {};
}

std::vector<std::string> unknown_members(const Node& n,
                                         std::initializer_list<std::string_view> known) {
  std::vector<std::string> out;
  if (!n.present() || !n.value->is_object()) return out;
  for (auto it = n.value->begin(); it != n.value->end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) out.push_back(it.key());
  }
  return out;
}

}  // namespace berth::jr
