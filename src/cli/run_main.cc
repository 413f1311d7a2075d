// The embedding entry point (include/shoal/shoal.h) is the CLI itself.
#include "shoal/shoal.h"

#include "cli/cli.h"

namespace shoal {

int run_main(int argc, char** argv) { return cli::main(argc, argv); }

}  // namespace shoal
