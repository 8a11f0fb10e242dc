#include "rootfs-tools/reference.h"

#include <catch2/catch.hpp>

using berth::rootfs::is_loopback_registry;
using berth::rootfs::Reference;

namespace {

std::string canonical(std::string_view s) {
  auto r = Reference::parse(s);
  REQUIRE(r);
  return r->str();
}

std::string parse_error(std::string_view s) {
  auto r = Reference::parse(s);
  REQUIRE_FALSE(r);
  return r.error().str();
}

}  // namespace

TEST_CASE("reference: Docker's normalisation", "[reference]") {
  CHECK(canonical("busybox") == "docker.io/library/busybox:latest");
  CHECK(canonical("busybox:1.36") == "docker.io/library/busybox:1.36");
  CHECK(canonical("team/app") == "docker.io/team/app:latest");
  CHECK(canonical("index.docker.io/library/busybox") == "docker.io/library/busybox:latest");
  CHECK(canonical("quay.io/a/b/c:v1.2-rc_3") == "quay.io/a/b/c:v1.2-rc_3");
  CHECK(canonical("localhost/app") == "localhost/app:latest");
  CHECK(canonical("127.0.0.1:5000/berth-test/busybox") ==
        "127.0.0.1:5000/berth-test/busybox:latest");
  CHECK(canonical("[::1]:5000/x") == "[::1]:5000/x:latest");
  CHECK(canonical("Registry/app") == "Registry/app:latest");  // uppercase first part: a host
  CHECK(canonical("a__b/c.d/e--f") == "docker.io/a__b/c.d/e--f:latest");
}

TEST_CASE("reference: tags, digests and their parts", "[reference]") {
  std::string hex(64, 'a');
  auto r = Reference::parse("127.0.0.1:5000/x/y@sha256:" + hex);
  REQUIRE(r);
  CHECK(r->registry == "127.0.0.1:5000");
  CHECK(r->repository == "x/y");
  CHECK(r->tag.empty());
  REQUIRE(r->digest);
  CHECK(r->manifest_ref() == "sha256:" + hex);
  CHECK(r->str() == "127.0.0.1:5000/x/y@sha256:" + hex);

  auto both = Reference::parse("busybox:1@sha256:" + hex);
  REQUIRE(both);
  CHECK(both->tag == "1");
  CHECK(both->str() == "docker.io/library/busybox:1@sha256:" + hex);

  auto hub = Reference::parse("busybox");
  REQUIRE(hub);
  CHECK(hub->api_host() == "registry-1.docker.io");
  CHECK(hub->name() == "docker.io/library/busybox");
  CHECK(hub->manifest_ref() == "latest");
}

TEST_CASE("reference: bad references say what is wrong", "[reference]") {
  CHECK_THAT(parse_error(""), Catch::Contains("empty"));
  CHECK_THAT(parse_error("Busybox"), Catch::Contains("repository component \"Busybox\""));
  CHECK_THAT(parse_error("a/-b"), Catch::Contains("\"-b\""));
  CHECK_THAT(parse_error("a//b"), Catch::Contains("repository component"));
  CHECK_THAT(parse_error("busybox:"), Catch::Contains("tag"));
  CHECK_THAT(parse_error("busybox:.x"), Catch::Contains("tag \".x\""));
  CHECK_THAT(parse_error("busybox@sha256:abc"), Catch::Contains("digest"));
  CHECK_THAT(parse_error("busybox@md5:" + std::string(32, 'a')), Catch::Contains("digest"));
  CHECK_THAT(parse_error("host:99999/x"), Catch::Contains("registry \"host:99999\""));
  CHECK_THAT(parse_error("../etc"), Catch::Contains("registry"));
  CHECK_THAT(parse_error("a/" + std::string(300, 'b')), Catch::Contains("255"));
}

TEST_CASE("reference: loopback registries", "[reference]") {
  CHECK(is_loopback_registry("localhost"));
  CHECK(is_loopback_registry("localhost:5000"));
  CHECK(is_loopback_registry("127.0.0.1:5000"));
  CHECK(is_loopback_registry("127.1.2.3"));
  CHECK(is_loopback_registry("[::1]:5000"));
  CHECK_FALSE(is_loopback_registry("10.0.0.1:5000"));
  CHECK_FALSE(is_loopback_registry("docker.io"));
  CHECK_FALSE(is_loopback_registry("localhost.example.com"));
  CHECK_FALSE(is_loopback_registry("[::2]:5000"));
}
