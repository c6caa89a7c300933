"""Acknowledge after durable, exactly-once effect, and recovery — with SIGKILL and real SQLite files."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from logsync.log import PROCESSED, LogStore, open_store
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient

APP = "tests.server.durable_app:app"


def wire(client: RawClient, full_id: str) -> list[Any]:
    """A full id of this client, compressed against the current connection's base time."""
    ms, _, seq = full_id.split(" ")
    return [int(ms) - client.base_time, int(seq)]


async def notes_in_log(store: LogStore) -> Counter[int]:
    """How many times each `note` number is filed for its user."""
    counts: Counter[int] = Counter()
    cursor = 0
    while True:
        result = await store.read(["user:keeper"], cursor, 1000)
        counts.update(e.action["n"] for e in result.entries if e.action["type"] == "note")
        cursor = result.next_cursor
        if not result.more:
            return counts


async def test_sigkill_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/log.db"
    server = ServerProcess(APP, store=store_url)
    client = await RawClient.open(server.url)
    await client.connect("writer:w:t", subprotocol=0)
    sent: dict[int, str] = {}  # n → full id
    acknowledged: set[int] = set()
    enough = asyncio.Event()

    async def stream() -> None:
        # one action per `sync` (added = n), eight in flight: the kill lands among unanswered ones
        n = 0
        while True:
            for _ in range(8):
                n += 1
                [wire_id] = await client.sync(n, {"type": "note", "n": n})
                sent[n] = client.full_id(wire_id)
            while True:
                msg = await client.recv()
                if msg[0] == "synced":
                    acknowledged.add(msg[1])
                    if len(acknowledged) >= 400:
                        enough.set()
                    if msg[1] == n:
                        break

    streaming = asyncio.create_task(stream())
    await asyncio.wait(
        [streaming, asyncio.create_task(enough.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    server.stop(signal.SIGKILL)
    with contextlib.suppress(ConnectionError, TimeoutError):
        await streaming
    await client.close()
    assert len(acknowledged) >= 400

    store = open_store(store_url)
    logged = await notes_in_log(store)
    await store.close()
    assert acknowledged <= set(logged), "an acknowledged action is missing after SIGKILL"

    # Like @logux/client, resend everything without a `synced` (plus a few acknowledged ones).
    server = ServerProcess(APP, store=store_url)
    try:
        client = await RawClient.open(server.url)
        await client.connect("writer:w:t", subprotocol=0)
        resend = sorted(n for n in sent if n not in acknowledged) + sorted(acknowledged)[-3:]
        message: list[Any] = ["sync", 1]
        for n in resend:
            message += [{"type": "note", "n": n}, {"id": wire(client, sent[n]), "time": 0}]
        await client.send(message)
        synced, _ = await client.recv_until("synced")
        assert synced == ["synced", 1]
        await client.close()
    finally:
        server.stop()

    store = open_store(store_url)
    logged = await notes_in_log(store)
    for n in sent:
        assert logged[n] == 1, f"note {n} is in the log {logged[n]} times"
        entry = await store.get(sent[n])
        assert entry is not None and entry.status == PROCESSED
    await store.close()


async def test_dedupe_survives_a_restart(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/log.db"
    server = ServerProcess(APP, store=store_url)
    client = await RawClient.open(server.url)
    await client.connect("dup:d:t", subprotocol=0)
    [wire_id] = await client.sync(1, {"type": "job"})
    full_id = client.full_id(wire_id)
    assert (await client.answer(full_id))["type"] == "logux/processed"
    await client.close()
    server.stop()

    server = ServerProcess(APP, store=store_url)  # a new process: nothing in memory
    try:
        client = await RawClient.open(server.url)
        await client.connect("dup:d:t", subprotocol=0)
        await client.send(["sync", 2, {"type": "job"}, {"id": wire(client, full_id), "time": 0}])
        # answered again, not processed again: `process` would have announced a run
        assert (await client.answer(full_id))["type"] == "logux/processed"
        await client.close()
    finally:
        server.stop()
    store = open_store(store_url)
    runs = [e.action for e in (await store.read(["user:keeper"], 0, 100)).entries]
    await store.close()
    assert runs == [{"type": "job/done", "id": full_id, "runs": 1}]


async def test_action_left_waiting_by_a_crash_is_processed_on_restart(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/log.db"
    server = ServerProcess(APP, store=store_url, env={"LOGSYNC_TEST_BLOCK": "1"})
    client = await RawClient.open(server.url)
    await client.connect("crash:c:t", subprotocol=0)
    [wire_id] = await client.sync(1, {"type": "job"})
    full_id = client.full_id(wire_id)
    while True:  # appended, and `process` has started (and blocks): no `synced` yet
        msg = await client.recv()
        assert msg[0] != "synced"
        if msg[0] == "sync" and msg[2]["type"] == "job/started":
            break
    server.stop(signal.SIGKILL)
    await client.close()

    store = open_store(store_url)
    entry = await store.get(full_id)
    await store.close()
    assert entry is not None and entry.status == "waiting"

    server = ServerProcess(APP, store=store_url)
    try:
        # the client, offline meanwhile, gets its answer from the log when it comes back
        client = await RawClient.open(server.url)
        await client.connect("crash:c:t", subprotocol=0)
        assert (await client.answer(full_id))["type"] == "logux/processed"
        await client.close()
    finally:
        server.stop()
    store = open_store(store_url)
    entry = await store.get(full_id)
    runs = [e.action for e in (await store.read(["user:keeper"], 0, 100)).entries]
    await store.close()
    assert entry is not None and entry.status == PROCESSED
    assert runs == [{"type": "job/done", "id": full_id, "runs": 1}]
