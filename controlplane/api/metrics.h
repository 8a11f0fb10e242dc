// Prometheus text exposition (GET /metrics):
//   berth_tasks{state="RUNNING"}                    gauge, tasks by lastStatus
//   berth_run_task_to_running_seconds               histogram (from 1 ms)
//   berth_api_requests_total{operation,code}        counter
//   berth_api_request_duration_seconds{operation}   histogram
//   berth_microhost_pool_size                       gauge (the agent's warm pool)
//   berth_billed_micro_usd_total{account="..."}     counter: micro-dollars in
//       the ledger records written for the account (Meter::billed_by_account;
//       an integer, so sums are exact; running tasks' accrued amount since
//       their last record is not in it). Accounts without records have no
//       line.
// Counting is lock-protected and cheap; render() reads the gauges through
// callbacks at scrape time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace berth::cp {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of `name` with `labels`
  // ("operation=\"RunTask\"" or "").
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

// The Prometheus gauges of one service (the supervisor's, api/supervisor.h).
struct ServiceGauge {
  std::string account;
  std::string cluster;
  std::string name;
  int desired = 0;
  int running = 0;
  int pending = 0;
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& operation, int code, double seconds);
  void observe_run_to_running(double seconds);

  // Gauges read at scrape time.
  std::function<std::map<std::string, int>()> tasks_by_state;
  std::function<int()> pool_size;
  // Counter read at scrape time: billed micro-dollars by account.
  std::function<std::map<std::string, int64_t>()> billed_by_account;
  // berth_service_{desired,running,pending}_tasks{account,cluster,service}.
  std::function<std::vector<ServiceGauge>()> services;

  std::string render() const;

 private:
  mutable std::mutex mu_;
  Histogram run_to_running_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> durations_;
};

}  // namespace berth::cp
