// Copying large values (serialization, chunks of transfers).
//
// glibc's memcpy slows to about a third of memory bandwidth when the
// destination lies a few bytes after the source modulo 4 KiB (4K aliasing in
// its large-copy loops): measured on this project's VMs, 1 GiB copied to a
// destination 5 bytes further in its page ran at 4.1-4.3 GB/s against
// 12-13 GB/s otherwise. A msgpack string's body sits 5 bytes into its
// buffer, so every large put() hit exactly that case. copy_bytes() streams
// large copies to a 64-byte aligned destination (non-temporal stores: the
// value is bigger than the caches anyway) and runs at full speed whatever
// the two addresses are.
#pragma once

#include <cstddef>
#include <string>

namespace shoal::detail {

// Copies `n` bytes; the ranges must not overlap. memcpy below a few MiB.
void copy_bytes(char* dst, const char* src, std::size_t n);

// Appends `n` bytes to `out` with copy_bytes, without first writing zeros
// over the room (src/base/string_append.cc).
void append_bytes(std::string& out, const char* src, std::size_t n);

// Sets out.size() to `n`; bytes beyond the old size are left as they were
// in memory (not zeroed): for a buffer about to be overwritten whole.
void resize_uninitialized(std::string& out, std::size_t n);

}  // namespace shoal::detail
