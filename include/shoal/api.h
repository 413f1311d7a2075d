// shoal's task API, in one include: remote functions, actors and objects in
// the shape of Ray's C++ API (ray/api.h), as modern C++.
//
//   #include <shoal/api.h>
//
//   int add(int a, int b) { return a + b; }
//   struct Counter {
//     int n = 0;
//     int incr(int by) { return n += by; }
//   };
//   SHOAL_REMOTE(add);
//   SHOAL_ACTOR(Counter, &Counter::incr);
//
//   int main(int argc, char** argv) {
//     auto cluster = shoal::init(argc, argv);
//     if (!cluster.ok()) return 1;
//     shoal::ObjectRef<int> r = shoal::task(add).remote(1, 2);
//     std::vector<shoal::ObjectRef<int>> many;
//     for (int i = 0; i < 100; ++i) many.push_back(shoal::task(add).remote(r, i));
//     std::vector<int> sums = shoal::get(many);
//     auto counter = shoal::actor<Counter>().remote();
//     int one = counter.task(&Counter::incr).remote(1).get();
//   }
//
// Where things are:
//   registry.h    SHOAL_REMOTE, SHOAL_ACTOR, SHOAL_OVERLOAD: names and registration
//   task.h        shoal::task(f) options and remote(); get, put, wait, cancel
//   actor.h       shoal::actor<T>(...), ActorHandle, get_actor, kill
//   object_ref.h  ObjectRef<T>: what a ref is, lifetime, wire form
//   serialize.h   which types can be arguments and results; limits on reading
//   errors.h      TaskError and the other exceptions get() throws
//   options.h     resources, retries, scheduling strategies, labels
//   placement_group.h  bundles of resources reserved together
//   init.h        init(), local mode, shutdown()
#pragma once

#include "shoal/actor.h"
#include "shoal/errors.h"
#include "shoal/ids.h"
#include "shoal/init.h"
#include "shoal/object_ref.h"
#include "shoal/options.h"
#include "shoal/placement_group.h"
#include "shoal/registry.h"
#include "shoal/serialize.h"
#include "shoal/status.h"
#include "shoal/task.h"
