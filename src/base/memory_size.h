// The machine's physical memory, for defaults sized by it (the object store
// capacity, caches). 0 when the system does not say.
#pragma once

#include <unistd.h>

#include <cstdint>

namespace shoal {

inline uint64_t physical_memory_bytes() {
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page_size = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

}  // namespace shoal
