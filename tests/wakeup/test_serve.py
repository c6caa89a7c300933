"""Through a real ``logsync serve`` (SQLite file): the wake-up flags reach the node, the routes
are served, and a pull client subscribed to a channel is woken by a WebSocket client's action
there, counted in ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from logsync.wakeup import generate_vapid_keys
from tests.support.rawsocket import RawSocket
from tests.support.server import ServerProcess
from tests.wakeup.support import TOKEN, Sink


@pytest.fixture
def vapid(tmp_path: Path) -> tuple[Path, str]:
    pem, public_key = generate_vapid_keys()
    path = tmp_path / "vapid.pem"
    path.write_text(pem)
    return path, public_key


@pytest.fixture
def server(vapid: tuple[Path, str]) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "tests.wakeup.app:app",
        "--vapid-private-key",
        str(vapid[0]),
        "--wakeup-interval-ms",
        "1000",
        "--wakeups-per-client",
        "3",
    )
    try:
        yield process
    finally:
        process.stop()


async def test_serve_wakes_a_pull_client_by_webhook(
    server: ServerProcess, vapid: tuple[Path, str]
) -> None:
    url = server.http_url.rstrip("/")
    sink = await Sink.start()
    socket: RawSocket | None = None
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/v1/vapid") as answer:
                assert (await answer.json()) == {"publicKey": vapid[1]}
            body = {"node": "80:hook", "token": TOKEN, "subscribe": [{"channel": "rooms/5"}]}
            async with session.post(f"{url}/v1/sync", json=body) as answer:
                assert answer.status == 200
            hook = {"node": "80:hook", "token": TOKEN, "webhook": {"url": f"{sink.url}/w"}}
            async with session.post(f"{url}/v1/wakeups", json=hook) as answer:
                assert answer.status == 201

            socket = await RawSocket.open(server.url)
            socket.send(["connect", 5, "81:sender", 0, {"token": TOKEN}])
            assert (await socket.recv_message())[0] == "connected"
            action = {"type": "rooms/add", "room": "5"}
            socket.send(["sync", 1, action, {"id": [1, "81:sender", 0], "time": 0}])
            await asyncio.wait_for(sink.arrived.wait(), 10)
            assert sink.paths() == ["w"]

            async with session.get(f"{url}/metrics") as answer:
                metrics = await answer.text()
            assert 'logsync_wakeups_total{kind="webhook",result="sent"} 1.0' in metrics
            assert 'logsync_limit{setting="wakeups_per_client"} 3.0' in metrics
    finally:
        if socket is not None:
            socket.abort()
        await sink.stop()
