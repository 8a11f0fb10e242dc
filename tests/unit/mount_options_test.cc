// parse_mount_options (the mount(8) option table) and the in-root path
// resolver of runtime/mounts.h, which needs no privilege: it only opens and
// creates files beneath a temporary directory.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/mounts.h"
#include "runtime/rootfs.h"

using berth::runtime::MountFlags;
using berth::runtime::parse_mount_options;

namespace {

struct FlagCase {
  const char* option;
  unsigned long flags;
  unsigned long clear;
};

}  // namespace

TEST_CASE("parse_mount_options maps every mount(8) flag option", "[mount]") {
  const FlagCase cases[] = {
      {"async", 0, MS_SYNCHRONOUS},
      {"atime", 0, MS_NOATIME},
      {"bind", MS_BIND, 0},
      {"defaults", 0, 0},
      {"dev", 0, MS_NODEV},
      {"diratime", 0, MS_NODIRATIME},
      {"dirsync", MS_DIRSYNC, 0},
      {"exec", 0, MS_NOEXEC},
      {"iversion", MS_I_VERSION, 0},
      {"lazytime", MS_LAZYTIME, 0},
      {"loud", 0, MS_SILENT},
      {"mand", MS_MANDLOCK, 0},
      {"noatime", MS_NOATIME, 0},
      {"nodev", MS_NODEV, 0},
      {"nodiratime", MS_NODIRATIME, 0},
      {"noexec", MS_NOEXEC, 0},
      {"noiversion", 0, MS_I_VERSION},
      {"nolazytime", 0, MS_LAZYTIME},
      {"nomand", 0, MS_MANDLOCK},
      {"norelatime", 0, MS_RELATIME},
      {"nostrictatime", 0, MS_STRICTATIME},
      {"nosuid", MS_NOSUID, 0},
      {"rbind", MS_BIND | MS_REC, 0},
      {"relatime", MS_RELATIME, 0},
      {"remount", MS_REMOUNT, 0},
      {"ro", MS_RDONLY, 0},
      {"rw", 0, MS_RDONLY},
      {"silent", MS_SILENT, 0},
      {"strictatime", MS_STRICTATIME, 0},
      {"suid", 0, MS_NOSUID},
      {"sync", MS_SYNCHRONOUS, 0},
  };
  for (const FlagCase& c : cases) {
    INFO("option " << c.option);
    MountFlags f = parse_mount_options({c.option});
    CHECK(f.flags == c.flags);
    CHECK(f.clear == c.clear);
    CHECK(f.propagation == 0);
    CHECK(f.data.empty());
  }
}

TEST_CASE("parse_mount_options maps the propagation options", "[mount]") {
  const std::pair<const char*, unsigned long> cases[] = {
      {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
      {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
      {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
      {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
  };
  for (auto [name, propagation] : cases) {
    INFO("option " << name);
    MountFlags f = parse_mount_options({name});
    CHECK(f.propagation == propagation);
    CHECK(f.flags == 0);
    CHECK(f.data.empty());
  }
}

TEST_CASE("parse_mount_options combines flags", "[mount]") {
  MountFlags f = parse_mount_options({"nosuid", "noexec", "nodev", "ro"});
  CHECK(f.flags == (MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY));
  CHECK(f.clear == 0);
  CHECK(f.propagation == 0);
  CHECK_FALSE(f.bind);
  CHECK(f.data.empty());
}

TEST_CASE("parse_mount_options: rbind and rprivate", "[mount]") {
  MountFlags f = parse_mount_options({"rbind", "rprivate"});
  CHECK(f.bind);
  CHECK(f.recursive);
  CHECK(f.flags == (MS_BIND | MS_REC));
  CHECK(f.propagation == (MS_PRIVATE | MS_REC));

  MountFlags plain = parse_mount_options({"bind", "ro"});
  CHECK(plain.bind);
  CHECK_FALSE(plain.recursive);
  CHECK(plain.flags == (MS_BIND | MS_RDONLY));
}

TEST_CASE("parse_mount_options passes unknown options on as data, in order", "[mount]") {
  MountFlags f = parse_mount_options({"mode=755", "size=65536k"});
  CHECK(f.data == "mode=755,size=65536k");
  CHECK(f.flags == 0);

  MountFlags mixed =
      parse_mount_options({"nosuid", "newinstance", "ptmxmode=0666", "", "mode=0620", "gid=5"});
  CHECK(mixed.flags == MS_NOSUID);
  CHECK(mixed.data == "newinstance,ptmxmode=0666,mode=0620,gid=5");
}

TEST_CASE("parse_mount_options: the last of contrary options wins", "[mount]") {
  MountFlags rw = parse_mount_options({"ro", "rw"});
  CHECK((rw.flags & MS_RDONLY) == 0);
  CHECK((rw.clear & MS_RDONLY) != 0);

  MountFlags ro = parse_mount_options({"rw", "ro"});
  CHECK((ro.flags & MS_RDONLY) != 0);
  CHECK((ro.clear & MS_RDONLY) == 0);

  MountFlags prop = parse_mount_options({"rshared", "private"});
  CHECK(prop.propagation == MS_PRIVATE);
}

TEST_CASE("parse_mount_options of nothing is nothing", "[mount]") {
  MountFlags f = parse_mount_options({});
  CHECK(f.flags == 0);
  CHECK(f.clear == 0);
  CHECK(f.propagation == 0);
  CHECK(f.data.empty());
  CHECK_FALSE(f.bind);
  CHECK_FALSE(f.recursive);
}

TEST_CASE("clean_path normalises container paths", "[mount]") {
  using berth::runtime::clean_path;
  CHECK(clean_path("/dev") == "/dev");
  CHECK(clean_path("dev/") == "/dev");
  CHECK(clean_path("//dev/./pts//") == "/dev/pts");
  CHECK(clean_path("") == "/");
  CHECK(clean_path("/") == "/");
  CHECK(clean_path("/a/../b") == "/a/../b");
}

// ---- open_in_root: symlinks and ".." must not leave the root ----

namespace {

namespace stdfs = std::filesystem;
using berth::runtime::Create;
using berth::runtime::open_in_root;
using berth::runtime::Resolver;
using berth::runtime::RootDir;

// <tmp>/berth-resolve-<pid>/{root,outside}; removed on scope exit.
class ResolveFixture {
 public:
  ResolveFixture() {
    base_ = stdfs::temp_directory_path() / ("berth-resolve-" + std::to_string(::getpid()));
    stdfs::remove_all(base_);
    stdfs::create_directories(base_ / "root/etc");
    stdfs::create_directories(base_ / "outside");
  }
  ~ResolveFixture() {
    std::error_code ec;
    stdfs::remove_all(base_, ec);
  }
  stdfs::path root() const { return base_ / "root"; }
  stdfs::path outside() const { return base_ / "outside"; }
  RootDir open_root() const {
    auto r = RootDir::open(root().string());
    REQUIRE(r);
    return std::move(*r);
  }

 private:
  stdfs::path base_;
};

std::string fd_target(int fd) {
  std::error_code ec;
  return stdfs::read_symlink(berth::runtime::proc_fd_path(fd), ec).string();
}

}  // namespace

TEST_CASE("open_in_root keeps symlinks and .. inside the root", "[mount][resolve]") {
  for (Resolver resolver : {Resolver::openat2, Resolver::walk}) {
    INFO("resolver " << (resolver == Resolver::walk ? "walk" : "openat2"));
    ResolveFixture fx;
    RootDir root = fx.open_root();
    stdfs::create_symlink("/", fx.root() / "evil");
    stdfs::create_symlink("../../../../../../..", fx.root() / "evil-rel");
    stdfs::create_symlink("/etc", fx.root() / "etc-link");
    std::string outside = fx.outside().string();

    // "/evil/<outside>/x" must be made at <root>/<outside>/x, not at <outside>/x.
    auto a = open_in_root(root, "/evil" + outside + "/x", Create::directory, resolver);
    REQUIRE(a);
    CHECK(fd_target(a->get()) == fx.root().string() + outside + "/x");
    CHECK_FALSE(stdfs::exists(fx.outside() / "x"));

    auto b = open_in_root(root, "/evil-rel" + outside + "/y", Create::file, resolver);
    REQUIRE(b);
    CHECK(stdfs::is_regular_file(fx.root().string() + outside + "/y"));
    CHECK_FALSE(stdfs::exists(fx.outside() / "y"));

    auto c = open_in_root(root, "/../../../.." + outside + "/z", Create::directory, resolver);
    REQUIRE(c);
    CHECK(stdfs::is_directory(fx.root().string() + outside + "/z"));
    CHECK_FALSE(stdfs::exists(fx.outside() / "z"));

    // An absolute link inside the image is followed relative to the root.
    auto d = open_in_root(root, "/etc-link/passwd", Create::file, resolver);
    REQUIRE(d);
    CHECK(stdfs::is_regular_file(fx.root() / "etc/passwd"));
  }
}

TEST_CASE("open_in_root reports what it cannot resolve", "[mount][resolve]") {
  for (Resolver resolver : {Resolver::openat2, Resolver::walk}) {
    ResolveFixture fx;
    RootDir root = fx.open_root();
    auto missing = open_in_root(root, "/no/such", Create::none, resolver);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().err == ENOENT);
    CHECK(missing.error().str() ==
          "rootfs: resolve /no/such (in " + fx.root().string() + "): No such file or directory");

    // A regular file in the middle of the path.
    { std::ofstream(fx.root() / "file") << "x"; }
    auto through_file = open_in_root(root, "/file/sub", Create::directory, resolver);
    REQUIRE_FALSE(through_file);
    CHECK(through_file.error().err == ENOTDIR);

    // A dangling link cannot be created through.
    stdfs::create_symlink("/nowhere/deeper", fx.root() / "dangling");
    auto dangling = open_in_root(root, "/dangling", Create::directory, resolver);
    REQUIRE_FALSE(dangling);
    CHECK(dangling.error().err == ENOENT);

    stdfs::create_symlink("loop", fx.root() / "loop");
    auto loop = open_in_root(root, "/loop", Create::none, resolver);
    REQUIRE_FALSE(loop);
    CHECK(loop.error().err == ELOOP);
  }
}

TEST_CASE("open_in_root refuses /proc magic links", "[mount][resolve]") {
  auto root = RootDir::open("/");
  REQUIRE(root);
  auto magic = open_in_root(*root, "/proc/self/cwd", Create::none, Resolver::openat2);
  REQUIRE_FALSE(magic);
  CHECK(magic.error().err == ELOOP);
}
