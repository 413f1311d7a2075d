#include "task/executor.h"

#include <algorithm>
#include <system_error>
#include <utility>

#include "base/assert.h"
#include "base/thread_name.h"
#include "loop/loop.h"

namespace shoal::detail {

struct Executor::Worker {
  Executor* executor = nullptr;
  const ResourceSet* demand = nullptr;  // of the item running on this thread
  ResourceSet lent;                     // its CPUs, while blocked
  GpuGrant gpus;                        // of the item running on this thread
  std::vector<uint32_t> gpu_ids;
  bool blocked = false;
};

namespace {
thread_local Executor::Worker* tls_worker = nullptr;                 // NOLINT: per pool thread
thread_local const std::vector<uint32_t>* tls_actor_gpu_ids = nullptr;  // NOLINT: per actor thread

// What a blocked item lends: its CPUs, plain or a placement group bundle's.
ResourceSet cpus_of(const ResourceSet& demand) {
  ResourceSet out;
  for (const auto& [name, units] : demand.entries()) {
    if (ResourceSet::is_kind(name, ResourceSet::kCpu)) out.set_units(name, units);
  }
  return out;
}
}  // namespace

Executor::Executor(Config config)
    : threads_max_(
          std::clamp(config.threads_max, std::max(config.threads_min, 1), kThreadsMaxLimit)),
      busy_poll_max_ns_(config.busy_poll_max_ns >= 0 ? config.busy_poll_max_ns : loop::default_busy_poll_max_ns()),
      spin_ignores_load_(config.spin_ignores_load),
      resources_(config.total),
      gpus_(config.total) {
  std::lock_guard lock(mutex_);
  for (int i = 0; i < std::max(config.threads_min, 1) && i < threads_max_; ++i) {
    threads_.emplace_back([this] { thread_main(); });
  }
}

Executor::~Executor() {
  std::vector<WorkItem> dropped = drain();
  join();
}

Status Executor::submit(WorkItem item) {
  std::unique_lock lock(mutex_);
  if (draining_) return Status::cancelled("the executor is shutting down");
  if (const ResourceSet* bundle = released_bundle_of(item.demand)) {
    return Status::resource_exhausted("needs " + item.demand.to_string() + " but placement group bundle " +
                                      bundle->to_string() + " was removed");
  }
  if (!resources_.feasible(item.demand)) {
    return Status::resource_exhausted("needs " + item.demand.to_string() + " but this node has " +
                                      resources_.total().to_string() + " in total");
  }
  std::string key = item.demand.key();
  classes_[key].push_back(Queued{next_sequence_++, std::move(item)});
  ++queued_;
  if (queued_ <= spinning_) {
    // A spinning thread takes it without a wake-up.
    signals_.fetch_add(1, std::memory_order_release);
  } else if (idle_ > 0) {
    signal_work(false);
  } else {
    maybe_add_thread();
  }
  return Status();
}

std::optional<WorkItem> Executor::cancel(const TaskId& id) {
  std::lock_guard lock(mutex_);
  for (auto it = classes_.begin(); it != classes_.end(); ++it) {
    auto& queue = it->second;
    for (auto q = queue.begin(); q != queue.end(); ++q) {
      if (q->item.task_id != id) continue;
      WorkItem item = std::move(q->item);
      queue.erase(q);
      --queued_;
      if (queue.empty()) classes_.erase(it);
      return item;
    }
  }
  return std::nullopt;
}

void Executor::release(const ResourceSet& demand, const GpuGrant& gpus) {
  std::lock_guard lock(mutex_);
  resources_.release(demand);
  gpus_.give_back(gpus);
  wake_after_release();
}

bool Executor::reserve_bundle(const ResourceSet& demand, const ResourceSet& bundle) {
  std::lock_guard lock(mutex_);
  if (draining_ || !can_start(demand)) return false;
  resources_.acquire(demand);
  GpuGrant taken = gpus_.take(demand);
  resources_.add_total(bundle);
  gpus_.add_pool(bundle, taken);
  bundle_gpus_[bundle.key()] = std::move(taken);
  wake_after_release();  // items of the bundle may be queued
  return true;
}

void Executor::release_bundle(const ResourceSet& demand, const ResourceSet& bundle) {
  std::vector<WorkItem> dropped;
  {
    std::lock_guard lock(mutex_);
    releasing_.emplace_back(demand, bundle);
    // What waits for the bundle would wait for ever: it leaves the queue now
    // (items already running finish, and then the bundle goes).
    for (auto it = classes_.begin(); it != classes_.end();) {
      auto& queue = it->second;
      if (queue.empty() || !queue.front().item.demand.shares_a_name_with(bundle)) {
        ++it;
        continue;
      }
      for (auto& q : queue) dropped.push_back(std::move(q.item));
      queued_ -= queue.size();
      it = classes_.erase(it);
    }
    finish_bundle_releases();
    wake_after_release();
  }
  const Status status = Status::resource_exhausted("placement group bundle " + bundle.to_string() +
                                                   " was removed before this could start");
  for (WorkItem& item : dropped) {
    if (item.dropped) item.dropped(status);
  }
}

const ResourceSet* Executor::released_bundle_of(const ResourceSet& demand) const {
  for (const auto& [taken, bundle] : releasing_) {
    if (demand.shares_a_name_with(bundle)) return &bundle;
  }
  return nullptr;
}

void Executor::finish_bundle_releases() {
  for (auto it = releasing_.begin(); it != releasing_.end();) {
    if (!it->second.fits_in(resources_.available())) {
      ++it;
      continue;
    }
    resources_.remove_total(it->second);
    gpus_.remove_pool(it->second);
    resources_.release(it->first);
    if (auto g = bundle_gpus_.find(it->second.key()); g != bundle_gpus_.end()) {
      gpus_.give_back(g->second);
      bundle_gpus_.erase(g);
    }
    it = releasing_.erase(it);
  }
}

std::vector<WorkItem> Executor::drain() {
  std::vector<WorkItem> out;
  std::lock_guard lock(mutex_);
  draining_ = true;
  for (auto& [key, queue] : classes_) {
    for (auto& q : queue) out.push_back(std::move(q.item));
  }
  classes_.clear();
  queued_ = 0;
  signal_work(true);
  return out;
}

void Executor::join() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    SHOAL_ASSERT(draining_);
    SHOAL_ASSERT(tls_worker == nullptr || tls_worker->executor != this);
    if (joined_) return;
    joined_ = true;
    signal_work(true);
    threads = std::move(threads_);
  }
  for (auto& t : threads) t.join();
}

ResourceSet Executor::total() const {
  std::lock_guard lock(mutex_);
  return resources_.total();
}

Executor::Stats Executor::stats() const {
  std::lock_guard lock(mutex_);
  return Stats{queued_, running_, blocked_, threads_.size(), resources_.available(), spin_wakes_};
}

bool Executor::can_start(const ResourceSet& demand) const {
  return resources_.can_run(demand) && gpus_.can_take(demand);
}

bool Executor::has_startable() const {
  if (reacquiring_ > 0) return false;  // resumed items take their demand back first
  for (const auto& [key, queue] : classes_) {
    if (can_start(queue.front().item.demand)) return true;
  }
  return false;
}

std::optional<std::pair<WorkItem, GpuGrant>> Executor::take_next() {
  if (reacquiring_ > 0) return std::nullopt;
  auto best = classes_.end();
  for (auto it = classes_.begin(); it != classes_.end(); ++it) {
    const Queued& head = it->second.front();
    if (!can_start(head.item.demand)) continue;
    if (best == classes_.end() || head.sequence < best->second.front().sequence) best = it;
  }
  if (best == classes_.end()) return std::nullopt;
  WorkItem item = std::move(best->second.front().item);
  best->second.pop_front();
  if (best->second.empty()) classes_.erase(best);
  --queued_;
  resources_.acquire(item.demand);
  GpuGrant gpus = gpus_.take(item.demand);
  return std::make_pair(std::move(item), std::move(gpus));
}

bool Executor::startable_beyond(std::size_t ready) const {
  if (ready == 0) return has_startable();
  if (reacquiring_ > 0) return false;
  // More items could start now, one after another in the free resources,
  // than `ready` threads will take?
  NodeResources scratch = resources_;
  std::size_t startable = 0;
  for (const auto& [key, queue] : classes_) {
    for (const Queued& q : queue) {
      if (!scratch.can_run(q.item.demand) || !gpus_.can_take(q.item.demand)) break;
      scratch.acquire(q.item.demand);
      if (++startable > ready) return true;
    }
  }
  return false;
}

void Executor::maybe_add_thread() {
  if (draining_ || idle_ > 0) return;
  if (static_cast<int>(threads_.size()) >= threads_max_) return;
  // Threads spinning for work (or about to look at the queue) take what
  // they can; a new thread only for what they cannot.
  if (!startable_beyond(spinning_)) return;
  try {
    threads_.emplace_back([this] { thread_main(); });
  } catch (const std::system_error&) {
    // Out of threads: the queued items wait for a running one to finish.
  }
}

void Executor::wake_after_release() {
  if (!releasing_.empty()) finish_bundle_releases();
  if (reacquiring_ > 0) {
    reacquire_cv_.notify_all();
  } else if (queued_ > 0) {
    signal_work(true);
    maybe_add_thread();
  }
}

void Executor::signal_work(bool all) {
  signals_.fetch_add(1, std::memory_order_release);
  if (idle_ == 0) return;
  if (all) {
    work_cv_.notify_all();
  } else {
    work_cv_.notify_one();
  }
}

void Executor::thread_main() {
  name_this_thread("shoal-worker");
  Worker worker;
  worker.executor = this;
  tls_worker = &worker;
  // One idle worker at a time spins for work before it sleeps: a task
  // handed to a sleeping thread waits for the thread's wake-up, tens of
  // microseconds on a virtual machine (spin_wait.h).
  loop::SpinWait spin(busy_poll_max_ns_);
  spin.set_ignores_load(spin_ignores_load_);
  bool spun = false;     // since the last item: the next wait blocks
  bool just_spun = false;  // the spin that just ended times the block that follows
  std::unique_lock lock(mutex_);
  while (true) {
    auto next = draining_ ? std::nullopt : take_next();
    if (!next) {
      if (draining_) break;
      if (!spun && spinning_ == 0) {
        spun = true;
        ++spinning_;
        const uint64_t seen = signals_.load(std::memory_order_acquire);
        lock.unlock();
        const bool signalled = spin.spin([&] { return signals_.load(std::memory_order_acquire) != seen; });
        lock.lock();
        --spinning_;
        if (signalled) ++spin_wakes_;
        just_spun = true;
        continue;  // take what came, or block (spun)
      }
      if (!just_spun) spin.cancel_block();
      just_spun = false;
      ++idle_;
      work_cv_.wait(lock);
      --idle_;
      spin.woke();
      continue;
    }
    spun = just_spun = false;
    ++running_;
    lock.unlock();
    std::optional<WorkItem> item(std::move(next->first));
    worker.demand = &item->demand;
    worker.gpus = std::move(next->second);
    worker.gpu_ids = GpuInstances::ids(worker.gpus);
    next.reset();
    {
      // Busy loops of this process leave the CPUs to a running task (loop.h).
      loop::note_cpu_work(1);
      struct Done {
        ~Done() { loop::note_cpu_work(-1); }
      } done;
      item->run();
    }
    worker.demand = nullptr;
    ResourceSet demand = std::move(item->demand);
    GpuGrant gpus = std::move(worker.gpus);
    worker.gpus.clear();
    worker.gpu_ids.clear();
    bool keep = item->keep_resources;
    item.reset();  // the closure's captures die outside the lock
    lock.lock();
    --running_;
    if (!keep) {
      resources_.release(demand);
      gpus_.give_back(gpus);
      // This thread looks at the queue next: one startable item needs no
      // other thread (counted like a spinning one).
      ++spinning_;
      wake_after_release();
      --spinning_;
    }
  }
  tls_worker = nullptr;
}

void Executor::begin_blocking(Worker& worker) {
  std::lock_guard lock(mutex_);
  SHOAL_ASSERT(!worker.blocked);
  worker.blocked = true;
  ++blocked_;
  worker.lent = cpus_of(*worker.demand);
  resources_.release(worker.lent);
  wake_after_release();
  maybe_add_thread();
}

void Executor::end_blocking(Worker& worker) {
  std::unique_lock lock(mutex_);
  SHOAL_ASSERT(worker.blocked);
  ++reacquiring_;
  reacquire_cv_.wait(lock, [&] { return resources_.can_run(worker.lent); });
  --reacquiring_;
  resources_.acquire(worker.lent);
  worker.lent = ResourceSet();
  worker.blocked = false;
  --blocked_;
  if (reacquiring_ == 0 && queued_ > 0) signal_work(true);
}

std::vector<uint32_t> Executor::current_gpu_ids() {
  if (tls_actor_gpu_ids != nullptr) return *tls_actor_gpu_ids;
  if (tls_worker != nullptr && tls_worker->demand != nullptr) return tls_worker->gpu_ids;
  return {};
}

GpuGrant Executor::current_grant() {
  if (tls_worker != nullptr && tls_worker->demand != nullptr) return tls_worker->gpus;
  return {};
}

Executor::GpuIdsScope::GpuIdsScope(std::vector<uint32_t> ids) : ids_(std::move(ids)), previous_(tls_actor_gpu_ids) {
  tls_actor_gpu_ids = &ids_;
}

Executor::GpuIdsScope::~GpuIdsScope() { tls_actor_gpu_ids = previous_; }

Executor::BlockingScope::BlockingScope() : executor_(nullptr) {
  Worker* worker = tls_worker;
  if (worker == nullptr || worker->demand == nullptr || worker->blocked) return;
  executor_ = worker->executor;
  executor_->begin_blocking(*worker);
}

Executor::BlockingScope::~BlockingScope() {
  if (executor_ != nullptr) executor_->end_blocking(*tls_worker);
}

}  // namespace shoal::detail
