#include "controlplane/api/metrics.h"

#include <tuple>

#include <fmt/format.h>

namespace berth::cp {

namespace {

// 1 ms .. ~30 s: RunTask -> RUNNING targets milliseconds, a pull takes
// seconds.
std::vector<double> latency_bounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

std::string label_escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}

void Histogram::observe(double v) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (v <= bounds_[i]) {
      ++counts_[i];
      break;
    }
  }
  ++count_;
  sum_ += v;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out +=
        fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, count_);
  std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n", name, braces, sum_);
  out += fmt::format("{}_count{} {}\n", name, braces, count_);
}

Metrics::Metrics() : run_to_running_(latency_bounds()) {}

void Metrics::count_request(const std::string& operation, int code, double seconds) {
  std::lock_guard lock(mu_);
  ++requests_[{operation, code}];
  auto it = durations_.find(operation);
  if (it == durations_.end()) it = durations_.emplace(operation, Histogram(latency_bounds())).first;
  it->second.observe(seconds);
}

void Metrics::observe_run_to_running(double seconds) {
  std::lock_guard lock(mu_);
  run_to_running_.observe(seconds);
}

std::string Metrics::render() const {
  std::string out;
  out += "# HELP berth_tasks Tasks by lastStatus.\n# TYPE berth_tasks gauge\n";
  if (tasks_by_state) {
    for (const auto& [state, n] : tasks_by_state()) {
      out += fmt::format("berth_tasks{{state=\"{}\"}} {}\n", label_escape(state), n);
    }
  }
  out +=
      "# HELP berth_microhost_pool_size Ready microhosts in the warm pool.\n"
      "# TYPE berth_microhost_pool_size gauge\n";
  out += fmt::format("berth_microhost_pool_size {}\n", pool_size ? pool_size() : 0);
  out +=
      "# HELP berth_billed_micro_usd_total Amount billed (ledger records), in micro-dollars.\n"
      "# TYPE berth_billed_micro_usd_total counter\n";
  if (billed_by_account) {
    for (const auto& [account, micro_usd] : billed_by_account()) {
      out += fmt::format("berth_billed_micro_usd_total{{account=\"{}\"}} {}\n",
                         label_escape(account), micro_usd);
    }
  }
  if (services) {
    auto gauges = services();
    for (auto [metric, help, field] :
         {std::tuple{"berth_service_desired_tasks", "Desired tasks of a service.",
                     &ServiceGauge::desired},
          std::tuple{"berth_service_running_tasks", "RUNNING tasks of a service.",
                     &ServiceGauge::running},
          std::tuple{"berth_service_pending_tasks",
                     "Tasks of a service on their way to RUNNING (PROVISIONING, PENDING, "
                     "ACTIVATING).",
                     &ServiceGauge::pending}}) {
      out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", metric, help, metric);
      for (const auto& g : gauges) {
        out += fmt::format("{}{{account=\"{}\",cluster=\"{}\",service=\"{}\"}} {}\n", metric,
                           label_escape(g.account), label_escape(g.cluster), label_escape(g.name),
                           g.*field);
      }
    }
  }
  std::lock_guard lock(mu_);
  out +=
      "# HELP berth_run_task_to_running_seconds From RunTask to RUNNING.\n"
      "# TYPE berth_run_task_to_running_seconds histogram\n";
  run_to_running_.render(out, "berth_run_task_to_running_seconds", "");
  out +=
      "# HELP berth_api_requests_total API requests by operation and HTTP status.\n"
      "# TYPE berth_api_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    out += fmt::format("berth_api_requests_total{{operation=\"{}\",code=\"{}\"}} {}\n",
                       label_escape(key.first), key.second, n);
  }
  out +=
      "# HELP berth_api_request_duration_seconds API request latency by operation.\n"
      "# TYPE berth_api_request_duration_seconds histogram\n";
  for (const auto& [op, h] : durations_) {
    h.render(out, "berth_api_request_duration_seconds",
             fmt::format("operation=\"{}\"", label_escape(op)));
  }
  return out;
}

}  // namespace berth::cp
