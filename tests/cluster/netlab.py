"""Network partitions between real shoal processes (issue 8).

A test that partitions the network first calls `enter()`, which re-executes
the test inside a fresh user and network namespace of its own (the "lab":
`unshare --user --map-root-user --net`), so nothing it does touches the
machine's network and no privilege is needed. In the lab, `Lab.place(node)`
gives a node a network namespace of its own, joined by a veth pair to a
bridge; the nodes talk over 10.77.0.0/24, and the lab itself (drivers,
shoalctl) is 10.77.0.254 on that bridge.

A partition is made the way one is made on real hardware: the ports of the
cut-off nodes move to a second bridge (another switch). Frames between the
two switches are not delivered at all, so peers see silence — timeouts, not
connection errors — exactly as across a failed link. `heal()` moves every
port back. The lab (drivers, shoalctl) stays on the first switch.

Nodes keep their namespace across restarts (kill -9, then start), like a
machine keeps its address.
"""

import os
import subprocess
import sys

SUBNET = "10.77.0."
LAB_ADDRESS = SUBNET + "254"
NODE_PORT = 7100
_IN_LAB = "SHOAL_NETLAB"
_veth_count = 0  # veth names stay unique in the lab: a gone namespace's port is freed lazily


def enter():
    """Re-executes this script inside a new user + network namespace unless
    it already runs in one; fails loudly when the kernel does not allow it."""
    if os.environ.get(_IN_LAB) == "1":
        return
    env = dict(os.environ)
    env[_IN_LAB] = "1"
    argv = ["unshare", "--user", "--map-root-user", "--net", "--", sys.executable] + sys.argv
    try:
        os.execvpe("unshare", argv, env)
    except OSError as e:
        print("FAIL cannot make a network namespace for the partition tests: %s" % e)
        print("0 passed, 1 failed")
        sys.exit(1)


def _ip(*args, netns_pid=None):
    cmd = ["ip"] + [str(a) for a in args]
    if netns_pid is not None:
        cmd = ["nsenter", "--target", str(netns_pid), "--net", "--"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))


class Lab:
    """The switches and the nodes' namespaces; see the module's docstring."""

    def __init__(self):
        if os.environ.get(_IN_LAB) != "1":
            raise RuntimeError("netlab.enter() must run first (the lab is a namespace of its own)")
        self.holders = []   # one process per node namespace, alive while it is used
        self.ports = {}     # node -> its veth port on the lab's side
        self.cut = set()    # nodes now on the second switch
        _ip("link", "set", "lo", "up")
        for bridge in ("swa", "swb"):
            # A bridge made here may linger from an earlier test in this lab.
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
            _ip("link", "add", bridge, "type", "bridge")
            _ip("link", "set", bridge, "up")
        _ip("addr", "add", LAB_ADDRESS + "/24", "dev", "swa")

    def place(self, node):
        """Gives `node` (harness.Node) its own namespace and address; later
        starts of the node run inside it."""
        index = len(self.ports) + 1
        if index >= 254:
            raise RuntimeError("the lab has room for 253 nodes")
        # `cat` on a pipe holds the namespace and ends when this process does.
        holder = subprocess.Popen(["unshare", "--net", "--", "cat"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL)
        self.holders.append(holder)
        global _veth_count
        _veth_count += 1
        port, inner = "lab%d" % _veth_count, "eth%d" % _veth_count
        _ip("link", "add", port, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", holder.pid)
        _ip("link", "set", port, "master", "swa", "up")
        _ip("link", "set", "lo", "up", netns_pid=holder.pid)
        _ip("addr", "add", "%s%d/24" % (SUBNET, index), "dev", inner, netns_pid=holder.pid)
        _ip("link", "set", inner, "up", netns_pid=holder.pid)
        self.ports[node] = port
        node.host = SUBNET + str(index)
        node.port = NODE_PORT
        node.prefix = ["nsenter", "--target", str(holder.pid), "--net", "--"]
        return node

    def partition(self, nodes):
        """Cuts `nodes` off from every other node and from the lab; the cut
        nodes still reach each other."""
        for node in nodes:
            _ip("link", "set", self.ports[node], "master", "swb")
            self.cut.add(node)

    def heal(self):
        for node in list(self.cut):
            _ip("link", "set", self.ports[node], "master", "swa")
            self.cut.discard(node)

    def close(self):
        for holder in self.holders:
            if holder.poll() is None:
                holder.stdin.close()
                holder.kill()
                holder.wait()
        self.holders = []
