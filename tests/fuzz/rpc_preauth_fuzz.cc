// Fuzzes what an unauthenticated client can send to a shoal RPC server: the
// input bytes are everything the client writes on a fresh connection, before
// (and instead of) a valid handshake. The server must not crash, hang or leak,
// whatever arrives.
//
// Each input runs on an in-memory pipe (kj::newTwoWayPipe) into a real
// RpcServer with the Authenticator bootstrap; the client end writes the input,
// shuts down its write side and drains whatever the server answers. The event
// loop then runs until idle, the timer jumps past the auth timeout and the
// close linger, and everything is destroyed.
//
// Seeds: SHOAL_FUZZ_WRITE_SEEDS=DIR ./rpc_preauth_fuzz -runs=0 writes valid
// RPC framings (Bootstrap, challenge(), authenticate() with right and wrong
// field sizes, a second challenge) into DIR; start fuzzing from that corpus so
// the fuzzer reaches the Authenticator instead of stopping at the framing.
// SHOAL_FUZZ_LOG=1 keeps the server's log lines (to see what an input reaches).
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async.h>
#include <kj/io.h>
#include <kj/timer.h>
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "rpc/server.h"

namespace {

// Bound on what the client end reads back per input (the server answers a
// few messages at most before it closes).
constexpr size_t kReplyBytesMax = 1 << 20;
constexpr uint64_t kFuzzMessageBytesMax = 1 << 20;

class FuzzNode final : public shoal::rpc::Node::Server {
 public:
  kj::Promise<void> ping(PingContext context) override {
    context.getResults().setValue(context.getParams().getValue() + 1);
    return kj::READY_NOW;
  }
};

struct FuzzEnv {
  FuzzEnv() : wait_scope(loop), timer(kj::origin<kj::TimePoint>()) {
    if (std::getenv("SHOAL_FUZZ_LOG") == nullptr) spdlog::set_level(spdlog::level::off);
  }
  kj::EventLoop loop;
  kj::WaitScope wait_scope;
  kj::TimerImpl timer;
};

using Messages = kj::Vector<kj::Array<capnp::word>>;

void add_bootstrap(Messages& out) {
  capnp::MallocMessageBuilder message;
  message.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
  out.add(capnp::messageToFlatArray(message));
}

// A call on the bootstrap capability (promised answer of question 0).
void add_call(Messages& out, uint32_t question, uint16_t method, size_t nonce_bytes,
              size_t proof_bytes) {
  using shoal::rpc::Authenticator;
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  call.initTarget().initPromisedAnswer().setQuestionId(0);
  call.setInterfaceId(capnp::typeId<Authenticator>());
  call.setMethodId(method);
  auto content = call.initParams().getContent();
  if (method == 1) {
    auto params = content.initAs<Authenticator::AuthenticateParams>();
    params.initClientNonce(nonce_bytes);
    params.initProof(proof_bytes);
    params.setClientName("seed");
  } else {
    content.initAs<Authenticator::ChallengeParams>();
  }
  out.add(capnp::messageToFlatArray(message));
}

void write_seed(const std::string& path, Messages& messages) {
  kj::AutoCloseFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
  if (fd.get() < 0) return;
  kj::FdOutputStream out(fd.get());
  for (auto& message : messages) out.write(message.asBytes().begin(), message.asBytes().size());
}

void write_seeds(const std::string& dir) {
  Messages bootstrap, challenge, handshake, no_challenge, short_nonce, two_challenges;
  add_bootstrap(bootstrap);
  add_bootstrap(challenge);
  add_call(challenge, 1, 0, 0, 0);
  add_bootstrap(handshake);
  add_call(handshake, 1, 0, 0, 0);
  add_call(handshake, 2, 1, 32, 32);
  add_bootstrap(no_challenge);
  add_call(no_challenge, 1, 1, 32, 32);
  add_bootstrap(short_nonce);
  add_call(short_nonce, 1, 0, 0, 0);
  add_call(short_nonce, 2, 1, 16, 32);
  add_bootstrap(two_challenges);
  add_call(two_challenges, 1, 0, 0, 0);
  add_call(two_challenges, 2, 0, 0, 0);
  write_seed(dir + "/bootstrap", bootstrap);
  write_seed(dir + "/challenge", challenge);
  write_seed(dir + "/handshake", handshake);
  write_seed(dir + "/no_challenge", no_challenge);
  write_seed(dir + "/short_nonce", short_nonce);
  write_seed(dir + "/two_challenges", two_challenges);
}

kj::Promise<void> drain(kj::AsyncIoStream& stream, kj::ArrayPtr<kj::byte> buffer, size_t total) {
  if (total >= kReplyBytesMax) return kj::READY_NOW;
  return stream.tryRead(buffer.begin(), 1, buffer.size())
      .then([&stream, buffer, total](size_t n) -> kj::Promise<void> {
        if (n == 0) return kj::READY_NOW;
        return drain(stream, buffer, total + n);
      });
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("SHOAL_FUZZ_WRITE_SEEDS")) write_seeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzEnv env;
  {
    shoal::rpc::RpcServerOptions options;
    options.message_bytes_max = kFuzzMessageBytesMax;
    shoal::rpc::RpcServer server(
        env.timer, "fuzz cluster secret",
        []() -> shoal::rpc::Node::Client { return kj::heap<FuzzNode>(); }, options);

    auto pipe = kj::newTwoWayPipe();
    server.accept(kj::mv(pipe.ends[1]));
    kj::AsyncIoStream& client = *pipe.ends[0];

    auto write = client.write(data, size)
                     .then([&client]() { client.shutdownWrite(); })
                     .eagerlyEvaluate([](kj::Exception&&) {});
    kj::byte buffer[4096];
    auto read = drain(client, buffer, 0).eagerlyEvaluate([](kj::Exception&&) {});

    env.wait_scope.poll();
    // Fire the auth timeout and the close linger, then let the closes run.
    env.timer.advanceTo(env.timer.now() + 60 * kj::SECONDS);
    env.wait_scope.poll();
    // Promises die before the pipe end and the server.
  }
  env.wait_scope.poll();
  return 0;
}
