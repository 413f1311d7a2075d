// Certificates for TLS between nodes: checking the PEM files a node is given
// (so a bad certificate is reported at start-up, by file and reason, before
// the node joins anything), and making a CA and node certificates
// (`shoal certs init` / `shoal certs issue`).
//
// Every node certificate carries the DNS name kTlsNodeName in its
// subjectAltName: nodes dial each other by IP address, so a client checks that
// the peer's certificate is signed by the cluster CA and names kTlsNodeName
// (the scheme Consul and Nomad use: "server.<dc>.consul"), not the IP.
//
// Threading: any thread; no shared state. Errors are Status values whose
// message names the file and what is wrong with it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shoal/status.h"

namespace shoal::rpc {

inline constexpr std::string_view kTlsNodeName = "node.shoal";
inline constexpr uint32_t kCaValidityDays = 3650;
inline constexpr uint32_t kNodeCertValidityDays = 825;
inline constexpr uint32_t kCertValidityDaysMax = 36500;
// A node certificate that expires sooner than this is logged as a warning.
inline constexpr int64_t kCertExpiryWarningS = 30 * 24 * 3600;
// Certificate, key and CA files larger than this are refused.
inline constexpr size_t kPemFileBytesMax = 1 << 20;

// What `--tls-cert`, `--tls-key`, `--tls-ca` and `--tls-server-name` name.
struct TlsFiles {
  std::string cert_file;  // PEM: this node's certificate, then any intermediates
  std::string key_file;   // PEM: its private key, unencrypted
  // PEM: the CA certificate(s) that sign peers' certificates. Given: only
  // these are trusted and peers must present a certificate (mutual TLS).
  // Empty: peers are checked against the system's trust store and clients
  // need no certificate.
  std::string ca_file;
  // The name every peer certificate must carry (subjectAltName DNS).
  std::string server_name = std::string(kTlsNodeName);

  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

// The checked contents of TlsFiles, ready for kj::TlsContext.
struct TlsMaterial {
  std::string cert_pem;  // leaf first, then intermediates
  std::string key_pem;
  std::vector<std::string> ca_pems;   // one certificate each; empty: system trust store
  int64_t not_after_unix_s = 0;       // when this node's certificate expires
  std::vector<std::string> warnings;  // e.g. "expires in 12 days"
};

// Reads and checks the files named in `files` at time `now_unix_s`: each is
// readable and holds PEM; the key is unencrypted, not world-readable and
// matches the certificate; the certificate is valid now, usable for TLS
// client and server, names `files.server_name`, and is signed by the CA (or
// the system's CAs). Needs cert_file and key_file; ca_file is optional.
Result<TlsMaterial> load_tls_material(const TlsFiles& files, int64_t now_unix_s);

// A certificate and its private key, both PEM.
struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

struct CertificateRequest {
  std::string common_name;
  std::vector<std::string> names;  // subjectAltName entries: DNS names or IP addresses
  int64_t not_before_unix_s = 0;
  int64_t not_after_unix_s = 0;
};

// A self-signed CA certificate with a fresh P-256 key.
Result<PemPair> make_ca(const std::string& common_name, int64_t not_before_unix_s,
                        int64_t not_after_unix_s);
// A certificate for TLS clients and servers, signed by `ca`, with a fresh
// P-256 key.
Result<PemPair> issue_certificate(const PemPair& ca, const CertificateRequest& request);

// `shoal certs init DIR`: writes DIR/ca.crt, DIR/ca.key and, for each name,
// DIR/<name>.crt and DIR/<name>.key (keys mode 0600). Refuses to overwrite.
Status init_cert_dir(const std::string& dir, const std::vector<std::string>& node_names,
                     uint32_t days, int64_t now_unix_s);
// `shoal certs issue DIR NAME`: a new node certificate from DIR's CA. `names`
// are extra subjectAltName entries (host names, IP addresses).
Status issue_into_cert_dir(const std::string& dir, const std::string& node_name,
                           const std::vector<std::string>& names, uint32_t days,
                           int64_t now_unix_s);

// True if `name` is usable as a file name stem and certificate name:
// letters, digits, '.', '-', '_', at most 64 characters, not starting with '.'.
bool is_valid_cert_name(std::string_view name);

}  // namespace shoal::rpc
