#include "cmd/berth/sigv4_sign.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include <fmt/format.h>

namespace berth::cli {
namespace {

std::string hex(const unsigned char* p, size_t n) {
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) out += fmt::format("{:02x}", p[i]);
  return out;
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return hex(md, sizeof md);
}

std::string hmac(const std::string& key, const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string lower(std::string s) {
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// Sorted lower-case (name, value) pairs: host, x-amz-date, the token, and
// the request's own headers.
std::vector<std::pair<std::string, std::string>> signed_headers(const SigningRequest& r,
                                                                const Credentials& c) {
  std::vector<std::pair<std::string, std::string>> h{{"host", r.host}, {"x-amz-date", r.amz_date}};
  if (!c.session_token.empty()) h.emplace_back("x-amz-security-token", c.session_token);
  for (const auto& [name, value] : r.headers) h.emplace_back(lower(name), trim(value));
  std::ranges::sort(h);
  return h;
}

std::string canonical_request(const SigningRequest& r, const Credentials& c,
                              std::string* header_list) {
  std::string headers;
  for (const auto& [name, value] : signed_headers(r, c)) {
    headers += fmt::format("{}:{}\n", name, value);
    if (!header_list->empty()) *header_list += ';';
    *header_list += name;
  }
  return fmt::format("{}\n{}\n{}\n{}\n{}\n{}", r.method, uri_encode(r.path, true),
                     canonical_query(r.query), headers, *header_list, sha256_hex(r.body));
}

}  // namespace

std::string uri_encode(const std::string& s, bool keep_slash) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/'))
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string canonical_query(QueryParams query) {
  for (auto& [k, v] : query) {
    k = uri_encode(k, false);
    v = uri_encode(v, false);
  }
  std::ranges::sort(query);
  std::string out;
  for (const auto& [k, v] : query) out += fmt::format("{}{}={}", out.empty() ? "" : "&", k, v);
  return out;
}

std::string canonical_request(const SigningRequest& r) {
  std::string list;
  return canonical_request(r, Credentials{}, &list);
}

std::vector<std::string> sigv4_headers(const SigningRequest& r, const Credentials& c) {
  std::string list;
  std::string creq = canonical_request(r, c, &list);
  std::string date = r.amz_date.substr(0, 8);
  std::string scope = fmt::format("{}/{}/{}/aws4_request", date, c.region, r.service);
  std::string to_sign =
      fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", r.amz_date, scope, sha256_hex(creq));
  std::string key = hmac("AWS4" + c.secret_access_key, date);
  key = hmac(hmac(hmac(key, c.region), r.service), "aws4_request");
  std::string sig = hmac(key, to_sign);
  std::vector<std::string> out{
      "X-Amz-Date: " + r.amz_date,
      fmt::format("Authorization: AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, "
                  "Signature={}",
                  c.access_key_id, scope, list,
                  hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size()))};
  if (!c.session_token.empty()) out.push_back("X-Amz-Security-Token: " + c.session_token);
  return out;
}

std::string amz_date_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace berth::cli
