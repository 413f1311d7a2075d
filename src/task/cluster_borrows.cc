// ClusterRuntime: borrowers (Ray's ownership model, second layer).
//
// A process that holds a reference to an object another process owns is a
// borrower. Its first reference (adopt_ref making or reviving the table
// entry) registers it with the owner — an add in a `borrow` call — and its
// last reference going unregisters it — a remove. The owner counts each
// borrower's registrations per object and keeps one table reference per
// registration, so the value (and the refs inside it) lives while anyone
// anywhere has it, and is freed on every node that has a copy after the last
// one goes.
//
// The gap to close is the hand-off: the process that gives a reference away
// must keep its own until the receiver's add reached the owner. Each add has
// a sequence number; after_adds(fn) runs fn once every add numbered up to
// the current one is acked. Three things wait on it:
//   - a node's task results to their owner (send_results): the refs the task
//     read from its arguments are registered before the owner drops them;
//   - removes and an owner's frees of copies (send_frees): a value's inner
//     refs, adopted when it was read, are registered before the value goes;
//   - an owner's answer to a batch of results (done): refs inside inline
//     results are adopted on arrival (adopt_inner_refs), and the node that
//     sent them keeps them until that answer.
// Adds and removes to one owner go in order over one connection: a remove is
// queued only after its own add was acked, and a batch applies adds first.
//
// A borrower that goes away without unregistering: its node leaving the
// view drops its registrations (node_lost), and a borrower that is not a
// member (a driver) is probed; unreachable for kBorrowerGrace, it is dropped.
#include <algorithm>

#include "base/log.h"
#include "loop/loop.h"
#include "rpc/peer_pool.h"
#include "task/cluster_runtime.h"
#include "task/cluster_wire.h"
#include "task/wire.h"

namespace shoal::detail {

namespace {

constexpr uint32_t kBorrowAttempts = 3;                 // an add's call, over a broken connection
constexpr uint64_t kBorrowRetryMs = 200;
constexpr auto kBorrowerGrace = std::chrono::seconds(10);  // unreachable this long: gone
constexpr auto kBorrowerProbeEvery = std::chrono::seconds(2);

void set_ids(capnp::List<rpc::ObjectIdWire>::Builder list, const std::vector<ObjectId>& ids) {
  for (unsigned i = 0; i < ids.size(); ++i) {
    list[i].setHi(ids[i].hi);
    list[i].setLo(ids[i].lo);
  }
}

}  // namespace

// ---- Borrower side ---------------------------------------------------------------------

void ClusterRuntime::start_borrow(const ObjectId& id, const std::string& owner) {
  {
    std::lock_guard lock(borrow_mutex_);
    auto [it, inserted] = borrows_.try_emplace(id);
    if (!inserted) {
      // Its add is still in flight and the last reference went meanwhile:
      // the registration stands after all.
      it->second.released = false;
      return;
    }
    it->second.owner = owner;
    uint64_t seq = ++add_seq_;
    adds_unacked_.insert(seq);
    borrow_batches_[owner].adds.emplace_back(id, seq);
  }
  post_borrows();
}

void ClusterRuntime::end_borrow(const ObjectId& id) {
  {
    std::lock_guard lock(borrow_mutex_);
    auto it = borrows_.find(id);
    if (it == borrows_.end()) return;
    if (!it->second.acked) {
      it->second.released = true;  // removed once the add is acked
      return;
    }
    removes_waiting_.push_back(RemoveWaiting{add_seq_, it->second.owner, id});
    borrows_.erase(it);
  }
  post_borrows();
}

void ClusterRuntime::post_borrows() {
  {
    std::lock_guard lock(borrow_mutex_);
    if (borrows_posted_) return;
    borrows_posted_ = true;
  }
  if (!post([this] { flush_borrows(); })) {
    std::lock_guard lock(borrow_mutex_);
    borrows_posted_ = false;  // shutting down: owners see this process go
  }
}

void ClusterRuntime::flush_borrows() {
  std::map<std::string, BorrowBatch> batches;
  {
    std::lock_guard lock(borrow_mutex_);
    borrows_posted_ = false;
    // Removes whose barrier passed join the batches (after the adds queued
    // before them, which the owner applies first).
    uint64_t first_unacked = adds_unacked_.empty() ? UINT64_MAX : *adds_unacked_.begin();
    auto keep = std::stable_partition(removes_waiting_.begin(), removes_waiting_.end(),
                                      [&](const RemoveWaiting& r) { return r.barrier >= first_unacked; });
    for (auto it = keep; it != removes_waiting_.end(); ++it) borrow_batches_[it->owner].removes.push_back(it->id);
    removes_waiting_.erase(keep, removes_waiting_.end());
    batches.swap(borrow_batches_);
  }
  for (auto& [owner, batch] : batches) {
    send_borrow_batch(owner, std::move(batch.adds), std::move(batch.removes), 0);
  }
}

void ClusterRuntime::send_borrow_batch(std::string owner, std::vector<std::pair<ObjectId, uint64_t>> adds,
                                       std::vector<ObjectId> removes, uint32_t attempt) {
  // The call may be made later (once connected): it reads the lists from here.
  auto shared = std::make_shared<std::pair<decltype(adds), decltype(removes)>>(std::move(adds), std::move(removes));
  auto sent = config_.peers->call<std::vector<ObjectId>>(owner, [this, shared](rpc::Node::Client& node) {
    auto request = node.borrowRequest();
    request.setBorrower(config_.address);
    const auto& add = shared->first;
    auto add_list = request.initAdd(static_cast<unsigned>(add.size()));
    for (unsigned i = 0; i < add.size(); ++i) {
      add_list[i].setHi(add[i].first.hi);
      add_list[i].setLo(add[i].first.lo);
    }
    set_ids(request.initRemove(static_cast<unsigned>(shared->second.size())), shared->second);
    return request.send().then([](auto response) {
      std::vector<ObjectId> unknown;
      for (auto id : response.getUnknown()) unknown.push_back(ObjectId{id.getHi(), id.getLo()});
      return unknown;
    });
  });
  tasks_set_->add(sent.then(
      [this, shared, owner](std::vector<ObjectId> unknown) {
        for (const ObjectId& id : unknown) {
          SHOAL_LOG_DEBUG("borrow: owner {} no longer has object {}", owner, id.hex());
          ErrorInfo error;
          error.code = Status::Code::kNotFound;
          error.message = "object " + id.hex() + " was freed by its owner " + owner +
                          " before this process's reference to it was registered";
          error.node_id = config_.node_id;
          // Only a value not read yet fails; one already here stays readable.
          objects_.complete(id, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, error}));
        }
        on_adds_acked(shared->first);
      },
      [this, shared, owner, attempt](kj::Exception&& e) {
        if (attempt + 1 < kBorrowAttempts && !shutting_down_.load()) {
          tasks_set_->add(config_.loop->timer().afterDelay(kBorrowRetryMs * kj::MILLISECONDS).then(
              [this, shared, owner, attempt] {
                send_borrow_batch(owner, std::move(shared->first), std::move(shared->second), attempt + 1);
              }));
          return;
        }
        // The owner is gone or unreachable: what it owned fails when read
        // (fetches name it); nothing here waits for it any more.
        SHOAL_LOG_DEBUG("borrow: owner {} unreachable: {}", owner, kj_text(e));
        on_adds_acked(shared->first);
      }));
}

void ClusterRuntime::on_adds_acked(const std::vector<std::pair<ObjectId, uint64_t>>& adds) {
  bool more = false;
  {
    std::lock_guard lock(borrow_mutex_);
    for (const auto& [id, seq] : adds) {
      adds_unacked_.erase(seq);
      auto it = borrows_.find(id);
      if (it == borrows_.end() || it->second.acked) continue;
      it->second.acked = true;
      if (it->second.released) {
        removes_waiting_.push_back(RemoveWaiting{add_seq_, it->second.owner, id});
        borrows_.erase(it);
      }
    }
    more = !removes_waiting_.empty() || !borrow_batches_.empty();
  }
  // Whatever waited for these adds.
  uint64_t first_unacked;
  {
    std::lock_guard lock(borrow_mutex_);
    first_unacked = adds_unacked_.empty() ? UINT64_MAX : *adds_unacked_.begin();
  }
  std::vector<std::function<void()>> ready;
  auto keep = std::stable_partition(after_adds_.begin(), after_adds_.end(),
                                    [&](const auto& w) { return w.first >= first_unacked; });
  for (auto it = keep; it != after_adds_.end(); ++it) ready.push_back(std::move(it->second));
  after_adds_.erase(keep, after_adds_.end());
  for (auto& fn : ready) fn();
  if (more) post_borrows();
}

void ClusterRuntime::after_adds(std::function<void()> fn) {
  uint64_t barrier;
  bool now;
  {
    std::lock_guard lock(borrow_mutex_);
    barrier = add_seq_;
    now = adds_unacked_.empty() || *adds_unacked_.begin() > barrier;
  }
  if (now) {
    fn();
  } else {
    after_adds_.emplace_back(barrier, std::move(fn));
  }
}

kj::Promise<void> ClusterRuntime::adds_settled() {
  {
    std::lock_guard lock(borrow_mutex_);
    if (adds_unacked_.empty()) return kj::READY_NOW;
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto fulfiller = std::make_shared<kj::Own<kj::PromiseFulfiller<void>>>(kj::mv(paf.fulfiller));
  after_adds([fulfiller] { (*fulfiller)->fulfill(); });
  return kj::mv(paf.promise);
}

void ClusterRuntime::adopt_inner_refs(ObjectValue& value) {
  if (value.bytes.empty()) return;
  auto refs = find_object_refs(value.bytes);
  if (!refs.ok()) return;  // read as a T later, it fails there with its reason
  for (auto& [id, owner] : *refs) value.contained.refs.push_back(adopt_ref(id, std::move(owner)));
}

// ---- Owner side -------------------------------------------------------------------------

void ClusterRuntime::serve_borrow(std::string borrower, capnp::List<rpc::ObjectIdWire>::Reader adds,
                                  capnp::List<rpc::ObjectIdWire>::Reader removes,
                                  rpc::Node::BorrowResults::Builder out) {
  std::vector<ObjectId> unknown;
  std::vector<ObjectId> released;
  if (borrower.empty() || borrower.size() > kOwnerAddressBytesMax) {
    // Nothing to count it under: every add is refused, removes are no-ops.
    for (auto id : adds) unknown.push_back(ObjectId{id.getHi(), id.getLo()});
  } else {
    borrower_failing_since_.erase(borrower);
    for (auto wire : adds) {
      ObjectId id{wire.getHi(), wire.getLo()};
      if (!objects_.add_ref(id)) {
        unknown.push_back(id);
        continue;
      }
      std::lock_guard lock(borrow_mutex_);
      ++lent_[id][borrower];
    }
    for (auto wire : removes) {
      ObjectId id{wire.getHi(), wire.getLo()};
      std::lock_guard lock(borrow_mutex_);
      auto it = lent_.find(id);
      if (it == lent_.end()) continue;
      auto b = it->second.find(borrower);
      if (b == it->second.end()) continue;
      if (--b->second == 0) it->second.erase(b);
      if (it->second.empty()) lent_.erase(it);
      released.push_back(id);
    }
  }
  // Outside borrow_mutex_: freeing a value drops the refs inside it, which
  // may end borrows of this process.
  for (const ObjectId& id : released) {
    objects_.remove_ref(id);
    forget_locations(id);
  }
  SHOAL_LOG_DEBUG("borrow: {} added {} and removed {} reference(s); {} unknown", borrower, adds.size() - unknown.size(),
                  released.size(), unknown.size());
  set_ids(out.initUnknown(static_cast<unsigned>(unknown.size())), unknown);
}

void ClusterRuntime::drop_borrower(const std::string& address) {
  std::vector<ObjectId> released;
  {
    std::lock_guard lock(borrow_mutex_);
    for (auto it = lent_.begin(); it != lent_.end();) {
      auto b = it->second.find(address);
      if (b != it->second.end()) {
        released.insert(released.end(), b->second, it->first);
        it->second.erase(b);
      }
      it = it->second.empty() ? lent_.erase(it) : std::next(it);
    }
  }
  borrower_failing_since_.erase(address);
  if (released.empty()) return;
  SHOAL_LOG_INFO("borrower {} is gone: releasing its {} reference(s)", address, released.size());
  for (const ObjectId& id : released) {
    objects_.remove_ref(id);
    forget_locations(id);
  }
}

void ClusterRuntime::check_borrowers() {
  auto now = Clock::now();
  if (now - borrowers_checked_ < kBorrowerProbeEvery) return;
  borrowers_checked_ = now;
  std::set<std::string> borrowers;
  {
    std::lock_guard lock(borrow_mutex_);
    for (const auto& [id, by] : lent_) {
      for (const auto& [address, count] : by) borrowers.insert(address);
    }
  }
  for (const std::string& address : borrowers) {
    // Nodes are dropped when they leave the view (node_lost); others — a
    // driver — must answer.
    if (members_.count(address) != 0 || borrower_probes_.count(address) != 0) continue;
    if (auto f = borrower_failing_since_.find(address);
        f != borrower_failing_since_.end() && now - f->second >= kBorrowerGrace) {
      drop_borrower(address);
      continue;
    }
    borrower_probes_.insert(address);
    auto probe = config_.peers->call<bool>(address, [](rpc::Node::Client& node) {
      auto request = node.pingRequest();
      request.setValue(1);
      return request.send().then([](auto) { return true; });
    });
    auto timeout = config_.loop->timer().afterDelay(3 * kj::SECONDS).then([]() -> kj::Promise<bool> {
      return KJ_EXCEPTION(OVERLOADED, "no answer within 3 s");
    });
    tasks_set_->add(probe.exclusiveJoin(kj::mv(timeout))
                        .then([this, address](bool) {
                          borrower_probes_.erase(address);
                          borrower_failing_since_.erase(address);
                        },
                              [this, address, now](kj::Exception&&) {
                                borrower_probes_.erase(address);
                                borrower_failing_since_.try_emplace(address, now);
                              }));
  }
}

std::size_t ClusterRuntime::borrowers_of(const ObjectId& id) {
  std::lock_guard lock(borrow_mutex_);
  auto it = lent_.find(id);
  return it == lent_.end() ? 0 : it->second.size();
}

}  // namespace shoal::detail
