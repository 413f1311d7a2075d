#!/usr/bin/env python3
"""What the systemd service relies on, with real processes: readiness and
stopping reported on $NOTIFY_SOCKET, config-file errors that name the file,
line and key (exit 2, so systemd does not restart), a config file that sets
TLS and is overridden by flags, and token files with loose permissions."""

import os
import signal
import socket
import subprocess
import time

from harness import SHOAL, check, run_tests, wait_until


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, cluster, name):
        self.path = os.path.join(cluster.root, name + ".notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []

    def poll(self):
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except socket.timeout:
            pass
        return self.messages

    def has(self, line):
        return any(line in m.split("\n") for m in self.poll())


def start_with_notify(node, notify, join=(), extra=()):
    env = dict(node.cluster.env)
    env["NOTIFY_SOCKET"] = notify.path
    args = [SHOAL, "start", "--port", str(node.port), "--data-dir", node.data_dir, "--token-file",
            node.token_file, "--log-level", "debug"]
    for j in join:
        args += ["--join", j]
    log = open(node.log_path, "ab")
    node.proc = subprocess.Popen(args + list(extra), stdout=log, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL)
    log.close()


def test_readiness_and_stopping_reach_systemd(cluster):
    first, second = cluster.add(), cluster.add()
    n1, n2 = NotifySocket(cluster, "n1"), NotifySocket(cluster, "n2")
    start_with_notify(first, n1)
    wait_until(lambda: n1.has("READY=1"), 10, "READY=1 from the bootstrap node")
    check(os.path.exists(cluster.token_file), "READY=1 before the token was written")

    # A joining node is ready only once it has joined: it must not say so
    # while its seed is unreachable.
    unreachable = cluster.add()
    start_with_notify(second, n2, join=[unreachable.address])
    time.sleep(2)
    check(not n2.has("READY=1"), "READY=1 while the seed is unreachable")
    second.proc.send_signal(signal.SIGTERM)
    check(second.proc.wait(15) == 0, "SIGTERM while joining did not exit 0")

    n3 = NotifySocket(cluster, "n3")
    start_with_notify(second, n3, join=[first.address])
    wait_until(lambda: n3.has("READY=1"), 15, "READY=1 from the joining node")
    members = {a for a, m in second.status().items() if m["state"] == "alive"}
    check(members == {first.address, second.address}, "ready, but members are %s" % members)
    check(any("STATUS=joined" in m for m in n3.poll()), "no STATUS=joined line: %s" % n3.messages)

    second.proc.send_signal(signal.SIGTERM)
    check(second.proc.wait(15) == 0, "SIGTERM did not exit 0")
    check(n3.has("STOPPING=1"), "no STOPPING=1 on SIGTERM: %s" % n3.messages)
    wait_until(lambda: first.status()[second.address]["state"] == "left", 10, "the stopped node to be left")


def write(cluster, name, text, mode=0o644):
    path = os.path.join(cluster.root, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_config_errors_name_file_line_and_key(cluster):
    node = cluster.add()
    head = 'port = %d\ndata-dir = "%s"\n' % (node.port, node.data_dir)
    cases = [
        ("unknown key", head + "# comment\nprot = 1\n", ":4: unknown key 'prot' (did you mean 'port'?)"),
        ("wrong type", head + 'cpus = "four"\n', ":3: cpus: expected a number, got a string"),
        ("duplicate key", head + '\n\nport = 7400\n', ":5: 'port' is set twice"),
        ("quoted integer", 'port = "7400"\n', ":1: port: expected an integer, got a string (remove the quotes)"),
        ("array for a single flag", head + "bind = [\"a\", \"b\"]\n", ":3: bind: expected a string, got an array"),
        ("value out of range", "port = 70000\n", ":1: port: Value 70000 not in range"),
        ("bad log level", "[start]\nlog_level = \"loud\"\n", ":2: log_level: loud not in"),
        ("unknown table", "[server]\nport = 1\n", ":2: unknown table [server]"),
        ("syntax", head + "bind = 127.0.0.1\n", ":3: '127.0.0.1' is not a value: strings need quotes"),
        ("nested config", 'config = "x.toml"\n', ":1: config: a config file cannot name another"),
    ]
    for what, text, want in cases:
        path = write(cluster, "bad.toml", text)
        r = cluster.shoal(["start", "--config", path])
        check(r.returncode == 2, "%s: exit %d (%r)" % (what, r.returncode, r.stderr))
        check((path + want) in r.stderr, "%s: %r not in %r" % (what, path + want, r.stderr))
        check(not os.path.exists(node.data_dir), "%s: the node started anyway" % what)
    missing = os.path.join(cluster.root, "missing.toml")
    r = cluster.shoal(["start", "--config", missing])
    check(r.returncode == 2 and missing + ": cannot read the config file: No such file" in r.stderr,
          "missing config: %r" % r.stderr)
    unreadable = write(cluster, "unreadable.toml", "port = 1\n", 0o000)
    if os.geteuid() != 0:  # root reads anything
        r = cluster.shoal(["start", "--config", unreadable])
        check(r.returncode == 2 and "Permission denied" in r.stderr, "unreadable config: %r" % r.stderr)
    r = cluster.shoal(["start", "--config", write(cluster, "path.toml",
                                                 'data-dir = "%s"\ntoken-file = "%s"\njoin = ["127.0.0.1:1"]\n'
                                                 % (node.data_dir, os.path.join(cluster.root, "no-token")))])
    check(r.returncode == 1 and "no-token" in r.stderr, "unreadable token path: %r" % r.stderr)


def test_config_file_sets_tls_and_flags_override(cluster):
    certs = os.path.join(cluster.root, "certs")
    r = cluster.shoal(["certs", "init", certs, "--node", "a", "--node", "b"])
    check(r.returncode == 0, "certs init: %s" % r.stderr)
    a, b = cluster.add(), cluster.add()
    a.start(extra=["--tls-cert", certs + "/a.crt", "--tls-key", certs + "/a.key", "--tls-ca", certs + "/ca.crt"])
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the bootstrap node's token")
    config = write(cluster, "b.toml",
                   '[start]\nport = 1\ndata_dir = "%s"\ntoken-file = "%s"\njoin = ["%s"]\n'
                   'tls-cert = "%s/b.crt"\ntls_key = "%s/b.key"\ntls-ca = "%s/ca.crt"\nlabel = ["from=file"]\n'
                   % (b.data_dir, cluster.token_file, a.address, certs, certs, certs))
    log = open(b.log_path, "ab")
    # --port on the command line beats port = 1 in the file.
    b.proc = subprocess.Popen([SHOAL, "start", "--config", config, "--port", str(b.port)], stdout=log,
                              stderr=subprocess.STDOUT, env=cluster.env, stdin=subprocess.DEVNULL)
    log.close()
    wait_until(lambda: {m["state"] for m in a.status().values()} == {"alive"} and len(a.status()) == 2, 20,
               "the node configured by file to join over TLS")
    check(a.status()[b.address]["labels"] == {"from": "file"}, "labels: %s" % a.status()[b.address])


def test_token_file_permissions(cluster):
    a = cluster.add()
    a.start()
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the bootstrap node's token")
    check(os.stat(cluster.token_file).st_mode & 0o777 == 0o600, "the token was not written 0600")
    secret = open(cluster.token_file).read()
    loose = write(cluster, "token-world", secret, 0o644)
    b = cluster.add(token_file=loose)
    r = cluster.shoal(["start", "--port", str(b.port), "--data-dir", b.data_dir, "--token-file", loose,
                       "--join", a.address])
    check(r.returncode == 1, "world-readable token: exit %d" % r.returncode)
    check(loose in r.stderr and "readable or writable by every user" in r.stderr and "chmod 600" in r.stderr,
          "world-readable token: %r" % r.stderr)
    check(len(a.status()) == 1, "the node with a world-readable token joined anyway")

    group = write(cluster, "token-group", secret, 0o640)
    c = cluster.add(token_file=group)
    c.start(join=[a.address])
    wait_until(lambda: len(a.status()) == 2, 15, "the node with a group-readable token to join")
    check("readable by its group" in c.log(), "no warning about the group-readable token")


if __name__ == "__main__":
    run_tests([
        test_readiness_and_stopping_reach_systemd,
        test_config_errors_name_file_line_and_key,
        test_config_file_sets_tls_and_flags_override,
        test_token_file_permissions,
    ])
