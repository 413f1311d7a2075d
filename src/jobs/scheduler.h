// The job placement policy: a pure function of the jobs in the metadata
// store and the gossip view of the nodes. No I/O, no clock (time is an
// argument); src/jobs/job_service runs it on the Raft leader and writes its
// decisions with compare-and-swap on each job's mod_revision, so a decision
// made from a stale view is refused by the store instead of applied twice.
//
// Rules (docs/architecture.md, "Jobs"):
//   - A job ASSIGNED or RUNNING on a node gossip calls dead or left is
//     requeued (PENDING, attempt + 1) while it has retries left, else FAILED
//     "node lost".
//   - A PENDING job with stop_requested becomes STOPPED.
//   - PENDING jobs are considered by priority (higher first), then in
//     submission order. A job waits for its --after jobs to succeed and fails
//     when one of them fails, is stopped or does not exist.
//   - A job is placed on the live node with the most free CPU that fits it;
//     a node's free resources are its total minus the demands of the jobs
//     ASSIGNED or RUNNING there. When a job cannot be placed, no job of lower
//     priority is placed in that round (no backfill across priorities).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "jobs/job_types.h"
#include "task/resources.h"

namespace shoal::jobs {

inline constexpr size_t kDecisionsPerRoundMax = 100;  // one metadata txn (128 ops max)

struct CachedJob {
  Record record;
  int64_t mod_revision = 0;
  int64_t create_revision = 0;
};

struct NodeView {
  std::string id;
  std::string address;
  detail::ResourceSet total;
  bool alive = false;  // alive or suspect: may take new jobs
  bool lost = false;   // dead or left: its jobs are requeued or failed
};

struct Decision {
  Record record;             // the record to write
  int64_t mod_revision = 0;  // the revision it must still have
};

// Finds any job (finished ones included) by id; null when there is none.
using JobLookup = std::function<const CachedJob*(const std::string& id)>;

inline constexpr size_t kPrunesPerRoundMax = 50;  // records (and their files) deleted in one txn

// The finished jobs to delete so that at most `keep` finished ones remain:
// the oldest first (earliest end, then submission order), never one that an
// unfinished job still waits for (--after); at most kPrunesPerRoundMax.
std::vector<const CachedJob*> finished_to_prune(const std::vector<const CachedJob*>& finished,
                                                const std::vector<const CachedJob*>& unfinished, size_t keep);

// The changes one scheduling round makes (at most kDecisionsPerRoundMax).
// `jobs` needs only the unfinished jobs; dependencies are looked up.
std::vector<Decision> schedule(const std::vector<const CachedJob*>& jobs, const std::vector<NodeView>& nodes,
                               uint64_t now_ms, const JobLookup& lookup);

}  // namespace shoal::jobs
