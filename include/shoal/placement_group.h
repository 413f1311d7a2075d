// Placement groups: bundles of resources reserved together, all or nothing,
// across the cluster (Ray's placement groups).
//
//   auto pg = shoal::placement_group({{.cpus = 1}, {.cpus = 1}}, shoal::PlacementStrategy::kStrictSpread);
//   if (!pg.wait(std::chrono::seconds(30))) { ... not enough nodes ... }
//   auto r = shoal::task(f).strategy(shoal::placement_group_bundle(pg.id(), 0)).remote();
//   shoal::remove_placement_group(pg);
//
// Strategies: kPack puts bundles on as few nodes as it can; kStrictPack all
// on one node or not at all; kSpread on distinct nodes as far as it can;
// kStrictSpread each on a different node or not at all. Creation returns at
// once; the group is reserved when every bundle's node has its resources
// free, then recorded in the metadata store (/shoal/placement_groups/<id>).
// Until then it waits (wait() says whether it is ready). A bundle's
// resources are held for the group alone: only tasks and actors scheduled
// into that bundle use them, and they must fit in it. Removing the group
// gives them back (at once, or when the bundle's running tasks return).
//
// Local mode has no placement groups (creation throws kUnavailable).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "shoal/ids.h"
#include "shoal/options.h"

namespace shoal {

enum class PlacementStrategy : uint8_t { kPack, kSpread, kStrictPack, kStrictSpread };
const char* placement_strategy_name(PlacementStrategy strategy);

class PlacementGroup {
 public:
  PlacementGroup() = default;
  PlacementGroup(PlacementGroupId id, std::size_t bundles) : id_(id), bundles_(bundles) {}

  const PlacementGroupId& id() const { return id_; }
  std::size_t bundle_count() const { return bundles_; }
  // True once every bundle is reserved; false if `timeout` passes first.
  // Throws shoal::Error when the group was removed or cannot be placed.
  bool wait(std::chrono::nanoseconds timeout) const;
  bool ready() const { return wait(std::chrono::nanoseconds(0)); }

 private:
  PlacementGroupId id_;
  std::size_t bundles_ = 0;
};

// Throws shoal::Error (kInvalidArgument) for no bundles, an empty bundle or
// bad quantities.
PlacementGroup placement_group(std::vector<ResourceRequest> bundles,
                               PlacementStrategy strategy = PlacementStrategy::kPack,
                               std::string name = {});
void remove_placement_group(const PlacementGroup& group);

}  // namespace shoal
