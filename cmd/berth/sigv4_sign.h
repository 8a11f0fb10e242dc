// AWS Signature Version 4 for the berth CLI's requests to berthd's TCP
// listener (docs/ECS-API.md "Authentication"). The daemon's verifier lives in
// controlplane/api/sigv4.*, which the CLI does not link (it would pull in the
// whole daemon); this is the signing half only, as botocore computes it.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace berth::cli {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty unless temporary credentials
  std::string region = "us-east-1";
};

using QueryParams = std::vector<std::pair<std::string, std::string>>;

struct SigningRequest {
  std::string method;  // "GET", "POST", "DELETE"
  std::string host;    // the Host header: "127.0.0.1:8080" (port when not default)
  std::string path;    // "/", "/v1/tasks/abc" (not encoded)
  QueryParams query;   // not encoded
  // Headers to sign besides host and x-amz-date ("content-type",
  // "x-amz-target"), names in any case.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string amz_date;  // "20150830T123600Z"
  std::string service = "ecs";
};

// RFC 3986 percent-encoding of all but the unreserved characters, as SigV4
// wants it; '/' is kept when `keep_slash` (paths).
std::string uri_encode(const std::string& s, bool keep_slash);
// "a=1&b=2": keys sorted, then values, both encoded (SigV4's canonical query
// string, also used to build the URL so that both agree).
std::string canonical_query(QueryParams query);

std::string canonical_request(const SigningRequest& r);
// The headers to add: "X-Amz-Date: ...", "Authorization: AWS4-HMAC-SHA256 ...",
// and "X-Amz-Security-Token: ..." with a session token.
std::vector<std::string> sigv4_headers(const SigningRequest& r, const Credentials& c);

// "YYYYMMDDTHHMMSSZ" of the current UTC time.
std::string amz_date_now();

}  // namespace berth::cli
