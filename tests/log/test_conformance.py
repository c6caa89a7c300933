"""The conformance suite: every :class:`LogStore` backend gives the same answers to the same calls.

Runs once per backend through the ``store`` / ``url`` / ``backend`` fixtures of ``conftest.py``.
Entries that should be removable by ``trim`` are appended as ``processed``: ``waiting`` entries
are never deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logsync.log import ERROR, PROCESSED, UNKNOWN, WAITING, Entry, LogStore, NewEntry, open_store
from logsync.log.store import Appended, LogStats, ReadResult
from tests.log.conftest import store_url


def new(
    n: int,
    indexes: Iterable[str] = ("channel:a",),
    *,
    time: int | None = None,
    status: str = WAITING,
    action: dict[str, Any] | None = None,
) -> NewEntry:
    """An action from node ``user:client:tab`` with sequence ``n`` (time ``1000 + n`` by default:
    the id does not depend on the time given)."""
    return NewEntry(
        id=f"{1000 + n} user:client:tab {n}",
        time=1000 + n if time is None else time,
        action={"type": "test", "n": n} if action is None else action,
        indexes=list(indexes),
        status=status,
    )


async def append_one(store: LogStore, entry: NewEntry) -> Entry:
    [appended] = await store.append([entry])
    assert appended.created
    return appended.entry


def addeds(result: ReadResult) -> list[int]:
    return [e.added for e in result.entries]


# -- append ------------------------------------------------------------------------------------


async def test_empty_store(store: LogStore) -> None:
    assert await store.head() == 0
    assert await store.read(["channel:a"], 0, 10) == ReadResult([], 0, False)
    assert await store.get("1 user:client:tab 1") is None
    assert await store.seen("1 user:client:tab 1") is None
    assert await store.waiting(10) == []
    assert await store.horizon("channel:a") == 0
    assert await store.cursor_for_time("channel:a", 0) == 0
    assert await store.stats() == LogStats(head=0, entries=0, ids=0, indexes=0)
    assert await store.append([]) == []


async def test_append_assigns_positions_in_call_order(store: LogStore) -> None:
    first = await store.append([new(1), new(2), new(3)])
    assert [a.entry.added for a in first] == [1, 2, 3]
    assert all(a.created for a in first)
    assert [a.entry.id for a in first] == [new(n).id for n in (1, 2, 3)]
    assert (await append_one(store, new(4))).added == 4
    assert await store.head() == 4


async def test_appended_entry_round_trips(store: LogStore) -> None:
    action = {
        "type": "rich",
        "text": 'ünïcødé ✓ \u2028 "quoted" \\',
        "nested": {"list": [1, 2.5, True, False, None, {"deep": []}], "empty": {}},
        "big": 2**53,
        "negative": -7,
    }
    entry = NewEntry(
        id="1700000000000 alice:phone:tab1 3",
        time=1700000000000,
        action=action,
        indexes=["channel:notes/1", "user:alice", "client:alice:phone"],
        exclude_clients=["alice:phone"],
        subprotocol=3,
        status=WAITING,
    )
    appended = await append_one(store, entry)
    assert appended == Entry(
        1,
        entry.id,
        entry.time,
        action,
        ["channel:notes/1", "user:alice", "client:alice:phone"],
        ["alice:phone"],
        3,
        WAITING,
    )
    assert await store.get(entry.id) == appended
    for index in entry.indexes:
        assert (await store.read([index], 0, 10)).entries == [appended]


async def test_concurrent_appends_are_distinct_gapless_and_match(store: LogStore) -> None:
    batches = [[new(n)] if n % 5 else [new(n), new(n + 1000), new(n + 2000)] for n in range(120)]
    results = await asyncio.gather(*(store.append(batch) for batch in batches))
    positions: list[int] = []
    for batch, appended in zip(batches, results, strict=True):
        assert [a.entry.id for a in appended] == [e.id for e in batch]
        assert all(a.created for a in appended)
        batch_positions = [a.entry.added for a in appended]
        # one call is atomic: its entries are consecutive and in order
        assert batch_positions == list(range(batch_positions[0], batch_positions[0] + len(batch)))
        positions += batch_positions
    total = sum(len(b) for b in batches)
    assert sorted(positions) == list(range(1, total + 1))
    assert await store.head() == total
    for appended in results:
        for a in appended:
            assert await store.get(a.entry.id) == a.entry
    everything = await store.read(["channel:a"], 0, total + 1)
    assert addeds(everything) == list(range(1, total + 1))


async def test_dedupe_within_one_batch(store: LogStore) -> None:
    copy = new(1, ["channel:b"], action={"type": "other"})
    results = await store.append([new(1), new(2), copy])
    assert [a.created for a in results] == [True, True, False]
    assert results[2].entry == results[0].entry  # the first copy wins
    assert results[2].entry.action == {"type": "test", "n": 1}
    assert await store.head() == 2
    assert await store.read(["channel:b"], 0, 10) == ReadResult([], 0, False)


async def test_dedupe_across_calls_returns_earlier_copy_and_status(store: LogStore) -> None:
    first = await append_one(store, new(1))
    await append_one(store, new(2))
    await store.set_status(first.id, PROCESSED)
    [again] = await store.append([new(1, ["channel:b"], action={"type": "resent"})])
    assert not again.created
    assert again.entry == Entry(
        first.added, first.id, first.time, first.action, first.indexes, [], None, PROCESSED
    )
    assert await store.head() == 2
    assert await store.read(["channel:b"], 0, 10) == ReadResult([], 0, False)
    assert addeds(await store.read(["channel:a"], 0, 10)) == [1, 2]


# -- read --------------------------------------------------------------------------------------


async def test_read_merges_indexes_once_in_added_order(store: LogStore) -> None:
    await store.append(
        [
            new(1, ["channel:a"]),
            new(2, ["user:u"]),
            new(3, ["channel:a", "user:u", "client:u:c"]),
            new(4, ["channel:other"]),
            new(5, ["client:u:c"]),
            new(6, ["user:u", "channel:a"]),
            new(7, ["channel:a", "channel:a"]),  # filed twice under one index: still once
        ]
    )
    result = await store.read(["client:u:c", "user:u", "channel:a"], 0, 100)
    assert addeds(result) == [1, 2, 3, 5, 6, 7]
    assert result.next_cursor == 7
    assert not result.more
    assert [e.id for e in result.entries] == [new(n).id for n in (1, 2, 3, 5, 6, 7)]
    # asking for the same index twice changes nothing
    assert await store.read(["user:u", "user:u"], 0, 100) == await store.read(["user:u"], 0, 100)
    assert addeds(await store.read(["channel:a"], 0, 100)) == [1, 3, 6, 7]
    assert addeds(await store.read(("channel:other",), 0, 100)) == [4]
    assert addeds(await store.read({"user:u", "client:u:c"}, 2, 100)) == [3, 5, 6]
    # pages over indexes that share entries: each entry counts once towards the limit
    overlapping = ["client:u:c", "user:u", "channel:a"]
    page = await store.read(overlapping, 2, 2)
    assert (addeds(page), page.next_cursor, page.more) == ([3, 5], 5, True)
    page = await store.read(overlapping, 5, 2)
    assert (addeds(page), page.next_cursor, page.more) == ([6, 7], 7, False)
    page = await store.read(["user:u", "channel:a"], 0, 3)
    assert (addeds(page), page.next_cursor, page.more) == ([1, 2, 3], 3, True)


async def test_read_after_limit_more_next_cursor(store: LogStore) -> None:
    for n in range(1, 11):
        await append_one(store, new(n, ["channel:a"] if n % 2 else ["channel:b"]))
    both = ["channel:a", "channel:b"]
    assert await store.read(both, 0, 3) == ReadResult(
        (await store.read(both, 0, 10)).entries[:3], 3, True
    )
    page = await store.read(["channel:a"], 0, 2)
    assert (addeds(page), page.next_cursor, page.more) == ([1, 3], 3, True)
    page = await store.read(["channel:a"], page.next_cursor, 2)
    assert (addeds(page), page.next_cursor, page.more) == ([5, 7], 7, True)
    page = await store.read(["channel:a"], page.next_cursor, 2)
    # exactly the last entry: nothing more after it
    assert (addeds(page), page.next_cursor, page.more) == ([9], 9, False)
    page = await store.read(["channel:a"], 9, 2)
    assert page == ReadResult([], 9, False)
    # limit exactly the number left: no more
    page = await store.read(both, 6, 4)
    assert (addeds(page), page.next_cursor, page.more) == ([7, 8, 9, 10], 10, False)
    # after a cursor past the head
    assert await store.read(both, 50, 5) == ReadResult([], 50, False)
    # paging with limit 1 visits everything once, in order
    seen: list[int] = []
    cursor, more = 0, True
    while more:
        page = await store.read(both, cursor, 1)
        seen += addeds(page)
        cursor, more = page.next_cursor, page.more
    assert seen == list(range(1, 11))


async def test_read_unknown_and_no_indexes(store: LogStore) -> None:
    await append_one(store, new(1))
    assert await store.read(["channel:none"], 0, 10) == ReadResult([], 0, False)
    assert await store.read([], 0, 10) == ReadResult([], 0, False)
    assert await store.read(["channel:none"], 5, 10) == ReadResult([], 5, False)


async def test_unfiled_entries_are_found_by_id_but_not_read(store: LogStore) -> None:
    unfiled = await append_one(store, new(1, []))
    filed = await append_one(store, new(2, ["channel:a"]))
    assert unfiled.added == 1
    assert await store.read(["channel:a"], 0, 10) == ReadResult([filed], 2, False)
    assert await store.get(unfiled.id) == unfiled
    assert await store.seen(unfiled.id) == WAITING
    assert await store.waiting(10) == [unfiled, filed]
    assert await store.head() == 2


# -- get / seen / set_status / waiting -----------------------------------------------------------


async def test_get_seen_set_status(store: LogStore) -> None:
    action_id = new(1).id
    assert await store.seen(action_id) is None
    entry = await append_one(store, new(1))
    assert await store.seen(action_id) == WAITING
    await store.set_status(action_id, PROCESSED)
    assert await store.seen(action_id) == PROCESSED
    got = await store.get(action_id)
    assert got is not None
    assert got.status == PROCESSED
    assert got.added == entry.added
    [read] = (await store.read(["channel:a"], 0, 10)).entries
    assert read.status == PROCESSED
    await store.set_status(action_id, ERROR)
    assert await store.seen(action_id) == ERROR
    # an unknown id: nothing happens
    await store.set_status("9 nobody:x:y 9", PROCESSED)
    assert await store.seen("9 nobody:x:y 9") is None
    assert await store.get("9 nobody:x:y 9") is None
    assert await store.head() == 1


async def test_seen_now_agrees_with_seen(store: LogStore, backend: str) -> None:
    """``seen_now`` answers as ``seen`` does, after every append and status change that has
    returned, or says it cannot (the node then awaits ``seen``)."""
    answers_now = backend in ("memory", "sqlite")
    action_id = new(1).id

    async def both() -> str | None:
        later = await store.seen(action_id)
        now = store.seen_now(action_id)
        if answers_now:
            assert now == later
        else:
            assert now is UNKNOWN
        return later

    assert await both() is None
    await append_one(store, new(1))
    assert await both() == WAITING
    await store.set_status(action_id, PROCESSED)
    assert await both() == PROCESSED
    # trimmed: the entry is gone, its id still dedupes
    await store.trim(keep_last=0)
    assert await store.get(action_id) is None
    assert await both() == PROCESSED
    await store.forget_ids(before_time_ms=10**15)
    assert await both() is None


async def test_status_given_at_append(store: LogStore) -> None:
    done = await append_one(store, new(1, status=PROCESSED))
    assert done.status == PROCESSED
    assert await store.seen(done.id) == PROCESSED
    assert await store.waiting(10) == []


async def test_waiting_oldest_first_with_limit(store: LogStore) -> None:
    w1 = await append_one(store, new(1))
    await append_one(store, new(2, status=PROCESSED))
    w3 = await append_one(store, new(3, ["channel:b"]))
    w4 = await append_one(store, new(4, []))
    assert await store.waiting(10) == [w1, w3, w4]
    assert await store.waiting(2) == [w1, w3]
    assert await store.waiting(0) == []
    await store.set_status(w1.id, PROCESSED)
    await store.set_status(w3.id, ERROR)
    [left] = await store.waiting(10)
    assert left == w4


# -- head / cursor_for_time ----------------------------------------------------------------------


async def test_cursor_for_time(store: LogStore) -> None:
    a1 = await append_one(store, new(1, ["channel:a"], time=100))
    await append_one(store, new(2, ["channel:b"], time=50))
    a3 = await append_one(store, new(3, ["channel:a"], time=300))
    await append_one(store, new(4, ["channel:a"], time=200))  # times need not grow with added
    await append_one(store, new(5, ["channel:b"], time=900))
    assert await store.cursor_for_time("channel:a", 0) == a1.added - 1
    assert await store.cursor_for_time("channel:a", 100) == a1.added - 1
    # the first entry in log order whose time is late enough
    assert await store.cursor_for_time("channel:a", 150) == a3.added - 1
    assert await store.cursor_for_time("channel:a", 300) == a3.added - 1
    assert await store.cursor_for_time("channel:a", 301) == 5  # none: the head
    assert await store.cursor_for_time("channel:none", 0) == 5
    resumed = await store.read(["channel:a"], await store.cursor_for_time("channel:a", 150), 10)
    assert addeds(resumed) == [3, 4]


async def test_cursor_for_time_sees_only_kept_history(store: LogStore) -> None:
    for n, ms in ((1, 100), (2, 200), (3, 300)):
        await append_one(store, new(n, ["channel:a"], time=ms, status=PROCESSED))
    assert await store.trim(keep_last=1) == 4  # entries 1 and 2 (times 100, 200) are gone
    # the trimmed times are unknown: the answer starts at the horizon, and a caller must not
    # trust a time lookup on a trimmed index (the node reloads instead, see node._resume_point)
    assert await store.cursor_for_time("channel:a", 150) == await store.horizon("channel:a") == 2


# -- trim / horizon / forget_ids -----------------------------------------------------------------


async def test_trim_keep_last(store: LogStore) -> None:
    for n in range(1, 6):
        await append_one(store, new(n, ["channel:a"], status=PROCESSED))
    await append_one(store, new(6, ["channel:b"], status=PROCESSED))
    await append_one(store, new(7, ["channel:b"], status=PROCESSED))
    # channel:a loses filings 1-3 (and those entries, now in no index); channel:b keeps both
    assert await store.trim(keep_last=2) == 6
    assert await store.horizon("channel:a") == 3
    assert await store.horizon("channel:b") == 0
    assert addeds(await store.read(["channel:a"], 0, 10)) == [4, 5]
    assert addeds(await store.read(["channel:a", "channel:b"], 0, 10)) == [4, 5, 6, 7]
    assert await store.get(new(1).id) is None
    assert await store.seen(new(1).id) == PROCESSED
    assert await store.head() == 7
    assert await store.trim(keep_last=2) == 0  # nothing more to do
    assert await store.horizon("channel:a") == 3
    assert await store.trim(keep_last=5) == 0


async def test_trim_before_time_with_prefix(store: LogStore) -> None:
    e1 = await append_one(store, new(1, ["channel:a", "user:u"], time=100, status=PROCESSED))
    w2 = await append_one(store, new(2, ["channel:a"], time=150))  # waiting
    e3 = await append_one(store, new(3, ["channel:a"], time=200, status=PROCESSED))
    e4 = await append_one(store, new(4, ["channel:a"], time=300, status=PROCESSED))
    e5 = await append_one(store, new(5, ["user:u"], time=100, status=PROCESSED))
    # channel:a loses filings 1, 2, 3 (time < 250); user:u is not under the prefix.
    # Entry 3 is in no index any more and goes; entry 1 is still in user:u; entry 2 is waiting.
    assert await store.trim(index_prefix="channel:", before_time_ms=250) == 4
    assert await store.horizon("channel:a") == 3
    assert await store.horizon("user:u") == 0
    assert await store.read(["channel:a"], 0, 10) == ReadResult([e4], 4, False)
    assert addeds(await store.read(["user:u"], 0, 10)) == [e1.added, e5.added]
    assert await store.get(e1.id) == e1
    assert await store.get(w2.id) == w2
    assert await store.waiting(10) == [w2]
    assert await store.get(e3.id) is None
    assert await store.seen(e3.id) == PROCESSED
    # once processed, the waiting entry in no index goes on the next trim
    await store.set_status(w2.id, PROCESSED)
    assert await store.trim(index_prefix="channel:", before_time_ms=250) == 1
    assert await store.get(w2.id) is None
    assert await store.seen(w2.id) == PROCESSED
    assert await store.head() == 5
    # a prefix that matches nothing removes no filing
    assert await store.trim(index_prefix="client:", before_time_ms=10**6) == 0
    assert addeds(await store.read(["user:u"], 0, 10)) == [e1.added, e5.added]


async def test_trim_cuts_a_prefix_of_each_index(store: LogStore) -> None:
    """Trimming removes the oldest filings of an index up to the first one it must keep: an entry
    with an old time behind a newer one stays (so every filing above the horizon is kept)."""
    await append_one(store, new(1, ["channel:a"], time=300, status=PROCESSED))
    await append_one(store, new(2, ["channel:a"], time=100, status=PROCESSED))
    await append_one(store, new(3, ["channel:a"], time=400, status=PROCESSED))
    assert await store.trim(before_time_ms=200) == 0
    assert await store.horizon("channel:a") == 0
    # keep_last removes filing 1; filing 2 is then first, and old enough. Entry 2 goes too;
    # entry 1, in no index now, is not older than before_time_ms, so it stays for now.
    assert await store.trim(before_time_ms=200, keep_last=2) == 3
    assert await store.horizon("channel:a") == 2
    assert addeds(await store.read(["channel:a"], 0, 10)) == [3]
    assert await store.get(new(1).id) is not None
    assert await store.get(new(2).id) is None


async def test_trim_everything_head_never_goes_back(store: LogStore) -> None:
    for n in range(1, 4):
        await append_one(store, new(n, ["channel:a"], status=PROCESSED))
    assert await store.trim(keep_last=0) == 6
    assert await store.head() == 3
    assert await store.horizon("channel:a") == 3
    assert await store.read(["channel:a"], 0, 10) == ReadResult([], 0, False)
    assert await store.cursor_for_time("channel:a", 0) == 3
    assert (await append_one(store, new(4))).added == 4
    assert addeds(await store.read(["channel:a"], 0, 10)) == [4]
    assert await store.horizon("channel:a") == 3


async def test_trim_unfiled_entries(store: LogStore) -> None:
    old = await append_one(store, new(1, [], time=100, status=PROCESSED))
    recent = await append_one(store, new(2, [], time=500, status=PROCESSED))
    waiting = await append_one(store, new(3, [], time=100))
    # with a time, only entries older than it go
    assert await store.trim(before_time_ms=300) == 1
    assert await store.get(old.id) is None
    assert await store.get(recent.id) == recent
    # without one, any entry in no index goes; waiting entries never do
    assert await store.trim(index_prefix="channel:") == 1
    assert await store.get(recent.id) is None
    assert await store.get(waiting.id) == waiting
    assert await store.trim(keep_last=0) == 0
    assert [e.id for e in await store.waiting(10)] == [waiting.id]
    assert await store.head() == 3


async def test_forget_ids(store: LogStore) -> None:
    await append_one(store, new(1, ["channel:a"], time=100, status=PROCESSED))
    await append_one(store, new(2, ["channel:a"], time=200, status=PROCESSED))
    live = await append_one(store, new(3, ["channel:b"], time=50, status=PROCESSED))
    assert await store.trim(index_prefix="channel:a", keep_last=0) == 4
    # dedupe outlives the entries
    [again] = await store.append([new(1, ["channel:a"], time=100)])
    assert not again.created
    assert again.entry.id == new(1).id
    assert again.entry.status == PROCESSED
    assert await store.head() == 3
    assert await store.forget_ids(100) == 0  # only ids older than the time given
    assert await store.forget_ids(150) == 1  # id 1; id 3 is old but its entry is kept
    assert await store.seen(new(1).id) is None
    assert await store.seen(new(2).id) == PROCESSED
    assert await store.seen(live.id) == PROCESSED
    assert await store.forget_ids(10**9) == 1
    assert await store.seen(new(2).id) is None
    assert await store.get(live.id) == live
    # a forgotten id is new again
    [fresh] = await store.append([new(1, ["channel:a"], time=100)])
    assert fresh.created
    assert fresh.entry.added == 4


async def test_stats(store: LogStore) -> None:
    await store.append(
        [
            new(1, ["channel:a", "user:u"], status=PROCESSED),
            new(2, ["channel:a"], status=PROCESSED),
            new(3, []),
            new(1, ["channel:z"]),  # a duplicate: counts nothing
        ]
    )
    assert await store.stats() == LogStats(head=3, entries=3, ids=3, indexes=2)
    await store.trim(index_prefix="channel:", keep_last=0)
    # entry 2 is in no index; entry 1 still is (user:u); entry 3 is waiting
    assert await store.stats() == LogStats(head=3, entries=2, ids=3, indexes=2)
    await store.forget_ids(10**9)
    assert await store.stats() == LogStats(head=3, entries=2, ids=2, indexes=2)


# -- persistence ---------------------------------------------------------------------------------

INDEXES = ["channel:a", "channel:b", "user:u", "client:u:c"]


async def snapshot(store: LogStore, ids: list[str]) -> dict[str, Any]:
    return {
        "head": await store.head(),
        "stats": await store.stats(),
        "read": await store.read(INDEXES, 0, 1000),
        "each": [await store.read([i], 0, 1000) for i in INDEXES],
        "horizons": [await store.horizon(i) for i in INDEXES],
        "get": [await store.get(i) for i in ids],
        "seen": [await store.seen(i) for i in ids],
        "waiting": await store.waiting(100),
        "cursor": [await store.cursor_for_time(i, 1004) for i in INDEXES],
    }


@pytest.mark.parametrize("backend", ["sqlite", "redis"])  # memory:// keeps nothing by design
async def test_reopen_keeps_everything(backend: str, url: str) -> None:
    entries = [
        new(1, ["channel:a", "user:u"], status=PROCESSED),
        new(2, ["channel:a"], status=PROCESSED),
        new(3, ["channel:a", "client:u:c"]),
        new(4, []),
        new(5, ["channel:a"]),
        new(6, ["channel:b"], status=PROCESSED),  # the newest: trimmed below
    ]
    ids = [e.id for e in entries]
    store = open_store(url)
    try:
        await store.append(entries)
        await store.set_status(ids[2], ERROR)
        await store.set_status(ids[4], PROCESSED)
        assert await store.trim(index_prefix="channel:a", keep_last=2) == 3
        assert await store.trim(index_prefix="channel:b", keep_last=0) == 2
        assert await store.head() == 6
        before = await snapshot(store, ids)
    finally:
        await store.close()
    reopened = open_store(url)
    try:
        assert await snapshot(reopened, ids) == before
        assert before["horizons"] == [2, 6, 0, 0]
        assert before["seen"] == [PROCESSED, PROCESSED, ERROR, WAITING, PROCESSED, PROCESSED]
        [again] = await reopened.append([new(6, ["channel:b"])])
        assert not again.created
        assert (await append_one(reopened, new(7, ["channel:b"]))).added == 7
    finally:
        await reopened.close()
    # and once more, after writing through the reopened store
    third = open_store(url)
    try:
        assert await third.head() == 7
        assert addeds(await third.read(["channel:b"], 0, 10)) == [7]
    finally:
        await third.close()


# -- the model: random appends, reads, status changes and trims --------------------------------


@dataclass
class Model:
    """What a log must answer, computed the simplest way."""

    head: int = 0
    entries: dict[int, Entry] = field(default_factory=dict)  # added → entry
    ids: dict[str, tuple[int, str]] = field(default_factory=dict)  # id → (time, status)
    filings: dict[str, list[int]] = field(default_factory=dict)
    horizons: dict[str, int] = field(default_factory=dict)

    def by_id(self, action_id: str) -> Entry | None:
        return next((e for e in self.entries.values() if e.id == action_id), None)

    def append(self, batch: list[NewEntry]) -> list[Appended]:
        results = []
        for item in batch:
            if item.id in self.ids:
                known = self.by_id(item.id) or Entry.from_new(0, item)
                known.status = self.ids[item.id][1]
                results.append(Appended(known, created=False))
                continue
            self.head += 1
            entry = Entry.from_new(self.head, item)
            entry.indexes = list(entry.indexes)
            self.entries[self.head] = entry
            self.ids[item.id] = (item.time, item.status)
            for index in set(item.indexes):
                self.filings.setdefault(index, []).append(self.head)
            results.append(Appended(entry, created=True))
        return results

    def read(self, indexes: list[str], after: int, limit: int) -> ReadResult:
        found = sorted(
            {a for i in indexes for a in self.filings.get(i, []) if a > after},
        )
        page = [self.entries[a] for a in found[:limit]]
        return ReadResult(page, page[-1].added if page else after, len(found) > limit)

    def set_status(self, action_id: str, status: str) -> None:
        entry = self.by_id(action_id)
        if entry is not None:
            entry.status = status
        if action_id in self.ids:
            self.ids[action_id] = (self.ids[action_id][0], status)

    def waiting(self, limit: int) -> list[Entry]:
        return [self.entries[a] for a in sorted(self.entries) if self.entries[a].status == WAITING][
            :limit
        ]

    def cursor_for_time(self, index: str, time_ms: int) -> int:
        later = [a for a in self.filings.get(index, []) if self.entries[a].time >= time_ms]
        return min(later) - 1 if later else self.head

    def trim(self, prefix: str, before: int | None, keep_last: int | None) -> int:
        removed = 0
        for index, filed in self.filings.items():
            if not index.startswith(prefix):
                continue

            def removable(pos: int, filed: list[int] = filed) -> bool:
                by_count = keep_last is not None and pos < len(filed) - keep_last
                by_time = before is not None and self.entries[filed[pos]].time < before
                return by_count or by_time

            cut = 0
            while cut < len(filed) and removable(cut):
                cut += 1
            if cut:
                self.horizons[index] = max(self.horizons.get(index, 0), filed[cut - 1])
                removed += cut
                del filed[:cut]
        still_filed = {a for filed in self.filings.values() for a in filed}
        for added, entry in list(self.entries.items()):
            if added in still_filed or entry.status == WAITING:
                continue
            if before is None or entry.time < before:
                del self.entries[added]
                removed += 1
        return removed

    def forget_ids(self, before: int) -> int:
        live = {e.id for e in self.entries.values()}
        old = [i for i, (t, _) in self.ids.items() if t < before and i not in live]
        for action_id in old:
            del self.ids[action_id]
        return len(old)

    def stats(self) -> LogStats:
        return LogStats(self.head, len(self.entries), len(self.ids), len(self.filings))


MODEL_INDEXES = ["channel:a", "channel:b", "user:u", "client:u:c"]
MODEL_IDS = 12

new_entries = st.builds(
    lambda n, indexes, time, status: NewEntry(
        id=f"{n} user:client:tab {n}",
        time=time,
        action={"type": "m", "n": n, "t": time},
        indexes=indexes,
        status=status,
    ),
    st.integers(0, MODEL_IDS - 1),
    st.lists(st.sampled_from(MODEL_INDEXES), max_size=3),
    st.integers(0, 50),
    st.sampled_from([WAITING, WAITING, PROCESSED]),
)
statuses = st.sampled_from([PROCESSED, ERROR])
times = st.integers(0, 55)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(new_entries, max_size=4)),
        st.tuples(st.just("append"), st.lists(new_entries, max_size=4)),
        st.tuples(
            st.just("read"),
            st.lists(st.sampled_from([*MODEL_INDEXES, "user:none"]), max_size=4),
            st.integers(0, 25),
            st.integers(0, 6),
        ),
        st.tuples(st.just("status"), st.integers(0, MODEL_IDS - 1), statuses),
        st.tuples(
            st.just("trim"),
            st.sampled_from(["", "channel:", "channel:a", "user:"]),
            st.none() | times,
            st.none() | st.integers(0, 4),
        ),
        st.tuples(st.just("forget"), times),
        st.tuples(st.just("cursor"), st.sampled_from(MODEL_INDEXES), times),
        st.tuples(st.just("waiting"), st.integers(0, 5)),
    ),
    max_size=25,
)


def same_appends(got: list[Appended], want: list[Appended], model: Model) -> None:
    assert [(a.created, a.entry.id, a.entry.status) for a in got] == [
        (a.created, a.entry.id, a.entry.status) for a in want
    ]
    for g, w in zip(got, want, strict=True):
        if w.created or model.by_id(w.entry.id) is not None:
            assert g.entry == w.entry
        # a duplicate of a trimmed entry: only its id and status are known


async def check_against_model(store: LogStore, ops: list[tuple[Any, ...]]) -> None:
    model = Model()
    for op in ops:
        kind, *args = op
        if kind == "append":
            same_appends(await store.append(args[0]), model.append(args[0]), model)
        elif kind == "read":
            assert await store.read(*args) == model.read(*args), op
        elif kind == "status":
            action_id = f"{args[0]} user:client:tab {args[0]}"
            await store.set_status(action_id, args[1])
            model.set_status(action_id, args[1])
        elif kind == "trim":
            prefix, before, keep_last = args
            got = await store.trim(index_prefix=prefix, before_time_ms=before, keep_last=keep_last)
            assert got == model.trim(prefix, before, keep_last), op
        elif kind == "forget":
            assert await store.forget_ids(args[0]) == model.forget_ids(args[0])
        elif kind == "cursor":
            assert await store.cursor_for_time(*args) == model.cursor_for_time(*args), op
        elif kind == "waiting":
            assert await store.waiting(args[0]) == model.waiting(args[0])
    assert await store.head() == model.head
    assert await store.stats() == model.stats()
    for index in [*MODEL_INDEXES, "user:none"]:
        assert await store.horizon(index) == model.horizons.get(index, 0)
        assert await store.read([index], 0, 100) == model.read([index], 0, 100)
    assert await store.read(MODEL_INDEXES, 0, 100) == model.read(MODEL_INDEXES, 0, 100)
    for n in range(MODEL_IDS):
        action_id = f"{n} user:client:tab {n}"
        assert await store.get(action_id) == model.by_id(action_id)
        known = model.ids.get(action_id)
        assert await store.seen(action_id) == (None if known is None else known[1])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
async def test_matches_a_simple_model(
    backend: str, url: str, tmp_path: Path, request: pytest.FixtureRequest, ops: list[Any]
) -> None:
    # a fresh, empty store for every example (``url`` is the one the fixtures made for the test)
    place = tmp_path / uuid.uuid4().hex
    place.mkdir()
    store = open_store(store_url(backend, place, request))
    try:
        await check_against_model(store, ops)
    finally:
        await store.close()
