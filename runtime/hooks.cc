#include "runtime/hooks.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "common/fd.h"
#include "common/log.h"

namespace berth::runtime {

namespace {

// Waits for `pid` (through its pidfd) up to `timeout_s` seconds (< 0: no
// limit). Returns the wait status, or ETIMEDOUT after killing it.
Result<int> wait_with_timeout(pid_t pid, int timeout_s, const std::string& what) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd && timeout_s > 0) {
    struct pollfd p = {pidfd.get(), POLLIN, 0};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      int n = ::poll(&p, 1, static_cast<int>(std::max<long>(0, left.count())));
      if (n > 0) break;
      if (n == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return errno_error("hooks", ETIMEDOUT, "{} timed out after {}s", what, timeout_s);
      }
      if (errno != EINTR) return sys_error("hooks", "poll {}", what);
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("hooks", "waitpid {}", what);
  }
  return status;
}

// argv / envp for execve, built before fork: between fork and execve the
// child only calls async-signal-safe functions (no allocation, no locks), so
// hooks are safe to run from a process with threads (berthd).
struct ExecArgs {
  std::vector<std::string> args;
  std::vector<char*> argv, envp;

  explicit ExecArgs(const Hook& hook)
      : args(hook.args.empty() ? std::vector{hook.path} : hook.args) {
    argv.reserve(args.size() + 1);
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    envp.reserve(hook.env.size() + 1);
    for (const std::string& e : hook.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
};

Result<void> run_hook(const Hook& hook, const std::string& state_json, const std::string& what) {
  int in[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return sys_error("hooks", "pipe for {}", what);
  UniqueFd rd(in[0]), wr(in[1]);
  const ExecArgs exec(hook);
  const char* path = hook.path.c_str();
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("hooks", "fork {}", what);
  if (pid == 0) {
    // Async-signal-safe only from here on.
    ::dup2(rd.get(), STDIN_FILENO);
    ::execve(path, exec.argv.data(), exec.envp.data());
    ::_exit(127);
  }
  rd.reset();
  // The hook may exit without reading its stdin: ignore EPIPE (MSG_NOSIGNAL
  // is not available for pipes, so SIGPIPE is blocked around the write).
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  (void)!::write(wr.get(), state_json.data(), state_json.size());
  wr.reset();
  struct timespec zero = {0, 0};
  while (::sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);

  BERTH_ASSIGN(int status, wait_with_timeout(pid, hook.timeout.value_or(-1), what));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  if (WIFEXITED(status)) {
    return error("hooks", "{} exited with status {}", what, WEXITSTATUS(status));
  }
  return error("hooks", "{} killed by signal {}", what, WTERMSIG(status));
}

}  // namespace

Result<void> run_hooks(const std::vector<Hook>& hooks, const std::string& state_json,
                       const char* kind, HookFailure on_failure) {
  for (size_t i = 0; i < hooks.size(); ++i) {
    std::string what = fmt::format("{} hook {} ({})", kind, i, hooks[i].path);
    auto r = run_hook(hooks[i], state_json, what);
    if (r) continue;
    if (on_failure == HookFailure::stop) return r;
    log::warn("{}", r.error().str());
  }
  return {};
}

}  // namespace berth::runtime
