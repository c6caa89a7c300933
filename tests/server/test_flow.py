"""Flow control, deterministically: small limits over real sockets; the token bucket by itself."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from logsync.engine.admission import TokenBucket
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0) == 0.5  # booked: the next token comes in half a second
    assert bucket.reserve(0.0) == 1.0
    assert bucket.booked(0.0) == 2
    assert bucket.booked(1.0) == 0  # both booked tokens have come
    assert bucket.reserve(10.0) == 0.0  # refilled, capped at the burst
    assert [bucket.reserve(10.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve(10.0) == 0.5


async def metrics(server: ServerProcess) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(server.http_url + "metrics") as response:
        assert response.status == 200
        text = await response.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_handshakes_over_the_rate_wait_and_past_the_queue_are_refused() -> None:
    # one token every 5 s: the waiting handshake stays waiting for the whole check
    server = ServerProcess(
        "tests.interop.app:app",
        "--handshake-rate",
        "0.2",
        "--handshake-burst",
        "1",
        "--handshake-queue",
        "1",
    )
    try:
        first, second, third = [await RawClient.open(server.url) for _ in range(3)]
        await first.connect("adm1:c:t")  # the burst token
        await second.send(["connect", 5, "adm2:c:t", 0, {"token": "secret", "subprotocol": 3}])
        waiting = asyncio.create_task(second.recv_until("connected", timeout=30))
        while (await metrics(server))["logsync_handshakes_waiting"] < 1:
            await asyncio.sleep(0.01)
        # the queue (1) is full: an open socket's handshake is closed with 1013 "try again later"
        await third.send(["connect", 5, "adm3:c:t", 0, {"token": "secret", "subprotocol": 3}])
        assert await third.closed() == 1013
        # and a new socket is refused before it opens, with a retry hint
        upgrade = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        async with (
            aiohttp.ClientSession() as http,
            http.get(server.http_url, headers=upgrade) as response,
        ):
            assert response.status == 503
            assert int(response.headers["Retry-After"]) >= 1
        assert not waiting.done()
        connected, _ = await waiting  # the waiting one gets in when its token comes
        assert connected[0] == "connected"
        counts = await metrics(server)
        assert counts['logsync_handshakes_total{outcome="admitted"}'] == 2
        assert counts['logsync_handshakes_total{outcome="deferred"}'] == 1
        assert counts['logsync_handshakes_total{outcome="refused"}'] == 2
        for client in (first, second, third):
            await client.close()
    finally:
        server.stop()


async def test_client_that_stops_acknowledging_is_served_from_the_log_in_order() -> None:
    server = ServerProcess(
        "tests.interop.app:app",
        "--ping",
        "600000",
        env={"LOGSYNC_LIVE_WINDOW": "4", "LOGSYNC_REPLAY_WINDOW": "2"},
    )
    try:
        slow = await RawClient.open(server.url)
        await slow.connect("slow:c:t")
        [wire_id] = await slow.sync(1, {"type": "logux/subscribe", "channel": "chat/slow"})
        await slow.answer(slow.full_id(wire_id))
        await slow.send(["synced", slow.watermark])  # nothing unacknowledged before the burst
        sender = await RawClient.open(server.url)
        await sender.connect("fast:c:t")
        # one at a time, so each is a commit, a `sync` of its own to the slow client (a client's
        # actions sent together may share a commit, and then one `sync`)
        for i in range(60):
            await sender.sync(i + 1, {"type": "chat/message", "chat": "slow", "text": f"m{i}"})
            await sender.recv_until("synced")
        # the slow client reads but never sends `synced`: after 4 live syncs it gets nothing more
        unacked: list[list[Any]] = []
        while len(unacked) < 4:
            msg = await slow.recv()
            if msg[0] == "sync":
                unacked.append(msg)
        await slow.send(["ping", 0])
        _, before = await slow.recv_until("pong")
        assert [m for m in before if m[0] == "sync"] == []
        counts = await metrics(server)
        assert counts["logsync_fell_behind_total"] >= 1
        assert counts["logsync_sessions_catching_up"] >= 1
        # once it acknowledges, the rest comes from the log, in chunks, in order, once
        texts = [a["text"] for m in unacked for a in m[2::2] if a["type"] == "chat/message"]
        for msg in unacked:
            await slow.send(["synced", msg[1]])
        while len(texts) < 60:
            msg = await slow.recv()
            if msg[0] == "sync":
                texts += [a["text"] for a in msg[2::2] if a["type"] == "chat/message"]
                await slow.send(["synced", msg[1]])
        assert texts == [f"m{i}" for i in range(60)]
        assert (await metrics(server))["logsync_catch_up_chunks_total"] >= 1
        await slow.close()
        await sender.close()
    finally:
        server.stop()


async def test_catch_up_with_one_replay_slot_serves_every_client() -> None:
    server = ServerProcess("tests.interop.app:app", "--replay-concurrency", "1", "--ping", "600000")
    try:
        sender = await RawClient.open(server.url)
        await sender.connect("many:s:t")
        await sender.sync(
            1, *[{"type": "notify", "user": f"u{i % 3}", "text": f"n{i}"} for i in range(300)]
        )
        await sender.recv_until("synced")
        readers = [await RawClient.open(server.url) for _ in range(3)]

        async def backlog(i: int) -> list[str]:
            await readers[i].connect(f"u{i}:c:t")
            texts: list[str] = []
            while len(texts) < 100:
                msg = await readers[i].recv()
                if msg[0] == "sync":
                    texts += [a["text"] for a in msg[2::2] if a["type"] == "notify"]
                    await readers[i].send(["synced", msg[1]])
            return texts

        results = await asyncio.gather(*(backlog(i) for i in range(3)))
        for i, texts in enumerate(results):
            assert texts == [f"n{n}" for n in range(300) if n % 3 == i]
        for client in (*readers, sender):
            await client.close()
    finally:
        server.stop()
