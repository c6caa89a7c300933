"""``sqlite:///path.db``: the embedded default log, one SQLite file in WAL mode, durable per commit.

Read the modules in this order:

:mod:`~logsync.log.sqlite.store`
    :class:`SqliteStore`, the :class:`~logsync.log.store.LogStore` API, and :func:`parse_url`.
    Each call becomes a function of a connection, queued for the SQLite thread.
:mod:`~logsync.log.sqlite.writer`
    :class:`~logsync.log.sqlite.writer.Writer`, the one thread that owns the connection: it runs
    queued calls in group-committed transactions and answers each caller after its commit.
:mod:`~logsync.log.sqlite.lanes`
    Which calls the writer runs next: quick calls ahead of bulk ones, bulk ones once overdue.
:mod:`~logsync.log.sqlite.queries`
    The SQL of every call (appends, reads as merges of primary-key ranges, trimming).
:mod:`~logsync.log.sqlite.schema`
    The tables, the schema version, and opening the file (WAL, ``synchronous``).
"""

from __future__ import annotations

from logsync.log.sqlite.store import SqliteStore, parse_url

__all__ = ["SqliteStore", "parse_url"]
