#include "task/actor_runner.h"

#include <algorithm>
#include <system_error>
#include <utility>

#include "base/assert.h"
#include "base/thread_name.h"
#include "task/executor.h"
#include "task/runtime.h"

namespace shoal::detail {

namespace {

// The argument bytes of a call: inline values, or the resolved refs' values.
std::vector<std::string_view> argument_views(const ActorCall& call) {
  std::vector<std::string_view> views;
  views.reserve(call.spec.args.size());
  for (std::size_t i = 0; i < call.spec.args.size(); ++i) {
    views.push_back(argument_view(call.spec.args[i], i < call.arg_values.size() ? call.arg_values[i] : nullptr));
  }
  return views;
}

}  // namespace

ActorRunner::ActorRunner(Config config, ActorCallPtr creation, Callbacks callbacks)
    : config_(std::move(config)), callbacks_(std::move(callbacks)), creation_(std::move(creation)) {
  SHOAL_ASSERT(config_.max_concurrency >= 1, config_.max_concurrency);
}

ActorRunner::~ActorRunner() {
  kill(false, "its runtime is shutting down");
  join();
}

Status ActorRunner::start(std::vector<uint32_t> gpu_ids) {
  std::unique_lock lock(mutex_);
  SHOAL_ASSERT(threads_.empty());
  gpu_ids_ = std::move(gpu_ids);
  for (int i = 0; i < config_.max_concurrency; ++i) {
    try {
      threads_.emplace_back([this, i] { thread_main(i); });
      ++live_threads_;
    } catch (const std::system_error& e) {
      if (i > 0) break;  // fewer threads than asked: still an actor
      state_ = State::kDead;
      death_ = died_error(std::string("no thread could be started for it: ") + e.what());
      std::deque<ActorCallPtr> queue = take_queue();
      ErrorInfo death = *death_;
      lock.unlock();
      fail_calls(queue, death);
      callbacks_.exited(death);
      return Status::resource_exhausted(death.message);
    }
  }
  return Status();
}

void ActorRunner::enqueue(ActorCallPtr call) {
  std::unique_lock lock(mutex_);
  if (state_ == State::kDead) {
    std::deque<ActorCallPtr> one{std::move(call)};
    ErrorInfo death = *death_;
    lock.unlock();
    fail_calls(one, death);
    return;
  }
  bool ready = call->ready;
  queue_.push_back(std::move(call));
  if (ready) cv_.notify_all();
}

void ActorRunner::mark_ready(const ActorCallPtr& call) {
  std::lock_guard lock(mutex_);
  call->ready = true;
  cv_.notify_all();
}

bool ActorRunner::cancel(const TaskId& id) {
  std::unique_lock lock(mutex_);
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if ((*it)->task_id != id) continue;
    ActorCallPtr call = std::move(*it);
    queue_.erase(it);
    lock.unlock();
    ErrorInfo error;
    error.kind = ErrorKind::kCancelled;
    error.code = Status::Code::kCancelled;
    error.message = "the actor call was cancelled before it ran";
    error.function = call->spec.function;
    error.task_id = call->task_id;
    error.node_id = config_.node_id;
    ObjectValue value;
    value.error = std::move(error);
    callbacks_.complete(call, std::move(value));
    return true;
  }
  for (const ActorCallPtr& call : running_calls_) {
    if (call->task_id == id) {
      call->cancel_requested.store(true);
      return true;
    }
  }
  return false;
}

void ActorRunner::kill(bool restart, const std::string& reason) {
  std::unique_lock lock(mutex_);
  if (state_ == State::kDead) return;
  bool can_restart = restart && (config_.max_restarts < 0 || restarts_ < config_.max_restarts);
  if (can_restart) {
    ++restarts_;
    if (state_ == State::kAlive) state_ = State::kRestarting;
    cv_.notify_all();
    return;
  }
  state_ = State::kDead;
  death_ = died_error(reason);
  std::deque<ActorCallPtr> queue = take_queue();
  ErrorInfo death = *death_;
  cv_.notify_all();
  lock.unlock();
  fail_calls(queue, death);
}

void ActorRunner::stop_when_idle() {
  std::lock_guard lock(mutex_);
  stop_when_idle_ = true;
  cv_.notify_all();
}

void ActorRunner::join() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    for (const auto& t : threads_) SHOAL_ASSERT(t.get_id() != std::this_thread::get_id());
    if (joined_) return;
    joined_ = true;
    threads = std::move(threads_);
  }
  for (auto& t : threads) t.join();
}

bool ActorRunner::dead() const {
  std::lock_guard lock(mutex_);
  return state_ == State::kDead;
}

ActorCallPtr ActorRunner::take_next() {
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if ((*it)->ready) {
      ActorCallPtr call = std::move(*it);
      queue_.erase(it);
      return call;
    }
    if (config_.max_concurrency == 1) break;  // in order: the head holds the rest back
  }
  return nullptr;
}

std::deque<ActorCallPtr> ActorRunner::take_queue() {
  std::deque<ActorCallPtr> out;
  out.swap(queue_);
  return out;
}

ErrorInfo ActorRunner::died_error(const std::string& message) const {
  ErrorInfo error;
  error.kind = ErrorKind::kActorDied;
  error.code = Status::Code::kUnavailable;
  error.message = "actor " + config_.class_name + " (" + config_.id.hex() + ") is dead: " + message;
  error.function = config_.class_name;
  error.node_id = config_.node_id;
  return error;
}

void ActorRunner::fail_calls(std::deque<ActorCallPtr>& calls, const ErrorInfo& error) {
  for (ActorCallPtr& call : calls) {
    ErrorInfo e = error;
    e.function = call->spec.function;
    e.task_id = call->task_id;
    ObjectValue value;
    value.error = std::move(e);
    callbacks_.complete(call, std::move(value));
  }
  calls.clear();
}

void ActorRunner::thread_main(int index) {
  name_this_thread("shoal-actor");
  Executor::GpuIdsScope gpus(gpu_ids_);
  std::unique_lock lock(mutex_);
  while (state_ != State::kDead) {
    if (state_ == State::kConstructing) {
      if (index == 0 && creation_->ready) {
        lock.unlock();
        construct();
        lock.lock();
      } else {
        cv_.wait(lock);
      }
      continue;
    }
    if (state_ == State::kRestarting) {
      if (index == 0 && running_calls_.empty()) {
        std::unique_ptr<ActorInstance> old = std::move(instance_);
        lock.unlock();
        old.reset();  // the user's destructor, on the actor's thread
        lock.lock();
        if (state_ == State::kRestarting) state_ = State::kConstructing;
      } else {
        cv_.wait(lock);
      }
      continue;
    }
    ActorCallPtr call = take_next();
    if (call == nullptr) {
      if (stop_when_idle_ && queue_.empty() && running_calls_.empty()) {
        state_ = State::kDead;
        death_ = died_error("every handle to it is gone");
        cv_.notify_all();
        break;
      }
      cv_.wait(lock);
      continue;
    }
    running_calls_.push_back(call);
    lock.unlock();
    run_call(call);
    lock.lock();
    running_calls_.erase(std::find(running_calls_.begin(), running_calls_.end(), call));
    cv_.notify_all();
  }
  bool last = --live_threads_ == 0;
  std::unique_ptr<ActorInstance> instance = last ? std::move(instance_) : nullptr;
  ErrorInfo death = death_ ? *death_ : died_error("stopped");
  lock.unlock();
  instance.reset();
  if (last) callbacks_.exited(death);
}

void ActorRunner::construct() {
  ActorCallPtr creation;
  {
    std::lock_guard lock(mutex_);
    creation = creation_;
  }
  std::optional<ErrorInfo> error = creation->dependency_error;
  std::unique_ptr<ActorInstance> instance;
  if (!error) {
    const Constructor* constructor =
        Registry::instance().constructor(config_.class_name, creation->spec.function);
    if (constructor == nullptr) {
      error = ErrorInfo{};
      error->code = Status::Code::kNotFound;
      error->message = "class " + config_.class_name +
                       " has no registered constructor for these argument types in this binary";
    } else {
      std::vector<std::string_view> views = argument_views(*creation);
      InvokeResult result = (*constructor)(views, &instance);
      if (result.error) error = std::move(result.error);
    }
  }
  std::unique_lock lock(mutex_);
  if (error) {
    ErrorInfo death =
        died_error("its constructor failed: " +
                   (error->exception_type.empty() ? error->message
                                                  : error->exception_type + ": " + error->message));
    death.exception_type = error->exception_type;
    death.task_id = creation->task_id;
    state_ = State::kDead;
    death_ = death;
    std::deque<ActorCallPtr> queue = take_queue();
    cv_.notify_all();
    lock.unlock();
    fail_calls(queue, death);
    instance.reset();
    return;
  }
  if (state_ != State::kConstructing) {  // killed meanwhile
    lock.unlock();
    instance.reset();
    return;
  }
  instance_ = std::move(instance);
  state_ = State::kAlive;
  cv_.notify_all();
}

void ActorRunner::run_call(const ActorCallPtr& call) {
  ObjectValue value;
  if (call->dependency_error) {
    value.error = call->dependency_error;
  } else if (!call->cancel_requested.load()) {
    const Invoker* invoker = Registry::instance().method(config_.class_name, call->spec.function);
    if (invoker == nullptr) {
      ErrorInfo error;
      error.code = Status::Code::kNotFound;
      error.message = "class " + config_.class_name + " has no method " + call->spec.function +
                      " registered in this binary";
      value.error = std::move(error);
    } else {
      std::vector<std::string_view> views = argument_views(*call);
      InvokeResult result;
      {
        CancelFlagScope scope(&call->cancel_requested);
        result = (*invoker)(instance_->object(), views);
      }
      if (result.error) {
        value.error = std::move(result.error);
      } else {
        value.bytes = std::move(result.value.bytes);
        value.contained = std::move(result.value.contained);
      }
    }
    if (value.error) {
      value.error->function = call->spec.function;
      value.error->task_id = call->task_id;
      value.error->node_id = config_.node_id;
      value.error->attempts = 1;
    }
  }
  if (call->cancel_requested.load() && !call->dependency_error) {
    ErrorInfo error;
    error.kind = ErrorKind::kCancelled;
    error.code = Status::Code::kCancelled;
    error.message = "the actor call was cancelled";
    error.function = call->spec.function;
    error.task_id = call->task_id;
    error.node_id = config_.node_id;
    value = ObjectValue{};
    value.error = std::move(error);
  }
  callbacks_.complete(call, std::move(value));
}

}  // namespace shoal::detail
