// ResourceSet and NodeResources: fixed-point quantities, feasibility,
// acquire/release, validation.
#include "task/resources.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

using namespace shoal;
using namespace shoal::detail;

TEST_CASE("resources: requests become fixed-point sets; bad quantities are refused") {
  ResourceRequest request;
  request.cpus = 0.5;
  request.gpus = 1;
  request.memory_bytes = 1 << 20;
  request.custom["ssd"] = 2;
  Result<ResourceSet> set = ResourceSet::from_request(request);
  REQUIRE(set.ok());
  CHECK(set->units("CPU") == 5'000);
  CHECK(set->wholes("GPU") == 1.0);
  CHECK(set->wholes("memory") == 1 << 20);
  CHECK(set->units("ssd") == 20'000);
  CHECK(set->units("none") == 0);
  CHECK(set->to_string() == "CPU 0.5, GPU 1, memory 1 MiB, ssd 2");

  ResourceRequest zero{.cpus = 0};
  CHECK(ResourceSet::from_request(zero)->empty());

  for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity(), 1e15}) {
    ResourceRequest r;
    r.cpus = bad;
    Result<ResourceSet> s = ResourceSet::from_request(r);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("CPU") != std::string::npos);
  }
  ResourceRequest builtin;
  builtin.custom["CPU"] = 1;
  CHECK_FALSE(ResourceSet::from_request(builtin).ok());
  ResourceRequest unnamed;
  unnamed.custom[""] = 1;
  CHECK_FALSE(ResourceSet::from_request(unnamed).ok());
}

TEST_CASE("resources: fits, add, subtract, keys") {
  ResourceSet node = *ResourceSet::from_wholes({{"CPU", 2}, {"GPU", 1}});
  ResourceSet one_cpu = *ResourceSet::from_wholes({{"CPU", 1}});
  ResourceSet three_cpu = *ResourceSet::from_wholes({{"CPU", 3}});
  ResourceSet tpu = *ResourceSet::from_wholes({{"TPU", 1}});
  CHECK(one_cpu.fits_in(node));
  CHECK_FALSE(three_cpu.fits_in(node));
  CHECK_FALSE(tpu.fits_in(node));
  CHECK(ResourceSet().fits_in(node));
  ResourceSet sum = one_cpu;
  sum.add(one_cpu);
  CHECK(sum.units("CPU") == 20'000);
  sum.subtract(one_cpu);
  CHECK(sum == one_cpu);
  sum.subtract(one_cpu);
  CHECK(sum.empty());
  CHECK(one_cpu.key() == ResourceSet::from_wholes({{"CPU", 0.5}, {"CPU", 0.5}})->key());
  CHECK(one_cpu.key() != three_cpu.key());
  CHECK(node.shares_a_name_with(tpu) == false);
  CHECK(node.shares_a_name_with(one_cpu));
  CHECK(*ResourceSet::from_wholes({{"A", 1}, {"TPU", 1}}) == *ResourceSet::from_wholes({{"TPU", 1}, {"A", 1}}));
  CHECK(ResourceSet::from_wholes({{"A", 1}, {"TPU", 1}})->shares_a_name_with(tpu));
  CHECK_FALSE(ResourceSet().shares_a_name_with(node));
}

TEST_CASE("resources: a node never hands out more than it has") {
  NodeResources node(*ResourceSet::from_wholes({{"CPU", 2}}));
  ResourceSet half = *ResourceSet::from_wholes({{"CPU", 0.5}});
  ResourceSet two = *ResourceSet::from_wholes({{"CPU", 2}});
  CHECK(node.feasible(two));
  CHECK_FALSE(node.feasible(*ResourceSet::from_wholes({{"CPU", 2.5}})));
  for (int i = 0; i < 4; ++i) {
    REQUIRE(node.can_run(half));
    node.acquire(half);
  }
  CHECK_FALSE(node.can_run(half));
  CHECK_FALSE(node.can_run(two));
  node.release(half);
  CHECK(node.can_run(half));
  for (int i = 0; i < 3; ++i) node.release(half);
  CHECK(node.available() == node.total());
}

TEST_CASE("resources: GPUs are devices: whole ones by id, fractions packed onto one device") {
  GpuInstances gpus(*ResourceSet::from_wholes({{"CPU", 8}, {"GPU", 3}}));
  ResourceSet one = *ResourceSet::from_wholes({{"GPU", 1}});
  ResourceSet half = *ResourceSet::from_wholes({{"GPU", 0.5}});
  ResourceSet quarter = *ResourceSet::from_wholes({{"GPU", 0.25}});
  ResourceSet two = *ResourceSet::from_wholes({{"GPU", 2}});
  CHECK(gpus.can_take(*ResourceSet::from_wholes({{"CPU", 8}})));  // no GPU asked: nothing to pick

  GpuGrant a = gpus.take(one);
  CHECK(GpuInstances::ids(a) == std::vector<uint32_t>{0});
  // Fractions go onto one device and fill it before the next.
  GpuGrant b = gpus.take(half);
  GpuGrant c = gpus.take(quarter);
  CHECK(GpuInstances::ids(b) == std::vector<uint32_t>{1});
  CHECK(GpuInstances::ids(c) == std::vector<uint32_t>{1});
  // 1.75 GPUs are free in all, but only one whole device: 2 whole GPUs wait.
  CHECK_FALSE(gpus.can_take(two));
  GpuGrant d = gpus.take(one);
  CHECK(GpuInstances::ids(d) == std::vector<uint32_t>{2});
  CHECK(gpus.can_take(quarter));
  CHECK_FALSE(gpus.can_take(half));
  gpus.give_back(a);
  gpus.give_back(d);
  CHECK(gpus.can_take(two));
  GpuGrant e = gpus.take(*ResourceSet::from_wholes({{"GPU", 1.5}}));
  // 1.5: a whole device and half of another; the half goes where it fits
  // most tightly (device 1 has only 0.25 left, so device 2).
  CHECK(GpuInstances::ids(e) == std::vector<uint32_t>{0, 2});
  gpus.give_back(b);
  gpus.give_back(c);
  gpus.give_back(e);
  CHECK(gpus.can_take(*ResourceSet::from_wholes({{"GPU", 3}})));
}

TEST_CASE("resources: a placement group bundle's GPUs are the devices its reservation took") {
  GpuInstances gpus(*ResourceSet::from_wholes({{"GPU", 2}}));
  GpuGrant outside = gpus.take(*ResourceSet::from_wholes({{"GPU", 1}}));
  ResourceSet reservation = *ResourceSet::from_wholes({{"GPU", 1}});
  ResourceSet bundle = *ResourceSet::from_wholes({{"GPU_pg_ab_0", 1}});
  GpuGrant reserved = gpus.take(reservation);
  CHECK(GpuInstances::ids(reserved) == std::vector<uint32_t>{1});
  gpus.add_pool(bundle, reserved);
  CHECK_FALSE(gpus.can_take(*ResourceSet::from_wholes({{"GPU", 1}})));  // both devices are taken
  GpuGrant inside = gpus.take(*ResourceSet::from_wholes({{"GPU_pg_ab_0", 0.5}}));
  CHECK(GpuInstances::ids(inside) == std::vector<uint32_t>{1});  // the bundle's device
  CHECK_FALSE(gpus.can_take(*ResourceSet::from_wholes({{"GPU_pg_ab_0", 1}})));
  gpus.give_back(inside);
  gpus.remove_pool(bundle);
  gpus.give_back(reserved);
  gpus.give_back(outside);
  CHECK(gpus.can_take(*ResourceSet::from_wholes({{"GPU", 2}})));
  CHECK_FALSE(gpus.can_take(bundle));  // the bundle's name is gone
}
