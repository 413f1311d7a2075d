// The CPUs this process may run on (sched_getaffinity; the online CPUs when
// that fails), at least 1.
#pragma once

#include <sched.h>
#include <unistd.h>

#include <cstdint>

namespace shoal {

inline uint32_t usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<uint32_t>(n);
  }
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<uint32_t>(n) : 1;
}

}  // namespace shoal
