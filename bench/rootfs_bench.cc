// berth-rootfs-bench: the image store's two costs that a task launch sees.
//
//   berth-rootfs-bench --image OCI_LAYOUT [--rounds N] [--import-mb MB] [--import-runs N]
//
// (a) Root filesystem ready from a local image: with the test image
//     (scripts/make-test-image.sh) imported, each round times resolve(ref) +
//     mount_rootfs(id), which is what the runtime waits for before it can
//     create the container; release_rootfs is timed separately and not
//     counted. Target: median <= 1 ms.
// (b) Import throughput: a deterministic image of about --import-mb MiB
//     (many small files and a few large ones, content that gzip shrinks only
//     partly) as two OCI layouts, one with plain tar layers and one with
//     gzip layers; each is imported into a fresh store and compared with
//     plain `tar -xf` / `tar -xzf` of the same layer files into a fresh
//     directory, in the same run, runs alternating which side goes first.
//     MB/s are of the uncompressed file data (10^6 bytes).
//
// Everything lives in one temp dir under /tmp (stores, generated files,
// extracted trees), removed at exit, also after a failure or SIGINT/SIGTERM
// (the step in flight finishes first); container roots are released and any
// mount left below the temp dir is detached before it is removed.
#include <fcntl.h>
#include <nettle/sha2.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rootfs-tools/image.h"
#include "rootfs-tools/image_store.h"
#include "rootfs-tools/import.h"

namespace {

namespace stdfs = std::filesystem;
namespace rfs = berth::rootfs;
using Json = nlohmann::json;

constexpr double kTargetReadyMs = 1.0;
constexpr int kWarmup = 5;
constexpr int kLayers = 4;
constexpr const char* kImageName = "docker.io/library/berth-bench:latest";

std::atomic<bool> g_stop{false};

struct Options {
  std::string image;
  int rounds = 200;
  int import_mb = 100;  // 0: skip (b)
  int import_runs = 3;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "rootfs-bench: %s\n", msg.c_str());
  std::exit(1);
}

// A failure once things exist: thrown, so that ~Bench removes them.
[[noreturn]] void fail(const std::string& msg) {
  throw std::runtime_error(msg);
}

Options parse_args(int argc, char** argv) {
  Options o;
  const char* usage =
      "usage: berth-rootfs-bench --image OCI_LAYOUT [--rounds N] [--import-mb MB] "
      "[--import-runs N]";
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) die("missing value for " + a + "\n" + usage);
    if (a == "--image")
      o.image = argv[++i];
    else if (a == "--rounds")
      o.rounds = std::atoi(argv[++i]);
    else if (a == "--import-mb")
      o.import_mb = std::atoi(argv[++i]);
    else if (a == "--import-runs")
      o.import_runs = std::atoi(argv[++i]);
    else
      die("unknown argument " + a + "\n" + usage);
  }
  if (o.image.empty() || o.rounds < 1 || o.import_mb < 0 || o.import_runs < 1) die(usage);
  return o;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least p of the samples <= it.
  size_t rank = static_cast<size_t>(p * static_cast<double>(v.size()) + 0.999999);
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// Runs a command (no shell), its output going to ours; fails unless it
// exits 0.
void run(const std::vector<std::string>& argv) {
  pid_t pid = ::fork();
  if (pid < 0) fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    fail("`" + cmd + "` failed (status " + std::to_string(status) + ")");
  }
}

// ---- the generated image ---------------------------------------------------------

// xorshift64*: the same bytes on every run and host.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 2685821657736338717ull;
  }
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + next() % (hi - lo + 1); }

 private:
  uint64_t s_;
};

// File content in 4 KiB blocks, 60% random bytes and 40% text made of a few
// words: gzip shrinks it to roughly two thirds, as it does real binaries and
// data, so gzip layers cost real inflate work without being trivial.
void fill(Rng& rng, std::string& buf, size_t n) {
  static const char* const words[] = {"container ", "overlay ", "layer ", "berth ",
                                      "image ",     "digest ",  "task ",  "microhost "};
  buf.clear();
  while (buf.size() < n) {
    size_t block = std::min<size_t>(4096, n - buf.size());
    if (rng.next() % 10 < 6) {
      for (size_t i = 0; i < block; i += 8) {
        uint64_t v = rng.next();
        buf.append(reinterpret_cast<const char*>(&v), std::min<size_t>(8, block - i));
      }
    } else {
      size_t end = buf.size() + block;
      while (buf.size() < end) buf += words[rng.next() % std::size(words)];
      buf.resize(end);
    }
  }
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) fail("write " + path);
}

struct Layer {
  std::string tar, gz;  // layer files
  rfs::Digest diff_id, gz_digest, tar_digest;
  uint64_t tar_size = 0, gz_size = 0;
};

struct GeneratedImage {
  std::vector<Layer> layers;
  uint64_t data_bytes = 0;  // regular file content, all layers
  uint64_t files = 0;
  std::string tar_layout, gz_layout;
};

// Writes the file tree of each layer under `dir`/layer<k>: 40% of the bytes
// in small files (128 B - 16 KiB, up to 100 per directory), 60% in large
// ones (4 - 12 MiB), plus symlinks; files go round-robin to the layers.
void generate_tree(const std::string& dir, uint64_t total, GeneratedImage& img) {
  Rng rng(0x6265727468ull);  // "berth"
  std::string buf;
  uint64_t small_bytes = total * 4 / 10, written = 0;
  for (uint64_t i = 0; written < small_bytes; ++i) {
    std::string d = dir + "/layer" + std::to_string(i % kLayers) + "/usr/share/bench/d" +
                    std::to_string(i / (100 * kLayers));
    if (i % (100 * kLayers) < kLayers) stdfs::create_directories(d);
    fill(rng, buf, rng.between(128, 16 << 10));
    write_file(d + "/f" + std::to_string(i) + ".dat", buf);
    if (i % 50 == 0)
      stdfs::create_symlink("f" + std::to_string(i) + ".dat", d + "/l" + std::to_string(i));
    written += buf.size();
    img.files++;
  }
  for (uint64_t i = 0; written < total; ++i) {
    std::string d = dir + "/layer" + std::to_string(i % kLayers) + "/opt/bench";
    stdfs::create_directories(d);
    fill(rng, buf, std::min<uint64_t>(rng.between(4 << 20, 12 << 20), total - written));
    write_file(d + "/big" + std::to_string(i) + ".bin", buf);
    written += buf.size();
    img.files++;
  }
  img.data_bytes = written;
}

rfs::Digest sha256_file(const std::string& path, uint64_t* size) {
  std::ifstream in(path, std::ios::binary);
  sha256_ctx ctx;
  sha256_init(&ctx);
  std::vector<char> buf(1 << 20);
  *size = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = static_cast<size_t>(in.gcount());
    sha256_update(&ctx, n, reinterpret_cast<const uint8_t*>(buf.data()));
    *size += n;
  }
  if (in.bad()) fail("read " + path);
  return rfs::sha256_finish(ctx);
}

// Deterministic tar (as make-test-image.sh makes them) and `gzip -n`.
Layer pack_layer(const std::string& tree, const std::string& out_base) {
  Layer l;
  l.tar = out_base + ".tar";
  l.gz = out_base + ".tar.gz";
  run({"tar", "-C", tree, "--format=gnu", "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
       "--numeric-owner", "-cf", l.tar, "."});
  run({"gzip", "-n", "-k", "-6", l.tar});
  l.tar_digest = sha256_file(l.tar, &l.tar_size);
  l.diff_id = l.tar_digest;
  l.gz_digest = sha256_file(l.gz, &l.gz_size);
  return l;
}

// Adds a file to a layout's blobs/ by hard link (same filesystem, no copy).
void link_blob(const std::string& layout, const std::string& file, const rfs::Digest& d) {
  stdfs::create_hard_link(file, layout + "/blobs/sha256/" + d.hex);
}

std::string put_json_blob(const std::string& layout, const Json& j, int64_t* size) {
  std::string text = j.dump();
  std::string tmp = layout + "/blob.tmp";
  write_file(tmp, text);
  uint64_t n = 0;
  rfs::Digest d = sha256_file(tmp, &n);
  stdfs::rename(tmp, layout + "/blobs/sha256/" + d.hex);
  *size = static_cast<int64_t>(n);
  return d.str();
}

// An OCI layout of the generated layers, gzip or plain tar.
void write_layout(const std::string& layout, const std::vector<Layer>& layers, bool gzip) {
  stdfs::create_directories(layout + "/blobs/sha256");
  const rfs::Platform p = rfs::host_platform();
  Json diff_ids = Json::array(), layer_descs = Json::array();
  for (const auto& l : layers) {
    diff_ids.push_back(l.diff_id.str());
    const auto& digest = gzip ? l.gz_digest : l.tar_digest;
    link_blob(layout, gzip ? l.gz : l.tar, digest);
    layer_descs.push_back({{"mediaType", gzip ? rfs::media::oci_layer_gzip : rfs::media::oci_layer},
                           {"digest", digest.str()},
                           {"size", gzip ? l.gz_size : l.tar_size}});
  }
  Json config = {{"architecture", p.architecture},
                 {"os", p.os},
                 {"config", {{"Cmd", {"/bin/sh"}}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  int64_t config_size = 0, manifest_size = 0;
  std::string config_digest = put_json_blob(layout, config, &config_size);
  Json manifest = {
      {"schemaVersion", 2},
      {"mediaType", rfs::media::oci_manifest},
      {"config",
       {{"mediaType", rfs::media::oci_config}, {"digest", config_digest}, {"size", config_size}}},
      {"layers", layer_descs}};
  std::string manifest_digest = put_json_blob(layout, manifest, &manifest_size);
  Json index = {{"schemaVersion", 2},
                {"mediaType", rfs::media::oci_index},
                {"manifests",
                 {{{"mediaType", rfs::media::oci_manifest},
                   {"digest", manifest_digest},
                   {"size", manifest_size},
                   {"platform", {{"architecture", p.architecture}, {"os", p.os}}}}}}};
  write_file(layout + "/index.json", index.dump());
  write_file(layout + "/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
}

// ---- the benchmark -------------------------------------------------------------------

struct ReadySamples {
  std::vector<double> ready, resolve, mount, release;
};

struct ImportSamples {
  std::vector<double> import_tar, tar_x, import_gz, tar_xz;  // seconds
};

class Bench {
 public:
  // Only what cannot fail after the temp dir exists: ~Bench runs for a
  // constructed Bench only.
  Bench() {
    char tmpl[] = "/tmp/berth-rootfs-bench.XXXXXX";
    if (!::mkdtemp(tmpl)) fail(std::string("mkdtemp: ") + std::strerror(errno));
    work_ = tmpl;
  }

  ~Bench() {
    for (const auto& root : stores_) release_all(root);
    detach_mounts_below(work_);
    std::error_code ec;
    stdfs::remove_all(work_, ec);
    if (ec)
      std::fprintf(stderr, "rootfs-bench: remove %s: %s\n", work_.c_str(), ec.message().c_str());
  }

  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  void run_ready(const Options& o) {
    rfs::ImageStore& store = open_store(work_ + "/store-ready");
    rfs::ImportOptions io;
    io.names = {kImageName};
    auto imported = rfs::import_image(store, o.image, io);
    if (!imported) fail("import " + o.image + ": " + imported.error().str());
    if (imported->images.empty()) fail("import " + o.image + ": no image");
    image_id_ = short_id(imported->images[0].digest);
    image_layers_ = imported->images[0].manifest.layers.size();
    for (int i = 0; i < kWarmup && !g_stop; ++i)
      ready_round(store, "w" + std::to_string(i), nullptr);
    for (int i = 0; i < o.rounds && !g_stop; ++i)
      ready_round(store, "r" + std::to_string(i), &ready_);
  }

  void run_import(const Options& o) {
    uint64_t total = static_cast<uint64_t>(o.import_mb) << 20;
    generate_tree(work_ + "/gen", total, gen_);
    stdfs::create_directories(work_ + "/src");
    for (int k = 0; k < kLayers; ++k)
      gen_.layers.push_back(pack_layer(work_ + "/gen/layer" + std::to_string(k),
                                       work_ + "/src/layer" + std::to_string(k)));
    stdfs::remove_all(work_ + "/gen");
    gen_.tar_layout = work_ + "/layout-tar";
    gen_.gz_layout = work_ + "/layout-gz";
    write_layout(gen_.tar_layout, gen_.layers, false);
    write_layout(gen_.gz_layout, gen_.layers, true);
    for (int i = 0; i < o.import_runs && !g_stop; ++i) {
      std::string n = std::to_string(i);
      // Alternate which side goes first, so a slow phase hits both.
      for (int k = 0; k < 2; ++k) {
        if ((i + k) % 2 == 0) {
          imports_.import_tar.push_back(time_import(gen_.tar_layout, "store-tar-" + n));
          imports_.import_gz.push_back(time_import(gen_.gz_layout, "store-gz-" + n));
        } else {
          imports_.tar_x.push_back(time_tar(false, "x-tar-" + n));
          imports_.tar_xz.push_back(time_tar(true, "x-gz-" + n));
        }
      }
    }
  }

  void report(const Options& o) const {
    if (ready_.ready.empty()) fail("interrupted before any round");
    std::printf(
        "\noverlay rootfs ready from a local image, %zu rounds (after %d warm-up), wall ms\n",
        ready_.ready.size(), kWarmup);
    std::printf("  image: %s (%s, %zu layer%s) from %s\n", kImageName, image_id_.c_str(),
                image_layers_, image_layers_ == 1 ? "" : "s", o.image.c_str());
    std::printf("%-32s %10s %10s\n", "", "median", "p99");
    auto row = [](const char* name, const std::vector<double>& v) {
      std::printf("%-32s %10.3f %10.3f\n", name, percentile(v, 0.5), percentile(v, 0.99));
    };
    row("resolve + mount_rootfs (ready)", ready_.ready);
    row("  resolve alone", ready_.resolve);
    row("  mount_rootfs alone", ready_.mount);
    row("release_rootfs (not counted)", ready_.release);
    double ready = percentile(ready_.ready, 0.5);
    std::printf("rootfs ready median %.3f ms (target <= %.1f ms)%s\n", ready, kTargetReadyMs,
                ready <= kTargetReadyMs ? "" : "  [target missed]");
    if (o.import_mb > 0) report_import();
  }

 private:
  rfs::ImageStore& open_store(const std::string& root) {
    stores_.push_back(root);
    store_objs_.push_back(std::make_unique<rfs::ImageStore>(root));
    if (auto r = store_objs_.back()->init(); !r)
      fail("init store " + root + ": " + r.error().str());
    return *store_objs_.back();
  }

  void ready_round(rfs::ImageStore& store, const std::string& id, ReadySamples* s) {
    auto t0 = std::chrono::steady_clock::now();
    auto img = store.resolve("berth-bench:latest");
    double resolve = ms_since(t0);
    if (!img) fail("resolve berth-bench:latest: " + img.error().str());
    auto t1 = std::chrono::steady_clock::now();
    auto rootfs = store.mount_rootfs(id, *img);
    double mount = ms_since(t1), ready = ms_since(t0);
    if (!rootfs) fail("mount_rootfs " + id + ": " + rootfs.error().str());
    auto t2 = std::chrono::steady_clock::now();
    auto released = store.release_rootfs(id);
    double release = ms_since(t2);
    if (!released) fail("release_rootfs " + id + ": " + released.error().str());
    if (s) {
      s->ready.push_back(ready);
      s->resolve.push_back(resolve);
      s->mount.push_back(mount);
      s->release.push_back(release);
    }
  }

  // Seconds to import `layout` into a fresh store. Dirty pages of the last
  // run are written back first (untimed), so that no run pays for another.
  double time_import(const std::string& layout, const std::string& name) {
    std::string root = work_ + "/" + name;
    rfs::ImageStore store(root);
    if (auto r = store.init(); !r) fail("init store " + root + ": " + r.error().str());
    ::sync();
    auto t0 = std::chrono::steady_clock::now();
    rfs::ImportOptions io;
    io.names = {kImageName};
    auto r = rfs::import_image(store, layout, io);
    double s = ms_since(t0) / 1e3;
    if (!r) fail("import " + layout + ": " + r.error().str());
    stdfs::remove_all(root);
    return s;
  }

  // Seconds for `tar -xf` (or -xzf) of every layer file, in order, into one
  // fresh directory: what unpacking the image without berth costs.
  double time_tar(bool gzip, const std::string& name) {
    std::string dest = work_ + "/" + name;
    stdfs::create_directories(dest);
    ::sync();
    auto t0 = std::chrono::steady_clock::now();
    for (const auto& l : gen_.layers)
      run({"tar", gzip ? "-xzf" : "-xf", gzip ? l.gz : l.tar, "-C", dest});
    double s = ms_since(t0) / 1e3;
    stdfs::remove_all(dest);
    return s;
  }

  void report_import() const {
    if (imports_.import_tar.empty() || imports_.tar_x.empty()) fail("interrupted before import");
    uint64_t tar_bytes = 0, gz_bytes = 0;
    for (const auto& l : gen_.layers) {
      tar_bytes += l.tar_size;
      gz_bytes += l.gz_size;
    }
    double mb = static_cast<double>(gen_.data_bytes) / 1e6;
    std::printf(
        "\nimport of a %.1f MB image (%d layers, %llu files; tar %.1f MB, gzip %.1f MB), "
        "median of %zu runs\n",
        mb, kLayers, static_cast<unsigned long long>(gen_.files),
        static_cast<double>(tar_bytes) / 1e6, static_cast<double>(gz_bytes) / 1e6,
        imports_.import_tar.size());
    std::printf("  import: import_image into a fresh store (hash + fsync blobs, unpack layers)\n");
    std::printf("  tar:    tar -x of the same layer files into a fresh directory (no fsync)\n");
    std::printf("%-32s %10s %10s\n", "", "seconds", "MB/s");
    auto row = [mb](const char* name, const std::vector<double>& v) {
      double s = percentile(v, 0.5);
      std::printf("%-32s %10.2f %10.1f\n", name, s, mb / s);
      return s;
    };
    double it = row("import (tar layers)", imports_.import_tar);
    double tx = row("tar -xf", imports_.tar_x);
    double ig = row("import (gzip layers)", imports_.import_gz);
    double tz = row("tar -xzf", imports_.tar_xz);
    std::printf("import/tar throughput (median): tar layers %.2fx, gzip layers %.2fx\n", tx / it,
                tz / ig);
  }

  static void release_all(const std::string& root) {
    rfs::ImageStore store(root);
    auto cs = store.containers();
    if (!cs) return;
    for (const auto& c : *cs)
      if (auto r = store.release_rootfs(c.id); !r)
        std::fprintf(stderr, "rootfs-bench: release %s: %s\n", c.id.c_str(),
                     r.error().str().c_str());
  }

  // Last resort before remove_all: never descend into a mounted overlay.
  static void detach_mounts_below(const std::string& dir) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    std::vector<std::string> points;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string id, parent, dev, root, point;
      f >> id >> parent >> dev >> root >> point;
      if (point.rfind(dir + "/", 0) == 0) points.push_back(point);
    }
    std::sort(points.rbegin(), points.rend());  // deepest first
    for (const auto& p : points) {
      std::fprintf(stderr, "rootfs-bench: detaching mount left at %s\n", p.c_str());
      ::umount2(p.c_str(), MNT_DETACH);
    }
  }

  std::string work_;
  std::vector<std::string> stores_;
  std::vector<std::unique_ptr<rfs::ImageStore>> store_objs_;
  std::string image_id_;
  size_t image_layers_ = 0;
  ReadySamples ready_;
  GeneratedImage gen_;
  ImportSamples imports_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  if (::geteuid() != 0) die("must run as root (mounts overlays, unpacks layers with owners)");
  if (!stdfs::exists(o.image + "/oci-layout"))
    die(o.image + " is not an OCI layout (make one with scripts/make-test-image.sh)");
  o.image = stdfs::absolute(o.image).string();
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = true; };
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  try {
    Bench bench;
    bench.run_ready(o);
    if (o.import_mb > 0) bench.run_import(o);
    bench.report(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rootfs-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
