"""The SQLite thread: one dedicated thread owns the connection and runs every call, so the event
loop never blocks on disk.

Writes are *group-committed*: every call that reaches the thread while it is busy with a
transaction goes into the next transaction together (in the order :mod:`~logsync.log.sqlite.lanes`
picks), and each caller is answered once that transaction has committed. The fsync per commit is
shared by the whole batch, which is what makes durable appends fast.

:class:`~logsync.log.sqlite.store.SqliteStore` makes one :class:`Writer` and sends it functions of
the connection (from :mod:`logsync.log.sqlite.queries`) with :meth:`Writer.submit`; it awaits the
future that returns, and finally :meth:`Writer.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from typing import Any, TypeVar

from logsync.log.sqlite.lanes import Job, Lanes

T = TypeVar("T")
Answer = tuple[Job, Any, BaseException | None]  # (call, result, error)
# the module's former name, which operators' log filters know
logger = logging.getLogger("logsync.log.sqlite")


class Writer:
    """The thread that owns the connection :func:`connect` opens (on that thread) and runs the
    calls :meth:`submit` queues, in batches that commit together.

    Opening happens in the constructor, which raises what ``connect`` raised. ``commits`` counts
    the write transactions committed, so tests and metrics can see batching. ``closed`` is set by
    :meth:`close`, or by the thread itself if it fails (a bug): every call queued is then answered
    with an error rather than left waiting. ``timing``, when set, is called on the event loop
    with ``(operation, queued s, running s)`` for each call answered.
    """

    def __init__(self, name: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self.name = name
        self.commits = 0
        self.closed = False
        #: calls submitted and not answered yet (waiting for the thread or running on it)
        self.depth = 0
        self.timing: Callable[[str, float, float], None] | None = None
        self._lanes = Lanes()
        self._put = self._lanes.put
        ready: ThreadFuture[None] = ThreadFuture()
        self._thread = threading.Thread(
            target=self._run, args=(connect, ready), name=f"logsync-sqlite:{name}", daemon=True
        )
        self._thread.start()
        ready.result()  # raises what opening raised

    # -- on the event loop -----------------------------------------------------------------------

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        op: str = "",
        *,
        write: bool = False,
        quick: bool = False,
    ) -> asyncio.Future[T]:
        """Queue ``fn(conn)`` now; the future resolves with its result once it has run (and, for a
        ``write``, committed). ``op`` names the call for :attr:`timing`; ``quick``: see
        :mod:`~logsync.log.sqlite.lanes`. Raises :class:`RuntimeError` once closed."""
        if self.closed:
            raise RuntimeError("the log store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(Job(fn, write, loop, future, op, quick, time.perf_counter()))
        self.depth += 1
        return future

    async def close(self) -> None:
        """Finish every call submitted before, then close the connection and end the thread.
        Later calls to :meth:`submit` raise."""
        self.closed = True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._put(Job(None, True, loop, future))
        await future
        self._thread.join()

    def _resolve(self, done: list[Answer]) -> None:
        """Hand each caller its answer (scheduled here by :meth:`_answer`)."""
        timing = self.timing
        for job, result, error in done:
            if job.fn is not None:
                self.depth -= 1
            if timing is not None and job.op:
                timing(job.op, job.started - job.queued, job.finished - job.started)
            future = job.future
            if future.done():  # the caller was cancelled
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    # -- on the SQLite thread --------------------------------------------------------------------

    def _run(self, connect: Callable[[], sqlite3.Connection], ready: ThreadFuture[None]) -> None:
        try:
            conn = connect()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        lanes = self._lanes
        batch: list[Job] = []
        try:
            while True:
                batch = lanes.next_batch()
                if batch:
                    self._execute(conn, batch)
                    # answered: let go of its calls (and the entries their closures hold) before
                    # waiting for the next batch
                    batch = []
                if lanes.closing():
                    self._shut(conn)
                    return
        except BaseException as exc:  # a bug: refuse further calls rather than leave them hanging
            logger.exception("the SQLite thread of %s failed", self.name)
            self.closed = True
            with contextlib.suppress(Exception):
                conn.close()
            # the batch in hand too: a call answered already ignores a second answer
            lanes.put_back(batch)
            self._fail_all(RuntimeError(f"the SQLite thread failed: {exc!r}"))

    def _execute(self, conn: sqlite3.Connection, batch: list[Job], careful: bool = False) -> None:
        """Run a batch: writes (and the reads between them) in one transaction; answer every
        call after the commit, so no caller sees data that is not yet durable. Calls run without
        savepoints first (two statements fewer per call); if a write fails, the transaction is
        rolled back and the batch run again ``careful``ly, each write in a savepoint, so one
        failing call does not undo the others (calls are functions of the connection alone:
        running one again gives the same result). A batch of bulk calls may stop
        early for quick ones (:meth:`Lanes.bulk_should_yield`): the calls it did not run go back
        to the front of the lanes."""
        lanes = self._lanes
        started = time.perf_counter()
        for job in batch:
            job.started = started
        done: list[Answer] = []
        quick = batch[0].quick
        if not any(job.write for job in batch):
            for job in batch:
                if not quick and done and lanes.bulk_should_yield(started):
                    break
                done.append(self._call_one(conn, job))
            lanes.put_back(batch[len(done) :])
            self._answer(done)
            return
        ran = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if not quick and done and lanes.bulk_should_yield(started):
                    break
                ran += 1
                if not job.write:
                    done.append(self._call_one(conn, job))
                    continue
                if not careful:
                    outcome = self._call_one(conn, job)
                    if outcome[2] is not None:
                        conn.execute("ROLLBACK")
                        self._execute(conn, batch, careful=True)
                        return
                    done.append(outcome)
                    continue
                conn.execute("SAVEPOINT call")
                outcome = self._call_one(conn, job)
                if outcome[2] is not None:
                    conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
                done.append(outcome)
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as exc:  # the transaction failed as a whole: nobody's call happened
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            done = [(job, None, exc) for job in batch[: ran or len(batch)]]
        lanes.put_back(batch[len(done) :])
        self._answer(done)

    @staticmethod
    def _call_one(conn: sqlite3.Connection, job: Job) -> Answer:
        assert job.fn is not None
        try:
            return job, job.fn(conn), None
        except Exception as exc:
            return job, None, exc

    def _answer(self, done: list[Answer]) -> None:
        """Schedule :meth:`_resolve` on each caller's event loop, once per loop."""
        finished = time.perf_counter()
        by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
        for answer in done:
            answer[0].finished = finished
            by_loop.setdefault(answer[0].loop, []).append(answer)
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(self._resolve, answers)

    def _shut(self, conn: sqlite3.Connection) -> None:
        closer = self._lanes.take_closer()
        error: BaseException | None = None
        try:
            conn.execute("PRAGMA optimize")
            conn.close()
        except Exception as exc:
            error = exc
        self._answer([(closer, None, error)])
        self._fail_all(RuntimeError("the log store is closed"))

    def _fail_all(self, error: BaseException) -> None:
        """Answer every call still queued with ``error``: none is left waiting forever."""
        # a close() waiting in the queue is answered as done: the connection is gone either way
        self._answer(
            [(job, None, None if job.fn is None else error) for job in self._lanes.drain()]
        )
