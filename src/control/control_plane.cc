#include "control/control_plane.h"

#include <uv.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <set>

#include "base/assert.h"
#include "base/log.h"
#include "control/log_store.h"
#include "control/state_machine.h"
#include "control/wire.h"
#include "gossip/service.h"
#include "loop/loop.h"
#include "meta/codec.h"
#include "raft.capnp.h"
#include "rpc/errors.h"
#include "rpc/peer_pool.h"

namespace shoal::control {
namespace {

constexpr uint8_t kEnvelopeVersion = 1;
constexpr size_t kEnvelopeHeader = 17;
constexpr uint64_t kManageIntervalMs = 250;
constexpr uint64_t kReadRetryMs = 1'000;         // re-issue a ReadIndex that got no answer
constexpr uint64_t kRetryDelayMs = 25;           // between attempts to find a leader
constexpr uint64_t kSendBatchBytes = 8 << 20;    // Raft messages per raftSend call
constexpr raft::Index kPromoteLagMax = 64;       // a learner this close to the leader is caught up
constexpr uint64_t kRejoinIntervalMs = 3'000;    // alone in gossip: try the registered nodes this often

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

std::string envelope(raft::NodeId proposer, uint64_t seq, std::string_view command) {
  std::string out;
  out.reserve(kEnvelopeHeader + command.size());
  out.push_back(static_cast<char>(kEnvelopeVersion));
  put_u64(out, proposer);
  put_u64(out, seq);
  out += command;
  return out;
}

bool in_range(std::string_view key, std::string_view begin, std::string_view end) {
  if (end.empty()) return key == begin;
  if (key < begin) return false;
  if (end.size() == 1 && end[0] == '\0') return true;
  return key < end;
}

class ErrorLogger final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    SHOAL_LOG_DEBUG("control task failed: {}", e.getDescription().cStr());
  }
};

}  // namespace

raft::NodeId raft_id_of(const std::string& node_id) {
  uint64_t v = 0;
  for (size_t i = 0; i < 16 && i < node_id.size(); ++i) {
    char c = node_id[i];
    uint64_t d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : 0;
    v = (v << 4) | d;
  }
  return v == 0 ? 1 : v;
}

struct ControlPlane::Proposal {
  kj::Own<kj::PromiseFulfiller<std::string>> fulfiller;
  uint64_t deadline_ms = 0;
};

struct ControlPlane::ReadWait {
  kj::Own<kj::PromiseFulfiller<std::string>> fulfiller;
  std::string request;
  uint64_t deadline_ms = 0;
  uint64_t issued_ms = 0;
};

struct ControlPlane::Peer {
  std::string node_id;
  std::string address;
  bool alive = false;
};

// --- Watches ------------------------------------------------------------------

struct Watch {
  uint64_t id = 0;
  std::string key;
  std::string range_end;
  rpc::Watcher::Client client;
  std::deque<WatchEventData> queue;
  bool in_flight = false;
  bool done = false;
  explicit Watch(rpc::Watcher::Client c) : client(kj::mv(c)) {}
};

struct WatchHub {
  std::map<uint64_t, std::unique_ptr<Watch>> watches;
  uint64_t next_id = 1;
  kj::TaskSet* tasks = nullptr;

  void cancel(Watch& w, const std::string& reason) {
    if (w.done) return;
    w.done = true;
    w.queue.clear();
    auto req = w.client.cancelledRequest();
    req.setReason(reason);
    tasks->add(req.send().ignoreResult().catch_([](kj::Exception&&) {}));
  }

  void push(Watch& w) {
    if (w.done || w.in_flight || w.queue.empty()) return;
    size_t n = std::min(w.queue.size(), kWatchBatchMax);
    auto req = w.client.eventsRequest();
    auto list = req.initEvents(static_cast<unsigned>(n));
    for (size_t i = 0; i < n; ++i) {
      const WatchEventData& e = w.queue[i];
      auto out = list[static_cast<unsigned>(i)];
      out.setType(e.is_delete ? 1 : 0);
      out.setKey(kj::arrayPtr(reinterpret_cast<const kj::byte*>(e.key.data()), e.key.size()));
      out.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(e.value.data()), e.value.size()));
      out.setCreateRevision(e.create_revision);
      out.setModRevision(e.mod_revision);
      out.setVersion(e.version);
      out.setLease(e.lease);
      if (e.prev_value) {
        out.setHasPrev(true);
        out.setPrevValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(e.prev_value->data()), e.prev_value->size()));
      }
    }
    w.queue.erase(w.queue.begin(), w.queue.begin() + static_cast<long>(n));
    w.in_flight = true;
    uint64_t id = w.id;
    tasks->add(req.send().then(
        [this, id](auto&&) {
          auto it = watches.find(id);
          if (it == watches.end()) return;
          it->second->in_flight = false;
          push(*it->second);
        },
        [this, id](kj::Exception&& e) {
          SHOAL_LOG_DEBUG("watch {} ended: the watcher is gone ({})", id, e.getDescription().cStr());
          watches.erase(id);
        }));
  }

  void dispatch(const std::vector<WatchEventData>& events) {
    if (watches.empty()) return;
    for (auto& [id, w] : watches) {
      if (w->done) continue;
      for (const auto& e : events) {
        if (!in_range(e.key, w->key, w->range_end)) continue;
        if (w->queue.size() >= kWatchQueueMax) {
          cancel(*w, "the watcher fell more than " + std::to_string(kWatchQueueMax) +
                         " events behind; watch again from the last revision it saw");
          break;
        }
        w->queue.push_back(e);
      }
      push(*w);
    }
  }
};

class ControlPlane::WatchHandleImpl final : public rpc::WatchHandle::Server {
 public:
  WatchHandleImpl(WatchHub* hub, uint64_t id) : hub_(hub), id_(id) {}
  ~WatchHandleImpl() {
    if (hub_) hub_->watches.erase(id_);
  }

 private:
  WatchHub* hub_;
  uint64_t id_;
};

// --- Life cycle ---------------------------------------------------------------

ControlPlane::ControlPlane(loop::Loop& loop, rpc::PeerPool& peers, gossip::GossipService& gossip, Clock& clock,
                           Rng& rng, std::string node_id, std::string store_dir, ControlOptions options)
    : loop_(loop),
      peers_(peers),
      gossip_(gossip),
      clock_(clock),
      rng_(rng),
      node_id_(std::move(node_id)),
      store_dir_(std::move(store_dir)),
      options_(options),
      raft_id_(raft_id_of(node_id_)) {}

ControlPlane::~ControlPlane() { stop(); }

Status ControlPlane::start(std::function<void(const Status&)> fatal) {
  fatal_ = std::move(fatal);
  start_ms_ = now_ms();
  while (client_id_ == 0) client_id_ = rng_.next_u64();
  auto store = LogStore::open(store_dir_, raft_id_);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  resumed_ = !store_->fresh();
  machine_ = std::make_unique<StateMachine>();
  if (store_->snapshot()) {
    // An empty image is the empty state (the bootstrap snapshot).
    Status restored = store_->snapshot()->data.empty() ? Status() : machine_->restore(store_->snapshot()->data);
    if (!restored.ok()) {
      return Status::io_error("the metadata snapshot in " + store_dir_ + " is damaged: " + restored.message());
    }
    applied_ = store_->snapshot()->meta.index;
    snapshot_index_ = applied_;
  }

  raft::Config config;
  config.id = raft_id_;
  config.election_tick = options_.election_ticks;
  config.heartbeat_tick = options_.heartbeat_ticks;
  config.applied = applied_;
  config.storage = &store_->memory();
  config.seed = rng_.next_u64();
  auto node = raft::RawNode::create(config);
  if (!node.ok()) return Status(node.status().code(), "cannot start Raft: " + node.status().message());
  raft_ = std::move(*node);

  if (store_->fresh() && options_.bootstrap) {
    uint64_t cluster_id = 0;
    while (cluster_id == 0) cluster_id = rng_.next_u64();
    SHOAL_RETURN_IF_ERROR(store_->set_cluster_id(cluster_id));
    SHOAL_RETURN_IF_ERROR(raft_->bootstrap({raft_id_}));
    SHOAL_LOG_INFO("bootstrapped the metadata group (cluster id {:016x}) with this node as its only voter",
                   cluster_id);
  } else if (store_->fresh()) {
    SHOAL_LOG_INFO("metadata: waiting for the group's leader to add this node");
  } else {
    SHOAL_LOG_INFO("metadata: restored (snapshot at {}, log up to {}, cluster id {:016x})", snapshot_index_,
                   store_->memory().last_index(), store_->identity().cluster_id);
  }

  task_errors_ = std::make_unique<ErrorLogger>();
  tasks_ = std::make_unique<kj::TaskSet>(*task_errors_);
  watches_ = std::make_unique<WatchHub>();
  watches_->tasks = tasks_.get();

  uv_loop_t* uv = loop_.uv();
  tick_timer_ = new uv_timer_t;
  manage_timer_ = new uv_timer_t;
  prepare_ = new uv_prepare_t;
  uv_timer_init(uv, tick_timer_);
  uv_timer_init(uv, manage_timer_);
  uv_prepare_init(uv, prepare_);
  tick_timer_->data = manage_timer_->data = prepare_->data = this;
  uv_timer_start(tick_timer_, &ControlPlane::on_tick, options_.tick_ms, options_.tick_ms);
  uv_timer_start(manage_timer_, &ControlPlane::on_manage, kManageIntervalMs, kManageIntervalMs);
  uv_prepare_start(prepare_, &ControlPlane::on_prepare);
  refresh_peers();
  return {};
}

void ControlPlane::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto* h : {reinterpret_cast<uv_handle_t*>(tick_timer_), reinterpret_cast<uv_handle_t*>(manage_timer_),
                  reinterpret_cast<uv_handle_t*>(prepare_)}) {
    if (!h) continue;
    uv_close(h, [](uv_handle_t* handle) {
      if (handle->type == UV_TIMER) delete reinterpret_cast<uv_timer_t*>(handle);
      else delete reinterpret_cast<uv_prepare_t*>(handle);
    });
  }
  tick_timer_ = manage_timer_ = nullptr;
  prepare_ = nullptr;
  fail_pending(Status::unavailable("the node is stopping"), false);
  if (watches_) {
    for (auto& [id, w] : watches_->watches) w->done = true;
  }
  tasks_.reset();  // cancels sends, forwards, watch pushes
  if (watches_) watches_->watches.clear();
}

void ControlPlane::hand_off_leadership() {
  if (stopped_ || failed_ || !is_leader()) return;
  raft::ConfState conf = raft_->conf_state();
  std::set<raft::NodeId> voters(conf.voters.begin(), conf.voters.end());
  raft::NodeId best = 0;
  raft::Index best_match = 0;
  for (const auto& pr : raft_->progress()) {
    if (pr.id == raft_id_ || !voters.count(pr.id)) continue;
    auto it = peer_info_.find(pr.id);
    if (it == peer_info_.end() || !it->second->alive) continue;
    if (best == 0 || pr.match > best_match) {
      best = pr.id;
      best_match = pr.match;
    }
  }
  if (best == 0) return;
  SHOAL_LOG_INFO("metadata: handing leadership to {:016x} before stopping", best);
  raft_->transfer_leader(best);
}

void ControlPlane::fatal(const Status& status) {
  if (failed_) return;
  failed_ = true;
  SHOAL_LOG_ERROR("metadata store failed: {}", status.to_string());
  fail_pending(status, false);
  if (fatal_) fatal_(status);
}

void ControlPlane::mark_dirty() {}

void ControlPlane::on_tick(uv_timer_t* t) {
  auto* self = static_cast<ControlPlane*>(t->data);
  if (self->failed_) return;
  self->raft_->tick();
}

void ControlPlane::on_prepare(uv_prepare_t* p) {
  auto* self = static_cast<ControlPlane*>(p->data);
  if (self->failed_ || self->stopped_) return;
  self->process_ready();
}

// --- Ready --------------------------------------------------------------------

void ControlPlane::process_ready() {
  // Reads that arrived this iteration share one ReadIndex round.
  if (!reads_unsent_.empty() && soft_.leader != 0) {
    std::string ctx;
    put_u64(ctx, raft_id_);
    put_u64(ctx, ++read_seq_);
    uint64_t now = now_ms();
    for (auto& r : reads_unsent_) r->issued_ms = now;
    read_batches_[ctx] = std::move(reads_unsent_);
    reads_unsent_.clear();
    raft_->read_index(ctx);
  }
  for (int rounds = 0; rounds < 64 && raft_->has_ready(); ++rounds) {
    raft::Ready ready = raft_->ready();
    if (ready.soft_state) on_role_change(*ready.soft_state);
    // A leader's appends and heartbeats go out before its own disk write
    // (Raft thesis 10.2.1), so the followers write in parallel with it.
    // Safe: that write ends before this thread can handle any reply, so the
    // leader never counts an entry of its own that is not on disk. A Ready
    // that changes the term or the vote is persisted before anything is sent.
    bool same_term = !ready.hard_state || (ready.hard_state->term == persisted_term_ &&
                                           ready.hard_state->vote == persisted_vote_);
    if (same_term && persisted_term_ != 0) {
      std::vector<raft::Message> early;
      std::vector<raft::Message> later;
      for (auto& m : ready.messages) {
        bool leader_message = m.type == raft::MessageType::kAppend || m.type == raft::MessageType::kHeartbeat;
        (leader_message ? early : later).push_back(std::move(m));
      }
      ready.messages = std::move(later);
      if (!early.empty()) {
        send_messages(early);
        // The sends are KJ work (and then corked writes): get them onto the
        // wire now, or they would leave after the fsync below. Raft messages
        // that arrive meanwhile are held until the write is done.
        holding_steps_ = true;
        loop_.run_queued_work();
        holding_steps_ = false;
        if (stopped_ || failed_) return;
      }
    }
    Status persisted = store_->persist(ready);
    if (!persisted.ok()) {
      fatal(persisted);
      return;
    }
    step_held_messages();
    if (ready.hard_state) {
      persisted_term_ = ready.hard_state->term;
      persisted_vote_ = ready.hard_state->vote;
    }
    if (ready.snapshot) {
      Status restored;
      if (ready.snapshot->data.empty()) {
        machine_ = std::make_unique<StateMachine>();
        if (is_leader()) machine_->become_leader(static_cast<int64_t>(now_ms()));
      } else {
        restored = machine_->restore(ready.snapshot->data);
      }
      if (!restored.ok()) {
        fatal(Status::io_error("cannot restore the snapshot received from the leader: " + restored.message()));
        return;
      }
      applied_ = ready.snapshot->meta.index;
      snapshot_index_ = applied_;
      SHOAL_LOG_INFO("metadata: installed a snapshot at index {} ({} bytes)", applied_, ready.snapshot->data.size());
    }
    send_messages(ready.messages);
    for (auto& rs : ready.read_states) {
      auto it = read_batches_.find(rs.context);
      if (it == read_batches_.end()) continue;
      for (auto& r : it->second) reads_ready_.emplace(rs.index, std::move(r));
      read_batches_.erase(it);
    }
    apply_entries(ready.committed_entries);
    if (failed_) return;
    raft_->advance();
    maybe_snapshot();
    serve_reads();
  }
}

void ControlPlane::on_role_change(const raft::SoftState& soft) {
  raft::SoftState old = soft_;
  soft_ = soft;
  if (old.leader != soft.leader) {
    if (soft.leader == 0) {
      SHOAL_LOG_INFO("metadata: no leader (term {})", raft_->term());
    } else {
      auto it = peer_info_.find(soft.leader);
      SHOAL_LOG_INFO("metadata: leader is {} (term {})",
                     soft.leader == raft_id_ ? std::string("this node")
                     : it != peer_info_.end() ? it->second->node_id.substr(0, 8)
                                              : fmt::format("{:016x}", soft.leader),
                     raft_->term());
    }
    // Reads waiting on a ReadIndex that the old leader will never answer.
    for (auto& [ctx, batch] : read_batches_) {
      for (auto& r : batch) reads_unsent_.push_back(std::move(r));
    }
    read_batches_.clear();
  }
  bool was_leader = old.role == raft::SoftState::Role::kLeader;
  bool is_leader = soft.role == raft::SoftState::Role::kLeader;
  if (is_leader && !was_leader) {
    machine_->become_leader(static_cast<int64_t>(now_ms()));
    dead_since_ms_.clear();
  } else if (was_leader && !is_leader) {
    machine_->lose_leadership();
    fail_pending(Status::unavailable("leadership changed before the write was confirmed"), true);
  }
}

void ControlPlane::apply_entries(std::vector<raft::Entry>& entries) {
  for (auto& entry : entries) {
    if (entry.index <= applied_) continue;
    if (entry.type == raft::EntryType::kConfChange) {
      machine_->apply_noop(entry.index);
      auto cc = raft::decode_conf_change(entry.data);
      if (cc.ok()) {
        raft::ConfState conf = raft_->apply_conf_change(*cc);
        SHOAL_LOG_INFO("metadata: configuration now {} voter(s), {} learner(s) (entry {})", conf.voters.size(),
                       conf.learners.size(), entry.index);
      } else {
        SHOAL_LOG_WARN("metadata: skipping undecodable configuration change at {}: {}", entry.index,
                       cc.status().message());
      }
    } else {
      apply_normal(entry);
    }
    applied_ = entry.index;
  }
}

void ControlPlane::apply_normal(const raft::Entry& entry) {
  if (entry.data.empty()) {  // a new leader's empty entry
    machine_->apply_noop(entry.index);
    return;
  }
  if (entry.data.size() < kEnvelopeHeader || static_cast<uint8_t>(entry.data[0]) != kEnvelopeVersion) {
    SHOAL_LOG_WARN("metadata: skipping malformed entry {}", entry.index);
    machine_->apply_noop(entry.index);
    return;
  }
  raft::NodeId proposer = get_u64(entry.data.data() + 1);
  uint64_t seq = get_u64(entry.data.data() + 9);
  std::string_view command(entry.data.data() + kEnvelopeHeader, entry.data.size() - kEnvelopeHeader);
  StateMachine::Applied applied = machine_->apply(entry.index, command, static_cast<int64_t>(now_ms()));
  if (spdlog::should_log(spdlog::level::debug)) {
    Status st = machine_->response_status(applied.response);
    if (!st.ok()) SHOAL_LOG_DEBUG("metadata: entry {} from {:016x}/{}: {}", entry.index, proposer, seq, st.to_string());
  }
  if (proposer == raft_id_) {
    auto it = proposals_.find(seq);
    if (it != proposals_.end()) {
      it->second->fulfiller->fulfill(kj::mv(applied.response));
      proposals_.erase(it);
    }
  }
  if (!applied.events.empty()) watches_->dispatch(applied.events);
}

void ControlPlane::serve_reads() {
  while (!reads_ready_.empty() && reads_ready_.begin()->first <= applied_) {
    auto node = reads_ready_.extract(reads_ready_.begin());
    node.mapped()->fulfiller->fulfill(machine_->read(node.mapped()->request));
  }
}

void ControlPlane::maybe_snapshot() {
  if (applied_ < snapshot_index_ + options_.snapshot_every) return;
  raft::Index compact_to = applied_ > options_.snapshot_keep ? applied_ - options_.snapshot_keep : 0;
  Status saved = store_->save_local_snapshot(applied_, raft_->applied_conf_state(), machine_->snapshot(), compact_to);
  if (!saved.ok()) {
    fatal(saved);
    return;
  }
  snapshot_index_ = applied_;
  SHOAL_LOG_DEBUG("metadata: snapshot at {}, log compacted to {}", applied_, compact_to);
}

void ControlPlane::fail_pending(const Status& status, bool proposals_only) {
  auto proposals = std::move(proposals_);
  proposals_.clear();
  for (auto& [seq, p] : proposals) {
    p->fulfiller->reject(KJ_EXCEPTION(DISCONNECTED, status.message()));
  }
  if (proposals_only) return;
  std::vector<std::unique_ptr<ReadWait>> reads = std::move(reads_unsent_);
  reads_unsent_.clear();
  for (auto& [ctx, batch] : read_batches_) {
    for (auto& r : batch) reads.push_back(std::move(r));
  }
  read_batches_.clear();
  for (auto& [index, r] : reads_ready_) reads.push_back(std::move(r));
  reads_ready_.clear();
  for (auto& r : reads) r->fulfiller->reject(KJ_EXCEPTION(DISCONNECTED, status.message()));
}

// --- Transport ----------------------------------------------------------------

void ControlPlane::refresh_peers() {
  for (auto& [id, p] : peer_info_) p->alive = false;
  for (const gossip::Member& m : gossip_.members()) {
    raft::NodeId id = raft_id_of(m.info.id);
    auto& p = peer_info_[id];
    if (!p) p = std::make_unique<Peer>();
    p->node_id = m.info.id;
    p->address = m.info.address;
    p->alive = m.state == gossip::MemberState::kAlive || m.state == gossip::MemberState::kSuspect;
  }
}

void ControlPlane::send_messages(std::vector<raft::Message>& messages) {
  std::map<raft::NodeId, std::vector<raft::Message>> by_peer;
  for (auto& m : messages) {
    if (m.type == raft::MessageType::kSnapshot) {
      send_snapshot(std::move(m));
    } else {
      by_peer[m.to].push_back(std::move(m));
    }
  }
  uint64_t cluster_id = store_->identity().cluster_id;
  for (auto& [to, list] : by_peer) {
    auto it = peer_info_.find(to);
    if (it == peer_info_.end()) {
      refresh_peers();
      it = peer_info_.find(to);
    }
    if (it == peer_info_.end() || it->second->address.empty()) {
      raft_->report_unreachable(to);
      continue;
    }
    // Split into calls of at most kSendBatchBytes of entries.
    size_t start = 0;
    while (start < list.size()) {
      size_t end = start, bytes = 0;
      while (end < list.size() && (end == start || bytes < kSendBatchBytes)) {
        for (const auto& e : list[end].entries) bytes += e.data.size() + 32;
        ++end;
      }
      auto batch = std::make_shared<std::vector<raft::Message>>(std::make_move_iterator(list.begin() + start),
                                                                std::make_move_iterator(list.begin() + end));
      start = end;
      raft::NodeId peer = to;
      tasks_->add(peers_
                      .call<bool>(it->second->address,
                                  [batch, cluster_id](rpc::Node::Client& node) {
                                    auto req = node.raftSendRequest();
                                    req.setClusterId(cluster_id);
                                    auto out = req.initMessages(static_cast<unsigned>(batch->size()));
                                    for (unsigned i = 0; i < batch->size(); ++i) write_message((*batch)[i], out[i]);
                                    return req.send().then([](auto&&) { return true; });
                                  })
                      .then([](bool) {},
                            [this, peer](kj::Exception&& e) {
                              if (!stopped_ && raft_) raft_->report_unreachable(peer);
                            }));
    }
  }
}

void ControlPlane::send_snapshot(raft::Message message) {
  raft::NodeId to = message.to;
  auto it = peer_info_.find(to);
  if (it == peer_info_.end() || it->second->address.empty() || !message.snapshot) {
    raft_->report_snapshot(to, true);
    return;
  }
  std::string address = it->second->address;
  uint64_t cluster_id = store_->identity().cluster_id;
  auto msg = std::make_shared<raft::Message>(std::move(message));
  SHOAL_LOG_INFO("metadata: sending a snapshot at {} ({} bytes) to {:016x}", msg->snapshot->meta.index,
                 msg->snapshot->data.size(), to);
  // Chunks go one after another; the last one carries the message.
  auto send_chunk = [this, address, cluster_id, msg](uint64_t offset) -> kj::Promise<bool> {
    const std::string& image = msg->snapshot->data;
    size_t len = std::min<size_t>(kSnapshotChunkBytes, image.size() - offset);
    bool last = offset + len >= image.size();
    return peers_.call<bool>(address, [msg, cluster_id, offset, len, last, this](rpc::Node::Client& node) {
      auto req = node.raftSnapshotRequest();
      req.setClusterId(cluster_id);
      req.setFrom(raft_id_);
      req.setSnapshotIndex(msg->snapshot->meta.index);
      req.setOffset(offset);
      req.setChunk(kj::arrayPtr(reinterpret_cast<const kj::byte*>(msg->snapshot->data.data() + offset), len));
      if (last) write_message(*msg, req.initMessage());
      return req.send().then([last](auto&&) { return last; });
    });
  };
  struct Loop {
    static kj::Promise<void> run(decltype(send_chunk) send, std::shared_ptr<raft::Message> msg, uint64_t offset) {
      return send(offset).then([send, msg, offset](bool last) mutable -> kj::Promise<void> {
        if (last) return kj::READY_NOW;
        return run(send, msg, offset + kSnapshotChunkBytes);
      });
    }
  };
  tasks_->add(Loop::run(send_chunk, msg, 0).then([this, to]() { raft_->report_snapshot(to, false); },
                                                  [this, to](kj::Exception&& e) {
                                                    SHOAL_LOG_WARN("metadata: snapshot to {:016x} failed: {}", to,
                                                                   e.getDescription().cStr());
                                                    if (!stopped_) raft_->report_snapshot(to, true);
                                                  }));
}

Status ControlPlane::on_raft_send(uint64_t cluster_id, capnp::List<raftwire::Message>::Reader messages) {
  if (failed_ || stopped_) return Status::unavailable("the metadata store of this node is not running");
  if (cluster_id == 0) return Status::invalid_argument("raft message without a cluster id");
  if (store_->identity().cluster_id == 0) {
    SHOAL_RETURN_IF_ERROR(store_->set_cluster_id(cluster_id));
    SHOAL_LOG_INFO("metadata: joined cluster {:016x}", cluster_id);
  } else if (store_->identity().cluster_id != cluster_id) {
    return Status::invalid_argument(fmt::format(
        "raft message from another cluster ({:016x}; this node belongs to {:016x}): two clusters share a token",
        cluster_id, store_->identity().cluster_id));
  }
  for (auto wire : messages) {
    auto m = read_message(wire);
    if (!m.ok()) return m.status();
    if (m->to != raft_id_) return Status::invalid_argument("raft message addressed to another node");
    if (m->type == raft::MessageType::kSnapshot) {
      return Status::invalid_argument("snapshots must come through raftSnapshot");
    }
    step(std::move(*m));
  }
  return {};
}

void ControlPlane::step(raft::Message message) {
  if (holding_steps_) {
    held_steps_.push_back(std::move(message));
    return;
  }
  Status stepped = raft_->step(message);
  if (!stepped.ok()) SHOAL_LOG_DEBUG("metadata: dropped a raft message: {}", stepped.message());
}

void ControlPlane::step_held_messages() {
  std::vector<raft::Message> held;
  held.swap(held_steps_);
  for (auto& m : held) step(std::move(m));
}

kj::Promise<void> ControlPlane::on_raft_snapshot(uint64_t cluster_id, uint64_t from, uint64_t snapshot_index,
                                                 uint64_t offset, kj::ArrayPtr<const kj::byte> chunk,
                                                 raftwire::Message::Reader message) {
  if (failed_ || stopped_) return KJ_EXCEPTION(DISCONNECTED, "the metadata store of this node is not running");
  if (cluster_id == 0 || (store_->identity().cluster_id != 0 && store_->identity().cluster_id != cluster_id)) {
    return KJ_EXCEPTION(FAILED, "snapshot from another cluster");
  }
  auto key = std::make_pair(from, snapshot_index);
  // One image per sender at a time: a new one replaces an abandoned one.
  for (auto it = snapshot_inbox_.begin(); it != snapshot_inbox_.end();) {
    if (it->first.first == from && it->first.second != snapshot_index) it = snapshot_inbox_.erase(it);
    else ++it;
  }
  std::string& image = snapshot_inbox_[key];
  if (offset != image.size()) {
    snapshot_inbox_.erase(key);
    return KJ_EXCEPTION(FAILED, "snapshot chunk out of order", offset);
  }
  if (image.size() + chunk.size() > kSnapshotImageMax) {
    snapshot_inbox_.erase(key);
    return KJ_EXCEPTION(FAILED, "snapshot image too large");
  }
  image.append(reinterpret_cast<const char*>(chunk.begin()), chunk.size());
  if (!message.getHasSnapshot()) return kj::READY_NOW;
  auto m = read_message(message);
  if (!m.ok() || m->type != raft::MessageType::kSnapshot || m->from != from || m->to != raft_id_ ||
      m->snapshot->meta.index != snapshot_index) {
    snapshot_inbox_.erase(key);
    return KJ_EXCEPTION(FAILED, "malformed snapshot message");
  }
  if (store_->identity().cluster_id == 0) {
    Status s = store_->set_cluster_id(cluster_id);
    if (!s.ok()) return KJ_EXCEPTION(FAILED, s.message());
  }
  m->snapshot->data = std::move(image);
  snapshot_inbox_.erase(key);
  step(std::move(*m));
  return kj::READY_NOW;
}

// --- Client requests ----------------------------------------------------------

bool ControlPlane::is_leader() const { return soft_.role == raft::SoftState::Role::kLeader; }

std::optional<std::string> ControlPlane::leader_address() const {
  if (soft_.leader == 0 || soft_.leader == raft_id_) return std::nullopt;
  auto it = peer_info_.find(soft_.leader);
  if (it == peer_info_.end() || it->second->address.empty()) return std::nullopt;
  return it->second->address;
}

kj::Promise<std::string> ControlPlane::kv(std::string request, int hops) {
  if (failed_ || stopped_) return machine_->error_response(Status::unavailable("this node's metadata store is stopped"));
  if (hops > kForwardHopsMax) {
    return machine_->error_response(Status::unavailable("request forwarded too many times (no stable leader)"));
  }
  // Ids of writes that came without one: a random client id per process, an
  // increasing sequence (the store refuses sequences that go backwards).
  auto classified = machine_->classify(request, client_id_, ++client_seq_);
  if (!classified.ok()) return machine_->error_response(classified.status());
  uint64_t deadline = now_ms() + options_.request_timeout_ms;
  if (classified->write) return write_with_retries(std::move(classified->bytes), hops, deadline);
  return linearizable_read(std::move(classified->bytes), deadline);
}

kj::Promise<std::string> ControlPlane::propose_write(std::string command, uint64_t deadline_ms) {
  if (proposals_.size() >= kPendingProposalsMax) {
    return machine_->error_response(Status::resource_exhausted("too many writes in flight at the leader"));
  }
  uint64_t seq = ++proposal_seq_;
  Status proposed = raft_->propose(envelope(raft_id_, seq, command));
  if (!proposed.ok()) return KJ_EXCEPTION(DISCONNECTED, proposed.message());
  auto paf = kj::newPromiseAndFulfiller<std::string>();
  auto p = std::make_unique<Proposal>();
  p->fulfiller = kj::mv(paf.fulfiller);
  p->deadline_ms = deadline_ms;
  proposals_[seq] = std::move(p);
  return kj::mv(paf.promise);
}

kj::Promise<std::string> ControlPlane::forward_kv(const std::string& address, std::string request, int hops) {
  return peers_.call<std::string>(address, [request = std::move(request), hops](rpc::Node::Client& node) {
    auto req = node.kvRequest();
    req.setRequest(kj::arrayPtr(reinterpret_cast<const kj::byte*>(request.data()), request.size()));
    req.setHops(static_cast<uint8_t>(hops));
    return req.send().then([](auto&& r) {
      auto data = r.getResponse();
      return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
    });
  });
}

kj::Promise<std::string> ControlPlane::write_with_retries(std::string command, int hops, uint64_t deadline_ms) {
  if (failed_ || stopped_) return machine_->error_response(Status::unavailable("this node's metadata store is stopped"));
  auto retry = [this, command, hops, deadline_ms](std::string why) -> kj::Promise<std::string> {
    if (now_ms() >= deadline_ms) {
      return machine_->error_response(Status::unavailable("the write was not confirmed in time (" + why +
                                                          "); it may still apply: retrying it is safe"));
    }
    return loop_.timer().afterDelay(kRetryDelayMs * kj::MILLISECONDS).then([this, command, hops, deadline_ms]() {
      return write_with_retries(command, hops, deadline_ms);
    });
  };
  if (is_leader()) {
    return propose_write(command, deadline_ms).catch_([retry](kj::Exception&& e) mutable {
      return retry(e.getDescription().cStr());
    });
  }
  auto address = leader_address();
  if (!address) return retry("no leader is known");
  return forward_kv(*address, command, hops + 1)
      .then(
          [this, retry](std::string response) mutable -> kj::Promise<std::string> {
            Status s = machine_->response_status(response);
            if (s.code() == Status::Code::kUnavailable) return retry(s.message());
            return kj::mv(response);
          },
          [retry](kj::Exception&& e) mutable { return retry(e.getDescription().cStr()); });
}

kj::Promise<std::string> ControlPlane::linearizable_read(std::string request, uint64_t deadline_ms) {
  if (reads_unsent_.size() + reads_ready_.size() >= kPendingReadsMax) {
    return machine_->error_response(Status::resource_exhausted("too many reads waiting on this node"));
  }
  auto paf = kj::newPromiseAndFulfiller<std::string>();
  auto r = std::make_unique<ReadWait>();
  r->fulfiller = kj::mv(paf.fulfiller);
  r->request = std::move(request);
  r->deadline_ms = deadline_ms;
  reads_unsent_.push_back(std::move(r));
  // Rejected also when this ControlPlane is destroyed with reads waiting
  // (shutdown without a leader): the handler must not touch it.
  return paf.promise.catch_([](kj::Exception&& e) -> std::string {
    return StateMachine::error_response_without_revision(Status::unavailable(e.getDescription().cStr()));
  });
}

kj::Promise<int64_t> ControlPlane::lease_keep_alive(int64_t id, int hops) {
  if (failed_ || stopped_) return KJ_EXCEPTION(DISCONNECTED, "this node's metadata store is stopped");
  if (is_leader()) {
    auto ttl = machine_->keep_alive(id, static_cast<int64_t>(now_ms()));
    if (!ttl.ok()) {
      std::string why = ttl.status().code() == Status::Code::kNotFound
                            ? "lease not found: " + ttl.status().message()
                            : ttl.status().message();
      return KJ_EXCEPTION(FAILED, why);
    }
    return *ttl;
  }
  if (hops >= kForwardHopsMax) return KJ_EXCEPTION(DISCONNECTED, "lease keep-alive forwarded too many times");
  auto address = leader_address();
  if (!address) return KJ_EXCEPTION(DISCONNECTED, "no metadata leader is known");
  return peers_.call<int64_t>(*address, [id, hops](rpc::Node::Client& node) {
    auto req = node.leaseKeepAliveRequest();
    req.setId(id);
    req.setHops(static_cast<uint8_t>(hops + 1));
    return req.send().then([](auto&& r) { return r.getTtlSeconds(); });
  });
}

kj::Promise<kj::Own<rpc::WatchHandle::Server>> ControlPlane::watch(std::string key, std::string range_end,
                                                                    int64_t start_revision,
                                                                    rpc::Watcher::Client watcher,
                                                                    int64_t& revision_out) {
  if (failed_ || stopped_) return KJ_EXCEPTION(DISCONNECTED, "this node's metadata store is stopped");
  if (watches_->watches.size() >= kWatchersMax) {
    return KJ_EXCEPTION(OVERLOADED, "too many watches on this node", kWatchersMax);
  }
  if (start_revision < 0) return KJ_EXCEPTION(FAILED, "start revision must be >= 0");
  auto w = std::make_unique<Watch>(kj::mv(watcher));
  w->id = watches_->next_id++;
  w->key = std::move(key);
  w->range_end = std::move(range_end);
  revision_out = machine_->revision();
  if (start_revision > 0 && start_revision <= machine_->revision()) {
    auto past = machine_->events_since(start_revision, w->key, w->range_end, kWatchQueueMax + 1);
    if (!past.ok()) return KJ_EXCEPTION(FAILED, past.status().message());
    if (past->size() > kWatchQueueMax) {
      return KJ_EXCEPTION(FAILED, "too many events since that revision; watch from a later one");
    }
    for (auto& e : *past) w->queue.push_back(std::move(e));
  }
  uint64_t id = w->id;
  Watch& ref = *w;
  watches_->watches[id] = std::move(w);
  watches_->push(ref);
  return kj::Own<rpc::WatchHandle::Server>(kj::heap<WatchHandleImpl>(watches_.get(), id));
}

// --- Group management (leader) and registration --------------------------------

void ControlPlane::on_manage(uv_timer_t* t) {
  auto* self = static_cast<ControlPlane*>(t->data);
  if (self->failed_ || self->stopped_) return;
  self->refresh_peers();
  uint64_t now = self->now_ms();
  // Expire what waited too long.
  for (auto it = self->proposals_.begin(); it != self->proposals_.end();) {
    if (it->second->deadline_ms <= now) {
      it->second->fulfiller->reject(KJ_EXCEPTION(DISCONNECTED, "the write was not committed in time"));
      it = self->proposals_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = self->read_batches_.begin(); it != self->read_batches_.end();) {
    // A ReadIndex nobody answered (lost message, busy leader): ask again.
    if (!it->second.empty() && it->second.front()->issued_ms + kReadRetryMs <= now) {
      for (auto& r : it->second) self->reads_unsent_.push_back(std::move(r));
      it = self->read_batches_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = self->reads_unsent_.begin(); it != self->reads_unsent_.end();) {
    if ((*it)->deadline_ms <= now) {
      (*it)->fulfiller->reject(KJ_EXCEPTION(DISCONNECTED, "no metadata leader confirmed the read in time"));
      it = self->reads_unsent_.erase(it);
    } else {
      ++it;
    }
  }
  if (self->is_leader()) self->manage_group();
  self->maybe_register();
  self->maybe_rejoin();
}

void ControlPlane::maybe_rejoin() {
  // A node that finds itself alone in gossip (restarted without --join, or
  // its seeds are gone) tries the nodes registered in its metadata, which
  // survive in its own store: a stopped cluster re-forms by itself.
  uint64_t now = now_ms();
  if (now < rejoin_next_ms_) return;
  rejoin_next_ms_ = now + kRejoinIntervalMs;
  if (gossip_.core()->count(gossip::MemberState::kAlive) > 1) return;
  std::vector<std::string> seeds = machine_->registered_addresses(node_id_);
  if (seeds.empty()) return;
  SHOAL_LOG_INFO("metadata: alone in gossip; joining the {} node(s) registered in the metadata", seeds.size());
  gossip_.join(std::move(seeds));
}

void ControlPlane::manage_group() {
  uint64_t now = now_ms();
  // Leases whose holders stopped renewing.
  auto expired = machine_->expired_leases(static_cast<int64_t>(now), 1000);
  if (!expired.empty()) {
    tasks_->add(propose_write(machine_->lease_expire_command(expired), now + options_.request_timeout_ms)
                    .ignoreResult()
                    .catch_([](kj::Exception&&) {}));
  }

  record_deaths(now);

  raft::ConfState conf = raft_->conf_state();
  std::set<raft::NodeId> in_group(conf.voters.begin(), conf.voters.end());
  in_group.insert(conf.learners.begin(), conf.learners.end());
  std::set<raft::NodeId> learners(conf.learners.begin(), conf.learners.end());

  // 1. Remove a member gossip has called dead for longer than the grace period.
  for (raft::NodeId id : in_group) {
    if (id == raft_id_) continue;
    auto it = peer_info_.find(id);
    bool alive = it != peer_info_.end() && it->second->alive;
    if (alive) {
      dead_since_ms_.erase(id);
      continue;
    }
    auto [since, inserted] = dead_since_ms_.emplace(id, now);
    if (now - since->second < options_.dead_grace_ms) continue;
    raft::ConfChange cc{raft::ConfChangeType::kRemoveNode, id, {}};
    if (raft_->propose_conf_change(cc).ok()) {
      SHOAL_LOG_INFO("metadata: removing {} {:016x}: gossip has called it dead for {} s",
                     learners.count(id) ? "learner" : "voter", id, (now - since->second) / 1000);
      dead_since_ms_.erase(id);
    }
    return;  // one change at a time
  }
  // 2. Add every live node gossip knows as a learner.
  for (const auto& [id, peer] : peer_info_) {
    if (!peer->alive || in_group.count(id)) continue;
    raft::ConfChange cc{raft::ConfChangeType::kAddLearner, id, peer->node_id};
    if (raft_->propose_conf_change(cc).ok()) {
      SHOAL_LOG_INFO("metadata: adding {} as a learner", peer->node_id.substr(0, 8));
    }
    return;
  }
  // 3. Promote caught-up learners until there are enough voters. From an
  // odd count, only when two are ready, the second promoted right after the
  // first: with an even count the group tolerates no more failures than
  // with one voter fewer, and a forming cluster that waited at two voters
  // stopped for good when either died (one server changes at a time; no
  // joint consensus). From an even count (a voter was just removed), one.
  if (static_cast<int>(conf.voters.size()) >= options_.voters) return;
  raft::Index last = raft_->last_index();
  const auto progress = raft_->progress();
  std::vector<const raft::RawNode::PeerProgress*> ready;
  for (const auto& pr : progress) {
    if (!pr.learner || !learners.count(pr.id)) continue;
    auto it = peer_info_.find(pr.id);
    if (it == peer_info_.end() || !it->second->alive) continue;
    if (pr.match + kPromoteLagMax < last) continue;
    ready.push_back(&pr);
  }
  if (conf.voters.size() % 2 == 1 && ready.size() < 2) return;
  for (const raft::RawNode::PeerProgress* p : ready) {
    const auto& pr = *p;
    auto it = peer_info_.find(pr.id);
    raft::ConfChange cc{raft::ConfChangeType::kAddVoter, pr.id, it->second->node_id};
    if (raft_->propose_conf_change(cc).ok()) {
      SHOAL_LOG_INFO("metadata: promoting {} to voter ({} of {})", it->second->node_id.substr(0, 8),
                     conf.voters.size() + 1, options_.voters);
    }
    return;
  }
}

void ControlPlane::record_deaths(uint64_t now) {
  // Proposed here, on the leader, never forwarded: a leader cut off in a
  // minority cannot commit its view of the others (its entries are
  // overwritten when the network heals), and a client retrying a write
  // across the heal would carry the minority's view over.
  for (const gossip::Member& m : gossip_.members()) {
    if (m.state != gossip::MemberState::kDead || m.info.id == node_id_) continue;
    auto done = deaths_recorded_.find(m.info.id);
    if (done != deaths_recorded_.end() && done->second >= m.incarnation) continue;
    auto busy = deaths_proposed_.find(m.info.id);
    if (busy != deaths_proposed_.end() && busy->second >= m.incarnation) continue;
    auto command = machine_->classify(
        machine_->put_request(kDeathsPrefix + m.info.id, std::to_string(m.incarnation), 0), client_id_,
        ++client_seq_);
    if (!command.ok()) continue;
    std::string id = m.info.id;
    uint64_t incarnation = m.incarnation;
    deaths_proposed_[id] = incarnation;
    tasks_->add(propose_write(std::move(command->bytes), now + options_.request_timeout_ms)
                    .then(
                        [this, id, incarnation](std::string response) {
                          deaths_proposed_.erase(id);
                          if (!machine_->response_status(response).ok()) return;
                          uint64_t& at = deaths_recorded_[id];
                          at = std::max(at, incarnation);
                          SHOAL_LOG_INFO("metadata: recorded the death of {} (incarnation {})", id.substr(0, 8),
                                         incarnation);
                        },
                        [this, id](kj::Exception&&) { deaths_proposed_.erase(id); }));
  }
}

kj::Promise<bool> ControlPlane::death_recorded(uint64_t incarnation) {
  return kv(machine_->get_request(kDeathsPrefix + node_id_), 0).then([incarnation](std::string response) {
    auto value = meta::single_value(response);
    if (!value.ok()) return kj::Promise<bool>(KJ_EXCEPTION(FAILED, value.status().message()));
    if (!value->has_value()) return kj::Promise<bool>(false);
    uint64_t recorded = 0;
    const std::string& text = **value;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), recorded);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return kj::Promise<bool>(KJ_EXCEPTION(FAILED, "a death record that is not a number", text));
    }
    return kj::Promise<bool>(recorded >= incarnation);
  });
}

void ControlPlane::maybe_register() {
  uint64_t now = now_ms();
  if (register_in_flight_ || now < register_next_ms_ || soft_.leader == 0) return;
  register_in_flight_ = true;
  uint64_t ttl_ms = options_.register_ttl_s * 1000;
  if (register_lease_ != 0) {
    // Keep the lease alive; re-register if it is gone.
    tasks_->add(lease_keep_alive(register_lease_, 0).then(
        [this, now, ttl_ms](int64_t) {
          register_in_flight_ = false;
          register_next_ms_ = now + ttl_ms / 3;
        },
        [this, now](kj::Exception&& e) {
          register_in_flight_ = false;
          std::string why = e.getDescription().cStr();
          if (why.find("not found") != std::string::npos || why.find("NOT_FOUND") != std::string::npos ||
              why.find("no lease") != std::string::npos) {
            SHOAL_LOG_WARN("metadata: this node's registration lease expired; registering again");
            register_lease_ = 0;
          }
          register_next_ms_ = now + 500;
        }));
    return;
  }
  std::string record = fmt::format(
      "{{\"id\":\"{}\",\"address\":\"{}\",\"start_time_ms\":{},\"raft_id\":\"{:016x}\"}}", node_id_,
      peer_info_.count(raft_id_) ? peer_info_[raft_id_]->address : std::string(), clock_.wall_now_ms() -
      (now - start_ms_), raft_id_);
  for (const gossip::Member& m : gossip_.members()) {
    if (m.info.id != node_id_) continue;
    record = fmt::format(
        "{{\"id\":\"{}\",\"address\":\"{}\",\"start_time_ms\":{},\"raft_id\":\"{:016x}\",\"cpus\":{},"
        "\"memory_bytes\":{},\"gpus\":{}}}",
        node_id_, m.info.address, clock_.wall_now_ms() - (now - start_ms_), raft_id_, m.info.total.cpus,
        m.info.total.memory_bytes, m.info.total.gpus);
  }
  tasks_->add(kv(machine_->lease_grant_request(static_cast<int64_t>(options_.register_ttl_s)), 0)
                  .then([this, record](std::string response) -> kj::Promise<std::string> {
                    auto lease = machine_->granted_lease(response);
                    if (!lease.ok()) return KJ_EXCEPTION(FAILED, lease.status().message());
                    register_lease_ = *lease;
                    return kv(machine_->put_request("/shoal/nodes/" + node_id_, record, *lease), 0);
                  })
                  .then(
                      [this, now, ttl_ms](std::string response) {
                        register_in_flight_ = false;
                        Status s = machine_->response_status(response);
                        if (!s.ok()) {
                          SHOAL_LOG_WARN("metadata: cannot register this node: {}", s.message());
                          register_lease_ = 0;
                          register_next_ms_ = now + 1000;
                          return;
                        }
                        SHOAL_LOG_INFO("metadata: registered this node under /shoal/nodes/{}", node_id_);
                        register_next_ms_ = now + ttl_ms / 3;
                      },
                      [this, now](kj::Exception&& e) {
                        register_in_flight_ = false;
                        register_lease_ = 0;
                        register_next_ms_ = now + 1000;
                        SHOAL_LOG_DEBUG("metadata: registration failed: {}", e.getDescription().cStr());
                      }));
}

// --- Status -------------------------------------------------------------------

void ControlPlane::fill_status(rpc::ControlStatus::Builder out) const {
  out.setRaftId(raft_id_);
  out.setNodeId(node_id_);
  if (!raft_) {
    out.setRole("none");
    return;
  }
  out.setRole(raft::role_name(raft_->role()));
  out.setLeaderId(raft_->leader());
  auto leader = peer_info_.find(raft_->leader());
  if (leader != peer_info_.end()) {
    out.setLeaderNodeId(leader->second->node_id);
    out.setLeaderAddress(leader->second->address);
  }
  out.setTerm(raft_->term());
  out.setCommitIndex(raft_->commit_index());
  out.setAppliedIndex(applied_);
  out.setLastIndex(raft_->last_index());
  out.setRevision(machine_->revision());
  out.setKeys(machine_->key_count());
  raft::ConfState conf = raft_->conf_state();
  std::map<raft::NodeId, raft::Index> match;
  for (const auto& p : raft_->progress()) match[p.id] = p.match;
  auto fill = [&](capnp::List<rpc::GroupMember>::Builder list, const std::vector<raft::NodeId>& ids) {
    for (unsigned i = 0; i < ids.size(); ++i) {
      list[i].setRaftId(ids[i]);
      auto it = peer_info_.find(ids[i]);
      if (it != peer_info_.end()) {
        list[i].setNodeId(it->second->node_id);
        list[i].setAddress(it->second->address);
      }
      auto m = match.find(ids[i]);
      if (m != match.end()) list[i].setMatch(m->second);
    }
  };
  fill(out.initVoters(static_cast<unsigned>(conf.voters.size())), conf.voters);
  fill(out.initLearners(static_cast<unsigned>(conf.learners.size())), conf.learners);
}

}  // namespace shoal::control
