// StateMachine: the control plane's view of the metadata key-value store
// (src/meta): classifies client requests, applies committed commands,
// serves local reads, snapshots, and runs the leader's lease timers.
// Loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shoal/status.h"

namespace shoal::control {

struct WatchEventData {
  bool is_delete = false;
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  std::optional<std::string> prev_value;
};

class StateMachine {
 public:
  StateMachine();
  ~StateMachine();

  struct Classified {
    bool write = false;
    std::string bytes;  // the request, with a request id added to a write that had none
  };
  // Validates a client request (meta wire bytes). Writes without a request id
  // get (id_hi, id_lo), so retries inside the cluster apply once.
  Result<Classified> classify(std::string_view request, uint64_t id_hi, uint64_t id_lo) const;

  struct Applied {
    std::string response;
    std::vector<WatchEventData> events;
  };
  // Deterministic; a malformed command yields an error response.
  Applied apply(uint64_t index, std::string_view command, int64_t now_ms);
  // Entry `index` carried no command (a leader's empty entry, a configuration
  // change): only the applied index moves.
  void apply_noop(uint64_t index);
  std::string read(std::string_view request) const;
  std::string error_response(const Status& status) const;
  // The same without a state machine (revision 0): for a read failed while
  // the node shuts down, after the machine may be gone.
  static std::string error_response_without_revision(const Status& status);

  std::string snapshot() const;
  Status restore(std::string_view image);
  int64_t revision() const;
  uint64_t key_count() const;
  uint64_t applied_index() const;
  Result<std::vector<WatchEventData>> events_since(int64_t revision, std::string_view key,
                                                   std::string_view range_end, size_t max) const;

  // Commands and requests the node makes itself.
  std::string lease_grant_request(int64_t ttl_s) const;
  std::string lease_expire_command(const std::vector<int64_t>& ids) const;
  std::string put_request(std::string_view key, std::string_view value, int64_t lease) const;
  std::string get_request(std::string_view key) const;  // answered as meta::single_value reads
  Status response_status(std::string_view response) const;
  Result<int64_t> granted_lease(std::string_view response) const;

  // Addresses of the nodes registered under /shoal/nodes/, except `self_id`.
  std::vector<std::string> registered_addresses(const std::string& self_id) const;

  // Leader-local lease timers.
  void become_leader(int64_t now_ms);
  void lose_leadership();
  Result<int64_t> keep_alive(int64_t id, int64_t now_ms);
  std::vector<int64_t> expired_leases(int64_t now_ms, size_t max);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shoal::control
