#include "rootfs-tools/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <utility>

#include "common/fs.h"

namespace berth::rootfs {

namespace {

constexpr std::string_view kStep = "store";
constexpr size_t kHexLen = 2 * SHA256_DIGEST_SIZE;

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string hex_of(const uint8_t* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0xf];
  }
  return out;
}

}  // namespace

Digest sha256_finish(sha256_ctx ctx) {
  uint8_t bytes[SHA256_DIGEST_SIZE];
  sha256_digest(&ctx, sizeof bytes, bytes);
  return Digest{"sha256", hex_of(bytes, sizeof bytes)};
}

Digest sha256_of(std::string_view data) {
  sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, data.size(), reinterpret_cast<const uint8_t*>(data.data()));
  return sha256_finish(ctx);
}

namespace {

// A rename is only durable once the directory holding the new entry is
// fsynced (ext4/xfs may otherwise lose the entry at a crash).
Result<void> fsync_dir(const std::string& dir) {
  BERTH_ASSIGN(UniqueFd fd, fs::open(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return sys_error(kStep, "fsync directory {}", dir);
  return {};
}

Result<void> mkdir_mode(const std::string& path, mode_t mode) {
  BERTH_TRY(fs::mkdir_p(path, mode));
  // mkdir_p leaves existing directories alone and umask narrows new ones.
  if (::chmod(path.c_str(), mode) != 0) return sys_error(kStep, "chmod {:o} {}", mode, path);
  return {};
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

Result<UniqueDir> open_dir(const std::string& path) {
  BERTH_ASSIGN(UniqueFd fd, fs::open(path, O_RDONLY | O_DIRECTORY));
  DIR* d = ::fdopendir(fd.get());
  if (d == nullptr) return sys_error(kStep, "fdopendir {}", path);
  fd.release();
  return UniqueDir(d);
}

// Calls `fn(dirfd, name)` for every entry but "." and "..", stopping at its
// first error. errno is cleared before each readdir(3) because only errno
// tells its end from its failure, and `fn` may leave errno set.
template <class Fn>
Result<void> for_each_entry(const std::string& path, Fn fn) {
  BERTH_ASSIGN(UniqueDir dir, open_dir(path));
  for (;;) {
    errno = 0;
    dirent* e = ::readdir(dir.get());
    if (e == nullptr) break;
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    BERTH_TRY(fn(::dirfd(dir.get()), e));
  }
  if (errno != 0) return sys_error(kStep, "readdir {}", path);
  return {};
}

}  // namespace

// ---- Digest ----

Result<Digest> Digest::parse(std::string_view s) {
  constexpr std::string_view kPrefix = "sha256:";
  if (!s.starts_with(kPrefix)) {
    return error(kStep, "digest \"{}\": only sha256:<64 lowercase hex> is supported", s);
  }
  return from_hex(s.substr(kPrefix.size()));
}

Result<Digest> Digest::from_hex(std::string_view hex) {
  if (hex.size() != kHexLen || !is_lower_hex(hex)) {
    return error(kStep, "digest \"sha256:{}\": expected exactly {} lowercase hex digits", hex,
                 kHexLen);
  }
  return Digest{"sha256", std::string(hex)};
}

std::string Digest::str() const {
  return algo + ":" + hex;
}

// ---- BlobStore ----

BlobStore::BlobStore(std::string root) : root_(std::move(root)) {}

std::string BlobStore::blobs_dir() const {
  return fs::join(root_, "blobs/sha256");
}
std::string BlobStore::tmp_dir() const {
  return fs::join(root_, "tmp");
}
std::string BlobStore::locks_dir() const {
  return fs::join(root_, "locks");
}

Result<void> BlobStore::init() {
  BERTH_TRY(mkdir_mode(root_, 0700));
  BERTH_TRY(mkdir_mode(fs::join(root_, "blobs"), 0755));
  BERTH_TRY(mkdir_mode(blobs_dir(), 0755));
  // tmp/ must be on the same filesystem as blobs/ so the final rename is
  // atomic; it is, being under the same root.
  BERTH_TRY(mkdir_mode(tmp_dir(), 0700));
  BERTH_TRY(mkdir_mode(locks_dir(), 0700));
  return {};
}

std::string BlobStore::path(const Digest& d) const {
  return fs::join(blobs_dir(), d.hex);
}

bool BlobStore::has(const Digest& d) const {
  struct stat st;
  return ::lstat(path(d).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Creates a temp file in tmp/ and flocks it. The lock marks the file as in
// use for recover() in other processes; it goes away with the fd, so a crashed
// writer's file becomes reclaimable. recover() may win the race between
// mkostemp and flock and unlink the new file, so the writer checks, under its
// lock, that its name still exists, and otherwise starts over.
Result<UniqueFd> BlobStore::create_locked_temp(std::string& tmpl) const {
  for (int attempt = 0; attempt < 8; ++attempt) {
    tmpl = fs::join(tmp_dir(), "blob-XXXXXX");
    int raw = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (raw < 0) return sys_error(kStep, "create temporary file in {}", tmp_dir());
    UniqueFd fd(raw);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) continue;  // recover() holds it and unlinks it
      auto e = sys_error(kStep, "flock {}", tmpl);
      ::unlink(tmpl.c_str());
      return e;
    }
    struct stat by_fd, by_name;
    if (::fstat(fd.get(), &by_fd) != 0) return sys_error(kStep, "fstat {}", tmpl);
    if (::lstat(tmpl.c_str(), &by_name) == 0 && by_name.st_ino == by_fd.st_ino &&
        by_name.st_dev == by_fd.st_dev) {
      return fd;
    }
  }
  return error(kStep, "create temporary file in {}: removed by a concurrent recover, 8 times",
               tmp_dir());
}

Result<BlobStore::Writer> BlobStore::writer() {
  std::string tmpl;
  BERTH_ASSIGN(UniqueFd fd, create_locked_temp(tmpl));
  if (::fchmod(fd.get(), 0644) != 0) {
    auto e = sys_error(kStep, "fchmod 0644 {}", tmpl);
    ::unlink(tmpl.c_str());
    return e;
  }
  return Writer(this, std::move(fd), std::move(tmpl));
}

Result<Digest> BlobStore::put(std::string_view data, const std::optional<Digest>& expected) {
  BERTH_ASSIGN(Writer w, writer());
  BERTH_TRY(w.write(data));
  return w.commit(expected);
}

Result<Digest> BlobStore::put_file(const std::string& src, const std::optional<Digest>& expected) {
  BERTH_ASSIGN(UniqueFd in, fs::open(src, O_RDONLY));
  BERTH_ASSIGN(Writer w, writer());
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(kStep, "read {}", src);
    }
    if (n == 0) break;
    BERTH_TRY(w.write(std::string_view(buf, static_cast<size_t>(n))));
  }
  return w.commit(expected);
}

Result<std::string> BlobStore::read(const Digest& d, Verify verify) const {
  BERTH_ASSIGN(std::string data, fs::read_file(path(d)));
  if (verify == Verify::yes) {
    sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, data.size(), reinterpret_cast<const uint8_t*>(data.data()));
    Digest actual = sha256_finish(ctx);
    if (actual != d) {
      return error(kStep, "blob {} is corrupt: its content hashes to {}", path(d), actual.str());
    }
  }
  return data;
}

Result<void> BlobStore::remove(const Digest& d) {
  std::string p = path(d);
  if (::unlink(p.c_str()) != 0) return sys_error(kStep, "remove blob {}", p);
  return fsync_dir(blobs_dir());
}

Result<std::vector<Digest>> BlobStore::list() const {
  std::vector<Digest> out;
  BERTH_TRY(for_each_entry(blobs_dir(), [&](int, const dirent* e) -> Result<void> {
    if (auto d = Digest::from_hex(e->d_name); d && e->d_type == DT_REG) out.push_back(*d);
    return {};
  }));
  std::sort(out.begin(), out.end(), [](const Digest& a, const Digest& b) { return a.hex < b.hex; });
  return out;
}

Result<void> BlobStore::recover(bool drop_partials) {
  return for_each_entry(tmp_dir(), [&](int dfd, const dirent* e) -> Result<void> {
    if (!drop_partials && std::string_view(e->d_name).ends_with(".partial")) return {};
    std::string p = fs::join(tmp_dir(), e->d_name);
    int raw = ::openat(dfd, e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (raw < 0) {
      if (errno == ENOENT) return {};  // its writer finished meanwhile
      return sys_error(kStep, "open {}", p);
    }
    UniqueFd fd(raw);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) return {};  // a live writer
      return sys_error(kStep, "flock {}", p);
    }
    // Unlinked while still locked, so a writer that raced us to this file
    // (see create_locked_temp) notices its name is gone.
    if (::unlinkat(dfd, e->d_name, 0) != 0 && errno != ENOENT) {
      return sys_error(kStep, "remove stale {}", p);
    }
    return {};
  });
}

Result<BlobStore::Lock> BlobStore::lock(const Digest& d) {
  // Lock files are never removed: unlinking one while another process waits
  // on its inode would let a third lock a fresh file, and two would hold
  // "the" lock at once.
  std::string p = fs::join(locks_dir(), d.hex);
  BERTH_ASSIGN(UniqueFd fd, fs::open(p, O_RDWR | O_CREAT | O_NOFOLLOW, 0600));
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return sys_error(kStep, "flock {}", p);
  }
  return Lock(std::move(fd));
}

// ---- Writer ----

BlobStore::Writer::Writer(const BlobStore* store, UniqueFd fd, std::string tmp_path)
    : store_(store), fd_(std::move(fd)), tmp_path_(std::move(tmp_path)) {
  sha256_init(&ctx_);
}

BlobStore::Writer::Writer(Writer&& o) noexcept
    : store_(o.store_),
      fd_(std::move(o.fd_)),
      tmp_path_(std::move(o.tmp_path_)),
      ctx_(o.ctx_),
      size_(o.size_),
      done_(std::exchange(o.done_, true)) {}

BlobStore::Writer::~Writer() {
  discard();
}

void BlobStore::Writer::discard() {
  if (done_) return;
  done_ = true;
  // Unlink before close: while the fd (and its flock) lives, recover() in
  // another process leaves the file alone.
  (void)::unlink(tmp_path_.c_str());
  fd_.reset();
}

Result<void> BlobStore::Writer::write(std::string_view chunk) {
  if (done_) return error(kStep, "write to finished blob writer {}", tmp_path_);
  sha256_update(&ctx_, chunk.size(), reinterpret_cast<const uint8_t*>(chunk.data()));
  size_ += chunk.size();
  while (!chunk.empty()) {
    ssize_t n = ::write(fd_.get(), chunk.data(), chunk.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(kStep, "write {}", tmp_path_);
    }
    chunk.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<void> BlobStore::adopt(int fd, const std::string& tmp_path, const Digest& d) {
  if (::fchmod(fd, 0644) != 0) return sys_error(kStep, "chmod {}", tmp_path);
  if (::fsync(fd) != 0) return sys_error(kStep, "fsync {}", tmp_path);
  std::string final_path = path(d);
  if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    return sys_error(kStep, "rename {} to {}", tmp_path, final_path);
  }
  return fsync_dir(blobs_dir());
}

Result<Digest> BlobStore::Writer::commit(const std::optional<Digest>& expected) {
  if (done_) return error(kStep, "commit of finished blob writer {}", tmp_path_);
  Digest actual = sha256_finish(ctx_);
  if (expected && *expected != actual) {
    discard();
    return error(kStep, "digest mismatch: expected {}, got {} ({} bytes)", expected->str(),
                 actual.str(), size_);
  }
  if (::fsync(fd_.get()) != 0) {
    auto e = sys_error(kStep, "fsync {}", tmp_path_);
    discard();
    return e;
  }
  std::string final_path = store_->path(actual);
  // rename(2) replaces an existing blob of the same digest atomically; the
  // content is identical, so a reader sees the same bytes either way.
  if (::rename(tmp_path_.c_str(), final_path.c_str()) != 0) {
    auto e = sys_error(kStep, "rename {} to {}", tmp_path_, final_path);
    discard();
    return e;
  }
  done_ = true;
  fd_.reset();
  BERTH_TRY(fsync_dir(store_->blobs_dir()));
  return actual;
}

}  // namespace berth::rootfs
