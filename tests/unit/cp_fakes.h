// Fakes of the control plane's seams for unit tests: an Agent that behaves
// like the node side (events in the order a shim sends them, from a thread
// of its own) without building anything.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/agent/agent.h"
#include "controlplane/model/errors.h"

namespace berth::cp::test {

// Polls `cond` every 5 ms until it holds or `timeout` passes: tests wait on
// conditions, never on fixed sleeps.
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

class FakeAgent : public Agent {
 public:
  // How a launch of a task whose first container has this image goes.
  struct Script {
    std::optional<std::string> fail_launch;  // the launch fails with this reason
    bool start = true;                       // emit container_started events
  };

  FakeAgent() : thread_([this](std::stop_token st) { run(st); }) {}
  ~FakeAgent() override {
    {
      std::lock_guard lock(mu_);
      thread_.request_stop();
    }
    cv_.notify_all();
  }

  void set_event_sink(AgentEventSink sink) override {
    std::lock_guard lock(mu_);
    sink_ = std::move(sink);
  }

  Result<Launched> launch(const TaskLaunch& t) override {
    Script s;
    size_t n = 0;
    {
      std::lock_guard lock(mu_);
      launches.push_back(t.task.id);
      n = launches.size();
      if (!t.definition.containers.empty()) {
        if (auto it = scripts.find(t.definition.containers.front().image); it != scripts.end()) {
          s = it->second;
        }
      }
    }
    if (s.fail_launch) {
      return std::unexpected(Error{"agent", 0, *s.fail_launch, ErrorKind::invalid});
    }
    Launched l;
    l.node_ref = "/fake/tasks/" + t.task.id;
    // A distinct address per launch (10.77.0.2, 10.77.0.3, ...).
    l.private_ipv4 = "10.77." + std::to_string(n / 250) + "." + std::to_string(1 + n % 250);
    l.mac_address = "02:00:0a:4d:00:02";
    for (const auto& c : t.task.containers) {
      LaunchedContainer lc;
      lc.name = c.name;
      lc.image_digest = "sha256:" + std::string(64, 'a');
      lc.runtime_id = t.task.id + "." + c.name;
      l.containers.push_back(lc);
    }
    std::vector<std::string> names;
    for (const auto& c : t.task.containers) names.push_back(c.name);
    {
      std::lock_guard lock(mu_);
      tasks_[t.task.id] = names;
      ips_[t.task.id] = l.private_ipv4;
    }
    emit(AgentEvent::Kind::pull_started, t.task.id);
    emit(AgentEvent::Kind::pull_stopped, t.task.id);
    emit(AgentEvent::Kind::task_started, t.task.id);
    if (s.start) {
      for (const auto& n : names) {
        emit(AgentEvent::Kind::container_started, t.task.id, n,
             {{"name", n}, {"status", "RUNNING"}});
      }
    }
    return l;
  }

  // StopTask: the shim stops every container (SIGTERM: 143).
  Result<void> stop(const std::string& task_id, const std::string& reason,
                    std::optional<int>) override {
    {
      std::lock_guard lock(mu_);
      stops.push_back(task_id);
      // Drain order: a task stopped while still a backend of an endpoint.
      for (const auto& [id, ep] : endpoints) {
        for (const auto& b : ep.backends) {
          if (auto ip = ips_.find(task_id); ip != ips_.end() && ip->second == b.ip) {
            stopped_while_backend.push_back(task_id);
          }
        }
      }
      if (!tasks_.contains(task_id)) {
        return std::unexpected(Error{"agent", 0, "no such task " + task_id, ErrorKind::not_found});
      }
    }
    emit(AgentEvent::Kind::task_stopping, task_id, "",
         {{"stopped_reason", "TaskStopped: " + reason}});
    finish(task_id, 143, false, "");
    return {};
  }

  // A container exits on its own (its essential exit stops the task).
  void exit_container(const std::string& task_id, const std::string& name, int code, bool oom) {
    emit(AgentEvent::Kind::container_exited, task_id, name,
         {{"name", name}, {"status", "STOPPED"}, {"exit_code", code}, {"oom_killed", oom}});
    emit(AgentEvent::Kind::task_stopping, task_id, "",
         {{"stopped_reason", "EssentialContainerExited: " + name}});
    finish(task_id, code, oom, name);
  }

  Result<void> release(const std::string& task_id) override {
    {
      std::lock_guard lock(mu_);
      releases.push_back(task_id);
    }
    // As NodeAgent: the sample at release is the final one.
    std::lock_guard lock(usage_mu_);
    if (auto it = usage_.find(task_id); it != usage_.end()) it->second.final = true;
    return {};
  }
  // What set_usage() scripted for the task (final once released); not_found
  // when nothing was (as NodeAgent for a task it has no state of).
  Result<UsageSample> usage(const std::string& task_id) override {
    std::lock_guard lock(usage_mu_);
    auto it = usage_.find(task_id);
    if (it == usage_.end()) {
      return kind_error(ErrorKind::not_found, "usage", "task {} not known", task_id);
    }
    return it->second;
  }
  Result<void> purge(const std::string& task_id) override {
    {
      std::lock_guard lock(mu_);
      purges.push_back(task_id);
    }
    std::lock_guard lock(usage_mu_);
    usage_.erase(task_id);
    return {};
  }

  // Scripts usage(task_id) (any thread; a later call replaces the sample,
  // a released task's included: the test decides).
  void set_usage(const std::string& task_id, const UsageSample& s) {
    std::lock_guard lock(usage_mu_);
    usage_[task_id] = s;
  }
  // Removes the script: usage() is not_found again.
  void clear_usage(const std::string& task_id) {
    std::lock_guard lock(usage_mu_);
    usage_.erase(task_id);
  }

  // Service endpoints: recorded by id (VIPs 10.88.255.N handed out in
  // order); endpoint_calls counts set/remove calls.
  Result<std::string> set_service_endpoint(const ServiceEndpoint& ep) override {
    std::lock_guard lock(mu_);
    ++endpoint_calls;
    ServiceEndpoint e = ep;
    if (e.vip.empty()) e.vip = "10.88.255." + std::to_string(++next_vip_);
    endpoints[e.id] = e;
    return e.vip;
  }
  Result<void> remove_service_endpoint(const std::string& id) override {
    std::lock_guard lock(mu_);
    ++endpoint_calls;
    endpoints.erase(id);
    return {};
  }
  std::optional<ServiceEndpoint> endpoint(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = endpoints.find(id);
    if (it == endpoints.end()) return std::nullopt;
    return it->second;
  }

  Result<std::vector<Adopted>> adopt(const std::vector<LiveTask>& live) override {
    std::lock_guard lock(mu_);
    adopt_calls.push_back(live);
    std::vector<Adopted> out;
    for (const auto& l : live) {
      if (auto it = adopt_results.find(l.task_id); it != adopt_results.end()) {
        out.push_back(it->second);
        if (it->second.shim_alive) tasks_[l.task_id] = {};
      }
    }
    return out;
  }

  Result<ShimLogChunk> logs(const std::string& task_id, const std::string& container,
                            uint64_t offset, uint64_t max_bytes) override {
    std::lock_guard lock(mu_);
    auto it = logs_.find(task_id + "/" + container);
    if (it == logs_.end()) {
      return std::unexpected(Error{"agent", 0, "no log for " + task_id, ErrorKind::not_found});
    }
    ShimLogChunk c;
    c.end_offset = it->second.size();
    if (offset < it->second.size()) c.data = it->second.substr(offset, max_bytes);
    c.next_offset = offset + c.data.size();
    c.task_running = !log_done_.contains(task_id);
    return c;
  }
  void append_log(const std::string& task_id, const std::string& container, const std::string& s) {
    std::lock_guard lock(mu_);
    logs_[task_id + "/" + container] += s;
  }
  void end_logs(const std::string& task_id) {
    std::lock_guard lock(mu_);
    log_done_.insert(task_id);
  }

  void set_warm_pool_target(int n) override { pool_ = n; }
  int warm_pool_size() const override { return pool_; }
  void shutdown() override {}

  // Waits until every emitted event has been delivered to the sink.
  void flush() {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [this] { return q_.empty() && !delivering_; });
  }

  // Test controls and records (guarded by the test's own sequencing).
  std::map<std::string, Script> scripts;  // by image
  std::map<std::string, Adopted> adopt_results;
  std::vector<std::string> launches, stops, releases, purges;
  std::vector<std::vector<LiveTask>> adopt_calls;
  std::map<std::string, ServiceEndpoint> endpoints;
  std::vector<std::string> stopped_while_backend;
  std::map<std::string, std::string> ips_;  // task id -> address
  int endpoint_calls = 0;
  int next_vip_ = 0;
  std::mutex mu_;

  std::vector<std::string> recorded(const std::vector<std::string>& v) {
    std::lock_guard lock(mu_);
    return v;
  }

 private:
  void finish(const std::string& task_id, int code, bool oom, const std::string& exited) {
    std::vector<std::string> names;
    {
      std::lock_guard lock(mu_);
      names = tasks_[task_id];
      tasks_.erase(task_id);
    }
    nlohmann::json containers = nlohmann::json::array();
    for (const auto& n : names) {
      nlohmann::json c = {{"name", n}, {"status", "STOPPED"}, {"essential", true}};
      if (exited.empty() || n == exited) {
        c["exit_code"] = code;
        c["oom_killed"] = oom && n == exited;
      } else {
        c["exit_code"] = 143;
        c["oom_killed"] = false;
      }
      containers.push_back(c);
    }
    emit(AgentEvent::Kind::task_stopped, task_id, "",
         {{"task_id", task_id}, {"status", "STOPPED"}, {"containers", containers}});
  }

  void emit(AgentEvent::Kind k, const std::string& task_id, const std::string& container = "",
            nlohmann::json state = nullptr) {
    AgentEvent e{k, task_id, container, std::move(state), Clock::now()};
    {
      std::lock_guard lock(mu_);
      q_.push_back(std::move(e));
    }
    cv_.notify_all();
  }

  void run(std::stop_token st) {
    std::unique_lock lock(mu_);
    while (!st.stop_requested()) {
      cv_.wait(lock, [&] { return st.stop_requested() || !q_.empty(); });
      while (!q_.empty()) {
        AgentEvent e = std::move(q_.front());
        q_.pop_front();
        delivering_ = true;
        auto sink = sink_;
        lock.unlock();
        if (sink) sink(e);
        lock.lock();
        delivering_ = false;
      }
      idle_cv_.notify_all();
    }
  }

  AgentEventSink sink_;
  std::deque<AgentEvent> q_;
  bool delivering_ = false;
  std::condition_variable cv_, idle_cv_;
  std::map<std::string, std::vector<std::string>> tasks_;
  std::map<std::string, std::string> logs_;
  std::set<std::string> log_done_;
  int pool_ = 0;
  std::mutex usage_mu_;
  std::map<std::string, UsageSample> usage_;
  std::jthread thread_;  // last: stopped and joined first
};

}  // namespace berth::cp::test
