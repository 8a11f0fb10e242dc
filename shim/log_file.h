// The log file of one container, written by its task's berth-shim from the
// container's stdout and stderr pipes, in the CRI log format that kubelet,
// containerd and CRI-O use:
//
//   2024-05-01T12:00:00.123456789Z stdout F a whole line
//   2024-05-01T12:00:00.123456789Z stderr P the first 16 KiB of a longer line
//   2024-05-01T12:00:00.123456789Z stderr F ...and the rest of it
//
// Timestamps are CLOCK_REALTIME, UTC, RFC 3339 with always nine fractional
// digits (as conmon writes them; containerd trims trailing zeros; kubelet's
// parser takes either), taken when the records are written. "F" ends a line of the output, "P" is a
// piece of a line that goes on in the next record of the same stream. A reader reassembles lines
// per stream: P content without a newline, F content with one.
//
// Line splitting (per stream, independent of how the output was chunked by
// the pipe reads): a line of up to max_line bytes is one F record; a longer
// one is P records of max_line bytes and a final F with the rest (which is
// never empty). A partial line waits in a buffer of at most max_line bytes
// until its '\n' or until more bytes than max_line are known. flush() and
// close() write what is waiting as a P record: the output had no newline
// there (`printf foo` is "foo", not "foo\n"), and if more of the line comes
// after a flush() it follows in further records.
//
// Rotation: before a record would take <name>.log over max_bytes, the file
// is renamed to <name>.log.1 (.1 -> .2, ...; the file beyond .<max_files-1>
// is deleted) and a new <name>.log begun. A record is never split between
// files; a single record larger than max_bytes goes alone into a new file.
// If a rotation fails, the output is still written to <name>.log (over the
// cap: a failed rename must not drop the container's output), write()
// returns the rotation error, and the next write() tries again.
//
// Offsets: every byte ever written has a logical offset, monotonic over the
// whole history of the log, across rotations and restarts of the shim.
// Files are contiguous in that space, so only the offset at which
// <name>.log starts is kept, with the inode of that file, in
// <name>.log.offset (rewritten atomically at each rotation). At open, the
// inode finds that file among <name>.log, .1, .2... even after a shim that
// died in the middle of a rotation; without a usable record, offsets restart
// so that the oldest retained line is at 0 (and a warning is logged).
//
// Every file holds whole records only: a record torn by a failed write is
// cut off again (ftruncate), and at open a torn tail left by a crash is too.
//
// Memory: besides the object itself, only the line buffers of the two
// streams (each at most max_line bytes, released when emptied); records are
// written with writev(2) straight from the caller's chunk, no stdio buffer.
// One LogFile per container, used from the shim's single thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/error.h"
#include "common/fd.h"

namespace berth::shim {

// Not `stdout`/`stderr`: those are macros of <stdio.h>.
enum class Stream : uint8_t { out, err };

struct LogLimits {
  uint64_t max_bytes = 10 << 20;  // cap of <name>.log
  int max_files = 3;              // <name>.log plus .1 .. .<max_files-1>
  size_t max_line = 16 << 10;     // content bytes per record; longer lines become P pieces
};

struct LogChunk {
  std::string data;               // whole records, as they are in the files
  uint64_t start_offset = 0;      // where `data` begins (see LogFile::read)
  uint64_t next_offset = 0;       // where to read next: start_offset + data.size()
  bool truncated_before = false;  // the offset asked for was rotated away
};

class LogFile {
 public:
  // Opens (creating it, mode 0640, or appending to it) the log at `path`,
  // whose directory must exist, and recovers its offsets.
  static Result<LogFile> open(std::string path, LogLimits limits = {});

  LogFile(LogFile&&) noexcept = default;
  LogFile& operator=(LogFile&& other) noexcept;
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;
  // Writes pending partial lines (as close() does) and ignores errors:
  // call close() to see them.
  ~LogFile();

  // Appends a chunk of a container's output (any split: lines are
  // reassembled per stream). On a write error the chunk's lines that could
  // not be written are dropped; the file keeps whole records only.
  Result<void> write(Stream stream, std::string_view chunk);
  // Writes the pending partial lines of both streams as P records.
  Result<void> flush();
  // flush(), then closes the file; later writes fail, read() still works.
  Result<void> close();

  // Whole records from `offset` on, at most max_bytes of them — but at least
  // one record if there is any, so a reader always moves on. The data may
  // span several files. An offset that was rotated away starts at the oldest
  // retained record (truncated_before); one inside a record starts at the
  // next record; end_offset() gives empty data; beyond it is an error.
  // A follower reads, waits for more output, and reads from next_offset.
  Result<LogChunk> read(uint64_t offset, size_t max_bytes) const;
  // The offset after the last record written.
  uint64_t end_offset() const { return base_ + size_; }
  const std::string& path() const { return path_; }

 private:
  class Batch;
  // What <name>.log.offset records: the logical offset at which the file
  // with that inode starts.
  struct SavedBase {
    uint64_t base = 0;
    uint64_t inode = 0;
  };

  LogFile(std::string path, LogLimits limits) : path_(std::move(path)), limits_(limits) {}
  static Result<std::optional<SavedBase>> load_base(const std::string& path);
  Result<void> recover();
  Result<uint64_t> recover_base(const std::optional<SavedBase>& saved) const;
  Result<void> save_base() const;
  Result<void> rotate();
  Result<void> shift_rotated() const;
  std::string rotated(int index) const;

  std::string path_;
  LogLimits limits_;
  UniqueFd fd_;
  uint64_t inode_ = 0;
  uint64_t base_ = 0;       // logical offset of the first byte of <name>.log
  uint64_t size_ = 0;       // bytes in <name>.log
  std::string pending_[2];  // per Stream: the start of a line not yet written
};

}  // namespace berth::shim
