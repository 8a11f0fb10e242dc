// A fixed pool of threads for the control plane's blocking work (store I/O,
// agent calls): the HTTP I/O threads post here and never block themselves.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace berth::cp {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `job`; false once shutdown() has begun (the job is not run).
  bool post(std::function<void()> job);
  // Runs the queued jobs, then joins the threads. Idempotent.
  void shutdown();
  // Blocks until the queue is empty and no job runs (tests).
  void drain();

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> jobs_;
  int busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace berth::cp
