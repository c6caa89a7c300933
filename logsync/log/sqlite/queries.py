"""The SQL the store runs, and the functions of a connection that run it.

Every function here takes the writer's :class:`sqlite3.Connection` and runs on the SQLite thread,
inside the transaction :class:`~logsync.log.sqlite.writer.Writer` opened for its batch (so none of
them begins or commits). :class:`~logsync.log.sqlite.store.SqliteStore` hands them to the writer,
usually as ``lambda conn: fn(conn, ...)``. The tables are described in
:mod:`logsync.log.sqlite.schema`.

Reads are merges of primary-key ranges: an index is the range ``idx = ?`` of the ``filings``
primary key, so reading after a cursor costs ``O(limit)`` however long the index is (see
:func:`read_sql`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any, Final

import orjson

from logsync.log.entry import Entry, NewEntry
from logsync.log.store import Appended, LogStats

# A read over more indexes than this filters with IN instead of merging one range per index.
MAX_MERGED_INDEXES: Final = 64

Row = tuple[Any, ...]

COLUMNS: Final = "added, id, time, action, indexes, exclude_clients, subprotocol, status"
# The partial indexes hold exactly the rows these look for, however many others the log has.
WAITING_SQL: Final = (
    f"SELECT {COLUMNS} FROM entries INDEXED BY entries_waiting"
    " WHERE status = 'waiting' ORDER BY added LIMIT ?"
)
UNFILED_SQL: Final = (
    "DELETE FROM entries INDEXED BY entries_unfiled WHERE filed = 0 AND status != 'waiting'"
)
ENTRY_BY_ID: Final = f"SELECT {COLUMNS} FROM entries WHERE id = ?"
STATUS: Final = "SELECT status FROM ids WHERE id = ?"
SET_ENTRY_STATUS: Final = "UPDATE entries SET status = ? WHERE id = ?"
SET_ID_STATUS: Final = "UPDATE ids SET status = ? WHERE id = ?"
HORIZON: Final = "SELECT horizon FROM indexes WHERE idx = ?"
_KNOWN_ID = "SELECT id, status FROM ids WHERE id = ?"
_KNOWN_IDS = "SELECT id, status FROM ids WHERE id IN (SELECT value FROM json_each(?))"
_RANGE = "SELECT added FROM filings WHERE idx = ? AND added > ?"


@dataclass(slots=True)
class Encoded:
    """A :class:`NewEntry` serialized on the caller's side, before it is queued: the action and
    lists as orjson, and ``filed``, its indexes without repeats. :func:`append` takes these."""

    new: NewEntry
    action: bytes
    indexes: bytes
    exclude: bytes
    filed: list[str]


def decode(row: Row) -> Entry:
    """The :class:`Entry` of a row of :data:`COLUMNS`."""
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


# -- reads -----------------------------------------------------------------------------------------


@lru_cache(maxsize=MAX_MERGED_INDEXES + 1)
def read_sql(count: int) -> str:
    """The read query for ``count`` indexes; its parameters come from :func:`read_params`.

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
    return f"SELECT {COLUMNS} FROM entries WHERE added IN ({picked}) ORDER BY added"


# One entry of a read as a JSON array of COLUMNS' values: the stored action and lists are JSON
# already (orjson's), spliced in as they are.
_ROW_JSON: Final = (
    "'[' || added || ',' || json_quote(id) || ',' || time || ',' || CAST(action AS TEXT)"
    " || ',' || CAST(indexes AS TEXT) || ',' || CAST(exclude_clients AS TEXT) || ','"
    " || ifnull(subprotocol, 'null') || ',' || json_quote(status) || ']'"
)


@lru_cache(maxsize=MAX_MERGED_INDEXES + 1)
def read_json_sql(count: int) -> str:
    """:func:`read_sql` as one row of one JSON text (``NULL``: nothing), the entries in
    ``added`` order; :func:`decode_all` turns it into entries. One row, so the thread that
    reads gives the GIL up once for the whole read, not once per row (and a busy thread beside
    it may keep the GIL for a switch interval each time)."""
    return f"SELECT '[' || group_concat({_ROW_JSON}, ',') || ']' FROM ({read_sql(count)})"


def read(conn: sqlite3.Connection, count: int, params: Sequence[Any]) -> str | list[Row] | None:
    """A read of ``count`` indexes on the SQLite thread: :func:`read_json_sql`'s text, or, when
    that text would be longer than SQLite's longest string (a page of large actions), the rows
    of :func:`read_sql` one by one. :func:`decode_all` takes either."""
    try:
        text: str | None = conn.execute(read_json_sql(count), params).fetchone()[0]
    except sqlite3.DataError:  # string or blob too big
        return conn.execute(read_sql(count), params).fetchall()
    return text


def decode_all(found: str | list[Row] | None) -> list[Entry]:
    """The entries of a :func:`read_json_sql` row (or of :func:`read`), in ``added`` order."""
    if isinstance(found, list):
        return [decode(row) for row in found]
    if found is None:
        return []
    # _ROW_JSON has COLUMNS' order, which is Entry's fields' (as decode unpacks them)
    entries = [Entry(*row) for row in orjson.loads(found)]
    entries.sort(key=attrgetter("added"))  # group_concat keeps the subquery's order in practice
    return entries


def read_params(indexes: Sequence[str], after: int, limit: int) -> tuple[Any, ...]:
    """The parameters of :func:`read_sql` for these (distinct) indexes: each index and the cursor,
    then the limit; past :data:`MAX_MERGED_INDEXES`: a JSON array of the indexes, the cursor, the
    limit."""
    if len(indexes) <= MAX_MERGED_INDEXES:
        params: list[Any] = []
        for index in indexes:
            params += (index, after)
        return (*params, limit)
    return (orjson.dumps(list(indexes)).decode(), after, limit)


HEAD = "SELECT value FROM meta WHERE key = 'head'"


def head(conn: sqlite3.Connection) -> int:
    (value,) = conn.execute(HEAD).fetchone()
    return int(value)


def epoch(conn: sqlite3.Connection) -> str:
    (value,) = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    return f"{int(value):016x}"


# -- records (the `records` table; `now` and expiries in ms since the Unix epoch) ---------------


def get_record(conn: sqlite3.Connection, kind: str, key: str, now: int) -> bytes | None:
    row = conn.execute(
        "SELECT value FROM records WHERE kind = ? AND key = ? AND (expires IS NULL OR expires > ?)",
        (kind, key, now),
    ).fetchone()
    return None if row is None else bytes(row[0])


def purge_records(conn: sqlite3.Connection, now: int) -> None:
    """Remove a few expired records (called with each write of one, so they never pile up)."""
    conn.execute(
        "DELETE FROM records WHERE (kind, key) IN"
        " (SELECT kind, key FROM records WHERE expires <= ? LIMIT 16)",
        (now,),
    )


def put_record(
    conn: sqlite3.Connection, kind: str, key: str, value: bytes, expires: int | None
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO records (kind, key, value, expires) VALUES (?, ?, ?, ?)",
        (kind, key, value, expires),
    )


def add_record(
    conn: sqlite3.Connection, kind: str, key: str, value: bytes, expires: int | None, now: int
) -> bool:
    """Insert, or replace an expired record; whether a row was written."""
    cursor = conn.execute(
        "INSERT INTO records (kind, key, value, expires) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
        " WHERE records.expires IS NOT NULL AND records.expires <= ?",
        (kind, key, value, expires, now),
    )
    return cursor.rowcount > 0


def delete_record(conn: sqlite3.Connection, kind: str, key: str, now: int) -> bool:
    row = conn.execute(
        "DELETE FROM records WHERE kind = ? AND key = ? RETURNING expires", (kind, key)
    ).fetchone()
    return row is not None and (row[0] is None or row[0] > now)


def list_records(
    conn: sqlite3.Connection, kind: str, prefix: str, limit: int, now: int
) -> list[tuple[str, bytes]]:
    # keys from `prefix` up to the first key that no longer starts with it (an index range)
    rows = conn.execute(
        "SELECT key, value FROM records WHERE kind = ? AND key >= ?"
        " AND (expires IS NULL OR expires > ?) ORDER BY key LIMIT ?",
        (kind, prefix, now, limit),
    )
    found: list[tuple[str, bytes]] = []
    for key, value in rows:
        if not key.startswith(prefix) or len(found) == limit:
            break
        found.append((key, bytes(value)))
    return found


def cursor_for_time(conn: sqlite3.Connection, index: str, time_ms: int) -> int:
    row = conn.execute(
        "SELECT f.added FROM filings AS f JOIN entries AS e ON e.added = f.added"
        " WHERE f.idx = ? AND e.time >= ? ORDER BY f.added LIMIT 1",
        (index, time_ms),
    ).fetchone()
    return head(conn) if row is None else int(row[0]) - 1


def stats(conn: sqlite3.Connection) -> LogStats:
    (entries,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    (ids,) = conn.execute("SELECT COUNT(*) FROM ids").fetchone()
    (indexes,) = conn.execute("SELECT COUNT(*) FROM indexes").fetchone()
    return LogStats(head(conn), entries, ids, indexes)


def read_only(conn: sqlite3.Connection, statement: str, params: Sequence[Any]) -> list[Row]:
    """Run any statement, refused by SQLite if it would write (diagnostics, tests)."""
    conn.execute("PRAGMA query_only = ON")
    try:
        return conn.execute(statement, tuple(params)).fetchall()
    finally:
        conn.execute("PRAGMA query_only = OFF")


# -- writes ----------------------------------------------------------------------------------------


def append(conn: sqlite3.Connection, encoded: list[Encoded]) -> list[Appended]:
    """One call's entries: one query finds the ids the log already has, then the new entries
    are written with one statement per table."""
    last = head(conn)
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
            row = conn.execute(ENTRY_BY_ID, (new.id,)).fetchone()
            if row is not None:
                earlier = decode(row)
            else:  # trimmed: only its id and status are left
                earlier = Entry.from_new(0, new)
                earlier.status = status
            results.append(Appended(earlier, created=False))
            continue
        last += 1
        entry_rows.append(
            (
                last,
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
        filing_rows += [(index, last) for index in item.filed]
        entry = Entry.from_new(last, new)
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
        conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (last,))
    return results


def trim(
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


def forget_ids(conn: sqlite3.Connection, before_time_ms: int) -> int:
    return conn.execute(
        "DELETE FROM ids WHERE time < ?"
        " AND NOT EXISTS (SELECT 1 FROM entries AS e WHERE e.id = ids.id)",
        (before_time_ms,),
    ).rowcount
