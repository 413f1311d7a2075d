// Byte forms of what the distributed runtime will send between processes
// besides user values (those are msgpack, serialize.h): a task's error.
// Inside Cap'n Proto messages these travel as Data fields.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shoal/errors.h"
#include "shoal/ids.h"
#include "shoal/status.h"

namespace shoal::detail {

// msgpack array [kind, code, exception_type, message, function, task_id
// (bin 16), node_id, attempts].
std::string encode_error_info(const ErrorInfo& error);
// kInvalidArgument for bytes that are not such an array (or an unknown
// kind/code): never crashes on bad input.
Result<ErrorInfo> decode_error_info(std::string_view bytes);

// The ObjectRefs inside a msgpack value (ext type 17: id and owner
// address), in order, without building msgpack objects (strings and
// binaries are skipped, not copied). kInvalidArgument for bytes that are not
// one whole msgpack value or hold a malformed ref.
Result<std::vector<std::pair<ObjectId, std::string>>> find_object_refs(std::string_view bytes);

}  // namespace shoal::detail
