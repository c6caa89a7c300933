"""Channel wake-ups for pull clients: a registered client whose pull subscriptions (made with
real ``POST /v1/sync`` requests) hold a channel is woken by an action another client sends to
it over a WebSocket — whether it subscribed before or after registering — and no longer once
it unsubscribed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.rawsocket import RawSocket
from tests.wakeup.support import TOKEN, NodeServer, Sink

INTERVAL_MS = 200


async def pull(session: aiohttp.ClientSession, server: NodeServer, node: str, **body: Any) -> Any:
    async with session.post(
        f"{server.url}/v1/sync", json={"node": node, "token": TOKEN, **body}
    ) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.json()


async def send_to_room(server: NodeServer, room: str, seq: int) -> None:
    """A WebSocket client (user 99) sends ``rooms/add``, resent to ``rooms/<room>``."""
    socket = await RawSocket.open(server.ws_url)
    try:
        socket.send(["connect", 5, "99:sender", 0, {"token": TOKEN}])
        assert (await socket.recv_message())[0] == "connected"
        action = {"type": "rooms/add", "room": room}
        socket.send(["sync", seq, action, {"id": [seq, "99:sender", 0], "time": 0}])
        while (await socket.recv_message())[0] != "synced":
            pass
    finally:
        socket.abort()


async def test_pull_subscriptions_are_woken_through_their_channels(tmp_path: Path) -> None:
    sink = await Sink.start()
    server = await NodeServer.start(f"sqlite:///{tmp_path}/log.db", wakeup_interval_ms=INTERVAL_MS)
    wakeups = server.node.wakeups
    try:
        async with aiohttp.ClientSession() as session:
            # subscribed, then registered: indexed when registering
            await pull(session, server, "60:early", subscribe=[{"channel": "rooms/1"}])
            await server.register(session, "60:early", {"webhook": {"url": f"{sink.url}/early"}})
            # registered, then subscribed: indexed when its request ends
            await server.register(session, "61:late", {"webhook": {"url": f"{sink.url}/late"}})
            await pull(session, server, "61:late", subscribe=[{"channel": "rooms/1"}])
            await wakeups.idle()
            assert sink.received == []

            await send_to_room(server, "1", 1)
            await wakeups.idle()
            assert sorted(sink.paths()) == ["early", "late"]
            await send_to_room(server, "2", 2)  # nobody pulls rooms/2
            await wakeups.idle()
            assert len(sink.received) == 2

            await pull(session, server, "61:late", unsubscribe=[{"channel": "rooms/1"}])
            await wakeups.idle()
            assert await server.node.store.get_record("wake-channel", "rooms/1\x0061:late") is None
            await asyncio.sleep(INTERVAL_MS / 1000)  # the coalescing interval has to pass
            await send_to_room(server, "1", 3)
            await wakeups.idle()
            assert sorted(sink.paths()) == ["early", "early", "late"]
    finally:
        await server.stop()
        await sink.stop()
