#!/usr/bin/env python3
"""The metadata store: three voters on loopback, every write synced to disk.

seq_write_p50_ms / seq_write_p99_ms: one client, one write at a time, sent to
  the leader (`shoal debug kv-load --concurrency 1`).
writes_per_s_32_clients: 32 writes in flight from one process, to the leader.
writes_per_s_32_clients_any_node: the same spread over all three nodes
  (followers forward to the leader).
failover_ms: a load of 4 writers through the two followers; the leader is
  killed with SIGKILL; the longest gap between two acknowledged writes.
baseline_fsync_p50_ms: a 100-byte write + fdatasync to a file on the same
  disk, from Python (what one synced append costs here).
baseline_tcp_rtt_p50_ms: a 100-byte TCP ping-pong on loopback, from Python.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "cluster"))
from harness import free_port  # noqa: E402  (a port free for TCP and UDP)


def fsync_baseline(directory, n=300):
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        os.write(fd, b"x" * 100)
        os.fdatasync(fd)
        lat.append((time.perf_counter() - t) * 1000)
    os.close(fd)
    os.unlink(path)
    return statistics.median(lat)


def tcp_baseline(n=2000):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def echo():
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(100)
            if not d:
                break
            c.sendall(d)
        c.close()

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    cl = socket.create_connection(srv.getsockname())
    cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        cl.sendall(b"y" * 100)
        got = 0
        while got < 100:
            got += len(cl.recv(100 - got))
        lat.append((time.perf_counter() - t) * 1000)
    cl.close()
    srv.close()
    return statistics.median(lat)


class Bench:
    def __init__(self, shoal):
        self.shoal = shoal
        self.root = tempfile.mkdtemp(prefix="shoal-meta-bench-")
        self.env = dict(os.environ, SHOAL_RUNTIME_DIR=os.path.join(self.root, "run"))
        self.token = os.path.join(self.root, "token")
        self.procs = {}
        self.ports = [free_port() for _ in range(3)]

    def addr(self, i):
        return "127.0.0.1:%d" % self.ports[i]

    def start(self, i, join=None):
        args = [self.shoal, "start", "--port", str(self.ports[i]), "--data-dir", os.path.join(self.root, "n%d" % i),
                "--token-file", self.token, "--log-level", "warn"]
        if join:
            args += ["--join", join]
        log = open(os.path.join(self.root, "n%d.log" % i), "ab")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env)

    def status(self, i):
        r = subprocess.run([self.shoal, "ctl", "--address", self.addr(i), "--token-file", self.token, "status",
                            "--json"], capture_output=True, text=True, env=self.env, timeout=30)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)["metadata"]

    def wait_group(self, live, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sts = [self.status(i) for i in live]
            if all(s and s["leader_node_id"] and len(s["voters"]) == 3 for s in sts):
                if len({s["leader_node_id"] for s in sts}) == 1:
                    return sts[0]
            time.sleep(0.2)
        raise RuntimeError("the group did not form")

    def leader_index(self, st):
        for i in range(3):
            with open(os.path.join(self.root, "n%d" % i, "node_id")) as f:
                if f.read().strip() == st["leader_node_id"]:
                    return i
        raise RuntimeError("leader unknown")

    def load(self, addresses, count, concurrency, prefix):
        args = [self.shoal, "debug", "kv-load", "--token-file", self.token, "--count", str(count),
                "--concurrency", str(concurrency), "--prefix", prefix, "--value-bytes", "100"]
        for a in addresses:
            args += ["--address", a]
        return args

    def run_load(self, addresses, count, concurrency, prefix):
        r = subprocess.run(self.load(addresses, count, concurrency, prefix), capture_output=True, text=True,
                           env=self.env, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("kv-load failed: %s %s" % (r.stdout, r.stderr[-1000:]))
        return json.loads(r.stdout)

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--seq-count", type=int, default=3000)
    ap.add_argument("--tput-count", type=int, default=40000)
    args = ap.parse_args()
    b = Bench(args.shoal)
    try:
        b.start(0)
        deadline = time.monotonic() + 10
        while not os.path.exists(b.token) and time.monotonic() < deadline:
            time.sleep(0.05)
        b.start(1, b.addr(0))
        b.start(2, b.addr(0))
        st = b.wait_group([0, 1, 2])
        leader = b.leader_index(st)
        out = {"benchmark": "meta", "voters": 3, "fsync": True}
        b.run_load([b.addr(leader)], 500, 8, "warmup/")
        seq = b.run_load([b.addr(leader)], args.seq_count, 1, "seq/")
        out["seq_write_p50_ms"] = seq["p50_ms"]
        out["seq_write_p99_ms"] = seq["p99_ms"]
        out["seq_writes_per_s"] = seq["writes_per_s"]
        tput = b.run_load([b.addr(leader)], args.tput_count, 32, "tput/")
        out["writes_per_s_32_clients"] = tput["writes_per_s"]
        out["p50_ms_32_clients"] = tput["p50_ms"]
        out["p99_ms_32_clients"] = tput["p99_ms"]
        spread = b.run_load([b.addr(i) for i in range(3)], args.tput_count // 2, 32, "spread/")
        out["writes_per_s_32_clients_any_node"] = spread["writes_per_s"]

        followers = [i for i in range(3) if i != leader]
        load = subprocess.Popen(b.load([b.addr(i) for i in followers], 100000000, 4, "failover/") +
                                ["--duration-s", "6"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=b.env)
        time.sleep(2.0)
        b.procs[leader].send_signal(signal.SIGKILL)
        b.procs[leader].wait(10)
        stdout, stderr = load.communicate(timeout=120)
        fo = json.loads(stdout)
        out["failover_ms"] = fo["max_ack_gap_ms"]
        out["failover_writes_failed"] = fo["failed"]
        out["baseline_fsync_p50_ms"] = round(fsync_baseline(b.root), 3)
        out["baseline_tcp_rtt_p50_ms"] = round(tcp_baseline(), 4)
        out["targets"] = {"seq_write_p50_ms": 1.0, "writes_per_s_32_clients": 10000, "failover_ms": 600}
        print(json.dumps(out))
    finally:
        b.close()


if __name__ == "__main__":
    sys.exit(main())
