#include "rpc/tls.h"

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <kj/compat/tls.h>

#include <cstring>
#include <string_view>

#include "base/assert.h"
#include "rpc/auth.h"

namespace shoal::rpc {
namespace {

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// kj-tls reports OpenSSL failures as "OpenSSL error; message = error:0A000086:SSL
// routines::certificate verify failed": keep the reason at the end.
std::string openssl_reason(const kj::Exception& exception) {
  std::string text = exception.getDescription().cStr();
  size_t at = text.find("error:");
  if (at == std::string::npos) return text;
  std::string line = text.substr(at);
  if (size_t newline = line.find('\n'); newline != std::string::npos) line.resize(newline);
  if (size_t colon = line.rfind(':'); colon != std::string::npos) line.erase(0, colon + 1);
  return line;
}

kj::Exception make_error(kj::Exception::Type type, const std::string& message) {
  return kj::Exception(type, __FILE__, __LINE__, kj::heapString(message.data(), message.size()));
}

// Alerts a peer sends when it does not accept our certificate.
bool is_certificate_alert(std::string_view reason) {
  return contains(reason, "alert unknown ca") || contains(reason, "alert bad certificate") ||
         contains(reason, "alert certificate") ||
         contains(reason, "alert unsupported certificate") ||
         contains(reason, "alert access denied");
}

bool is_negotiation_alert(std::string_view reason) {
  return contains(reason, "alert handshake failure") ||
         contains(reason, "alert protocol version") ||
         contains(reason, "alert insufficient security") || contains(reason, "no shared cipher") ||
         contains(reason, "unsupported protocol");
}

// The peer rejected us, or we cannot agree; neither improves by retrying, so
// these carry kAuthFailedPrefix (-> kUnauthenticated: a joining node stops).
kj::Maybe<kj::Exception> alert_error(std::string_view reason, const std::string& address) {
  std::string why(reason);
  if (contains(reason, "alert certificate required")) {
    return make_error(
        kj::Exception::Type::FAILED,
        std::string(kAuthFailedPrefix) + ": TLS: " + address +
            " requires a client certificate (mutual TLS): pass --tls-cert and --tls-key (" + why +
            ")");
  }
  if (is_certificate_alert(reason)) {
    return make_error(kj::Exception::Type::FAILED,
                      std::string(kAuthFailedPrefix) + ": TLS: " + address +
                          " refused this node's certificate (" + why +
                          "): is --tls-cert signed by the CA that node trusts, and still valid?");
  }
  if (is_negotiation_alert(reason)) {
    return make_error(kj::Exception::Type::FAILED, std::string(kAuthFailedPrefix) +
                                                       ": TLS: no protocol "
                                                       "version or cipher in common with " +
                                                       address + " (" + why + ")");
  }
  return nullptr;
}

kj::Exception client_handshake_error(const kj::Exception& exception, const std::string& address,
                                     const TlsFiles& files) {
  std::string description = exception.getDescription().cStr();
  constexpr std::string_view kUntrusted = "certificate is not trusted";
  if (contains(description, kUntrusted)) {
    std::string reason = "unknown reason";
    if (size_t at = description.find("reason = "); at != std::string::npos)
      reason = description.substr(at + 9);
    if (contains(reason, "hostname mismatch")) {
      return make_error(kj::Exception::Type::FAILED,
                        std::string(kAuthFailedPrefix) + ": TLS: the certificate of " + address +
                            " does not carry the name '" + files.server_name +
                            "' (is it a shoal node certificate? see --tls-server-name)");
    }
    std::string hint = files.ca_file.empty()
                           ? "pass --tls-ca with the CA that signs the cluster's certificates"
                           : "is it signed by the CA in " + files.ca_file + "?";
    return make_error(kj::Exception::Type::FAILED, std::string(kAuthFailedPrefix) +
                                                       ": TLS: the certificate of " + address +
                                                       " is not trusted (" + reason + "); " + hint);
  }
  std::string reason = openssl_reason(exception);
  KJ_IF_MAYBE (error, alert_error(reason, address)) {
    return kj::mv(*error);
  }
  // Closed or garbled mid-handshake: a restart, or a peer without TLS.
  return make_error(
      kj::Exception::Type::DISCONNECTED,
      "TLS handshake with " + address + " failed (" + reason + "); is TLS enabled on that node?");
}

std::string server_handshake_error(const kj::Exception& exception, const TlsFiles& files) {
  std::string reason = openssl_reason(exception);
  if (contains(reason, "certificate verify failed")) {
    return "TLS: its certificate is not signed by the CA in " + files.ca_file +
           ", has expired, or is not valid yet (" + reason + ")";
  }
  if (contains(reason, "peer did not return a certificate")) {
    return "TLS: it presented no certificate; this node requires mutual TLS (peers need --tls-cert "
           "and "
           "--tls-key)";
  }
  if (is_certificate_alert(reason))
    return "TLS: it does not trust this node's certificate (" + reason + ")";
  if (is_negotiation_alert(reason))
    return "TLS: no protocol version or cipher in common (" + reason + ")";
  return "TLS handshake failed (" + reason + ")";
}

// Passes every call through to `inner`; subclasses override what they change.
class ForwardingStream : public kj::AsyncIoStream {
 public:
  explicit ForwardingStream(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return inner_->tryRead(buffer, min_bytes, max_bytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner_->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }
  void getsockopt(int level, int option, void* value, uint* length) override {
    inner_->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, uint length) override {
    inner_->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, uint* length) override {
    inner_->getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, uint* length) override {
    inner_->getpeername(addr, length);
  }
  kj::Maybe<int> getFd() const override { return inner_->getFd(); }

 protected:
  kj::Own<kj::AsyncIoStream> inner_;
};

// Replays bytes already read from `inner` (the sniffed first byte) before
// reading more from it.
class PrefixedStream final : public ForwardingStream {
 public:
  PrefixedStream(kj::Own<kj::AsyncIoStream> inner, kj::Array<kj::byte> prefix)
      : ForwardingStream(kj::mv(inner)), prefix_(kj::mv(prefix)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    size_t left = prefix_.size() - offset_;
    if (left == 0) return inner_->tryRead(buffer, min_bytes, max_bytes);
    size_t n = std::min(left, max_bytes);
    std::memcpy(buffer, prefix_.begin() + offset_, n);
    offset_ += n;
    if (n >= min_bytes) return n;
    return inner_->tryRead(static_cast<kj::byte*>(buffer) + n, min_bytes - n, max_bytes - n)
        .then([n](size_t more) { return n + more; });
  }

 private:
  kj::Array<kj::byte> prefix_;
  size_t offset_ = 0;
};

// The client side after the handshake. With TLS 1.3 a server that refuses our
// certificate says so only after the client finished its handshake, as an
// alert on the first read; this turns such an alert into an error naming it.
class ClientStream final : public ForwardingStream {
 public:
  ClientStream(kj::Own<kj::AsyncIoStream> inner, std::string address)
      : ForwardingStream(kj::mv(inner)), address_(std::move(address)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return inner_->tryRead(buffer, min_bytes, max_bytes)
        .catch_([this](kj::Exception&& exception) -> size_t {
          KJ_IF_MAYBE (error, alert_error(openssl_reason(exception), address_)) {
            kj::throwFatalException(kj::mv(*error));
          }
          kj::throwFatalException(kj::mv(exception));
        });
  }

 private:
  std::string address_;
};

// Reads and drops what a refused peer still sends, until it closes or has
// sent `budget` bytes.
kj::Promise<void> drain(kj::AsyncIoStream& stream, kj::Array<kj::byte> buffer, size_t budget) {
  auto read = stream.tryRead(buffer.begin(), 1, buffer.size());
  return read.then(
      [&stream, buffer = kj::mv(buffer), budget](size_t n) mutable -> kj::Promise<void> {
        if (n == 0 || n >= budget) return kj::READY_NOW;
        return drain(stream, kj::mv(buffer), budget - n);
      });
}

}  // namespace

Tls::Tls(Key) {}
Tls::~Tls() = default;

Result<std::unique_ptr<Tls>> Tls::create(const TlsOptions& options, int64_t now_unix_s) {
  auto material = load_tls_material(options.files, now_unix_s);
  if (!material.ok()) return material.status();
  auto tls = std::make_unique<Tls>(Key{});
  tls->options_ = options;
  tls->warnings_ = material->warnings;
  bool have_ca = !material->ca_pems.empty();
  tls->mutual_ = have_ca && options.require_client_certificates;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&]() {
    tls->keypair_ = std::make_unique<kj::TlsKeypair>(
        kj::TlsKeypair{kj::TlsPrivateKey(kj::StringPtr(material->key_pem.c_str())),
                       kj::TlsCertificate(kj::StringPtr(material->cert_pem.c_str()))});
    for (const auto& pem : material->ca_pems)
      tls->trusted_.emplace_back(kj::StringPtr(pem.c_str()));

    kj::TlsContext::Options base;
    base.useSystemTrustStore = !have_ca;
    base.trustedCertificates =
        kj::ArrayPtr<const kj::TlsCertificate>(tls->trusted_.data(), tls->trusted_.size());
    base.minVersion = kj::TlsVersion::TLS_1_2;
    base.defaultKeypair = *tls->keypair_;

    kj::TlsContext::Options server = base;
    server.verifyClients = tls->mutual_;
    tls->server_context_ = std::make_unique<kj::TlsContext>(kj::mv(server));
    // Clients verify after the handshake (kj checks the verify result and
    // names the reason), so the client context leaves verifyClients off.
    kj::TlsContext::Options client = base;
    client.verifyClients = false;
    tls->client_context_ = std::make_unique<kj::TlsContext>(kj::mv(client));
  });
  KJ_IF_MAYBE (exception, failure) {
    return Status::invalid_argument("cannot set up TLS with " + options.files.cert_file + ": " +
                                    openssl_reason(*exception));
  }
  return tls;
}

std::string Tls::describe() const {
  const TlsFiles& f = options_.files;
  std::string text = "TLS with certificate " + f.cert_file;
  if (f.ca_file.empty())
    return text + ", peers checked against the system's CAs (no client certificates)";
  return text + (mutual_ ? ", mutual with CA " : ", CA ") + f.ca_file + ", peer name " +
         f.server_name;
}

kj::Promise<kj::Own<kj::AsyncIoStream>> Tls::wrap_server(kj::Own<kj::AsyncIoStream> stream,
                                                         std::string peer) {
  auto first = kj::heapArray<kj::byte>(1);
  auto& raw = *stream;
  auto* first_ptr = first.begin();
  return raw.tryRead(first_ptr, 1, 1)
      .then([this, stream = kj::mv(stream), first = kj::mv(first),
             peer](size_t n) mutable -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        if (n == 0) {
          return make_error(kj::Exception::Type::DISCONNECTED, "closed before sending anything");
        }
        if (first[0] != kTlsHandshakeRecordType) return refuse_plaintext(kj::mv(stream), peer);
        auto replayed = kj::heap<PrefixedStream>(kj::mv(stream), kj::mv(first));
        return server_context_->wrapServer(kj::mv(replayed))
            .catch_([this](kj::Exception&& exception) -> kj::Own<kj::AsyncIoStream> {
              kj::throwFatalException(make_error(
                  kj::Exception::Type::FAILED, server_handshake_error(exception, options_.files)));
            });
      });
}

kj::Promise<kj::Own<kj::AsyncIoStream>> Tls::refuse_plaintext(kj::Own<kj::AsyncIoStream> stream,
                                                              std::string peer) {
  // The peer speaks Cap'n Proto in the clear: answer with an RPC Abort, which
  // its RpcSystem turns into an error carrying this text.
  auto message = kj::heap<capnp::MallocMessageBuilder>();
  auto abort = message->initRoot<capnp::rpc::Message>().initAbort();
  abort.setType(capnp::rpc::Exception::Type::FAILED);
  abort.setReason(std::string(kAuthFailedPrefix) +
                  ": that node requires TLS but this connection is plaintext; start this node "
                  "(or shoalctl) with --tls-cert, --tls-key and --tls-ca");
  auto& out = *stream;
  auto written = capnp::writeMessage(out, *message);
  return written.attach(kj::mv(message))
      .then([&out]() {
        out.shutdownWrite();
        return drain(out, kj::heapArray<kj::byte>(4096), kRefusedPeerDrainBytesMax);
      })
      .then([]() -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        return make_error(
            kj::Exception::Type::FAILED,
            "refused a plaintext connection: this node requires TLS (is TLS enabled on the "
            "peer, with --tls-cert, --tls-key and --tls-ca?)");
      })
      .attach(kj::mv(stream));
}

kj::Promise<kj::Own<kj::AsyncIoStream>> Tls::wrap_client(kj::Own<kj::AsyncIoStream> stream,
                                                         std::string address) {
  return client_context_
      ->wrapClient(kj::mv(stream), kj::StringPtr(options_.files.server_name.c_str()))
      .then(
          [address](kj::Own<kj::AsyncIoStream>&& secured) -> kj::Own<kj::AsyncIoStream> {
            return kj::heap<ClientStream>(kj::mv(secured), address);
          },
          [this, address](kj::Exception&& exception) -> kj::Own<kj::AsyncIoStream> {
            kj::throwFatalException(client_handshake_error(exception, address, options_.files));
          });
}

}  // namespace shoal::rpc
