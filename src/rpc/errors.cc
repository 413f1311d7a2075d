#include "rpc/errors.h"

#include <kj/debug.h>

#include "rpc/auth.h"

namespace shoal::rpc {
namespace {

// Cap'n Proto prefixes errors that came over the wire; the operator does not
// need to see it.
constexpr std::string_view kRemotePrefix = "remote exception: ";

kj::Exception make_exception(kj::Exception::Type type, std::string_view message) {
  return kj::Exception(type, __FILE__, __LINE__, kj::heapString(message.data(), message.size()));
}

}  // namespace

Status status_from_exception(const kj::Exception& exception) {
  std::string message(exception.getDescription().cStr());
  if (message.starts_with(kRemotePrefix)) message.erase(0, kRemotePrefix.size());
  if (message.find(kTimedOutMarker) != std::string::npos) {
    return Status::deadline_exceeded(std::move(message));
  }
  if (message.find(kAuthFailedPrefix) != std::string::npos) {
    return Status::unauthenticated(std::move(message));
  }
  switch (exception.getType()) {
    case kj::Exception::Type::OVERLOADED:
      return Status::resource_exhausted(std::move(message));
    case kj::Exception::Type::DISCONNECTED:
      return Status::unavailable(std::move(message));
    case kj::Exception::Type::UNIMPLEMENTED:
      return Status::internal("not implemented by the peer: " + message);
    case kj::Exception::Type::FAILED:
      break;
  }
  return Status::internal(std::move(message));
}

kj::Exception overloaded_error(std::string message) {
  return make_exception(kj::Exception::Type::OVERLOADED, message);
}

kj::Exception unavailable_error(std::string message) {
  return make_exception(kj::Exception::Type::DISCONNECTED, message);
}

kj::Exception timeout_error(std::string_view what, uint64_t timeout_ms) {
  std::string message(what);
  message += " ";
  message += kTimedOutMarker;
  message += " " + std::to_string(timeout_ms) + " ms";
  return make_exception(kj::Exception::Type::DISCONNECTED, message);
}

kj::Exception auth_error(std::string_view message) {
  return make_exception(kj::Exception::Type::FAILED, message);
}

}  // namespace shoal::rpc
