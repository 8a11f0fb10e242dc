#include "controlplane/model/ecs_json_util.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "controlplane/model/errors.h"

namespace berth::cp::ecs {

Result<void> refuse_unknown(const jr::Node& n, std::initializer_list<std::string_view> known) {
  BERTH_TRY(jr::expect_object(n));
  auto unknown = jr::unknown_members(n, known);
  if (unknown.empty()) return {};
  return jr::fail(n.member(unknown.front()), "unknown field");
}

Result<void> refuse_if_set(const jr::Node& n, std::string_view key, std::string_view why) {
  jr::Node m = n.member(key);
  if (!m.present()) return {};
  const json& v = *m.value;
  bool empty = (v.is_boolean() && !v.get<bool>()) || ((v.is_array() || v.is_object()) && v.empty());
  if (empty) return {};
  return jr::fail(m, "{}", why);
}

Result<void> read_int(const jr::Node& n, std::optional<int>& out, int lo, int hi) {
  BERTH_TRY(jr::read(n, out));
  return jr::check_range(n, out, lo, hi);
}

Result<void> read_int(const jr::Node& n, int& out, int lo, int hi) {
  std::optional<int> v;
  BERTH_TRY(read_int(n, v, lo, hi));
  if (v) out = *v;
  return {};
}

Result<void> read_strings(const jr::Node& n, std::vector<std::string>& out) {
  return jr::read_array(n, out, [](const jr::Node& e) -> Result<std::string> {
    std::string s;
    BERTH_TRY(jr::read_required(e, s));
    BERTH_TRY(jr::check_no_nul(e, s));
    return s;
  });
}

Result<void> read_key_values(const jr::Node& n, std::vector<KeyValue>& out) {
  return jr::read_array(n, out, [](const jr::Node& e) -> Result<KeyValue> {
    BERTH_TRY(refuse_unknown(e, {"name", "value"}));
    KeyValue kv;
    BERTH_TRY(jr::read_required(e.member("name"), kv.name));
    BERTH_TRY(jr::read(e.member("value"), kv.value));
    if (kv.name.empty() || kv.name.find('=') != std::string::npos) {
      return jr::fail(e.member("name"), "{:?}: must be non-empty and without '='", kv.name);
    }
    BERTH_TRY(jr::check_no_nul(e.member("name"), kv.name));
    BERTH_TRY(jr::check_no_nul(e.member("value"), kv.value));
    return kv;
  });
}

namespace {

// "0.25" -> 0.25; only plain decimal numbers.
std::optional<double> decimal(std::string_view s) {
  if (s.empty() || !std::ranges::all_of(s, [](char c) { return std::isdigit(c) || c == '.'; })) {
    return std::nullopt;
  }
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// `s` is "<number>" (already in the base unit) or "<number>[ ]<suffix>"
// (case-insensitive) multiplied by `scale`; the result must be a whole
// positive number of base units.
std::optional<std::string> normalise(std::string_view s, std::string_view suffix, int scale) {
  std::string l = lower(s);
  std::string_view v = l;
  int factor = 1;
  if (v.ends_with(suffix)) {
    v.remove_suffix(suffix.size());
    if (v.ends_with(' ')) v.remove_suffix(1);
    factor = scale;
  }
  auto d = decimal(v);
  if (!d) return std::nullopt;
  double units = *d * factor;
  if (units < 1 || units > 1e9 || units != std::floor(units)) return std::nullopt;
  return std::to_string(static_cast<int64_t>(units));
}

Result<void> read_task_size(const jr::Node& n, std::string& out, std::string_view what,
                            std::string_view suffix, int scale) {
  if (!n.present()) return {};
  std::string text;
  if (const auto* u = n.value->get_ptr<const json::number_unsigned_t*>()) {
    text = std::to_string(*u);
  } else if (const auto* i = n.value->get_ptr<const json::number_integer_t*>()) {
    text = std::to_string(*i);
  } else if (const auto* s = n.value->get_ptr<const std::string*>()) {
    text = *s;
  }
  auto v = normalise(text, suffix, scale);
  if (!v) return ecs_error(kClientException, "Invalid '{}' setting for task.", what);
  out = *v;
  return {};
}

}  // namespace

std::optional<std::string> normalise_cpu(std::string_view s) {
  return normalise(s, "vcpu", 1024);
}

std::optional<std::string> normalise_memory(std::string_view s) {
  return normalise(s, "gb", 1024);
}

Result<void> read_task_cpu(const jr::Node& n, std::string& out) {
  return read_task_size(n, out, "cpu", "vcpu", 1024);
}

Result<void> read_task_memory(const jr::Node& n, std::string& out) {
  return read_task_size(n, out, "memory", "gb", 1024);
}

std::string_view host_cpu_architecture() {
#if defined(__x86_64__)
  return "X86_64";
#elif defined(__aarch64__)
  return "ARM64";
#else
  return "UNKNOWN";
#endif
}

json key_values_json(const std::vector<KeyValue>& kv) {
  json out = json::array();
  for (const auto& e : kv) out.push_back(json{{"name", e.name}, {"value", e.value}});
  return out;
}

}  // namespace berth::cp::ecs
