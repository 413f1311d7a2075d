#include "gossip/service.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "base/clock.h"
#include "base/crypto.h"

using namespace shoal;
using namespace shoal::gossip;

namespace {

const std::string kKey = "service test cluster key";
constexpr uint64_t kWaitMs = 10'000;

MemberInfo info_for(char c) {
  MemberInfo info;
  info.id = std::string(32, c);
  info.address = "127.0.0.1:1";  // fixed after start(), see Node
  info.total.cpus = 4;
  return info;
}

// Runs the loop until `done` holds or kWaitMs passes; returns done().
bool run_until(uv_loop_t* loop, const std::function<bool()>& done, uint64_t wait_ms = kWaitMs) {
  SystemClock clock;
  uint64_t deadline = clock.now_ms() + wait_ms;
  uv_timer_t wake;  // keeps UV_RUN_ONCE from blocking forever
  uv_timer_init(loop, &wake);
  uv_timer_start(&wake, [](uv_timer_t*) {}, 5, 5);
  while (!done() && clock.now_ms() < deadline) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return done();
}

// A service whose advertised address is its real ephemeral port: bind first
// on a probe socket to learn a free port, then start the service there.
struct Node {
  SystemClock clock;
  SeededRng rng;
  std::unique_ptr<GossipService> service;
  Node(uv_loop_t* loop, char c, uint64_t seed) : rng(seed) {
    for (int attempt = 0; attempt < 20 && !service; ++attempt) {
      int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
      struct sockaddr_in a {};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      socklen_t len = sizeof a;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
      ::close(fd);
      uint16_t port = ntohs(a.sin_port);
      MemberInfo info = info_for(c);
      info.address = "127.0.0.1:" + std::to_string(port);
      auto s = std::make_unique<GossipService>(loop, Config{}, info, clock.wall_now_ms(), kKey, clock, rng);
      if (s->start("127.0.0.1", port).ok()) service = std::move(s);
    }
    REQUIRE(service);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(service->port()); }
  bool sees(char c, MemberState state) const {
    const Member* m = service->find(std::string(32, c));
    return m != nullptr && m->state == state;
  }
};

void send_raw(uint16_t port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  ::sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::close(fd);
}

}  // namespace

TEST_CASE("three services join, share load, reject bad packets, and leave as kLeft") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Node a(&loop, 'a', 1), b(&loop, 'b', 2), c(&loop, 'c', 3);
    std::vector<MemberEvent> a_events;
    a.service->on_event([&](const MemberEvent& e) { a_events.push_back(e); });
    a.service->join({});
    b.service->join({a.address()});
    c.service->join({"localhost:" + std::to_string(a.service->port())});
    auto all_alive = [&] {
      for (Node* n : {&a, &b, &c}) {
        for (char x : {'a', 'b', 'c'}) {
          if (!n->sees(x, MemberState::kAlive)) return false;
        }
      }
      return true;
    };
    REQUIRE(run_until(&loop, all_alive));
    size_t joined = 0;
    for (const auto& e : a_events) joined += e.kind == MemberEvent::Kind::kJoined ? 1 : 0;
    CHECK(joined == 2);

    SUBCASE("a taken port is a clear error") {
      SystemClock clock;
      SeededRng rng(9);
      GossipService dup(&loop, Config{}, info_for('d'), 1, kKey, clock, rng);
      Status s = dup.start("127.0.0.1", a.service->port());
      REQUIRE(!s.ok());
      CHECK(s.message().find("already in use") != std::string::npos);
    }

    SUBCASE("load reaches the others") {
      Load load;
      load.available.cpus = 2.5;
      load.running_tasks = 3;
      b.service->set_local_load(load);
      REQUIRE(run_until(&loop, [&] {
        const Member* m = a.service->find(std::string(32, 'b'));
        return m && m->load.available.cpus == 2.5 && m->load.running_tasks == 3;
      }));
    }

    SUBCASE("probe_once: right key acked, wrong key ignored and counted") {
      Result<bool> right = false, wrong = false;
      bool finished = false;
      std::thread t([&] {
        right = probe_once(a.address(), as_bytes(kKey), 2'000);
        wrong = probe_once(a.address(), as_bytes("wrong key"), 300);
        finished = true;
      });
      run_until(&loop, [&] { return a.service->counters().dropped_bad_mac >= 1; });
      t.join();
      REQUIRE(right.ok());
      CHECK(*right);
      REQUIRE(wrong.ok());
      CHECK(!*wrong);
      CHECK(a.service->counters().dropped_bad_mac >= 1);
      CHECK(!probe_once("not-an-address", as_bytes(kKey), 10).ok());
    }

    SUBCASE("garbage and replays are dropped and counted") {
      uint64_t malformed = a.service->counters().dropped_malformed;
      send_raw(a.service->port(), "short");
      REQUIRE(run_until(&loop, [&] { return a.service->counters().dropped_malformed > malformed; }));
      send_raw(a.service->port(), "definitely not a gossip packet, but longer than a MAC");
      REQUIRE(run_until(&loop, [&] { return a.service->counters().dropped_bad_mac == 1; }));
      SystemClock clock;
      Packet p{{std::string(32, 'e'), 77, 5, clock.wall_now_ms()}, {Ping{9, ""}}};
      auto bytes = encode_packet(p, as_bytes(kKey));
      REQUIRE(bytes.ok());
      send_raw(a.service->port(), *bytes);
      send_raw(a.service->port(), *bytes);
      REQUIRE(run_until(&loop, [&] { return a.service->counters().dropped_replay >= 1; }));
      p.header.seq = 6;
      p.header.timestamp_ms -= 10 * kReplayWindowMs;
      auto old = encode_packet(p, as_bytes(kKey));
      REQUIRE(old.ok());
      send_raw(a.service->port(), *old);
      REQUIRE(run_until(&loop, [&] { return a.service->counters().dropped_replay >= 2; }));
      CHECK(a.service->counters().dropped_bad_mac == 1);
    }

    SUBCASE("leave shows kLeft everywhere, never kDead") {
      bool left_done = false;
      c.service->leave([&] {
        left_done = true;
        c.service->stop();
      });
      REQUIRE(run_until(&loop, [&] {
        return left_done && a.sees('c', MemberState::kLeft) && b.sees('c', MemberState::kLeft);
      }));
      // Stays kLeft (not declared dead by failed probes) for a few suspicion timeouts.
      run_until(&loop, [] { return false; }, 3 * Config{}.suspicion_min_ms);
      CHECK(a.sees('c', MemberState::kLeft));
      CHECK(b.sees('c', MemberState::kLeft));
      bool saw_left = false;
      for (const auto& e : a_events) {
        CHECK(e.kind != MemberEvent::Kind::kDead);
        saw_left |= e.kind == MemberEvent::Kind::kLeft;
      }
      CHECK(saw_left);
    }

    for (Node* n : {&a, &b, &c}) n->service->stop();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("start rejects a bad self info and a bad host") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  SystemClock clock;
  SeededRng rng(1);
  MemberInfo bad = info_for('a');
  bad.id = "short";
  GossipService s1(&loop, Config{}, bad, 1, kKey, clock, rng);
  Status st = s1.start("127.0.0.1", 0);
  CHECK(!st.ok());
  CHECK(st.message().find("member id") != std::string::npos);
  GossipService s2(&loop, Config{}, info_for('a'), 1, kKey, clock, rng);
  CHECK(!s2.start("no.such.host.invalid", 0).ok());
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

// The product targets on real sockets: 10 nodes on loopback. Times are
// reported, not asserted (tests never assert on wall-clock speed); the
// assertions are on the outcome.
TEST_CASE("ten services on loopback: join convergence and kill detection") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    SystemClock clock;
    std::vector<std::unique_ptr<Node>> nodes;
    for (int i = 0; i < 10; ++i) nodes.push_back(std::make_unique<Node>(&loop, static_cast<char>('0' + i), 100 + i));
    auto all_see = [&](size_t count, MemberState state, char who) {
      for (size_t i = 0; i < count; ++i) {
        if (!nodes[i]->service->running()) continue;
        for (size_t j = 0; j < count; ++j) {
          char c = who != 0 ? who : static_cast<char>('0' + j);
          if (who == 0 && !nodes[j]->service->running()) continue;
          if (!nodes[i]->sees(c, state)) return false;
        }
      }
      return true;
    };
    nodes[0]->service->join({});
    uint64_t worst_join_ms = 0;
    for (size_t i = 1; i < nodes.size(); ++i) {
      uint64_t start = clock.now_ms();
      nodes[i]->service->join({nodes[0]->address()});
      REQUIRE(run_until(&loop, [&] { return all_see(i + 1, MemberState::kAlive, 0); }));
      worst_join_ms = std::max(worst_join_ms, clock.now_ms() - start);
    }
    MESSAGE("10 nodes: slowest join until all see all: " << worst_join_ms << " ms");
    run_until(&loop, [] { return false; }, 500);
    uint64_t kill_ms = clock.now_ms();
    nodes[9]->service->stop();  // like kill -9: no leave
    REQUIRE(run_until(&loop, [&] { return all_see(9, MemberState::kDead, '9'); }));
    MESSAGE("10 nodes: killed node dead everywhere after " << clock.now_ms() - kill_ms << " ms");
    for (auto& n : nodes) n->service->stop();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  CHECK(uv_loop_close(&loop) == 0);
}
