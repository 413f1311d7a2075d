// Certificate checks at start-up and TLS on RPC connections over loopback TCP:
// mutual TLS works; plaintext, wrong-CA and untrusted peers are refused with
// errors that say why.
#include "rpc/tls.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <fstream>

#include "rpc/certs.h"
#include "rpc/client.h"
#include "rpc/errors.h"
#include "rpc/server.h"
#include "rpc/test_support.h"

namespace shoal::rpc {
namespace {

using testing::contains;
using testing::description;
using testing::LoopbackServer;
using testing::wait_for;
using testing::wait_for_failure;

constexpr std::string_view kSecret = "correct horse battery staple";
constexpr int64_t kDay = 24 * 3600;

int64_t now_s() { return static_cast<int64_t>(std::time(nullptr)); }

// A fresh directory with a CA and helpers to write certificates into it.
class CertDir {
 public:
  CertDir() {
    char pattern[] = "/tmp/shoal-tls-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    auto ca = make_ca("test CA", now_s() - kDay, now_s() + 365 * kDay);
    REQUIRE(ca.ok());
    ca_ = *ca;
    write("ca.crt", ca_.cert_pem, 0644);
  }
  ~CertDir() { std::system(("rm -rf " + dir_).c_str()); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  const PemPair& ca() const { return ca_; }

  void write(const std::string& name, const std::string& text, mode_t mode) const {
    std::ofstream(path(name)) << text;
    REQUIRE(::chmod(path(name).c_str(), mode) == 0);
  }

  // Writes NAME.crt / NAME.key signed by `ca` and returns the files.
  TlsFiles node(const std::string& name, const PemPair& ca, int64_t not_before, int64_t not_after,
                std::vector<std::string> names = {std::string(kTlsNodeName)}) const {
    CertificateRequest request{name, std::move(names), not_before, not_after};
    auto pair = issue_certificate(ca, request);
    REQUIRE(pair.ok());
    write(name + ".crt", pair->cert_pem, 0644);
    write(name + ".key", pair->key_pem, 0600);
    return TlsFiles{path(name + ".crt"), path(name + ".key"), path("ca.crt")};
  }
  TlsFiles node(const std::string& name) const {
    return node(name, ca_, now_s() - kDay, now_s() + 30 * kDay + kDay);
  }

 private:
  std::string dir_;
  PemPair ca_;
};

std::string load_error(const TlsFiles& files, int64_t now = now_s()) {
  auto material = load_tls_material(files, now);
  REQUIRE(!material.ok());
  return material.status().message();
}

TEST_CASE("a CA-signed node certificate loads; one near expiry is a warning") {
  CertDir certs;
  auto material = load_tls_material(certs.node("n1"), now_s());
  REQUIRE(material.ok());
  CHECK(material->ca_pems.size() == 1);
  CHECK(material->warnings.empty());
  auto late = load_tls_material(certs.node("n1"), now_s() + 20 * kDay);
  REQUIRE(late.ok());
  REQUIRE(late->warnings.size() == 1);
  CHECK(contains(late->warnings[0], "expires on"));
}

TEST_CASE("expired, not yet valid and mismatched certificates are refused by name") {
  CertDir certs;
  auto expired = certs.node("old", certs.ca(), now_s() - 10 * kDay, now_s() - kDay);
  CHECK(contains(load_error(expired), "expired on"));
  CHECK(contains(load_error(expired), certs.path("old.crt")));
  auto future = certs.node("future", certs.ca(), now_s() + kDay, now_s() + 10 * kDay);
  CHECK(contains(load_error(future), "not valid yet"));

  TlsFiles mismatched = certs.node("a");
  certs.node("b");
  mismatched.key_file = certs.path("b.key");
  std::string error = load_error(mismatched);
  CHECK(contains(error, "does not belong to the certificate"));
  CHECK(contains(error, certs.path("b.key")));
}

TEST_CASE("a certificate from another CA, a non-CA as --tls-ca, or no node name are refused") {
  CertDir certs;
  auto other_ca = make_ca("other CA", now_s() - kDay, now_s() + 365 * kDay);
  REQUIRE(other_ca.ok());
  auto foreign = certs.node("foreign", *other_ca, now_s() - kDay, now_s() + 100 * kDay);
  CHECK(contains(load_error(foreign), "does not verify against --tls-ca"));

  TlsFiles node_as_ca = certs.node("n1");
  node_as_ca.ca_file = node_as_ca.cert_file;
  CHECK(contains(load_error(node_as_ca), "is not a CA certificate"));

  auto unnamed =
      certs.node("unnamed", certs.ca(), now_s() - kDay, now_s() + 100 * kDay, {"example.org"});
  CHECK(contains(load_error(unnamed), "does not carry the name 'node.shoal'"));
}

TEST_CASE("missing, swapped, garbage and world-readable files are refused by name") {
  CertDir certs;
  TlsFiles files = certs.node("n1");
  TlsFiles missing = files;
  missing.cert_file = certs.path("nope.crt");
  CHECK(contains(load_error(missing), "--tls-cert " + certs.path("nope.crt") + ": cannot open"));

  TlsFiles swapped = files;
  std::swap(swapped.cert_file, swapped.key_file);
  CHECK(contains(load_error(swapped), "swapped"));

  certs.write("garbage.crt", "hello\n", 0644);
  TlsFiles garbage = files;
  garbage.cert_file = certs.path("garbage.crt");
  CHECK(contains(load_error(garbage), "holds no PEM certificate"));

  REQUIRE(::chmod(files.key_file.c_str(), 0644) == 0);
  CHECK(contains(load_error(files), "readable by every user"));
  REQUIRE(::chmod(files.key_file.c_str(), 0640) == 0);
  CHECK(load_tls_material(files, now_s()).ok());

  TlsFiles no_key = files;
  no_key.key_file.clear();
  CHECK(contains(load_error(no_key), "both --tls-cert and --tls-key"));
}

TEST_CASE("certs init and issue write a CA and node certificates that load") {
  CertDir scratch;
  std::string dir = scratch.path("cluster");
  REQUIRE(init_cert_dir(dir, {"n1", "n2"}, 30, now_s()).ok());
  for (std::string name : {"n1", "n2"}) {
    TlsFiles files{dir + "/" + name + ".crt", dir + "/" + name + ".key", dir + "/ca.crt"};
    CHECK(load_tls_material(files, now_s()).ok());
    struct stat st {};
    REQUIRE(::stat(files.key_file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
  }
  Status again = init_cert_dir(dir, {"n3"}, 30, now_s());
  CHECK(!again.ok());
  CHECK(contains(again.message(), "already exists"));
  REQUIRE(issue_into_cert_dir(dir, "n3", {"10.0.0.3", "n3.example.org"}, 30, now_s()).ok());
  CHECK(
      load_tls_material(TlsFiles{dir + "/n3.crt", dir + "/n3.key", dir + "/ca.crt"}, now_s()).ok());
  CHECK(!issue_into_cert_dir(dir, "n3", {}, 30, now_s()).ok());
  CHECK(contains(issue_into_cert_dir(dir, "bad name", {}, 30, now_s()).message(), "node name"));
  CHECK(contains(issue_into_cert_dir(dir, "n4", {"a,b"}, 30, now_s()).message(), "neither"));
}

// ---- TLS on RPC connections -------------------------------------------------

std::unique_ptr<Tls> make_tls(const TlsFiles& files) {
  auto tls = Tls::create(TlsOptions{files}, now_s());
  REQUIRE(tls.ok());
  return std::move(*tls);
}

void serve_tls(LoopbackServer& server, Tls& tls) {
  server.server().set_stream_upgrade([&tls](kj::Own<kj::AsyncIoStream> stream, std::string peer) {
    return tls.wrap_server(kj::mv(stream), std::move(peer));
  });
}

kj::Promise<std::unique_ptr<ClientConnection>> connect(kj::AsyncIoContext& io,
                                                       LoopbackServer& server, Tls* tls) {
  std::string address = server.address();
  return testing::connect_tcp(io, address)
      .then([tls, address](
                kj::Own<kj::AsyncIoStream>&& stream) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        if (tls == nullptr) return kj::mv(stream);
        return tls->wrap_client(kj::mv(stream), address);
      })
      .then([](kj::Own<kj::AsyncIoStream>&& stream) {
        return connect_authenticated(kj::mv(stream), std::string(kSecret));
      });
}

TEST_CASE("mutual TLS: nodes of one CA authenticate and call each other") {
  CertDir certs;
  auto server_tls = make_tls(certs.node("server"));
  auto client_tls = make_tls(certs.node("client"));
  CHECK(server_tls->mutual());
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  serve_tls(server, *server_tls);
  auto connection = wait_for(io, connect(io, server, client_tls.get()));
  auto request = connection->node().pingRequest();
  request.setValue(41);
  CHECK(wait_for(io, request.send()).getValue() == 42);
  CHECK(server.server().stats().auth_successes == 1);
  CHECK(server.server().stats().upgrade_failures == 0);
}

TEST_CASE("a TLS node refuses a plaintext peer, and the peer is told why") {
  CertDir certs;
  auto server_tls = make_tls(certs.node("server"));
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  serve_tls(server, *server_tls);
  auto error = wait_for_failure(io, connect(io, server, nullptr));
  Status status = status_from_exception(error);
  CHECK(status.code() == Status::Code::kUnauthenticated);
  CHECK(contains(status.message(), "requires TLS"));
  testing::sleep_ms(io, 50);
  CHECK(server.server().stats().upgrade_failures == 1);
  CHECK(server.server().stats().connections_open == 0);
}

TEST_CASE("a peer with a certificate from another CA is refused on both sides") {
  CertDir certs;
  CertDir other;
  auto server_tls = make_tls(certs.node("server"));
  auto stranger_tls = make_tls(other.node("stranger"));
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  serve_tls(server, *server_tls);
  auto error = wait_for_failure(io, connect(io, server, stranger_tls.get()));
  Status status = status_from_exception(error);
  CHECK(status.code() == Status::Code::kUnauthenticated);
  CHECK(contains(status.message(), "is not trusted"));
  testing::sleep_ms(io, 100);
  CHECK(server.server().stats().upgrade_failures == 1);
  CHECK(server.server().stats().auth_successes == 0);
}

TEST_CASE("a client whose certificate the server does not trust learns so from the alert") {
  // The client trusts both CAs (so it accepts the server) but holds a
  // certificate from the CA the server does not know.
  CertDir certs;
  CertDir other;
  auto server_tls = make_tls(certs.node("server"));
  TlsFiles client_files = other.node("client");
  other.write("both.crt", certs.ca().cert_pem + other.ca().cert_pem, 0644);
  client_files.ca_file = other.path("both.crt");
  auto client_tls = make_tls(client_files);
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  serve_tls(server, *server_tls);
  auto error = wait_for_failure(io, connect(io, server, client_tls.get()));
  Status status = status_from_exception(error);
  CHECK(status.code() == Status::Code::kUnauthenticated);
  CHECK(contains(status.message(), "refused this node's certificate"));
}

TEST_CASE("a TLS client of a plaintext server fails as unavailable, naming TLS") {
  CertDir certs;
  auto client_tls = make_tls(certs.node("client"));
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  auto error = wait_for_failure(io, connect(io, server, client_tls.get()));
  Status status = status_from_exception(error);
  CHECK(status.code() == Status::Code::kUnavailable);
  CHECK(contains(status.message(), "TLS handshake with " + server.address()));
}

TEST_CASE("a connection that never finishes the handshake is closed after the auth timeout") {
  CertDir certs;
  auto server_tls = make_tls(certs.node("server"));
  auto io = kj::setupAsyncIo();
  RpcServerOptions options;
  options.auth_timeout_ms = 100;
  LoopbackServer server(io, std::string(kSecret), testing::test_node_factory(), options);
  serve_tls(server, *server_tls);
  auto stream = wait_for(io, testing::connect_tcp(io, server.address()));
  testing::sleep_ms(io, 20);
  CHECK(server.server().stats().connections_unauthenticated == 1);
  testing::sleep_ms(io, 300);
  CHECK(server.server().stats().connections_unauthenticated == 0);
  CHECK(server.server().stats().upgrade_failures == 1);
}

}  // namespace
}  // namespace shoal::rpc
