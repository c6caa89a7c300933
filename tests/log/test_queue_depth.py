"""``LogStore.queue_depth``, the store signal admission follows: the calls a store has not
answered yet, back to 0 once it has answered them (memory: always 0)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from logsync.log import LogStore
from logsync.log.sqlite import SqliteStore


async def test_queue_depth_counts_unanswered_calls_and_returns_to_zero(
    store: LogStore, backend: str
) -> None:
    assert store.queue_depth == 0
    # (not head: SQLite answers that on the caller's thread, without the queue)
    calls = [asyncio.ensure_future(store.get(f"{n} x:1:1 0")) for n in range(5)]
    await asyncio.sleep(0)  # each call is made (queued or sent) and none can be answered yet
    if backend == "memory":
        assert store.queue_depth == 0  # answers at once: no queue
    else:
        assert store.queue_depth == 5
    assert await asyncio.gather(*calls) == [None] * 5
    assert store.queue_depth == 0


async def test_a_failed_sqlite_call_leaves_the_queue_too(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        with pytest.raises(sqlite3.Error):
            await store.sql("SELECT nonsense FROM nowhere")
        assert store.queue_depth == 0
    finally:
        await store.close()
