// berthd's configuration: TOML over embedded defaults, with errors that name
// the key and the file position.
#include <catch2/catch.hpp>

#include "controlplane/config.h"

using namespace berth;
using namespace berth::cp;

namespace {

Config parse_ok(std::string_view text) {
  auto c = parse_config(text, "test.toml", Config{});
  INFO((c ? "" : c.error().str()));
  REQUIRE(c);
  auto f = finish_config(*c);
  INFO((f ? "" : f.error().str()));
  REQUIRE(f);
  return *f;
}

std::string parse_err(std::string_view text) {
  auto c = parse_config(text, "test.toml", Config{});
  if (c) c = finish_config(*c);
  REQUIRE_FALSE(c);
  CHECK(c.error().kind == ErrorKind::invalid);
  return c.error().str();
}

}  // namespace

TEST_CASE("config: embedded defaults serve root on the unix socket as one account", "[cp-config]") {
  Config c = parse_ok("");
  CHECK(c.state_dir == "/var/lib/berth");
  CHECK(c.socket_path() == "/run/berth/berthd.sock");
  CHECK(c.bridge == "berth0");
  CHECK(c.link_prefix == "berth0z");
  CHECK(c.images_dir == "/var/lib/berth/rootfs");
  REQUIRE(c.accounts.size() == 1);
  CHECK(c.accounts[0].id == "000000000000");
  CHECK(c.accounts[0].unix_uids == std::vector<uint32_t>{0});
  CHECK(c.accounts[0].access_key_id.empty());
  CHECK(c.pricing.vcpu_hour_micro_usd == 40480);
  CHECK(c.pricing.gb_hour_micro_usd == 4445);
  CHECK(c.pricing.minimum_seconds == 60);
}

TEST_CASE("config: the INTERFACES.md example is read as written", "[cp-config]") {
  Config c = parse_ok(R"(
state_dir = "/srv/berth"
run_dir = "/run/berth-b"
listen = "127.0.0.1:8089"
bridge = "berthb0"
subnet = "10.99.0.0/16"
cgroup_name = "berth-b"
nft_table = "berth_b"
warm_pool = 8
region = "eu-west-1"

[[accounts]]
id = "000000000001"
name = "alice"
access_key_id = "AKIDALICE0000000001"
secret_access_key = "secret"
unix_uids = [0, 1000]

[[accounts]]
id = "000000000002"
name = "bob"

[pricing]
vcpu_per_hour_usd = 0.04048
gb_per_hour_usd = "0.004445"
minimum_seconds = 0

[[registries]]
host = "registry.example.com"
ca_file = "/etc/berth/ca.pem"
mirrors = ["https://mirror.example.com"]

[[credentials]]
name = "private"
username = "u"
password = "p"
)");
  CHECK(c.state_dir == "/srv/berth");
  CHECK(c.listen == "127.0.0.1:8089");
  CHECK(c.warm_pool == 8);
  REQUIRE(c.accounts.size() == 2);
  CHECK(c.accounts[0].name == "alice");
  CHECK(c.accounts[0].unix_uids == std::vector<uint32_t>{0, 1000});
  CHECK(c.accounts[1].unix_uids.empty());
  CHECK(c.pricing.vcpu_hour_micro_usd == 40480);
  CHECK(c.pricing.gb_hour_micro_usd == 4445);
  CHECK(c.pricing.minimum_seconds == 0);
  REQUIRE(c.registries.size() == 1);
  CHECK(c.registries[0].mirrors == std::vector<std::string>{"https://mirror.example.com"});
  REQUIRE(c.credentials.size() == 1);
  CHECK(c.credentials[0].password == "p");
}

TEST_CASE("config: mistakes are errors naming the key", "[cp-config]") {
  CHECK_THAT(parse_err("state_dri = \"/x\""), Catch::Contains("test.toml: state_dri: unknown key"));
  CHECK_THAT(parse_err("warm_pool = \"4\""), Catch::Contains("warm_pool: expected an integer"));
  CHECK_THAT(parse_err("warm_pool = -1"), Catch::Contains("warm_pool: -1 is out of range"));
  CHECK_THAT(parse_err("state_dir = \"relative\""),
             Catch::Contains("state_dir: must be an absolute path"));
  CHECK_THAT(parse_err("subnet = \"10.0.0.1/8\""), Catch::Contains("subnet:"));
  CHECK_THAT(parse_err("bridge = \"a-very-long-bridge-name\""), Catch::Contains("bridge:"));
  CHECK_THAT(parse_err("[[accounts]]\nid = \"42\""),
             Catch::Contains("accounts[0].id: \"42\" is not a 12-digit account id"));
  CHECK_THAT(parse_err("[[accounts]]\nid = \"000000000001\"\nunix_uids = [0]\n"
                       "[[accounts]]\nid = \"000000000002\"\nunix_uids = [0]"),
             Catch::Contains("uid 0 is mapped to two accounts"));
  CHECK_THAT(parse_err("[[accounts]]\nid = \"000000000001\"\naccess_key_id = \"A\""),
             Catch::Contains("access_key_id and secret_access_key go together"));
  CHECK_THAT(parse_err("[[accounts]]\nid = \"000000000001\"\ncolour = \"red\""),
             Catch::Contains("accounts[0].colour: unknown key"));
  CHECK_THAT(parse_err("[pricing]\nvcpu_per_hour_usd = \"0.0000001\""),
             Catch::Contains("is not a price in dollars with at most 6 decimals"));
  CHECK_THAT(parse_err("warm_pool = = 3"), Catch::Contains("test.toml:1:"));
}

TEST_CASE("config: examples/berthd.toml is a valid configuration", "[cp-config]") {
  auto c =
      load_config_file(std::string(BERTH_TEST_DATA_DIR) + "/../../examples/berthd.toml", Config{});
  INFO((c ? "" : c.error().str()));
  REQUIRE(c);
  auto f = finish_config(*c);
  INFO((f ? "" : f.error().str()));
  REQUIRE(f);
  CHECK(f->accounts.size() == 1);
  CHECK(f->pricing.gb_hour_micro_usd == 4445);
}
