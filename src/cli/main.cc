#include "base/malloc_tuning.h"
#include "shoal/shoal.h"

#ifdef SHOAL_WITH_MIMALLOC
#include <mimalloc.h>
#endif

int main(int argc, char** argv) {
#ifdef SHOAL_WITH_MIMALLOC
  // Referencing mimalloc keeps the linker from dropping it (--as-needed);
  // being linked is what makes it replace malloc process-wide.
  (void)mi_version();
#endif
  shoal::tune_allocator_for_large_values();
  return shoal::run_main(argc, argv);
}
