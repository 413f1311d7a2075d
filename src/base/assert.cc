#include "base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace shoal::detail {

void assert_fail(const char* condition, const char* file, int line, const std::string& values) {
  std::fprintf(stderr, "shoal: assertion failed: %s at %s:%d%s\n", condition, file, line,
               values.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace shoal::detail
