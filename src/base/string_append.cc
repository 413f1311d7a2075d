// detail::append_bytes. This file alone is compiled as C++23 (see
// meson.build) for std::string::resize_and_overwrite: growing a string by a
// large value's size otherwise writes zeros over the room first, a whole
// extra pass over memory (measured: as long as the copy itself, half of a
// 1 GiB put()). libstdc++'s std::string has one layout in every standard
// mode, so C++20 code calls this freely.
#include <string>

#include "shoal/detail/copy.h"

namespace shoal::detail {

void append_bytes(std::string& out, const char* src, std::size_t n) {
  const std::size_t at = out.size();
#if defined(__cpp_lib_string_resize_and_overwrite)
  out.resize_and_overwrite(at + n, [&](char* data, std::size_t) {
    copy_bytes(data + at, src, n);
    return at + n;
  });
#else
  out.resize(at + n);
  copy_bytes(out.data() + at, src, n);
#endif
}

void resize_uninitialized(std::string& out, std::size_t n) {
#if defined(__cpp_lib_string_resize_and_overwrite)
  out.resize_and_overwrite(n, [](char*, std::size_t size) { return size; });
#else
  out.resize(n);
#endif
}

}  // namespace shoal::detail
