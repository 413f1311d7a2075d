#include "task/object_table.h"

#include <algorithm>
#include <condition_variable>

#include "task/executor.h"

#include "base/assert.h"
#include "base/log.h"

namespace shoal::detail {

namespace {

Status not_known(const ObjectId& id) {
  return Status::not_found("object " + id.hex() +
                           " is not known here (freed, or owned by another process)");
}

}  // namespace

ObjectTable::~ObjectTable() { clear(); }

void ObjectTable::hold_locked(const ObjectId& id, Entry& entry, ObjectValuePtr value) {
  if (store_ != nullptr && store_->manages(*value)) {
    Status added = store_->add(id, value);
    if (added.ok()) {
      entry.in_store = true;
      return;
    }
    // Too big for the store, or it shut down: kept here, never lost.
    SHOAL_LOG_WARN("object {} stays in memory outside the object store: {}", id.hex(),
                   added.message());
  }
  const uint64_t size = value->bytes.size();
  bytes_ += size;
  if (store_ != nullptr) store_->hold_inline(size);
  entry.value = std::move(value);
}

Result<ObjectValuePtr> ObjectTable::from_store(const ObjectId& id) const {
  Result<ObjectValuePtr> value = store_->get(id);
  if (!value.ok()) return not_known(id);  // freed meanwhile
  return value;
}

void ObjectTable::create_pending(const ObjectId& id) {
  std::lock_guard lock(mutex_);
  bool inserted = entries_.try_emplace(id).second;
  SHOAL_ASSERT(inserted, id.hex());
}

void ObjectTable::create_ready(const ObjectId& id, ObjectValuePtr value) {
  SHOAL_ASSERT(value != nullptr);
  std::lock_guard lock(mutex_);
  auto [it, inserted] = entries_.try_emplace(id);
  SHOAL_ASSERT(inserted, id.hex());
  hold_locked(id, it->second, std::move(value));
}

bool ObjectTable::complete(const ObjectId& id, ObjectValuePtr value) {
  SHOAL_ASSERT(value != nullptr);
  std::vector<std::pair<uint64_t, Callback>> callbacks;
  ObjectValuePtr freed;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.ready()) return false;
    callbacks = std::move(it->second.callbacks);
    if (it->second.refs == 0) {
      freed = std::move(value);  // nobody can see it any more
      entries_.erase(it);
    } else {
      hold_locked(id, it->second, value);
    }
  }
  const ObjectValuePtr& delivered = freed ? freed : value;
  for (auto& [token, callback] : callbacks) callback(delivered);
  return true;
}

bool ObjectTable::materialize(const ObjectId& id, ObjectValuePtr value) {
  SHOAL_ASSERT(value != nullptr && value->remote_size == 0);
  ObjectValuePtr replaced;
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.value == nullptr || it->second.value->remote_size == 0) return false;
  replaced = std::move(it->second.value);  // holds no bytes: nothing to account
  it->second.value = nullptr;
  hold_locked(id, it->second, std::move(value));
  return true;
}

std::vector<ObjectTable::Listed> ObjectTable::list(std::size_t max) const {
  std::vector<Listed> out;
  std::lock_guard lock(mutex_);
  out.reserve(std::min(max, entries_.size()));
  for (const auto& [id, entry] : entries_) {
    if (out.size() >= max) break;
    out.push_back(Listed{id, entry.value, entry.refs, entry.in_store});
  }
  return out;
}

Result<ObjectValuePtr> ObjectTable::lookup(const ObjectId& id) const {
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return not_known(id);
    if (!it->second.in_store) return it->second.value;
  }
  return from_store(id);  // may read a spill file: no lock held
}

Result<uint64_t> ObjectTable::on_ready(const ObjectId& id, Callback callback) {
  ObjectValuePtr value;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return not_known(id);
    if (!it->second.ready()) {
      uint64_t token = next_token_++;
      it->second.callbacks.emplace_back(token, std::move(callback));
      return token;
    }
    value = it->second.value;
  }
  if (value == nullptr) {  // the store holds it
    Result<ObjectValuePtr> stored = from_store(id);
    if (!stored.ok()) return stored.status();
    value = std::move(*stored);
  }
  callback(value);
  return uint64_t{0};
}

void ObjectTable::cancel_callback(const ObjectId& id, uint64_t token) {
  Callback dropped;
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  auto& callbacks = it->second.callbacks;
  for (auto c = callbacks.begin(); c != callbacks.end(); ++c) {
    if (c->first == token) {
      dropped = std::move(c->second);  // destroyed after the lock is released
      callbacks.erase(c);
      return;
    }
  }
}

bool ObjectTable::reopen(const ObjectId& id) {
  ObjectValuePtr dropped;
  bool in_store = false;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end() || !it->second.ready()) return false;
    in_store = it->second.in_store;
    it->second.in_store = false;
    dropped = std::move(it->second.value);
    if (dropped != nullptr) {
      bytes_ -= dropped->bytes.size();
      if (store_ != nullptr) store_->release_inline(dropped->bytes.size());
    }
  }
  if (in_store) store_->remove(id);
  return true;
}

bool ObjectTable::add_ref(const ObjectId& id) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  ++it->second.refs;
  return true;
}

void ObjectTable::complete_all_pending(const ObjectValuePtr& value) {
  std::vector<ObjectId> pending;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, entry] : entries_) {
      if (!entry.ready()) pending.push_back(id);
    }
  }
  for (const ObjectId& id : pending) complete(id, value);
}

ObjectTable::Adopted ObjectTable::add_ref_or_create(const ObjectId& id) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = entries_.try_emplace(id);
  if (inserted) return Adopted::kCreated;
  return it->second.refs++ == 0 ? Adopted::kRevived : Adopted::kAdded;
}

bool ObjectTable::remove_ref(const ObjectId& id, bool drop_pending) {
  ObjectValuePtr freed;
  std::vector<std::pair<uint64_t, Callback>> dropped;
  bool in_store = false;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return false;
    SHOAL_ASSERT(it->second.refs > 0, id.hex());
    if (--it->second.refs > 0) return false;
    if (!it->second.ready() && !drop_pending) return true;  // pending: freed when it completes
    in_store = it->second.in_store;
    freed = std::move(it->second.value);
    if (freed != nullptr) {
      bytes_ -= freed->bytes.size();
      if (store_ != nullptr) store_->release_inline(freed->bytes.size());
    }
    dropped = std::move(it->second.callbacks);
    entries_.erase(it);
  }
  if (in_store) store_->remove(id);  // frees memory or deletes the spill file
  return true;
}

std::size_t ObjectTable::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

uint64_t ObjectTable::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

void ObjectTable::clear() {
  std::unordered_map<ObjectId, Entry> entries;
  {
    std::lock_guard lock(mutex_);
    entries.swap(entries_);
    if (store_ != nullptr) store_->release_inline(bytes_);
    bytes_ = 0;
  }
  for (const auto& [id, entry] : entries) {
    if (entry.in_store) store_->remove(id);
  }
}

namespace {

struct ReadyWaiter {
  std::mutex mutex;
  std::condition_variable cv;
  std::size_t remaining = 0;           // guarded
  std::vector<ObjectValuePtr> values;  // guarded
};

}  // namespace

Status wait_ready(ObjectTable& table, std::span<const ObjectId> ids, std::size_t needed,
                  std::optional<std::chrono::steady_clock::time_point> deadline,
                  std::vector<ObjectValuePtr>& values, bool& done) {
  values.assign(ids.size(), nullptr);
  std::size_t ready = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    Result<ObjectValuePtr> value = table.lookup(ids[i]);
    if (!value.ok()) return value.status();
    values[i] = std::move(*value);
    if (values[i]) ++ready;
  }
  done = ready >= needed;
  if (done) return Status();

  auto waiter = std::make_shared<ReadyWaiter>();
  waiter->remaining = needed - ready;
  waiter->values = values;
  std::vector<std::pair<std::size_t, uint64_t>> tokens;
  Executor::BlockingScope blocking;  // lend this task's CPUs while it waits
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (values[i]) continue;
    Result<uint64_t> token = table.on_ready(ids[i], [waiter, i](const ObjectValuePtr& value) {
      std::lock_guard lock(waiter->mutex);
      if (waiter->values[i] != nullptr) return;
      waiter->values[i] = value;
      if (waiter->remaining > 0 && --waiter->remaining == 0) waiter->cv.notify_all();
    });
    if (!token.ok()) {
      for (auto [index, t] : tokens) table.cancel_callback(ids[index], t);
      return token.status();
    }
    if (*token != 0) tokens.emplace_back(i, *token);
  }
  {
    std::unique_lock lock(waiter->mutex);
    auto all_ready = [&] { return waiter->remaining == 0; };
    if (deadline) {
      done = waiter->cv.wait_until(lock, *deadline, all_ready);
    } else {
      waiter->cv.wait(lock, all_ready);
      done = true;
    }
    values = waiter->values;
  }
  for (auto [index, t] : tokens) table.cancel_callback(ids[index], t);
  return Status();
}

}  // namespace shoal::detail
