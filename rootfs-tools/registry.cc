// The registry client: the distribution API v2 over libcurl, in four layers.
//
//   ChallengeParser   WWW-Authenticate (RFC 7235), pure
//   HttpClient        one curl easy handle: GET, manual redirects (so that
//                     credentials never leave the registry's origin), body
//                     to memory or to a sink
//   Session           one pull's registry: URLs, the 401 challenge flow with
//                     its token cache, retries, progress, statistics
//   BlobFetcher       config + layers in parallel, each into a resumable
//                     partial file under the per-digest lock, verified, then
//                     renamed into the blob store
//
// pull() reads like the recipe: store lock, manifest (via the index), blobs,
// ImageStore::add.
#include "rootfs-tools/registry.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <nettle/base64.h>
#include <nettle/sha2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <pthread.h>

#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"

namespace berth::rootfs {

namespace {

using Json = nlohmann::json;  // read with find()/is_*() only: built with JSON_NOEXCEPTION
using Phase = ProgressEvent::Phase;

constexpr std::string_view kStep = "registry";
constexpr size_t kMaxTokenBytes = 1 << 20;
constexpr size_t kMaxErrorBodyBytes = 64 << 10;
constexpr int kMaxRedirects = 10;
// Progress events of a download at most this often (plus the last one).
constexpr auto kProgressInterval = std::chrono::milliseconds(100);

// ---- strings ------------------------------------------------------------------------------------

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(kSpace);
  return s.substr(b, e - b + 1);
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 7230 tchar.
bool is_tchar(char c) {
  return is_alnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// RFC 7235 token68 characters (before the trailing '=' padding).
bool is_token68_char(char c) {
  return is_alnum(c) || std::string_view("-._~+/").find(c) != std::string_view::npos;
}

// RFC 7230 qdtext and the second byte of a quoted-pair: anything but the
// control characters (HTAB allowed).
bool is_quotable(char c) {
  auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

std::string basic_authorization(const Credentials& c) {
  std::string plain = c.username + ":" + c.password;
  std::string encoded(BASE64_ENCODE_RAW_LENGTH(plain.size()), '\0');
  base64_encode_raw(encoded.data(), plain.size(), reinterpret_cast<const uint8_t*>(plain.data()));
  return "Basic " + encoded;
}

// ---- WWW-Authenticate ---------------------------------------------------------------------------

// RFC 7235 section 4.1:
//   WWW-Authenticate = 1#challenge
//   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//   auth-param  = token BWS "=" BWS ( token / quoted-string )
// A comma separates both challenges and the parameters of one challenge; what
// follows a comma is a parameter when it reads `token BWS "="`, else the
// scheme of the next challenge. Empty list elements (",,") are allowed. A
// token68 is kept under the empty key, which no parameter name can have.
class ChallengeParser {
 public:
  explicit ChallengeParser(std::string_view text) : text_(text) {}

  Result<std::vector<Challenge>> parse() {
    std::vector<Challenge> out;
    skip_separators();
    while (!at_end()) {
      BERTH_ASSIGN(Challenge c, challenge());
      out.push_back(std::move(c));
      skip_ows();
      if (!at_end() && peek() != ',') return fail("expected ',' before the next challenge");
      skip_separators();
    }
    if (out.empty()) return fail("no challenge");
    return out;
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }

  void skip_ows() {
    while (!at_end() && (peek() == ' ' || peek() == '\t')) ++pos_;
  }
  void skip_separators() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == ',')) ++pos_;
  }

  std::string_view token() {
    size_t start = pos_;
    while (!at_end() && is_tchar(peek())) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  std::unexpected<Error> fail(std::string_view why) const {
    return error(kStep, "WWW-Authenticate {:?}: {} at offset {}", text_, why, pos_);
  }

  Result<Challenge> challenge() {
    Challenge c;
    c.scheme = std::string(token());
    if (c.scheme.empty()) return fail("expected an auth scheme");
    size_t after_scheme = pos_;
    skip_ows();
    if (at_end() || peek() == ',') return c;
    if (pos_ == after_scheme) return fail("expected a space after the auth scheme");
    if (token68(c)) return c;
    BERTH_TRY(params(c));
    return c;
  }

  // A token68 stands alone: the list element ends right after it.
  bool token68(Challenge& c) {
    size_t start = pos_;
    while (!at_end() && is_token68_char(peek())) ++pos_;
    if (pos_ == start) return false;
    while (!at_end() && peek() == '=') ++pos_;
    size_t end = pos_;
    skip_ows();
    if (at_end() || peek() == ',') {
      c.params[""] = std::string(text_.substr(start, end - start));
      return true;
    }
    pos_ = start;
    return false;
  }

  // Looks ahead: does a parameter (`token BWS "="`) start here?
  bool at_param() {
    size_t save = pos_;
    bool yes = !token().empty();
    skip_ows();
    yes = yes && !at_end() && peek() == '=';
    pos_ = save;
    return yes;
  }

  Result<void> params(Challenge& c) {
    for (;;) {
      std::string name = to_lower(token());
      if (name.empty()) return fail("expected a parameter name");
      skip_ows();
      if (at_end() || peek() != '=') return fail(fmt::format("expected '=' after {:?}", name));
      ++pos_;
      skip_ows();
      std::string value;
      if (!at_end() && peek() == '"') {
        BERTH_ASSIGN(value, quoted_string());
      } else {
        value = std::string(token());
        if (value.empty()) return fail(fmt::format("parameter {:?} has no value", name));
      }
      if (!c.params.emplace(name, std::move(value)).second) {
        return fail(fmt::format("parameter {:?} given twice", name));
      }
      size_t before_comma = pos_;
      skip_ows();
      if (at_end()) return {};
      if (peek() != ',') return fail(fmt::format("expected ',' after parameter {:?}", name));
      skip_separators();
      if (at_end()) return {};
      if (!at_param()) {
        pos_ = before_comma;  // the next challenge's scheme: parse() takes the comma
        return {};
      }
    }
  }

  Result<std::string> quoted_string() {
    size_t open = pos_++;
    std::string out;
    while (!at_end()) {
      char c = text_[pos_++];
      if (c == '"') return out;
      if (c == '\\') {
        if (at_end()) break;
        c = text_[pos_++];
      }
      if (!is_quotable(c)) {
        --pos_;
        return fail("control character in a quoted string");
      }
      out += c;
    }
    pos_ = open;
    return fail("unterminated quoted string");
  }

  std::string_view text_;
  size_t pos_ = 0;
};

const Challenge* find_challenge(const std::vector<Challenge>& all, std::string_view scheme) {
  for (const Challenge& c : all) {
    if (iequals(c.scheme, scheme)) return &c;
  }
  return nullptr;
}

std::string param(const Challenge& c, const std::string& key) {
  auto it = c.params.find(key);
  return it == c.params.end() ? std::string() : it->second;
}

// ---- libcurl ------------------------------------------------------------------------------------

void curl_global_once() {
  // curl_global_init is not thread-safe against other libcurl calls; it runs
  // once, before the first handle of the first pull.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlCleanup {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlCleanup>;

struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistFree>;

struct UrlCleanup {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

struct Origin {
  std::string scheme, host, port;
  bool operator==(const Origin&) const = default;
  // "host" or "host:port" as registries are named (the port only when not
  // the scheme's default).
  std::string host_port() const {
    bool default_port = (scheme == "http" && port == "80") || (scheme == "https" && port == "443");
    return default_port ? host : host + ":" + port;
  }
};

std::optional<Origin> origin_of(const std::string& url) {
  std::unique_ptr<CURLU, UrlCleanup> u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return std::nullopt;
  auto part = [&](CURLUPart which, unsigned flags) -> std::optional<std::string> {
    char* p = nullptr;
    if (curl_url_get(u.get(), which, &p, flags) != CURLUE_OK) return std::nullopt;
    std::string s(p);
    curl_free(p);
    return s;
  };
  auto scheme = part(CURLUPART_SCHEME, 0);
  auto host = part(CURLUPART_HOST, 0);
  auto port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!scheme || !host || !port) return std::nullopt;
  return Origin{to_lower(*scheme), to_lower(*host), *port};
}

bool same_origin(const std::string& a, const std::string& b) {
  auto x = origin_of(a), y = origin_of(b);
  return x && y && *x == *y;
}

// The system's hashed CA directory: with CURLOPT_CAINFO set to a host's own
// CA file, OpenSSL still finds the system CAs there (Debian's
// update-ca-certificates keeps it), so the file adds to the store.
constexpr const char* kSystemCaPath = "/etc/ssl/certs";

bool has_tls_settings(const RegistryHost& h) {
  return !h.ca_file.empty() || !h.client_cert.empty() || h.skip_verify;
}

// A registry host's settings on one request (after curl_easy_reset, which
// puts every one back to the defaults).
void apply_tls(CURL* c, const RegistryHost& h) {
  if (!h.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, h.ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_CAPATH, h.ca_only ? nullptr : kSystemCaPath);
  }
  if (!h.client_cert.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, h.client_cert.c_str());
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLKEY, h.client_key.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (h.skip_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

std::string url_escape(CURL* c, const std::string& s) {
  char* p = curl_easy_escape(c, s.data(), static_cast<int>(s.size()));
  if (p == nullptr) return s;
  std::string out(p);
  curl_free(p);
  return out;
}

bool is_transient(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool is_success(long status) {
  return status == 200 || status == 206;
}

// ---- HTTP ---------------------------------------------------------------------------------------

struct HttpResponse {
  long status = 0;
  std::string url;                             // the URL that answered (after redirects)
  std::map<std::string, std::string> headers;  // lowercase names; repeats joined by ", "
  std::string body;                            // unless a sink took it
  std::string location;                        // redirects: the absolute target

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Takes the body of a 200 / 206 response as it arrives. begin() sees the
// response's status and headers before the first byte.
struct BodySink {
  std::function<Result<void>(const HttpResponse&)> begin;
  std::function<Result<void>(std::string_view)> write;
};

struct HttpRequest {
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  // The Authorization value, sent to the origin of `url` only.
  std::string authorization;
  const BodySink* sink = nullptr;
  size_t max_body = 0;  // of a body kept in memory (PullOptions::max_manifest_bytes)
  long timeout_ms = 0;  // the whole request, 0: none
};

// The state libcurl's callbacks share with one perform.
struct Transfer {
  HttpResponse response;
  const BodySink* sink = nullptr;
  size_t max_body = 0;
  const std::atomic<bool>* cancel = nullptr;
  bool started = false;
  bool too_large = false;
  std::optional<Error> sink_error;

  Result<void> start_sink() {
    started = true;
    return sink->begin(response);
  }
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    // A new response (after a 100 Continue, or a proxy's CONNECT answer).
    t->response.headers.clear();
    size_t sp = line.find(' ');
    if (sp != std::string_view::npos) {
      std::string_view code = line.substr(sp + 1, 3);
      std::from_chars(code.data(), code.data() + code.size(), t->response.status);
    }
    return line.size();
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();
  std::string name = to_lower(trim(line.substr(0, colon)));
  std::string value(trim(line.substr(colon + 1)));
  auto [it, inserted] = t->response.headers.emplace(name, value);
  if (!inserted) it->second += ", " + value;
  return line.size();
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view chunk(data, size * n);
  bool success = is_success(t->response.status);
  if (t->sink != nullptr && success) {
    if (!t->started) {
      if (auto r = t->start_sink(); !r) {
        t->sink_error = r.error();
        return 0;
      }
    }
    if (auto r = t->sink->write(chunk); !r) {
      t->sink_error = r.error();
      return 0;
    }
    return chunk.size();
  }
  if (!success) {
    // An error document or a redirect's body: its start is all we use.
    size_t room = kMaxErrorBodyBytes - std::min(kMaxErrorBodyBytes, t->response.body.size());
    t->response.body.append(chunk.substr(0, room));
    return chunk.size();
  }
  if (t->response.body.size() + chunk.size() > t->max_body) {
    t->too_large = true;
    return 0;
  }
  t->response.body.append(chunk);
  return chunk.size();
}

int on_xferinfo(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return (t->cancel != nullptr && t->cancel->load()) ? 1 : 0;
}

// One curl easy handle (one per worker: a handle is not shared between
// threads); connections are kept alive across requests.
class HttpClient {
 public:
  HttpClient(const PullOptions& opts, const std::atomic<bool>* cancel)
      : hosts_(opts.hosts),
        connect_timeout_s_(opts.connect_timeout_s),
        min_speed_bytes_(opts.min_speed_bytes),
        min_speed_time_s_(opts.min_speed_time_s),
        cancel_(cancel),
        curl_(curl_easy_init()) {}

  CURL* handle() const { return curl_.get(); }
  // Whether the last failed get() might succeed when tried again.
  bool last_failure_transient() const { return transient_; }

  // GET, following redirects itself: libcurl would follow them too, but
  // here it is plain that the Authorization header goes to the origin of
  // req.url only. Blob GETs are commonly redirected to a storage host (S3, a
  // CDN) that must never see the registry's credentials or tokens.
  Result<HttpResponse> get(const HttpRequest& req) {
    transient_ = false;
    if (!curl_) return error(kStep, "GET {}: curl_easy_init failed", req.url);
    std::string url = req.url;
    for (int hop = 0; hop <= kMaxRedirects; ++hop) {
      std::vector<std::string> headers = req.headers;
      if (!req.authorization.empty() && same_origin(url, req.url)) {
        headers.push_back("Authorization: " + req.authorization);
      }
      BERTH_ASSIGN(HttpResponse r, perform(url, headers, req));
      if (!is_redirect(r.status)) return r;
      if (r.location.empty()) {
        return error(kStep, "GET {}: redirect ({}) without a Location", url, r.status);
      }
      auto target = origin_of(r.location);
      if (!target || (target->scheme != "http" && target->scheme != "https")) {
        return error(kStep, "GET {}: redirect to {:?}: only http and https are followed", url,
                     r.location);
      }
      url = r.location;
    }
    return error(kStep, "GET {}: more than {} redirects", req.url, kMaxRedirects);
  }

 private:
  Result<HttpResponse> perform(const std::string& url, const std::vector<std::string>& headers,
                               const HttpRequest& req) {
    CURL* c = curl_.get();
    curl_easy_reset(c);  // keeps the connection cache
    SlistPtr list;
    for (const std::string& h : headers) {
      curl_slist* grown = curl_slist_append(list.get(), h.c_str());
      if (grown == nullptr) return error(kStep, "GET {}: out of memory for headers", url);
      (void)list.release();
      list.reset(grown);
    }
    Transfer t{.sink = req.sink, .max_body = req.max_body, .cancel = cancel_};
    t.response.url = url;
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
    curl_easy_setopt(c, CURLOPT_USERAGENT, "berth/0.1");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    // Per host, like certs.d: whatever origin this request goes to (the
    // registry, its token realm, a storage host a blob is redirected to).
    if (auto origin = origin_of(url)) {
      if (const RegistryHost* h = find_registry_host(hosts_, origin->host_port())) apply_tls(c, *h);
    }
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, connect_timeout_s_);
    // A stalled or dripping transfer fails as transient (PullOptions::min_speed_*).
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, std::max(1L, min_speed_bytes_));
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, std::max(1L, min_speed_time_s_));
    if (req.timeout_ms > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req.timeout_ms);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);  // errbuf dies here

    if (t.sink_error) return std::unexpected(*t.sink_error);
    if (t.too_large) {
      return error(kStep, "GET {}: the response is larger than the limit of {} bytes", url,
                   req.max_body);
    }
    if (rc != CURLE_OK) {
      transient_ = is_transient(rc);
      if (rc == CURLE_ABORTED_BY_CALLBACK) return error(kStep, "GET {}: cancelled", url);
      if (rc == CURLE_OPERATION_TIMEDOUT) {
        return error(kStep,
                     "GET {}: {} (limits: at least {} bytes/s over {} s, a deadline of {} ms; "
                     "PullOptions::min_speed_*, blob_deadline_*)",
                     url, errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc),
                     std::max(1L, min_speed_bytes_), std::max(1L, min_speed_time_s_),
                     req.timeout_ms);
      }
      return error(kStep, "GET {}: {}", url, errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.response.status);
    if (req.sink != nullptr && is_success(t.response.status) && !t.started) {
      BERTH_TRY(t.start_sink());  // an empty body
    }
    if (is_redirect(t.response.status)) {
      char* location = nullptr;
      curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &location);
      if (location != nullptr) t.response.location = location;
    }
    return std::move(t.response);
  }

  const std::vector<RegistryHost>& hosts_;
  long connect_timeout_s_;
  long min_speed_bytes_;
  long min_speed_time_s_;
  const std::atomic<bool>* cancel_;
  CurlPtr curl_;
  bool transient_ = false;
};

// object[key] when it is a string, else null.
const std::string* string_field(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return (it != object.end() && it->is_string()) ? it->get_ptr<const std::string*>() : nullptr;
}

// The distribution spec's error document, {"errors":[{"code","message"}]},
// as ": CODE: message; ..." for an error message ("" when absent).

std::string registry_message(const std::string& body) {
  auto j = parse_json(body, "registry error");
  if (!j || !j->is_object()) return "";
  auto errors = j->find("errors");
  if (errors == j->end() || !errors->is_array()) return "";
  std::string out;
  for (const Json& e : *errors) {
    const std::string* code = string_field(e, "code");
    const std::string* message = string_field(e, "message");
    if (code == nullptr) continue;
    out += (out.empty() ? ": " : "; ") + *code;
    if (message != nullptr && !message->empty()) out += ": " + *message;
  }
  return out;
}

void backoff(int attempt) {
  // 250 ms, 500 ms, 1 s, ... capped at 4 s.
  auto delay = std::chrono::milliseconds(250) * (1 << std::min(attempt - 1, 4));
  std::this_thread::sleep_for(delay);
}

// ---- one pull's registry session ----------------------------------------------------------------

class Session {
 public:
  Session(const Reference& ref, const PullOptions& opts, const RegistryEndpoint& endpoint,
          std::atomic<bool>& cancel)
      : ref_(ref),
        opts_(opts),
        creds_(endpoint.credentials),
        cancel_(cancel),
        base_(endpoint.base_url),
        registry_(endpoint.host) {
    default_scope_ = "repository:" + ref.repository + ":pull";
  }

  const Reference& ref() const { return ref_; }
  const PullOptions& opts() const { return opts_; }
  // The registry this session talks to (a mirror's host for a mirror).
  const std::string& registry() const { return registry_; }
  std::string url(std::string_view tail) const {
    return fmt::format("{}/v2/{}/{}", base_, ref_.repository, tail);
  }
  HttpClient client() const { return HttpClient(opts_, &cancel_); }
  // The time a transfer of `bytes` may take (PullOptions::blob_deadline_*).
  std::chrono::milliseconds deadline_for(uint64_t bytes) const {
    uint64_t rate = std::max<uint64_t>(1, opts_.blob_deadline_rate);
    auto ms = static_cast<uint64_t>(std::max(0L, opts_.blob_deadline_base_s)) * 1000 +
              bytes / rate * 1000 + (bytes % rate) * 1000 / rate;
    return std::chrono::milliseconds(std::min<uint64_t>(ms, uint64_t{1} << 40));
  }
  // For requests without a sink: the size limit and the deadline of a
  // document.
  HttpRequest document_request(std::string url, std::vector<std::string> headers = {}) const {
    return HttpRequest{
        .url = std::move(url),
        .headers = std::move(headers),
        .max_body = opts_.max_manifest_bytes,
        .timeout_ms = static_cast<long>(deadline_for(opts_.max_manifest_bytes).count())};
  }
  bool cancelled() const { return cancel_.load(); }
  void cancel() { cancel_.store(true); }

  // GET with the challenge flow: anonymous (or with what an earlier 401
  // taught us), then once more after each 401 that can be answered.
  Result<HttpResponse> get(HttpClient& http, HttpRequest req) {
    constexpr int kRounds = 3;  // as is / authenticated / with a fresh token
    for (int round = 1;; ++round) {
      req.authorization = authorization();
      BERTH_ASSIGN(HttpResponse r, http.get(req));
      if (r.status != 401) return r;
      if (round == kRounds) return refused(r, req.authorization);
      BERTH_TRY(on_unauthorized(http, r, req.authorization));
    }
  }

  // get() with retries of transient failures (connection refused or reset,
  // 5xx, 429), for requests without a sink.
  Result<HttpResponse> get_retrying(HttpClient& http, const HttpRequest& req) {
    int attempts = std::max(1, opts_.attempts);
    for (int attempt = 1;; ++attempt) {
      auto r = get(http, req);
      bool again = r ? (r->status >= 500 || r->status == 429) : http.last_failure_transient();
      if (!again || attempt >= attempts || cancelled()) return r;
      backoff(attempt);
    }
  }

  void emit(const Digest& d, Phase phase, uint64_t current, uint64_t total,
            std::string message = {}) {
    if (!opts_.progress) return;
    std::lock_guard lock(progress_mu_);
    opts_.progress(ProgressEvent{short_id(d), phase, current, total, std::move(message)});
  }

  std::atomic<uint64_t> fetched{0}, present{0}, resumed{0}, bytes{0};
  PullStats stats() const { return {fetched.load(), present.load(), resumed.load(), bytes.load()}; }

 private:
  bool plain_http_allowed(const std::string& host_port) const {
    const auto& insecure = opts_.insecure_registries;
    const RegistryHost* h = find_registry_host(opts_.hosts, host_port);
    return is_loopback_registry(host_port) || (h != nullptr && h->insecure) ||
           std::find(insecure.begin(), insecure.end(), host_port) != insecure.end();
  }

  std::string authorization() {
    std::lock_guard lock(auth_mu_);
    switch (mode_) {
      case AuthMode::anonymous:
        return "";
      case AuthMode::basic:
        return basic_authorization(*creds_);
      case AuthMode::bearer:
        if (auto it = tokens_.find(scope_); it != tokens_.end()) return "Bearer " + it->second;
        return "";
    }
    return "";
  }

  Result<void> on_unauthorized(HttpClient& http, const HttpResponse& r, const std::string& sent) {
    std::string header = r.header("www-authenticate");
    if (header.empty()) {
      return error(kStep, "GET {}: 401 Unauthorized without a WWW-Authenticate challenge{}", r.url,
                   registry_message(r.body));
    }
    auto challenges = parse_www_authenticate(header);
    if (!challenges) return wrap(challenges.error(), fmt::format("GET {}: 401", r.url));
    if (const Challenge* c = find_challenge(*challenges, "Bearer")) {
      return on_bearer(http, *c, sent);
    }
    if (const Challenge* c = find_challenge(*challenges, "Basic")) return on_basic(*c, sent);
    return error(kStep, "registry {} asks for authentication berth does not speak: {}", registry(),
                 header);
  }

  Result<void> on_basic(const Challenge& c, const std::string& sent) {
    std::string realm = param(c, "realm");
    if (!creds_) {
      return error(kStep,
                   "registry {} requires authentication (Basic realm={:?}): give credentials",
                   registry(), realm);
    }
    if (sent.starts_with("Basic ")) {
      return error(kStep, "registry {} refused the credentials of user {:?} (Basic realm={:?})",
                   registry(), creds_->username, realm);
    }
    std::lock_guard lock(auth_mu_);
    mode_ = AuthMode::basic;
    return {};
  }

  // The token is fetched under auth_mu_, so that workers hitting the same
  // 401 at once fetch it once; a worker whose token was replaced meanwhile
  // just retries with the new one. A token refused again is fetched anew
  // once per request (they expire within minutes; Docker Hub's after 5).
  Result<void> on_bearer(HttpClient& http, const Challenge& c, const std::string& sent) {
    std::string realm = param(c, "realm");
    if (realm.empty()) {
      return error(kStep, "registry {}: Bearer challenge without a realm", registry());
    }
    std::string scope = param(c, "scope");
    if (scope.empty()) scope = default_scope_;
    std::lock_guard lock(auth_mu_);
    if (auto it = tokens_.find(scope); it != tokens_.end()) {
      if (sent != "Bearer " + it->second) {
        mode_ = AuthMode::bearer;
        scope_ = scope;
        return {};
      }
      tokens_.erase(it);
    }
    BERTH_ASSIGN(std::string token, fetch_token(http, realm, param(c, "service"), scope));
    tokens_[scope] = std::move(token);
    mode_ = AuthMode::bearer;
    scope_ = scope;
    return {};
  }

  Result<std::string> fetch_token(HttpClient& http, const std::string& realm,
                                  const std::string& service, const std::string& scope) {
    auto origin = origin_of(realm);
    if (!origin || (origin->scheme != "https" && origin->scheme != "http")) {
      return error(kStep, "registry {}: token realm {:?} is not an http(s) URL", registry(), realm);
    }
    const auto& creds = creds_;
    if (creds && origin->scheme == "http" && !plain_http_allowed(origin->host_port())) {
      return error(kStep,
                   "registry {}: token realm {} is plain http; refusing to send the credentials "
                   "of {:?} over it",
                   registry(), realm, creds->username);
    }
    std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
    if (!service.empty()) url += "service=" + url_escape(http.handle(), service) + "&";
    url += "scope=" + url_escape(http.handle(), scope);
    HttpRequest req{.url = url,
                    .headers = {"Accept: application/json"},
                    .authorization = creds ? basic_authorization(*creds) : "",
                    .max_body = kMaxTokenBytes,
                    .timeout_ms = static_cast<long>(deadline_for(kMaxTokenBytes).count())};
    BERTH_ASSIGN(HttpResponse r, http.get(req));
    if (r.status == 401 || r.status == 403) {
      if (!creds) {
        return error(kStep,
                     "registry {} requires authentication (Bearer realm={:?}): give credentials",
                     registry(), realm);
      }
      return error(kStep, "token server {} refused the credentials of user {:?}{}", realm,
                   creds->username, registry_message(r.body));
    }
    if (r.status != 200) {
      return error(kStep, "GET {}: the token server answered {}{}", url, r.status,
                   registry_message(r.body));
    }
    auto j = parse_json(r.body, "token server answer");
    if (!j) return wrap(j.error(), "GET " + url);
    for (const char* key : {"token", "access_token"}) {
      const std::string* token = string_field(*j, key);
      if (token != nullptr && !token->empty()) return *token;
    }
    return error(kStep, "GET {}: no \"token\" or \"access_token\" in the token server's answer",
                 url);
  }

  std::unexpected<Error> refused(const HttpResponse& r, const std::string& sent) const {
    std::string challenge = r.header("www-authenticate");
    if (!creds_) {
      return error(kStep,
                   "registry {} requires authentication ({}) for {}: give credentials (or the "
                   "repository does not exist)",
                   registry(), challenge, ref_.repository);
    }
    return error(kStep, "registry {} refused access to {} with the {} of user {:?} ({}){}",
                 registry(), ref_.repository, sent.starts_with("Bearer") ? "token" : "credentials",
                 creds_->username, challenge, registry_message(r.body));
  }

  enum class AuthMode { anonymous, basic, bearer };

  const Reference& ref_;
  const PullOptions& opts_;
  std::optional<Credentials> creds_;  // the endpoint's
  std::atomic<bool>& cancel_;
  std::string base_;      // "http://127.0.0.1:5000"
  std::string registry_;  // "127.0.0.1:5000"
  std::string default_scope_;

  std::mutex auth_mu_;
  AuthMode mode_ = AuthMode::anonymous;
  std::string scope_;                          // of the token in use
  std::map<std::string, std::string> tokens_;  // scope -> token

  std::mutex progress_mu_;  // events arrive one at a time
};

// ---- manifests ----------------------------------------------------------------------------------

struct Document {
  std::string body;
  Digest digest;
};

std::string media_type_of(const HttpResponse& r) {
  std::string type = r.header("content-type");
  return std::string(trim(std::string_view(type).substr(0, type.find(';'))));
}

// GET /v2/<repo>/manifests/<ref>. Verified against `expected` (a digest
// reference, an index entry) or else the Docker-Content-Digest header, and
// stored as a blob. `what` names the document in errors.
Result<Document> fetch_document(Session& s, HttpClient& http, const std::string& ref,
                                std::optional<Digest> expected, const std::string& what) {
  std::string accept = fmt::format("Accept: {}, {}, {}, {}", media::oci_index, media::docker_list,
                                   media::oci_manifest, media::docker_manifest);
  HttpRequest req = s.document_request(s.url("manifests/" + ref), {accept});
  BERTH_ASSIGN(HttpResponse r, s.get_retrying(http, req));
  if (r.status == 404) {
    return error(kStep, "{} not found in registry {}{}", what, s.registry(),
                 registry_message(r.body));
  }
  if (r.status != 200) {
    return error(kStep, "GET {}: {}{}", req.url, r.status, registry_message(r.body));
  }
  std::string type = media_type_of(r);
  if (type.starts_with("application/vnd.docker.distribution.manifest.v1")) {
    return error(kStep, "{}: registry {} serves a Docker schema 1 manifest ({}), not supported",
                 what, s.registry(), type);
  }
  if (!expected) {
    if (auto d = Digest::parse(r.header("docker-content-digest"))) expected = *d;
  }
  Digest actual = sha256_of(r.body);
  if (expected && actual != *expected) {
    return error(kStep, "{} from registry {}: digest mismatch: expected {}, got {}", what,
                 s.registry(), expected->str(), actual.str());
  }
  s.bytes += r.body.size();
  return Document{std::move(r.body), actual};
}

Result<DocumentKind> kind_of(const Document& doc, const std::string& what) {
  auto kind = document_kind(doc.body);
  if (!kind) return wrap(kind.error(), what);
  return kind;
}

// The image manifest of `ref` for `platform`: through the index (manifest
// list) when the reference names one. Every document is stored as a blob.
Result<Document> resolve_manifest(Session& s, HttpClient& http, BlobStore& blobs) {
  const Reference& ref = s.ref();
  std::string what = "image " + ref.str();
  BERTH_ASSIGN(Document top, fetch_document(s, http, ref.manifest_ref(), ref.digest, what));
  BERTH_ASSIGN(DocumentKind kind, kind_of(top, what));
  BERTH_TRY(blobs.put(top.body, top.digest));
  if (kind == DocumentKind::manifest) return top;

  auto index = parse_index(top.body);
  if (!index) return wrap(index.error(), what);
  auto chosen = select_platform(*index, s.opts().platform);
  if (!chosen) return wrap(chosen.error(), what);
  std::string entry =
      fmt::format("the {} manifest {} of {}", s.opts().platform.str(), chosen->digest.str(), what);
  BERTH_ASSIGN(Document m, fetch_document(s, http, chosen->digest.str(), chosen->digest, entry));
  BERTH_ASSIGN(kind, kind_of(m, entry));
  if (kind != DocumentKind::manifest) {
    return error(kStep, "{} is another index; nested indexes are not supported", entry);
  }
  BERTH_TRY(blobs.put(m.body, m.digest));
  return m;
}

// The config and the layers, each once.
std::vector<Descriptor> blobs_of(const Manifest& m) {
  std::vector<Descriptor> out{m.config};
  for (const Descriptor& l : m.layers) {
    bool seen = std::any_of(out.begin(), out.end(),
                            [&](const Descriptor& d) { return d.digest == l.digest; });
    if (!seen) out.push_back(l);
  }
  return out;
}

// ---- resumable blob downloads -------------------------------------------------------------------

// The partial download of one blob, <store>/tmp/<hex>.partial, hashed as it
// grows. It outlives a failed pull (BlobStore::recover keeps *.partial, prune
// drops them) so that the next pull continues it. Only the holder of the
// blob's BlobStore::lock opens it; the flock on the file itself tells
// recover() it is in use.
class PartialBlob {
 public:
  static Result<PartialBlob> open(const BlobStore& blobs, const Digest& d) {
    std::string path = fs::join(blobs.root(), "tmp/" + d.hex + ".partial");
    // recover(drop_partials) may unlink the file between our open and our
    // flock (as in BlobStore::create_locked_temp): then open it again.
    for (int attempt = 0; attempt < 8; ++attempt) {
      BERTH_ASSIGN(UniqueFd fd, fs::open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
      while (::flock(fd.get(), LOCK_EX) != 0) {
        if (errno != EINTR) return sys_error(kStep, "flock {}", path);
      }
      struct stat by_fd, by_name;
      if (::fstat(fd.get(), &by_fd) != 0) return sys_error(kStep, "fstat {}", path);
      if (::lstat(path.c_str(), &by_name) != 0 || by_name.st_ino != by_fd.st_ino ||
          by_name.st_dev != by_fd.st_dev) {
        continue;
      }
      PartialBlob p(std::move(path), std::move(fd));
      BERTH_TRY(p.rehash());
      return p;
    }
    return error(kStep, "open {}: removed by a concurrent recover, 8 times", path);
  }

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  Digest digest() const { return sha256_finish(ctx_); }

  Result<void> restart() {
    if (::ftruncate(fd_.get(), 0) != 0) return sys_error(kStep, "truncate {}", path_);
    sha256_init(&ctx_);
    size_ = 0;
    return {};
  }

  Result<void> append(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::pwrite(fd_.get(), data.data(), data.size(), static_cast<off_t>(size_));
      if (n < 0) {
        if (errno == EINTR) continue;
        return sys_error(kStep, "write {}", path_);
      }
      auto written = static_cast<size_t>(n);
      sha256_update(&ctx_, written, reinterpret_cast<const uint8_t*>(data.data()));
      size_ += written;
      data.remove_prefix(written);
    }
    return {};
  }

  // Moves the verified file into blobs/ as BlobStore::Writer::commit does:
  // fsync, rename, fsync the directory.
  Result<void> commit(BlobStore& blobs, const Digest& d) {
    BERTH_TRY(blobs.adopt(fd_.get(), path_, d));
    fd_.reset();
    return {};
  }

  void remove() {
    (void)::unlink(path_.c_str());  // before close: the flock still marks it ours
    fd_.reset();
  }

 private:
  PartialBlob(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {
    sha256_init(&ctx_);
  }

  // What an earlier pull left is hashed again: the hash state did not
  // survive it.
  Result<void> rehash() {
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::pread(fd_.get(), buf, sizeof buf, static_cast<off_t>(size_));
      if (n < 0) {
        if (errno == EINTR) continue;
        return sys_error(kStep, "read {}", path_);
      }
      if (n == 0) return {};
      sha256_update(&ctx_, static_cast<size_t>(n), reinterpret_cast<const uint8_t*>(buf));
      size_ += static_cast<uint64_t>(n);
    }
  }

  std::string path_;
  UniqueFd fd_;
  sha256_ctx ctx_;
  uint64_t size_ = 0;
};

// "bytes 100-999/1000" -> 100.
std::optional<uint64_t> content_range_start(std::string_view v) {
  v = trim(v);
  if (!v.starts_with("bytes ")) return std::nullopt;
  v.remove_prefix(6);
  uint64_t start = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), start);
  if (ec != std::errc() || end == v.data() + v.size() || *end != '-') return std::nullopt;
  return start;
}

// Fetches the config and layers with opts.parallel workers, each with its own
// curl handle. The first failure cancels the rest (their partial files stay,
// for the next pull).
class BlobFetcher {
 public:
  BlobFetcher(Session& s, BlobStore& blobs, std::vector<Descriptor> todo)
      : s_(s), blobs_(blobs), todo_(std::move(todo)) {}

  Result<void> run() {
    for (const Descriptor& d : todo_) {
      s_.emit(d.digest, Phase::waiting, 0, static_cast<uint64_t>(d.size));
    }
    size_t workers =
        std::clamp<size_t>(static_cast<size_t>(std::max(1, s_.opts().parallel)), 1, todo_.size());
    std::vector<pthread_t> threads;
    for (size_t i = 1; i < workers; ++i) {
      // pthread_create, not std::thread: built without exceptions, a failed
      // std::thread would abort. Fewer workers than asked is slower, not wrong.
      pthread_t t;
      if (pthread_create(&t, nullptr, &BlobFetcher::worker_main, this) != 0) break;
      threads.push_back(t);
    }
    work();
    for (pthread_t t : threads) pthread_join(t, nullptr);
    if (first_error_) return std::unexpected(*first_error_);
    return {};
  }

 private:
  static void* worker_main(void* self) {
    static_cast<BlobFetcher*>(self)->work();
    return nullptr;
  }

  void work() {
    HttpClient http = s_.client();
    while (!s_.cancelled()) {
      size_t i = next_.fetch_add(1);
      if (i >= todo_.size()) return;
      const Descriptor& d = todo_[i];
      if (auto r = fetch(http, d); !r) fail(d, r.error());
    }
  }

  void fail(const Descriptor& d, const Error& e) {
    {
      std::lock_guard lock(mu_);
      if (!first_error_) first_error_ = e;
    }
    s_.cancel();
    s_.emit(d.digest, Phase::failed, 0, static_cast<uint64_t>(d.size), e.str());
  }

  // Two pulls of one image (threads or processes) share the work through
  // the per-digest lock: the second waits, then finds the blob present.
  Result<void> fetch(HttpClient& http, const Descriptor& d) {
    if (d.size < 0) return error(kStep, "blob {}: negative size {}", d.digest.str(), d.size);
    auto total = static_cast<uint64_t>(d.size);
    if (!blobs_.has(d.digest)) {
      BERTH_ASSIGN(BlobStore::Lock lock, blobs_.lock(d.digest));
      if (!blobs_.has(d.digest)) {
        BERTH_ASSIGN(bool resumed, download(http, d));
        s_.fetched++;
        if (resumed) s_.resumed++;
        s_.emit(d.digest, Phase::done, total, total);
        return {};
      }
    }
    s_.present++;
    s_.emit(d.digest, Phase::exists, total, total);
    return {};
  }

  // Into the partial file, then verified and renamed into blobs/. Returns
  // whether bytes of an earlier attempt were used. When those bytes are
  // what spoils the digest (a partial file gone bad), the blob is fetched
  // once more from the start; a mismatch of fresh bytes is the registry's.
  Result<bool> download(HttpClient& http, const Descriptor& d) {
    BERTH_ASSIGN(PartialBlob part, PartialBlob::open(blobs_, d.digest));
    if (part.size() > static_cast<uint64_t>(d.size)) BERTH_TRY(part.restart());
    for (bool retried_fresh = false;; retried_fresh = true) {
      BERTH_ASSIGN(bool used_old_bytes, transfer(http, d, part));
      s_.emit(d.digest, Phase::verifying, part.size(), static_cast<uint64_t>(d.size));
      Digest actual = part.digest();
      if (actual == d.digest) {
        BERTH_TRY(part.commit(blobs_, d.digest));
        return used_old_bytes;
      }
      if (!used_old_bytes || retried_fresh) {
        part.remove();  // nothing of a tampered blob is kept
        return error(kStep,
                     "blob {} from registry {}: digest mismatch: expected {}, got {} ({} bytes)",
                     d.digest.str(), s_.registry(), d.digest.str(), actual.str(), part.size());
      }
      BERTH_TRY(part.restart());
    }
  }

  // Brings `part` to d.size bytes: GET, with "Range: bytes=N-" when N bytes
  // are there already. A 206 continues the file, a 200 (a registry or
  // storage without range support) starts it over. Transient failures are
  // retried (opts.attempts), each attempt continuing where the last stopped.
  Result<bool> transfer(HttpClient& http, const Descriptor& d, PartialBlob& part) {
    const auto total = static_cast<uint64_t>(d.size);
    const std::string url = s_.url("blobs/" + d.digest.str());
    const int attempts = std::max(1, s_.opts().attempts);
    const auto deadline = std::chrono::steady_clock::now() + s_.deadline_for(total);
    bool used_old_bytes = false;
    for (int attempt = 1;; ++attempt) {
      if (part.size() == total && total > 0) return true;  // complete before this attempt
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return error(kStep,
                     "blob {} from registry {}: not complete within its deadline of {} ms ({} of "
                     "{} bytes; PullOptions::blob_deadline_*)",
                     d.digest.str(), s_.registry(), s_.deadline_for(total).count(), part.size(),
                     total);
      }
      bool retryable = false, spoiled = false;
      auto last_event = std::chrono::steady_clock::time_point();
      BodySink sink{
          .begin = [&](const HttpResponse& r) -> Result<void> {
            if (r.status != 206) {
              used_old_bytes = false;  // the whole blob again
              return part.restart();
            }
            auto start = content_range_start(r.header("content-range"));
            if (start && *start == part.size()) {
              used_old_bytes = used_old_bytes || part.size() > 0;
              return {};
            }
            retryable = true;  // start over, without a Range
            BERTH_TRY(part.restart());
            return error(kStep, "GET {}: Content-Range {:?} does not continue the partial file",
                         url, r.header("content-range"));
          },
          .write = [&](std::string_view chunk) -> Result<void> {
            if (part.size() + chunk.size() > total) {
              spoiled = true;
              return error(kStep,
                           "blob {} from registry {}: more than the {} bytes of its descriptor",
                           d.digest.str(), s_.registry(), total);
            }
            BERTH_TRY(part.append(chunk));
            s_.bytes += chunk.size();
            auto now = std::chrono::steady_clock::now();
            if (now - last_event >= kProgressInterval || part.size() == total) {
              last_event = now;
              s_.emit(d.digest, Phase::downloading, part.size(), total);
            }
            return {};
          }};
      HttpRequest req{.url = url, .sink = &sink, .timeout_ms = static_cast<long>(left.count())};
      if (part.size() > 0) req.headers.push_back(fmt::format("Range: bytes={}-", part.size()));
      auto r = s_.get(http, req);
      Error failure;
      if (r && is_success(r->status)) {
        if (part.size() == total) return used_old_bytes;
        retryable = true;  // the connection ended early without curl noticing
        failure = error(kStep, "GET {}: got {} of {} bytes", url, part.size(), total).error();
      } else if (r && r->status == 416) {
        retryable = true;  // the partial file is not a prefix the server knows
        BERTH_TRY(part.restart());
        failure = error(kStep, "GET {}: 416 Range Not Satisfiable", url).error();
      } else if (r && r->status == 404) {
        failure = error(kStep, "blob {} of image {} not found in registry {}{}", d.digest.str(),
                        s_.ref().str(), s_.registry(), registry_message(r->body))
                      .error();
      } else if (r) {
        retryable = r->status >= 500 || r->status == 429;
        failure = error(kStep, "GET {}: {}{}", url, r->status, registry_message(r->body)).error();
      } else {
        retryable = retryable || http.last_failure_transient();
        failure = r.error();
      }
      if (spoiled) part.remove();
      if (spoiled || !retryable || attempt >= attempts || s_.cancelled()) {
        if (!spoiled && part.size() > 0) {
          failure.message += fmt::format(" ({} of {} bytes kept in {} for the next pull)",
                                         part.size(), total, part.path());
        }
        return std::unexpected(failure);
      }
      backoff(attempt);
    }
  }

  Session& s_;
  BlobStore& blobs_;
  const std::vector<Descriptor> todo_;
  std::atomic<size_t> next_{0};
  std::mutex mu_;
  std::optional<Error> first_error_;
};

Result<void> check_credentials(const std::optional<Credentials>& c) {
  if (c && c->username.find(':') != std::string::npos) {
    return error(kStep, "user name {:?}: must not contain ':' (HTTP Basic authentication)",
                 c->username);
  }
  return {};
}

Result<void> check_options(const PullOptions& opts) {
  BERTH_TRY(check_credentials(opts.credentials));
  for (const auto& h : opts.hosts) BERTH_TRY(check_credentials(h.credentials));
  return {};
}

// "host[:port]" or "http(s)://host[:port]" -> {scheme or "", host[:port]}.
Result<std::pair<std::string, std::string>> parse_mirror(const std::string& mirror,
                                                         const std::string& of) {
  std::string scheme;
  std::string rest = mirror;
  if (auto at = rest.find("://"); at != std::string::npos) {
    scheme = to_lower(rest.substr(0, at));
    rest = rest.substr(at + 3);
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  bool ok = (scheme.empty() || scheme == "http" || scheme == "https") && !rest.empty() &&
            std::all_of(rest.begin(), rest.end(), [](char c) {
              return is_alnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
            });
  if (!ok) {
    return error(kStep,
                 "registry {}: mirror {:?}: want host[:port], optionally after http:// or "
                 "https://",
                 of, mirror);
  }
  return std::pair{scheme, to_lower(rest)};
}

Result<void> check_host(const RegistryHost& h) {
  if (!h.scheme.empty() && h.scheme != "http" && h.scheme != "https")
    return error(kStep, "registry {}: scheme {:?}: want http or https", h.host, h.scheme);
  if (h.client_cert.empty() != h.client_key.empty())
    return error(kStep, "registry {}: a client certificate needs its key and the reverse", h.host);
  return {};
}

// http or https for `host` (with its entry `h`, if any) when no scheme is
// given explicitly.
std::string default_scheme(const PullOptions& opts, const std::string& host,
                           const RegistryHost* h) {
  if (h != nullptr && !h->scheme.empty()) return h->scheme;
  if (h != nullptr && has_tls_settings(*h)) return "https";
  const auto& insecure = opts.insecure_registries;
  bool plain = is_loopback_registry(host) || (h != nullptr && h->insecure) ||
               std::find(insecure.begin(), insecure.end(), host) != insecure.end();
  return plain ? "http" : "https";
}

Result<PullResult> pull_from(ImageStore& store, const Reference& ref, const PullOptions& opts,
                             const RegistryEndpoint& endpoint) {
  BERTH_ASSIGN(ImageStore::SharedLock held, store.lock_shared());
  std::atomic<bool> cancel{false};
  Session session(ref, opts, endpoint, cancel);
  HttpClient http = session.client();

  BERTH_ASSIGN(Document doc, resolve_manifest(session, http, store.blobs()));
  auto manifest = parse_manifest(doc.body);
  if (!manifest) return wrap(manifest.error(), "image " + ref.str());
  // Refused before any byte of it is fetched: the config is read into memory.
  if (manifest->config.size >= 0 &&
      static_cast<uint64_t>(manifest->config.size) > opts.max_config_bytes) {
    return error(kStep,
                 "image {}: config {} is {} bytes by its descriptor, more than the limit of {} "
                 "(max_config_bytes)",
                 ref.str(), manifest->config.digest.str(), manifest->config.size,
                 opts.max_config_bytes);
  }
  BlobFetcher fetcher(session, store.blobs(), blobs_of(*manifest));
  BERTH_TRY(fetcher.run());

  BERTH_ASSIGN(Image image,
               store.add(doc.digest, {ref.str()},
                         AddOptions{.platform = opts.platform, .progress = opts.progress}));
  return PullResult{std::move(image), session.stats()};
}

}  // namespace

Result<std::vector<Challenge>> parse_www_authenticate(std::string_view header) {
  return ChallengeParser(header).parse();
}

const RegistryHost* find_registry_host(const std::vector<RegistryHost>& hosts,
                                       std::string_view host) {
  auto canonical = [](std::string_view h) {
    std::string l = to_lower(h);
    return l == "registry-1.docker.io" || l == "index.docker.io" ? std::string("docker.io") : l;
  };
  std::string want = canonical(host);
  for (const auto& h : hosts) {
    if (canonical(h.host) == want) return &h;
  }
  return nullptr;
}

Result<std::vector<RegistryEndpoint>> registry_endpoints(const Reference& ref,
                                                         const PullOptions& opts) {
  const RegistryHost* up = find_registry_host(opts.hosts, ref.registry);
  std::vector<RegistryEndpoint> out;
  if (up != nullptr) {
    BERTH_TRY(check_host(*up));
    for (const auto& m : up->mirrors) {
      BERTH_ASSIGN(auto parsed, parse_mirror(m, ref.registry));
      auto& [scheme, host] = parsed;
      const RegistryHost* mh = find_registry_host(opts.hosts, host);
      if (mh != nullptr) BERTH_TRY(check_host(*mh));
      if (scheme.empty()) scheme = default_scheme(opts, host, mh);
      out.push_back({.base_url = scheme + "://" + host,
                     .host = host,
                     .mirror = true,
                     .credentials = mh != nullptr ? mh->credentials : std::nullopt});
    }
  }
  std::string host = ref.api_host();
  std::string scheme = default_scheme(opts, ref.registry, up);
  // Without an explicit choice, an insecure or loopback API host counts too.
  bool decided = up != nullptr && (!up->scheme.empty() || has_tls_settings(*up));
  if (!decided && default_scheme(opts, host, up) == "http") scheme = "http";
  out.push_back(
      {.base_url = scheme + "://" + host,
       .host = ref.registry,
       .mirror = false,
       .credentials = up != nullptr && up->credentials ? up->credentials : opts.credentials});
  return out;
}

// The recipe. The store's shared lock is held until the image is registered:
// prune must not take the blobs of a pull that has not reached the index yet.
// Mirrors first, each for the whole pull: blobs one of them committed stay
// in the store (verified), so the next endpoint fetches only what is left.
Result<PullResult> pull(ImageStore& store, const Reference& ref, const PullOptions& opts) {
  BERTH_TRY(check_options(opts));
  BERTH_ASSIGN(auto endpoints, registry_endpoints(ref, opts));
  curl_global_once();
  std::string mirror_errors;
  for (const auto& ep : endpoints) {
    auto r = pull_from(store, ref, opts, ep);
    if (r || !ep.mirror) {
      if (r || mirror_errors.empty()) return r;
      Error e = r.error();
      e.message += fmt::format(" (after its mirrors failed: {})", mirror_errors);
      return std::unexpected(std::move(e));
    }
    log::warn("pull {}: mirror {} failed, trying the next: {}", ref.str(), ep.base_url,
              r.error().str());
    if (!mirror_errors.empty()) mirror_errors += "; ";
    mirror_errors += fmt::format("{}: {}", ep.base_url, r.error().str());
  }
  return error(kStep, "image {}: no registry to pull from", ref.str());  // not reached
}

}  // namespace berth::rootfs
