#include "controlplane/scheduler/event_bus.h"

#include <algorithm>

namespace berth::cp {

std::optional<TaskStateChange> Subscription::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return closed_ || !q_.empty(); });
  if (q_.empty()) return std::nullopt;
  TaskStateChange c = std::move(q_.front());
  q_.pop_front();
  return c;
}

uint64_t Subscription::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

bool Subscription::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

void Subscription::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

void Subscription::push(const TaskStateChange& c) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (q_.size() >= cap_) {
      q_.pop_front();
      ++dropped_;
    }
    q_.push_back(c);
  }
  cv_.notify_one();
}

std::shared_ptr<Subscription> EventBus::subscribe(const std::string& account) {
  auto s = std::make_shared<Subscription>(account, cap_);
  std::lock_guard lock(mu_);
  subs_.push_back(s);
  return s;
}

void EventBus::publish(const TaskStateChange& c) {
  std::vector<std::shared_ptr<Subscription>> targets;
  {
    std::lock_guard lock(mu_);
    std::erase_if(subs_, [](const auto& w) {
      auto s = w.lock();
      return !s || s->closed();
    });
    for (const auto& w : subs_) {
      if (auto s = w.lock(); s && s->account() == c.account) targets.push_back(std::move(s));
    }
  }
  for (const auto& s : targets) s->push(c);
}

void EventBus::close_all() {
  std::vector<std::shared_ptr<Subscription>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& w : subs_) {
      if (auto s = w.lock()) all.push_back(std::move(s));
    }
    subs_.clear();
  }
  for (const auto& s : all) s->close();
}

size_t EventBus::subscribers() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(subs_.begin(), subs_.end(), [](const auto& w) {
    auto s = w.lock();
    return s && !s->closed();
  }));
}

}  // namespace berth::cp
