// What the CLI's commands do, kept out of the CLI11 translation unit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "node/options.h"

namespace shoal::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsage = 2;

struct CtlOptions {
  std::string address;     // empty: find a node on this machine
  std::string token_file;  // empty: the found node's token
  int timeout_ms = 5000;
  // TLS to nodes that use it (default: the found local node's files).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  std::string tls_server_name;
};

// Runs a node in the foreground until SIGTERM/SIGINT.
int run_start(const node::NodeOptions& options);
int run_status(const CtlOptions& options, bool json);
// shoalctl memory: every node's objects (memory_command.cc).
int run_memory(const CtlOptions& options, bool json);
// shoalctl tasks: task attempts the nodes ran, retries with their reasons.
int run_tasks(const CtlOptions& options, bool json, const std::string& id_prefix, uint32_t limit);

struct KvCommand {
  enum class Op { kNone, kGet, kPut, kDelete, kList, kWatch } op = Op::kNone;
  std::string key;
  std::string value;
  std::string lease;   // hex lease id, empty = none
  bool prefix = false;
  bool keys_only = false;
  bool json = false;
  int64_t limit = 0;
  int64_t revision = 0;
};
// `shoalctl kv ...`: exit 0 on success, 1 when the key is missing (get) or the
// cluster refused the request.
int run_kv(const CtlOptions& options, const KvCommand& command);

struct KvLoadOptions {
  std::vector<std::string> addresses;  // writes go round-robin; a failed write moves on to the next
  std::string token_file;
  uint64_t count = 1000;
  int concurrency = 1;
  std::string prefix = "load/";
  size_t value_bytes = 16;
  uint64_t write_timeout_ms = 30'000;  // per write, retries included
  std::string acked_file;              // "KEY VALUE" per acknowledged write
  uint64_t duration_s = 0;             // stop issuing writes after this long (0: after count)
};
// `shoal debug kv-load`: prints one JSON object (acked, failed, latency
// percentiles, throughput, longest gap between acknowledgements).
int run_kv_load(const KvLoadOptions& options);
// Sends one gossip probe signed with the token in `token_file` and reports
// whether an authenticated ack came back. Exit 0 if acked, 1 if not.
int run_gossip_probe(const std::string& address, const std::string& token_file, int timeout_ms);

}  // namespace shoal::cli
