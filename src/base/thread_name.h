// Names the calling thread, as `top -H`, `ps -L`, perf and gdb show it (at
// most 15 characters; longer names are cut). The process's main thread keeps
// the program's name: renaming it would rename the process in `ps`.
#pragma once

#include <pthread.h>

#include <cstring>
#include <string_view>

namespace shoal {

inline void name_this_thread(std::string_view name) {
  char buf[16];
  const size_t n = name.size() < sizeof(buf) - 1 ? name.size() : sizeof(buf) - 1;
  std::memcpy(buf, name.data(), n);
  buf[n] = '\0';
  (void)pthread_setname_np(pthread_self(), buf);
}

}  // namespace shoal
