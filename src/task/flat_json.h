// Flat JSON objects: {"key": "value", ...} with string values only. The
// records the task runtime keeps in the metadata store (actors, named
// actors) are of this shape, so operators can read them with
// `shoalctl kv get` and any JSON tool.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shoal/status.h"

namespace shoal::detail {

// Fields in the given order; values escaped as JSON strings.
std::string flat_json(const std::vector<std::pair<std::string, std::string>>& fields);

// Reads such an object. Non-string values (numbers, true/false/null) are
// kept as their text; nested objects and arrays are refused. Never crashes
// on bad input: kInvalidArgument says where it went wrong.
Result<std::map<std::string, std::string>> parse_flat_json(std::string_view text);

}  // namespace shoal::detail
