"""``sqlite:///path.db``: :class:`SqliteStore`, the :class:`~logsync.log.store.LogStore` calls
turned into functions of a connection (:mod:`~logsync.log.sqlite.queries`) run by the SQLite
thread (:mod:`~logsync.log.sqlite.writer`), and :func:`parse_url`."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import urllib.parse
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final, TypeVar

import orjson

from logsync.log.entry import Entry, NewEntry
from logsync.log.sqlite import queries, schema
from logsync.log.sqlite.writer import Writer
from logsync.log.store import UNKNOWN, Appended, LogStats, LogStore, ReadResult, Unknown
from logsync.wallclock import now_ms

T = TypeVar("T")
Timing = Callable[[str, float, float], None]

SYNCHRONOUS: Final = {"full": "FULL", "normal": "NORMAL"}


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
    (multi-entry appends, trimming, reads of many indexes) that wait in the queue with them, and
    a running batch of bulk calls commits early when a quick write has waited
    :data:`~logsync.log.sqlite.lanes.YIELD_AFTER_S`: so a live client's action is not stuck behind
    a reconnect storm's backlogs (:mod:`~logsync.log.sqlite.lanes`).
    Calls run concurrently may run in either order; a caller that awaits a call before making the
    next (as every caller must, to see its result) sees them in its order.

    Opening creates or checks the schema synchronously (it refuses a file from a newer schema).
    ``commits`` counts the write transactions committed, so tests and metrics can see batching.

    :meth:`seen_now`, :meth:`head` and :meth:`read` (up to
    :data:`~logsync.log.sqlite.queries.MAX_MERGED_INDEXES` indexes) answer on the caller's
    thread from a second, read-only connection (WAL lets it read the last commit while the thread
    writes), so they do not wait behind the queue: each is a primary-key read or ``O(limit)``
    ranges of one. A read handed to the SQLite thread would take the GIL back once per row,
    and a busy event loop gives it back only every switch interval (5 ms): a 50-entry catch-up read
    cost 0.07 ms here, and 4 ms (median) to seconds on the thread beside a busy loop.
    In memory (``sqlite://``) there is no second connection: everything goes to the thread.
    """

    def __init__(self, url: str) -> None:
        self.path, self.synchronous = parse_url(url)
        self._writer = Writer(
            self.path, functools.partial(schema.connect, self.path, self.synchronous)
        )
        self._reader: sqlite3.Connection | None = None
        if self.path != ":memory:":
            self._reader = schema.connect_reader(self.path)

    @property
    def commits(self) -> int:
        return self._writer.commits

    @property
    def queue_depth(self) -> int:
        """Calls queued for the SQLite thread or running on it (the reads answered on the
        caller's thread aside)."""
        return self._writer.depth

    def _read_here(self, sql: str, params: Sequence[Any] = ()) -> list[queries.Row] | None:
        """The rows of a read run on the caller's thread from the read-only connection; ``None``
        when there is none (in memory, closed) or it could not read at once (it never waits for
        a lock): then ask the SQLite thread. ``fetchall``: the statement runs to its end, so no
        read transaction stays open and holds back WAL checkpoints."""
        reader = self._reader
        if reader is None or self._writer.closed:
            return None
        try:
            return reader.execute(sql, params).fetchall()
        except sqlite3.Error:
            return None

    # LogStore.timing, kept by the writer, which answers the calls
    @property
    def timing(self) -> Timing | None:
        return self._writer.timing

    @timing.setter
    def timing(self, timing: Timing | None) -> None:
        self._writer.timing = timing

    async def _call(
        self,
        fn: Callable[[sqlite3.Connection], T],
        op: str = "",
        *,
        write: bool = False,
        quick: bool = False,
    ) -> T:
        """``fn(conn)``, run on the SQLite thread: see :meth:`Writer.submit`."""
        return await self._writer.submit(fn, op, write=write, quick=quick)

    async def append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        return await self.start_append(entries)

    def start_append(self, entries: Sequence[NewEntry]) -> asyncio.Future[list[Appended]]:
        # The SQLite thread runs calls in the order they are submitted (within a lane; one
        # entry and a status are both quick), and it is the only writer of the file.
        # Exact-size copies: an `orjson.dumps` result keeps a 4 KiB buffer however short it is,
        # and these wait in the writer's queue (12 KiB an action, in a storm's backlog of them).
        encoded = [
            queries.Encoded(
                new,
                _exact(orjson.dumps(new.action)),
                _exact(orjson.dumps(new.indexes)),
                _exact(orjson.dumps(new.exclude_clients)),
                list(dict.fromkeys(new.indexes)),
            )
            for new in entries
        ]
        if not encoded:
            nothing: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
            nothing.set_result([])
            return nothing
        return self._writer.submit(
            lambda conn: queries.append(conn, encoded),
            "append",
            write=True,
            quick=len(encoded) == 1,
        )

    async def read(self, indexes: Collection[str], after: int, limit: int) -> ReadResult:
        names = list(dict.fromkeys(indexes))
        if not names:
            return ReadResult([], after, False)
        limit = max(limit, 0)
        count = len(names)
        params = queries.read_params(names, after, limit + 1)
        # merged ranges cost O(limit): read here; more indexes may sort a whole backlog. Here
        # any error (a page too long for one string too) hands the read to the SQLite thread.
        here = count <= queries.MAX_MERGED_INDEXES
        rows = self._read_here(queries.read_json_sql(count), params) if here else None
        answer: str | list[queries.Row] | None = (
            rows[0][0]
            if rows is not None
            else await self._call(lambda conn: queries.read(conn, count, params), "read")
        )
        entries = queries.decode_all(answer)
        found = entries[:limit]
        return ReadResult(found, found[-1].added if found else after, len(entries) > limit)

    async def explain_read(self, indexes: Collection[str], after: int, limit: int) -> list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` of the query :meth:`read` runs for these arguments
        (the one-row JSON read up to :data:`~logsync.log.sqlite.queries.MAX_MERGED_INDEXES`
        indexes, the rows past them)."""
        names = list(dict.fromkeys(indexes))
        count = len(names)
        query = queries.read_json_sql if count <= queries.MAX_MERGED_INDEXES else queries.read_sql
        sql = "EXPLAIN QUERY PLAN " + query(count)
        params = queries.read_params(names, after, limit + 1)
        rows = await self._call(lambda conn: conn.execute(sql, params).fetchall(), "explain")
        return [str(row[3]) for row in rows]

    async def sql(self, statement: str, params: Sequence[Any] = ()) -> list[queries.Row]:
        """Run one read-only SQL statement on the store's connection (diagnostics, tests)."""
        return await self._call(lambda conn: queries.read_only(conn, statement, params), "sql")

    async def get(self, action_id: str) -> Entry | None:
        row = await self._call(
            lambda conn: conn.execute(queries.ENTRY_BY_ID, (action_id,)).fetchone(),
            "get",
            quick=True,
        )
        return None if row is None else queries.decode(row)

    async def seen(self, action_id: str) -> str | None:
        row = await self._call(
            lambda conn: conn.execute(queries.STATUS, (action_id,)).fetchone(), "seen", quick=True
        )
        return None if row is None else str(row[0])

    def seen_now(self, action_id: str) -> str | Unknown | None:
        rows = self._read_here(queries.STATUS, (action_id,))
        if rows is None:
            return UNKNOWN
        return str(rows[0][0]) if rows else None

    async def set_status(self, action_id: str, status: str) -> None:
        await self.start_set_status(action_id, status)

    def start_set_status(self, action_id: str, status: str) -> asyncio.Future[None]:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(queries.SET_ENTRY_STATUS, (status, action_id))
            conn.execute(queries.SET_ID_STATUS, (status, action_id))

        return self._writer.submit(run, "set_status", write=True, quick=True)

    async def head(self) -> int:
        # Read on the caller's thread, as seen_now does: every handshake asks, and the round
        # trip through the SQLite thread was a tenth of a handshake's instructions. The reader
        # sees the last commit, as a call queued now would (the head only grows, at commits).
        rows = self._read_here(queries.HEAD)
        if rows is not None:
            return int(rows[0][0])
        return await self._call(queries.head, "head", quick=True)

    async def waiting(self, limit: int) -> list[Entry]:
        rows = await self._call(
            lambda conn: conn.execute(queries.WAITING_SQL, (max(limit, 0),)).fetchall(), "waiting"
        )
        return [queries.decode(row) for row in rows]

    async def cursor_for_time(self, index: str, time_ms: int) -> int:
        return await self._call(
            lambda conn: queries.cursor_for_time(conn, index, time_ms), "cursor_for_time"
        )

    async def horizon(self, index: str) -> int:
        row = await self._call(
            lambda conn: conn.execute(queries.HORIZON, (index,)).fetchone(), "horizon", quick=True
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
            lambda conn: queries.trim(conn, index_prefix, before_time_ms, keep_last),
            "trim",
            write=True,
        )

    async def forget_ids(self, before_time_ms: int) -> int:
        return await self._call(
            lambda conn: queries.forget_ids(conn, before_time_ms), "forget_ids", write=True
        )

    # -- records -------------------------------------------------------------------------------

    async def epoch(self) -> str:
        return await self._call(queries.epoch, "epoch", quick=True)

    async def get_record(self, kind: str, key: str) -> bytes | None:
        now = now_ms()
        return await self._call(
            lambda conn: queries.get_record(conn, kind, key, now), "get_record", quick=True
        )

    async def put_record(
        self, kind: str, key: str, value: bytes, *, ttl_ms: int | None = None
    ) -> None:
        now = now_ms()
        expires = None if ttl_ms is None else now + ttl_ms

        def run(conn: sqlite3.Connection) -> None:
            queries.purge_records(conn, now)
            queries.put_record(conn, kind, key, value, expires)

        await self._call(run, "put_record", write=True, quick=True)

    async def add_record(
        self, kind: str, key: str, value: bytes, *, ttl_ms: int | None = None
    ) -> bool:
        now = now_ms()
        expires = None if ttl_ms is None else now + ttl_ms

        def run(conn: sqlite3.Connection) -> bool:
            queries.purge_records(conn, now)
            return queries.add_record(conn, kind, key, value, expires, now)

        return await self._call(run, "add_record", write=True, quick=True)

    async def delete_record(self, kind: str, key: str) -> bool:
        now = now_ms()
        return await self._call(
            lambda conn: queries.delete_record(conn, kind, key, now),
            "delete_record",
            write=True,
            quick=True,
        )

    async def list_records(
        self, kind: str, prefix: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        now = now_ms()
        return await self._call(
            lambda conn: queries.list_records(conn, kind, prefix, limit, now), "list_records"
        )

    async def stats(self) -> LogStats:
        return await self._call(queries.stats, "stats")

    async def close(self) -> None:
        """Finish every call made before, then close the connection. Later calls raise."""
        if self._writer.closed:
            return
        if self._reader is not None:
            self._reader.close()
        await self._writer.close()


def _exact(encoded: bytes) -> bytes:
    """``encoded`` copied to its own size (see :meth:`SqliteStore.append`)."""
    return bytes(memoryview(encoded))
