"""The real @logux/client against a 3-node cluster (Redis with AOF, 3 nodes, HAProxy).

Each test runs one Node script from ``tests/interop/js/cluster-*.mjs``: every simulated client is
its own ``Client`` (``allowDangerousProtocol``), and every delivery is counted on the raw WebSocket
frames, since the client's log drops a repeated action id without a trace.

* cross-node fan-out: clients connected straight to different nodes, one channel;
* SIGKILL of the node holding the most connections while every client sends, through the load
  balancer: the clients reconnect by themselves to the surviving nodes and nothing is lost,
  duplicated or undone.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from deploy.local_cluster import Cluster
from tests.deploy.support import require_haproxy

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "interop" / "js"
APP = "tests.interop.app:app"
NPM_TIMEOUT = 110.0
FANOUT_TIMEOUT = 40.0
KILL_TIMEOUT = 58.0  # the kill scenario's own deadline is below it (LOGUX_DEADLINE_MS)

FANOUT_PER_NODE = 2
FANOUT_MESSAGES = 20
# 15 clients through leastconn: 5 on the killed node. With the burst each of them has an action in
# flight when it dies (being checked, appended or processed), so the test does not depend on the
# kill landing in one lucky millisecond.
KILL_CLIENTS = 15
KILL_MESSAGES = 150  # each, one every KILL_INTERVAL_MS: about 3 s of sending
KILL_INTERVAL_MS = 20
KILL_BURST = 40  # more from each client at once, at half-time, just before the kill
KILL_FINAL_WAIT_MS = 20000


@pytest.fixture(scope="module")
def node_bin() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20+) is required for the cluster client tests", pytrace=False)
    marker = JS_DIR / "node_modules" / "@logux" / "client" / "package.json"
    if not marker.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is required to install tests/interop/js", pytrace=False)
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0 or not marker.exists():
            pytest.fail(f"npm ci failed in {JS_DIR}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return node


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh cluster per test (the kill test leaves a node dead); logs stay in tmp_path."""
    require_haproxy()
    started = Cluster(3, app=APP, data_dir=tmp_path / "cluster", cwd=ROOT, python=sys.executable)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def node_logs(cluster: Cluster, size: int = 3000) -> str:
    parts = []
    for node in cluster.nodes:
        try:
            text = node.log_path.read_text(errors="replace")[-size:]
        except OSError:
            text = "(no log)"
        parts.append(f"--- {node.name} ---\n{text}")
    return "\n".join(parts)


class Script:
    """A running ``node cluster-*.mjs``: stdout lines as they come, stderr to a file."""

    def __init__(self, node_bin: str, name: str, arg: str, env: dict[str, str], log: Path) -> None:
        self.stderr_path = log
        self._stderr: IO[str] = log.open("w")
        self.process = subprocess.Popen(
            [node_bin, str(JS_DIR / f"{name}.mjs"), arg],
            cwd=JS_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, **env},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, deadline: float) -> str | None:
        """The next stdout line; None at EOF. Fails the test at ``deadline``."""
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.kill()
            pytest.fail(f"the script hung; stderr:\n{self.stderr_text()}")
        if line is not None:
            self.stdout.append(line)
        return line

    def result(self, deadline: float) -> Any:
        """Read to EOF; the last line as JSON (the script must exit 0)."""
        while self.next_line(deadline) is not None:
            pass
        code = self.process.wait(max(0.1, deadline - time.monotonic()))
        lines = [line for line in self.stdout if line.strip()]
        if code != 0 or not lines:
            pytest.fail(
                f"the script exited {code}\nstdout:\n{''.join(self.stdout)[-3000:]}\n"
                f"stderr:\n{self.stderr_text()}"
            )
        return json.loads(lines[-1])

    def stderr_text(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """Stop this script (its own PID only)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self.kill()
        self._stderr.close()


def channel_log(cluster: Cluster, channel: str) -> list[dict[str, Any]]:
    """Every entry of ``channel:<channel>`` in the cluster's Redis log (``logsync log tail``)."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "logsync.cli", "log", "tail", f"channel:{channel}"),
            *("-n", "1000000", "--store", cluster.store_url),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def delivery_problems(clients: list[dict[str, Any]], moved: Collection[str] = ()) -> list[str]:
    """Every way the frames break "each resolved message reaches every other client exactly once,
    its sender never, and nobody gets an undo". ``moved``: clients whose node died (a ``WS was
    closed`` error from a send racing the close is expected there)."""
    problems: list[str] = []
    resolved = {m["text"] for c in clients for m in c["sent"] if m["resolved"]}
    sent = {m["text"] for c in clients for m in c["sent"]}
    for c in clients:
        name = c["name"]
        own = {m["text"] for m in c["sent"]}
        missing = sorted(resolved - own - set(c["received"]))
        if missing:
            problems.append(f"{name} never received {len(missing)}: {missing[:10]}")
        twice = {t: n for t, n in c["received"].items() if n != 1}
        if twice:
            problems.append(f"{name} received more than once: {dict(list(twice.items())[:10])}")
        unknown = sorted(set(c["received"]) - sent)
        if unknown:
            problems.append(f"{name} received messages nobody sent: {unknown[:10]}")
        if c["ownReceived"]:
            problems.append(f"{name} got its own messages back: {c['ownReceived']}")
        if c["idsPerText"]:
            problems.append(f"{name} got one message under several ids: {c['idsPerText']}")
        if c["undos"]:
            problems.append(f"{name} received {len(c['undos'])} undos: {c['undos'][:3]}")
        if any(m["undo"] or m["error"] for m in c["sent"]):
            problems.append(f"{name}: sync() rejected: {[m for m in c['sent'] if m['undo']][:3]}")
        errors = [
            e for e in c["errors"] if not (name in moved and e.get("message") == "WS was closed")
        ]
        if errors:
            problems.append(f"{name} had errors: {errors}")
    return problems


def log_problems(entries: list[dict[str, Any]], clients: list[dict[str, Any]]) -> list[str]:
    """The server's side: each message appended (so processed) at most once, none missing."""
    counts = Counter(e["action"]["text"] for e in entries if e["action"]["type"] == "chat/message")
    sent = {m["text"] for c in clients for m in c["sent"]}
    problems = []
    if twice := {t: n for t, n in counts.items() if n > 1}:
        problems.append(f"appended more than once: {twice}")
    if missing := sorted(sent - set(counts)):
        problems.append(f"never appended: {missing[:10]} ({len(missing)})")
    return problems


def unfinished(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(text, status) of the chat messages of the log whose status is not ``processed``."""
    return [
        (e["action"]["text"], e["status"])
        for e in entries
        if e["action"]["type"] == "chat/message" and e["status"] != "processed"
    ]


class AnswerLost(AssertionError):
    """A client's ``sync()`` never resolved after its node died: no ``logux/processed`` ever came."""


def test_cross_node_fanout(node_bin: str, cluster: Cluster, tmp_path: Path) -> None:
    """Clients on each node directly; each sends K messages; everyone else gets each once."""
    urls = ",".join(node.url for node in cluster.nodes)
    script = Script(
        node_bin,
        "cluster-fanout",
        urls,
        {
            "CLUSTER_PER_NODE": str(FANOUT_PER_NODE),
            "CLUSTER_MESSAGES": str(FANOUT_MESSAGES),
            "LOGUX_DEADLINE_MS": str(int((FANOUT_TIMEOUT - 5) * 1000)),
        },
        tmp_path / "fanout.err",
    )
    try:
        r = script.result(time.monotonic() + FANOUT_TIMEOUT)
    finally:
        script.close()
    clients = r["clients"]
    context = f"\n{node_logs(cluster)}"
    assert r["timedOut"] == [], r["timedOut"]
    assert all(r["subscribed"].values()), r["subscribed"]
    # each client stayed on the node it was given: fan-out really crossed nodes
    node_ids = [node.id for node in cluster.nodes]
    assert [c["connections"] for c in clients] == [
        [node_id] for node_id in node_ids for _ in range(FANOUT_PER_NODE)
    ]
    for c in clients:
        assert [m["resolved"] for m in c["sent"]] == [True] * FANOUT_MESSAGES, c["sent"]
        assert len(c["received"]) == (len(clients) - 1) * FANOUT_MESSAGES
    assert delivery_problems(clients) == [], context
    entries = channel_log(cluster, r["channel"])
    assert log_problems(entries, clients) == []
    assert unfinished(entries) == []


def test_sigkill_node_under_load(node_bin: str, cluster: Cluster, tmp_path: Path) -> None:
    """15 clients through the balancer send continuously; at half-time (with a burst, so every
    node has actions in flight) the node holding the most of them is SIGKILLed for good.

    Every message whose sync() resolved reaches every other client exactly once, its sender never,
    nobody gets an undo; what was in flight is resent when unacknowledged, appended once, and its
    sync() resolves."""
    started = time.monotonic()
    deadline = started + KILL_TIMEOUT
    script = Script(
        node_bin,
        "cluster-kill",
        cluster.url,
        {
            "CLUSTER_CLIENTS": str(KILL_CLIENTS),
            "CLUSTER_MESSAGES": str(KILL_MESSAGES),
            "CLUSTER_INTERVAL_MS": str(KILL_INTERVAL_MS),
            "CLUSTER_BURST": str(KILL_BURST),
            "CLUSTER_FINAL_WAIT_MS": str(KILL_FINAL_WAIT_MS),
            "LOGUX_DEADLINE_MS": str(int((KILL_TIMEOUT - 4) * 1000)),
        },
        tmp_path / "kill.err",
    )
    try:
        half: dict[str, Any] | None = None
        while half is None:
            line = script.next_line(deadline)
            if line is None:
                break
            if line.startswith("{") and '"phase":"half"' in line:
                half = json.loads(line)
        assert half is not None, script.stderr_text()
        per_node = Counter(half["servers"].values())
        victim_id, held = per_node.most_common(1)[0]
        victim = next(i for i, node in enumerate(cluster.nodes) if node.id == victim_id)
        assert cluster.kill_node(victim, signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.monotonic() - started
        r = script.result(deadline)
    finally:
        script.close()
    clients = r["clients"]
    entries = channel_log(cluster, r["channel"])
    runtime = time.monotonic() - started
    context = (
        f"\nkilled {victim_id} (held {held} of {len(clients)}) at {killed_at:.1f} s; script "
        f"{r['totalMs']} ms; timeouts: {r['timedOut'][:4]}\n{node_logs(cluster)}"
    )
    assert all(r["subscribed"].values()), r["subscribed"]
    moved = [c for c in clients if c["connections"][0] == victim_id]
    assert len(moved) == held, (half, [c["connections"] for c in clients])
    for c in moved:
        # it lost its node and came back through the balancer to a surviving one
        assert c["disconnects"], c["name"]
        assert c["connections"][-1] != victim_id, (c["name"], c["connections"])
        assert c["state"] != "disconnected", c["name"]
    # in flight at the kill and not yet acknowledged: the client sent it again
    pending = [(c, p) for c in moved for p in c["disconnects"][0]["pending"]]
    assert pending, "nothing was in flight on the killed node"
    for c, p in pending:
        if p["wireSent"] and not p["acked"]:
            assert p["text"] in c["ownSentTwice"], (c["name"], p)

    # No loss, no duplicate, no undo for everything that resolved; appended once each.
    assert delivery_problems(clients, {c["name"] for c in moved}) == [], context
    assert log_problems(entries, clients) == [], context
    # Everything in flight resolved too (processed exactly once: appended once, above).
    status = {e["action"]["text"]: e["status"] for e in entries}
    unresolved = []
    for c in clients:
        in_flight = {p["text"]: p["acked"] for d in c["disconnects"] for p in d["pending"]}
        unresolved += [
            {
                "client": c["name"],
                "text": m["text"],
                "acked_before_the_kill": in_flight.get(m["text"]),
                "resent": m["text"] in c["ownSentTwice"],
                "log_status": status.get(m["text"]),
            }
            for m in c["sent"]
            if not m["resolved"]
        ]
    if unresolved or unfinished(entries):
        raise AnswerLost(
            f"{len(unresolved)} sync() never resolved: {unresolved}; not processed in the log: "
            f"{unfinished(entries)}{context}"
        )
    assert r["timedOut"] == [], r["timedOut"]
    assert runtime < 60, runtime
