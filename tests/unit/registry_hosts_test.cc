// Per-registry settings (rootfs-tools/registry.h, RegistryHost): which entry
// applies to a host, and where a pull goes — mirrors in order, then the
// registry — with which scheme and credentials. The TLS side against a real
// registry is in tests/integration/registry_tls_test.cc.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "rootfs-tools/reference.h"
#include "rootfs-tools/registry.h"

using namespace berth::rootfs;

namespace {

Reference ref_of(const std::string& s) {
  auto r = Reference::parse(s);
  REQUIRE(r);
  return *r;
}

std::vector<std::string> urls(const std::vector<RegistryEndpoint>& eps) {
  std::vector<std::string> out;
  for (const auto& e : eps) out.push_back(e.base_url);
  return out;
}

}  // namespace

TEST_CASE("the registry host entry is found by name, docker.io by its aliases",
          "[registry-hosts]") {
  std::vector<RegistryHost> hosts = {
      {.host = "Registry.Example.com"}, {.host = "127.0.0.1:5443"}, {.host = "docker.io"}};
  CHECK(find_registry_host(hosts, "registry.example.com") == &hosts[0]);
  CHECK(find_registry_host(hosts, "127.0.0.1:5443") == &hosts[1]);
  CHECK(find_registry_host(hosts, "127.0.0.1") == nullptr);  // the port is part of the name
  CHECK(find_registry_host(hosts, "127.0.0.1:5000") == nullptr);
  CHECK(find_registry_host(hosts, "registry-1.docker.io") == &hosts[2]);
  CHECK(find_registry_host(hosts, "index.docker.io") == &hosts[2]);
  CHECK(find_registry_host(hosts, "docker.io") == &hosts[2]);
  CHECK(find_registry_host({}, "docker.io") == nullptr);
}

TEST_CASE("without entries a pull goes to the registry as before", "[registry-hosts]") {
  PullOptions opts;
  opts.credentials = Credentials{"u", "p"};
  auto eps = registry_endpoints(ref_of("registry.example.com/a/b:1"), opts);
  REQUIRE(eps);
  REQUIRE(eps->size() == 1);
  CHECK((*eps)[0].base_url == "https://registry.example.com");
  CHECK((*eps)[0].host == "registry.example.com");
  CHECK_FALSE((*eps)[0].mirror);
  REQUIRE((*eps)[0].credentials);
  CHECK((*eps)[0].credentials->username == "u");

  auto hub = registry_endpoints(ref_of("busybox"), {});
  REQUIRE(hub);
  CHECK(urls(*hub) == std::vector<std::string>{"https://registry-1.docker.io"});
  CHECK((*hub)[0].host == "docker.io");

  auto local = registry_endpoints(ref_of("127.0.0.1:5000/a:1"), {});
  REQUIRE(local);
  CHECK(urls(*local) == std::vector<std::string>{"http://127.0.0.1:5000"});
}

TEST_CASE("mirrors come first, in order, then the registry", "[registry-hosts]") {
  PullOptions opts;
  opts.credentials = Credentials{"upstream-user", "pw"};
  opts.hosts = {
      {.host = "docker.io",
       .credentials = Credentials{"hub-user", "pw"},
       .mirrors = {"mirror.example.com", "http://10.0.0.5:5000", "https://127.0.0.1:5443/",
                   "m2.example.com:8443"}},
      {.host = "m2.example.com:8443", .credentials = Credentials{"m2-user", "pw"}},
  };
  auto eps = registry_endpoints(ref_of("docker.io/library/busybox:latest"), opts);
  REQUIRE(eps);
  CHECK(urls(*eps) == std::vector<std::string>{"https://mirror.example.com", "http://10.0.0.5:5000",
                                               "https://127.0.0.1:5443",
                                               "https://m2.example.com:8443",
                                               "https://registry-1.docker.io"});
  for (size_t i = 0; i < 4; ++i) CHECK((*eps)[i].mirror);
  CHECK_FALSE((*eps)[4].mirror);
  // A mirror gets its own credentials only, never the upstream's.
  CHECK_FALSE((*eps)[0].credentials);
  REQUIRE((*eps)[3].credentials);
  CHECK((*eps)[3].credentials->username == "m2-user");
  // The registry: its entry's credentials before PullOptions::credentials.
  REQUIRE((*eps)[4].credentials);
  CHECK((*eps)[4].credentials->username == "hub-user");
  CHECK((*eps)[4].host == "docker.io");
}

TEST_CASE("the scheme: explicit, TLS settings, loopback, insecure", "[registry-hosts]") {
  auto url_for = [](const std::string& ref, std::vector<RegistryHost> hosts,
                    std::vector<std::string> insecure = {}) {
    PullOptions opts;
    opts.hosts = std::move(hosts);
    opts.insecure_registries = std::move(insecure);
    auto eps = registry_endpoints(ref_of(ref), opts);
    REQUIRE(eps);
    return eps->back().base_url;
  };
  // Loopback is http unless its entry configures TLS or says https.
  CHECK(url_for("127.0.0.1:5443/a:1", {{.host = "127.0.0.1:5443"}}) == "http://127.0.0.1:5443");
  CHECK(url_for("127.0.0.1:5443/a:1", {{.host = "127.0.0.1:5443", .ca_file = "/ca.pem"}}) ==
        "https://127.0.0.1:5443");
  CHECK(url_for("127.0.0.1:5443/a:1",
                {{.host = "127.0.0.1:5443", .client_cert = "/c.pem", .client_key = "/k.pem"}}) ==
        "https://127.0.0.1:5443");
  CHECK(url_for("127.0.0.1:5443/a:1", {{.host = "127.0.0.1:5443", .skip_verify = true}}) ==
        "https://127.0.0.1:5443");
  CHECK(url_for("127.0.0.1:5443/a:1", {{.host = "127.0.0.1:5443", .scheme = "https"}}) ==
        "https://127.0.0.1:5443");
  // Others are https unless insecure (the entry's flag or the list).
  CHECK(url_for("r.example.com/a:1", {{.host = "r.example.com", .insecure = true}}) ==
        "http://r.example.com");
  CHECK(url_for("r.example.com/a:1", {}, {"r.example.com"}) == "http://r.example.com");
  CHECK(url_for("r.example.com/a:1", {{.host = "r.example.com", .scheme = "http"}}) ==
        "http://r.example.com");
  CHECK(url_for("r.example.com/a:1", {{.host = "other.example.com", .insecure = true}}) ==
        "https://r.example.com");
  // A mirror without a scheme follows its own entry.
  PullOptions opts;
  opts.hosts = {{.host = "r.example.com", .mirrors = {"127.0.0.1:5000", "127.0.0.1:5443"}},
                {.host = "127.0.0.1:5443", .ca_file = "/ca.pem"}};
  auto eps = registry_endpoints(ref_of("r.example.com/a:1"), opts);
  REQUIRE(eps);
  CHECK(urls(*eps) == std::vector<std::string>{"http://127.0.0.1:5000", "https://127.0.0.1:5443",
                                               "https://r.example.com"});
}

TEST_CASE("bad registry host entries are errors naming the host", "[registry-hosts]") {
  auto fails = [](RegistryHost h) {
    PullOptions opts;
    opts.hosts = {std::move(h)};
    auto eps = registry_endpoints(ref_of("r.example.com/a:1"), opts);
    REQUIRE_FALSE(eps);
    return eps.error().message;
  };
  CHECK(fails({.host = "r.example.com", .mirrors = {"ftp://m.example.com"}}) ==
        "registry r.example.com: mirror \"ftp://m.example.com\": want host[:port], optionally "
        "after http:// or https://");
  CHECK(fails({.host = "r.example.com", .mirrors = {"https://m.example.com/v2/path"}})
            .starts_with("registry r.example.com: mirror \"https://m.example.com/v2/path\""));
  CHECK(fails({.host = "r.example.com", .mirrors = {""}})
            .starts_with("registry r.example.com: mirror \"\""));
  CHECK(fails({.host = "r.example.com", .scheme = "ftp"}) ==
        "registry r.example.com: scheme \"ftp\": want http or https");
  CHECK(fails({.host = "r.example.com", .client_cert = "/c.pem"}) ==
        "registry r.example.com: a client certificate needs its key and the reverse");
  CHECK(fails({.host = "r.example.com", .client_key = "/k.pem"}) ==
        "registry r.example.com: a client certificate needs its key and the reverse");
}
