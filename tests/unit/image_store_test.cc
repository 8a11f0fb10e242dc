#include "rootfs-tools/image_store.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "common/fs.h"
#include "tests/skip.h"
#include "tests/unit/tar_writer.h"
#include "tests/unit/temp_dir.h"

using namespace berth::rootfs;
using berth::test::Entry;
using berth::test::Filter;
using berth::test::TempDir;
using berth::test::write_layer;

namespace {

std::string fs_read(const std::string& p) {
  auto r = berth::fs::read_file(p);
  REQUIRE(r);
  return *r;
}

bool present(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

// Puts a layer made of `entries` into the store; returns its descriptor.
Descriptor put_layer(ImageStore& store, const TempDir& tmp, const std::vector<Entry>& entries) {
  static int n = 0;
  std::string path = tmp / ("layer" + std::to_string(n++) + ".tar.gz");
  write_layer(path, entries, Filter::gzip);
  auto d = store.blobs().put_file(path);
  REQUIRE(d);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return Descriptor{std::string(media::oci_layer_gzip), *d, st.st_size, {}, {}};
}

// Puts config + manifest of an image with `layers`; returns the manifest digest.
Digest put_image(ImageStore& store, const std::vector<Descriptor>& layers,
                 const std::string& cmd = "/bin/sh", const Platform& platform = host_platform()) {
  std::vector<Digest> diff_ids;
  for (const auto& l : layers) diff_ids.push_back(l.digest);  // not checked by add
  std::string config = minimal_image_config_json(diff_ids, platform);
  config.insert(config.find("\"config\":{") + 10, "\"Cmd\":[\"" + cmd + "\"]");
  auto cd = store.blobs().put(config);
  REQUIRE(cd);
  Manifest m;
  m.media_type = std::string(media::oci_manifest);
  m.config =
      Descriptor{std::string(media::oci_config), *cd, static_cast<int64_t>(config.size()), {}, {}};
  m.layers = layers;
  auto md = store.blobs().put(to_json(m));
  REQUIRE(md);
  return *md;
}

std::vector<Entry> base_tree() {
  return {{.path = "bin/", .type = AE_IFDIR, .perm = 0755},
          {.path = "bin/tool", .perm = 0755, .data = "tool\n"},
          {.path = "etc/", .type = AE_IFDIR, .perm = 0755},
          {.path = "etc/conf", .data = "a=1\n"}};
}

// A chain of `levels` directories "d" below `top` (made with mkdirat, as a
// crashed prune would have left it).
void make_chain(const std::string& top, size_t levels) {
  REQUIRE(berth::fs::mkdir_p(top));
  int fd = ::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  for (size_t i = 0; i < levels; ++i) {
    REQUIRE(::mkdirat(fd, "d", 0755) == 0);
    int next = ::openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(fd);
    REQUIRE(next >= 0);
    fd = next;
  }
  REQUIRE(::mknodat(fd, "f", S_IFREG | 0644, 0) == 0);
  ::close(fd);
}

std::string deep_path(size_t levels, const std::string& leaf) {
  std::string p;
  for (size_t i = 0; i < levels; ++i) p += "d/";
  return p + leaf;
}

// std::filesystem::remove_all (TempDir) holds an fd per level: deep trees
// are removed by the test itself.
struct RemoveAtExit {
  std::string path;
  ~RemoveAtExit() { (void)berth::fs::remove_all(path); }
};

}  // namespace

TEST_CASE("image store: a 20000-level layer is refused, or unpacked and pruned when allowed",
          "[image-store][hostile]") {
  TempDir tmp;
  RemoveAtExit cleanup{tmp / "store"};
  ImageStore store(tmp / "store");
  REQUIRE(store.init());
  Descriptor layer = put_layer(store, tmp, {{.path = deep_path(20000, "file"), .data = "x"}});
  Digest image = put_image(store, {layer});

  // The defaults refuse it, naming the limit; nothing is left in layers/.
  auto refused = store.add(image, {"deep:latest"});
  REQUIRE_FALSE(refused);
  CHECK_THAT(refused.error().str(), Catch::Contains("(max_path)"));
  CHECK(std::filesystem::is_empty(tmp / "store/layers"));

  // Allowed, it is unpacked; prune removes it (the recursive removal died
  // with SIGSEGV here and left layers/.del-*), and the store opens again.
  UnpackLimits unlimited;
  unlimited.max_depth = 0;
  unlimited.max_path = 0;
  store.set_unpack_limits(unlimited);
  auto added = store.add(image, {"deep:latest"});
  INFO((added ? "" : added.error().str()));
  REQUIRE(added);
  CHECK(store.has_layer(layer.digest));
  REQUIRE(store.remove("deep:latest"));
  auto pruned = store.prune();
  INFO((pruned ? "" : pruned.error().str()));
  REQUIRE(pruned);
  CHECK(pruned->layers_removed == 1);
  CHECK(std::filesystem::is_empty(tmp / "store/layers"));
  ImageStore reopened(tmp / "store");
  CHECK(reopened.init());
}

TEST_CASE("image store: init clears deep leftovers and never fails on one it cannot remove",
          "[image-store][hostile]") {
  TempDir tmp;
  RemoveAtExit cleanup{tmp / "store"};
  ImageStore store(tmp / "store");
  REQUIRE(store.init());
  // What the crashed prune left: 20,000 levels under layers/.del-<hex>.
  std::string del = tmp / ("store/layers/.del-" + std::string(64, 'b'));
  make_chain(del, 20000);
  auto r = store.init();
  INFO((r ? "" : r.error().str()));
  REQUIRE(r);
  CHECK_FALSE(present(del));

  // A leftover that must not be removed (a filesystem mounted in it): init
  // logs it and opens the store anyway; the mount's content is untouched.
  if (::geteuid() != 0) BERTH_SKIP("mounting a tmpfs needs root");
  std::string stuck = tmp / ("store/layers/.tmp-" + std::string(64, 'c') + "-ABCDEF");
  REQUIRE(berth::fs::mkdir_p(stuck + "/root/mnt"));
  REQUIRE(::mount("tmpfs", (stuck + "/root/mnt").c_str(), "tmpfs", 0, "size=1m") == 0);
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{stuck + "/root/mnt"};
  REQUIRE(berth::fs::write_file_atomic(stuck + "/root/mnt/keep", "precious"));
  auto again = store.init();
  INFO((again ? "" : again.error().str()));
  CHECK(again);
  CHECK(fs_read(stuck + "/root/mnt/keep") == "precious");
}

TEST_CASE("image store: add, resolve, list, remove", "[image-store]") {
  TempDir tmp;
  ImageStore store(tmp / "store");
  REQUIRE(store.init());
  Descriptor l1 = put_layer(store, tmp, base_tree());
  Digest id = put_image(store, {l1});

  auto img = store.add(id, {"busybox", "127.0.0.1:5000/x/y:v1"});
  REQUIRE(img);
  CHECK(img->digest == id);
  CHECK(img->names ==
        std::vector<std::string>{"127.0.0.1:5000/x/y:v1", "docker.io/library/busybox:latest"});
  CHECK(img->config.cmd == std::vector<std::string>{"/bin/sh"});
  CHECK(img->unpacked_size == 9);  // "tool\n" + "a=1\n"
  CHECK(img->blob_size > static_cast<uint64_t>(l1.size));
  CHECK(fs_read(store.layer_dir(l1.digest) + "/etc/conf") == "a=1\n");

  for (std::string ref : std::vector<std::string>{
           "busybox", "busybox:latest", "docker.io/library/busybox", "127.0.0.1:5000/x/y:v1",
           id.str(), id.hex.substr(0, 12), "busybox@" + id.str()}) {
    INFO(ref);
    auto r = store.resolve(ref);
    REQUIRE(r);
    CHECK(r->digest == id);
  }
  auto missing = store.resolve("busybox:2");
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error().str(), Catch::Contains("\"busybox:2\" not found"));
  auto bad = store.resolve("Not/Valid");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().str(), Catch::Contains("invalid reference"));

  // A name moves to a newer image; the old one keeps its other name.
  Descriptor l2 = put_layer(store, tmp, {{.path = "new", .data = "2"}});
  Digest id2 = put_image(store, {l1, l2}, "/new");
  REQUIRE(store.add(id2, {"busybox"}));
  auto now = store.resolve("busybox");
  REQUIRE(now);
  CHECK(now->digest == id2);
  auto old = store.resolve(id.str());
  REQUIRE(old);
  CHECK(old->names == std::vector<std::string>{"127.0.0.1:5000/x/y:v1"});
  auto all = store.list();
  REQUIRE(all);
  CHECK(all->size() == 2);

  // rm of the last name deletes the record; blobs stay until prune.
  auto rm = store.remove("127.0.0.1:5000/x/y:v1");
  REQUIRE(rm);
  REQUIRE(rm->deleted);
  CHECK(*rm->deleted == id);
  CHECK_FALSE(store.resolve(id.str()));
  CHECK(store.blobs().has(id));

  auto pruned = store.prune();
  REQUIRE(pruned);
  CHECK(pruned->blobs_removed == 2);  // the old manifest and config; its layer is shared
  CHECK(pruned->layers_removed == 0);
  CHECK(store.has_layer(l1.digest));
  CHECK_FALSE(store.blobs().has(id));

  REQUIRE(store.remove(id2.hex.substr(0, 8)));
  auto pruned2 = store.prune();
  REQUIRE(pruned2);
  CHECK(pruned2->blobs_removed == 4);
  CHECK(pruned2->layers_removed == 2);
  CHECK(pruned2->bytes_freed > 0);
  auto left = store.blobs().list();
  REQUIRE(left);
  CHECK(left->empty());
  CHECK(std::filesystem::is_empty(tmp / "store/layers"));
}

TEST_CASE("image store: an image needs all its blobs, a bad layer leaves nothing",
          "[image-store]") {
  TempDir tmp;
  ImageStore store(tmp / "store");
  REQUIRE(store.init());
  Descriptor l1 = put_layer(store, tmp, base_tree());
  Descriptor ghost = l1;
  ghost.digest = *Digest::parse("sha256:" + std::string(64, '7'));
  auto missing = store.add(put_image(store, {l1, ghost}), {"x"});
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error().str(), Catch::Contains("layer 2 of 2 (sha256:7777"));

  Descriptor hostile = put_layer(store, tmp, {{.path = "../escape", .data = "x"}});
  auto failed = store.add(put_image(store, {l1, hostile}), {"x"});
  REQUIRE_FALSE(failed);
  CHECK_THAT(failed.error().str(), Catch::Contains(hostile.digest.str()));
  CHECK_THAT(failed.error().str(), Catch::Contains("../escape"));
  CHECK_FALSE(store.has_layer(hostile.digest));
  CHECK_FALSE(present(tmp / "store/escape"));
  CHECK_FALSE(present(tmp / "store/layers/escape"));
  for (auto& e : std::filesystem::directory_iterator(tmp / "store/layers")) {
    CHECK_FALSE(e.path().filename().string().starts_with(".tmp-"));
  }
  Digest arm = put_image(store, {l1}, "/bin/sh", Platform{"linux", "arm64", ""});
  auto wrong = store.add(arm, {"x"}, AddOptions{.platform = Platform{"linux", "amd64", ""}});
  REQUIRE_FALSE(wrong);
  CHECK_THAT(wrong.error().str(), Catch::Contains("is for linux/arm64, not linux/amd64"));
  CHECK(store.add(arm, {"x"}, AddOptions{.platform = Platform{"linux", "arm64", ""}}));

  auto all = store.list();
  REQUIRE(all);
  CHECK(all->size() == 1);
}

TEST_CASE("image store: concurrent adds unpack a layer once", "[image-store]") {
  TempDir tmp;
  ImageStore setup(tmp / "store");
  REQUIRE(setup.init());
  std::vector<Entry> big = base_tree();
  for (int i = 0; i < 200; ++i) {
    big.push_back({.path = "data/f" + std::to_string(i), .data = std::string(4096, 'a' + i % 26)});
  }
  Descriptor l1 = put_layer(setup, tmp, big);
  Digest id = put_image(setup, {l1});

  std::atomic<int> unpacks{0};
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<bool> ok;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      ImageStore store(tmp / "store");  // its own fds and locks, as another process
      AddOptions opts;
      opts.progress = [&](const ProgressEvent& e) {
        if (e.phase == ProgressEvent::Phase::unpacking) unpacks++;
      };
      auto r = store.add(id, {"app"}, opts);
      std::lock_guard lock(mu);
      ok.push_back(r.has_value());
    });
  }
  for (auto& t : threads) t.join();
  CHECK(std::ranges::count(ok, true) == 4);
  CHECK(unpacks == 1);
  auto img = setup.resolve("app");
  REQUIRE(img);
  CHECK(img->unpacked_size == 9 + 200 * 4096);
}

TEST_CASE("image store: init clears half-unpacked layers of a crashed writer", "[image-store]") {
  TempDir tmp;
  ImageStore store(tmp / "store");
  REQUIRE(store.init());
  std::string stale = tmp / ("store/layers/.tmp-" + std::string(64, 'a') + "-XYZ123");
  REQUIRE(berth::fs::mkdir_p(stale + "/root/usr"));
  REQUIRE(store.init());
  CHECK_FALSE(present(stale));
}

TEST_CASE("image store: container ids are checked", "[image-store]") {
  TempDir tmp;
  ImageStore store(tmp / "store");
  REQUIRE(store.init());
  Image empty;
  for (std::string id :
       std::vector<std::string>{"", ".hidden", "a/b", "../x", std::string(129, 'a')}) {
    auto r = store.mount_rootfs(id, empty);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().str(), Catch::Contains("invalid container id"));
  }
  CHECK(store.release_rootfs("never-mounted"));
  auto small = store.mount_rootfs("c1", empty, RootfsOptions{.size_limit = 1024});
  REQUIRE_FALSE(small);
  CHECK_THAT(small.error().str(), Catch::Contains("below the minimum"));
}
