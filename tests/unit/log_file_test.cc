#include "shim/log_file.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "common/fs.h"
#include "temp_dir.h"

using berth::shim::LogChunk;
using berth::shim::LogFile;
using berth::shim::LogLimits;
using berth::shim::Stream;
using berth::test::TempDir;

namespace {

struct Record {
  std::string timestamp;
  std::string stream;
  char tag = 0;
  std::string content;
};

// Splits CRI log text into records; every line must have the four fields.
std::vector<Record> parse(const std::string& text) {
  std::vector<Record> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    REQUIRE(nl != std::string::npos);
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    size_t s1 = line.find(' ');
    size_t s2 = line.find(' ', s1 + 1);
    REQUIRE(s1 != std::string::npos);
    REQUIRE(s2 == s1 + 7);
    REQUIRE(line.size() >= s2 + 3);
    REQUIRE(line[s2 + 2] == ' ');
    out.push_back({line.substr(0, s1), line.substr(s1 + 1, 6), line[s2 + 1], line.substr(s2 + 3)});
  }
  return out;
}

std::vector<Record> records_of(const std::string& path) {
  auto text = berth::fs::read_file(path);
  REQUIRE(text);
  return parse(*text);
}

// "stdout F hello" for comparisons without the timestamp.
std::vector<std::string> untimed(const std::vector<Record>& records) {
  std::vector<std::string> out;
  for (const Record& r : records) out.push_back(r.stream + " " + r.tag + " " + r.content);
  return out;
}

// RFC 3339 UTC with nine fractional digits, as nanoseconds since the epoch.
int64_t parse_timestamp(const std::string& ts) {
  REQUIRE(ts.size() == 30);
  REQUIRE(ts[19] == '.');
  REQUIRE(ts.back() == 'Z');
  tm t{};
  const char* rest = ::strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &t);
  REQUIRE(rest == ts.c_str() + 19);
  int64_t nanos = std::stoll(ts.substr(20, 9));
  return static_cast<int64_t>(::timegm(&t)) * 1000000000 + nanos;
}

int64_t realtime_nanos() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

LogFile open_log(const std::string& path, LogLimits limits = {}) {
  auto log = LogFile::open(path, limits);
  if (!log) FAIL(log.error().str());
  return std::move(*log);
}

void write_ok(LogFile& log, Stream s, std::string_view chunk) {
  auto r = log.write(s, chunk);
  if (!r) FAIL(r.error().str());
}

LogChunk read_ok(const LogFile& log, uint64_t offset, size_t max_bytes) {
  auto r = log.read(offset, max_bytes);
  if (!r) FAIL(r.error().str());
  return std::move(*r);
}

// "line 007 xxxxxxxx": numbered lines of one length, to find gaps.
std::string numbered(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "line %03d xxxxxxxx", i);
  return buf;
}

int number_of(const std::string& content) {
  return std::stoi(content.substr(5, 3));
}

}  // namespace

TEST_CASE("lines are reassembled across chunks", "[log-file]") {
  TempDir dir;
  LogFile log = open_log(dir / "c.log");
  write_ok(log, Stream::out, "hel");
  write_ok(log, Stream::out, "lo\nwor");
  CHECK(untimed(records_of(dir / "c.log")) == std::vector<std::string>{"stdout F hello"});
  write_ok(log, Stream::out, "ld\n\nlast\n");
  CHECK(untimed(records_of(dir / "c.log")) ==
        std::vector<std::string>{"stdout F hello", "stdout F world", "stdout F ", "stdout F last"});
}

TEST_CASE("stdout and stderr are buffered separately and interleave by line", "[log-file]") {
  TempDir dir;
  LogFile log = open_log(dir / "c.log");
  write_ok(log, Stream::out, "out one\nout tw");
  write_ok(log, Stream::err, "err one\nerr tw");
  write_ok(log, Stream::out, "o\n");
  write_ok(log, Stream::err, "o\n");
  CHECK(untimed(records_of(dir / "c.log")) ==
        std::vector<std::string>{"stdout F out one", "stderr F err one", "stdout F out two",
                                 "stderr F err two"});
}

TEST_CASE("long lines become P pieces of max_line and a final F", "[log-file]") {
  TempDir dir;
  LogLimits limits;
  limits.max_line = 10;
  LogFile log = open_log(dir / "c.log", limits);

  SECTION("in one chunk") {
    write_ok(log, Stream::out, "0123456789abcdefghijKLMNO\n");
    CHECK(untimed(records_of(dir / "c.log")) ==
          std::vector<std::string>{"stdout P 0123456789", "stdout P abcdefghij", "stdout F KLMNO"});
  }
  SECTION("byte by byte gives the same records") {
    for (char c : std::string("0123456789abcdefghijKLMNO\n")) {
      write_ok(log, Stream::out, std::string_view(&c, 1));
    }
    CHECK(untimed(records_of(dir / "c.log")) ==
          std::vector<std::string>{"stdout P 0123456789", "stdout P abcdefghij", "stdout F KLMNO"});
  }
  SECTION("a line of exactly max_line is one F, however it arrives") {
    write_ok(log, Stream::out, "0123456789");
    CHECK(untimed(records_of(dir / "c.log")).empty());
    write_ok(log, Stream::out, "\n0123456789abcdefghij\n");
    CHECK(untimed(records_of(dir / "c.log")) == std::vector<std::string>{"stdout F 0123456789",
                                                                         "stdout P 0123456789",
                                                                         "stdout F abcdefghij"});
  }
  SECTION("more than max_line without a newline is written as P at once") {
    write_ok(log, Stream::err, "0123456789ab");
    CHECK(untimed(records_of(dir / "c.log")) == std::vector<std::string>{"stderr P 0123456789"});
    write_ok(log, Stream::err, "c\n");
    CHECK(untimed(records_of(dir / "c.log")) ==
          std::vector<std::string>{"stderr P 0123456789", "stderr F abc"});
  }
}

TEST_CASE("flush and close write a pending partial line as P", "[log-file]") {
  TempDir dir;
  {
    LogFile log = open_log(dir / "c.log");
    write_ok(log, Stream::out, "progress 10%");
    write_ok(log, Stream::err, "no newline");
    uint64_t before = log.end_offset();
    REQUIRE(log.flush());
    CHECK(log.end_offset() > before);
    write_ok(log, Stream::out, " 20%\ndone");
    REQUIRE(log.close());
    CHECK_FALSE(log.write(Stream::out, "x\n"));
  }
  CHECK(untimed(records_of(dir / "c.log")) ==
        std::vector<std::string>{"stdout P progress 10%", "stderr P no newline", "stdout F  20%",
                                 "stdout P done"});
  {
    LogFile log = open_log(dir / "d.log");
    write_ok(log, Stream::out, "left by the destructor");
  }
  CHECK(untimed(records_of(dir / "d.log")) ==
        std::vector<std::string>{"stdout P left by the destructor"});
}

TEST_CASE("timestamps are RFC 3339 UTC nanoseconds of the write and do not go back", "[log-file]") {
  TempDir dir;
  LogFile log = open_log(dir / "c.log");
  int64_t start = realtime_nanos();
  for (int i = 0; i < 50; ++i) write_ok(log, i % 2 ? Stream::err : Stream::out, numbered(i) + "\n");
  int64_t end = realtime_nanos();
  auto records = records_of(dir / "c.log");
  REQUIRE(records.size() == 50);
  int64_t last = 0;
  for (const Record& r : records) {
    int64_t t = parse_timestamp(r.timestamp);
    CHECK(t >= start);
    CHECK(t <= end);
    CHECK(t >= last);
    last = t;
  }
  CHECK(parse_timestamp(records.front().timestamp) < parse_timestamp(records.back().timestamp));
}

TEST_CASE("rotation keeps max_files files under the cap and never splits a line", "[log-file]") {
  TempDir dir;
  const std::string path = dir / "c.log";
  LogLimits limits;
  limits.max_bytes = 300;  // 5 records of 58 bytes
  limits.max_files = 3;
  LogFile log = open_log(path, limits);
  for (int i = 0; i < 40; ++i) write_ok(log, Stream::out, numbered(i) + "\n");

  CHECK(berth::fs::exists(path + ".1"));
  CHECK(berth::fs::exists(path + ".2"));
  CHECK_FALSE(berth::fs::exists(path + ".3"));
  std::vector<Record> all;
  for (const std::string& f : {path + ".2", path + ".1", path}) {
    auto text = berth::fs::read_file(f);
    REQUIRE(text);
    CHECK(text->size() <= limits.max_bytes);
    REQUIRE_FALSE(text->empty());
    CHECK(text->back() == '\n');
    for (Record& r : parse(*text)) all.push_back(std::move(r));
  }
  // The retained lines are the last ones, whole and without a gap.
  REQUIRE_FALSE(all.empty());
  CHECK(number_of(all.back().content) == 39);
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(all[i].tag == 'F');
    CHECK(all[i].content == numbered(number_of(all.front().content) + static_cast<int>(i)));
  }
  CHECK(log.end_offset() == 40 * 58);
}

TEST_CASE("a record larger than max_bytes goes whole into a file of its own", "[log-file]") {
  TempDir dir;
  LogLimits limits;
  limits.max_bytes = 50;
  LogFile log = open_log(dir / "c.log", limits);
  write_ok(log, Stream::out, "short\n");
  std::string big(100, 'b');
  write_ok(log, Stream::out, big + "\n");
  write_ok(log, Stream::out, "after\n");
  CHECK(untimed(records_of(dir / "c.log.2")) == std::vector<std::string>{"stdout F short"});
  CHECK(untimed(records_of(dir / "c.log.1")) == std::vector<std::string>{"stdout F " + big});
  CHECK(untimed(records_of(dir / "c.log")) == std::vector<std::string>{"stdout F after"});
}

TEST_CASE("with max_files 1 a rotation starts the file over", "[log-file]") {
  TempDir dir;
  LogLimits limits;
  limits.max_bytes = 100;
  limits.max_files = 1;
  LogFile log = open_log(dir / "c.log", limits);
  for (int i = 0; i < 5; ++i) write_ok(log, Stream::out, numbered(i) + "\n");
  CHECK_FALSE(berth::fs::exists(dir / "c.log.1"));
  CHECK(untimed(records_of(dir / "c.log")) == std::vector<std::string>{"stdout F " + numbered(4)});
  auto chunk = read_ok(log, 0, 1 << 20);
  CHECK(chunk.truncated_before);
  CHECK(chunk.start_offset == 4 * 58);
  CHECK(untimed(parse(chunk.data)) == std::vector<std::string>{"stdout F " + numbered(4)});
}

TEST_CASE("reading follows the log from an offset, across files", "[log-file]") {
  TempDir dir;
  const std::string path = dir / "c.log";
  LogLimits limits;
  limits.max_bytes = 300;
  limits.max_files = 5;
  LogFile log = open_log(path, limits);
  for (int i = 0; i < 12; ++i) write_ok(log, Stream::out, numbered(i) + "\n");
  REQUIRE(berth::fs::exists(path + ".2"));
  std::string everything;
  for (const std::string& f : {path + ".2", path + ".1", path})
    everything += *berth::fs::read_file(f);
  REQUIRE(everything.size() == 12 * 58);

  SECTION("all of it at once") {
    auto chunk = read_ok(log, 0, 1 << 20);
    CHECK_FALSE(chunk.truncated_before);
    CHECK(chunk.start_offset == 0);
    CHECK(chunk.data == everything);
    CHECK(chunk.next_offset == log.end_offset());
  }
  SECTION("in small reads of whole records, from the middle") {
    uint64_t offset = 3 * 58;
    std::string got;
    for (int reads = 0; offset < log.end_offset(); ++reads) {
      REQUIRE(reads < 100);
      auto chunk = read_ok(log, offset, 130);  // two records
      CHECK(chunk.start_offset == offset);
      CHECK(chunk.data.size() == std::min<uint64_t>(116, log.end_offset() - offset));
      CHECK(chunk.data.back() == '\n');
      CHECK(chunk.next_offset == offset + chunk.data.size());
      got += chunk.data;
      offset = chunk.next_offset;
    }
    CHECK(got == everything.substr(3 * 58));
  }
  SECTION("a budget smaller than a record still returns one record") {
    auto chunk = read_ok(log, 58, 1);
    CHECK(chunk.data == everything.substr(58, 58));
    CHECK(chunk.next_offset == 116);
  }
  SECTION("an offset inside a record starts at the next record") {
    auto chunk = read_ok(log, 58 + 20, 58);
    CHECK(chunk.start_offset == 116);
    CHECK(chunk.data == everything.substr(116, 58));
  }
  SECTION("the end gives nothing, and more once written") {
    uint64_t end = log.end_offset();
    auto chunk = read_ok(log, end, 1 << 20);
    CHECK(chunk.data.empty());
    CHECK(chunk.start_offset == end);
    CHECK(chunk.next_offset == end);
    CHECK_FALSE(chunk.truncated_before);
    write_ok(log, Stream::err, "new\n");
    chunk = read_ok(log, end, 1 << 20);
    CHECK(untimed(parse(chunk.data)) == std::vector<std::string>{"stderr F new"});
    CHECK(chunk.next_offset == log.end_offset());
  }
  SECTION("beyond the end is an error") {
    auto r = log.read(log.end_offset() + 1, 100);
    REQUIRE_FALSE(r);
    CHECK(r.error().str() ==
          "log: read " + path + ": offset 697 is beyond the end of the log (696)");
  }
}

TEST_CASE("reading from 0 after rotation starts at the oldest retained line", "[log-file]") {
  TempDir dir;
  const std::string path = dir / "c.log";
  LogLimits limits;
  limits.max_bytes = 300;
  limits.max_files = 2;
  LogFile log = open_log(path, limits);
  for (int i = 0; i < 20; ++i) write_ok(log, Stream::out, numbered(i) + "\n");
  std::string retained = *berth::fs::read_file(path + ".1") + *berth::fs::read_file(path);
  auto chunk = read_ok(log, 0, 1 << 20);
  CHECK(chunk.truncated_before);
  CHECK(chunk.start_offset == log.end_offset() - retained.size());
  CHECK(chunk.data == retained);
  CHECK(chunk.next_offset == log.end_offset());
  auto first = parse(chunk.data);
  REQUIRE_FALSE(first.empty());
  CHECK(first.front().content == numbered(static_cast<int>(chunk.start_offset / 58)));
}

TEST_CASE("offsets survive rotation and a restart of the shim", "[log-file]") {
  TempDir dir;
  const std::string path = dir / "c.log";
  LogLimits limits;
  limits.max_bytes = 300;
  limits.max_files = 3;
  uint64_t mark = 0;
  {
    LogFile log = open_log(path, limits);
    for (int i = 0; i < 12; ++i) write_ok(log, Stream::out, numbered(i) + "\n");
    mark = log.end_offset();
    CHECK(mark == 12 * 58);
  }

  SECTION("a clean reopen") {
    LogFile log = open_log(path, limits);
    CHECK(log.end_offset() == mark);
    for (int i = 12; i < 20; ++i) write_ok(log, Stream::out, numbered(i) + "\n");
    CHECK(log.end_offset() == 20 * 58);
    auto chunk = read_ok(log, mark, 58);
    CHECK(untimed(parse(chunk.data)) == std::vector<std::string>{"stdout F " + numbered(12)});
  }
  SECTION("a shim that died between renames of a rotation") {
    // <name>.log was moved to .1 (and .1 to .2) but no new file was made.
    REQUIRE(::unlink((path + ".2").c_str()) == 0);
    REQUIRE(::rename((path + ".1").c_str(), (path + ".2").c_str()) == 0);
    REQUIRE(::rename(path.c_str(), (path + ".1").c_str()) == 0);
    LogFile log = open_log(path, limits);
    CHECK(log.end_offset() == mark);
    write_ok(log, Stream::out, numbered(12) + "\n");
    auto chunk = read_ok(log, mark - 58, 1 << 20);
    CHECK(untimed(parse(chunk.data)) ==
          std::vector<std::string>{"stdout F " + numbered(11), "stdout F " + numbered(12)});
  }
  SECTION("a torn last record is cut") {
    {
      auto fd = berth::fs::open(path, O_WRONLY | O_APPEND);
      REQUIRE(fd);
      REQUIRE(::write(fd->get(), "2024-01-01T00:00:00.0", 21) == 21);
    }
    LogFile log = open_log(path, limits);
    CHECK(log.end_offset() == mark);
    write_ok(log, Stream::out, numbered(12) + "\n");
    auto chunk = read_ok(log, mark, 1 << 20);
    CHECK(untimed(parse(chunk.data)) == std::vector<std::string>{"stdout F " + numbered(12)});
  }
  SECTION("without its offset record, offsets restart at the oldest retained line") {
    REQUIRE(::unlink((path + ".offset").c_str()) == 0);
    LogFile log = open_log(path, limits);
    auto chunk = read_ok(log, 0, 1 << 20);
    CHECK_FALSE(chunk.truncated_before);
    CHECK(chunk.next_offset == log.end_offset());
    CHECK(chunk.data.size() == 12 * 58);
    CHECK(parse(chunk.data).back().content == numbered(11));
  }
}

TEST_CASE("a log at an unwritable path is an error naming it", "[log-file]") {
  TempDir dir;
  SECTION("missing directory") {
    auto r = LogFile::open(dir / "missing/c.log");
    REQUIRE_FALSE(r);
    CHECK(r.error().str() ==
          "log: open " + dir.path() + "/missing/c.log: No such file or directory");
  }
  SECTION("a directory") {
    REQUIRE(berth::fs::mkdir_p(dir / "d.log"));
    auto r = LogFile::open(dir / "d.log");
    REQUIRE_FALSE(r);
    CHECK(r.error().str() == "log: open " + dir.path() + "/d.log: Is a directory");
  }
  SECTION("a read-only directory") {
    if (::geteuid() == 0) return;  // root writes anyway; the cases above still ran
    REQUIRE(berth::fs::mkdir_p(dir / "ro", 0555));
    auto r = LogFile::open(dir / "ro/c.log");
    REQUIRE_FALSE(r);
    CHECK(r.error().str() == "log: open " + dir.path() + "/ro/c.log: Permission denied");
  }
  SECTION("bad limits") {
    LogLimits limits;
    limits.max_files = 0;
    auto r = LogFile::open(dir / "c.log", limits);
    REQUIRE_FALSE(r);
    CHECK(r.error().str() ==
          "log: log " + dir.path() + "/c.log: max_files must be at least 1, not 0");
  }
}

TEST_CASE("a failed rotation keeps the output and is retried", "[log-file]") {
  TempDir dir;
  const std::string path = dir / "c.log";
  LogLimits limits;
  limits.max_bytes = 100;
  limits.max_files = 2;
  LogFile log = open_log(path, limits);
  write_ok(log, Stream::out, numbered(0) + "\n");
  // <name>.log cannot be renamed over a non-empty directory.
  REQUIRE(berth::fs::mkdir_p(path + ".1/blocker"));
  auto r = log.write(Stream::out, numbered(1) + "\n");
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "log: rotate " + path + ": rename " + path + " to " + path + ".1: Is a directory");
  CHECK(untimed(records_of(path)) ==
        std::vector<std::string>{"stdout F " + numbered(0), "stdout F " + numbered(1)});
  CHECK(log.end_offset() == 2 * 58);
  CHECK_FALSE(berth::fs::exists(path + ".new"));

  REQUIRE(berth::fs::remove_all(path + ".1"));
  write_ok(log, Stream::out, numbered(2) + "\n");
  CHECK(untimed(records_of(path + ".1")) ==
        std::vector<std::string>{"stdout F " + numbered(0), "stdout F " + numbered(1)});
  CHECK(untimed(records_of(path)) == std::vector<std::string>{"stdout F " + numbered(2)});
  auto chunk = read_ok(log, 0, 1 << 20);
  CHECK_FALSE(chunk.truncated_before);
  CHECK(parse(chunk.data).size() == 3);
}

namespace {

// Lowers RLIMIT_FSIZE (with SIGXFSZ ignored, so that writes past it fail
// with EFBIG) for the scope: the one way to make a write fail halfway
// without root or a full filesystem.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lowered) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
};

}  // namespace

TEST_CASE("a write that fails halfway leaves whole records only", "[log-file]") {
  TempDir dir;
  const std::string path = dir / "c.log";
  LogFile log = open_log(path);
  write_ok(log, Stream::out, numbered(0) + "\n");
  berth::Result<void> r;
  {
    // Room for the second record and part of the third.
    FileSizeLimit limit(2 * 58 + 20);
    r = log.write(Stream::out, numbered(1) + "\n" + numbered(2) + "\n");
  }
  REQUIRE_FALSE(r);
  CHECK(r.error().str() == "log: write " + path + ": File too large");
  CHECK(untimed(records_of(path)) ==
        std::vector<std::string>{"stdout F " + numbered(0), "stdout F " + numbered(1)});
  CHECK(log.end_offset() == 2 * 58);
  write_ok(log, Stream::out, numbered(3) + "\n");
  CHECK(untimed(records_of(path)) == std::vector<std::string>{"stdout F " + numbered(0),
                                                              "stdout F " + numbered(1),
                                                              "stdout F " + numbered(3)});
  auto chunk = read_ok(log, 58, 1 << 20);
  CHECK(untimed(parse(chunk.data)) ==
        std::vector<std::string>{"stdout F " + numbered(1), "stdout F " + numbered(3)});
}
