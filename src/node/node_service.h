// The Node capability an authenticated peer (another node, or shoalctl) gets.
// Loop thread only.
#pragma once

#include <string>

#include "base/clock.h"
#include "rpc.capnp.h"

namespace shoal::gossip {
class GossipService;
}

namespace shoal::node {

class NodeService final : public rpc::Node::Server {
 public:
  // `gossip` and `clock` must outlive every capability handed out; the node
  // destroys the RPC server (and so every connection) before gossip.
  NodeService(gossip::GossipService& gossip, const Clock& clock, std::string self_id);

 protected:
  kj::Promise<void> ping(PingContext context) override;
  kj::Promise<void> members(MembersContext context) override;

 private:
  gossip::GossipService& gossip_;
  const Clock& clock_;
  std::string self_id_;
};

}  // namespace shoal::node
