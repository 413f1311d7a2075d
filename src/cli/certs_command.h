// `shoal certs init` and `shoal certs issue`: a CA and node certificates for
// TLS between nodes (rpc/certs.h does the work; this prints what it made and
// how to use it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shoal::cli {

struct CertsOptions {
  std::string dir;
  std::vector<std::string> nodes;  // init: node names; issue: one name
  std::vector<std::string> names;  // issue: extra subjectAltNames (hosts, IPs)
  uint32_t days = 0;
};

// Exit codes as in commands.h: 0 done, 1 failed (one line naming the problem).
int run_certs_init(const CertsOptions& options);
int run_certs_issue(const CertsOptions& options);

}  // namespace shoal::cli
