"""The interface every log store implements; pick one by URL with :func:`logsync.log.open_store`."""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from logsync.log.entry import Entry, NewEntry


@dataclass(slots=True)
class Appended:
    """The result of appending one :class:`NewEntry`: the stored entry, and whether it is new
    (``False``: the id was already in the log, and ``entry`` is the earlier copy)."""

    entry: Entry
    created: bool


@dataclass(slots=True)
class ReadResult:
    """Entries after a cursor in ``added`` order; ``more`` says a later read may return more."""

    entries: list[Entry]
    next_cursor: int
    more: bool


class LogStore(abc.ABC):
    """An append-only action log with a global ``added`` order, dedupe by id, and indexes."""

    @abc.abstractmethod
    async def append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        """Append atomically and durably, in order: dedupe by id, assign ``added``, file into indexes."""

    @abc.abstractmethod
    async def read(self, indexes: Collection[str], after: int, limit: int) -> ReadResult:
        """Entries filed under any of ``indexes`` with ``added > after``, oldest first, at most ``limit``."""

    @abc.abstractmethod
    async def get(self, action_id: str) -> Entry | None:
        """The entry with this action id, if the log has it."""

    @abc.abstractmethod
    async def set_status(self, action_id: str, status: str) -> None:
        """Record how processing ended: ``processed`` or ``error``."""

    @abc.abstractmethod
    async def head(self) -> int:
        """The highest ``added`` so far (0 for an empty log)."""

    async def close(self) -> None:
        """Release the store's resources."""
