#include "node/node_service.h"

#include <kj/debug.h>

#include "control/control_plane.h"
#include "gossip/service.h"
#include "task/cluster_runtime.h"

namespace shoal::node {
namespace {

void fill_resources(rpc::ResourceSet::Builder out, const gossip::Resources& in) {
  out.setCpus(in.cpus);
  out.setMemoryBytes(in.memory_bytes);
  out.setGpus(in.gpus);
  auto custom = out.initCustom(static_cast<unsigned>(in.custom.size()));
  unsigned i = 0;
  for (const auto& [name, amount] : in.custom) {
    custom[i].setName(name);
    custom[i].setAmount(amount);
    i++;
  }
}

}  // namespace

NodeService::NodeService(gossip::GossipService& gossip, control::ControlPlane* control, const Clock& clock,
                         std::string self_id, detail::ClusterRuntime* tasks)
    : gossip_(gossip), control_(control), clock_(clock), self_id_(std::move(self_id)), tasks_(tasks) {}

namespace {
kj::Exception no_control() {
  return KJ_EXCEPTION(DISCONNECTED, "this node's metadata store is not running");
}
std::string to_string(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}
}  // namespace

kj::Promise<void> NodeService::raftSend(RaftSendContext context) {
  if (control_ == nullptr) return no_control();
  auto params = context.getParams();
  Status s = control_->on_raft_send(params.getClusterId(), params.getMessages());
  if (!s.ok()) return KJ_EXCEPTION(FAILED, s.message());
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::raftSnapshot(RaftSnapshotContext context) {
  if (control_ == nullptr) return no_control();
  auto p = context.getParams();
  return control_->on_raft_snapshot(p.getClusterId(), p.getFrom(), p.getSnapshotIndex(), p.getOffset(),
                                    p.getChunk(), p.getMessage());
}

kj::Promise<void> NodeService::kv(KvContext context) {
  if (control_ == nullptr) return no_control();
  auto p = context.getParams();
  return control_->kv(to_string(p.getRequest()), p.getHops()).then([context](std::string response) mutable {
    context.getResults().setResponse(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(response.data()), response.size()));
  });
}

kj::Promise<void> NodeService::leaseKeepAlive(LeaseKeepAliveContext context) {
  if (control_ == nullptr) return no_control();
  auto p = context.getParams();
  return control_->lease_keep_alive(p.getId(), p.getHops()).then([context](int64_t ttl) mutable {
    context.getResults().setTtlSeconds(ttl);
  });
}

kj::Promise<void> NodeService::watch(WatchContext context) {
  if (control_ == nullptr) return no_control();
  auto p = context.getParams();
  auto revision = kj::heap<int64_t>(0);
  int64_t* rev = revision.get();
  return control_
      ->watch(to_string(p.getKey()), to_string(p.getRangeEnd()), p.getStartRevision(), p.getWatcher(), *rev)
      .then([context, revision = kj::mv(revision)](kj::Own<rpc::WatchHandle::Server> handle) mutable {
        auto results = context.getResults();
        results.setHandle(kj::mv(handle));
        results.setRevision(*revision);
      });
}

kj::Promise<void> NodeService::controlStatus(ControlStatusContext context) {
  if (control_ == nullptr) return no_control();
  control_->fill_status(context.getResults().initStatus());
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::ping(PingContext context) {
  context.getResults().setValue(context.getParams().getValue() + 1);
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::members(MembersContext context) {
  std::vector<gossip::Member> members = gossip_.members();
  uint64_t now_ms = clock_.now_ms();
  auto results = context.getResults();
  results.setSelfId(self_id_);
  auto list = results.initMembers(static_cast<unsigned>(members.size()));
  for (unsigned i = 0; i < members.size(); i++) {
    const gossip::Member& m = members[i];
    auto out = list[i];
    bool is_self = m.info.id == self_id_;
    out.setId(m.info.id);
    out.setAddress(m.info.address);
    out.setState(gossip::member_state_name(m.state));
    out.setIncarnation(m.incarnation);
    out.setLastContactMsAgo(is_self || m.last_contact_ms > now_ms ? 0 : now_ms - m.last_contact_ms);
    fill_resources(out.initTotal(), m.info.total);
    fill_resources(out.initAvailable(), m.load.available);
    out.setRunningTasks(m.load.running_tasks);
    out.setLoadAgeMs(is_self || m.load.updated_ms > now_ms ? 0 : now_ms - m.load.updated_ms);
    auto labels = out.initLabels(static_cast<unsigned>(m.info.labels.size()));
    unsigned j = 0;
    for (const auto& [key, value] : m.info.labels) {
      labels[j].setKey(key);
      labels[j].setValue(value);
      j++;
    }
  }
  return kj::READY_NOW;
}

namespace {
kj::Exception no_tasks() { return KJ_EXCEPTION(DISCONNECTED, "this node's task runtime is not running"); }
}  // namespace

kj::Promise<void> NodeService::pushTasks(PushTasksContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  if (p.hasOwnerAddress()) tasks_->note_owner_address(p.getSession(), p.getOwnerAddress().cStr());
  return tasks_->serve_push_tasks(p.getOwner(), p.getSession(), p.getTasks());
}

kj::Promise<void> NodeService::createActor(CreateActorContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  return tasks_->serve_create_actor(p.getOwner(), p.getSession(), p.getActor());
}

kj::Promise<void> NodeService::pushActorCalls(PushActorCallsContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  if (p.hasOwnerAddress()) tasks_->note_owner_address(p.getSession(), p.getOwnerAddress().cStr());
  return tasks_->serve_push_actor_calls(p.getOwner(), p.getSession(), ActorId{p.getActorHi(), p.getActorLo()},
                                        p.getCalls());
}

kj::Promise<void> NodeService::killActor(KillActorContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  context.getResults().setFound(
      tasks_->serve_kill_actor(ActorId{p.getActorHi(), p.getActorLo()}, p.getNoRestart(), p.getReason().cStr()));
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::cancelTask(CancelTaskContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  context.getResults().setFound(tasks_->serve_cancel_task(TaskId{p.getTaskHi(), p.getTaskLo()}, p.getForce()));
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::getObject(GetObjectContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  uint32_t wait_ms = std::min<uint32_t>(p.getWaitMs(), 8'000);  // under the caller's call timeout
  return tasks_->serve_get_object(detail::object_id(p.getObjectHi(), p.getObjectLo()), wait_ms,
                                  context.getResults().initResult());
}

kj::Promise<void> NodeService::nodeInfo(NodeInfoContext context) {
  if (tasks_ == nullptr) return no_tasks();
  tasks_->fill_node_info(context.getResults());
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::readObject(ReadObjectContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  return tasks_->serve_read_object(detail::object_id(p.getObjectHi(), p.getObjectLo()), p.getOffset(),
                                   p.getLength(), context.getResults());
}

kj::Promise<void> NodeService::openObjectStream(OpenObjectStreamContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  tasks_->serve_open_object_stream(detail::object_id(p.getObjectHi(), p.getObjectLo()), p.getOffset(),
                                   context.getResults());
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::objectStats(ObjectStatsContext context) {
  if (tasks_ == nullptr) return no_tasks();
  return tasks_->serve_object_stats(context.getParams().getCluster(), context.getResults());
}

kj::Promise<void> NodeService::taskHistory(TaskHistoryContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  return tasks_->serve_task_history(p.getCluster(), p.getLimit(), context.getResults());
}

kj::Promise<void> NodeService::freeObjects(FreeObjectsContext context) {
  if (tasks_ == nullptr) return no_tasks();
  tasks_->serve_free_objects(context.getParams().getObjects());
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::borrow(BorrowContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  tasks_->serve_borrow(p.getBorrower().cStr(), p.getAdd(), p.getRemove(), context.getResults());
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::reserveBundles(ReserveBundlesContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  std::string reason;
  bool reserved = tasks_->serve_reserve_bundles(PlacementGroupId{p.getGroupHi(), p.getGroupLo()}, p.getBundles(),
                                                p.getOwner(), p.getSession(), &reason);
  context.getResults().setReserved(reserved);
  context.getResults().setReason(reason);
  return kj::READY_NOW;
}

kj::Promise<void> NodeService::releaseBundles(ReleaseBundlesContext context) {
  if (tasks_ == nullptr) return no_tasks();
  auto p = context.getParams();
  context.getResults().setFound(tasks_->serve_release_bundles(PlacementGroupId{p.getGroupHi(), p.getGroupLo()}));
  return kj::READY_NOW;
}

}  // namespace shoal::node
