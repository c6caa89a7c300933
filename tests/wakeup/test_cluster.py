"""Wake-ups across two nodes on one Redis: a registration made on one node is used by the
other, a client connected to one node is not woken by an entry appended on the other, and a
burst appended on both nodes wakes the client once (the claim is atomic in the store)."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp

from tests.support.rawsocket import RawSocket
from tests.wakeup.support import TOKEN, NodeServer, Sink


async def test_presence_and_coalescing_hold_across_nodes(redis_url: str) -> None:
    store = f"{redis_url}?prefix=w{uuid.uuid4().hex[:8]}"
    sink = await Sink.start()
    a = await NodeServer.start(store, wakeup_interval_ms=60_000)
    b = await NodeServer.start(store, wakeup_interval_ms=60_000)
    socket: RawSocket | None = None
    try:
        async with aiohttp.ClientSession() as session:
            await a.register(session, "70:x", {"webhook": {"url": f"{sink.url}/x"}})
        # b looks for the deployment's first registration each second
        await asyncio.wait_for(b.node.wakeups.activated.wait(), 10)

        socket = await RawSocket.open(b.ws_url)
        socket.send(["connect", 5, "70:x", 0, {"token": TOKEN}])
        assert (await socket.recv_message())[0] == "connected"
        await b.node.wakeups.idle()
        await a.node.add({"type": "note"}, users=["70"])
        await a.node.wakeups.idle()
        assert sink.received == []  # connected to b

        peer = b.node.registry.by_client["70:x"]
        socket.abort()
        await asyncio.wait_for(peer.wait_closed(), 10)
        await b.node.wakeups.idle()

        burst = 10
        for n in range(burst):
            await (a if n % 2 else b).node.add({"type": "note", "n": n}, users=["70"])
        await a.node.wakeups.idle()
        await b.node.wakeups.idle()
        assert sink.paths() == ["x"]
        coalesced = sum(
            server.node.metrics.wakeups.get(("webhook", "coalesced"), 0) for server in (a, b)
        )
        assert coalesced == burst - 1
    finally:
        if socket is not None:
            socket.abort()
        await a.stop()
        await b.stop()
        await sink.stop()
