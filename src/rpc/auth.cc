#include "rpc/auth.h"

namespace shoal::rpc {

Mac client_proof(std::string_view secret, std::span<const uint8_t> server_nonce,
                 std::span<const uint8_t> client_nonce) {
  return hmac_sha256_parts(as_bytes(secret),
                           {as_bytes(kClientProofLabel), server_nonce, client_nonce});
}

Mac server_proof(std::string_view secret, std::span<const uint8_t> client_nonce,
                 std::span<const uint8_t> server_nonce) {
  return hmac_sha256_parts(as_bytes(secret),
                           {as_bytes(kServerProofLabel), client_nonce, server_nonce});
}

}  // namespace shoal::rpc
