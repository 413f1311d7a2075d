# Command jobs (src/jobs): what `shoalctl submit` and the REST API create,
# what the metadata store keeps under /shoal/jobs/, and what the Node RPC
# methods jobSubmit..jobLogs carry. Every reader validates what it reads
# (src/jobs/job_types.h): sizes, counts, states.
@0xb6c8f3f0d2a4e915;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("shoal::jobs::wire");

struct JobPair {
  key @0 :Text;
  value @1 :Text;
}

struct JobQuantity {
  name @0 :Text;
  amount @1 :Float64;
}

struct JobSpec {
  # What the submitter asked for. Immutable once stored.
  argv @0 :List(Text);          # the command; with `shell`, argv[0] is run by /bin/sh -c
  shell @1 :Bool;
  name @2 :Text;
  cpus @3 :Float64;
  gpus @4 :Float64;
  memoryBytes @5 :UInt64;
  custom @6 :List(JobQuantity);
  env @7 :List(JobPair);
  maxRetries @8 :Int32;         # requeues after the job's node is lost
  timeoutMs @9 :UInt64;         # 0: none
  priority @10 :Int32;          # higher first
  after @11 :List(Text);        # job ids that must succeed first
  arrayIndex @12 :Int64;        # -1: not part of an array
  submissionId @13 :Text;       # the id asked for (REST submission_id); empty: generated
  metadata @14 :List(JobPair);  # REST metadata, returned as is
  hasWorkingDir @15 :Bool;      # files are under /shoal/jobs/files/<id>
  arrayEnd @16 :Int64;          # with arrayIndex: the array is arrayIndex..arrayEnd (submit only)
  entrypoint @17 :Text;         # display form (REST entrypoint, or argv joined)
  filesKey @18 :Text;           # with hasWorkingDir: the job id whose files it uses (an array shares one)
}

struct JobEvent {
  timeMs @0 :UInt64;            # wall clock, ms since the epoch
  state @1 :Text;
  node @2 :Text;
  message @3 :Text;
}

struct JobRecord {
  id @0 :Text;
  spec @1 :JobSpec;
  state @2 :Text;               # PENDING ASSIGNED RUNNING SUCCEEDED FAILED STOPPED
  message @3 :Text;             # why it waits / how it ended
  node @4 :Text;                # node id (ASSIGNED, RUNNING, and where it ran)
  nodeAddress @5 :Text;
  pid @6 :Int32;
  attempt @7 :UInt32;           # 0 for the first run
  submitTimeMs @8 :UInt64;
  startTimeMs @9 :UInt64;
  endTimeMs @10 :UInt64;
  exitCode @11 :Int32;          # -1: none
  signal @12 :Int32;            # 0: none
  stopRequested @13 :Bool;
  history @14 :List(JobEvent);  # the latest kHistoryMax transitions
  gpuIds @15 :List(UInt32);
  logNodes @16 :List(JobPair);  # node id -> address of every node that ran an attempt
}

struct JobFile {
  path @0 :Text;                # relative, no "..", no absolute
  mode @1 :UInt32;
  data @2 :Data;
}

struct JobFiles {
  files @0 :List(JobFile);
}
