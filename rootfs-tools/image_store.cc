#include "rootfs-tools/image_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <set>

#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "rootfs-tools/reference.h"
#include "rootfs-tools/unpack.h"

namespace berth::rootfs {
namespace {

using json = nlohmann::json;

constexpr std::string_view kStep = "image store";
constexpr int kIndexVersion = 1;

// One image in index.json.
struct Record {
  Digest digest;
  std::vector<std::string> names;
  std::string added;
};

std::string now_rfc3339() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  char buf[32];
  ::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t);
  return buf;
}

Result<UniqueFd> flock_file(const std::string& path, int op) {
  int raw = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (raw < 0) return sys_error(kStep, "open lock {}", path);
  UniqueFd fd(raw);
  while (::flock(fd.get(), op) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return sys_error(kStep, "lock {} is held", path);
    return sys_error(kStep, "flock {}", path);
  }
  return fd;
}

bool valid_container_id(std::string_view id) {
  if (id.empty() || id.size() > 128 || id.front() == '.') return false;
  return std::ranges::all_of(id, [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

bool is_mount_point(const std::string& path) {
  struct stat st, parent;
  if (::lstat(path.c_str(), &st) != 0) return false;
  std::string up = path + "/..";
  if (::stat(up.c_str(), &parent) != 0) return false;
  return st.st_dev != parent.st_dev || st.st_ino == parent.st_ino;
}

// Unmounts `path` if something is mounted there. A busy filesystem (held by
// a mount namespace that copied it) is detached lazily.
Result<void> unmount_if_mounted(const std::string& path) {
  if (!is_mount_point(path)) return {};
  if (::umount2(path.c_str(), UMOUNT_NOFOLLOW) == 0) return {};
  if (errno == EBUSY && ::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) return {};
  if (errno == EINVAL || errno == ENOENT) return {};
  return sys_error(kStep, "unmount {}", path);
}

// Runs a program and waits; its stderr is returned in the error. Spawned
// with posix_spawnp and everything built beforehand: nothing allocates
// between fork and exec, which matters once the caller has threads.
Result<void> run_program(const std::vector<std::string>& argv) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return sys_error(kStep, "pipe");
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  if (int rc = ::posix_spawn_file_actions_init(&actions); rc != 0) {
    return errno_error(kStep, rc, "posix_spawn_file_actions_init");
  }
  std::unique_ptr<posix_spawn_file_actions_t, int (*)(posix_spawn_file_actions_t*)> guard(
      &actions, ::posix_spawn_file_actions_destroy);
  int rc = ::posix_spawn_file_actions_adddup2(&actions, wr.get(), 2);
  if (rc == 0) rc = ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDWR, 0);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&actions, 0, 1);
  if (rc != 0) return errno_error(kStep, rc, "posix_spawn file actions for {}", argv[0]);
  pid_t pid = -1;
  rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  if (rc == ENOENT) return error(kStep, "{} could not be run (is it installed?)", argv[0]);
  if (rc != 0) return errno_error(kStep, rc, "spawn {}", argv[0]);
  wr.reset();
  std::string err;
  char buf[512];
  ssize_t n;
  while ((n = ::read(rd.get(), buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (err.size() < 4096) err.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  while (!err.empty() && std::isspace(static_cast<unsigned char>(err.back()))) err.pop_back();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return error(kStep, "{} could not be run (is it installed?)", argv[0]);
  }
  return error(kStep, "{} failed ({}){}{}", argv[0],
               WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status))
                                 : fmt::format("signal {}", WTERMSIG(status)),
               err.empty() ? "" : ": ", err);
}

struct Loop {
  std::string dev;
  UniqueFd fd;  // keep open until mounted: AUTOCLEAR acts on the last close
};

// Attaches `image` to a free loop device that detaches itself when its last
// user (the mount) goes away.
Result<Loop> attach_loop(const std::string& image) {
  BERTH_ASSIGN(UniqueFd ctl, fs::open("/dev/loop-control", O_RDWR));
  BERTH_ASSIGN(UniqueFd file, fs::open(image, O_RDWR));
  for (int attempt = 0; attempt < 16; ++attempt) {
    int n = ::ioctl(ctl.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return sys_error(kStep, "LOOP_CTL_GET_FREE");
    std::string dev = fmt::format("/dev/loop{}", n);
    int raw = ::open(dev.c_str(), O_RDWR | O_CLOEXEC);
    if (raw < 0) return sys_error(kStep, "open {}", dev);
    UniqueFd loop(raw);
    loop_config cfg{};
    cfg.fd = static_cast<uint32_t>(file.get());
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &cfg) == 0) return Loop{dev, std::move(loop)};
    if (errno == EBUSY) continue;  // taken between GET_FREE and CONFIGURE
    return sys_error(kStep, "LOOP_CONFIGURE {} with {}", dev, image);
  }
  return error(kStep, "no free loop device for {} after 16 attempts", image);
}

json record_json(const Record& r) {
  return {{"digest", r.digest.str()}, {"names", r.names}, {"added", r.added}};
}

}  // namespace

// ---------------------------------------------------------------------------

class IndexFile {
 public:
  static Result<std::vector<Record>> read(const std::string& path) {
    std::vector<Record> out;
    if (!fs::exists(path)) return out;
    BERTH_ASSIGN(std::string text, fs::read_file(path));
    BERTH_ASSIGN(json j, parse_json(text, path));
    auto corrupt = [&](std::string_view why) {
      return error(kStep, "{} is corrupt: {}", path, why);
    };
    auto version = j.find("version");
    if (version == j.end() || !version->is_number_integer() ||
        version->get<int64_t>() != kIndexVersion) {
      return corrupt(fmt::format("want version {}", kIndexVersion));
    }
    auto images = j.find("images");
    if (images == j.end() || !images->is_array()) return corrupt("no images array");
    for (const json& e : *images) {
      Record r;
      auto digest = e.find("digest");
      if (digest == e.end() || !digest->is_string()) return corrupt("an image without digest");
      BERTH_ASSIGN(r.digest, Digest::parse(digest->get<std::string>()));
      auto names = e.find("names");
      if (names != e.end() && names->is_array()) {
        for (const json& n : *names) {
          if (n.is_string()) r.names.push_back(n.get<std::string>());
        }
      }
      if (auto added = e.find("added"); added != e.end() && added->is_string()) {
        r.added = added->get<std::string>();
      }
      out.push_back(std::move(r));
    }
    return out;
  }

  static Result<void> write(const std::string& path, const std::vector<Record>& records) {
    json images = json::array();
    for (const Record& r : records) images.push_back(record_json(r));
    json j = {{"version", kIndexVersion}, {"images", images}};
    return fs::write_file_atomic(path, j.dump(2) + "\n", 0644, fs::Durable::yes);
  }
};

ImageStore::ImageStore(std::string root) : root_(std::move(root)), blobs_(root_) {}

namespace {

std::string index_path(const std::string& root) {
  return fs::join(root, "index.json");
}
std::string layers_dir(const std::string& root) {
  return fs::join(root, "layers");
}
std::string containers_dir(const std::string& root) {
  return fs::join(root, "containers");
}
std::string layer_lock_path(const std::string& root, const Digest& d) {
  return fs::join(root, "locks/layer-" + d.hex);
}

template <class F>
Result<void> for_each_name(const std::string& dir, F&& f) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return {};
    return sys_error(kStep, "opendir {}", dir);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  std::ranges::sort(names);
  for (const std::string& n : names) BERTH_TRY(f(n));
  return {};
}

}  // namespace

Result<void> ImageStore::init() {
  BERTH_TRY(fs::mkdir_p(root_, 0700));
  BERTH_TRY(blobs_.init());
  BERTH_TRY(fs::mkdir_p(layers_dir(root_), 0755));
  BERTH_TRY(fs::mkdir_p(containers_dir(root_), 0711));
  BERTH_TRY(blobs_.recover());
  // Half-unpacked layers of crashed writers (layers/.tmp-<hex>-*) and
  // half-removed ones (.del-<hex>), whose layer lock nobody holds. Clearing
  // them is housekeeping: a leftover that cannot be removed (whatever it
  // holds) is logged and left for the next prune, never a reason for the
  // store not to open.
  auto clear = [&](const std::string& n) {
    if (auto r = fs::remove_all(fs::join(layers_dir(root_), n)); !r) {
      log::warn("image store: leaving {} for later: {}", fs::join(layers_dir(root_), n),
                r.error().str());
    }
  };
  return for_each_name(layers_dir(root_), [&](const std::string& n) -> Result<void> {
    if (!n.starts_with(".tmp-") && !n.starts_with(".del-")) return {};
    std::string hex = n.substr(5, 64);
    Result<Digest> d = Digest::from_hex(hex);
    if (!d) {
      clear(n);
      return {};
    }
    int raw = ::open(layer_lock_path(root_, *d).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (raw < 0) return sys_error(kStep, "open {}", layer_lock_path(root_, *d));
    UniqueFd lock(raw);
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) return {};  // being unpacked now
    clear(n);
    return {};
  });
}

Result<ImageStore::SharedLock> ImageStore::lock_shared() {
  BERTH_ASSIGN(UniqueFd fd, flock_file(fs::join(root_, "gc.lock"), LOCK_SH));
  return SharedLock(std::move(fd));
}

std::string ImageStore::layer_dir(const Digest& layer) const {
  return fs::join(layers_dir(root_), layer.hex + "/root");
}

bool ImageStore::has_layer(const Digest& layer) const {
  return fs::exists(fs::join(layers_dir(root_), layer.hex));
}

Result<void> ImageStore::ensure_layers(const std::vector<Descriptor>& layers,
                                       const Progress& progress) {
  std::vector<std::string> lowers;
  for (const Descriptor& l : layers) {
    BERTH_ASSIGN(std::string dir, ensure_layer(l, progress, lowers));
    lowers.insert(lowers.begin(), dir);
  }
  return {};
}

Result<std::string> ImageStore::ensure_layer(const Descriptor& layer, const Progress& progress,
                                             const std::vector<std::string>& lowers) {
  const Digest& d = layer.digest;
  auto report = [&](ProgressEvent::Phase phase, std::string msg = {}) {
    if (progress) {
      progress(ProgressEvent{short_id(d), phase, 0, static_cast<uint64_t>(layer.size), msg});
    }
  };
  if (has_layer(d)) return layer_dir(d);
  BERTH_ASSIGN(UniqueFd lock, flock_file(layer_lock_path(root_, d), LOCK_EX));
  if (has_layer(d)) return layer_dir(d);  // unpacked by whoever held the lock
  if (!blobs_.has(d)) {
    return error(kStep, "layer {} cannot be unpacked: its blob is not in the store", d.str());
  }
  report(ProgressEvent::Phase::unpacking);
  std::string tmp = fs::join(layers_dir(root_), ".tmp-" + d.hex + "-XXXXXX");
  if (::mkdtemp(tmp.data()) == nullptr) return sys_error(kStep, "mkdtemp {}", tmp);
  ::chmod(tmp.c_str(), 0755);
  auto fail = [&](Error e) {
    (void)fs::remove_all(tmp);
    report(ProgressEvent::Phase::failed, e.str());
    return wrap(std::move(e), fmt::format("layer {}", d.str()));
  };
  std::string root = fs::join(tmp, "root");
  if (::mkdir(root.c_str(), 0755) != 0) return fail(sys_error(kStep, "mkdir {}", root).error());
  UnpackOptions opts;
  opts.whiteouts = WhiteoutMode::overlay;
  opts.lower_dirs = lowers;
  opts.limits = unpack_limits_;
  Result<UnpackStats> stats = unpack_layer(blobs_.path(d), root, opts);
  if (!stats) return fail(stats.error());
  if (auto w = fs::write_file_atomic(fs::join(tmp, "size"), std::to_string(stats->bytes), 0644,
                                     fs::Durable::no);
      !w) {
    return fail(w.error());
  }
  // The layer's files must be on disk before its name says it is complete.
  if (::syncfs(lock.get()) != 0) return fail(sys_error(kStep, "syncfs {}", root_).error());
  std::string final_dir = fs::join(layers_dir(root_), d.hex);
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    return fail(sys_error(kStep, "rename {} to {}", tmp, final_dir).error());
  }
  report(ProgressEvent::Phase::done);
  return layer_dir(d);
}

namespace {

Result<std::string> read_blob(const BlobStore& blobs, const Digest& d, std::string_view what) {
  if (!blobs.has(d)) return error(kStep, "{} {} is not in the store", what, d.str());
  return blobs.read(d);
}

}  // namespace

// Loads an image (manifest, config, sizes) from its record.
static Result<Image> load_image(const ImageStore& store, const Record& r) {
  Image img;
  img.digest = r.digest;
  img.names = r.names;
  img.added = r.added;
  BERTH_ASSIGN(std::string mtext, read_blob(store.blobs(), r.digest, "manifest"));
  BERTH_ASSIGN(img.manifest, parse_manifest(mtext));
  img.config_digest = img.manifest.config.digest;
  BERTH_ASSIGN(std::string ctext, read_blob(store.blobs(), img.config_digest, "image config"));
  BERTH_ASSIGN(img.config, parse_image_config(ctext));
  img.blob_size = mtext.size() + ctext.size();
  for (const Descriptor& l : img.manifest.layers) {
    img.blob_size += file_size(store.blobs().path(l.digest));
    std::string size_file = fs::join(fs::join(store.root(), "layers/" + l.digest.hex), "size");
    if (Result<std::string> s = fs::read_file(size_file); s && !s->empty()) {
      img.unpacked_size += std::strtoull(s->c_str(), nullptr, 10);
    }
  }
  return img;
}

Result<Image> ImageStore::add(const Digest& digest, const std::vector<std::string>& names,
                              const AddOptions& opts) {
  BERTH_ASSIGN(SharedLock shared, lock_shared());
  Digest manifest_digest = digest;
  BERTH_ASSIGN(std::string text, read_blob(blobs_, digest, "manifest"));
  BERTH_ASSIGN(DocumentKind kind, document_kind(text));
  if (kind == DocumentKind::index) {
    BERTH_ASSIGN(Index idx, parse_index(text));
    BERTH_ASSIGN(Descriptor chosen, select_platform(idx, opts.platform));
    manifest_digest = chosen.digest;
    BERTH_ASSIGN(text, read_blob(blobs_, manifest_digest, "manifest"));
  }
  BERTH_ASSIGN(Manifest m, parse_manifest(text));
  BERTH_ASSIGN(std::string ctext, read_blob(blobs_, m.config.digest, "image config"));
  BERTH_ASSIGN(ImageConfig config, parse_image_config(ctext));
  // A single-platform image must be of the platform asked for (an index
  // was resolved to it above).
  if (kind == DocumentKind::manifest && !config.architecture.empty() &&
      (config.os != opts.platform.os || config.architecture != opts.platform.architecture)) {
    Platform have{config.os, config.architecture, config.variant};
    return error(kStep, "image {} is for {}, not {} (choose the platform to use another)",
                 manifest_digest.str(), have.str(), opts.platform.str());
  }
  if (!config.diff_ids.empty() && config.diff_ids.size() != m.layers.size()) {
    return error(kStep, "image {}: the config lists {} layers (rootfs.diff_ids), the manifest {}",
                 manifest_digest.str(), config.diff_ids.size(), m.layers.size());
  }
  for (size_t i = 0; i < m.layers.size(); ++i) {
    if (!blobs_.has(m.layers[i].digest)) {
      return error(kStep, "image {}: layer {} of {} ({}) is not in the store",
                   manifest_digest.str(), i + 1, m.layers.size(), m.layers[i].digest.str());
    }
  }
  BERTH_TRY(ensure_layers(m.layers, opts.progress));

  std::vector<std::string> canonical;
  for (const std::string& n : names) {
    BERTH_ASSIGN(Reference ref, Reference::parse(n));
    canonical.push_back(ref.str());
  }
  {
    BERTH_ASSIGN(UniqueFd ilock, flock_file(fs::join(root_, "index.lock"), LOCK_EX));
    BERTH_ASSIGN(std::vector<Record> records, IndexFile::read(index_path(root_)));
    for (Record& r : records) {
      std::erase_if(r.names, [&](const std::string& n) {
        return r.digest != manifest_digest && std::ranges::find(canonical, n) != canonical.end();
      });
    }
    auto it = std::ranges::find(records, manifest_digest, &Record::digest);
    if (it == records.end()) {
      records.push_back(Record{manifest_digest, {}, now_rfc3339()});
      it = records.end() - 1;
    }
    for (const std::string& n : canonical) {
      if (std::ranges::find(it->names, n) == it->names.end()) it->names.push_back(n);
    }
    std::ranges::sort(it->names);
    BERTH_TRY(IndexFile::write(index_path(root_), records));
    return load_image(*this, *it);
  }
}

Result<std::vector<Image>> ImageStore::list() const {
  BERTH_ASSIGN(std::vector<Record> records, IndexFile::read(index_path(root_)));
  std::vector<Image> out;
  for (const Record& r : records) {
    BERTH_ASSIGN(Image img, load_image(*this, r));
    out.push_back(std::move(img));
  }
  return out;
}

namespace {

bool all_hex(std::string_view s) {
  return !s.empty() && std::ranges::all_of(s, [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

enum class MatchKind { name, digest };

struct Match {
  size_t index;
  MatchKind kind;
  std::string name;  // the canonical name matched (kind == name)
};

Result<Match> find_record(const std::vector<Record>& records, std::string_view ref,
                          const std::string& root) {
  auto not_found = [&]() {
    return error(kStep, "image {:?} not found in the store {}", ref, root);
  };
  // A full digest, or an id prefix.
  std::string_view hex;
  if (ref.starts_with("sha256:")) {
    hex = ref.substr(7);
    if (!all_hex(hex)) return error(kStep, "invalid image id {:?}", ref);
  } else if (all_hex(ref) && ref.size() >= 4) {
    hex = ref;
  }
  // Names first: "abcdef" may be a repository called abcdef.
  if (!ref.starts_with("sha256:")) {
    Result<Reference> parsed = Reference::parse(ref);
    if (parsed) {
      for (size_t i = 0; i < records.size(); ++i) {
        if (parsed->digest) {
          if (records[i].digest == *parsed->digest) return Match{i, MatchKind::digest, {}};
          continue;
        }
        std::string canonical = parsed->str();
        if (std::ranges::find(records[i].names, canonical) != records[i].names.end()) {
          return Match{i, MatchKind::name, canonical};
        }
      }
    } else if (hex.empty()) {
      return std::unexpected(parsed.error());
    }
  }
  if (hex.empty()) return not_found();
  if (hex.size() < 4)
    return error(kStep, "image id {:?} is too short (at least 4 hex digits)", ref);
  std::optional<size_t> found;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].digest.hex.starts_with(hex)) {
      if (found) return error(kStep, "image id {:?} is ambiguous: give more digits", ref);
      found = i;
    }
  }
  if (!found) return not_found();
  return Match{*found, MatchKind::digest, {}};
}

}  // namespace

Result<Image> ImageStore::resolve(std::string_view ref) const {
  BERTH_ASSIGN(std::vector<Record> records, IndexFile::read(index_path(root_)));
  BERTH_ASSIGN(Match m, find_record(records, ref, root_));
  return load_image(*this, records[m.index]);
}

Result<RemoveResult> ImageStore::remove(std::string_view ref) {
  BERTH_ASSIGN(UniqueFd gc, flock_file(fs::join(root_, "gc.lock"), LOCK_EX));
  BERTH_ASSIGN(UniqueFd ilock, flock_file(fs::join(root_, "index.lock"), LOCK_EX));
  BERTH_ASSIGN(std::vector<Record> records, IndexFile::read(index_path(root_)));
  BERTH_ASSIGN(Match m, find_record(records, ref, root_));
  RemoveResult out;
  Record& r = records[m.index];
  if (m.kind == MatchKind::name && r.names.size() > 1) {
    std::erase(r.names, m.name);
    out.untagged.push_back(m.name);
  } else {
    out.untagged = r.names;
    out.deleted = r.digest;
    records.erase(records.begin() + static_cast<ptrdiff_t>(m.index));
  }
  BERTH_TRY(IndexFile::write(index_path(root_), records));
  return out;
}

// ---------------------------------------------------------------------------
// Per-container root filesystems.

namespace {

struct ContainerMeta {
  Digest image;
  std::vector<Digest> layers;
  uint64_t size_limit = 0;
};

std::string meta_json(const ContainerMeta& m) {
  json layers = json::array();
  for (const Digest& d : m.layers) layers.push_back(d.str());
  json j = {{"image", m.image.str()}, {"layers", layers}, {"size_limit", m.size_limit}};
  return j.dump() + "\n";
}

Result<ContainerMeta> read_meta(const std::string& path) {
  BERTH_ASSIGN(std::string text, fs::read_file(path));
  BERTH_ASSIGN(json j, parse_json(text, path));
  ContainerMeta m;
  auto image = j.find("image");
  auto layers = j.find("layers");
  if (image == j.end() || !image->is_string() || layers == j.end() || !layers->is_array()) {
    return error(kStep, "{} is corrupt: want image and layers", path);
  }
  BERTH_ASSIGN(m.image, Digest::parse(image->get<std::string>()));
  for (const json& l : *layers) {
    if (!l.is_string()) return error(kStep, "{} is corrupt: a layer is not a string", path);
    BERTH_ASSIGN(Digest d, Digest::parse(l.get<std::string>()));
    m.layers.push_back(d);
  }
  if (auto lim = j.find("size_limit"); lim != j.end() && lim->is_number_unsigned()) {
    m.size_limit = lim->get<uint64_t>();
  }
  return m;
}

// The smallest ext4 that mkfs makes without complaint, and what its
// metadata takes on top of the data the limit is about.
constexpr uint64_t kMinLimit = 4ull << 20;

}  // namespace

Result<ContainerRootfs> ImageStore::mount_rootfs(std::string_view id, const Image& image,
                                                 const RootfsOptions& opts) {
  if (!valid_container_id(id)) {
    return error(kStep, "invalid container id {:?}: 1-128 of [A-Za-z0-9_.-], not starting with '.'",
                 id);
  }
  if (opts.size_limit != 0 && opts.size_limit < kMinLimit) {
    return error(kStep, "size limit {} bytes is below the minimum of {} bytes", opts.size_limit,
                 kMinLimit);
  }
  BERTH_ASSIGN(SharedLock shared, lock_shared());
  BERTH_TRY(ensure_layers(image.manifest.layers));

  std::string dir = fs::join(containers_dir(root_), std::string(id));
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) return error(kStep, "container {} already has a root filesystem", id);
    return sys_error(kStep, "mkdir {}", dir);
  }
  // From here on, any failure undoes everything made below `dir`.
  auto undo = [&](Error e) {
    (void)unmount_if_mounted(fs::join(dir, "rootfs"));
    (void)unmount_if_mounted(fs::join(dir, "disk"));
    (void)fs::remove_all(dir);
    return std::unexpected(std::move(e));
  };
  ContainerMeta meta{image.digest, {}, opts.size_limit};
  for (const Descriptor& l : image.manifest.layers) meta.layers.push_back(l.digest);
  // The record comes first, so that a crash after the mount leaves something
  // release_rootfs() and prune know about.
  if (auto w =
          fs::write_file_atomic(fs::join(dir, "meta.json"), meta_json(meta), 0600, fs::Durable::no);
      !w) {
    return undo(w.error());
  }
  std::string writable = dir;
  if (opts.size_limit != 0) {
    std::string img = fs::join(dir, "disk.img");
    std::string disk = fs::join(dir, "disk");
    int raw = ::open(img.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (raw < 0) return undo(sys_error(kStep, "create {}", img).error());
    UniqueFd f(raw);
    if (::ftruncate(f.get(), static_cast<off_t>(opts.size_limit)) != 0) {
      return undo(sys_error(kStep, "truncate {} to {} bytes", img, opts.size_limit).error());
    }
    f.reset();
    // No journal (scratch space that dies with the container), no reserved
    // blocks (the limit is the container's to use), lazy init: mkfs writes
    // little more than the superblock and group descriptors.
    if (auto r = run_program({"mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E",
                              "lazy_itable_init=1,nodiscard", img});
        !r) {
      return undo(r.error());
    }
    Result<Loop> loop = attach_loop(img);
    if (!loop) return undo(loop.error());
    if (::mkdir(disk.c_str(), 0700) != 0) {
      return undo(sys_error(kStep, "mkdir {}", disk).error());
    }
    if (::mount(loop->dev.c_str(), disk.c_str(), "ext4", MS_NOSUID | MS_NODEV, "") != 0) {
      // Closing loop->fd (AUTOCLEAR, never mounted) detaches the device.
      return undo(sys_error(kStep, "mount {} ({}) on {}", loop->dev, img, disk).error());
    }
    loop->fd.reset();  // the mount holds the device now
    writable = disk;
  }
  std::string upper = fs::join(writable, "upper");
  std::string work = fs::join(writable, "work");
  std::string merged = fs::join(dir, "rootfs");
  for (const std::string& p : {upper, work, merged}) {
    if (::mkdir(p.c_str(), 0755) != 0) return undo(sys_error(kStep, "mkdir {}", p).error());
  }
  std::string lower;
  for (auto it = image.manifest.layers.rbegin(); it != image.manifest.layers.rend(); ++it) {
    if (!lower.empty()) lower += ':';
    lower += layer_dir(it->digest);
  }
  if (lower.empty()) {
    // An image without layers: an empty lower dir (overlayfs needs one).
    std::string empty = fs::join(dir, "empty");
    if (::mkdir(empty.c_str(), 0755) != 0) {
      return undo(sys_error(kStep, "mkdir {}", empty).error());
    }
    lower = empty;
  }
  std::string options = fmt::format("lowerdir={},upperdir={},workdir={}", lower, upper, work);
  if (options.size() >= static_cast<size_t>(::getpagesize())) {
    return undo(error(kStep,
                      "the overlay options for {} layers take {} bytes, over the kernel's limit "
                      "of {}: use a store path that is shorter",
                      image.manifest.layers.size(), options.size(), ::getpagesize() - 1)
                    .error());
  }
  if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0) {
    return undo(
        sys_error(kStep, "mount overlay on {} ({} layers)", merged, image.manifest.layers.size())
            .error());
  }
  return ContainerRootfs{std::string(id), merged, image.digest, meta.layers, opts.size_limit};
}

Result<void> ImageStore::release_rootfs(std::string_view id) {
  if (!valid_container_id(id)) return error(kStep, "invalid container id {:?}", id);
  std::string dir = fs::join(containers_dir(root_), std::string(id));
  if (!fs::exists(dir)) return {};
  BERTH_TRY(unmount_if_mounted(fs::join(dir, "rootfs")));
  BERTH_TRY(unmount_if_mounted(fs::join(dir, "disk")));
  // remove_all refuses to cross into anything still mounted.
  return fs::remove_all(dir);
}

Result<std::vector<ContainerRootfs>> ImageStore::containers() const {
  std::vector<ContainerRootfs> out;
  BERTH_TRY(for_each_name(containers_dir(root_), [&](const std::string& n) -> Result<void> {
    std::string dir = fs::join(containers_dir(root_), n);
    Result<ContainerMeta> m = read_meta(fs::join(dir, "meta.json"));
    if (!m) {
      // A directory without a readable record (a crash between mkdir and
      // the record): listed with what is known, so release can clear it.
      out.push_back(ContainerRootfs{n, fs::join(dir, "rootfs"), {}, {}, 0});
      return {};
    }
    out.push_back(ContainerRootfs{n, fs::join(dir, "rootfs"), m->image, m->layers, m->size_limit});
    return {};
  }));
  return out;
}

Result<PruneStats> ImageStore::prune() {
  BERTH_ASSIGN(UniqueFd gc, flock_file(fs::join(root_, "gc.lock"), LOCK_EX));
  PruneStats stats;
  std::set<std::string> live_blobs, live_layers;
  BERTH_ASSIGN(std::vector<ContainerRootfs> users, containers());
  for (const ContainerRootfs& c : users) {
    for (const Digest& l : c.layers) {
      live_layers.insert(l.hex);
      live_blobs.insert(l.hex);
    }
  }
  {
    BERTH_ASSIGN(UniqueFd ilock, flock_file(fs::join(root_, "index.lock"), LOCK_EX));
    BERTH_ASSIGN(std::vector<Record> records, IndexFile::read(index_path(root_)));
    std::vector<Digest> images;
    for (const Record& r : records) images.push_back(r.digest);
    // A container keeps its image's manifest and config too, even after the
    // image was removed, so that what it runs can still be inspected.
    for (const ContainerRootfs& c : users) {
      if (!c.image.hex.empty()) images.push_back(c.image);
    }
    for (const Digest& d : images) {
      live_blobs.insert(d.hex);
      Result<std::string> text = blobs_.read(d);
      if (!text) continue;  // a broken image keeps nothing alive but itself
      Result<Manifest> m = parse_manifest(*text);
      if (!m) continue;
      live_blobs.insert(m->config.digest.hex);
      for (const Descriptor& l : m->layers) {
        live_blobs.insert(l.digest.hex);
        live_layers.insert(l.digest.hex);
      }
    }
  }
  BERTH_ASSIGN(std::vector<Digest> all, blobs_.list());
  for (const Digest& d : all) {
    if (live_blobs.contains(d.hex)) continue;
    uint64_t size = file_size(blobs_.path(d));
    BERTH_TRY(blobs_.remove(d));
    stats.blobs_removed++;
    stats.bytes_freed += size;
  }
  BERTH_TRY(for_each_name(layers_dir(root_), [&](const std::string& n) -> Result<void> {
    if (n.starts_with(".")) return {};
    if (!Digest::from_hex(n) || live_layers.contains(n)) return {};
    std::string dir = fs::join(layers_dir(root_), n);
    if (Result<std::string> s = fs::read_file(fs::join(dir, "size")); s) {
      stats.bytes_freed += std::strtoull(s->c_str(), nullptr, 10);
    }
    // Renamed away first: a crash in the middle of the removal must not leave
    // a half-removed layer under its name.
    std::string doomed = fs::join(layers_dir(root_), ".del-" + n);
    if (::rename(dir.c_str(), doomed.c_str()) != 0) return sys_error(kStep, "rename {}", dir);
    BERTH_TRY(fs::remove_all(doomed));
    stats.layers_removed++;
    return {};
  }));
  BERTH_TRY(blobs_.recover(/*drop_partials=*/true));
  return stats;
}

}  // namespace berth::rootfs
