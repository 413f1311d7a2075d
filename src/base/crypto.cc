#include "base/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "base/assert.h"

namespace shoal {

Mac hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  return hmac_sha256_parts(key, {data});
}

Mac hmac_sha256_parts(std::span<const uint8_t> key,
                      std::initializer_list<std::span<const uint8_t>> parts) {
  Mac out{};
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  SHOAL_ASSERT(mac != nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  SHOAL_ASSERT(ctx != nullptr);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                         OSSL_PARAM_construct_end()};
  static const uint8_t kEmpty = 0;
  const uint8_t* key_ptr = key.empty() ? &kEmpty : key.data();
  int rc = EVP_MAC_init(ctx, key_ptr, key.size(), params);
  SHOAL_ASSERT(rc == 1);
  for (auto part : parts) {
    if (!part.empty()) {
      rc = EVP_MAC_update(ctx, part.data(), part.size());
      SHOAL_ASSERT(rc == 1);
    }
  }
  size_t out_len = 0;
  rc = EVP_MAC_final(ctx, out.data(), &out_len, out.size());
  SHOAL_ASSERT(rc == 1 && out_len == out.size(), out_len);
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  return out;
}

bool constant_time_equal(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void secure_random(std::span<uint8_t> out) {
  int rc = RAND_bytes(out.data(), static_cast<int>(out.size()));
  SHOAL_ASSERT(rc == 1);
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return Status::invalid_argument("hex string has odd length");
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = hex_value(hex[i]);
    int lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return Status::invalid_argument("not a hex digit at position " + std::to_string(hi < 0 ? i : i + 1));
    }
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

}  // namespace shoal
