"""``memory://``: a log in a Python list, for tests and throwaway runs. Nothing survives a restart."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Collection, Sequence

from logsync.log.entry import Entry, NewEntry
from logsync.log.store import Appended, LogStore, ReadResult


class MemoryStore(LogStore):
    """Entries by ``added``, by id, and per index (sorted lists of ``added``)."""

    def __init__(self) -> None:
        self._by_added: dict[int, Entry] = {}
        self._by_id: dict[str, Entry] = {}
        self._indexes: dict[str, list[int]] = {}
        self._head = 0

    async def append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        results = []
        for new in entries:
            existing = self._by_id.get(new.id)
            if existing is not None:
                results.append(Appended(existing, created=False))
                continue
            self._head += 1
            entry = Entry.from_new(self._head, new)
            self._by_added[entry.added] = entry
            self._by_id[entry.id] = entry
            for index in dict.fromkeys(entry.indexes):
                self._indexes.setdefault(index, []).append(entry.added)
            results.append(Appended(entry, created=True))
        return results

    async def read(self, indexes: Collection[str], after: int, limit: int) -> ReadResult:
        streams = []
        for index in indexes:
            positions = self._indexes.get(index)
            if positions:
                streams.append(positions[bisect.bisect_right(positions, after) :])
        found: list[Entry] = []
        last = after
        for added in heapq.merge(*streams):
            if added == last:
                continue  # filed under two of the indexes asked for
            if len(found) == limit:
                return ReadResult(found, last, True)
            found.append(self._by_added[added])
            last = added
        return ReadResult(found, last, False)

    async def get(self, action_id: str) -> Entry | None:
        return self._by_id.get(action_id)

    async def set_status(self, action_id: str, status: str) -> None:
        entry = self._by_id.get(action_id)
        if entry is not None:
            entry.status = status

    async def head(self) -> int:
        return self._head
