# The RPC wire contract between shoal nodes (and between shoalctl and a node).
#
# A fresh connection's bootstrap capability is an Authenticator and nothing
# else: the Node capability, through which every other service is reached, is
# handed out only by a successful mutual challenge-response over the cluster
# secret (see src/rpc/auth.h for the exact MAC inputs).
@0xe22e3abca32f1bec;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("shoal::rpc");

using Raft = import "raft.capnp";
using Jobs = import "jobs.capnp";  # jobs (issue 6)

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

  # --- Metadata: Raft group and key-value store (src/control) ---------------

  raftSend @2 (clusterId :UInt64, messages :List(Raft.Message)) -> ();
  # Raft messages from one node to this one, in order. Snapshots never travel
  # here: they come through raftSnapshot.

  raftSnapshot @3 (clusterId :UInt64, from :UInt64, snapshotIndex :UInt64, offset :UInt64,
                   chunk :Data, message :Raft.Message) -> ();
  # One chunk of a snapshot image (at most 1 MiB), sent in order starting at
  # offset 0. The last chunk carries `message` (hasSnapshot = true): the
  # receiver then steps the whole snapshot into Raft.

  kv @4 (request :Data, hops :UInt8) -> (response :Data);
  # A key-value request (meta.capnp Request bytes). Reads are linearizable
  # (Raft ReadIndex) and served here; writes are forwarded to the leader
  # (hops counts forwards; a request is refused past 3).

  leaseKeepAlive @5 (id :Int64, hops :UInt8) -> (ttlSeconds :Int64);
  # Refreshes a lease at the leader; NOT_FOUND when it is gone.

  watch @6 (key :Data, rangeEnd :Data, startRevision :Int64, watcher :Watcher)
      -> (handle :WatchHandle, revision :Int64);
  # Pushes every change of keys in [key, rangeEnd) (rangeEnd empty: only key;
  # "\0": every key >= key) with revision >= startRevision (0: from now on)
  # to `watcher`, in revision order, until the handle is dropped. `revision`
  # is the store's revision when the watch started.

  controlStatus @7 () -> (status :ControlStatus);

  # --- Placeholders (jobs branch only): main defines @8..@19; capnp needs
  # sequential ordinals. Drop these lines when merging with main. ---
  jobsBranchPlaceholder8 @8 () -> ();
  jobsBranchPlaceholder9 @9 () -> ();
  jobsBranchPlaceholder10 @10 () -> ();
  jobsBranchPlaceholder11 @11 () -> ();
  jobsBranchPlaceholder12 @12 () -> ();
  jobsBranchPlaceholder13 @13 () -> ();
  jobsBranchPlaceholder14 @14 () -> ();
  jobsBranchPlaceholder15 @15 () -> ();
  jobsBranchPlaceholder16 @16 () -> ();
  jobsBranchPlaceholder17 @17 () -> ();
  jobsBranchPlaceholder18 @18 () -> ();
  jobsBranchPlaceholder19 @19 () -> ();

  # --- Command jobs (src/jobs; ordinals @20 and up) --------------------------
  # Bad input is answered with a non-empty `error` (a message for the user);
  # exceptions mean the node could not serve at all.

  jobSubmit @20 (spec :Jobs.JobSpec, files :Jobs.JobFiles) -> (ids :List(Text), error :Text);
  # Validates, checks that some node could ever fit it, stores it PENDING.

  jobList @21 (state :Text) -> (jobs :List(Jobs.JobRecord), error :Text);
  # Every job (state empty) or those in one state, in submission order.

  jobGet @22 (id :Text) -> (job :Jobs.JobRecord, error :Text);

  jobStop @23 (id :Text) -> (stopped :Bool, error :Text);
  # stopped = false when the job had already finished.

  jobLogs @24 (id :Text, offset :Int64, maxBytes :UInt32, hops :UInt8)
      -> (data :Data, offset :Int64, nextOffset :Int64, finished :Bool, error :Text);
  # The job's output from byte `offset` (-1: the last maxBytes); served by the
  # node that ran it (this node forwards). finished: the job is over and
  # nextOffset is the end of its output.

  jobDelete @25 (id :Text) -> (deleted :Bool, error :Text);
  # Removes a finished job's record.
}

interface Watcher {
  events @0 (events :List(WatchEvent)) -> ();
  # The next batch; the server waits for the reply before sending more.

  cancelled @1 (reason :Text) -> ();
  # The server ended the watch (too slow, history compacted, node stopping).
}

interface WatchHandle {}

struct WatchEvent {
  type @0 :UInt8;           # 0 put, 1 delete
  key @1 :Data;
  value @2 :Data;
  createRevision @3 :Int64;
  modRevision @4 :Int64;
  version @5 :Int64;
  lease @6 :Int64;
  hasPrev @7 :Bool;
  prevValue @8 :Data;
}

struct ControlStatus {
  raftId @0 :UInt64;
  nodeId @1 :Text;
  role @2 :Text;            # follower, pre-candidate, candidate, leader, none
  leaderId @3 :UInt64;      # raft id; 0 = unknown
  leaderNodeId @4 :Text;    # node id of the leader when known
  leaderAddress @5 :Text;
  term @6 :UInt64;
  commitIndex @7 :UInt64;
  appliedIndex @8 :UInt64;
  lastIndex @9 :UInt64;
  voters @10 :List(GroupMember);
  learners @11 :List(GroupMember);
  revision @12 :Int64;
  keys @13 :UInt64;
}

struct GroupMember {
  raftId @0 :UInt64;
  nodeId @1 :Text;          # empty when gossip does not know it (yet)
  address @2 :Text;
  match @3 :UInt64;         # leader's view; 0 elsewhere
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
