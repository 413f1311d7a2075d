#!/usr/bin/env python3
"""The metadata Raft group with real processes: it forms by itself, serves the
key-value store from any node, survives kill -9 of its leader under load and a
restart of the whole cluster, replaces a dead voter, and refuses damaged or
foreign data."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

from harness import SHOAL, check, run_tests, wait_until, TestFailure


def control(node):
    r = node.cluster.ctl(["--address", node.address, "--token-file", node.token_file, "status", "--json"])
    if r.returncode != 0:
        raise TestFailure("status against %s failed: %s" % (node.name, r.stderr.strip()))
    return json.loads(r.stdout)["metadata"]


def kv(node, *args, check_rc=True):
    r = node.cluster.ctl(["--address", node.address, "--token-file", node.token_file, "kv"] + list(args))
    if check_rc and r.returncode != 0:
        raise TestFailure("kv %s on %s failed (%d): %s" % (" ".join(args), node.name, r.returncode, r.stderr.strip()))
    return r


def group_ready(nodes, voters):
    """Every node agrees on one leader; the group has `voters` voters."""
    leaders = set()
    for n in nodes:
        c = control(n)
        if not c["leader_node_id"]:
            return False
        leaders.add(c["leader_node_id"])
        if len(c["voters"]) != voters:
            return False
    return len(leaders) == 1


def start_three(cluster, extra=()):
    nodes = [cluster.add() for _ in range(3)]
    nodes[0].start(extra=extra)
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the bootstrap node's token")
    nodes[1].start(join=[nodes[0].address], extra=extra)
    nodes[2].start(join=[nodes[0].address], extra=extra)
    wait_until(lambda: group_ready(nodes, 3), 40, "a leader and three voters")
    return nodes


def leader_of(nodes):
    c = control(nodes[0])
    for n in nodes:
        if n.node_id() == c["leader_node_id"]:
            return n
    raise TestFailure("the leader %s is none of the nodes" % c["leader_node_id"])


def read_all(node, prefix):
    r = kv(node, "list", prefix, "--json")
    doc = json.loads(r.stdout)
    check(not doc["more"], "list of %s was cut short" % prefix)
    return {kv_["key"]: kv_["value"] for kv_ in doc["kvs"]}


def test_group_forms_and_serves_kv_from_every_node(cluster):
    nodes = start_three(cluster)
    c = control(nodes[1])
    check(c["term"] >= 1 and c["commit_index"] >= 1, "no progress: %s" % c)
    check(len(c["learners"]) == 0, "learners left over: %s" % c["learners"])
    kv(nodes[1], "put", "app/config", "hello world")
    for n in nodes:
        check(kv(n, "get", "app/config").stdout == "hello world\n", "%s reads another value" % n.name)
    missing = kv(nodes[2], "get", "app/nothing", check_rc=False)
    check(missing.returncode == 1 and "no such key" in missing.stderr, "missing key: %r" % missing.stderr)
    kv(nodes[2], "put", "app/a", "1")
    kv(nodes[0], "put", "app/b", "2")
    check(read_all(nodes[1], "app/") == {"app/config": "hello world", "app/a": "1", "app/b": "2"},
          "list differs")
    out = kv(nodes[0], "del", "app/", "--prefix").stdout
    check(out.startswith("3 deleted"), "del --prefix said %r" % out)
    check(read_all(nodes[2], "app/") == {}, "keys left after delete")
    # Every node registered itself with its address.
    registered = wait_until(lambda: (lambda d: d if len(d) == 3 else None)(read_all(nodes[0], "/shoal/nodes/")),
                            20, "three node registrations")
    for n in nodes:
        record = json.loads(registered["/shoal/nodes/" + n.node_id()])
        check(record["address"] == n.address, "registration of %s: %s" % (n.name, record))


def test_watch_prints_changes_in_order(cluster):
    nodes = start_three(cluster)
    kv(nodes[0], "put", "w/before", "0")
    rev = json.loads(kv(nodes[0], "get", "w/before", "--json").stdout)["mod_revision"]
    watcher = subprocess.Popen([SHOAL, "ctl", "--address", nodes[2].address, "--token-file", cluster.token_file,
                                "kv", "watch", "w/", "--rev", str(rev), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        kv(nodes[1], "put", "w/x", "1")
        kv(nodes[0], "put", "w/y", "2")
        kv(nodes[1], "put", "other", "not watched")
        kv(nodes[2], "del", "w/x")
        events = []
        deadline = time.monotonic() + 15
        while len(events) < 4 and time.monotonic() < deadline:
            line = watcher.stdout.readline()
            if not line:
                break
            events.append(json.loads(line))
        got = [(e["type"], e["key"]) for e in events]
        check(got == [("put", "w/before"), ("put", "w/x"), ("put", "w/y"), ("delete", "w/x")],
              "watch saw %s" % got)
        revs = [e["mod_revision"] for e in events]
        check(revs == sorted(revs), "revisions out of order: %s" % revs)
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(10)


def test_acknowledged_writes_survive_leader_kill9_and_full_restart(cluster):
    nodes = start_three(cluster)
    leader = leader_of(nodes)
    acked_file = os.path.join(cluster.root, "acked")
    load = subprocess.Popen([SHOAL, "debug", "kv-load", "--token-file", cluster.token_file,
                             "--count", "10000", "--concurrency", "16", "--prefix", "load/",
                             "--acked", acked_file] + sum((["--address", n.address] for n in nodes), []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    # Kill the leader once part of the writes went through.
    wait_until(lambda: os.path.exists(acked_file) and os.path.getsize(acked_file) > 20000, 60,
               "the first writes to be acknowledged")
    leader.kill9()
    out, err = load.communicate(timeout=240)
    check(load.returncode == 0, "kv-load failed (%d): %s %s" % (load.returncode, out, err[-2000:]))
    result = json.loads(out)
    check(result["acked"] == 10000, "only %d of 10000 writes acknowledged" % result["acked"])
    acked = dict(line.split(" ", 1) for line in open(acked_file).read().splitlines())
    check(len(acked) == 10000, "acked file has %d entries" % len(acked))

    live = [n for n in nodes if n is not leader]
    for n in live:
        got = read_all(n, "load/")
        missing = [k for k, v in acked.items() if got.get(k) != v]
        check(not missing, "%s lacks %d acknowledged writes, e.g. %s" % (n.name, len(missing), missing[:3]))

    # The killed node comes back and catches up: the others compacted their
    # logs past where it stopped, so it must install a snapshot.
    leader.start(join=[live[0].address])
    wait_until(lambda: len(read_all(leader, "load/")) == 10000, 60, "the restarted node to catch up")
    indexes = [int(i) for i in re.findall(r"installed a snapshot at index (\d+)", leader.log())]
    check(any(i > 1 for i in indexes), "the restarted node caught up without a snapshot: %s" % indexes)

    # Stop everything, start everything again from the data dirs.
    for n in nodes:
        check(n.stop() == 0, "%s did not stop cleanly" % n.name)
    # No --join anywhere: each node finds the others through the
    # registrations in its own copy of the metadata.
    for n in nodes:
        n.start()
    wait_until(lambda: group_ready(nodes, 3), 60, "the restarted group to elect a leader")
    check(any("joining the 2 node(s) registered in the metadata" in n.log() for n in nodes),
          "the restarted nodes did not rejoin through their registrations")
    for n in nodes:
        got = read_all(n, "load/")
        check(got == acked, "%s lost writes after the full restart (%d of %d)" % (n.name, len(got), len(acked)))


def test_graceful_stop_of_the_leader_hands_off_leadership(cluster):
    nodes = start_three(cluster)
    leader = leader_of(nodes)
    others = [n for n in nodes if n is not leader]
    check(leader.stop() == 0, "the leader did not stop cleanly")
    check("handing leadership to" in leader.log(), "the leader did not hand off leadership")
    wait_until(lambda: control(others[0])["leader_node_id"] in {n.node_id() for n in others}, 10,
               "a new leader among the remaining nodes")
    kv(others[1], "put", "after/stop", "ok")
    check(kv(others[0], "get", "after/stop").stdout == "ok\n", "write after the hand-off is missing")


def test_bad_requests_get_clear_errors(cluster):
    nodes = start_three(cluster)
    r = kv(nodes[1], "put", "k" * 2000, "v", check_rc=False)
    check(r.returncode == 1 and "key" in r.stderr and "1536" in r.stderr, "oversized key: %r" % r.stderr)
    r = kv(nodes[1], "put", "k", "v", "--lease", "nothex", check_rc=False)
    check(r.returncode == 1 and "lease" in r.stderr, "bad lease id: %r" % r.stderr)
    r = kv(nodes[2], "put", "k", "v", "--lease", "abc", check_rc=False)
    check(r.returncode == 1 and "lease" in r.stderr, "unknown lease: %r" % r.stderr)
    # The store is fine afterwards.
    kv(nodes[0], "put", "k", "v")
    check(kv(nodes[2], "get", "k").stdout == "v\n", "store broken after bad requests")


def test_dead_voter_is_replaced_by_a_learner(cluster):
    nodes = start_three(cluster, extra=["--voter-grace", "2"])
    spare = cluster.add()
    spare.start(join=[nodes[0].address], extra=["--voter-grace", "2"])
    wait_until(lambda: len(control(nodes[0])["learners"]) == 1, 30, "the fourth node to become a learner")
    # Kill a voter that is not the leader.
    leader = leader_of(nodes)
    victim = next(n for n in nodes if n is not leader)
    victim_id = victim.node_id()
    victim.kill9()

    def replaced():
        c = control(leader)
        voters = {v["node_id"] for v in c["voters"]}
        return len(voters) == 3 and victim_id not in voters and spare.node_id() in voters
    wait_until(replaced, 60, "the dead voter to be replaced by the learner")
    kv(spare, "put", "after/replace", "ok")
    check(kv(leader, "get", "after/replace").stdout == "ok\n", "write after the replacement is missing")


def test_a_forming_group_never_waits_at_two_voters(cluster):
    # Two nodes: the second stays a learner (two voters would stop the group
    # when either died; one voter stops it only when that one dies).
    a, b = cluster.add(), cluster.add()
    a.start()
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the bootstrap node's token")
    b.start(join=[a.address])
    wait_until(lambda: len(control(a)["learners"]) == 1, 30, "the second node to become a learner")
    kv(b, "put", "two/before", "1")  # the learner has caught up with a write
    time.sleep(3)  # several rounds of group management
    c = control(a)
    check(len(c["voters"]) == 1 and len(c["learners"]) == 1,
          "two nodes: %d voters, %d learners" % (len(c["voters"]), len(c["learners"])))
    b.kill9()
    kv(a, "put", "two/after", "2")
    # A third node: both learners are promoted, one right after the other.
    third = cluster.add()
    third.start(join=[a.address])
    b.start(join=[a.address])
    wait_until(lambda: group_ready([a, b, third], 3), 40, "three voters once two learners are ready")


def test_damaged_and_foreign_metadata_is_refused(cluster):
    a = cluster.add()
    a.start()
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the token")
    wait_until(lambda: control(a)["role"] == "leader", 20, "the single node to lead")
    kv(a, "put", "k", "v")
    check(a.stop() == 0, "node did not stop cleanly")

    # Another node's metadata copied into this data dir.
    b = cluster.add()
    b.start(join=[a.address])  # a is down: b keeps retrying its seed; stop it
    time.sleep(0.5)
    b.proc.send_signal(signal.SIGTERM)
    b.proc.wait(15)
    shutil.rmtree(os.path.join(b.data_dir, "meta"), ignore_errors=True)
    shutil.copytree(os.path.join(a.data_dir, "meta"), os.path.join(b.data_dir, "meta"))
    r = cluster.shoal(["start", "--port", str(b.port), "--data-dir", b.data_dir, "--token-file",
                       cluster.token_file], timeout=30)
    check(r.returncode == 1 and "belongs to another node" in r.stderr, "foreign store: %d %r" %
          (r.returncode, r.stderr[-500:]))

    # Damage the identity of a's store: the node refuses, naming the store.
    meta = os.path.join(a.data_dir, "meta")
    for name in os.listdir(meta):
        if name == "CURRENT":
            with open(os.path.join(meta, name), "w") as f:
                f.write("garbage\n")
    r = cluster.shoal(["start", "--port", str(a.port), "--data-dir", a.data_dir, "--token-file",
                       cluster.token_file], timeout=30)
    check(r.returncode == 1 and "metadata store" in r.stderr, "damaged store: %d %r" %
          (r.returncode, r.stderr[-500:]))


if __name__ == "__main__":
    run_tests([
        test_group_forms_and_serves_kv_from_every_node,
        test_watch_prints_changes_in_order,
        test_acknowledged_writes_survive_leader_kill9_and_full_restart,
        test_graceful_stop_of_the_leader_hands_off_leadership,
        test_bad_requests_get_clear_errors,
        test_dead_voter_is_replaced_by_a_learner,
        test_a_forming_group_never_waits_at_two_voters,
        test_damaged_and_foreign_metadata_is_refused,
    ])
