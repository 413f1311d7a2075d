#include "loop/loop.h"

#include <kj/debug.h>
#include <poll.h>

#include <algorithm>
#include <csignal>
#include <exception>
#include <limits>
#include <utility>

#include "base/assert.h"
#include "base/log.h"

namespace shoal::loop {
namespace detail {

// kj::EventPort over libuv. Lives inside Loop; its handles are closed by ~Loop.
class UvEventPort final : public kj::EventPort {
 public:
  explicit UvEventPort(Loop& loop)
      : loop_(loop),
        timer_(kj::systemPreciseMonotonicClock().now()) {
    uv_loop_t* uv = loop.uv();
    SHOAL_ASSERT(uv_prepare_init(uv, &prepare_) == 0);
    SHOAL_ASSERT(uv_check_init(uv, &check_) == 0);
    SHOAL_ASSERT(uv_idle_init(uv, &idle_) == 0);
    SHOAL_ASSERT(uv_timer_init(uv, &timer_handle_) == 0);
    prepare_.data = check_.data = idle_.data = timer_handle_.data = this;
    // prepare/check run every iteration; they must not keep the loop alive.
    uv_prepare_start(&prepare_, &UvEventPort::on_prepare);
    uv_check_start(&check_, &UvEventPort::on_check);
    uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
    uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
    uv_unref(reinterpret_cast<uv_handle_t*>(&timer_handle_));
  }

  void attach(kj::EventLoop& kj_loop, kj::WaitScope& wait_scope) {
    kj_loop_ = &kj_loop;
    wait_scope_ = &wait_scope;
  }
  void detach_kj() {
    kj_loop_ = nullptr;
    wait_scope_ = nullptr;
  }

  kj::TimerImpl& timer() { return timer_; }

  // KJ drives: called by Promise::wait() when the KJ queue is empty.
  bool wait() override { return run_uv(UV_RUN_ONCE); }
  bool poll() override {
    if (in_uv_callback_) {
      // WaitScope::poll() from our own callback (cross-thread wake): uv_run
      // is not re-entrant, and libuv is already polling for us.
      return woken_.exchange(false);
    }
    return run_uv(UV_RUN_NOWAIT);
  }

  void setRunnable(bool runnable) override {
    // An active idle handle makes libuv poll with a zero timeout, so a
    // runnable KJ queue gets its turn without blocking; it is stopped as soon
    // as the queue is empty (an always-active idle handle would spin).
    if (runnable) {
      uv_idle_start(&idle_, &UvEventPort::on_idle);
    } else {
      uv_idle_stop(&idle_);
    }
  }

  void wake() const override {
    woken_.store(true);
    uv_async_send(&loop_.async_);
  }

  // From a libuv callback of this loop's own (libuv drives): runs the KJ
  // queue now. False, doing nothing, inside Promise::wait() (KJ runs the
  // queue itself there) or inside a KJ turn.
  bool run_kj_now() {
    if (in_kj_wait_ || in_uv_callback_ || kj_loop_ == nullptr) return false;
    run_kj();
    return true;
  }

  // From the async callback (libuv drives): cross-thread KJ events arrived.
  void on_woken() {
    if (!in_kj_wait_) run_kj();
  }

 private:
  bool run_uv(uv_run_mode mode) {
    SHOAL_ASSERT(!uv_running_, "Promise::wait() inside a libuv callback (uv_run not re-entrant)");
    in_kj_wait_ = true;
    uv_running_ = true;
    may_block_ = mode == UV_RUN_ONCE;
    // KJ calls setRunnable(false) only from EventLoop::run(), never when
    // Promise::wait() empties the queue: resync, or the idle handle would
    // make libuv spin with a zero poll timeout.
    setRunnable(kj_loop_ != nullptr && kj_loop_->isRunnable());
    before_block();
    uv_run(loop_.uv(), mode);
    uv_running_ = false;
    may_block_ = false;
    in_kj_wait_ = false;
    advance_timer();
    return woken_.exchange(false);
  }

  // Called whenever libuv may be about to block: hand corked writes to libuv
  // and arm the uv timer for KJ's next timer event.
  void before_block() {
    advance_timer();
    loop_.flush_all();
    arm_timer();
  }

  void advance_timer() { timer_.advanceTo(kj::systemPreciseMonotonicClock().now()); }

  void arm_timer() {
    uv_update_time(loop_.uv());
    auto now = kj::systemPreciseMonotonicClock().now();
    KJ_IF_MAYBE(timeout_ms, timer_.timeoutToNextEvent(now, kj::MILLISECONDS,
                                                        std::numeric_limits<int64_t>::max())) {
      uv_timer_start(&timer_handle_, &UvEventPort::on_timer, *timeout_ms, 0);
      uv_ref(reinterpret_cast<uv_handle_t*>(&timer_handle_));
    } else {
      uv_timer_stop(&timer_handle_);
    }
  }

  // Runs the KJ queue from a libuv callback (libuv drives).
  void run_kj() {
    if (kj_loop_ == nullptr) return;
    in_uv_callback_ = true;
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
                  advance_timer();
                  if (woken_.load()) wait_scope_->poll();  // runs cross-thread events
                  kj_loop_->run(kKjTurnsPerCallback);
                })) {
      SHOAL_LOG_ERROR("loop: exception escaped the KJ event loop: {}",
                      kj::str(*exception).cStr());
    }
    in_uv_callback_ = false;
  }

  void on_phase() {
    if (!in_kj_wait_ && kj_loop_ != nullptr && kj_loop_->isRunnable()) run_kj();
    before_block();
  }

  static UvEventPort* self(void* handle) {
    return static_cast<UvEventPort*>(static_cast<uv_handle_t*>(handle)->data);
  }
  // libuv is about to poll for I/O, blocking unless uv_backend_timeout() is
  // zero: spin first for the policy's window (see busy_poll.h).
  void spin_before_block() {
    spin_.cancel_block();
    if (!may_block_) return;
    const int timeout_ms = uv_backend_timeout(loop_.uv());
    if (timeout_ms == 0) return;
    const int64_t cap_ns = timeout_ms > 0 ? int64_t{timeout_ms} * 1'000'000 : std::numeric_limits<int64_t>::max();
    // The backend (epoll) fd is readable when any watched fd has an event,
    // including the uv_async eventfd that post() and wake() write to.
    pollfd backend{uv_backend_fd(loop_.uv()), POLLIN, 0};
    spin_.spin([&backend] { return ::poll(&backend, 1, 0) > 0; }, cap_ns);
  }

  void after_poll() { spin_.woke(); }

  static void on_prepare(uv_prepare_t* h) {
    UvEventPort* port = self(h);
    port->on_phase();
    port->spin_before_block();
  }
  static void on_check(uv_check_t* h) {
    UvEventPort* port = self(h);
    port->after_poll();
    port->on_phase();
  }
  static void on_idle(uv_idle_t*) {}
  static void on_timer(uv_timer_t* h) {
    // Fulfils due timer promises; the KJ queue then runs from prepare/check.
    UvEventPort* port = self(h);
    uv_unref(reinterpret_cast<uv_handle_t*>(h));
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { port->advance_timer(); })) {
      SHOAL_LOG_ERROR("loop: timer callback failed: {}", kj::str(*exception).cStr());
    }
  }

  Loop& loop_;
  kj::EventLoop* kj_loop_ = nullptr;
  kj::WaitScope* wait_scope_ = nullptr;
  kj::TimerImpl timer_;
  uv_prepare_t prepare_{};
  uv_check_t check_{};
  uv_idle_t idle_{};
  uv_timer_t timer_handle_{};
  mutable std::atomic<bool> woken_{false};
  bool in_kj_wait_ = false;     // inside wait()/poll(): KJ runs the queue itself
  bool in_uv_callback_ = false;  // inside run_kj(): poll() must not run libuv

 public:
  bool uv_running_ = false;  // inside uv_run (either mode): no nested uv_run
  bool may_block_ = false;   // the current uv_run may block (ONCE or DEFAULT)
  SpinWait spin_;  // before libuv blocks in epoll_wait (see spin_wait.h)
};

}  // namespace detail

Loop::Loop() {
  // Writing to a socket the peer closed must be an EPIPE error, not a signal
  // that kills the process (libuv writes with write(2), not MSG_NOSIGNAL).
  static std::once_flag ignore_sigpipe;
  std::call_once(ignore_sigpipe, []() { ::signal(SIGPIPE, SIG_IGN); });
  SHOAL_ASSERT(uv_loop_init(&uv_loop_) == 0);
  SHOAL_ASSERT(uv_async_init(&uv_loop_, &async_, &Loop::on_async) == 0);
  async_.data = this;
  port_ = std::make_unique<detail::UvEventPort>(*this);
  kj_loop_.emplace(*port_);
  wait_scope_.emplace(*kj_loop_);
  port_->attach(*kj_loop_, *wait_scope_);
  tasks_.emplace(task_error_handler_);
}

Loop::~Loop() {
  begin_shutdown();
  // Cancel detached work first: it may own streams and timers.
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
                tasks_.reset();
                kj_loop_->run();
              })) {
    SHOAL_LOG_ERROR("loop: exception while cancelling tasks: {}", kj::str(*exception).cStr());
  }
  SHOAL_ASSERT(live_objects_ == 0, "destroy every stream and listener before their Loop");
  flush_all();
  // Close libuv-owned objects (lingering or connecting streams) through their
  // own close callbacks so that they free themselves.
  std::vector<detail::Closeable*> closeables(closeables_.begin(), closeables_.end());
  for (detail::Closeable* target : closeables) target->close_now();
  port_->detach_kj();
  wait_scope_.reset();
  kj_loop_.reset();
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    if (!post_queue_.empty()) {
      SHOAL_LOG_WARN("loop: dropping {} posted callbacks at shutdown", post_queue_.size());
      post_queue_.clear();
    }
  }
  uv_walk(
      &uv_loop_,
      [](uv_handle_t* handle, void*) {
        if (!uv_is_closing(handle)) uv_close(handle, nullptr);
      },
      nullptr);
  while (uv_run(&uv_loop_, UV_RUN_DEFAULT) != 0) {
  }
  int rc = uv_loop_close(&uv_loop_);
  SHOAL_ASSERT(rc == 0, uv_strerror(rc));
}

kj::Timer& Loop::timer() { return port_->timer(); }

void Loop::run() {
  SHOAL_ASSERT(!port_->uv_running_, "Loop::run() inside a libuv callback or Promise::wait()");
  port_->uv_running_ = true;
  port_->may_block_ = true;
  uv_run(&uv_loop_, UV_RUN_DEFAULT);
  port_->may_block_ = false;
  port_->uv_running_ = false;
}

bool Loop::run_queued_work() {
  bool ran = port_->run_kj_now();
  flush_all();
  return ran;
}

void Loop::set_busy_poll_max_ns(int64_t max_ns) { port_->spin_.set_max(max_ns); }

void Loop::set_busy_poll_ignores_load(bool ignore) { port_->spin_.set_ignores_load(ignore); }

BusyPollStats Loop::busy_poll_stats() const { return port_->spin_.stats(); }

void Loop::stop() { uv_stop(&uv_loop_); }

Status Loop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    if (post_closed_) return Status::unavailable("loop is shutting down; post() refused");
    if (post_queue_.size() >= kPostQueueMax) {
      return Status::resource_exhausted("loop post queue full (kPostQueueMax=" +
                                        std::to_string(kPostQueueMax) + ")");
    }
    post_queue_.push_back(std::move(fn));
  }
  uv_async_send(&async_);
  return Status::ok_status();
}

void Loop::begin_shutdown() {
  std::lock_guard<std::mutex> lock(post_mutex_);
  post_closed_ = true;
}

void Loop::detach(kj::Promise<void> promise) {
  if (!tasks_) return;  // ~Loop is cancelling tasks: a new one is dropped at once
  tasks_->add(std::move(promise));
}

void Loop::TaskErrorHandler::taskFailed(kj::Exception&& exception) {
  SHOAL_LOG_WARN("loop: detached task failed: {}", kj::str(exception).cStr());
}

void Loop::on_async(uv_async_t* handle) {
  Loop* self = static_cast<Loop*>(handle->data);
  self->drain_posts();
  self->port_->on_woken();
}

void Loop::drain_posts() {
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    batch.swap(post_queue_);
  }
  for (auto& fn : batch) {
    try {
      KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { fn(); })) {
        SHOAL_LOG_ERROR("loop: posted callback threw: {}", kj::str(*exception).cStr());
      }
    } catch (const std::exception& e) {
      SHOAL_LOG_ERROR("loop: posted callback threw: {}", e.what());
    }
  }
}

void Loop::schedule_flush(detail::Flushable* target) { flush_list_.push_back(target); }

void Loop::cancel_flush(detail::Flushable* target) {
  flush_list_.erase(std::remove(flush_list_.begin(), flush_list_.end(), target),
                    flush_list_.end());
}

void Loop::flush_all() {
  // A flush may schedule more (it never does today, but keep it safe).
  while (!flush_list_.empty()) {
    flush_scratch_.clear();
    flush_scratch_.swap(flush_list_);
    for (detail::Flushable* target : flush_scratch_) target->flush();
  }
}

}  // namespace shoal::loop
