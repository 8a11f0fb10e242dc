// The content-addressed blob store of the image store: every blob (layer
// tarball, manifest, config) lives under <root>/blobs/sha256/<hex>, named by
// the sha256 of its bytes (the OCI image layout's own scheme).
//
// Crash safety: a blob is streamed into <root>/tmp/, hashed while written,
// fsynced, checked against the expected digest and only then renamed into
// blobs/ (and the directory fsynced), so after a crash blobs/ holds complete,
// verified blobs only; leftovers in tmp/ are cleared by recover().
//
// Concurrency: lock(d) takes an flock on <root>/locks/<hex>, so two fetches
// of one blob (threads or processes) share the work: the second waits, then
// finds the blob present.
#pragma once

#include <nettle/sha2.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/fd.h"

namespace berth::rootfs {

struct Digest {
  std::string algo = "sha256";
  std::string hex;  // exactly 64 lowercase hex digits

  // Accepts "sha256:<64 lowercase hex>" only. Anything else (other
  // algorithms, uppercase, short, "../") is refused, because the hex becomes
  // a file name under the store.
  static Result<Digest> parse(std::string_view s);
  // Strictly validates just the hex part (a file name read from blobs/).
  static Result<Digest> from_hex(std::string_view hex);
  std::string str() const;  // "sha256:<hex>"

  bool operator==(const Digest&) const = default;
};

// The digest of what `ctx` has hashed so far (`ctx` is taken by value, so
// the caller's running hash is left as it was).
Digest sha256_finish(sha256_ctx ctx);
Digest sha256_of(std::string_view data);

class BlobStore {
 public:
  explicit BlobStore(std::string root);

  // Creates <root> (0700), blobs/sha256 (0755), tmp/ and locks/ (0700).
  Result<void> init();

  const std::string& root() const { return root_; }
  bool has(const Digest& d) const;
  std::string path(const Digest& d) const;

  // Streams one blob into tmp/. Move-only; destroying an uncommitted Writer
  // removes its temporary file.
  class Writer {
   public:
    Writer(Writer&& o) noexcept;
    Writer& operator=(Writer&&) = delete;
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer();

    Result<void> write(std::string_view chunk);
    // Verifies (when `expected` is set), fsyncs and renames into blobs/.
    // A mismatch is an error naming both digests, and nothing stays behind.
    // The Writer is finished afterwards, whatever the outcome.
    Result<Digest> commit(const std::optional<Digest>& expected = std::nullopt);
    uint64_t size() const { return size_; }

   private:
    friend class BlobStore;
    Writer(const BlobStore* store, UniqueFd fd, std::string tmp_path);
    void discard();

    const BlobStore* store_;
    UniqueFd fd_;
    std::string tmp_path_;
    sha256_ctx ctx_;
    uint64_t size_ = 0;
    bool done_ = false;
  };

  Result<Writer> writer();
  // Moves a file the caller wrote and verified as `d` (in tmp/, open as
  // `fd`) into blobs/ the way Writer::commit does: chmod 0644, fsync,
  // rename, fsync the directory.
  Result<void> adopt(int fd, const std::string& tmp_path, const Digest& d);
  Result<Digest> put(std::string_view data, const std::optional<Digest>& expected = std::nullopt);
  Result<Digest> put_file(const std::string& path,
                          const std::optional<Digest>& expected = std::nullopt);

  enum class Verify { no, yes };
  // Verify::yes re-hashes the content and fails on a mismatch (bit rot,
  // tampering under the store).
  Result<std::string> read(const Digest& d, Verify verify = Verify::no) const;
  Result<void> remove(const Digest& d);
  // The digests under blobs/sha256, sorted; names that are not digests are
  // ignored.
  Result<std::vector<Digest>> list() const;

  // Removes the temporary files of writers that died (crash, kill). A live
  // Writer holds an flock on its temp file, so a file whose lock can be taken
  // belongs to nobody, whatever its age. Interrupted downloads
  // (tmp/<hex>.partial, resumed by the next pull) are kept unless
  // `drop_partials` (prune).
  Result<void> recover(bool drop_partials = false);

  // An exclusive per-digest lock, released when destroyed.
  class Lock {
   public:
    explicit Lock(UniqueFd fd) : fd_(std::move(fd)) {}

   private:
    UniqueFd fd_;
  };
  // Blocks until the lock on `d` is held.
  Result<Lock> lock(const Digest& d);

 private:
  std::string blobs_dir() const;
  std::string tmp_dir() const;
  std::string locks_dir() const;
  Result<UniqueFd> create_locked_temp(std::string& tmpl) const;

  std::string root_;
};

}  // namespace berth::rootfs
