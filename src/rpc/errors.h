// The boundary between Cap'n Proto's exceptions and shoal's Status values.
//
// Code in this module throws kj::Exception (that is how KJ promises fail);
// callers outside it catch at the RPC boundary and call
// status_from_exception(). The mapping:
//
//   message contains "timed out after"          -> kDeadlineExceeded
//   message contains "authentication failed"    -> kUnauthenticated
//   kj::Exception::Type::OVERLOADED              -> kResourceExhausted
//   kj::Exception::Type::DISCONNECTED            -> kUnavailable
//   kj::Exception::Type::UNIMPLEMENTED           -> kInternal ("not implemented by the peer")
//   kj::Exception::Type::FAILED                  -> kInternal
#pragma once

#include <kj/exception.h>

#include <string>
#include <string_view>

#include "shoal/status.h"

namespace shoal::rpc {

inline constexpr std::string_view kTimedOutMarker = "timed out after";

Status status_from_exception(const kj::Exception& exception);

// Exceptions this module throws, with the shape status_from_exception expects.
kj::Exception overloaded_error(std::string message);
kj::Exception unavailable_error(std::string message);
kj::Exception timeout_error(std::string_view what, uint64_t timeout_ms);
kj::Exception auth_error(std::string_view message);

}  // namespace shoal::rpc
