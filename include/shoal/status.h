// shoal::Status and shoal::Result<T>: operating errors as values.
//
// Any thread may create, copy and inspect these. A Status is either ok() or
// carries a Code and a human-readable message naming what went wrong; the
// message is meant to be shown to an operator as is.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace shoal {

class [[nodiscard]] Status {
 public:
  enum class Code : uint8_t {
    kOk = 0,
    kInvalidArgument,   // bad input from a user, a file or the network
    kNotFound,
    kAlreadyExists,
    kUnauthenticated,   // wrong or missing cluster secret
    kUnavailable,       // peer gone, connection refused, try again later
    kDeadlineExceeded,  // a call timed out
    kResourceExhausted, // a named limit was hit (queue, in-flight, size)
    kIoError,           // disk or socket error
    kCancelled,
    kInternal,
  };

  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }
  static Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status already_exists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
  static Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status deadline_exceeded(std::string m) { return {Code::kDeadlineExceeded, std::move(m)}; }
  static Status resource_exhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Status io_error(std::string m) { return {Code::kIoError, std::move(m)}; }
  static Status cancelled(std::string m) { return {Code::kCancelled, std::move(m)}; }
  static Status internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "unavailable: connect to 10.0.0.1:7400 refused"
  std::string to_string() const;
  static std::string_view code_name(Code code);

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Status status) : value_(std::move(status)) {  // NOLINT
    if (std::get<Status>(value_).ok()) {
      value_ = Status::internal("Result constructed from an ok Status");
    }
  }

  bool ok() const { return std::holds_alternative<T>(value_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(value_);
  }
  T& value() & { return std::get<T>(value_); }
  const T& value() const& { return std::get<T>(value_); }
  T&& value() && { return std::get<T>(std::move(value_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> value_;
};

}  // namespace shoal

// Returns early from a function returning Status or Result<T> when `expr`
// is not ok.
#define SHOAL_RETURN_IF_ERROR(expr)                  \
  do {                                               \
    ::shoal::Status shoal_status_tmp_ = (expr);      \
    if (!shoal_status_tmp_.ok()) return shoal_status_tmp_; \
  } while (0)
