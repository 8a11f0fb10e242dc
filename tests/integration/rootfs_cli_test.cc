// The berth-rootfs command line against a real image store: the test image
// from scripts/make-test-image.sh is imported into a private --store under
// /tmp, then listed, inspected, mounted as an overlay, removed and pruned,
// and every step is checked on disk and in the mount table as well as in the
// output. Error cases assert the exit code and that the message names what
// was wrong.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace fs = std::filesystem;
using namespace berth::test;

namespace {

const std::string kCli = BERTH_BIN_DIR "/berth-rootfs";

// A private image store in a temp dir, and the CLI pointed at it.
class Store {
 public:
  Store() : path_(dir_.path() + "/store") {}
  const std::string& path() const { return path_; }

  CommandResult run(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {kCli, "--store", path_};
    argv.insert(argv.end(), args.begin(), args.end());
    return exec_command(argv, {.timeout = 120s});
  }

  // Entries of a store subdirectory (blobs/sha256, layers, containers);
  // none when it does not exist.
  std::vector<std::string> entries(const std::string& sub) const {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(path_ + "/" + sub, ec))
      names.push_back(e.path().filename().string());
    return names;
  }

 private:
  TempDir dir_;
  std::string path_;
};

// The busybox + probe test image as an OCI layout.
class TestImage {
 public:
  TestImage() : layout_(dir_.path() + "/layout") {
    auto r = exec_command(
        {"bash", BERTH_SOURCE_DIR "/scripts/make-test-image.sh", "--probe", probe_path(), layout_});
    if (r.exit_code != 0) throw std::runtime_error("make-test-image.sh failed:\n" + r.err);
  }
  const std::string& layout() const { return layout_; }

 private:
  TempDir dir_;
  std::string layout_;
};

// Imports the test image under `names`; returns the image digest.
std::string import_image(const Store& store, const TestImage& image,
                         const std::vector<std::string>& names) {
  std::vector<std::string> args = {"import", image.layout()};
  for (const auto& n : names) {
    args.push_back("--name");
    args.push_back(n);
  }
  auto r = store.run(args);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, std::regex("Imported (sha256:[0-9a-f]{64})")));
  return m[1];
}

// The command's stdout as JSON (the suite is built with JSON_NOEXCEPTION:
// parse without exceptions and fail the test on garbage).
Json output_json(const CommandResult& r) {
  Json j = Json::parse(r.out, nullptr, false);
  INFO(r);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

bool is_mount_point(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, mount_point;
    f >> id >> parent >> dev >> root >> mount_point;
    if (mount_point == path) return true;
  }
  return false;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Unmounts a container's rootfs at scope exit, so that a failing test does
// not leave the overlay (the harness would detach it and report a leak).
class MountGuard {
 public:
  MountGuard(const Store& store, std::string id) : store_(store), id_(std::move(id)) {}
  ~MountGuard() {
    try {
      store_.run({"unmount", id_});
    } catch (const std::exception& e) {
      record_leak("unmount " + id_ + ": " + e.what());
    }
  }

 private:
  const Store& store_;
  std::string id_;
};

// A TCP port on 127.0.0.1 that refuses connections: bound (so nobody else
// takes it during the test) but never listening.
class ClosedPort {
 public:
  ClosedPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::runtime_error("socket failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("bind 127.0.0.1:0 failed");
    port_ = ntohs(a.sin_port);
  }
  ~ClosedPort() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

// A free TCP port on 127.0.0.1 (free when picked).
int free_port() {
  ClosedPort p;
  return p.port();
}

bool accepts_connections(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// `docker-registry serve` (Debian's CNCF distribution) on 127.0.0.1, its
// storage in a TempDir; killed and reaped on destruction.
class Registry {
 public:
  Registry() : port_(free_port()) {
    std::string config = dir_.path() + "/config.yml";
    std::ofstream(config) << "version: 0.1\nlog:\n  level: error\n"
                          << "storage:\n  filesystem:\n    rootdirectory: " << dir_.path()
                          << "/data\nhttp:\n  addr: " << host() << "\n";
    std::string log_path = dir_.path() + "/registry.log";
    const char* argv[] = {"docker-registry", "serve", config.c_str(), nullptr};
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      ::setpgid(0, 0);
      int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (out < 0 || in < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0)
        ::_exit(126);
      ::execv("/usr/bin/docker-registry", const_cast<char* const*>(argv));
      ::_exit(127);
    }
    if (!wait_until([&] { return accepts_connections(port_); }, 30s, 50ms)) {
      stop();
      throw std::runtime_error("docker-registry did not listen on " + host() + " in 30 s:\n" +
                               read_file(log_path));
    }
  }
  ~Registry() { stop(); }
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void stop() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  TempDir dir_;
  int port_;
  pid_t pid_ = -1;
};

// The manifest digest that an OCI layout's index names first.
std::string layout_manifest_digest(const std::string& layout) {
  Json index = Json::parse(read_file(layout + "/index.json"), nullptr, false);
  REQUIRE_FALSE(index.is_discarded());
  return index["manifests"][0]["digest"].get<std::string>();
}

}  // namespace

TEST_CASE("berth-rootfs imports, lists, inspects, removes and prunes an image",
          "[privileged][rootfs-cli]") {
  REQUIRE_PRIVILEGED();
  Store store;
  TestImage image;
  const std::string digest = import_image(store, image, {"berth-test/app:v1", "berth-test/app:v2"});
  const std::string id = digest.substr(7, 12);

  SECTION("ls shows the image as a table and as JSON") {
    auto table = store.run({"ls"});
    INFO(table);
    REQUIRE(table.exit_code == 0);
    auto lines = split_lines(table.out);
    REQUIRE(lines.size() == 3);  // header + one row per name
    CHECK(contains(lines[0], "REPOSITORY:TAG"));
    CHECK(contains(lines[0], "IMAGE ID"));
    CHECK(contains(lines[0], "UNPACKED"));
    CHECK(contains(lines[1], "berth-test/app:v1"));
    CHECK(contains(lines[1], id));
    CHECK(contains(lines[2], "berth-test/app:v2"));

    auto json = store.run({"ls", "-o", "json"});
    INFO(json);
    REQUIRE(json.exit_code == 0);
    Json j = output_json(json);
    REQUIRE(j.is_array());
    REQUIRE(j.size() == 1);
    CHECK(j[0]["digest"] == digest);
    CHECK(j[0]["id"] == id);
    CHECK(j[0]["names"] ==
          Json::array({"docker.io/berth-test/app:v1", "docker.io/berth-test/app:v2"}));
    CHECK(j[0]["size"].get<uint64_t>() > 500000);  // busybox, gzipped
    CHECK(j[0]["unpackedSize"].get<uint64_t>() > j[0]["size"].get<uint64_t>());
  }

  SECTION("inspect shows the run config and the layers, by name and by id") {
    for (const std::string& ref : {std::string("berth-test/app:v1"), id}) {
      auto r = store.run({"inspect", ref});
      INFO(r);
      REQUIRE(r.exit_code == 0);
      Json j = output_json(r);
      REQUIRE(j.size() == 1);
      CHECK(j[0]["digest"] == digest);
      CHECK(j[0]["config"]["cmd"] == Json::array({"/bin/sh"}));
      CHECK(j[0]["config"]["workingDir"] == "/");
      CHECK(contains(j[0]["config"]["env"].dump(), "PATH=/usr/local/sbin"));
      REQUIRE(j[0]["layers"].size() == 1);
      CHECK(j[0]["layers"][0]["size"].get<int64_t>() > 0);
      CHECK(j[0]["layers"][0]["diffId"].get<std::string>().rfind("sha256:", 0) == 0);
      CHECK(j[0]["manifest"]["config"]["digest"] == j[0]["configDigest"]);
    }
  }

  SECTION("rm untags, deletes with the last name, and prune empties the store") {
    auto first = store.run({"rm", "berth-test/app:v1"});
    INFO(first);
    REQUIRE(first.exit_code == 0);
    CHECK(first.out == "Untagged: docker.io/berth-test/app:v1\n");

    auto last = store.run({"rm", "berth-test/app:v2"});
    INFO(last);
    REQUIRE(last.exit_code == 0);
    CHECK(last.out == "Untagged: docker.io/berth-test/app:v2\nDeleted: " + digest + "\n");
    auto ls = store.run({"ls", "-o", "json"});
    REQUIRE(ls.exit_code == 0);
    CHECK(output_json(ls) == Json::array());

    // Removing an image keeps its blobs and layers until prune.
    CHECK(store.entries("blobs/sha256").size() >= 3);  // manifest, config, layer
    CHECK(store.entries("layers").size() == 1);
    auto prune = store.run({"prune"});
    INFO(prune);
    REQUIRE(prune.exit_code == 0);
    std::smatch m;
    REQUIRE(std::regex_search(
        prune.out, m, std::regex("^Removed ([0-9]+) blobs, ([0-9]+) layers, freed (.+)\n$")));
    CHECK(std::stoi(m[1]) >= 3);
    CHECK(std::stoi(m[2]) == 1);
    CHECK(store.entries("blobs/sha256").empty());
    CHECK(store.entries("layers").empty());

    auto again = store.run({"prune"});
    INFO(again);
    CHECK(again.out == "Removed 0 blobs, 0 layers, freed 0 B\n");
  }

  SECTION("rm of several references goes on past a failing one") {
    auto r = store.run({"rm", "berth-test/nosuch:v1", "berth-test/app:v1"});
    INFO(r);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "berth-rootfs: rm berth-test/nosuch:v1: "));
    CHECK(r.out == "Untagged: docker.io/berth-test/app:v1\n");
  }
}

TEST_CASE("berth-rootfs mounts a container rootfs and unmount leaves nothing",
          "[privileged][rootfs-cli]") {
  REQUIRE_PRIVILEGED();
  Store store;
  TestImage image;
  import_image(store, image, {"berth-test/app:v1"});
  const std::string id = unique_name();
  MountGuard guard(store, id);

  auto mounted = store.run({"mount", "berth-test/app:v1", "--id", id});
  INFO(mounted);
  REQUIRE(mounted.exit_code == 0);
  const std::string rootfs = split_lines(mounted.out).at(0);
  CHECK(rootfs.rfind(store.path() + "/", 0) == 0);
  CHECK(is_mount_point(rootfs));
  CHECK(fs::is_regular_file(rootfs + "/bin/busybox"));
  CHECK(fs::is_regular_file(rootfs + "/probe"));
  CHECK(read_link(rootfs + "/bin/sh") == "busybox");
  // The container's writes land in its own upper dir, not in the layer.
  std::ofstream(rootfs + "/etc/written-by-test") << "x";
  CHECK(fs::exists(rootfs + "/etc/written-by-test"));

  auto twice = store.run({"mount", "berth-test/app:v1", "--id", id});
  INFO(twice);
  CHECK(twice.exit_code == 1);
  CHECK(contains(twice.err, id));

  auto listed = store.run({"containers", "-o", "json"});
  INFO(listed);
  REQUIRE(listed.exit_code == 0);
  Json cs = output_json(listed);
  REQUIRE(cs.size() == 1);
  CHECK(cs[0]["id"] == id);
  CHECK(cs[0]["path"] == rootfs);

  auto unmounted = store.run({"unmount", id});
  INFO(unmounted);
  REQUIRE(unmounted.exit_code == 0);
  CHECK_FALSE(is_mount_point(rootfs));
  CHECK_FALSE(fs::exists(rootfs));
  CHECK(store.entries("containers").empty());
  auto after = store.run({"containers", "-o", "json"});
  CHECK(output_json(after) == Json::array());
  // The layer never saw the container's write.
  for (const auto& layer : store.entries("layers"))
    CHECK_FALSE(fs::exists(store.path() + "/layers/" + layer + "/root/etc/written-by-test"));

  // Release is idempotent: a retried unmount is fine.
  auto again = store.run({"unmount", id});
  INFO(again);
  CHECK(again.exit_code == 0);
}

TEST_CASE("berth-rootfs mount --size gives the container a limited writable layer",
          "[privileged][rootfs-cli]") {
  REQUIRE_PRIVILEGED();
  if (exec_command({"sh", "-c", "command -v mkfs.ext4"}).exit_code != 0) {
    BERTH_SKIP("mkfs.ext4 not installed (e2fsprogs, from scripts/install-deps.sh)");
  }
  Store store;
  TestImage image;
  import_image(store, image, {"berth-test/app:v1"});
  const std::string id = unique_name();
  MountGuard guard(store, id);

  auto mounted = store.run({"mount", "berth-test/app:v1", "--id", id, "--size", "32MiB"});
  INFO(mounted);
  REQUIRE(mounted.exit_code == 0);
  const std::string rootfs = split_lines(mounted.out).at(0);
  CHECK(fs::is_regular_file(rootfs + "/bin/busybox"));
  auto listed = store.run({"containers", "-o", "json"});
  REQUIRE(listed.exit_code == 0);
  CHECK(output_json(listed)[0]["sizeLimit"] == 32u << 20);

  // Writing past the limit fails with ENOSPC instead of filling the host.
  auto fill = exec_command(
      {"dd", "if=/dev/zero", "of=" + rootfs + "/fill", "bs=1M", "count=64", "conv=fsync"});
  INFO(fill);
  CHECK(fill.exit_code != 0);
  CHECK(contains(fill.err, "No space left on device"));

  auto unmounted = store.run({"unmount", id});
  INFO(unmounted);
  REQUIRE(unmounted.exit_code == 0);
  CHECK_FALSE(is_mount_point(rootfs));
  CHECK(store.entries("containers").empty());
  auto loops = exec_command({"losetup", "-a"});
  CHECK_FALSE(contains(loops.out, store.path()));
}

TEST_CASE("berth-rootfs reports failures with exit 1 and names what failed",
          "[privileged][rootfs-cli]") {
  REQUIRE_PRIVILEGED();
  Store store;

  SECTION("an unknown image") {
    for (const std::string cmd : {"inspect", "rm"}) {
      auto r = store.run({cmd, "berth-test/nosuch:v9"});
      INFO(r);
      CHECK(r.exit_code == 1);
      CHECK(r.err.rfind("berth-rootfs: " + cmd + " berth-test/nosuch:v9: ", 0) == 0);
    }
    auto r = store.run({"mount", "berth-test/nosuch:v9", "--id", unique_name()});
    INFO(r);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "berth-test/nosuch:v9"));
    CHECK(store.entries("containers").empty());
  }

  SECTION("a bad reference") {
    auto pull = store.run({"pull", "Berth/UPPER:case"});
    INFO(pull);
    CHECK(pull.exit_code == 1);
    CHECK(contains(pull.err, "Berth/UPPER:case"));

    auto inspect = store.run({"inspect", "bad reference!"});
    INFO(inspect);
    CHECK(inspect.exit_code == 1);
    CHECK(contains(inspect.err, "bad reference!"));

    TestImage image;
    auto import = store.run({"import", image.layout(), "--name", "Berth/UPPER:v1"});
    INFO(import);
    CHECK(import.exit_code == 1);
    CHECK(contains(import.err, "Berth/UPPER:v1"));
    CHECK(store.entries("layers").empty());  // refused before anything was unpacked
  }

  SECTION("import of a path that does not exist") {
    const std::string missing = "/tmp/" + unique_name() + "-missing";
    auto r = store.run({"import", missing});
    INFO(r);
    CHECK(r.exit_code == 1);
    CHECK(r.err.rfind("berth-rootfs: import " + missing + ": ", 0) == 0);
    auto ls = store.run({"ls", "-o", "json"});
    REQUIRE(ls.exit_code == 0);
    CHECK(output_json(ls) == Json::array());
  }

  SECTION("pull from a registry that refuses the connection") {
    ClosedPort port;
    const std::string host = "127.0.0.1:" + std::to_string(port.port());
    auto r = store.run({"pull", host + "/berth-test/app:v1"});
    INFO(r);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "http://" + host + "/"));
    CHECK(store.entries("blobs/sha256").empty());
  }

  SECTION("a layer beyond --max-layer-depth") {
    TempDir src;
    fs::create_directories(src.path() + "/a/b/c/d/e");
    auto r = store.run({"--max-layer-depth", "3", "import", src.path()});
    INFO(r);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "deeper than 3 levels (max_depth, --max-layer-depth)"));
    CHECK(store.entries("layers").empty());
    auto ok = store.run({"--max-layer-depth", "10", "import", src.path()});
    INFO(ok);
    CHECK(ok.exit_code == 0);
  }

  SECTION("usage errors exit 2") {
    CHECK(store.run({"--max-layer-size", "lots", "ls"}).exit_code == 2);
    CHECK(store.run({"--max-layer-depth", "-1", "ls"}).exit_code == 2);
    CHECK(store.run({}).exit_code == 2);
    CHECK(store.run({"frobnicate"}).exit_code == 2);
    CHECK(store.run({"mount", "x"}).exit_code == 2);  // no --id
    CHECK(store.run({"mount", "x", "--id", "y", "--size", "lots"}).exit_code == 2);
    CHECK(store.run({"pull", "x", "--platform", "linux"}).exit_code == 2);
    CHECK(store.run({"import", "x", "--format", "zip"}).exit_code == 2);
    // A malformed --creds is refused without echoing it: it may hold a password.
    auto creds = store.run({"pull", "x", "--creds", "secret-without-user"});
    CHECK(creds.exit_code == 2);
    CHECK_FALSE(contains(creds.err, "secret-without-user"));
  }
}

TEST_CASE("berth-rootfs pull reports progress per phase and a summary",
          "[privileged][rootfs-cli]") {
  REQUIRE_PRIVILEGED();
  for (const char* tool : {"/usr/bin/docker-registry", "/usr/bin/skopeo"}) {
    if (::access(tool, X_OK) != 0) {
      BERTH_SKIP(tool << " not installed (scripts/install-deps.sh installs it)");
    }
  }
  Registry registry;
  TestImage image;
  const std::string ref = registry.host() + "/berth-test/app:v1";
  auto push = exec_command({"skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
                            "oci:" + image.layout(), "docker://" + ref},
                           {.timeout = 120s});
  INFO(push);
  REQUIRE(push.exit_code == 0);
  const std::string digest = layout_manifest_digest(image.layout());
  Store store;

  auto first = store.run({"pull", ref});
  INFO(first);
  REQUIRE(first.exit_code == 0);
  auto lines = split_lines(first.out);
  REQUIRE_FALSE(lines.empty());
  const std::string summary = "Pulled " + ref + " (" + digest + "): ";
  CHECK(lines.back().rfind(summary, 0) == 0);
  CHECK(std::regex_match(lines.back().substr(summary.size()),
                         std::regex("2 blobs fetched, 0 already present, [0-9.]+ (B|KiB|MiB)")));
  // Not a terminal: one line per phase change, never one per chunk, and
  // no cursor movement.
  std::set<std::string> ids;
  int downloading = 0;
  for (const auto& l : lines) {
    if (l.find(": Downloading") != std::string::npos) {
      ++downloading;
      ids.insert(l.substr(0, l.find(':')));
    }
  }
  CHECK(downloading == 2);  // the config and the one layer
  CHECK(ids.size() == 2);
  for (const auto& id : ids) CHECK(std::regex_match(id, std::regex("[0-9a-f]{12}")));
  CHECK(first.out.find('\x1b') == std::string::npos);

  auto again = store.run({"pull", ref});
  INFO(again);
  REQUIRE(again.exit_code == 0);
  CHECK(split_lines(again.out).back().find("): 0 blobs fetched, 2 already present, ") !=
        std::string::npos);
  auto ls = store.run({"ls", "-o", "json"});
  Json j = output_json(ls);
  REQUIRE(j.size() == 1);
  CHECK(j[0]["digest"] == digest);
  CHECK(j[0]["names"] == Json::array({ref}));
}
