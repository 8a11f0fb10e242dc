#include "controlplane/api/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <optional>
#include <utility>

namespace berth::cp::sigv4 {
namespace {

template <class... Args>
std::unexpected<Error> fail(std::string_view exception, fmt::format_string<Args...> f,
                            Args&&... args) {
  return std::unexpected(Error{std::string(exception), 0,
                               fmt::format(f, std::forward<Args>(args)...), ErrorKind::invalid});
}

std::string to_hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 0xf]);
  }
  return out;
}

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// SigV4 header values: trimmed, runs of spaces collapsed to one.
std::string canonical_value(std::string_view v) {
  v = trim(v);
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\t') c = ' ';
    if (c == ' ' && !out.empty() && out.back() == ' ') continue;
    out.push_back(c);
  }
  return out;
}

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (unreserved(c) || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 0xf]);
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding of a query component; '+' stays '+' (SigV4 does not read
// it as a space).
Result<std::string> uri_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1;
    int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      return fail(kIncompleteSignature, "invalid percent-encoding in the query string: {}", s);
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

// YYYYMMDDTHHMMSSZ -> time point; nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> parse_amz_date(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  for (size_t i = 0; i < 15; ++i) {
    if (i != 8 && (s[i] < '0' || s[i] > '9')) return std::nullopt;
  }
  auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60) {
    return std::nullopt;
  }
  time_t t = timegm(&tm);
  return std::chrono::system_clock::from_time_t(t);
}

std::string format_amz_date(std::chrono::system_clock::time_point t) {
  time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

const std::string* find_header(const Request& req, const std::string& name) {
  if (req.headers == nullptr) return nullptr;
  auto it = req.headers->find(name);
  return it == req.headers->end() ? nullptr : &it->second;
}

}  // namespace

std::string Authorization::scope() const {
  return fmt::format("{}/{}/{}/aws4_request", date, region, service);
}

Result<Authorization> parse_authorization(std::string_view header) {
  constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
  header = trim(header);
  if (!header.starts_with(kAlgorithm) || header.size() == kAlgorithm.size() ||
      (header[kAlgorithm.size()] != ' ' && header[kAlgorithm.size()] != '\t')) {
    return fail(kIncompleteSignature,
                "Authorization header requires the algorithm AWS4-HMAC-SHA256, got '{}'",
                header.substr(0, header.find(' ')));
  }
  std::string_view rest = header.substr(kAlgorithm.size());
  std::optional<std::string_view> credential, signed_headers, sig;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view field = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    if (field.empty()) continue;
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) {
      return fail(kIncompleteSignature, "Authorization header field '{}' is not name=value", field);
    }
    std::string_view name = trim(field.substr(0, eq));
    std::string_view value = trim(field.substr(eq + 1));
    std::optional<std::string_view>* slot = name == "Credential"      ? &credential
                                            : name == "SignedHeaders" ? &signed_headers
                                            : name == "Signature"     ? &sig
                                                                      : nullptr;
    if (slot == nullptr) {
      return fail(kIncompleteSignature, "Authorization header has an unknown field '{}'", name);
    }
    if (slot->has_value()) {
      return fail(kIncompleteSignature, "Authorization header has '{}' twice", name);
    }
    *slot = value;
  }
  for (auto [name, slot] :
       {std::pair{"Credential", &credential}, std::pair{"SignedHeaders", &signed_headers},
        std::pair{"Signature", &sig}}) {
    if (!slot->has_value() || (*slot)->empty()) {
      return fail(kIncompleteSignature, "Authorization header requires a '{}' parameter", name);
    }
  }

  Authorization a;
  std::vector<std::string> parts;
  for (std::string_view c = *credential;;) {
    size_t slash = c.find('/');
    parts.emplace_back(c.substr(0, slash));
    if (slash == std::string_view::npos) break;
    c = c.substr(slash + 1);
  }
  if (parts.size() != 5 || parts[4] != "aws4_request") {
    return fail(kIncompleteSignature,
                "Credential '{}' is not AKID/YYYYMMDD/region/service/aws4_request", *credential);
  }
  for (const std::string& p : parts) {
    if (p.empty()) {
      return fail(kIncompleteSignature, "Credential '{}' has an empty part", *credential);
    }
  }
  a.access_key_id = parts[0];
  a.date = parts[1];
  a.region = parts[2];
  a.service = parts[3];
  if (a.date.size() != 8 ||
      !std::all_of(a.date.begin(), a.date.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return fail(kIncompleteSignature, "Credential date '{}' is not YYYYMMDD", a.date);
  }

  for (std::string_view h = *signed_headers;;) {
    size_t semi = h.find(';');
    std::string name(h.substr(0, semi));
    if (name.empty()) {
      return fail(kIncompleteSignature, "SignedHeaders '{}' has an empty name", *signed_headers);
    }
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    a.signed_headers.push_back(std::move(name));
    if (semi == std::string_view::npos) break;
    h = h.substr(semi + 1);
  }

  std::string s(*sig);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (s.size() != 64 ||
      !std::all_of(s.begin(), s.end(), [](char ch) { return hex_value(ch) >= 0; })) {
    return fail(kIncompleteSignature, "Signature '{}' is not 64 hex digits", *sig);
  }
  a.signature = std::move(s);
  return a;
}

std::string hex_sha256(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  return to_hex(out, len);
}

std::string canonical_uri(std::string_view raw_path) {
  if (raw_path.empty()) return "/";
  // The path as sent (still percent-encoded) is encoded once more, as
  // botocore does for every service but S3.
  return uri_encode(raw_path, true);
}

Result<std::string> canonical_query(std::string_view raw_query) {
  std::vector<std::pair<std::string, std::string>> params;
  while (!raw_query.empty()) {
    size_t amp = raw_query.find('&');
    std::string_view item = raw_query.substr(0, amp);
    raw_query = amp == std::string_view::npos ? std::string_view{} : raw_query.substr(amp + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    BERTH_ASSIGN(std::string key, uri_decode(item.substr(0, eq)));
    std::string value;
    if (eq != std::string_view::npos) {
      BERTH_ASSIGN(value, uri_decode(item.substr(eq + 1)));
    }
    params.emplace_back(uri_encode(key, false), uri_encode(value, false));
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out.push_back('&');
    out += k;
    out.push_back('=');
    out += v;
  }
  return out;
}

Result<std::string> canonical_request(const Request& req, const Authorization& auth) {
  std::string_view target = req.target;
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  BERTH_ASSIGN(std::string cquery, canonical_query(query));

  std::string out;
  out.reserve(512);
  out += req.method;
  out.push_back('\n');
  out += canonical_uri(path);
  out.push_back('\n');
  out += cquery;
  out.push_back('\n');
  std::string signed_list;
  for (const std::string& name : auth.signed_headers) {
    const std::string* value = find_header(req, name);
    if (value == nullptr) {
      return fail(kIncompleteSignature, "signed header '{}' is not in the request", name);
    }
    out += name;
    out.push_back(':');
    out += canonical_value(*value);
    out.push_back('\n');
    if (!signed_list.empty()) signed_list.push_back(';');
    signed_list += name;
  }
  out.push_back('\n');
  out += signed_list;
  out.push_back('\n');
  const std::string* content_hash = find_header(req, "x-amz-content-sha256");
  out += content_hash != nullptr ? *content_hash : hex_sha256(req.body);
  return out;
}

std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request) {
  return fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", amz_date, scope,
                     hex_sha256(canonical_request));
}

std::string signature(std::string_view secret, std::string_view date, std::string_view region,
                      std::string_view service, std::string_view string_to_sign) {
  std::string key = hmac(fmt::format("AWS4{}", secret), date);
  key = hmac(key, region);
  key = hmac(key, service);
  key = hmac(key, "aws4_request");
  std::string mac = hmac(key, string_to_sign);
  return to_hex(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
}

Result<void> verify(const Request& req, const Authorization& auth, std::string_view secret,
                    const Config& config, std::chrono::system_clock::time_point now) {
  if (auth.region != config.region) {
    return fail(kInvalidSignature,
                "Credential should be scoped to a valid region: this endpoint serves '{}', the "
                "request was signed for '{}'",
                config.region, auth.region);
  }
  if (auth.service != config.service) {
    return fail(kInvalidSignature,
                "Credential should be scoped to correct service: '{}' (the request was signed for "
                "'{}')",
                config.service, auth.service);
  }
  const std::string* amz_date = find_header(req, "x-amz-date");
  if (amz_date == nullptr) {
    return fail(kIncompleteSignature, "the request has no X-Amz-Date header");
  }
  auto when = parse_amz_date(*amz_date);
  if (!when) {
    return fail(kIncompleteSignature, "X-Amz-Date '{}' is not YYYYMMDDTHHMMSSZ", *amz_date);
  }
  if (!amz_date->starts_with(auth.date)) {
    return fail(kInvalidSignature, "Credential date {} does not match X-Amz-Date {}", auth.date,
                *amz_date);
  }
  if (std::find(auth.signed_headers.begin(), auth.signed_headers.end(), "host") ==
      auth.signed_headers.end()) {
    return fail(kIncompleteSignature, "SignedHeaders must include 'host'");
  }
  if (*when < now - config.max_skew) {
    return fail(kInvalidSignature, "Signature expired: {} is now earlier than {} ({} - {} min.)",
                *amz_date, format_amz_date(now - config.max_skew), format_amz_date(now),
                config.max_skew.count() / 60);
  }
  if (*when > now + config.max_skew) {
    return fail(kInvalidSignature,
                "Signature not yet current: {} is still later than {} ({} + {} min.)", *amz_date,
                format_amz_date(now + config.max_skew), format_amz_date(now),
                config.max_skew.count() / 60);
  }
  // The signature covers the claimed payload hash; the body must match it.
  if (const std::string* claimed = find_header(req, "x-amz-content-sha256")) {
    if (*claimed != hex_sha256(req.body)) {
      return fail(kInvalidSignature,
                  "The provided x-amz-content-sha256 header does not match what was computed.");
    }
  }
  BERTH_ASSIGN(std::string creq, canonical_request(req, auth));
  std::string sts = string_to_sign(*amz_date, auth.scope(), creq);
  std::string expected = signature(secret, auth.date, auth.region, auth.service, sts);
  if (expected.size() != auth.signature.size() ||
      CRYPTO_memcmp(expected.data(), auth.signature.data(), expected.size()) != 0) {
    return fail(kInvalidSignature,
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.");
  }
  return {};
}

}  // namespace berth::cp::sigv4
