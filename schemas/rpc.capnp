# The RPC wire contract between shoal nodes (and between shoalctl and a node).
#
# A fresh connection's bootstrap capability is an Authenticator and nothing
# else: the Node capability, through which every other service is reached, is
# handed out only by a successful mutual challenge-response over the cluster
# secret (see src/rpc/auth.h for the exact MAC inputs).
@0xe22e3abca32f1bec;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("shoal::rpc");

interface Authenticator {
  # One challenge per connection; its nonce is single use. Any protocol error
  # (no challenge, a second challenge, bad lengths, a wrong proof) gets an error
  # reply, after which the server closes the connection.

  challenge @0 () -> (serverNonce :Data);
  # serverNonce: 32 random bytes.

  authenticate @1 (clientNonce :Data, proof :Data, clientName :Text)
      -> (serverProof :Data, node :Node);
  # clientNonce: 32 random bytes chosen by the client.
  # proof       = HMAC-SHA256(secret, "shoal-client-v1" | serverNonce | clientNonce)
  # serverProof = HMAC-SHA256(secret, "shoal-server-v1" | clientNonce | serverNonce)
  # clientName: free text for logs (at most 256 bytes).
}

interface Node {
  # Everything an authenticated peer may do. New methods take the next ordinal;
  # never renumber or change the type of an existing one.

  ping @0 (value :UInt64) -> (value :UInt64);
  # Returns value + 1. Used by benchmarks and liveness checks.

  members @1 () -> (selfId :Text, members :List(MemberRecord));
  # The cluster's members as this node's gossip sees them (itself included).
}

struct Quantity {
  name @0 :Text;
  amount @1 :Float64;
}

struct ResourceSet {
  cpus @0 :Float64;
  memoryBytes @1 :UInt64;
  gpus @2 :Float64;
  custom @3 :List(Quantity);
}

struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}

struct MemberRecord {
  id @0 :Text;                 # 32 hex characters
  address @1 :Text;            # host:port (TCP RPC and UDP gossip)
  state @2 :Text;              # alive, suspect, dead, left
  incarnation @3 :UInt64;
  lastContactMsAgo @4 :UInt64; # since a packet came from it directly; 0 for the node itself
  total @5 :ResourceSet;
  available @6 :ResourceSet;   # from its latest gossiped load
  runningTasks @7 :UInt32;
  loadAgeMs @8 :UInt64;        # age of `available`
  labels @9 :List(KeyValue);
}
