// Request/Response <-> Cap'n Proto bytes (schemas/meta.capnp).
//
// An encoded Request is exactly what a Raft entry carries and what a client
// sends over RPC; an encoded Response is what the state machine answers.
// Encoding is deterministic: equal structs give equal bytes. Decoding never
// trusts its input: it bounds the size (kRequestBytesMax, kResponseBytesMax),
// the capnp traversal and nesting, rejects unknown enum values and trailing
// bytes, and validates every field (validate_request for requests). Any
// failure is a kInvalidArgument or kResourceExhausted Status naming what was
// wrong; capnp exceptions never escape. Pure functions; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "meta/types.h"
#include "shoal/status.h"

namespace shoal::meta {

// Fails when the request does not pass validate_request or encodes larger
// than kRequestBytesMax.
Result<std::string> encode_request(const Request& request);
Result<Request> decode_request(std::string_view bytes);

// Responses built by the state machine always encode within kResponseBytesMax
// (asserted).
std::string encode_response(const Response& response);
Result<Response> decode_response(std::string_view bytes);

// The answer to a single-key RangeRequest: the key's value (nullopt: no
// such key), the response's error, or why the bytes are not such an answer.
Result<std::optional<std::string>> single_value(std::string_view response_bytes);

}  // namespace shoal::meta
