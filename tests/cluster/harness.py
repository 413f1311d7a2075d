"""Real shoal processes on loopback for cluster tests.

Each test makes a Cluster in a fresh temporary directory, starts nodes with
the real binary, observes them only through `shoalctl status --json`, and
kills them with real signals. Every process it starts is ended by pid when
the test finishes, pass or fail.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD_DIR = os.environ.get("SHOAL_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
SHOAL = os.environ.get("SHOAL_BIN") or os.path.join(BUILD_DIR, "src", "cli", "shoal")


class TestFailure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise TestFailure(message)


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            continue
        t.close()
        u.close()
        return port
    raise TestFailure("no free port")


class Node:
    def __init__(self, cluster, name, port, data_dir, token_file):
        self.cluster = cluster
        self.name = name
        self.port = port
        self.data_dir = data_dir
        self.token_file = token_file
        self.proc = None
        self.log_path = os.path.join(cluster.root, name + ".log")
        self.host = "127.0.0.1"
        self.prefix = []  # a command the node runs under (netlab: its network namespace)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def start(self, join=(), extra=(), binary=None):
        args = [binary or SHOAL, "start", "--port", str(self.port), "--data-dir", self.data_dir,
                "--token-file", self.token_file, "--log-level", "debug"]
        if self.host != "127.0.0.1":
            args += ["--bind", self.host]
        for j in join:
            args += ["--join", j]
        args += list(extra)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.prefix + args, stdout=log, stderr=subprocess.STDOUT,
                                     env=self.cluster.env, stdin=subprocess.DEVNULL)
        log.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout=15):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def node_id(self):
        with open(os.path.join(self.data_dir, "node_id")) as f:
            return f.read().strip()

    def status(self, token_file=None):
        """Members as this node sees them, keyed by address."""
        r = self.cluster.ctl(["--address", self.address, "--token-file", token_file or self.token_file,
                              "status", "--json"])
        if r.returncode != 0:
            raise TestFailure("shoalctl status against %s failed (%d): %s" %
                              (self.name, r.returncode, r.stderr.strip()))
        doc = json.loads(r.stdout)
        return {m["address"]: m for m in doc["members"]}

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Cluster:
    def __init__(self, name):
        self.root = tempfile.mkdtemp(prefix="shoal-%s-" % name)
        self.nodes = []
        self.env = dict(os.environ)
        self.env["SHOAL_RUNTIME_DIR"] = os.path.join(self.root, "run")
        self.token_file = os.path.join(self.root, "token")

    def add(self, name=None, token_file=None):
        name = name or "n%d" % len(self.nodes)
        node = Node(self, name, free_port(), os.path.join(self.root, name),
                    token_file or self.token_file)
        self.nodes.append(node)
        return node

    def ctl(self, args, timeout=30):
        return subprocess.run([SHOAL, "ctl"] + list(args), capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def shoal(self, args, timeout=30):
        return subprocess.run([SHOAL] + list(args), capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def close(self):
        """Stops every node still running with SIGTERM and returns a list of
        problems: a node that did not exit 0, or any sanitizer report in a log."""
        problems = []
        running = [n for n in self.nodes if n.alive()]
        for n in running:
            n.proc.send_signal(signal.SIGTERM)
        for n in running:
            try:
                rc = n.proc.wait(15)
                if rc != 0:
                    problems.append("%s exited %d after SIGTERM" % (n.name, rc))
            except subprocess.TimeoutExpired:
                problems.append("%s did not exit within 15 s of SIGTERM" % n.name)
                n.proc.send_signal(signal.SIGKILL)
                n.proc.wait(10)
        for n in self.nodes:
            log = n.log()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "assertion failed"):
                if marker in log:
                    problems.append("%s's log has '%s'" % (n.name, marker))
        return problems

    def dump_logs(self):
        for n in self.nodes:
            sys.stderr.write("----- %s (%s) -----\n" % (n.name, n.address))
            sys.stderr.write(n.log()[-6000:])


def wait_until(predicate, timeout, what):
    """Polls `predicate` until it returns a truthy value; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except TestFailure as e:
            last_error = e
        time.sleep(0.1)
    raise TestFailure("timed out after %.1f s waiting for %s%s" %
                      (timeout, what, (" (last error: %s)" % last_error) if last_error else ""))


def run_tests(tests):
    """Runs each test function with a fresh cluster; prints a summary line."""
    passed = failed = 0
    only = sys.argv[1:]
    unknown = set(only) - {test.__name__ for test in tests}
    if unknown:
        # A name meson lists but the script does not run must not pass silently.
        print("FAIL unknown tests: %s" % ", ".join(sorted(unknown)))
        print("0 passed, %d failed" % len(unknown))
        sys.exit(1)
    for test in tests:
        if only and test.__name__ not in only:
            continue
        cluster = Cluster(test.__name__)
        start = time.monotonic()
        error = None
        try:
            test(cluster)
        except Exception as e:  # a failed check or an unexpected error both fail the test
            error = e
        problems = cluster.close()
        if error is None and problems:
            error = TestFailure("; ".join(problems))
        if error is None:
            passed += 1
            print("PASS %s (%.1f s)" % (test.__name__, time.monotonic() - start), flush=True)
        else:
            failed += 1
            print("FAIL %s: %s" % (test.__name__, error), flush=True)
            cluster.dump_logs()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
