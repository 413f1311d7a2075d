// ClusterRuntime: values over kInlineBytesMax (100 KiB).
//
// Such a value stays where it was made — the node that ran the task keeps
// its result (Held), the process that put() it keeps it in its table — and
// the owner records where it is (Locations). Messages carry its size and
// holders instead of its bytes (StoredWire): a task result, a getObject
// answer, a by-reference task argument (RefArgWire). Whoever needs the bytes
// pulls them with readObject in chunks of kChunkBytes, kChunksInFlight at a
// time, from the first holder that answers (switching holders mid-transfer
// when one fails), into one buffer of the value's size; concurrent pulls of
// one object share one transfer. A node keeps what it pulled for arguments
// as copies (bounded, least recently used out) so later tasks there read it
// locally. When such a task's result comes back, the owner counts that node
// as a holder of its arguments (note_copies), and each puller is told to
// start at the holder fewer pullers were sent to (pull_sources_locked), so
// broadcasting a value does not funnel every transfer through its owner. When the owner's last reference goes, it tells every holder and
// every node it sent the value to (freeObjects); a holder whose owner has
// been unreachable for 10 s drops what it held for it (check_owners).
#include <algorithm>
#include <cstring>
#include <new>
#include <sys/mman.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/log.h"
#include "base/memory_size.h"
#include "base/thread_name.h"
#include "loop/loop.h"
#include "rpc/errors.h"
#include "rpc/peer_pool.h"
#include "shoal/detail/copy.h"
#include "task/bulk_channel.h"
#include "task/cluster_runtime.h"
#include "task/cluster_task.h"
#include "task/cluster_wire.h"
#include "task/object_store.h"

namespace shoal::detail {

namespace {

constexpr uint32_t kChunkBytes = 8u << 20;  // per readObject (messages are bounded at 64 MiB)
constexpr uint32_t kChunkBytesMax = 16u << 20;
constexpr uint32_t kChunksInFlight = 4;      // per transfer: bounds its memory beyond the value
constexpr uint64_t kPullBytesMax = uint64_t{1} << 40;  // a size from the network beyond this is refused

// The key a result held for another process has in this process's store.
// The store is shared with this process's ObjectTable, which may hold the
// same object (a task here reading a result this node holds); the bit marks
// the held copy apart (a real id's low word is a sequence number shifted by
// 16 bits, so the top bit is never set on one this runtime made).
ObjectId held_store_key(const ObjectId& id) {
  ObjectId key = id;
  key.lo |= uint64_t{1} << 63;
  return key;
}

uint64_t copies_bytes_max() {
  // Copies of arguments a node keeps: an eighth of its memory, at most 4 GiB.
  return std::min<uint64_t>(physical_memory_bytes() / 8, uint64_t{4} << 30);
}

// Fresh memory is mapped a page at a time on first touch: zero-filling a
// new 1 GiB buffer costs ~0.8 s of page faults on the VMs this ran on. One
// madvise maps the pages in the kernel for about half that. Best effort:
// kernels before 5.14 refuse it and the faults happen as before.
void populate(char* begin, uint64_t size) {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;
#endif
  constexpr uint64_t kWorthItBytes = 4u << 20;
  if (size < kWorthItBytes) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t first = (reinterpret_cast<uint64_t>(begin) + page - 1) / page * page;
  uint64_t end = (reinterpret_cast<uint64_t>(begin) + size) / page * page;
  if (end > first) (void)::madvise(reinterpret_cast<void*>(first), end - first, MADV_POPULATE_WRITE);
}

ObjectValuePtr error_value(Status::Code code, std::string message, const std::string& node_id) {
  ErrorInfo error;
  error.code = code;
  error.message = std::move(message);
  error.node_id = node_id;
  return std::make_shared<const ObjectValue>(ObjectValue{{}, {}, std::move(error)});
}

}  // namespace

struct ClusterRuntime::Pull {
  ObjectId id;
  uint64_t size = 0;
  std::vector<std::string> sources;
  std::size_t source = 0;       // the holder chunks are read from now
  std::string errors;           // why earlier holders were given up
  std::shared_ptr<ObjectValue> value;
  uint64_t next = 0;            // the next offset never asked for
  std::vector<uint64_t> retry;  // offsets to ask again (their holder failed)
  uint32_t in_flight = 0;
  uint64_t received = 0;
  Clock::time_point started = Clock::now();
  bool finished = false;
  uint64_t bulk_bytes = 0;      // how much came over the bulk channel
  kj::Own<kj::PromiseFulfiller<ObjectValuePtr>> fulfiller;
};

bool ClusterRuntime::large(const ObjectValuePtr& value) {
  return value && !value->error && (value->remote_size > 0 || value->bytes.size() > kInlineBytesMax);
}

ObjectValuePtr ClusterRuntime::local_copy(const ObjectId& id) {
  bool in_store = false;
  {
    std::lock_guard lock(host_mutex_);
    auto it = held_.find(id);
    if (it != held_.end()) {
      if (it->second.copy) copies_lru_.splice(copies_lru_.end(), copies_lru_, it->second.lru);
      if (!it->second.in_store) return it->second.value;
      in_store = true;
    }
  }
  if (in_store) {
    // A held result (read back from its spill file if spilled: callers on
    // the loop thread ask spilled_size() first and restore off the loop).
    Result<ObjectValuePtr> stored = config_.store->get(held_store_key(id));
    return stored.ok() ? *stored : nullptr;  // a corrupted file: a value with that error
  }
  Result<ObjectValuePtr> own = objects_.lookup(id);
  if (own.ok() && *own && !(*own)->error && (*own)->remote_size == 0) return *own;
  return nullptr;
}

// ---- Pulling (loop thread) ------------------------------------------------------------

kj::Promise<ObjectValuePtr> ClusterRuntime::pull(ObjectId id, uint64_t size, std::vector<std::string> sources,
                                                  bool from_spill) {
  // Here but spilled (a result held for its owner, or a value of this
  // process's table): read back off the loop; if that fails, from a holder.
  if (std::optional<ObjectId> key = from_spill ? spilled_key(id) : std::nullopt) {
    return restore_off_loop(*key).then([this, id, size, sources = std::move(sources)](
                                         ObjectValuePtr value) mutable -> kj::Promise<ObjectValuePtr> {
      if (value && !value->error) return value;
      return pull(id, size, std::move(sources), false);
    });
  }
  if (ObjectValuePtr here = local_copy(id)) return here;
  if (auto it = pulls_.find(id); it != pulls_.end()) return it->second.addBranch();
  if (size == 0 || size > kPullBytesMax) {
    return error_value(Status::Code::kInvalidArgument,
                       "object " + id.hex() + ": a holder reported an impossible size (" + std::to_string(size) +
                           " bytes)",
                       config_.node_id);
  }
  if (uint64_t memory = physical_memory_bytes(); memory > 0 && size > memory) {
    // Linux would grant the buffer and kill the process when it is written.
    return error_value(Status::Code::kResourceExhausted,
                       "object " + id.hex() + " is " + std::to_string(size) + " bytes, more than this machine's " +
                           std::to_string(memory) + " bytes of memory",
                       config_.node_id);
  }
  sources.erase(std::remove(sources.begin(), sources.end(), config_.address), sources.end());
  if (sources.empty()) {
    return error_value(Status::Code::kNotFound,
                       "object " + id.hex() + " (" + std::to_string(size) + " bytes): no process holds a copy",
                       config_.node_id);
  }
  auto p = std::make_shared<Pull>();
  p->id = id;
  p->size = size;
  p->sources = std::move(sources);
  try {
    p->value = std::make_shared<ObjectValue>();
    p->value->bytes.reserve(size);
    populate(p->value->bytes.data(), size);
    resize_uninitialized(p->value->bytes, size);  // the pull writes every byte
  } catch (const std::bad_alloc&) {
    return error_value(Status::Code::kResourceExhausted,
                       "object " + id.hex() + ": no memory for its " + std::to_string(size) + " bytes",
                       config_.node_id);
  }
  auto paf = kj::newPromiseAndFulfiller<ObjectValuePtr>();
  p->fulfiller = kj::mv(paf.fulfiller);
  auto forked = paf.promise.fork();
  auto branch = forked.addBranch();
  pulls_.emplace(id, kj::mv(forked));
  if (bulk_) {
    pull_bulk(p);
  } else {
    pull_chunks(p);
  }
  return branch;
}

namespace {
struct BulkOffer {
  uint16_t port = 0;
  std::string ticket;
  uint64_t size = 0;
};
}  // namespace

void ClusterRuntime::pull_bulk(const std::shared_ptr<Pull>& p) {
  const std::string address = p->sources[p->source];
  std::string host = host_of(address);
  if (host.empty()) {
    pull_chunks(p);
    return;
  }
  auto received = std::make_shared<uint64_t>(0);
  auto offer = config_.peers->call<BulkOffer>(address, [p](rpc::Node::Client& node) {
    auto request = node.openObjectStreamRequest();
    request.setObjectHi(p->id.hi);
    request.setObjectLo(p->id.lo);
    request.setOffset(0);
    return request.send().then([](auto response) {
      auto ticket = response.getTicket();
      return BulkOffer{response.getPort(), std::string(reinterpret_cast<const char*>(ticket.begin()), ticket.size()),
                       response.getSize()};
    });
  });
  // The buffer is read into directly: keep it alive whatever happens to p.
  std::shared_ptr<ObjectValue> buffer = p->value;
  auto moved = offer.then([this, p, host, received, buffer](BulkOffer offer) -> kj::Promise<void> {
    if (offer.port == 0) return kj::READY_NOW;  // none now: all of it by readObject
    if (offer.size != p->size) KJ_FAIL_REQUIRE("the holder's copy has another size", offer.size, p->size);
    if (offer.ticket.size() != kBulkTicketBytes) KJ_FAIL_REQUIRE("malformed bulk ticket", offer.ticket.size());
    return bulk_read(*config_.loop, host, offer.port, std::move(offer.ticket), buffer->bytes.data(), p->size,
                     received);
  });
  // Done, or the chunks go on from where the stream stopped, from this
  // holder first (readObject may still work) and then the next ones.
  auto go_on = [this, p, received]() {
    if (p->finished) return;
    p->bulk_bytes = *received;
    p->received = p->next = *received;
    if (*received == p->size) {
      finish_pull(p, p->value);
    } else {
      pull_chunks(p);
    }
  };
  auto on_error = [p, received, go_on](kj::Exception&& e) {
    SHOAL_LOG_DEBUG("object {}: bulk stream from {} stopped at {} of {} bytes ({}); going on in chunks", p->id.hex(),
                    p->sources[p->source], *received, p->size, kj_text(e));
    go_on();
  };
  // Both by value: then() keeps a reference to an lvalue it is given.
  tasks_set_->add(moved.then(std::move(go_on), std::move(on_error)).attach(std::move(buffer)));
}

void ClusterRuntime::pull_chunks(const std::shared_ptr<Pull>& p) {
  while (!p->finished && p->in_flight < kChunksInFlight && (!p->retry.empty() || p->next < p->size)) {
    uint64_t offset;
    if (!p->retry.empty()) {
      offset = p->retry.back();
      p->retry.pop_back();
    } else {
      offset = p->next;
      p->next += std::min<uint64_t>(kChunkBytes, p->size - p->next);
    }
    uint32_t length = static_cast<uint32_t>(std::min<uint64_t>(kChunkBytes, p->size - offset));
    std::size_t source = p->source;
    const std::string& address = p->sources[source];
    ++p->in_flight;
    auto read = config_.peers->call<bool>(address, [p, offset, length](rpc::Node::Client& node) {
      auto request = node.readObjectRequest();
      request.setObjectHi(p->id.hi);
      request.setObjectLo(p->id.lo);
      request.setOffset(offset);
      request.setLength(length);
      return request.send().then([p, offset, length](auto response) {
        auto data = response.getData();
        if (response.getSize() != p->size) {
          KJ_FAIL_REQUIRE("the holder's copy has another size", response.getSize(), p->size, offset);
        }
        if (data.size() != length) KJ_FAIL_REQUIRE("truncated chunk", data.size(), length, offset);
        // A transfer that ended (failed) meanwhile has no buffer any more.
        if (!p->finished) copy_bytes(p->value->bytes.data() + offset, reinterpret_cast<const char*>(data.begin()), length);
        return true;
      });
    });
    tasks_set_->add(read.then(
        [this, p, length](bool) {
          --p->in_flight;
          if (p->finished) return;
          p->received += length;
          if (p->received == p->size) {
            finish_pull(p, p->value);
            return;
          }
          pull_chunks(p);
        },
        [this, p, offset, source](kj::Exception&& e) {
          --p->in_flight;
          if (p->finished) return;
          p->retry.push_back(offset);
          if (p->source == source) {
            // This holder failed: the rest comes from the next one.
            p->errors += (p->errors.empty() ? "" : "; ") + p->sources[source] + ": " + kj_text(e);
            ++p->source;
            if (p->source >= p->sources.size()) {
              ErrorInfo lost;
              lost.kind = ErrorKind::kObjectLost;  // its owner may make it again (lineage)
              lost.code = Status::Code::kUnavailable;
              lost.message = "object " + p->id.hex() + " (" + std::to_string(p->size) +
                             " bytes): no holder could send it: " + p->errors;
              lost.node_id = config_.node_id;
              lost.object_id = p->id;
              finish_pull(p, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, std::move(lost)}));
              return;
            }
            SHOAL_LOG_INFO("object {}: holder {} failed ({}); pulling the rest from {}", p->id.hex(),
                           p->sources[source], kj_text(e), p->sources[p->source]);
          }
          pull_chunks(p);
        }));
  }
}

void ClusterRuntime::finish_pull(const std::shared_ptr<Pull>& p, ObjectValuePtr value) {
  p->finished = true;
  double seconds = std::chrono::duration<double>(Clock::now() - p->started).count();
  SHOAL_LOG_DEBUG("object {} ({} bytes, {} over the bulk channel): pulled in {:.3f} s ({:.2f} GB/s){}", p->id.hex(),
                  p->size, p->bulk_bytes, seconds, static_cast<double>(p->size) / seconds / 1e9,
                  value->error ? ": " + value->error->message : "");
  p->value.reset();
  p->fulfiller->fulfill(kj::mv(value));
  // The fork's branches hold its hub; the map's entry can go now.
  ObjectId id = p->id;
  tasks_set_->add(kj::evalLater([this, id] { pulls_.erase(id); }));
}

// ---- Serving (loop thread) ---------------------------------------------------------------

kj::Promise<void> ClusterRuntime::serve_read_object(ObjectId id, uint64_t offset, uint32_t length,
                                                    rpc::Node::ReadObjectResults::Builder out) {
  if (std::optional<ObjectId> key = spilled_key(id)) {
    return restore_off_loop(*key).then([this, id, offset, length, out](ObjectValuePtr value) mutable {
      copy_chunk(id, value, offset, length, out);
    });
  }
  copy_chunk(id, local_copy(id), offset, length, out);
  return kj::READY_NOW;
}

void ClusterRuntime::serve_open_object_stream(ObjectId id, uint64_t offset,
                                              rpc::Node::OpenObjectStreamResults::Builder out) {
  out.setPort(0);
  // A spilled value is read back off the loop by readObject.
  if (!bulk_ || spilled_key(id)) return;
  ObjectValuePtr value = local_copy(id);
  require_servable(id, value);
  uint64_t size = value->bytes.size();
  if (offset >= size) KJ_FAIL_REQUIRE("offset beyond the value", offset, size);
  const char* data = value->bytes.data() + offset;
  std::optional<std::string> ticket = bulk_->issue(value, data, size - offset);
  if (!ticket) return;
  out.setPort(bulk_->port());
  out.setTicket(kj::arrayPtr(reinterpret_cast<const kj::byte*>(ticket->data()), ticket->size()));
  out.setSize(size);
  bytes_served_.fetch_add(size - offset, std::memory_order_relaxed);
  bulk_bytes_served_.fetch_add(size - offset, std::memory_order_relaxed);
}

std::optional<ObjectId> ClusterRuntime::spilled_key(const ObjectId& id) const {
  if (!config_.store) return std::nullopt;
  if (config_.store->spilled_size(id)) return id;
  ObjectId held = held_store_key(id);
  if (config_.store->spilled_size(held)) return held;
  return std::nullopt;
}

kj::Promise<ObjectValuePtr> ClusterRuntime::restore_off_loop(const ObjectId& id) {
  if (auto it = restores_.find(id); it != restores_.end()) return it->second.promise.addBranch();
  auto paf = kj::newPromiseAndFulfiller<ObjectValuePtr>();
  auto [it, inserted] = restores_.emplace(id, Restore{kj::mv(paf.fulfiller), paf.promise.fork()});
  kj::Promise<ObjectValuePtr> result = it->second.promise.addBranch();
  // Each restore holds a whole value in memory: a few at a time.
  if (restores_running_ < kRestoresAtOnce) {
    start_restore(id);
  } else {
    restore_queue_.push_back(id);
  }
  return result;
}

void ClusterRuntime::start_restore(const ObjectId& id) {
  ++restores_running_;
  std::lock_guard lock(restore_threads_mutex_);
  uint64_t key = next_restore_++;
  // `this` outlives the thread: the loop joins it when its answer arrives,
  // teardown_on_loop() and the destructor join any left.
  restore_threads_.emplace(key, std::thread([this, id, key, store = config_.store] {
    name_this_thread("shoal-restore");
    Result<ObjectValuePtr> got = store->get(id);  // reads the spill file (checksummed)
    ObjectValuePtr value = got.ok() ? *got : nullptr;
    post([this, id, key, value] {
      join_restore_threads(key);
      --restores_running_;
      if (value && !value->error) {
        SHOAL_LOG_INFO("object {} ({} bytes) read back from its spill file to serve a pull", id.hex(),
                       value->bytes.size());
      }
      if (auto waiting = restores_.find(id); waiting != restores_.end()) {
        waiting->second.fulfiller->fulfill(ObjectValuePtr(value));
        // The forked promise may still be read by its branches this turn.
        tasks_set_->add(kj::evalLater([this, id] { restores_.erase(id); }));
      }
      if (!restore_queue_.empty()) {
        ObjectId next = restore_queue_.front();
        restore_queue_.pop_front();
        start_restore(next);
      }
    });
  }));
}

void ClusterRuntime::join_restore_threads(std::optional<uint64_t> only) {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(restore_threads_mutex_);
    for (auto it = restore_threads_.begin(); it != restore_threads_.end();) {
      if (only && it->first != *only) {
        ++it;
        continue;
      }
      threads.push_back(std::move(it->second));
      it = restore_threads_.erase(it);
    }
  }
  for (auto& t : threads) t.join();
}

void ClusterRuntime::require_servable(const ObjectId& id, const ObjectValuePtr& value) const {
  if (!value) KJ_FAIL_REQUIRE("object is not held here (never, or freed)", id.hex(), config_.address);
  if (value->error) KJ_FAIL_REQUIRE("object cannot be read here", id.hex(), value->error->message);
}

void ClusterRuntime::copy_chunk(const ObjectId& id, const ObjectValuePtr& value, uint64_t offset, uint32_t length,
                                rpc::Node::ReadObjectResults::Builder out) {
  require_servable(id, value);
  uint64_t size = value->bytes.size();
  if (length > kChunkBytesMax) KJ_FAIL_REQUIRE("chunk too long", length, kChunkBytesMax);
  if (offset > size) KJ_FAIL_REQUIRE("offset beyond the value", offset, size);
  uint64_t n = std::min<uint64_t>(length, size - offset);
  auto data = out.initData(static_cast<unsigned>(n));
  copy_bytes(reinterpret_cast<char*>(data.begin()), value->bytes.data() + offset, n);
  out.setSize(size);
  bytes_served_.fetch_add(n, std::memory_order_relaxed);
}

void ClusterRuntime::serve_free_objects(capnp::List<rpc::ObjectIdWire>::Reader objects) {
  Unheld dropped;  // released after the lock
  std::lock_guard lock(host_mutex_);
  for (auto wire : objects) {
    auto it = held_.find(object_id(wire.getHi(), wire.getLo()));
    if (it != held_.end()) unhold_locked(it, dropped);
  }
}

ClusterRuntime::Unheld::~Unheld() {
  values.clear();
  for (const ObjectId& id : stored) store->remove(id);
}

void ClusterRuntime::hold(const ObjectId& id, ObjectValuePtr value, uint64_t session, bool copy) {
  const uint64_t size = value->bytes.size();
  if (!copy && config_.store && config_.store->manages(*value)) {
    // A result: into the store, which spills it under memory pressure.
    {
      std::lock_guard lock(host_mutex_);
      auto [it, inserted] = held_.try_emplace(id);
      if (!inserted) return;  // held already
      it->second.session = session;
      it->second.in_store = true;
      it->second.size = size;
    }
    // Unlocked: the store may release values (and the refs in them) here.
    Status added = config_.store->add(held_store_key(id), value);
    Unheld dropped;  // released after the lock
    std::lock_guard lock(host_mutex_);
    auto it = held_.find(id);
    if (it == held_.end()) {  // freed meanwhile
      if (added.ok()) {
        dropped.store = config_.store;
        dropped.stored.push_back(held_store_key(id));
      }
      return;
    }
    if (added.ok()) return;
    // Bigger than the whole store (or its key taken: an id from elsewhere
    // with the top bit set): kept in memory, counted against it.
    it->second.in_store = false;
    it->second.value = std::move(value);
    config_.store->hold_inline(size);
    return;
  }
  Unheld dropped;  // released after the lock
  std::lock_guard lock(host_mutex_);
  auto [it, inserted] = held_.try_emplace(id);
  if (!inserted) return;  // held already (a result kept, or an earlier copy)
  it->second.value = std::move(value);
  it->second.session = session;
  it->second.copy = copy;
  it->second.size = size;
  // Held in memory here, but counted against the store's capacity, so the
  // values it manages spill to make room.
  if (config_.store) config_.store->hold_inline(size);
  if (!copy) return;
  it->second.lru = copies_lru_.insert(copies_lru_.end(), id);
  copies_bytes_ += size;
  static const uint64_t kCopiesMax = copies_bytes_max();
  while (copies_bytes_ > kCopiesMax && copies_lru_.size() > 1) {
    unhold_locked(held_.find(copies_lru_.front()), dropped);
  }
}

void ClusterRuntime::unhold_locked(std::unordered_map<ObjectId, Held>::iterator it, Unheld& out) {
  Held& held = it->second;
  if (held.copy) {
    copies_bytes_ -= held.size;
    copies_lru_.erase(held.lru);
  }
  if (held.in_store) {
    out.store = config_.store;
    out.stored.push_back(held_store_key(it->first));
  } else {
    if (config_.store) config_.store->release_inline(held.size);
    out.values.push_back(std::move(held.value));
  }
  held_.erase(it);
}

// ---- Owner side ------------------------------------------------------------------------

std::vector<std::string> ClusterRuntime::holders_locked(const ObjectId& id, bool held_here) const {
  auto it = locations_.find(id);
  std::vector<std::string> out;
  if (held_here) {
    out.push_back(config_.address);
  } else if (it != locations_.end()) {
    out = it->second.holders;
  }
  if (it == locations_.end()) return out;
  auto add = [&out](const std::string& node) {
    if (std::find(out.begin(), out.end(), node) == out.end()) out.push_back(node);
  };
  // Then the nodes known to have pulled a copy, then those tasks took it to:
  // they likely keep one, so a pull whose holder died goes on from them.
  for (const std::string& node : it->second.copies) add(node);
  for (const std::string& node : it->second.sent_to) add(node);
  return out;
}

std::vector<std::string> ClusterRuntime::pull_sources_locked(const ObjectId& id, bool held_here) {
  std::vector<std::string> out = holders_locked(id, held_here);
  auto it = locations_.find(id);
  if (it == locations_.end() || out.empty()) return out;
  Locations& l = it->second;
  // Only processes known to hold it take turns; the nodes tasks took it to
  // (which may not have pulled it yet) stay last.
  auto has = [](const std::vector<std::string>& list, const std::string& a) {
    return std::find(list.begin(), list.end(), a) != list.end();
  };
  std::size_t known = 0;
  while (known < out.size() && ((held_here && out[known] == config_.address) ||
                                has(l.holders, out[known]) || has(l.copies, out[known]))) {
    ++known;
  }
  if (known == 0) return out;
  std::stable_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(known),
                   [&l](const std::string& a, const std::string& b) {
                     auto sent = [&l](const std::string& node) {
                       auto n = l.pulls_sent.find(node);
                       return n == l.pulls_sent.end() ? 0u : n->second;
                     };
                     return sent(a) < sent(b);
                   });
  ++l.pulls_sent[out.front()];
  return out;
}

void ClusterRuntime::note_copies(const Task& task, const std::string& address) {
  if (address.empty() || address == config_.address || !any_locations_.load()) return;
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < task.spec.args.size(); ++i) {
    if (!by_reference(task, i)) continue;
    auto it = locations_.find(task.spec.args[i].ref->id);
    if (it == locations_.end()) continue;
    Locations& l = it->second;
    if (std::find(l.holders.begin(), l.holders.end(), address) != l.holders.end()) continue;
    if (std::find(l.copies.begin(), l.copies.end(), address) != l.copies.end()) continue;
    l.copies.push_back(address);
  }
}

void ClusterRuntime::fill_stored(uint64_t size, const std::vector<std::string>& holders,
                                 rpc::StoredWire::Builder out) {
  out.setSize(size);
  auto list = out.initLocations(static_cast<unsigned>(holders.size()));
  for (unsigned i = 0; i < holders.size(); ++i) list.set(i, holders[i]);
}

void ClusterRuntime::add_locations(const ObjectId& id, uint64_t size, capnp::List<capnp::Text>::Reader holders,
                                   bool owned) {
  any_locations_.store(true);
  std::lock_guard lock(mutex_);
  Locations& l = locations_[id];
  l.size = size;
  l.owned = l.owned || owned;
  for (auto h : holders) {
    std::string address = h.cStr();
    if (std::find(l.holders.begin(), l.holders.end(), address) == l.holders.end()) l.holders.push_back(address);
  }
}

void ClusterRuntime::forget_locations(const ObjectId& id) {
  if (!any_locations_.load()) return;
  if (objects_.lookup(id).ok()) return;  // still referenced here
  bool need_post = false;
  {
    std::lock_guard lock(mutex_);
    auto it = locations_.find(id);
    if (it == locations_.end()) return;
    if (it->second.owned) need_post = queue_frees_locked(id, it->second);
    locations_.erase(it);
  }
  drop_lineage(id);  // nothing will need to make it again
  if (need_post) post_frees_after_adds();
}

bool ClusterRuntime::queue_frees_locked(const ObjectId& id, const Locations& l) {
  std::set<std::string> targets = l.sent_to;
  targets.insert(l.holders.begin(), l.holders.end());
  targets.erase(config_.address);
  for (const std::string& address : targets) to_free_[address].push_back(id);
  if (targets.empty() || frees_posted_) return false;
  frees_posted_ = true;
  return true;
}

void ClusterRuntime::post_frees_after_adds() {
  // After the adds started so far: refs read from inside these values are
  // registered with their owners before the copies go.
  if (post([this] { after_adds([this] { send_frees(); }); })) return;
  std::lock_guard lock(mutex_);
  frees_posted_ = false;
  to_free_.clear();  // shutting down: the holders drop them with this owner
}

void ClusterRuntime::send_frees() {
  std::map<std::string, std::vector<ObjectId>> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(to_free_);
    frees_posted_ = false;
  }
  for (auto& [address, ids] : batch) {
    auto sent = config_.peers->call<bool>(address, [ids = std::move(ids)](rpc::Node::Client& node) {
      auto request = node.freeObjectsRequest();
      auto list = request.initObjects(static_cast<unsigned>(ids.size()));
      for (unsigned i = 0; i < ids.size(); ++i) {
        list[i].setHi(ids[i].hi);
        list[i].setLo(ids[i].lo);
      }
      return request.send().then([](auto) { return true; });
    });
    std::string to = address;
    tasks_set_->add(sent.then([](bool) {}, [to](kj::Exception&& e) {
      // Unreachable: it drops what it held for this owner by itself (10 s).
      SHOAL_LOG_DEBUG("freeObjects to {}: {}", to, kj_text(e));
    }));
  }
}

Status ClusterRuntime::materialize(std::span<const RefState* const> refs, std::vector<ObjectValuePtr>& values,
                                   Deadline deadline) {
  struct Need {
    std::size_t index;
    ObjectId id;
    uint64_t size;
    std::vector<std::string> holders;
  };
  auto needs = std::make_shared<std::vector<Need>>();
  {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (!values[i] || values[i]->remote_size == 0) continue;
      needs->push_back(Need{i, refs[i]->id, values[i]->remote_size,
                            pull_sources_locked(refs[i]->id, values[i]->remote_size == 0)});
    }
  }
  if (needs->empty()) return Status::ok_status();
  Result<std::vector<ObjectValuePtr>> pulled = on_loop_and_wait<std::vector<ObjectValuePtr>>(
      [this, needs]() -> kj::Promise<Result<std::vector<ObjectValuePtr>>> {
        kj::Vector<kj::Promise<ObjectValuePtr>> all;
        for (const Need& n : *needs) all.add(pull(n.id, n.size, n.holders));
        return kj::joinPromises(all.releaseAsArray()).then([](kj::Array<ObjectValuePtr> got) {
          return Result<std::vector<ObjectValuePtr>>(std::vector<ObjectValuePtr>(got.begin(), got.end()));
        });
      },
      deadline);
  SHOAL_RETURN_IF_ERROR(pulled.status());
  for (std::size_t k = 0; k < needs->size(); ++k) {
    const Need& n = (*needs)[k];
    ObjectValuePtr& got = (*pulled)[k];
    if (!got->error) objects_.materialize(n.id, got);
    values[n.index] = std::move(got);
  }
  return Status::ok_status();
}

std::optional<std::string> ClusterRuntime::largest_args_holder(const Task& task) const {
  constexpr uint64_t kWorthMovingFor = 1u << 20;
  std::map<std::string, uint64_t> bytes;
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < task.arg_values.size() && i < task.spec.args.size(); ++i) {
    if (!by_reference(task, i)) continue;
    const ObjectValuePtr& v = task.arg_values[i];
    uint64_t size = v->remote_size > 0 ? v->remote_size : v->bytes.size();
    // The first holder has it for sure (the others are likely copies).
    std::vector<std::string> holders = holders_locked(task.spec.args[i].ref->id, v->remote_size == 0);
    if (!holders.empty()) bytes[holders.front()] += size;
  }
  std::optional<std::string> best;
  uint64_t most = kWorthMovingFor - 1;
  for (const auto& [address, n] : bytes) {
    if (n > most) {
      best = address;
      most = n;
    }
  }
  return best;
}

bool ClusterRuntime::has_remote_args(const Task& task) const {
  for (const ObjectValuePtr& v : task.arg_values) {
    if (v && v->remote_size > 0) return true;
  }
  return false;
}

void ClusterRuntime::with_local_args(const std::shared_ptr<Task>& task, std::function<void()> next) {
  struct Need {
    std::size_t index;
    ObjectId id;
    uint64_t size;
    std::vector<std::string> holders;
  };
  std::vector<Need> needs;
  {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < task->arg_values.size(); ++i) {
      const ObjectValuePtr& v = task->arg_values[i];
      if (!v || v->remote_size == 0) continue;
      const ObjectId& id = task->spec.args[i].ref->id;
      needs.push_back(Need{i, id, v->remote_size, pull_sources_locked(id, v->remote_size == 0)});
    }
  }
  if (needs.empty()) {
    next();
    return;
  }
  bool posted = post([this, task, needs = std::move(needs), next = std::move(next)]() mutable {
    kj::Vector<kj::Promise<ObjectValuePtr>> all;
    for (const Need& n : needs) all.add(pull(n.id, n.size, n.holders));
    tasks_set_->add(kj::joinPromises(all.releaseAsArray())
                        .then([this, task, needs = std::move(needs), next = std::move(next)](
                                  kj::Array<ObjectValuePtr> got) mutable {
                          for (std::size_t k = 0; k < needs.size(); ++k) {
                            if (got[k]->error) {
                              ErrorInfo error = *got[k]->error;
                              error.message = "argument " + std::to_string(needs[k].index + 1) + " of " +
                                              task->spec.function + ": " + error.message;
                              fail_task_or_creation(task, std::move(error));
                              return;
                            }
                          }
                          for (std::size_t k = 0; k < needs.size(); ++k) {
                            objects_.materialize(needs[k].id, got[k]);
                            std::lock_guard lock(mutex_);
                            task->arg_values[needs[k].index] = got[k];
                          }
                          next();
                        }));
  });
  if (!posted) fail_task_or_creation(task, system_error(task, Status::Code::kUnavailable, "shoal is shutting down"));
}

void ClusterRuntime::fail_task_or_creation(const std::shared_ptr<Task>& task, ErrorInfo error) {
  if (task->kind == Task::Kind::kActorCreation) {
    actor_died(task->actor, std::move(error));
    complete(task, nullptr);
    return;
  }
  fail(task, std::move(error));
}

// ---- Node side: by-reference arguments ------------------------------------------------------

std::vector<ClusterRuntime::RefArg> ClusterRuntime::ref_args_from_wire(rpc::TaskWire::Reader wire) {
  std::vector<RefArg> out;
  if (!wire.hasRefArgs()) return out;
  for (auto r : wire.getRefArgs()) {
    RefArg arg;
    arg.index = r.getIndex();
    arg.id = object_id(r.getObjectHi(), r.getObjectLo());
    arg.size = r.getStored().getSize();
    for (auto h : r.getStored().getLocations()) arg.holders.emplace_back(h.cStr());
    out.push_back(std::move(arg));
  }
  return out;
}

kj::Promise<std::vector<ObjectValuePtr>> ClusterRuntime::fetch_ref_args(std::vector<RefArg> refs, uint64_t session) {
  kj::Vector<kj::Promise<ObjectValuePtr>> all;
  for (const RefArg& r : refs) {
    all.add(pull(r.id, r.size, r.holders).then([this, id = r.id, session](ObjectValuePtr value) {
      if (!value->error) hold(id, value, session, /*copy=*/true);
      return value;
    }));
  }
  return kj::joinPromises(all.releaseAsArray()).then([](kj::Array<ObjectValuePtr> got) {
    return std::vector<ObjectValuePtr>(got.begin(), got.end());
  });
}

std::optional<ErrorInfo> ClusterRuntime::attach_ref_args(TaskSpec& spec, const std::vector<RefArg>& refs,
                                                         const std::vector<ObjectValuePtr>& values) {
  for (std::size_t k = 0; k < refs.size(); ++k) {
    if (refs[k].index >= spec.args.size()) {
      ErrorInfo error;
      error.code = Status::Code::kInvalidArgument;
      error.message = "argument " + std::to_string(refs[k].index + 1) + " of " + spec.function +
                      " does not exist (the call has " + std::to_string(spec.args.size()) + ")";
      return error;
    }
    if (values[k]->error) {
      ErrorInfo error = *values[k]->error;
      error.message = "argument " + std::to_string(refs[k].index + 1) + " of " + spec.function + ": " +
                      error.message;
      return error;
    }
    spec.args[refs[k].index].resolved = values[k];
  }
  return std::nullopt;
}

// ---- shoalctl memory ----------------------------------------------------------------------

void ClusterRuntime::note_owner_address(uint64_t session, std::string address) {
  std::lock_guard lock(host_mutex_);
  auto& s = sessions_[session];
  if (!s) s = std::make_unique<OwnerSession>();
  if (s->address != address) s->address = std::move(address);
}

void ClusterRuntime::fill_node_objects(rpc::NodeObjects::Builder out) {
  constexpr std::size_t kListedMax = 10'000;
  struct Row {
    ObjectId id;
    uint64_t size = 0;
    std::string owner;
    std::string state;
    std::string reference;
  };
  std::vector<Row> rows;
  std::vector<ObjectValuePtr> seen;  // released after the locks
  std::unordered_map<ObjectId, ObjectStore::ObjectInfo> stored;
  if (config_.store) {
    for (ObjectStore::ObjectInfo& info : config_.store->list()) stored.emplace(info.id, std::move(info));
  }
  auto stored_state = [&stored](const ObjectId& id, uint64_t& size) -> std::string {
    auto s = stored.find(id);
    if (s == stored.end()) return "freed";
    size = s->second.size_bytes;
    return s->second.state == ObjectStore::State::kSpilled    ? "spilled"
           : s->second.state == ObjectStore::State::kSpilling ? "in memory (spilling)"
                                                               : "in memory";
  };
  {
    std::lock_guard lock(host_mutex_);
    for (const auto& [id, h] : held_) {
      if (rows.size() >= kListedMax) break;
      std::string owner;
      if (auto s = sessions_.find(h.session); s != sessions_.end()) owner = s->second->address;
      Row row{id, h.size, owner, "in memory", h.copy ? "copy" : "held for its owner"};
      if (h.in_store) row.state = stored_state(held_store_key(id), row.size);
      rows.push_back(std::move(row));
    }
  }
  bool truncated = rows.size() >= kListedMax;
  std::vector<ObjectTable::Listed> table = objects_.list(kListedMax - rows.size() + 1);
  if (rows.size() + table.size() > kListedMax) {
    truncated = true;
    table.resize(kListedMax - rows.size());
  }
  {
    std::lock_guard lock(mutex_);
    for (ObjectTable::Listed& e : table) {
      bool owned = e.id.hi == config_.id_prefix;
      Row row{e.id, 0, owned ? config_.address : "", "pending", ""};
      row.reference = (owned ? "local reference (" : "borrowed (") + std::to_string(e.refs) + ")";
      if (std::size_t borrowers = owned ? borrowers_of(e.id) : 0; borrowers > 0) {
        row.reference += ", lent to " + std::to_string(borrowers) + " borrower" + (borrowers > 1 ? "s" : "");
      }
      if (e.in_store) {
        row.state = stored_state(e.id, row.size);
      } else if (e.value) {
        if (e.value->error) {
          row.state = "failed";
        } else if (e.value->remote_size > 0) {
          row.size = e.value->remote_size;
          row.state = "held at";
          for (const std::string& h : holders_locked(e.id, e.value->remote_size == 0)) row.state += " " + h;
        } else {
          row.size = e.value->bytes.size();
          row.state = "in memory";
        }
      }
      if (!owned) {
        if (auto b = borrowed_.find(e.id); b != borrowed_.end()) row.owner = b->second;
        std::lock_guard borrow_lock(borrow_mutex_);
        if (auto b = borrows_.find(e.id); b != borrows_.end()) row.owner = b->second.owner;
      }
      rows.push_back(std::move(row));
      seen.push_back(std::move(e.value));
    }
  }
  out.setNodeId(config_.node_id);
  out.setAddress(config_.address);
  out.setTruncated(truncated);
  out.setBytesServed(bytes_served_.load(std::memory_order_relaxed));
  out.setBulkBytesServed(bulk_bytes_served_.load(std::memory_order_relaxed));
  auto list = out.initObjects(static_cast<unsigned>(rows.size()));
  for (unsigned i = 0; i < rows.size(); ++i) {
    list[i].setObjectHi(rows[i].id.hi);
    list[i].setObjectLo(rows[i].id.lo);
    list[i].setSize(rows[i].size);
    list[i].setOwner(rows[i].owner);
    list[i].setState(rows[i].state);
    list[i].setReference(rows[i].reference);
  }
}

namespace {

// One member's answer to a question asked of every member (shoalctl memory,
// shoalctl tasks): the answer, or why there is none.
template <typename Results>
struct MemberAnswer {
  std::string id;
  std::string address;
  std::string error;
  kj::Maybe<capnp::Response<Results>> answer;
};

template <typename Results>
using MemberAnswers = std::shared_ptr<std::vector<std::unique_ptr<MemberAnswer<Results>>>>;

// Asks every live member but `self` in parallel, 3 s each; `ask` sends the
// request on a member's client.
template <typename Results, typename Ask>
kj::Promise<MemberAnswers<Results>> ask_members(
    const std::vector<ClusterMember>& members, const std::string& self, rpc::PeerPool& peers, kj::Timer& timer,
    Ask ask) {
  using Answer = kj::Maybe<capnp::Response<Results>>;
  auto asked = std::make_shared<std::vector<std::unique_ptr<MemberAnswer<Results>>>>();
  kj::Vector<kj::Promise<void>> calls;
  for (const ClusterMember& m : members) {
    if (m.address == self) continue;
    std::size_t index = asked->size();
    asked->push_back(std::make_unique<MemberAnswer<Results>>(MemberAnswer<Results>{m.id, m.address, "", nullptr}));
    auto call = peers.call<Answer>(m.address, [ask](rpc::Node::Client& node) {
      return ask(node).then([](capnp::Response<Results> r) -> Answer { return kj::mv(r); });
    });
    auto timeout = timer.afterDelay(3 * kj::SECONDS).then([]() -> kj::Promise<Answer> {
      return KJ_EXCEPTION(OVERLOADED, "no answer within 3 s");
    });
    calls.add(call.exclusiveJoin(kj::mv(timeout))
                  .then([asked, index](Answer a) { (*asked)[index]->answer = kj::mv(a); },
                        [asked, index](kj::Exception&& e) { (*asked)[index]->error = kj_text(e); }));
  }
  return kj::joinPromises(calls.releaseAsArray()).then([asked] { return asked; });
}

// Fills `nodes` (one more than `asked`: this process's own entry is first)
// with the members' single-node answers, or their errors.
template <typename Results, typename List, typename Get>
void copy_member_answers(std::vector<std::unique_ptr<MemberAnswer<Results>>>& asked, List nodes, Get get_nodes) {
  for (unsigned i = 0; i < asked.size(); ++i) {
    MemberAnswer<Results>& a = *asked[i];
    KJ_IF_MAYBE (answer, a.answer) {
      auto theirs = get_nodes(*answer);
      if (theirs.size() == 1) {
        nodes.setWithCaveats(i + 1, theirs[0]);
        continue;
      }
      a.error = "an answer without its node";
    }
    nodes[i + 1].setNodeId(a.id);
    nodes[i + 1].setAddress(a.address);
    nodes[i + 1].setError(a.error);
  }
}

}  // namespace

kj::Promise<void> ClusterRuntime::serve_object_stats(bool cluster, rpc::Node::ObjectStatsResults::Builder out) {
  if (!cluster) {
    fill_node_objects(out.initNodes(1)[0]);
    return kj::READY_NOW;
  }
  using Results = rpc::Node::ObjectStatsResults;
  return ask_members<Results>(config_.members ? config_.members() : std::vector<ClusterMember>(), config_.address,
                              *config_.peers, config_.loop->timer(),
                              [](rpc::Node::Client& node) {
                                auto request = node.objectStatsRequest();
                                request.setCluster(false);
                                return request.send();
                              })
      .then([this, out](MemberAnswers<Results> asked) mutable {
        auto nodes = out.initNodes(static_cast<unsigned>(asked->size() + 1));
        fill_node_objects(nodes[0]);
        copy_member_answers(*asked, nodes, [](auto& r) { return r.getNodes(); });
      });
}

kj::Promise<void> ClusterRuntime::serve_task_history(bool cluster, uint32_t limit,
                                                     rpc::Node::TaskHistoryResults::Builder out) {
  std::size_t max = std::min<std::size_t>(limit == 0 ? kTaskHistoryMax : limit, kTaskHistoryMax);
  auto fill_own = [this, max](rpc::NodeTasks::Builder node) {
    node.setNodeId(config_.node_id);
    node.setAddress(config_.address);
    bool truncated = false;
    std::vector<TaskAttempt> attempts = history_.newest(max, &truncated);
    node.setTruncated(truncated);
    auto list = node.initAttempts(static_cast<unsigned>(attempts.size()));
    for (unsigned i = 0; i < attempts.size(); ++i) {
      const TaskAttempt& a = attempts[i];
      list[i].setTaskHi(a.id.hi);
      list[i].setTaskLo(a.id.lo);
      list[i].setFunction(a.function);
      list[i].setOwner(a.owner);
      list[i].setAttempt(a.attempt);
      list[i].setRetryReason(a.retry_reason);
      list[i].setState(a.state);
      list[i].setDetail(a.detail.substr(0, 1000));
      list[i].setReceivedMs(a.received_ms);
      list[i].setEndedMs(a.ended_ms);
    }
  };
  if (!cluster) {
    fill_own(out.initNodes(1)[0]);
    return kj::READY_NOW;
  }
  using Results = rpc::Node::TaskHistoryResults;
  return ask_members<Results>(config_.members ? config_.members() : std::vector<ClusterMember>(), config_.address,
                              *config_.peers, config_.loop->timer(),
                              [max](rpc::Node::Client& node) {
                                auto request = node.taskHistoryRequest();
                                request.setCluster(false);
                                request.setLimit(static_cast<uint32_t>(max));
                                return request.send();
                              })
      .then([fill_own, out](MemberAnswers<Results> asked) mutable {
        auto nodes = out.initNodes(static_cast<unsigned>(asked->size() + 1));
        fill_own(nodes[0]);
        copy_member_answers(*asked, nodes, [](auto& r) { return r.getNodes(); });
      });
}

}  // namespace shoal::detail
