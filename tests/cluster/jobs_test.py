#!/usr/bin/env python3
"""Command jobs on 3 real nodes: admission control never oversubscribes a
node, priorities and --after order starts, arrays run every index once, a
kill -9ed node's jobs are requeued or failed per their policy (and its
processes die with it), stop and timeout kill whole process groups, logs
survive the node's restart, the REST API wants the token, entrypoints with
shell metacharacters run literally."""

import io
import json
import os
import socket
import urllib.error
import urllib.request
import zipfile

from harness import check, free_port, run_tests, wait_until, TestFailure
from metadata_test import group_ready


def start_three(cluster, extra_for=None):
    nodes = [cluster.add() for _ in range(3)]
    for i, n in enumerate(nodes):
        n.http_port = free_port()
        extra = ["--cpus", "2", "--http-port", str(n.http_port)] + list((extra_for or {}).get(i, []))
        if i == 0:
            n.start(extra=extra)
            wait_until(lambda: os.path.exists(cluster.token_file), 10, "the bootstrap node's token")
        else:
            n.start(join=[nodes[0].address], extra=extra)
    wait_until(lambda: group_ready(nodes, 3), 40, "a leader and three voters")
    return nodes


def ctl(node, *args, check_rc=True, timeout=60):
    r = node.cluster.ctl(["--address", node.address, "--token-file", node.token_file] + list(args), timeout=timeout)
    if check_rc and r.returncode != 0:
        raise TestFailure("shoalctl %s via %s failed (%d): %s" % (" ".join(args), node.name, r.returncode,
                                                                 r.stderr.strip()))
    return r


def submit(node, *args):
    return ctl(node, "submit", "--no-wait", *args).stdout.split()


def job(node, job_id):
    return json.loads(ctl(node, "job", job_id, "--json").stdout)


def wait_state(node, job_id, states, timeout=60):
    def done():
        j = job(node, job_id)
        return j if j["state"] in states else None
    return wait_until(done, timeout, "job %s to be %s" % (job_id, "/".join(states)))


def recorder(dir_path, name, seconds):
    """A shell command that records its start and stop (ns) and its node."""
    path = os.path.join(dir_path, name)
    return ["/bin/sh", "-c", 'echo "start $(date +%%s%%N) $SHOAL_ADDRESS" >> %s; sleep %s; '
            'echo "stop $(date +%%s%%N)" >> %s' % (path, seconds, path)]


def read_record(dir_path, name):
    start = stop = None
    node = None
    with open(os.path.join(dir_path, name)) as f:
        for line in f:
            parts = line.split()
            if parts[0] == "start":
                start, node = int(parts[1]), parts[2]
            elif parts[0] == "stop":
                stop = int(parts[1])
    return start, stop, node


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
    return True


def test_thirty_jobs_never_oversubscribe_and_priorities_after_and_arrays_order_starts(cluster):
    nodes = start_three(cluster)
    rec = os.path.join(cluster.root, "rec")
    os.makedirs(rec)
    ids = []
    for i in range(30):
        ids += submit(nodes[i % 3], "--", *recorder(rec, "j%d" % i, "0.3"))
    for job_id in ids:
        check(wait_state(nodes[0], job_id, ["SUCCEEDED", "FAILED"])["state"] == "SUCCEEDED", "%s failed" % job_id)
    by_node = {}
    for i in range(30):
        start, stop, node = read_record(rec, "j%d" % i)
        check(start is not None and stop is not None, "job %d did not record its run" % i)
        by_node.setdefault(node, []).append((start, stop))
    check(len(by_node) >= 2, "30 jobs all ran on one node: %s" % list(by_node))
    for node, runs in by_node.items():
        events = sorted([(s, 1) for s, _ in runs] + [(e, -1) for _, e in runs], key=lambda x: (x[0], x[1]))
        running = peak = 0
        for _, d in events:
            running += d
            peak = max(peak, running)
        check(peak <= 2, "node %s ran %d one-CPU jobs at once with 2 CPUs" % (node, peak))

    # Priorities: every CPU busy; when the first node frees up, the high
    # priority job (submitted last) takes it.
    blockers = [submit(nodes[0], "--cpus", "2", "--", *recorder(rec, "b%d" % i, s))[0]
                for i, s in enumerate(["3", "6", "6"])]
    for b in blockers:
        wait_state(nodes[0], b, ["RUNNING"])
    low = submit(nodes[1], "--cpus", "2", "--priority", "0", "--", *recorder(rec, "low", "0.1"))[0]
    high = submit(nodes[2], "--cpus", "2", "--priority", "10", "--", *recorder(rec, "high", "0.1"))[0]
    check(job(nodes[0], low)["state"] == "PENDING", "the low priority job did not wait")
    wait_state(nodes[0], low, ["SUCCEEDED"])
    wait_state(nodes[0], high, ["SUCCEEDED"])
    check(read_record(rec, "high")[0] < read_record(rec, "low")[0], "the low priority job started first")

    # --after: B starts after A succeeded; C fails when its dependency fails.
    a = submit(nodes[0], "--", *recorder(rec, "a", "0.5"))[0]
    b = submit(nodes[1], "--after", a, "--", *recorder(rec, "b", "0"))[0]
    f = submit(nodes[2], "--", "false")[0]
    c = submit(nodes[0], "--after", f, "--", "true")[0]
    wait_state(nodes[0], b, ["SUCCEEDED"])
    check(read_record(rec, "b")[0] >= read_record(rec, "a")[1], "B started before A ended")
    failed = wait_state(nodes[0], c, ["FAILED"])
    check("dependency %s failed" % f in failed["message"], "unexpected message: %s" % failed["message"])
    r = ctl(nodes[0], "submit", "--no-wait", "--after", "job_nosuchjob", "--", "true", check_rc=False)
    check(r.returncode != 0 and "no such job" in r.stderr, "an unknown --after was accepted: %s" % r.stderr)

    # Arrays: one job per index, each index once.
    arr = submit(nodes[1], "--array", "0-7", "--", "/bin/sh", "-c",
                 "echo $SHOAL_ARRAY_INDEX >> %s/array" % rec)
    check(len(arr) == 8, "--array 0-7 made %d jobs" % len(arr))
    for job_id in arr:
        wait_state(nodes[0], job_id, ["SUCCEEDED"])
    with open(os.path.join(rec, "array")) as array_file:
        indexes = sorted(int(x) for x in array_file.read().split())
    check(indexes == list(range(8)), "array indexes ran: %s" % indexes)

    # The list filters by state.
    listed = json.loads(ctl(nodes[2], "jobs", "--state", "FAILED", "--json").stdout)
    check(sorted(j["job_id"] for j in listed) == sorted([f, c]), "jobs --state FAILED: %s" % listed)


def test_kill9_node_requeues_or_fails_its_jobs_and_logs_survive_restart(cluster):
    # Only node 2 has the `special` resource, so its jobs cannot go elsewhere.
    nodes = start_three(cluster, {2: ["--resource", "special=4"]})
    rec = os.path.join(cluster.root, "rec")
    os.makedirs(rec)
    done = submit(nodes[0], "--resource", "special=1", "--", "echo", "output of a finished job")[0]
    wait_state(nodes[0], done, ["SUCCEEDED"])
    retried = submit(nodes[0], "--resource", "special=1", "--max-retries", "1", "--", "/bin/sh", "-c",
                     "echo $$ > %s/retried.pid; exec sleep 300" % rec)[0]
    # This one also leaves a process in the background: the whole group
    # dies with the node, not only the job's first process.
    failed = submit(nodes[1], "--resource", "special=1", "--", "/bin/sh", "-c",
                    "sleep 300 & echo $! > %s/background.pid; echo $$ > %s/failed.pid; wait" % (rec, rec))[0]
    for j in (retried, failed):
        check(wait_state(nodes[0], j, ["RUNNING"])["node_id"] == nodes[2].node_id(), "%s ran elsewhere" % j)
    wait_until(lambda: os.path.exists(os.path.join(rec, "failed.pid")), 10, "the job's pid")
    pids = [int(open(os.path.join(rec, n)).read()) for n in ("retried.pid", "failed.pid", "background.pid")]
    nodes[2].kill9()
    f = wait_state(nodes[0], failed, ["FAILED"])
    check(f["message"] == "node lost", "message: %s" % f["message"])
    r = wait_state(nodes[1], retried, ["PENDING"])
    check(r["attempt"] == 1 and "requeued" in r["history"][-2]["message"] + r["history"][-1]["message"],
          "not requeued: %s" % r)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "the dead node's job processes to die with it")
    # The node comes back: the requeued job runs there again, and the logs
    # of the job that ended before the crash are served again, via any node.
    nodes[2].start(join=[nodes[0].address], extra=["--cpus", "2", "--http-port", str(nodes[2].http_port),
                                                   "--resource", "special=4"])
    wait_state(nodes[0], retried, ["RUNNING"], timeout=60)
    logs = wait_until(lambda: ctl(nodes[1], "logs", done, check_rc=False).stdout, 30, "the logs after the restart")
    check("output of a finished job" in logs, "logs after restart: %r" % logs)
    ctl(nodes[0], "stop", retried)
    wait_state(nodes[0], retried, ["STOPPED"])


def test_leader_kill9_neither_loses_nor_duplicates_jobs(cluster):
    nodes = start_three(cluster)
    leader_id = json.loads(ctl(nodes[0], "status", "--json").stdout)["metadata"]["leader_node_id"]
    leader = [n for n in nodes if n.node_id() == leader_id][0]
    others = [n for n in nodes if n is not leader]
    rec = os.path.join(cluster.root, "runs")
    ids = []
    for i in range(24):
        ids += submit(others[i % 2], "--max-retries", "2", "--", "/bin/sh", "-c",
                      'echo "$SHOAL_JOB_ID $SHOAL_JOB_ATTEMPT" >> %s; sleep 1' % rec)
        if i == 11:
            wait_until(lambda: os.path.exists(rec), 20, "the first job to start")
            leader.kill9()
    final = {}
    for j in ids:
        final[j] = wait_state(others[0], j, ["SUCCEEDED", "FAILED", "STOPPED"], timeout=90)
    with open(rec) as f:
        runs = [tuple(line.split()) for line in f if line.strip()]
    check(len(runs) == len(set(runs)), "an attempt ran twice: %s" % sorted(r for r in runs if runs.count(r) > 1))
    ran = {r[0] for r in runs}
    for j in ids:
        check(final[j]["state"] == "SUCCEEDED", "%s ended %s: %s" % (j, final[j]["state"], final[j]["message"]))
        check(j in ran, "%s never ran" % j)


def test_stop_and_timeout_kill_the_whole_process_group(cluster):
    nodes = start_three(cluster, {i: ["--max-finished-jobs", "4"] for i in range(3)})
    rec = os.path.join(cluster.root, "rec")
    os.makedirs(rec)
    script = "sleep 300 & echo $! > %s/%s.child; trap '' TERM; wait; sleep 300"
    stopped = submit(nodes[0], "--", "/bin/sh", "-c", script % (rec, "stopped"))[0]
    timed = submit(nodes[1], "--timeout", "2s", "--", "/bin/sh", "-c", script % (rec, "timed"))[0]
    wait_state(nodes[0], stopped, ["RUNNING"])
    wait_until(lambda: os.path.exists(os.path.join(rec, "stopped.child")), 10, "the child's pid")
    out = ctl(nodes[2], "stop", stopped).stdout
    check("stopping" in out, out)
    s = wait_state(nodes[0], stopped, ["STOPPED"])
    t = wait_state(nodes[0], timed, ["FAILED"])
    check(t["message"].startswith("timeout"), "timeout message: %s" % t["message"])
    for name in ("stopped", "timed"):
        child = int(open(os.path.join(rec, name + ".child")).read())
        wait_until(lambda: not pid_alive(child), 10, "the %s job's child %d to be killed" % (name, child))
    again = ctl(nodes[0], "stop", stopped).stdout
    check("already finished" in again, again)
    # A command that does not exist fails with the exec error; bad input is refused.
    missing = ctl(nodes[0], "submit", "--", "no-such-command-xyz", check_rc=False)
    check(missing.returncode != 0 and "no such executable" in missing.stderr, missing.stderr)
    for args, what in ((["--timeout", "5x"], "duration"), (["--cpus", "64"], "no node can ever run"),
                       (["--array", "3-1"], "array")):
        r = ctl(nodes[0], "submit", *args, "--", "true", check_rc=False)
        check(r.returncode != 0 and what in r.stderr, "%s: %s" % (args, r.stderr))

    # --max-finished-jobs 4: the oldest finished records go, with their logs,
    # except one that a waiting job names (--after).
    def listed():
        return {j["job_id"]: j for j in json.loads(ctl(nodes[1], "jobs", "--json").stdout)}
    old = [i for i, j in listed().items() if j["status"] in ("STOPPED", "FAILED")]
    check(len(old) == 3, "the stopped, timed-out and exec-failed jobs: %s" % sorted(listed()))
    first = submit(nodes[0], "--", "true")[0]
    wait_state(nodes[0], first, ["SUCCEEDED"])
    blocker = submit(nodes[0], "--", "sleep", "60")[0]
    wait_state(nodes[0], blocker, ["RUNNING"])
    waiting = submit(nodes[0], "--after", first, "--after", blocker, "--", "true")[0]
    quick = []
    for i in range(6):
        quick.append(submit(nodes[i % 3], "--", "echo", str(i))[0])
        wait_state(nodes[0], quick[-1], ["SUCCEEDED"])
    # 10 finished, 4 kept: the awaited one and the 3 newest.
    keep = {first, blocker, waiting} | set(quick[3:])
    seen = {}

    def kept():
        seen["ids"] = sorted(listed())
        return set(seen["ids"]) == keep
    try:
        wait_until(kept, 20, "only the newest finished records (and the awaited one) to stay")
    except TestFailure as e:
        raise TestFailure("%s: listed %s, expected %s" % (e, seen.get("ids"), sorted(keep)))
    for gone in old + quick[:3]:
        r = ctl(nodes[2], "job", gone, check_rc=False)
        check(r.returncode != 0 and "no job " + gone in r.stderr,
              "a deleted job %s: %s" % (gone, r.stderr))
    wait_until(lambda: not any(os.path.exists(os.path.join(n.data_dir, "jobs", g)) for n in nodes for g in quick[:3]),
               10, "the deleted jobs' logs to go from their nodes")
    check(job(nodes[0], waiting)["state"] == "PENDING", "the waiting job: %s" % job(nodes[0], waiting))
    ctl(nodes[0], "stop", blocker)


def http(node, method, path, body=None, token=None):
    data = body if body is None or isinstance(body, bytes) else body.encode()
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (node.http_port, path), method=method, data=data)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_rest_api_wants_the_token_and_entrypoints_run_literally(cluster):
    nodes = start_three(cluster, {1: ["--gpus", "2"]})
    token = open(cluster.token_file).read().strip()
    check(http(nodes[0], "GET", "/api/jobs/")[0] == 401, "no token was accepted")
    check(http(nodes[0], "GET", "/api/jobs/", token="0" * 64)[0] == 401, "a wrong token was accepted")
    check(http(nodes[0], "POST", "/api/jobs/", "{not json", token)[0] == 400, "malformed JSON was accepted")
    check(http(nodes[0], "GET", "/api/version", token=token)[1]["version"] == "4", "GET /api/version")
    code, doc = http(nodes[0], "POST", "/api/jobs/", json.dumps({"entrypoint": "true", "bogus": 1}), token)
    check(code == 400 and "bogus" in doc["error"], doc)
    code, doc = http(nodes[0], "POST", "/api/jobs/", json.dumps({"entrypoint": 7}), token)
    check(code == 400 and "entrypoint" in doc["error"], doc)
    body = {"entrypoint": "echo 'a;b' $HOME `id` | cat", "submission_id": "rest_1", "job_id": None,
            "entrypoint_label_selector": None,
            "runtime_env": {"env_vars": {"GREETING": "hi"}}, "metadata": {"owner": "test"},
            "entrypoint_num_cpus": 1}
    code, doc = http(nodes[1], "POST", "/api/jobs/", json.dumps(body), token)
    check(code == 200 and doc["job_id"] == "rest_1" and doc["submission_id"] == "rest_1", doc)
    check(http(nodes[1], "POST", "/api/jobs/", json.dumps(body), token)[0] == 409, "a duplicate id was accepted")
    wait_until(lambda: http(nodes[2], "GET", "/api/jobs/rest_1", token=token)[1]["status"] == "SUCCEEDED", 30,
               "the REST job to succeed")
    code, doc = http(nodes[2], "GET", "/api/jobs/rest_1", token=token)
    check(doc["metadata"] == {"owner": "test"} and doc["entrypoint"] == body["entrypoint"], doc)
    code, logs = http(nodes[0], "GET", "/api/jobs/rest_1/logs", token=token)
    check(logs["logs"] == "a;b $HOME `id` | cat\n", "the entrypoint was interpreted: %r" % logs["logs"])
    code, listed = http(nodes[0], "GET", "/api/jobs/", token=token)
    check(code == 200 and [j["job_id"] for j in listed] == ["rest_1"], listed)
    check(http(nodes[0], "POST", "/api/jobs/rest_1/stop", "", token)[1] == {"stopped": False}, "stop of a finished job")
    check(http(nodes[0], "DELETE", "/api/jobs/rest_1", token=token)[1] == {"deleted": True}, "delete")
    check(http(nodes[0], "GET", "/api/jobs/rest_1", token=token)[0] == 404, "a deleted job is still there")
    wait_until(lambda: not any(os.path.exists(os.path.join(n.data_dir, "jobs", "rest_1")) for n in nodes), 10,
               "the deleted job's files to go")
    # The CLI runs argv literally too, and waits for the job's exit code.
    r = ctl(nodes[0], "submit", "--", "echo", "x|y;z", "$HOME")
    check(r.stdout.split("\n", 1)[1] == "x|y;z $HOME\n", "CLI output: %r" % r.stdout)
    r = ctl(nodes[0], "submit", "--", "/bin/sh", "-c", "exit 7", check_rc=False)
    check(r.returncode == 7, "exit code %d" % r.returncode)
    r = ctl(nodes[0], "submit", "--shell", "--", "echo $((6*7))")
    check(r.stdout.split("\n", 1)[1] == "42\n", "--shell output: %r" % r.stdout)

    # GPUs: CUDA_VISIBLE_DEVICES names exactly the ids reserved; two jobs at
    # once on the node with 2 GPUs get different ones; no GPU -> empty.
    rec = os.path.join(cluster.root, "gpu")
    os.makedirs(rec)
    gpu_jobs = [submit(nodes[0], "--gpus", "1", "--", "/bin/sh", "-c",
                       'echo "$CUDA_VISIBLE_DEVICES" > %s/g%d; sleep 1' % (rec, i))[0] for i in range(2)]
    for j in gpu_jobs:
        check(wait_state(nodes[0], j, ["SUCCEEDED"])["node_id"] == nodes[1].node_id(), "a GPU job ran without GPUs")
    seen = sorted(open(os.path.join(rec, "g%d" % i)).read().strip() for i in range(2))
    check(seen == ["0", "1"], "CUDA_VISIBLE_DEVICES of two concurrent jobs: %s" % seen)
    r = ctl(nodes[0], "submit", "--", "/bin/sh", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"')
    check(r.stdout.split("\n", 1)[1] == "[]\n", "a job without GPUs saw %r" % r.stdout)

    # --working-dir is shipped and run in; a too large one is refused at submit.
    work = os.path.join(cluster.root, "work")
    os.makedirs(os.path.join(work, "sub"))
    with open(os.path.join(work, "sub", "data.txt"), "w") as f:
        f.write("shipped data\n")
    with open(os.path.join(work, "run.sh"), "w") as f:
        f.write("#!/bin/sh\ncat sub/data.txt\n")
    os.chmod(os.path.join(work, "run.sh"), 0o755)
    r = ctl(nodes[2], "submit", "--working-dir", work, "--", "./run.sh")
    check(r.stdout.split("\n", 1)[1] == "shipped data\n", "--working-dir output: %r" % r.stdout)
    with open(os.path.join(work, "big"), "wb") as f:
        f.write(b"x" * (2 << 20))
    r = ctl(nodes[2], "submit", "--working-dir", work, "--", "./run.sh", check_rc=False)
    check(r.returncode != 0 and "too large" in r.stderr, "a 2 MiB working dir: %s" % r.stderr)

    # Ray's client ships runtime_env.working_dir as a zip (PUT to
    # /api/packages/gcs/<name>), then submits working_dir = "gcs://<name>".
    def zipped(entries):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for name, path in entries:
                z.write(path, name)
        return out.getvalue()
    pkg = "_ray_pkg_0123abcd.zip"
    check(http(nodes[0], "GET", "/api/packages/gcs/" + pkg, token=token)[0] == 404, "a package before its upload")
    code, doc = http(nodes[0], "PUT", "/api/packages/gcs/" + pkg,
                     zipped([("run.sh", os.path.join(work, "run.sh")),
                             ("sub/data.txt", os.path.join(work, "sub", "data.txt"))]), token)
    check(code == 200 and doc["files"] == 2, "PUT of a package: %s %s" % (code, doc))
    check(http(nodes[1], "GET", "/api/packages/gcs/" + pkg, token=token)[0] == 200, "GET of an uploaded package")
    body = {"entrypoint": "./run.sh", "runtime_env": {"working_dir": "gcs://" + pkg}, "submission_id": "rest_wd"}
    code, doc = http(nodes[1], "POST", "/api/jobs/", json.dumps(body), token)
    check(code == 200, "a job with an uploaded working_dir: %s" % doc)
    wait_until(lambda: http(nodes[2], "GET", "/api/jobs/rest_wd", token=token)[1]["status"] in ("SUCCEEDED", "FAILED"),
               30, "the working_dir job to end")
    code, logs = http(nodes[0], "GET", "/api/jobs/rest_wd/logs", token=token)
    check(logs["logs"] == "shipped data\n", "the REST working_dir job printed %r" % logs["logs"])
    code, doc = http(nodes[0], "PUT", "/api/packages/gcs/_ray_pkg_bad.zip", b"not a zip at all", token)
    check(code == 400 and doc["error"].startswith("working_dir archive"), "a body that is no zip: %s" % doc)
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escape.sh", "echo out\n")
    code, doc = http(nodes[0], "PUT", "/api/packages/gcs/_ray_pkg_evil.zip", evil.getvalue(), token)
    check(code == 400 and "escape.sh" in doc["error"], "a zip whose path leaves the directory: %s" % doc)
    body["runtime_env"]["working_dir"] = "gcs://_ray_pkg_never.zip"
    body["submission_id"] = "rest_never"
    code, doc = http(nodes[1], "POST", "/api/jobs/", json.dumps(body), token)
    check(code == 400 and "was not uploaded" in doc["error"], "a package never uploaded: %s" % doc)

    # At most 128 connections are open at once: the next one gets 503 (not a
    # node out of file descriptors), and once they close it serves again.
    idle = []
    try:
        for _ in range(128):
            idle.append(socket.create_connection(("127.0.0.1", nodes[0].http_port), timeout=10))
        code, doc = http(nodes[0], "GET", "/api/version", token=token)
        check(code == 503 and "too many open connections" in doc["error"], "connection 129: %s %s" % (code, doc))
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: http(nodes[0], "GET", "/api/version", token=token)[0] == 200, 10,
               "the REST API to serve again once the idle connections closed")


if __name__ == "__main__":
    run_tests([
        test_thirty_jobs_never_oversubscribe_and_priorities_after_and_arrays_order_starts,
        test_kill9_node_requeues_or_fails_its_jobs_and_logs_survive_restart,
        test_leader_kill9_neither_loses_nor_duplicates_jobs,
        test_stop_and_timeout_kill_the_whole_process_group,
        test_rest_api_wants_the_token_and_entrypoints_run_literally,
    ])
