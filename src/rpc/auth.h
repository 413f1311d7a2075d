// The mutual challenge-response that every RPC connection runs before it gets
// any capability (schemas/rpc.capnp, interface Authenticator).
//
//   client -> challenge()                    -> serverNonce (32 random bytes)
//   client -> authenticate(clientNonce, proof, clientName)
//             proof       = HMAC(secret, "shoal-client-v1" | serverNonce | clientNonce)
//   server <- (serverProof, node)
//             serverProof = HMAC(secret, "shoal-server-v1" | clientNonce | serverNonce)
//
// The server checks proof (constant time) before it returns the Node; the
// client checks serverProof before it uses the Node. Nonces are single use,
// so a captured proof is worthless on another connection.
#pragma once

#include <span>
#include <string_view>

#include "base/crypto.h"

namespace shoal::rpc {

inline constexpr std::string_view kClientProofLabel = "shoal-client-v1";
inline constexpr std::string_view kServerProofLabel = "shoal-server-v1";

// What an operator sees when the cluster secrets differ. Both the server's
// error reply and the client's exception carry it; status_from_exception()
// maps it to Status::Code::kUnauthenticated.
inline constexpr std::string_view kAuthFailedPrefix = "authentication failed";
inline constexpr std::string_view kAuthTokenMismatchMessage =
    "authentication failed: the cluster token does not match (check --token-file)";
inline constexpr std::string_view kAuthServerProofMessage =
    "authentication failed: the server could not prove it knows the cluster token "
    "(check --token-file on that node)";

Mac client_proof(std::string_view secret, std::span<const uint8_t> server_nonce,
                 std::span<const uint8_t> client_nonce);
Mac server_proof(std::string_view secret, std::span<const uint8_t> client_nonce,
                 std::span<const uint8_t> server_nonce);

}  // namespace shoal::rpc
