#include "cli/certs_command.h"

#include <cstdio>
#include <ctime>

#include "cli/commands.h"
#include "rpc/certs.h"

namespace shoal::cli {
namespace {

int64_t now_unix_s() { return static_cast<int64_t>(std::time(nullptr)); }

int fail(const Status& status) {
  std::fprintf(stderr, "shoal: certs: %s\n", status.message().c_str());
  return kExitRuntimeError;
}

void print_usage_hint(const std::string& dir, const std::string& node) {
  std::printf(
      "Start node %s with:\n"
      "  shoal start --tls-cert %s/%s.crt --tls-key %s/%s.key --tls-ca %s/ca.crt ...\n"
      "(likewise for the others, or set tls-cert, tls-key and tls-ca in /etc/shoal/shoal.toml). "
      "For the\n"
      "packaged service, copy ca.crt and the node's .crt and .key to /etc/shoal/tls/ on its "
      "machine, then\n"
      "chown root:shoal and chmod 640 the key.\n",
      node.c_str(), dir.c_str(), node.c_str(), dir.c_str(), node.c_str(), dir.c_str());
}

}  // namespace

int run_certs_init(const CertsOptions& options) {
  Status status = rpc::init_cert_dir(options.dir, options.nodes, options.days, now_unix_s());
  if (!status.ok()) return fail(status);
  std::printf("Wrote a CA and %zu node certificate(s) (valid %u days) to %s:\n",
              options.nodes.size(), options.days, options.dir.c_str());
  std::printf("  ca.crt   the CA certificate: give it to every node (--tls-ca)\n");
  std::printf(
      "  ca.key   the CA key: keep it off the nodes; `shoal certs issue %s NAME` needs it\n",
      options.dir.c_str());
  for (const auto& node : options.nodes) {
    std::printf("  %s.crt %s.key   for node %s\n", node.c_str(), node.c_str(), node.c_str());
  }
  print_usage_hint(options.dir, options.nodes.front());
  return kExitOk;
}

int run_certs_issue(const CertsOptions& options) {
  const std::string& node = options.nodes.front();
  Status status =
      rpc::issue_into_cert_dir(options.dir, node, options.names, options.days, now_unix_s());
  if (!status.ok()) return fail(status);
  std::printf("Wrote %s/%s.crt and %s/%s.key (valid %u days, signed by %s/ca.crt).\n",
              options.dir.c_str(), node.c_str(), options.dir.c_str(), node.c_str(), options.days,
              options.dir.c_str());
  print_usage_hint(options.dir, node);
  return kExitOk;
}

}  // namespace shoal::cli
