#include "loop/spin_wait.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>

#include "base/cpus.h"
#include "base/log.h"

namespace shoal::loop {
namespace {
// SHOAL_BUSY_POLL_US in the environment, when it is a number of
// microseconds in [0, 100000]; kDefaultBusyPollMaxNs otherwise.
int64_t busy_poll_from_environment() {
  const char* text = std::getenv("SHOAL_BUSY_POLL_US");
  if (text == nullptr) return kDefaultBusyPollMaxNs;
  char* end = nullptr;
  errno = 0;
  long long us = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || us < 0 || us > 100'000) {
    SHOAL_LOG_WARN("loop: ignoring SHOAL_BUSY_POLL_US='{}' (microseconds, 0-100000 expected)",
                   text);
    return kDefaultBusyPollMaxNs;
  }
  return us * 1000;
}

// -1: not set by set_default_busy_poll_max_ns (the environment decides).
std::atomic<int64_t> g_default_busy_poll_max_ns{-1};

int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::atomic<int> g_cpu_workers{0};

// Worker threads of this process are busy on every CPU but this one.
bool workers_want_the_cpus() {
  static const int cpus = static_cast<int>(usable_cpus());
  int workers = g_cpu_workers.load(std::memory_order_relaxed);
  return workers > 0 && workers >= cpus - 1;
}
}  // namespace

void note_cpu_work(int delta) { g_cpu_workers.fetch_add(delta, std::memory_order_relaxed); }

void set_default_busy_poll_max_ns(int64_t max_ns) {
  g_default_busy_poll_max_ns.store(std::max<int64_t>(max_ns, 0));
}

int64_t default_busy_poll_max_ns() {
  int64_t set = g_default_busy_poll_max_ns.load();
  if (set >= 0) return set;
  static const int64_t from_environment = busy_poll_from_environment();
  return from_environment;
}

BusyPollStats SpinWait::stats() const {
  BusyPollStats stats = stats_;
  stats.window_ns = policy_.window_ns();
  return stats;
}

bool SpinWait::begin(int64_t cap_ns) {
  block_start_ns_ = -1;
  if (policy_.max_ns() == 0) return false;  // off: no policy to feed
  now_ns_ = monotonic_ns();
  block_start_ns_ = now_ns_;
  const int64_t window = std::min(policy_.window_ns(), cap_ns);
  if (window <= 0) return false;
  if (!backoff_.allows(now_ns_) || (!ignore_load_ && workers_want_the_cpus())) {
    ++stats_.spins_skipped;
    return false;
  }
  deadline_ns_ = now_ns_ + window;
  return true;
}

bool SpinWait::step() {
  sched_yield();
  const int64_t before = now_ns_;
  now_ns_ = monotonic_ns();
  if (now_ns_ - before > kSpinPreemptedNs && !ignore_load_) {
    // Another thread got this CPU: spinning on would only keep it from the
    // threads that have work (busy_poll.h).
    backoff_.on_preempted(now_ns_);
    ++stats_.spins_preempted;
  } else if (now_ns_ >= deadline_ns_) {
    backoff_.on_undisturbed();
  } else {
    return true;
  }
  ++stats_.spin_misses;
  block_start_ns_ = now_ns_;
  return false;
}

void SpinWait::hit() {
  backoff_.on_undisturbed();
  block_start_ns_ = -1;
  policy_.on_spin_hit();
  ++stats_.spin_hits;
}

void SpinWait::woke() {
  if (block_start_ns_ < 0) return;
  ++stats_.blocks;
  policy_.on_block(monotonic_ns() - block_start_ns_);
  block_start_ns_ = -1;
}

}  // namespace shoal::loop
