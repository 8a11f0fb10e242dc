// Image import from files: format detection, OCI layouts (directory and tar)
// whose blobs are verified, docker archives, root filesystems (tarball in any
// compression, directory) as one-layer images, and the refusal of garbage and
// hostile input. Archives are built here with libarchive; entries carry the
// caller's uid/gid so that unpacking needs no CAP_CHOWN.
#include "rootfs-tools/import.h"
#include "rootfs-tools/store.h"

#include <archive.h>
#include <archive_entry.h>
#include <nettle/sha2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include "tests/skip.h"

#include "common/fs.h"
#include "tests/unit/temp_dir.h"

namespace rfs = berth::rootfs;
using berth::test::TempDir;
using rfs::ImportFormat;
using Json = nlohmann::json;

namespace {

struct TarEntry {
  std::string path;
  mode_t type = AE_IFREG;
  mode_t perm = 0644;
  std::string data;
  std::string symlink;
  std::string hardlink;
  dev_t rdev = 0;
};

enum class Compress { none, gzip, zstd, xz };

la_ssize_t append_cb(struct archive*, void* ctx, const void* buf, size_t len) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(buf), len);
  return static_cast<la_ssize_t>(len);
}

std::string make_tar(const std::vector<TarEntry>& entries, Compress c = Compress::none) {
  std::string out;
  struct archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
  if (c == Compress::gzip) REQUIRE(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
  if (c == Compress::zstd) REQUIRE(archive_write_add_filter_zstd(a) == ARCHIVE_OK);
  if (c == Compress::xz) REQUIRE(archive_write_add_filter_xz(a) == ARCHIVE_OK);
  // Else libarchive pads a callback-written zstd stream to 10 KiB with zeros,
  // which zstd readers reject as a bad frame.
  if (c != Compress::none) REQUIRE(archive_write_set_bytes_in_last_block(a, 1) == ARCHIVE_OK);
  REQUIRE(archive_write_open(a, &out, nullptr, append_cb, nullptr) == ARCHIVE_OK);
  for (const auto& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_filetype(ae, e.type);
    archive_entry_set_perm(ae, e.perm);
    archive_entry_set_mtime(ae, 1700000000, 0);
    archive_entry_set_uid(ae, ::getuid());
    archive_entry_set_gid(ae, ::getgid());
    if (!e.symlink.empty()) archive_entry_set_symlink(ae, e.symlink.c_str());
    if (!e.hardlink.empty()) archive_entry_set_hardlink(ae, e.hardlink.c_str());
    if (e.rdev) archive_entry_set_rdev(ae, e.rdev);
    archive_entry_set_size(ae, e.type == AE_IFREG && e.hardlink.empty() ? e.data.size() : 0);
    REQUIRE(archive_write_header(a, ae) == ARCHIVE_OK);
    if (!e.data.empty()) {
      REQUIRE(archive_write_data(a, e.data.data(), e.data.size()) ==
              static_cast<la_ssize_t>(e.data.size()));
    }
    archive_entry_free(ae);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

std::string sha256_hex(std::string_view data) {
  return berth::rootfs::sha256_of(data).hex;
}

// The decompressed stream of a (compressed) file, through libarchive's raw
// format: what a layer's diff_id hashes.
std::string decompress(const std::string& data) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  REQUIRE(archive_read_open_memory(a, data.data(), data.size()) == ARCHIVE_OK);
  struct archive_entry* e;
  REQUIRE(archive_read_next_header(a, &e) == ARCHIVE_OK);
  std::string out;
  char buf[4096];
  la_ssize_t n;
  while ((n = archive_read_data(a, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  REQUIRE(n == 0);
  archive_read_free(a);
  return out;
}

void write_file(const std::string& path, std::string_view data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(f.good());
}

std::string read_file(const std::string& path) {
  auto r = berth::fs::read_file(path);
  REQUIRE(r.has_value());
  return *r;
}

std::vector<TarEntry> hello_tree() {
  return {
      {.path = "bin/", .type = AE_IFDIR, .perm = 0755},
      {.path = "bin/hello", .perm = 0755, .data = "#!/bin/sh\necho hello\n"},
      {.path = "bin/hi", .type = AE_IFLNK, .perm = 0777, .symlink = "hello"},
      {.path = "etc/", .type = AE_IFDIR, .perm = 0755},
      {.path = "etc/motd", .data = "welcome\n"},
      {.path = "etc/motd2", .hardlink = "etc/motd"},
  };
}

std::string config_json(const std::string& diff_hex) {
  rfs::Platform p = rfs::host_platform();
  Json j = {{"architecture", p.architecture},
            {"os", p.os},
            {"config", {{"Cmd", {"/bin/hello"}}, {"Env", {"A=1"}}, {"WorkingDir", "/etc"}}},
            {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + diff_hex}}}}};
  return j.dump();
}

// The files of an OCI layout, by path relative to the layout.
struct Layout {
  std::vector<std::pair<std::string, std::string>> files;
  std::string manifest_hex, config_hex, layer_hex, diff_hex;

  void write_to(const std::string& dir) const {
    for (const auto& [rel, data] : files) write_file(dir + "/" + rel, data);
  }
  std::vector<TarEntry> tar_entries() const {
    std::vector<TarEntry> out = {{.path = "blobs/", .type = AE_IFDIR, .perm = 0755},
                                 {.path = "blobs/sha256/", .type = AE_IFDIR, .perm = 0755}};
    for (const auto& [rel, data] : files) out.push_back({.path = rel, .data = data});
    return out;
  }
};

Layout make_layout(const std::string& ref_name, const std::vector<TarEntry>& tree = hello_tree()) {
  Layout l;
  std::string tar = make_tar(tree);
  std::string layer = make_tar(tree, Compress::gzip);
  std::string config = config_json(sha256_hex(tar));
  l.diff_hex = sha256_hex(tar);
  l.layer_hex = sha256_hex(layer);
  l.config_hex = sha256_hex(config);
  Json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config",
                    {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                     {"digest", "sha256:" + l.config_hex},
                     {"size", config.size()}}},
                   {"layers",
                    {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                      {"digest", "sha256:" + l.layer_hex},
                      {"size", layer.size()}}}}};
  std::string mtext = manifest.dump();
  l.manifest_hex = sha256_hex(mtext);
  Json entry = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                {"digest", "sha256:" + l.manifest_hex},
                {"size", mtext.size()}};
  if (!ref_name.empty()) entry["annotations"] = {{"org.opencontainers.image.ref.name", ref_name}};
  Json index = {{"schemaVersion", 2}, {"manifests", {entry}}};
  l.files = {{"oci-layout", R"({"imageLayoutVersion":"1.0.0"})"},
             {"blobs/sha256/" + l.layer_hex, layer},
             {"blobs/sha256/" + l.config_hex, config},
             {"blobs/sha256/" + l.manifest_hex, mtext},
             {"index.json", index.dump()}};
  return l;
}

struct Fixture {
  TempDir tmp;
  rfs::ImageStore store{tmp / "store"};
  Fixture() { REQUIRE(store.init().has_value()); }

  rfs::ImportResult import(const std::string& path, rfs::ImportOptions opts = {}) {
    auto r = rfs::import_image(store, path, opts);
    INFO(path << ": " << (r ? std::string("ok") : r.error().str()));
    REQUIRE(r.has_value() == true);
    REQUIRE(r->images.size() == 1);
    return *r;
  }
  std::string import_error(const std::string& path, rfs::ImportOptions opts = {}) {
    auto r = rfs::import_image(store, path, opts);
    REQUIRE_FALSE(r.has_value());
    return r.error().str();
  }
  size_t image_count() {
    auto l = store.list();
    REQUIRE(l.has_value());
    return l->size();
  }
  // The unpacked tree of the image's only layer.
  std::string root_of(const rfs::Image& img) {
    REQUIRE(img.manifest.layers.size() == 1);
    return store.layer_dir(img.manifest.layers[0].digest);
  }
  bool tmp_empty() { return std::filesystem::is_empty(tmp / "store/tmp"); }
};

void check_hello_tree(const std::string& root) {
  CHECK(read_file(root + "/bin/hello") == "#!/bin/sh\necho hello\n");
  struct stat st;
  REQUIRE(::lstat((root + "/bin/hello").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(std::filesystem::read_symlink(root + "/bin/hi") == "hello");
  struct stat a, b;
  REQUIRE(::lstat((root + "/etc/motd").c_str(), &a) == 0);
  REQUIRE(::lstat((root + "/etc/motd2").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  CHECK(read_file(root + "/etc/motd") == "welcome\n");
}

}  // namespace

TEST_CASE("import: format names", "[import]") {
  CHECK(std::string(rfs::import_format_name(ImportFormat::oci_layout)) == "oci-layout");
  CHECK(std::string(rfs::import_format_name(ImportFormat::docker_archive)) == "docker-archive");
  CHECK(std::string(rfs::import_format_name(ImportFormat::rootfs)) == "rootfs");
}

TEST_CASE("import: an OCI layout directory", "[import]") {
  Fixture f;
  Layout l = make_layout("latest");
  l.write_to(f.tmp / "layout");
  auto r = f.import(f.tmp / "layout");
  CHECK(r.format == ImportFormat::oci_layout);
  const rfs::Image& img = r.images[0];
  CHECK(img.digest.hex == l.manifest_hex);
  CHECK(img.config_digest.hex == l.config_hex);
  // A bare tag names no repository: the image is reachable by digest only.
  CHECK(img.names.empty());
  auto found = f.store.resolve("sha256:" + l.manifest_hex);
  REQUIRE(found.has_value());
  CHECK(found->config.cmd == std::vector<std::string>{"/bin/hello"});
  CHECK(found->config.env == std::vector<std::string>{"A=1"});
  CHECK(found->config.working_dir == "/etc");
  check_hello_tree(f.root_of(img));
  CHECK(f.tmp_empty());

  SECTION("names given win") {
    rfs::ImportOptions o;
    o.names = {"example.com/team/app:1"};
    auto again = f.import(f.tmp / "layout", o);
    CHECK(again.images[0].names == std::vector<std::string>{"example.com/team/app:1"});
    CHECK(f.store.resolve("example.com/team/app:1").has_value());
  }
  SECTION("a full reference in the annotation names the image") {
    Layout named = make_layout("web:2");
    named.write_to(f.tmp / "named");
    auto n = f.import(f.tmp / "named");
    CHECK(n.images[0].names == std::vector<std::string>{"docker.io/library/web:2"});
  }
  SECTION("containerd's name annotation wins over a bare ref.name tag") {
    Layout d = make_layout("1.36");
    Json index = Json::parse(d.files.back().second);
    index["manifests"][0]["annotations"]["io.containerd.image.name"] =
        "docker.io/library/busybox:1.36";
    d.files.back().second = index.dump();
    d.write_to(f.tmp / "docker25");
    auto n = f.import(f.tmp / "docker25");
    CHECK(n.images[0].names == std::vector<std::string>{"docker.io/library/busybox:1.36"});
  }
  SECTION("an index.json entry that is itself an index: our platform's manifest is taken") {
    Layout nested = make_layout("");
    Json inner = Json::parse(nested.files.back().second);
    rfs::Platform p = rfs::host_platform();
    Json other = inner["manifests"][0];
    other["digest"] = "sha256:" + std::string(64, 'e');  // never fetched
    other["platform"] = {{"os", "linux"}, {"architecture", "s390x"}};
    inner["manifests"][0]["platform"] = {{"os", p.os}, {"architecture", p.architecture}};
    inner["manifests"].insert(inner["manifests"].begin(), other);
    inner["mediaType"] = "application/vnd.oci.image.index.v1+json";
    std::string inner_text = inner.dump();
    std::string inner_hex = sha256_hex(inner_text);
    Json outer = {{"schemaVersion", 2},
                  {"manifests",
                   {{{"mediaType", "application/vnd.oci.image.index.v1+json"},
                     {"digest", "sha256:" + inner_hex},
                     {"size", inner_text.size()}}}}};
    nested.files.back().second = outer.dump();
    nested.files.push_back({"blobs/sha256/" + inner_hex, inner_text});
    nested.write_to(f.tmp / "nested");
    auto n = f.import(f.tmp / "nested");
    CHECK(n.images[0].digest.hex == l.manifest_hex);
  }
  SECTION("a layout entry for another platform is refused, naming what it has") {
    Layout other = make_layout("");
    Json index = Json::parse(other.files.back().second);
    index["manifests"][0]["platform"] = {{"os", "linux"}, {"architecture", "mips64"}};
    other.files.back().second = index.dump();
    other.write_to(f.tmp / "other");
    std::string err = f.import_error(f.tmp / "other");
    CHECK_THAT(err, Catch::Contains("linux/mips64"));
  }
}

TEST_CASE("import: a layout blob that does not match its digest is refused", "[import]") {
  Fixture f;
  Layout l = make_layout("latest");
  l.write_to(f.tmp / "layout");
  std::string blob = f.tmp / ("layout/blobs/sha256/" + l.layer_hex);
  std::string data = read_file(blob);
  data[data.size() / 2] ^= 0x55;  // same size, other bytes
  write_file(blob, data);
  std::string err = f.import_error(f.tmp / "layout");
  CHECK_THAT(err, Catch::Contains(blob));
  CHECK_THAT(err, Catch::Contains("expected sha256:" + l.layer_hex));
  CHECK_THAT(err, Catch::Contains("got sha256:" + sha256_hex(data)));
  CHECK(f.image_count() == 0);
  CHECK_FALSE(f.store.blobs().has(*rfs::Digest::from_hex(l.layer_hex)));
  CHECK(f.tmp_empty());

  SECTION("a missing blob is named") {
    std::filesystem::remove(blob);
    std::string missing = f.import_error(f.tmp / "layout");
    CHECK_THAT(missing, Catch::Contains(blob));
    CHECK_THAT(missing, Catch::Contains("No such file"));
  }
  SECTION("a blob that is a symlink is not followed") {
    std::filesystem::remove(blob);
    std::filesystem::create_symlink("/etc/hostname", blob);
    CHECK_THAT(f.import_error(f.tmp / "layout"), Catch::Contains(blob));
  }
}

TEST_CASE("import: an OCI layout as a tar, plain and gzip", "[import]") {
  Fixture f;
  Layout l = make_layout("latest");
  Compress c = GENERATE(Compress::none, Compress::gzip);
  write_file(f.tmp / "layout.tar", make_tar(l.tar_entries(), c));
  auto r = f.import(f.tmp / "layout.tar");
  CHECK(r.format == ImportFormat::oci_layout);
  CHECK(r.images[0].digest.hex == l.manifest_hex);
  check_hello_tree(f.root_of(r.images[0]));
  CHECK(f.tmp_empty());
  // Again: the blobs are in the store already and are not written twice.
  CHECK(f.import(f.tmp / "layout.tar").images[0].digest.hex == l.manifest_hex);

  SECTION("a tampered blob in the tar is refused, naming the member") {
    Fixture g;
    auto entries = l.tar_entries();
    for (auto& e : entries) {
      if (e.path == "blobs/sha256/" + l.config_hex) e.data[e.data.size() / 2] ^= 1;
    }
    write_file(g.tmp / "bad.tar", make_tar(entries, c));
    std::string err = g.import_error(g.tmp / "bad.tar");
    CHECK_THAT(err, Catch::Contains("member blobs/sha256/" + l.config_hex));
    CHECK_THAT(err, Catch::Contains("expected sha256:" + l.config_hex));
    CHECK(g.image_count() == 0);
    CHECK(g.tmp_empty());
  }
}

TEST_CASE("import: a docker archive", "[import]") {
  Fixture f;
  std::string layer = make_tar(hello_tree());
  std::string diff = sha256_hex(layer);
  std::string config = config_json(diff);
  std::string id(64, 'a');
  Json manifest = Json::array({{{"Config", sha256_hex(config) + ".json"},
                                {"RepoTags", {"busybox:1.0"}},
                                {"Layers", {id + "/layer.tar"}}}});
  std::vector<TarEntry> entries = {
      {.path = diff + ".tar", .data = layer},
      {.path = id + "/", .type = AE_IFDIR, .perm = 0755},
      {.path = id + "/layer.tar", .type = AE_IFLNK, .perm = 0777, .symlink = "../" + diff + ".tar"},
      {.path = id + "/json", .data = "{}"},
      {.path = sha256_hex(config) + ".json", .data = config},
      {.path = "manifest.json", .data = manifest.dump()},
      {.path = "repositories", .data = "{}"},
  };
  write_file(f.tmp / "docker.tar", make_tar(entries));
  auto r = f.import(f.tmp / "docker.tar");
  CHECK(r.format == ImportFormat::docker_archive);
  const rfs::Image& img = r.images[0];
  CHECK(img.names == std::vector<std::string>{"docker.io/library/busybox:1.0"});
  CHECK(img.config_digest.hex == sha256_hex(config));
  REQUIRE(img.manifest.layers.size() == 1);
  CHECK(img.manifest.layers[0].digest.hex == diff);
  CHECK(img.manifest.layers[0].media_type == rfs::media::oci_layer);
  CHECK(img.config.cmd == std::vector<std::string>{"/bin/hello"});
  check_hello_tree(f.root_of(img));

  SECTION("a layer that does not match the config's diff_id is refused") {
    Fixture g;
    entries[0].data = make_tar({{.path = "other", .data = "x"}});
    write_file(g.tmp / "bad.tar", make_tar(entries));
    std::string err = g.import_error(g.tmp / "bad.tar");
    CHECK_THAT(err, Catch::Contains(g.tmp / "bad.tar"));
    CHECK_THAT(err, Catch::Contains("diff_id"));
    CHECK_THAT(err, Catch::Contains("sha256:" + diff));
    CHECK(g.image_count() == 0);
  }
  SECTION("a layer missing from the archive is named") {
    Fixture g;
    entries.erase(entries.begin());
    write_file(g.tmp / "short.tar", make_tar(entries));
    std::string err = g.import_error(g.tmp / "short.tar");
    CHECK_THAT(err, Catch::Contains(id + "/layer.tar"));
    CHECK_THAT(err, Catch::Contains("not in the archive"));
  }
}

TEST_CASE("import: rootfs tarballs become one-layer images", "[import]") {
  Fixture f;
  Compress c = GENERATE(Compress::none, Compress::gzip, Compress::zstd, Compress::xz);
  std::string file = make_tar(hello_tree(), c);
  // Compressed tars are not padded to libarchive's 10 KiB block, so the
  // diff_id is not that of make_tar(tree) without compression.
  std::string plain = decompress(file);
  write_file(f.tmp / "rootfs.tar", file);
  rfs::ImportOptions o;
  o.names = {"local/rootfs:v1"};
  auto r = f.import(f.tmp / "rootfs.tar", o);
  CHECK(r.format == ImportFormat::rootfs);
  const rfs::Image& img = r.images[0];
  CHECK(img.names == std::vector<std::string>{"docker.io/local/rootfs:v1"});
  REQUIRE(img.config.diff_ids.size() == 1);
  CHECK(img.config.diff_ids[0].hex == sha256_hex(plain));
  CHECK(img.config.os == rfs::host_platform().os);
  CHECK(img.config.architecture == rfs::host_platform().architecture);
  REQUIRE(img.manifest.layers.size() == 1);
  const rfs::Descriptor& layer = img.manifest.layers[0];
  switch (c) {
    case Compress::none:
      CHECK(layer.media_type == rfs::media::oci_layer);
      CHECK(layer.digest.hex == sha256_hex(plain));
      break;
    case Compress::gzip:
      CHECK(layer.media_type == rfs::media::oci_layer_gzip);
      CHECK(layer.digest.hex == sha256_hex(file));  // stored as is
      break;
    case Compress::zstd:
      CHECK(layer.media_type == rfs::media::oci_layer_zstd);
      CHECK(layer.digest.hex == sha256_hex(file));
      break;
    case Compress::xz:  // no OCI media type: stored uncompressed
      CHECK(layer.media_type == rfs::media::oci_layer);
      CHECK(layer.digest.hex == sha256_hex(plain));
      break;
  }
  check_hello_tree(f.root_of(img));
  CHECK(f.tmp_empty());
}

TEST_CASE("import: a rootfs tarball without a name is reachable by digest", "[import]") {
  Fixture f;
  write_file(f.tmp / "rootfs.tar.gz", make_tar(hello_tree(), Compress::gzip));
  auto r = f.import(f.tmp / "rootfs.tar.gz");
  CHECK(r.images[0].names.empty());
  CHECK(f.store.resolve(r.images[0].digest.str()).has_value());
}

TEST_CASE("import: a rootfs directory becomes a one-layer image", "[import]") {
  Fixture f;
  std::string src = f.tmp / "src";
  std::filesystem::create_directories(src + "/bin");
  std::filesystem::create_directories(src + "/etc/empty");
  write_file(src + "/bin/hello", "#!/bin/sh\necho hello\n");
  ::chmod((src + "/bin/hello").c_str(), 0755);
  std::filesystem::create_symlink("hello", src + "/bin/hi");
  std::filesystem::create_symlink("/nowhere/at/all", src + "/dangling");
  write_file(src + "/etc/motd", "welcome\n");
  std::filesystem::create_hard_link(src + "/etc/motd", src + "/etc/motd2");
  ::chmod((src + "/etc/empty").c_str(), 0700);
  REQUIRE(::mkfifo((src + "/etc/fifo").c_str(), 0640) == 0);
  auto r = f.import(src);
  CHECK(r.format == ImportFormat::rootfs);
  const rfs::Image& img = r.images[0];
  REQUIRE(img.manifest.layers.size() == 1);
  // Uncompressed: the layer's digest is its diff_id.
  CHECK(img.manifest.layers[0].media_type == rfs::media::oci_layer);
  REQUIRE(img.config.diff_ids.size() == 1);
  CHECK(img.config.diff_ids[0] == img.manifest.layers[0].digest);
  std::string root = f.root_of(img);
  check_hello_tree(root);
  CHECK(std::filesystem::read_symlink(root + "/dangling") == "/nowhere/at/all");
  struct stat st;
  REQUIRE(::lstat((root + "/etc/empty").c_str(), &st) == 0);
  CHECK((S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700));
  REQUIRE(::lstat((root + "/etc/fifo").c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));

  // No atime/ctime in the tar: the same tree gives the same image.
  auto again = f.import(src);
  CHECK(again.images[0].digest == img.digest);

  SECTION("a device node in the directory is refused") {
    if (::geteuid() != 0) {
      BERTH_SKIP("mknod of a device needs root");
    }
    REQUIRE(::mknod((src + "/etc/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
    Fixture g;
    std::string err = g.import_error(src);
    CHECK_THAT(err, Catch::Contains(src + "/etc/null"));
    CHECK_THAT(err, Catch::Contains("device node refused"));
    CHECK(g.image_count() == 0);
    CHECK(g.tmp_empty());
  }
}

TEST_CASE("import: garbage and missing input give clear errors", "[import]") {
  Fixture f;
  write_file(f.tmp / "garbage.bin", std::string(4096, '\x07') + "not an archive");
  std::string err = f.import_error(f.tmp / "garbage.bin");
  CHECK_THAT(err, Catch::StartsWith("import: " + f.tmp / "garbage.bin"));
  CHECK_THAT(err, Catch::Contains("not an OCI layout, docker archive or rootfs"));

  std::string missing = f.import_error(f.tmp / "nope");
  CHECK_THAT(missing, Catch::Contains(f.tmp / "nope"));
  CHECK_THAT(missing, Catch::Contains("No such file"));

  rfs::ImportOptions docker;
  docker.format = ImportFormat::docker_archive;
  std::filesystem::create_directories(f.tmp / "dir");
  CHECK_THAT(f.import_error(f.tmp / "dir", docker), Catch::Contains("docker archives are tar"));

  write_file(f.tmp / "rootfs.tar", make_tar(hello_tree()));
  CHECK_THAT(f.import_error(f.tmp / "rootfs.tar", docker), Catch::Contains("no manifest.json"));
  rfs::ImportOptions oci;
  oci.format = ImportFormat::oci_layout;
  CHECK_THAT(f.import_error(f.tmp / "rootfs.tar", oci), Catch::Contains("no oci-layout"));
  CHECK_THAT(f.import_error(f.tmp / "dir", oci), Catch::Contains(f.tmp / "dir/oci-layout"));

  write_file(f.tmp / "truncated.tar.gz", make_tar(hello_tree(), Compress::gzip).substr(0, 60));
  rfs::ImportOptions rootfs;
  rootfs.format = ImportFormat::rootfs;
  CHECK_THAT(f.import_error(f.tmp / "truncated.tar.gz", rootfs),
             Catch::Contains(f.tmp / "truncated.tar.gz"));
  CHECK(f.image_count() == 0);
  CHECK(f.tmp_empty());
}

TEST_CASE("import: hostile rootfs tarballs are refused before anything is stored", "[import]") {
  struct Case {
    const char* name;
    std::vector<TarEntry> entries;
    const char* why;
  };
  Fixture f;
  // Every escape aims at this directory, outside the store.
  std::string outside = f.tmp / "outside";
  std::filesystem::create_directories(outside);
  std::vector<Case> cases = {
      {"dot-dot", {{.path = "../../../outside/escape", .data = "x"}}, "path contains \"..\""},
      {"absolute", {{.path = outside + "/escape", .data = "x"}}, "absolute path"},
      {"through a symlink",
       {{.path = "link", .type = AE_IFLNK, .perm = 0777, .symlink = outside},
        {.path = "link/escape", .data = "x"}},
       "a symlink an earlier entry made"},
      {"hardlink out",
       {{.path = "evil", .hardlink = "../../etc/passwd"}},
       "hardlink target: path contains \"..\""},
      {"device",
       {{.path = "dev/sda", .type = AE_IFBLK, .perm = 0666, .rdev = makedev(8, 0)}},
       "device node refused"},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      write_file(f.tmp / "evil.tar", make_tar(c.entries));
      std::string err = f.import_error(f.tmp / "evil.tar");
      CHECK_THAT(err, Catch::Contains(f.tmp / "evil.tar"));
      CHECK_THAT(err, Catch::Contains(c.why));
      CHECK(f.image_count() == 0);
      auto blobs = f.store.blobs().list();
      REQUIRE(blobs.has_value());
      CHECK(blobs->empty());
      CHECK(f.tmp_empty());
      CHECK(std::filesystem::is_empty(outside));
    }
  }
}

TEST_CASE("import: a rootfs directory deeper than max_depth is refused", "[import][hostile]") {
  // The directory walk recurses with an fd per level: it stops at the
  // store's depth limit, which unpacking would enforce anyway.
  Fixture f;
  rfs::UnpackLimits limits;
  limits.max_depth = 40;
  f.store.set_unpack_limits(limits);
  std::string src = f.tmp / "src";
  std::string deep = src;
  for (int i = 0; i < 60; ++i) deep += "/d";
  std::filesystem::create_directories(deep);
  write_file(deep + "/file", "x");
  std::string msg = f.import_error(src);
  CHECK_THAT(msg, Catch::Contains("deeper than 40 levels (max_depth, --max-layer-depth)"));
  CHECK(f.image_count() == 0);
  // Within the limit it imports.
  limits.max_depth = 100;
  f.store.set_unpack_limits(limits);
  auto r = f.import(src);
  CHECK(
      std::filesystem::is_regular_file(f.root_of(r.images[0]) + deep.substr(src.size()) + "/file"));
}
