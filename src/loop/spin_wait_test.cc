// SpinWait: catches what another thread signals while spinning, times the
// block after a miss, and backs off only when most spins lose the CPU.
#include "loop/spin_wait.h"

#include <doctest/doctest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <thread>

using namespace shoal::loop;
using namespace std::chrono_literals;

namespace {

// Grows a fresh SpinWait's window: a wait that ends right after a spin in
// vain is within the bound while the window is under it, so each doubles
// it (at the bound, spin plus block exceed it and it halves again).
void grow(SpinWait& spin) {
  for (int i = 0; i < 4; ++i) {
    if (!spin.spin([] { return false; })) spin.woke();
  }
}

// A CPU this thread may run on.
int some_allowed_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) return cpu;
  }
  FAIL("no CPU in this thread's affinity mask");
  return -1;
}

bool pin_to(std::thread::native_handle_type thread, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(thread, sizeof(set), &set) == 0;
}

}  // namespace

TEST_CASE("spin wait: a fresh one does not spin; waits within the bound grow the window to it") {
  SpinWait spin(20'000'000);
  spin.set_ignores_load(true);
  int polls = 0;
  CHECK_FALSE(spin.spin([&] { return ++polls > 1'000'000; }));
  CHECK(polls == 0);  // window 0: not even one poll
  spin.woke();
  CHECK(spin.stats().blocks == 1);
  CHECK(spin.stats().window_ns == 5'000'000);  // a quarter of the bound, then doubling
  CHECK_FALSE(spin.spin([] { return false; }));
  spin.woke();
  CHECK(spin.stats().window_ns == 10'000'000);
  CHECK(spin.stats().spin_misses == 1);
  // Waits far longer than the bound shrink it back to nothing.
  for (int i = 0; i < 4; ++i) {
    CHECK_FALSE(spin.spin([] { return false; }));
    std::this_thread::sleep_for(30ms);
    spin.woke();
  }
  CHECK(spin.stats().window_ns == 0);
}

TEST_CASE("spin wait: catches a flag another thread sets while it spins") {
  SpinWait spin(20'000'000);
  spin.set_ignores_load(true);
  grow(spin);
  REQUIRE(spin.stats().window_ns >= 10'000'000);
  std::atomic<bool> flag{false};
  std::thread setter([&flag] {
    std::this_thread::sleep_for(2ms);
    flag.store(true, std::memory_order_release);
  });
  const bool caught = spin.spin([&] { return flag.load(std::memory_order_acquire); });
  setter.join();
  CHECK(caught);
  CHECK(spin.stats().spin_hits == 1);
  const uint64_t blocks = spin.stats().blocks;
  spin.woke();  // nothing to time after a hit
  CHECK(spin.stats().blocks == blocks);
}

TEST_CASE("spin wait: a bound of 0 never spins and keeps no statistics of blocks") {
  SpinWait spin(0);
  int polls = 0;
  for (int i = 0; i < 10; ++i) {
    CHECK_FALSE(spin.spin([&] { return ++polls > 0; }));
    spin.woke();
  }
  CHECK(polls == 0);
  CHECK(spin.stats().blocks == 0);
  CHECK(spin.stats().window_ns == 0);
}

TEST_CASE(
    "spin backoff: a stray preemption does not stop spinning; most spins preempted do, for longer "
    "each time") {
  SpinBackoff backoff;
  const int64_t ms = 1'000'000;
  CHECK(backoff.allows(0));
  // One in eight spins cut short, for ever: never backs off.
  int64_t now = 0;
  for (int i = 0; i < 800; ++i, now += 100'000) {
    if (i % 8 == 0) {
      backoff.on_preempted(now);
    } else {
      backoff.on_undisturbed();
    }
    CHECK(backoff.allows(now));
  }
  // Three in a row from a quiet start: the third stops spinning for 10 ms.
  SpinBackoff fresh;
  fresh.on_preempted(1 * ms);
  fresh.on_preempted(2 * ms);
  CHECK(fresh.allows(2 * ms));
  fresh.on_preempted(3 * ms);
  CHECK_FALSE(fresh.allows(3 * ms));
  CHECK(fresh.until_ns() == 13 * ms);
  CHECK(fresh.allows(13 * ms));
  // Still mostly preempted: 20 ms, then 40 ms.
  fresh.on_preempted(13 * ms);
  CHECK(fresh.until_ns() == 33 * ms);
  fresh.on_preempted(33 * ms);
  CHECK(fresh.until_ns() == 73 * ms);
  // Undisturbed spins bring the score down and the next backoff back to 10 ms.
  for (int i = 0; i < 40; ++i) fresh.on_undisturbed();
  CHECK(fresh.score() <= SpinBackoff::kScoreOne / 4);
  for (int i = 0; i < 3; ++i) fresh.on_preempted(100 * ms);
  CHECK(fresh.until_ns() == 110 * ms);
}

TEST_CASE("spin wait: spins beside a busy thread on the same CPU are cut short, then skipped") {
  // A busy thread on the same single CPU as this one: every yield hands it
  // the CPU for a scheduler slice, far over the 50 us a yield may take.
  const int cpu = some_allowed_cpu();
  cpu_set_t before;
  REQUIRE(sched_getaffinity(0, sizeof(before), &before) == 0);
  REQUIRE(pin_to(pthread_self(), cpu));
  SpinWait spin(20'000'000);
  grow(spin);
  REQUIRE(spin.stats().window_ns > 0);
  const BusyPollStats grown = spin.stats();
  std::atomic<bool> stop{false};
  std::thread burner([&stop] {
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  REQUIRE(pin_to(burner.native_handle(), cpu));
  std::this_thread::sleep_for(5ms);  // the burner is on the CPU now
  for (int i = 0; i < 10; ++i) {
    CHECK_FALSE(spin.spin([] { return false; }));
    spin.woke();
  }
  stop = true;
  burner.join();
  REQUIRE(sched_setaffinity(0, sizeof(before), &before) == 0);
  const BusyPollStats after = spin.stats();
  // None of the 10 ran its window undisturbed: each was cut short by the
  // busy thread or not started (a backoff, which the preemptions of the long
  // spins of grow() may already have begun).
  const uint64_t preempted = after.spins_preempted - grown.spins_preempted;
  const uint64_t skipped = after.spins_skipped - grown.spins_skipped;
  const uint64_t misses = after.spin_misses - grown.spin_misses;
  CHECK(misses == preempted);
  CHECK(preempted + skipped == 10);
  CHECK(skipped >= 1);
  CHECK(after.spin_hits == 0);
}
