// shoalctl tasks: what the nodes ran for owners (issue 8), like `ray list
// tasks`: one row per task with its state and attempts, and for a task run
// more than once, each attempt with the node that ran it and the reason its
// owner gave for running it again (an attempt whose node died is known by
// that reason: its node, and its own record, are gone).
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/ctl_support.h"
#include "shoal/ids.h"

namespace shoal::cli {
namespace {

struct Attempt {
  std::string node_id;
  std::string address;
  uint32_t attempt = 0;
  std::string owner;
  std::string function;
  std::string retry_reason;
  std::string state;
  std::string detail;
  int64_t received_ms = 0;
  int64_t ended_ms = 0;
};

struct TaskRow {
  std::string id;
  std::vector<Attempt> attempts;  // by attempt number, then arrival
  const Attempt& latest() const { return attempts.back(); }
};

std::vector<TaskRow> collect(capnp::List<rpc::NodeTasks>::Reader nodes, const std::string& id_prefix) {
  std::map<std::string, TaskRow> by_id;
  for (auto node : nodes) {
    for (auto a : node.getAttempts()) {
      TaskId id;
      id.hi = a.getTaskHi();
      id.lo = a.getTaskLo();
      std::string hex = id.hex();
      if (hex.compare(0, id_prefix.size(), id_prefix) != 0) continue;
      TaskRow& row = by_id[hex];
      row.id = hex;
      row.attempts.push_back(Attempt{node.getNodeId().cStr(), node.getAddress().cStr(), a.getAttempt(),
                                     a.getOwner().cStr(), a.getFunction().cStr(), a.getRetryReason().cStr(),
                                     a.getState().cStr(), a.getDetail().cStr(), a.getReceivedMs(),
                                     a.getEndedMs()});
    }
  }
  std::vector<TaskRow> rows;
  for (auto& [hex, row] : by_id) {
    std::sort(row.attempts.begin(), row.attempts.end(), [](const Attempt& a, const Attempt& b) {
      return a.attempt != b.attempt ? a.attempt < b.attempt : a.received_ms < b.received_ms;
    });
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(), [](const TaskRow& a, const TaskRow& b) {
    return a.attempts.front().received_ms < b.attempts.front().received_ms;
  });
  return rows;
}

void print_json(capnp::List<rpc::NodeTasks>::Reader nodes, const std::vector<TaskRow>& rows) {
  std::string out = "{\"nodes\":[";
  bool first = true;
  for (auto node : nodes) {
    out += first ? "" : ",";
    first = false;
    out += "{\"id\":" + json_escape(node.getNodeId().cStr()) + ",\"address\":" + json_escape(node.getAddress().cStr()) +
           ",\"truncated\":" + (node.getTruncated() ? "true" : "false");
    if (node.getError().size() > 0) out += ",\"error\":" + json_escape(node.getError().cStr());
    out += "}";
  }
  out += "],\"tasks\":[";
  first = true;
  for (const TaskRow& row : rows) {
    const Attempt& last = row.latest();
    out += first ? "" : ",";
    first = false;
    out += "{\"id\":\"" + row.id + "\",\"function\":" + json_escape(last.function) +
           ",\"owner\":" + json_escape(last.owner) + ",\"state\":" + json_escape(last.state) +
           ",\"attempts\":" + std::to_string(last.attempt) + ",\"node_id\":" + json_escape(last.node_id) +
           ",\"history\":[";
    bool first_attempt = true;
    for (const Attempt& a : row.attempts) {
      out += first_attempt ? "" : ",";
      first_attempt = false;
      out += "{\"attempt\":" + std::to_string(a.attempt) + ",\"node_id\":" + json_escape(a.node_id) +
             ",\"address\":" + json_escape(a.address) + ",\"state\":" + json_escape(a.state) +
             ",\"retry_reason\":" + json_escape(a.retry_reason) + ",\"detail\":" + json_escape(a.detail) +
             ",\"received_ms\":" + std::to_string(a.received_ms) + ",\"ended_ms\":" + std::to_string(a.ended_ms) +
             "}";
    }
    out += "]}";
  }
  out += "]}";
  std::printf("%s\n", out.c_str());
}

void print_table(capnp::List<rpc::NodeTasks>::Reader nodes, const std::vector<TaskRow>& rows) {
  for (auto node : nodes) {
    if (node.getError().size() > 0) {
      std::printf("node %s (%s) not answered: %s\n", node.getNodeId().cStr(), node.getAddress().cStr(),
                  node.getError().cStr());
    }
  }
  std::printf("%-32s  %-24s  %-8s  %8s  %s\n", "TASK", "FUNCTION", "STATE", "ATTEMPTS", "NODE");
  for (const TaskRow& row : rows) {
    const Attempt& last = row.latest();
    std::printf("%-32s  %-24s  %-8s  %8u  %s (%s)\n", row.id.c_str(), last.function.c_str(), last.state.c_str(),
                last.attempt, last.node_id.substr(0, 8).c_str(), last.address.c_str());
    if (row.attempts.size() == 1 && last.attempt <= 1) continue;
    for (const Attempt& a : row.attempts) {
      if (!a.retry_reason.empty()) std::printf("    retried: %s\n", a.retry_reason.c_str());
      std::string ran = a.ended_ms > 0 ? " after " + std::to_string(a.ended_ms - a.received_ms) + " ms" : "";
      std::printf("    attempt %u on %s (%s): %s%s%s%s\n", a.attempt, a.node_id.substr(0, 8).c_str(),
                  a.address.c_str(), a.state.c_str(), ran.c_str(), a.detail.empty() ? "" : ": ", a.detail.c_str());
    }
  }
  std::printf("%zu task(s)\n", rows.size());
}

}  // namespace

int run_tasks(const CtlOptions& options, bool json, const std::string& id_prefix, uint32_t limit) {
  Status result = with_node(options, [&](rpc::Node::Client& node) {
    auto request = node.taskHistoryRequest();
    request.setCluster(true);
    request.setLimit(limit);
    return request.send().then([&](capnp::Response<rpc::Node::TaskHistoryResults> r) -> Status {
      std::vector<TaskRow> rows = collect(r.getNodes(), id_prefix);
      if (json) {
        print_json(r.getNodes(), rows);
      } else {
        print_table(r.getNodes(), rows);
      }
      return {};
    });
  }, false);
  return exit_status(result);
}

}  // namespace shoal::cli
