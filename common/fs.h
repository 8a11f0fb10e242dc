// Small file helpers whose errors name the path.
#pragma once

#include <string>
#include <string_view>

#include "common/error.h"
#include "common/fd.h"

namespace berth::fs {

Result<std::string> read_file(const std::string& path);
// Writes `data` to an existing file (cgroup and proc files: no O_CREAT, no
// truncation semantics beyond O_TRUNC which those files ignore).
Result<void> write_file(const std::string& path, std::string_view data);
// Creates or replaces `path` atomically: write to a temporary in the same
// directory, rename. Durable::yes also fsyncs the data before the rename, so
// that after a crash the file holds either the old or the new content; the
// runtime's own state (in /run, gone at reboot anyway) does without. The
// temporary is unique per call (<path>.tmp.XXXXXX), so threads may replace
// one path at once (the last rename wins); `mode` is applied as given.
enum class Durable { no, yes };
Result<void> write_file_atomic(const std::string& path, std::string_view data, int mode = 0644,
                               Durable durable = Durable::yes);
// mkdir -p; existing directories are fine.
Result<void> mkdir_p(const std::string& path, int mode = 0755);
bool exists(const std::string& path);
// rm -rf that never leaves the filesystem `path` is on: a directory below it
// that is a mount point (another st_dev) is an error, not descended into, so
// a still-mounted container rootfs can never be emptied by a cleanup. A
// missing `path` is fine. Symlinks are removed, never followed. Iterative,
// with a constant native stack and two open fds whatever the depth.
Result<void> remove_all(const std::string& path);
// remove_all of `name` in the directory `dirfd` (never following a symlink
// at `name` itself).
Result<void> remove_all_at(int dirfd, const std::string& name);
Result<UniqueFd> open(const std::string& path, int flags, int mode = 0);
// Joins a and b with exactly one '/' between them.
std::string join(std::string_view a, std::string_view b);

}  // namespace berth::fs
