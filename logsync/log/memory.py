"""``memory://``: a log in Python dicts, for tests and throwaway runs. Nothing survives a restart."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import secrets
from collections.abc import Awaitable, Collection, Sequence

from logsync.log.entry import WAITING, Entry, NewEntry
from logsync.log.store import Appended, LogStats, LogStore, ReadResult
from logsync.wallclock import now_ms


class MemoryStore(LogStore):
    """Entries by ``added`` and by id; each index a sorted list of ``added``."""

    def __init__(self) -> None:
        self._by_added: dict[int, Entry] = {}
        self._by_id: dict[str, Entry] = {}
        self._ids: dict[str, tuple[int, str]] = {}  # id → (time, status), outlives entries
        self._indexes: dict[str, list[int]] = {}
        self._horizons: dict[str, int] = {}
        self._head = 0
        self._epoch = secrets.token_hex(8)
        # kind → key → (value, expiry in ms since the epoch or None), and each kind's keys in
        # order (listing by prefix is a bisect, not a sort of every key)
        self._records: dict[str, dict[str, tuple[bytes, int | None]]] = {}
        self._record_keys: dict[str, list[str]] = {}

    async def append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        return self._append(entries)

    def start_append(self, entries: Sequence[NewEntry]) -> Awaitable[list[Appended]]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(self._append(entries))
        return done

    def _append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        results = []
        for new in entries:
            existing = self._by_id.get(new.id)
            if existing is not None or new.id in self._ids:
                known = existing or Entry.from_new(0, new)
                if existing is None:
                    known.status = self._ids[new.id][1]
                results.append(Appended(known, created=False))
                continue
            self._head += 1
            entry = Entry.from_new(self._head, new)
            self._by_added[entry.added] = entry
            self._by_id[entry.id] = entry
            self._ids[entry.id] = (entry.time, entry.status)
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

    async def seen(self, action_id: str) -> str | None:
        return self.seen_now(action_id)

    def seen_now(self, action_id: str) -> str | None:
        known = self._ids.get(action_id)
        return None if known is None else known[1]

    async def set_status(self, action_id: str, status: str) -> None:
        self._set_status(action_id, status)

    def start_set_status(self, action_id: str, status: str) -> Awaitable[None]:
        self._set_status(action_id, status)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def _set_status(self, action_id: str, status: str) -> None:
        entry = self._by_id.get(action_id)
        if entry is not None:
            entry.status = status
        if action_id in self._ids:
            self._ids[action_id] = (self._ids[action_id][0], status)

    async def head(self) -> int:
        return self._head

    async def waiting(self, limit: int) -> list[Entry]:
        found = [e for e in self._by_added.values() if e.status == WAITING]
        return sorted(found, key=lambda e: e.added)[:limit]

    async def cursor_for_time(self, index: str, time_ms: int) -> int:
        for added in self._indexes.get(index, []):
            if self._by_added[added].time >= time_ms:
                return added - 1
        return self._head

    async def horizon(self, index: str) -> int:
        return self._horizons.get(index, 0)

    async def trim(
        self,
        *,
        index_prefix: str = "",
        before_time_ms: int | None = None,
        keep_last: int | None = None,
    ) -> int:
        removed = 0
        for index, positions in self._indexes.items():
            if not index.startswith(index_prefix):
                continue
            cut = 0
            if keep_last is not None:
                cut = max(cut, len(positions) - keep_last)
            if before_time_ms is not None:
                while cut < len(positions) and self._by_added[positions[cut]].time < before_time_ms:
                    cut += 1
            if cut:
                self._horizons[index] = max(self._horizons.get(index, 0), positions[cut - 1])
                removed += cut
                del positions[:cut]
        filed = {added for positions in self._indexes.values() for added in positions}
        for added, entry in list(self._by_added.items()):
            if added in filed or entry.status == WAITING:
                continue
            if before_time_ms is not None and entry.time >= before_time_ms:
                continue
            del self._by_added[added]
            del self._by_id[entry.id]
            removed += 1
        return removed

    async def forget_ids(self, before_time_ms: int) -> int:
        old = [i for i, (t, _) in self._ids.items() if t < before_time_ms and i not in self._by_id]
        for action_id in old:
            del self._ids[action_id]
        return len(old)

    async def stats(self) -> LogStats:
        return LogStats(self._head, len(self._by_added), len(self._ids), len(self._indexes))

    # -- records -------------------------------------------------------------------------------

    async def epoch(self) -> str:
        return self._epoch

    def _live(self, kind: str, key: str) -> bytes | None:
        found = self._records.get(kind, {}).get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and expires <= now_ms():
            self._drop(kind, key)
            return None
        return value

    def _drop(self, kind: str, key: str) -> None:
        if self._records.get(kind, {}).pop(key, None) is not None:
            keys = self._record_keys[kind]
            del keys[bisect.bisect_left(keys, key)]

    async def get_record(self, kind: str, key: str) -> bytes | None:
        return self._live(kind, key)

    async def put_record(
        self, kind: str, key: str, value: bytes, *, ttl_ms: int | None = None
    ) -> None:
        expires = None if ttl_ms is None else now_ms() + ttl_ms
        records = self._records.setdefault(kind, {})
        if key not in records:
            bisect.insort(self._record_keys.setdefault(kind, []), key)
        records[key] = (bytes(memoryview(value)), expires)  # its own copy, of its size

    async def add_record(
        self, kind: str, key: str, value: bytes, *, ttl_ms: int | None = None
    ) -> bool:
        if self._live(kind, key) is not None:
            return False
        await self.put_record(kind, key, value, ttl_ms=ttl_ms)
        return True

    async def delete_record(self, kind: str, key: str) -> bool:
        found = self._live(kind, key) is not None
        self._drop(kind, key)
        return found

    async def list_records(
        self, kind: str, prefix: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        keys = self._record_keys.get(kind, [])
        found: list[tuple[str, bytes]] = []
        position = bisect.bisect_left(keys, prefix)
        while position < len(keys) and len(found) < limit:
            key = keys[position]
            if not key.startswith(prefix):
                break
            value = self._live(kind, key)
            if value is None:
                continue  # expired: dropped from `keys`, the next key is at `position` now
            found.append((key, value))
            position += 1
        return found
