// loop_bench: raw echo round trips per second over loopback between two
// threads, for shoal::loop streams (libuv + cork) and, as the baseline in the
// same run, kj::setupAsyncIo native streams. Prints JSON.
//
// Also Cap'n Proto RPC ping(x) -> x+1 (typeless calls, no schema) over both.
//
//   loop_bench [seconds_per_case=2] [message_bytes=64] [pipeline_depth=64] [only=shoal|kj]
#include <capnp/any.h>
#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <kj/vector.h>

#include "loop/loop.h"
#include "loop/tcp.h"

namespace shoal::loop {
namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  double seconds = 2.0;
  size_t message_bytes = 64;
  int depth = 64;
};

struct Result {
  double sequential_per_s = 0;
  double pipelined_per_s = 0;
};

kj::Promise<void> echo(kj::AsyncIoStream& stream, kj::Array<kj::byte> buffer) {
  auto read = stream.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&stream, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    auto write = stream.write(buffer.begin(), n);
    return write.then(
        [&stream, buffer = kj::mv(buffer)]() mutable { return echo(stream, kj::mv(buffer)); });
  });
}

struct Client {
  kj::AsyncIoStream& stream;
  Clock::time_point deadline;
  kj::Array<kj::byte> out;
  kj::Array<kj::byte> in;
  uint64_t count = 0;

  // One message out, wait for it back, repeat.
  kj::Promise<void> sequential() {
    return stream.write(out.begin(), out.size())
        .then([this]() { return stream.read(in.begin(), in.size()); })
        .then([this]() -> kj::Promise<void> {
          ++count;
          if (Clock::now() >= deadline) return kj::READY_NOW;
          return sequential();
        });
  }

  // `depth` messages in flight: every reply received sends one more.
  kj::Promise<void> pipelined(uint64_t in_flight) {
    return stream.read(in.begin(), in.size()).then([this, in_flight]() -> kj::Promise<void> {
      ++count;
      if (Clock::now() >= deadline) return drain(in_flight - 1);
      return stream.write(out.begin(), out.size()).then([this, in_flight]() {
        return pipelined(in_flight);
      });
    });
  }
  kj::Promise<void> drain(uint64_t left) {
    if (left == 0) return kj::READY_NOW;
    return stream.read(in.begin(), in.size()).then([this, left]() { return drain(left - 1); });
  }
  kj::Promise<void> start_pipeline(int depth) {
    kj::Promise<void> writes = kj::READY_NOW;
    for (int i = 0; i < depth; ++i) {
      writes = writes.then([this]() { return stream.write(out.begin(), out.size()); });
    }
    return writes.then([this, depth]() { return pipelined(depth); });
  }
};

Result run_client(kj::AsyncIoStream& stream, kj::WaitScope& wait_scope, const Config& config) {
  Result result;
  Client client{stream, {}, kj::heapArray<kj::byte>(config.message_bytes),
                kj::heapArray<kj::byte>(config.message_bytes)};
  memset(client.out.begin(), 'x', client.out.size());
  auto duration = std::chrono::duration<double>(config.seconds);

  auto start = Clock::now();
  client.deadline = start + std::chrono::duration_cast<Clock::duration>(duration);
  client.sequential().wait(wait_scope);
  result.sequential_per_s =
      client.count / std::chrono::duration<double>(Clock::now() - start).count();

  client.count = 0;
  start = Clock::now();
  client.deadline = start + std::chrono::duration_cast<Clock::duration>(duration);
  client.start_pipeline(config.depth).wait(wait_scope);
  result.pipelined_per_s =
      client.count / std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

Result bench_shoal(const Config& config) {
  std::promise<uint> port_promise;
  auto port_future = port_promise.get_future();
  std::thread server([&]() {
    Loop loop;
    auto listener = TcpListener::listen(loop, "127.0.0.1", 0);
    KJ_ASSERT(listener.ok(), listener.status().to_string().c_str());
    port_promise.set_value(listener.value()->getPort());
    kj::Own<kj::AsyncIoStream> stream;
    // libuv drives the server side, as in a node.
    loop.detach(listener.value()->accept().then([&](kj::Own<kj::AsyncIoStream> accepted) {
      stream = kj::mv(accepted);
      return echo(*stream, kj::heapArray<kj::byte>(64 * 1024)).then([&]() { loop.stop(); });
    }));
    loop.run();
    stream = nullptr;
  });
  Result result;
  {
    Loop loop;
    auto stream = connect_tcp(loop, "127.0.0.1", static_cast<uint16_t>(port_future.get()))
                      .wait(loop.wait_scope());
    result = run_client(*stream, loop.wait_scope(), config);
    stream->shutdownWrite();
    loop.timer().afterDelay(1 * kj::MILLISECONDS).wait(loop.wait_scope());
  }
  server.join();
  return result;
}

Result bench_kj(const Config& config) {
  std::promise<uint> port_promise;
  auto port_future = port_promise.get_future();
  std::thread server([&]() {
    auto io = kj::setupAsyncIo();
    auto address = io.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io.waitScope);
    auto listener = address->listen();
    port_promise.set_value(listener->getPort());
    auto stream = listener->accept().wait(io.waitScope);
    echo(*stream, kj::heapArray<kj::byte>(64 * 1024)).wait(io.waitScope);
  });
  Result result;
  {
    auto io = kj::setupAsyncIo();
    auto address = io.provider->getNetwork()
                       .parseAddress("127.0.0.1", port_future.get())
                       .wait(io.waitScope);
    auto stream = address->connect().wait(io.waitScope);
    int one = 1;
    stream->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    result = run_client(*stream, io.waitScope, config);
    stream->shutdownWrite();
  }
  server.join();
  return result;
}

// ---- Cap'n Proto RPC ping(x) -> x+1 -----------------------------------------

constexpr uint64_t kPingInterfaceId = 0xf00dfeedbeef0001ull;

class PingServer final : public capnp::Capability::Server {
 public:
  DispatchCallResult dispatchCall(uint64_t, uint16_t,
                                  capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context)
      override {
    uint64_t x = context.getParams().getAs<capnp::Data>()[0];
    context.releaseParams();
    auto out = context.getResults().initAs<capnp::Data>(8);
    out[0] = static_cast<kj::byte>(x + 1);
    return {kj::READY_NOW, false};
  }
};

kj::Promise<void> ping(capnp::Capability::Client& cap) {
  auto request = cap.typelessRequest(kPingInterfaceId, 0, nullptr);
  request.initAs<capnp::Data>(8)[0] = 1;
  return request.send().then([](capnp::Response<capnp::AnyPointer>&& response) {
    KJ_ASSERT(response.getAs<capnp::Data>()[0] == 2);
  });
}

struct RpcClient {
  capnp::Capability::Client cap;
  Clock::time_point deadline;
  uint64_t count = 0;
  kj::Promise<void> sequential() {
    return ping(cap).then([this]() -> kj::Promise<void> {
      ++count;
      if (Clock::now() >= deadline) return kj::READY_NOW;
      return sequential();
    });
  }
  kj::Promise<void> lane() {
    return ping(cap).then([this]() -> kj::Promise<void> {
      ++count;
      if (Clock::now() >= deadline) return kj::READY_NOW;
      return lane();
    });
  }
};

Result run_rpc_client(kj::AsyncIoStream& stream, kj::WaitScope& wait_scope, const Config& config) {
  capnp::TwoPartyClient client(stream);
  RpcClient rpc{client.bootstrap(), {}};
  auto duration = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(config.seconds));
  Result result;
  auto start = Clock::now();
  rpc.deadline = start + duration;
  rpc.sequential().wait(wait_scope);
  result.sequential_per_s = rpc.count / std::chrono::duration<double>(Clock::now() - start).count();
  rpc.count = 0;
  start = Clock::now();
  rpc.deadline = start + duration;
  kj::Vector<kj::Promise<void>> lanes;
  for (int i = 0; i < config.depth; ++i) lanes.add(rpc.lane().eagerlyEvaluate(nullptr));
  kj::joinPromises(lanes.releaseAsArray()).wait(wait_scope);
  result.pipelined_per_s = rpc.count / std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

Result bench_rpc_shoal(const Config& config) {
  std::promise<uint> port_promise;
  auto port_future = port_promise.get_future();
  std::thread server([&]() {
    Loop loop;
    auto listener = TcpListener::listen(loop, "127.0.0.1", 0);
    KJ_ASSERT(listener.ok(), listener.status().to_string().c_str());
    port_promise.set_value(listener.value()->getPort());
    kj::Own<kj::AsyncIoStream> stream;
    capnp::TwoPartyServer rpc_server(kj::heap<PingServer>());
    loop.detach(listener.value()->accept().then([&](kj::Own<kj::AsyncIoStream> accepted) {
      stream = kj::mv(accepted);
      return rpc_server.accept(*stream).then([&]() { loop.stop(); });
    }));
    loop.run();
    stream = nullptr;
  });
  Result result;
  {
    Loop loop;
    auto stream = connect_tcp(loop, "127.0.0.1", static_cast<uint16_t>(port_future.get()))
                      .wait(loop.wait_scope());
    result = run_rpc_client(*stream, loop.wait_scope(), config);
    stream->shutdownWrite();
    loop.timer().afterDelay(1 * kj::MILLISECONDS).wait(loop.wait_scope());
  }
  server.join();
  return result;
}

Result bench_rpc_kj(const Config& config) {
  std::promise<uint> port_promise;
  auto port_future = port_promise.get_future();
  std::thread server([&]() {
    auto io = kj::setupAsyncIo();
    auto address = io.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io.waitScope);
    auto listener = address->listen();
    port_promise.set_value(listener->getPort());
    auto stream = listener->accept().wait(io.waitScope);
    capnp::TwoPartyServer rpc_server(kj::heap<PingServer>());
    rpc_server.accept(*stream).wait(io.waitScope);
  });
  Result result;
  {
    auto io = kj::setupAsyncIo();
    auto address = io.provider->getNetwork()
                       .parseAddress("127.0.0.1", port_future.get())
                       .wait(io.waitScope);
    auto stream = address->connect().wait(io.waitScope);
    result = run_rpc_client(*stream, io.waitScope, config);
    stream->shutdownWrite();
  }
  server.join();
  return result;
}

}  // namespace
}  // namespace shoal::loop

int main(int argc, char** argv) {
  shoal::loop::Config config;
  if (argc > 1) config.seconds = std::atof(argv[1]);
  if (argc > 2) config.message_bytes = static_cast<size_t>(std::atol(argv[2]));
  if (argc > 3) config.depth = std::atoi(argv[3]);
  std::string only = argc > 4 ? argv[4] : "";
  shoal::loop::Result shoal_result;
  shoal::loop::Result kj_result;
  if (only != "kj") shoal_result = shoal::loop::bench_shoal(config);
  if (only != "shoal") kj_result = shoal::loop::bench_kj(config);
  shoal::loop::Result rpc_shoal;
  shoal::loop::Result rpc_kj;
  if (only != "kj") rpc_shoal = shoal::loop::bench_rpc_shoal(config);
  if (only != "shoal") rpc_kj = shoal::loop::bench_rpc_kj(config);
  std::printf(
      "{\"bench\":\"loop_echo\",\"transport\":\"tcp loopback, two threads\","
      "\"seconds_per_case\":%.1f,\"message_bytes\":%zu,\"pipeline_depth\":%d,"
      "\"shoal_uv\":{\"sequential_rtt_per_s\":%.0f,\"pipelined_rtt_per_s\":%.0f},"
      "\"kj_native\":{\"sequential_rtt_per_s\":%.0f,\"pipelined_rtt_per_s\":%.0f},"
      "\"rpc_ping_shoal_uv\":{\"sequential_calls_per_s\":%.0f,\"pipelined_calls_per_s\":%.0f},"
      "\"rpc_ping_kj_native\":{\"sequential_calls_per_s\":%.0f,\"pipelined_calls_per_s\":%.0f}}\n",
      config.seconds, config.message_bytes, config.depth, shoal_result.sequential_per_s,
      shoal_result.pipelined_per_s, kj_result.sequential_per_s, kj_result.pipelined_per_s,
      rpc_shoal.sequential_per_s, rpc_shoal.pipelined_per_s, rpc_kj.sequential_per_s,
      rpc_kj.pipelined_per_s);
  return 0;
}
