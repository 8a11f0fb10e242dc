// Image import: OCI layouts (directory or tar), docker archives, root
// filesystems (tarball or directory).
//
// Every source's data is read once (telling a tar's kind reads its headers
// first: one header for a rootfs, all of them for an image archive, which
// for a compressed archive means decompressing it twice). A layout
// directory's blobs are copied into the store and hashed on the way (never
// trusted by name); an archive is streamed member by member straight into
// the store, never extracted to disk; a rootfs tarball is copied as is while
// a second libarchive reader decompresses the same bytes to hash the diff_id
// and check every entry; a rootfs directory is written as a tar straight
// into the store. The image is then registered by ImageStore::add, which
// unpacks its layers with the safe unpacker.
//
// Failure leaves no temp file (BlobStore::Writer removes its own) and no
// image record; blobs already complete and verified may stay: they are
// content-addressed, and prune collects them when no image uses them.
#include "rootfs-tools/import.h"
#include "rootfs-tools/paths.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/json.h"
#include "rootfs-tools/reference.h"

namespace berth::rootfs {
namespace {

using json = nlohmann::json;

constexpr std::string_view kStep = "import";
constexpr size_t kChunk = 1 << 20;
// index.json, manifest.json, oci-layout and manifests are read into memory.
constexpr int64_t kMaxDocument = 16 << 20;
// Nested indexes in a layout (index.json -> index -> manifest is the usual
// depth); more is a loop or an attack.
constexpr int kMaxIndexDepth = 4;
constexpr int kMaxSymlinkHops = 16;
constexpr std::string_view kRefName = "org.opencontainers.image.ref.name";
// Docker 25+ `docker save` writes an OCI layout whose ref.name is only the
// tag; the full name is in containerd's annotation.
constexpr std::string_view kContainerdName = "io.containerd.image.name";

// ---- errors and progress ---------------------------------------------------

template <class... Args>
std::unexpected<Error> fail(std::string_view source, fmt::format_string<Args...> f,
                            Args&&... args) {
  return error(kStep, "{}: {}", source, fmt::format(f, std::forward<Args>(args)...));
}

template <class... Args>
std::unexpected<Error> sys_fail(std::string_view source, fmt::format_string<Args...> f,
                                Args&&... args) {
  int saved = errno;
  return errno_error(kStep, saved, "{}: {}", source, fmt::format(f, std::forward<Args>(args)...));
}

// An error of a lower step (store, unpack, manifest) as the import's, with
// the source in front: "import: /x/img.tar: unpack: ...: entry "../a": ...".
std::unexpected<Error> within(std::string_view source, const Error& e) {
  std::string inner = e.step == kStep ? e.message : fmt::format("{}: {}", e.step, e.message);
  return std::unexpected(Error{std::string(kStep), e.err, fmt::format("{}: {}", source, inner)});
}

void report(const Progress& progress, const Digest& d, ProgressEvent::Phase phase,
            uint64_t current = 0, uint64_t total = 0) {
  if (progress) progress(ProgressEvent{short_id(d), phase, current, total, {}});
}

// ---- libarchive handles -----------------------------------------------------

struct ReadFree {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
using ReadArchive = std::unique_ptr<struct archive, ReadFree>;
struct WriteFree {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
using WriteArchive = std::unique_ptr<struct archive, WriteFree>;
struct EntryFree {
  void operator()(struct archive_entry* e) const { archive_entry_free(e); }
};
using Entry = std::unique_ptr<struct archive_entry, EntryFree>;

// A tar (any compression libarchive knows) read from a file.
Result<ReadArchive> open_tar(const std::string& path) {
  ReadArchive a(archive_read_new());
  if (!a) return fail(path, "archive_read_new failed");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return errno_error(kStep, archive_errno(a.get()), "{}: open: {}", path,
                       archive_error_string(a.get()));
  }
  return a;
}

bool header_ok(int rc) {
  return rc == ARCHIVE_OK || rc == ARCHIVE_WARN;
}

// ---- member names --------------------------------------------------------------

// "./blobs//sha256/x" -> "blobs/sha256/x"; ".." is resolved lexically, and
// one that climbs above the archive root yields nullopt.
std::optional<std::string> clean_member(std::string_view name) {
  std::vector<std::string> out;
  for (auto& c : split_path(name)) {
    if (c != "..") {
      out.push_back(std::move(c));
    } else if (out.empty()) {
      return std::nullopt;
    } else {
      out.pop_back();
    }
  }
  return join_path(out, out.size());
}

bool is_hex64(std::string_view s) {
  return s.size() == 64 && std::ranges::all_of(s, [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// What a member of an image archive (OCI layout or docker save, old or new)
// can be called: blobs/..., <64 hex>[.json|.tar|/...], and the index files.
// A tar with any other member is a root filesystem.
bool archive_like(const std::string& name) {
  static const std::set<std::string, std::less<>> kFiles = {"oci-layout", "index.json",
                                                            "manifest.json", "repositories"};
  if (name.empty() || kFiles.contains(name)) return true;
  std::string first = name.substr(0, name.find('/'));
  if (first == "blobs") return true;
  return is_hex64(first.substr(0, std::min<size_t>(first.size(), 64)));
}

// ---- compression ----------------------------------------------------------------

enum class Compression { none, gzip, zstd, other };

// By magic number. "other" (xz, bzip2, lz4, ...) has no OCI layer media type.
Compression sniff(std::string_view head) {
  if (head.starts_with("\x1f\x8b")) return Compression::gzip;
  if (head.starts_with("\x28\xb5\x2f\xfd")) return Compression::zstd;
  if (head.starts_with("\xfd\x37\x7a\x58\x5a\x00") || head.starts_with("BZh") ||
      head.starts_with("\x04\x22\x4d\x18") || head.starts_with("LZIP") ||
      head.starts_with("\x1f\x9d")) {
    return Compression::other;
  }
  return Compression::none;
}

std::string layer_media_type(Compression c) {
  switch (c) {
    case Compression::gzip:
      return std::string(media::oci_layer_gzip);
    case Compression::zstd:
      return std::string(media::oci_layer_zstd);
    default:
      return std::string(media::oci_layer);
  }
}

// ---- names ---------------------------------------------------------------------------

Result<std::vector<std::string>> canonical_names(const std::vector<std::string>& in,
                                                 std::string_view source, std::string_view what) {
  std::set<std::string> out;
  for (const std::string& n : in) {
    Result<Reference> ref = Reference::parse(n);
    if (!ref) return fail(source, "{} {:?}: {}", what, n, ref.error().message);
    out.insert(ref->str());
  }
  return std::vector<std::string>(out.begin(), out.end());
}

// The names an OCI layout entry gives its image. The ref.name annotation is
// either a full reference ("docker.io/library/busybox:1.36", as containerd
// writes it) or, as skopeo and the OCI spec's examples write it, just a tag
// ("latest"), which names no repository: such an image gets no name (it is
// reachable by digest, or named with ImportOptions::names). Telling the two
// apart: a reference has a '/', ':' or '@'; a bare tag has none.
// io.containerd.image.name, always a full reference, is preferred.
Result<std::vector<std::string>> layout_names(const Descriptor& entry, const ImportOptions& opts,
                                              std::string_view source) {
  if (!opts.names.empty()) return canonical_names(opts.names, source, "name");
  const auto& a = entry.annotations;
  if (auto it = a.find(std::string(kContainerdName)); it != a.end()) {
    return canonical_names({it->second}, source,
                           "index.json: annotation " + std::string(kContainerdName));
  }
  auto it = a.find(std::string(kRefName));
  if (it == a.end() || it->second.find_first_of("/:@") == std::string::npos) {
    return std::vector<std::string>{};
  }
  return canonical_names({it->second}, source, "index.json: annotation " + std::string(kRefName));
}

// ---- blob copies ------------------------------------------------------------------------

// Copies `fd` into the store, hashing it once on the way; `expected` is
// checked before the blob becomes visible.
Result<Digest> copy_into_store(BlobStore& blobs, int fd, const std::string& source,
                               const std::optional<Digest>& expected, uint64_t total,
                               const Progress& progress) {
  BERTH_ASSIGN(BlobStore::Writer w, blobs.writer());
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);  // a hint; failure changes nothing
  std::unique_ptr<char[]> buf(new char[kChunk]);
  uint64_t done = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.get(), kChunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_fail(source, "read");
    }
    if (n == 0) break;
    if (auto r = w.write(std::string_view(buf.get(), static_cast<size_t>(n))); !r) {
      return within(source, r.error());
    }
    done += static_cast<uint64_t>(n);
    if (expected) report(progress, *expected, ProgressEvent::Phase::downloading, done, total);
  }
  Result<Digest> d = w.commit(expected);
  if (!d) return within(source, d.error());
  return d;
}

// Reads a small regular file of a layout, refusing symlinks (a layout must
// not make us read /etc/shadow into the store) and anything huge.
Result<std::string> read_document(int dirfd, const std::string& name, const std::string& path) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return sys_fail(path, "open");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return sys_fail(path, "fstat");
  if (!S_ISREG(st.st_mode)) return fail(path, "not a regular file");
  if (st.st_size > kMaxDocument) {
    return fail(path, "{} bytes: larger than the {} bytes allowed", st.st_size, kMaxDocument);
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_fail(path, "read");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

Result<void> check_oci_layout_file(std::string_view text, std::string_view source) {
  Result<json> j = parse_json(text, "oci-layout");
  if (!j) return within(source, j.error());
  const std::string* v = nullptr;
  if (j->is_object()) {
    if (auto it = j->find("imageLayoutVersion"); it != j->end()) {
      v = it->get_ptr<const std::string*>();
    }
  }
  if (v == nullptr) return fail(source, "oci-layout: no imageLayoutVersion");
  if (!v->starts_with("1.")) {
    return fail(source, "oci-layout: imageLayoutVersion {:?} is not supported (want {})", *v,
                media::oci_layout_version);
  }
  return {};
}

// ---- OCI layout (directory or streamed archive) --------------------------------------

// Where the blobs of a layout come from: ensure(d, what) leaves blob `d` in
// the store, verified, or fails naming the source file.
using EnsureBlob = std::function<Result<void>(const Descriptor& d, std::string_view what)>;

struct LayoutImporter {
  ImageStore& store;
  const ImportOptions& opts;
  std::string source;
  EnsureBlob ensure;

  // Puts the blob in the store and checks the size its descriptor states
  // (the digest check is the store's).
  Result<void> fetch(const Descriptor& d, std::string_view what) {
    BERTH_TRY(ensure(d, what));
    struct stat st;
    std::string p = store.blobs().path(d.digest);
    if (::stat(p.c_str(), &st) != 0) return sys_fail(source, "stat blob {}", p);
    if (st.st_size != d.size) {
      return fail(source, "{} {}: {} bytes, but its descriptor says {}", what, d.digest.str(),
                  st.st_size, d.size);
    }
    return {};
  }

  Result<std::string> read_blob(const Descriptor& d, std::string_view what) {
    if (d.size > kMaxDocument) {
      return fail(source, "{} {}: {} bytes: larger than the {} bytes allowed", what, d.digest.str(),
                  d.size, kMaxDocument);
    }
    BERTH_TRY(fetch(d, what));
    Result<std::string> text = store.blobs().read(d.digest);
    if (!text) return within(source, text.error());
    return text;
  }

  // The manifest an index.json entry stands for, and its text: the entry
  // itself, or the platform's manifest of the (nested) index it names.
  Result<std::pair<Descriptor, std::string>> resolve_manifest(const Descriptor& entry,
                                                              int depth = 0) {
    std::string at = fmt::format("{}: {}", source, entry.digest.str());
    BERTH_ASSIGN(std::string text, read_blob(entry, "manifest"));
    Result<DocumentKind> kind = document_kind(text, entry.media_type);
    if (!kind) return within(at, kind.error());
    if (*kind == DocumentKind::manifest) return std::pair{entry, std::move(text)};
    if (depth >= kMaxIndexDepth) return fail(at, "indexes nested more than {} deep", depth);
    Result<Index> index = parse_index(text);
    if (!index) return within(at, index.error());
    Result<Descriptor> chosen = select_platform(*index, opts.platform);
    if (!chosen) return within(at, chosen.error());
    return resolve_manifest(*chosen, depth + 1);
  }

  Result<Image> import_entry(const Descriptor& entry) {
    BERTH_ASSIGN(std::vector<std::string> names, layout_names(entry, opts, source));
    BERTH_ASSIGN(auto resolved, resolve_manifest(entry));
    const auto& [md, text] = resolved;
    Result<Manifest> m = parse_manifest(text);
    if (!m) return within(fmt::format("{}: {}", source, md.digest.str()), m.error());
    BERTH_TRY(fetch(m->config, "config"));
    for (size_t i = 0; i < m->layers.size(); ++i) {
      BERTH_TRY(fetch(m->layers[i], fmt::format("layer {}", i)));
    }
    Result<Image> img = store.add(md.digest, names, AddOptions{opts.platform, opts.progress});
    if (!img) return within(source, img.error());
    return img;
  }

  // index.json's entries for our platform: entries without a platform
  // (single-image layouts) and those of ours; when it lists only other
  // platforms, the error says which it has.
  Result<std::vector<Descriptor>> entries(const Index& index) {
    if (index.manifests.empty()) return fail(source, "index.json lists no images");
    std::vector<Descriptor> out;
    const Platform& want = opts.platform;
    for (const Descriptor& d : index.manifests) {
      if (!d.platform ||
          (d.platform->os == want.os && d.platform->architecture == want.architecture &&
           (want.variant.empty() || d.platform->variant == want.variant))) {
        out.push_back(d);
      }
    }
    if (out.empty()) {
      Result<Descriptor> chosen = select_platform(index, want);
      if (!chosen) return within(fmt::format("{}: index.json", source), chosen.error());
      out.push_back(*chosen);
    }
    if (out.size() > 1 && !opts.names.empty()) {
      return fail(source, "index.json lists {} images; names can be given to one only", out.size());
    }
    return out;
  }

  Result<std::vector<Image>> run(std::string_view index_json) {
    Result<Index> index = parse_index(index_json);
    if (!index) return within(fmt::format("{}: index.json", source), index.error());
    BERTH_ASSIGN(std::vector<Descriptor> todo, entries(*index));
    std::vector<Image> images;
    for (const Descriptor& entry : todo) {
      BERTH_ASSIGN(Image img, import_entry(entry));
      images.push_back(std::move(img));
    }
    return images;
  }
};

// A layout directory: blobs are copied from blobs/sha256/<hex>, which must be
// regular files (a symlink to a host file is refused, not followed); a blob
// already in the store is not copied again.
Result<std::vector<Image>> import_layout_dir(ImageStore& store, const std::string& dir,
                                             const ImportOptions& opts) {
  UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_fail(dir, "open");
  BERTH_ASSIGN(std::string layout, read_document(root.get(), "oci-layout", dir + "/oci-layout"));
  BERTH_TRY(check_oci_layout_file(layout, dir));
  BERTH_ASSIGN(std::string index, read_document(root.get(), "index.json", dir + "/index.json"));
  UniqueFd blobs(::openat(root.get(), "blobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!blobs) return sys_fail(dir, "open blobs/");
  UniqueFd sha(::openat(blobs.get(), "sha256", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!sha) return sys_fail(dir, "open blobs/sha256/");

  BlobStore& bs = store.blobs();
  auto ensure = [&](const Descriptor& d, std::string_view what) -> Result<void> {
    if (bs.has(d.digest)) {
      report(opts.progress, d.digest, ProgressEvent::Phase::exists);
      return {};
    }
    std::string path = fmt::format("{}/blobs/sha256/{}", dir, d.digest.hex);
    UniqueFd fd(
        ::openat(sha.get(), d.digest.hex.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return sys_fail(path, "{} {}", what, d.digest.str());
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return sys_fail(path, "fstat");
    if (!S_ISREG(st.st_mode)) return fail(path, "{}: not a regular file", what);
    if (st.st_size != d.size) {
      return fail(path, "{}: {} bytes, but its descriptor says {}", what, st.st_size, d.size);
    }
    BERTH_TRY(copy_into_store(bs, fd.get(), path, d.digest, static_cast<uint64_t>(d.size),
                              opts.progress));
    report(opts.progress, d.digest, ProgressEvent::Phase::done, static_cast<uint64_t>(d.size),
           static_cast<uint64_t>(d.size));
    return {};
  };
  LayoutImporter li{store, opts, dir, ensure};
  return li.run(index);
}

// ---- archives (OCI layout tar, docker save) ------------------------------------------

struct Member {
  enum class Kind { blob, symlink, hardlink } kind = Kind::blob;
  Digest digest;       // blob
  uint64_t size = 0;   // blob
  std::string head;    // blob: its first bytes, for sniffing compression
  std::string target;  // symlink (as written) / hardlink (cleaned)
};

struct ArchiveContents {
  std::map<std::string, std::string> documents;  // index.json, oci-layout, manifest.json
  std::map<std::string, Member> members;
};

// Streams one member's data into the store.
Result<Member> stream_member(BlobStore& blobs, struct archive* a, const std::string& where,
                             const std::optional<Digest>& expected, uint64_t size,
                             const Progress& progress) {
  BERTH_ASSIGN(BlobStore::Writer w, blobs.writer());
  Member m;
  const void* buf;
  size_t len;
  la_int64_t offset;
  int rc;
  uint64_t pos = 0;
  static const std::string kZeros(1 << 16, '\0');
  auto fill_to = [&](uint64_t to) -> Result<void> {  // holes of sparse members
    while (pos < to) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(to - pos, kZeros.size()));
      if (auto r = w.write(std::string_view(kZeros.data(), n)); !r) return within(where, r.error());
      pos += n;
    }
    return {};
  };
  while ((rc = archive_read_data_block(a, &buf, &len, &offset)) == ARCHIVE_OK) {
    BERTH_TRY(fill_to(static_cast<uint64_t>(offset)));
    std::string_view chunk(static_cast<const char*>(buf), len);
    if (m.head.size() < 8) m.head += chunk.substr(0, 8 - m.head.size());
    if (auto r = w.write(chunk); !r) return within(where, r.error());
    pos += len;
    if (expected) report(progress, *expected, ProgressEvent::Phase::downloading, pos, size);
  }
  if (rc != ARCHIVE_EOF) {
    return errno_error(kStep, archive_errno(a), "{}: read: {}", where, archive_error_string(a));
  }
  BERTH_TRY(fill_to(size));
  m.size = pos;
  Result<Digest> d = w.commit(expected);
  if (!d) return within(where, d.error());
  m.digest = *d;
  report(progress, m.digest, ProgressEvent::Phase::done, pos, pos);
  return m;
}

Result<std::string> read_member_document(struct archive* a, struct archive_entry* e,
                                         const std::string& where) {
  int64_t size = archive_entry_size(e);
  if (size > kMaxDocument) {
    return fail(where, "{} bytes: larger than the {} bytes allowed", size, kMaxDocument);
  }
  std::string out(static_cast<size_t>(std::max<int64_t>(size, 0)), '\0');
  size_t got = 0;
  while (got < out.size()) {
    la_ssize_t n = archive_read_data(a, out.data() + got, out.size() - got);
    if (n < 0) {
      return errno_error(kStep, archive_errno(a), "{}: read: {}", where, archive_error_string(a));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

// What of an archive goes into the store. OCI: blobs/sha256/<hex>, checked
// against <hex>. Docker: every file but the index documents and the legacy
// per-layer "json"/"VERSION" files (layers and configs have no fixed names
// across docker versions; manifest.json says which is which, and it comes
// last).
bool wanted_member(ImportFormat format, const std::string& name) {
  if (format == ImportFormat::oci_layout) return name.starts_with("blobs/sha256/");
  return !name.ends_with("/json") && !name.ends_with("/VERSION");
}

Result<ArchiveContents> stream_archive(ImageStore& store, const std::string& path,
                                       ImportFormat format, const Progress& progress) {
  static const std::set<std::string, std::less<>> kDocuments = {"oci-layout", "index.json",
                                                                "manifest.json", "repositories"};
  BERTH_ASSIGN(ReadArchive a, open_tar(path));
  ArchiveContents out;
  struct archive_entry* e;
  int rc;
  while (header_ok(rc = archive_read_next_header(a.get(), &e))) {
    const char* raw = archive_entry_pathname(e);
    std::optional<std::string> name = clean_member(raw ? raw : "");
    if (!name || name->empty()) continue;  // names outside the archive are never looked up
    std::string where = fmt::format("{}: member {}", path, *name);
    if (const char* link = archive_entry_hardlink(e)) {
      if (auto t = clean_member(link)) out.members[*name] = {Member::Kind::hardlink, {}, 0, {}, *t};
      continue;
    }
    auto type = archive_entry_filetype(e);
    if (type == AE_IFLNK) {
      const char* t = archive_entry_symlink(e);
      out.members[*name] = {Member::Kind::symlink, {}, 0, {}, t ? t : ""};
      continue;
    }
    if (type != AE_IFREG) continue;
    if (kDocuments.contains(*name)) {
      BERTH_ASSIGN(out.documents[*name], read_member_document(a.get(), e, where));
      continue;
    }
    if (!wanted_member(format, *name)) continue;
    std::optional<Digest> expected;
    if (name->starts_with("blobs/sha256/")) {
      Result<Digest> d = Digest::from_hex(name->substr(13));
      if (!d) continue;  // not a blob name: nothing refers to it
      expected = *d;
      // The store's copy is verified already. (A docker import needs the
      // member's size and first bytes, so it reads the member anyway.)
      if (format == ImportFormat::oci_layout && store.blobs().has(*expected)) {
        report(progress, *expected, ProgressEvent::Phase::exists);
        out.members[*name] = {Member::Kind::blob, *expected, 0, {}, {}};
        continue;
      }
    }
    uint64_t size = static_cast<uint64_t>(std::max<int64_t>(archive_entry_size(e), 0));
    BERTH_ASSIGN(out.members[*name],
                 stream_member(store.blobs(), a.get(), where, expected, size, progress));
  }
  if (rc != ARCHIVE_EOF) {
    return errno_error(kStep, archive_errno(a.get()), "{}: read: {}", path,
                       archive_error_string(a.get()));
  }
  return out;
}

// The blob an archive member name stands for, through symlinks (docker's
// "<id>/layer.tar -> ../<diff_id>.tar") and hardlinks.
Result<const Member*> find_blob(const ArchiveContents& c, const std::string& source,
                                std::string_view name, std::string_view what) {
  std::optional<std::string> cur = clean_member(name);
  for (int hop = 0; cur && hop <= kMaxSymlinkHops; ++hop) {
    auto it = c.members.find(*cur);
    if (it == c.members.end()) break;
    const Member& m = it->second;
    if (m.kind == Member::Kind::blob) return &m;
    if (m.kind == Member::Kind::hardlink) {
      cur = m.target;
    } else {
      std::string dir = cur->find('/') == std::string::npos ? "" : cur->substr(0, cur->rfind('/'));
      cur = m.target.starts_with('/') ? clean_member(m.target)
                                      : clean_member(dir.empty() ? m.target : dir + "/" + m.target);
    }
  }
  return fail(source, "{} {:?} is not in the archive (or is not a regular file)", what, name);
}

Result<std::vector<Image>> import_layout_archive(ImageStore& store, const std::string& path,
                                                 const ImportOptions& opts) {
  BERTH_ASSIGN(ArchiveContents c,
               stream_archive(store, path, ImportFormat::oci_layout, opts.progress));
  auto layout = c.documents.find("oci-layout");
  if (layout == c.documents.end()) return fail(path, "not an OCI layout: no oci-layout member");
  BERTH_TRY(check_oci_layout_file(layout->second, path));
  auto index = c.documents.find("index.json");
  if (index == c.documents.end()) return fail(path, "OCI layout without index.json");
  // Every blob of the archive is in the store now (verified against its
  // name); what the manifests reference must have been among them.
  BlobStore& bs = store.blobs();
  auto ensure = [&](const Descriptor& d, std::string_view what) -> Result<void> {
    if (bs.has(d.digest)) return {};
    return fail(path, "{} {} is not in the archive (blobs/sha256/{})", what, d.digest.str(),
                d.digest.hex);
  };
  LayoutImporter li{store, opts, path, ensure};
  return li.run(index->second);
}

// ---- docker archive ---------------------------------------------------------------------

struct DockerEntry {
  std::string config;
  std::vector<std::string> repo_tags;
  std::vector<std::string> layers;
};

// The strings of array `key` of `o`; absent or null is empty.
Result<std::vector<std::string>> string_array(const json& o, const char* key, const std::string& at,
                                              const std::string& source) {
  std::vector<std::string> out;
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return out;
  if (!it->is_array()) return fail(source, "{}.{}: must be an array of strings", at, key);
  for (const json& v : *it) {
    const std::string* s = v.get_ptr<const std::string*>();
    if (s == nullptr) return fail(source, "{}.{}: must be an array of strings", at, key);
    out.push_back(*s);
  }
  return out;
}

Result<std::vector<DockerEntry>> parse_docker_manifest(std::string_view text,
                                                       const std::string& source) {
  Result<json> j = parse_json(text, "manifest.json");
  if (!j) return within(source, j.error());
  if (!j->is_array() || j->empty()) {
    return fail(source, "manifest.json: must be a non-empty array");
  }
  std::vector<DockerEntry> out;
  for (size_t i = 0; i < j->size(); ++i) {
    const json& o = (*j)[i];
    std::string at = fmt::format("manifest.json: [{}]", i);
    if (!o.is_object()) return fail(source, "{}: must be an object", at);
    auto cfg = o.find("Config");
    const std::string* config = cfg == o.end() ? nullptr : cfg->get_ptr<const std::string*>();
    if (config == nullptr) return fail(source, "{}.Config: must be a string", at);
    DockerEntry d{*config, {}, {}};
    if (auto layers = o.find("Layers"); layers == o.end() || !layers->is_array()) {
      return fail(source, "{}.Layers: must be an array of strings", at);
    }
    BERTH_ASSIGN(d.layers, string_array(o, "Layers", at, source));
    BERTH_ASSIGN(d.repo_tags, string_array(o, "RepoTags", at, source));
    out.push_back(std::move(d));
  }
  return out;
}

// The layer descriptor of a docker layer member; an uncompressed layer's
// digest is its diff_id, which the config must agree with.
Result<Descriptor> docker_layer(const Member& m, const std::string& name, const Digest& diff_id,
                                const std::string& source) {
  Compression c = sniff(m.head);
  if (c == Compression::other) {
    return fail(source, "layer {}: compressed with something other than gzip or zstd", name);
  }
  if (c == Compression::none && m.digest != diff_id) {
    return fail(source, "layer {}: its sha256 is {}, but the config's diff_id for it is {}", name,
                m.digest.str(), diff_id.str());
  }
  return Descriptor{layer_media_type(c), m.digest, static_cast<int64_t>(m.size), {}, {}};
}

Result<Image> import_docker_entry(ImageStore& store, const ArchiveContents& c,
                                  const DockerEntry& entry, const std::string& source,
                                  const ImportOptions& opts) {
  BERTH_ASSIGN(const Member* cfg, find_blob(c, source, entry.config, "config"));
  Result<std::string> cfg_text = store.blobs().read(cfg->digest);
  if (!cfg_text) return within(source, cfg_text.error());
  Result<ImageConfig> config = parse_image_config(*cfg_text);
  if (!config) return within(fmt::format("{}: {}", source, entry.config), config.error());
  if (config->diff_ids.size() != entry.layers.size()) {
    return fail(source, "config {} has {} diff_ids, but manifest.json lists {} layers",
                entry.config, config->diff_ids.size(), entry.layers.size());
  }
  Manifest m;
  m.media_type = std::string(media::oci_manifest);
  m.config = Descriptor{
      std::string(media::oci_config), cfg->digest, static_cast<int64_t>(cfg_text->size()), {}, {}};
  for (size_t i = 0; i < entry.layers.size(); ++i) {
    BERTH_ASSIGN(const Member* l, find_blob(c, source, entry.layers[i], "layer"));
    BERTH_ASSIGN(Descriptor d, docker_layer(*l, entry.layers[i], config->diff_ids[i], source));
    m.layers.push_back(std::move(d));
  }
  BERTH_ASSIGN(std::vector<std::string> names,
               opts.names.empty() ? canonical_names(entry.repo_tags, source, "RepoTags")
                                  : canonical_names(opts.names, source, "name"));
  Result<Digest> md = store.blobs().put(to_json(m));
  if (!md) return within(source, md.error());
  Result<Image> img = store.add(*md, names, AddOptions{opts.platform, opts.progress});
  if (!img) return within(source, img.error());
  return img;
}

Result<std::vector<Image>> import_docker_archive(ImageStore& store, const std::string& path,
                                                 const ImportOptions& opts) {
  BERTH_ASSIGN(ArchiveContents c,
               stream_archive(store, path, ImportFormat::docker_archive, opts.progress));
  auto manifest = c.documents.find("manifest.json");
  if (manifest == c.documents.end()) {
    return fail(path, "not a docker archive: no manifest.json member");
  }
  BERTH_ASSIGN(std::vector<DockerEntry> entries, parse_docker_manifest(manifest->second, path));
  if (entries.size() > 1 && !opts.names.empty()) {
    return fail(path, "manifest.json lists {} images; names can be given to one only",
                entries.size());
  }
  std::vector<Image> images;
  for (const DockerEntry& e : entries) {
    BERTH_ASSIGN(Image img, import_docker_entry(store, c, e, path, opts));
    images.push_back(std::move(img));
  }
  return images;
}

// ---- root filesystems: one-layer images --------------------------------------------------

// The config and manifest of a one-layer image, then the image.
Result<std::vector<Image>> add_single_layer(ImageStore& store, const Descriptor& layer,
                                            const Digest& diff_id, const std::string& source,
                                            const ImportOptions& opts) {
  BERTH_ASSIGN(std::vector<std::string> names, canonical_names(opts.names, source, "name"));
  std::string config = minimal_image_config_json({diff_id}, opts.platform);
  Result<Digest> cd = store.blobs().put(config);
  if (!cd) return within(source, cd.error());
  Manifest m;
  m.media_type = std::string(media::oci_manifest);
  m.config =
      Descriptor{std::string(media::oci_config), *cd, static_cast<int64_t>(config.size()), {}, {}};
  m.layers.push_back(layer);
  Result<Digest> md = store.blobs().put(to_json(m));
  if (!md) return within(source, md.error());
  Result<Image> img = store.add(*md, names, AddOptions{opts.platform, opts.progress});
  if (!img) return within(source, img.error());
  return std::vector<Image>{std::move(*img)};
}

// Refuses, before anything is unpacked, tar entries that could reach outside
// the root: absolute paths, "..", writes through a symlink an earlier entry
// made (CVE-2018-15664-style), hardlinks to such paths, and device nodes (a
// layer shipping /dev/sda 0666 hands the disk to the container). The unpacker
// refuses them too; checking here names the source and stores nothing.
class EntryChecker {
 public:
  explicit EntryChecker(std::string source) : source_(std::move(source)) {}

  Result<void> check(struct archive_entry* e) {
    const char* raw = archive_entry_pathname(e);
    if (raw == nullptr) return fail(source_, "entry without a path");
    BERTH_ASSIGN(auto comps, components(raw, raw, ""));
    if (comps.empty()) return {};
    auto type = archive_entry_filetype(e);
    if (type == AE_IFCHR || type == AE_IFBLK) {
      return fail(source_, "entry {:?}: device node refused (a rootfs may not ship devices)", raw);
    }
    if (const char* link = archive_entry_hardlink(e)) {
      BERTH_ASSIGN(auto target, components(raw, link, "hardlink target: "));
      BERTH_TRY(no_symlink_parent(raw, target, target.size()));
    }
    BERTH_TRY(no_symlink_parent(raw, comps, comps.size() - 1));
    std::string path = join_path(comps, comps.size());
    if (type == AE_IFLNK && archive_entry_hardlink(e) == nullptr) {
      symlinks_.insert(path);
    } else {
      symlinks_.erase(path);
    }
    return {};
  }

 private:
  Result<std::vector<std::string>> components(std::string_view entry, std::string_view path,
                                              std::string_view what) const {
    if (path.starts_with('/')) return fail(source_, "entry {:?}: {}absolute path", entry, what);
    auto comps = split_path(path);
    if (std::ranges::find(comps, "..") != comps.end()) {
      return fail(source_, "entry {:?}: {}path contains \"..\"", entry, what);
    }
    return comps;
  }

  Result<void> no_symlink_parent(std::string_view entry, const std::vector<std::string>& comps,
                                 size_t n) const {
    for (size_t i = 1; i <= n; ++i) {
      std::string parent = join_path(comps, i);
      if (symlinks_.contains(parent)) {
        return fail(source_, "entry {:?}: goes through {:?}, a symlink an earlier entry made",
                    entry, parent);
      }
    }
    return {};
  }

  std::string source_;
  std::unordered_set<std::string> symlinks_;
};

// One pass over a rootfs tarball. Reader `decompress` (any filter, "raw"
// format) pulls the file through read_file(), which copies every byte into
// `raw`; reader `tar` pulls the decompressed stream through read_plain(),
// which hashes it (the diff_id) and, for a compression OCI has no media type
// for (xz, bzip2, ...), writes it to `plain` instead, so the layer is stored
// uncompressed.
struct TarballPipe {
  std::string source;
  int fd = -1;
  std::optional<BlobStore::Writer> raw;
  std::optional<BlobStore::Writer> plain;
  bool hash_plain = true;
  sha256_ctx diff;
  ReadArchive decompress;
  std::unique_ptr<char[]> buf{new char[kChunk]};
  std::optional<Error> failure;

  la_ssize_t failed(struct archive* a, Error e) {
    archive_set_error(a, e.err ? e.err : EIO, "%s", e.message.c_str());
    if (!failure) failure = std::move(e);
    return -1;
  }
};

la_ssize_t read_file(struct archive* a, void* ctx, const void** out) {
  auto* p = static_cast<TarballPipe*>(ctx);
  ssize_t n;
  do {
    n = ::read(p->fd, p->buf.get(), kChunk);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return p->failed(a, Error{std::string(kStep), errno, p->source + ": read"});
  if (n > 0 && p->raw) {
    if (auto r = p->raw->write(std::string_view(p->buf.get(), static_cast<size_t>(n))); !r) {
      return p->failed(a, r.error());
    }
  }
  *out = p->buf.get();
  return n;
}

la_ssize_t read_plain(struct archive* a, void* ctx, const void** out) {
  auto* p = static_cast<TarballPipe*>(ctx);
  const void* data;
  size_t len;
  la_int64_t offset;
  int rc = archive_read_data_block(p->decompress.get(), &data, &len, &offset);
  if (rc == ARCHIVE_EOF) return 0;
  if (rc != ARCHIVE_OK) {
    const char* why = archive_error_string(p->decompress.get());
    return p->failed(a, Error{std::string(kStep), archive_errno(p->decompress.get()),
                              fmt::format("{}: decompress: {}", p->source, why ? why : "?")});
  }
  if (p->hash_plain) sha256_update(&p->diff, len, static_cast<const uint8_t*>(data));
  if (p->plain) {
    if (auto r = p->plain->write(std::string_view(static_cast<const char*>(data), len)); !r) {
      return p->failed(a, r.error());
    }
  }
  *out = data;
  return static_cast<la_ssize_t>(len);
}

// Opens the decompressing reader and decides where the blob comes from.
Result<Compression> open_decompressor(BlobStore& blobs, TarballPipe& p) {
  p.decompress.reset(archive_read_new());
  if (!p.decompress) return fail(p.source, "archive_read_new failed");
  archive_read_support_filter_all(p.decompress.get());
  archive_read_support_format_raw(p.decompress.get());
  struct archive_entry* e;
  if (archive_read_open(p.decompress.get(), &p, nullptr, read_file, nullptr) != ARCHIVE_OK ||
      !header_ok(archive_read_next_header(p.decompress.get(), &e))) {
    if (p.failure) return within(p.source, *p.failure);
    return fail(p.source, "not a tar archive: {}", archive_error_string(p.decompress.get()));
  }
  // Filter 0 is the innermost; the last one is the plain file reader.
  int n = archive_filter_count(p.decompress.get());
  int code = archive_filter_code(p.decompress.get(), 0);
  if (n <= 1 || code == ARCHIVE_FILTER_NONE) {
    p.hash_plain = false;  // the blob's own digest is the diff_id
    return Compression::none;
  }
  if (n == 2 && (code == ARCHIVE_FILTER_GZIP || code == ARCHIVE_FILTER_ZSTD)) {
    return code == ARCHIVE_FILTER_GZIP ? Compression::gzip : Compression::zstd;
  }
  p.raw.reset();
  BERTH_ASSIGN(BlobStore::Writer w, blobs.writer());
  p.plain.emplace(std::move(w));
  return Compression::other;
}

// Reads the tar headers of the decompressed stream (checking each entry),
// then drains what follows the tar's end (padding) and the file's tail, so
// that blob and diff_id cover every byte.
Result<void> check_and_drain(TarballPipe& p) {
  ReadArchive tar(archive_read_new());
  if (!tar) return fail(p.source, "archive_read_new failed");
  archive_read_support_format_tar(tar.get());
  archive_read_support_format_empty(tar.get());
  if (archive_read_open(tar.get(), &p, nullptr, read_plain, nullptr) != ARCHIVE_OK) {
    if (p.failure) return within(p.source, *p.failure);
    return fail(p.source, "not a tar archive: {}", archive_error_string(tar.get()));
  }
  EntryChecker checker(p.source);
  struct archive_entry* e;
  int rc;
  while (header_ok(rc = archive_read_next_header(tar.get(), &e))) BERTH_TRY(checker.check(e));
  if (rc != ARCHIVE_EOF) {
    if (p.failure) return within(p.source, *p.failure);
    return fail(p.source, "not a tar archive: {}", archive_error_string(tar.get()));
  }
  const void* ignored;
  la_ssize_t n;
  while ((n = read_plain(tar.get(), &p, &ignored)) > 0) {
  }
  if (n < 0) return within(p.source, *p.failure);
  while (p.raw && (n = read_file(tar.get(), &p, &ignored)) > 0) {
  }
  if (n < 0) return within(p.source, *p.failure);
  return {};
}

Result<std::vector<Image>> import_rootfs_tarball(ImageStore& store, const std::string& path,
                                                 const ImportOptions& opts) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_fail(path, "open");
  (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);  // a hint only
  TarballPipe p;
  p.source = path;
  p.fd = fd.get();
  sha256_init(&p.diff);
  BERTH_ASSIGN(BlobStore::Writer raw, store.blobs().writer());
  p.raw.emplace(std::move(raw));
  BERTH_ASSIGN(Compression c, open_decompressor(store.blobs(), p));
  BERTH_TRY(check_and_drain(p));
  p.decompress.reset();
  BlobStore::Writer& w = p.raw ? *p.raw : *p.plain;
  uint64_t size = w.size();
  Result<Digest> blob = w.commit();
  if (!blob) return within(path, blob.error());
  report(opts.progress, *blob, ProgressEvent::Phase::done, size, size);
  Digest diff_id = p.hash_plain ? sha256_finish(p.diff) : *blob;
  Compression stored = c == Compression::other ? Compression::none : c;
  Descriptor layer{layer_media_type(stored), *blob, static_cast<int64_t>(size), {}, {}};
  return add_single_layer(store, layer, diff_id, path, opts);
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

// A directory written as an uncompressed tar straight into the store (the
// blob's digest is then its diff_id). Entries are sorted and carry no
// atime/ctime, so an unchanged tree gives the same digest. Symlinks are
// stored, never followed; hardlinks are found by (dev, ino); xattrs are kept
// except security.selinux (the host's labels) and system.* (ACLs).
class DirectoryTar {
 public:
  // `max_depth`: the store's UnpackLimits::max_depth (0: none). The walk
  // recurses and holds an fd per level, so a deeper tree is refused here,
  // as unpacking the layer would refuse it.
  DirectoryTar(std::string source, struct archive* a, uint32_t max_depth)
      : source_(std::move(source)), a_(a), max_depth_(max_depth) {}

  Result<void> walk(int dirfd, const std::string& rel, uint32_t depth = 0) {
    BERTH_ASSIGN(std::vector<std::string> names, list(dirfd, rel));
    if (max_depth_ != 0 && depth >= max_depth_ && !names.empty()) {
      return fail(where(rel + "/" + names.front()),
                  "deeper than {} levels (max_depth, --max-layer-depth)", max_depth_);
    }
    for (const std::string& name : names) {
      std::string child = rel.empty() ? name : rel + "/" + name;
      struct stat st;
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return sys_fail(where(child), "stat");
      }
      BERTH_TRY(add(dirfd, name, child, st, depth + 1));
    }
    return {};
  }

 private:
  std::string where(const std::string& rel) const { return source_ + "/" + rel; }

  Result<std::vector<std::string>> list(int dirfd, const std::string& rel) {
    int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0) return sys_fail(rel.empty() ? source_ : where(rel), "open");
    std::unique_ptr<DIR, DirCloser> d(::fdopendir(dup));
    if (!d) {
      ::close(dup);
      return sys_fail(rel.empty() ? source_ : where(rel), "fdopendir");
    }
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* de = ::readdir(d.get())) {
      std::string_view n = de->d_name;
      if (n != "." && n != "..") names.emplace_back(n);
      errno = 0;
    }
    if (errno != 0) return sys_fail(rel.empty() ? source_ : where(rel), "readdir");
    std::ranges::sort(names);
    return names;
  }

  Result<void> add(int dirfd, const std::string& name, const std::string& rel,
                   const struct stat& st, uint32_t depth) {
    if (S_ISSOCK(st.st_mode)) return {};  // tar cannot hold sockets; they are runtime state
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      return fail(where(rel), "device node refused (a rootfs may not ship devices)");
    }
    Entry e(archive_entry_new());
    archive_entry_copy_stat(e.get(), &st);
    archive_entry_unset_atime(e.get());
    archive_entry_unset_ctime(e.get());
    archive_entry_unset_birthtime(e.get());
    archive_entry_set_pathname(e.get(), rel.c_str());
    if (S_ISLNK(st.st_mode)) return add_symlink(e.get(), dirfd, name, rel, st);
    if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
      auto [it, first] = links_.try_emplace({st.st_dev, st.st_ino}, rel);
      if (!first) {
        archive_entry_set_hardlink(e.get(), it->second.c_str());
        archive_entry_set_size(e.get(), 0);
        return header(e.get(), rel);
      }
    }
    if (S_ISFIFO(st.st_mode)) return header(e.get(), rel);
    int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0);
    UniqueFd fd(::openat(dirfd, name.c_str(), flags));
    if (!fd) return sys_fail(where(rel), "open");
    BERTH_TRY(add_xattrs(e.get(), fd.get(), rel));
    BERTH_TRY(header(e.get(), rel));
    if (S_ISDIR(st.st_mode)) return walk(fd.get(), rel, depth);
    return data(fd.get(), rel, st.st_size);
  }

  Result<void> add_symlink(struct archive_entry* e, int dirfd, const std::string& name,
                           const std::string& rel, const struct stat& st) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
    if (n < 0) return sys_fail(where(rel), "readlink");
    if (static_cast<size_t>(n) >= target.size()) return fail(where(rel), "symlink changed");
    target.resize(static_cast<size_t>(n));
    archive_entry_set_symlink(e, target.c_str());
    archive_entry_set_size(e, 0);
    return header(e, rel);
  }

  Result<void> add_xattrs(struct archive_entry* e, int fd, const std::string& rel) {
    ssize_t len = ::flistxattr(fd, nullptr, 0);
    if (len < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) return {};
    if (len < 0) return sys_fail(where(rel), "listxattr");
    std::string names(static_cast<size_t>(len), '\0');
    len = ::flistxattr(fd, names.data(), names.size());
    if (len < 0) return sys_fail(where(rel), "listxattr");
    names.resize(static_cast<size_t>(len));
    for (size_t pos = 0; pos < names.size(); pos = names.find('\0', pos) + 1) {
      std::string key = names.c_str() + pos;
      if (key.empty() || key.starts_with("system.") || key == "security.selinux") continue;
      ssize_t vlen = ::fgetxattr(fd, key.c_str(), nullptr, 0);
      if (vlen < 0) return sys_fail(where(rel), "getxattr {}", key);
      std::string value(static_cast<size_t>(vlen), '\0');
      vlen = ::fgetxattr(fd, key.c_str(), value.data(), value.size());
      if (vlen < 0) return sys_fail(where(rel), "getxattr {}", key);
      archive_entry_xattr_add_entry(e, key.c_str(), value.data(), static_cast<size_t>(vlen));
    }
    return {};
  }

  Result<void> header(struct archive_entry* e, const std::string& rel) {
    if (archive_write_header(a_, e) < ARCHIVE_WARN) return archive_fail(rel, "write header");
    return {};
  }

  Result<void> archive_fail(const std::string& rel, std::string_view what) {
    return errno_error(kStep, archive_errno(a_), "{}: {}: {}", where(rel), what,
                       archive_error_string(a_));
  }

  // Exactly st_size bytes: a file that changes size while read would
  // otherwise corrupt the tar stream.
  Result<void> data(int fd, const std::string& rel, off_t size) {
    if (buf_ == nullptr) buf_.reset(new char[kChunk]);
    off_t left = size;
    while (left > 0) {
      ssize_t n = ::read(fd, buf_.get(), static_cast<size_t>(std::min<off_t>(left, kChunk)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return sys_fail(where(rel), "read");
      if (n == 0) return fail(where(rel), "file shrank while being read");
      if (archive_write_data(a_, buf_.get(), static_cast<size_t>(n)) != n) {
        return archive_fail(rel, "write data");
      }
      left -= n;
    }
    return {};
  }

  std::string source_;
  struct archive* a_;
  uint32_t max_depth_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
  std::unique_ptr<char[]> buf_;
};

struct TarSink {
  BlobStore::Writer* writer;
  std::optional<Error> failure;
};

la_ssize_t write_sink(struct archive* a, void* ctx, const void* buf, size_t len) {
  auto* s = static_cast<TarSink*>(ctx);
  if (auto r = s->writer->write(std::string_view(static_cast<const char*>(buf), len)); !r) {
    archive_set_error(a, r.error().err ? r.error().err : EIO, "%s", r.error().message.c_str());
    s->failure = r.error();
    return -1;
  }
  return static_cast<la_ssize_t>(len);
}

Result<std::vector<Image>> import_rootfs_dir(ImageStore& store, const std::string& dir,
                                             const ImportOptions& opts) {
  UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_fail(dir, "open");
  BERTH_ASSIGN(BlobStore::Writer w, store.blobs().writer());
  TarSink sink{&w, {}};
  WriteArchive a(archive_write_new());
  if (!a) return fail(dir, "archive_write_new failed");
  archive_write_set_format_pax_restricted(a.get());
  archive_write_add_filter_none(a.get());
  archive_write_set_bytes_per_block(a.get(), 1 << 16);
  archive_write_set_bytes_in_last_block(a.get(), 1);
  if (archive_write_open(a.get(), &sink, nullptr, write_sink, nullptr) != ARCHIVE_OK) {
    return fail(dir, "open tar writer: {}", archive_error_string(a.get()));
  }
  DirectoryTar tar(dir, a.get(), store.unpack_limits().max_depth);
  Result<void> walked = tar.walk(root.get(), "");
  if (!walked) {
    if (sink.failure) return within(dir, *sink.failure);
    return std::unexpected(walked.error());
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    if (sink.failure) return within(dir, *sink.failure);
    return fail(dir, "finish tar: {}", archive_error_string(a.get()));
  }
  uint64_t size = w.size();
  Result<Digest> blob = w.commit();
  if (!blob) return within(dir, blob.error());
  report(opts.progress, *blob, ProgressEvent::Phase::done, size, size);
  Descriptor layer{std::string(media::oci_layer), *blob, static_cast<int64_t>(size), {}, {}};
  return add_single_layer(store, layer, *blob, dir, opts);
}

// ---- format detection ------------------------------------------------------------------------

// A tar's kind from its member names (headers only; data is skipped): a
// member "oci-layout" makes an OCI layout, "manifest.json" a docker archive,
// unless a member no image archive has ("bin/sh", "etc/") shows it is a root
// filesystem; that usually shows at the first member, so a rootfs costs one
// header. Not a tar at all is the error.
Result<ImportFormat> detect_tar(const std::string& path) {
  ReadArchive a(archive_read_new());
  if (!a) return fail(path, "archive_read_new failed");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return fail(path, "not an OCI layout, docker archive or rootfs: {}",
                archive_error_string(a.get()));
  }
  bool docker = false;
  struct archive_entry* e;
  int rc;
  while (header_ok(rc = archive_read_next_header(a.get(), &e))) {
    const char* raw = archive_entry_pathname(e);
    std::optional<std::string> name = clean_member(raw ? raw : "");
    if (!name || !archive_like(*name)) return ImportFormat::rootfs;
    if (*name == "oci-layout") return ImportFormat::oci_layout;
    if (*name == "manifest.json") docker = true;
  }
  if (rc != ARCHIVE_EOF) {
    return fail(path, "not an OCI layout, docker archive or rootfs: {}",
                archive_error_string(a.get()));
  }
  return docker ? ImportFormat::docker_archive : ImportFormat::rootfs;
}

struct Source {
  ImportFormat format;
  bool directory;
};

Result<Source> detect(const std::string& path, ImportFormat wanted) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return sys_fail(path, "stat");
  if (S_ISDIR(st.st_mode)) {
    if (wanted == ImportFormat::docker_archive) {
      return fail(path, "a directory: docker archives are tar files");
    }
    if (wanted != ImportFormat::automatic) return Source{wanted, true};
    std::string marker = path + "/oci-layout";
    bool layout = ::lstat(marker.c_str(), &st) == 0;
    return Source{layout ? ImportFormat::oci_layout : ImportFormat::rootfs, true};
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(path, "not an OCI layout, docker archive or rootfs: not a file or directory");
  }
  if (wanted != ImportFormat::automatic) return Source{wanted, false};
  BERTH_ASSIGN(ImportFormat f, detect_tar(path));
  return Source{f, false};
}

}  // namespace

const char* import_format_name(ImportFormat f) {
  switch (f) {
    case ImportFormat::automatic:
      return "automatic";
    case ImportFormat::oci_layout:
      return "oci-layout";
    case ImportFormat::docker_archive:
      return "docker-archive";
    case ImportFormat::rootfs:
      return "rootfs";
  }
  return "?";
}

Result<ImportResult> import_image(ImageStore& store, const std::string& path,
                                  const ImportOptions& opts) {
  // Shared: prune (exclusive) must not collect the blobs this import has put
  // but not yet registered.
  BERTH_ASSIGN(ImageStore::SharedLock lock, store.lock_shared());
  BERTH_ASSIGN(Source src, detect(path, opts.format));
  ImportResult result;
  result.format = src.format;
  Result<std::vector<Image>> images;
  switch (src.format) {
    case ImportFormat::oci_layout:
      images = src.directory ? import_layout_dir(store, path, opts)
                             : import_layout_archive(store, path, opts);
      break;
    case ImportFormat::docker_archive:
      images = import_docker_archive(store, path, opts);
      break;
    case ImportFormat::rootfs:
    case ImportFormat::automatic:  // detect() never leaves it automatic
      images = src.directory ? import_rootfs_dir(store, path, opts)
                             : import_rootfs_tarball(store, path, opts);
      break;
  }
  if (!images) return std::unexpected(images.error());
  result.images = std::move(*images);
  return result;
}

}  // namespace berth::rootfs
