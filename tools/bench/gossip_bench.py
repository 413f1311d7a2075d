#!/usr/bin/env python3
"""10 real shoal nodes on loopback.

join_convergence_ms: from the moment the 9 joiners began joining (their own
  'joining' log line) until every node's log says it sees all 10 alive.
detect_dead_ms: from kill -9 of one node until every other node logged it dead.
idle_rss_mib: resident memory of idle nodes after convergence (VmRSS), and
  its parts: anonymous (the node's own) and file-backed (binary and shared
  libraries, shared with other processes).
baseline: a UDP echo round trip between two Python sockets on loopback.
Timestamps come from the nodes' own log lines (wall clock, ms).
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) .*?\] (.*)$")


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def events(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.strip())
            if m:
                out.append((parse_ts(m.group(1)), m.group(2)))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def udp_baseline(n=2000):
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.bind(("127.0.0.1", 0))
    start = time.perf_counter()
    for _ in range(n):
        a.sendto(b"x" * 64, b.getsockname())
        data, addr = b.recvfrom(100)
        b.sendto(data, addr)
        a.recvfrom(100)
    return (time.perf_counter() - start) / n * 1e6


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def wait_for(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--nodes", type=int, default=10)
    args = ap.parse_args()
    n = args.nodes
    root = tempfile.mkdtemp(prefix="shoal-gossip-bench-")
    env = dict(os.environ, SHOAL_RUNTIME_DIR=os.path.join(root, "run"))
    token = os.path.join(root, "token")
    ports = [free_port() for _ in range(n)]
    procs, logs = [], []

    def start(i, join):
        log = os.path.join(root, "n%d.log" % i)
        cmd = [args.shoal, "start", "--port", str(ports[i]), "--data-dir", os.path.join(root, "n%d" % i),
               "--token-file", token, "--log-level", "info"]
        if join:
            cmd += ["--join", "127.0.0.1:%d" % ports[0]]
        with open(log, "wb") as f:
            procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                          stdin=subprocess.DEVNULL))
        logs.append(log)

    result = {"benchmark": "gossip", "nodes": n}
    try:
        start(0, False)
        if not wait_for(lambda: os.path.exists(token) and any("listening" in e for _, e in events(logs[0])), 10):
            raise RuntimeError("first node did not start")
        for i in range(1, n):
            start(i, True)
        full = "members: %d alive" % n

        def converged_all():
            return all(any(full in e for _, e in events(l)) for l in logs)
        if not wait_for(converged_all, 30):
            raise RuntimeError("nodes did not converge")
        join_start = min(t for l in logs[1:] for t, e in events(l) if e.startswith("joining"))
        seen_all = [min(t for t, e in events(l) if full in e) for l in logs]
        result["join_convergence_ms"] = round((max(seen_all) - join_start) * 1000, 1)

        time.sleep(2.0)  # let the nodes go idle
        rss = [rss_kib(p.pid) / 1024 for p in procs]
        result["idle_rss_mib_max"] = round(max(rss), 1)
        result["idle_rss_mib_mean"] = round(statistics.mean(rss), 1)
        # What RSS is made of: the node's own memory (anonymous), and pages
        # of the binary and its shared libraries (RocksDB, OpenSSL, ...),
        # shared with every other process that maps them.
        anon = [rss_kib(p.pid, "RssAnon") / 1024 for p in procs]
        result["idle_rss_anon_mib_max"] = round(max(anon), 1)
        result["idle_rss_file_mib_max"] = round(max(rss_kib(p.pid, "RssFile") / 1024 for p in procs), 1)

        victim = n - 1
        before = [len(events(l)) for l in logs]
        t_kill = time.time()
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        victim_addr = "127.0.0.1:%d" % ports[victim]

        def dead_everywhere():
            times = []
            for i, l in enumerate(logs):
                if i == victim:
                    continue
                ts = [t for t, e in events(l)[before[i]:] if "is dead" in e and victim_addr in e]
                if not ts:
                    return None
                times.append(ts[0])
            return times
        times = wait_for(dead_everywhere, 60)
        if not times:
            raise RuntimeError("the killed node was not declared dead everywhere within 60 s")
        result["detect_dead_ms_max"] = round((max(times) - t_kill) * 1000, 1)
        result["detect_dead_ms_min"] = round((min(times) - t_kill) * 1000, 1)
        result["baseline_udp_round_trip_us"] = round(udp_baseline(), 1)
        result["targets"] = {"join_convergence_ms": 300, "detect_dead_ms_max": 3000, "idle_rss_mib_max": 30}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        if "detect_dead_ms_max" in result:
            shutil.rmtree(root, ignore_errors=True)
        else:
            result["logs"] = root
    print(json.dumps(result))
    return 0 if "detect_dead_ms_max" in result else 1


if __name__ == "__main__":
    sys.exit(main())
