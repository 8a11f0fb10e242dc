// The berth CLI's HTTP client: libcurl to berthd over its unix socket
// (CURLOPT_UNIX_SOCKET_PATH) or TCP, SigV4-signed on TCP when credentials are
// in the environment. Responses are checked here: an HTTP error becomes the
// ECS error it carries ("InvalidParameterException: message").
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmd/berth/sigv4_sign.h"
#include "common/error.h"

namespace berth::cli {

inline constexpr const char* kDefaultHost = "unix:///run/berth/berthd.sock";

struct Endpoint {
  std::string display;      // as the user wrote it, for messages
  std::string unix_socket;  // set for unix://PATH (or a bare /path)
  std::string base_url;     // "http://berth" on the socket, "http://HOST:PORT" on TCP
  std::string authority;    // the Host header: "berth", "127.0.0.1:8080"
};

// unix:///run/berth/berthd.sock, /run/berth/berthd.sock, http://HOST[:PORT],
// https://HOST[:PORT]; anything else is a usage error.
Result<Endpoint> parse_host(std::string_view host);

// BERTH_ACCESS_KEY_ID / BERTH_SECRET_ACCESS_KEY / BERTH_SESSION_TOKEN, else
// the AWS_* names; the region from BERTH_REGION, AWS_REGION or
// AWS_DEFAULT_REGION (default us-east-1). nullopt without a key pair.
std::optional<Credentials> credentials_from_env();

// The error an HTTP error answer carries: the ECS shape {"__type": "...#Name",
// "message"|"Message": "..."} gives Error{step: Name, message}; another body
// gives "HTTP <status>: <first line of the body>".
Error response_error(long status, std::string_view body);

struct Response {
  long status = 0;
  std::string body;
};

class Client {
 public:
  Client(Endpoint endpoint, std::optional<Credentials> credentials)
      : endpoint_(std::move(endpoint)), credentials_(std::move(credentials)) {}

  const Endpoint& endpoint() const { return endpoint_; }

  // One request; the error is a transport failure (no answer), never an
  // HTTP status.
  Result<Response> send(const std::string& method, const std::string& path,
                        const QueryParams& query, const std::string& body,
                        const std::vector<std::pair<std::string, std::string>>& headers);

  // An ECS operation (POST / with X-Amz-Target): the parsed answer, or the
  // ECS error it returned.
  Result<nlohmann::json> ecs(std::string_view operation, const nlohmann::json& input);

  // A native /v1 endpoint with a JSON answer.
  Result<nlohmann::json> native(const std::string& method, const std::string& path,
                                const QueryParams& query = {}, const std::string& body = {});

  // GET of a streamed body: `sink` gets each chunk as it arrives (return
  // false to stop). An HTTP error status becomes its ECS error.
  Result<void> stream(const std::string& path, const QueryParams& query,
                      const std::function<bool(std::string_view)>& sink);

 private:
  Result<Response> perform(const std::string& method, const std::string& path,
                           const QueryParams& query, const std::string& body,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           const std::function<bool(std::string_view)>* sink);
  Error connect_error(const std::string& curl_message) const;
  Error answer_error(const Response& r) const;

  Endpoint endpoint_;
  std::optional<Credentials> credentials_;
};

}  // namespace berth::cli
