"""The store-queue signal admission follows leaves out the node's own catch-up reads: they are
bounded by ``replay_concurrency`` and the budget, and counted, a storm's reads alone kept the
handshake rate cut. The calls clients wait on (appends, point reads, status writes) count."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from logsync.broker import LocalBroker
from logsync.engine import ServerNode
from logsync.log.sqlite import SqliteStore
from logsync.settings import Settings
from tests.interop.app import app


async def test_catch_up_reads_are_not_in_the_store_queue_signal(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'log.db'}")
    node = ServerNode(app, store, LocalBroker(), Settings(replay_concurrency=4))
    held = threading.Event()
    try:
        # the SQLite thread is busy with this call: everything after it waits in the queue
        blocker = store._writer.submit(lambda conn: held.wait(10))
        reads = [
            asyncio.ensure_future(node.read([f"client:c{n}"], after=0, limit=10)) for n in range(3)
        ]
        gets = [asyncio.ensure_future(store.get(f"{n} x:1:1 0")) for n in range(2)]
        await asyncio.sleep(0)  # each call is queued, none can be answered
        assert node.catch_up_reads == 3
        assert store.queue_depth == 6
        assert node.sample().store_queue == 3  # the blocker and the two point reads
        assert node.snapshot().store_queue == 3  # /metrics shows the signal as admission reads it
        held.set()
        await blocker
        results = await asyncio.gather(*reads)
        assert [r.entries for r in results] == [[], [], []]
        assert await asyncio.gather(*gets) == [None, None]
        assert node.catch_up_reads == 0 and node.sample().store_queue == 0
    finally:
        held.set()
        await store.close()
