// SHOAL_ASSERT: always-on invariant checks for programmer errors.
//
// A failed assertion prints the condition, the file and line, and the values
// passed after the condition, then aborts. Use it for invariants, never for
// input from a user, a file or the network (those get a Status).
#pragma once

#include <sstream>
#include <string>

namespace shoal::detail {

[[noreturn]] void assert_fail(const char* condition, const char* file, int line,
                              const std::string& values);

template <typename... Args>
std::string format_assert_values(const char* names, const Args&... args) {
  if constexpr (sizeof...(Args) == 0) {
    (void)names;
    return {};
  } else {
    std::ostringstream out;
    out << " [" << names << "] =";
    ((out << " " << args), ...);
    return out.str();
  }
}

}  // namespace shoal::detail

#define SHOAL_ASSERT(cond, ...)                                                   \
  do {                                                                            \
    if (!(cond)) [[unlikely]] {                                                   \
      ::shoal::detail::assert_fail(#cond, __FILE__, __LINE__,                     \
                                   ::shoal::detail::format_assert_values(         \
                                       #__VA_ARGS__ __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                                             \
  } while (0)
