#include "node/node_service.h"

#include "gossip/service.h"

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

NodeService::NodeService(gossip::GossipService& gossip, const Clock& clock, std::string self_id)
    : gossip_(gossip), clock_(clock), self_id_(std::move(self_id)) {}

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

}  // namespace shoal::node
