"""``sqlite:///path.db``: the embedded default log, one SQLite file in WAL mode, durable per commit.

All SQLite work runs on one dedicated thread that owns the connection, so the event loop never
blocks on disk. Writes are *group-committed*: every call that reaches the thread while it is busy
with a transaction goes into the next transaction together, and each caller is answered once that
transaction has committed. The fsync per commit is shared by the whole batch, which is what makes
durable appends fast.

Tables (schema version :data:`SCHEMA_VERSION`, recorded in ``meta``):

``entries``
    One row per kept entry: ``added`` (the rowid), ``id``, ``time``, the action and lists as orjson,
    ``status``, and ``filed``, how many indexes still hold the entry (0: a candidate for trimming).
``filings``
    ``(idx, added)``, the primary key of a ``WITHOUT ROWID`` table: each index is a range of it.
``ids``
    ``id → (time, status)`` for every id appended, kept after its entry is trimmed (dedupe).
``indexes``
    Every index ever filed into, with its horizon (the highest ``added`` trimmed from it).
``meta``
    ``schema_version`` and ``head``: the head is stored, never derived from ``entries``, so it never
    goes back when the newest entries are trimmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, TypeVar

import orjson

from logsync.log.entry import Entry, NewEntry
from logsync.log.store import UNKNOWN, Appended, LogStats, LogStore, ReadResult, Unknown

T = TypeVar("T")
logger = logging.getLogger("logsync.log.sqlite")

SCHEMA_VERSION: Final = 1
SYNCHRONOUS: Final = {"full": "FULL", "normal": "NORMAL"}
# At most this many calls go into one transaction; more wait for the next one.
MAX_BATCH: Final = 4096
# A batch of bulk calls (catch-up reads, a client's backlog appended at once, maintenance) stops
# between two calls once it has run this long and a quick write is waiting: it commits what it
# has done, the quick calls run next, then the rest. (A quick read waits for the batch: an early
# commit costs more than it saves there.)
YIELD_AFTER_S: Final = 0.002
# Quick calls go first only until the oldest bulk call has waited this long: then they take turns,
# so a steady stream of quick calls cannot starve catch-up reads.
BULK_MAX_WAIT_S: Final = 0.1
# A read over more indexes than this filters with IN instead of merging one range per index.
MAX_MERGED_INDEXES: Final = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    added INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    time INTEGER NOT NULL,
    action BLOB NOT NULL,
    indexes BLOB NOT NULL,
    exclude_clients BLOB NOT NULL,
    subprotocol INTEGER,
    status TEXT NOT NULL,
    filed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_waiting ON entries (added) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS entries_unfiled ON entries (added) WHERE filed = 0;
CREATE TABLE IF NOT EXISTS filings (
    idx TEXT NOT NULL,
    added INTEGER NOT NULL,
    PRIMARY KEY (idx, added)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ids (
    id TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    status TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS indexes (
    idx TEXT PRIMARY KEY,
    horizon INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

_COLUMNS = "added, id, time, action, indexes, exclude_clients, subprotocol, status"
# The partial indexes hold exactly the rows these look for, however many others the log has.
WAITING_SQL: Final = (
    f"SELECT {_COLUMNS} FROM entries INDEXED BY entries_waiting"
    " WHERE status = 'waiting' ORDER BY added LIMIT ?"
)
UNFILED_SQL: Final = (
    "DELETE FROM entries INDEXED BY entries_unfiled WHERE filed = 0 AND status != 'waiting'"
)
_KNOWN_ID = "SELECT id, status FROM ids WHERE id = ?"
_STATUS = "SELECT status FROM ids WHERE id = ?"
_KNOWN_IDS = "SELECT id, status FROM ids WHERE id IN (SELECT value FROM json_each(?))"
_RANGE = "SELECT added FROM filings WHERE idx = ? AND added > ?"

Row = tuple[Any, ...]


def parse_url(url: str) -> tuple[str, str]:
    """``(path, synchronous)`` from ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
    ``sqlite://`` (in memory), with an optional ``?synchronous=full|normal``."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a sqlite:// URL: {url!r}")
    rest, _, query = url[len("sqlite://") :].partition("?")
    if rest and not rest.startswith("/"):
        raise ValueError(f"{url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    path = rest[1:] or ":memory:"
    options = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise ValueError(f"{url!r}: unknown option(s) {', '.join(sorted(unknown))}")
    synchronous = options.get("synchronous", ["full"])[-1].lower()
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"{url!r}: synchronous must be one of {', '.join(SYNCHRONOUS)}")
    return path, SYNCHRONOUS[synchronous]


@lru_cache(maxsize=MAX_MERGED_INDEXES + 1)
def read_sql(count: int) -> str:
    """The read query for ``count`` indexes (parameters: each index and the cursor, then the limit;
    past :data:`MAX_MERGED_INDEXES`: a JSON array of the indexes, the cursor, the limit).

    Each index is a range of the ``filings`` primary key. Up to :data:`MAX_MERGED_INDEXES` indexes,
    the ranges are merged in ``added`` order (a compound ``UNION`` runs as a merge of ordered
    scans that stops after ``limit`` rows), so a read costs ``O(limit)`` however long the indexes
    are behind the cursor. ``idx IN (...)`` would instead collect and sort every filing after the
    cursor before applying the limit."""
    if count == 1:
        picked = f"{_RANGE} ORDER BY added LIMIT ?"
    elif count <= MAX_MERGED_INDEXES:
        picked = " UNION ".join([_RANGE] * count) + " ORDER BY 1 LIMIT ?"
    else:
        picked = (
            "SELECT DISTINCT added FROM filings WHERE idx IN (SELECT value FROM json_each(?))"
            " AND added > ? ORDER BY added LIMIT ?"
        )
    return f"SELECT {_COLUMNS} FROM entries WHERE added IN ({picked}) ORDER BY added"


def read_params(indexes: Sequence[str], after: int, limit: int) -> tuple[Any, ...]:
    if len(indexes) <= MAX_MERGED_INDEXES:
        params: list[Any] = []
        for index in indexes:
            params += (index, after)
        return (*params, limit)
    return (orjson.dumps(list(indexes)).decode(), after, limit)


def _decode(row: Row) -> Entry:
    added, action_id, time, action, indexes, exclude, subprotocol, status = row
    return Entry(
        added,
        action_id,
        time,
        orjson.loads(action),
        orjson.loads(indexes),
        orjson.loads(exclude),
        subprotocol,
        status,
    )


@dataclass(slots=True)
class _Encoded:
    """A :class:`NewEntry` serialized on the caller's side, before it is queued."""

    new: NewEntry
    action: bytes
    indexes: bytes
    exclude: bytes
    filed: list[str]


@dataclass(slots=True)
class _Job:
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


Answer = tuple[_Job, Any, BaseException | None]


class SqliteStore(LogStore):
    """A :class:`LogStore` in one SQLite file, for ``sqlite:///relative/path.db`` and
    ``sqlite:////absolute/path.db`` (``sqlite://`` alone: in memory, gone on close).

    Durability, chosen with the URL option ``synchronous``:

    ``full`` (default)
        SQLite's ``synchronous=FULL`` in WAL mode: the WAL is fsynced at every commit, so an
        acknowledged append survives a crash of the process, of the OS, and a power loss.
    ``normal``
        ``synchronous=NORMAL``: the WAL is fsynced only at checkpoints. An acknowledged append
        survives a crash of the process (the kernel has the write), but an OS crash or power loss
        may roll back the last transactions, so "acknowledge after durable" only holds against
        process crashes. Faster when the disk's fsync is slow. The file is never corrupted.

    Quick calls (appending one entry, setting a status, reading one key) go ahead of bulk calls
    (range reads, multi-entry appends, trimming) that wait in the queue with them, and a running
    batch of bulk calls commits early when a quick write has waited :data:`YIELD_AFTER_S`: so a
    live client's action is not stuck behind a reconnect storm's catch-up reads and backlogs.
    Calls run concurrently may run in either order; a caller that awaits a call before making the
    next (as every caller must, to see its result) sees them in its order.

    Opening creates or checks the schema synchronously (it refuses a file from a newer schema).
    ``commits`` counts the write transactions committed, so tests and metrics can see batching.

    :meth:`seen_now` answers on the caller's thread from a second, read-only connection (WAL lets
    it read the last commit while the thread writes): a dedupe lookup is one primary-key read, so
    it does not wait behind the queue. In memory (``sqlite://``) there is no second connection.
    """

    def __init__(self, url: str) -> None:
        self.path, self.synchronous = parse_url(url)
        self.commits = 0
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._closed = False
        ready: ThreadFuture[sqlite3.Connection] = ThreadFuture()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"logsync-sqlite:{self.path}", daemon=True
        )
        self._thread.start()
        ready.result()  # raises what opening raised
        self._reader: sqlite3.Connection | None = None
        if self.path != ":memory:":
            # timeout 0: never block the event loop; a busy read falls back to the queue
            self._reader = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            self._reader.execute("PRAGMA query_only = ON")

    # -- the SQLite thread ---------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=True, cached_statements=256
        )
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            if self.path != ":memory:":
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                if mode != "wal":
                    raise RuntimeError(f"{self.path}: SQLite refused WAL mode ({mode})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                elif row[0] > SCHEMA_VERSION:
                    raise RuntimeError(
                        f"{self.path}: log schema version {row[0]} is newer than this logsync's "
                        f"({SCHEMA_VERSION}); upgrade logsync"
                    )
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('head', 0)")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, ready: ThreadFuture[sqlite3.Connection]) -> None:
        try:
            conn = self._open()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(conn)
        pending: deque[_Job] = deque()
        batch: list[_Job] = []
        try:
            while True:
                if not pending:
                    self._quick_waiting = self._quick_writes = 0
                    self._take(pending, self._queue.get())
                self._collect(pending)  # everything that arrived meanwhile joins this batch
                batch = self._pick(pending)
                if batch:
                    self._execute(conn, batch, pending)
                if pending and pending[0].fn is None:
                    self._shut(conn, pending)
                    return
        except BaseException as exc:  # a bug: refuse further calls rather than leave them hanging
            logger.exception("the SQLite thread of %s failed", self.path)
            self._closed = True
            with contextlib.suppress(Exception):
                conn.close()
            # the batch in hand too: a call answered already ignores a second answer
            pending.extendleft(reversed(batch))
            self._fail_all(pending, RuntimeError(f"the SQLite thread failed: {exc!r}"))

    _quick_waiting = 0  # quick calls in `pending` (the SQLite thread's count)
    _quick_writes = 0  # of which writes: only these make a bulk batch commit early
    _bulk_turn = False  # a quick batch just ran: an overdue bulk call goes next

    def _take(self, pending: deque[_Job], job: _Job) -> None:
        pending.append(job)
        self._quick_waiting += job.quick
        self._quick_writes += job.quick and job.write

    def _collect(self, pending: deque[_Job]) -> None:
        """Move every call queued so far into ``pending``."""
        while True:
            try:
                self._take(pending, self._queue.get_nowait())
            except queue.Empty:
                return

    def _put_back(self, pending: deque[_Job], jobs: list[_Job]) -> None:
        """Calls taken for a batch and not run: first in line again."""
        pending.extendleft(reversed(jobs))
        self._quick_waiting += sum(job.quick for job in jobs)
        self._quick_writes += sum(job.quick and job.write for job in jobs)

    def _pick(self, pending: deque[_Job]) -> list[_Job]:
        """The next batch: the quick calls if any wait, else the oldest calls; quick and bulk
        batches take turns once a bulk call is overdue (:data:`BULK_MAX_WAIT_S`); never a call
        queued after a close."""
        batch: list[_Job] = []
        if not self._quick_waiting:
            self._bulk_turn = False
            while pending and len(batch) < MAX_BATCH and pending[0].fn is not None:
                batch.append(pending.popleft())
            return batch
        quick = not (self._bulk_turn and self._bulk_overdue(pending))
        self._bulk_turn = quick
        rest = deque[_Job]()
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

    @staticmethod
    def _bulk_overdue(pending: deque[_Job]) -> bool:
        for job in pending:  # the first bulk call is the oldest one
            if not job.quick:
                return job.fn is not None and time.perf_counter() - job.queued >= BULK_MAX_WAIT_S
        return False

    def _must_yield(self, pending: deque[_Job], started: float) -> bool:
        if time.perf_counter() - started < YIELD_AFTER_S:
            return False
        self._collect(pending)
        return self._quick_writes > 0

    def _execute(self, conn: sqlite3.Connection, batch: list[_Job], pending: deque[_Job]) -> None:
        """Run a batch: writes (and the reads between them) in one transaction, each call in a
        savepoint so one failing call does not undo the others; answer every call after the
        commit, so no caller sees data that is not yet durable. A batch of bulk calls may stop
        early for quick ones (:data:`YIELD_AFTER_S`): the calls it did not run go back to the
        front of ``pending``."""
        started = time.perf_counter()
        for job in batch:
            job.started = started
        done: list[Answer] = []
        quick = batch[0].quick
        if not any(job.write for job in batch):
            for job in batch:
                if not quick and done and self._must_yield(pending, started):
                    break
                done.append(self._call_one(conn, job))
            self._put_back(pending, batch[len(done) :])
            self._answer(done)
            return
        ran = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if not quick and done and self._must_yield(pending, started):
                    break
                ran += 1
                if not job.write:
                    done.append(self._call_one(conn, job))
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
        self._put_back(pending, batch[len(done) :])
        self._answer(done)

    @staticmethod
    def _call_one(conn: sqlite3.Connection, job: _Job) -> Answer:
        assert job.fn is not None
        try:
            return job, job.fn(conn), None
        except Exception as exc:
            return job, None, exc

    def _answer(self, done: list[Answer]) -> None:
        finished = time.perf_counter()
        by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
        for answer in done:
            answer[0].finished = finished
            by_loop.setdefault(answer[0].loop, []).append(answer)
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(self._resolve, answers)

    def _resolve(self, done: list[Answer]) -> None:
        """On the event loop: hand each caller its answer."""
        timing = self.timing
        for job, result, error in done:
            if timing is not None and job.op:
                timing(job.op, job.started - job.queued, job.finished - job.started)
            future = job.future
            if future.done():  # the caller was cancelled
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _shut(self, conn: sqlite3.Connection, pending: deque[_Job]) -> None:
        closer = pending.popleft()
        error: BaseException | None = None
        try:
            conn.execute("PRAGMA optimize")
            conn.close()
        except Exception as exc:
            error = exc
        self._answer([(closer, None, error)])
        self._fail_all(pending, RuntimeError("the log store is closed"))

    def _fail_all(self, pending: deque[_Job], error: BaseException) -> None:
        """Answer every call still queued with ``error``: none is left waiting forever."""
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        # a close() waiting in the queue is answered as done: the connection is gone either way
        self._answer([(job, None, None if job.fn is None else error) for job in pending])

    # -- calls from the event loop -------------------------------------------------------------

    async def _call(
        self,
        fn: Callable[[sqlite3.Connection], T],
        op: str = "",
        *,
        write: bool = False,
        quick: bool = False,
    ) -> T:
        return await self._submit(fn, op, write=write, quick=quick)

    def _submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        op: str = "",
        *,
        write: bool = False,
        quick: bool = False,
    ) -> asyncio.Future[T]:
        """Queue a call now; the future resolves once it has run (and committed)."""
        if self._closed:
            raise RuntimeError("the log store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, write, loop, future, op, quick, time.perf_counter()))
        return future

    async def append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        encoded = [
            _Encoded(
                new,
                orjson.dumps(new.action),
                orjson.dumps(new.indexes),
                orjson.dumps(new.exclude_clients),
                list(dict.fromkeys(new.indexes)),
            )
            for new in entries
        ]
        if not encoded:
            return []
        return await self._call(
            lambda conn: _append(conn, encoded), "append", write=True, quick=len(encoded) == 1
        )

    async def read(self, indexes: Collection[str], after: int, limit: int) -> ReadResult:
        names = list(dict.fromkeys(indexes))
        if not names:
            return ReadResult([], after, False)
        limit = max(limit, 0)
        sql = read_sql(len(names))
        params = read_params(names, after, limit + 1)
        rows = await self._call(lambda conn: conn.execute(sql, params).fetchall(), "read")
        found = [_decode(row) for row in rows[:limit]]
        return ReadResult(found, found[-1].added if found else after, len(rows) > limit)

    async def explain_read(self, indexes: Collection[str], after: int, limit: int) -> list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` of the query :meth:`read` runs for these arguments."""
        names = list(dict.fromkeys(indexes))
        sql = "EXPLAIN QUERY PLAN " + read_sql(len(names))
        params = read_params(names, after, limit + 1)
        rows = await self._call(lambda conn: conn.execute(sql, params).fetchall(), "explain")
        return [str(row[3]) for row in rows]

    async def sql(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one read-only SQL statement on the store's connection (diagnostics, tests)."""

        def run(conn: sqlite3.Connection) -> list[Row]:
            conn.execute("PRAGMA query_only = ON")
            try:
                return conn.execute(statement, tuple(params)).fetchall()
            finally:
                conn.execute("PRAGMA query_only = OFF")

        return await self._call(run, "sql")

    async def get(self, action_id: str) -> Entry | None:
        sql = f"SELECT {_COLUMNS} FROM entries WHERE id = ?"
        row = await self._call(
            lambda conn: conn.execute(sql, (action_id,)).fetchone(), "get", quick=True
        )
        return None if row is None else _decode(row)

    async def seen(self, action_id: str) -> str | None:
        row = await self._call(
            lambda conn: conn.execute(_STATUS, (action_id,)).fetchone(), "seen", quick=True
        )
        return None if row is None else str(row[0])

    def seen_now(self, action_id: str) -> str | Unknown | None:
        reader = self._reader
        if reader is None or self._closed:
            return UNKNOWN
        try:
            # fetchall: the statement runs to its end, so no read transaction stays open and
            # holds back WAL checkpoints
            rows = reader.execute(_STATUS, (action_id,)).fetchall()
        except sqlite3.Error:
            return UNKNOWN
        return str(rows[0][0]) if rows else None

    async def set_status(self, action_id: str, status: str) -> None:
        await self.start_set_status(action_id, status)

    def start_set_status(self, action_id: str, status: str) -> asyncio.Future[None]:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE entries SET status = ? WHERE id = ?", (status, action_id))
            conn.execute("UPDATE ids SET status = ? WHERE id = ?", (status, action_id))

        return self._submit(run, "set_status", write=True, quick=True)

    async def head(self) -> int:
        return await self._call(_head, "head", quick=True)

    async def waiting(self, limit: int) -> list[Entry]:
        rows = await self._call(
            lambda conn: conn.execute(WAITING_SQL, (max(limit, 0),)).fetchall(), "waiting"
        )
        return [_decode(row) for row in rows]

    async def cursor_for_time(self, index: str, time_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT f.added FROM filings AS f JOIN entries AS e ON e.added = f.added"
                " WHERE f.idx = ? AND e.time >= ? ORDER BY f.added LIMIT 1",
                (index, time_ms),
            ).fetchone()
            return _head(conn) if row is None else int(row[0]) - 1

        return await self._call(run, "cursor_for_time")

    async def horizon(self, index: str) -> int:
        sql = "SELECT horizon FROM indexes WHERE idx = ?"
        row = await self._call(
            lambda conn: conn.execute(sql, (index,)).fetchone(), "horizon", quick=True
        )
        return 0 if row is None else int(row[0])

    async def trim(
        self,
        *,
        index_prefix: str = "",
        before_time_ms: int | None = None,
        keep_last: int | None = None,
    ) -> int:
        return await self._call(
            lambda conn: _trim(conn, index_prefix, before_time_ms, keep_last), "trim", write=True
        )

    async def forget_ids(self, before_time_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM ids WHERE time < ?"
                " AND NOT EXISTS (SELECT 1 FROM entries AS e WHERE e.id = ids.id)",
                (before_time_ms,),
            ).rowcount

        return await self._call(run, "forget_ids", write=True)

    async def stats(self) -> LogStats:
        def run(conn: sqlite3.Connection) -> LogStats:
            (entries,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
            (ids,) = conn.execute("SELECT COUNT(*) FROM ids").fetchone()
            (indexes,) = conn.execute("SELECT COUNT(*) FROM indexes").fetchone()
            return LogStats(_head(conn), entries, ids, indexes)

        return await self._call(run, "stats")

    async def close(self) -> None:
        """Finish every call made before, then close the connection. Later calls raise."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.close()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Job(None, True, loop, future))
        await future
        self._thread.join()


# -- transactions (on the SQLite thread) ------------------------------------------------------


def _head(conn: sqlite3.Connection) -> int:
    (head,) = conn.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()
    return int(head)


def _append(conn: sqlite3.Connection, encoded: list[_Encoded]) -> list[Appended]:
    """One call's entries: one query finds the ids the log already has, then the new entries
    are written with one statement per table."""
    head = _head(conn)
    if len(encoded) == 1:
        known = dict(conn.execute(_KNOWN_ID, (encoded[0].new.id,)).fetchall())
    else:
        ids = orjson.dumps([item.new.id for item in encoded]).decode()
        known = dict(conn.execute(_KNOWN_IDS, (ids,)).fetchall())
    results: list[Appended] = []
    created: dict[str, Entry] = {}
    entry_rows: list[tuple[Any, ...]] = []
    id_rows: list[tuple[str, int, str]] = []
    filing_rows: list[tuple[str, int]] = []
    for item in encoded:
        new = item.new
        if new.id in created:  # twice in this call: the first copy wins
            results.append(Appended(created[new.id], created=False))
            continue
        status = known.get(new.id)
        if status is not None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (new.id,)).fetchone()
            if row is not None:
                earlier = _decode(row)
            else:  # trimmed: only its id and status are left
                earlier = Entry.from_new(0, new)
                earlier.status = status
            results.append(Appended(earlier, created=False))
            continue
        head += 1
        entry_rows.append(
            (
                head,
                new.id,
                new.time,
                item.action,
                item.indexes,
                item.exclude,
                new.subprotocol,
                new.status,
                len(item.filed),
            )
        )
        id_rows.append((new.id, new.time, new.status))
        filing_rows += [(index, head) for index in item.filed]
        entry = Entry.from_new(head, new)
        created[new.id] = entry
        results.append(Appended(entry, created=True))
    if entry_rows:
        conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", entry_rows)
        conn.executemany("INSERT INTO ids VALUES (?, ?, ?)", id_rows)
        conn.executemany("INSERT INTO filings VALUES (?, ?)", filing_rows)
        conn.executemany(
            "INSERT OR IGNORE INTO indexes (idx) VALUES (?)",
            [(index,) for index in dict.fromkeys(index for index, _ in filing_rows)],
        )
        conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (head,))
    return results


def _trim(
    conn: sqlite3.Connection, prefix: str, before_time_ms: int | None, keep_last: int | None
) -> int:
    """Each index loses its longest prefix of filings that are either not among its newest
    ``keep_last`` or older than ``before_time_ms`` (as :class:`~logsync.log.memory.MemoryStore`
    does: the cut stops at the first filing that must stay, so the index keeps exactly the filings
    above its horizon)."""
    removed = 0
    names = [str(r[0]) for r in conn.execute("SELECT idx FROM indexes") if r[0].startswith(prefix)]
    for index in names:
        cut_all = False
        first_kept: int | None = None  # the oldest filing the keep_last rule keeps (None: all)
        if keep_last is not None:
            if keep_last <= 0:
                cut_all = True
            else:
                row = conn.execute(
                    "SELECT added FROM filings WHERE idx = ? ORDER BY added DESC LIMIT 1 OFFSET ?",
                    (index, keep_last - 1),
                ).fetchone()
                first_kept = None if row is None else int(row[0])
        stop: int | None = first_kept  # filings below this go
        if not cut_all and before_time_ms is not None:
            row = conn.execute(
                "SELECT f.added FROM filings AS f JOIN entries AS e ON e.added = f.added"
                " WHERE f.idx = ? AND f.added >= ? AND e.time >= ? ORDER BY f.added LIMIT 1",
                (index, 0 if first_kept is None else first_kept, before_time_ms),
            ).fetchone()
            if row is None:
                cut_all = True
            else:
                stop = int(row[0])
        params: tuple[Any, ...]
        if cut_all:
            where, params = "idx = ?", (index,)
        elif stop is not None:
            where, params = "idx = ? AND added < ?", (index, stop)
        else:
            continue
        (highest,) = conn.execute(
            f"SELECT MAX(added) FROM filings WHERE {where}", params
        ).fetchone()
        if highest is None:
            continue
        conn.execute(
            "UPDATE entries SET filed = filed - 1"
            f" WHERE added IN (SELECT added FROM filings WHERE {where})",
            params,
        )
        removed += conn.execute(f"DELETE FROM filings WHERE {where}", params).rowcount
        conn.execute("UPDATE indexes SET horizon = max(horizon, ?) WHERE idx = ?", (highest, index))
    if before_time_ms is None:
        removed += conn.execute(UNFILED_SQL).rowcount
    else:
        removed += conn.execute(UNFILED_SQL + " AND time < ?", (before_time_ms,)).rowcount
    return removed
