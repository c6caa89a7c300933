"""``/metrics`` walks no peers: the counts of connections, sessions and sessions catching up are
kept as peers change, the queued bytes are summed over the transports that have any. These tests
check, over real sockets and while clients connect, catch up, stall, are replaced and leave,
that the kept figures equal a walk over every peer (what ``ServerNode.snapshot`` did before)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from logsync.broker import LocalBroker
from logsync.engine import ServerNode
from logsync.log import open_store
from logsync.metrics import render
from logsync.settings import Settings
from tests.interop.app import app
from tests.server.test_budget import CHUNK, produce, read_notes, read_raw
from tests.support.deadline import Deadline
from tests.support.inprocess import serving
from tests.support.rawsocket import RawSocket
from tests.support.wsclient import RawClient

DEADLINE = 60.0
STALLED_ACTIONS = 5000  # ~5 MB for a reader that does not read: more than the kernel takes in
STALLED = ("stalled0", "stalled1")


def walked(node: ServerNode) -> tuple[int, int, int, int]:
    """connections, sessions, sessions catching up, queued bytes: by a walk over every peer."""
    peers = [p for p in node.registry.peers if not getattr(p, "keeps_subscriptions", False)]
    authenticated = [p for p in peers if p.authenticated]
    return (
        len(peers),
        len(authenticated),
        sum(1 for p in authenticated if not p.live),
        sum(p.buffered_bytes for p in peers),
    )


def kept(node: ServerNode) -> tuple[int, int, int, int]:
    snapshot = node.snapshot()
    return (
        snapshot.connections,
        snapshot.sessions,
        snapshot.catching_up,
        snapshot.outbound_bytes,
    )


class Checker:
    """Compares the kept figures with a walk every millisecond while the test runs, and
    remembers the largest walked figures (so that the test knows it saw each one non-zero)."""

    def __init__(self, node: ServerNode) -> None:
        self.node = node
        self.checks = 0
        self.most = (0, 0, 0, 0)

    def check(self) -> tuple[int, int, int, int]:
        walk = walked(self.node)
        assert kept(self.node) == walk
        self.most = tuple(max(a, b) for a, b in zip(self.most, walk, strict=True))  # type: ignore[assignment]
        self.checks += 1
        return walk

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(0.001)


async def test_the_kept_counts_equal_a_walk_over_every_peer(tmp_path: Any) -> None:
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'log.db'}",
        host="127.0.0.1",
        port=0,
        replay_chunk=CHUNK,
        ping_ms=600_000,
        replay_window=1000,  # the stalled reader sends no `synced`: the socket bounds it
    )
    node = ServerNode(app, open_store(settings.store), LocalBroker(), settings)
    checker = Checker(node)
    deadline = Deadline(DEADLINE)
    async with serving(node, settings) as url:
        watching = asyncio.create_task(checker.run())
        try:
            await scenario(node, url, checker, deadline)
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    assert checker.checks > 100
    connections, sessions, catching_up, queued = checker.most
    # every figure was seen non-zero, and connections above sessions (one not authenticated)
    assert connections > sessions >= 3
    assert catching_up >= 2
    assert queued > 0


async def scenario(node: ServerNode, url: str, checker: Checker, deadline: Deadline) -> None:
    producer = await RawClient.open(url)
    await producer.connect("producer:p:t")
    added = await produce(producer, STALLED, STALLED_ACTIONS)
    await produce(producer, ("fast",), CHUNK * 3, added)

    anonymous = await RawSocket.open(url)  # upgraded, never says `connect`

    # readers that do not read: catching up, with bytes queued in the server (two, so that the
    # count is seen above one: a reader that does read catches up between two checks)
    stalled: list[RawSocket] = []
    for user in STALLED:
        reader = await RawSocket.open(url, rcvbuf=4096)
        reader.writer.transport.pause_reading()
        reader.send(["connect", 5, f"{user}:1", 0, {"token": "secret", "subprotocol": 3}])
        stalled.append(reader)
    while (walk := checker.check())[2] < len(STALLED) or walk[3] == 0:
        assert deadline.remaining() > 0, f"the stalled readers: {walk}"
        await asyncio.sleep(0.01)

    fast = await RawClient.open(url)
    await fast.connect("fast:1")
    assert await read_notes(fast, CHUNK * 3, deadline) == list(range(CHUNK * 3))
    # the same client again: the first connection is a zombie, closed and forgotten
    again = await RawClient.open(url)
    await again.connect("fast:1", synced=added)
    assert await fast.closed() == 1000
    metrics = render(node)  # the scrape itself, as /metrics does it
    assert "logsync_sessions_catching_up" in metrics

    for reader in stalled:
        reader.writer.transport.resume_reading()
    for got in await asyncio.gather(*(read_raw(r, STALLED_ACTIONS, deadline) for r in stalled)):
        assert got == list(range(STALLED_ACTIONS))
    for client in (producer, fast, again):
        await client.close()
    for reader in stalled:
        reader.abort()
    anonymous.abort()
    while node.registry.peers:
        assert deadline.remaining() > 0, node.registry.peers
        await asyncio.sleep(0.01)
    assert checker.check() == (0, 0, 0, 0)
    assert not node.queued  # every transport that queued bytes was dropped once it was gone
