// Writes tar layers for tests with libarchive's write API, as image builders
// do: plain, gzip or zstd, any entry type, xattrs.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace berth::test {

enum class Filter { none, gzip, zstd };

struct Entry {
  std::string path;
  mode_t type = AE_IFREG;
  mode_t perm = 0644;
  std::string data;
  std::string symlink;
  std::string hardlink;
  std::string xattr_name;
  std::string xattr_value;
  dev_t rdev = 0;
  time_t mtime = 1700000000;
};

// Writes a pax tar of `entries` with libarchive's write API, as image
// builders do.
inline void write_layer(const std::string& path, const std::vector<Entry>& entries,
                        Filter filter = Filter::none) {
  struct archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
  if (filter == Filter::gzip) REQUIRE(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
  if (filter == Filter::zstd) REQUIRE(archive_write_add_filter_zstd(a) == ARCHIVE_OK);
  REQUIRE(archive_write_open_filename(a, path.c_str()) == ARCHIVE_OK);
  for (const auto& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_filetype(ae, e.type);
    archive_entry_set_perm(ae, e.perm);
    archive_entry_set_mtime(ae, e.mtime, 0);
    archive_entry_set_uid(ae, 1234);
    archive_entry_set_gid(ae, 5678);
    if (!e.symlink.empty()) archive_entry_set_symlink(ae, e.symlink.c_str());
    if (!e.hardlink.empty()) archive_entry_set_hardlink(ae, e.hardlink.c_str());
    if (!e.xattr_name.empty())
      archive_entry_xattr_add_entry(ae, e.xattr_name.c_str(), e.xattr_value.data(),
                                    e.xattr_value.size());
    if (e.rdev) archive_entry_set_rdev(ae, e.rdev);
    archive_entry_set_size(ae, e.type == AE_IFREG && e.hardlink.empty() ? e.data.size() : 0);
    REQUIRE(archive_write_header(a, ae) == ARCHIVE_OK);
    if (!e.data.empty()) REQUIRE(archive_write_data(a, e.data.data(), e.data.size()) > 0);
    archive_entry_free(ae);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
}

}  // namespace berth::test
