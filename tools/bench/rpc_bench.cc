// rpc_bench: Cap'n Proto RPC no-op round trips (Node.ping) between two
// processes on loopback, over shoal's libuv loop with authentication done,
// sequential and with 64 calls in flight. Baselines in the same run: a plain
// TCP ping-pong of 8-byte messages between two processes, once with blocking
// reads and once polling like shoal's loops do (a non-blocking read retried,
// yielding the CPU, for up to the loops' busy-poll bound before blocking; see
// src/loop/busy_poll.h). Prints one JSON object.
//
//   rpc_bench [seconds_per_case=3] [depth=64]
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/assert.h"
#include "base/clock.h"
#include "base/log.h"
#include "loop/loop.h"
#include "loop/tcp.h"
#include "rpc/client.h"
#include "rpc/server.h"

namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr std::string_view kSecret = "rpc-bench-secret-rpc-bench-secret";

class PingNode final : public shoal::rpc::Node::Server {
 protected:
  kj::Promise<void> ping(PingContext context) override {
    context.getResults().setValue(context.getParams().getValue() + 1);
    return kj::READY_NOW;
  }
};

// Child: serves RPC on an ephemeral port, writes the port to `fd`, runs forever.
[[noreturn]] void serve_rpc(int fd) {
  shoal::loop::Loop loop;
  auto listener = shoal::loop::TcpListener::listen(loop, "127.0.0.1", 0);
  SHOAL_ASSERT(listener.ok(), listener.status().to_string());
  shoal::rpc::RpcServer server(loop.timer(), std::string(kSecret),
                               []() -> shoal::rpc::Node::Client { return kj::heap<PingNode>(); });
  auto task = server.listen(**listener).eagerlyEvaluate(nullptr);
  uint16_t port = static_cast<uint16_t>((*listener)->getPort());
  SHOAL_ASSERT(::write(fd, &port, sizeof(port)) == sizeof(port));
  ::close(fd);
  loop.run();
  std::_Exit(0);
}

double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// The TCP baseline's busy poll, set before the echo server forks (0: plain
// blocking reads).
int64_t g_spin_ns = 0;

// One read of at most n bytes from a blocking socket; with g_spin_ns, first
// retries a non-blocking read for that long, yielding between tries.
ssize_t read_some(int fd, char* buf, size_t n) {
  if (g_spin_ns > 0) {
    auto start = SteadyClock::now();
    do {
      ssize_t r = ::recv(fd, buf, n, MSG_DONTWAIT);
      if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return r;
      ::sched_yield();
    } while (SteadyClock::now() - start < std::chrono::nanoseconds(g_spin_ns));
  }
  return ::read(fd, buf, n);
}

struct RpcResult {
  double sequential_per_s;
  double pipelined_per_s;
};

kj::Promise<void> ping_chain(shoal::rpc::Node::Client node, SteadyClock::time_point deadline,
                             uint64_t& count) {
  auto request = node.pingRequest();
  request.setValue(count);
  return request.send().then([node, deadline, &count](auto) mutable -> kj::Promise<void> {
    count++;
    if (SteadyClock::now() >= deadline) return kj::READY_NOW;
    return ping_chain(kj::mv(node), deadline, count);
  });
}

RpcResult bench_rpc(uint16_t port, double seconds, int depth) {
  shoal::loop::Loop loop;
  auto& ws = loop.wait_scope();
  auto connection = shoal::loop::connect_tcp(loop, "127.0.0.1", port)
                        .then([](kj::Own<kj::AsyncIoStream> stream) {
                          return shoal::rpc::connect_authenticated(kj::mv(stream), std::string(kSecret));
                        })
                        .wait(ws);
  shoal::rpc::Node::Client node = connection->node();
  RpcResult result{};

  // Warm up, then sequential: one call at a time.
  uint64_t warm = 0;
  ping_chain(node, SteadyClock::now() + std::chrono::milliseconds(300), warm).wait(ws);
  uint64_t count = 0;
  auto start = SteadyClock::now();
  ping_chain(node, start + std::chrono::duration_cast<SteadyClock::duration>(
                               std::chrono::duration<double>(seconds)),
             count)
      .wait(ws);
  result.sequential_per_s = count / seconds_since(start);

  // Pipelined: `depth` chains keep that many calls in flight.
  uint64_t pipelined = 0;
  start = SteadyClock::now();
  auto deadline = start + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
  kj::Vector<kj::Promise<void>> chains;
  for (int i = 0; i < depth; i++) chains.add(ping_chain(node, deadline, pipelined));
  kj::joinPromises(chains.releaseAsArray()).wait(ws);
  result.pipelined_per_s = pipelined / seconds_since(start);
  return result;
}

// Baseline child: echoes 8-byte messages on a blocking socket.
[[noreturn]] void serve_tcp_echo(int fd) {
  int listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  SHOAL_ASSERT(::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  SHOAL_ASSERT(::listen(listen_fd, 4) == 0);
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  uint16_t port = ntohs(addr.sin_port);
  SHOAL_ASSERT(::write(fd, &port, sizeof(port)) == sizeof(port));
  ::close(fd);
  for (;;) {
    int c = ::accept(listen_fd, nullptr, nullptr);
    if (c < 0) continue;
    int one = 1;
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char buf[8 * 64];
    for (;;) {
      ssize_t n = read_some(c, buf, sizeof(buf));
      if (n <= 0) break;
      if (::write(c, buf, static_cast<size_t>(n)) != n) break;
    }
    ::close(c);
  }
}

bool read_full(int fd, char* buf, size_t n, bool socket = true) {
  while (n > 0) {
    ssize_t r = socket ? read_some(fd, buf, n) : ::read(fd, buf, n);
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

RpcResult bench_tcp(uint16_t port, double seconds, int depth) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  SHOAL_ASSERT(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  char msg[8] = {};
  RpcResult result{};
  uint64_t count = 0;
  auto start = SteadyClock::now();
  while (seconds_since(start) < seconds) {
    for (int i = 0; i < 100; i++) {
      SHOAL_ASSERT(::write(fd, msg, 8) == 8);
      SHOAL_ASSERT(read_full(fd, msg, 8));
    }
    count += 100;
  }
  result.sequential_per_s = count / seconds_since(start);
  // Pipelined: keep `depth` messages outstanding.
  count = 0;
  for (int i = 0; i < depth; i++) SHOAL_ASSERT(::write(fd, msg, 8) == 8);
  start = SteadyClock::now();
  while (seconds_since(start) < seconds) {
    for (int i = 0; i < 100; i++) {
      SHOAL_ASSERT(read_full(fd, msg, 8));
      SHOAL_ASSERT(::write(fd, msg, 8) == 8);
    }
    count += 100;
  }
  result.pipelined_per_s = count / seconds_since(start);
  ::close(fd);
  return result;
}

pid_t fork_server(void (*serve)(int), uint16_t& port) {
  int fds[2];
  SHOAL_ASSERT(::pipe(fds) == 0);
  pid_t pid = ::fork();
  SHOAL_ASSERT(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    serve(fds[1]);
  }
  ::close(fds[1]);
  SHOAL_ASSERT(read_full(fds[0], reinterpret_cast<char*>(&port), sizeof(port), /*socket=*/false));
  ::close(fds[0]);
  return pid;
}

void stop_server(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  int depth = argc > 2 ? std::atoi(argv[2]) : 64;
  if (seconds <= 0 || depth <= 0) {
    std::fprintf(stderr, "usage: rpc_bench [seconds_per_case>0] [depth>0]\n");
    return 2;
  }
  (void)shoal::set_log_level("warn");

  uint16_t port = 0;
  pid_t tcp_pid = fork_server(serve_tcp_echo, port);
  RpcResult tcp = bench_tcp(port, seconds, depth);
  stop_server(tcp_pid);

  // SHOAL_BUSY_POLL_US or the default, as the RPC loops below use.
  g_spin_ns = shoal::loop::default_busy_poll_max_ns();
  RpcResult tcp_spin{};
  if (g_spin_ns > 0) {
    tcp_pid = fork_server(serve_tcp_echo, port);
    tcp_spin = bench_tcp(port, seconds, depth);
    stop_server(tcp_pid);
  }

  pid_t rpc_pid = fork_server(serve_rpc, port);
  RpcResult rpc = bench_rpc(port, seconds, depth);
  stop_server(rpc_pid);

  std::printf(
      "{\"benchmark\":\"rpc\",\"seconds_per_case\":%.1f,\"depth\":%d,"
      "\"rpc_sequential_per_s\":%.0f,\"rpc_pipelined_per_s\":%.0f,"
      "\"baseline_tcp_sequential_per_s\":%.0f,\"baseline_tcp_pipelined_per_s\":%.0f,"
      "\"busy_poll_us\":%.0f,"
      "\"baseline_tcp_busy_poll_sequential_per_s\":%.0f,\"baseline_tcp_busy_poll_pipelined_per_s\":%.0f,"
      "\"targets\":{\"rpc_sequential_per_s\":25000,\"rpc_pipelined_per_s\":100000}}\n",
      seconds, depth, rpc.sequential_per_s, rpc.pipelined_per_s, tcp.sequential_per_s,
      tcp.pipelined_per_s, static_cast<double>(g_spin_ns) / 1000.0, tcp_spin.sequential_per_s,
      tcp_spin.pipelined_per_s);
  return 0;
}
