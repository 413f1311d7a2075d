#include <doctest/doctest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/crypto.h"
#include "shoal/detail/copy.h"
#include "shoal/status.h"

using namespace shoal;

TEST_CASE("status carries code and message") {
  Status ok;
  CHECK(ok.ok());
  Status s = Status::unavailable("peer 127.0.0.1:7400 gone");
  CHECK(!s.ok());
  CHECK(s.to_string() == "unavailable: peer 127.0.0.1:7400 gone");
  Result<int> r = 5;
  CHECK(r.ok());
  CHECK(*r == 5);
  Result<int> e = Status::not_found("x");
  CHECK(!e.ok());
  CHECK(e.status().code() == Status::Code::kNotFound);
}

TEST_CASE("hmac-sha256 matches RFC 4231 test case 2") {
  Mac mac = hmac_sha256(as_bytes("Jefe"), as_bytes("what do ya want for nothing?"));
  CHECK(to_hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  Mac parts = hmac_sha256_parts(as_bytes("Jefe"), {as_bytes("what do ya "), as_bytes("want for nothing?")});
  CHECK(constant_time_equal(mac, parts));
}

TEST_CASE("crc32c matches the published check values, in pieces, on both paths") {
  CHECK(crc32c("") == 0);
  CHECK(crc32c("123456789") == 0xe3069283u);  // the standard check value
  CHECK(crc32c(std::string(32, '\0')) == 0x8a9136aau);  // RFC 3720 B.4
  CHECK(crc32c(std::string(32, '\xff')) == 0x62a8ab43u);
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 7 + 3));
  uint32_t whole = crc32c(data);
  for (std::size_t split : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    uint32_t first = crc32c_extend(0, data.data(), split);
    CHECK(crc32c_extend(first, data.data() + split, data.size() - split) == whole);
    CHECK(detail::crc32c_extend_portable(
              detail::crc32c_extend_portable(0, data.data(), split), data.data() + split,
              data.size() - split) == whole);
  }
  data[500] ^= 1;
  CHECK(crc32c(data) != whole);
}

TEST_CASE("hex round trip and bad hex") {
  auto r = from_hex("00ff10");
  REQUIRE(r.ok());
  CHECK(to_hex(as_bytes(*r)) == "00ff10");
  CHECK(!from_hex("abc").ok());
  CHECK(!from_hex("zz").ok());
}

TEST_CASE("seeded rng is reproducible and uniform is bounded") {
  SeededRng a(42), b(42), c(43);
  uint64_t x = a.next_u64();
  CHECK(x == b.next_u64());
  CHECK(x != c.next_u64());
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; i++) {
    uint64_t v = a.uniform(10);
    CHECK(v < 10);
    seen.insert(v);
  }
  CHECK(seen.size() == 10);
  double d = a.uniform_double();
  CHECK(d >= 0.0);
  CHECK(d < 1.0);
}

TEST_CASE("copy_bytes copies exactly, whatever the sizes and the alignments") {
  // Sizes below and above the streaming threshold (4 MiB), with tails that
  // are not a multiple of 64; destinations and sources at odd offsets.
  const std::vector<std::size_t> sizes = {0, 1, 63, 4096 + 7, (4u << 20) - 1, (4u << 20) + 65, (9u << 20) + 3};
  std::string src((10u << 20) + 128, '\0');
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<char>((i * 131 + (i >> 9)) & 0xff);
  std::vector<char> dst(src.size() + 128);
  for (std::size_t size : sizes) {
    for (std::size_t dst_at : {0u, 5u, 64u}) {
      for (std::size_t src_at : {0u, 3u}) {
        std::memset(dst.data(), 0x5a, dst.size());
        shoal::detail::copy_bytes(dst.data() + dst_at, src.data() + src_at, size);
        CHECK(std::memcmp(dst.data() + dst_at, src.data() + src_at, size) == 0);
        // Nothing written outside the range.
        for (std::size_t i = 0; i < dst_at; ++i) REQUIRE(dst[i] == 0x5a);
        CHECK(dst[dst_at + size] == 0x5a);
      }
    }
  }
}

TEST_CASE("append_bytes appends exactly, with or without room reserved") {
  std::string src((9u << 20) + 3, '\0');
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<char>((i * 97 + (i >> 11)) & 0xff);
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4096 + 7}, src.size()}) {
    for (bool reserved : {false, true}) {
      std::string out = "head!";  // a msgpack header's worth before the body
      if (reserved) out.reserve(out.size() + size);
      shoal::detail::append_bytes(out, src.data(), size);
      REQUIRE(out.size() == 5 + size);
      CHECK(out.compare(0, 5, "head!") == 0);
      CHECK(std::memcmp(out.data() + 5, src.data(), size) == 0);
      CHECK(out.c_str()[out.size()] == '\0');
    }
  }
}

TEST_CASE("resize_uninitialized keeps what was there and sets the size") {
  std::string out = "kept";
  shoal::detail::resize_uninitialized(out, 3u << 20);
  REQUIRE(out.size() == 3u << 20);
  CHECK(out.compare(0, 4, "kept") == 0);
  CHECK(out.c_str()[out.size()] == '\0');
  std::memset(out.data(), 'z', out.size());  // all of it is writable
  shoal::detail::resize_uninitialized(out, 2);
  CHECK(out == "zz");
}
