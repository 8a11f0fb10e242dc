#include "cmd/berth/client.h"

#include <curl/curl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/fd.h"
#include "common/json.h"
#include "common/json_reader.h"

namespace berth::cli {
namespace {

using json = nlohmann::json;

constexpr long kConnectTimeoutSeconds = 10;
// RunTask may pull an image before it answers.
constexpr long kRequestTimeoutSeconds = 600;

const char* env(const char* a, const char* b) {
  if (const char* v = std::getenv(a); v != nullptr && *v != '\0') return v;
  if (const char* v = std::getenv(b); v != nullptr && *v != '\0') return v;
  return nullptr;
}

struct Transfer {
  CURL* curl = nullptr;
  std::string body;
  const std::function<bool(std::string_view)>* sink = nullptr;
  bool stopped = false;  // the sink asked to stop: not an error
};

size_t on_data(char* p, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  // An error answer is read whole, whatever the caller streams.
  if (t->sink == nullptr || status >= 400) {
    t->body.append(p, len);
    return len;
  }
  if (!(*t->sink)(std::string_view(p, len))) {
    t->stopped = true;
    return 0;
  }
  return len;
}

// Why connecting to the socket fails, as errno says it: curl only says
// "Couldn't connect to server".
std::string probe_unix_socket(const std::string& path) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return std::strerror(errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return "socket path too long";
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return std::strerror(errno);
  return "";
}

std::string first_line(std::string_view s, size_t max = 200) {
  s = s.substr(0, s.find('\n'));
  return std::string(s.substr(0, max));
}

}  // namespace

Result<Endpoint> parse_host(std::string_view host) {
  Endpoint e{.display = std::string(host)};
  if (host.starts_with("unix://") || host.starts_with("/")) {
    std::string_view path = host.starts_with("/") ? host : host.substr(7);
    if (path.empty() || path[0] != '/')
      return kind_error(ErrorKind::invalid, "usage", "--host {}: the socket path must be absolute",
                        host);
    e.unix_socket = std::string(path);
    e.base_url = "http://berth";
    e.authority = "berth";
    return e;
  }
  for (std::string_view scheme : {"http://", "https://"}) {
    if (!host.starts_with(scheme)) continue;
    std::string_view rest = host.substr(scheme.size());
    while (rest.ends_with('/')) rest.remove_suffix(1);
    if (rest.empty() || rest.find('/') != std::string_view::npos)
      return kind_error(ErrorKind::invalid, "usage", "--host {}: expected {}HOST[:PORT]", host,
                        scheme);
    e.authority = std::string(rest);
    e.base_url = std::string(scheme) + e.authority;
    return e;
  }
  return kind_error(ErrorKind::invalid, "usage",
                    "--host {}: expected unix:///path/to/berthd.sock or http://HOST:PORT", host);
}

std::optional<Credentials> credentials_from_env() {
  const char* id = env("BERTH_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID");
  const char* secret = env("BERTH_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY");
  if (id == nullptr || secret == nullptr) return std::nullopt;
  Credentials c{.access_key_id = id, .secret_access_key = secret};
  if (const char* t = env("BERTH_SESSION_TOKEN", "AWS_SESSION_TOKEN")) c.session_token = t;
  if (const char* r = env("BERTH_REGION", "AWS_REGION")) {
    c.region = r;
  } else if (const char* d = std::getenv("AWS_DEFAULT_REGION"); d != nullptr && *d != '\0') {
    c.region = d;
  }
  return c;
}

Error response_error(long status, std::string_view body) {
  auto parsed = parse_json(body, "response");
  if (parsed && parsed->is_object()) {
    static constexpr jr::Document kDoc{"response", "response"};
    jr::Node root = jr::Node::root(*parsed, kDoc);
    std::string type, message;
    // Wrong types only leave the fields empty: this is already an error path.
    (void)jr::read(root.member("__type"), type);
    (void)jr::read(root.member("message"), message);
    if (message.empty()) (void)jr::read(root.member("Message"), message);
    if (size_t hash = type.rfind('#'); hash != std::string::npos) type.erase(0, hash + 1);
    if (!type.empty()) return Error{type, 0, message.empty() ? "(no message)" : message};
  }
  return Error{fmt::format("HTTP {}", status), 0,
               body.empty() ? "(empty answer)" : first_line(body)};
}

Error Client::connect_error(const std::string& curl_message) const {
  std::string why = curl_message;
  if (!endpoint_.unix_socket.empty()) {
    std::string probed = probe_unix_socket(endpoint_.unix_socket);
    if (!probed.empty()) why = fmt::format("{}: {}", endpoint_.unix_socket, probed);
  }
  return Error{fmt::format("cannot connect to berthd at {}", endpoint_.display), 0,
               fmt::format("{} (is berthd running?)", why)};
}

Error Client::answer_error(const Response& r) const {
  Error e = response_error(r.status, r.body);
  // The usual cause of a 403 on TCP: nothing was signed.
  if (r.status == 403 && !credentials_ && endpoint_.unix_socket.empty())
    e.message += " (no credentials: set BERTH_ACCESS_KEY_ID and BERTH_SECRET_ACCESS_KEY)";
  return e;
}

Result<Response> Client::perform(const std::string& method, const std::string& path,
                                 const QueryParams& query, const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 const std::function<bool(std::string_view)>* sink) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return error("http", "curl_easy_init failed");
  std::string qs = canonical_query(query);
  std::string url = endpoint_.base_url + uri_encode(path, true) + (qs.empty() ? "" : "?" + qs);

  std::vector<std::string> lines{"Host: " + endpoint_.authority, "Expect:"};
  for (const auto& [name, value] : headers) lines.push_back(name + ": " + value);
  if (credentials_ && endpoint_.unix_socket.empty()) {
    SigningRequest sr{method, endpoint_.authority, path, query, headers, body, amz_date_now()};
    for (auto& h : sigv4_headers(sr, *credentials_)) lines.push_back(std::move(h));
  }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> list(nullptr, curl_slist_free_all);
  for (const auto& l : lines) {
    curl_slist* next = curl_slist_append(list.get(), l.c_str());
    if (next == nullptr) return error("http", "curl_slist_append failed");
    (void)list.release();
    list.reset(next);
  }

  Transfer t{.curl = curl.get(), .sink = sink};
  char errbuf[CURL_ERROR_SIZE] = {};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  if (!endpoint_.unix_socket.empty())
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, endpoint_.unix_socket.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutSeconds);
  // A followed log stream lasts as long as the task.
  if (sink == nullptr) curl_easy_setopt(c, CURLOPT_TIMEOUT, kRequestTimeoutSeconds);

  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_WRITE_ERROR && t.stopped) rc = CURLE_OK;
  std::string msg = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
  if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
    return std::unexpected(connect_error(msg));
  if (rc != CURLE_OK) return error("http", "{} {}{}: {}", method, endpoint_.display, path, msg);
  Response r;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  r.body = std::move(t.body);
  return r;
}

Result<Response> Client::send(const std::string& method, const std::string& path,
                              const QueryParams& query, const std::string& body,
                              const std::vector<std::pair<std::string, std::string>>& headers) {
  return perform(method, path, query, body, headers, nullptr);
}

Result<json> Client::ecs(std::string_view operation, const json& input) {
  std::vector<std::pair<std::string, std::string>> headers{
      {"Content-Type", "application/x-amz-json-1.1"},
      {"X-Amz-Target", fmt::format("AmazonEC2ContainerServiceV20141113.{}", operation)}};
  BERTH_ASSIGN(Response r, send("POST", "/", {}, input.dump(), headers));
  if (r.status >= 400) return std::unexpected(answer_error(r));
  return parse_json(r.body, fmt::format("{} answer", operation));
}

Result<json> Client::native(const std::string& method, const std::string& path,
                            const QueryParams& query, const std::string& body) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  BERTH_ASSIGN(Response r, send(method, path, query, body, headers));
  if (r.status >= 400) return std::unexpected(answer_error(r));
  return parse_json(r.body, fmt::format("{} {} answer", method, path));
}

Result<void> Client::stream(const std::string& path, const QueryParams& query,
                            const std::function<bool(std::string_view)>& sink) {
  BERTH_ASSIGN(Response r, perform("GET", path, query, "", {}, &sink));
  if (r.status >= 400) return std::unexpected(answer_error(r));
  return {};
}

}  // namespace berth::cli
