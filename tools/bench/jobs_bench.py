#!/usr/bin/env python3
"""Command jobs: 1,000 trivial jobs (`true`, 1 CPU each) across 3 nodes on
loopback, submitted through the REST API of all three nodes (8 clients with
keep-alive connections).

submit_per_s: accepted submissions per second (each is a metadata txn).
start_latency_p50_ms / _p99_ms: from a job's submit_time to its start_time
  (both recorded by shoal, wall clock, ms).
started_per_s: jobs started per second, first start to last start.
completed_per_s: jobs finished per second, first submission to last end.
baseline_spawn_per_s: `true` run with fork/exec from Python, one at a time
  (what starting the process alone costs here).
Nodes run with --cpus 8 (the jobs hold 1 CPU each; admission control still
applies: never more than 8 at once per node).
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "cluster"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import free_port  # noqa: E402
from bench_cluster import stop_processes  # noqa: E402


def spawn_baseline(n=300):
    t = time.perf_counter()
    for _ in range(n):
        subprocess.run(["true"], check=True)
    return n / (time.perf_counter() - t)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Cluster:
    def __init__(self, shoal, cpus):
        self.shoal = shoal
        self.root = tempfile.mkdtemp(prefix="shoal-jobs-bench-")
        self.env = dict(os.environ, SHOAL_RUNTIME_DIR=os.path.join(self.root, "run"))
        self.token_file = os.path.join(self.root, "token")
        self.procs = []
        self.ports = []
        self.http_ports = []
        for i in range(3):
            port, http_port = free_port(), free_port()
            args = [shoal, "start", "--port", str(port), "--data-dir", os.path.join(self.root, "n%d" % i),
                    "--token-file", self.token_file, "--cpus", str(cpus), "--http-port", str(http_port),
                    "--log-level", "warn"]
            if i:
                args += ["--join", "127.0.0.1:%d" % self.ports[0]]
            log = open(os.path.join(self.root, "n%d.log" % i), "wb")
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                               stdin=subprocess.DEVNULL))
            self.ports.append(port)
            self.http_ports.append(http_port)
            if i == 0:
                self.wait(lambda: os.path.exists(self.token_file), "the token")
        self.wait(self.formed, "three voters and a leader")
        self.token = open(self.token_file).read().strip()

    def wait(self, predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise SystemExit("jobs bench: timed out waiting for %s" % what)

    def formed(self):
        for p in self.ports:
            r = subprocess.run([self.shoal, "ctl", "--address", "127.0.0.1:%d" % p, "--token-file", self.token_file,
                                "status", "--json"], capture_output=True, text=True, env=self.env)
            m = json.loads(r.stdout)["metadata"]
            if not m["leader_node_id"] or len(m["voters"]) != 3:
                return False
        return True

    def close(self):
        stop_processes(self.procs)
        shutil.rmtree(self.root, ignore_errors=True)


def request(conn, token, method, path, body=None):
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, json.loads(data) if data else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=8)
    args = ap.parse_args()

    baseline = spawn_baseline()
    cluster = Cluster(args.shoal, args.cpus)
    try:
        counter = iter(range(args.jobs))
        lock = threading.Lock()
        errors = []

        def client(k):
            conn = http.client.HTTPConnection("127.0.0.1", cluster.http_ports[k % 3], timeout=60)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                status, doc = request(conn, cluster.token, "POST", "/api/jobs/",
                                      json.dumps({"entrypoint": "true", "submission_id": "b%d" % i}))
                if status != 200:
                    errors.append(doc)
            conn.close()

        t0 = time.time()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        submit_s = time.time() - t0
        if errors:
            raise SystemExit("jobs bench: %d submissions failed, first: %s" % (len(errors), errors[0]))

        conn = http.client.HTTPConnection("127.0.0.1", cluster.http_ports[0], timeout=60)
        deadline = time.monotonic() + 300
        while True:
            status, jobs = request(conn, cluster.token, "GET", "/api/jobs/")
            done = [j for j in jobs if j["status"] in ("SUCCEEDED", "FAILED", "STOPPED")]
            if len(done) == args.jobs or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        failed = [j for j in done if j["status"] != "SUCCEEDED"]
        latency = [j["start_time"] - j["submit_time"] for j in done if j["start_time"]]
        starts = sorted(j["start_time"] for j in done if j["start_time"])
        first_submit = min(j["submit_time"] for j in jobs)
        last_end = max(j["end_time"] or 0 for j in done)
        def phase(job, state):
            times = [h["time"] for h in job["history"] if h["state"] == state]
            return times[-1] if times else None

        assign = [phase(j, "ASSIGNED") - j["submit_time"] for j in done if phase(j, "ASSIGNED")]
        spawn = [j["start_time"] - phase(j, "ASSIGNED") for j in done if phase(j, "ASSIGNED") and j["start_time"]]
        run = [j["end_time"] - j["start_time"] for j in done if j["start_time"] and j["end_time"]]
        out = {
            "jobs": args.jobs,
            "nodes": 3,
            "cpus_per_node": args.cpus,
            "completed": len(done),
            "failed": len(failed),
            "submit_per_s": round(args.jobs / submit_s, 1),
            "start_latency_p50_ms": percentile(latency, 50),
            "start_latency_p99_ms": percentile(latency, 99),
            "started_per_s": round(len(starts) / max((starts[-1] - starts[0]) / 1000, 1e-3), 1),
            "completed_per_s": round(len(done) / max((last_end - first_submit) / 1000, 1e-3), 1),
            "submit_to_assigned_p50_ms": percentile(assign, 50),
            "assigned_to_started_p50_ms": percentile(spawn, 50),
            "started_to_ended_p50_ms": percentile(run, 50),
            "baseline_spawn_per_s": round(baseline, 1),
            "target_started_per_s": 200,
        }
        print(json.dumps(out))
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
