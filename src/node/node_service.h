// The Node capability an authenticated peer (another node, or shoalctl) gets.
// Loop thread only.
#pragma once

#include <memory>
#include <string>

#include "base/clock.h"
#include "rpc.capnp.h"

namespace shoal::gossip {
class GossipService;
}
namespace shoal::control {
class ControlPlane;
}

namespace shoal::detail {
class ClusterRuntime;
}
namespace shoal::jobs {
class JobService;
}

namespace shoal::node {

class NodeService final : public rpc::Node::Server {
 public:
  // `gossip` and `clock` must outlive every capability handed out; the node
  // destroys the RPC server (and so every connection) before gossip.
  // `control` may be null (then the metadata methods answer unavailable).
  // `tasks` may be null (then the task methods answer unavailable).
  NodeService(gossip::GossipService& gossip, control::ControlPlane* control, const Clock& clock,
              std::string self_id, detail::ClusterRuntime* tasks = nullptr);

 protected:
  kj::Promise<void> ping(PingContext context) override;
  kj::Promise<void> members(MembersContext context) override;
  kj::Promise<void> raftSend(RaftSendContext context) override;
  kj::Promise<void> raftSnapshot(RaftSnapshotContext context) override;
  kj::Promise<void> kv(KvContext context) override;
  kj::Promise<void> leaseKeepAlive(LeaseKeepAliveContext context) override;
  kj::Promise<void> watch(WatchContext context) override;
  kj::Promise<void> controlStatus(ControlStatusContext context) override;
  kj::Promise<void> pushTasks(PushTasksContext context) override;
  kj::Promise<void> createActor(CreateActorContext context) override;
  kj::Promise<void> pushActorCalls(PushActorCallsContext context) override;
  kj::Promise<void> killActor(KillActorContext context) override;
  kj::Promise<void> cancelTask(CancelTaskContext context) override;
  kj::Promise<void> getObject(GetObjectContext context) override;
  kj::Promise<void> nodeInfo(NodeInfoContext context) override;
  kj::Promise<void> readObject(ReadObjectContext context) override;
  kj::Promise<void> openObjectStream(OpenObjectStreamContext context) override;
  kj::Promise<void> freeObjects(FreeObjectsContext context) override;
  kj::Promise<void> objectStats(ObjectStatsContext context) override;
  kj::Promise<void> taskHistory(TaskHistoryContext context) override;
  kj::Promise<void> borrow(BorrowContext context) override;
  kj::Promise<void> reserveBundles(ReserveBundlesContext context) override;
  kj::Promise<void> releaseBundles(ReleaseBundlesContext context) override;
  // --- jobs (issue 6): defined in node/job_methods.cc ---
 public:
  // The node's job service, read at each call (null: job methods answer unavailable).
  void set_jobs(const std::unique_ptr<jobs::JobService>* jobs) { jobs_ = jobs; }

 protected:
  kj::Promise<void> jobSubmit(JobSubmitContext context) override;
  kj::Promise<void> jobList(JobListContext context) override;
  kj::Promise<void> jobGet(JobGetContext context) override;
  kj::Promise<void> jobStop(JobStopContext context) override;
  kj::Promise<void> jobLogs(JobLogsContext context) override;
  kj::Promise<void> jobDelete(JobDeleteContext context) override;
  // --- end jobs ---

 private:
  gossip::GossipService& gossip_;
  control::ControlPlane* control_;
  const Clock& clock_;
  std::string self_id_;
  detail::ClusterRuntime* tasks_;
  const std::unique_ptr<jobs::JobService>* jobs_ = nullptr;  // jobs (issue 6)
};

}  // namespace shoal::node
