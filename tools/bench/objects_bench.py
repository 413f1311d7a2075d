#!/usr/bin/env python3
"""Objects: put/get bandwidth, node-to-node transfer, broadcast (issue 5).

Nodes of tools/bench/objects_bench on loopback; each figure is measured by a
driver process of the same binary, which also measures the figure's
physical limit in the same run:

single_client_put_gigabytes_per_s   put() of one 1 GiB value    vs memcpy of 1 GiB
single_client_get_gigabytes_per_s   get() of it (same process)  vs memcpy of 1 GiB
transfer_gigabytes_per_s            a 1 GiB result made on node A, read by a task
                                    on node B (pulled in chunks; the median of 3
                                    after a first, which is reported as
                                    first_transfer_gigabytes_per_s) vs one plain
                                    TCP stream over loopback
broadcast_seconds                   one 256 MiB put() value read by a task on each
                                    of 4 nodes
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "cluster"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cluster import BenchCluster  # noqa: E402

TARGETS = {"put_fraction_of_memcpy": 0.5, "transfer_fraction_of_tcp": 0.8}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--mib", type=int, default=1024, help="size of the put/get and transfer values")
    ap.add_argument("--broadcast-mib", type=int, default=256)
    args = ap.parse_args()

    out = {"benchmark": "objects", "cpus": os.cpu_count()}
    root = tempfile.mkdtemp(prefix="shoal-objects-")
    cluster = None
    try:
        cluster = BenchCluster(args.app, args.shoal, root, 4, name="objects")
        put = cluster.run_driver("put", args.mib)
        transfer = cluster.run_driver("transfer", args.mib)
        broadcast = cluster.run_driver("broadcast", args.broadcast_mib, 4)
        out.update({
            "value_bytes": put["bytes"],
            "single_client_put_gigabytes_per_s": put["single_client_put_gigabytes_per_s"],
            "single_client_get_gigabytes_per_s": put["single_client_get_gigabytes_per_s"],
            "baseline_memcpy_gigabytes_per_s": put["baseline_memcpy_gigabytes_per_s"],
            "put_fraction_of_memcpy": round(put["single_client_put_gigabytes_per_s"] /
                                            put["baseline_memcpy_gigabytes_per_s"], 3),
            "transfer_gigabytes_per_s": transfer["transfer_gigabytes_per_s"],
            "first_transfer_gigabytes_per_s": transfer["first_transfer_gigabytes_per_s"],
            "first_put_gigabytes_per_s": put["first_put_gigabytes_per_s"],
            "baseline_tcp_gigabytes_per_s": transfer["baseline_tcp_gigabytes_per_s"],
            "transfer_fraction_of_tcp": round(transfer["transfer_gigabytes_per_s"] /
                                              transfer["baseline_tcp_gigabytes_per_s"], 3),
            "broadcast_bytes": broadcast["bytes"],
            "broadcast_nodes": broadcast["nodes"],
            "broadcast_seconds": broadcast["broadcast_seconds"],
            "broadcast_gigabytes_per_s": broadcast["broadcast_gigabytes_per_s"],
            "targets": TARGETS,
        })
        print(json.dumps(out))
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
