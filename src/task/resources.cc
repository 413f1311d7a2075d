#include "task/resources.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "base/assert.h"

namespace shoal::detail {

namespace {

Result<int64_t> to_units(std::string_view name, double wholes) {
  if (name.empty()) return Status::invalid_argument("a resource has an empty name");
  if (!std::isfinite(wholes) || wholes < 0 || wholes > ResourceSet::kWholesMax) {
    char text[64];
    std::snprintf(text, sizeof text, "%g", wholes);
    return Status::invalid_argument("resource " + std::string(name) + " = " + text +
                                    ": must be a number from 0 to 1e14");
  }
  return static_cast<int64_t>(std::llround(wholes * ResourceSet::kUnitsPerWhole));
}

}  // namespace

Result<ResourceSet> ResourceSet::from_request(const ResourceRequest& request) {
  if (request.cpus == 1 && request.gpus == 0 && request.memory_bytes == 0 &&
      request.custom.empty()) {
    static const ResourceSet kOneCpu = *from_wholes({{std::string(kCpu), 1}});  // the default task
    return kOneCpu;
  }
  std::vector<std::pair<std::string, double>> wholes = {
      {std::string(kCpu), request.cpus},
      {std::string(kGpu), request.gpus},
      {std::string(kMemory), static_cast<double>(request.memory_bytes)},
  };
  for (const auto& [name, quantity] : request.custom) {
    if (name == kCpu || name == kGpu || name == kMemory) {
      return Status::invalid_argument("resource " + name +
                                      " is built in: use cpus(), gpus() or memory()");
    }
    wholes.emplace_back(name, quantity);
  }
  return from_wholes(wholes);
}

Result<ResourceSet> ResourceSet::from_wholes(
    const std::vector<std::pair<std::string, double>>& wholes) {
  ResourceSet out;
  for (const auto& [name, quantity] : wholes) {
    Result<int64_t> units = to_units(name, quantity);
    if (!units.ok()) return units.status();
    out.set_units(name, out.units(name) + *units);
  }
  return out;
}

int64_t ResourceSet::units(std::string_view name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const auto& entry, std::string_view n) { return entry.first < n; });
  return it != entries_.end() && it->first == name ? it->second : 0;
}

void ResourceSet::set_units(std::string_view name, int64_t units) {
  SHOAL_ASSERT(units >= 0, name, units);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const auto& entry, std::string_view n) { return entry.first < n; });
  if (it != entries_.end() && it->first == name) {
    if (units == 0) {
      entries_.erase(it);
    } else {
      it->second = units;
    }
  } else if (units != 0) {
    entries_.emplace(it, std::string(name), units);
  }
}

bool ResourceSet::fits_in(const ResourceSet& other) const {
  for (const auto& [name, units] : entries_) {
    if (units > other.units(name)) return false;
  }
  return true;
}

bool ResourceSet::shares_a_name_with(const ResourceSet& other) const {
  auto a = entries_.begin();
  auto b = other.entries_.begin();
  while (a != entries_.end() && b != other.entries_.end()) {
    if (a->first == b->first) return true;
    if (a->first < b->first) {
      ++a;
    } else {
      ++b;
    }
  }
  return false;
}

void ResourceSet::add(const ResourceSet& other) {
  for (const auto& [name, units] : other.entries_) set_units(name, this->units(name) + units);
}

void ResourceSet::subtract(const ResourceSet& other) {
  SHOAL_ASSERT(other.fits_in(*this), other.to_string(), to_string());
  for (const auto& [name, units] : other.entries_) set_units(name, this->units(name) - units);
}

std::string ResourceSet::key() const {
  std::string out;
  for (const auto& [name, units] : entries_) {
    out += name;
    out += '=';
    out += std::to_string(units);
    out += ';';
  }
  return out;
}

std::string ResourceSet::to_string() const {
  if (entries_.empty()) return "nothing";
  std::string out;
  char number[64];
  for (const auto& [name, units] : entries_) {
    if (!out.empty()) out += ", ";
    out += name;
    out += ' ';
    if (name == kMemory) {
      double bytes = static_cast<double>(units) / kUnitsPerWhole;
      std::snprintf(number, sizeof number, "%.0f MiB", bytes / (1024.0 * 1024.0));
    } else {
      std::snprintf(number, sizeof number, "%g", static_cast<double>(units) / kUnitsPerWhole);
    }
    out += number;
  }
  return out;
}

void NodeResources::acquire(const ResourceSet& demand) {
  SHOAL_ASSERT(can_run(demand), demand.to_string(), available_.to_string());
  available_.subtract(demand);
}

void NodeResources::release(const ResourceSet& demand) {
  available_.add(demand);
  SHOAL_ASSERT(available_.fits_in(total_), demand.to_string(), available_.to_string(),
               total_.to_string());
}

void NodeResources::add_total(const ResourceSet& extra) {
  total_.add(extra);
  available_.add(extra);
}

void NodeResources::remove_total(const ResourceSet& extra) {
  SHOAL_ASSERT(extra.fits_in(available_));
  available_.subtract(extra);
  total_.subtract(extra);
}

// ---- GpuInstances -------------------------------------------------------------------

GpuInstances::GpuInstances(const ResourceSet& total) {
  int64_t units = total.units(ResourceSet::kGpu);
  Pool pool;
  for (uint32_t id = 0; units > 0; ++id) {
    int64_t capacity = std::min(units, ResourceSet::kUnitsPerWhole);
    pool.push_back(Instance{id, capacity, capacity});
    units -= capacity;
  }
  if (!pool.empty()) pools_.emplace_back(std::string(ResourceSet::kGpu), std::move(pool));
}

bool GpuInstances::is_gpu(std::string_view name) {
  return ResourceSet::is_kind(name, ResourceSet::kGpu);
}

std::vector<uint32_t> GpuInstances::ids(const GpuGrant& grant) {
  std::vector<uint32_t> out;
  for (const GpuShare& share : grant) out.push_back(share.id);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

GpuInstances::Pool* GpuInstances::find(std::string_view name) {
  for (auto& [pool_name, pool] : pools_) {
    if (pool_name == name) return &pool;
  }
  return nullptr;
}

const GpuInstances::Pool* GpuInstances::find(std::string_view name) const {
  return const_cast<GpuInstances*>(this)->find(name);
}

std::optional<std::vector<std::pair<size_t, int64_t>>> GpuInstances::choose(const Pool& pool, int64_t units) {
  std::vector<std::pair<size_t, int64_t>> out;
  std::vector<bool> used(pool.size(), false);
  int64_t wholes = units / ResourceSet::kUnitsPerWhole;
  int64_t fraction = units % ResourceSet::kUnitsPerWhole;
  for (size_t i = 0; i < pool.size() && wholes > 0; ++i) {
    if (pool[i].capacity == ResourceSet::kUnitsPerWhole && pool[i].free == pool[i].capacity) {
      out.emplace_back(i, ResourceSet::kUnitsPerWhole);
      used[i] = true;
      --wholes;
    }
  }
  if (wholes > 0) return std::nullopt;
  if (fraction > 0) {
    std::optional<size_t> best;
    for (size_t i = 0; i < pool.size(); ++i) {
      if (used[i] || pool[i].free < fraction) continue;
      if (!best || pool[i].free < pool[*best].free) best = i;
    }
    if (!best) return std::nullopt;
    out.emplace_back(*best, fraction);
  }
  return out;
}

bool GpuInstances::can_take(const ResourceSet& demand) const {
  for (const auto& [name, units] : demand.entries()) {
    if (!is_gpu(name)) continue;
    const Pool* pool = find(name);
    if (pool == nullptr || !choose(*pool, units)) return false;
  }
  return true;
}

GpuGrant GpuInstances::take(const ResourceSet& demand) {
  GpuGrant grant;
  for (const auto& [name, units] : demand.entries()) {
    if (!is_gpu(name)) continue;
    Pool* pool = find(name);
    SHOAL_ASSERT(pool != nullptr, name);
    auto chosen = choose(*pool, units);
    SHOAL_ASSERT(chosen.has_value(), name, units);
    for (const auto& [index, share] : *chosen) {
      (*pool)[index].free -= share;
      grant.push_back(GpuShare{name, (*pool)[index].id, share});
    }
  }
  return grant;
}

void GpuInstances::give_back(const GpuGrant& grant) {
  for (const GpuShare& share : grant) {
    Pool* pool = find(share.pool);
    if (pool == nullptr) continue;  // a bundle's pool that went first (remove_pool asserts it was free)
    for (Instance& instance : *pool) {
      if (instance.id != share.id) continue;
      instance.free += share.units;
      SHOAL_ASSERT(instance.free <= instance.capacity, share.pool, share.id);
    }
  }
}

void GpuInstances::add_pool(const ResourceSet& bundle, const GpuGrant& reserved) {
  for (const auto& [name, units] : bundle.entries()) {
    if (!is_gpu(name)) continue;
    Pool pool;
    for (const GpuShare& share : reserved) {
      if (share.pool == ResourceSet::kGpu) pool.push_back(Instance{share.id, share.units, share.units});
    }
    pools_.emplace_back(name, std::move(pool));
  }
}

void GpuInstances::remove_pool(const ResourceSet& bundle) {
  for (const auto& [name, units] : bundle.entries()) {
    if (!is_gpu(name)) continue;
    for (auto it = pools_.begin(); it != pools_.end(); ++it) {
      if (it->first != name) continue;
      for (const Instance& instance : it->second) SHOAL_ASSERT(instance.free == instance.capacity, name);
      pools_.erase(it);
      break;
    }
  }
}

}  // namespace shoal::detail
