// Everything `shoal start` can be told, from flags or the config file.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shoal::node {

inline constexpr uint16_t kDefaultPort = 7400;

struct NodeOptions {
  std::string bind = "127.0.0.1";  // TCP (RPC) and UDP (gossip) share one port
  uint16_t port = kDefaultPort;
  std::string advertise;           // address peers use; default bind:port
  std::vector<std::string> join;   // seeds, HOST[:PORT]
  std::string data_dir;            // default: default_data_dir()
  std::string token_file;          // default: <data-dir>/token
  std::optional<double> cpus;      // default: detected
  std::optional<uint64_t> memory_bytes;
  // Bytes of large values kept in memory before they spill to
  // <data-dir>/spill; default 30% of physical memory.
  std::optional<uint64_t> object_store_bytes;
  std::optional<uint32_t> gpus;
  std::map<std::string, double> resources;
  std::map<std::string, std::string> labels;
  int voters = 3;                  // metadata Raft group size (odd, 1-7)
  int voter_grace_s = 30;          // a dead voter is replaced after this long
  std::string log_level = "info";
  // TLS on RPC (rpc/tls.h). All empty: plaintext. Certificate and key: TLS;
  // with a CA too: mutual TLS, only that CA's certificates are accepted.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  std::string tls_server_name;  // empty: rpc::kTlsNodeName
  // jobs (issue 6): the Jobs REST API port; 0 turns it off. Unset: 8265 if
  // free (a warning otherwise, so several nodes can share a machine). Bound
  // to `bind` unless http_bind says otherwise.
  std::optional<uint16_t> http_port;
  std::string http_bind;
  // Finished job records kept in the metadata store (the oldest beyond it go).
  uint64_t max_finished_jobs = 10'000;
  // Upper bound of the event loops' adaptive spin before they block
  // (loop/busy_poll.h); 0 turns it off. Unset: the process default.
  std::optional<uint32_t> busy_poll_us;
};

}  // namespace shoal::node
