// The TOML subset `shoal start --config FILE` reads, parsed with line numbers
// so that every error names the file, the line and the key.
//
// Accepted: comments, `key = value` at the top level or under one table
// header ([start]), values that are basic or literal strings, integers,
// floats, booleans, and arrays of those (one line or several). Everything
// else in TOML (inline tables, dates, multi-line strings, dotted keys, arrays
// of tables) is refused with a message naming the line: none of it can
// express a `shoal start` flag.
//
// CLI11's own TOML reader is not used because it keeps no line numbers and
// turns every value into text, so it can neither name the line of a bad key
// nor tell `port = "7400"` from `port = 7400`.
//
// Threading: any thread; pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "shoal/status.h"

namespace shoal::cli {

enum class ConfigKind { kString, kInteger, kFloat, kBoolean, kArray };

struct ConfigEntry {
  std::string section;  // "" at the top level, else the table name
  std::string key;      // as written
  int line = 0;         // 1-based line of the key
  ConfigKind kind = ConfigKind::kString;
  // Scalars: one element (string contents, number text, "true"/"false").
  // Arrays: one element per item.
  std::vector<std::string> values;
  ConfigKind element_kind = ConfigKind::kString;  // arrays: the items' kind
};

// Parses `text`; errors read "FILE:LINE: what is wrong".
Result<std::vector<ConfigEntry>> parse_config(std::string_view text, const std::string& file);
// Reads and parses a file; an unreadable file is an error naming it.
Result<std::vector<ConfigEntry>> read_config_file(const std::string& path);

// "a string", "an integer", ...
std::string_view config_kind_name(ConfigKind kind);

}  // namespace shoal::cli
