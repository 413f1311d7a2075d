#!/usr/bin/env python3
"""Network partitions (issue 8): real nodes in network namespaces of their
own (netlab.py), cut apart by moving their ports to another switch.

The minority side — here the metadata leader, the hardest node to lose — is
declared dead by the majority, which elects a new leader and goes on
writing metadata and running the work the cut-off node held; the cut-off
node cannot write. When the network heals, the node learns it was declared
dead, drops what it ran for others, rejoins as a new incarnation and
catches up; nothing it finished while cut off is accepted.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402

netlab.enter()  # before anything starts: the rest of this file runs in the lab

from harness import SHOAL, check, run_tests, wait_until  # noqa: E402
from metadata_test import control, group_ready, kv, leader_of  # noqa: E402
from tasks_test import APP, CPUS, StepDriver, check_stale_work_dropped  # noqa: E402


def ctl_inside(node, *args, timeout=60):
    """shoalctl run in `node`'s own namespace (on its side of a partition)."""
    return subprocess.run(node.prefix + [SHOAL, "ctl", "--address", node.address, "--token-file",
                                         node.token_file] + list(args),
                          capture_output=True, text=True, env=node.cluster.env, timeout=timeout)


def states(seen_by, others, inside=False):
    """How `seen_by` sees each of `others`: address -> state."""
    if inside:
        r = ctl_inside(seen_by, "status", "--json")
        check(r.returncode == 0, "status inside %s failed: %s" % (seen_by.name, r.stderr.strip()))
        view = {m["address"]: m for m in json.loads(r.stdout)["members"]}
    else:
        view = seen_by.status()
    return {n.address: view.get(n.address, {}).get("state") for n in others}


def test_a_partitioned_minority_is_declared_dead_and_the_majority_goes_on(cluster):
    lab = netlab.Lab()
    try:
        nodes = [lab.place(cluster.add()) for _ in range(3)]
        nodes[0].start(extra=["--cpus", str(CPUS)], binary=APP)
        wait_until(lambda: os.path.exists(cluster.token_file), 10, "the first node's token")
        for n in nodes[1:]:
            n.start(join=[nodes[0].address], extra=["--cpus", str(CPUS)], binary=APP)
        wait_until(lambda: all(set(states(n, nodes).values()) == {"alive"} for n in nodes), 30,
                   "every node to see the other two alive")
        wait_until(lambda: group_ready(nodes, 3), 40, "a metadata leader and three voters")
        victim = leader_of(nodes)
        majority = [n for n in nodes if n is not victim]
        entry = majority[0]

        with StepDriver(cluster, entry, "freeze", victim.node_id()) as d:
            ready = d.read()
            check(ready.get("actor_pid_before") == victim.proc.pid,
                  "the actor did not start on the cut-off node: %s" % ready)
            lab.partition([victim])
            cut_at = time.monotonic()

            wait_until(lambda: all(states(n, [victim])[victim.address] == "dead" for n in majority), 30,
                       "the majority to declare the cut-off node dead")
            wait_until(lambda: control(entry)["leader_node_id"] in {n.node_id() for n in majority}, 30,
                       "the majority to elect a metadata leader of its own")
            kv(entry, "put", "partition/majority", "written while the leader was cut off")

            # From the cut-off side (a client in its namespace): the node sees
            # the others gone, and its writes are refused, never applied.
            wait_until(lambda: "alive" not in states(victim, majority, inside=True).values(), 30,
                       "the cut-off node to see the others gone")
            # The client waits longer than the node tries (10 s), so the
            # node's own answer comes back: the write was given up, for good.
            r = ctl_inside(victim, "--timeout-ms", "20000", "kv", "put", "partition/minority", "lost")
            check(r.returncode != 0 and "leader" in r.stderr,
                  "a write on the cut-off side did not fail clearly: rc %d, %r %r"
                  % (r.returncode, r.stdout, r.stderr))
            check(kv(entry, "get", "partition/minority", check_rc=False).returncode == 1,
                  "a write on the cut-off side is visible on the majority's side")
            cut_for = time.monotonic() - cut_at

            lab.heal()
            wait_until(lambda: all(set(states(n, nodes).values()) == {"alive"} for n in nodes), 60,
                       "every node to see all three alive after the heal")
            result = d.last("go", 180)

        check_stale_work_dropped(cluster, victim, result, "healed")
        # The cut-off node had declared the majority dead too, and told them
        # so when the network healed; they keep their work.
        for n in majority:
            check("the cluster declared this node dead" not in n.log(),
                  "%s dropped its work on the word of the cut-off node: %s" % (n.name, n.log()[-2000:]))

        # The healed node caught up with what the majority wrote; the write
        # refused on its side is nowhere.
        wait_until(lambda: kv(victim, "get", "partition/majority", check_rc=False).stdout.strip() ==
                   "written while the leader was cut off", 30, "the healed node to catch up")
        r = kv(entry, "get", "partition/minority", check_rc=False)
        check(r.returncode == 1, "a write the cut-off side gave up on was applied after the heal: %r" % r.stdout)
        wait_until(lambda: group_ready(nodes, 3), 40, "one leader and three voters again")
        print("cut off for %.1f s" % cut_for)
    finally:
        lab.close()


if __name__ == "__main__":
    run_tests([
        test_a_partitioned_minority_is_declared_dead_and_the_majority_goes_on,
    ])
