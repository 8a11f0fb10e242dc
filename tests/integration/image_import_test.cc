// import_image() against real tools: the test image from
// scripts/make-test-image.sh (busybox-static + the probe) is imported as the
// OCI layout the script writes, as skopeo's copy of it (OCI layout,
// docker-archive, oci-archive), as a rootfs tarball and as a directory. Every
// import must unpack to the same tree as `tar -x` of the layer: type, mode,
// owner, size, content, symlink targets, hardlinks; /bin/busybox and /probe
// are the host's bytes.
//
// Hostile input through import: escapes by "..", absolute paths, a symlink
// then a write through it, and device nodes are refused with an error naming
// the source, nothing is written outside the store, and no image is left.
#include <archive.h>
#include <archive_entry.h>
#include <nettle/sha2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "rootfs-tools/import.h"
#include "rootfs-tools/store.h"
#include "tests/integration/harness.h"

namespace fs = std::filesystem;
namespace rfs = berth::rootfs;
using namespace berth::test;
using Catch::Matchers::Contains;

namespace {

constexpr const char* kSkopeo = "/usr/bin/skopeo";

#define REQUIRE_IMPORT_TOOLS()                                                       \
  do {                                                                               \
    REQUIRE_PRIVILEGED();                                                            \
    if (access(kSkopeo, X_OK) != 0) {                                                \
      BERTH_SKIP(kSkopeo << " not installed (scripts/install-deps.sh installs it)"); \
    }                                                                                \
  } while (0)

std::string sha256_hex(std::string_view data) {
  return berth::rootfs::sha256_of(data).hex;
}

void run_ok(const std::vector<std::string>& argv) {
  auto r = exec_command(argv, {.timeout = 120s});
  INFO(r);
  REQUIRE(r.exit_code == 0);
}

// One file of a tree, as compared between trees.
struct Node {
  char type = '?';  // f d l p (fifo) c b s
  mode_t perm = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;
  std::string content;  // sha256 of a regular file
  std::string target;   // symlink
  bool operator==(const Node&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Node& n) {
  return os << n.type << " " << std::oct << n.perm << std::dec << " " << n.uid << ":" << n.gid
            << " " << n.size << " " << n.content.substr(0, 12) << " " << n.target;
}

struct Tree {
  std::map<std::string, Node> nodes;
  std::set<std::set<std::string>> hardlinks;  // groups of paths sharing an inode
};

char type_of(mode_t m) {
  if (S_ISREG(m)) return 'f';
  if (S_ISDIR(m)) return 'd';
  if (S_ISLNK(m)) return 'l';
  if (S_ISFIFO(m)) return 'p';
  if (S_ISCHR(m)) return 'c';
  if (S_ISBLK(m)) return 'b';
  return 's';
}

Tree snapshot(const std::string& root) {
  Tree t;
  std::map<ino_t, std::set<std::string>> inodes;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    // lexically: fs::relative() would resolve symlinks.
    std::string rel = it->path().lexically_relative(root).string();
    struct stat st;
    REQUIRE(::lstat(it->path().c_str(), &st) == 0);
    Node n{type_of(st.st_mode), static_cast<mode_t>(st.st_mode & 07777), st.st_uid, st.st_gid};
    if (S_ISREG(st.st_mode)) {
      n.size = static_cast<uint64_t>(st.st_size);
      n.content = sha256_hex(read_file(it->path()));
      if (st.st_nlink > 1) inodes[st.st_ino].insert(rel);
    }
    if (S_ISLNK(st.st_mode)) n.target = fs::read_symlink(it->path()).string();
    t.nodes[rel] = n;
  }
  for (auto& [ino, paths] : inodes) {
    if (paths.size() > 1) t.hardlinks.insert(paths);
  }
  return t;
}

void check_same_tree(const std::string& got_root, const Tree& want) {
  Tree got = snapshot(got_root);
  INFO("unpacked " << got_root);
  for (const auto& [path, node] : want.nodes) {
    INFO(path);
    auto it = got.nodes.find(path);
    REQUIRE(it != got.nodes.end());
    CHECK(it->second == node);
  }
  for (const auto& [path, node] : got.nodes) {
    INFO("extra " << path);
    CHECK(want.nodes.contains(path));
  }
  CHECK(got.hardlinks == want.hardlinks);
}

// The test image in every form skopeo makes of it, and the reference tree:
// `tar -x` of its layer.
class Sources {
 public:
  Sources() {
    run_ok({"bash", BERTH_SOURCE_DIR "/scripts/make-test-image.sh", "--probe", probe_path(),
            layout()});
    Json index = Json::parse(read_file(layout() + "/index.json"));
    std::string mdigest = index["manifests"][0]["digest"];
    Json manifest = Json::parse(read_file(blob(mdigest)));
    REQUIRE(manifest["layers"].size() == 1);
    fs::create_directories(reference());
    run_ok({"tar", "-x", "-z", "--numeric-owner", "-C", reference(), "-f",
            blob(manifest["layers"][0]["digest"])});
    std::string src = "oci:" + layout() + ":latest";
    run_ok({kSkopeo, "copy", "-q", "--insecure-policy", src, "oci:" + dir() + "/copy:latest"});
    run_ok({kSkopeo, "copy", "-q", "--insecure-policy", src,
            "docker-archive:" + dir() + "/docker.tar:berth-test/busybox:latest"});
    run_ok({kSkopeo, "copy", "-q", "--insecure-policy", src,
            "oci-archive:" + dir() + "/oci.tar:latest"});
  }

  std::string dir() const { return tmp_.path(); }
  std::string layout() const { return dir() + "/layout"; }
  std::string reference() const { return dir() + "/ref"; }
  std::string blob(const std::string& digest) const {
    return layout() + "/blobs/sha256/" + digest.substr(digest.find(':') + 1);
  }

 private:
  TempDir tmp_;
};

struct Store {
  TempDir tmp;
  rfs::ImageStore store{tmp.path() + "/store"};
  Store() { REQUIRE(store.init().has_value()); }

  rfs::Image import(const std::string& path, rfs::ImportFormat want) {
    auto r = rfs::import_image(store, path);
    INFO(path << ": " << (r ? std::string("ok") : r.error().str()));
    REQUIRE(r.has_value());
    CHECK(r->format == want);
    REQUIRE(r->images.size() == 1);
    REQUIRE(r->images[0].manifest.layers.size() == 1);
    auto found = store.resolve(r->images[0].digest.str());
    REQUIRE(found.has_value());
    return *found;
  }
  std::string root_of(const rfs::Image& img) const {
    return store.layer_dir(img.manifest.layers[0].digest);
  }
  size_t images() {
    auto l = store.list();
    REQUIRE(l.has_value());
    return l->size();
  }
};

void check_test_image_config(const rfs::Image& img) {
  CHECK(img.config.cmd == std::vector<std::string>{"/bin/sh"});
  CHECK(img.config.env == std::vector<std::string>{
                              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"});
  CHECK(img.config.working_dir == "/");
  CHECK(img.config.os == "linux");
}

}  // namespace

TEST_CASE("import: the test image in every skopeo format unpacks to the layer's tree", "[import]") {
  REQUIRE_IMPORT_TOOLS();
  Sources src;
  Tree want = snapshot(src.reference());
  // The script's tree is what it says: the host's busybox-static and probe.
  REQUIRE(want.nodes.contains("bin/busybox"));
  CHECK(want.nodes["bin/busybox"].content == sha256_hex(read_file("/bin/busybox")));
  CHECK(want.nodes["bin/busybox"].perm == 0755);
  CHECK(want.nodes["probe"].content == sha256_hex(read_file(probe_path())));
  CHECK(want.nodes["bin/sh"].target == "busybox");
  CHECK(want.nodes["tmp"].perm == 01777);

  SECTION("the script's OCI layout") {
    Store s;
    rfs::Image img = s.import(src.layout(), rfs::ImportFormat::oci_layout);
    CHECK(img.names.empty());  // ref.name "latest" is a tag without a repository
    check_test_image_config(img);
    check_same_tree(s.root_of(img), want);
  }
  SECTION("skopeo's OCI layout") {
    Store s;
    rfs::Image img = s.import(src.dir() + "/copy", rfs::ImportFormat::oci_layout);
    check_test_image_config(img);
    check_same_tree(s.root_of(img), want);
  }
  SECTION("skopeo's docker-archive") {
    Store s;
    rfs::Image img = s.import(src.dir() + "/docker.tar", rfs::ImportFormat::docker_archive);
    CHECK(img.names == std::vector<std::string>{"docker.io/berth-test/busybox:latest"});
    CHECK(img.manifest.layers[0].media_type == rfs::media::oci_layer);
    check_test_image_config(img);
    check_same_tree(s.root_of(img), want);
    CHECK(s.store.resolve("berth-test/busybox").has_value());
  }
  SECTION("skopeo's oci-archive") {
    Store s;
    rfs::Image img = s.import(src.dir() + "/oci.tar", rfs::ImportFormat::oci_layout);
    check_test_image_config(img);
    check_same_tree(s.root_of(img), want);
  }
}

TEST_CASE("import: a rootfs tarball and a rootfs directory keep the tree", "[import]") {
  REQUIRE_IMPORT_TOOLS();
  Sources src;
  // A hardlink, which the test image lacks, and a fifo.
  fs::create_hard_link(src.reference() + "/etc/passwd", src.reference() + "/etc/passwd.hard");
  REQUIRE(::mkfifo((src.reference() + "/tmp/fifo").c_str(), 0620) == 0);
  Tree want = snapshot(src.reference());
  REQUIRE(want.hardlinks.size() == 1);

  SECTION("tarball, gzip") {
    std::string tarball = src.dir() + "/rootfs.tar.gz";
    run_ok({"tar", "--numeric-owner", "-C", src.reference(), "-czf", tarball, "."});
    Store s;
    rfs::Image img = s.import(tarball, rfs::ImportFormat::rootfs);
    CHECK(img.manifest.layers[0].media_type == rfs::media::oci_layer_gzip);
    check_same_tree(s.root_of(img), want);
  }
  SECTION("directory") {
    Store s;
    rfs::Image img = s.import(src.reference(), rfs::ImportFormat::rootfs);
    check_same_tree(s.root_of(img), want);
    // The layer written from the directory is a tar `tar -x` reads back to
    // the same tree.
    std::string back = src.dir() + "/back";
    fs::create_directories(back);
    run_ok({"tar", "-x", "--numeric-owner", "-C", back, "-f",
            s.store.blobs().path(img.manifest.layers[0].digest)});
    Tree again = snapshot(back);
    CHECK(again.nodes == want.nodes);
    CHECK(again.hardlinks == want.hardlinks);
  }
}

namespace {

struct HostileEntry {
  std::string path;
  mode_t type = AE_IFREG;
  std::string symlink;
  dev_t rdev = 0;
};

la_ssize_t append_cb(struct archive*, void* ctx, const void* buf, size_t len) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(buf), len);
  return static_cast<la_ssize_t>(len);
}

std::string hostile_tar(const std::vector<HostileEntry>& entries) {
  std::string out;
  struct archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
  REQUIRE(archive_write_open(a, &out, nullptr, append_cb, nullptr) == ARCHIVE_OK);
  for (const auto& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_filetype(ae, e.type);
    archive_entry_set_perm(ae, e.type == AE_IFLNK ? 0777 : 0644);
    if (!e.symlink.empty()) archive_entry_set_symlink(ae, e.symlink.c_str());
    if (e.rdev) archive_entry_set_rdev(ae, e.rdev);
    std::string data = e.type == AE_IFREG ? "pwned\n" : "";
    archive_entry_set_size(ae, data.size());
    REQUIRE(archive_write_header(a, ae) == ARCHIVE_OK);
    if (!data.empty()) REQUIRE(archive_write_data(a, data.data(), data.size()) > 0);
    archive_entry_free(ae);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

void write_bytes(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
  REQUIRE(f.good());
}

}  // namespace

TEST_CASE("import: hostile rootfs tarballs write nothing outside the store", "[import]") {
  REQUIRE_PRIVILEGED();
  TempDir outside;  // the sentinel every entry aims at
  TempDir work;
  std::string target = outside.path() + "/escape";
  // From <store>/layers/.tmp-<hex>-X/root, where layers are unpacked, four
  // levels up is /tmp.
  std::string up = "../../../.." + outside.path().substr(4) + "/escape";
  struct Case {
    const char* name;
    std::vector<HostileEntry> entries;
    const char* why;
  };
  std::vector<Case> cases = {
      {"dot-dot", {{.path = up}}, "path contains \"..\""},
      {"absolute", {{.path = target}}, "absolute path"},
      {"symlink then a write through it",
       {{.path = "link", .type = AE_IFLNK, .symlink = outside.path()}, {.path = "link/escape"}},
       "a symlink an earlier entry made"},
      {"device node",
       {{.path = "dev/sda", .type = AE_IFBLK, .rdev = makedev(8, 0)}},
       "device node refused"},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      Store s;
      std::string tarball = work.path() + "/evil.tar";
      write_bytes(tarball, hostile_tar(c.entries));
      auto r = rfs::import_image(s.store, tarball);
      REQUIRE_FALSE(r.has_value());
      INFO(r.error().str());
      CHECK_THAT(r.error().str(), Contains(tarball));
      CHECK_THAT(r.error().str(), Contains(c.why));
      CHECK(fs::is_empty(outside.path()));
      CHECK(s.images() == 0);
      CHECK(fs::is_empty(s.tmp.path() + "/store/tmp"));
      // No layer, finished or half-made.
      CHECK(fs::is_empty(s.tmp.path() + "/store/layers"));
    }
  }
}

TEST_CASE("import: a hostile layer inside an OCI layout is refused by the unpacker", "[import]") {
  REQUIRE_PRIVILEGED();
  TempDir outside;
  TempDir work;
  // A layout whose only layer plants a symlink to the sentinel and writes
  // through it: it passes the blob checks (the digests are right), so it is
  // ImageStore::add's unpacker that must refuse it.
  std::string layer = hostile_tar(
      {{.path = "link", .type = AE_IFLNK, .symlink = outside.path()}, {.path = "link/escape"}});
  std::string diff = sha256_hex(layer);
  std::string config =
      rfs::minimal_image_config_json({*rfs::Digest::from_hex(diff)}, rfs::host_platform());
  rfs::Manifest m;
  m.media_type = std::string(rfs::media::oci_manifest);
  m.config = {std::string(rfs::media::oci_config),
              *rfs::Digest::from_hex(sha256_hex(config)),
              static_cast<int64_t>(config.size()),
              {},
              {}};
  m.layers.push_back({std::string(rfs::media::oci_layer),
                      *rfs::Digest::from_hex(diff),
                      static_cast<int64_t>(layer.size()),
                      {},
                      {}});
  std::string mtext = rfs::to_json(m);
  std::string layout = work.path() + "/layout";
  fs::create_directories(layout + "/blobs/sha256");
  for (const std::string* b : {&layer, &config, &mtext}) {
    write_bytes(layout + "/blobs/sha256/" + sha256_hex(*b), *b);
  }
  Json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", rfs::media::oci_manifest},
                   {"digest", "sha256:" + sha256_hex(mtext)},
                   {"size", mtext.size()}}}}};
  write_bytes(layout + "/index.json", index.dump());
  write_bytes(layout + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");

  Store s;
  auto r = rfs::import_image(s.store, layout);
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().str());
  CHECK_THAT(r.error().str(), Contains(layout));
  CHECK_THAT(r.error().str(), Contains("link/escape"));
  CHECK(fs::is_empty(outside.path()));
  CHECK(s.images() == 0);
  CHECK(fs::is_empty(s.tmp.path() + "/store/layers"));
}
