// shoal: the public API for programs that embed a shoal node.
//
// A program that links libshoal.a *is* a node binary: calling run_main() from
// main() gives it the whole `shoal` command line (`myapp start --join HOST`,
// `myapp ctl status`, `myapp certs init DIR`, ...), so the same binary can run
// on every machine of a cluster. run_main() stays the way to hand the
// process to the CLI; the task API (shoal::init(), SHOAL_REMOTE, shoal::task,
// actors, ObjectRefs) comes with this header too, from shoal/api.h.
//
// Build against the installed library with
//   g++ -std=c++20 main.cc $(pkg-config --cflags --libs shoal)
#pragma once

#include "shoal/api.h"
#include "shoal/status.h"

namespace shoal {

// Runs the shoal command line on `argc`/`argv` exactly as the `shoal` binary
// does and returns its exit code: 0 success, 1 runtime error, 2 usage error
// (one line on stderr naming the flag, key or file). If argv[0]'s file name is
// "shoalctl", it runs the shoalctl commands instead.
//
// Threading: call it once, from the main thread; `start` runs the node on the
// calling thread until SIGTERM or SIGINT. Ownership: it keeps no pointer to
// argv after it returns. Errors are never thrown out of it.
int run_main(int argc, char** argv);

}  // namespace shoal
