// The registry client's pure part: WWW-Authenticate challenges as RFC 7235
// writes them (several per header, quoted strings with escapes, token68),
// as registries send them (Docker Hub, distribution's htpasswd), and
// malformed headers refused with the header and the offset in the message.
#include "rootfs-tools/registry.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

using berth::rootfs::Challenge;
using berth::rootfs::parse_www_authenticate;
using Catch::Matchers::Contains;

namespace {

std::vector<Challenge> parse_ok(const std::string& header) {
  auto r = parse_www_authenticate(header);
  INFO(header);
  if (!r) FAIL(r.error().str());
  return *r;
}

std::string parse_error(const std::string& header) {
  auto r = parse_www_authenticate(header);
  INFO(header);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().step == "registry");
  return r.error().message;
}

}  // namespace

TEST_CASE("registry: Basic challenge of distribution's htpasswd", "[registry]") {
  auto c = parse_ok(R"(Basic realm="berth-test")");
  REQUIRE(c.size() == 1);
  CHECK(c[0].scheme == "Basic");
  CHECK(c[0].params == std::map<std::string, std::string>{{"realm", "berth-test"}});
}

TEST_CASE("registry: Bearer challenge as Docker Hub sends it", "[registry]") {
  auto c = parse_ok(R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
                    R"(scope="repository:library/busybox:pull",error="insufficient_scope")");
  REQUIRE(c.size() == 1);
  CHECK(c[0].scheme == "Bearer");
  CHECK(c[0].params.at("realm") == "https://auth.docker.io/token");
  CHECK(c[0].params.at("service") == "registry.docker.io");
  CHECK(c[0].params.at("scope") == "repository:library/busybox:pull");
  CHECK(c[0].params.at("error") == "insufficient_scope");
  CHECK(c[0].params.size() == 4);
}

TEST_CASE("registry: several challenges in one header (RFC 7235 example)", "[registry]") {
  auto c =
      parse_ok(R"(Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple")");
  REQUIRE(c.size() == 2);
  CHECK(c[0].scheme == "Newauth");
  CHECK(c[0].params.at("realm") == "apps");
  CHECK(c[0].params.at("type") == "1");
  CHECK(c[0].params.at("title") == "Login to \"apps\"");
  CHECK(c[1].scheme == "Basic");
  CHECK(c[1].params == std::map<std::string, std::string>{{"realm", "simple"}});
}

TEST_CASE("registry: challenge syntax variants", "[registry]") {
  SECTION("parameter names are lowercased, values and schemes kept") {
    auto c = parse_ok(R"(bearer Realm="X", SCOPE=Repo)");
    REQUIRE(c.size() == 1);
    CHECK(c[0].scheme == "bearer");
    CHECK(c[0].params.at("realm") == "X");
    CHECK(c[0].params.at("scope") == "Repo");
  }
  SECTION("whitespace around '=' and empty list elements") {
    auto c = parse_ok(" , Basic realm = \"a b\" ,, Bearer\trealm=\"r\" , ");
    REQUIRE(c.size() == 2);
    CHECK(c[0].params.at("realm") == "a b");
    CHECK(c[1].scheme == "Bearer");
    CHECK(c[1].params.at("realm") == "r");
  }
  SECTION("a scheme without parameters, then another challenge") {
    auto c = parse_ok(R"(Basic, Bearer realm="r")");
    REQUIRE(c.size() == 2);
    CHECK(c[0].scheme == "Basic");
    CHECK(c[0].params.empty());
    CHECK(c[1].params.at("realm") == "r");
  }
  SECTION("token68, kept under the empty key") {
    auto c = parse_ok("Negotiate YIIB/w==, Basic realm=x");
    REQUIRE(c.size() == 2);
    CHECK(c[0].params == std::map<std::string, std::string>{{"", "YIIB/w=="}});
    CHECK(c[1].params.at("realm") == "x");
  }
  SECTION("a token68 that ends in '=' is not a parameter without a value") {
    auto c = parse_ok("Foo abc=, Basic realm=, Bar");
    REQUIRE(c.size() == 3);
    CHECK(c[0].params.at("") == "abc=");
    CHECK(c[1].params.at("") == "realm=");
    CHECK(c[2].scheme == "Bar");
  }
  SECTION("quoted-pair escapes and commas inside quotes") {
    auto c = parse_ok(R"(Bearer realm="a\\b\"c", scope="repository:x:pull,push")");
    REQUIRE(c.size() == 1);
    CHECK(c[0].params.at("realm") == "a\\b\"c");
    CHECK(c[0].params.at("scope") == "repository:x:pull,push");
  }
  SECTION("an empty quoted string is a value") {
    auto c = parse_ok(R"(Basic realm="")");
    CHECK(c[0].params.at("realm").empty());
  }
  SECTION("a trailing comma") {
    auto c = parse_ok(R"(Bearer realm="r",)");
    REQUIRE(c.size() == 1);
    CHECK(c[0].params.size() == 1);
  }
}

TEST_CASE("registry: malformed WWW-Authenticate headers are errors", "[registry]") {
  CHECK_THAT(parse_error(""), Contains("no challenge"));
  CHECK_THAT(parse_error(" ,, "), Contains("no challenge"));
  CHECK_THAT(parse_error(R"(Basic realm="unterminated)"), Contains("unterminated quoted string"));
  CHECK_THAT(parse_error(R"(Basic realm="ends in backslash\)"),
             Contains("unterminated quoted string"));
  CHECK_THAT(parse_error(R"(Bearer realm="r", scope=)"),
             Contains("parameter \"scope\" has no value"));
  CHECK_THAT(parse_error(R"(Bearer realm="r", scope=, service=x)"),
             Contains("parameter \"scope\" has no value"));
  CHECK_THAT(parse_error("Basic realm==x"), Contains("parameter \"realm\" has no value"));
  CHECK_THAT(parse_error(R"(Basic realm="a" charset="b")"),
             Contains("expected ',' after parameter \"realm\""));
  CHECK_THAT(parse_error(R"(Basic realm="a", Realm="b")"),
             Contains("parameter \"realm\" given twice"));
  CHECK_THAT(parse_error(R"(="x")"), Contains("expected an auth scheme"));
  CHECK_THAT(parse_error(R"(Basic"realm")"), Contains("expected a space after the auth scheme"));
  CHECK_THAT(parse_error("Bearer realm=a b"), Contains("expected ',' after parameter"));
  CHECK_THAT(parse_error(std::string("Basic realm=\"a\x01z\"")),
             Contains("control character in a quoted string"));
  CHECK_THAT(parse_error("Bearer @realm=x"), Contains("expected a parameter name"));
  CHECK_THAT(parse_error("Bearer realm=x, Basic @"), Contains("expected a parameter name"));
}

TEST_CASE("registry: parse errors name the header and the offset", "[registry]") {
  std::string msg = parse_error(R"(Basic realm="unterminated)");
  CHECK_THAT(msg, Contains("WWW-Authenticate \"Basic realm=\\\"unterminated\""));
  CHECK_THAT(msg, Contains("at offset 12"));
  CHECK_THAT(parse_error("Basic realm=x y"), Contains("at offset 14"));
}
