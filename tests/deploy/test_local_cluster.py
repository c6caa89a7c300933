"""``deploy/local-cluster``: Redis (AOF), 3 nodes and HAProxy on 127.0.0.1, run as a user would.

The launcher runs as a subprocess; the checks go through HAProxy with the shipped config, to each
node directly, and end with SIGTERM to the launcher, which must stop every process it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from deploy.local_cluster import Cluster, free_port, render_haproxy_config
from tests.deploy.support import require_haproxy
from tests.support.wsclient import RawClient

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "deploy" / "local-cluster"
APP = "tests.interop.app:app"
START_TIMEOUT = 40.0
STOP_TIMEOUT = 20.0


@dataclass
class Launched:
    process: subprocess.Popen[str]
    info: dict[str, Any]
    stderr_path: Path

    def pids(self) -> list[int]:
        return [
            self.info["redis"]["pid"],
            self.info["haproxy"]["pid"],
            *(node["pid"] for node in self.info["nodes"]),
        ]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill_leftovers(self) -> None:
        """After a failed test: no process of the launcher may outlive the module."""
        for pid in self.pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def launch(data_dir: Path, nodes: int) -> Launched:
    """Run ``deploy/local-cluster`` as a user would; return once it printed its JSON line."""
    require_haproxy()
    # `#!/usr/bin/env python3` finds this interpreter (the venv with logsync) first.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    stderr_path = data_dir.parent / f"{data_dir.name}-launcher.err"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [
                *(str(LAUNCHER), "--nodes", str(nodes), "--port", str(free_port())),
                *("--data-dir", str(data_dir), "--app", APP),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PATH": path},
        )
    assert process.stdout is not None
    timer = threading.Timer(START_TIMEOUT, process.kill)
    timer.start()
    try:
        line = process.stdout.readline()
    finally:
        timer.cancel()
    if not line:
        process.wait()
        pytest.fail(
            f"local-cluster exited with {process.returncode} before it was ready:\n"
            + stderr_path.read_text()[-4000:]
        )
    return Launched(process, json.loads(line), stderr_path)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def http_url(ws_url: str) -> str:
    return ws_url.replace("ws://", "http://", 1).rstrip("/")


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    cluster = launch(tmp_path_factory.mktemp("cluster") / "data", nodes=3)
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.kill_leftovers()


def test_prints_every_process(launched: Launched) -> None:
    info = launched.info
    assert info["url"].startswith("ws://127.0.0.1:")
    assert [node["id"] for node in info["nodes"]] == [
        "server:node1",
        "server:node2",
        "server:node3",
    ]
    assert info["redis"]["url"].startswith("redis://127.0.0.1:")
    assert len(set(launched.pids())) == 5
    assert all(alive(pid) for pid in launched.pids())


def test_health_through_haproxy(launched: Launched) -> None:
    assert http_get(http_url(launched.info["url"]) + "/health") == (200, "OK\n")


def test_health_of_each_node(launched: Launched) -> None:
    for node in launched.info["nodes"]:
        assert http_get(http_url(node["url"]) + "/health") == (200, "OK\n"), node


async def test_handshake_through_haproxy(launched: Launched) -> None:
    client = await RawClient.open(launched.info["url"])
    try:
        connected = await client.connect("user:client:tab", "secret")
    finally:
        await client.close()
    assert connected[0] == "connected"
    assert connected[2] in {node["id"] for node in launched.info["nodes"]}


async def node_sessions(node: dict[str, Any]) -> float:
    """``logsync_sessions`` of one node's /metrics (asked directly, not through HAProxy)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(http_url(node["url"]) + "/metrics", timeout=aiohttp.ClientTimeout(5)) as response,
    ):
        assert response.status == 200
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("logsync_sessions "):
            return float(line.split()[1])
    raise AssertionError(f"no logsync_sessions in {node['id']}'s /metrics:\n{text}")


async def test_connections_spread_over_nodes(launched: Launched) -> None:
    """HAProxy (leastconn, no stickiness) gives every node clients: none is left idle."""
    nodes = launched.info["nodes"]
    count = 2 * len(nodes)
    # one at a time, each open before the next: leastconn sees the earlier ones
    clients = [await RawClient.open(launched.info["url"]) for _ in range(count)]
    try:
        answers = await asyncio.gather(
            *(client.connect(f"spread{i}:client:tab") for i, client in enumerate(clients))
        )
        servers = [connected[2] for connected in answers]
        per_node = {node["id"]: servers.count(node["id"]) for node in nodes}
        assert sum(per_node.values()) == count, servers  # every answer names one of the nodes
        assert all(per_node.values()), per_node
        # and each node counts them as its own sessions while they are open
        for node in nodes:
            assert await node_sessions(node) >= per_node[node["id"]], (node["id"], per_node)
    finally:
        await asyncio.gather(*(client.close() for client in clients))


def test_haproxy_accepts_the_generated_config(launched: Launched) -> None:
    config = Path(launched.info["haproxy"]["config"])
    servers = [
        (f"node{i + 1}", node["url"].removeprefix("ws://").rstrip("/"))
        for i, node in enumerate(launched.info["nodes"])
    ]
    # The running config is the shipped deploy/haproxy.cfg with only its server block replaced.
    assert config.read_text() == render_haproxy_config(servers)
    result = subprocess.run(
        [require_haproxy(), "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Configuration file is valid" in output
    assert "WARNING" not in output, output


def test_sigterm_stops_every_process(tmp_path: Path) -> None:
    cluster = launch(tmp_path / "data", nodes=2)
    try:
        pids = cluster.pids()
        assert all(alive(pid) for pid in pids)
        assert cluster.stop(signal.SIGTERM) == 0, cluster.stderr_path.read_text()
        assert [pid for pid in pids if alive(pid)] == []
        # The data dir it was given is kept: Redis' AOF is there.
        assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()
    finally:
        cluster.kill_leftovers()


def wait_healthy(cluster: Cluster, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(node.health() == 200 for node in cluster.nodes):
        assert time.monotonic() < deadline, [node.health() for node in cluster.nodes]
        time.sleep(0.05)  # polling readiness of processes


def test_cluster_class_kills_and_restarts(tmp_path: Path) -> None:
    """The importable :class:`Cluster` the multi-node tests use."""
    require_haproxy()
    with Cluster(2, app=APP, data_dir=tmp_path / "data", cwd=ROOT) as cluster:
        node = cluster.nodes[0]
        port, first_pid = node.port, node.pid
        cluster.restart_node(0)
        assert (node.port, node.id) == (port, "server:node1")
        assert node.pid != first_pid
        assert node.health() == 200

        assert cluster.kill_node(1) == -signal.SIGKILL
        assert not cluster.nodes[1].running
        cluster.restart_node(1)
        assert cluster.nodes[1].health() == 200

        # appendfsync always: a write Redis acknowledged survives Redis being SIGKILLed.
        client = redis.Redis.from_url(cluster.redis_url)
        try:
            client.set("deploy-test", "kept")
            cluster.restart_redis(signal.SIGKILL)
            assert client.get("deploy-test") == b"kept"
        finally:
            client.close()
        wait_healthy(cluster)
        pids = cluster.pids()
        assert len(pids) == 4
    assert [pid for pid in pids if alive(pid)] == []
