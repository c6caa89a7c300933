"""The action log: :class:`LogStore` implementations chosen by URL with :func:`open_store`."""

from __future__ import annotations

from logsync.log.entry import ERROR, PROCESSED, WAITING, Entry, NewEntry
from logsync.log.memory import MemoryStore
from logsync.log.store import Appended, LogStore, ReadResult


def open_store(url: str) -> LogStore:
    """A store for ``memory://`` (more schemes come with their stores)."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return MemoryStore()
    raise ValueError(f"unknown log store URL {url!r}: use memory://")


__all__ = [
    "ERROR",
    "PROCESSED",
    "WAITING",
    "Appended",
    "Entry",
    "LogStore",
    "MemoryStore",
    "NewEntry",
    "ReadResult",
    "open_store",
]
