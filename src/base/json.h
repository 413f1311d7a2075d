// JSON text shoal writes (records in the metadata store, --json output, the
// REST API): one string escaper for all of them.
#pragma once

#include <string>
#include <string_view>

namespace shoal {

// `s` as a JSON string literal, quotes included: '"', '\\' and control bytes
// (and DEL) escaped; UTF-8 passes through.
std::string json_quote(std::string_view s);

}  // namespace shoal
