// AWS Signature Version 4 (AWS4-HMAC-SHA256) verification, as AWS
// documents it and botocore signs: canonical request, string to sign, the
// derived key, a constant-time compare. Pure computation (OpenSSL EVP), no
// I/O: it runs on berthd's I/O threads.
//
// Errors carry the AWS exception name in Error::step, so the transport can
// answer them as they are (403, ECS shape):
//   MissingAuthenticationTokenException  no Authorization header
//   IncompleteSignatureException         a malformed Authorization header,
//                                        missing X-Amz-Date or signed header
//   InvalidSignatureException            wrong signature, stale date, a
//                                        credential scoped to another region
//                                        or service
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace berth::cp::sigv4 {

inline constexpr std::string_view kMissingToken = "MissingAuthenticationTokenException";
inline constexpr std::string_view kIncompleteSignature = "IncompleteSignatureException";
inline constexpr std::string_view kInvalidSignature = "InvalidSignatureException";

// What verification checks the request against.
struct Config {
  std::string region = "us-east-1";
  std::string service = "ecs";  // AWS's test-suite vectors use "service"
  std::chrono::seconds max_skew{15 * 60};
};

// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=AKID/20150830/
// us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=hex`.
// The three fields may come in any order; each exactly once.
struct Authorization {
  std::string access_key_id;
  std::string date;                         // YYYYMMDD of the credential scope
  std::string region;                       // of the credential scope
  std::string service;                      // of the credential scope
  std::vector<std::string> signed_headers;  // as the client listed them
  std::string signature;                    // lower-case hex
  std::string scope() const;                // date/region/service/aws4_request
};
Result<Authorization> parse_authorization(std::string_view header);

// The request as received. `target` is the request-target as sent (raw path
// and query, still percent-encoded); header names are lower-case and
// repeated headers are joined with ",".
struct Request {
  std::string_view method;
  std::string_view target;
  const std::map<std::string, std::string>* headers = nullptr;
  std::string_view body;
};

// The steps, exposed for the test vectors.
std::string hex_sha256(std::string_view data);
std::string canonical_uri(std::string_view raw_path);
Result<std::string> canonical_query(std::string_view raw_query);
Result<std::string> canonical_request(const Request& req, const Authorization& auth);
std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request);
// Hex HMAC-SHA256 of the string to sign with the key derived from `secret`.
std::string signature(std::string_view secret, std::string_view date, std::string_view region,
                      std::string_view service, std::string_view string_to_sign);

// Checks the signature of `req` (whose Authorization header was parsed into
// `auth`) with the access key's secret: scope (region, service), X-Amz-Date
// within max_skew of `now`, x-amz-content-sha256 (when sent) against the
// body, and the signature itself.
Result<void> verify(const Request& req, const Authorization& auth, std::string_view secret,
                    const Config& config, std::chrono::system_clock::time_point now);

}  // namespace berth::cp::sigv4
