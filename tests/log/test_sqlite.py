"""What only the SQLite store has to show: WAL and fsync settings, group commit, query plans that
stay on the primary keys of a large log, and no acknowledged append lost to a SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from logsync.log import PROCESSED, UNKNOWN, WAITING, NewEntry, open_store
from logsync.log.sqlite import SqliteStore, lanes, parse_url
from logsync.log.sqlite.queries import (
    COLUMNS,
    MAX_MERGED_INDEXES,
    UNFILED_SQL,
    WAITING_SQL,
    Encoded,
    append,
    decode,
)
from logsync.log.sqlite.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def new(n: int, *indexes: str, time: int | None = None) -> NewEntry:
    return NewEntry(
        id=f"{1000 + n} user:client:tab {n}",
        time=1000 + n if time is None else time,
        action={"type": "t", "n": n},
        indexes=list(indexes),
    )


def encode(entry: NewEntry) -> Encoded:
    """An entry as :meth:`SqliteStore.append` hands it to the SQLite thread."""
    return Encoded(
        entry,
        orjson.dumps(entry.action),
        orjson.dumps(entry.indexes),
        orjson.dumps(entry.exclude_clients),
        list(dict.fromkeys(entry.indexes)),
    )


def url_of(path: Path, options: str = "") -> str:
    return f"sqlite:///{path}{options}"  # an absolute path: four slashes


def opened(url: str) -> SqliteStore:
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = opened(url_of(tmp_path / "log.db"))
    try:
        yield store
    finally:
        await store.close()


# -- URL and settings ----------------------------------------------------------------------------


def test_parse_url() -> None:
    assert parse_url("sqlite:///log.db") == ("log.db", "FULL")
    assert parse_url("sqlite:///data/log.db") == ("data/log.db", "FULL")
    assert parse_url("sqlite:////var/lib/log.db") == ("/var/lib/log.db", "FULL")
    assert parse_url("sqlite:////var/lib/log.db?synchronous=normal") == (
        "/var/lib/log.db",
        "NORMAL",
    )
    assert parse_url("sqlite:///log.db?synchronous=FULL") == ("log.db", "FULL")
    assert parse_url("sqlite://") == (":memory:", "FULL")
    for bad in (
        "sqlite:///log.db?synchronous=off",
        "sqlite:///log.db?sync=full",
        "sqlite://host/log.db",
        "memory://",
    ):
        with pytest.raises(ValueError):
            parse_url(bad)


async def test_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = opened("sqlite:///data/relative.db")
    await relative.append([new(1, "channel:a")])
    await relative.close()
    assert (tmp_path / "data" / "relative.db").exists()
    absolute = opened(url_of(tmp_path / "data" / "relative.db"))
    assert await absolute.head() == 1
    await absolute.close()


def test_opening_fails_early(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        open_store(url_of(tmp_path / "missing-dir" / "log.db"))
    with pytest.raises(ValueError):
        open_store(url_of(tmp_path / "log.db", "?synchronous=maybe"))


async def test_wal_and_synchronous_full_by_default(store: SqliteStore, tmp_path: Path) -> None:
    assert await store.sql("PRAGMA journal_mode") == [("wal",)]
    assert await store.sql("PRAGMA synchronous") == [(2,)]  # FULL
    with sqlite3.connect(tmp_path / "log.db") as other:  # WAL is a property of the file
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_synchronous_normal_on_request(tmp_path: Path) -> None:
    store = opened(url_of(tmp_path / "log.db", "?synchronous=normal"))
    try:
        assert await store.sql("PRAGMA synchronous") == [(1,)]  # NORMAL
        assert await store.sql("PRAGMA journal_mode") == [("wal",)]
    finally:
        await store.close()


async def test_in_memory_url() -> None:
    store = opened("sqlite://")
    try:
        [appended] = await store.append([new(1, "channel:a")])
        assert (await store.read(["channel:a"], 0, 10)).entries == [appended.entry]
    finally:
        await store.close()


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    await opened(url_of(tmp_path / "log.db")).close()
    with sqlite3.connect(tmp_path / "log.db") as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(RuntimeError, match="newer"):
        open_store(url_of(tmp_path / "log.db"))


# -- group commit, order, failures -----------------------------------------------------------------


async def test_group_commit_batches_concurrent_appends(store: SqliteStore) -> None:
    await store.append([new(0, "channel:a")])
    assert store.commits == 1
    await store.read(["channel:a"], 0, 10)
    await store.head()
    assert store.commits == 1  # reads commit nothing
    results = await asyncio.gather(*(store.append([new(n, "channel:a")]) for n in range(1, 501)))
    # added follows call order, and far fewer transactions than calls
    assert [r[0].entry.added for r in results] == list(range(2, 502))
    assert [r[0].entry.id for r in results] == [new(n).id for n in range(1, 501)]
    assert store.commits - 1 <= 50, store.commits
    assert await store.head() == 501


# Indexes enough that a read goes to the SQLite thread (up to MAX_MERGED_INDEXES, the caller's
# thread answers it at once from the last commit).
THREAD_READ = ["channel:a"] + [f"channel:other{i}" for i in range(MAX_MERGED_INDEXES)]


def hold(store: SqliteStore) -> tuple[asyncio.Future[None], threading.Event, threading.Event]:
    """Occupy the SQLite thread with a bulk write until the returned ``release`` is set, so
    the calls made meanwhile queue up together: ``(call, started, release)``."""
    started, release = threading.Event(), threading.Event()

    def wait(conn: sqlite3.Connection) -> None:
        started.set()
        assert release.wait(10)

    return asyncio.ensure_future(store._call(wait, write=True)), started, release


async def test_mixed_calls_in_one_batch_keep_call_order(store: SqliteStore) -> None:
    await store.append([new(1, "channel:a")])
    held, started, release = hold(store)
    await asyncio.to_thread(started.wait, 10)
    # tasks start in the order they are created: that is the call order
    start = asyncio.ensure_future
    calls = [
        start(store.append([new(2, "channel:a")])),
        start(store.set_status(new(1).id, PROCESSED)),
        reading := start(store.read(THREAD_READ, 0, 10)),
        start(store.append([new(3, "channel:a")])),
        seeing := start(store.seen(new(1).id)),
    ]
    await asyncio.sleep(0)  # every call queued
    release.set()
    await asyncio.gather(held, *calls)
    read, seen = reading.result(), seeing.result()
    # the quick calls (one entry, one status, one key) keep their order among themselves, and
    # run before the range read queued between them
    assert seen == PROCESSED
    assert await store.head() == 3
    assert [e.added for e in read.entries] == [1, 2, 3]
    assert read.entries[0].status == PROCESSED


async def test_head_answers_at_once_with_the_last_commit(store: SqliteStore) -> None:
    """``head`` is read on the caller's thread: it does not wait behind a busy SQLite thread,
    and it is the head of the last commit (an append still queued is not in it)."""
    await store.append([new(1, "channel:a")])
    held, started, release = hold(store)
    await asyncio.to_thread(started.wait, 10)
    queued = asyncio.ensure_future(store.append([new(2, "channel:a")]))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(store.head(), 1) == 1
    assert not queued.done()
    release.set()
    await asyncio.gather(held, queued)
    assert await store.head() == 2


async def test_a_read_comes_back_as_the_entries_stored(store: SqliteStore) -> None:
    """The read's one JSON row splices the stored JSON in as it is: every field comes back as
    a row-by-row read decodes it (quotes, escapes, non-ASCII, no or some subprotocol)."""
    tricky = {"type": "t", "text": 'a "quote" \\ \u2028 é 😀 %d', "n": [1, 2.5, None, True]}
    await store.append(
        [
            NewEntry("1 a:b:c 0", 1, tricky, ["channel:a", "user:u"], ["x:1"], 3),
            NewEntry('2 "odd":b 7', 2, {"type": "u"}, ["channel:a"]),
        ]
    )
    read = await store.read(["channel:a", "user:u"], 0, 10)
    assert store._reader is not None
    rows = store._reader.execute(f"SELECT {COLUMNS} FROM entries ORDER BY added").fetchall()
    assert [vars_of(e) for e in read.entries] == [vars_of(decode(row)) for row in rows]
    assert read.entries[0].action == tricky and read.entries[0].subprotocol == 3
    assert read.entries[1].subprotocol is None and read.entries[1].exclude_clients == []
    assert (await store.read(["channel:none"], 0, 10)).entries == []


async def test_a_read_longer_than_one_sqlite_string_comes_back_row_by_row(
    store: SqliteStore,
) -> None:
    """A page too long for SQLite's longest string (large actions) is not refused: the read
    falls back from the one JSON row to the rows one by one."""
    big = [
        NewEntry(f"{n} a:b:c 0", n, {"type": "t", "p": "x" * 1200}, ["user:u"]) for n in (1, 2, 3)
    ]
    await store.append(big)
    assert store._reader is not None
    store._reader.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 3000)  # one action fits, three do not
    await store._call(lambda conn: conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 3000))
    read = await store.read(["user:u"], 0, 10)
    assert [e.added for e in read.entries] == [1, 2, 3]
    assert all(e.action == b.action for e, b in zip(read.entries, big, strict=True))


def vars_of(entry: Any) -> tuple[Any, ...]:
    return (
        entry.added,
        entry.id,
        entry.time,
        entry.action,
        entry.indexes,
        entry.exclude_clients,
        entry.subprotocol,
        entry.status,
    )


async def test_read_answers_at_once_with_the_last_commit(store: SqliteStore) -> None:
    """A read of up to MAX_MERGED_INDEXES indexes runs on the caller's thread: it does not wait
    behind a busy SQLite thread, and it sees the last commit (not an append still queued);
    one of more indexes waits its turn on the thread."""
    await store.append([new(1, "channel:a"), new(2, "user:u")])
    held, started, release = hold(store)
    await asyncio.to_thread(started.wait, 10)
    queued = asyncio.ensure_future(store.append([new(3, "channel:a")]))
    await asyncio.sleep(0)
    here = await asyncio.wait_for(store.read(["channel:a", "user:u"], 0, 10), 1)
    assert [e.added for e in here.entries] == [1, 2]
    assert here.entries[1].action == {"type": "t", "n": 2}
    there = asyncio.ensure_future(store.read(THREAD_READ, 0, 10))
    await asyncio.sleep(0)  # a read answered here would be done now
    assert not there.done() and not queued.done()
    release.set()
    await asyncio.gather(held, queued)
    assert [e.added for e in (await there).entries] == [1, 3]
    assert [e.added for e in (await store.read(["channel:a"], 0, 10)).entries] == [1, 3]


async def test_head_in_memory_goes_through_the_thread(tmp_path: Path) -> None:
    """``sqlite://`` has no second connection: the SQLite thread answers ``head``."""
    memory = opened("sqlite://")
    try:
        await memory.append([new(1, "channel:a")])
        assert memory._reader is None
        assert await memory.head() == 1
    finally:
        await memory.close()


async def test_quick_calls_go_ahead_of_bulk_calls(store: SqliteStore) -> None:
    held, started, release = hold(store)
    await asyncio.to_thread(started.wait, 10)
    start = asyncio.ensure_future
    backlog = start(store.append([new(1, "user:u"), new(2, "user:u")]))  # bulk: two entries
    reading = start(store.read(["user:u", *THREAD_READ], 0, 10))  # bulk: a range read
    live = start(store.append([new(3, "channel:a")]))  # quick, queued last
    await asyncio.sleep(0)
    release.set()
    await held
    [quick] = await live
    assert quick.entry.added == 1  # appended first, in its own transaction
    assert [a.entry.added for a in await backlog] == [2, 3]
    # the read ran after both: calls made concurrently may run in either order
    assert [e.added for e in (await reading).entries] == [1, 2, 3]


def record_into(order: list[str], name: str) -> Any:
    """A store call that only notes its name, in the order calls run."""
    return lambda conn: order.append(name)


async def bulk_batch_running(
    store: SqliteStore, order: list[str]
) -> tuple[threading.Event, list[asyncio.Future[Any]]]:
    """Three bulk writes queued behind ``hold`` and released as one batch, its first call now
    running inside the SQLite thread until the returned event is set; the futures include the
    holding call."""
    held, started, release = hold(store)
    await asyncio.to_thread(started.wait, 10)
    running, go_on = threading.Event(), threading.Event()

    def first(conn: sqlite3.Connection) -> None:
        order.append("first")
        running.set()
        assert go_on.wait(10)

    start = asyncio.ensure_future
    calls: list[asyncio.Future[Any]] = [held, start(store._call(first, write=True))]
    calls += [start(store._call(record_into(order, f"bulk{n}"), write=True)) for n in (2, 3)]
    await asyncio.sleep(0)
    release.set()  # the three bulk calls now run as one batch
    await asyncio.to_thread(running.wait, 10)
    return go_on, calls


async def test_a_bulk_batch_commits_early_for_a_quick_call(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "YIELD_AFTER_S", 0.0)
    order: list[str] = []
    go_on, calls = await bulk_batch_running(store, order)
    commits = store.commits
    quick = asyncio.ensure_future(store._call(record_into(order, "quick"), write=True, quick=True))
    await asyncio.sleep(0)
    go_on.set()
    await asyncio.gather(quick, *calls)
    assert order == ["first", "quick", "bulk2", "bulk3"]
    assert store.commits == commits + 3  # "first", then "quick", then the rest


async def test_a_quick_read_does_not_make_a_bulk_batch_commit_early(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "YIELD_AFTER_S", 0.0)
    await store.append([new(1, "channel:a")])
    order: list[str] = []
    go_on, calls = await bulk_batch_running(store, order)
    commits = store.commits
    seeing = asyncio.ensure_future(store.seen(new(1).id))  # a quick read
    await asyncio.sleep(0)
    go_on.set()
    await asyncio.gather(*calls)
    assert await seeing == WAITING
    assert order == ["first", "bulk2", "bulk3"]
    assert store.commits == commits + 1  # one transaction for the three


@pytest.mark.parametrize(("max_wait", "expected"), [(0.0, "bulk first"), (1000.0, "quick first")])
async def test_bulk_calls_take_turns_with_a_stream_of_quick_calls(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, max_wait: float, expected: str
) -> None:
    monkeypatch.setattr(lanes, "BULK_MAX_WAIT_S", max_wait)
    held, started, release = hold(store)
    await asyncio.to_thread(started.wait, 10)
    order: list[str] = []
    running, go_on = threading.Event(), threading.Event()

    def first(conn: sqlite3.Connection) -> None:
        order.append("quick1")
        running.set()
        assert go_on.wait(10)

    start = asyncio.ensure_future
    calls = [start(store._call(first, write=True, quick=True))]
    calls.append(start(store._call(lambda conn: order.append("bulk"), write=True)))
    await asyncio.sleep(0)
    release.set()
    await asyncio.to_thread(running.wait, 10)
    # another quick call arrives while the first runs: the bulk call goes first once it is
    # overdue (here: at once), else after the quick ones
    calls.append(start(store._call(lambda conn: order.append("quick2"), write=True, quick=True)))
    await asyncio.sleep(0)
    go_on.set()
    await asyncio.gather(held, *calls)
    if expected == "bulk first":
        assert order == ["quick1", "bulk", "quick2"]
    else:
        assert order == ["quick1", "quick2", "bulk"]


async def test_seen_now_reads_committed_ids_without_waiting_for_the_thread(
    store: SqliteStore,
) -> None:
    await store.append([new(1, "channel:a")])
    started, release = threading.Event(), threading.Event()

    def append_and_wait(conn: sqlite3.Connection) -> list[Any]:
        appended = append(conn, [encode(new(2, "channel:a"))])
        started.set()
        assert release.wait(10)
        return appended

    # the thread is inside a transaction that has appended new(2) and not committed it
    appending = asyncio.ensure_future(store._call(append_and_wait, write=True))
    await asyncio.to_thread(started.wait, 10)
    assert store.seen_now(new(1).id) == WAITING  # answered while the thread is busy
    assert store.seen_now(new(2).id) is None  # not committed: not seen yet
    release.set()
    await appending
    assert store.seen_now(new(2).id) == WAITING
    await store.set_status(new(2).id, PROCESSED)
    assert store.seen_now(new(2).id) == PROCESSED


async def test_seen_now_in_memory_leaves_it_to_seen() -> None:
    store = opened("sqlite://")
    try:
        await store.append([new(1, "channel:a")])
        assert store.seen_now(new(1).id) is UNKNOWN
        assert await store.seen(new(1).id) == WAITING
    finally:
        await store.close()
    assert store.seen_now(new(1).id) is UNKNOWN  # closed


async def test_a_failing_call_does_not_undo_its_batch(store: SqliteStore) -> None:
    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta VALUES ('junk', 1)")
        raise ValueError("boom")

    calls = [
        store.append([new(1, "channel:a")]),
        store._call(fails, write=True),
        store.append([new(2, "channel:a")]),
    ]
    first, failed, second = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(failed, ValueError)
    assert isinstance(first, list)
    assert isinstance(second, list)
    assert [first[0].entry.added, second[0].entry.added] == [1, 2]
    assert await store.sql("SELECT value FROM meta WHERE key = 'junk'") == []
    assert [e.added for e in (await store.read(["channel:a"], 0, 10)).entries] == [1, 2]
    # an action that cannot be stored fails in the caller and leaves the log as it was
    with pytest.raises(TypeError):
        await store.append([NewEntry("9 a:b:c 9", 9, {"type": "t", "bad": {1, 2}}, ["channel:a"])])
    assert await store.head() == 2


async def test_savepoints_only_once_a_call_of_the_batch_failed(store: SqliteStore) -> None:
    statements: list[str] = []
    await store._call(lambda conn: conn.set_trace_callback(statements.append), write=True)

    def fails(conn: sqlite3.Connection) -> None:
        raise ValueError("boom")

    await asyncio.gather(*(store.append([new(n, "channel:a")]) for n in range(1, 4)))
    assert statements and not any("SAVEPOINT" in s for s in statements)
    statements.clear()
    calls = [
        store.append([new(4, "channel:a")]),
        store._call(fails, write=True),
        store.append([new(5, "channel:a")]),
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[1], ValueError)
    # the batch ran once as it came, was rolled back, and ran again with a savepoint per write
    assert "ROLLBACK" in statements and any("SAVEPOINT" in s for s in statements)
    assert [e.added for e in (await store.read(["channel:a"], 0, 10)).entries] == [1, 2, 3, 4, 5]
    await store._call(lambda conn: conn.set_trace_callback(None), write=True)


async def test_close_finishes_pending_work(tmp_path: Path) -> None:
    store = opened(url_of(tmp_path / "log.db"))
    pending = [asyncio.ensure_future(store.append([new(n, "channel:a")])) for n in range(50)]
    await asyncio.ensure_future(store.close())  # tasks start in order: the appends queue first
    assert all(task.done() and not task.exception() for task in pending)
    with pytest.raises(RuntimeError, match="closed"):
        await store.head()
    await store.close()  # closing twice is harmless
    reopened = opened(url_of(tmp_path / "log.db"))
    try:
        assert await reopened.head() == 50
    finally:
        await reopened.close()


# -- a large log -----------------------------------------------------------------------------------


def plan_uses_primary_keys(plan: list[str]) -> None:
    for step in plan:
        # no table is scanned; the one-row JSON read scans its subquery's rows (at most limit)
        assert not step.startswith("SCAN") or step.startswith("SCAN (subquery-"), plan
        assert "TEMP B-TREE" not in step, plan
    searches = [step for step in plan if step.startswith("SEARCH")]
    assert "SEARCH filings USING PRIMARY KEY (idx=? AND added>?)" in searches, plan
    assert all("PRIMARY KEY" in step for step in searches), plan


async def test_large_log_reads_a_small_index_through_the_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    store = opened(url_of(path))
    total = 100_000
    for start in range(0, total, 20_000):
        await store.append(
            [
                new(n, "channel:big", *(("channel:small", "user:u") if n % 10_000 == 0 else ()))
                for n in range(start, start + 20_000)
            ]
        )
    await store.set_status(new(50_000).id, PROCESSED)
    await store.close()  # runs PRAGMA optimize
    with sqlite3.connect(path) as conn:  # planner statistics must not change the plan either
        conn.execute("ANALYZE")
    store = opened(url_of(path))
    try:
        assert await store.head() == total
        for indexes in (["channel:small"], ["channel:small", "user:u"], ["user:u", "channel:big"]):
            plan_uses_primary_keys(await store.explain_read(indexes, 40_000, 3))
        small = await store.read(["channel:small", "user:u"], 40_000, 3)
        assert [e.added for e in small.entries] == [40_001, 50_001, 60_001]  # n + 1
        assert small.entries[1].status == PROCESSED
        assert small.more
        big = await store.read(["user:u", "channel:big"], 99_990, 100)
        assert [e.added for e in big.entries] == list(range(99_991, 100_001))
        # waiting entries and entries in no index are found through their partial indexes
        for sql, params in ((WAITING_SQL, (5,)), (UNFILED_SQL + " AND time < ?", (5,))):
            plan = [row[3] for row in await store.sql("EXPLAIN QUERY PLAN " + sql, params)]
            assert plan in (
                ["SCAN entries USING INDEX entries_waiting"],
                ["SCAN entries USING INDEX entries_unfiled"],
            )
    finally:
        await store.close()


# -- crashes -------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from logsync.log import NewEntry, open_store

    async def worker(store, w):
        for n in range(10**9):
            i = f"{w}-{n}"
            entry = NewEntry(f"1 crash:c:{w} {n}", 1, {"type": "t", "i": i}, ["channel:crash"])
            await store.append([entry])
            sys.stdout.write(entry.id + "\\n")
            sys.stdout.flush()

    async def main():
        store = open_store(sys.argv[1])
        await asyncio.gather(*(worker(store, w) for w in range(32)))

    asyncio.run(main())
    """
)


async def test_sigkill_mid_batch_loses_nothing_acknowledged(tmp_path: Path) -> None:
    url = url_of(tmp_path / "crash.db")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < 2000:
            line = await child.stdout.readline()
            if not line:
                stderr = await child.stderr.read() if child.stderr else b""
                pytest.fail(f"the child ended early: {stderr.decode()}")
            acknowledged.append(line.decode().rstrip("\n"))
        child.send_signal(signal.SIGKILL)  # while 32 appends are in flight
        rest, _ = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == -signal.SIGKILL
    acknowledged += [line for line in rest.decode().split("\n")[:-1]]  # complete lines only
    store = opened(url)
    try:
        head = await store.head()
        assert head >= len(acknowledged)
        everything = await store.read(["channel:crash"], 0, head + 1)
        assert [e.added for e in everything.entries] == list(range(1, head + 1))
        kept = {e.id for e in everything.entries}
        missing = [i for i in acknowledged if i not in kept]
        assert missing == []
        for action_id in acknowledged[:: max(1, len(acknowledged) // 50)]:
            assert await store.seen(action_id) is not None
    finally:
        await store.close()


async def test_a_broken_thread_fails_calls_instead_of_hanging(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(conn: sqlite3.Connection, batch: list[Any]) -> None:
        raise AssertionError("a bug")

    monkeypatch.setattr(store._writer, "_execute", broken)
    calls = [asyncio.ensure_future(store.get(f"{n} x:1:1 0")) for n in range(3)]
    closing = asyncio.ensure_future(store.close())
    for call in calls:
        with pytest.raises(RuntimeError, match="thread failed"):
            await call
    await closing
    with pytest.raises(RuntimeError, match="closed"):
        await store.head()
    assert "SQLite thread" in caplog.text


async def test_sql_is_read_only(store: SqliteStore) -> None:
    with pytest.raises(sqlite3.OperationalError):
        await store.sql("DELETE FROM meta")
    assert await store.head() == 0
    assert await store.sql("SELECT COUNT(*) FROM meta") == [(3,)]  # schema_version, head, epoch


async def test_two_stores_on_one_file_share_one_sequence(tmp_path: Path) -> None:
    first, second = opened(url_of(tmp_path / "log.db")), opened(url_of(tmp_path / "log.db"))
    try:
        results = await asyncio.gather(
            *(
                (first if n % 2 else second).append([new(n, "channel:a"), new(n + 1000, "user:u")])
                for n in range(100)
            )
        )
        positions = sorted(a.entry.added for r in results for a in r)
        assert positions == list(range(1, 201))
        assert await first.head() == await second.head() == 200
        [again] = await first.append([new(0, "channel:a")])  # appended through the other one
        assert not again.created
    finally:
        await first.close()
        await second.close()
