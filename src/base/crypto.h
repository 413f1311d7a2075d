// Thin wrappers over OpenSSL for what the cluster's authentication needs:
// HMAC-SHA256, constant-time comparison, secure random bytes, hex.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "shoal/status.h"

namespace shoal {

using Mac = std::array<uint8_t, 32>;  // HMAC-SHA256 output

Mac hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data);
// HMAC over the concatenation of several parts (no separators added).
Mac hmac_sha256_parts(std::span<const uint8_t> key,
                      std::initializer_list<std::span<const uint8_t>> parts);

// Constant-time equality; false when sizes differ.
bool constant_time_equal(std::span<const uint8_t> a, std::span<const uint8_t> b);

// Cryptographically secure random bytes (OpenSSL RAND_bytes).
void secure_random(std::span<uint8_t> out);

std::string to_hex(std::span<const uint8_t> bytes);
// Fails on odd length or a non-hex character.
Result<std::string> from_hex(std::string_view hex);

inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace shoal
