// A real berthd for end-to-end tests: its own state and run dirs, bridge,
// subnet, cgroup subtree and nftables table (all named after the test
// process, so runs in parallel never meet), started as a child process and
// reached over its unix socket and a TCP listener on 127.0.0.1. On
// destruction every task is stopped, berthd is stopped, and `berthd
// --teardown` removes what the instance made; leftovers fail the test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace berth::test {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;
  nlohmann::json json() const;  // the body parsed (discarded value if not JSON)
};

struct HttpCall {
  std::string method = "GET";
  std::string target = "/";
  std::string body;
  std::map<std::string, std::string> headers;
};

// One request on a new connection (Connection: close), to a unix socket or
// to 127.0.0.1:port; throws on a transport failure or after `timeout`.
HttpResult http_unix(const std::string& socket, const HttpCall& call,
                     std::chrono::seconds timeout = std::chrono::seconds(60));
// A streamed answer (chunked: /v1/events, logs?follow=true): `on_data`
// gets the raw bytes of the body as they arrive and returns false to stop
// reading; also ends when the server closes or after `timeout`.
void http_unix(const std::string& socket, const HttpCall& call, std::chrono::seconds timeout,
               const std::function<bool(const std::string&)>& on_data);
HttpResult http_tcp(int port, const HttpCall& call,
                    std::chrono::seconds timeout = std::chrono::seconds(60));

// A busybox image (tests/scripts/make-rootfs.sh: every applet, plus the
// probe) imported as busybox:latest into a new image store at `dir`.
void make_image_store(const std::string& dir);

// Task definitions of the end-to-end tests: FARGATE-sized, busybox
// containers.
inline nlohmann::json definition(const std::string& family, nlohmann::json containers) {
  return {{"family", family},        {"requiresCompatibilities", {"FARGATE"}},
          {"networkMode", "awsvpc"}, {"cpu", "256"},
          {"memory", "512"},         {"containerDefinitions", std::move(containers)}};
}

inline nlohmann::json container(const std::string& name, std::vector<std::string> command,
                                nlohmann::json extra = nlohmann::json::object()) {
  nlohmann::json c = {{"name", name}, {"image", "busybox:latest"}, {"command", std::move(command)}};
  c.update(extra);
  return c;
}

// A long-running command that exits 143 on SIGTERM at once (a plain
// `sleep` as pid 1 ignores SIGTERM and waits for the stop timeout's SIGKILL).
inline std::vector<std::string> sleeper() {
  return {"sh", "-c", "trap 'exit 143' TERM; sleep 3600 & wait"};
}

class Berthd {
 public:
  struct Options {
    int warm_pool = 1;
    // Extra TOML appended to the generated config ([[accounts]] ...).
    std::string extra_toml;
    // Extra keys of alice's [[accounts]] entry (max_vcpu = 0.5, ...).
    std::string alice_toml;
    std::string images_dir;  // default: <dir>/images made by make_image_store()
  };

  Berthd() : Berthd(Options{}) {}
  explicit Berthd(Options opts);
  ~Berthd();
  Berthd(const Berthd&) = delete;
  Berthd& operator=(const Berthd&) = delete;

  void start();
  // SIGKILL, as a crash would; the shims and tasks live on.
  void kill9();
  // SIGTERM and wait (graceful stop).
  void terminate();
  bool running() const;

  // An ECS operation over the unix socket (peer credentials: root).
  HttpResult ecs(const std::string& op, const nlohmann::json& body = nlohmann::json::object());
  HttpResult call(const HttpCall& c) { return http_unix(socket_, c); }
  // ECS JSON, failing the test on a non-200 answer.
  nlohmann::json ecs_ok(const std::string& op, const nlohmann::json& body);
  // Polls DescribeTasks until the task's lastStatus is `status`.
  nlohmann::json wait_task_status(const std::string& task_arn, const std::string& status,
                                  std::chrono::seconds timeout = std::chrono::seconds(120));

  const std::string& socket() const { return socket_; }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_; }
  const std::string& bridge() const { return bridge_; }
  const std::string& subnet() const { return subnet_; }
  const std::string& cgroup_name() const { return cgroup_name_; }
  const std::string& nft_table() const { return nft_table_; }
  std::string log() const;  // berthd's stderr so far

  // The access keys of the two accounts every fixture config has:
  // alice (000000000001, uid 0 on the socket, may add NET_ADMIN) and bob
  // (000000000002, TCP only, Fargate's rule).
  static constexpr const char* kAliceKey = "AKIDALICE0000000001";
  static constexpr const char* kAliceSecret = "alice-secret-key-0000000000000000000001";
  static constexpr const char* kBobKey = "AKIDBOB000000000002";
  static constexpr const char* kBobSecret = "bob-secret-key-00000000000000000000002";

 private:
  void stop_all_tasks();
  void teardown();

  Options opts_;
  std::string dir_, socket_, config_, bridge_, subnet_, cgroup_name_, nft_table_, log_path_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace berth::test
