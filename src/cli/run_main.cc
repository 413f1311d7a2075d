// The embedding entry point (include/shoal/shoal.h) is the CLI itself.
#include "shoal/shoal.h"

#include "cli/cli.h"

#include <cstdlib>

#include "shoal/init.h"

namespace shoal {

int run_main(int argc, char** argv) { return cli::main(argc, argv); }

// Here, not in the task module, because node mode is the CLI: `myapp start
// --join HOST:PORT` runs exactly what `shoal start` runs, with this binary's
// registered functions, and exits with its status.
Result<Cluster> init(int argc, char** argv) {
  Result<Options> options = options_from_args(argc, argv);
  if (!options.ok()) return options.status();
  if (options->mode == Options::Mode::kNode) std::exit(run_main(argc, argv));
  return init(std::move(*options));
}

}  // namespace shoal
