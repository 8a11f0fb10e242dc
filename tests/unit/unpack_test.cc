#include "rootfs-tools/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
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

// "d/d/.../d/<leaf>", `levels` directories deep.
std::string deep_path(size_t levels, const std::string& leaf) {
  std::string p;
  p.reserve(levels * 2 + leaf.size());
  for (size_t i = 0; i < levels; ++i) p += "d/";
  return p + leaf;
}

// A line of /proc/self/status in KiB ("VmRSS", "VmHWM").
long status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(key + ":")) return std::stol(line.substr(key.size() + 1));
  }
  return -1;
}

// Resets the peak RSS (VmHWM) to the current RSS: proc(5) clear_refs "5".
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

// Removes a tree the test made, however deep (std::filesystem::remove_all
// holds an fd per level), at scope exit.
struct RemoveAtExit {
  std::string path;
  ~RemoveAtExit() { (void)berth::fs::remove_all(path); }
};

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

TEST_CASE("unpack: a directory 20000 levels deep takes linear time and memory",
          "[unpack][hostile]") {
  // The hostile layer of issue 9: one entry, a 40 KB path, 50 KB of tar.
  // Unpacked once per level from the root and with a set of every parent
  // path, it took 467 MB; now the path is a tree of components and the
  // directory fds are reused, so it takes a few MB.
  TempDir tmp;
  std::string dest = tmp / "dest";
  RemoveAtExit cleanup{dest};
  REQUIRE(berth::fs::mkdir_p(dest).has_value());
  constexpr size_t kLevels = 20000;
  write_layer(tmp / "deep.tar", {{.path = deep_path(kLevels, "file"), .data = "bottom"}});
  UnpackOptions o = options();
  o.limits.max_depth = 0;  // no limits: what does the walk itself cost?
  o.limits.max_path = 0;
  bool measured = reset_peak_rss();
  long before = status_kib("VmRSS");
  auto r = unpack_layer(tmp / "deep.tar", dest, o);
  long peak = status_kib("VmHWM");
  INFO((r ? "" : r.error().str()));
  REQUIRE(r.has_value());
  CHECK(r->files == 1);
  if (measured && before > 0 && peak > 0) {
    INFO("peak RSS grew by " << (peak - before) << " KiB");
    CHECK(peak - before < 64 * 1024);
  } else {
    WARN("peak RSS not measured: /proc/self/clear_refs not writable");
  }
  // The file is at the bottom, 20,000 directories down.
  int fd = ::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  for (size_t i = 0; i < kLevels && fd >= 0; ++i) {
    int next = ::openat(fd, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ::close(fd);
    fd = next;
  }
  REQUIRE(fd >= 0);
  struct stat st;
  CHECK(::fstatat(fd, "file", &st, AT_SYMLINK_NOFOLLOW) == 0);
  CHECK(st.st_size == 6);
  ::close(fd);
  // And removing it takes a constant stack (the recursive removal died here).
  auto rm = berth::fs::remove_all(dest);
  INFO((rm ? "" : rm.error().str()));
  CHECK(rm.has_value());
  CHECK_FALSE(present(dest));
}

TEST_CASE("unpack: the limits name themselves and the entry", "[unpack][hostile]") {
  TempDir tmp;
  std::string dest = tmp / "dest";
  RemoveAtExit cleanup{dest};
  REQUIRE(berth::fs::mkdir_p(dest).has_value());
  auto fails = [&](const std::vector<Entry>& entries, const UnpackOptions& o) {
    std::string layer = tmp / "limits.tar";
    write_layer(layer, entries);
    auto r = unpack_layer(layer, dest, o);
    REQUIRE_FALSE(r.has_value());
    return r.error().str();
  };
  UnpackOptions defaults = options();
  CHECK(defaults.limits.max_depth == 512);
  CHECK(defaults.limits.max_path == 4096);

  // 600 levels in 1,201 bytes: within max_path, beyond max_depth.
  std::string deep = deep_path(600, "f");
  std::string msg = fails({{.path = deep, .data = "x"}}, defaults);
  CHECK_THAT(msg, Catch::Contains("entry \"d/d/d/"));
  CHECK_THAT(msg, Catch::Contains("path depth 601 exceeds the limit of 512 levels (max_depth)"));
  // Refused before anything was made for it.
  CHECK_FALSE(present(dest + "/d"));

  // The 20,000-level path: 40,004 bytes, shown shortened.
  msg = fails({{.path = deep_path(20000, "file"), .data = "x"}}, defaults);
  CHECK_THAT(msg, Catch::Contains("path length 40004 exceeds the limit of 4096 bytes (max_path)"));
  CHECK_THAT(msg, Catch::Contains("...(40004 bytes)"));
  CHECK(msg.size() < 1024);

  // A hardlink's target obeys the same limits.
  msg = fails({{.path = "f", .data = "x"}, {.path = "l", .hardlink = deep}}, defaults);
  CHECK_THAT(msg, Catch::Contains("entry \"l\": hardlink target"));
  CHECK_THAT(msg, Catch::Contains("(max_depth)"));

  UnpackOptions few = options();
  few.limits.max_entries = 3;
  msg = fails({{.path = "a", .data = "1"},
               {.path = "b", .data = "2"},
               {.path = "c", .data = "3"},
               {.path = "d2", .data = "4"}},
              few);
  CHECK_THAT(msg, Catch::Contains("entry \"d2\": more than 3 entries in the layer (max_entries)"));

  UnpackOptions small = options();
  small.limits.max_bytes = 1000;
  msg = fails({{.path = "small", .data = std::string(600, 'a')},
               {.path = "big", .data = std::string(600, 'b')}},
              small);
  CHECK_THAT(msg, Catch::Contains(
                      "entry \"big\": layer data exceeds the limit of 1000 bytes (max_bytes)"));

  // 0 turns a limit off.
  UnpackOptions off = options();
  off.limits.max_depth = 0;
  write_layer(tmp / "ok.tar", {{.path = deep, .data = "x"}});
  auto r = unpack_layer(tmp / "ok.tar", dest, off);
  INFO((r ? "" : r.error().str()));
  CHECK(r.has_value());
}

TEST_CASE("unpack: opaque directories and whiteouts deep in a tree", "[unpack]") {
  // clear_opaque walks without recursion and the directory cache must not
  // keep a removed directory: lower content 300 levels down is replaced.
  TempDir tmp;
  std::string dest = tmp / "dest";
  RemoveAtExit cleanup{dest};
  REQUIRE(berth::fs::mkdir_p(dest).has_value());
  std::string deep = deep_path(300, "");
  write_layer(tmp / "lower.tar", {{.path = deep + "old", .data = "old"},
                                  {.path = deep + "keep/x", .data = "x"},
                                  {.path = deep + "gone/y", .data = "y"}});
  REQUIRE(unpack_layer(tmp / "lower.tar", dest, options()).has_value());
  write_layer(tmp / "upper.tar", {{.path = deep + "new", .data = "new"},
                                  {.path = deep + ".wh.gone"},
                                  {.path = "d/d/.wh..wh..opq"},
                                  {.path = deep + "keep", .type = AE_IFDIR, .perm = 0700},
                                  {.path = "top", .data = "t"}});
  auto r = unpack_layer(tmp / "upper.tar", dest, options());
  INFO((r ? "" : r.error().str()));
  REQUIRE(r.has_value());
  std::string base = dest + "/" + deep;
  CHECK(present(base + "new"));
  CHECK_FALSE(present(base + "old"));     // under the opaque d/d: not written by this layer
  CHECK_FALSE(present(base + "gone"));    // whited out
  CHECK_FALSE(present(base + "keep/x"));  // the directory was rewritten, its lower content not
  CHECK((lstat_of(base + "keep").st_mode & 07777) == 0700);
  CHECK(present(dest + "/top"));
}
