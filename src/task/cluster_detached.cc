// Detached actors outlive their creators (issue 8), so their restarts
// cannot depend on the creator: a driver that made one may have exited long
// before the actor's node dies. Ray's GCS owns them; here the metadata
// leader's node does. A detached actor's directory record
// (/shoal/actors/<id>) carries what it takes to create it again — class,
// constructor, arguments, resources, restart budget and count — and the
// leader reads the directory after a node leaves: a detached actor whose
// node has been gone for kOrphanGrace is claimed with a compare-and-swap on its record (state
// RESTARTING, owner this node), so two leaders in quick succession never
// both restart it, and then restarted here as if this node had made it.
// Its creator, if still running, does not restart it; its calls wait for
// the record to name the new node, like every other holder's.
#include <charconv>
#include <chrono>

#include "base/crypto.h"
#include "base/log.h"
#include "meta/codec.h"
#include "meta/types.h"
#include "task/cluster_runtime.h"
#include "task/cluster_task.h"
#include "task/flat_json.h"

namespace shoal::detail {
namespace {

constexpr auto kOrphanGrace = std::chrono::seconds(2);  // a restart's record may trail the death by a moment
constexpr auto kSweepInterval = std::chrono::seconds(1);
// Arguments kept in the record (hex doubles them): under the store's 1.5 MiB values.
constexpr std::size_t kSpecArgsBytesMax = 512 * 1024;

std::string hex_of(std::string_view bytes) {
  return to_hex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

// "CPU=20000;memory=10000" (units, see ResourceSet).
std::string demand_text(const ResourceSet& demand) {
  std::string out;
  for (const auto& [name, units] : demand.entries()) {
    out += (out.empty() ? "" : ";") + hex_of(name) + "=" + std::to_string(units);
  }
  return out;
}

Result<ResourceSet> parse_demand(std::string_view text) {
  ResourceSet out;
  while (!text.empty()) {
    std::size_t end = text.find(';');
    std::string_view item = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) return Status::invalid_argument("a resource without '='");
    auto name = from_hex(item.substr(0, eq));
    if (!name.ok() || name->empty()) return Status::invalid_argument("a resource name that is not hex");
    int64_t units = 0;
    std::string_view digits = item.substr(eq + 1);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), units);
    if (ec != std::errc() || p != digits.data() + digits.size() || units <= 0) {
      return Status::invalid_argument("a resource quantity that is not a positive number");
    }
    out.set_units(*name, units);
  }
  return out;
}

Result<std::vector<std::string>> parse_args(std::string_view text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  for (;;) {
    std::size_t end = text.find(',');
    auto arg = from_hex(text.substr(0, end));
    if (!arg.ok()) return Status::invalid_argument("an argument that is not hex");
    out.push_back(std::move(*arg));
    if (end == std::string_view::npos) return out;
    text = text.substr(end + 1);
  }
}

std::optional<int> int_field(const std::map<std::string, std::string>& record, const std::string& key) {
  auto it = record.find(key);
  if (it == record.end()) return std::nullopt;
  int v = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || p != it->second.data() + it->second.size()) return std::nullopt;
  return v;
}

std::string field(const std::map<std::string, std::string>& record, const std::string& key) {
  auto it = record.find(key);
  return it == record.end() ? std::string() : it->second;
}

}  // namespace

void ClusterRuntime::append_detached_spec(const ActorState& actor,
                                          std::vector<std::pair<std::string, std::string>>& fields) {
  if (actor.constructor_by_reference) {
    fields.emplace_back("spec", "its constructor takes a value over 100 KiB by reference (its creator keeps it): "
                                "it is not restarted once its node is gone");
    return;
  }
  std::size_t bytes = 0;
  for (const std::string& a : actor.constructor_args) bytes += a.size();
  if (bytes > kSpecArgsBytesMax) {
    fields.emplace_back("spec", "its constructor arguments (" + std::to_string(bytes) +
                                    " bytes) are over 512 KiB: it is not restarted once its node is gone");
    return;
  }
  std::string args;
  for (const std::string& a : actor.constructor_args) args += (args.empty() ? "" : ",") + hex_of(a);
  // An empty argument is "" between commas; no arguments at all is "-".
  if (actor.constructor_args.empty()) args = "-";
  fields.emplace_back("constructor", actor.constructor);
  fields.emplace_back("args", args);
  fields.emplace_back("demand", demand_text(actor.demand));
  fields.emplace_back("max_restarts", std::to_string(actor.options.max_restarts));
  fields.emplace_back("max_task_retries", std::to_string(actor.options.max_task_retries));
  fields.emplace_back("max_concurrency", std::to_string(actor.options.max_concurrency));
  fields.emplace_back("restarts", std::to_string(actor.restarts));
}

void ClusterRuntime::keep_detached_actors() {
  bool keeping = config_.keeps_detached_actors && config_.keeps_detached_actors();
  if (keeping && !keeping_detached_) detached_sweep_due_ = true;  // deaths seen before this node took over
  keeping_detached_ = keeping;
  if (!keeping) {
    orphaned_since_.clear();
    return;
  }
  auto now = Clock::now();
  if (!detached_sweep_due_ || detached_sweep_running_ || now - detached_sweep_at_ < kSweepInterval) return;
  detached_sweep_due_ = false;
  detached_sweep_at_ = now;
  detached_sweep_running_ = true;
  meta::Request request;
  request.body = meta::RangeRequest::prefix(kActorsPrefix);
  auto encoded = meta::encode_request(request);
  if (!encoded.ok()) {
    detached_sweep_running_ = false;
    return;
  }
  tasks_set_->add(kv_call(std::move(*encoded))
                      .then(
                          [this](std::string bytes) {
                            detached_sweep_running_ = false;
                            auto response = meta::decode_response(bytes);
                            const auto* range = response.ok() && response->status.ok()
                                                    ? std::get_if<meta::RangeResponse>(&response->body)
                                                    : nullptr;
                            if (range == nullptr) {
                              detached_sweep_due_ = true;  // read again next time
                              return;
                            }
                            auto now = Clock::now();
                            std::unordered_map<ActorId, Clock::time_point> still;
                            for (const meta::KeyValue& kv : range->kvs) {
                              auto record = parse_flat_json(kv.value);
                              if (!record.ok() || field(*record, "detached") != "true") continue;
                              auto id = actor_id_from_hex(field(*record, "id"));
                              if (!id) continue;
                              std::string address = field(*record, "address");
                              bool running = !address.empty() && members_.contains(address);
                              bool being_restarted =
                                  field(*record, "state") == "RESTARTING" && members_.contains(field(*record, "owner"));
                              if (running || being_restarted) continue;
                              auto since = orphaned_since_.find(*id);
                              Clock::time_point first = since == orphaned_since_.end() ? now : since->second;
                              if (now - first < kOrphanGrace) {
                                still.emplace(*id, first);
                                continue;
                              }
                              adopt_detached_actor(*id, std::move(*record), kv.mod_revision);
                            }
                            orphaned_since_ = std::move(still);
                            // Orphans waiting out their grace: look again.
                            if (!orphaned_since_.empty()) detached_sweep_due_ = true;
                          },
                          [this](kj::Exception&& e) {
                            detached_sweep_running_ = false;
                            detached_sweep_due_ = true;
                            SHOAL_LOG_DEBUG("reading the actor directory: {}", e.getDescription().cStr());
                          }));
}

void ClusterRuntime::adopt_detached_actor(const ActorId& id, std::map<std::string, std::string> record,
                                          int64_t revision) {
  const std::string where = field(record, "address").empty() ? "its node" : "node " + field(record, "address");
  const std::string why = where + " left the cluster (dead or stopped)";
  const std::string name = field(record, "name");
  const std::string name_space = field(record, "namespace");
  const std::string class_name = field(record, "class");
  auto give_up = [&](const std::string& reason) {
    SHOAL_LOG_WARN("detached actor {} ({}): {}; {}: it is gone", class_name, id.hex(), why, reason);
    kv_delete(actor_key(id));
    if (!name.empty()) kv_delete(named_key(name_space, name));
  };
  if (!field(record, "spec").empty()) return give_up(field(record, "spec"));
  auto args = parse_args(field(record, "args") == "-" ? std::string_view() : field(record, "args"));
  auto demand = parse_demand(field(record, "demand"));
  auto max_restarts = int_field(record, "max_restarts");
  auto restarts = int_field(record, "restarts");
  auto max_task_retries = int_field(record, "max_task_retries");
  auto max_concurrency = int_field(record, "max_concurrency");
  if (class_name.empty() || field(record, "constructor").empty() || !args.ok() || !demand.ok() || !max_restarts ||
      !restarts || !max_task_retries || !max_concurrency) {
    return give_up("its directory record does not say how to create it again");
  }
  if (*max_restarts >= 0 && *restarts >= *max_restarts) {
    return give_up("max_restarts " + std::to_string(*max_restarts) + " used up");
  }
  // Claim the restart: only if the record is still the one read.
  record["state"] = "RESTARTING";
  record["owner"] = config_.address;
  record["address"] = "";
  record["node"] = "";
  std::vector<std::pair<std::string, std::string>> claimed(record.begin(), record.end());
  std::string claimed_json = flat_json(claimed);
  auto state = std::make_shared<ActorState>();
  state->id = id;
  state->class_name = class_name;
  state->owner = config_.address;
  state->created_here = true;
  state->detached = true;
  state->name = name;
  state->name_space = name_space;
  state->constructor = field(record, "constructor");
  for (const std::string& bytes : *args) state->constructor_task_args.push_back(TaskArg{bytes, {}, {}});
  state->constructor_args = std::move(*args);
  state->options.name = name;
  state->options.name_space = name_space;
  state->options.detached = true;
  state->options.max_restarts = *max_restarts;
  state->options.max_task_retries = *max_task_retries;
  state->options.max_concurrency = *max_concurrency;
  state->demand = std::move(*demand);
  state->restarts = *restarts;
  tasks_set_->add(kv_put_if(actor_key(id), claimed_json, revision)
                      .then([this, id, state, why, name, name_space, claimed_json](Result<bool> claimed) {
                        if (!claimed.ok()) {
                          detached_sweep_due_ = true;  // the store did not answer: try again
                          return;
                        }
                        if (!*claimed) {
                          SHOAL_LOG_DEBUG("detached actor {}: claimed elsewhere first", id.hex());
                          return;
                        }
                        if (!name.empty()) kv_put(named_key(name_space, name), claimed_json);
                        {
                          std::lock_guard lock(mutex_);
                          auto& slot = actors_[id];
                          if (slot) {
                            // This process holds handles too: keep its queue.
                            state->handles = slot->handles;
                            state->shared = slot->shared;
                            state->queue = std::move(slot->queue);
                          }
                          slot = state;
                        }
                        SHOAL_LOG_INFO("detached actor {} ({}): restarted by this node (the metadata leader)",
                                       state->class_name, id.hex());
                        restart_actor(id, why);
                      }));
}

}  // namespace shoal::detail
