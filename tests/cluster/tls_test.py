#!/usr/bin/env python3
"""TLS on RPC with real processes: a 3-node cluster with mutual TLS forms;
plaintext and wrong-CA peers are refused with a message that says why; bad
certificates stop a node at start-up, before it creates or joins anything."""

import os
import socket
import ssl
import subprocess
import time

from harness import SHOAL, check, run_tests, wait_until


def make_certs(cluster, name, nodes):
    """`shoal certs init` into <root>/<name>; returns the directory."""
    d = os.path.join(cluster.root, name)
    args = ["certs", "init", d]
    for n in nodes:
        args += ["--node", n]
    r = cluster.shoal(args)
    check(r.returncode == 0, "certs init failed (%d): %s" % (r.returncode, r.stderr))
    return d


def tls_args(d, node, ca=None):
    return ["--tls-cert", os.path.join(d, node + ".crt"), "--tls-key", os.path.join(d, node + ".key"),
            "--tls-ca", ca or os.path.join(d, "ca.crt")]


def alive_addresses(node):
    return {a for a, m in node.status().items() if m["state"] == "alive"}


def start_tls_seed(cluster, d):
    seed = cluster.add()
    seed.start(extra=tls_args(d, "n0"))
    wait_until(lambda: os.path.exists(cluster.token_file), 10, "the bootstrap node's token")
    wait_until(lambda: alive_addresses(seed) == {seed.address}, 10, "the TLS seed to answer shoalctl")
    return seed


def wait_exit(node, timeout):
    try:
        return node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s still runs %d s after start; expected it to be refused" % (node.name, timeout))


def no_discovery_env(cluster):
    """An environment where shoalctl finds no local node (so no TLS files)."""
    env = dict(cluster.env)
    env["SHOAL_RUNTIME_DIR"] = os.path.join(cluster.root, "empty-run")
    return env


def test_three_nodes_form_with_mutual_tls(cluster):
    d = make_certs(cluster, "certs", ["n0", "n1", "n2"])
    nodes = [start_tls_seed(cluster, d), cluster.add(), cluster.add()]
    nodes[1].start(join=[nodes[0].address], extra=tls_args(d, "n1"))
    nodes[2].start(join=[nodes[1].address], extra=tls_args(d, "n2"))
    expected = {n.address for n in nodes}
    wait_until(lambda: all(alive_addresses(n) == expected for n in nodes), 20,
               "all three TLS nodes to see each other alive")
    check("mutual with CA" in nodes[0].log(), "the seed's log does not say it uses mutual TLS")

    # shoalctl with explicit TLS flags (another node's certificate) works ...
    r = cluster.ctl(["--address", nodes[2].address, "--token-file", cluster.token_file] +
                    tls_args(d, "n1") + ["status", "--json"])
    check(r.returncode == 0 and nodes[0].address in r.stdout, "shoalctl with TLS flags: %r" % r.stderr)
    # ... and without TLS it is refused, and told why.
    r = subprocess.run([SHOAL, "ctl", "--address", nodes[0].address, "--token-file", cluster.token_file, "status"],
                       capture_output=True, text=True, env=no_discovery_env(cluster), timeout=30)
    check(r.returncode == 1 and "requires TLS" in r.stderr, "plaintext shoalctl: rc %d %r" % (r.returncode, r.stderr))

    # The port speaks TLS with a certificate for node.shoal signed by the CA,
    # and asks for a client certificate.
    ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.crt"))
    ctx.load_cert_chain(os.path.join(d, "n1.crt"), os.path.join(d, "n1.key"))
    with socket.create_connection(("127.0.0.1", nodes[0].port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="node.shoal") as tls:
            names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
            check("node.shoal" in names, "server certificate names: %s" % names)
    anonymous = ssl.create_default_context(cafile=os.path.join(d, "ca.crt"))
    refused = False
    with socket.create_connection(("127.0.0.1", nodes[0].port), timeout=10) as raw:
        try:
            with anonymous.wrap_socket(raw, server_hostname="node.shoal") as tls:
                refused = tls.recv(1) == b""  # TLS 1.3: the refusal arrives after the handshake
        except (ssl.SSLError, ConnectionError):
            refused = True
    check(refused, "a TLS client without a certificate was not refused")
    wait_until(lambda: "presented no certificate" in nodes[0].log(), 5,
               "the seed to log the client without a certificate")
    for n in nodes:
        check(n.alive(), "%s died" % n.name)


def test_plaintext_peer_is_refused(cluster):
    d = make_certs(cluster, "certs", ["n0"])
    seed = start_tls_seed(cluster, d)
    plain = cluster.add()
    started = time.monotonic()
    plain.start(join=[seed.address])
    rc = wait_exit(plain, 20)
    check(rc == 1, "the plaintext node exited %s" % rc)
    check(time.monotonic() - started < 10, "refusal took %.1f s; expected at once" % (time.monotonic() - started))
    check("requires TLS" in plain.log() and "refused this node" in plain.log(),
          "the plaintext node was not told why: %s" % plain.log()[-800:])
    check("refused a plaintext connection" in seed.log(), "the seed did not log the refusal")
    check(alive_addresses(seed) == {seed.address}, "the plaintext node appears in the seed's members")


def test_wrong_ca_peer_is_refused(cluster):
    d = make_certs(cluster, "certs", ["n0"])
    other = make_certs(cluster, "other", ["stranger", "mixed"])
    seed = start_tls_seed(cluster, d)

    # A node of another CA: it does not trust the seed, the seed does not trust it.
    stranger = cluster.add()
    stranger.start(join=[seed.address], extra=tls_args(other, "stranger"))
    check(wait_exit(stranger, 20) == 1, "the wrong-CA node was not refused")
    check("is not trusted" in stranger.log() and "is it signed by the CA in" in stranger.log(),
          "the wrong-CA node was not told why: %s" % stranger.log()[-800:])
    wait_until(lambda: "not signed by the CA in" in seed.log(), 5, "the seed to log the untrusted certificate")

    # A node that trusts the seed's CA but holds a certificate of another CA:
    # the seed's refusal reaches it as a TLS alert.
    both = os.path.join(cluster.root, "both-cas.crt")
    with open(both, "w") as f:
        f.write(open(os.path.join(d, "ca.crt")).read() + open(os.path.join(other, "ca.crt")).read())
    mixed = cluster.add()
    mixed.start(join=[seed.address], extra=tls_args(other, "mixed", ca=both))
    check(wait_exit(mixed, 20) == 1, "the node with a foreign certificate was not refused")
    check("refused this node's certificate" in mixed.log(),
          "the node with a foreign certificate was not told why: %s" % mixed.log()[-800:])
    check(alive_addresses(seed) == {seed.address}, "a refused node appears in the seed's members")


def openssl_expired_certificate(cluster, d):
    """A certificate signed by d's CA that expired in 2020 (openssl ca can
    backdate; shoal certs cannot)."""
    work = os.path.join(cluster.root, "openssl-ca")
    os.makedirs(work)
    open(os.path.join(work, "index.txt"), "w").close()
    with open(os.path.join(work, "serial"), "w") as f:
        f.write("1000\n")
    cnf = os.path.join(work, "ca.cnf")
    with open(cnf, "w") as f:
        f.write("[ca]\ndefault_ca = test\n[test]\ndatabase = %s/index.txt\nnew_certs_dir = %s\n"
                "serial = %s/serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n"
                "[any]\ncommonName = supplied\n" % (work, work, work))
    key, csr, crt = (os.path.join(d, "old." + e) for e in ("key", "csr", "crt"))
    run = lambda args: subprocess.run(args, capture_output=True, text=True, timeout=30)
    r = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=old",
             "-addext", "subjectAltName=DNS:node.shoal", "-addext", "extendedKeyUsage=serverAuth,clientAuth"])
    check(r.returncode == 0, "openssl req: %s" % r.stderr)
    r = run(["openssl", "ca", "-batch", "-config", cnf, "-cert", os.path.join(d, "ca.crt"), "-keyfile",
             os.path.join(d, "ca.key"), "-in", csr, "-out", crt, "-notext",
             "-startdate", "20200101000000Z", "-enddate", "20200102000000Z"])
    check(r.returncode == 0, "openssl ca: %s" % r.stderr)
    os.chmod(key, 0o600)
    return crt, key


def test_bad_certificates_stop_start_up(cluster):
    d = make_certs(cluster, "certs", ["n0", "n1"])
    other = make_certs(cluster, "other", ["stranger"])
    seed = start_tls_seed(cluster, d)
    expired_crt, expired_key = openssl_expired_certificate(cluster, d)
    ca = os.path.join(d, "ca.crt")
    world_readable = os.path.join(d, "n1-open.key")
    with open(world_readable, "w") as f:
        f.write(open(os.path.join(d, "n1.key")).read())
    os.chmod(world_readable, 0o644)
    cases = [
        ("missing certificate", ["--tls-cert", os.path.join(d, "nope.crt"), "--tls-key", os.path.join(d, "n1.key"),
                                 "--tls-ca", ca], 1, [os.path.join(d, "nope.crt"), "cannot open"]),
        ("expired certificate", ["--tls-cert", expired_crt, "--tls-key", expired_key, "--tls-ca", ca], 1,
         [expired_crt, "expired on 2020-01-02"]),
        ("key of another certificate", ["--tls-cert", os.path.join(d, "n1.crt"), "--tls-key",
                                        os.path.join(d, "n0.key"), "--tls-ca", ca], 1,
         ["does not belong to the certificate"]),
        ("certificate of another CA", tls_args(other, "stranger", ca=ca), 1, ["does not verify against --tls-ca"]),
        ("world-readable key", ["--tls-cert", os.path.join(d, "n1.crt"), "--tls-key", world_readable,
                                "--tls-ca", ca], 1, ["readable by every user", "chmod 600"]),
        ("certificate without key", ["--tls-cert", os.path.join(d, "n1.crt")], 2, ["--tls-cert needs --tls-key"]),
        ("CA without certificate", ["--tls-ca", ca], 2, ["--tls-ca needs --tls-cert"]),
    ]
    for what, extra, want_rc, want in cases:
        node = cluster.add()
        started = time.monotonic()
        r = cluster.shoal(["start", "--port", str(node.port), "--data-dir", node.data_dir, "--token-file",
                           cluster.token_file, "--join", seed.address] + extra)
        check(r.returncode == want_rc, "%s: exit %d, expected %d (%r)" % (what, r.returncode, want_rc, r.stderr))
        for text in want:
            check(text in r.stderr, "%s: %r not in %r" % (what, text, r.stderr))
        check(time.monotonic() - started < 5, "%s: took %.1f s" % (what, time.monotonic() - started))
        check(not os.path.exists(node.data_dir), "%s: the data dir was created anyway" % what)
    check(alive_addresses(seed) == {seed.address}, "a refused node reached the seed")


if __name__ == "__main__":
    run_tests([
        test_three_nodes_form_with_mutual_tls,
        test_plaintext_peer_is_refused,
        test_wrong_ca_peer_is_refused,
        test_bad_certificates_stop_start_up,
    ])
