#include "shim/log_file.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <optional>
#include <vector>

#include "common/fs.h"
#include "common/log.h"

namespace berth::shim {
namespace {

constexpr std::string_view kStep = "log";
constexpr int kFileMode = 0640;  // containerd's mode for container logs
constexpr size_t kScanBlock = 4096;
// A line buffer that grew beyond this is given back once it is empty again:
// the shim's memory budget does not keep 2 x max_line per container around.
constexpr size_t kKeptBufferCapacity = 1024;

// "2024-05-01T12:00:00.123456789Z " (with the separator): fixed width.
constexpr size_t kTimestampSize = 31;
// "stdout F " and the like.
constexpr size_t kTagSize = 9;
constexpr size_t kHeaderSize = kTimestampSize + kTagSize;

struct Timestamp {
  std::array<char, kTimestampSize> text{};
  std::string_view view() const { return {text.data(), text.size()}; }
};

Timestamp now() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  Timestamp out;
  fmt::format_to_n(out.text.data(), out.text.size(), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z ",
                   t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                   ts.tv_nsec);
  return out;
}

std::string_view tag(Stream stream, bool partial) {
  static constexpr std::string_view kTags[2][2] = {{"stdout F ", "stdout P "},
                                                   {"stderr F ", "stderr P "}};
  return kTags[static_cast<int>(stream)][partial ? 1 : 0];
}

struct FileInfo {
  uint64_t size = 0;
  uint64_t inode = 0;
};

// nullopt when `path` does not exist.
Result<std::optional<FileInfo>> stat_path(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return sys_error(kStep, "stat {}", path);
  }
  return FileInfo{static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_ino)};
}

Result<UniqueFd> open_for_reading(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error(kStep, "open {}", path);
  return UniqueFd(fd);
}

// Reads exactly n bytes at `offset`: the caller knows the file is that long.
Result<void> pread_exact(int fd, const std::string& path, char* buf, size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return sys_error(kStep, "read {} at {}", path, offset);
    }
    if (got == 0)
      return error(kStep, "read {} at {}: the file is shorter than expected", path, offset);
    buf += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return {};
}

// The size of the whole records at the start of a file of `size` bytes: the
// position after its last '\n' (scanning back from the end).
Result<uint64_t> whole_records_size(const std::string& path, uint64_t size) {
  if (size == 0) return 0;
  BERTH_ASSIGN(UniqueFd fd, open_for_reading(path));
  char block[kScanBlock];
  uint64_t end = size;
  while (end > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(end, sizeof block));
    BERTH_TRY(pread_exact(fd.get(), path, block, n, end - n));
    std::string_view part(block, n);
    if (size_t nl = part.rfind('\n'); nl != std::string_view::npos) return end - n + nl + 1;
    end -= n;
  }
  return 0;
}

// The first record start at or after `pos` in a file of `size` bytes: `pos`
// itself if the byte before it ends a record, else the byte after the next
// '\n' (or `size`).
Result<uint64_t> record_start_from(int fd, const std::string& path, uint64_t pos, uint64_t size) {
  if (pos == 0 || pos >= size) return pos;
  char block[kScanBlock];
  BERTH_TRY(pread_exact(fd, path, block, 1, pos - 1));
  if (block[0] == '\n') return pos;
  while (pos < size) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(size - pos, sizeof block));
    BERTH_TRY(pread_exact(fd, path, block, n, pos));
    std::string_view part(block, n);
    if (size_t nl = part.find('\n'); nl != std::string_view::npos) return pos + nl + 1;
    pos += n;
  }
  return size;
}

// Appends to `out` the whole records of [pos, end) that fit in `budget`
// bytes, or the first record alone if `out` is empty and it does not fit.
// Returns the position after what was appended.
Result<uint64_t> append_records(int fd, const std::string& path, uint64_t pos, uint64_t end,
                                size_t budget, std::string& out) {
  const size_t old = out.size();
  const bool must_progress = out.empty();
  size_t want = static_cast<size_t>(std::min<uint64_t>(end - pos, budget));
  out.resize(old + want);
  BERTH_TRY(pread_exact(fd, path, out.data() + old, want, pos));
  if (size_t nl = std::string_view(out).substr(old).rfind('\n'); nl != std::string_view::npos) {
    out.resize(old + nl + 1);
    return pos + nl + 1;
  }
  if (!must_progress) {
    out.resize(old);
    return pos;
  }
  // The first record is longer than the budget: read on to its end (at most
  // max_line plus a header).
  for (uint64_t at = pos + want; at < end;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(end - at, kScanBlock));
    size_t from = out.size();
    out.resize(from + n);
    BERTH_TRY(pread_exact(fd, path, out.data() + from, n, at));
    if (size_t nl = std::string_view(out).substr(from).find('\n'); nl != std::string_view::npos) {
      out.resize(from + nl + 1);
      return at + nl + 1;
    }
    at += n;
  }
  // Only a damaged file ends without a newline; its tail is returned as is.
  return end;
}

std::string sidecar_path(const std::string& path) {
  return path + ".offset";
}

}  // namespace

// Records of one write() or flush(), written with one writev(2) when the
// batch is full, when the next record needs a rotation first, and at the end.
// The iovecs point into the caller's chunk and the line buffers, which stay
// untouched until the batch is written.
class LogFile::Batch {
 public:
  explicit Batch(LogFile& log) : log_(log), ts_(now()) {}

  Result<void> add(Stream stream, bool partial, std::string_view a, std::string_view b = {}) {
    const uint64_t len = kHeaderSize + a.size() + b.size() + 1;
    if (count_ == kMaxRecords) BERTH_TRY(write());
    if (needs_rotation(len)) {
      BERTH_TRY(write());
      if (auto r = log_.rotate(); !r) rotation_error_ = std::move(r).error();
    }
    const std::string_view parts[kIovPerRecord] = {ts_.view(), tag(stream, partial), a, b, "\n"};
    for (size_t i = 0; i < kIovPerRecord; ++i) {
      iov_[count_ * kIovPerRecord + i] = {const_cast<char*>(parts[i].data()), parts[i].size()};
    }
    lengths_[count_++] = len;
    bytes_ += len;
    return {};
  }

  // Writes what is left.
  Result<void> finish() { return write(); }
  // A rotation that failed meanwhile (the records went to the current file).
  Result<void> rotation_status() {
    if (rotation_error_) return std::unexpected(std::move(*rotation_error_));
    return {};
  }

 private:
  static constexpr size_t kMaxRecords = 32;
  static constexpr size_t kIovPerRecord = 5;  // timestamp, tag, two content parts, '\n'
  static_assert(kMaxRecords * kIovPerRecord <= IOV_MAX);

  bool needs_rotation(uint64_t len) const {
    // After a failed rotation the rest of this batch goes to the current
    // file; the next write() tries again.
    uint64_t used = log_.size_ + bytes_;
    return !rotation_error_ && used > 0 && used + len > log_.limits_.max_bytes;
  }

  Result<void> write() {
    if (count_ == 0) return {};
    if (!log_.fd_) return error(kStep, "write {}: the log is closed", log_.path_);
    iovec* iov = iov_.data();
    size_t iovcnt = count_ * kIovPerRecord;
    uint64_t written = 0;
    while (written < bytes_) {
      ssize_t n = ::writev(log_.fd_.get(), iov, static_cast<int>(iovcnt));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : EIO;
        drop_torn_record(written);
        return errno_error(kStep, err, "write {}", log_.path_);
      }
      written += static_cast<uint64_t>(n);
      advance(iov, iovcnt, static_cast<size_t>(n));
    }
    log_.size_ += bytes_;
    count_ = 0;
    bytes_ = 0;
    return {};
  }

  static void advance(iovec*& iov, size_t& iovcnt, size_t n) {
    while (iovcnt > 0 && n >= iov->iov_len) {
      n -= iov->iov_len;
      ++iov;
      --iovcnt;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + n;
      iov->iov_len -= n;
    }
  }

  // After a failed write: keeps the records written whole, cuts the rest.
  void drop_torn_record(uint64_t written) {
    uint64_t whole = 0;
    for (size_t i = 0; i < count_ && whole + lengths_[i] <= written; ++i) whole += lengths_[i];
    if (whole != written &&
        ::ftruncate(log_.fd_.get(), static_cast<off_t>(log_.size_ + whole)) != 0) {
      // The torn record stays; account for it so that offsets match the
      // file. The next open cuts it.
      whole = written;
    }
    log_.size_ += whole;
    count_ = 0;
    bytes_ = 0;
  }

  LogFile& log_;
  Timestamp ts_;
  std::array<iovec, kMaxRecords * kIovPerRecord> iov_{};
  std::array<uint64_t, kMaxRecords> lengths_{};
  size_t count_ = 0;
  uint64_t bytes_ = 0;
  std::optional<Error> rotation_error_;
};

// nullopt when there is no usable record (missing, or unreadable as text).
Result<std::optional<LogFile::SavedBase>> LogFile::load_base(const std::string& path) {
  std::string file = sidecar_path(path);
  auto text = fs::read_file(file);
  if (!text) {
    if (text.error().err == ENOENT) return std::nullopt;
    return wrap(std::move(text).error(), fmt::format("log {}", path));
  }
  SavedBase saved;
  if (std::sscanf(text->c_str(), "base %" SCNu64 " inode %" SCNu64, &saved.base, &saved.inode) !=
      2) {
    log::warn("log {}: ignoring {}, which is not \"base N inode N\"", path, file);
    return std::nullopt;
  }
  return saved;
}

Result<LogFile> LogFile::open(std::string path, LogLimits limits) {
  if (limits.max_files < 1) {
    return error(kStep, "log {}: max_files must be at least 1, not {}", path, limits.max_files);
  }
  if (limits.max_bytes == 0 || limits.max_line == 0) {
    return error(kStep, "log {}: max_bytes and max_line must not be 0", path);
  }
  LogFile log(std::move(path), limits);
  BERTH_TRY(log.recover());
  return log;
}

// Opens <name>.log and puts the files around it back in order after a shim
// that stopped at any point: a torn last record, an unfinished rotation.
Result<void> LogFile::recover() {
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, kFileMode);
  if (fd < 0) return sys_error(kStep, "open {}", path_);
  fd_.reset(fd);
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return sys_error(kStep, "stat {}", path_);
  if (!S_ISREG(st.st_mode)) return error(kStep, "open {}: not a regular file", path_);
  inode_ = static_cast<uint64_t>(st.st_ino);
  BERTH_ASSIGN(size_, whole_records_size(path_, static_cast<uint64_t>(st.st_size)));
  if (size_ != static_cast<uint64_t>(st.st_size) &&
      ::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) {
    return sys_error(kStep, "cut the torn last record of {} at {}", path_, size_);
  }
  // Left by a rotation that did not finish: empty, never written to.
  (void)::unlink((path_ + ".new").c_str());
  // Left by a run with a larger max_files.
  int beyond = limits_.max_files;
  while (::unlink(rotated(beyond).c_str()) == 0) ++beyond;
  BERTH_ASSIGN(auto saved, load_base(path_));
  BERTH_ASSIGN(base_, recover_base(saved));
  if (!saved || saved->base != base_ || saved->inode != inode_) BERTH_TRY(save_base());
  return {};
}

// Where <name>.log starts: the saved base belongs to the file with the saved
// inode, which a rotation since may have moved to .k; the files .k .. .1
// come after it.
Result<uint64_t> LogFile::recover_base(const std::optional<SavedBase>& saved) const {
  if (saved && saved->inode == inode_) return saved->base;
  uint64_t after_saved = 0;
  for (int k = 1; k < limits_.max_files; ++k) {
    BERTH_ASSIGN(auto info, stat_path(rotated(k)));
    if (!info) break;
    after_saved += info->size;
    if (saved && info->inode == saved->inode) return saved->base + after_saved;
  }
  if (saved) {
    log::warn("log {}: {} names no retained file; offsets restart at the oldest line", path_,
              sidecar_path(path_));
  } else if (after_saved > 0) {
    log::warn("log {}: {} is missing; offsets restart at the oldest line", path_,
              sidecar_path(path_));
  }
  return after_saved;
}

Result<void> LogFile::save_base() const {
  auto r =
      fs::write_file_atomic(sidecar_path(path_), fmt::format("base {} inode {}\n", base_, inode_),
                            kFileMode, fs::Durable::no);
  if (!r) return wrap(std::move(r).error(), fmt::format("log {}: save its offset", path_));
  return {};
}

std::string LogFile::rotated(int index) const {
  return index == 0 ? path_ : fmt::format("{}.{}", path_, index);
}

// The new file is created first and only then renamed into place, so that a
// failure leaves <name>.log as it was (bar a shift of the older files) and a
// crash leaves no state that recover() cannot read.
Result<void> LogFile::rotate() {
  const std::string fresh = path_ + ".new";
  int raw = ::open(fresh.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode);
  if (raw < 0) return sys_error(kStep, "rotate {}: create {}", path_, fresh);
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    auto e = sys_error(kStep, "rotate {}: stat {}", path_, fresh);
    (void)::unlink(fresh.c_str());
    return e;
  }
  if (auto r = shift_rotated(); !r) {
    (void)::unlink(fresh.c_str());
    return r;
  }
  // With max_files 1 this replaces <name>.log, dropping it.
  if (::rename(fresh.c_str(), path_.c_str()) != 0) {
    auto e = sys_error(kStep, "rotate {}: rename {} to {}", path_, fresh, path_);
    if (limits_.max_files > 1) (void)::rename(rotated(1).c_str(), path_.c_str());
    (void)::unlink(fresh.c_str());
    return e;
  }
  fd_ = std::move(fd);
  inode_ = static_cast<uint64_t>(st.st_ino);
  base_ += size_;
  size_ = 0;
  // If this fails the old record still finds the old file as .1.
  return save_base();
}

// .<max_files-2> -> .<max_files-1> (replacing it), ..., .1 -> .2, <name>.log -> .1
Result<void> LogFile::shift_rotated() const {
  for (int k = limits_.max_files - 2; k >= 0; --k) {
    std::string from = rotated(k);
    std::string to = rotated(k + 1);
    if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
      return sys_error(kStep, "rotate {}: rename {} to {}", path_, from, to);
    }
  }
  return {};
}

LogFile& LogFile::operator=(LogFile&& other) noexcept {
  if (this != &other) {
    (void)flush();  // as the destructor would
    path_ = std::move(other.path_);
    limits_ = other.limits_;
    fd_ = std::move(other.fd_);
    inode_ = other.inode_;
    base_ = other.base_;
    size_ = other.size_;
    pending_[0] = std::move(other.pending_[0]);
    pending_[1] = std::move(other.pending_[1]);
  }
  return *this;
}

LogFile::~LogFile() {
  // No way to report an error from here; close() reports them.
  if (fd_) (void)flush();
}

Result<void> LogFile::write(Stream stream, std::string_view chunk) {
  if (chunk.empty()) return {};
  if (!fd_) return error(kStep, "write {}: the log is closed", path_);
  std::string& pending = pending_[static_cast<int>(stream)];
  const size_t max = limits_.max_line;
  Batch batch(*this);
  // The line so far: `head` (what was pending) then `body` (from the chunk).
  std::string_view head = pending;
  bool head_written = false;
  Result<void> r;
  while (r) {
    size_t nl = chunk.find('\n');
    std::string_view body = chunk.substr(0, nl);
    // P pieces while more than max_line bytes of the line are known.
    while (r && head.size() + body.size() > max) {
      size_t from_body = max - head.size();
      r = batch.add(stream, true, head, body.substr(0, from_body));
      head_written = head_written || !head.empty();
      head = {};
      body.remove_prefix(from_body);
    }
    if (!r || nl == std::string_view::npos) {
      chunk = body;  // the rest of an unfinished line
      break;
    }
    r = batch.add(stream, false, head, body);
    head_written = head_written || !head.empty();
    head = {};
    chunk.remove_prefix(nl + 1);
    if (chunk.empty()) break;
  }
  if (r) r = batch.finish();
  // Only now may the buffer change: the batch pointed into it.
  if (head_written) pending.clear();
  if (r) pending.append(chunk);
  if (pending.empty() && pending.capacity() > kKeptBufferCapacity) std::string().swap(pending);
  if (r) r = batch.rotation_status();
  return r;
}

Result<void> LogFile::flush() {
  if (pending_[0].empty() && pending_[1].empty()) return {};
  Result<void> r;
  {
    Batch batch(*this);
    for (Stream s : {Stream::out, Stream::err}) {
      const std::string& pending = pending_[static_cast<int>(s)];
      if (r && !pending.empty()) r = batch.add(s, true, pending);
    }
    if (r) r = batch.finish();
    if (r) r = batch.rotation_status();
  }
  // Written or dropped with the error: a partial line is not kept to grow.
  for (std::string& pending : pending_) {
    pending.clear();
    if (pending.capacity() > kKeptBufferCapacity) std::string().swap(pending);
  }
  return r;
}

Result<void> LogFile::close() {
  if (!fd_) return {};
  auto r = flush();
  fd_.reset();
  return r;
}

Result<LogChunk> LogFile::read(uint64_t offset, size_t max_bytes) const {
  if (offset > end_offset()) {
    return error(kStep, "read {}: offset {} is beyond the end of the log ({})", path_, offset,
                 end_offset());
  }
  // The retained files from <name>.log back to the one holding `offset`:
  // each starts where the one before it (older) ends.
  struct Segment {
    int index;
    uint64_t start;
    uint64_t size;
  };
  std::vector<Segment> segments{{0, base_, size_}};
  while (offset < segments.back().start && segments.back().index + 1 < limits_.max_files) {
    const Segment& newer = segments.back();
    BERTH_ASSIGN(auto info, stat_path(rotated(newer.index + 1)));
    // A missing file, or one that cannot fit before the newer (touched by
    // someone else), ends the history that can be read.
    if (!info || info->size > newer.start) break;
    segments.push_back({newer.index + 1, newer.start - info->size, info->size});
  }
  LogChunk out;
  if (offset < segments.back().start) {
    out.truncated_before = true;
    offset = segments.back().start;
  }
  // Files meet at record boundaries: only the first position may need to
  // move on to the start of a record.
  uint64_t at = offset;
  bool started = false;
  for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
    uint64_t pos = at - it->start;
    if (pos >= it->size) continue;
    const std::string file = rotated(it->index);
    BERTH_ASSIGN(UniqueFd fd, open_for_reading(file));
    if (!started) {
      BERTH_ASSIGN(pos, record_start_from(fd.get(), file, pos, it->size));
      out.start_offset = it->start + pos;
      started = true;
    }
    size_t budget = max_bytes > out.data.size() ? max_bytes - out.data.size() : 0;
    BERTH_ASSIGN(uint64_t end, append_records(fd.get(), file, pos, it->size, budget, out.data));
    at = it->start + end;
    if (end < it->size) break;  // the budget is spent
  }
  if (!started) out.start_offset = at;
  out.next_offset = at;
  return out;
}

}  // namespace berth::shim
