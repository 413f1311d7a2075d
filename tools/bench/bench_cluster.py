"""Starting and stopping a cluster of node processes on loopback for the
benchmarks that run real nodes (micro, objects)."""

import json
import os
import subprocess
import time

from harness import free_port  # tests/cluster/harness.py (callers put it on sys.path)


class BenchCluster:
    """`n` nodes of `app` (a binary that embeds libshoal: `app start ...`),
    data and logs under `root`, until stop()."""

    def __init__(self, app, shoal, root, n, name="bench"):
        self.app, self.shoal, self.root, self.name = app, shoal, root, name
        self.env = dict(os.environ, SHOAL_RUNTIME_DIR=os.path.join(root, "run"))
        self.token = os.path.join(root, "token")
        self.procs = []
        ports = [free_port() for _ in range(n)]
        self.address = "127.0.0.1:%d" % ports[0]
        for i, port in enumerate(ports):
            cmd = [app, "start", "--port", str(port), "--data-dir", os.path.join(root, "n%d" % i),
                   "--token-file", self.token, "--log-level", os.environ.get("BENCH_LOG_LEVEL", "warn")]
            if i > 0:
                cmd += ["--join", self.address]
            with open(os.path.join(root, "n%d.log" % i), "wb") as log:
                self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))
            if i == 0:
                for _ in range(100):
                    if os.path.exists(self.token):
                        break
                    time.sleep(0.1)
        for _ in range(150):
            r = subprocess.run([shoal, "ctl", "--address", self.address, "--token-file", self.token, "status",
                                "--json"], capture_output=True, text=True, env=self.env)
            if r.returncode == 0 and sum(m["state"] == "alive" for m in json.loads(r.stdout)["members"]) == n:
                return
            time.sleep(0.2)
        self.stop()
        raise SystemExit("%s: the %d nodes did not see each other" % (name, n))

    def driver(self, *args):
        """Starts a driver process of `app` attached to the cluster."""
        return subprocess.Popen([self.app, "--address", self.address, "--token-file", self.token] +
                                [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env)

    def run_driver(self, *args, timeout=300):
        """Runs a driver; returns the last JSON object it printed."""
        p = self.driver(*args)
        stdout, stderr = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise SystemExit("%s: %s failed: %s" % (self.name, args, stderr[-2000:]))
        return json.loads(stdout.strip().splitlines()[-1])

    def stop(self):
        stop_processes(self.procs)


def stop_processes(procs):
    """SIGTERM to each process still running, then SIGKILL after 15 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
