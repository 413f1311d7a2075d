// shoalctl memory: the objects every node holds or owns (issue 5), like
// `ray memory`: per node, each object's size, owner, state and why it is
// kept there, then the node's totals.
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>

#include "cli/commands.h"
#include "cli/ctl_support.h"
#include "shoal/ids.h"

namespace shoal::cli {
namespace {

std::string object_hex(const rpc::ObjectInfoWire::Reader& o) {
  ObjectId id;
  id.hi = o.getObjectHi();
  id.lo = o.getObjectLo();
  return id.hex();
}

struct Totals {
  uint64_t objects = 0;
  uint64_t bytes_here = 0;      // values whose bytes are in this process
  uint64_t bytes_elsewhere = 0;  // owned here, held at another process
  std::map<std::string, uint64_t> by_state;
};

Totals totals_of(const rpc::NodeObjects::Reader& node) {
  Totals t;
  for (auto o : node.getObjects()) {
    ++t.objects;
    std::string state = o.getState().cStr();
    if (state.rfind("held at", 0) == 0) {
      t.bytes_elsewhere += o.getSize();
      state = "held elsewhere";
    } else {
      t.bytes_here += o.getSize();
    }
    t.by_state[state] += 1;
  }
  return t;
}

void print_json(capnp::List<rpc::NodeObjects>::Reader nodes) {
  std::string out = "{\"nodes\":[";
  bool first_node = true;
  for (auto node : nodes) {
    if (!first_node) out += ",";
    first_node = false;
    Totals t = totals_of(node);
    out += "{\"id\":" + json_escape(node.getNodeId().cStr()) + ",\"address\":" + json_escape(node.getAddress().cStr());
    if (node.getError().size() > 0) out += ",\"error\":" + json_escape(node.getError().cStr());
    out += ",\"truncated\":" + std::string(node.getTruncated() ? "true" : "false");
    out += ",\"bytes_served\":" + std::to_string(node.getBytesServed());
    out += ",\"bulk_bytes_served\":" + std::to_string(node.getBulkBytesServed());
    out += ",\"objects_total\":" + std::to_string(t.objects) + ",\"bytes_held_here\":" + std::to_string(t.bytes_here) +
           ",\"bytes_owned_held_elsewhere\":" + std::to_string(t.bytes_elsewhere) + ",\"objects\":[";
    bool first = true;
    for (auto o : node.getObjects()) {
      if (!first) out += ",";
      first = false;
      out += "{\"id\":\"" + object_hex(o) + "\",\"size\":" + std::to_string(o.getSize()) +
             ",\"owner\":" + json_escape(o.getOwner().cStr()) + ",\"state\":" + json_escape(o.getState().cStr()) +
             ",\"reference\":" + json_escape(o.getReference().cStr()) + "}";
    }
    out += "]}";
  }
  out += "]}";
  std::printf("%s\n", out.c_str());
}

void print_table(capnp::List<rpc::NodeObjects>::Reader nodes) {
  for (auto node : nodes) {
    std::printf("Node %s (%s)\n", node.getNodeId().cStr(), node.getAddress().cStr());
    if (node.getError().size() > 0) {
      std::printf("  not answered: %s\n\n", node.getError().cStr());
      continue;
    }
    if (node.getObjects().size() > 0) {
      std::printf("  %-32s  %10s  %-21s  %-24s  %s\n", "OBJECT", "SIZE", "OWNER", "STATE", "REFERENCE");
      for (auto o : node.getObjects()) {
        std::string owner = o.getOwner().size() > 0 ? o.getOwner().cStr() : "-";
        std::printf("  %-32s  %10s  %-21s  %-24s  %s\n", object_hex(o).c_str(), human_bytes(o.getSize()).c_str(),
                    owner.c_str(), o.getState().cStr(), o.getReference().cStr());
      }
    }
    Totals t = totals_of(node);
    std::string states;
    for (const auto& [state, n] : t.by_state) states += (states.empty() ? "" : ", ") + std::to_string(n) + " " + state;
    std::printf("  total: %" PRIu64 " objects%s%s, %s held here, %s owned here and held elsewhere%s\n\n", t.objects,
                states.empty() ? "" : " (", states.empty() ? "" : (states + ")").c_str(),
                human_bytes(t.bytes_here).c_str(), human_bytes(t.bytes_elsewhere).c_str(),
                node.getTruncated() ? " (list truncated)" : "");
  }
}

}  // namespace

int run_memory(const CtlOptions& options, bool json) {
  Status result = with_node(options, [&](rpc::Node::Client& node) {
    auto request = node.objectStatsRequest();
    request.setCluster(true);
    return request.send().then([&](capnp::Response<rpc::Node::ObjectStatsResults> r) -> Status {
      if (json) {
        print_json(r.getNodes());
      } else {
        print_table(r.getNodes());
      }
      return {};
    });
  }, false);
  return exit_status(result);
}

}  // namespace shoal::cli
