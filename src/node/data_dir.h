// The node's data directory and the small files in it: the persistent node
// id, the cluster token, and the discovery file that lets shoalctl on the same
// machine find a running node. Loop thread or startup only.
#pragma once

#include <string>
#include <vector>

#include "shoal/status.h"

namespace shoal::node {

inline constexpr size_t kTokenBytes = 32;   // the cluster secret, stored as hex
inline constexpr size_t kNodeIdBytes = 16;  // node ids are 32 hex characters

// Creates the directory (mode 0700) if needed and checks that it is writable.
Status prepare_data_dir(const std::string& dir);

// Takes an exclusive lock on <dir>/LOCK (flock) so two processes never share
// a data dir (they would share a node id). Returns the descriptor that holds
// the lock; it is released when the descriptor is closed or the process exits.
Result<int> lock_data_dir(const std::string& dir);

// Reads <dir>/node_id, or creates it with a fresh random id.
Result<std::string> load_or_create_node_id(const std::string& dir);

// Reads a token file: 64 hex characters, surrounding whitespace ignored.
// Returns the raw secret bytes. Errors name the file and what is wrong.
Result<std::string> read_token_file(const std::string& path);

// Writes a fresh token to `path` with mode 0600 unless the file exists, in
// which case it is read instead. Returns the secret bytes.
Result<std::string> load_or_create_token(const std::string& path);

// Checks who may read the token file: readable by every user is an error
// (anyone on the machine could join the cluster or run its jobs); readable
// by the group returns a warning to log; otherwise "". Errors name the file,
// its mode and the chmod that fixes it.
Result<std::string> check_token_file_mode(const std::string& path);

bool is_valid_node_id(const std::string& id);

// Default data directory: $SHOAL_DATA_DIR, else /var/lib/shoal for root, else
// $XDG_DATA_HOME/shoal or ~/.local/share/shoal.
std::string default_data_dir();

// Discovery files: one per running node under runtime_dir(), so that shoalctl
// on the same machine finds an address and token without flags.
struct LocalNode {
  std::string address;
  std::string token_file;
  std::string data_dir;
  int pid = 0;
  // The node's TLS files (empty without TLS); shoalctl on the same machine
  // uses them to reach it.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  std::string tls_server_name;
};
// Where the systemd unit keeps discovery files (RuntimeDirectory=shoal);
// find_local_nodes() also looks there, so `sudo shoalctl status` finds the
// service's node.
inline constexpr const char* kServiceRuntimeDir = "/run/shoal";
std::string runtime_dir();
Status write_discovery_file(uint16_t port, const LocalNode& node);
void remove_discovery_file(uint16_t port);
// Running nodes on this machine (stale files of dead processes are skipped).
std::vector<LocalNode> find_local_nodes();

}  // namespace shoal::node
