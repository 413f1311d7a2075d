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

  # --- Tasks and actors (src/task/cluster_runtime) ---------------------------
  # The caller is the owner of the tasks it pushes: it resolved their
  # arguments, picked this node, and keeps their return objects. Results go
  # back through `owner` (one call in flight per owner session; the rest
  # batch up behind it). Every method answers at once; none waits for user
  # code to run.

  pushTasks @8 (owner :TaskOwner, session :UInt64, tasks :List(TaskWire), ownerAddress :Text) -> ();
  # Queues the tasks on this node's executor.

  createActor @9 (owner :TaskOwner, session :UInt64, actor :ActorWire) -> ();
  # Starts an actor here; its constructor runs on the actor's thread. A
  # constructor that throws makes every call fail with ActorDied naming it.

  pushActorCalls @10 (owner :TaskOwner, session :UInt64, actorHi :UInt64, actorLo :UInt64,
                      calls :List(TaskWire), ownerAddress :Text) -> ();
  # Method calls of one caller, in the order it made them.

  killActor @11 (actorHi :UInt64, actorLo :UInt64, noRestart :Bool, reason :Text) -> (found :Bool);

  cancelTask @12 (taskHi :UInt64, taskLo :UInt64, force :Bool) -> (found :Bool);

  getObject @13 (objectHi :UInt64, objectLo :UInt64, waitMs :UInt32) -> (result :TaskResult);
  # An object this process owns: its value, or its error. Waits up to waitMs
  # for a pending one; NOT_READY (an error with code deadlineExceeded) after.

  nodeInfo @14 () -> (nodeId :Text, functions :List(Text), actorClasses :List(Text),
                      queuedTasks :UInt32, runningTasks :UInt32, actors :UInt32);
  # What this node's binary can run (SHOAL_REMOTE functions, SHOAL_ACTOR
  # classes), and its executor's load.

  reserveBundles @15 (groupHi :UInt64, groupLo :UInt64, bundles :List(BundleWire),
                      owner :TaskOwner, session :UInt64)
      -> (reserved :Bool, reason :Text);
  # Reserves every bundle of a placement group meant for this node, all or
  # none, from what is free now (no waiting). A bundle's resources then go
  # only to tasks that name the bundle.
  #
  # Owners and fate: a node sends each owner session (pushTasks,
  # createActor, pushActorCalls, reserveBundles) an empty `done` every 2 s;
  # when its owner has been unreachable for 10 s, the node stops that
  # owner's actors (unless detached) and releases its bundles.

  releaseBundles @16 (groupHi :UInt64, groupLo :UInt64) -> (found :Bool);
  # Gives a group's bundles on this node back.

  # --- Command jobs (src/jobs) ------------------------------------------------
  # Bad input is answered with a non-empty `error` (a message for the user);
  # exceptions mean the node could not serve at all.

  jobSubmit @17 (spec :Jobs.JobSpec, files :Jobs.JobFiles) -> (ids :List(Text), error :Text);
  # Validates, checks that some node could ever fit it, stores it PENDING.

  jobList @18 (state :Text) -> (jobs :List(Jobs.JobRecord), error :Text);
  # Every job (state empty) or those in one state, in submission order.

  jobGet @19 (id :Text) -> (job :Jobs.JobRecord, error :Text);

  jobStop @20 (id :Text) -> (stopped :Bool, error :Text);
  # stopped = false when the job had already finished.

  jobLogs @21 (id :Text, offset :Int64, maxBytes :UInt32, hops :UInt8)
      -> (data :Data, offset :Int64, nextOffset :Int64, finished :Bool, error :Text);
  # The job's output from byte `offset` (-1: the last maxBytes); served by the
  # node that ran it (this node forwards). finished: the job is over and
  # nextOffset is the end of its output.

  jobDelete @22 (id :Text) -> (deleted :Bool, error :Text);
  # Removes a finished job's record.

  # --- Objects (src/task/cluster_runtime) ---------------------------------------
  # Values over 100 KiB stay where they were made (the node that ran the
  # task, the process that put them) and move in chunks, pulled by whoever
  # needs them from any process holding a copy.

  readObject @23 (objectHi :UInt64, objectLo :UInt64, offset :UInt64, length :UInt32)
      -> (data :Data, size :UInt64);
  # Bytes [offset, offset + length) of a value held here (length at most
  # 16 MiB), and the value's whole size. An object not held here (never, or
  # freed) is an error naming it.

  freeObjects @24 (objects :List(ObjectIdWire)) -> ();
  # The owner's last reference to these objects is gone: drop the copies
  # held here for it.

  objectStats @25 (cluster :Bool) -> (nodes :List(NodeObjects));
  # The objects this process holds or owns (shoalctl memory); with cluster,
  # those of every live member too (asked in parallel, 3 s each).

  borrow @26 (borrower :Text, add :List(ObjectIdWire), remove :List(ObjectIdWire))
      -> (unknown :List(ObjectIdWire));
  # Sent to an object's owner by a process that holds references to it
  # (Ray's borrowers): `add` when its first reference appears there, `remove`
  # when its last one goes. The owner keeps the object while any borrower
  # has it. Adds are applied before removes; `unknown` lists the added
  # objects the owner no longer has (already freed).

  taskHistory @27 (cluster :Bool, limit :UInt32) -> (nodes :List(NodeTasks));
  # The newest task attempts owners pushed to this node (shoalctl tasks),
  # at most `limit` (capped at 10,000); with cluster, those of every live
  # member too (asked in parallel, 3 s each).

  openObjectStream @28 (objectHi :UInt64, objectLo :UInt64, offset :UInt64)
      -> (port :UInt16, ticket :Data, size :UInt64);
  # Bytes [offset, size) of a value held here, as raw bytes on a plain TCP
  # connection (src/task/bulk_channel.h): connect to `port` on this
  # process's host, send `ticket`, read size - offset bytes. Port 0: no such
  # channel now (TLS, spilled, too many transfers); use readObject. An object
  # not held here (never, or freed) is an error naming it.
}

struct NodeTasks {
  nodeId @0 :Text;
  address @1 :Text;
  error @2 :Text;                # could not be asked
  attempts @3 :List(TaskAttemptWire);
  truncated @4 :Bool;            # older attempts exist
}

struct TaskAttemptWire {
  taskHi @0 :UInt64;
  taskLo @1 :UInt64;
  function @2 :Text;
  owner @3 :Text;                # the owner's address
  attempt @4 :UInt32;            # 1 on the first try
  retryReason @5 :Text;          # why the owner ran it again
  state @6 :Text;                # RUNNING, FINISHED, FAILED, SPILLED, FENCED
  detail @7 :Text;               # a failed attempt's error, ...
  receivedMs @8 :Int64;          # wall clock, ms since the epoch
  endedMs @9 :Int64;             # 0 while it runs
}

struct NodeObjects {
  nodeId @0 :Text;
  address @1 :Text;
  error @2 :Text;                # could not be asked
  objects @3 :List(ObjectInfoWire);
  truncated @4 :Bool;            # more objects than one answer lists
  bytesServed @5 :UInt64;        # bytes of values this process served to pullers (readObject and bulk streams)
  bulkBytesServed @6 :UInt64;    # those of them offered on the bulk channel (src/task/bulk_channel.h)
}

struct ObjectInfoWire {
  objectHi @0 :UInt64;
  objectLo @1 :UInt64;
  size @2 :UInt64;
  owner @3 :Text;                # the owner's address
  state @4 :Text;                # "in memory", "pending", "held at HOST:PORT", ...
  reference @5 :Text;            # why it is here: "local reference (N)", "held for its owner", "copy"
}

struct ObjectIdWire {
  hi @0 :UInt64;
  lo @1 :UInt64;
}

struct StoredWire {
  # A value that did not travel inline: its size, and processes holding a
  # copy ("host:port"), to pull it from with readObject.
  size @0 :UInt64;
  locations @1 :List(Text);
}

struct RefArgWire {
  # An argument passed by reference: the node pulls the value before the
  # task runs.
  index @0 :UInt32;              # which argument (its slot in TaskWire.args is empty)
  objectHi @1 :UInt64;
  objectLo @2 :UInt64;
  stored @3 :StoredWire;
}

struct BundleWire {
  index @0 :UInt32;
  resources @1 :ResourceSet;
}

interface TaskOwner {
  done @0 (results :List(TaskResult)) -> ();
  # Finished tasks and actor calls; the node sends the next batch after the
  # reply.
}

struct TaskWire {
  taskHi @0 :UInt64;
  taskLo @1 :UInt64;
  function @2 :Text;             # registered name; "Class::method" for actor calls
  args @3 :List(Data);           # msgpack of each parameter (refs already resolved)
  resources @4 :ResourceSet;     # what it holds while it runs (tasks only)
  maxRetries @5 :Int32;          # retries after an exception, with retryExceptions
  retryExceptions @6 :Bool;
  attempt @7 :UInt32;            # 1 on the first try
  spillable @8 :Bool;            # the owner let the node choose (default strategy):
                                 # a busy node may hand it back (TaskResult.spilled)
  refArgs @9 :List(RefArgWire);  # arguments over 100 KiB, pulled by the node
  retryReason @10 :Text;         # attempt > 1: why the owner runs it again
}

struct ActorWire {
  actorHi @0 :UInt64;
  actorLo @1 :UInt64;
  className @2 :Text;
  constructor @3 :Text;
  args @4 :List(Data);
  resources @5 :ResourceSet;     # held for the actor's life
  maxRestarts @6 :Int32;
  maxConcurrency @7 :Int32;
  detached @8 :Bool;             # outlives its owner; else it dies when the owner is gone
}

struct TaskResult {
  taskHi @0 :UInt64;
  taskLo @1 :UInt64;
  union {
    value @2 :Data;              # msgpack of the return value
    error @3 :Data;              # task/wire.h encode_error_info
    stored @6 :StoredWire;       # over 100 KiB: kept where it is, pulled on demand
  }
  nodeId @4 :Text;               # where it ran
  spilled @5 :Bool;              # not run: this node is full and another has room;
                                 # the owner places it again elsewhere
  hasRefs @7 :Bool;              # the inline value holds ObjectRefs (the owner adopts them)
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
