#include "controlplane/agent/shim_spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string_view>
#include <vector>

extern char** environ;

namespace berth::cp {

namespace {

struct Pipe {
  UniqueFd r, w;
  static Result<Pipe> make() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return sys_error("shim", "pipe");
    return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  }
};

// Reads the starter's stdout and stderr until both reach EOF (the starter
// exited; the detached shim has its stdio on /dev/null).
void drain(int out_fd, int err_fd, std::string& out, std::string& err) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* bufs[2] = {&out, &err};
  int open = 2;
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i].fd = -1;
        --open;
        continue;
      }
      if (bufs[i]->size() < (64 << 10)) bufs[i]->append(buf, static_cast<size_t>(n));
    }
  }
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Result<SpawnedShim> spawn_shim(const std::string& shim_binary, const std::string& task_dir) {
  BERTH_ASSIGN(Pipe out, Pipe::make());
  BERTH_ASSIGN(Pipe err, Pipe::make());
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err.w.get(), 2);
  // Nothing of berthd's but stdio reaches the shim, whatever another thread
  // opened without O_CLOEXEC (Asio's listening and accepted sockets are
  // such fds): a shim holding berthd's listening socket would keep a killed
  // berthd's socket alive, and the next berthd could not take it.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The daemon may block or ignore signals; the shim must start clean.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> args = {shim_binary, "--task-dir", task_dir, "--hold"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, shim_binary.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return errno_error("shim", rc, "spawn {}", shim_binary);
  out.w.reset();
  err.w.reset();
  std::string stdout_text, stderr_text;
  drain(out.r.get(), err.r.get(), stdout_text, stderr_text);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("shim", "waitpid {} (the shim's starter)", pid);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return error("shim", "{} --task-dir {} failed ({}): {}", shim_binary, task_dir,
                 WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                   : "signal " + std::to_string(WTERMSIG(status)),
                 trimmed(stderr_text));
  }
  std::string text = trimmed(stdout_text);
  pid_t shim_pid = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), shim_pid);
  if (ec != std::errc() || p != text.data() + text.size() || shim_pid <= 0) {
    return error("shim", "{} printed {:?} instead of the shim's pid", shim_binary, text);
  }
  SpawnedShim s;
  s.pid = shim_pid;
  BERTH_ASSIGN(s.pidfd, open_pidfd(shim_pid));
  return s;
}

Result<UniqueFd> open_pidfd(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return sys_error("shim", "pidfd_open {}", pid);
  return UniqueFd(fd);
}

bool pidfd_alive(int pidfd) {
  return !pidfd_wait_exit(pidfd, 0);
}

Result<void> pidfd_signal(int pidfd, int sig) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0 && errno != ESRCH) {
    return sys_error("shim", "pidfd_send_signal {}", sig);
  }
  return {};
}

bool pidfd_wait_exit(int pidfd, int timeout_ms) {
  pollfd p{pidfd, POLLIN, 0};
  for (;;) {
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

}  // namespace berth::cp
