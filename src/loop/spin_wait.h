// SpinWait: spin, then block — the discipline of busy_poll.h for any thread
// that waits for another thread.
//
// The event loop spins on its epoll fd before epoll_wait (loop.cc). The same
// wake-up cost sits on another hand-off of every task: an executor worker
// asleep on its condition variable when the loop hands it a task
// (executor.cc; one idle worker per executor spins). Such a waiter owns one
// SpinWait and calls
//
//   if (!spin.spin(ready)) { block on the condition variable; spin.woke(); }
//
// spin() polls `ready` (cheap, lock-free), yielding the CPU between polls,
// for the policy's window; woke() tells the policy how long the block took,
// so that a thread whose wake-ups come far apart stops spinning.
//
// A spinning thread competes for the CPU with the threads it waits for, so
// a spin stops when a yield gave the CPU to another thread, and spin() does
// not spin at all while
//   - most recent spins were cut short that way (SpinBackoff: 10 ms,
//     doubling to 1 s), or
//   - this process's worker threads (note_cpu_work) run tasks on every CPU
//     but one.
#pragma once

#include <cstdint>
#include <limits>

#include "loop/busy_poll.h"

namespace shoal::loop {

// Threads of this process doing CPU work outside any loop (an executor
// worker running a task) call this with +1 and -1 around it: nothing spins
// while such threads could want every other CPU.
void note_cpu_work(int delta);

// Busy polling of Loops and SpinWaits constructed from now on (0: off).
// `shoal start --busy-poll-us` sets it first thing; otherwise the
// environment's SHOAL_BUSY_POLL_US (microseconds) or kDefaultBusyPollMaxNs.
void set_default_busy_poll_max_ns(int64_t max_ns);
int64_t default_busy_poll_max_ns();

struct BusyPollStats {
  uint64_t spin_hits = 0;        // ready while spinning
  uint64_t spin_misses = 0;      // spun the whole window in vain, then blocked
  uint64_t spins_preempted = 0;  // a yield gave the CPU to another thread: spin cut short
  uint64_t spins_skipped = 0;    // not spun: another thread wanted the CPU moments ago
  uint64_t blocks = 0;           // blocked (after a miss or without spinning)
  int64_t window_ns = 0;         // the current spin window
};

class SpinWait {
 public:
  explicit SpinWait(int64_t max_ns = default_busy_poll_max_ns()) : policy_(max_ns) {}

  void set_max(int64_t max_ns) { policy_.set_max(max_ns); }
  // Tests: spin even when other threads want the CPU.
  void set_ignores_load(bool ignore) { ignore_load_ = ignore; }
  BusyPollStats stats() const;

  // Polls `ready` for up to the window (and at most `cap_ns`), yielding
  // between polls. True: ready. False: the caller blocks now, then calls
  // woke().
  template <typename Ready>
  bool spin(Ready&& ready, int64_t cap_ns = std::numeric_limits<int64_t>::max()) {
    if (!begin(cap_ns)) return false;
    for (;;) {
      if (ready()) {
        hit();
        return true;
      }
      if (!step()) return false;
    }
  }

  // The block after a false spin() ended; no-op otherwise.
  void woke();
  // The caller will not block after all (nothing to wait for).
  void cancel_block() { block_start_ns_ = -1; }

 private:
  bool begin(int64_t cap_ns);  // false: no spin now (the block starts)
  bool step();                 // yields; false: the spin ended (the block starts)
  void hit();

  BusyPollPolicy policy_;
  SpinBackoff backoff_;
  BusyPollStats stats_;
  bool ignore_load_ = false;
  int64_t now_ns_ = 0;
  int64_t deadline_ns_ = 0;
  int64_t block_start_ns_ = -1;
};

}  // namespace shoal::loop
