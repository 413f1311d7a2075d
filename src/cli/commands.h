// What the CLI's commands do, kept out of the CLI11 translation unit.
#pragma once

#include <string>

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
// Sends one gossip probe signed with the token in `token_file` and reports
// whether an authenticated ack came back. Exit 0 if acked, 1 if not.
int run_gossip_probe(const std::string& address, const std::string& token_file, int timeout_ms);

}  // namespace shoal::cli
