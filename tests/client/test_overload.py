"""Overload and resets against a real ``logsync serve``: a server with a tiny handshake rate
answers 503 / closes with 1013 and a ``Retry-After``, which the client waits out before it
retries (over WebSocket and HTTP); an HTTP cursor from another log (the server came back on a
fresh store) is answered 409, and the client takes the fresh cursor and resubscribes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from logsync_client import Client
from tests.client.conftest import serve
from tests.support.redis import free_port

pytestmark = pytest.mark.timeout(60)

# one handshake at once, one waiting: the rest are refused with a retry hint of 1-2 s
SHORT_QUEUE = ("--handshake-queue", "10")
TINY_ADMISSION = ("--handshake-rate", "2", "--handshake-burst", "1", "--handshake-queue", "1")


@pytest.mark.parametrize("transport", ["ws", "http"])
async def test_retry_after_is_honoured(transport: str, tmp_path: Path) -> None:
    server = serve(tmp_path / "log", *TINY_ADMISSION)
    url = server.url if transport == "ws" else server.http_url
    clients = [
        Client(url, f"u{i}", "secret", min_delay=0.05, max_delay=0.2, wait=0) for i in range(5)
    ]
    try:
        await asyncio.gather(*(c.start() for c in clients))
        await asyncio.wait_for(asyncio.gather(*(c.wait_connected() for c in clients)), 40)
        hinted = [c for c in clients if c.retry_hints]
        assert hinted, "no client was refused: the admission bound did not bite"
        for client in hinted:
            for hint, delay, why in client.retry_hints:
                assert hint >= 1  # the server's floor
                assert hint <= delay <= hint + client.backoff.min_delay, why
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
        server.stop()


async def test_http_reset_resubscribes_and_takes_the_fresh_cursor(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "log"
    room = uuid.uuid4().hex[:8]
    # a short handshake queue: the shutdown's 503 says Retry-After 1 s, not up to 15
    server = serve(log, *SHORT_QUEUE, store=f"sqlite:///{tmp_path}/first.db", port=port)
    client = Client(server.http_url, "lena", "secret", store=tmp_path / "lena.db", wait=5)
    loads: list[str] = []
    loaded = asyncio.Event()
    resets: list[int] = []

    def on_load(action: dict[str, object], meta: dict[str, object]) -> None:
        loads.append(str(action["room"]))
        loaded.set()

    client.on("rooms/state", on_load)
    client.on_reset(lambda: resets.append(len(loads)))
    await client.start()
    try:
        await asyncio.wait_for(client.subscribe(f"rooms/{room}"), 10)
        await asyncio.wait_for(loaded.wait(), 10)
        old_cursor = client.store.get("cursor")
        await asyncio.to_thread(server.stop)
        await asyncio.wait_for(client.disconnected.wait(), 20)
        # a new log (a new epoch) on the same address: the old cursor is refused with 409
        server = await asyncio.to_thread(
            serve, log, *SHORT_QUEUE, store=f"sqlite:///{tmp_path}/second.db", port=port
        )
        loaded.clear()
        meta = await asyncio.wait_for(
            client.sync({"type": "rooms/add", "room": room, "text": "after reset"}), 20
        )
        assert meta
        while len(loads) < 2:
            loaded.clear()
            await asyncio.wait_for(loaded.wait(), 10)
        assert resets == [1]  # told once, between the two loads
        assert loads == [room, room]  # the channel's load ran again: resubscribed
        assert client.store.get("cursor") != old_cursor
        (sub,) = client.subscriptions()
        assert sub.confirmed
    finally:
        await client.stop()
        server.stop()


@pytest.mark.parametrize("transport", ["ws", "http"])
async def test_a_large_backlog_is_split_to_fit_the_servers_frame_limit(
    transport: str, tmp_path: Path
) -> None:
    """20 actions of 9 KB queued offline against a server taking 64 KiB messages: sent in one
    message (or request) they would be refused at every reconnect; split, they all go through."""
    log = tmp_path / "log"
    server = serve(log, "--max-frame-bytes", "65536")
    url = server.url if transport == "ws" else server.http_url
    client = Client(url, "mona", "secret", max_message_bytes=65536, wait=5)
    room = uuid.uuid4().hex[:8]
    try:
        ids = [
            client.add({"type": "rooms/add", "room": room, "text": "x" * 9000}) for _ in range(20)
        ]
        with pytest.raises(ValueError, match="max_message_bytes"):
            client.add({"type": "rooms/add", "room": room, "text": "x" * 70_000})
        await client.start()
        await asyncio.wait_for(client.flush(), 30)
        assert client.connections == 1  # never refused, never reconnected
    finally:
        await client.stop()
        server.stop()
    processed = [line.split("|")[0] for line in log.read_text().splitlines()]
    assert processed == ids
