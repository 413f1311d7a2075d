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
// would take time from the threads it waits for; the loop (loop.cc) yields
// the CPU on every turn, and when a yield did give the CPU away it stops
// spinning and does not spin again for a few milliseconds. Nor does it spin
// while this process's worker threads (note_cpu_work) are running tasks on
// every other CPU: those want the CPU the spin would take.
//
// Pure logic, no clock: the loop reports what happened, the policy answers
// how long to spin next time.
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

}  // namespace shoal::loop
