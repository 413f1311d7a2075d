// ActorRunner: one actor's object, its thread(s) and its ordered queue of
// calls. Knows nothing about object tables or the network: whoever owns it
// (a runtime) resolves each call's arguments and calls mark_ready(), and is
// told of every finished call through Callbacks::complete.
//
// Order: calls start in the order they were enqueued; with one thread
// (max_concurrency 1) a call whose arguments are not ready holds back those
// behind it. With n threads up to n calls run at once, picked in queue order
// among the ready ones.
//
// Life: start() spawns the threads; thread 0 runs the constructor once the
// creation call is ready. kill() fails queued calls with ActorDied (unless
// restarting, when they wait for the new object); running calls finish. The
// object is destroyed on an actor thread with no lock held; when every thread
// has returned, Callbacks::exited runs (on the last actor thread).
//
// Threading: public methods are thread-safe and may be called from the
// actor's own threads (a method killing its actor) except join(), which
// must come from another thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shoal/detail/core.h"
#include "shoal/errors.h"
#include "shoal/ids.h"
#include "shoal/registry.h"

namespace shoal::detail {

// One method call, or the constructor call.
struct ActorCall {
  TaskId task_id;
  ObjectId return_id;
  TaskSpec spec;                              // holds the arguments (and their refs) alive
  std::vector<ObjectValuePtr> arg_values;     // per argument: the resolved ref's value, else null
  std::optional<ErrorInfo> dependency_error;  // an argument's task failed: fail without running
  std::atomic<bool> cancel_requested{false};
  std::size_t deps_remaining = 0;  // the owner's bookkeeping, under the owner's lock
  bool ready = false;              // arguments resolved; guarded by the runner's mutex
};
using ActorCallPtr = std::shared_ptr<ActorCall>;

class ActorRunner {
 public:
  struct Config {
    ActorId id;
    std::string class_name;
    std::string node_id;
    int max_concurrency = 1;
    int max_restarts = 0;  // -1: forever
  };
  struct Callbacks {
    // A call finished, failed or was dropped; on an actor thread or the
    // thread that killed/cancelled it, with no runner lock held.
    std::function<void(const ActorCallPtr&, ObjectValue)> complete;
    // All threads are done and the object is gone; `error` is why it died.
    std::function<void(const ErrorInfo& error)> exited;
  };

  ActorRunner(Config config, ActorCallPtr creation, Callbacks callbacks);
  ~ActorRunner();  // joins (never destroy it on one of its own threads)
  ActorRunner(const ActorRunner&) = delete;
  ActorRunner& operator=(const ActorRunner&) = delete;

  // Spawns the threads. kResourceExhausted if no thread could be started
  // (the actor is then dead). `gpu_ids`: the GPUs the node gave the actor
  // (shoal::gpu_ids() on its threads).
  Status start(std::vector<uint32_t> gpu_ids = {});
  void enqueue(ActorCallPtr call);  // fails it at once if the actor is dead
  void mark_ready(const ActorCallPtr& call);
  // Drops a queued call (completing it with TaskCancelled) and returns true;
  // for a running call sets its flag and returns true; false otherwise.
  bool cancel(const TaskId& id);
  // Stops the actor; restarts it instead if `restart` and max_restarts allow.
  // `reason` says why (it becomes the ActorDied message).
  void kill(bool restart, const std::string& reason);
  // Finishes the calls already queued, then stops (last handle gone).
  void stop_when_idle();
  void join();

  bool dead() const;
  const ActorId& id() const { return config_.id; }

 private:
  enum class State { kConstructing, kAlive, kRestarting, kDead };

  void thread_main(int index);
  // The next call to run (lock held): the head if ready, or with several
  // threads the first ready one.
  ActorCallPtr take_next();
  void construct();                         // on thread 0, no lock held
  void run_call(const ActorCallPtr& call);  // no lock held
  ErrorInfo died_error(const std::string& message) const;
  // Moves every queued call out (lock held); complete them after unlocking.
  std::deque<ActorCallPtr> take_queue();
  void fail_calls(std::deque<ActorCallPtr>& calls, const ErrorInfo& error);

  const Config config_;
  const Callbacks callbacks_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  State state_ = State::kConstructing;       // guarded
  ActorCallPtr creation_;                    // guarded; the constructor call
  std::deque<ActorCallPtr> queue_;           // guarded
  std::vector<ActorCallPtr> running_calls_;  // guarded
  std::unique_ptr<ActorInstance> instance_;  // guarded (written by thread 0)
  std::optional<ErrorInfo> death_;           // guarded: why it died
  int restarts_ = 0;                         // guarded
  bool stop_when_idle_ = false;              // guarded
  int live_threads_ = 0;                     // guarded
  std::vector<std::thread> threads_;         // guarded
  bool joined_ = false;                      // guarded
  std::vector<uint32_t> gpu_ids_;            // set by start() before any thread runs
};

}  // namespace shoal::detail
