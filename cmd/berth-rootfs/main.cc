// berth-rootfs: the image tool over rootfs-tools. Imports and pulls images
// into an image store, lists, inspects and removes them, and mounts the
// overlay root filesystem of a container, for operators and tests.
//
//   berth-rootfs [--store DIR] [--log FILE] [--debug] COMMAND ...
//
// Exit codes: 0 success, 1 a command failed (the reason on stderr as
// "berth-rootfs: <what failed>: <error>"), 2 a usage error. CLI11 reports
// usage errors with exceptions, caught here; rootfs-tools itself never
// throws.
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/log.h"
#include "rootfs-tools/image.h"
#include "rootfs-tools/image_store.h"
#include "rootfs-tools/import.h"
#include "rootfs-tools/reference.h"
#include "rootfs-tools/registry.h"

namespace rfs = berth::rootfs;
using berth::Error;
using berth::Result;
// Ordered: JSON output keeps the fields in the order written here.
using Json = nlohmann::ordered_json;

namespace {

constexpr const char* kDefaultStore = "/var/lib/berth/rootfs";

// ---- output helpers ----------------------------------------------------------

// Set when --log names a file: the log gets failures too.
bool g_log_to_file = false;

int fail(const std::string& what, const Error& e) {
  std::string text = e.str();
  // Without --log the logger writes to stderr as well: one line is enough.
  if (g_log_to_file) {
    berth::log::error("{}: {}", what, text);
    berth::log::flush();
  }
  std::fprintf(stderr, "berth-rootfs: %s: %s\n", what.c_str(), text.c_str());
  return 1;
}

int print_json(const Json& j) {
  // Names and labels come from images: never abort on bad UTF-8 in them.
  std::printf("%s\n", j.dump(2, ' ', false, Json::error_handler_t::replace).c_str());
  return 0;
}

// 1536 -> "1.5 KiB"; `sep` goes between number and unit ("" in progress
// bars, as docker writes "12.3MB/40MB").
std::string human_size(uint64_t bytes, const char* sep = " ") {
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{}{}B", bytes, sep);
  double v = static_cast<double>(bytes) / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f}{}{}", v, sep, units[u]);
}

// "20GiB", "512M", "1.5g", "1000000" -> bytes. Binary units (K, KiB, M, ...)
// are powers of 1024, "KB", "MB", ... powers of 1000.
std::optional<uint64_t> parse_size(const std::string& s) {
  size_t n = s.find_first_not_of("0123456789.");
  std::string number = s.substr(0, n), unit = n == std::string::npos ? "" : s.substr(n);
  char* end = nullptr;
  double v = std::strtod(number.c_str(), &end);
  if (number.empty() || *end != '\0') return std::nullopt;
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::map<std::string, double> scale = {
      {"", 1.0},     {"b", 1.0},      {"k", 0x1p10},   {"kib", 0x1p10}, {"kb", 1e3},
      {"m", 0x1p20}, {"mib", 0x1p20}, {"mb", 1e6},     {"g", 0x1p30},   {"gib", 0x1p30},
      {"gb", 1e9},   {"t", 0x1p40},   {"tib", 0x1p40}, {"tb", 1e12}};
  auto it = scale.find(unit);
  if (it == scale.end() || v * it->second >= 0x1p64) return std::nullopt;
  return static_cast<uint64_t>(v * it->second);
}

std::string absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof cwd) == nullptr) return path;
  return path.empty() || path == "." ? std::string(cwd) : berth::fs::join(cwd, path);
}

// "docker.io/library/busybox:latest" -> "busybox:latest", as docker shows
// names; the canonical form is what the store keeps and what --output json
// prints.
std::string familiar_name(const std::string& name) {
  for (std::string_view prefix : {"docker.io/library/", "docker.io/"})
    if (name.rfind(prefix, 0) == 0) return name.substr(prefix.size());
  return name;
}

// RFC 3339 ("2024-05-01T12:00:00.123456Z", "...+02:00") -> seconds since
// the epoch; nullopt when it is not that.
std::optional<time_t> parse_rfc3339(const std::string& s) {
  struct tm tm {};
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = ::timegm(&tm);
  size_t i = static_cast<size_t>(consumed);
  if (i < s.size() && s[i] == '.')
    while (++i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    }
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int hh = 0, mm = 0;
    if (std::sscanf(s.c_str() + i + 1, "%2d:%2d", &hh, &mm) != 2) return std::nullopt;
    long offset = (hh * 60L + mm) * 60L;
    t -= s[i] == '+' ? offset : -offset;
  } else if (i >= s.size() || (s[i] != 'Z' && s[i] != 'z')) {
    return std::nullopt;
  }
  return t;
}

// "3 days ago", as `docker images` shows CREATED.
std::string time_ago(const std::string& rfc3339) {
  auto t = parse_rfc3339(rfc3339);
  if (!t) return "N/A";
  long d = static_cast<long>(std::time(nullptr) - *t);
  if (d < 0) return "in the future";
  auto ago = [](long n, const char* unit) {
    return fmt::format("{} {}{} ago", n, unit, n == 1 ? "" : "s");
  };
  if (d < 60) return ago(d, "second");
  if (d < 3600) return ago(d / 60, "minute");
  if (d < 86400) return ago(d / 3600, "hour");
  if (d < 14 * 86400) return ago(d / 86400, "day");
  if (d < 60 * 86400) return ago(d / (7 * 86400), "week");
  if (d < 365 * 86400) return ago(d / (30 * 86400), "month");
  return ago(d / (365 * 86400), "year");
}

// Columns padded to their widest cell, two spaces apart.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

// ---- progress ------------------------------------------------------------------

const char* phase_label(rfs::ProgressEvent::Phase p) {
  using P = rfs::ProgressEvent::Phase;
  switch (p) {
    case P::waiting:
      return "Waiting";
    case P::downloading:
      return "Downloading";
    case P::verifying:
      return "Verifying Checksum";
    case P::unpacking:
      return "Extracting";
    case P::done:
      return "Download complete";  // "Pull complete" once unpacked
    case P::exists:
      return "Already exists";
    case P::failed:
      return "Failed";
  }
  return "?";
}

// "[=========>          ] 12.3MiB/40.0MiB"
std::string progress_bar(uint64_t current, uint64_t total) {
  constexpr size_t kWidth = 50;
  if (total == 0) return human_size(current, "");
  size_t filled = static_cast<size_t>(std::min<uint64_t>(current, total) * kWidth / total);
  std::string bar = std::string(filled, '=');
  if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
  return fmt::format("[{}] {}/{}", bar, human_size(current, ""), human_size(total, ""));
}

// Shows progress events of a pull or import. On a terminal, one line per
// blob, redrawn in place (cursor up, erase line), at most every 100 ms
// unless a blob changes phase. Elsewhere (a log, a pipe), one plain line per
// phase change, so a 1 GiB layer is one "Downloading" line, not thousands.
// Events come from the library's download threads: everything is under mu_.
class ProgressDisplay {
 public:
  explicit ProgressDisplay(bool tty) : tty_(tty) {
    struct winsize ws {};
    if (tty_ && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols_ = ws.ws_col;
  }

  rfs::Progress callback() {
    return [this](const rfs::ProgressEvent& e) { on_event(e); };
  }

  // The final state of every line, once the work is over.
  void finish() {
    std::lock_guard lock(mu_);
    if (tty_) redraw_locked();
  }

 private:
  // A blob's latest event; `unpacked` once it went through unpacking, so
  // that its "done" reads "Pull complete" rather than "Download complete".
  struct Row {
    rfs::ProgressEvent last;
    bool unpacked = false;
  };

  void on_event(const rfs::ProgressEvent& e) {
    if (e.id.empty()) return;
    std::lock_guard lock(mu_);
    auto it =
        std::find_if(rows_.begin(), rows_.end(), [&](const Row& r) { return r.last.id == e.id; });
    bool is_new = it == rows_.end();
    if (is_new) it = rows_.insert(rows_.end(), Row{e});
    bool phase_changed = is_new || it->last.phase != e.phase;
    it->last = e;
    if (e.phase == rfs::ProgressEvent::Phase::unpacking) it->unpacked = true;
    if (!tty_) {
      if (phase_changed) std::printf("%s\n", line(*it).c_str());
      std::fflush(stdout);
      return;
    }
    auto now = std::chrono::steady_clock::now();
    if (phase_changed || now - last_draw_ >= std::chrono::milliseconds(100)) {
      redraw_locked();
      last_draw_ = now;
    }
  }

  std::string line(const Row& r) const {
    using P = rfs::ProgressEvent::Phase;
    const rfs::ProgressEvent& e = r.last;
    std::string s = e.id + ": ";
    s += e.phase == P::done && r.unpacked ? "Pull complete" : phase_label(e.phase);
    if (e.phase == P::failed && !e.message.empty()) s += ": " + e.message;
    bool moving = e.phase == P::downloading || e.phase == P::unpacking;
    if (moving && tty_) s += " " + progress_bar(e.current, e.total);
    if (moving && !tty_ && e.total > 0) s += " " + human_size(e.total);
    return s;
  }

  void redraw_locked() {
    std::string out;
    if (drawn_ > 0) out += fmt::format("\x1b[{}A", drawn_);
    for (const auto& r : rows_) {
      std::string l = line(r);
      // A wrapped line would throw the cursor-up count off.
      if (l.size() >= cols_) l.resize(cols_ - 1);
      out += "\r\x1b[2K" + l + "\n";
    }
    drawn_ = rows_.size();
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
  }

  bool tty_;
  size_t cols_ = 80;
  std::mutex mu_;
  std::vector<Row> rows_;  // one per blob, in order of appearance
  size_t drawn_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

// ---- JSON views of images ---------------------------------------------------------

Json descriptor_json(const rfs::Descriptor& d) {
  Json j = {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
  if (d.platform) j["platform"] = d.platform->str();
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  return j;
}

Json config_json(const rfs::ImageConfig& c) {
  Json diff_ids = Json::array();
  for (const auto& d : c.diff_ids) diff_ids.push_back(d.str());
  return {{"os", c.os},
          {"architecture", c.architecture},
          {"variant", c.variant},
          {"created", c.created},
          {"entrypoint", c.entrypoint},
          {"cmd", c.cmd},
          {"env", c.env},
          {"workingDir", c.working_dir},
          {"user", c.user},
          {"stopSignal", c.stop_signal},
          {"exposedPorts", c.exposed_ports},
          {"volumes", c.volumes},
          {"labels", c.labels},
          {"diffIds", diff_ids}};
}

// Bytes an unpacked layer takes, as the store recorded in layers/<hex>/size.
std::optional<uint64_t> layer_disk_usage(const rfs::ImageStore& store, const rfs::Digest& d) {
  auto text = berth::fs::read_file(store.root() + "/layers/" + d.hex + "/size");
  if (!text) return std::nullopt;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text->c_str(), &end, 10);
  if (end == text->c_str()) return std::nullopt;
  return v;
}

Json summary_json(const rfs::Image& img) {
  return {
      {"id", short_id(img.digest)},
      {"digest", img.digest.str()},
      {"names", img.names},
      {"created", img.config.created},
      {"added", img.added},
      {"platform", rfs::Platform{img.config.os, img.config.architecture, img.config.variant}.str()},
      {"layers", img.manifest.layers.size()},
      {"size", img.blob_size},
      {"unpackedSize", img.unpacked_size}};
}

Json inspect_json(const rfs::ImageStore& store, const rfs::Image& img) {
  Json manifest = {{"mediaType", img.manifest.media_type},
                   {"config", descriptor_json(img.manifest.config)},
                   {"layers", Json::array()}};
  if (!img.manifest.annotations.empty()) manifest["annotations"] = img.manifest.annotations;
  Json layers = Json::array();
  for (size_t i = 0; i < img.manifest.layers.size(); ++i) {
    const auto& l = img.manifest.layers[i];
    manifest["layers"].push_back(descriptor_json(l));
    Json layer = {{"digest", l.digest.str()}, {"mediaType", l.media_type}, {"size", l.size}};
    if (i < img.config.diff_ids.size()) layer["diffId"] = img.config.diff_ids[i].str();
    if (auto du = layer_disk_usage(store, l.digest)) layer["unpackedSize"] = *du;
    layers.push_back(std::move(layer));
  }
  return {{"id", short_id(img.digest)},
          {"digest", img.digest.str()},
          {"names", img.names},
          {"added", img.added},
          {"configDigest", img.config_digest.str()},
          {"manifest", std::move(manifest)},
          {"config", config_json(img.config)},
          {"layers", std::move(layers)},
          {"size", img.blob_size},
          {"unpackedSize", img.unpacked_size}};
}

// ---- commands -----------------------------------------------------------------------

struct ImportArgs {
  std::string path;
  std::vector<std::string> names;
  std::string format = "auto";
  std::string platform;
};

struct PullArgs {
  std::string ref;
  std::string creds;
  std::vector<std::string> insecure;
  std::string platform;
  int parallel = 4;
};

// --name values as the canonical references the store keeps; the error
// names the value.
Result<std::vector<std::string>> canonical_names(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    auto ref = rfs::Reference::parse(n);
    if (!ref) return std::unexpected(ref.error());
    out.push_back(ref->str());
  }
  return out;
}

Result<rfs::Platform> platform_or_host(const std::string& s) {
  if (s.empty()) return rfs::host_platform();
  return rfs::Platform::parse(s);
}

rfs::ImportFormat import_format(const std::string& s) {
  if (s == "oci-layout") return rfs::ImportFormat::oci_layout;
  if (s == "docker-archive") return rfs::ImportFormat::docker_archive;
  if (s == "rootfs") return rfs::ImportFormat::rootfs;
  return rfs::ImportFormat::automatic;
}

int cmd_import(rfs::ImageStore& store, const ImportArgs& a) {
  std::string what = "import " + a.path;
  rfs::ImportOptions opts;
  opts.format = import_format(a.format);
  auto names = canonical_names(a.names);
  if (!names) return fail(what, names.error());
  opts.names = std::move(*names);
  auto platform = platform_or_host(a.platform);
  if (!platform) return fail(what, platform.error());
  opts.platform = *platform;
  // Unpacking a large image takes a while: show it on a terminal only, so
  // that scripts read just the result lines.
  std::optional<ProgressDisplay> progress;
  if (::isatty(STDOUT_FILENO)) {
    progress.emplace(true);
    opts.progress = progress->callback();
  }
  auto r = rfs::import_image(store, absolute(a.path), opts);
  if (progress) progress->finish();
  if (!r) return fail(what, r.error());
  for (const auto& img : r->images) {
    std::printf("Imported %s (%s)\n", img.digest.str().c_str(), rfs::import_format_name(r->format));
    for (const auto& n : img.names) std::printf("Tagged %s\n", n.c_str());
  }
  return 0;
}

// The registry's base URL as the library reaches it: plain http for
// loopback and --insecure-registry hosts, https otherwise (registry.h).
std::string registry_url(const rfs::Reference& ref, const std::vector<std::string>& insecure) {
  bool plain = rfs::is_loopback_registry(ref.registry) ||
               std::find(insecure.begin(), insecure.end(), ref.registry) != insecure.end();
  return fmt::format("{}://{}/v2/", plain ? "http" : "https", ref.api_host());
}

// USER:PASSWORD (checked by kCreds); the first ':' splits, so the password
// may contain ':'.
std::optional<rfs::Credentials> parse_creds(const std::string& s) {
  if (s.empty()) return std::nullopt;
  auto colon = s.find(':');
  return rfs::Credentials{s.substr(0, colon), s.substr(colon + 1)};
}

int cmd_pull(rfs::ImageStore& store, const PullArgs& a) {
  auto ref = rfs::Reference::parse(a.ref);
  if (!ref) return fail("pull " + a.ref, ref.error());
  std::string what = "pull " + ref->str() + " from " + registry_url(*ref, a.insecure);
  rfs::PullOptions opts;
  opts.credentials = parse_creds(a.creds);
  auto platform = platform_or_host(a.platform);
  if (!platform) return fail(what, platform.error());
  opts.platform = *platform;
  opts.insecure_registries = a.insecure;
  opts.parallel = a.parallel;
  ProgressDisplay progress(::isatty(STDOUT_FILENO));
  opts.progress = progress.callback();
  auto r = rfs::pull(store, *ref, opts);
  progress.finish();
  if (!r) return fail(what, r.error());
  const auto& s = r->stats;
  std::printf("Pulled %s (%s): %llu blobs fetched, %llu already present, %s\n", ref->str().c_str(),
              r->image.digest.str().c_str(), static_cast<unsigned long long>(s.blobs_fetched),
              static_cast<unsigned long long>(s.blobs_present),
              human_size(s.bytes_downloaded).c_str());
  return 0;
}

int cmd_ls(const rfs::ImageStore& store, const std::string& output) {
  auto images = store.list();
  if (!images) return fail("list images in " + store.root(), images.error());
  if (output == "json") {
    Json j = Json::array();
    for (const auto& img : *images) j.push_back(summary_json(img));
    return print_json(j);
  }
  std::vector<std::vector<std::string>> rows = {
      {"REPOSITORY:TAG", "IMAGE ID", "CREATED", "SIZE", "UNPACKED"}};
  for (const auto& img : *images) {
    std::vector<std::string> names = img.names;
    if (names.empty()) names.push_back("<none>");
    for (const auto& n : names)
      rows.push_back({familiar_name(n), short_id(img.digest), time_ago(img.config.created),
                      human_size(img.blob_size), human_size(img.unpacked_size)});
  }
  print_table(rows);
  return 0;
}

// Like `docker inspect`: what can be found is printed, each missing
// reference is reported, and any failure makes the exit code 1.
int cmd_inspect(const rfs::ImageStore& store, const std::vector<std::string>& refs) {
  Json out = Json::array();
  int rc = 0;
  for (const auto& ref : refs) {
    auto img = store.resolve(ref);
    if (!img) {
      rc = fail("inspect " + ref, img.error());
      continue;
    }
    out.push_back(inspect_json(store, *img));
  }
  print_json(out);
  return rc;
}

int cmd_rm(rfs::ImageStore& store, const std::vector<std::string>& refs) {
  int rc = 0;
  for (const auto& ref : refs) {
    auto r = store.remove(ref);
    if (!r) {
      rc = fail("rm " + ref, r.error());
      continue;
    }
    for (const auto& n : r->untagged) std::printf("Untagged: %s\n", n.c_str());
    if (r->deleted) std::printf("Deleted: %s\n", r->deleted->str().c_str());
  }
  return rc;
}

int cmd_prune(rfs::ImageStore& store) {
  auto r = store.prune();
  if (!r) return fail("prune " + store.root(), r.error());
  std::printf("Removed %llu blobs, %llu layers, freed %s\n",
              static_cast<unsigned long long>(r->blobs_removed),
              static_cast<unsigned long long>(r->layers_removed),
              human_size(r->bytes_freed).c_str());
  return 0;
}

int cmd_mount(rfs::ImageStore& store, const std::string& ref, const std::string& id,
              uint64_t size_limit) {
  auto img = store.resolve(ref);
  if (!img) return fail("mount " + ref, img.error());
  auto r = store.mount_rootfs(id, *img, rfs::RootfsOptions{.size_limit = size_limit});
  if (!r) return fail("mount " + ref + " for container " + id, r.error());
  std::printf("%s\n", r->path.c_str());
  return 0;
}

int cmd_unmount(rfs::ImageStore& store, const std::string& id) {
  auto r = store.release_rootfs(id);
  return r ? 0 : fail("unmount " + id, r.error());
}

int cmd_containers(const rfs::ImageStore& store, const std::string& output) {
  auto cs = store.containers();
  if (!cs) return fail("list containers in " + store.root(), cs.error());
  if (output == "json") {
    Json j = Json::array();
    for (const auto& c : *cs) {
      Json layers = Json::array();
      for (const auto& l : c.layers) layers.push_back(l.str());
      j.push_back({{"id", c.id},
                   {"path", c.path},
                   {"image", c.image.str()},
                   {"layers", layers},
                   {"sizeLimit", c.size_limit}});
    }
    return print_json(j);
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "IMAGE ID", "SIZE LIMIT", "ROOTFS"}};
  for (const auto& c : *cs)
    rows.push_back(
        {c.id, short_id(c.image), c.size_limit ? human_size(c.size_limit) : "none", c.path});
  print_table(rows);
  return 0;
}

// ---- validators (a bad value is a usage error: exit 2) --------------------------------

const CLI::Validator kPlatform(
    [](std::string& s) {
      auto p = rfs::Platform::parse(s);
      return p ? std::string() : p.error().str();
    },
    "OS/ARCH[/VARIANT]");

// The message must not echo the value: it holds a password.
const CLI::Validator kCreds(
    [](std::string& s) {
      auto colon = s.find(':');
      return colon != std::string::npos && colon > 0
                 ? std::string()
                 : std::string("expected USER:PASSWORD (the value is not shown)");
    },
    "USER:PASSWORD");

const CLI::Validator kSize(
    [](std::string& s) {
      return parse_size(s) ? std::string()
                           : "\"" + s + "\" is not a size (bytes, or 512MiB, 20GiB)";
    },
    "BYTES|SIZE");

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"berth-rootfs: images and container root filesystems of a berth image store"};
  app.require_subcommand(1);
  std::string store_dir = kDefaultStore;
  std::string log_file;
  bool debug = false;
  app.add_option("--store", store_dir, "image store directory")
      ->envname("BERTH_ROOTFS_STORE")
      ->capture_default_str();
  app.add_option("--log", log_file, "log file (default: stderr)");
  app.add_flag("--debug", debug, "log debug messages");
  rfs::UnpackLimits limits;
  std::string max_layer_size = std::to_string(limits.max_bytes);
  app.add_option("--max-layer-depth", limits.max_depth,
                 "most path components of a layer entry (0: no limit)")
      ->capture_default_str();
  app.add_option("--max-layer-path", limits.max_path,
                 "most bytes of a layer entry's path (0: no limit)")
      ->capture_default_str();
  app.add_option("--max-layer-entries", limits.max_entries, "most entries in a layer (0: no limit)")
      ->capture_default_str();
  app.add_option("--max-layer-size", max_layer_size,
                 "most bytes of file data in an unpacked layer (0: no limit)")
      ->check(kSize)
      ->capture_default_str();

  ImportArgs ia;
  auto* import = app.add_subcommand("import", "import an OCI layout, docker archive or rootfs");
  import->add_option("path", ia.path, "directory or archive")->required();
  import->add_option("--name", ia.names, "reference to give the image (repeatable)");
  import->add_option("--format", ia.format, "source format")
      ->check(CLI::IsMember({"auto", "oci-layout", "docker-archive", "rootfs"}))
      ->capture_default_str();
  import->add_option("--platform", ia.platform, "platform to take from an index (default: host)")
      ->check(kPlatform);

  PullArgs pa;
  auto* pull = app.add_subcommand("pull", "pull an image from a registry");
  pull->add_option("ref", pa.ref, "[REGISTRY/]REPOSITORY[:TAG][@DIGEST]")->required();
  pull->add_option("--creds", pa.creds, "USER:PASSWORD for the registry")
      ->envname("BERTH_REGISTRY_CREDS")
      ->check(kCreds);
  pull->add_option("--insecure-registry", pa.insecure,
                   "HOST[:PORT] to reach over plain http (repeatable)");
  pull->add_option("--platform", pa.platform, "platform to pull (default: host)")->check(kPlatform);
  pull->add_option("--parallel", pa.parallel, "concurrent blob downloads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();

  std::string output = "table";
  auto* ls = app.add_subcommand("ls", "list images");
  ls->add_option("-o,--output", output, "table or json")->check(CLI::IsMember({"table", "json"}));

  std::vector<std::string> refs;
  auto* inspect = app.add_subcommand("inspect", "print images as JSON");
  inspect->add_option("ref", refs, "image name, digest or id")->required();
  auto* rm = app.add_subcommand("rm", "remove image names (and images without names)");
  rm->add_option("ref", refs, "image name, digest or id")->required();
  auto* prune = app.add_subcommand("prune", "remove blobs and layers no image or container uses");

  std::string ref, id, size = "0";
  auto* mount = app.add_subcommand("mount", "mount a container's overlay root filesystem");
  mount->add_option("ref", ref, "image name, digest or id")->required();
  mount->add_option("--id", id, "container id")->required();
  mount->add_option("--size", size, "writable space limit (0: none)")->check(kSize);
  auto* unmount = app.add_subcommand("unmount", "unmount and remove a container's rootfs");
  unmount->add_option("id", id, "container id")->required();
  auto* containers = app.add_subcommand("containers", "list mounted container root filesystems");
  containers->add_option("-o,--output", output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 gives each kind of usage error its own code (105, 106, ...);
    // berth-rootfs promises 2 for all of them.
    return app.exit(e) == 0 ? 0 : 2;
  }

  berth::log::Options lo;
  lo.file = log_file;
  lo.level = debug ? berth::log::Level::debug : berth::log::Level::warn;
  g_log_to_file = berth::log::setup(lo) && !log_file.empty();

  rfs::ImageStore store(absolute(store_dir));
  limits.max_bytes = parse_size(max_layer_size).value_or(limits.max_bytes);
  store.set_unpack_limits(limits);
  if (auto r = store.init(); !r) return fail("open image store " + store.root(), r.error());
  berth::log::debug("image store {}", store.root());

  if (*import) return cmd_import(store, ia);
  if (*pull) return cmd_pull(store, pa);
  if (*ls) return cmd_ls(store, output);
  if (*inspect) return cmd_inspect(store, refs);
  if (*rm) return cmd_rm(store, refs);
  if (*prune) return cmd_prune(store);
  if (*mount) return cmd_mount(store, ref, id, parse_size(size).value_or(0));
  if (*unmount) return cmd_unmount(store, id);
  if (*containers) return cmd_containers(store, output);
  return 2;
}
