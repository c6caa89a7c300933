"""Webhook wake-ups through a real node: the request, coalescing over a burst, no wake-up while
the client holds a WebSocket, 429 + Retry-After backs off, and an endpoint that never answers
slows neither appends nor requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.support.deadline import Deadline
from tests.support.rawsocket import RawSocket
from tests.wakeup.support import TOKEN, NodeServer, Sink

INTERVAL_MS = 300


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    sink = await Sink.start()
    yield sink
    await sink.stop()


async def serve(tmp_path: Path, **values: object) -> NodeServer:
    settings: dict[str, object] = {"wakeup_interval_ms": INTERVAL_MS, **values}
    return await NodeServer.start(f"sqlite:///{tmp_path}/log.db", **settings)


async def test_a_burst_is_coalesced_to_one_wake_up_per_interval(tmp_path: Path, sink: Sink) -> None:
    server = await serve(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await server.register(session, "20:hook", {"webhook": {"url": f"{sink.url}/hook"}})
        burst = 20
        started = time.monotonic()
        for n in range(burst):
            await server.node.add({"type": "note", "n": n}, users=["20"])
        await server.node.wakeups.idle()
        # the leading edge: one wake-up for the whole burst
        assert sink.paths() == ["hook"]
        received = sink.received[0]
        assert received.headers["Content-Type"] == "application/json"
        assert orjson.loads(received.body) == {"node": "20:hook", "client": "20:hook"}
        metrics = server.node.metrics.wakeups
        assert metrics[("webhook", "sent")] == 1
        assert metrics[("webhook", "coalesced")] == burst - 1

        # the trailing edge: entries after the first tickle get one more, once the interval
        # is over — and only one
        await sink.wait_for(2)
        assert time.monotonic() - started >= INTERVAL_MS / 1000
        await server.node.wakeups.idle()
        assert metrics[("webhook", "sent")] == 2
        await asyncio.sleep(2 * INTERVAL_MS / 1000)  # nothing more may come meanwhile
        assert sink.paths() == ["hook", "hook"]

        # a lone entry after a quiet interval: one wake-up at once, nothing trailing
        await server.node.add({"type": "note", "n": burst}, clients=["20:hook"])
        await server.node.wakeups.idle()
        assert sink.paths() == ["hook", "hook", "hook"]
        await asyncio.sleep(2 * INTERVAL_MS / 1000)
        assert len(sink.received) == 3
        assert metrics[("webhook", "coalesced")] == burst - 1
    finally:
        await server.stop()


async def test_the_origin_excluded_clients_and_answers_wake_nobody(
    tmp_path: Path, sink: Sink
) -> None:
    server = await serve(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await server.register(session, "21:a", {"webhook": {"url": f"{sink.url}/a"}})
            await server.register(session, "21:b", {"webhook": {"url": f"{sink.url}/b"}})
            await server.register(session, "22:own", {"webhook": {"url": f"{sink.url}/own"}})
        await server.node.add({"type": "note"}, users=["21"], exclude_clients=["21:a"])
        await server.node.add({"type": "note"}, users=["22"], meta={"id": "1 22:own:tab 0"})
        # an answer to the client's own request (a pull client has it in its response)
        await server.node.add({"type": "logux/processed", "id": "1 22:own 0"}, clients=["22:own"])
        await server.node.wakeups.idle()
        assert sink.paths() == ["b"]
    finally:
        await server.stop()


async def connect(server: NodeServer, node_id: str) -> RawSocket:
    socket = await RawSocket.open(server.ws_url)
    socket.send(["connect", 5, node_id, 0, {"token": TOKEN}])
    connected = await socket.recv_message()
    assert connected[0] == "connected", connected
    return socket


async def test_no_wake_up_while_the_client_holds_a_websocket(tmp_path: Path, sink: Sink) -> None:
    server = await serve(tmp_path)
    node = server.node
    try:
        async with aiohttp.ClientSession() as session:
            # registered while connected (the page subscribes to push with its socket open)
            socket = await connect(server, "30:ws")
            await server.register(session, "30:ws", {"webhook": {"url": f"{sink.url}/ws"}})
            await node.wakeups.idle()
            assert await node.store.get_record("online", "30:ws") is not None
            await node.add({"type": "note"}, users=["30"])
            await node.wakeups.idle()
            assert sink.received == []

            peer = node.registry.by_client["30:ws"]
            socket.abort()
            await asyncio.wait_for(peer.wait_closed(), 10)
            await node.wakeups.idle()
            assert await node.store.get_record("online", "30:ws") is None
            await node.add({"type": "note"}, users=["30"])
            await node.wakeups.idle()
            assert sink.paths() == ["ws"]
    finally:
        await server.stop()


async def test_429_with_retry_after_backs_off_that_endpoint(tmp_path: Path, sink: Sink) -> None:
    server = await serve(tmp_path)
    busy = True

    async def answer(request: web.Request) -> web.Response:
        if busy:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(status=201)

    sink.answer = answer
    node = server.node
    try:
        async with aiohttp.ClientSession() as session:
            await server.register(session, "40:busy", {"webhook": {"url": f"{sink.url}/busy"}})
        started = time.monotonic()
        await node.add({"type": "note"}, users=["40"])
        await node.wakeups.idle()
        assert len(sink.received) == 1
        assert node.metrics.wakeups[("webhook", "backoff")] == 1

        await asyncio.sleep(INTERVAL_MS / 1000)  # past the interval, within Retry-After
        await node.add({"type": "note"}, users=["40"])
        await node.wakeups.idle()
        assert len(sink.received) == 1, "backed off"
        assert node.metrics.wakeups[("webhook", "backoff")] == 2

        busy = False
        await asyncio.sleep(max(0.0, 1.05 - (time.monotonic() - started)))  # Retry-After: 1
        await node.add({"type": "note"}, users=["40"])
        await node.wakeups.idle()
        assert len(sink.received) == 2
        assert node.metrics.wakeups[("webhook", "sent")] == 1
    finally:
        await server.stop()


async def test_an_endpoint_that_never_answers_slows_nothing(tmp_path: Path, sink: Sink) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(status=201)

    sink.answer = hang
    server = await serve(tmp_path, wakeup_timeout_ms=500, wakeup_concurrency=2, wakeup_queue=4)
    node = server.node
    clients = [f"50:c{n}" for n in range(20)]
    try:
        async with aiohttp.ClientSession() as session:
            for client in clients:
                await server.register(session, client, {"webhook": {"url": f"{sink.url}/hang"}})
            started = time.monotonic()
            for client in clients:
                await node.add({"type": "note"}, clients=[client])
            appended = time.monotonic() - started
            # registering (a store round trip and an auth) is not held up either, nor a pull
            started = time.monotonic()
            await server.register(session, "50:late", {"webhook": {"url": f"{sink.url}/late"}})
            registered = time.monotonic() - started
            started = time.monotonic()
            body = {
                "node": "51:puller",
                "token": TOKEN,
                "actions": [
                    [{"type": "rooms/add", "room": "9"}, {"id": "1 51:puller 0", "time": 1}]
                ],
            }
            async with session.post(f"{server.url}/v1/sync", json=body) as answer:
                assert answer.status == 200
                assert (await answer.json())["answers"][0]["status"] == "processed"
            pulled = time.monotonic() - started
        # 20 wake-ups at 500 ms each, 2 at a time, would take 5 s if they were in the way (the
        # bounds leave room for a busy machine)
        assert appended < 2.5, appended
        assert registered < 1.0, registered
        assert pulled < 1.0, pulled
        deadline = Deadline(10)
        while len(sink.received) < 2:
            await asyncio.wait_for(sink.arrived.wait(), deadline.left())
            sink.arrived.clear()
        await asyncio.wait_for(node.wakeups.idle(), 10)
        metrics = node.metrics.wakeups
        assert metrics[("webhook", "failed")] >= 2  # timed out
        assert metrics[("webhook", "dropped")] >= 1  # past the queue of 4
        assert metrics[("webhook", "failed")] + metrics[("webhook", "dropped")] == len(clients)
    finally:
        never.set()
        await server.stop()


async def test_404_removes_the_registration(tmp_path: Path, sink: Sink) -> None:
    async def by_path(request: web.Request) -> web.Response:
        return web.Response(status=404 if request.path == "/gone" else 201)

    sink.answer = by_path
    server = await serve(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await server.register(session, "45:a", {"webhook": {"url": f"{sink.url}/gone"}})
            await server.register(session, "45:a", {"webhook": {"url": f"{sink.url}/kept"}})
            await server.node.add({"type": "note"}, users=["45"])
            await server.node.wakeups.idle()
            assert sorted(sink.paths()) == ["gone", "kept"]
            listed = await server.listed(session, "45:a")
            assert [r["endpoint"] for r in listed] == [f"{sink.url}/kept"]
            metrics = server.node.metrics.wakeups
            assert metrics[("webhook", "gone")] == metrics[("webhook", "sent")] == 1
    finally:
        await server.stop()


async def test_presence_is_refreshed_while_connected(tmp_path: Path, sink: Sink) -> None:
    # a lifetime long enough that a busy machine's stall (CI once saw one over 200 ms) does
    # not outlast the refresh, made every third of it
    server = await serve(tmp_path, wakeup_presence_ms=900)
    node = server.node
    socket = await connect(server, "46:ws")
    try:
        async with aiohttp.ClientSession() as session:
            await server.register(session, "46:ws", {"webhook": {"url": f"{sink.url}/ws"}})
        await asyncio.sleep(2.7)  # three presence lifetimes: only the refresh keeps it
        assert await node.store.get_record("online", "46:ws") is not None
        await node.add({"type": "note"}, users=["46"])
        await node.wakeups.idle()
        assert sink.received == []
    finally:
        socket.abort()
        await server.stop()
