// Pulling from a real registry: Debian's docker-registry (CNCF distribution
// 2.8) on 127.0.0.1 with filesystem storage in a temp dir, the test image
// (scripts/make-test-image.sh) pushed into it with skopeo, pulled with
// berth::rootfs::pull into an image store in another temp dir. A small front
// (http_proxy.h) in between where the test needs Bearer tokens, a cut
// connection, a redirect, or a count of the requests.
//
// Every test starts its own registry and kills and reaps it at the end,
// failing or not (RegistryProcess), and every directory is a harness TempDir.
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>
#include <nettle/sha2.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rootfs-tools/image_store.h"
#include "rootfs-tools/reference.h"
#include "rootfs-tools/registry.h"
#include "tests/integration/harness.h"
#include "tests/integration/http_proxy.h"
#include "tests/integration/registry_fixture.h"

namespace {

namespace stdfs = std::filesystem;
using namespace berth::rootfs;
using berth::test::http;
using berth::test::HttpFront;
using berth::test::kRepository;
using berth::test::push_test_image;
using berth::test::RegistryProcess;
using berth::test::TempDir;
using berth::test::TestImage;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

struct Fixture {
  explicit Fixture(const std::string& htpasswd = "", const std::string& creds = "")
      : registry(htpasswd), image(push_test_image(registry.host(), work.path(), creds)) {}

  ImageStore make_store() {
    ImageStore s(work.path() + "/store");
    auto r = s.init();
    INFO((r ? "" : r.error().str()));
    REQUIRE(r.has_value());
    return s;
  }

  RegistryProcess registry;
  TempDir work;
  TestImage image;
};

Reference reference(const std::string& s) {
  auto r = Reference::parse(s);
  INFO(s << ": " << (r ? "" : r.error().str()));
  REQUIRE(r.has_value());
  return *r;
}

PullResult pull_ok(ImageStore& store, const std::string& ref, const PullOptions& opts = {}) {
  auto r = pull(store, reference(ref), opts);
  INFO("pull " << ref << ": " << (r ? "ok" : r.error().str()));
  REQUIRE(r.has_value());
  return std::move(*r);
}

std::string pull_error(ImageStore& store, const std::string& ref, const PullOptions& opts = {}) {
  auto r = pull(store, reference(ref), opts);
  INFO("pull " << ref);
  REQUIRE_FALSE(r.has_value());
  return r.error().str();
}

std::string sha256_hex(const std::string& data) {
  sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, data.size(), reinterpret_cast<const uint8_t*>(data.data()));
  uint8_t out[SHA256_DIGEST_SIZE];
  sha256_digest(&ctx, sizeof out, out);
  std::string hex;
  for (uint8_t b : out) hex += fmt::format("{:02x}", b);
  return hex;
}

Digest digest(const std::string& s) {
  auto d = Digest::parse(s);
  REQUIRE(d.has_value());
  return *d;
}

std::string partial_path(ImageStore& store, const std::string& d) {
  return store.root() + "/tmp/" + d.substr(7) + ".partial";
}

std::vector<HttpFront::Request> blob_gets(const HttpFront& front, const std::string& d) {
  std::vector<HttpFront::Request> out;
  for (const auto& r : front.requests()) {
    if (r.method == "GET" && r.target.ends_with("/blobs/" + d)) out.push_back(r);
  }
  return out;
}

// Progress events, gathered from whichever thread reports them.
struct ProgressLog {
  std::mutex mu;
  std::vector<ProgressEvent> events;
  Progress callback() {
    return [this](const ProgressEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
    };
  }
  bool has(const std::string& d, ProgressEvent::Phase phase) {
    std::lock_guard lock(mu);
    return std::any_of(events.begin(), events.end(), [&](const ProgressEvent& e) {
      return e.id == d.substr(7, 12) && e.phase == phase;
    });
  }
};

}  // namespace

TEST_CASE("registry: anonymous pull of a pushed image", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  std::string name = fx.registry.host() + "/" + kRepository + ":latest";
  ProgressLog progress;

  PullResult first = pull_ok(store, name, {.progress = progress.callback()});
  CHECK(first.image.digest.str() == fx.image.manifest);
  CHECK(first.image.config_digest.str() == fx.image.config);
  CHECK(first.image.names == std::vector<std::string>{name});
  CHECK(first.image.config.cmd == std::vector<std::string>{"/bin/sh"});
  CHECK_THAT(first.image.config.env.at(0), Contains("PATH=/usr/local/sbin"));
  CHECK(first.stats.blobs_fetched == 2);  // config + layer
  CHECK(first.stats.blobs_present == 0);
  CHECK(first.stats.blobs_resumed == 0);
  CHECK(first.stats.bytes_downloaded >= fx.image.layer_size);

  auto resolved = store.resolve(name);
  REQUIRE(resolved.has_value());
  CHECK(resolved->digest.str() == fx.image.manifest);
  for (const auto& d : {fx.image.manifest, fx.image.config, fx.image.layer}) {
    CHECK(store.blobs().has(digest(d)));
  }
  std::string layer = store.layer_dir(digest(fx.image.layer));
  CHECK(stdfs::is_regular_file(layer + "/bin/busybox"));
  CHECK(stdfs::is_symlink(layer + "/bin/sh"));
  CHECK_FALSE(stdfs::exists(partial_path(store, fx.image.layer)));

  CHECK(progress.has(fx.image.layer, ProgressEvent::Phase::waiting));
  CHECK(progress.has(fx.image.layer, ProgressEvent::Phase::downloading));
  CHECK(progress.has(fx.image.layer, ProgressEvent::Phase::verifying));
  CHECK(progress.has(fx.image.layer, ProgressEvent::Phase::done));
  CHECK(progress.has(fx.image.config, ProgressEvent::Phase::done));

  SECTION("a second pull finds every blob present") {
    PullResult again = pull_ok(store, name);
    CHECK(again.image.digest.str() == fx.image.manifest);
    CHECK(again.stats.blobs_fetched == 0);
    CHECK(again.stats.blobs_present == 2);
  }
  SECTION("by digest") {
    std::string by_digest = fx.registry.host() + "/" + kRepository + "@" + fx.image.manifest;
    PullResult r = pull_ok(store, by_digest);
    CHECK(r.image.digest.str() == fx.image.manifest);
    CHECK(store.resolve(by_digest).has_value());
  }
  SECTION("an unknown tag or repository is not found") {
    std::string nope = fx.registry.host() + "/" + kRepository + ":nope";
    CHECK_THAT(pull_error(store, nope),
               Contains("image " + nope + " not found in registry " + fx.registry.host()));
    std::string other = fx.registry.host() + "/berth-test/absent:latest";
    CHECK_THAT(pull_error(store, other),
               Contains("image " + other + " not found in registry " + fx.registry.host()));
  }
}

TEST_CASE("registry: an unreachable registry is an error naming the URL", "[registry]") {
  TempDir work;
  ImageStore store(work.path() + "/store");
  REQUIRE(store.init().has_value());
  // Bound but not listening: a connection to it is refused at once.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  std::string host = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  std::string msg = pull_error(store, host + "/x/y:z", {.attempts = 2});
  close(fd);
  CHECK_THAT(msg, Contains("GET http://" + host + "/v2/x/y/manifests/z"));
  CHECK_THAT(msg, Contains("connect"));
}

TEST_CASE("registry: an index is resolved to the platform's manifest", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  Platform host = host_platform();
  berth::test::Json index = {
      {"schemaVersion", 2},
      {"mediaType", media::oci_index},
      {"manifests",
       {{{"mediaType", media::oci_manifest},
         {"digest", fx.image.manifest},
         {"size", fx.image.manifest_json.size()},
         {"platform", {{"os", "linux"}, {"architecture", "s390x"}}}},
        {{"mediaType", media::oci_manifest},
         {"digest", fx.image.manifest},
         {"size", fx.image.manifest_json.size()},
         {"platform", {{"os", host.os}, {"architecture", host.architecture}}}}}}};
  std::string body = index.dump();
  auto put = http("PUT", "http://" + fx.registry.host() + "/v2/" + kRepository + "/manifests/multi",
                  body, {"Content-Type: " + std::string(media::oci_index)});
  INFO(put.body);
  REQUIRE(put.status == 201);

  std::string name = fx.registry.host() + "/" + kRepository + ":multi";
  PullResult r = pull_ok(store, name);
  CHECK(r.image.digest.str() == fx.image.manifest);
  CHECK(r.image.names == std::vector<std::string>{name});
  // The index is kept as a blob too.
  CHECK(store.blobs().has(digest("sha256:" + sha256_hex(body))));
  auto stored = store.blobs().list();
  REQUIRE(stored.has_value());
  CHECK(stored->size() == 4);  // index, manifest, config, layer

  PullOptions riscv{.platform = {"linux", "riscv64", ""}};
  CHECK_THAT(pull_error(store, name, riscv), Contains("no manifest for linux/riscv64"));
}

TEST_CASE("registry: Basic authentication with htpasswd", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  auto htpasswd = berth::test::exec_command({"htpasswd", "-Bbn", "berth", "s3cret"});
  REQUIRE(htpasswd.exit_code == 0);
  Fixture fx(htpasswd.out, "berth:s3cret");
  ImageStore store = fx.make_store();
  std::string name = fx.registry.host() + "/" + kRepository + ":latest";

  CHECK_THAT(pull_error(store, name),
             Contains("registry " + fx.registry.host() +
                      " requires authentication (Basic realm=\"berth-test\"): give credentials"));
  CHECK_THAT(pull_error(store, name, {.credentials = Credentials{"berth", "wrong"}}),
             Contains("refused the credentials of user \"berth\""));
  CHECK_FALSE(store.resolve(name).has_value());

  PullResult r = pull_ok(store, name, {.credentials = Credentials{"berth", "s3cret"}});
  CHECK(r.image.digest.str() == fx.image.manifest);
  CHECK(r.stats.blobs_fetched == 2);
  CHECK(stdfs::is_regular_file(store.layer_dir(digest(fx.image.layer)) + "/bin/busybox"));
}

TEST_CASE("registry: Bearer tokens from the realm, cached per scope", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  HttpFront front({.upstream_port = fx.registry.port(),
                   .bearer = true,
                   .username = "berth",
                   .password = "t0ken-pass"});
  std::string name = front.host() + "/" + kRepository + ":latest";

  CHECK_THAT(pull_error(store, name), Contains("registry " + front.host() +
                                               " requires authentication (Bearer realm=\"http://" +
                                               front.host() + "/token\"): give credentials"));
  CHECK_THAT(pull_error(store, name, {.credentials = Credentials{"berth", "wrong"}}),
             Contains("token server http://" + front.host() +
                      "/token refused the credentials of user \"berth\""));
  size_t before = front.requests().size();

  PullResult r = pull_ok(store, name, {.credentials = Credentials{"berth", "t0ken-pass"}});
  CHECK(r.image.digest.str() == fx.image.manifest);
  CHECK(r.stats.blobs_fetched == 2);
  CHECK(stdfs::is_regular_file(store.layer_dir(digest(fx.image.layer)) + "/bin/busybox"));

  auto log = front.requests();
  log.erase(log.begin(), log.begin() + static_cast<long>(before));
  std::vector<HttpFront::Request> tokens, authorized;
  for (const auto& q : log) {
    if (q.target.starts_with("/token")) tokens.push_back(q);
    if (q.target.starts_with("/v2/") && q.status != 401) authorized.push_back(q);
  }
  // One token for the whole pull: the workers reuse it.
  REQUIRE(tokens.size() == 1);
  CHECK(tokens[0].status == 200);
  CHECK_THAT(tokens[0].target, Contains("service=berth-test-registry"));
  CHECK_THAT(tokens[0].target, Contains("scope=repository%3Aberth-test%2Fbusybox%3Apull"));
  // manifest + config + layer, each answered by the registry behind.
  CHECK(authorized.size() == 3);
  for (const auto& q : authorized) {
    CHECK(q.headers.at("authorization") == "Bearer " + front.token());
    CHECK(q.status == 200);
  }

  SECTION("a token server that says access_token") {
    HttpFront other(
        {.upstream_port = fx.registry.port(), .bearer = true, .token_field = "access_token"});
    ImageStore second(fx.work.path() + "/store2");
    REQUIRE(second.init().has_value());
    PullResult r2 = pull_ok(second, other.host() + "/" + kRepository + ":latest");
    CHECK(r2.image.digest.str() == fx.image.manifest);
  }
}

TEST_CASE("registry: credentials do not follow a redirect to another host", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  // "storage": a plain front to the same registry, on another port (origin).
  HttpFront storage({.upstream_port = fx.registry.port()});
  HttpFront front({.upstream_port = fx.registry.port(),
                   .bearer = true,
                   .username = "berth",
                   .password = "pw",
                   .redirect_blobs_to = "http://" + storage.host()});
  std::string name = front.host() + "/" + kRepository + ":latest";

  PullResult r = pull_ok(store, name, {.credentials = Credentials{"berth", "pw"}});
  CHECK(r.image.digest.str() == fx.image.manifest);
  CHECK(r.stats.blobs_fetched == 2);

  size_t redirects = 0;
  for (const auto& q : front.requests()) redirects += q.status == 307;
  CHECK(redirects == 2);
  auto at_storage = storage.requests();
  REQUIRE(at_storage.size() == 2);  // config and layer, fetched there
  for (const auto& q : at_storage) {
    CHECK(q.headers.count("authorization") == 0);
    CHECK(q.status == 200);
  }
}

TEST_CASE("registry: a tampered blob is refused and nothing of it is kept", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  std::string data = fx.registry.blob_data(fx.image.layer);
  REQUIRE(stdfs::is_regular_file(data));
  {
    // Same size, different bytes: only the digest can tell.
    std::fstream f(data, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fx.image.layer_size / 2));
    f.write("TAMPERED", 8);
    REQUIRE(f.good());
  }
  std::string name = fx.registry.host() + "/" + kRepository + ":latest";
  std::string msg = pull_error(store, name);
  CHECK_THAT(msg, Contains("blob " + fx.image.layer));
  CHECK_THAT(msg, Contains("digest mismatch: expected " + fx.image.layer + ", got sha256:"));

  CHECK_FALSE(store.blobs().has(digest(fx.image.layer)));
  CHECK_FALSE(stdfs::exists(partial_path(store, fx.image.layer)));
  CHECK_FALSE(store.has_layer(digest(fx.image.layer)));
  CHECK_FALSE(store.resolve(name).has_value());
  auto images = store.list();
  REQUIRE(images.has_value());
  CHECK(images->empty());
}

TEST_CASE("registry: two concurrent pulls download each blob once", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  (void)fx.make_store();
  HttpFront counter({.upstream_port = fx.registry.port()});
  std::string name = counter.host() + "/" + kRepository + ":latest";

  std::latch start(2);
  std::optional<berth::Result<PullResult>> results[2];
  auto run = [&](int i) {
    ImageStore store(fx.work.path() + "/store");  // its own object on the same root
    start.arrive_and_wait();
    results[i] = pull(store, *Reference::parse(name));
  };
  { std::jthread a(run, 0), b(run, 1); }
  uint64_t fetched = 0, present = 0;
  for (auto& r : results) {
    REQUIRE(r.has_value());
    INFO((*r ? "ok" : r->error().str()));
    REQUIRE(r->has_value());
    CHECK((*r)->image.digest.str() == fx.image.manifest);
    fetched += (*r)->stats.blobs_fetched;
    present += (*r)->stats.blobs_present;
  }
  CHECK(fetched == 2);
  CHECK(present == 2);
  CHECK(blob_gets(counter, fx.image.layer).size() == 1);
  CHECK(blob_gets(counter, fx.image.config).size() == 1);
  ImageStore store = fx.make_store();
  CHECK(store.resolve(name).has_value());
}

TEST_CASE("registry: an interrupted download is resumed with a Range request", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  size_t cut = fx.image.layer_size / 2;
  HttpFront front(
      {.upstream_port = fx.registry.port(), .cut_path = fx.image.layer, .cut_after = cut});
  std::string name = front.host() + "/" + kRepository + ":latest";
  std::string range = "bytes=" + std::to_string(cut) + "-";

  SECTION("the retry of the same pull continues") {
    PullResult r = pull_ok(store, name, {.attempts = 3});
    CHECK(r.stats.blobs_fetched == 2);
    CHECK(r.stats.blobs_resumed == 1);
  }
  SECTION("the next pull continues the partial file of a failed one") {
    std::string msg = pull_error(store, name, {.attempts = 1});
    CHECK_THAT(msg, Contains("/blobs/" + fx.image.layer));
    CHECK_FALSE(store.blobs().has(digest(fx.image.layer)));
    REQUIRE(stdfs::exists(partial_path(store, fx.image.layer)));
    CHECK(stdfs::file_size(partial_path(store, fx.image.layer)) == cut);

    ImageStore again = fx.make_store();  // init() keeps partial downloads
    PullResult r = pull_ok(again, name, {.attempts = 1});
    // The config may have come with the failed pull, or been cut short by
    // its cancellation (then it is resumed too).
    CHECK(r.stats.blobs_fetched + r.stats.blobs_present == 2);
    CHECK(r.stats.blobs_resumed >= 1);
    CHECK(r.stats.bytes_downloaded < fx.image.layer_size);
  }
  auto gets = blob_gets(front, fx.image.layer);
  REQUIRE(gets.size() == 2);
  CHECK(gets[0].cut);
  CHECK(gets[0].headers.count("range") == 0);
  CHECK(gets[1].headers.at("range") == range);
  CHECK(gets[1].status == 206);
  CHECK(store.blobs().has(digest(fx.image.layer)));
  CHECK_FALSE(stdfs::exists(partial_path(store, fx.image.layer)));
  CHECK(stdfs::is_regular_file(store.layer_dir(digest(fx.image.layer)) + "/bin/busybox"));
}

TEST_CASE("registry: a server that ignores Range gets the blob from the start", "[registry]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  size_t cut = fx.image.layer_size / 3;
  HttpFront front({.upstream_port = fx.registry.port(),
                   .cut_path = fx.image.layer,
                   .cut_after = cut,
                   .strip_range = true});
  std::string name = front.host() + "/" + kRepository + ":latest";

  PullResult r = pull_ok(store, name, {.attempts = 2});
  CHECK(r.stats.blobs_fetched == 2);
  CHECK(r.stats.blobs_resumed == 0);
  CHECK(r.stats.bytes_downloaded >= cut + fx.image.layer_size);
  auto gets = blob_gets(front, fx.image.layer);
  REQUIRE(gets.size() == 2);
  CHECK(gets[0].cut);
  CHECK(gets[1].headers.at("range") == "bytes=" + std::to_string(cut) + "-");
  CHECK(gets[1].status == 200);  // the whole blob: the partial file starts over
  CHECK(store.blobs().has(digest(fx.image.layer)));
  CHECK(stdfs::is_regular_file(store.layer_dir(digest(fx.image.layer)) + "/bin/busybox"));
}

// ---- hostile registries (issue 9) ---------------------------------------------------

namespace {

// After a refused pull: no layer blob, no unpacked layer, no image; what a
// failed transfer keeps for the next pull (tmp/*.partial) goes with prune.
void check_nothing_kept(ImageStore& store, const TestImage& img) {
  CHECK_FALSE(store.blobs().has(digest(img.layer)));
  CHECK_FALSE(store.has_layer(digest(img.layer)));
  auto images = store.list();
  REQUIRE(images.has_value());
  CHECK(images->empty());
  REQUIRE(store.prune().has_value());
  CHECK(stdfs::is_empty(store.root() + "/tmp"));
  CHECK(stdfs::is_empty(store.root() + "/layers"));
}

}  // namespace

TEST_CASE("registry: a registry that drips bytes fails the pull in bounded time",
          "[registry][hostile]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  // The layer blob comes at 1 byte/s, forever as far as the client knows.
  HttpFront front({.upstream_port = fx.registry.port(),
                   .synthetic_path = "/blobs/" + fx.image.layer,
                   .synthetic_bytes = fx.image.layer_size,
                   .drip_interval = 1s});
  std::string name = front.host() + "/" + kRepository + ":latest";

  SECTION("below the minimum throughput") {
    // The old limit was 1 byte per 60 s, which a drip keeps up with forever.
    std::string msg =
        pull_error(store, name, {.attempts = 1, .min_speed_bytes = 100, .min_speed_time_s = 2});
    CHECK_THAT(msg, Contains("/blobs/" + fx.image.layer));
    CHECK_THAT(msg, Contains("at least 100 bytes/s over 2 s"));
  }
  SECTION("past the blob's deadline") {
    // Fast enough for the throughput limit (1 byte/s), not for the deadline:
    // 2 s plus nothing for the size. Each attempt gets what is left of it.
    std::string msg = pull_error(store, name,
                                 {.attempts = 3,
                                  .min_speed_bytes = 1,
                                  .min_speed_time_s = 60,
                                  .blob_deadline_base_s = 2,
                                  .blob_deadline_rate = uint64_t{1} << 40});
    CHECK_THAT(msg, Contains("blob " + fx.image.layer));
    CHECK_THAT(msg, Contains("deadline"));
  }
  check_nothing_kept(store, fx.image);
}

TEST_CASE("registry: a blob longer or shorter than its descriptor is refused",
          "[registry][hostile]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  SECTION("longer: stopped at the declared size") {
    HttpFront front({.upstream_port = fx.registry.port(),
                     .synthetic_path = "/blobs/" + fx.image.layer,
                     .synthetic_bytes = fx.image.layer_size + (8 << 20)});
    std::string name = front.host() + "/" + kRepository + ":latest";
    std::string msg = pull_error(store, name, {.attempts = 1});
    CHECK_THAT(msg, Contains("blob " + fx.image.layer + " from registry " + front.host() +
                             ": more than the " + std::to_string(fx.image.layer_size) +
                             " bytes of its descriptor"));
    // Nothing of it is kept, not even for a resume.
    CHECK_FALSE(stdfs::exists(partial_path(store, fx.image.layer)));
  }
  SECTION("shorter") {
    HttpFront front({.upstream_port = fx.registry.port(),
                     .synthetic_path = "/blobs/" + fx.image.layer,
                     .synthetic_bytes = fx.image.layer_size - 10});
    std::string name = front.host() + "/" + kRepository + ":latest";
    std::string msg = pull_error(store, name, {.attempts = 1});
    CHECK_THAT(msg, Contains("got " + std::to_string(fx.image.layer_size - 10) + " of " +
                             std::to_string(fx.image.layer_size) + " bytes"));
  }
  check_nothing_kept(store, fx.image);
}

TEST_CASE("registry: manifests and configs beyond their size limits are refused",
          "[registry][hostile]") {
  REQUIRE_REGISTRY_TOOLS();
  Fixture fx;
  ImageStore store = fx.make_store();
  SECTION("a 5 MiB manifest") {
    HttpFront front({.upstream_port = fx.registry.port(),
                     .synthetic_path = "/manifests/",
                     .synthetic_bytes = 5 << 20,
                     .synthetic_type = std::string(media::oci_manifest)});
    std::string name = front.host() + "/" + kRepository + ":latest";
    std::string msg = pull_error(store, name);
    CHECK_THAT(msg, Contains("/manifests/latest: the response is larger than the limit of " +
                             std::to_string(4 << 20) + " bytes"));
  }
  SECTION("a config above max_config_bytes, refused before it is fetched") {
    HttpFront front({.upstream_port = fx.registry.port()});
    std::string name = front.host() + "/" + kRepository + ":latest";
    std::string msg = pull_error(store, name, {.max_config_bytes = 16});
    CHECK_THAT(msg, Contains("config " + fx.image.config));
    CHECK_THAT(msg, Contains("more than the limit of 16 (max_config_bytes)"));
    CHECK(blob_gets(front, fx.image.config).empty());
    CHECK_FALSE(store.blobs().has(digest(fx.image.config)));
  }
  check_nothing_kept(store, fx.image);
}
