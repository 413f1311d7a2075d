#include "task/flat_json.h"

#include <doctest/doctest.h>

namespace shoal::detail {

TEST_CASE("flat_json round-trips strings with escapes") {
  std::string text = flat_json({{"name", "a \"quoted\"\\ name\n"}, {"ctl", std::string("\x01", 1)}, {"empty", ""}});
  auto parsed = parse_flat_json(text);
  REQUIRE(parsed.ok());
  CHECK(parsed->at("name") == "a \"quoted\"\\ name\n");
  CHECK(parsed->at("ctl") == std::string("\x01", 1));
  CHECK(parsed->at("empty").empty());
  CHECK(parsed->size() == 3);
}

TEST_CASE("parse_flat_json keeps literals as text and refuses bad input") {
  auto parsed = parse_flat_json(R"( {"n": 42, "b": true, "s": "x\u00e9"} )");
  REQUIRE(parsed.ok());
  CHECK(parsed->at("n") == "42");
  CHECK(parsed->at("b") == "true");
  CHECK(parsed->at("s") == "x\xc3\xa9");
  for (const char* bad : {"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":\"b\",}", "{\"a\":{\"b\":1}}", "[1]",
                          "{\"a\":\"b\"} x", "{\"a\":\"\\q\"}", "{\"a\":\"unterminated}"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_flat_json(bad).ok());
  }
}

}  // namespace shoal::detail
