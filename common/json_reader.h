// A typed JSON reader that cannot abort: every JSON input berth takes (an OCI
// config.json, an image config, a shim's task.json, an API request body) is
// read through it. The whole project is built with JSON_NOEXCEPTION, where a
// nlohmann "throw" aborts the process: values are reached only through
// find() and get_ptr<>, never at() or an unchecked get<>.
//
// Every error names the JSON path of the value it is about
// ("containerDefinitions[1].portMappings[0].containerPort") and has
// ErrorKind::invalid: what is wrong with a document is its author's input.
//
// JSON null is taken as "absent", as Go's encoding/json does, so generators
// that write `"seccomp": null` work unchanged.
#pragma once

#include <concepts>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace berth::jr {

using json = nlohmann::json;

// Which document is read: the error step ("spec", "task definition") and
// the name of the document's root in messages ("config.json", "request").
// Both must outlive every Node (string literals).
struct Document {
  std::string_view step;
  std::string_view root_name;
};

// A JSON value and its path from the document root.
struct Node {
  const json* value = nullptr;  // nullptr: absent or null
  std::string path;
  const Document* doc = nullptr;

  // The root of `j` read as document `d`.
  static Node root(const json& j, const Document& d) { return {&j, "", &d}; }

  bool present() const { return value != nullptr; }
  Node member(std::string_view key) const;
  // Only on an array, with i < size(). A null element stays present so that
  // it is reported as the wrong type rather than skipped.
  Node element(size_t i) const;
  // An object member found by iteration: path `path["key"]`.
  Node entry(const std::string& key, const json& v) const;
};

std::string index_path(std::string_view path, size_t i);

// "<step>: <path or root name>: <message>", kind invalid.
std::unexpected<Error> fail_at(const Document& d, std::string_view path, std::string message);

template <class... A>
std::unexpected<Error> fail(const Node& n, fmt::format_string<A...> f, A&&... args) {
  return fail_at(*n.doc, n.path, fmt::format(f, std::forward<A>(args)...));
}

std::unexpected<Error> type_error(const Node& n, std::string_view expected);
Result<void> expect_object(const Node& n);
// Paths, arguments and names reach the kernel as C strings: an embedded NUL
// would make it act on a prefix of what was validated.
Result<void> check_no_nul(const Node& n, const std::string& s);

// The read() overloads leave `out` untouched when the value is absent.
Result<void> read(const Node& n, std::string& out);
Result<void> read(const Node& n, bool& out);
// A JSON number, integer or not (ECS timestamps, fractions of a second).
Result<void> read(const Node& n, double& out);

template <class T>
std::string integer_kind() {
  return fmt::format("{} {}-bit integer", std::is_signed_v<T> ? "a" : "an unsigned", sizeof(T) * 8);
}

// Only exact integers in T's range: Go's encoding/json also refuses 1.0 or
// -1 for an unsigned field, and a silently wrapped uid would be a hole.
template <class T>
requires std::integral<T> &&(!std::same_as<T, bool>)Result<void> read(const Node& n, T& out) {
  if (!n.present()) return {};
  const json& j = *n.value;
  // is_number_integer() is also true for unsigned values: test unsigned first.
  if (const auto* u = j.get_ptr<const json::number_unsigned_t*>()) {
    if (std::in_range<T>(*u)) {
      out = static_cast<T>(*u);
      return {};
    }
  } else if (const auto* i = j.get_ptr<const json::number_integer_t*>()) {
    if (std::in_range<T>(*i)) {
      out = static_cast<T>(*i);
      return {};
    }
  } else if (!j.is_number_float()) {
    return type_error(n, integer_kind<T>());
  }
  return fail(n, "expected {}, got {}", integer_kind<T>(), j.dump());
}

template <class T>
Result<void> read(const Node& n, std::optional<T>& out) {
  if (!n.present()) return {};
  T v{};
  BERTH_TRY(read(n, v));
  out = std::move(v);
  return {};
}

template <class T>
Result<void> read_required(const Node& n, T& out) {
  if (!n.present()) return fail(n, "required field is missing");
  return read(n, out);
}

// `parse` turns one element Node into Result<T>.
template <class T, class Parse>
Result<void> read_array(const Node& n, std::vector<T>& out, Parse parse) {
  if (!n.present()) return {};
  if (!n.value->is_array()) return type_error(n, "an array");
  out.clear();
  out.reserve(n.value->size());
  for (size_t i = 0; i < n.value->size(); ++i) {
    auto v = parse(n.element(i));
    if (!v) return std::unexpected(std::move(v).error());
    out.push_back(std::move(*v));
  }
  return {};
}

template <class T>
Result<void> read(const Node& n, std::vector<T>& out) {
  return read_array(n, out, [](const Node& e) -> Result<T> {
    T v{};
    BERTH_TRY(read(e, v));
    return v;
  });
}

Result<void> read(const Node& n, std::map<std::string, std::string>& out);

// `parse` turns the (present) object Node into Result<T>.
template <class T, class Parse>
Result<void> read_object(const Node& n, std::optional<T>& out, Parse parse) {
  if (!n.present()) return {};
  BERTH_ASSIGN(out, parse(n));
  return {};
}

template <class T>
Result<void> check_range(const Node& n, const std::optional<T>& v, T lo, T hi) {
  if (v && (*v < lo || *v > hi)) return fail(n, "{} is out of range {}..{}", *v, lo, hi);
  return {};
}

// Members of object `n` not in `known`, for refusing unknown fields by name
// ("containerDefinitions[0].foo: unknown field"). Empty when n is absent or
// not an object.
std::vector<std::string> unknown_members(const Node& n,
                                         std::initializer_list<std::string_view> known);

}  // namespace berth::jr
