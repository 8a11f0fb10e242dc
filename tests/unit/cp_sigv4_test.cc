// SigV4 verification (controlplane/api/sigv4.h) against AWS's published
// test-suite vectors and a request signed by the real botocore; the account
// directory (api/auth.h) on both transports.
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "controlplane/api/auth.h"
#include "controlplane/api/sigv4.h"
#include "tests/skip.h"

namespace {

using namespace berth;
using namespace berth::cp;
using Headers = std::map<std::string, std::string>;

constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

// 2015-08-30T12:36:00Z, the test suite's X-Amz-Date.
std::chrono::system_clock::time_point suite_time() {
  return std::chrono::system_clock::from_time_t(1440938160);
}

sigv4::Config suite_config(std::string service = "service") {
  sigv4::Config c;
  c.region = "us-east-1";
  c.service = std::move(service);
  return c;
}

std::string auth_header(const std::string& signed_headers, const std::string& signature,
                        const std::string& scope = "20150830/us-east-1/service/aws4_request") {
  return "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" + scope + ", SignedHeaders=" + signed_headers +
         ", Signature=" + signature;
}

Result<void> verify_at(const std::string& method, const std::string& target, const Headers& h,
                       const std::string& body, const sigv4::Config& cfg,
                       std::chrono::system_clock::time_point now,
                       const std::string& secret = kSecret) {
  auto it = h.find("authorization");
  REQUIRE(it != h.end());
  auto auth = sigv4::parse_authorization(it->second);
  if (!auth) return std::unexpected(auth.error());
  sigv4::Request req{method, target, &h, body};
  return sigv4::verify(req, *auth, secret, cfg, now);
}

TEST_CASE("sigv4 get-vanilla from the AWS test suite", "[cp-sigv4]") {
  Headers h{{"host", "example.amazonaws.com"}, {"x-amz-date", "20150830T123600Z"}};
  auto auth = sigv4::parse_authorization(auth_header(
      "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"));
  REQUIRE(auth);
  sigv4::Request req{"GET", "/", &h, ""};
  auto creq = sigv4::canonical_request(req, *auth);
  REQUIRE(creq);
  CHECK(*creq ==
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string sts = sigv4::string_to_sign("20150830T123600Z", auth->scope(), *creq);
  CHECK(sts ==
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  CHECK(sigv4::signature(kSecret, "20150830", "us-east-1", "service", sts) ==
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  h["authorization"] = auth_header(
      "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  auto r = verify_at("GET", "/", h, "", suite_config(), suite_time());
  INFO((r ? std::string() : r.error().str()));
  CHECK(r);
}

TEST_CASE("sigv4 post-vanilla and get-vanilla-query-order-key-case from the AWS test suite",
          "[cp-sigv4]") {
  Headers h{{"host", "example.amazonaws.com"}, {"x-amz-date", "20150830T123600Z"}};
  h["authorization"] = auth_header(
      "host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
  auto r = verify_at("POST", "/", h, "", suite_config(), suite_time());
  INFO((r ? std::string() : r.error().str()));
  CHECK(r);

  h["authorization"] = auth_header(
      "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
  r = verify_at("GET", "/?Param2=value2&Param1=value1", h, "", suite_config(), suite_time());
  INFO((r ? std::string() : r.error().str()));
  CHECK(r);
  CHECK(sigv4::canonical_query("Param2=value2&Param1=value1").value() ==
        "Param1=value1&Param2=value2");
}

TEST_CASE("sigv4 the IAM ListUsers example of the AWS documentation", "[cp-sigv4]") {
  Headers h{{"host", "iam.amazonaws.com"},
            {"x-amz-date", "20150830T123600Z"},
            {"content-type", "application/x-www-form-urlencoded; charset=utf-8"}};
  h["authorization"] =
      auth_header("content-type;host;x-amz-date",
                  "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
                  "20150830/us-east-1/iam/aws4_request");
  auto r = verify_at("GET", "/?Action=ListUsers&Version=2010-05-08", h, "", suite_config("iam"),
                     suite_time());
  INFO((r ? std::string() : r.error().str()));
  CHECK(r);
}

TEST_CASE("sigv4 canonical forms: header values, URI and query encoding", "[cp-sigv4]") {
  Headers h{{"host", "example.amazonaws.com"},
            {"my-header1", "  value1  "},
            {"my-header2", "\"a   b   c\""},
            {"x-amz-date", "20150830T123600Z"}};
  auto auth = sigv4::parse_authorization(
      auth_header("host;my-header1;my-header2;x-amz-date", std::string(64, '0')));
  REQUIRE(auth);
  sigv4::Request req{"GET", "/", &h, ""};
  auto creq = sigv4::canonical_request(req, *auth);
  REQUIRE(creq);
  CHECK(creq->find("my-header1:value1\nmy-header2:\"a b c\"\n") != std::string::npos);
  CHECK(sigv4::canonical_uri("/") == "/");
  CHECK(sigv4::canonical_uri("") == "/");
  CHECK(sigv4::canonical_uri("/a b/%41") == "/a%20b/%2541");
  CHECK(sigv4::canonical_query("b=2&a=x y&a=%41").value() == "a=A&a=x%20y&b=2");
  CHECK(sigv4::canonical_query("k=a+b").value() == "k=a%2Bb");
  CHECK(!sigv4::canonical_query("k=%zz"));
}

TEST_CASE("sigv4 refuses bad signatures, stale dates, other regions and services", "[cp-sigv4]") {
  Headers h{{"host", "example.amazonaws.com"}, {"x-amz-date", "20150830T123600Z"}};
  const std::string good = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

  SECTION("a wrong signature") {
    std::string bad = good;
    bad[0] = '6';
    h["authorization"] = auth_header("host;x-amz-date", bad);
    auto r = verify_at("GET", "/", h, "", suite_config(), suite_time());
    REQUIRE(!r);
    CHECK(r.error().step == "InvalidSignatureException");
    CHECK(r.error().message.starts_with(
        "The request signature we calculated does not match the signature you provided."));
  }
  SECTION("a wrong secret") {
    h["authorization"] = auth_header("host;x-amz-date", good);
    auto r = verify_at("GET", "/", h, "", suite_config(), suite_time(), "other-secret");
    REQUIRE(!r);
    CHECK(r.error().step == "InvalidSignatureException");
  }
  SECTION("a tampered request") {
    h["authorization"] = auth_header("host;x-amz-date", good);
    auto r = verify_at("GET", "/?a=b", h, "", suite_config(), suite_time());
    REQUIRE(!r);
    CHECK(r.error().step == "InvalidSignatureException");
  }
  SECTION("stale and future dates") {
    h["authorization"] = auth_header("host;x-amz-date", good);
    auto r = verify_at("GET", "/", h, "", suite_config(), suite_time() + std::chrono::minutes(16));
    REQUIRE(!r);
    CHECK(r.error().step == "InvalidSignatureException");
    CHECK(r.error().message ==
          "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z "
          "(20150830T125200Z - 15 min.)");
    r = verify_at("GET", "/", h, "", suite_config(), suite_time() - std::chrono::minutes(16));
    REQUIRE(!r);
    CHECK(r.error().message.starts_with("Signature not yet current: 20150830T123600Z"));
    // Within the window: fine.
    CHECK(verify_at("GET", "/", h, "", suite_config(), suite_time() + std::chrono::minutes(14)));
  }
  SECTION("another region") {
    h["authorization"] = auth_header("host;x-amz-date", good);
    auto cfg = suite_config();
    cfg.region = "eu-west-1";
    auto r = verify_at("GET", "/", h, "", cfg, suite_time());
    REQUIRE(!r);
    CHECK(r.error().step == "InvalidSignatureException");
    CHECK(r.error().message.find("'eu-west-1'") != std::string::npos);
    CHECK(r.error().message.find("signed for 'us-east-1'") != std::string::npos);
  }
  SECTION("another service") {
    h["authorization"] = auth_header("host;x-amz-date", good);
    auto r = verify_at("GET", "/", h, "", suite_config("ecs"), suite_time());
    REQUIRE(!r);
    CHECK(r.error().message.find("'ecs'") != std::string::npos);
  }
  SECTION("a signed header that is not sent") {
    h["authorization"] = auth_header("host;x-amz-date;x-extra", good);
    auto r = verify_at("GET", "/", h, "", suite_config(), suite_time());
    REQUIRE(!r);
    CHECK(r.error().step == "IncompleteSignatureException");
    CHECK(r.error().message == "signed header 'x-extra' is not in the request");
  }
  SECTION("no X-Amz-Date") {
    h.erase("x-amz-date");
    h["authorization"] = auth_header("host", good);
    auto r = verify_at("GET", "/", h, "", suite_config(), suite_time());
    REQUIRE(!r);
    CHECK(r.error().message == "the request has no X-Amz-Date header");
  }
  SECTION("x-amz-content-sha256 that does not match the body") {
    h["x-amz-content-sha256"] = sigv4::hex_sha256("claimed");
    h["authorization"] = auth_header("host;x-amz-content-sha256;x-amz-date", good);
    auto r = verify_at("POST", "/", h, "actual", suite_config(), suite_time());
    REQUIRE(!r);
    CHECK(r.error().message.find("x-amz-content-sha256") != std::string::npos);
  }
}

TEST_CASE("sigv4 Authorization header parsing", "[cp-sigv4]") {
  const std::string sig(64, 'a');
  SECTION("fields in any order, extra spaces") {
    auto a = sigv4::parse_authorization(
        "AWS4-HMAC-SHA256 Signature=" + sig +
        " ,SignedHeaders=Host;X-Amz-Date,   Credential=AK/20150830/us-east-1/ecs/aws4_request");
    REQUIRE(a);
    CHECK(a->access_key_id == "AK");
    CHECK(a->date == "20150830");
    CHECK(a->region == "us-east-1");
    CHECK(a->service == "ecs");
    CHECK(a->signed_headers == std::vector<std::string>{"host", "x-amz-date"});
    CHECK(a->signature == sig);
  }
  auto err = [](const std::string& h) {
    auto a = sigv4::parse_authorization(h);
    REQUIRE(!a);
    CHECK(a.error().step == "IncompleteSignatureException");
    return a.error().message;
  };
  const std::string cred = "Credential=AK/20150830/us-east-1/ecs/aws4_request";
  CHECK(err("AWS4-HMAC-SHA1 " + cred) ==
        "Authorization header requires the algorithm AWS4-HMAC-SHA256, got 'AWS4-HMAC-SHA1'");
  CHECK(err("Basic dXNlcjpwYXNz").starts_with("Authorization header requires the algorithm"));
  CHECK(err("AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host") ==
        "Authorization header requires a 'Signature' parameter");
  CHECK(err("AWS4-HMAC-SHA256 " + cred + ", Signature=" + sig) ==
        "Authorization header requires a 'SignedHeaders' parameter");
  CHECK(err("AWS4-HMAC-SHA256 " + cred + ", " + cred + ", SignedHeaders=host, Signature=" + sig) ==
        "Authorization header has 'Credential' twice");
  CHECK(err("AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host, Signature=" + sig + ", Foo=1") ==
        "Authorization header has an unknown field 'Foo'");
  CHECK(err("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/aws4_request, SignedHeaders=host, "
            "Signature=" +
            sig)
            .starts_with("Credential 'AK/20150830/us-east-1/aws4_request' is not"));
  CHECK(err("AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host, Signature=xyz") ==
        "Signature 'xyz' is not 64 hex digits");
  CHECK(err("AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host;;x, Signature=" + sig)
            .starts_with("SignedHeaders 'host;;x' has an empty name"));
  // A missing comma: the fields run together.
  CHECK(err("AWS4-HMAC-SHA256 " + cred + " SignedHeaders=host, Signature=" + sig) ==
        "Authorization header requires a 'SignedHeaders' parameter");
}

// Runs python3 with `script`; nullopt when python3 or botocore is missing.
std::optional<std::string> run_python(const std::string& script) {
  std::string cmd = "python3 -c '" + script + "' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return std::nullopt;
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

TEST_CASE("sigv4 verifies a request signed by botocore", "[cp-sigv4]") {
  // botocore signs with the current time; the body and target are ECS's.
  const std::string script = R"PY(
import json
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
body = "{\"cluster\": \"default\", \"maxResults\": 5}"
req = AWSRequest(method="POST", url="http://127.0.0.1:8080/?z=1&a=b%20c", data=body,
  headers={"Content-Type": "application/x-amz-json-1.1",
           "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListTasks"})
SigV4Auth(Credentials("AKIDBOTO", "boto/secret+key"), "ecs", "us-east-1").add_auth(req)
headers = {k.lower(): v for k, v in req.headers.items()}
headers["host"] = "127.0.0.1:8080"  # botocore signs the host of the URL; clients send it
print(json.dumps({"headers": headers, "body": body}))
)PY";
  REQUIRE(script.find('\'') == std::string::npos);  // it goes inside '...' of a shell
  auto out = run_python(script);
  if (!out) BERTH_SKIP("python3 with botocore (python3-botocore) is not installed");
  auto j = nlohmann::json::parse(*out, nullptr, false);
  REQUIRE(j.is_object());
  Headers h;
  for (auto& [k, v] : j["headers"].items()) h[k] = v.get<std::string>();
  std::string body = j["body"].get<std::string>();
  REQUIRE(h.count("authorization") == 1);
  INFO(h["authorization"]);

  auto cfg = suite_config("ecs");
  auto now = std::chrono::system_clock::now();
  auto r = verify_at("POST", "/?z=1&a=b%20c", h, body, cfg, now, "boto/secret+key");
  INFO((r ? std::string() : r.error().str()));
  CHECK(r);
  CHECK(!verify_at("POST", "/?z=1&a=b%20c", h, body + " ", cfg, now, "boto/secret+key"));
  CHECK(!verify_at("POST", "/?z=1&a=b%20c", h, body, cfg, now, "boto/secret+kez"));

  // The same request through the account directory.
  Account acct;
  acct.id = "123456789012";
  acct.access_key_id = "AKIDBOTO";
  acct.secret_access_key = "boto/secret+key";
  AccountDirectory dir({acct}, cfg);
  HttpRequest hr;
  hr.method = "POST";
  hr.target = "/?z=1&a=b%20c";
  hr.path = "/";
  hr.headers = h;
  hr.body = body;
  hr.peer.remote = "127.0.0.1:1";
  auto who = dir.authenticate(hr);
  INFO((who ? std::string() : who.error().str()));
  REQUIRE(who);
  CHECK(*who == "123456789012");
}

TEST_CASE("sigv4 account directory: unix uids and access keys", "[cp-sigv4]") {
  Account alice;
  alice.id = "111111111111";
  alice.name = "alice";
  alice.access_key_id = "AKIDEXAMPLE";
  alice.secret_access_key = kSecret;
  alice.unix_uids = {0, 1000};
  Account bob;
  bob.id = "222222222222";
  bob.name = "bob";
  bob.access_key_id = "AKIDBOB";
  bob.secret_access_key = "bob-secret";
  bob.unix_uids = {1001};
  AccountDirectory dir({alice, bob}, suite_config());

  HttpRequest unix_req;
  unix_req.method = "GET";
  unix_req.path = "/v1/tasks";
  unix_req.target = "/v1/tasks";
  unix_req.peer.unix_socket = true;
  unix_req.peer.uid = 1001;
  CHECK(dir.authenticate(unix_req).value() == "222222222222");
  unix_req.peer.uid = 1000;
  CHECK(dir.authenticate(unix_req).value() == "111111111111");
  unix_req.peer.uid = 4242;
  auto r = dir.authenticate(unix_req);
  REQUIRE(!r);
  CHECK(r.error().step == "AccessDeniedException");
  CHECK(r.error().message == "uid 4242 is not mapped to an account (unix_uids in the config)");

  HttpRequest tcp;
  tcp.method = "GET";
  tcp.path = "/";
  tcp.target = "/";
  tcp.headers = {{"host", "example.amazonaws.com"}, {"x-amz-date", "20150830T123600Z"}};
  r = dir.authenticate(tcp, suite_time());
  REQUIRE(!r);
  CHECK(r.error().step == "MissingAuthenticationTokenException");

  tcp.headers["authorization"] = auth_header(
      "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  CHECK(dir.authenticate(tcp, suite_time()).value() == "111111111111");
  r = dir.authenticate(tcp, suite_time() + std::chrono::hours(1));
  REQUIRE(!r);
  CHECK(r.error().step == "InvalidSignatureException");
  CHECK(r.error().message.starts_with("Signature expired: "));

  tcp.headers["authorization"] =
      "AWS4-HMAC-SHA256 Credential=AKIDNOBODY/20150830/us-east-1/service/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=" +
      std::string(64, '0');
  r = dir.authenticate(tcp, suite_time());
  REQUIRE(!r);
  CHECK(r.error().step == "UnrecognizedClientException");
  CHECK(r.error().message.find("'AKIDNOBODY'") != std::string::npos);

  // Bob's key with Alice's signature.
  tcp.headers["authorization"] =
      "AWS4-HMAC-SHA256 Credential=AKIDBOB/20150830/us-east-1/service/aws4_request, "
      "SignedHeaders=host;x-amz-date, "
      "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
  r = dir.authenticate(tcp, suite_time());
  REQUIRE(!r);
  CHECK(r.error().step == "InvalidSignatureException");

  Authenticator fn = make_authenticator(dir);
  unix_req.peer.uid = 0;
  CHECK(fn(unix_req).value() == "111111111111");
}

}  // namespace
