// Adaptive busy polling: how long a loop spins, checking for events without
// sleeping, before it blocks in epoll_wait.
//
// Why: on a virtual machine, waking a thread that sleeps in epoll_wait costs
// tens of microseconds (an inter-processor interrupt and a halt exit in the
// hypervisor). Measured on the 2-vCPU development VM: a TCP ping-pong between
// two processes makes 12,400 round trips/s when both block, 141,000/s when
// both poll for up to 20 us before blocking. Request/response traffic (RPC,
// sync task calls, Raft round trips) is bound by that wake-up.
//
// The window adapts like Linux's haltpoll cpuidle governor: a wait (spin plus
// block) that ended within `max` would have been caught by a longer spin, so
// the window grows; a longer wait shrinks it, down to zero. An idle loop woken
// only by timers every few milliseconds therefore never spins, and a loop
// whose events arrive farther apart than `max` stops spinning after a few
// waits.
//
// A spinning thread stays runnable, so where other threads want its CPU it
// would take time from the threads it waits for; a spinner (spin_wait.h)
// yields the CPU on every turn, and when a yield did give the CPU away it
// stops that spin; when most recent spins ended so, it does not spin for a
// while (SpinBackoff). Nor does it spin while this process's worker threads
// (note_cpu_work) are running tasks on every other CPU: those want the CPU
// the spin would take.
//
// Pure logic, no clock: the spinner reports what happened, the policies
// answer how long to spin next time and whether to spin at all.
#pragma once

#include <algorithm>
#include <cstdint>

namespace shoal::loop {

// Default upper bound of the spin before blocking (`shoal start --busy-poll-us`).
inline constexpr int64_t kDefaultBusyPollMaxNs = 100'000;

class BusyPollPolicy {
 public:
  explicit BusyPollPolicy(int64_t max_ns = kDefaultBusyPollMaxNs) { set_max(max_ns); }

  // 0 turns busy polling off.
  void set_max(int64_t max_ns) {
    max_ns_ = std::max<int64_t>(max_ns, 0);
    window_ns_ = std::min(window_ns_, max_ns_);
  }
  int64_t max_ns() const { return max_ns_; }
  // How long to spin before the next block.
  int64_t window_ns() const { return window_ns_; }

  // An event arrived while spinning: the window is long enough.
  void on_spin_hit() {}

  // The loop spun window_ns() in vain (or did not spin) and then blocked for
  // `blocked_ns` until an event or timer woke it.
  void on_block(int64_t blocked_ns) {
    if (max_ns_ == 0) return;
    const int64_t waited = window_ns_ + std::max<int64_t>(blocked_ns, 0);
    const int64_t floor = std::max<int64_t>(max_ns_ / 4, 1);
    if (waited <= max_ns_) {
      window_ns_ = window_ns_ == 0 ? floor : std::min(window_ns_ * 2, max_ns_);
    } else {
      window_ns_ /= 2;
      if (window_ns_ < floor) window_ns_ = 0;
    }
  }

 private:
  int64_t max_ns_ = 0;
  int64_t window_ns_ = 0;
};

// Whether to spin at all, after spins lost the CPU to other threads.
//
// A spinning thread stays runnable, and the scheduler stops treating it as a
// sleeper to wake promptly: where other threads want the CPU, spinning on
// would starve the very threads it waits for (measured: a TCP ping-pong that
// spins without a check falls from 125,000 to 670 round trips/s beside two
// busy processes). The spinner cuts a spin short when a yield took over
// kSpinPreemptedNs (another thread ran meanwhile) and reports it here. When
// most recent spins were cut short (a decaying average), spinning stops for
// kSpinBackoffMinNs, doubling while it goes on up to kSpinBackoffMaxNs (each
// try can cost a scheduler time slice), back to the minimum once spins run
// undisturbed again. One stray preemption (a timer, a daemon, a harness
// waking every 10 ms) does not stop spinning: backing off at the first one
// kept the loops of the micro benchmark's synchronous tasks from spinning
// half the time (single_client_tasks_sync 9.4-11k/s; 14-16k/s with the
// average).
inline constexpr int64_t kSpinPreemptedNs = 50'000;
inline constexpr int64_t kSpinBackoffMinNs = 10'000'000;
inline constexpr int64_t kSpinBackoffMaxNs = 1'000'000'000;

class SpinBackoff {
 public:
  static constexpr int kScoreOne = 1024;

  bool allows(int64_t now_ns) const { return now_ns >= until_ns_; }

  // A yield gave the CPU away at `now_ns`: the spin ended there.
  void on_preempted(int64_t now_ns) {
    score_ += (kScoreOne - score_) / 4;
    if (score_ <= kScoreOne / 2) return;
    until_ns_ = now_ns + next_ns_;
    next_ns_ = std::min(next_ns_ * 2, kSpinBackoffMaxNs);
  }
  // A spin ran to its end, or caught its event, undisturbed.
  void on_undisturbed() {
    score_ -= score_ / 8;
    if (score_ <= kScoreOne / 4) next_ns_ = kSpinBackoffMinNs;
  }
  // Recent spins cut short, of kScoreOne.
  int score() const { return score_; }
  int64_t until_ns() const { return until_ns_; }

 private:
  int score_ = 0;
  int64_t until_ns_ = 0;
  int64_t next_ns_ = kSpinBackoffMinNs;
};

}  // namespace shoal::loop
