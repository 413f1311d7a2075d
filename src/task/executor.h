// Executor: runs work items (task bodies) on a pool of threads without ever
// running more than the node's resources allow.
//
// Each item states its demand (a ResourceSet). An item starts only when its
// demand fits what is free; it holds that demand while it runs and gives it
// back when run() returns (or, with keep_resources, when release() is
// called: an actor's lifetime lease). Items wait in one FIFO queue per
// demand ("scheduling class"); the oldest head that fits goes first, so a
// big task waits for room without blocking small ones of other classes.
//
// GPUs are devices with ids (GpuInstances): an item that asks for GPUs gets
// particular ones when it starts (current_gpu_ids() on its thread), and a
// fraction of a GPU is a fraction of one device.
//
// A running item that blocks (get() inside a task) brackets the wait with
// BlockingScope: its CPUs are lent to other items meanwhile (the rest —
// GPUs, memory, custom resources — stays with it, as in Ray), and a thread
// is added if no idle one is left (up to threads_max). On waking it takes its
// CPUs back before any new item starts. Running (unblocked) items therefore
// never exceed the node's resources.
//
// Threading: submit/cancel/release/stats from any thread. run() executes on a
// pool thread with no executor lock held. drain() then join() stop it; join()
// must not be called from a pool thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shoal/ids.h"
#include "shoal/status.h"
#include "task/resources.h"

namespace shoal::detail {

struct WorkItem {
  TaskId task_id;
  ResourceSet demand;
  std::function<void()> run;
  bool keep_resources = false;  // the demand stays taken after run(); see release()
  // Called (no executor lock held) instead of run() when the executor gives
  // up on a queued item that can never start: it asks for a placement
  // group bundle that was released.
  std::function<void(const Status&)> dropped;
};

class Executor {
 public:
  static constexpr int kThreadsMaxLimit = 4096;

  struct Config {
    ResourceSet total;     // what the node has
    int threads_min = 1;   // started at once (ceil(CPUs))
    int threads_max = 64;  // CPU-bound items plus items blocked in get()
    // How long an idle worker spins for the next item before it sleeps
    // (loop/spin_wait.h); -1: the process's busy-poll bound, 0: never.
    int64_t busy_poll_max_ns = -1;
    bool spin_ignores_load = false;  // tests: spin even when other threads want the CPU
  };
  struct Stats {
    std::size_t queued = 0;
    std::size_t running = 0;  // includes blocked
    std::size_t blocked = 0;
    std::size_t threads = 0;
    ResourceSet available;
    uint64_t spin_wakes = 0;  // idle waits that ended while spinning, without sleeping
  };

  explicit Executor(Config config);
  ~Executor();  // drain() + join() if not done
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // kResourceExhausted when the demand exceeds the node's totals (it could
  // never run), kCancelled after drain().
  Status submit(WorkItem item);
  // Takes a queued item back; nullopt if it already started or is unknown.
  std::optional<WorkItem> cancel(const TaskId& id);
  // Returns a keep_resources item's demand and the GPUs it was given (its
  // run() read them with current_grant()).
  void release(const ResourceSet& demand, const GpuGrant& gpus = {});

  // Placement group bundles. reserve_bundle takes `demand` out of what is
  // free and adds `bundle` (the same quantities under the bundle's own
  // names) to the totals and to what is free, so only items that ask for
  // those names use them. False, changing nothing, when `demand` is not free
  // now. release_bundle undoes it: `bundle` leaves the totals and `demand`
  // becomes free again — at once if nothing uses the bundle, else when its
  // last item returns. Queued items that ask for the bundle are dropped
  // (WorkItem::dropped), and submit refuses new ones, from then on.
  bool reserve_bundle(const ResourceSet& demand, const ResourceSet& bundle);
  void release_bundle(const ResourceSet& demand, const ResourceSet& bundle);

  // Stops starting items and hands back the queued ones.
  std::vector<WorkItem> drain();
  // Waits for running items to return and joins the threads.
  void join();

  Stats stats() const;
  // The totals (placement group bundles come and go).
  ResourceSet total() const;

  // Per pool thread; only the executor reads it.
  struct Worker;

  // Inside run(): the GPUs the item was given (a keep_resources item keeps
  // them until release()). On an actor's threads (GpuIdsScope): the actor's.
  // Empty elsewhere.
  static std::vector<uint32_t> current_gpu_ids();
  static GpuGrant current_grant();
  // An actor's threads answer current_gpu_ids() with the actor's GPUs.
  class GpuIdsScope {
   public:
    explicit GpuIdsScope(std::vector<uint32_t> ids);
    ~GpuIdsScope();
    GpuIdsScope(const GpuIdsScope&) = delete;
    GpuIdsScope& operator=(const GpuIdsScope&) = delete;

   private:
    std::vector<uint32_t> ids_;
    const std::vector<uint32_t>* previous_;
  };

  // Around a blocking wait inside run(): lends the item's demand out. Does
  // nothing on threads that are not this kind of pool thread.
  class BlockingScope {
   public:
    BlockingScope();
    ~BlockingScope();
    BlockingScope(const BlockingScope&) = delete;
    BlockingScope& operator=(const BlockingScope&) = delete;

   private:
    Executor* executor_;
  };

 private:
  struct Queued {
    uint64_t sequence;
    WorkItem item;
  };

  void thread_main();
  // Fits what is free, GPU devices included (lock held).
  bool can_start(const ResourceSet& demand) const;
  // The next item to start, if one fits, and the GPUs it takes (lock held).
  std::optional<std::pair<WorkItem, GpuGrant>> take_next();
  bool has_startable() const;  // lock held
  void maybe_add_thread();     // lock held
  void begin_blocking(Worker& worker);
  void end_blocking(Worker& worker);
  // More queued items could start in the free resources than `ready`
  // threads will take (lock held).
  bool startable_beyond(std::size_t ready) const;
  void wake_after_release();  // lock held
  // New work may be startable: wakes idle threads (one, or all) and ends
  // the spin of a spinning one (lock held).
  void signal_work(bool all);
  void finish_bundle_releases();  // lock held
  // A bundle being released that `demand` asks for, if any (lock held).
  const ResourceSet* released_bundle_of(const ResourceSet& demand) const;

  const int threads_max_;
  const int64_t busy_poll_max_ns_;
  const bool spin_ignores_load_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;                    // idle threads wait for items
  std::condition_variable reacquire_cv_;               // unblocked items wait for their demand
  NodeResources resources_;                            // guarded by mutex_
  GpuInstances gpus_;                                  // guarded
  std::map<std::string, std::deque<Queued>> classes_;  // guarded: demand key -> FIFO
  std::size_t queued_ = 0;                             // guarded
  std::size_t running_ = 0;                            // guarded
  std::size_t blocked_ = 0;                            // guarded
  std::size_t idle_ = 0;                               // guarded
  // Threads that look at the queue next without a wake-up (spinning for
  // work, or done with an item): submit() and wake_after_release() need not
  // wake or start a thread for that many queued items.
  std::size_t spinning_ = 0;  // guarded
  std::atomic<uint64_t> signals_{0};                   // signal_work() calls; spinners poll it
  uint64_t spin_wakes_ = 0;                            // guarded
  std::size_t reacquiring_ = 0;                        // guarded
  uint64_t next_sequence_ = 0;                         // guarded
  bool draining_ = false;                              // guarded
  // The GPUs each reserved bundle took (by the bundle's key).
  std::map<std::string, GpuGrant> bundle_gpus_;  // guarded
  // Bundles given back while in use: (demand, bundle), finished on release.
  std::vector<std::pair<ResourceSet, ResourceSet>> releasing_;  // guarded
  bool joined_ = false;                                // guarded
  std::vector<std::thread> threads_;                   // guarded
};

}  // namespace shoal::detail
