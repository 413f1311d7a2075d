// shoal::loop::Loop: one libuv loop per thread with Cap'n Proto's KJ event loop
// running on top of it through a custom kj::EventPort.
//
// Threads: a Loop belongs to the thread that constructed it. Every method
// except post() must be called on that thread. post() may be called from any
// thread while the Loop is alive.
//
// Two ways to drive it, both on the owning thread:
//   - KJ drives: `promise.wait(loop.wait_scope())`. While KJ has nothing to do
//     it runs one libuv iteration (UV_RUN_ONCE, or NOWAIT from poll()).
//   - libuv drives: `loop.run()` runs uv_run(UV_RUN_DEFAULT) until stop();
//     the KJ queue is run from libuv prepare/check callbacks whenever it is
//     runnable. Never call .wait() from inside a libuv callback (uv_run is not
//     re-entrant).
//
// Ownership: everything created on the loop (streams, listeners, promises,
// timers) must be destroyed before the Loop. ~Loop cancels detached tasks,
// closes every libuv handle and runs libuv until all of them are closed.
//
// Constructing the first Loop sets SIGPIPE to SIG_IGN process-wide (writes
// to a closed socket then fail with EPIPE instead of killing the process).
#pragma once

#include <kj/async.h>
#include <kj/timer.h>
#include <uv.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_set>
#include <vector>

#include "loop/spin_wait.h"
#include "shoal/status.h"

namespace shoal::loop {

// Most callbacks post() may queue before it answers resource_exhausted.
inline constexpr size_t kPostQueueMax = 65536;
// KJ turns run per libuv callback before libuv gets to poll I/O again (the
// rest run on the next iteration, with a zero poll timeout).
inline constexpr unsigned kKjTurnsPerCallback = 4096;

namespace detail {
// Something with bytes buffered during a KJ turn ("corked") that must be
// handed to libuv before the loop blocks. Implemented by the TCP streams.
class Flushable {
 public:
  virtual void flush() = 0;

 protected:
  ~Flushable() = default;
};
// Something owning libuv handles that must be closed (with its own close
// callbacks) before ~Loop walks the remaining handles.
class Closeable {
 public:
  virtual void close_now() = 0;

 protected:
  ~Closeable() = default;
};
class UvEventPort;
}  // namespace detail

class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* uv() { return &uv_loop_; }
  kj::WaitScope& wait_scope() { return *wait_scope_; }
  // Backed by a kj::TimerImpl advanced from the loop, with one uv_timer_t
  // armed for the next event. Resolution: 1 ms.
  kj::Timer& timer();

  // libuv drives: runs until stop() (a stop() before run() makes run() return
  // after one iteration). Must not be called from a libuv callback or while a
  // Promise::wait() is in progress (asserts).
  void run();
  // Loop thread only: makes run() return after the current iteration.
  void stop();

  // Any thread: queues `fn` to run on the loop thread, in order per calling
  // thread. resource_exhausted when kPostQueueMax callbacks are queued;
  // unavailable once shutdown began. Exceptions thrown by fn are logged.
  Status post(std::function<void()> fn);
  // Loop thread: from now on post() answers unavailable. Called by ~Loop.
  void begin_shutdown();

  // Loop thread: keeps `promise` running until it completes or the Loop is
  // destroyed. A failure is logged, never thrown into libuv.
  void detach(kj::Promise<void> promise);

  // From a libuv callback (a uv_prepare_t, a uv_timer_t...) while libuv
  // drives: runs the KJ queue and hands the corked writes to the kernel now,
  // instead of later in this iteration. For work that must reach the wire
  // before the caller blocks (a Raft leader's appends before its fsync).
  // Inside Promise::wait() or a KJ turn it only flushes and returns false.
  bool run_queued_work();

  // Loop thread: the upper bound of this loop's busy poll (0: off).
  void set_busy_poll_max_ns(int64_t max_ns);
  BusyPollStats busy_poll_stats() const;
  // Tests: spin even when other threads want the CPU (a test of the spin
  // itself must not depend on what else runs beside it).
  void set_busy_poll_ignores_load(bool ignore);

  // uv_write calls made by this loop's streams (each a flush of a cork);
  // for tests and benchmarks.
  uint64_t stream_write_calls() const { return stream_write_calls_; }

  // --- internal to src/loop -------------------------------------------------
  void schedule_flush(detail::Flushable* target);
  void cancel_flush(detail::Flushable* target);
  void flush_all();
  void count_stream_write() { ++stream_write_calls_; }
  void add_closeable(detail::Closeable* target) { closeables_.insert(target); }
  void remove_closeable(detail::Closeable* target) { closeables_.erase(target); }
  // Streams and listeners alive on this loop; ~Loop asserts zero.
  void add_live_object() { ++live_objects_; }
  void remove_live_object() { --live_objects_; }

 private:
  class TaskErrorHandler final : public kj::TaskSet::ErrorHandler {
   public:
    void taskFailed(kj::Exception&& exception) override;
  };

  static void on_async(uv_async_t* handle);
  void drain_posts();

  uv_loop_t uv_loop_{};
  std::unique_ptr<detail::UvEventPort> port_;
  std::optional<kj::EventLoop> kj_loop_;
  std::optional<kj::WaitScope> wait_scope_;
  TaskErrorHandler task_error_handler_;
  std::optional<kj::TaskSet> tasks_;

  uv_async_t async_{};  // cross-thread post() and EventPort::wake()
  std::mutex post_mutex_;
  std::deque<std::function<void()>> post_queue_;  // guarded by post_mutex_
  bool post_closed_ = false;                      // guarded by post_mutex_

  std::vector<detail::Flushable*> flush_list_;
  std::vector<detail::Flushable*> flush_scratch_;
  std::unordered_set<detail::Closeable*> closeables_;
  size_t live_objects_ = 0;
  uint64_t stream_write_calls_ = 0;

  friend class detail::UvEventPort;
};

}  // namespace shoal::loop
