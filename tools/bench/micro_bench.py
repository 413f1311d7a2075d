#!/usr/bin/env python3
"""Tasks and actors across processes, named like Ray's microbenchmarks.

Two nodes of tools/bench/micro_bench on loopback (the machine's CPUs each);
each figure is measured by a separate driver process of the same binary
(tasks and calls cross processes: driver -> node over RPC, results back):

single_client_tasks_sync     remote().get() one at a time
single_client_tasks_async    1,000 remote() then get() of all, repeated
multi_client_tasks_async     the same from 2 driver processes at once (sum)
1_1_actor_calls_sync         one actor, call().get() one at a time
1_1_actor_calls_async        one actor, 1,000 calls then get() of all
n_n_actor_calls_async        4 actors (SPREAD), 1,000 calls round-robin
single_client_put_calls      put(0) in a loop (the owner's store)
single_client_get_calls      get() of one put value in a loop
placement_group_create_removal  create a 1-CPU group, wait until placed, remove it

Baselines measured in the same run: rpc_bench's Cap'n Proto no-op round
trips between two processes (sequential and 64 in flight), the physical
limit of one call per task here.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "cluster"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cluster import BenchCluster  # noqa: E402

FIGURES = ["single_client_tasks_sync", "single_client_tasks_async", "multi_client_tasks_async",
           "1_1_actor_calls_sync", "1_1_actor_calls_async", "n_n_actor_calls_async",
           "single_client_put_calls", "single_client_get_calls", "placement_group_create_removal"]
TARGETS = {"single_client_tasks_async": 50000, "single_client_tasks_sync": 10000,
           "1_1_actor_calls_sync": 10000, "1_1_actor_calls_async": 50000}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--rpc-bench", required=True)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="shoal-micro-")
    cluster = None
    try:
        cluster = BenchCluster(args.app, args.shoal, root, 2, name="micro")

        def driver(figure):
            return cluster.driver(figure, args.seconds)

        out = {"benchmark": "micro", "nodes": 2, "cpus": os.cpu_count(), "seconds_per_figure": args.seconds}
        for figure in FIGURES:
            procs = [driver(figure) for _ in range(2 if figure.startswith("multi_client") else 1)]
            total = 0.0
            for p in procs:
                stdout, stderr = p.communicate(timeout=120)
                if p.returncode != 0:
                    raise SystemExit("micro: %s failed: %s" % (figure, stderr[-2000:]))
                total += json.loads(stdout.strip().splitlines()[-1])[figure]
            out[figure] = round(total)
        rpc = json.loads(subprocess.run([args.rpc_bench, str(args.seconds)], capture_output=True, text=True,
                                        check=True).stdout)
        out["baseline_rpc_sequential_per_s"] = rpc["rpc_sequential_per_s"]
        out["baseline_rpc_pipelined_per_s"] = rpc["rpc_pipelined_per_s"]
        out["targets"] = TARGETS
        print(json.dumps(out))
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
