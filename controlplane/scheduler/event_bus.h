// Task state changes fanned out to subscribers (GET /v1/events): each
// subscriber sees every change of its own account's tasks, in publication
// order, through a bounded queue. A subscriber that falls behind by more than
// its queue loses the oldest changes and is told so (dropped()), rather than
// making the publisher (the scheduler) wait for a slow client.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/model/model.h"

namespace berth::cp {

// A task's change, or (service_event set) a service's event: the object
// /v1/events sends as "event: ServiceEvent" ({serviceArn, serviceName,
// clusterArn, id, createdAt, message}).
struct TaskStateChange {
  std::string account;
  Task task;  // the task after the change
  std::optional<nlohmann::json> service_event;
};

class EventBus;

class Subscription {
 public:
  Subscription(std::string account, size_t capacity)
      : account_(std::move(account)), cap_(capacity) {}
  // Waits up to `timeout` for the next change; nullopt on timeout or once
  // closed and empty.
  std::optional<TaskStateChange> next(std::chrono::milliseconds timeout);
  // Changes lost to overflow since the subscription began.
  uint64_t dropped() const;
  bool closed() const;
  void close();
  const std::string& account() const { return account_; }

 private:
  friend class EventBus;
  void push(const TaskStateChange& c);

  const std::string account_;
  const size_t cap_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TaskStateChange> q_;
  uint64_t dropped_ = 0;
  bool closed_ = false;
};

class EventBus {
 public:
  explicit EventBus(size_t queue_capacity = 1024) : cap_(queue_capacity) {}
  std::shared_ptr<Subscription> subscribe(const std::string& account);
  void publish(const TaskStateChange& c);
  // Closes every subscription (shutdown): their readers return.
  void close_all();
  size_t subscribers() const;

 private:
  const size_t cap_;
  mutable std::mutex mu_;
  std::vector<std::weak_ptr<Subscription>> subs_;
};

}  // namespace berth::cp
