#include "controlplane/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <set>

// Header-only and without exceptions: a malformed file is a parse_result
// error with its position, never a throw.
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include "common/fs.h"
#include "netns/network.h"

namespace berth::cp {
namespace {

constexpr std::string_view kStep = "config";

template <class... A>
std::unexpected<Error> bad(std::string_view origin, std::string_view key,
                           fmt::format_string<A...> f, A&&... args) {
  return kind_error(ErrorKind::invalid, kStep, "{}: {}: {}", origin, key,
                    fmt::format(f, std::forward<A>(args)...));
}

// One reader per value type; each names the key on a wrong type.
struct Reader {
  std::string_view origin;

  Result<void> str(const toml::node& n, std::string_view key, std::string& out) const {
    const auto* s = n.as_string();
    if (s == nullptr) return bad(origin, key, "expected a string");
    out = s->get();
    if (out.find('\0') != std::string::npos) return bad(origin, key, "contains a NUL byte");
    return {};
  }
  Result<void> integer(const toml::node& n, std::string_view key, int64_t& out) const {
    const auto* i = n.as_integer();
    if (i == nullptr) return bad(origin, key, "expected an integer");
    out = i->get();
    return {};
  }
  Result<void> integer(const toml::node& n, std::string_view key, int& out) const {
    int64_t v = 0;
    BERTH_TRY(integer(n, key, v));
    if (!std::in_range<int>(v)) return bad(origin, key, "{} is out of range", v);
    out = static_cast<int>(v);
    return {};
  }
  Result<void> boolean(const toml::node& n, std::string_view key, bool& out) const {
    const auto* b = n.as_boolean();
    if (b == nullptr) return bad(origin, key, "expected true or false");
    out = b->get();
    return {};
  }
  Result<void> strings(const toml::node& n, std::string_view key,
                       std::vector<std::string>& out) const {
    const auto* a = n.as_array();
    if (a == nullptr) return bad(origin, key, "expected an array of strings");
    out.clear();
    for (size_t i = 0; i < a->size(); ++i) {
      std::string s;
      BERTH_TRY(str(*a->get(i), fmt::format("{}[{}]", key, i), s));
      out.push_back(std::move(s));
    }
    return {};
  }
  Result<const toml::table*> table(const toml::node& n, std::string_view key) const {
    const auto* t = n.as_table();
    if (t == nullptr) return bad(origin, key, "expected a table");
    return t;
  }
};

using Setter = std::function<Result<void>(const Reader&, const toml::node&, std::string_view)>;

// Applies every key of `t` through `setters`; an unknown key is an error.
Result<void> apply_table(const Reader& r, const toml::table& t, std::string_view prefix,
                         const std::map<std::string, Setter, std::less<>>& setters) {
  for (auto&& [k, v] : t) {
    std::string key = prefix.empty() ? std::string(k.str()) : fmt::format("{}.{}", prefix, k.str());
    auto it = setters.find(k.str());
    if (it == setters.end()) return bad(r.origin, key, "unknown key");
    BERTH_TRY(it->second(r, v, key));
  }
  return {};
}

Setter str_to(std::string& out) {
  return
      [&out](const Reader& r, const toml::node& n, std::string_view k) { return r.str(n, k, out); };
}
Setter int_to(int& out) {
  return [&out](const Reader& r, const toml::node& n, std::string_view k) {
    return r.integer(n, k, out);
  };
}
Setter int64_to(int64_t& out) {
  return [&out](const Reader& r, const toml::node& n, std::string_view k) {
    return r.integer(n, k, out);
  };
}
Setter bool_to(bool& out) {
  return [&out](const Reader& r, const toml::node& n, std::string_view k) {
    return r.boolean(n, k, out);
  };
}
Setter strings_to(std::vector<std::string>& out) {
  return [&out](const Reader& r, const toml::node& n, std::string_view k) {
    return r.strings(n, k, out);
  };
}

// [[name]] arrays of tables, each element read by `one`.
template <class T>
Setter table_array_to(
    std::vector<T>& out,
    std::function<Result<void>(const Reader&, const toml::table&, std::string_view, T&)> one) {
  return [&out, one](const Reader& r, const toml::node& n, std::string_view k) -> Result<void> {
    const auto* a = n.as_array();
    if (a == nullptr) return bad(r.origin, k, "expected an array of tables ([[{}]])", k);
    out.clear();
    for (size_t i = 0; i < a->size(); ++i) {
      std::string key = fmt::format("{}[{}]", k, i);
      BERTH_ASSIGN(const toml::table* t, r.table(*a->get(i), key));
      T v{};
      BERTH_TRY(one(r, *t, key, v));
      out.push_back(std::move(v));
    }
    return {};
  };
}

// Prices and sizes in the file are decimals (dollars with up to 6
// decimals, vCPUs, GiB) written as a string, an integer or a TOML float; a
// float is printed to its shortest exact form first and then parsed as
// decimal text (money.h parse_usd), so no binary rounding reaches the money
// path.
Result<std::string> decimal_text(const Reader& r, const toml::node& n, std::string_view k) {
  std::string text;
  if (const auto* f = n.as_floating_point()) {
    text = fmt::format("{}", f->get());  // shortest round-trip form
  } else if (const auto* i = n.as_integer()) {
    text = std::to_string(i->get());
  } else {
    BERTH_TRY(r.str(n, k, text));
  }
  return text;
}

Setter price_to(int64_t& out) {
  return [&out](const Reader& r, const toml::node& n, std::string_view k) -> Result<void> {
    BERTH_ASSIGN(std::string text, decimal_text(r, n, k));
    auto v = parse_usd(text);
    if (!v) return bad(r.origin, k, "{}", v.error().message);
    out = *v;
    return {};
  };
}

// A decimal count of `unit`s (vCPU, GiB) as a whole number of 1/1024ths
// (cpu units, MiB).
Setter units_to(int64_t& out, std::string_view unit) {
  return [&out, unit](const Reader& r, const toml::node& n, std::string_view k) -> Result<void> {
    BERTH_ASSIGN(std::string text, decimal_text(r, n, k));
    auto micro = parse_usd(text);
    if (!micro || (*micro * 1024) % 1000000 != 0) {
      return bad(r.origin, k, "{:?} is not a number of {} in steps of 1/1024", text, unit);
    }
    out = *micro * 1024 / 1000000;
    return {};
  };
}

Setter mode_to(std::string& out) {
  return [&out](const Reader& r, const toml::node& n, std::string_view k) -> Result<void> {
    BERTH_TRY(r.str(n, k, out));
    if (!parse_pricing_mode(out)) return bad(r.origin, k, "{:?} is not reserved or usage", out);
    return {};
  };
}

Result<void> read_account(const Reader& r, const toml::table& t, std::string_view key, Account& a) {
  std::vector<std::string> uids_unused;
  std::map<std::string, Setter, std::less<>> s{
      {"id", str_to(a.id)},
      {"name", str_to(a.name)},
      {"access_key_id", str_to(a.access_key_id)},
      {"secret_access_key", str_to(a.secret_access_key)},
      {"allowed_capabilities", strings_to(a.allowed_capabilities)},
      {"max_vcpu", units_to(a.max_cpu_units, "vCPU")},
      {"max_memory_gb", units_to(a.max_memory_mib, "GiB")},
      {"spending_cap_usd", price_to(a.spending_cap_micro_usd)},
      {"pricing_mode", mode_to(a.pricing_mode)},
      {"unix_uids",
       [&a](const Reader& rr, const toml::node& n, std::string_view k) -> Result<void> {
         const auto* arr = n.as_array();
         if (arr == nullptr) return bad(rr.origin, k, "expected an array of uids");
         for (size_t i = 0; i < arr->size(); ++i) {
           int64_t v = 0;
           BERTH_TRY(rr.integer(*arr->get(i), fmt::format("{}[{}]", k, i), v));
           if (v < 0 || v > 0xfffffffe) return bad(rr.origin, k, "{} is not a uid", v);
           a.unix_uids.push_back(static_cast<uint32_t>(v));
         }
         return {};
       }},
  };
  return apply_table(r, t, key, s);
}

Result<void> read_registry(const Reader& r, const toml::table& t, std::string_view key,
                           RegistryConfig& g) {
  std::map<std::string, Setter, std::less<>> s{
      {"host", str_to(g.host)},
      {"ca_file", str_to(g.ca_file)},
      {"client_cert", str_to(g.client_cert)},
      {"client_key", str_to(g.client_key)},
      {"mirrors", strings_to(g.mirrors)},
      {"insecure", bool_to(g.insecure)},
  };
  return apply_table(r, t, key, s);
}

Result<void> read_credential(const Reader& r, const toml::table& t, std::string_view key,
                             RegistryCredential& c) {
  std::map<std::string, Setter, std::less<>> s{
      {"name", str_to(c.name)},
      {"username", str_to(c.username)},
      {"password", str_to(c.password)},
  };
  return apply_table(r, t, key, s);
}

Result<void> read_pricing(const Reader& r, const toml::node& n, std::string_view key,
                          PricingConfig& p) {
  BERTH_ASSIGN(const toml::table* t, r.table(n, key));
  std::map<std::string, Setter, std::less<>> s{
      {"vcpu_per_hour_usd", price_to(p.vcpu_hour_micro_usd)},
      {"gb_per_hour_usd", price_to(p.gb_hour_micro_usd)},
      {"minimum_seconds", int_to(p.minimum_seconds)},
      {"mode",
       [&p](const Reader& rr, const toml::node& n, std::string_view k) -> Result<void> {
         std::string m;
         BERTH_TRY(mode_to(m)(rr, n, k));
         p.mode = *parse_pricing_mode(m);
         return {};
       }},
      {"cpu_used_per_hour_usd", price_to(p.cpu_used_hour_micro_usd)},
      {"gb_used_per_hour_usd", price_to(p.gb_used_hour_micro_usd)},
      {"checkpoint_seconds", int_to(p.checkpoint_seconds)},
      {"period_seconds", int_to(p.period_seconds)},
  };
  return apply_table(r, *t, key, s);
}

Result<void> read_services(const Reader& r, const toml::node& n, std::string_view key,
                           Config::Services& v) {
  BERTH_ASSIGN(const toml::table* t, r.table(n, key));
  std::map<std::string, Setter, std::less<>> s{
      {"backoff_base_seconds", int_to(v.backoff_base_seconds)},
      {"backoff_cap_seconds", int_to(v.backoff_cap_seconds)},
      {"resync_ms", int_to(v.resync_ms)},
      {"stable_seconds", int_to(v.stable_seconds)},
  };
  return apply_table(r, *t, key, s);
}

bool is_name(const std::string& s, size_t max) {
  return !s.empty() && s.size() <= max && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_';
  });
}

Result<void> check_accounts(const std::vector<Account>& accounts) {
  std::set<std::string> ids, keys;
  std::set<uint32_t> uids;
  for (size_t i = 0; i < accounts.size(); ++i) {
    const Account& a = accounts[i];
    std::string where = fmt::format("accounts[{}]", i);
    if (a.id.size() != 12 ||
        !std::all_of(a.id.begin(), a.id.end(), [](unsigned char c) { return std::isdigit(c); })) {
      return bad("config", where + ".id", "{:?} is not a 12-digit account id", a.id);
    }
    if (!ids.insert(a.id).second) return bad("config", where + ".id", "{} appears twice", a.id);
    if (a.access_key_id.empty() != a.secret_access_key.empty()) {
      return bad("config", where, "access_key_id and secret_access_key go together");
    }
    if (!a.access_key_id.empty() && !keys.insert(a.access_key_id).second) {
      return bad("config", where + ".access_key_id", "{} belongs to two accounts", a.access_key_id);
    }
    for (uint32_t uid : a.unix_uids) {
      if (!uids.insert(uid).second) {
        return bad("config", where + ".unix_uids", "uid {} is mapped to two accounts", uid);
      }
    }
  }
  return {};
}

}  // namespace

Account default_account() {
  Account a;
  a.id = "000000000000";
  a.name = "default";
  a.unix_uids = {0};
  return a;
}

Result<Config> parse_config(std::string_view text, std::string_view origin, Config c) {
  toml::parse_result parsed = toml::parse(text, origin);
  if (!parsed) {
    const auto& e = parsed.error();
    return kind_error(ErrorKind::invalid, kStep, "{}:{}:{}: {}", origin, e.source().begin.line,
                      e.source().begin.column, e.description());
  }
  Reader r{origin};
  std::map<std::string, Setter, std::less<>> s{
      {"state_dir", str_to(c.state_dir)},
      {"run_dir", str_to(c.run_dir)},
      {"listen", str_to(c.listen)},
      {"bridge", str_to(c.bridge)},
      {"subnet", str_to(c.subnet)},
      {"cgroup_name", str_to(c.cgroup_name)},
      {"nft_table", str_to(c.nft_table)},
      {"link_prefix", str_to(c.link_prefix)},
      {"images_dir", str_to(c.images_dir)},
      {"warm_pool", int_to(c.warm_pool)},
      {"region", str_to(c.region)},
      {"io_threads", int_to(c.io_threads)},
      {"worker_threads", int_to(c.worker_threads)},
      {"cpu_units", int64_to(c.cpu_units)},
      {"memory_mib", int64_to(c.memory_mib)},
      {"log_level", str_to(c.log_level)},
      {"socket_group", str_to(c.socket_group)},
      {"insecure_registries", strings_to(c.insecure_registries)},
      {"accounts", table_array_to<Account>(c.accounts, read_account)},
      {"registries", table_array_to<RegistryConfig>(c.registries, read_registry)},
      {"credentials", table_array_to<RegistryCredential>(c.credentials, read_credential)},
      {"pricing", [&c](const Reader& rr, const toml::node& n,
                       std::string_view k) { return read_pricing(rr, n, k, c.pricing); }},
      {"services", [&c](const Reader& rr, const toml::node& n,
                        std::string_view k) { return read_services(rr, n, k, c.services); }},
  };
  BERTH_TRY(apply_table(r, parsed.table(), "", s));
  return c;
}

Result<Config> load_config_file(const std::string& path, Config base) {
  BERTH_ASSIGN(std::string text, fs::read_file(path));
  return parse_config(text, path, std::move(base));
}

Result<Config> finish_config(Config c) {
  auto abs = [](std::string_view key, const std::string& v) -> Result<void> {
    if (!v.starts_with('/')) return bad("config", key, "must be an absolute path, got {:?}", v);
    return {};
  };
  BERTH_TRY(abs("state_dir", c.state_dir));
  BERTH_TRY(abs("run_dir", c.run_dir));
  if (c.images_dir.empty()) c.images_dir = "/var/lib/berth/rootfs";
  BERTH_TRY(abs("images_dir", c.images_dir));
  // sun_path holds 108 bytes with the NUL.
  if (c.socket_path().size() > 107) {
    return bad("config", "run_dir", "{} makes a socket path longer than 107 bytes", c.run_dir);
  }
  if (!is_name(c.bridge, 15)) return bad("config", "bridge", "{:?} is not a link name", c.bridge);
  if (!is_name(c.cgroup_name, 64)) {
    return bad("config", "cgroup_name", "{:?} is not 1-64 of [A-Za-z0-9_-]", c.cgroup_name);
  }
  if (!is_name(c.nft_table, 64)) {
    return bad("config", "nft_table", "{:?} is not 1-64 of [A-Za-z0-9_-]", c.nft_table);
  }
  if (auto net = netns::Ipv4Net::parse(c.subnet); !net) {
    return bad("config", "subnet", "{}", net.error().message);
  }
  if (c.link_prefix.empty()) {
    // One char past the bridge name's first 7, ending in a non-hex char, so
    // one instance's prefix never extends another's (netns/network.h).
    c.link_prefix = c.bridge.substr(0, 7) + "z";
  }
  if (c.warm_pool < 0 || c.warm_pool > 1000) {
    return bad("config", "warm_pool", "{} is out of range 0..1000", c.warm_pool);
  }
  if (c.io_threads < 1 || c.io_threads > 64) {
    return bad("config", "io_threads", "{} is out of range 1..64", c.io_threads);
  }
  if (c.worker_threads < 1 || c.worker_threads > 256) {
    return bad("config", "worker_threads", "{} is out of range 1..256", c.worker_threads);
  }
  if (c.region.empty()) return bad("config", "region", "must not be empty");
  if (c.pricing.minimum_seconds < 0 || c.pricing.minimum_seconds > 86400) {
    return bad("config", "pricing.minimum_seconds", "{} is out of range 0..86400",
               c.pricing.minimum_seconds);
  }
  if (c.services.backoff_base_seconds < 1 || c.services.backoff_base_seconds > 3600) {
    return bad("config", "services.backoff_base_seconds", "{} is out of range 1..3600",
               c.services.backoff_base_seconds);
  }
  if (c.services.backoff_cap_seconds < c.services.backoff_base_seconds ||
      c.services.backoff_cap_seconds > 86400) {
    return bad("config", "services.backoff_cap_seconds",
               "{} is out of range backoff_base_seconds..86400", c.services.backoff_cap_seconds);
  }
  if (c.services.stable_seconds < 0 || c.services.stable_seconds > 3600) {
    return bad("config", "services.stable_seconds", "{} is out of range 0..3600",
               c.services.stable_seconds);
  }
  if (c.services.resync_ms < 100 || c.services.resync_ms > 600000) {
    return bad("config", "services.resync_ms", "{} is out of range 100..600000",
               c.services.resync_ms);
  }
  if (c.pricing.checkpoint_seconds < 1 || c.pricing.checkpoint_seconds > 3600) {
    return bad("config", "pricing.checkpoint_seconds", "{} is out of range 1..3600",
               c.pricing.checkpoint_seconds);
  }
  // Periods divide a day, so no record crosses a UTC midnight and "by day"
  // is exact.
  if (c.pricing.period_seconds < 60 || 86400 % c.pricing.period_seconds != 0) {
    return bad("config", "pricing.period_seconds",
               "{} must be at least 60 and divide 86400 (a day) evenly", c.pricing.period_seconds);
  }
  if (c.accounts.empty()) c.accounts.push_back(default_account());
  BERTH_TRY(check_accounts(c.accounts));
  return c;
}

}  // namespace berth::cp
