"""Tasks and actors across a 3-node cluster (issue 4).

Every node and every driver is tests/cluster/task_app, one binary that
registers the functions and the actor class (the embedding use: the same
binary runs on every machine). Each driver run prints one JSON object of
what it observed; the checks here are on those facts.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD_DIR, check, run_tests, wait_until)  # noqa: E402
from metadata_test import group_ready  # noqa: E402

APP = os.environ.get("SHOAL_TASK_APP") or os.path.join(BUILD_DIR, "tests", "cluster", "task_app")
CPUS = 2


def start_cluster(cluster, n=3, binary=APP, extra=()):
    first = cluster.add().start(extra=["--cpus", str(CPUS)] + list(extra), binary=binary)
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the first node's token")
    for _ in range(n - 1):
        cluster.add().start(join=[first.address], extra=["--cpus", str(CPUS)] + list(extra), binary=binary)
    wait_until(lambda: all(len([m for m in node.status().values() if m["state"] == "alive"]) == n
                           for node in cluster.nodes), 30, "every node to see %d alive" % n)
    return first


def driver(cluster, node, *args, timeout=120, check_rc=True):
    r = subprocess.run([APP, "--address", node.address, "--token-file", cluster.token_file] +
                       [str(a) for a in args], capture_output=True, text=True, env=cluster.env,
                       timeout=timeout)
    if check_rc:
        check(r.returncode == 0, "driver %s exited %d: %s" % (args, r.returncode, r.stderr[-2000:]))
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    check(lines, "driver %s printed no result; stderr: %s" % (args, r.stderr[-2000:]))
    return json.loads(lines[-1])


def node_pids(cluster):
    return {str(node.proc.pid) for node in cluster.nodes if node.alive()}


def test_ten_thousand_tasks_fan_out_with_correct_results(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "fanout", 10000)
    check(out["count"] == 10000 and out["wrong"] == 0, "wrong results: %s" % out)
    check(out["sum"] == out["expected"], "sum %d, expected %d" % (out["sum"], out["expected"]))
    used = set(out["pids"])
    check(used <= node_pids(cluster), "tasks ran outside the nodes: %s" % out["pids"])
    check(len(used) >= 2, "300 tasks behind 60 slow ones all ran on one node: %s" % out["pids"])


def test_actor_calls_stay_in_submission_order(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "actor_order", 3000)
    check(out["count"] == 3000, "the actor saw %d of 3000 calls" % out["count"])
    check(out["in_order"], "calls ran out of order")
    check(str(out["actor_pid"]) in node_pids(cluster), "the actor is not on a node")


def test_spread_lands_on_distinct_nodes(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "spread", 3)
    check(len(out["pids"]) == 3, "3 SPREAD tasks ran on %d node(s): %s" % (len(out["pids"]), out["pids"]))
    check(set(out["pids"]) == node_pids(cluster), "SPREAD tasks ran outside the nodes")


def test_running_tasks_never_exceed_a_nodes_cpus(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "concurrency", 48, 100)
    check(out["count"] == 48, "got %d results" % out["count"])
    for pid, most in out["max_overlap"].items():
        check(pid in node_pids(cluster), "a task ran outside the nodes (pid %s)" % pid)
        check(most <= CPUS, "node pid %s ran %d tasks at once with %d CPUs" % (pid, most, CPUS))


def test_errors_timeouts_and_dead_actors_reach_get(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "errors")
    check(out["type"] == "std::runtime_error", "exception type: %s" % out)
    check(out["message"] == 'boom "quoted"', "exception message: %s" % out)
    check(out["function"] == "fail_with", "function: %s" % out)
    check(len(out["node"]) == 32, "node id: %s" % out)
    check(out["timed_out"], "get() with a timeout did not time out: %s" % out)
    check("sleep_ms" in out["timeout_message"], "the timeout does not name the task: %s" % out)
    check("killed" in out["actor_died"], "a call to a killed actor: %s" % out)


def test_nested_tasks_run_on_nodes(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "nested", 200)
    check(out["total"] == out["expected"], "nested fan-out: %s" % out)


def test_named_actor_is_found_from_another_driver(cluster):
    first = start_cluster(cluster)
    created = driver(cluster, first, "named_create", "ledger")
    check("already exists" in created["duplicate_error"], "a second actor took the name: %s" % created)
    # Another process, through another node, finds it by name.
    found = driver(cluster, cluster.nodes[2], "named_get", "ledger")
    check(found["items"] == [7, 8, 9], "the named actor's state: %s" % found)
    check("no actor named ledger-nobody" in found["missing_error"], "unknown name: %s" % found)


def named_record(cluster, node, name):
    r = cluster.ctl(["--address", node.address, "--token-file", cluster.token_file, "kv", "get",
                     "/shoal/named_actors/default/" + name])
    return json.loads(r.stdout) if r.returncode == 0 else None


def test_a_detached_actor_is_restarted_by_the_cluster_after_its_creator_left(cluster):
    first = start_cluster(cluster)
    victim = cluster.nodes[2]
    # Three voters first: a node lost while the group has only two (the
    # second just promoted) leaves no quorum to restart anything.
    wait_until(lambda: group_ready(cluster.nodes, 3), 40, "a metadata leader and three voters")
    made = driver(cluster, first, "detached_create", "keeper", victim.node_id())
    check(made["pid"] == victim.proc.pid and made["fragile_pid"] == victim.proc.pid,
          "the actors are not on the chosen node: %s" % made)
    victim.kill9()  # its creator exited already: nobody but the cluster can restart it
    others = {n.address for n in cluster.nodes if n.alive()}
    wait_until(lambda: (named_record(cluster, first, "keeper") or {}).get("address") in others, 30,
               "the metadata leader's node to restart the detached actor elsewhere")
    record = named_record(cluster, first, "keeper")
    check(record["restarts"] == "1" and record["owner"] in others and record["state"] == "ALIVE",
          "the restarted actor's record: %s" % record)
    found = driver(cluster, cluster.nodes[1], "named_get", "keeper")
    check(found["items"] == [5, 9], "the restarted actor did not run its constructor again with its "
          "original arguments (5) before the new call (9): %s" % found)
    wait_until(lambda: named_record(cluster, first, "keeper-fragile") is None, 30,
               "the detached actor without restarts to be given up")
    check(any("max_restarts 0 used up: it is gone" in n.log() for n in cluster.nodes if n.alive()),
          "giving up the actor without restarts was not logged with its reason")


def test_missing_function_fails_clearly(cluster):
    # Nodes of the plain shoal binary register no functions at all.
    first = start_cluster(cluster, binary=None)
    out = driver(cluster, first, "missing")
    check("not registered" in out["error"] and "square" in out["error"],
          "error for a function no node has: %s" % out)


def run_retry_while_killing(cluster, victim_index):
    first = start_cluster(cluster)
    proc = subprocess.Popen([APP, "--address", first.address, "--token-file", cluster.token_file,
                             "retry", "60", "400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cluster.env)
    try:
        line = proc.stdout.readline()
        check(line.startswith("{"), "driver: %s" % line)
        time.sleep(1.0)  # tasks are running on every node
        cluster.nodes[victim_index].kill9()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check(proc.returncode == 0, "driver exited %d: %s" % (proc.returncode, err[-2000:]))
    result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    check(result["count"] == 60 and result["wrong"] == 0, "results after a node died: %s" % result)
    # The retries are visible: shoalctl tasks shows attempts after the first
    # with the reason (the node that died), finished on a live node.
    victim = cluster.nodes[victim_index]
    survivor = [n for n in cluster.nodes if n.alive()][0]
    r = cluster.ctl(["--address", survivor.address, "--token-file", cluster.token_file, "tasks", "--json"])
    check(r.returncode == 0, "shoalctl tasks failed: %s" % r.stderr)
    tasks = json.loads(r.stdout)["tasks"]
    retried = [t for t in tasks if t["function"] == "slow_square" and t["attempts"] >= 2]
    check(retried, "shoalctl tasks shows no retried task: %s" % r.stdout[:2000])
    for t in retried:
        last = t["history"][-1]
        check(last["state"] == "FINISHED" and last["address"] != victim.address,
              "a retried task did not finish on a live node: %s" % t)
        check(victim.address in last["retry_reason"] and "left the cluster" in last["retry_reason"],
              "a retry does not say it was for the node that died: %s" % t)
    text = cluster.ctl(["--address", survivor.address, "--token-file", cluster.token_file, "tasks",
                        "--id", retried[0]["id"]]).stdout
    check("retried: attempt" in text and "1 task(s)" in text, "shoalctl tasks --id: %s" % text)


def test_tasks_of_a_killed_node_are_retried(cluster):
    run_retry_while_killing(cluster, 2)


def test_driver_survives_the_loss_of_the_node_it_attached_to(cluster):
    # The driver learns the members from node 0; it dies mid-run.
    run_retry_while_killing(cluster, 0)


def test_busy_node_spills_soft_affinity_tasks_back(cluster):
    first = start_cluster(cluster)
    target = cluster.nodes[0]
    # Hard affinity: all 12 wait on that node's 2 CPUs.
    hard = driver(cluster, first, "affinity", target.node_id(), "hard")
    check(hard["pids"] == {str(target.proc.pid): 12}, "hard affinity ran elsewhere: %s" % hard)
    # Soft: the node runs what it can and hands the rest back to be placed
    # on nodes with free CPUs.
    soft = driver(cluster, first, "affinity", target.node_id(), "soft")
    check(sum(soft["pids"].values()) == 12, "soft affinity results: %s" % soft)
    check(set(soft["pids"]) <= node_pids(cluster), "tasks ran outside the nodes: %s" % soft)
    check(len(soft["pids"]) >= 2 and soft["pids"].get(str(target.proc.pid), 0) < 12,
          "the busy node spilled nothing back: %s" % soft)


def test_actor_restarts_elsewhere_when_its_node_dies(cluster):
    run_actor_restart(cluster)


def test_a_detached_actor_restarts_for_its_living_creator_too(cluster):
    # The cluster restarts it; the creator's calls wait for the new instance.
    run_actor_restart(cluster, "detached")


def run_actor_restart(cluster, *extra):
    first = start_cluster(cluster)
    victim = cluster.nodes[2]
    wait_until(lambda: group_ready(cluster.nodes, 3), 40, "a metadata leader and three voters")
    proc = subprocess.Popen([APP, "--address", first.address, "--token-file", cluster.token_file,
                             "restart", victim.node_id()] + list(extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        before = json.loads(proc.stdout.readline())
        check(before["pid"] == victim.proc.pid, "the actor is not on the chosen node: %s" % before)
        victim.kill9()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check(proc.returncode == 0, "driver exited %d: %s" % (proc.returncode, err[-2000:]))
    after = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    check(after["items"] == [2], "the restarted actor's state (constructor ran again): %s" % after)
    check(str(after["pid"]) in node_pids(cluster), "the restarted actor is not on a live node: %s" % after)


def test_a_restarted_actor_gets_the_refs_its_constructor_was_given(cluster):
    first = start_cluster(cluster)
    victim = cluster.nodes[2]
    with StepDriver(cluster, first, "ctor_refs", victim.node_id()) as d:
        ready = d.read()
        check(ready["pid"] == victim.proc.pid and ready["before_ok"], "before the restart: %s" % ready)
        victim.kill9()
        out = d.last("go", 120)
    check(out["after_ok"] and out["pid"] in {n.proc.pid for n in cluster.nodes if n.alive()},
          "the restarted actor did not read the values its constructor's refs name: %s" % out)


def test_actor_calls_in_flight_run_again_after_a_restart_only_with_max_task_retries(cluster):
    first = start_cluster(cluster)
    victim = cluster.nodes[2]
    with StepDriver(cluster, first, "call_retry", victim.node_id()) as d:
        ready = d.read()
        check(ready["pids"] == [victim.proc.pid, victim.proc.pid], "the actors are not on the chosen node: %s" % ready)
        victim.kill9()
        out = d.last("go", 120)
    others = {int(pid) for pid in node_pids(cluster)}
    check(out["a_pid"] in others, "the call with max_task_retries did not run again on a live node: %s" % out)
    check(out["b_error"].startswith("ActorDied: ") and victim.address in out["b_error"],
          "the call without max_task_retries did not fail with ActorDied naming the lost node: %s" % out)
    check(out["b_after"] in others, "the actor without call retries did not restart for new calls: %s" % out)


def free_cpus(cluster, node):
    members = node.status()
    return sum(m["available"]["cpus"] for m in members.values() if m["state"] == "alive")


def test_what_a_dead_driver_held_is_freed(cluster):
    first = start_cluster(cluster)
    total = CPUS * len(cluster.nodes)
    wait_until(lambda: free_cpus(cluster, first) == total, 10, "every CPU free at the start")
    proc = subprocess.Popen([APP, "--address", first.address, "--token-file", cluster.token_file, "abandon"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        held = json.loads(proc.stdout.readline())
        check(held["group_ready"], "the driver's placement group: %s" % held)
        wait_until(lambda: free_cpus(cluster, first) == total - 2, 10,
                   "the actor's CPU and the group's bundle to show as taken")
        proc.kill()  # SIGKILL: no shutdown, nothing released by the driver
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Nodes notice the owner is gone (heartbeats fail), wait out the grace
    # (10 s), then stop its actor and release its bundle.
    wait_until(lambda: free_cpus(cluster, first) == total, 40,
               "the CPUs a kill -9'ed driver held to come back")


def test_infeasible_task_is_pending_with_its_reason(cluster):
    first = start_cluster(cluster)
    proc = subprocess.Popen([APP, "--address", first.address, "--token-file", cluster.token_file,
                             "infeasible", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cluster.env)
    try:
        check(proc.stdout.readline().startswith("{"), "driver did not submit")

        def shown():
            r = cluster.ctl(["--address", cluster.nodes[1].address, "--token-file", cluster.token_file,
                             "status", "--json"])
            demand = json.loads(r.stdout)["pending_demand"] if r.returncode == 0 else []
            return demand if demand and demand[0]["tasks"] == 1 else None
        demand = wait_until(shown, 20, "shoalctl status to show the pending task")
        check("square" in demand[0]["summary"] and "CPU 64" in demand[0]["summary"] and
              "can ever fit" in demand[0]["summary"], "pending demand: %s" % demand)
        text = cluster.ctl(["--address", first.address, "--token-file", cluster.token_file, "status"])
        check("Pending demand" in text.stdout and "square" in text.stdout, "status table: %s" % text.stdout)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    check("can ever fit" in result["timeout_message"], "get() timeout: %s" % result)
    # The owner is gone: its record goes with it.
    wait_until(lambda: json.loads(cluster.ctl(["--address", first.address, "--token-file", cluster.token_file,
                                                "status", "--json"]).stdout)["pending_demand"] == [],
               20, "the pending demand to clear when its owner stopped")


def test_placement_groups_reserve_all_or_nothing_and_free_on_removal(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "groups")
    check(out["spread_ready"], "a STRICT_SPREAD group of 3 x 1 CPU on 3 nodes was not placed: %s" % out)
    check(set(out["bundle_pids"]) == node_pids(cluster), "its bundles' tasks did not run on 3 nodes: %s" % out)
    check("more than bundle 0" in out["too_big"], "a task larger than its bundle: %s" % out)
    check(out["actor_pid"] == out["bundle1_pid"], "the actor in bundle 1 is not on bundle 1's node: %s" % out)
    check(not out["pair_ready_before"], "2 CPUs on one node were reserved while every node had 1 free: %s" % out)
    check(out["pair_ready_after"], "removing the first group did not free its CPUs: %s" % out)
    check(str(out["pair_pid"]) in node_pids(cluster), "the pair's task: %s" % out)
    check(not out["four_ready"], "STRICT_SPREAD of 4 bundles was placed on 3 nodes: %s" % out)
    check("removed" in out["removed_wait"], "wait() on a removed group: %s" % out)
    check("at least one bundle" in out["empty_error"], "a group of no bundles: %s" % out)
    check(out["solo_ready"], "a group of one 1-CPU bundle was not placed: %s" % out)
    check(out["waiting_failed"] == 3 and "removed" in out["waiting_error"],
          "tasks waiting for the bundle of a removed group did not fail with the reason: %s" % out)
    check(out["running_value"] == 1500, "the task running in the removed group's bundle: %s" % out)


def test_gpus_are_devices_shared_by_tasks_actors_and_jobs(cluster):
    # One node with 2 GPUs: an actor holds one, tasks use the other (halves
    # packed onto it, wholes in turn), and a command job started while the
    # actor lives gets the other device in CUDA_VISIBLE_DEVICES.
    first = start_cluster(cluster, n=1, extra=["--gpus", "2"])
    release = os.path.join(cluster.root, "gpus-release")
    proc = subprocess.Popen([APP, "--address", first.address, "--token-file", cluster.token_file, "gpus", release],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        line = proc.stdout.readline()
        check(line.startswith("{"), "the gpus driver printed %r; stderr: %s" % (line, proc.stderr.read()[-2000:]
                                                                                if proc.poll() is not None else ""))
        out = json.loads(line)
        check(len(out["held"]) == 1 and out["held"][0] in (0, 1), "the actor's GPU ids: %s" % out)
        other = 1 - out["held"][0]
        check(out["halves"] == [[other], [other]], "two half-GPU tasks did not share the free device: %s" % out)
        check(out["wholes"] == [[other], [other]], "whole-GPU tasks did not get the free device: %s" % out)
        check(out["none"] == [], "a task without GPUs saw GPU ids: %s" % out)
        r = cluster.ctl(["--address", first.address, "--token-file", cluster.token_file, "submit", "--cpus", "0",
                         "--gpus", "1", "--", "/bin/sh", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"'], timeout=60)
        check(r.returncode == 0, "the GPU job: %d %s" % (r.returncode, r.stderr))
        check(r.stdout.split("\n", 1)[1] == "[%d]\n" % other,
              "a job ran beside an actor holding GPU %d and saw %r" % (out["held"][0], r.stdout))
        open(release, "w").close()
        rest, err = proc.communicate(timeout=60)
        check(proc.returncode == 0, "the gpus driver exited %d: %s" % (proc.returncode, err[-2000:]))
        check(json.loads(rest.strip().splitlines()[-1])["held_at_end"] == out["held"],
              "the actor's GPU ids changed: %s" % rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_large_values_move_between_nodes(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "objects", 100, timeout=300)
    check(out["broadcast_wrong"] == 0, "tasks read a 100 MiB put() value wrongly: %s" % out)
    check(set(out["pids"]) <= node_pids(cluster) and len(out["pids"]) == 3,
          "6 SPREAD tasks of the put() value did not run on the 3 nodes: %s" % out)
    check(out["result_ok"], "the driver read a 100 MiB result wrongly: %s" % out)
    check(out["chain_ok"], "a large result passed to the next task arrived wrongly: %s" % out)
    check(out["nested_ok"], "refs inside a value, read by a node: %s" % out)
    check(out["actor_ok"], "actor calls around a large argument ran out of order or wrongly: %s" % out)
    # Node to node (the results, and the chain's argument) they went as raw
    # streams on the bulk channel, not in readObject chunks.
    bulk = sum(n.get("bulk_bytes_served", 0) for n in memory(cluster, first)["nodes"])
    check(bulk >= 100 << 20, "the nodes served %d bytes on the bulk channel, not every 100 MiB value" % bulk)


def memory(cluster, node):
    r = cluster.ctl(["--address", node.address, "--token-file", cluster.token_file, "memory", "--json"])
    check(r.returncode == 0, "shoalctl memory exited %d: %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)


def test_large_objects_are_listed_and_freed_everywhere(cluster):
    first = start_cluster(cluster)
    p = subprocess.Popen([APP, "--address", first.address, "--token-file", cluster.token_file, "hold"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=cluster.env)
    try:
        held = json.loads(p.stdout.readline())
        check(held["wrong"] == 0, "tasks read the large values wrongly: %s" % held)
        mem = memory(cluster, first)
        check(len(mem["nodes"]) == 3 and all("error" not in n for n in mem["nodes"]),
              "shoalctl memory did not answer for 3 nodes: %s" % mem)
        rows = [(n["id"], o) for n in mem["nodes"] for o in n["objects"]]
        kept = [(n, o) for n, o in rows if o["id"] == held["made"] and o["reference"] == "held for its owner"]
        check(len(kept) == 1 and kept[0][1]["size"] > 2 << 20 and kept[0][1]["owner"],
              "the node that made the 2 MiB result does not list it as held for its owner: %s" % rows)
        holder_pid = [n.proc.pid for n in cluster.nodes if n.node_id() == kept[0][0]]
        check(holder_pid == [held["local_pid"]],
              "a task of the 2 MiB result ran in pid %s, not on the node holding it (%s)"
              % (held["local_pid"], holder_pid))
        copies = [o for _, o in rows if o["reference"] == "copy" and o["id"] in (held["made"], held["put"])]
        check(copies, "no node lists the copies its tasks pulled: %s" % rows)
        p.stdin.write("drop\n")
        p.stdin.flush()
        check(json.loads(p.stdout.readline()).get("dropped"), "the driver did not drop its refs")

        def gone():
            m = memory(cluster, first)
            return not [o for n in m["nodes"] for o in n["objects"] if o["id"] in (held["made"], held["put"])]
        wait_until(gone, 10, "every node to free the result and the copies once the owner dropped them")
        p.stdin.write("exit\n")
        p.stdin.flush()
        check(p.wait(30) == 0, "the driver exited %s: %s" % (p.returncode, p.stderr.read()[-2000:]))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_a_pull_goes_on_from_a_copy_when_its_holder_is_killed(cluster):
    # The driver's pull starts at node B's copy (pullers spread over the
    # copies, and the holder A already served B); B is killed mid-pull and the
    # rest comes from A.
    first = start_cluster(cluster)
    p = subprocess.Popen([APP, "--address", first.address, "--token-file", cluster.token_file, "failover",
                          first.node_id()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        info = json.loads(p.stdout.readline() or "{}")
        check(info.get("b_read") == 256 << 20, "node B did not read the 256 MiB result: %s" % info)
        victims = [n for n in cluster.nodes if n.proc.pid == info["victim_pid"]]
        check(len(victims) == 1 and victims[0] is not first, "node B is not a node: %s" % info)
        served_before = {n["id"]: n["bytes_served"] for n in memory(cluster, first)["nodes"]}
        p.stdin.write("go\n")
        p.stdin.flush()
        time.sleep(0.05)  # the driver's pull has begun, or is about to
        victims[0].kill9()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check(p.returncode == 0, "driver exited %d: %s" % (p.returncode, err[-2000:]))
    result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    check(result["ok"], "the value read after its copy's node died is wrong: %s" % result)
    check("no holder could send it" in result["lost_error"] and "retries are used up" in result["lost_error"],
          "a value only the killed node held (its task without retries) did not fail clearly: %s" % result)
    served_after = {n["id"]: n["bytes_served"] for n in memory(cluster, first)["nodes"] if "error" not in n}
    holder = [i for i in served_after if i != first.node_id() and i in served_before]
    check(len(holder) == 1 and served_after[holder[0]] > served_before[holder[0]],
          "node A did not send the rest once B was killed: before %s, after %s" % (served_before, served_after))


def test_later_pullers_read_from_copies_not_only_the_owner(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "copies")
    for seen in out["seen"]:
        check(seen["size"] == out["size"] and seen["hash"] == out["hash"],
              "a task read the 4 MiB value wrongly: %s" % out)
    check(len({s["pid"] for s in out["seen"]}) == 3, "the three reads did not run on three nodes: %s" % out)
    served = {n["id"]: n["bytes_served"] for n in memory(cluster, first)["nodes"]}
    check(set(served) == {out["a"], out["b"], out["c"]}, "shoalctl memory did not answer for 3 nodes: %s" % served)
    # B pulled it from the driver, then sent all of it to one later puller;
    # A and C kept copies but nobody read from them.
    check(served[out["b"]] >= out["size"],
          "no later puller read from node B's copy (bytes served per node: %s)" % served)
    check(served[out["a"]] == 0 and served[out["c"]] == 0,
          "nodes that read the value last served bytes of it: %s" % served)


def test_a_64_mib_store_moves_ten_times_that_through_spilling(cluster):
    first = start_cluster(cluster, n=1, extra=["--object-store-memory", "64MiB"])
    out = driver(cluster, first, "spill", timeout=300)
    check(out["correct"] == 80, "of 80 values of 8 MiB put through a 64 MiB store, %d read back right: %s"
          % (out["correct"], out))
    check("ObjectStoreFull" in out["too_big"] and "bigger than the whole object store" in out["too_big"],
          "a 100 MiB put() into a 64 MiB store: %s" % out)
    check(out["pulled"] == 12, "of 12 values of 8 MiB the node spilled, %d were pulled right: %s"
          % (out["pulled"], out))
    with open(first.log_path) as f:
        check("read back from its spill file to serve a pull" in f.read(),
              "the node served no pull from its spill files (the test lost its point): %s" % out)
    # Results the node made and holds for the driver spill too.
    with StepDriver(cluster, first, "held_spill") as d:
        check(d.read()["ready"] == 12, "the 12 results of 8 MiB did not all finish")
        held = [o for n in memory(cluster, first)["nodes"] for o in n["objects"]
                if o["reference"] == "held for its owner"]
        spilled = [o for o in held if o["state"] == "spilled"]
        check(len(held) == 12 and len(spilled) >= 4,
              "96 MiB of held results in a 64 MiB store: %d listed, %d spilled: %s"
              % (len(held), len(spilled), held))
        got = d.last("get", timeout=180)
        check(got["correct"] == 12, "of 12 held results, some spilled, %d read back right: %s" % (got["correct"], got))
    spill = os.path.join(first.data_dir, "spill")
    wait_until(lambda: os.path.isdir(spill) and not os.listdir(spill), 10,
               "the spill files to go once their objects were freed")


class StepDriver:
    """A driver that prints one JSON line per step and waits for a line on
    stdin before the next (task_app's hold and borrow modes)."""

    def __init__(self, cluster, node, *args, env=None):
        self.proc = subprocess.Popen([APP, "--address", node.address, "--token-file", cluster.token_file] +
                                     list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env or cluster.env)

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            check(False, "the driver stopped early (exit %s): %s" % (self.proc.wait(), self.proc.stderr.read()[-2000:]))
        try:
            return json.loads(line)
        except ValueError:
            check(False, "the driver printed %r, not one JSON object" % line)

    def step(self, word):
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        return self.read()

    def last(self, word, timeout):
        """Sends the last step; the driver prints its result and exits 0."""
        out, err = self.proc.communicate(word + "\n", timeout=timeout)
        check(self.proc.returncode == 0, "driver exited %d: %s" % (self.proc.returncode, err[-2000:]))
        return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])

    def finish(self):
        self.proc.stdin.write("exit\n")
        self.proc.stdin.flush()
        check(self.proc.wait(30) == 0, "the driver exited %s: %s" % (self.proc.returncode,
                                                                    self.proc.stderr.read()[-2000:]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_borrowed_refs_keep_objects_alive_until_the_last_borrower_drops_them(cluster):
    first = start_cluster(cluster)
    with StepDriver(cluster, first, "borrow") as d:
        kept = d.read()
        # The driver dropped its references; an actor on a third node keeps
        # the refs (to a value a node owns and to one the driver put).
        by_node = {n["id"]: n["objects"] for n in memory(cluster, first)["nodes"]}
        inner_rows = [o for o in by_node[kept["holder"]] if o["id"] == kept["inner"]]
        check(len(inner_rows) == 1 and "lent to 1 borrower" in inner_rows[0]["reference"]
              and inner_rows[0]["size"] > 3 << 20,
              "the node owning the returned value does not list it as lent: %s %s" % (kept, by_node))
        borrowed = {o["id"]: o for o in by_node[kept["keeper"]] if o["reference"].startswith("borrowed")}
        check(kept["inner"] in borrowed and kept["mine"] in borrowed,
              "the keeper's node does not list both refs as borrowed: %s" % by_node[kept["keeper"]])
        check(borrowed[kept["inner"]]["owner"] and borrowed[kept["mine"]]["owner"]
              and borrowed[kept["inner"]]["owner"] != borrowed[kept["mine"]]["owner"],
              "borrowed rows do not name their two owners: %s" % borrowed)
        read = d.step("read")
        check(read["read_ok"], "the keeper could not read what its owners dropped: %s" % read)
        check(d.step("drop").get("dropped"), "the keeper did not drop its refs")

        def gone():
            m = memory(cluster, first)
            return not [o for n in m["nodes"] for o in n["objects"] if o["id"] in (kept["inner"], kept["mine"])]
        wait_until(gone, 15, "every node to free the values once the last borrower dropped them")
        d.finish()


def test_one_gib_values_put_and_get_across_nodes(cluster):
    first = start_cluster(cluster)
    out = driver(cluster, first, "gib", 1024, timeout=600)
    check(out["put_ok"], "a 1 GiB put() read back here is wrong: %s" % out)
    check(out["remote_read_ok"], "a task on another node read the 1 GiB put() value wrongly: %s" % out)
    check(out["result_ok"], "the 1 GiB result of a task on another node arrived wrongly: %s" % out)


def run_lineage(cluster, lineage_bytes=None):
    """Kills the node holding the only copies of three values (see task_app's
    lineage mode) and returns what the driver saw of each."""
    first = start_cluster(cluster)
    victim = cluster.nodes[2]
    env = dict(cluster.env)
    if lineage_bytes is not None:
        env["SHOAL_MAX_LINEAGE_BYTES"] = str(lineage_bytes)
    with StepDriver(cluster, first, "lineage", victim.node_id(), env=env) as d:
        check(d.read().get("ready"), "the driver did not make the values")
        victim.kill9()
        wait_until(lambda: all(m["state"] != "alive" for m in first.status().values()
                               if m["address"] == victim.address), 20, "the killed node to leave the view")
        return d.last("go", 300)


def test_lost_results_are_made_again_by_their_tasks(cluster):
    out = run_lineage(cluster)
    check(out["a"] == "ok", "a result whose only copy died was not made again for get(): %s" % out)
    check(out["c"] == "ok", "a task whose argument's only copy died did not run again with it remade: %s" % out)
    check(out["inner"].startswith("OwnerDied: ") and "cannot be reached" in out["inner"],
          "a value whose owner died did not fail with OwnerDied: %s" % out)


def test_lost_results_without_lineage_fail_with_lineage_evicted(cluster):
    out = run_lineage(cluster, lineage_bytes=1)
    for k in ("a", "c"):
        check(out[k].startswith("LineageEvicted: ") and "SHOAL_MAX_LINEAGE_BYTES" in out[k],
              "a lost value whose lineage was dropped did not fail with LineageEvicted: %s" % out)


def test_a_node_frozen_for_30_s_is_declared_dead_and_rejoins_without_its_stale_work(cluster):
    first = start_cluster(cluster)
    victim = cluster.nodes[2]
    with StepDriver(cluster, first, "freeze", victim.node_id()) as d:
        ready = d.read()
        check(ready.get("actor_pid_before") == victim.proc.pid, "the actor did not start on the victim: %s" % ready)
        frozen_at = time.time()
        victim.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: all(m["state"] == "dead" for m in first.status().values()
                                   if m["address"] == victim.address), 25, "the frozen node to be declared dead")
            time.sleep(max(0, 30 - (time.time() - frozen_at)))
        finally:
            victim.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: all(m["state"] == "alive" for m in first.status().values()
                               if m["address"] == victim.address), 30, "the thawed node to rejoin")
        result = d.last("go", 180)
    check_stale_work_dropped(cluster, victim, result, "thawed")


def check_stale_work_dropped(cluster, victim, result, how):
    """After the freeze driver's "go" (task_app's freeze mode): the task's
    result and the actor came from other nodes, the node declared dead ran
    new work again, and dropped what it ran for others."""
    others = {int(pid) for pid in node_pids(cluster)} - {victim.proc.pid}
    check(result["task_pid"] in others, "the task's result came from pid %s, not another live node's (%s): "
          "the %s node's stale result was accepted" % (result["task_pid"], others, how))
    check(result["actor_pid_after"] in others, "the actor was not restarted on another node: %s" % result)
    check(result["again_pid"] == victim.proc.pid, "the %s node did not run new work: %s" % (how, result))
    # The node drops its work once the metadata shows the majority declared
    # it dead (it reads that after rejoining).
    wait_until(lambda: "stopping 1 actor(s)" in victim.log(), 30,
               "the %s node to drop the work it ran for others" % how)
    check("the cluster declared this node dead" in victim.log(),
          "the %s node's log does not say why it dropped its work" % how)


def test_a_task_bound_to_a_node_that_just_left_waits_for_it(cluster):
    first = start_cluster(cluster)
    victim = cluster.nodes[2]
    with StepDriver(cluster, first, "affinity_wait", victim.node_id()) as d:
        check(d.read().get("ready"), "the driver did not see the 3 nodes")
        victim.kill9()
        wait_until(lambda: all(m["state"] != "alive" for m in first.status().values()
                               if m["address"] == victim.address), 20, "the killed node to leave the view")
        d.proc.stdin.write("go\n")
        d.proc.stdin.flush()
        time.sleep(2)
        check(d.proc.poll() is None, "a task bound to a node gone for 2 s failed at once")
        victim.start(join=[first.address], extra=["--cpus", str(CPUS)], binary=APP)
        out, err = d.proc.communicate(timeout=90)
    check(d.proc.returncode == 0, "driver exited %d: %s" % (d.proc.returncode, err[-2000:]))
    result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    check(result["pid"] == victim.proc.pid, "the task ran in pid %s, not on the restarted node (pid %d)"
          % (result["pid"], victim.proc.pid))


if __name__ == "__main__":
    run_tests([
        test_ten_thousand_tasks_fan_out_with_correct_results,
        test_actor_calls_stay_in_submission_order,
        test_spread_lands_on_distinct_nodes,
        test_running_tasks_never_exceed_a_nodes_cpus,
        test_errors_timeouts_and_dead_actors_reach_get,
        test_nested_tasks_run_on_nodes,
        test_named_actor_is_found_from_another_driver,
        test_missing_function_fails_clearly,
        test_a_detached_actor_is_restarted_by_the_cluster_after_its_creator_left,
        test_tasks_of_a_killed_node_are_retried,
        test_driver_survives_the_loss_of_the_node_it_attached_to,
        test_infeasible_task_is_pending_with_its_reason,
        test_busy_node_spills_soft_affinity_tasks_back,
        test_actor_restarts_elsewhere_when_its_node_dies,
        test_a_detached_actor_restarts_for_its_living_creator_too,
        test_actor_calls_in_flight_run_again_after_a_restart_only_with_max_task_retries,
        test_a_restarted_actor_gets_the_refs_its_constructor_was_given,
        test_what_a_dead_driver_held_is_freed,
        test_placement_groups_reserve_all_or_nothing_and_free_on_removal,
        test_gpus_are_devices_shared_by_tasks_actors_and_jobs,
        test_large_values_move_between_nodes,
        test_large_objects_are_listed_and_freed_everywhere,
        test_a_pull_goes_on_from_a_copy_when_its_holder_is_killed,
        test_later_pullers_read_from_copies_not_only_the_owner,
        test_a_64_mib_store_moves_ten_times_that_through_spilling,
        test_a_task_bound_to_a_node_that_just_left_waits_for_it,
        test_borrowed_refs_keep_objects_alive_until_the_last_borrower_drops_them,
        test_one_gib_values_put_and_get_across_nodes,
        test_lost_results_are_made_again_by_their_tasks,
        test_lost_results_without_lineage_fail_with_lineage_evicted,
        test_a_node_frozen_for_30_s_is_declared_dead_and_rejoins_without_its_stale_work,
    ])
