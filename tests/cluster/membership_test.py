#!/usr/bin/env python3
"""Membership with real processes: join, kill -9, graceful leave, restart,
wrong token, wrong gossip key."""

import json
import os
import random
import signal
import socket
import subprocess

from harness import SHOAL

from harness import check, run_tests, wait_until, TestFailure


def states(node):
    return {addr: m["state"] for addr, m in node.status().items()}


def all_see(nodes, expected):
    """Every node in `nodes` sees exactly `expected` (address -> state)."""
    for n in nodes:
        got = {a: s for a, s in states(n).items() if a in expected}
        if got != expected:
            return False
    return True


def start_five(cluster):
    nodes = [cluster.add() for _ in range(5)]
    nodes[0].start()
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the bootstrap node's token")
    # Each node joins through a different seed.
    nodes[1].start(join=[nodes[0].address])
    nodes[2].start(join=[nodes[1].address])
    nodes[3].start(join=[nodes[2].address])
    nodes[4].start(join=[nodes[0].address, nodes[3].address])
    expected = {n.address: "alive" for n in nodes}
    wait_until(lambda: all_see(nodes, expected), 20, "all five nodes to see each other alive")
    return nodes


def test_five_nodes_join_through_different_seeds(cluster):
    nodes = start_five(cluster)
    ids = {n.node_id() for n in nodes}
    check(len(ids) == 5, "node ids are not distinct: %s" % ids)
    seen = nodes[2].status()
    check({m["id"] for m in seen.values()} == ids, "ids seen by n2 differ from the data dirs")
    for m in seen.values():
        check(m["resources"]["cpus"] > 0, "member %s reports no CPUs" % m["address"])


def test_kill9_is_marked_dead(cluster):
    nodes = start_five(cluster)
    victim = nodes[3]
    victim.kill9()
    live = [n for n in nodes if n is not victim]
    wait_until(lambda: all(states(n).get(victim.address) == "dead" for n in live), 20,
               "every live node to mark the killed node dead")
    for n in live:
        for a, s in states(n).items():
            if a != victim.address:
                check(s == "alive", "%s sees %s as %s" % (n.name, a, s))


def test_sigterm_is_marked_left(cluster):
    nodes = start_five(cluster)
    leaver = nodes[1]
    rc = leaver.stop()
    check(rc == 0, "SIGTERM'd node exited with %s" % rc)
    live = [n for n in nodes if n is not leaver]
    wait_until(lambda: all(states(n).get(leaver.address) == "left" for n in live), 10,
               "every live node to mark the stopped node left")


def test_restart_keeps_node_id(cluster):
    nodes = start_five(cluster)
    node = nodes[4]
    old_id = node.node_id()
    node.kill9()
    live = [n for n in nodes if n is not node]
    wait_until(lambda: states(live[0]).get(node.address) == "dead", 20, "the killed node marked dead")
    node.start(join=[nodes[0].address])
    wait_until(lambda: all(states(n).get(node.address) == "alive" for n in live), 20,
               "the restarted node to be alive again everywhere")
    check(node.node_id() == old_id, "node id changed across restart")
    ids = {m["id"] for m in live[0].status().values() if m["address"] == node.address}
    check(ids == {old_id}, "members list shows id %s, expected %s" % (ids, old_id))


def test_wrong_token_is_refused(cluster):
    a = cluster.add()
    a.start()
    wait_until(lambda: a.status(), 10, "the first node to answer")
    bad = os.path.join(cluster.root, "bad-token")
    with open(bad, "w") as f:
        f.write("ab" * 32 + "\n")
    os.chmod(bad, 0o600)  # a world-readable token is refused before it is compared
    r = cluster.ctl(["--address", a.address, "--token-file", bad, "status"])
    check(r.returncode == 1, "status with a wrong token exited %d, expected 1" % r.returncode)
    check("token" in r.stderr and "does not match" in r.stderr,
          "unclear error for a wrong token: %r" % r.stderr)
    # A node started with the wrong token cannot join, and says why.
    b = cluster.add(token_file=bad)
    b.start(join=[a.address])
    rc = b.proc.wait(30)
    check(rc == 1, "joining with a wrong token exited %s, expected 1" % rc)
    check("does not match" in b.log(), "joining node did not explain the token mismatch")
    check(a.alive(), "the first node died")
    check(b.address not in a.status(), "the node with a wrong token became a member")


def test_gossip_under_wrong_key_is_ignored(cluster):
    a = cluster.add()
    a.start()
    wait_until(lambda: a.status(), 10, "the first node to answer")
    good = cluster.shoal(["debug", "gossip-probe", a.address, "--token-file", cluster.token_file])
    check(good.returncode == 0, "a probe signed with the right key got no ack: %s" % good.stderr)
    bad = os.path.join(cluster.root, "bad-token")
    with open(bad, "w") as f:
        f.write("cd" * 32 + "\n")
    r = cluster.shoal(["debug", "gossip-probe", a.address, "--token-file", bad, "--timeout-ms", "1500"])
    check(r.returncode == 1, "a probe signed with a wrong key was answered (rc %d)" % r.returncode)
    check(a.alive(), "the node died")
    check(len(a.status()) == 1, "the forged probe changed the member list")


def test_garbage_on_ports_is_survived(cluster):
    nodes = [cluster.add() for _ in range(2)]
    nodes[0].start()
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the token")
    nodes[1].start(join=[nodes[0].address])
    expected = {n.address: "alive" for n in nodes}
    wait_until(lambda: all_see(nodes, expected), 20, "both nodes to see each other")
    rng = random.Random(7)
    target = nodes[0]
    for size in (0, 1, 7, 64, 1400, 65000):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(bytes(rng.getrandbits(8) for _ in range(size)), ("127.0.0.1", target.port))
        u.close()
    for payload in (b"GET / HTTP/1.1\r\n\r\n", b"\xff" * 100000,
                    bytes(rng.getrandbits(8) for _ in range(5000)),
                    b"\x00\x00\x00\x00\xff\xff\xff\x7f"):  # capnp header claiming a huge segment
        t = socket.create_connection(("127.0.0.1", target.port), timeout=5)
        try:
            t.sendall(payload)
            t.settimeout(5)
            t.recv(100)  # the node closes the connection (or sends nothing)
        except OSError:
            pass
        t.close()
    check(target.alive(), "the node died from garbage input")
    wait_until(lambda: all_see(nodes, expected), 10, "membership to be intact after garbage")


def test_config_file_labels_and_local_discovery(cluster):
    """Options from a TOML file; shoalctl (the link) finds the local node by itself."""
    node = cluster.add()
    config = os.path.join(cluster.root, "shoal.toml")
    with open(config, "w") as f:
        f.write('port = %d\n' % node.port)
        f.write('data-dir = "%s"\n' % node.data_dir)
        f.write('token-file = "%s"\n' % cluster.token_file)
        f.write('cpus = 3\n')
        f.write('memory = "2GiB"\n')
        f.write('resource = ["tpu=4"]\n')
        f.write('label = ["zone=eu-1", "rack=r7"]\n')
    log = open(node.log_path, "ab")
    node.proc = subprocess.Popen([SHOAL, "start", "--config", config], stdout=log,
                                 stderr=subprocess.STDOUT, env=cluster.env, stdin=subprocess.DEVNULL)
    log.close()
    shoalctl = os.path.join(os.path.dirname(SHOAL), "shoalctl")
    check(os.path.islink(shoalctl), "the build has no shoalctl link next to shoal")

    def local_status():
        r = subprocess.run([shoalctl, "status", "--json"], capture_output=True, text=True,
                           env=cluster.env, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else None
    doc = wait_until(local_status, 10, "shoalctl to find the local node without flags")
    members = doc["members"]
    check(len(members) == 1, "expected one member, got %s" % members)
    m = members[0]
    check(m["address"] == node.address, "found %s, expected %s" % (m["address"], node.address))
    check(m["resources"]["cpus"] == 3, "cpus from the config file: %s" % m["resources"])
    check(m["resources"]["memory_bytes"] == 2 << 30, "memory from the config file: %s" % m["resources"])
    check(m["resources"]["custom"] == {"tpu": 4}, "custom resource: %s" % m["resources"])
    check(m["labels"] == {"zone": "eu-1", "rack": "r7"}, "labels: %s" % m["labels"])
    table = subprocess.run([shoalctl, "status"], capture_output=True, text=True, env=cluster.env, timeout=30)
    check(table.returncode == 0 and node.address in table.stdout and "alive" in table.stdout,
          "table output: %r" % table.stdout)
    node.proc.send_signal(signal.SIGINT)
    check(node.proc.wait(15) == 0, "SIGINT did not stop the node cleanly")
    r = subprocess.run([shoalctl, "status"], capture_output=True, text=True, env=cluster.env, timeout=30)
    check(r.returncode == 1 and "no shoal node is running" in r.stderr,
          "after stop, shoalctl said: rc %d %r" % (r.returncode, r.stderr))


def test_data_dir_and_port_in_use_are_refused(cluster):
    a = cluster.add()
    a.start()
    wait_until(lambda: a.status(), 10, "the first node to answer")
    # Same data dir, another port: the lock refuses it (two processes would share a node id).
    r = cluster.shoal(["start", "--port", str(a.port + 1 if a.port < 65535 else a.port - 1),
                       "--data-dir", a.data_dir, "--token-file", cluster.token_file])
    check(r.returncode == 1, "second process on the same data dir exited %d" % r.returncode)
    check("in use by another shoal process" in r.stderr and str(a.proc.pid) in r.stderr,
          "unclear error for a data dir in use: %r" % r.stderr)
    # Same port, another data dir.
    r = cluster.shoal(["start", "--port", str(a.port), "--data-dir", os.path.join(cluster.root, "other"),
                       "--token-file", cluster.token_file])
    check(r.returncode == 1, "second process on the same port exited %d" % r.returncode)
    check(("127.0.0.1:%d" % a.port) in r.stderr and "in use" in r.stderr,
          "unclear error for a port in use: %r" % r.stderr)
    check(a.alive() and len(a.status()) == 1, "the first node was disturbed")


def test_bad_flags_and_data_dir(cluster):
    r = cluster.shoal(["start", "--port", "notaport"])
    check(r.returncode == 2, "bad --port exited %d" % r.returncode)
    check("--port" in r.stderr, "error does not name --port: %r" % r.stderr)
    r = cluster.shoal(["start", "--no-such-flag"])
    check(r.returncode == 2 and "--no-such-flag" in r.stderr, "unknown flag: %r" % r.stderr)
    r = cluster.shoal(["start", "--data-dir", "/proc/shoal-cannot-write"])
    check(r.returncode == 1, "unwritable data dir exited %d" % r.returncode)
    check("/proc/shoal-cannot-write" in r.stderr, "error does not name the data dir: %r" % r.stderr)


if __name__ == "__main__":
    run_tests([
        test_five_nodes_join_through_different_seeds,
        test_kill9_is_marked_dead,
        test_sigterm_is_marked_left,
        test_restart_keeps_node_id,
        test_wrong_token_is_refused,
        test_gossip_under_wrong_key_is_ignored,
        test_garbage_on_ports_is_survived,
        test_config_file_labels_and_local_discovery,
        test_data_dir_and_port_in_use_are_refused,
        test_bad_flags_and_data_dir,
    ])
