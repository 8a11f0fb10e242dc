#include "rootfs-tools/image.h"

#include <catch2/catch.hpp>

using namespace berth::rootfs;

namespace {

std::string digest_of(char c) {
  return "sha256:" + std::string(64, c);
}

std::string manifest_text(std::string_view media_type = media::oci_manifest) {
  return R"({"schemaVersion":2,"mediaType":")" + std::string(media_type) +
         R"(","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
         digest_of('c') +
         R"(","size":10},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
         digest_of('1') +
         R"(","size":100},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":")" +
         digest_of('2') + R"(","size":200,"annotations":{"k":"v"}}]})";
}

}  // namespace

TEST_CASE("image: manifests of both kinds parse", "[image]") {
  for (auto mt : {media::oci_manifest, media::docker_manifest}) {
    auto m = parse_manifest(manifest_text(mt));
    REQUIRE(m);
    CHECK(m->media_type == mt);
    CHECK(m->config.digest.str() == digest_of('c'));
    REQUIRE(m->layers.size() == 2);
    CHECK(m->layers[0].size == 100);
    CHECK(m->layers[1].annotations.at("k") == "v");
    auto kind = document_kind(manifest_text(mt));
    REQUIRE(kind);
    CHECK(*kind == DocumentKind::manifest);
  }
  // Round trip through the serialiser.
  auto m = parse_manifest(manifest_text());
  REQUIRE(m);
  auto again = parse_manifest(to_json(*m));
  REQUIRE(again);
  CHECK(again->layers.size() == 2);
  CHECK(again->layers[1].digest == m->layers[1].digest);
}

TEST_CASE("image: manifest errors name the field", "[image]") {
  auto bad = [](std::string text) {
    auto m = parse_manifest(text);
    REQUIRE_FALSE(m);
    return m.error().str();
  };
  CHECK_THAT(bad("{"), Catch::Contains("not valid JSON"));
  CHECK_THAT(bad("[]"), Catch::Contains("not a JSON object"));
  CHECK_THAT(bad(R"({"schemaVersion":1})"), Catch::Contains("schemaVersion: must be 2"));
  CHECK_THAT(bad(R"({"schemaVersion":2,"layers":[]})"), Catch::Contains("config: required"));
  std::string t = manifest_text();
  std::string broken = t;
  broken.replace(broken.find(digest_of('2')), 71, "sha256:../../etc");
  CHECK_THAT(bad(broken), Catch::Contains("layers[1].digest"));
  std::string negative = t;
  negative.replace(negative.find("\"size\":200"), 10, "\"size\":-1");
  CHECK_THAT(bad(negative), Catch::Contains("layers[1].size"));
  auto k = document_kind(
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"})");
  REQUIRE_FALSE(k);
  CHECK_THAT(k.error().str(), Catch::Contains("schema 1"));
}

TEST_CASE("image: a layer of a type berth cannot unpack is refused", "[image][hostile]") {
  std::string t = manifest_text();
  auto with_type = [&](std::string_view type) {
    std::string m = t;
    std::string old = "application/vnd.oci.image.layer.v1.tar\"";
    m.replace(m.find(old), old.size(), std::string(type) + "\"");
    return parse_manifest(m);
  };
  auto evil = with_type("application/x-evil");
  REQUIRE_FALSE(evil);
  CHECK_THAT(evil.error().str(),
             Catch::Contains("layers[1].mediaType: \"application/x-evil\" is not a layer type"));
  CHECK_FALSE(with_type("application/vnd.oci.image.layer.v1.tar+gzip+encrypted"));
  CHECK_FALSE(with_type(""));
  for (std::string_view ok :
       {"application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}) {
    INFO(ok);
    CHECK(with_type(ok).has_value());
  }
}

TEST_CASE("image: index platform selection", "[image]") {
  std::string text =
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[)"
      R"({"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" +
      digest_of('a') +
      R"(","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},)"
      R"({"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" +
      digest_of('b') +
      R"(","size":1,"platform":{"os":"linux","architecture":"amd64"}},)"
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      digest_of('d') + R"(","size":1,"platform":{"os":"unknown","architecture":"unknown"}}]})";
  auto kind = document_kind(text);
  REQUIRE(kind);
  CHECK(*kind == DocumentKind::index);
  auto idx = parse_index(text);
  REQUIRE(idx);
  REQUIRE(idx->manifests.size() == 3);

  auto amd = select_platform(*idx, Platform{"linux", "amd64", ""});
  REQUIRE(amd);
  CHECK(amd->digest.str() == digest_of('b'));
  auto arm = select_platform(*idx, Platform{"linux", "arm64", ""});  // any variant
  REQUIRE(arm);
  CHECK(arm->digest.str() == digest_of('a'));
  auto arm_v8 = select_platform(*idx, Platform{"linux", "arm64", "v8"});
  REQUIRE(arm_v8);
  auto none = select_platform(*idx, Platform{"linux", "s390x", ""});
  REQUIRE_FALSE(none);
  CHECK_THAT(none.error().str(), Catch::Contains("no manifest for linux/s390x"));
  CHECK_THAT(none.error().str(), Catch::Contains("linux/arm64/v8, linux/amd64"));

  // An OCI layout's index of one manifest without a platform.
  std::string single =
      R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      digest_of('e') + R"(","size":5}]})";
  auto one = parse_index(single);
  REQUIRE(one);
  auto chosen = select_platform(*one, Platform{"linux", "amd64", ""});
  REQUIRE(chosen);
  CHECK(chosen->digest.str() == digest_of('e'));
  auto kind2 = document_kind(single);
  REQUIRE(kind2);
  CHECK(*kind2 == DocumentKind::index);
}

TEST_CASE("image: config fields for the control plane", "[image]") {
  std::string text = R"({"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
    "config":{"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],
      "Env":["PATH=/usr/bin","A=b"],"WorkingDir":"/srv","User":"101:101","StopSignal":"SIGQUIT",
      "ExposedPorts":{"80/tcp":{},"443/tcp":{}},"Volumes":{"/data":{}},"Labels":{"x":"y"}},
    "rootfs":{"type":"layers","diff_ids":[")" +
                     digest_of('1') + R"("]}})";
  auto c = parse_image_config(text);
  REQUIRE(c);
  CHECK(c->entrypoint == std::vector<std::string>{"/docker-entrypoint.sh"});
  CHECK(c->cmd == std::vector<std::string>{"nginx", "-g", "daemon off;"});
  CHECK(c->env == std::vector<std::string>{"PATH=/usr/bin", "A=b"});
  CHECK(c->working_dir == "/srv");
  CHECK(c->user == "101:101");
  CHECK(c->stop_signal == "SIGQUIT");
  CHECK(c->exposed_ports == std::vector<std::string>{"443/tcp", "80/tcp"});
  CHECK(c->volumes == std::vector<std::string>{"/data"});
  CHECK(c->labels.at("x") == "y");
  REQUIRE(c->diff_ids.size() == 1);

  // Null fields are absent, as Go writes them.
  auto nulls = parse_image_config(R"({"os":"linux","config":{"Cmd":null,"Env":null}})");
  REQUIRE(nulls);
  CHECK(nulls->cmd.empty());
  auto wrong = parse_image_config(R"({"config":{"Cmd":"sh"}})");
  REQUIRE_FALSE(wrong);
  CHECK_THAT(wrong.error().str(), Catch::Contains("config.Cmd"));

  auto minimal = parse_image_config(
      minimal_image_config_json({*berth::rootfs::Digest::parse(digest_of('9'))}, Platform{}));
  REQUIRE(minimal);
  CHECK(minimal->os == "linux");
  REQUIRE(minimal->diff_ids.size() == 1);
}

TEST_CASE("image: platforms", "[image]") {
  auto p = Platform::parse("linux/arm64/v8");
  REQUIRE(p);
  CHECK(p->variant == "v8");
  CHECK(p->str() == "linux/arm64/v8");
  CHECK_FALSE(Platform::parse("linux"));
  CHECK_FALSE(Platform::parse("linux//x"));
  CHECK(host_platform().os == "linux");
  CHECK_FALSE(host_platform().architecture.empty());
}
