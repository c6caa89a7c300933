"""Restarts: a client process SIGKILLed with actions pending starts again on the same SQLite file
and loses nothing and applies nothing twice (checked in what the server processed); a client
reconnects with backoff when the server restarts, resubscribed, its offline queue sent."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from logsync_client import Client
from tests.client.conftest import serve
from tests.support.redis import free_port
from tests.support.server import ROOT, ServerProcess

pytestmark = pytest.mark.timeout(90)


# Each scenario runs on both transports and both stores, not on every pair of them: each run
# starts a server and client processes (seconds each on a loaded 2-core machine).
PAIRS = [("ws", "sqlite"), ("http", "sqlite"), ("http", "redis"), ("ws", "redis")]


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path, store: str) -> str:
    if store == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return f"{redis_url}?prefix=restart-{uuid.uuid4().hex[:8]}"
    return f"sqlite:///{tmp_path}/server.db"


class Worker:
    """tests/client/worker.py in its own process."""

    def __init__(self, url: str, store: Path, room: str, count: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.client.worker", url, str(store), room, str(count)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self, timeout: float = 20) -> str:
        assert self.process.stdout is not None
        killer = _Killer(self.process, timeout)
        try:
            return self.process.stdout.readline().strip()
        finally:
            killer.cancel()

    def queued(self) -> list[str]:
        first = self.line()
        assert first.startswith("queued"), first
        ids = first.removeprefix("queued").strip()
        return ids.split("|") if ids else []

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def finish(self) -> str:
        last = self.line()
        self.process.wait(20)
        return last


class _Killer:
    """Kill a process that has not printed within ``timeout`` seconds (so a read always ends)."""

    def __init__(self, process: subprocess.Popen[str], timeout: float) -> None:
        self._timer = threading.Timer(timeout, process.kill)
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "processed.log"


def processed_ids(log: Path) -> Counter[str]:
    if not log.exists():
        return Counter()
    return Counter(line.split("|")[0] for line in log.read_text().splitlines())


@pytest.mark.parametrize(("transport", "store"), PAIRS[:3])
def test_sigkilled_client_loses_nothing_and_applies_nothing_twice(
    transport: str, store_url: str, tmp_path: Path, log: Path
) -> None:
    port = free_port()
    scheme = "ws" if transport == "ws" else "http"
    url = f"{scheme}://127.0.0.1:{port}/"
    client_store = tmp_path / "client.db"
    room = uuid.uuid4().hex[:8]

    # offline: no server on the port; the actions only reach the file, then the process dies
    offline = Worker(url, client_store, room, 30)
    offline_ids = offline.queued()
    offline.kill()

    server = serve(log, store=store_url, port=port)
    try:
        # online: killed as soon as its new actions are queued, while the old ones are being sent
        online = Worker(url, client_store, room, 30)
        online_ids = online.queued()
        online.kill()
        # again, with nothing new: it sends what is left and waits for every answer
        last = Worker(url, client_store, room, 0)
        assert last.queued() == []
        assert last.finish() == "done 0"
    finally:
        server.stop()
    counts = processed_ids(log)
    assert set(counts) == set(offline_ids) | set(online_ids)
    assert len(offline_ids) == len(online_ids) == 30
    assert max(counts.values()) == 1  # the server applied each action once


# A short handshake queue keeps the Retry-After of the shutdown's 503 at its 1 s floor.
ARGS = ("--handshake-queue", "10")


@pytest.mark.parametrize(("transport", "store"), [PAIRS[1], PAIRS[3]])
async def test_reconnects_with_backoff_after_the_server_restarts(
    transport: str, store_url: str, tmp_path: Path, log: Path
) -> None:
    port = free_port()
    server: ServerProcess | None = serve(log, *ARGS, store=store_url, port=port)
    assert server is not None
    url = server.url if transport == "ws" else server.http_url
    room = uuid.uuid4().hex[:8]
    jill = Client(
        url, "jill", "secret", store=tmp_path / "jill.db", min_delay=0.1, max_delay=1, wait=5
    )
    kate = Client(url, "kate", "secret", min_delay=0.1, max_delay=1, wait=5)
    got: list[str] = []
    arrived = asyncio.Event()

    def hear(action: dict[str, object], meta: dict[str, object]) -> None:
        got.append(str(action["text"]))
        arrived.set()

    jill.on("rooms/add", hear)
    await jill.start()
    await kate.start()
    try:
        await asyncio.wait_for(jill.wait_connected(), 10)
        await asyncio.wait_for(jill.subscribe(f"rooms/{room}"), 10)
        await asyncio.wait_for(kate.wait_connected(), 10)
        await asyncio.to_thread(server.stop)
        server = None
        await asyncio.wait_for(jill.disconnected.wait(), 20)
        # offline: queued, not lost
        jill.add({"type": "rooms/add", "room": room, "text": "while down"})
        assert len(jill.pending()) == 1
        server = await asyncio.to_thread(serve, log, *ARGS, store=store_url, port=port)
        await asyncio.wait_for(jill.flush(), 20)
        assert jill.connections >= 2
        assert jill.delays, "no backoff delay was taken"
        # full jitter under max_delay, or the server's Retry-After (+ at most min_delay)
        bound = max(1.0, jill.last_retry_after or 0) + 0.1
        assert all(delay <= bound for delay in jill.delays)
        # resubscribed after the restart: a new message in the room reaches jill
        await asyncio.wait_for(kate.sync({"type": "rooms/add", "room": room, "text": "after"}), 20)
        while "after" not in got:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 10)
    finally:
        await jill.stop()
        await kate.stop()
        if server is not None:
            server.stop()
    counts = processed_ids(log)
    assert sorted(counts.values()) == [1, 1]
