// Per-container overlay root filesystems from the image store, on the real
// kernel: whiteouts and opaque directories across layers, writes landing in
// the container's upper dir only, the ephemeral-storage limit, a container
// running on the overlay, and nothing left after release.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "common/fs.h"
#include "rootfs-tools/image_store.h"
#include "rootfs-tools/unpack.h"
#include "tests/integration/harness.h"
#include "tests/unit/tar_writer.h"

using namespace berth::rootfs;
namespace stdfs = std::filesystem;
using berth::test::Entry;
using berth::test::exec_command;
using berth::test::Filter;
using berth::test::TempDir;
using berth::test::unique_name;

namespace {

struct StoreFixture {
  TempDir tmp;
  ImageStore store{tmp.path() + "/store"};
  int layers = 0;
  std::vector<std::string> mounted;

  StoreFixture() { REQUIRE(store.init()); }
  ~StoreFixture() {
    for (const auto& id : mounted) {
      auto r = store.release_rootfs(id);
      if (!r) berth::test::record_leak("rootfs of " + id + ": " + r.error().str());
    }
  }

  Descriptor layer(const std::vector<Entry>& entries) {
    std::string path = tmp.path() + "/layer" + std::to_string(layers++) + ".tar.gz";
    berth::test::write_layer(path, entries, Filter::gzip);
    return layer_file(path, std::string(media::oci_layer_gzip));
  }
  Descriptor layer_file(const std::string& path, const std::string& media_type) {
    auto d = store.blobs().put_file(path);
    REQUIRE(d);
    return Descriptor{media_type, *d, static_cast<int64_t>(stdfs::file_size(path)), {}, {}};
  }
  Image image(const std::vector<Descriptor>& layers) {
    std::vector<Digest> ids;
    for (const auto& l : layers) ids.push_back(l.digest);
    std::string config = minimal_image_config_json(ids, host_platform());
    auto cd = store.blobs().put(config);
    REQUIRE(cd);
    Manifest m;
    m.media_type = std::string(media::oci_manifest);
    m.config = {std::string(media::oci_config), *cd, static_cast<int64_t>(config.size()), {}, {}};
    m.layers = layers;
    auto md = store.blobs().put(to_json(m));
    REQUIRE(md);
    auto img = store.add(*md, {});
    REQUIRE(img);
    return *img;
  }
  ContainerRootfs mount(const Image& img, const RootfsOptions& opts = {}) {
    std::string id = unique_name();
    auto r = store.mount_rootfs(id, img, opts);
    if (!r) FAIL(r.error().str());
    mounted.push_back(id);
    return *r;
  }
};

// type + mode + content (or link target) of every path below `root`.
std::map<std::string, std::string> tree(const std::string& root) {
  std::map<std::string, std::string> out;
  for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::end(it); ++it) {
    struct stat st;
    REQUIRE(::lstat(it->path().c_str(), &st) == 0);
    std::string what = fmt::format("{:o}", st.st_mode);
    if (S_ISREG(st.st_mode)) {
      std::ifstream f(it->path());
      what += ":" + std::string(std::istreambuf_iterator<char>(f), {});
    } else if (S_ISLNK(st.st_mode)) {
      what += "->" + stdfs::read_symlink(it->path()).string();
    }
    out[stdfs::relative(it->path(), root).string()] = what;
  }
  return out;
}

std::string dump(const std::map<std::string, std::string>& t) {
  std::string out;
  for (const auto& [k, v] : t) out += k + " " + v + "\n";
  return out;
}

bool mounted_at(const std::string& path) {
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    if (line.find(" " + path + " ") != std::string::npos) return true;
  }
  return false;
}

// Loop devices whose backing file is below `dir`.
std::vector<std::string> loops_backed_by(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : stdfs::directory_iterator("/sys/block")) {
    std::string name = e.path().filename();
    if (!name.starts_with("loop")) continue;
    std::ifstream f(e.path() / "loop/backing_file");
    std::string backing;
    if (f && std::getline(f, backing) && backing.starts_with(dir)) out.push_back(name);
  }
  return out;
}

}  // namespace

TEST_CASE("overlay: whiteouts and opaque dirs show exactly what the last layer says", "[overlay]") {
  REQUIRE_PRIVILEGED();
  StoreFixture fx;
  std::vector<std::vector<Entry>> layers = {
      {{.path = "a/", .type = AE_IFDIR, .perm = 0755},
       {.path = "a/gone", .data = "1"},
       {.path = "a/kept", .data = "2"},
       {.path = "d/", .type = AE_IFDIR, .perm = 0750},
       {.path = "d/old1", .data = "3"},
       {.path = "d/sub/old2", .data = "4"},
       {.path = "link", .type = AE_IFLNK, .perm = 0777, .symlink = "a/kept"},
       {.path = "replaced", .data = "old"}},
      {{.path = "a/.wh.gone"},
       {.path = "d/", .type = AE_IFDIR, .perm = 0700},
       {.path = "d/.wh..wh..opq"},
       {.path = "d/new", .data = "5"},
       {.path = "replaced", .data = "new"},
       {.path = "added/x", .data = "6"}},
      {{.path = ".wh.link"}, {.path = "d/new", .data = "7"}},
  };
  std::vector<Descriptor> descs;
  for (const auto& l : layers) descs.push_back(fx.layer(l));
  Image img = fx.image(descs);
  ContainerRootfs rootfs = fx.mount(img);
  CHECK(mounted_at(rootfs.path));

  // The reference: the same layers flattened with whiteouts applied.
  std::string flat = fx.tmp.path() + "/flat";
  REQUIRE(berth::fs::mkdir_p(flat));
  for (const auto& d : descs) {
    UnpackOptions o;
    o.whiteouts = WhiteoutMode::apply;
    REQUIRE(unpack_layer(fx.store.blobs().path(d.digest), flat, o));
  }
  auto merged = tree(rootfs.path);
  CHECK(dump(merged) == dump(tree(flat)));
  CHECK_FALSE(merged.contains("a/gone"));
  CHECK_FALSE(merged.contains("d/old1"));
  CHECK_FALSE(merged.contains("d/sub"));
  CHECK_FALSE(merged.contains("link"));
  CHECK(merged.at("d/new").ends_with(":7"));
  CHECK(merged.at("replaced").ends_with(":new"));
  CHECK(merged.at("a/kept").ends_with(":2"));
  CHECK(merged.at("d").starts_with("40700"));

  // Writes land in the container's upper dir; the shared layers stay as they were.
  std::string lower1 = fx.store.layer_dir(descs[0].digest);
  auto before = tree(lower1);
  { std::ofstream(rootfs.path + "/a/kept") << "changed"; }
  REQUIRE(::unlink((rootfs.path + "/replaced").c_str()) == 0);
  CHECK(tree(lower1) == before);
  std::string upper = fx.tmp.path() + "/store/containers/" + rootfs.id + "/upper";
  CHECK(stdfs::exists(upper + "/a/kept"));

  // A second container of the same image does not see the first one's writes.
  ContainerRootfs other = fx.mount(img);
  CHECK(tree(other.path).at("a/kept").ends_with(":2"));

  // Release: unmounted and gone; releasing again is fine.
  REQUIRE(fx.store.release_rootfs(rootfs.id));
  CHECK_FALSE(mounted_at(rootfs.path));
  CHECK_FALSE(stdfs::exists(fx.tmp.path() + "/store/containers/" + rootfs.id));
  CHECK(fx.store.release_rootfs(rootfs.id));
  auto c = fx.store.containers();
  REQUIRE(c);
  REQUIRE(c->size() == 1);
  CHECK(c->at(0).id == other.id);

  // Prune keeps what a container uses even when its image is removed.
  REQUIRE(fx.store.remove(img.digest.str()));
  auto p = fx.store.prune();
  REQUIRE(p);
  CHECK(p->layers_removed == 0);
  for (const auto& d : descs) CHECK(fx.store.has_layer(d.digest));
  CHECK(dump(tree(other.path)) == dump(tree(flat)));
}

TEST_CASE("overlay: a mount that fails leaves nothing, ids are unique", "[overlay]") {
  REQUIRE_PRIVILEGED();
  StoreFixture fx;
  Image img = fx.image({fx.layer({{.path = "f", .data = "x"}})});
  ContainerRootfs r = fx.mount(img);
  auto again = fx.store.mount_rootfs(r.id, img);
  REQUIRE_FALSE(again);
  CHECK_THAT(again.error().str(), Catch::Contains("already has a root filesystem"));
  CHECK(mounted_at(r.path));  // the first one is untouched

  // A layer that vanished from under the store (and whose blob is gone too)
  // fails the mount cleanly.
  Image broken = img;
  broken.manifest.layers[0].digest = *Digest::parse("sha256:" + std::string(64, 'e'));
  std::string id = unique_name();
  auto failed = fx.store.mount_rootfs(id, broken);
  REQUIRE_FALSE(failed);
  CHECK_THAT(failed.error().str(), Catch::Contains("not in the store"));
  CHECK_FALSE(stdfs::exists(fx.tmp.path() + "/store/containers/" + id));
}

TEST_CASE("overlay: the ephemeral storage limit is enforced", "[overlay]") {
  REQUIRE_PRIVILEGED();
  StoreFixture fx;
  Image img = fx.image({fx.layer({{.path = "big", .data = std::string(1 << 20, 'b')}})});
  const uint64_t limit = 16ull << 20;
  ContainerRootfs r = fx.mount(img, RootfsOptions{.size_limit = limit});
  CHECK(loops_backed_by(fx.tmp.path()).size() == 1);

  // 8 MiB fit; 32 MiB do not: ENOSPC from the writable layer.
  auto small = exec_command({"dd", "if=/dev/zero", "of=" + r.path + "/ok", "bs=1M", "count=8"});
  CHECK(small.exit_code == 0);
  auto big = exec_command({"dd", "if=/dev/zero", "of=" + r.path + "/too-big", "bs=1M", "count=32"});
  CHECK(big.exit_code != 0);
  CHECK_THAT(big.err, Catch::Contains("No space left on device"));
  // The image's own (lower) data does not count against the limit.
  CHECK(stdfs::file_size(r.path + "/big") == (1u << 20));
  auto df = exec_command(
      {"df", "-B1", "--output=size", fx.tmp.path() + "/store/containers/" + r.id + "/disk"});
  REQUIRE(df.exit_code == 0);
  uint64_t fs_size = std::stoull(df.out.substr(df.out.find('\n') + 1));
  CHECK(fs_size <= limit);
  CHECK(fs_size > limit / 2);

  REQUIRE(fx.store.release_rootfs(r.id));
  fx.mounted.clear();
  // The loop device detaches itself once its filesystem is unmounted.
  CHECK(berth::test::wait_until([&] { return loops_backed_by(fx.tmp.path()).empty(); }));
  CHECK_FALSE(stdfs::exists(fx.tmp.path() + "/store/containers/" + r.id));
}

TEST_CASE("overlay: a container runs on an image rootfs and writes only to its upper dir",
          "[overlay]") {
  REQUIRE_PRIVILEGED();
  berth::test::Runtime rt;
  berth::test::Container c(rt);
  // The harness's busybox + probe rootfs, as one image layer.
  StoreFixture fx;
  std::string tar = fx.tmp.path() + "/rootfs.tar";
  auto mk = exec_command({"tar", "-C", c.bundle().rootfs(), "-cf", tar, "."});
  REQUIRE(mk.exit_code == 0);
  Image img = fx.image({fx.layer_file(tar, std::string(media::oci_layer))});
  ContainerRootfs r = fx.mount(img);

  c.config()["root"]["path"] = r.path;
  c.config()["root"]["readonly"] = false;
  c.set_args({"/bin/sh", "-c", "echo hello > /written && cat /written && ls /bin/busybox"});
  auto run = c.run();
  REQUIRE(run.exit_code == 0);
  CHECK(run.out == "hello\n/bin/busybox\n");
  std::string upper = fx.tmp.path() + "/store/containers/" + r.id + "/upper";
  CHECK(stdfs::exists(upper + "/written"));
  CHECK_FALSE(stdfs::exists(fx.store.layer_dir(img.manifest.layers[0].digest) + "/written"));
}
