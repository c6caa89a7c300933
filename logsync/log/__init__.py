"""The action log: :class:`LogStore` implementations chosen by URL with :func:`open_store`."""

from __future__ import annotations

from logsync.log.entry import ERROR, PROCESSED, WAITING, Entry, NewEntry, encodes
from logsync.log.memory import MemoryStore
from logsync.log.store import (
    UNKNOWN,
    Appended,
    LogStats,
    LogStore,
    ReadResult,
    StoreUnavailable,
    Unknown,
)


def open_store(url: str) -> LogStore:
    """The store for a URL: ``memory://``, ``sqlite:///relative.db`` / ``sqlite:////abs.db``,
    ``redis://host:port/db?prefix=NAME``."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return MemoryStore()
    if scheme in ("redis", "rediss"):
        from logsync.log.redis import RedisStore

        return RedisStore(url)
    if scheme == "sqlite":
        from logsync.log.sqlite import SqliteStore

        return SqliteStore(url)
    raise ValueError(
        f"unknown log store URL {url!r}: use memory://, sqlite:///PATH or redis://HOST"
    )


__all__ = [
    "ERROR",
    "PROCESSED",
    "UNKNOWN",
    "WAITING",
    "Appended",
    "Entry",
    "LogStats",
    "LogStore",
    "MemoryStore",
    "NewEntry",
    "ReadResult",
    "StoreUnavailable",
    "Unknown",
    "encodes",
    "open_store",
]
