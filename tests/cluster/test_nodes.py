"""Several `logsync serve` nodes on one real Redis: cross-node fan-out, resume anywhere, Redis faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.server.test_flow import metrics
from tests.support.redis import RedisServer, start_redis
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient

APP = "tests.interop.app:app"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    try:
        yield server
    finally:
        server.stop()


def start_nodes(redis: RedisServer, count: int) -> list[ServerProcess]:
    store = f"{redis.url}?prefix=t{uuid.uuid4().hex[:8]}"
    return [
        ServerProcess(APP, "--node-id", f"n{i}", "--ping", "600000", store=store)
        for i in range(count)
    ]


async def subscribe(
    c: RawClient, channel: str, since: dict[str, Any] | None = None
) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "logux/subscribe", "channel": channel}
    if since:
        action["since"] = since
    [wire_id] = await c.sync(1, action)
    answer, meta = await c.answer_with_meta(c.full_id(wire_id))
    assert answer["type"] == "logux/processed", answer
    return meta


async def chat_texts(c: RawClient, count: int) -> list[str]:
    texts: list[str] = []
    while len(texts) < count:
        msg = await c.recv()
        if msg[0] == "sync":
            texts += [a["text"] for a in msg[2::2] if a["type"] == "chat/message"]
            await c.send(["synced", msg[1]])
    return texts


async def health(node: ServerProcess) -> int:
    async with aiohttp.ClientSession() as http, http.get(node.http_url + "health") as response:
        return response.status


async def test_action_on_one_node_reaches_subscribers_on_the_others(
    redis_server: RedisServer,
) -> None:
    nodes = start_nodes(redis_server, 3)
    try:
        readers = []
        for i, node in enumerate(nodes):
            reader = await RawClient.open(node.url)
            await reader.connect(f"r{i}:c:t")
            await subscribe(reader, "chat/x")
            readers.append(reader)
        assert len({r.server_id for r in readers}) == 3
        sender = await RawClient.open(nodes[0].url)
        await sender.connect("s:c:t")
        texts = [{"type": "chat/message", "chat": "x", "text": f"m{i}"} for i in range(50)]
        await sender.sync(1, *texts)
        for reader in readers:
            assert await chat_texts(reader, 50) == [f"m{i}" for i in range(50)]
        # once each: nothing more arrives before a pong
        for reader in readers:
            await reader.send(["ping", 0])
            _, before = await reader.recv_until("pong")
            assert not [
                a for m in before if m[0] == "sync" for a in m[2::2] if a["type"] == "chat/message"
            ]
            await reader.close()
        await sender.close()
    finally:
        for node in nodes:
            node.stop()


async def test_client_resumes_on_another_node_without_gap_or_duplicate(
    redis_server: RedisServer,
) -> None:
    first, second = start_nodes(redis_server, 2)
    try:
        reader = await RawClient.open(first.url)
        await reader.connect("roam:c:t")
        processed = await subscribe(reader, "chat/roam")
        since = {"id": processed["id"], "time": processed["time"]}
        sender = await RawClient.open(second.url)
        await sender.connect("roam-s:c:t")
        await sender.sync(
            1, *[{"type": "chat/message", "chat": "roam", "text": f"a{i}"} for i in range(20)]
        )
        assert await chat_texts(reader, 20) == [f"a{i}" for i in range(20)]
        watermark = reader.watermark
        await reader.close()
        # offline: more messages, plus user-addressed ones
        await sender.sync(
            2, *[{"type": "chat/message", "chat": "roam", "text": f"b{i}"} for i in range(30)]
        )
        await sender.sync(
            3, *[{"type": "notify", "user": "roam", "text": f"n{i}"} for i in range(5)]
        )
        await sender.recv_until("synced")
        await sender.recv_until("synced")
        await sender.recv_until("synced")
        first.stop()
        reader = await RawClient.open(second.url)
        await reader.connect("roam:c:t", synced=watermark)
        [wire_id] = await reader.sync(
            1, {"type": "logux/subscribe", "channel": "chat/roam", "since": since}
        )
        seen: list[str] = []
        answered = False
        while len(seen) < 35 or not answered:
            msg = await reader.recv()
            if msg[0] == "sync":
                seen += [a["text"] for a in msg[2::2] if a["type"] in ("chat/message", "notify")]
                answered = answered or any(
                    a.get("id") == reader.full_id(wire_id) for a in msg[2::2]
                )
                await reader.send(["synced", msg[1]])
        assert sorted(seen) == sorted([f"b{i}" for i in range(30)] + [f"n{i}" for i in range(5)])
        assert [t for t in seen if t.startswith("b")] == [f"b{i}" for i in range(30)]
        await reader.close()
        await sender.close()
    finally:
        first.stop()
        second.stop()


async def test_duplicate_id_refused_across_nodes(redis_server: RedisServer) -> None:
    first, second = start_nodes(redis_server, 2)
    try:
        client = await RawClient.open(first.url)
        await client.connect("dupe:c:t")
        [wire_id] = await client.sync(1, {"type": "counter/inc"})
        full_id = client.full_id(wire_id)
        assert (await client.answer(full_id))["type"] == "logux/processed"
        watermark = client.watermark
        await client.close()
        client = await RawClient.open(second.url)
        await client.connect("dupe:c:t", synced=watermark)
        ms, _, seq = full_id.split(" ")
        await client.send(
            [
                "sync",
                2,
                {"type": "counter/inc"},
                {"id": [int(ms) - client.base_time, int(seq)], "time": 0},
            ]
        )
        received: list[dict[str, Any]] = []
        while True:
            msg = await client.recv()
            if msg[0] == "sync":
                received += msg[2::2]
                if any(a.get("id") == full_id for a in received):
                    break
        assert [a["type"] for a in received if a.get("id") == full_id] == ["logux/processed"]
        assert not [a for a in received if a["type"] == "counter/value"]  # not processed again
        await client.close()
    finally:
        first.stop()
        second.stop()


async def test_redis_restart_keeps_sockets_refuses_writes_and_recovers(
    redis_server: RedisServer,
) -> None:
    node, other = start_nodes(redis_server, 2)
    try:
        reader = await RawClient.open(other.url)
        await reader.connect("fault-r:c:t")
        await subscribe(reader, "chat/fault")
        writer = await RawClient.open(node.url)
        await writer.connect("fault-w:c:t")
        await writer.sync(
            1, *[{"type": "chat/message", "chat": "fault", "text": f"x{i}"} for i in range(10)]
        )
        assert (await writer.recv_until("synced"))[0] == ["synced", 1]
        # as every Logux client does: acknowledge what the server sent (the answers), or it is
        # served from the log once the node resyncs and waits for these acknowledgements
        await writer.send(["synced", writer.watermark])

        redis_server.stop()
        # the socket stays open; a write is refused with a clear reason, not acknowledged as stored
        [wire_id] = await writer.sync(2, {"type": "chat/message", "chat": "fault", "text": "lost?"})
        undo = await writer.answer(writer.full_id(wire_id), timeout=60)
        assert undo["type"] == "logux/undo"
        assert "unavailable" in undo["details"]
        await writer.send(["synced", writer.watermark])
        assert await health(node) == 503

        redis_server.start()
        while await health(node) != 200 or await health(other) != 200:
            await asyncio.sleep(0.1)
        await writer.sync(
            3, *[{"type": "chat/message", "chat": "fault", "text": f"y{i}"} for i in range(10)]
        )
        acks = [(await writer.recv_until("synced"))[0] for _ in range(2)]
        assert acks == [["synced", 2], ["synced", 3]]  # the refused one is answered, then the new
        texts = await chat_texts(reader, 20)
        assert texts == [f"x{i}" for i in range(10)] + [f"y{i}" for i in range(10)]
        await reader.close()
        await writer.close()
    finally:
        node.stop()
        other.stop()


async def test_a_replaced_connection_keeps_its_successor_subscribed(
    redis_server: RedisServer,
) -> None:
    # The zombie is forgotten when it is replaced and again when its socket closes: its pub/sub
    # topics (the same client and user) must be released once, or the successor goes deaf.
    [node] = start_nodes(redis_server, 1)
    try:
        first = await RawClient.open(node.url)
        await first.connect("zu:c1:t1")
        second = await RawClient.open(node.url)
        await second.connect("zu:c1:t2")
        assert await first.closed() is not None
        await first.close()
        while (await metrics(node))["logsync_connections"] != 1:
            await asyncio.sleep(0.01)
        sender = await RawClient.open(node.url)
        await sender.connect("zs:c:t")
        await sender.sync(1, {"type": "notify", "user": "zu", "text": "still here"})
        while True:
            msg = await second.recv()
            if msg[0] == "sync":
                assert [a["text"] for a in msg[2::2] if a["type"] == "notify"] == ["still here"]
                break
        for client in (second, sender):
            await client.close()
    finally:
        node.stop()


async def test_a_new_connection_closes_the_older_one_of_its_client_on_another_node(
    redis_server: RedisServer,
) -> None:
    """As on one node: the older connection with that client id is closed with 1000, wherever
    it is; the newer one keeps working, and a third on a third node replaces it in turn."""
    nodes = start_nodes(redis_server, 3)
    try:
        first = await RawClient.open(nodes[0].url)
        await first.connect("moved:c:t1")
        second = await RawClient.open(nodes[1].url)
        await second.connect("moved:c:t2")
        assert await first.closed() == 1000
        [wire_id] = await second.sync(1, {"type": "counter/inc"})
        assert (await second.answer(second.full_id(wire_id)))["type"] == "logux/processed"
        third = await RawClient.open(nodes[2].url)
        await third.connect("moved:c:t3")
        assert await second.closed() == 1000
        [wire_id] = await third.sync(1, {"type": "counter/inc"})
        assert (await third.answer(third.full_id(wire_id)))["type"] == "logux/processed"
        # another client of the same user is not touched
        other = await RawClient.open(nodes[0].url)
        await other.connect("moved:d:t1")
        [wire_id] = await third.sync(2, {"type": "counter/inc"})
        assert (await third.answer(third.full_id(wire_id)))["type"] == "logux/processed"
        for client in (first, second, third, other):
            await client.close()
    finally:
        for node in nodes:
            node.stop()
