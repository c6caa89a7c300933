"""Which queued calls the SQLite thread runs next: a quick lane served ahead of a bulk lane.

A *quick* call touches one entry, one status or one key (appending one entry, setting a status,
``seen``, ``head``); every other call is *bulk* (range reads, multi-entry appends, trimming).
Quick calls go first, so a live client's action is not stuck behind a reconnect storm's catch-up
reads and backlogs, until the oldest bulk call is overdue (:data:`BULK_MAX_WAIT_S`): then the
two lanes take turns, so a steady stream of quick calls cannot starve the bulk ones.

Only :class:`~logsync.log.sqlite.writer.Writer` uses :class:`Lanes`: the event loop queues
:class:`Job` s with :attr:`Lanes.put`; the writer's thread asks :meth:`Lanes.next_batch` for the
calls of its next transaction, asks :meth:`Lanes.bulk_should_yield` between two calls of a bulk
batch, and gives back the calls it did not run with :meth:`Lanes.put_back`.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

# At most this many calls go into one transaction; more wait for the next one.
MAX_BATCH: Final = 4096
# A batch of bulk calls stops between two calls once it has run this long and a quick write is
# waiting: it commits what it has done, the quick calls run next, then the rest. (A quick read
# waits for the batch: an early commit costs more than it saves there.)
YIELD_AFTER_S: Final = 0.002
# Quick calls go first only until the oldest bulk call has waited this long: then they take turns.
BULK_MAX_WAIT_S: Final = 0.1


@dataclass(slots=True)
class Job:
    """One call queued for the SQLite thread, and where to send its answer."""

    fn: Callable[[sqlite3.Connection], Any] | None  # None: close the store
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    op: str = ""
    # quick: one entry, one status, one key; runs ahead of bulk calls queued before it
    quick: bool = False
    # perf_counter() when queued, when its transaction started and when it committed
    queued: float = 0.0
    started: float = 0.0
    finished: float = 0.0


class Lanes:
    """The calls waiting for the SQLite thread: a queue any thread puts into, and the calls the
    SQLite thread has taken from it and not run yet (in queue order, both lanes in one deque).

    Everything but :attr:`put` is for the SQLite thread only."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Job] = queue.SimpleQueue()
        #: Queue a call (from any thread).
        self.put: Callable[[Job], None] = self._queue.put
        self._pending: deque[Job] = deque()
        self._quick_waiting = 0  # quick calls in _pending
        self._quick_writes = 0  # of which writes: only these make a bulk batch commit early
        self._bulk_turn = False  # a quick batch just ran: an overdue bulk call goes next

    def next_batch(self) -> list[Job]:
        """Wait for a call if none is pending, then take every call queued meanwhile and return
        the calls of the next transaction: the quick calls if any wait, else the oldest calls, at
        most :data:`MAX_BATCH`; never a call queued after a close. Empty when the next call is a
        close: see :meth:`closing`."""
        if not self._pending:
            self._quick_waiting = self._quick_writes = 0
            self._take(self._queue.get())
        self._collect()  # everything that arrived meanwhile joins this batch
        return self._pick()

    def closing(self) -> bool:
        """Whether the next call is a close (the writer then calls :meth:`take_closer`)."""
        return bool(self._pending) and self._pending[0].fn is None

    def take_closer(self) -> Job:
        return self._pending.popleft()

    def bulk_should_yield(self, started: float) -> bool:
        """Between two calls of a bulk batch whose transaction began at ``started``
        (``perf_counter()``): whether to commit now and let a waiting quick write go first."""
        if time.perf_counter() - started < YIELD_AFTER_S:
            return False
        self._collect()
        return self._quick_writes > 0

    def put_back(self, jobs: list[Job]) -> None:
        """Calls taken for a batch and not run: first in line again."""
        self._pending.extendleft(reversed(jobs))
        self._quick_waiting += sum(job.quick for job in jobs)
        self._quick_writes += sum(job.quick and job.write for job in jobs)

    def drain(self) -> list[Job]:
        """Every call not run yet, pending or still queued, oldest first; the lanes are left
        empty."""
        while True:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        jobs = list(self._pending)
        self._pending.clear()
        self._quick_waiting = self._quick_writes = 0
        return jobs

    def _take(self, job: Job) -> None:
        self._pending.append(job)
        self._quick_waiting += job.quick
        self._quick_writes += job.quick and job.write

    def _collect(self) -> None:
        """Move every call queued so far into the pending calls."""
        while True:
            try:
                self._take(self._queue.get_nowait())
            except queue.Empty:
                return

    def _pick(self) -> list[Job]:
        pending = self._pending
        batch: list[Job] = []
        if not self._quick_waiting:
            self._bulk_turn = False
            while pending and len(batch) < MAX_BATCH and pending[0].fn is not None:
                batch.append(pending.popleft())
            return batch
        quick = not (self._bulk_turn and self._bulk_overdue())
        self._bulk_turn = quick
        rest = deque[Job]()
        closing = False
        for job in pending:
            closing = closing or job.fn is None
            if job.quick == quick and not closing and len(batch) < MAX_BATCH:
                batch.append(job)
            else:
                rest.append(job)
        if quick:
            self._quick_waiting -= len(batch)
            self._quick_writes -= sum(job.write for job in batch)
        pending.clear()
        pending.extend(rest)
        return batch

    def _bulk_overdue(self) -> bool:
        for job in self._pending:  # the first bulk call is the oldest one
            if not job.quick:
                return job.fn is not None and time.perf_counter() - job.queued >= BULK_MAX_WAIT_S
        return False
