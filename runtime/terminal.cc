#include "runtime/terminal.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>

#include "common/fd.h"
#include "runtime/sync.h"

namespace berth::runtime {

Result<void> setup_terminal(int console_socket, const std::optional<ConsoleSize>& size) {
  UniqueFd master(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master) return sys_error("terminal", "open /dev/ptmx");
  if (::unlockpt(master.get()) != 0) return sys_error("terminal", "unlockpt");
  char name[64];
  if (::ptsname_r(master.get(), name, sizeof name) != 0) return sys_error("terminal", "ptsname");
  if (size) {
    struct winsize ws = {static_cast<unsigned short>(size->height),
                         static_cast<unsigned short>(size->width), 0, 0};
    if (::ioctl(master.get(), TIOCSWINSZ, &ws) != 0) return sys_error("terminal", "TIOCSWINSZ");
  }
  UniqueFd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) return sys_error("terminal", "open {}", name);

  // /dev/console: a bind of the slave, so programs that write to the console
  // reach the same terminal.
  UniqueFd console(::open("/dev/console", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  if (!console) return sys_error("terminal", "create /dev/console");
  console.reset();
  if (::mount(name, "/dev/console", nullptr, MS_BIND, nullptr) != 0) {
    return sys_error("terminal", "bind {} on /dev/console", name);
  }

  BERTH_TRY(send_fd(console_socket, master.get(), "/dev/ptmx"));
  master.reset();

  if (::setsid() < 0) return sys_error("terminal", "setsid");
  if (::ioctl(slave.get(), TIOCSCTTY, 0) != 0) return sys_error("terminal", "TIOCSCTTY");
  for (int fd = 0; fd < 3; ++fd) {
    if (::dup3(slave.get(), fd, 0) < 0) return sys_error("terminal", "dup3 onto fd {}", fd);
  }
  return {};
}

}  // namespace berth::runtime
