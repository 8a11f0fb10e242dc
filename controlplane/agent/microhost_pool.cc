#include "controlplane/agent/microhost_pool.h"

#include <sys/random.h>

#include <chrono>

#include <fmt/format.h>

#include "common/log.h"

namespace berth::cp {

using nlohmann::json;

const char* network_mode_name(netns::NetworkMode m) {
  switch (m) {
    case netns::NetworkMode::awsvpc:
      return "awsvpc";
    case netns::NetworkMode::bridge:
      return "bridge";
    case netns::NetworkMode::host:
      return "host";
    case netns::NetworkMode::none:
      return "none";
  }
  return "none";
}

json microhost_json(const netns::Microhost& mh) {
  return {{"id", mh.id},
          {"mode", network_mode_name(mh.mode)},
          {"netns_path", mh.netns_path},
          {"ip", mh.ip},
          {"gateway", mh.gateway},
          {"prefix", mh.prefix},
          {"host_veth", mh.host_veth},
          {"mac", mh.mac}};
}

Result<netns::Microhost> microhost_from_json(const json& j) {
  netns::Microhost mh;
  auto str = [&](const char* k, std::string& out) -> bool {
    auto it = j.find(k);
    if (it == j.end() || !it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  auto num = [&](const char* k, auto& out) -> bool {
    auto it = j.find(k);
    if (it == j.end() || !it->is_number_unsigned()) return false;
    out = it->get<uint32_t>();
    return true;
  };
  std::string mode;
  if (!j.is_object() || !str("id", mh.id) || !str("mode", mode) ||
      !str("netns_path", mh.netns_path) || !num("ip", mh.ip) || !num("gateway", mh.gateway) ||
      !num("prefix", mh.prefix) || !str("host_veth", mh.host_veth)) {
    return error("microhost", "microhost record is incomplete: {}", j.dump());
  }
  BERTH_ASSIGN(mh.mode, netns::parse_network_mode(mode));
  // Records written before the MAC was kept: it follows from the address.
  if (!str("mac", mh.mac) && mh.ip != 0) mh.mac = netns::mac_for_ip(mh.ip);
  return mh;
}

namespace {

std::string pool_id() {
  uint64_t r = 0;
  if (::getrandom(&r, sizeof r, 0) != sizeof r) {
    r = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return fmt::format("w{:016x}", r);
}

}  // namespace

MicrohostPool::MicrohostPool(netns::Network& net) : net_(net) {
  thread_ = std::thread([this] { run(); });
}

MicrohostPool::~MicrohostPool() {
  shutdown();
}

void MicrohostPool::set_target(int n) {
  std::lock_guard lock(mu_);
  target_ = std::max(0, n);
  cv_.notify_all();
}

int MicrohostPool::size() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(ready_.size());
}

std::optional<netns::Microhost> MicrohostPool::take() {
  std::lock_guard lock(mu_);
  if (ready_.empty()) return std::nullopt;
  netns::Microhost mh = std::move(ready_.front());
  ready_.pop_front();
  cv_.notify_all();  // refill
  return mh;
}

void MicrohostPool::pause() {
  std::unique_lock lock(mu_);
  paused_ = true;
  cv_.wait(lock, [&] { return !building_; });
}

void MicrohostPool::resume() {
  std::lock_guard lock(mu_);
  paused_ = false;
  cv_.notify_all();
}

std::vector<std::string> MicrohostPool::ids() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& mh : ready_) out.push_back(mh.id);
  return out;
}

std::string MicrohostPool::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

void MicrohostPool::shutdown() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::deque<netns::Microhost> left;
  {
    std::lock_guard lock(mu_);
    left.swap(ready_);
  }
  for (const auto& mh : left) {
    if (auto r = net_.release_microhost(mh); !r) {
      log::warn("warm pool: release of {}: {}", mh.id, r.error().str());
    }
  }
}

void MicrohostPool::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock,
             [&] { return stop_ || (!paused_ && static_cast<int>(ready_.size()) < target_); });
    if (stop_) return;
    building_ = true;
    lock.unlock();
    auto mh = net_.create_microhost(pool_id(), netns::NetworkMode::awsvpc);
    lock.lock();
    building_ = false;
    cv_.notify_all();
    if (mh) {
      ready_.push_back(std::move(*mh));
      last_error_.clear();
    } else {
      last_error_ = mh.error().str();
      log::warn("warm pool: {}", last_error_);
      // Not in a tight loop: the next attempt after a second (or a change).
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_; });
    }
  }
}

}  // namespace berth::cp
