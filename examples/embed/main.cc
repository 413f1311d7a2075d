// The smallest program that embeds shoal: it is a complete node binary.
//
//   ./myapp start                      bootstraps a cluster
//   ./myapp start --join HOST:PORT     joins one
//   ./myapp ctl status                 shoalctl's commands
//
// Build against the installed libshoal-dev package:
//   g++ -std=c++20 -O2 main.cc $(pkg-config --cflags --libs shoal) -o myapp
#include <shoal/shoal.h>

int main(int argc, char** argv) { return shoal::run_main(argc, argv); }
