#include "cli/commands.h"
#include "cli/ctl_support.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>

#include "base/crypto.h"
#include "base/log.h"
#include "gossip/service.h"
#include "loop/loop.h"
#include "loop/tcp.h"
#include "node/data_dir.h"
#include "node/machine.h"
#include "node/node.h"
#include "rpc/client.h"
#include "rpc/errors.h"
#include "rpc/tls.h"
#include "meta/codec.h"
#include "meta/types.h"
#include "task/flat_json.h"

namespace shoal::cli {
namespace {

int fail(const std::string& message) {
  std::fprintf(stderr, "shoal: %s\n", message.c_str());
  return kExitRuntimeError;
}

std::string json_string(kj::StringPtr s) { return json_escape(std::string_view(s.cStr(), s.size())); }

std::string json_number(double v) {
  if (!std::isfinite(v)) return "0";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.15g", v);
  return buf;
}

std::string json_resources(rpc::ResourceSet::Reader r) {
  std::string out = "{\"cpus\":" + json_number(r.getCpus()) +
                    ",\"memory_bytes\":" + std::to_string(r.getMemoryBytes()) +
                    ",\"gpus\":" + json_number(r.getGpus()) + ",\"custom\":{";
  bool first = true;
  for (auto q : r.getCustom()) {
    if (!first) out += ",";
    first = false;
    out += json_string(q.getName()) + ":" + json_number(q.getAmount());
  }
  return out + "}}";
}


void print_status_json(kj::StringPtr self_id, capnp::List<rpc::MemberRecord>::Reader members,
                       const std::string& metadata_json, const std::string& demand_json) {
  std::string out = "{\"self_id\":" + json_string(self_id) + ",\"metadata\":" + metadata_json +
                    ",\"pending_demand\":" + demand_json + ",\"members\":[";
  bool first = true;
  for (auto m : members) {
    if (!first) out += ",";
    first = false;
    out += "{\"id\":" + json_string(m.getId()) + ",\"address\":" + json_string(m.getAddress()) +
           ",\"state\":" + json_string(m.getState()) +
           ",\"incarnation\":" + std::to_string(m.getIncarnation()) +
           ",\"last_contact_s\":" + json_number(m.getLastContactMsAgo() / 1000.0) +
           ",\"resources\":" + json_resources(m.getTotal()) +
           ",\"available\":" + json_resources(m.getAvailable()) +
           ",\"running_tasks\":" + std::to_string(m.getRunningTasks()) +
           ",\"load_age_s\":" + json_number(m.getLoadAgeMs() / 1000.0) + ",\"labels\":{";
    bool first_label = true;
    for (auto l : m.getLabels()) {
      if (!first_label) out += ",";
      first_label = false;
      out += json_string(l.getKey()) + ":" + json_string(l.getValue());
    }
    out += "}}";
  }
  out += "]}";
  std::printf("%s\n", out.c_str());
}

void print_status_table(kj::StringPtr self_id, capnp::List<rpc::MemberRecord>::Reader members) {
  std::printf("%-10s %-22s %-8s %-11s %-22s %-6s %-10s %s\n", "ID", "ADDRESS", "STATE", "CPUS",
              "MEMORY", "GPUS", "LAST SEEN", "LABELS");
  size_t counts[4] = {0, 0, 0, 0};
  for (auto m : members) {
    std::string state = m.getState().cStr();
    if (state == "alive") counts[0]++;
    if (state == "suspect") counts[1]++;
    if (state == "dead") counts[2]++;
    if (state == "left") counts[3]++;
    auto total = m.getTotal();
    auto available = m.getAvailable();
    char cpus[32], gpus[16], seen[32];
    std::snprintf(cpus, sizeof(cpus), "%g/%g", available.getCpus(), total.getCpus());
    std::snprintf(gpus, sizeof(gpus), "%g", total.getGpus());
    bool is_self = m.getId() == self_id;
    if (is_self) {
      std::snprintf(seen, sizeof(seen), "(self)");
    } else {
      std::snprintf(seen, sizeof(seen), "%.1f s", m.getLastContactMsAgo() / 1000.0);
    }
    std::string memory = human_bytes(available.getMemoryBytes()) + "/" + human_bytes(total.getMemoryBytes());
    std::string labels;
    for (auto l : m.getLabels()) {
      if (!labels.empty()) labels += ",";
      labels += std::string(l.getKey().cStr()) + "=" + l.getValue().cStr();
    }
    std::string id = std::string(m.getId().cStr()).substr(0, 8);
    std::printf("%-10s %-22s %-8s %-11s %-22s %-6s %-10s %s\n", id.c_str(), m.getAddress().cStr(),
                state.c_str(), cpus, memory.c_str(), gpus, seen, labels.c_str());
  }
  std::printf("\n%zu alive, %zu suspect, %zu dead, %zu left\n", counts[0], counts[1], counts[2], counts[3]);
}

// Finds the address, secret and TLS files shoalctl should use.
struct Target {
  std::string address;
  std::string secret;
  rpc::TlsFiles tls;  // not enabled(): plaintext
};

Result<Target> resolve_target(const CtlOptions& options) {
  Target target;
  target.address = options.address;
  std::string token_file = options.token_file;
  target.tls = {options.tls_cert, options.tls_key, options.tls_ca,
                options.tls_server_name.empty() ? std::string(rpc::kTlsNodeName) : options.tls_server_name};
  if (target.address.empty() || token_file.empty() || !target.tls.enabled()) {
    auto local = node::find_local_nodes();
    const node::LocalNode* match = nullptr;
    for (const auto& n : local) {
      if (target.address.empty() || n.address == target.address) {
        match = &n;
        break;
      }
    }
    if (target.address.empty()) {
      if (match == nullptr) {
        return Status::not_found("no shoal node is running on this machine; pass --address HOST:PORT");
      }
      target.address = match->address;
    }
    if (token_file.empty()) {
      token_file = match ? match->token_file : node::default_data_dir() + "/token";
    }
    if (!target.tls.enabled() && match != nullptr && !match->tls_cert.empty()) {
      target.tls = {match->tls_cert, match->tls_key, match->tls_ca, match->tls_server_name};
    }
  }
  auto secret = node::read_token_file(token_file);
  if (!secret.ok()) return Status(secret.status().code(), secret.status().message() + " (pass --token-file)");
  target.secret = *secret;
  return target;
}

}  // namespace

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

int run_start(const node::NodeOptions& options) {
  node::Node node(options);
  Status status = node.run();
  if (!status.ok()) {
    SHOAL_LOG_ERROR("{}", status.to_string());
    return fail(status.to_string());
  }
  return kExitOk;
}

namespace {
thread_local kj::Timer* tls_ctl_timer = nullptr;  // NOLINT: with_node's loop, while it runs
}  // namespace

kj::Timer& ctl_timer() {
  KJ_REQUIRE(tls_ctl_timer != nullptr, "ctl_timer() outside with_node");
  return *tls_ctl_timer;
}

Status with_node(const CtlOptions& options,
                 const std::function<kj::Promise<Status>(rpc::Node::Client&)>& fn, bool no_timeout) {
  auto target = resolve_target(options);
  if (!target.ok()) return target.status();
  const std::string& address = target->address;
  const std::string& secret = target->secret;
  std::unique_ptr<rpc::Tls> tls;
  if (target->tls.enabled()) {
    auto created = rpc::Tls::create(rpc::TlsOptions{target->tls}, static_cast<int64_t>(std::time(nullptr)));
    if (!created.ok()) return created.status();
    tls = std::move(*created);
  }
  auto hp = node::parse_host_port(address, node::kDefaultPort);
  if (!hp.ok()) return Status::invalid_argument("--address: " + hp.status().message());
  log_to_stderr();
  (void)set_log_level("warn");

  loop::Loop loop;
  tls_ctl_timer = &loop.timer();
  KJ_DEFER(tls_ctl_timer = nullptr);
  std::unique_ptr<rpc::ClientConnection> connection;
  std::string where = address;
  auto work = loop::connect_tcp(loop, hp->first, hp->second)
                  .then([&](kj::Own<kj::AsyncIoStream> stream) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
                    if (!tls) return kj::mv(stream);
                    return tls->wrap_client(kj::mv(stream), address);
                  })
                  .then([&](kj::Own<kj::AsyncIoStream> stream) {
                    rpc::ClientOptions client_options;
                    client_options.client_name = "shoalctl";
                    return rpc::connect_authenticated(kj::mv(stream), secret, client_options);
                  })
                  .then([&](std::unique_ptr<rpc::ClientConnection> c) {
                    connection = std::move(c);
                    rpc::Node::Client node = connection->node();
                    return fn(node).attach(kj::mv(node));
                  })
                  .catch_([&](kj::Exception&& e) -> Status {
                    Status s = rpc::status_from_exception(e);
                    return Status(s.code(), where + ": " + s.message());
                  });
  if (!no_timeout) {
    work = work.exclusiveJoin(loop.timer().afterDelay(options.timeout_ms * kj::MILLISECONDS).then([&]() -> Status {
      return Status::deadline_exceeded("no answer from " + where + " within " + std::to_string(options.timeout_ms) +
                                       " ms");
    }));
  }
  Status result = work.wait(loop.wait_scope());
  connection.reset();
  return result;
}

namespace {

void print_control_json(rpc::ControlStatus::Reader c, std::string& out) {
  auto members = [&](capnp::List<rpc::GroupMember>::Reader list) {
    std::string s = "[";
    bool first = true;
    for (auto m : list) {
      if (!first) s += ",";
      first = false;
      char id[24];
      std::snprintf(id, sizeof(id), "%016" PRIx64, m.getRaftId());
      s += "{\"raft_id\":\"" + std::string(id) + "\",\"node_id\":" + json_string(m.getNodeId()) +
           ",\"address\":" + json_string(m.getAddress()) + ",\"match\":" + std::to_string(m.getMatch()) + "}";
    }
    return s + "]";
  };
  out += "{\"role\":" + json_string(c.getRole()) + ",\"leader_node_id\":" + json_string(c.getLeaderNodeId()) +
         ",\"leader_address\":" + json_string(c.getLeaderAddress()) + ",\"term\":" + std::to_string(c.getTerm()) +
         ",\"commit_index\":" + std::to_string(c.getCommitIndex()) +
         ",\"applied_index\":" + std::to_string(c.getAppliedIndex()) +
         ",\"last_index\":" + std::to_string(c.getLastIndex()) + ",\"revision\":" + std::to_string(c.getRevision()) +
         ",\"keys\":" + std::to_string(c.getKeys()) + ",\"voters\":" + members(c.getVoters()) +
         ",\"learners\":" + members(c.getLearners()) + "}";
}

void print_control_table(rpc::ControlStatus::Reader c) {
  std::string leader = c.getLeaderNodeId().size() > 0 ? std::string(c.getLeaderNodeId().cStr()).substr(0, 8) + " (" +
                                                          c.getLeaderAddress().cStr() + ")"
                                                    : std::string("none known");
  std::printf("\nmetadata: leader %s, term %" PRIu64 ", commit %" PRIu64 ", applied %" PRIu64 ", revision %" PRId64
              ", %" PRIu64 " keys\n",
              leader.c_str(), c.getTerm(), c.getCommitIndex(), c.getAppliedIndex(), c.getRevision(), c.getKeys());
  auto names = [](capnp::List<rpc::GroupMember>::Reader list) {
    std::string s;
    for (auto m : list) {
      if (!s.empty()) s += ", ";
      std::string id = m.getNodeId().size() > 0 ? std::string(m.getNodeId().cStr()).substr(0, 8) : "?";
      s += id;
    }
    return s.empty() ? std::string("none") : s;
  };
  std::printf("voters:   %s\nlearners: %s\n", names(c.getVoters()).c_str(), names(c.getLearners()).c_str());
}

}  // namespace

namespace {

// Tasks waiting for a node that can fit them, as their owners publish them
// (/shoal/demand/<owner id>; src/task/cluster_runtime.cc). Records older
// than a minute are left out: their owner stopped refreshing them (gone).
struct Demand {
  std::string owner;
  std::string tasks;
  std::string summary;
};
constexpr uint64_t kDemandStaleMs = 60'000;

kj::Promise<std::vector<Demand>> fetch_demand(rpc::Node::Client& node) {
  meta::Request request;
  request.body = meta::RangeRequest::prefix("/shoal/demand/");
  auto bytes = meta::encode_request(request);
  if (!bytes.ok()) return std::vector<Demand>();
  auto call = node.kvRequest();
  call.setRequest(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes->data()), bytes->size()));
  // Optional: without a metadata leader (an election under way) status must
  // still answer, so this read gets 1.5 s.
  auto no_answer = ctl_timer().afterDelay(1500 * kj::MILLISECONDS).then([] { return std::vector<Demand>(); });
  return call.send().then(
      [](capnp::Response<rpc::Node::KvResults> r) {
        std::vector<Demand> out;
        auto data = r.getResponse();
        auto decoded = meta::decode_response(std::string_view(reinterpret_cast<const char*>(data.begin()), data.size()));
        if (!decoded.ok() || !decoded->status.ok()) return out;
        const auto* range = std::get_if<meta::RangeResponse>(&decoded->body);
        if (range == nullptr) return out;
        auto now_ms = static_cast<uint64_t>(std::time(nullptr)) * 1000;
        for (const auto& kv : range->kvs) {
          auto fields = detail::parse_flat_json(kv.value);
          if (!fields.ok()) continue;
          uint64_t updated = std::strtoull((*fields)["updated_ms"].c_str(), nullptr, 10);
          if (updated + kDemandStaleMs < now_ms) continue;
          out.push_back(Demand{(*fields)["owner"], (*fields)["tasks"], (*fields)["summary"]});
        }
        return out;
      },
      [](kj::Exception&&) { return std::vector<Demand>(); })  // no metadata store: nothing to show
      .exclusiveJoin(kj::mv(no_answer));
}

std::string demand_json(const std::vector<Demand>& demand) {
  std::string out = "[";
  for (const Demand& d : demand) {
    if (out.size() > 1) out += ",";
    out += "{\"owner\":" + json_escape(d.owner) + ",\"tasks\":" + (d.tasks.empty() ? "0" : d.tasks) +
           ",\"summary\":" + json_escape(d.summary) + "}";
  }
  return out + "]";
}

void print_demand_table(const std::vector<Demand>& demand) {
  if (demand.empty()) return;
  std::printf("\nPending demand (tasks no live node can run now):\n");
  for (const Demand& d : demand) {
    std::printf("  %s task(s) owned by %s:\n", d.tasks.c_str(), d.owner.c_str());
    std::string line;
    for (char c : d.summary + "\n") {
      if (c == '\n') {
        std::printf("    %s\n", line.c_str());
        line.clear();
      } else {
        line += c;
      }
    }
  }
}

}  // namespace

int run_status(const CtlOptions& options, bool json) {
  Status result = with_node(options, [&](rpc::Node::Client& node) {
    auto members = node.membersRequest().send();
    auto control = node.controlStatusRequest().send();
    auto demand = fetch_demand(node);
    return members.then([&, control = kj::mv(control), demand = kj::mv(demand)](
                            capnp::Response<rpc::Node::MembersResults> m) mutable {
      return control.then([&, m = kj::mv(m), demand = kj::mv(demand)](
                              capnp::Response<rpc::Node::ControlStatusResults> c) mutable {
        return demand.then([&, m = kj::mv(m), c = kj::mv(c)](std::vector<Demand> pending) -> Status {
          if (json) {
            std::string out;
            print_control_json(c.getStatus(), out);
            // The member list's JSON object gains "metadata" and "pending_demand".
            print_status_json(m.getSelfId(), m.getMembers(), out, demand_json(pending));
          } else {
            print_status_table(m.getSelfId(), m.getMembers());
            print_control_table(c.getStatus());
            print_demand_table(pending);
          }
          return {};
        });
      });
    });
  }, false);
  if (!result.ok()) return fail(result.message());
  return kExitOk;
}

int run_gossip_probe(const std::string& address, const std::string& token_file, int timeout_ms) {
  auto secret = node::read_token_file(token_file);
  if (!secret.ok()) return fail(secret.status().message());
  auto acked = gossip::probe_once(address, as_bytes(*secret), static_cast<uint64_t>(timeout_ms));
  if (!acked.ok()) return fail(acked.status().to_string());
  if (!*acked) {
    std::printf("no authenticated ack from %s within %d ms\n", address.c_str(), timeout_ms);
    return kExitRuntimeError;
  }
  std::printf("authenticated ack from %s\n", address.c_str());
  return kExitOk;
}

}  // namespace shoal::cli
