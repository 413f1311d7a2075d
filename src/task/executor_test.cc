// Executor: concurrency never exceeds the node's resources, big tasks wait
// for room, cancel and drain, and blocked items lend their CPUs.
#include "task/executor.h"

#include <doctest/doctest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <latch>
#include <mutex>
#include <string>
#include <thread>

using namespace shoal;
using namespace shoal::detail;
using namespace std::chrono_literals;

namespace {

ResourceSet cpus(double n) { return *ResourceSet::from_wholes({{"CPU", n}}); }

// Tracks CPU units in use by running items and the most seen at once.
struct Meter {
  std::atomic<int64_t> in_use{0};
  std::atomic<int64_t> peak{0};
  void enter(int64_t units) {
    int64_t now = in_use.fetch_add(units) + units;
    int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
  void leave(int64_t units) { in_use.fetch_sub(units); }
};

TaskId task_id(uint64_t n) { return TaskId{1, n << 16}; }

}  // namespace

TEST_CASE("executor: running items never exceed the CPUs, mixed sizes included") {
  Executor executor(Executor::Config{cpus(4), 4, 64});
  Meter meter;
  std::atomic<int> done{0};
  const double sizes[] = {1, 2, 0.5, 4, 1, 3};
  const int kItems = 300;
  for (int i = 0; i < kItems; ++i) {
    double size = sizes[i % 6];
    int64_t units = static_cast<int64_t>(size * ResourceSet::kUnitsPerWhole);
    REQUIRE(executor
                .submit(WorkItem{task_id(i), cpus(size),
                                 [&, units] {
                                   meter.enter(units);
                                   std::this_thread::sleep_for(200us);
                                   meter.leave(units);
                                   done.fetch_add(1);
                                 }})
                .ok());
  }
  while (done.load() < kItems) std::this_thread::sleep_for(1ms);
  CHECK(meter.peak.load() <= 4 * ResourceSet::kUnitsPerWhole);
  CHECK(meter.peak.load() >= 2 * ResourceSet::kUnitsPerWhole);  // it did run things in parallel
  Executor::Stats stats = executor.stats();
  CHECK(stats.queued == 0);
  CHECK(stats.available == cpus(4));
  std::vector<WorkItem> left = executor.drain();
  CHECK(left.empty());
  executor.join();
}

TEST_CASE("executor: a demand over the node's total is refused; cancel and drain return items") {
  Executor executor(Executor::Config{cpus(1), 1, 4});
  Status status = executor.submit(WorkItem{task_id(1), cpus(2), [] {}});
  CHECK(status.code() == Status::Code::kResourceExhausted);
  CHECK(status.message().find("CPU 2") != std::string::npos);

  std::latch started(1);
  std::atomic<bool> release{false};
  REQUIRE(executor
              .submit(WorkItem{task_id(2), cpus(1),
                               [&] {
                                 started.count_down();
                                 while (!release.load()) std::this_thread::sleep_for(1ms);
                               }})
              .ok());
  started.wait();
  std::atomic<int> ran{0};
  for (int i = 3; i < 6; ++i)
    REQUIRE(executor.submit(WorkItem{task_id(i), cpus(1), [&] { ran.fetch_add(1); }}).ok());
  std::optional<WorkItem> cancelled = executor.cancel(task_id(4));
  REQUIRE(cancelled);
  CHECK(cancelled->task_id == task_id(4));
  CHECK_FALSE(executor.cancel(task_id(2)));   // running
  CHECK_FALSE(executor.cancel(task_id(99)));  // unknown
  std::vector<WorkItem> left = executor.drain();
  CHECK(left.size() == 2);
  CHECK(executor.submit(WorkItem{task_id(7), cpus(1), [] {}}).code() == Status::Code::kCancelled);
  release.store(true);
  executor.join();
  CHECK(ran.load() == 0);
}

TEST_CASE("executor: an item blocked in a wait lends its CPU, then takes it back first") {
  Executor executor(Executor::Config{cpus(1), 1, 8});
  Meter meter;
  std::mutex mutex;
  std::condition_variable cv;
  bool child_done = false;
  std::atomic<bool> parent_done{false};
  const int64_t unit = ResourceSet::kUnitsPerWhole;
  REQUIRE(executor
              .submit(WorkItem{task_id(1), cpus(1),
                               [&] {
                                 meter.enter(unit);
                                 // The child needs the only CPU: without lending this deadlocks.
                                 Status s = executor.submit(WorkItem{task_id(2), cpus(1), [&] {
                                                                       meter.enter(unit);
                                                                       meter.leave(unit);
                                                                       std::lock_guard lock(mutex);
                                                                       child_done = true;
                                                                       cv.notify_all();
                                                                     }});
                                 CHECK(s.ok());
                                 meter.leave(unit);
                                 {
                                   Executor::BlockingScope blocking;
                                   std::unique_lock lock(mutex);
                                   cv.wait(lock, [&] { return child_done; });
                                 }
                                 meter.enter(unit);
                                 meter.leave(unit);
                                 parent_done.store(true);
                               }})
              .ok());
  while (!parent_done.load()) std::this_thread::sleep_for(1ms);
  CHECK(meter.peak.load() == unit);
  std::vector<WorkItem> left = executor.drain();
  executor.join();
  CHECK(executor.stats().available == cpus(1));
}

TEST_CASE("executor: a placement group bundle reserves CPUs for its own items, all or nothing") {
  Executor executor(Executor::Config{cpus(2), 2, 8});
  ResourceSet bundle = *ResourceSet::from_wholes({{"CPU_pg_x_0", 1}});
  REQUIRE(executor.reserve_bundle(cpus(1), bundle));
  CHECK(executor.stats().available == *ResourceSet::from_wholes({{"CPU", 1}, {"CPU_pg_x_0", 1}}));
  // Only 1 plain CPU is left: a second 2-CPU reservation fails and changes nothing.
  CHECK_FALSE(executor.reserve_bundle(cpus(2), *ResourceSet::from_wholes({{"CPU_pg_y_0", 2}})));
  CHECK(executor.total() == *ResourceSet::from_wholes({{"CPU", 2}, {"CPU_pg_x_0", 1}}));

  // An item of the bundle runs on the bundle's CPU; while it runs, releasing
  // the bundle waits for it, then the plain CPU comes back.
  std::latch started(1);
  std::atomic<bool> finish{false};
  std::atomic<bool> ran{false};
  REQUIRE(executor.submit(WorkItem{task_id(1), bundle, [&] {
                                     started.count_down();
                                     while (!finish.load()) std::this_thread::sleep_for(1ms);
                                     ran = true;
                                   }})
              .ok());
  started.wait();
  // Two more items wait behind it for the bundle, and a plain one for 2 CPUs.
  std::atomic<int> dropped{0};
  std::atomic<int> ran_after{0};
  std::string dropped_reason;
  std::mutex reason_mutex;
  auto waiting = [&](uint64_t n, const ResourceSet& demand) {
    WorkItem item{task_id(n), demand, [&] { ran_after.fetch_add(1); }};
    item.dropped = [&](const Status& status) {
      std::lock_guard lock(reason_mutex);
      dropped_reason = status.message();
      dropped.fetch_add(1);
    };
    return item;
  };
  REQUIRE(executor.submit(waiting(10, bundle)).ok());
  REQUIRE(executor.submit(waiting(11, bundle)).ok());
  REQUIRE(executor.submit(waiting(13, cpus(2))).ok());
  executor.release_bundle(cpus(1), bundle);
  // The items waiting for the bundle are dropped with the reason; the plain
  // one stays queued.
  CHECK(dropped.load() == 2);
  CHECK(dropped_reason.find("was removed") != std::string::npos);
  CHECK(executor.stats().queued == 1);
  CHECK(executor.stats().available == cpus(1));  // still in use: nothing back yet
  // While it is still in use, new items of the bundle are refused too.
  Status late = executor.submit(waiting(14, bundle));
  CHECK(late.code() == Status::Code::kResourceExhausted);
  CHECK(late.message().find("was removed") != std::string::npos);
  finish = true;
  for (int i = 0; i < 2000 && ran_after.load() != 1; ++i) std::this_thread::sleep_for(1ms);
  CHECK(ran_after.load() == 1);  // the plain 2-CPU item ran once the bundle's CPU came back
  CHECK(dropped.load() == 2);
  for (int i = 0; i < 2000 && executor.stats().available != cpus(2); ++i) std::this_thread::sleep_for(1ms);
  CHECK(ran.load());
  CHECK(executor.stats().available == cpus(2));
  CHECK(executor.total() == cpus(2));
  // The bundle's name is gone: an item asking for it can never run.
  CHECK(executor.submit(WorkItem{task_id(2), bundle, [] {}}).code() == Status::Code::kResourceExhausted);
  std::vector<WorkItem> left = executor.drain();
  executor.join();
}

TEST_CASE("executor: items that ask for GPUs get their own devices, and keep them while blocked") {
  Executor executor(Executor::Config{*ResourceSet::from_wholes({{"CPU", 4}, {"GPU", 2}}), 4, 8});
  ResourceSet one_gpu = *ResourceSet::from_wholes({{"CPU", 1}, {"GPU", 1}});
  std::mutex mutex;
  std::vector<std::vector<uint32_t>> seen;
  std::latch both_running(2);
  std::atomic<bool> finish{false};
  for (uint64_t n = 1; n <= 2; ++n) {
    REQUIRE(executor.submit(WorkItem{task_id(n), one_gpu, [&] {
                                       {
                                         std::lock_guard lock(mutex);
                                         seen.push_back(Executor::current_gpu_ids());
                                       }
                                       both_running.count_down();
                                       // Blocked (as in get()): lends its CPU, not its GPU.
                                       Executor::BlockingScope blocked;
                                       while (!finish.load()) std::this_thread::sleep_for(1ms);
                                     }})
                .ok());
  }
  both_running.wait();
  // A third GPU item waits although both holders are blocked.
  std::atomic<bool> third_ran{false};
  std::vector<uint32_t> third_ids;
  REQUIRE(executor.submit(WorkItem{task_id(3), one_gpu, [&] {
                                     third_ids = Executor::current_gpu_ids();
                                     third_ran = true;
                                   }})
              .ok());
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(third_ran.load());
  CHECK(executor.stats().available == *ResourceSet::from_wholes({{"CPU", 4}}));  // CPUs lent, GPUs held
  {
    std::lock_guard lock(mutex);
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].size() == 1);
    CHECK(seen[1].size() == 1);
    CHECK(seen[0] != seen[1]);
  }
  finish = true;
  for (int i = 0; i < 2000 && !third_ran.load(); ++i) std::this_thread::sleep_for(1ms);
  CHECK(third_ran.load());
  CHECK(third_ids.size() == 1);
  CHECK(Executor::current_gpu_ids().empty());  // not an executor thread
  // A keep_resources item (an actor, a job) keeps its device until release().
  std::vector<uint32_t> kept_ids;
  GpuGrant kept;
  std::latch granted(1);
  WorkItem lease{task_id(4), *ResourceSet::from_wholes({{"GPU", 2}}), [&] {
                   kept = Executor::current_grant();
                   kept_ids = Executor::current_gpu_ids();
                   granted.count_down();
                 }};
  lease.keep_resources = true;
  REQUIRE(executor.submit(std::move(lease)).ok());
  granted.wait();
  CHECK(kept_ids == std::vector<uint32_t>{0, 1});
  for (int i = 0; i < 2000 && executor.stats().running != 0; ++i) std::this_thread::sleep_for(1ms);
  std::atomic<bool> after_ran{false};
  REQUIRE(executor.submit(WorkItem{task_id(5), *ResourceSet::from_wholes({{"GPU", 0.5}}), [&] { after_ran = true; }})
              .ok());
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(after_ran.load());
  executor.release(*ResourceSet::from_wholes({{"GPU", 2}}), kept);
  for (int i = 0; i < 2000 && !after_ran.load(); ++i) std::this_thread::sleep_for(1ms);
  CHECK(after_ran.load());
  {
    Executor::GpuIdsScope actor_thread({3});
    CHECK(Executor::current_gpu_ids() == std::vector<uint32_t>{3});
  }
  CHECK(Executor::current_gpu_ids().empty());
  std::vector<WorkItem> left = executor.drain();
  executor.join();
}

namespace {

// Submits `count` items one after another, each as soon as the one before
// has run (a synchronous caller); returns how many ran.
int run_one_at_a_time(Executor& executor, int count, uint64_t first_id) {
  std::atomic<int> ran{0};
  for (int i = 0; i < count; ++i) {
    REQUIRE(executor.submit(WorkItem{task_id(first_id + i), cpus(1), [&ran] { ran.fetch_add(1); }}).ok());
    while (ran.load() <= i) std::this_thread::yield();
  }
  return ran.load();
}

}  // namespace

TEST_CASE("executor: an idle worker spinning for work takes items without a wake-up, and none is lost") {
  Executor::Config config{cpus(2), 2, 64};
  config.busy_poll_max_ns = 20'000'000;  // far above the gap between items
  config.spin_ignores_load = true;
  Executor executor(config);
  CHECK(run_one_at_a_time(executor, 500, 0) == 500);
  CHECK(executor.stats().spin_wakes > 0);

  // Several submitters at once while workers spin, sleep and wake: every
  // item runs exactly once.
  constexpr int kThreads = 4;
  constexpr int kEach = 2000;
  std::vector<std::atomic<int>> runs(kThreads * kEach);
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const int n = t * kEach + i;
        REQUIRE(executor.submit(WorkItem{task_id(1000 + n), cpus(1), [&runs, n] { runs[n].fetch_add(1); }}).ok());
        if (i % 64 == 0) std::this_thread::sleep_for(50us);  // let the workers idle now and then
      }
    });
  }
  for (auto& s : submitters) s.join();
  auto all_ran = [&] {
    for (auto& r : runs) {
      if (r.load() == 0) return false;
    }
    return true;
  };
  for (int i = 0; i < 10'000 && !all_ran(); ++i) std::this_thread::sleep_for(1ms);
  int once = 0;
  for (auto& r : runs) once += r.load() == 1;
  CHECK(once == kThreads * kEach);
  Executor::Stats stats = executor.stats();
  CHECK(stats.queued == 0);
  CHECK(stats.threads <= 4);  // a spinning worker counts as ready: no thread per item
}

TEST_CASE("executor: with busy polling off no worker spins") {
  Executor::Config config{cpus(2), 2, 64};
  config.busy_poll_max_ns = 0;
  Executor executor(config);
  CHECK(run_one_at_a_time(executor, 200, 0) == 200);
  CHECK(executor.stats().spin_wakes == 0);
}

TEST_CASE("executor: workers are named for top -H and perf") {
  Executor executor(Executor::Config{cpus(1), 1, 4});
  std::promise<std::string> name;
  auto got = name.get_future();
  REQUIRE(executor
              .submit(WorkItem{task_id(1), cpus(1),
                               [&name] {
                                 char buf[16] = {};
                                 pthread_getname_np(pthread_self(), buf, sizeof(buf));
                                 name.set_value(buf);
                               }})
              .ok());
  CHECK(got.get() == "shoal-worker");
}
