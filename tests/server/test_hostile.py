"""Hostile clients against a real server: what one client sends must never make an acknowledged
action disappear, stall delivery to others, or cost unbounded memory. Each test names its bound.

Black-box over real sockets (``logsync serve`` processes), so they hold through restructuring.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadtest.servers import rss_kib
from logsync.log.entry import NewEntry
from logsync.log.sqlite import SqliteStore
from tests.conftest import INTEROP_APP
from tests.server.test_flow import metrics
from tests.support.rawsocket import RawSocket
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient

pytestmark = pytest.mark.timeout(120)


async def read_until_synced(
    client: RawClient, added: int, timeout: float = 30.0
) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """Read until ``['synced', added]``: the answers (processed/undo) that came before it, and
    every other message read on the way. Every ``sync`` is acknowledged, as a Logux client does
    (the server's catch-up waits for that, and the ``synced`` waits behind it)."""
    answers: list[dict[str, Any]] = []
    others: list[list[Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await client.recv(max(0.1, deadline - time.monotonic()))
        if msg == ["synced", added]:
            return answers, others
        if msg[0] == "sync":
            for action in msg[2::2]:
                if action.get("type") in ("logux/processed", "logux/undo"):
                    answers.append(action)
            await client.send(["synced", msg[1]])
        others.append(msg)


async def notes_for(client: RawClient, count: int, timeout: float = 10.0) -> list[str]:
    """``notify`` texts the client receives (acknowledging each ``sync``), until ``count``."""
    texts: list[str] = []
    deadline = time.monotonic() + timeout
    while len(texts) < count:
        msg = await client.recv(max(0.1, deadline - time.monotonic()))
        if msg[0] == "sync":
            texts += [a["text"] for a in msg[2::2] if a.get("type") == "notify"]
            await client.send(["synced", msg[1]])
    return texts


# -- 1. one action must not poison an index -------------------------------------------------


POISONS: list[tuple[str, bool, dict[str, Any], dict[str, Any]]] = [
    # (name, msgpack?, action fields, meta fields)
    ("bytes in the action", True, {"text": b"\x00\xff"}, {}),
    ("bytes in subprotocol", True, {"text": "x"}, {"subprotocol": b"3"}),
    ("a dict subprotocol", False, {"text": "x"}, {"subprotocol": {}}),
    ("a float subprotocol", False, {"text": "x"}, {"subprotocol": 1.5}),
    ("time 1e300", False, {"text": "x"}, {"time": 1e300}),
    ("time -1e300", False, {"text": "x"}, {"time": -1e300}),
    ("NaN time", True, {"text": "x"}, {"time": math.nan}),
    ("NaN in the action", True, {"text": "x", "n": math.nan}, {}),
    ("an integer beyond 64 bits", True, {"text": "x", "n": 2**64 - 1}, {}),
]


@pytest.mark.parametrize(("name", "binary", "fields", "meta"), POISONS, ids=[p[0] for p in POISONS])
async def test_a_poisoned_action_is_refused_and_the_victim_still_gets_later_actions(
    shared_server: ServerProcess,
    name: str,
    binary: bool,
    fields: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """Bound: the poisoned action is answered `logux/undo` before its `synced`; the addressed
    user then receives the next action live and, reconnecting from 0, in catch-up — nothing
    poisoned stored in between."""
    victim_user = f"victim{abs(hash(name)) % 10**8}"
    victim = await RawClient.open(shared_server.url)
    await victim.connect(f"{victim_user}:v:1")
    attacker = await RawClient.open(shared_server.url, binary=binary)
    await attacker.connect(f"mallory{abs(hash(name)) % 10**8}:m:1")
    action = {"type": "notify", "user": victim_user, **fields}
    wire_id = attacker.next_id()
    await attacker.send(["sync", 1, action, {"id": wire_id, "time": 0, **meta}])
    answers, _ = await read_until_synced(attacker, 1)
    assert [a["type"] for a in answers] == ["logux/undo"], (name, answers)
    assert answers[0]["reason"] == "error" and answers[0]["details"], answers
    await attacker.sync(2, {"type": "notify", "user": victim_user, "text": "after"})
    assert await notes_for(victim, 1) == ["after"]
    again = await RawClient.open(shared_server.url)
    await again.connect(f"{victim_user}:v:2", synced=0)
    assert await notes_for(again, 1) == ["after"]
    for client in (victim, attacker, again):
        await client.close()


async def test_an_undeliverable_entry_already_in_the_log_is_skipped(tmp_path: Path) -> None:
    """Bound: an entry that cannot be encoded (a 23-digit id millisecond, left by an older
    version) costs its readers nothing but that entry: the entries after it arrive, on
    connect and live, and it is counted once in `logsync_undeliverable_entries_total`."""
    path = tmp_path / "log.db"
    store = SqliteStore(f"sqlite:///{path}")

    def note(action_id: str, text: str) -> NewEntry:
        action = {"type": "notify", "user": "reader", "text": text}
        return NewEntry(action_id, 1, action, ["user:reader"], status="processed")

    await store.append([note("1 w:1:1 0", "before")])
    await store.append([note(f"{10**22} w:1:1 1", "poison")])
    await store.append([note("2 w:1:1 2", "after")])
    await store.close()
    server = ServerProcess(INTEROP_APP, store=f"sqlite:///{path}")
    try:
        reader = await RawClient.open(server.url)
        await reader.connect("reader:r:1", synced=0)
        assert await notes_for(reader, 2) == ["before", "after"]
        sender = await RawClient.open(server.url)
        await sender.connect("writer:w:2")
        await sender.sync(1, {"type": "notify", "user": "reader", "text": "live"})
        assert await notes_for(reader, 1) == ["live"]
        assert (await metrics(server))["logsync_undeliverable_entries_total"] == 1
        await reader.close()
        await sender.close()
    finally:
        server.stop()


# -- 2. identity before dedupe --------------------------------------------------------------


async def test_ids_claimed_by_another_user_reserve_nothing(shared_server: ServerProcess) -> None:
    """Bound: 20 of 20 of the victim's actions are processed and delivered, although another
    user sent those very ids first (and got `denied` for each)."""
    victim = await RawClient.open(shared_server.url)
    await victim.connect("owner:o:1")
    watcher = await RawClient.open(shared_server.url)
    await watcher.connect("watched:w:1")
    attacker = await RawClient.open(shared_server.url)
    await attacker.connect("thief:t:1")
    # The victim's future ids, as the attacker writes them: [ms, node, seq] against its own
    # base time, so that they decompress to exactly the ids the victim will use.
    shift = victim.base_time - attacker.base_time
    ids = [[shift, "owner:o:1", seq] for seq in range(20)]
    message: list[Any] = ["sync", 1]
    for wire_id in ids:
        message += [
            {"type": "notify", "user": "watched", "text": "fake"},
            {"id": wire_id, "time": 0},
        ]
    await attacker.send(message)
    answers, _ = await read_until_synced(attacker, 1)
    assert [a["reason"] for a in answers] == ["denied"] * 20
    real = [{"type": "notify", "user": "watched", "text": f"real {i}"} for i in range(20)]
    await victim.sync(1, *real)
    answers, _ = await read_until_synced(victim, 1)
    assert [a["type"] for a in answers] == ["logux/processed"] * 20
    assert await notes_for(watcher, 20) == [f"real {i}" for i in range(20)]
    # An existing id sent by another user is denied, not answered `processed`: nothing learnt.
    await attacker.send(["sync", 2, real[0], {"id": ids[0], "time": 0}])
    answers, _ = await read_until_synced(attacker, 2)
    assert [a["reason"] for a in answers] == ["denied"]
    for client in (victim, watcher, attacker):
        await client.close()


# -- 3. every sync is answered --------------------------------------------------------------


async def test_a_subscribe_with_an_absurd_since_is_answered(shared_server: ServerProcess) -> None:
    """Bound: `since.time` 1e300 gets `logux/undo` before `synced` (not a silent `synced`)."""
    client = await RawClient.open(shared_server.url)
    await client.connect("since:s:1")
    action = {"type": "logux/subscribe", "channel": "chat/a", "since": {"time": 1e300}}
    await client.sync(1, action)
    answers, _ = await read_until_synced(client, 1)
    assert [a["type"] for a in answers] == ["logux/undo"]
    await client.close()


async def test_an_undecodable_id_is_a_broken_frame(shared_server: ServerProcess) -> None:
    """Bound: `[1e300, 0]` as an id gets `wrong-format` and a close, never `synced`."""
    client = await RawClient.open(shared_server.url)
    await client.connect("badid:b:1")
    await client.send(
        ["sync", 1, {"type": "notify", "user": "x", "text": "x"}, {"id": [1e300, 0], "time": 0}]
    )
    msg = await client.recv()
    assert msg[:2] == ["error", "wrong-format"], msg
    assert await client.closed() is not None
    await client.close()


async def test_a_connect_subprotocol_of_1e308_is_wrong_format(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.send(["connect", 5, "sub:s:1", 0, {"token": "secret", "subprotocol": 1e308}])
    msg = await client.recv()
    assert msg[:2] == ["error", "wrong-format"], msg
    await client.close()


# -- 4. inbound is bounded ------------------------------------------------------------------


async def test_an_inbound_flood_is_bounded_and_dropped_when_its_client_leaves() -> None:
    """Bounds, for one client writing 2,000-action `sync` frames for 6 s without reading: memory
    is bounded, not growing with the flood (RSS under +300 MB, and the last 3 s add less than
    40 MB: it was 1.4 GB in 20 s, growing all along), unanswered actions stay under the bound
    plus one frame, a control client's round trip stays under 2 s (p99 of its own actions), and
    once the flooder is gone the server stops appending within 3 s."""
    server = ServerProcess(
        INTEROP_APP, "--inbound-max-actions", "1000", "--inbound-max-bytes", "262144"
    )
    try:
        control = await RawClient.open(server.url)
        await control.connect("control:c:1")
        rss_before = rss_kib(server.process.pid)
        flood = await RawSocket.open(server.url)
        flood.send(["connect", 5, "flood:f:1", 0, {"token": "secret", "subprotocol": 3}])
        connected = await flood.recv_message()
        assert connected[0] == "connected"
        text = "x" * 40
        stop = time.monotonic() + 6
        added, seq, peak_inbound = 0, 0, 0.0
        samples: list[tuple[float, int]] = []  # (seconds left, RSS KiB)
        latencies: list[float] = []

        async def control_loop() -> None:
            n = 0
            while time.monotonic() < stop:
                n += 1
                start = time.monotonic()
                [wire_id] = await control.sync(n, {"type": "counter/inc"})
                answer = await control.answer(control.full_id(wire_id))
                assert answer["type"] == "logux/processed"
                await control.recv_until("synced")
                await control.send(["synced", control.watermark])  # as a Logux client does
                latencies.append(time.monotonic() - start)

        async def watch() -> None:
            nonlocal peak_inbound
            while time.monotonic() < stop:
                samples.append((stop - time.monotonic(), rss_kib(server.process.pid)))
                peak_inbound = max(peak_inbound, (await metrics(server))["logsync_inbound_actions"])
                await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(control_loop()), asyncio.create_task(watch())]
        while time.monotonic() < stop:
            added += 1
            message: list[Any] = ["sync", added]
            for _ in range(2000):
                message += [
                    {"type": "notify", "user": "flood", "text": text},
                    {"id": [0, seq], "time": 0},
                ]
                seq += 1
            flood.send(message)
            if not await flood.drain(max(0.05, stop - time.monotonic())):
                break  # the server stopped reading: what the test is about
        await asyncio.gather(*tasks)
        paused = (await metrics(server))["logsync_reading_paused_total"]
        flood.abort()
        assert paused >= 1
        assert peak_inbound <= 1000 + 2000, peak_inbound
        peak_rss = max(rss for _, rss in samples)
        first_half = max(rss for left, rss in samples if left >= 3)
        assert (peak_rss - rss_before) / 1024 < 300, (rss_before, samples)
        assert (peak_rss - first_half) / 1024 < 40, (rss_before, samples)
        latencies.sort()
        assert latencies and latencies[int(len(latencies) * 0.99) - 1] < 2.0, latencies[-5:]
        # Once the flooder is gone, what it queued and nobody appended yet is dropped.
        await asyncio.sleep(1.0)  # the close reaches the server; its queued work winds down
        first = (await metrics(server))["logsync_actions_appended_total"]
        await asyncio.sleep(2.0)
        assert (await metrics(server))["logsync_actions_appended_total"] == first
        await control.close()
    finally:
        server.stop()


# -- 5. and the smaller ones ----------------------------------------------------------------


async def test_subscriptions_per_connection_are_bounded() -> None:
    """Bound: with `--max-subscriptions 3`, the 4th channel is undone `limit`; subscribing
    again to one it has is fine."""
    server = ServerProcess(INTEROP_APP, "--max-subscriptions", "3")
    try:
        client = await RawClient.open(server.url)
        await client.connect("subs:s:1")
        for n, channel in enumerate(["chat/1", "chat/2", "chat/3", "chat/4", "chat/1"], 1):
            [wire_id] = await client.sync(n, {"type": "logux/subscribe", "channel": channel})
            answer = await client.answer(client.full_id(wire_id))
            if channel == "chat/4":
                assert answer["type"] == "logux/undo" and answer["reason"] == "limit", answer
            else:
                assert answer["type"] == "logux/processed", (channel, answer)
        await client.close()
    finally:
        server.stop()


async def test_a_channel_name_over_the_setting_is_refused() -> None:
    """Bound: with `--max-channel-length 16`, a 17-character channel is undone `error`."""
    server = ServerProcess(INTEROP_APP, "--max-channel-length", "16")
    try:
        client = await RawClient.open(server.url)
        await client.connect("long:l:1")
        for channel, expected in (
            ("chat/" + "x" * 11, "logux/processed"),
            ("chat/" + "x" * 12, "logux/undo"),
        ):
            [wire_id] = await client.sync(1, {"type": "logux/subscribe", "channel": channel})
            assert (await client.answer(client.full_id(wire_id)))["type"] == expected, channel
        await client.close()
    finally:
        server.stop()


async def test_the_bruteforce_lock_is_not_extended_by_the_attempts_it_refused() -> None:
    """Bound: 3 wrong tokens lock the address for the 1 s window; a client retrying with the
    right token every 100 ms meanwhile is let in once the window has passed (within 3 s)."""
    server = ServerProcess(
        INTEROP_APP, "--bruteforce-failures", "3", "--bruteforce-window-ms", "1000"
    )
    try:

        async def attempt(token: str) -> str:
            client = await RawClient.open(server.url)
            try:
                await client.send(
                    ["connect", 5, "brute:b:1", 0, {"token": token, "subprotocol": 3}]
                )
                msg = await client.recv()
                return msg[0] if msg[0] == "connected" else msg[1]
            finally:
                await client.close()

        for _ in range(3):
            assert await attempt("wrong") == "wrong-credentials"
        locked_at = time.monotonic()
        assert await attempt("secret") == "wrong-credentials"  # locked
        while (result := await attempt("secret")) != "connected":
            assert result == "wrong-credentials"
            assert time.monotonic() - locked_at < 3.0, "the lock was extended by refused attempts"
            await asyncio.sleep(0.1)
        assert time.monotonic() - locked_at >= 0.5
    finally:
        server.stop()


async def test_an_error_before_auth_closes_and_is_logged_truncated() -> None:
    """Bound: `['error', type, <12 KB>]` before `connect` closes the socket, and the log line it
    causes is under 1,000 characters."""
    server = ServerProcess(INTEROP_APP)
    try:
        client = await RawClient.open(server.url)
        await client.send(["error", "wrong-format", "A" * 12_000])
        assert await client.closed() is not None
        await client.close()
        probe = await RawClient.open(server.url)  # the server still answers
        await probe.connect("after:a:1")
        await probe.close()
    finally:
        server.stop()
    lines = [line for line in server.output if "reported error" in line]
    assert lines, server.output[-5:]
    assert all(len(line) < 1000 for line in server.output)


async def test_json_log_lines_carry_the_client_and_a_reason() -> None:
    """`--log-format json`: every log line is one JSON object; a client's error names it."""
    server = ServerProcess(INTEROP_APP, "--log-format", "json")
    try:
        client = await RawClient.open(server.url)
        await client.connect("logged:l:1")
        await client.send(["error", "bogus", {"detail": "y" * 5000}])
        await client.sync(1, {"type": "counter/inc"})
        await client.recv_until("synced")
        await client.close()
    finally:
        server.stop()
    records = [orjson.loads(line) for line in server.output if line.startswith("{")]
    reported = [r for r in records if "reported error" in r["message"]]
    assert reported and reported[0]["client"] == "logged:l" and reported[0]["level"] == "INFO"
    assert len(reported[0]["message"]) < 1000
    plain = [line for line in server.output if not line.startswith("{")]
    assert all(line.startswith("logsync listening on ") for line in plain), plain


async def test_every_bound_is_in_metrics(shared_server: ServerProcess) -> None:
    from logsync.settings import LIMITS, Settings

    values = await metrics(shared_server)
    for name in LIMITS:
        assert f'logsync_limit{{setting="{name}"}}' in values, name
    assert values['logsync_limit{setting="max_frame_bytes"}'] == 4096  # the module's server
    assert values['logsync_limit{setting="inbound_max_actions"}'] == Settings().inbound_max_actions
