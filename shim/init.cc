#include "shim/init.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace berth::shim {

int run_init(int argc, char** argv) {
  if (argc > 0 && std::strcmp(argv[0], "--") == 0) {
    ++argv;
    --argc;
  }
  if (argc == 0) {
    std::fprintf(stderr, "berth-init: usage: berth-init init -- COMMAND [ARGS...]\n");
    return 2;
  }
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  pid_t child = ::fork();
  if (child < 0) {
    std::fprintf(stderr, "berth-init: fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (child == 0) {
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    ::execvp(argv[0], argv);
    std::fprintf(stderr, "berth-init: exec %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  while (true) {
    siginfo_t si;
    int sig = ::sigwaitinfo(&all, &si);
    if (sig < 0) continue;  // EINTR
    if (sig != SIGCHLD) {
      // SIGKILL/SIGSTOP never arrive here; everything else goes to the child.
      ::kill(child, sig);
      continue;
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == child) {
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
  }
}

}  // namespace berth::shim
