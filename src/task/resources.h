// Resource quantities and a node's accounting of them: pure values, no
// threads, no clock. The local executor uses NodeResources for the one node;
// the distributed scheduler keeps one per node of its gossip view and uses
// the same feasible()/can_run() tests to place tasks.
#pragma once

#include <cstdint>
#include <optional>
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
  // A placement group bundle's share of a resource is named
  // "<resource>_pg_<group hex>_<bundle index>" ("CPU_pg_1a2b…_0").
  static constexpr std::string_view kBundleInfix = "_pg_";
  // `name` is `resource` itself or a bundle's share of it.
  static bool is_kind(std::string_view name, std::string_view resource) {
    return name.starts_with(resource) &&
           (name.size() == resource.size() || name.substr(resource.size()).starts_with(kBundleInfix));
  }

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

// Which GPUs, by id, a demand gets. "GPU" and each placement group bundle's
// GPU name ("GPU_pg_<group>_<index>") are pools of instances; an instance is
// one device with up to one whole GPU free. A demand of n.f GPUs takes n
// instances that are wholly free (lowest ids first) and f of one more (the
// one with the least room that fits it, so fractions pack onto few
// devices). ResourceSet sums alone cannot say this: two devices half used
// add up to one free GPU, but no whole one.
struct GpuShare {
  std::string pool;
  uint32_t id = 0;
  int64_t units = 0;
  friend bool operator==(const GpuShare&, const GpuShare&) = default;
};
using GpuGrant = std::vector<GpuShare>;

class GpuInstances {
 public:
  GpuInstances() = default;
  // Pool "GPU": ids 0..n-1 for n whole GPUs in `total` (a fraction left over
  // is one more, smaller device).
  explicit GpuInstances(const ResourceSet& total);

  static bool is_gpu(std::string_view name);
  // The device ids of a grant, ascending, each once.
  static std::vector<uint32_t> ids(const GpuGrant& grant);

  // Every GPU-named quantity of `demand` has devices to take now.
  bool can_take(const ResourceSet& demand) const;
  // Requires can_take (asserted).
  GpuGrant take(const ResourceSet& demand);
  void give_back(const GpuGrant& grant);
  // A bundle's GPU pool is made of what its reservation took from "GPU".
  void add_pool(const ResourceSet& bundle, const GpuGrant& reserved);
  void remove_pool(const ResourceSet& bundle);

 private:
  struct Instance {
    uint32_t id = 0;
    int64_t capacity = 0;
    int64_t free = 0;
  };
  using Pool = std::vector<Instance>;
  // Indexes into `pool` and units of each: nullopt when they do not fit.
  static std::optional<std::vector<std::pair<size_t, int64_t>>> choose(const Pool& pool, int64_t units);

  std::vector<std::pair<std::string, Pool>> pools_;  // few: "GPU" and bundles with GPUs
  Pool* find(std::string_view name);
  const Pool* find(std::string_view name) const;
};

}  // namespace shoal::detail
