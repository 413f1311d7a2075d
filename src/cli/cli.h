// The command line of the shoal binary (and of every program that embeds
// libshoal). `shoalctl ARGS` is `shoal ctl ARGS`.
//
// Exit codes: 0 success, 1 runtime error, 2 usage error (one line naming the flag).
#pragma once

namespace shoal::cli {

int main(int argc, char** argv);

}  // namespace shoal::cli
