// The warm pool: microhost networks (netns + veth + address) built ahead of
// demand by a background thread, so that a launch only takes one. A taken
// microhost belongs to its task from then on and is released with it (a
// released netns is never handed out again). Pool microhosts are named
// "w<16 hex>"; those still in the pool when berthd dies are not recorded
// anywhere, so the next start's gc removes them and the pool is rebuilt.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "netns/network.h"

namespace berth::cp {

// A microhost as recorded in <task_dir>/microhost.json.
nlohmann::json microhost_json(const netns::Microhost& mh);
Result<netns::Microhost> microhost_from_json(const nlohmann::json& j);
const char* network_mode_name(netns::NetworkMode m);

class MicrohostPool {
 public:
  explicit MicrohostPool(netns::Network& net);
  ~MicrohostPool();
  MicrohostPool(const MicrohostPool&) = delete;
  MicrohostPool& operator=(const MicrohostPool&) = delete;

  void set_target(int n);
  int size() const;
  // A ready awsvpc microhost, or nullopt when the pool is empty.
  std::optional<netns::Microhost> take();
  // Stops building and waits for a build in flight (Network::gc must not
  // run beside a create); resume() carries on.
  void pause();
  void resume();
  // The ids of the microhosts in the pool (live for gc).
  std::vector<std::string> ids() const;
  // Stops the thread and releases every pooled microhost.
  void shutdown();
  // The last build error ("" when the last build worked), for logs/tests.
  std::string last_error() const;

 private:
  void run();

  netns::Network& net_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<netns::Microhost> ready_;
  int target_ = 0;
  bool paused_ = false;
  bool building_ = false;
  bool stop_ = false;
  std::string last_error_;
  std::thread thread_;
};

}  // namespace berth::cp
