"""The interface every log store implements; pick one by URL with :func:`logsync.log.open_store`.

Index names say what an entry is filed under: ``channel:<name>``, ``user:<id>``, ``client:<id>``,
``node:<id>``. Every store gives the same answers for the same calls; ``tests/log`` holds the
conformance suite that checks it.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

from logsync.log.entry import Entry, NewEntry


class StoreUnavailable(Exception):
    """The store cannot be reached (connection refused, or lost and not regained in the retries).
    Nothing was acknowledged for the call that raised it."""


class Unknown(enum.Enum):
    """What :meth:`LogStore.seen_now` answers when only :meth:`LogStore.seen` can tell."""

    UNKNOWN = "unknown"


UNKNOWN: Final = Unknown.UNKNOWN


@dataclass(slots=True)
class Appended:
    """The result of appending one :class:`NewEntry`: the stored entry, and whether it is new.

    ``created=False``: the id was already in the log, and ``entry`` is the earlier copy; if that
    copy was trimmed since, ``entry`` is the new data with ``added=0`` and the recorded status."""

    entry: Entry
    created: bool


@dataclass(slots=True)
class ReadResult:
    """Entries after a cursor in ``added`` order; ``more`` says a later read may return more."""

    entries: list[Entry]
    next_cursor: int
    more: bool


@dataclass(slots=True)
class LogStats:
    """Sizes for ``logsync log stats``."""

    head: int
    entries: int
    ids: int
    indexes: int


class LogStore(abc.ABC):
    """An append-only action log with a global ``added`` order, dedupe by id, and indexes."""

    #: Set by the node (its :meth:`~logsync.metrics.Metrics.store_timing`): a store that queues
    #: calls for a worker calls it on the event loop with ``(operation, queued s, running s)``
    #: for each call it answers. Stores that answer directly never call it.
    timing: Callable[[str, float, float], None] | None = None

    @property
    def queue_depth(self) -> int:
        """How many calls are waiting for this store or running in it now: a sign of how far
        behind it is (the node's admission backs off past ``admission_store_queue``). 0 for a
        store that answers at once (memory)."""
        return 0

    @abc.abstractmethod
    async def append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        """Append atomically and durably, in order: dedupe by id, assign ``added``, file into indexes.

        Returns only once the store has the entries (committed / script returned)."""

    @abc.abstractmethod
    async def read(self, indexes: Collection[str], after: int, limit: int) -> ReadResult:
        """Entries filed under any of ``indexes`` with ``added > after``, oldest first, at most
        ``limit`` (≥ 1), each once. ``next_cursor`` is the last entry's ``added`` (``after`` if none)."""

    @abc.abstractmethod
    async def get(self, action_id: str) -> Entry | None:
        """The entry with this action id, while the log keeps it."""

    @abc.abstractmethod
    async def seen(self, action_id: str) -> str | None:
        """The status of an action id the log has had, even if its entry was trimmed since
        (dedupe outlives history, for the id retention window); ``None`` for a new id."""

    def seen_now(self, action_id: str) -> str | Unknown | None:
        """:meth:`seen`, answered at once without waiting for the store's queue or network, or
        :data:`UNKNOWN` when this store cannot (then await :meth:`seen`).

        The answer reflects every append that has returned; an append still in progress may
        be missed, so a caller that finds ``None`` must still expect the append to report the id
        as a duplicate (``created=False``)."""
        return UNKNOWN

    @abc.abstractmethod
    async def set_status(self, action_id: str, status: str) -> None:
        """Record how processing ended: ``processed`` or ``error``."""

    def start_append(self, entries: Sequence[NewEntry]) -> Awaitable[list[Appended]] | None:
        """Start :meth:`append` now, so that any call made after this returns runs after it (and
        later appends get higher ``added``); await the result for the entries to be durable.
        ``None`` when this store cannot promise that order, or cannot tell at once (``seen_now``
        is :data:`UNKNOWN`) whether an id is new: then await :meth:`append`."""
        return None

    def start_set_status(self, action_id: str, status: str) -> Awaitable[None] | None:
        """Start :meth:`set_status` now, so that any call made after this returns runs after it;
        await the result for it to be durable. ``None`` when this store cannot promise that order
        (then await :meth:`set_status` before making the next call)."""
        return None

    @abc.abstractmethod
    async def head(self) -> int:
        """The highest ``added`` so far (0 for an empty log)."""

    @abc.abstractmethod
    async def waiting(self, limit: int) -> list[Entry]:
        """Entries still ``waiting`` (appended, not yet processed), oldest first: after a crash
        the node processes them again."""

    @abc.abstractmethod
    async def cursor_for_time(self, index: str, time_ms: int) -> int:
        """A cursor just before the first kept entry of ``index`` whose ``time`` is ``>= time_ms``
        (the head if there is none): where a subscription that only knows a time resumes.

        Only kept entries count: on an index with a horizon, trimmed entries may have had later
        times, so a caller must not trust the answer there (it reloads instead)."""

    @abc.abstractmethod
    async def horizon(self, index: str) -> int:
        """The highest ``added`` trimmed from ``index`` (0 if never trimmed): a reader whose cursor
        is below it has missed history and must reload instead."""

    @abc.abstractmethod
    async def trim(
        self,
        *,
        index_prefix: str = "",
        before_time_ms: int | None = None,
        keep_last: int | None = None,
    ) -> int:
        """Remove old filings from every index starting with ``index_prefix``: from each index its
        oldest filings, up to the first one that is among the newest ``keep_last`` and not older
        than ``before_time_ms`` (so the horizon means "everything at or below it is gone").
        Each index's horizon rises to the highest ``added`` removed from it. Entries left in no
        index (and not ``waiting``) go too, once older than ``before_time_ms`` when it is given;
        their ids stay for :meth:`seen`. Returns the number of filings and entries removed."""

    @abc.abstractmethod
    async def forget_ids(self, before_time_ms: int) -> int:
        """End dedupe for ids of trimmed entries older than ``before_time_ms``; returns how many."""

    @abc.abstractmethod
    async def stats(self) -> LogStats:
        """Counts for operators."""

    # -- records: small keyed documents the engine keeps beside the log (pull clients'
    # subscriptions, wake-up registrations), shared by every node of the store, kept across
    # restarts. ``kind`` names the collection; keys are ordered as strings.

    @abc.abstractmethod
    async def epoch(self) -> str:
        """A random id made when this log was created: the same across restarts and nodes, new
        for a new (or reset, or restored-from-nothing) log. Pull cursors carry it."""

    @abc.abstractmethod
    async def get_record(self, kind: str, key: str) -> bytes | None:
        """The record's value, or ``None`` when it is absent or expired."""

    @abc.abstractmethod
    async def put_record(
        self, kind: str, key: str, value: bytes, *, ttl_ms: int | None = None
    ) -> None:
        """Set a record (replacing it); with ``ttl_ms`` it expires that long from now."""

    @abc.abstractmethod
    async def add_record(
        self, kind: str, key: str, value: bytes, *, ttl_ms: int | None = None
    ) -> bool:
        """Set a record only if it is absent or expired; whether it was set. Atomic across the
        nodes of one store: with a TTL, a claim that one node wins per interval."""

    @abc.abstractmethod
    async def delete_record(self, kind: str, key: str) -> bool:
        """Remove a record; whether there was one (unexpired)."""

    @abc.abstractmethod
    async def list_records(
        self, kind: str, prefix: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        """``(key, value)`` of the unexpired records of ``kind`` whose key starts with
        ``prefix``, in key order, at most ``limit``."""

    async def close(self) -> None:
        """Release the store's resources."""
