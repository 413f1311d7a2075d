#include "task/bulk_channel.h"

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "loop/loop.h"

namespace shoal::detail {
namespace {

std::shared_ptr<std::string> random_value(size_t bytes, uint32_t seed) {
  auto value = std::make_shared<std::string>(bytes, '\0');
  std::mt19937 rng(seed);
  for (char& c : *value) c = static_cast<char>(rng());
  return value;
}

struct Fixture {
  loop::Loop loop;
  std::unique_ptr<BulkServer> server = std::make_unique<BulkServer>(loop, loop.timer(), 200);
  uint16_t port = 0;
  Fixture() {
    REQUIRE(server->listen("127.0.0.1").ok());
    port = server->port();
  }

  // Reads `length` bytes with `ticket`; the exception, if the read failed.
  kj::Maybe<kj::Exception> read(const std::string& ticket, std::string& into, uint64_t length,
                                std::shared_ptr<uint64_t> received) {
    into.assign(length, '\0');
    return kj::runCatchingExceptions([&]() {
      bulk_read(loop, "127.0.0.1", port, ticket, into.data(), length, received).wait(loop.wait_scope());
    });
  }
};

TEST_CASE("bulk channel: a ticket's bytes arrive intact, once, and the value is let go after") {
  Fixture f;
  auto value = random_value(3 << 20, 1);
  std::weak_ptr<std::string> watch = value;
  const uint64_t offset = 12345;
  auto ticket = f.server->issue(value, value->data() + offset, value->size() - offset);
  REQUIRE(ticket);
  CHECK(ticket->size() == kBulkTicketBytes);
  value.reset();
  CHECK_FALSE(watch.expired());  // the ticket pins it

  std::string got;
  auto received = std::make_shared<uint64_t>(0);
  CHECK(f.read(*ticket, got, (3 << 20) - offset, received) == nullptr);
  CHECK(*received == (3 << 20) - offset);
  CHECK(got == random_value(3 << 20, 1)->substr(offset));
  f.loop.timer().afterDelay(10 * kj::MILLISECONDS).wait(f.loop.wait_scope());
  CHECK(watch.expired());  // served: pin released
  CHECK(f.server->stats().streams_served == 1);
  CHECK(f.server->stats().bytes_served == (3 << 20) - offset);

  // The same ticket again: refused, nothing read.
  auto again = std::make_shared<uint64_t>(0);
  auto failed = f.read(*ticket, got, 16, again);
  REQUIRE(failed != nullptr);
  CHECK(*again == 0);
  CHECK(f.server->stats().refused == 1);
}

TEST_CASE("bulk channel: unknown and expired tickets are refused; expired pins are let go") {
  Fixture f;
  std::string got;
  auto received = std::make_shared<uint64_t>(0);
  CHECK(f.read(std::string(kBulkTicketBytes, 'x'), got, 8, received) != nullptr);
  CHECK(*received == 0);

  auto value = random_value(1 << 20, 2);
  std::weak_ptr<std::string> watch = value;
  auto ticket = f.server->issue(value, value->data(), value->size());
  REQUIRE(ticket);
  value.reset();
  f.loop.timer().afterDelay(300 * kj::MILLISECONDS).wait(f.loop.wait_scope());  // lifetime is 200 ms
  CHECK(f.read(*ticket, got, 1 << 20, received) != nullptr);
  CHECK(*received == 0);
  CHECK(watch.expired());
  CHECK(f.server->stats().refused == 2);
}

TEST_CASE("bulk channel: a connection that never sends its ticket is closed") {
  Fixture f;
  auto stream = loop::connect_tcp(f.loop, "127.0.0.1", f.port).wait(f.loop.wait_scope());
  char byte;
  // The server gives up after the ticket lifetime (200 ms here): EOF or reset.
  auto closed = kj::runCatchingExceptions([&]() {
    size_t n = stream->tryRead(&byte, 1, 1).wait(f.loop.wait_scope());
    CHECK(n == 0);
  });
  KJ_IF_MAYBE(e, closed) { CHECK(e->getType() == kj::Exception::Type::DISCONNECTED); }
}

TEST_CASE("bulk channel: outstanding tickets are bounded") {
  Fixture f;
  auto value = random_value(1024, 3);
  for (size_t i = 0; i < kBulkTicketsMax; ++i) REQUIRE(f.server->issue(value, value->data(), value->size()));
  CHECK_FALSE(f.server->issue(value, value->data(), value->size()));
}

TEST_CASE("bulk channel: a stream cut midway fails, and says how far it got") {
  auto value = random_value(64 << 20, 4);  // before the loop's clock starts: it takes a while
  Fixture f;
  auto ticket = f.server->issue(value, value->data(), value->size());
  REQUIRE(ticket);
  std::string into(value->size(), '\0');
  auto received = std::make_shared<uint64_t>(0);
  auto read = bulk_read(f.loop, "127.0.0.1", f.port, *ticket, into.data(), value->size(), received)
                  .eagerlyEvaluate(nullptr);
  // Let some bytes through, then the holder goes away.
  for (int i = 0; i < 5000 && *received == 0; ++i) {
    f.loop.timer().afterDelay(1 * kj::MILLISECONDS).wait(f.loop.wait_scope());
  }
  REQUIRE(*received > 0);
  f.server.reset();
  auto failed = kj::runCatchingExceptions([&]() { read.wait(f.loop.wait_scope()); });
  if (failed != nullptr) {
    CHECK(*received < value->size());
    CHECK(std::memcmp(into.data(), value->data(), *received) == 0);
  } else {
    // The kernel had taken every byte before the server went: all arrived.
    CHECK(*received == value->size());
    CHECK(into == *value);
  }
}

TEST_CASE("bulk channel: host_of") {
  CHECK(host_of("127.0.0.1:7400") == "127.0.0.1");
  CHECK(host_of("[::1]:7400") == "::1");
  CHECK(host_of("node.example:1") == "node.example");
  CHECK(host_of("no-port").empty());
  CHECK(host_of(":7400").empty());
  CHECK(host_of("[::1]").empty());
  CHECK(host_of("::1:7400").empty());  // unbracketed v6 is ambiguous
}

}  // namespace
}  // namespace shoal::detail
