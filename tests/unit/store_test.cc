// BlobStore: digests validated strictly, blobs visible only when complete and
// verified, leftovers of dead writers reclaimed, one write per digest under
// the per-digest lock.
#include "rootfs-tools/store.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/fs.h"
#include "tests/unit/temp_dir.h"

using berth::rootfs::BlobStore;
using berth::rootfs::Digest;
using berth::test::TempDir;

namespace {

constexpr const char* kHelloHex =
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";  // sha256("hello")
constexpr const char* kEmptyHex =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";  // sha256("")

Digest digest(const std::string& s) {
  auto d = Digest::parse(s);
  REQUIRE(d.has_value());
  return *d;
}

size_t entries(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

struct Fixture {
  TempDir tmp;
  BlobStore store{tmp / "store"};
  Fixture() { REQUIRE(store.init().has_value()); }
  std::string blobs() const { return tmp / "store/blobs/sha256"; }
  std::string tmpdir() const { return tmp / "store/tmp"; }
};

}  // namespace

TEST_CASE("store: digest parsing is strict", "[store]") {
  auto d = Digest::parse(std::string("sha256:") + kHelloHex);
  REQUIRE(d.has_value());
  CHECK(d->algo == "sha256");
  CHECK(d->hex == kHelloHex);
  CHECK(d->str() == std::string("sha256:") + kHelloHex);

  std::string upper = kHelloHex;
  for (auto& c : upper) c = static_cast<char>(std::toupper(c));
  const std::vector<std::string> bad = {
      "sha256:../x",
      "sha256:" + upper,
      "sha256:" + std::string(kHelloHex).substr(0, 63),
      "sha256:" + std::string(kHelloHex) + "0",
      "md5:d41d8cd98f00b204e9800998ecf8427e",
      std::string("sha512:") + kHelloHex,
      kHelloHex,
      "sha256:../../../../../../etc/passwd0000000000000000000000000000000",
      "sha256:" + std::string(kHelloHex).substr(0, 62) + "/x",
      "",
  };
  for (const auto& s : bad) {
    INFO(s);
    auto r = Digest::parse(s);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().step == "store");
    CHECK_THAT(r.error().str(), Catch::Contains("sha256:"));
  }
}

TEST_CASE("store: init creates the layout with its modes", "[store]") {
  Fixture f;
  struct stat st;
  REQUIRE(::stat((f.tmp / "store").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  REQUIRE(::stat(f.blobs().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(f.store.init().has_value());  // idempotent
}

TEST_CASE("store: put, has, read, list, remove", "[store]") {
  Fixture f;
  Digest hello = digest(std::string("sha256:") + kHelloHex);
  CHECK_FALSE(f.store.has(hello));

  auto put = f.store.put("hello", hello);
  REQUIRE(put.has_value());
  CHECK(*put == hello);
  CHECK(f.store.has(hello));
  CHECK(f.store.path(hello) == f.blobs() + "/" + kHelloHex);

  auto empty = f.store.put("");  // no expected digest: computed
  REQUIRE(empty.has_value());
  CHECK(empty->hex == kEmptyHex);

  auto data = f.store.read(hello, BlobStore::Verify::yes);
  REQUIRE(data.has_value());
  CHECK(*data == "hello");

  struct stat st;
  REQUIRE(::stat(f.store.path(hello).c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);

  auto all = f.store.list();
  REQUIRE(all.has_value());
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].hex == kHelloHex);  // sorted: "2c..." < "e3..."
  CHECK((*all)[1].hex == kEmptyHex);

  REQUIRE(f.store.remove(hello).has_value());
  CHECK_FALSE(f.store.has(hello));
  auto again = f.store.remove(hello);
  REQUIRE_FALSE(again.has_value());
  CHECK_THAT(again.error().str(), Catch::Contains(kHelloHex) && Catch::Contains("No such file"));
  CHECK(f.store.list()->size() == 1);
  CHECK(entries(f.tmpdir()) == 0);
}

TEST_CASE("store: list ignores names that are not digests", "[store]") {
  Fixture f;
  std::ofstream(f.blobs() + "/not-a-digest") << "x";
  REQUIRE(f.store.put("hello").has_value());
  auto all = f.store.list();
  REQUIRE(all.has_value());
  REQUIRE(all->size() == 1);
  CHECK(all->front().hex == kHelloHex);
}

TEST_CASE("store: a digest mismatch is refused and leaves nothing", "[store]") {
  Fixture f;
  Digest wanted = digest(std::string("sha256:") + kEmptyHex);
  auto r = f.store.put("hello", wanted);
  REQUIRE_FALSE(r.has_value());
  CHECK_THAT(r.error().str(), Catch::Contains(std::string("expected sha256:") + kEmptyHex) &&
                                  Catch::Contains(std::string("got sha256:") + kHelloHex));
  CHECK(entries(f.blobs()) == 0);
  CHECK(entries(f.tmpdir()) == 0);
  CHECK_FALSE(f.store.has(wanted));
}

TEST_CASE("store: a writer dropped without commit leaves nothing", "[store]") {
  Fixture f;
  {
    auto w = f.store.writer();
    REQUIRE(w.has_value());
    REQUIRE(w->write("hel").has_value());
    REQUIRE(w->write("lo").has_value());
    CHECK(entries(f.tmpdir()) == 1);
    BlobStore::Writer moved = std::move(*w);  // the moved-from writer must not delete it
    CHECK(entries(f.tmpdir()) == 1);
  }
  CHECK(entries(f.tmpdir()) == 0);
  CHECK(entries(f.blobs()) == 0);
}

TEST_CASE("store: a streamed writer commits the whole blob", "[store]") {
  Fixture f;
  auto w = f.store.writer();
  REQUIRE(w.has_value());
  REQUIRE(w->write("hel").has_value());
  REQUIRE(w->write("lo").has_value());
  auto d = w->commit(digest(std::string("sha256:") + kHelloHex));
  REQUIRE(d.has_value());
  CHECK(w->size() == 5);
  CHECK_FALSE(w->commit(std::nullopt).has_value());  // finished
  CHECK_FALSE(w->write("x").has_value());
  CHECK(*f.store.read(*d) == "hello");
  CHECK(entries(f.tmpdir()) == 0);
}

TEST_CASE("store: put_file streams a file, read verifies on request", "[store]") {
  Fixture f;
  std::string src = f.tmp / "src";
  std::string big(300000, 'a');  // several read chunks
  for (size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>('a' + i % 26);
  std::ofstream(src, std::ios::binary) << big;
  auto d = f.store.put_file(src);
  REQUIRE(d.has_value());
  auto again = f.store.put(big);
  REQUIRE(again.has_value());
  CHECK(*again == *d);
  CHECK(f.store.list()->size() == 1);

  auto missing = f.store.put_file(f.tmp / "nope");
  REQUIRE_FALSE(missing.has_value());
  CHECK_THAT(missing.error().str(), Catch::Contains(f.tmp / "nope"));

  // Corruption under the store is caught by Verify::yes only.
  std::ofstream(f.store.path(*d), std::ios::binary | std::ios::trunc) << "tampered";
  CHECK(f.store.read(*d).has_value());
  auto bad = f.store.read(*d, BlobStore::Verify::yes);
  REQUIRE_FALSE(bad.has_value());
  CHECK_THAT(bad.error().str(), Catch::Contains("corrupt") && Catch::Contains(d->hex));
}

TEST_CASE("store: recover removes dead writers' files, keeps live ones", "[store]") {
  Fixture f;
  std::string stale = f.tmpdir() + "/blob-crashed";
  std::ofstream(stale) << "half a blob";
  auto live = f.store.writer();
  REQUIRE(live.has_value());
  REQUIRE(live->write("hello").has_value());
  REQUIRE(entries(f.tmpdir()) == 2);

  REQUIRE(f.store.recover().has_value());
  CHECK_FALSE(std::filesystem::exists(stale));
  CHECK(entries(f.tmpdir()) == 1);  // the live writer's file
  auto d = live->commit(std::nullopt);
  REQUIRE(d.has_value());
  CHECK(f.store.has(*d));
  CHECK(entries(f.tmpdir()) == 0);
}

TEST_CASE("store: concurrent fetches of one digest write it once", "[store]") {
  Fixture f;
  Digest hello = digest(std::string("sha256:") + kHelloHex);
  constexpr int kThreads = 4;
  std::atomic<int> writes{0};
  std::atomic<int> ready{0};
  std::vector<std::string> errors(kThreads);
  std::vector<bool> saw(kThreads, false);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();  // start together
      auto lock = f.store.lock(hello);
      if (!lock) {
        errors[i] = lock.error().str();
        return;
      }
      if (!f.store.has(hello)) {
        writes.fetch_add(1);
        if (auto r = f.store.put("hello", hello); !r) errors[i] = r.error().str();
      }
      saw[i] = f.store.has(hello);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    INFO("thread " << i);
    CHECK(errors[i].empty());
    CHECK(saw[i]);
  }
  CHECK(writes.load() == 1);
  CHECK(*f.store.read(hello) == "hello");
}

TEST_CASE("store: the digest lock excludes another process", "[store]") {
  Fixture f;
  Digest hello = digest(std::string("sha256:") + kHelloHex);
  int go[2], result[2];
  REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(result, O_CLOEXEC) == 0);
  // Fork before locking: a forked child shares the parent's open lock file
  // and would hold the lock itself.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    char c;
    bool ok = ::read(go[0], &c, 1) == 1;
    BlobStore child(f.tmp / "store");
    auto l = child.lock(hello);  // blocks until the parent has written the blob
    char answer = (ok && l && child.has(hello)) ? 'y' : 'n';
    (void)::write(result[1], &answer, 1);
    ::_exit(0);
  }
  ::close(go[0]);
  ::close(result[1]);
  {
    auto lock = f.store.lock(hello);
    REQUIRE(lock.has_value());
    REQUIRE(::write(go[1], "g", 1) == 1);
    REQUIRE(f.store.put("hello", hello).has_value());
  }
  char got = 0;
  CHECK(::read(result[0], &got, 1) == 1);
  ::close(go[1]);
  ::close(result[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(got == 'y');
}

// ---- common/fs.h helpers the store stands on ----------------------------------------

TEST_CASE("fs: write_file_atomic from many threads at once", "[fs][store]") {
  // The temporary was <path>.tmp.<pid>: two threads of one process wrote
  // into the same file, and one's rename found it gone.
  TempDir tmp;
  std::string path = tmp / "shared.json";
  constexpr int kThreads = 8, kWrites = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string body = std::string(4096, static_cast<char>('a' + t));
      for (int i = 0; i < kWrites; ++i) {
        if (!berth::fs::write_file_atomic(path, body, 0640, berth::fs::Durable::no)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  auto content = berth::fs::read_file(path);
  REQUIRE(content.has_value());
  REQUIRE(content->size() == 4096);
  // One writer's whole content, never a mix.
  CHECK(std::count(content->begin(), content->end(), content->front()) == 4096);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(entries(tmp.path()) == 1);  // no temporaries left
}

TEST_CASE("fs: remove_all of a tree 20000 levels deep, without following symlinks", "[fs][store]") {
  TempDir tmp;
  std::string top = tmp / "deep";
  std::string outside = tmp / "outside";
  REQUIRE(berth::fs::mkdir_p(outside + "/dir"));
  REQUIRE(berth::fs::write_file_atomic(outside + "/dir/file", "keep"));
  REQUIRE(berth::fs::mkdir_p(top));
  int fd = ::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  for (int i = 0; i < 20000; ++i) {
    // Siblings on the way: files, symlinks to the outside, empty dirs.
    if (i % 1000 == 0) {
      REQUIRE(::symlinkat(outside.c_str(), fd, "link") == 0);
      REQUIRE(::symlinkat((outside + "/dir").c_str(), fd, "dirlink") == 0);
      REQUIRE(::mknodat(fd, "file", S_IFREG | 0644, 0) == 0);
      REQUIRE(::mkdirat(fd, "empty", 0755) == 0);
    }
    REQUIRE(::mkdirat(fd, "d", 0755) == 0);
    int next = ::openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(fd);
    REQUIRE(next >= 0);
    fd = next;
  }
  ::close(fd);
  auto r = berth::fs::remove_all(top);
  INFO((r ? "" : r.error().str()));
  REQUIRE(r.has_value());
  CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(top)));
  CHECK(*berth::fs::read_file(outside + "/dir/file") == "keep");
  // A path that is a symlink is removed itself.
  REQUIRE(::symlink(outside.c_str(), (tmp / "toplink").c_str()) == 0);
  REQUIRE(berth::fs::remove_all(tmp / "toplink"));
  CHECK(std::filesystem::exists(outside + "/dir/file"));
}

TEST_CASE("fs: remove_all still refuses to cross a mount point, however deep", "[fs][store]") {
  if (::geteuid() != 0) {
    WARN("BERTH-SKIPPED: mounting a tmpfs needs root");
    std::cout << "BERTH-SKIPPED: mounting a tmpfs needs root" << std::endl;
    return;
  }
  TempDir tmp;
  std::string top = tmp / "top";
  std::string mnt = top;
  for (int i = 0; i < 300; ++i) mnt += "/d";
  REQUIRE(berth::fs::mkdir_p(mnt));
  REQUIRE(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") == 0);
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  REQUIRE(berth::fs::write_file_atomic(mnt + "/precious", "x"));
  auto r = berth::fs::remove_all(top);
  REQUIRE_FALSE(r.has_value());
  CHECK_THAT(r.error().str(), Catch::Contains("a mount point (another filesystem)"));
  CHECK(std::filesystem::exists(mnt + "/precious"));
}
