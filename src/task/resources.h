// Resource quantities and a node's accounting of them: pure values, no
// threads, no clock. The local executor uses NodeResources for the one node;
// the distributed scheduler keeps one per node of its gossip view and uses
// the same feasible()/can_run() tests to place tasks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shoal/options.h"
#include "shoal/status.h"

namespace shoal::detail {

// Named quantities in fixed point: 1 unit = 1/10,000 of a CPU, GPU, byte of
// memory or custom resource, so 0.5 CPU is exact and sums never drift.
class ResourceSet {
 public:
  static constexpr int64_t kUnitsPerWhole = 10'000;
  // Per resource: 10^14 wholes (100 TB of memory) keeps sums far from overflow.
  static constexpr double kWholesMax = 1e14;

  static constexpr std::string_view kCpu = "CPU";
  static constexpr std::string_view kGpu = "GPU";
  static constexpr std::string_view kMemory = "memory";

  ResourceSet() = default;

  // From a task's or actor's request; kInvalidArgument names a negative, NaN
  // or huge quantity or an empty name.
  static Result<ResourceSet> from_request(const ResourceRequest& request);
  // Whole quantities ("CPU" -> 2) for tests and node totals; same checks.
  static Result<ResourceSet> from_wholes(const std::vector<std::pair<std::string, double>>& wholes);

  int64_t units(std::string_view name) const;
  double wholes(std::string_view name) const {
    return static_cast<double>(units(name)) / kUnitsPerWhole;
  }
  void set_units(std::string_view name, int64_t units);  // 0 removes

  bool empty() const { return entries_.empty(); }
  // Every quantity here is <= the same one in `other`.
  bool fits_in(const ResourceSet& other) const;
  // Some resource is named in both (with any quantity).
  bool shares_a_name_with(const ResourceSet& other) const;
  void add(const ResourceSet& other);
  // Requires fits_in(*this, other) (asserted).
  void subtract(const ResourceSet& other);

  // Canonical text, equal for equal sets: the scheduling class of a task.
  std::string key() const;
  // "CPU 2, GPU 0.5, memory 1024 MiB"; "nothing" when empty.
  std::string to_string() const;

  friend bool operator==(const ResourceSet&, const ResourceSet&) = default;

  // (name, units) pairs, sorted by name.
  const std::vector<std::pair<std::string, int64_t>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, int64_t>> entries_;  // sorted by name, no zeros
};

// What one node has and what is free.
class NodeResources {
 public:
  NodeResources() = default;
  explicit NodeResources(ResourceSet total) : total_(total), available_(std::move(total)) {}

  const ResourceSet& total() const { return total_; }
  const ResourceSet& available() const { return available_; }

  // Could the demand ever run here (it fits the totals)?
  bool feasible(const ResourceSet& demand) const { return demand.fits_in(total_); }
  // Can it run now?
  bool can_run(const ResourceSet& demand) const { return demand.fits_in(available_); }
  // Requires can_run (asserted).
  void acquire(const ResourceSet& demand);
  // Requires the demand to have been acquired (asserted: never above total).
  void release(const ResourceSet& demand);
  // New resources (a placement group bundle's): added to total and free.
  void add_total(const ResourceSet& extra);
  // Takes them away again; requires them all free (asserted).
  void remove_total(const ResourceSet& extra);

 private:
  ResourceSet total_;
  ResourceSet available_;
};

}  // namespace shoal::detail
