// Helpers for the CVE-2019-5736 tests (cve_2019_5736_test.cc, shim_test.cc):
// copies of the berth binaries to attack (a successful attack must not
// corrupt the build), the `#!/proc/self/exe` script, a pipe that blocks its
// writer, and the attacker's log (`probe attack-exe`).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace berth::test {

// Copies of berth-runtime and berth-shim in a temp dir, and their bytes as
// built, to tell whether an attack changed them. BERTH_CVE_BIN_DIR names
// other binaries to copy (an older build, to see the tests fail on it).
// `subdir` is where in the temp dir they go: a name with a ',' makes the
// runtime fall back from the overlay to the sealed memfd (sealed_exe.cc).
class BinaryCopies {
 public:
  explicit BinaryCopies(std::string subdir = "bin") : subdir_(std::move(subdir)) {
    std::filesystem::create_directory(dir_.path() + "/" + subdir_);
    const char* from = std::getenv("BERTH_CVE_BIN_DIR");
    for (const char* name : {"berth-runtime", "berth-shim"}) {
      std::string src = std::string(from ? from : BERTH_BIN_DIR) + "/" + name;
      std::filesystem::copy_file(src, path(name));
      ::chmod(path(name).c_str(), 0755);
      original_.emplace_back(name, read_file(src));
    }
  }
  std::string path(const std::string& name) const {
    return dir_.path() + "/" + subdir_ + "/" + name;
  }
  bool unchanged(const std::string& name) const {
    for (const auto& [n, bytes] : original_) {
      if (n == name) return read_file(path(name)) == bytes;
    }
    return false;
  }
  // "dev:ino" of a copy, as the attacker's fstat prints it.
  std::string identity(const std::string& name) const {
    struct stat st {};
    REQUIRE(::stat(path(name).c_str(), &st) == 0);
    return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  }

 private:
  TempDir dir_;
  std::string subdir_;
  std::vector<std::pair<std::string, std::string>> original_;
};

// The image's half of the attack: a script whose interpreter is the exe of
// whoever execs it, i.e. the runtime's binary when the runtime execs it.
inline void add_evil_script(const std::string& rootfs, const std::string& line) {
  std::string path = rootfs + "/bin/evil";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  REQUIRE(fd >= 0);
  std::string text = "#!" + line + "\n";
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
  ::chmod(path.c_str(), 0755);
}

// A bind of `dir` at /out, where the attacker writes its log.
inline void add_out_mount(Json& config, const std::string& dir) {
  config["mounts"].push_back(
      {{"destination", "/out"}, {"type", "bind"}, {"source", dir}, {"options", {"rbind", "rw"}}});
}

// A pipe whose buffer is full: whoever writes to it blocks until drain().
// The runtime's binary, run by the script, prints its usage error to stderr
// and so stays alive, as a slow runtime would, until the test lets it go.
class FullPipe {
 public:
  FullPipe() {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    r_ = p[0];
    w_ = p[1];
    ::fcntl(w_, F_SETPIPE_SZ, 4096);
    ::fcntl(w_, F_SETFL, O_NONBLOCK);
    std::string junk(4096, 'x');
    while (::write(w_, junk.data(), junk.size()) > 0) {
    }
    ::fcntl(w_, F_SETFL, 0);
  }
  ~FullPipe() {
    close_writer();
    ::close(r_);
  }
  int writer() const { return w_; }
  void close_writer() {
    if (w_ >= 0) ::close(w_);
    w_ = -1;
  }
  // Reads until every writer is gone (EOF) or `timeout`; true at EOF.
  bool drain(std::chrono::milliseconds timeout = 60s) {
    close_writer();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{r_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      ssize_t n = ::read(r_, buf, sizeof buf);
      if (n == 0) return true;
      if (n > 0) text_.append(buf, static_cast<size_t>(n));
    }
    return false;
  }
  // What the blocked writers wrote (after the 4096 filler bytes).
  std::string text() const { return text_.size() > 4096 ? text_.substr(4096) : ""; }

 private:
  int r_ = -1, w_ = -1;
  std::string text_;
};

// fork + exec with stdin and stdout on /dev/null and stderr on `err`.
inline pid_t spawn_with_stderr(const std::vector<std::string>& argv, int err) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(err, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for a child; its exit code, or -1 after `timeout` (it is killed).
inline int wait_child(pid_t pid, std::chrono::milliseconds timeout = 60s) {
  int status = 0;
  bool done = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout);
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The attacker's log (probe attack-exe).
struct AttackLog {
  std::string text;
  bool found() const { return text.find("found pid=") != std::string::npos; }
  bool done() const { return text.find("done\n") != std::string::npos; }
  // "dev:ino" of the exe the attacker got a handle on.
  std::string handle_identity() const {
    std::smatch m;
    static const std::regex re("found pid=\\d+ dev=(\\d+) ino=(\\d+)");
    if (!std::regex_search(text, m, re)) return "";
    return m[1].str() + ":" + m[2].str();
  }
  std::string line(const std::string& prefix) const {
    size_t at = text.find(prefix);
    if (at == std::string::npos) return "";
    return text.substr(at, text.find('\n', at + 1) - at);
  }
};

inline AttackLog read_attack_log(const std::string& path) {
  return AttackLog{std::filesystem::exists(path) ? read_file(path) : ""};
}

// The verdict on one attack: the attacker found the runtime's binary in the
// container, but its handle is not the host's file, the write failed, and
// the host's binary is unchanged. The error the write got is printed, for
// the record.
inline void check_attack_failed(const AttackLog& log, const BinaryCopies& bins,
                                const std::string& binary, const std::string& what) {
  INFO(what << ": attacker's log:\n" << log.text);
  REQUIRE(log.found());
  REQUIRE(log.done());
  CHECK(log.handle_identity() != bins.identity(binary));
  CHECK(log.text.find("\nwrite: OK") == std::string::npos);
  CHECK(log.text.find("open-write: ") != std::string::npos);
  CHECK(bins.unchanged(binary));
  std::string write = log.line("\nwrite");
  std::cout << "CVE-2019-5736 (" << what << "): " << log.line("found") << "; "
            << log.line("open-write") << "; " << (write.empty() ? "no write" : write.substr(1))
            << "\n";
}

}  // namespace berth::test
