// Serialization: round trips of every supported kind (ObjectRefs nested in
// values included), the compile-time concept, and hostile bytes: truncated,
// bit-flipped, random, bombs — always an error, never a crash.
#include "shoal/serialize.h"

#include <doctest/doctest.h>

#include <cstring>
#include <limits>
#include <random>

#include "shoal/api.h"
#include "task/wire.h"

using namespace shoal;

namespace serialize_test {

struct Point {
  int x = 0;
  double y = 0;
  std::string label;
  bool operator==(const Point&) const = default;
  MSGPACK_DEFINE(x, y, label);
};

struct Shape {
  std::vector<Point> points;
  std::map<std::string, std::optional<int>> tags;
  std::tuple<int, std::string> id;
  bool operator==(const Shape&) const = default;
  MSGPACK_DEFINE_MAP(points, tags, id);
};

enum class Color : uint8_t { kRed = 1, kGreen = 7 };
enum Plain { kA = -3, kB = 100000 };

struct WithRefs {
  ObjectRef<int> one;
  std::vector<ObjectRef<std::string>> many;
  MSGPACK_DEFINE(one, many);
};

struct NoDefine {
  int x;
};
struct NoDefault {
  explicit NoDefault(int v) : x(v) {}
  int x;
  MSGPACK_DEFINE(x);
};

}  // namespace serialize_test

using namespace serialize_test;

// The concept, at compile time.
static_assert(Serializable<int> && Serializable<const double> && Serializable<bool>);
static_assert(Serializable<std::string> && Serializable<std::vector<std::byte>>);
static_assert(Serializable<std::map<std::string, std::vector<std::optional<Point>>>>);
static_assert(Serializable<std::tuple<int, Shape, Color, Plain>> &&
              Serializable<std::array<int, 3>>);
static_assert(Serializable<ObjectRef<int>> && Serializable<std::vector<ObjectRef<Point>>>);
static_assert(!Serializable<int*> && !Serializable<const char*> && !Serializable<std::string_view>);
static_assert(!Serializable<NoDefine> && !Serializable<NoDefault>);
static_assert(!Serializable<std::vector<std::map<int, NoDefine>>>);
static_assert(std::is_same_v<detail::CulpritOf<std::vector<std::map<int, int*>>>::type, int*>);
static_assert(
    std::is_same_v<detail::CulpritOf<std::pair<int, std::optional<NoDefine>>>::type, NoDefine>);

template <typename T>
void check_round_trip(const T& value) {
  std::string bytes = serialize(value);
  Result<T> back = deserialize<T>(bytes);
  REQUIRE_MESSAGE(back.ok(), back.status().to_string());
  CHECK(*back == value);
}

TEST_CASE("serialize: round trips of std types, enums and user structs") {
  check_round_trip(0);
  check_round_trip(std::numeric_limits<int64_t>::min());
  check_round_trip(std::numeric_limits<uint64_t>::max());
  check_round_trip<int8_t>(-128);
  check_round_trip<uint16_t>(65535);
  check_round_trip(3.25);
  check_round_trip(1.5f);
  check_round_trip(true);
  check_round_trip(std::string());
  check_round_trip(std::string("with\0nul bytes", 14));
  check_round_trip(std::string(100'000, 'x'));
  check_round_trip(std::vector<int>{1, -2, 3});
  check_round_trip(std::vector<std::string>{"a", "", "ccc"});
  check_round_trip(std::vector<bool>{true, false, true});
  check_round_trip(std::vector<char>{'a', '\0', 'b'});
  check_round_trip(std::vector<std::byte>{std::byte{0}, std::byte{255}});
  check_round_trip(std::list<double>{1.0, 2.5});
  check_round_trip(std::deque<int>{4, 5});
  check_round_trip(std::array<int, 3>{7, 8, 9});
  check_round_trip(std::set<std::string>{"x", "y"});
  check_round_trip(std::multiset<int>{1, 1, 2});
  check_round_trip(std::unordered_set<int>{1, 2, 3});
  check_round_trip(std::map<int, std::string>{{1, "one"}, {2, "two"}});
  check_round_trip(std::multimap<int, int>{{1, 1}, {1, 2}});
  check_round_trip(std::unordered_map<std::string, std::vector<int>>{{"a", {1}}, {"b", {}}});
  check_round_trip(std::optional<int>());
  check_round_trip(std::optional<std::string>("set"));
  check_round_trip(std::pair<int, std::string>(1, "p"));
  check_round_trip(std::tuple<int, double, std::string, bool>(1, 2.5, "t", false));
  check_round_trip(std::tuple<>());
  check_round_trip(Color::kGreen);
  check_round_trip(Plain::kA);
  check_round_trip(std::map<Color, Plain>{{Color::kRed, kB}});
  check_round_trip(Point{1, 2.5, "p"});
  Shape shape{{{1, 2, "a"}, {3, 4, "b"}}, {{"k", 5}, {"none", std::nullopt}}, {9, "id"}};
  check_round_trip(shape);
  check_round_trip(std::vector<Shape>{shape, Shape{}});
}

TEST_CASE("serialize: ObjectRefs round trip inside values (id and owner), empty refs as nil") {
  // No runtime: the refs read back name the same objects but cannot be got.
  ObjectId id1 = ObjectId::for_task_return(TaskId{0x1122334455667788, 0x99aaull << 16}, 0);
  ObjectId id2 = ObjectId::for_put(TaskId{5, 6 << 16});
  auto ref1 = ObjectRef<int>(detail::adopt_ref(id1, "10.0.0.1:7400"));
  auto ref2 = ObjectRef<std::string>(detail::adopt_ref(id2, "local/abc"));

  WithRefs value{ref1, {ref2, ObjectRef<std::string>(), ref2}};
  detail::SerializedValue serialized = detail::serialize_value(value);
  CHECK(serialized.contained.refs.size() == 3);  // the empty one is not a reference
  Result<WithRefs> back = deserialize<WithRefs>(serialized.bytes);
  REQUIRE(back.ok());
  CHECK(back->one.id() == id1);
  CHECK(back->one.owner_address() == "10.0.0.1:7400");
  REQUIRE(back->many.size() == 3);
  CHECK(back->many[0].id() == id2);
  CHECK(back->many[0].owner_address() == "local/abc");
  CHECK(!back->many[1].valid());
  CHECK(back->many[2] == back->many[0]);
  CHECK_FALSE(id2.is_put() == false);
  CHECK(id1.task_id() == TaskId{0x1122334455667788, 0x99aaull << 16});

  // Refs of refs, and in maps.
  std::map<std::string, ObjectRef<ObjectRef<int>>> nested{
      {"k", ObjectRef<ObjectRef<int>>(ref1.state())}};
  auto nested_back = deserialize<decltype(nested)>(serialize(nested));
  REQUIRE(nested_back.ok());
  CHECK(nested_back->at("k").id() == id1);

  // Without a runtime, get() says so.
  CHECK_THROWS_AS(back->one.get(), Error);
  // A ref that is not ext type 17 is an error, not a crash.
  CHECK_FALSE(deserialize<ObjectRef<int>>(serialize(42)).ok());
  std::string bad_ext = "\xd4\x05\x01";  // fixext 1 of type 5
  CHECK(deserialize<ObjectRef<int>>(bad_ext).status().message().find("ext type 17") !=
        std::string::npos);
}

TEST_CASE("deserialize: wrong types and out-of-range numbers are errors naming the type") {
  Result<int> as_int = deserialize<int>(serialize(std::string("text")));
  REQUIRE_FALSE(as_int.ok());
  CHECK(as_int.status().code() == Status::Code::kInvalidArgument);
  CHECK(as_int.status().message().find("int") != std::string::npos);
  CHECK_FALSE(deserialize<uint8_t>(serialize(300)).ok());
  CHECK_FALSE(deserialize<int8_t>(serialize(-200)).ok());
  CHECK_FALSE(deserialize<uint32_t>(serialize(-1)).ok());
  CHECK_FALSE(deserialize<Point>(serialize(std::vector<std::string>{"x"})).ok());
  // msgpack-c fills missing trailing fields with their defaults (old writers, new readers).
  CHECK(deserialize<Point>(serialize(std::vector<int>{1})).value() == Point{1, 0, ""});
  CHECK_FALSE(deserialize<std::map<int, int>>(serialize(std::vector<int>{1, 2})).ok());
  CHECK_FALSE(deserialize<bool>(serialize(1)).ok());
  CHECK(deserialize<double>(serialize(3)).ok());  // ints widen to floating point
  CHECK(deserialize<int64_t>(serialize(int8_t{-5})).value() == -5);
}

TEST_CASE("deserialize: truncations, trailing bytes, reserved bytes and empty input") {
  Shape shape{{{1, 2, "a"}, {3, 4, std::string(300, 'b')}}, {{"k", 5}}, {9, "id"}};
  std::string bytes = serialize(shape);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    Result<Shape> r = deserialize<Shape>(std::string_view(bytes.data(), n));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
  }
  CHECK(deserialize<Shape>(bytes + '\x01').status().message().find("follow the value") !=
        std::string::npos);
  CHECK(deserialize<int>("\xc1").status().message().find("0xc1") != std::string::npos);
  CHECK(deserialize<int>("").status().message().find("empty") != std::string::npos);
}

TEST_CASE("deserialize: bombs are refused before anything is allocated") {
  // An array32 that claims 4 billion entries in 6 bytes.
  std::string array_bomb = std::string("\xdd\xff\xff\xff\xff", 5) + '\x01';
  Result<std::vector<int>> a = deserialize<std::vector<int>>(array_bomb);
  REQUIRE_FALSE(a.ok());
  CHECK(a.status().code() == Status::Code::kResourceExhausted);  // over the per-container limit
  // Under the limit but more entries than bytes.
  std::string claim = std::string("\xdd\x00\x10\x00\x00", 5) + std::string(100, '\x01');
  CHECK(deserialize<std::vector<int>>(claim).status().message().find("only 100 bytes") !=
        std::string::npos);
  // Maps: every entry needs two values.
  std::string map_claim = std::string("\xde\x00\x40", 3) + std::string(100, '\x01');
  CHECK_FALSE(deserialize<std::map<int, int>>(map_claim).ok());
  // A str32 announcing 4 GiB.
  std::string str_bomb = std::string("\xdb\xff\xff\xff\xff", 5) + "abc";
  CHECK(deserialize<std::string>(str_bomb).status().message().find("truncated") !=
        std::string::npos);
  // Nesting: 100 levels of one-element arrays.
  std::string deep(100, '\x91');
  deep += '\x01';
  Result<std::vector<int>> d = deserialize<std::vector<int>>(deep);
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().code() == Status::Code::kResourceExhausted);
  CHECK(d.status().message().find("nested") != std::string::npos);
  // Exactly at the depth limit is fine (as far as nesting goes).
  std::string at_limit(DeserializeLimits::kDepthMax, '\x91');
  at_limit += '\x01';
  CHECK(detail::validate_msgpack(at_limit, {}).ok());
  std::string over_limit(DeserializeLimits::kDepthMax + 1, '\x91');
  over_limit += '\x01';
  CHECK_FALSE(detail::validate_msgpack(over_limit, {}).ok());
  // Caller-chosen limits.
  DeserializeLimits small;
  small.bytes_max = 10;
  CHECK(deserialize<std::string>(serialize(std::string(20, 'x')), small).status().code() ==
        Status::Code::kResourceExhausted);
  small = DeserializeLimits{};
  small.container_elements_max = 3;
  CHECK(deserialize<std::vector<int>>(serialize(std::vector<int>{1, 2, 3, 4}), small)
            .status()
            .code() == Status::Code::kResourceExhausted);
  CHECK(deserialize<std::vector<int>>(serialize(std::vector<int>{1, 2, 3}), small).ok());
}

template <typename T>
int fuzz_one(std::string_view bytes) {
  Result<T> r = deserialize<T>(bytes);
  return r.ok() ? 1 : 0;
}

TEST_CASE("deserialize: 40,000 bit-flipped and random inputs never crash") {
  std::mt19937_64 rng(20240611);
  Shape shape{{{1, 2, "a"}, {-3, 4e10, "bb"}}, {{"k", 5}, {"n", std::nullopt}}, {9, "id"}};
  std::vector<std::string> seeds = {
      serialize(shape),
      serialize(std::map<std::string, std::vector<int>>{{"a", {1, 2, 3}}, {"b", {}}}),
      serialize(std::tuple<int, std::string, std::vector<double>>(7, "seven", {7.0, 0.7})),
      serialize(WithRefs{ObjectRef<int>(detail::adopt_ref(ObjectId{}, "x")), {}}),
  };
  int ok = 0;
  int attempts = 0;
  for (int round = 0; round < 10'000; ++round) {
    std::string bytes = seeds[round % seeds.size()];
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      std::size_t at = rng() % bytes.size();
      bytes[at] = static_cast<char>(bytes[at] ^ (1u << (rng() % 8)));
    }
    if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
    ok += fuzz_one<Shape>(bytes) + fuzz_one<std::map<std::string, std::vector<int>>>(bytes) +
          fuzz_one<std::tuple<int, std::string, std::vector<double>>>(bytes) +
          fuzz_one<WithRefs>(bytes);
    attempts += 4;
  }
  for (int round = 0; round < 10'000; ++round) {
    std::string bytes(1 + rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    ok += fuzz_one<std::vector<std::string>>(bytes) + fuzz_one<Point>(bytes);
    attempts += 2;
  }
  MESSAGE(ok << " of " << attempts << " mutated inputs still decoded");
  CHECK(ok < attempts);
}

TEST_CASE("wire: error records round trip; bad records are errors") {
  ErrorInfo error;
  error.kind = ErrorKind::kTaskException;
  error.code = Status::Code::kInternal;
  error.exception_type = "std::runtime_error";
  error.message = "boom";
  error.function = "add";
  error.task_id = TaskId{1, 2 << 16};
  error.node_id = "abcd";
  error.attempts = 3;
  std::string bytes = detail::encode_error_info(error);
  Result<ErrorInfo> back = detail::decode_error_info(bytes);
  REQUIRE(back.ok());
  CHECK(back->kind == error.kind);
  CHECK(back->exception_type == error.exception_type);
  CHECK(back->message == error.message);
  CHECK(back->task_id == error.task_id);
  CHECK(back->attempts == 3);
  CHECK(back->to_string().find("task add (") != std::string::npos);
  CHECK(back->to_string().find("threw std::runtime_error: boom") != std::string::npos);
  CHECK_FALSE(detail::decode_error_info(bytes.substr(0, bytes.size() - 1)).ok());
  const std::string e;
  const std::vector<char> none;
  CHECK_FALSE(detail::decode_error_info(
                  serialize(std::make_tuple(99, 0, e, e, e, std::vector<char>(16), e, 0, none)))
                  .ok());
  CHECK_FALSE(detail::decode_error_info(
                  serialize(std::make_tuple(1, 0, e, e, e, std::vector<char>(3), e, 0, none)))
                  .ok());
  CHECK_FALSE(detail::decode_error_info(
                  serialize(std::make_tuple(4, 0, e, e, e, std::vector<char>(16), e, 0, std::vector<char>(5))))
                  .ok());
  CHECK(detail::decode_error_info(serialize(std::make_tuple(4, 0, e, e, e, std::vector<char>(16), e, 0, none))).ok());
  // A lost object's id travels with its error.
  ErrorInfo lost;
  lost.kind = ErrorKind::kObjectLost;
  lost.code = Status::Code::kUnavailable;
  lost.object_id = ObjectId::for_task_return(TaskId{5, 6 << 16}, 0);
  Result<ErrorInfo> lost_back = detail::decode_error_info(detail::encode_error_info(lost));
  REQUIRE(lost_back.ok());
  CHECK(lost_back->kind == ErrorKind::kObjectLost);
  CHECK(lost_back->object_id == lost.object_id);
  CHECK(back->object_id.nil());
}

TEST_CASE("wire: find_object_refs lists the refs inside a value without reading it as a type") {
  ObjectId id1 = ObjectId::for_task_return(TaskId{7, 8 << 16}, 0);
  ObjectId id2 = ObjectId::for_put(TaskId{9, 10 << 16});
  auto ref1 = ObjectRef<int>(detail::adopt_ref(id1, "10.0.0.1:7400"));
  auto ref2 = ObjectRef<std::string>(detail::adopt_ref(id2, "127.0.0.1:9"));
  // Nested in a map, next to a large string (skipped, not copied), and twice.
  std::map<std::string, std::tuple<std::string, WithRefs>> value{
      {"a", {std::string(1 << 20, 'x'), WithRefs{ref1, {ref2, ObjectRef<std::string>(), ref2}}}}};
  std::string bytes = serialize(value);
  auto refs = detail::find_object_refs(bytes);
  REQUIRE(refs.ok());
  REQUIRE(refs->size() == 3);
  CHECK((*refs)[0] == std::make_pair(id1, std::string("10.0.0.1:7400")));
  CHECK((*refs)[1] == std::make_pair(id2, std::string("127.0.0.1:9")));
  CHECK((*refs)[2] == (*refs)[1]);

  CHECK(detail::find_object_refs(serialize(std::vector<int>{1, 2, 3}))->empty());
  // Other ext types are not refs.
  msgpack::sbuffer other;
  msgpack::packer<msgpack::sbuffer>(other).pack_ext(2, 5);
  msgpack::packer<msgpack::sbuffer>(other).pack_ext_body("ab", 2);
  CHECK(detail::find_object_refs(std::string_view(other.data(), other.size()))->empty());

  // Cut short, trailing bytes, a ref too short to hold an id: errors.
  CHECK_FALSE(detail::find_object_refs(std::string_view(bytes).substr(0, bytes.size() / 2)).ok());
  CHECK_FALSE(detail::find_object_refs(bytes + "\x01").ok());
  CHECK_FALSE(detail::find_object_refs("").ok());
  msgpack::sbuffer short_ref;
  msgpack::packer<msgpack::sbuffer>(short_ref).pack_ext(5, detail::kObjectRefExtType);
  msgpack::packer<msgpack::sbuffer>(short_ref).pack_ext_body("abcde", 5);
  CHECK_FALSE(detail::find_object_refs(std::string_view(short_ref.data(), short_ref.size())).ok());
  // Random bytes never crash it.
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    (void)detail::find_object_refs(junk);
  }
}
