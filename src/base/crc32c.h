// CRC32C (Castagnoli, the polynomial of iSCSI, ext4 and RocksDB): a checksum
// for bytes written to disk and read back, e.g. spilled object values.
//
// Pure functions; any thread. x86-64 CPUs with SSE4.2 use the crc32
// instruction, others a slicing-by-8 table; both give the same value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace shoal {

// Extends `crc` (the CRC32C of the bytes before, 0 for none) over `data`.
// crc32c_extend(crc32c(a), b) == crc32c(a + b).
uint32_t crc32c_extend(uint32_t crc, const void* data, std::size_t size);
inline uint32_t crc32c(std::string_view data) { return crc32c_extend(0, data.data(), data.size()); }

namespace detail {
// The table implementation, whatever the CPU; for tests that compare paths.
uint32_t crc32c_extend_portable(uint32_t crc, const void* data, std::size_t size);
}  // namespace detail

}  // namespace shoal
