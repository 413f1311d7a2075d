#include "loop/loop.h"

#include <doctest/doctest.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "loop/tcp.h"

namespace shoal::loop {
namespace {

struct Pair {
  kj::Own<TcpListener> listener;
  kj::Own<kj::AsyncIoStream> client;
  kj::Own<kj::AsyncIoStream> server;
};

// Connects a client to a fresh listener on 127.0.0.1 (KJ drives).
Pair make_pair(Loop& loop) {
  auto listener = TcpListener::listen(loop, "127.0.0.1", 0);
  REQUIRE(listener.ok());
  Pair pair;
  pair.listener = kj::mv(listener.value());
  auto accepted = pair.listener->accept();
  pair.client = connect_tcp(loop, "127.0.0.1", pair.listener->getPort()).wait(loop.wait_scope());
  pair.server = accepted.wait(loop.wait_scope());
  return pair;
}

std::string read_exactly(Loop& loop, kj::AsyncIoStream& stream, size_t n) {
  std::string out(n, '\0');
  size_t got = stream.tryRead(out.data(), n, n).wait(loop.wait_scope());
  out.resize(got);
  return out;
}

kj::Promise<void> echo(kj::AsyncIoStream& stream, kj::Array<kj::byte> buffer) {
  auto promise = stream.tryRead(buffer.begin(), 1, buffer.size());
  return promise.then([&stream, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    auto write = stream.write(buffer.begin(), n);
    return write.then([&stream, buffer = kj::mv(buffer)]() mutable {
      return echo(stream, kj::mv(buffer));
    });
  });
}

uint8_t pattern_byte(size_t i) { return static_cast<uint8_t>((i * 31 + 7) ^ (i >> 13)); }

}  // namespace

TEST_CASE("timers fire in deadline order, whatever the creation order") {
  Loop loop;
  auto& timer = loop.timer();
  std::vector<int> fired;
  auto start = timer.now();
  kj::Vector<kj::Promise<void>> promises;
  for (int delay_ms : {30, 10, 50, 20, 40}) {
    promises.add(timer.afterDelay(delay_ms * kj::MILLISECONDS).then([&fired, delay_ms]() {
      fired.push_back(delay_ms);
    }).eagerlyEvaluate(nullptr));  // joinPromises alone runs continuations at the end
  }
  kj::joinPromises(promises.releaseAsArray()).wait(loop.wait_scope());
  std::string order;
  for (int f : fired) order += std::to_string(f) + " ";
  const std::vector<int> expected{10, 20, 30, 40, 50};
  CHECK_MESSAGE(fired == expected, order);
  CHECK(timer.now() - start >= 50 * kj::MILLISECONDS);
}

TEST_CASE("a dropped timer promise never runs its callback") {
  Loop loop;
  bool ran = false;
  {
    auto dropped = loop.timer().afterDelay(5 * kj::MILLISECONDS).then([&ran]() { ran = true; });
  }
  bool later_ran = false;
  loop.timer().afterDelay(30 * kj::MILLISECONDS).then([&later_ran]() { later_ran = true; })
      .wait(loop.wait_scope());
  CHECK(later_ran);
  CHECK_FALSE(ran);
}

TEST_CASE("timers work when libuv drives") {
  Loop loop;
  std::vector<int> fired;
  for (int delay_ms : {20, 5, 10}) {
    loop.detach(loop.timer().afterDelay(delay_ms * kj::MILLISECONDS).then([&, delay_ms]() {
      fired.push_back(delay_ms);
      if (fired.size() == 3) loop.stop();
    }));
  }
  loop.run();
  CHECK(fired == std::vector<int>{5, 10, 20});
}

TEST_CASE("post() from several threads delivers everything, in order per thread") {
  Loop loop;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::vector<int>> seen(kThreads);
  int total = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&loop, &seen, &total, t]() {
      for (int i = 0; i < kPerThread; ++i) {
        for (;;) {
          Status status = loop.post([&loop, &seen, &total, t, i]() {
            seen[t].push_back(i);
            if (++total == kThreads * kPerThread) loop.stop();
          });
          if (status.ok()) break;
          REQUIRE(status.code() == Status::Code::kResourceExhausted);
          std::this_thread::yield();
        }
      }
    });
  }
  loop.run();
  for (auto& thread : threads) thread.join();
  CHECK(total == kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    REQUIRE(seen[t].size() == static_cast<size_t>(kPerThread));
    bool in_order = true;
    for (int i = 0; i < kPerThread; ++i) in_order = in_order && seen[t][i] == i;
    CHECK(in_order);
  }
}

TEST_CASE("post() is bounded and refused after shutdown began") {
  Loop loop;
  size_t ran = 0;
  for (size_t i = 0; i < kPostQueueMax; ++i) REQUIRE(loop.post([&ran]() { ++ran; }).ok());
  Status full = loop.post([]() {});
  CHECK(full.code() == Status::Code::kResourceExhausted);
  CHECK(full.message().find("kPostQueueMax") != std::string::npos);
  loop.timer().afterDelay(1 * kj::MILLISECONDS).wait(loop.wait_scope());
  CHECK(ran == kPostQueueMax);
  CHECK(loop.post([]() {}).ok());
  loop.begin_shutdown();
  CHECK(loop.post([]() {}).code() == Status::Code::kUnavailable);
}

TEST_CASE("cross-thread kj executor wakes the loop when libuv drives") {
  Loop loop;
  const kj::Executor& executor = kj::getCurrentThreadExecutor();
  std::atomic<int> value{0};
  std::thread other([&]() {
    executor.executeSync([&]() {
      value = 42;
      loop.stop();
    });
  });
  loop.run();
  other.join();
  CHECK(value == 42);
}

// Feeds the policy one wait for an event `gap_ns` away: a hit if the spin
// window covers it, else a miss followed by a block for the rest.
bool wait_for_event(BusyPollPolicy& policy, int64_t gap_ns) {
  if (policy.window_ns() >= gap_ns) {
    policy.on_spin_hit();
    return true;
  }
  policy.on_block(gap_ns - policy.window_ns());
  return false;
}

TEST_CASE("busy-poll policy: grows while events come within the bound, shrinks to zero when they do not") {
  BusyPollPolicy policy(100'000);
  CHECK(policy.window_ns() == 0);  // a fresh loop does not spin
  // Events 30 us apart: 0 -> 25 us -> 50 us, then every event is caught.
  CHECK_FALSE(wait_for_event(policy, 30'000));
  CHECK(policy.window_ns() == 25'000);
  CHECK_FALSE(wait_for_event(policy, 30'000));
  CHECK(policy.window_ns() == 50'000);
  for (int i = 0; i < 10; ++i) CHECK(wait_for_event(policy, 30'000));
  // Events 80 us apart: one more miss grows the window to the bound.
  CHECK_FALSE(wait_for_event(policy, 80'000));
  CHECK(policy.window_ns() == 100'000);
  CHECK(wait_for_event(policy, 80'000));
  // Events 1 ms apart: halves, then stops spinning, and stays off.
  CHECK_FALSE(wait_for_event(policy, 1'000'000));
  CHECK(policy.window_ns() == 50'000);
  CHECK_FALSE(wait_for_event(policy, 1'000'000));
  CHECK(policy.window_ns() == 25'000);
  CHECK_FALSE(wait_for_event(policy, 1'000'000));
  CHECK(policy.window_ns() == 0);
  for (int i = 0; i < 10; ++i) CHECK_FALSE(wait_for_event(policy, 1'000'000));
  CHECK(policy.window_ns() == 0);
  // A lower bound clamps the window; 0 turns spinning off for good.
  CHECK_FALSE(wait_for_event(policy, 10'000));
  CHECK(policy.window_ns() == 25'000);
  policy.set_max(20'000);
  CHECK(policy.window_ns() == 20'000);
  policy.set_max(0);
  CHECK(policy.window_ns() == 0);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(wait_for_event(policy, 1'000));
  CHECK(policy.window_ns() == 0);
}

TEST_CASE("busy poll: a loop woken only by timers milliseconds apart never spins") {
  Loop loop;
  loop.set_busy_poll_max_ns(100'000);
  for (int i = 0; i < 10; ++i) loop.timer().afterDelay(5 * kj::MILLISECONDS).wait(loop.wait_scope());
  BusyPollStats stats = loop.busy_poll_stats();
  CHECK(stats.blocks > 0);  // it did block, and each block was too long to spin for
  CHECK(stats.spin_hits == 0);
  CHECK(stats.spin_misses == 0);
  CHECK(stats.window_ns == 0);
}

// Another thread posts `count` callbacks, one every millisecond; the last
// stops the loop (libuv drives). Returns the order they ran in.
std::vector<int> run_paced_posts(Loop& loop, int count) {
  std::vector<int> ran;
  std::thread poster([&loop, &ran, count]() {
    for (int i = 0; i < count; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      REQUIRE(loop.post([&loop, &ran, i, count]() {
                    ran.push_back(i);
                    if (i + 1 == count) loop.stop();
                  })
                  .ok());
    }
  });
  loop.run();
  poster.join();
  return ran;
}

TEST_CASE("busy poll: a loop whose events come within the bound catches them while spinning") {
  Loop loop;
  // A bound far above the 1 ms pace: the window grows past it within a few
  // waits, after which posts arrive while the loop spins.
  loop.set_busy_poll_max_ns(50'000'000);
  loop.set_busy_poll_ignores_load(true);
  std::vector<int> ran = run_paced_posts(loop, 30);
  std::vector<int> expected(30);
  for (int i = 0; i < 30; ++i) expected[i] = i;
  CHECK(ran == expected);
  BusyPollStats stats = loop.busy_poll_stats();
  CHECK(stats.spin_hits > 0);
  CHECK(stats.window_ns > 0);
  // Timers still fire while the loop would spin for up to 50 ms.
  loop.timer().afterDelay(2 * kj::MILLISECONDS).wait(loop.wait_scope());
}

TEST_CASE("busy poll: a loop stops spinning while other threads want every CPU") {
  // More always-runnable threads than CPUs: a yield hands the CPU over.
  std::atomic<bool> stop{false};
  std::vector<std::thread> burners;
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < cpus + 2; ++i) {
    burners.emplace_back([&stop]() {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  }
  Loop loop;
  loop.set_busy_poll_max_ns(50'000'000);
  std::vector<int> ran = run_paced_posts(loop, 40);
  stop = true;
  for (auto& burner : burners) burner.join();
  CHECK(ran.size() == 40);
  BusyPollStats stats = loop.busy_poll_stats();
  // The window grew (waits of 1 ms are within the bound), but the loop saw
  // its CPU taken and blocked instead of spinning on.
  CHECK(stats.window_ns > 0);
  CHECK(stats.spins_preempted > 0);
  CHECK(stats.spins_skipped > 0);
}

TEST_CASE("busy poll: a loop does not spin while this process's workers could use the other CPUs") {
  Loop loop;
  loop.set_busy_poll_max_ns(50'000'000);
  note_cpu_work(1024);  // more busy workers than any machine has CPUs
  std::vector<int> ran = run_paced_posts(loop, 20);
  note_cpu_work(-1024);
  CHECK(ran.size() == 20);
  BusyPollStats stats = loop.busy_poll_stats();
  CHECK(stats.window_ns > 0);
  CHECK(stats.spins_skipped > 0);
  CHECK(stats.spin_hits == 0);
  CHECK(stats.spin_misses == 0);
}

TEST_CASE("busy poll: a bound of 0 never spins") {
  Loop loop;
  loop.set_busy_poll_max_ns(0);
  std::vector<int> ran = run_paced_posts(loop, 10);
  CHECK(ran.size() == 10);
  BusyPollStats stats = loop.busy_poll_stats();
  CHECK(stats.spin_hits + stats.spin_misses == 0);
  CHECK(stats.window_ns == 0);
}

TEST_CASE("connect, accept and echo a round trip (KJ drives)") {
  Loop loop;
  Pair pair = make_pair(loop);
  auto echo_task = echo(*pair.server, kj::heapArray<kj::byte>(4096)).eagerlyEvaluate(nullptr);
  for (int i = 0; i < 100; ++i) {
    std::string message = "ping " + std::to_string(i);
    pair.client->write(message.data(), message.size()).wait(loop.wait_scope());
    CHECK(read_exactly(loop, *pair.client, message.size()) == message);
  }
  uint value = 0;
  uint length = sizeof(value);
  pair.client->getsockopt(SOL_SOCKET, SO_SNDBUF, &value, &length);
  CHECK(value > 0);
  int nodelay = 0;
  length = sizeof(nodelay);
  pair.client->getsockopt(IPPROTO_TCP, TCP_NODELAY, &nodelay, &length);
  CHECK(nodelay != 0);
  sockaddr_storage peer{};
  uint peer_length = sizeof(peer);
  pair.server->getpeername(reinterpret_cast<sockaddr*>(&peer), &peer_length);
  CHECK(peer.ss_family == AF_INET);
  CHECK(pair.client->getFd() != nullptr);
  pair.client->shutdownWrite();
  echo_task.wait(loop.wait_scope());  // server sees EOF and stops
}

TEST_CASE("echo round trips when libuv drives (run + stop)") {
  Loop loop;
  auto listener = TcpListener::listen(loop, "localhost", 0);
  REQUIRE(listener.ok());
  kj::Own<kj::AsyncIoStream> server;
  kj::Own<kj::AsyncIoStream> client;
  int round_trips = 0;
  auto buffer = kj::heapArray<kj::byte>(16);
  loop.detach(listener.value()->accept().then([&](kj::Own<kj::AsyncIoStream> stream) {
    server = kj::mv(stream);
    return echo(*server, kj::heapArray<kj::byte>(1024));
  }));
  std::function<kj::Promise<void>()> ping = [&]() -> kj::Promise<void> {
    return client->write("abcd", 4)
        .then([&]() { return client->read(buffer.begin(), 4); })
        .then([&]() -> kj::Promise<void> {
          REQUIRE(memcmp(buffer.begin(), "abcd", 4) == 0);
          if (++round_trips == 1000) {
            loop.stop();
            return kj::READY_NOW;
          }
          return ping();
        });
  };
  loop.detach(connect_tcp(loop, "127.0.0.1", listener.value()->getPort())
                  .then([&](kj::Own<kj::AsyncIoStream> stream) {
                    client = kj::mv(stream);
                    return ping();
                  }));
  loop.run();
  CHECK(round_trips == 1000);
  client = nullptr;
  server = nullptr;
}

TEST_CASE("64 MiB written in one call arrive intact (libuv writes from the caller's buffer)") {
  Loop loop;
  Pair pair = make_pair(loop);
  constexpr size_t kBytes = 64u << 20;
  auto data = kj::heapArray<kj::byte>(kBytes);
  for (size_t i = 0; i < kBytes; ++i) data[i] = pattern_byte(i);
  bool write_done = false;
  auto writer = pair.client->write(data.begin(), data.size())
                    .then([&]() {
                      write_done = true;
                      pair.client->shutdownWrite();
                    })
                    .eagerlyEvaluate(nullptr);
  auto received = kj::heapArray<kj::byte>(kBytes + 1);
  size_t total = 0;
  size_t reads = 0;
  for (;;) {
    // Vary read sizes: small reads come from the buffer, big ones go direct.
    size_t want = (reads++ % 3 == 0) ? 1000 : (1u << 20);
    want = std::min(want, received.size() - total);
    size_t n = pair.server->tryRead(received.begin() + total, 1, want).wait(loop.wait_scope());
    if (n == 0) break;
    total += n;
  }
  writer.wait(loop.wait_scope());
  CHECK(write_done);
  REQUIRE(total == kBytes);
  CHECK(memcmp(received.begin(), data.begin(), kBytes) == 0);
}

TEST_CASE("small writes around a large multi-piece write arrive in order") {
  Loop loop;
  Pair pair = make_pair(loop);
  constexpr size_t kLarge = 8u << 20;
  auto large = kj::heapArray<kj::byte>(kLarge);
  for (size_t i = 0; i < kLarge; ++i) large[i] = pattern_byte(i);
  std::string head = "head:", middle = "|mid|", tail = ":tail";
  kj::ArrayPtr<const kj::byte> pieces[] = {
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(middle.data()), middle.size()),
      large.asPtr().slice(0, kLarge / 2), kj::ArrayPtr<const kj::byte>(),
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(middle.data()), middle.size()),
      large.asPtr().slice(kLarge / 2, kLarge)};
  uint64_t calls_before = loop.stream_write_calls();
  auto writes = pair.client->write(head.data(), head.size())
                    .then([&]() { return pair.client->write(kj::arrayPtr(pieces, 5)); })
                    .then([&]() { return pair.client->write(tail.data(), tail.size()); })
                    .eagerlyEvaluate(nullptr);
  std::string expected = head + middle;
  expected.append(reinterpret_cast<const char*>(large.begin()), kLarge / 2);
  expected += middle;
  expected.append(reinterpret_cast<const char*>(large.begin()) + kLarge / 2, kLarge / 2);
  expected += tail;
  std::string got = read_exactly(loop, *pair.server, expected.size());
  writes.wait(loop.wait_scope());
  CHECK(got.size() == expected.size());
  CHECK(got == expected);
  CHECK(loop.stream_write_calls() - calls_before >= 2);  // the head was corked, the large write was not
}

TEST_CASE("dropping a large write's promise midway closes the connection; the peer never gets other bytes") {
  Loop loop;
  Pair pair = make_pair(loop);
  constexpr size_t kBytes = 64u << 20;  // more than the socket buffers take while nobody reads
  auto data = kj::heapArray<kj::byte>(kBytes);
  for (size_t i = 0; i < kBytes; ++i) data[i] = pattern_byte(i);
  {
    auto pending = pair.client->write(data.begin(), data.size());
    CHECK_FALSE(pending.poll(loop.wait_scope()));
  }
  // libuv must not read the buffer any more: scribble over it, then free it.
  std::memset(data.begin(), 0xee, kBytes);
  data = nullptr;
  // The peer gets what the kernel took before the drop, then the end.
  auto received = kj::heapArray<kj::byte>(kBytes);
  size_t total = 0;
  for (bool ended = false; !ended && total < kBytes;) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  size_t n = pair.server->tryRead(received.begin() + total, 1, kBytes - total).wait(loop.wait_scope());
                  if (n == 0) ended = true;
                  total += n;
                })) {
      ended = true;  // DISCONNECTED is an end too
    }
  }
  CHECK(total > 0);
  CHECK(total < kBytes);
  size_t matching = 0;
  while (matching < total && received[matching] == pattern_byte(matching)) ++matching;
  CHECK(matching == total);
  // And the writer's stream is done for.
  CHECK_THROWS(pair.client->write("x", 1).wait(loop.wait_scope()));
}

namespace {

// Writes `count` small messages ("<prefix><i>;") one after another within
// one KJ run, reads them back on the peer, and returns how many writes the
// stream made for them; `bytes` gets their total size.
uint64_t write_small_messages(int count, const std::string& prefix, size_t& bytes) {
  Loop loop;
  Pair pair = make_pair(loop);
  std::string expected;
  std::vector<std::string> messages;
  messages.reserve(count);
  for (int i = 0; i < count; ++i) {
    messages.push_back(prefix + std::to_string(i) + ";");
    expected += messages.back();
  }
  kj::Promise<void> chain = kj::READY_NOW;
  for (auto& message : messages) {
    chain = chain.then([&]() { return pair.client->write(message.data(), message.size()); });
  }
  bytes = expected.size();
  uint64_t calls_before = loop.stream_write_calls();
  chain.wait(loop.wait_scope());
  CHECK(read_exactly(loop, *pair.server, expected.size()) == expected);
  return loop.stream_write_calls() - calls_before;
}

}  // namespace

TEST_CASE("many small writes in one turn are coalesced and arrive in order") {
  size_t bytes = 0;
  const uint64_t calls = write_small_messages(3000, "m", bytes);
  REQUIRE(bytes > 2 * kCorkEarlyFlushBytes);
  REQUIRE(bytes < kCorkFlushBytes);
  // All 3000 writes happened within one KJ run: two writes, one as soon as
  // kCorkEarlyFlushBytes were waiting (so the peer can start), the rest at
  // the end of the turn.
  CHECK(calls == 2);
}

TEST_CASE("a few small writes in one turn leave in one write at the end of the turn") {
  size_t bytes = 0;
  const uint64_t calls = write_small_messages(20, "message ", bytes);
  REQUIRE(bytes < kCorkEarlyFlushBytes);
  CHECK(calls == 1);
}

TEST_CASE("dropping a pending read loses no bytes; destroying the stream after is safe") {
  Loop loop;
  Pair pair = make_pair(loop);
  char buffer[64];
  {
    auto pending = pair.server->tryRead(buffer, 10, sizeof(buffer));
    CHECK_FALSE(pending.poll(loop.wait_scope()));
  }
  pair.client->write("hello", 5).wait(loop.wait_scope());
  loop.timer().afterDelay(5 * kj::MILLISECONDS).wait(loop.wait_scope());
  CHECK(read_exactly(loop, *pair.server, 5) == "hello");
  // Now a pending read dropped, then the stream destroyed, then data arrives.
  {
    auto pending = pair.server->tryRead(buffer, 10, sizeof(buffer));
    CHECK_FALSE(pending.poll(loop.wait_scope()));
  }
  pair.server = nullptr;
  pair.client->write("late bytes", 10).wait(loop.wait_scope());
  loop.timer().afterDelay(5 * kj::MILLISECONDS).wait(loop.wait_scope());
}

TEST_CASE("destroying a stream under a pending read rejects or drops it safely") {
  Loop loop;
  Pair pair = make_pair(loop);
  char buffer[16];
  auto pending = pair.server->tryRead(buffer, 1, sizeof(buffer));
  pair.server = nullptr;
  auto result = kj::mv(pending).then([](size_t) { return false; }, [](kj::Exception&&) {
    return true;
  });
  CHECK(result.wait(loop.wait_scope()));
}

TEST_CASE("a peer reset mid-message gives the reader DISCONNECTED, not a hang") {
  Loop loop;
  Pair pair = make_pair(loop);
  char buffer[100];
  auto pending = pair.server->tryRead(buffer, sizeof(buffer), sizeof(buffer));
  pair.client->write("partial", 7).wait(loop.wait_scope());
  loop.timer().afterDelay(5 * kj::MILLISECONDS).wait(loop.wait_scope());
  linger reset{1, 0};
  pair.client->setsockopt(SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  pair.client = nullptr;  // close with SO_LINGER 0: RST
  auto outcome = kj::mv(pending).then(
      [](size_t) { return kj::Exception::Type::OVERLOADED; },
      [](kj::Exception&& e) { return e.getType(); });
  CHECK(outcome.wait(loop.wait_scope()) == kj::Exception::Type::DISCONNECTED);
  // The write side notices too.
  auto disconnected = pair.server->whenWriteDisconnected();
  auto write = pair.server->write("x", 1).then([]() {}, [](kj::Exception&&) {});
  write.wait(loop.wait_scope());
  for (int i = 0; i < 20 && !disconnected.poll(loop.wait_scope()); ++i) {
    pair.server->write("x", 1).then([]() {}, [](kj::Exception&&) {}).wait(loop.wait_scope());
    loop.timer().afterDelay(2 * kj::MILLISECONDS).wait(loop.wait_scope());
  }
  CHECK(disconnected.poll(loop.wait_scope()));
}

TEST_CASE("whenWriteDisconnected does not resolve while the peer is alive") {
  Loop loop;
  Pair pair = make_pair(loop);
  auto disconnected = pair.client->whenWriteDisconnected();
  pair.client->write("abc", 3).wait(loop.wait_scope());
  CHECK(read_exactly(loop, *pair.server, 3) == "abc");
  pair.server->shutdownWrite();  // half-close by the peer is not a disconnect
  loop.timer().afterDelay(10 * kj::MILLISECONDS).wait(loop.wait_scope());
  CHECK_FALSE(disconnected.poll(loop.wait_scope()));
}

TEST_CASE("half-close: shutdownWrite gives the peer EOF while the other direction works") {
  Loop loop;
  Pair pair = make_pair(loop);
  pair.client->write("last words", 10).wait(loop.wait_scope());
  pair.client->shutdownWrite();
  char buffer[64];
  size_t n = pair.server->tryRead(buffer, sizeof(buffer), sizeof(buffer)).wait(loop.wait_scope());
  CHECK(std::string(buffer, n) == "last words");  // short read: EOF
  CHECK(pair.server->tryRead(buffer, 1, sizeof(buffer)).wait(loop.wait_scope()) == 0);
  pair.server->write("reply", 5).wait(loop.wait_scope());
  CHECK(read_exactly(loop, *pair.client, 5) == "reply");
  auto write_after_shutdown = pair.client->write("x", 1).then([]() { return false; },
                                                              [](kj::Exception&&) { return true; });
  CHECK(write_after_shutdown.wait(loop.wait_scope()));
}

TEST_CASE("abortRead rejects the pending read and later reads; writes still work") {
  Loop loop;
  Pair pair = make_pair(loop);
  char buffer[16];
  auto pending = pair.server->tryRead(buffer, 1, sizeof(buffer));
  pair.server->abortRead();
  auto outcome = kj::mv(pending).then([](size_t) { return kj::Exception::Type::OVERLOADED; },
                                      [](kj::Exception&& e) { return e.getType(); });
  CHECK(outcome.wait(loop.wait_scope()) == kj::Exception::Type::DISCONNECTED);
  auto again = pair.server->tryRead(buffer, 1, sizeof(buffer))
                   .then([](size_t) { return false; }, [](kj::Exception&&) { return true; });
  CHECK(again.wait(loop.wait_scope()));
  pair.server->write("still", 5).wait(loop.wait_scope());
  CHECK(read_exactly(loop, *pair.client, 5) == "still");
}

TEST_CASE("writing to a peer that closed fails with DISCONNECTED, not SIGPIPE") {
  Loop loop;
  Pair pair = make_pair(loop);
  pair.client = nullptr;
  loop.timer().afterDelay(5 * kj::MILLISECONDS).wait(loop.wait_scope());
  bool failed = false;
  for (int i = 0; i < 50 && !failed; ++i) {
    failed = pair.server->write("data", 4)
                 .then([]() { return false; },
                       [](kj::Exception&& e) {
                         return e.getType() == kj::Exception::Type::DISCONNECTED;
                       })
                 .wait(loop.wait_scope());
    loop.timer().afterDelay(1 * kj::MILLISECONDS).wait(loop.wait_scope());
  }
  CHECK(failed);
}

TEST_CASE("connect refused gives a clear DISCONNECTED error") {
  Loop loop;
  uint port = 0;
  {
    auto listener = TcpListener::listen(loop, "127.0.0.1", 0);
    REQUIRE(listener.ok());
    port = listener.value()->getPort();
  }
  loop.timer().afterDelay(1 * kj::MILLISECONDS).wait(loop.wait_scope());
  auto outcome = connect_tcp(loop, "127.0.0.1", static_cast<uint16_t>(port))
                     .then([](kj::Own<kj::AsyncIoStream>) { return std::string("connected"); },
                           [](kj::Exception&& e) {
                             CHECK(e.getType() == kj::Exception::Type::DISCONNECTED);
                             return std::string(e.getDescription().cStr());
                           });
  std::string message = outcome.wait(loop.wait_scope());
  CHECK(message.find("refused") != std::string::npos);
  CHECK(message.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
}

TEST_CASE("bad host and address in use are clear errors") {
  Loop loop;
  auto bad = TcpListener::listen(loop, "not-an-ip", 0);
  CHECK(bad.status().code() == Status::Code::kInvalidArgument);
  auto first = TcpListener::listen(loop, "127.0.0.1", 0);
  REQUIRE(first.ok());
  uint16_t port = static_cast<uint16_t>(first.value()->getPort());
  auto second = TcpListener::listen(loop, "127.0.0.1", port);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == Status::Code::kUnavailable);
  CHECK(second.status().message().find("in use") != std::string::npos);
  auto outcome = connect_tcp(loop, "example.com", 80)
                     .then([](kj::Own<kj::AsyncIoStream>) { return false; },
                           [](kj::Exception&&) { return true; });
  CHECK(outcome.wait(loop.wait_scope()));
}

TEST_CASE("IPv6 loopback works") {
  Loop loop;
  auto listener = TcpListener::listen(loop, "::1", 0);
  if (!listener.ok()) {
    MESSAGE("no IPv6 loopback here: " << listener.status().to_string());
    return;
  }
  auto accepted = listener.value()->accept();
  auto client = connect_tcp(loop, "[::1]", static_cast<uint16_t>(listener.value()->getPort()))
                    .wait(loop.wait_scope());
  auto server = accepted.wait(loop.wait_scope());
  client->write("six", 3).wait(loop.wait_scope());
  CHECK(read_exactly(loop, *server, 3) == "six");
}

TEST_CASE("bytes written right before destroying a stream still reach the peer") {
  Loop loop;
  Pair pair = make_pair(loop);
  // Small kernel buffers so that most bytes are still in the stream's own
  // buffer (kWriteBufferedBytesMax) when it is destroyed: they must linger.
  int small = 32 * 1024;
  pair.client->setsockopt(SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  pair.server->setsockopt(SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  constexpr size_t kBytes = 3u << 20;  // fits the write bound: corked writes resolve at once
  static_assert(kBytes < kWriteBufferedBytesMax);
  auto data = kj::heapArray<kj::byte>(kBytes);
  for (size_t i = 0; i < kBytes; ++i) data[i] = pattern_byte(i);
  constexpr size_t kPiece = kDirectWriteBytes / 2;  // small enough to be corked
  for (size_t at = 0; at < kBytes; at += kPiece) {
    pair.client->write(data.begin() + at, std::min(kPiece, kBytes - at)).wait(loop.wait_scope());
  }
  pair.client = nullptr;
  auto received = kj::heapArray<kj::byte>(kBytes);
  size_t n = pair.server->tryRead(received.begin(), kBytes, kBytes).wait(loop.wait_scope());
  REQUIRE(n == kBytes);
  CHECK(memcmp(received.begin(), data.begin(), kBytes) == 0);
  char extra;
  CHECK(pair.server->tryRead(&extra, 1, 1).wait(loop.wait_scope()) == 0);
}

TEST_CASE("destroying the Loop with a connect in flight and detached tasks is clean") {
  Loop loop;
  auto listener = TcpListener::listen(loop, "127.0.0.1", 0);
  REQUIRE(listener.ok());
  loop.detach(listener.value()->accept().ignoreResult());
  loop.detach(connect_tcp(loop, "127.0.0.1", static_cast<uint16_t>(listener.value()->getPort()))
                  .then([](kj::Own<kj::AsyncIoStream> stream) {
                    return stream->whenWriteDisconnected().attach(kj::mv(stream));
                  }));
  loop.detach(loop.timer().afterDelay(10 * kj::SECONDS));
  loop.timer().afterDelay(5 * kj::MILLISECONDS).wait(loop.wait_scope());
  // ~Loop cancels the tasks, closes the listener's accepted stream etc.
  // (The listener itself must go first: it is not owned by a task.)
  listener.value() = kj::Own<TcpListener>();
}

}  // namespace shoal::loop
