#include "cli/config_file.h"

#include <doctest/doctest.h>

namespace shoal::cli {
namespace {

std::vector<ConfigEntry> parse_ok(std::string_view text) {
  auto entries = parse_config(text, "f.toml");
  INFO(entries.status().message());
  REQUIRE(entries.ok());
  return *entries;
}

std::string parse_error(std::string_view text) {
  auto entries = parse_config(text, "f.toml");
  REQUIRE(!entries.ok());
  return entries.status().message();
}

TEST_CASE("scalars, arrays, sections and comments, with line numbers") {
  auto entries = parse_ok(
      "# shoal\n"
      "port = 7400   # comment\n"
      "\n"
      "bind = \"0.0.0.0\"\n"
      "cpus = 2.5\n"
      "[start]\n"
      "join = [\"10.0.0.1:7400\",\n"
      "        '10.0.0.2:7400', # second\n"
      "]\n"
      "data_dir = 'C:\\x'\n"
      "flag = true\n"
      "neg = -1_000\n");
  REQUIRE(entries.size() == 7);
  CHECK(entries[0].key == "port");
  CHECK(entries[0].line == 2);
  CHECK(entries[0].kind == ConfigKind::kInteger);
  CHECK(entries[0].values == std::vector<std::string>{"7400"});
  CHECK(entries[1].kind == ConfigKind::kString);
  CHECK(entries[1].values[0] == "0.0.0.0");
  CHECK(entries[2].kind == ConfigKind::kFloat);
  CHECK(entries[3].section == "start");
  CHECK(entries[3].line == 7);
  CHECK(entries[3].kind == ConfigKind::kArray);
  CHECK(entries[3].element_kind == ConfigKind::kString);
  CHECK(entries[3].values == std::vector<std::string>{"10.0.0.1:7400", "10.0.0.2:7400"});
  CHECK(entries[4].line == 10);
  CHECK(entries[4].values[0] == "C:\\x");
  CHECK(entries[5].kind == ConfigKind::kBoolean);
  CHECK(entries[6].values[0] == "-1000");
}

TEST_CASE("escapes in basic strings") {
  auto entries = parse_ok("a = \"x\\\"y\\\\z\\u00e9\\n\"\n");
  CHECK(entries[0].values[0] == "x\"y\\z\xc3\xa9\n");
}

TEST_CASE("errors name the file and line") {
  CHECK(parse_error("port = 1\nbind = 127.0.0.1\n") ==
        "f.toml:2: '127.0.0.1' is not a value: strings need quotes (\"127.0.0.1\")");
  CHECK(parse_error("a = 1\n\na = 2\n") == "f.toml:3: 'a' is set twice");
  CHECK(parse_error("a = \"open\n") == "f.toml:1: unterminated string");
  CHECK(parse_error("x\n") == "f.toml:1: expected '=' after the key 'x'");
  CHECK(parse_error("a = 1 2\n") == "f.toml:1: unexpected '2' after the value");
  CHECK(parse_error("a = [1, \"x\"]\n") ==
        "f.toml:1: 'a' mixes an integer and a string in one array");
  CHECK(parse_error("a = {b = 1}\n") == "f.toml:1: inline tables ({...}) are not supported");
  CHECK(parse_error("a.b = 1\n") ==
        "f.toml:1: dotted keys such as 'a.…' are not supported; use a [section]");
  CHECK(parse_error("[[x]]\n") == "f.toml:1: arrays of tables ([[...]]) are not supported");
  CHECK(parse_error("a = [\n1,\n") == "f.toml:3: unterminated array for 'a'");
  CHECK(parse_error("a = [[1]]\n") == "f.toml:1: nested arrays are not supported ('a')");
  CHECK(parse_error("a =\n") == "f.toml:1: expected a value, found 'end of line'");
  CHECK(parse_error("[s]\n[s]\n") == "f.toml:2: table [s] appears twice");
  CHECK(parse_error("a = \"\\q\"\n") == "f.toml:1: unknown escape \\q in a string");
}

TEST_CASE("random bytes never crash the parser and errors always name a line") {
  // Deterministic garbage built from the characters TOML cares about.
  using namespace std::literals;
  constexpr std::string_view kAlphabet =
      "ab_-=[]{}\"'\\#,.\n\r\t 0123456789+eEtrufalsn\x00\xc3\xa9u"sv;
  uint64_t state = 42;
  auto next = [&state]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  for (int round = 0; round < 5000; round++) {
    std::string text;
    size_t length = next() % 64;
    for (size_t i = 0; i < length; i++) text += kAlphabet[next() % kAlphabet.size()];
    auto entries = parse_config(text, "f.toml");
    if (!entries.ok()) {
      INFO(text);
      CHECK(entries.status().message().rfind("f.toml:", 0) == 0);
    }
  }
}

TEST_CASE("an unreadable file is named") {
  auto entries = read_config_file("/nonexistent/shoal.toml");
  REQUIRE(!entries.ok());
  CHECK(entries.status().message() ==
        "/nonexistent/shoal.toml: cannot read the config file: No such file or directory");
}

}  // namespace
}  // namespace shoal::cli
