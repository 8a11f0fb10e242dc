// berth-runtime-bench: start-to-exit latency of `RUNTIME run` for a container
// running /bin/true, berth-runtime against runc, on one bundle and in one
// process so that both see the same machine load.
//
//   berth-runtime-bench --berth PATH --runc PATH --bundle DIR --work DIR [--rounds N]
//
// Rounds alternate the runtimes and which one goes first, so a slow phase of
// the host (another build, page cache) hits both equally. Exits non-zero only
// when a runtime fails; missing the target ratio is reported, not an error.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

constexpr double kTargetRatio = 0.15;

struct Options {
  std::string berth, runc, bundle, work;
  int rounds = 100;
};

struct RuntimeUnderTest {
  std::string name;
  std::string path;
  std::string root;  // a private --root
  std::vector<double> ms;
};

double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "runtime-bench: %s\n", msg.c_str());
  std::exit(1);
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::map<std::string, std::string*> flags = {
      {"--berth", &o.berth}, {"--runc", &o.runc}, {"--bundle", &o.bundle}, {"--work", &o.work}};
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) die("missing value for " + a);
    if (a == "--rounds") {
      o.rounds = std::atoi(argv[++i]);
    } else if (auto f = flags.find(a); f != flags.end()) {
      *f->second = argv[++i];
    } else {
      die("unknown argument " + a);
    }
  }
  if (o.berth.empty() || o.runc.empty() || o.bundle.empty() || o.work.empty() || o.rounds < 1)
    die("usage: berth-runtime-bench --berth PATH --runc PATH --bundle DIR --work DIR "
        "[--rounds N]");
  return o;
}

// The benchmark's workload: /bin/true without a terminal. Everything else
// stays as `berth-runtime spec` wrote it, and both runtimes read this file.
void prepare_config(const std::string& bundle) {
  const std::string path = bundle + "/config.json";
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto config = nlohmann::json::parse(text.str(), nullptr, false);
  if (config.is_discarded() || !config.is_object()) die("cannot parse " + path);
  config["process"]["args"] = {"/bin/true"};
  config["process"]["terminal"] = false;
  std::ofstream out(path, std::ios::trunc);
  out << config.dump(2);
  if (!out) die("cannot write " + path);
}

// One `RUNTIME --root R run --bundle B ID`, timed from fork to reaped exit.
// The runtime's stderr goes to a file that is shown if it fails.
double time_run(const RuntimeUnderTest& rt, const Options& o, const std::string& id) {
  const std::string errfile = o.work + "/last-stderr";
  std::vector<std::string> argv = {rt.path, "--root", rt.root, "run", "--bundle", o.bundle, id};
  double start = now_ms();
  pid_t pid = fork();
  if (pid < 0) die(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    int err = open(errfile.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (null < 0 || err < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(err, 2) < 0)
      _exit(126);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  double elapsed = now_ms() - start;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream err(errfile);
    std::stringstream msg;
    msg << err.rdbuf();
    std::string how = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                        : "signal " + std::to_string(WTERMSIG(status));
    die(rt.name + " (" + rt.path + ") run " + id + " failed (" + how + "): " + msg.str());
  }
  return elapsed;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least p of the samples <= it.
  size_t rank = static_cast<size_t>(p * static_cast<double>(v.size()) + 0.999999);
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

void report(const std::vector<RuntimeUnderTest>& rts, int rounds) {
  std::printf("\nruntime run of /bin/true, %d rounds (start-to-exit wall time)\n", rounds);
  for (const auto& rt : rts) std::printf("  %s: %s\n", rt.name.c_str(), rt.path.c_str());
  std::printf("%-16s %10s %10s %10s\n", "runtime", "median ms", "p90 ms", "min ms");
  for (const auto& rt : rts)
    std::printf("%-16s %10.2f %10.2f %10.2f\n", rt.name.c_str(), percentile(rt.ms, 0.5),
                percentile(rt.ms, 0.9), *std::min_element(rt.ms.begin(), rt.ms.end()));
  double ratio = percentile(rts[0].ms, 0.5) / percentile(rts[1].ms, 0.5);
  std::printf("ratio berth/runc (median): %.2f (target <= %.2f)%s\n", ratio, kTargetRatio,
              ratio <= kTargetRatio ? "" : "  [target missed]");
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  prepare_config(o.bundle);
  std::vector<RuntimeUnderTest> rts = {{"berth-runtime", o.berth, o.work + "/root-berth", {}},
                                       {"runc", o.runc, o.work + "/root-runc", {}}};
  const std::string prefix = "bench-" + std::to_string(getpid());
  // One unmeasured run each: the first exec pays for page-cache misses.
  for (auto& rt : rts) time_run(rt, o, prefix + "-warmup-" + rt.name);
  for (int round = 0; round < o.rounds; round++) {
    for (int k = 0; k < 2; k++) {
      auto& rt = rts[(round + k) % 2];
      rt.ms.push_back(time_run(rt, o, prefix + "-" + rt.name + "-" + std::to_string(round)));
    }
  }
  report(rts, o.rounds);
  return 0;
}
