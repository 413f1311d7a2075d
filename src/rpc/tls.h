// TLS on shoal's connections (kj-tls over any kj::AsyncIoStream).
//
// One Tls object holds a node's certificate, key and trusted CAs as two
// kj::TlsContexts (server side and client side). RpcServer runs wrap_server()
// on every accepted stream before it offers the Authenticator; PeerPool's
// connector and shoalctl run wrap_client() on every stream they open. The
// cluster-token handshake still runs inside TLS: TLS authenticates machines
// (certificates), the token authenticates cluster membership.
//
// A later HTTP server uses the same object: Tls::create() with
// require_client_certificates = false, then wrap_server() per connection.
//
// Mutual TLS: when a CA is given, servers ask for a client certificate and
// refuse connections whose certificate that CA did not sign; clients check
// that the server's certificate is signed by the CA and names
// TlsFiles::server_name. Without a CA, the system's trust store is used and
// clients present no certificate.
//
// Plaintext peers: wrap_server() looks at the first byte. A TLS handshake
// starts with 0x16; anything else is a plaintext shoal peer, which gets a Cap'n
// Proto Abort message (so it reports "... requires TLS ..." instead of a bare
// disconnect) and is refused.
//
// Errors (kj::Exception, converted at the boundary by status_from_exception):
// a certificate the other side does not trust, or a plaintext peer, fails
// with a description containing "authentication failed" (-> kUnauthenticated,
// so a joining node stops at once); a connection closed mid-handshake fails
// as DISCONNECTED (-> kUnavailable, retried).
//
// Threading: create() anywhere; wrap_*() on the thread that runs the KJ event
// loop. The Tls must outlive every stream it wrapped.
#pragma once

#include <kj/async-io.h>

#include <memory>
#include <string>
#include <vector>

#include "rpc/certs.h"
#include "shoal/status.h"

namespace kj {
class TlsContext;
struct TlsKeypair;
class TlsCertificate;
}  // namespace kj

namespace shoal::rpc {

// First byte of every TLS connection (a handshake record).
inline constexpr uint8_t kTlsHandshakeRecordType = 0x16;
// Bytes a refused plaintext peer may still send while it reads our Abort.
inline constexpr size_t kRefusedPeerDrainBytesMax = 64 * 1024;

struct TlsOptions {
  TlsFiles files;
  // Ask clients for a certificate signed by files.ca_file. Meaningful only
  // with a CA; an HTTP server for browsers would turn it off.
  bool require_client_certificates = true;
};

class Tls {
  struct Key {
    explicit Key() = default;
  };

 public:
  // Loads and checks the files (load_tls_material) at `now_unix_s` and builds
  // the contexts. Errors name the file and the problem.
  static Result<std::unique_ptr<Tls>> create(const TlsOptions& options, int64_t now_unix_s);
  explicit Tls(Key);  // use create()
  ~Tls();
  Tls(const Tls&) = delete;
  Tls& operator=(const Tls&) = delete;

  // Server side of a fresh connection from `peer` (for messages).
  kj::Promise<kj::Own<kj::AsyncIoStream>> wrap_server(kj::Own<kj::AsyncIoStream> stream,
                                                      std::string peer);
  // Client side of a fresh connection to `address` (for messages).
  kj::Promise<kj::Own<kj::AsyncIoStream>> wrap_client(kj::Own<kj::AsyncIoStream> stream,
                                                      std::string address);

  bool mutual() const { return mutual_; }
  const TlsOptions& options() const { return options_; }
  // Non-fatal findings of create(), e.g. a certificate that expires soon.
  const std::vector<std::string>& warnings() const { return warnings_; }
  // One line for the log: files and mode.
  std::string describe() const;

 private:
  kj::Promise<kj::Own<kj::AsyncIoStream>> refuse_plaintext(kj::Own<kj::AsyncIoStream> stream,
                                                           std::string peer);

  TlsOptions options_;
  bool mutual_ = false;
  std::vector<std::string> warnings_;
  std::unique_ptr<kj::TlsKeypair> keypair_;
  std::vector<kj::TlsCertificate> trusted_;
  std::unique_ptr<kj::TlsContext> server_context_;
  std::unique_ptr<kj::TlsContext> client_context_;
};

}  // namespace shoal::rpc
