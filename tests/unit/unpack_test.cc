#include "rootfs-tools/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>
#include "tests/skip.h"

#include "common/fs.h"
#include "tests/unit/tar_writer.h"
#include "tests/unit/temp_dir.h"

using berth::rootfs::unpack_layer;
using berth::rootfs::UnpackOptions;
using berth::rootfs::WhiteoutMode;
using berth::test::Entry;
using berth::test::Filter;
using berth::test::TempDir;
using berth::test::write_layer;

namespace {

struct stat lstat_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

bool present(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<Entry> normal_tree() {
  return {
      {.path = "etc/", .type = AE_IFDIR, .perm = 0755},
      {.path = "etc/hostname", .data = "box\n", .xattr_name = "user.x", .xattr_value = "42"},
      {.path = "bin/", .type = AE_IFDIR, .perm = 0555},
      {.path = "bin/tool", .perm = 04755, .data = "#!/bin/sh\n"},
      {.path = "bin/sh", .type = AE_IFLNK, .perm = 0777, .symlink = "/bin/tool"},
      {.path = "bin/tool2", .hardlink = "bin/tool"},
      {.path = "./var/lib/deep/file", .data = "x"},  // parents not in the archive
      {.path = "run/fifo", .type = AE_IFIFO, .perm = 0620},
  };
}

void check_normal_tree(const TempDir& dest) {
  CHECK(*berth::fs::read_file(dest / "etc/hostname") == "box\n");
  CHECK((lstat_of(dest / "etc/hostname").st_mode & 07777) == 0644);
  CHECK(lstat_of(dest / "etc/hostname").st_mtime == 1700000000);
  CHECK((lstat_of(dest / "bin").st_mode & 07777) == 0555);
  CHECK(lstat_of(dest / "bin").st_mtime == 1700000000);  // set after its children
  CHECK((lstat_of(dest / "bin/tool").st_mode & 07777) == 04755);
  CHECK(std::filesystem::read_symlink(dest / "bin/sh") == "/bin/tool");
  CHECK(lstat_of(dest / "bin/tool2").st_ino == lstat_of(dest / "bin/tool").st_ino);
  CHECK(*berth::fs::read_file(dest / "var/lib/deep/file") == "x");
  CHECK(S_ISFIFO(lstat_of(dest / "run/fifo").st_mode));
  char value[16] = {};
  ssize_t n = ::getxattr((dest / "etc/hostname").c_str(), "user.x", value, sizeof value);
  if (n < 0 && errno == ENOTSUP) {
    BERTH_SKIP_NOTE("user.x not checked: " << dest.path() << " has no user xattrs");
  } else {
    CHECK(std::string(value, n > 0 ? n : 0) == "42");
  }
  if (::geteuid() == 0) {
    CHECK(lstat_of(dest / "bin/tool").st_uid == 1234);
    CHECK(lstat_of(dest / "bin/tool").st_gid == 5678);
    CHECK(lstat_of(dest / "bin/sh").st_uid == 1234);
  }
}

UnpackOptions options() {
  UnpackOptions o;
  o.preserve_ownership = ::geteuid() == 0;
  return o;
}

}  // namespace

TEST_CASE("unpack: a normal tree, plain, gzip and zstd", "[unpack]") {
  TempDir tmp;
  auto [filter, name] = GENERATE(std::pair{Filter::none, "tar"}, std::pair{Filter::gzip, "gz"},
                                 std::pair{Filter::zstd, "zst"});
  INFO("filter " << name);
  std::string layer = tmp / (std::string("layer.") + name);
  write_layer(layer, normal_tree(), filter);
  TempDir dest;
  auto stats = unpack_layer(layer, dest.path(), options());
  REQUIRE(stats.has_value());
  CHECK(stats->files == 4);  // hostname, tool, deep/file, fifo
  CHECK(stats->dirs == 2);
  CHECK(stats->links == 2);
  CHECK(stats->bytes == 4 + 10 + 1);
  check_normal_tree(dest);
}

TEST_CASE("unpack: whiteouts and opaque directories in apply mode", "[unpack]") {
  TempDir tmp, dest;
  write_layer(tmp / "lower.tar", {
                                     {.path = "a/", .type = AE_IFDIR, .perm = 0755},
                                     {.path = "a/gone", .data = "1"},
                                     {.path = "a/kept", .data = "2"},
                                     {.path = "d/", .type = AE_IFDIR, .perm = 0755},
                                     {.path = "d/sub/old", .data = "3"},
                                     {.path = "d/lower", .data = "4"},
                                 });
  // The opaque marker comes after an entry of its own directory: that entry
  // must survive, everything from the lower layer in d/ must not.
  write_layer(tmp / "upper.tar", {
                                     {.path = "a/.wh.gone"},
                                     {.path = "d/sub/new", .data = "5"},
                                     {.path = "d/.wh..wh..opq"},
                                     {.path = ".wh.missing"},
                                 });
  REQUIRE(unpack_layer(tmp / "lower.tar", dest.path(), options()).has_value());
  auto stats = unpack_layer(tmp / "upper.tar", dest.path(), options());
  REQUIRE(stats.has_value());
  CHECK(stats->whiteouts == 3);
  CHECK_FALSE(present(dest / "a/gone"));
  CHECK_FALSE(present(dest / "a/.wh.gone"));
  CHECK(present(dest / "a/kept"));
  CHECK(*berth::fs::read_file(dest / "d/sub/new") == "5");
  CHECK_FALSE(present(dest / "d/sub/old"));
  CHECK_FALSE(present(dest / "d/lower"));
  CHECK_FALSE(present(dest / "d/.wh..wh..opq"));
}

TEST_CASE("unpack: whiteouts become overlayfs whiteouts in overlay mode", "[unpack]") {
  if (::geteuid() != 0) {
    BERTH_SKIP("overlay whiteouts need CAP_MKNOD and trusted.* xattrs (root)");
  }
  TempDir tmp, dest;
  write_layer(tmp / "upper.tar", {
                                     {.path = "a/.wh.gone"},
                                     {.path = "d/.wh..wh..opq"},
                                     {.path = "d/new", .data = "5"},
                                 });
  UnpackOptions o = options();
  o.whiteouts = WhiteoutMode::overlay;
  auto stats = unpack_layer(tmp / "upper.tar", dest.path(), o);
  REQUIRE(stats.has_value());
  CHECK(stats->whiteouts == 2);
  struct stat st = lstat_of(dest / "a/gone");
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(0, 0));
  char value[4] = {};
  ssize_t n = ::getxattr((dest / "d").c_str(), "trusted.overlay.opaque", value, sizeof value);
  if (n < 0 && errno == ENOTSUP) {
    BERTH_SKIP_NOTE("opaque xattr not checked: /tmp has no trusted xattrs");
  } else {
    CHECK(std::string(value, n > 0 ? n : 0) == "y");
  }
  CHECK(present(dest / "d/new"));
}

TEST_CASE("unpack: hostile archives are refused and nothing lands outside", "[unpack]") {
  TempDir tmp;
  std::string outside = tmp / "outside";  // next to dest, never inside it
  std::string dest = tmp / "dest";
  REQUIRE(berth::fs::mkdir_p(dest).has_value());
  struct Case {
    const char* what;
    std::vector<Entry> entries;
    std::string message;
  };
  auto [what, entries, message] = GENERATE_COPY(
      Case{"dot-dot",
           {{.path = "../outside", .data = "evil"}},
           "entry \"../outside\": path contains \"..\""},
      Case{"absolute",
           {{.path = outside, .data = "evil"}},
           "entry \"" + outside + "\": absolute path"},
      Case{"symlink escape",
           {{.path = "link", .type = AE_IFLNK, .perm = 0777, .symlink = outside},
            {.path = "link/file", .data = "evil"}},
           "entry \"link/file\": parent \"link\" is a symlink or not a directory"},
      Case{"hardlink escape",
           {{.path = "passwd", .hardlink = "../../etc/passwd"}},
           "entry \"passwd\": hardlink target \"../../etc/passwd\": path contains \"..\""},
      Case{"char device",
           {{.path = "dev/sda", .type = AE_IFCHR, .perm = 0666, .rdev = makedev(8, 0)}},
           "entry \"dev/sda\": device node refused (allow_devices is off)"});
  INFO(what);
  // The symlink case must also fail when the outside directory exists.
  REQUIRE(berth::fs::mkdir_p(outside).has_value());
  std::string layer = tmp / "hostile.tar";
  write_layer(layer, entries);
  auto r = unpack_layer(layer, dest, options());
  REQUIRE_FALSE(r.has_value());
  CHECK_THAT(r.error().str(), Catch::Contains("unpack: " + layer + ": " + message));
  CHECK(std::filesystem::is_empty(outside));
  CHECK_FALSE(present(dest + "/dev/sda"));
  CHECK_FALSE(present("/etc/passwd/passwd"));
}

TEST_CASE("unpack: device nodes are created only when allowed", "[unpack]") {
  if (::geteuid() != 0) {
    BERTH_SKIP("mknod of a character device needs CAP_MKNOD (root)");
  }
  TempDir tmp, dest;
  write_layer(tmp / "dev.tar",
              {{.path = "dev/null", .type = AE_IFCHR, .perm = 0666, .rdev = makedev(1, 3)}});
  UnpackOptions o = options();
  o.allow_devices = true;
  REQUIRE(unpack_layer(tmp / "dev.tar", dest.path(), o).has_value());
  struct stat st = lstat_of(dest / "dev/null");
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(1, 3));
  CHECK((st.st_mode & 07777) == 0666);
}

TEST_CASE("unpack: a missing archive or destination is a clear error", "[unpack]") {
  TempDir tmp;
  auto r = unpack_layer(tmp / "nope.tar", tmp.path(), options());
  REQUIRE_FALSE(r.has_value());
  CHECK_THAT(r.error().str(), Catch::StartsWith("unpack: " + (tmp / "nope.tar") + ": open"));
  write_layer(tmp / "l.tar", {{.path = "f", .data = "x"}});
  auto d = unpack_layer(tmp / "l.tar", tmp / "nodir", options());
  REQUIRE_FALSE(d.has_value());
  CHECK(d.error().err == ENOENT);
}
