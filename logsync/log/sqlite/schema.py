"""The log file: its tables, its schema version, and the two connections the store opens on it.

:func:`connect` opens the writer's connection (WAL, the chosen ``synchronous``, tables created or
checked); :func:`connect_reader` opens the read-only one :meth:`SqliteStore.seen_now` reads from.
The SQL run against these tables is in :mod:`logsync.log.sqlite.queries`.

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
    ``schema_version``, ``epoch`` (random, made with the file) and ``head``: the head is stored,
    never derived from ``entries``, so it never goes back when the newest entries are trimmed.
``records``
    ``(kind, key) → value``, with an optional expiry (ms since the Unix epoch): the engine's small
    documents beside the log (:meth:`LogStore.get_record`). Added in version 1 without a version
    change: it is created in files made before it, at their next open.

There are no migrations: version 1 is the first. :func:`connect` refuses a file of a newer
version; a future version 2 would upgrade older files there, in the transaction that checks it.
"""

from __future__ import annotations

import secrets
import sqlite3
from typing import Final

SCHEMA_VERSION: Final = 1

SCHEMA: Final = """
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
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires INTEGER,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires) WHERE expires IS NOT NULL;
"""


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """The writer's connection to ``path`` (``:memory:``: a private in-memory log), with the schema
    created or checked. Call it on the thread that will use the connection (it is bound to it).

    ``synchronous`` is SQLite's setting, ``FULL`` or ``NORMAL``. Raises what SQLite raises for a
    file it cannot open, and :class:`RuntimeError` if the file refuses WAL mode or has a newer
    schema."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=True, cached_statements=256
    )
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        if path != ":memory:":
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise RuntimeError(f"{path}: SQLite refused WAL mode ({mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA temp_store = MEMORY")
        _create_or_check(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_or_check(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables of an empty file, or check the version of an existing one, in one
    transaction (two stores opening one new file at once both find it complete)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path}: log schema version {row[0]} is newer than this logsync's "
                f"({SCHEMA_VERSION}); upgrade logsync"
            )
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('head', 0)")
        epoch = secrets.randbits(62)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (epoch,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def connect_reader(path: str) -> sqlite3.Connection:
    """A read-only connection to the file at ``path``, usable from any thread. It never waits for
    a lock (timeout 0: it is used on the event loop), so a read it cannot do at once raises
    :class:`sqlite3.OperationalError`. WAL lets it read the last commit while the writer writes."""
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    reader.execute("PRAGMA query_only = ON")
    return reader
