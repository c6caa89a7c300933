"""The one append path: :class:`LogWriter` appends to the store, times it and publishes what it
created, so every caller (client actions, server actions, undos) does the three the same way.

Publishing means "hand the entry to the broker". A store may already have published as part of
its append (the Redis store's script ``PUBLISH``es atomically with the write); its broker's
``publish`` then does nothing, so the semantics are the same for every store: each created entry
is published exactly once, after it is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from logsync.log.entry import Entry, NewEntry
from logsync.log.store import Appended, LogStore
from logsync.metrics import Metrics


class Publisher(Protocol):
    """What the writer publishes to (a :class:`~logsync.broker.Broker`)."""

    async def publish(self, entry: Entry) -> None: ...


class LogWriter:
    """Append entries: ``await writer.append([...])`` returns one :class:`Appended` per entry
    (``created`` False for an id the log had already: nothing is published for it)."""

    def __init__(self, store: LogStore, publisher: Publisher, metrics: Metrics) -> None:
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        # called once per created entry, after it is published (the node's wake-ups): it must
        # return at once
        self.observer: Callable[[Entry], None] | None = None

    async def append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        return await self._durable(self.store.append(entries))

    def start_append(self, entries: Sequence[NewEntry]) -> asyncio.Future[list[Appended]] | None:
        """Start appending now (see :meth:`LogStore.start_append`): what is created is published
        once durable, whether or not the result is awaited yet. ``None``: the store cannot
        promise the order; call :meth:`append` instead."""
        started = self.store.start_append(entries)
        if started is None:
            return None
        # A task wakes up once its append is answered, in the order the answers come (which is
        # the order of `added`): publishing keeps that order, as the awaited appends do.
        return asyncio.ensure_future(self._durable(started))

    async def _durable(self, started: Awaitable[list[Appended]]) -> list[Appended]:
        """Await the store's append (timed), then publish what it created."""
        with self.metrics.timed("append"):
            appended = await started
        await self._publish(appended)
        return appended

    async def _publish(self, appended: list[Appended]) -> None:
        metrics = self.metrics
        for result in appended:
            if result.created:
                metrics.actions_appended += 1
                await self.publisher.publish(result.entry)
                if self.observer is not None:
                    self.observer(result.entry)
