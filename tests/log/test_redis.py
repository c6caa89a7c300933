"""What only the Redis store has to show: one script call per append, keys under the prefix, several
nodes sharing one log, published entries, riding over a Redis restart, and (as a model check)
the same answers as the memory store for random sequences of calls."""

from __future__ import annotations

import asyncio
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import redis.asyncio.connection

import logsync.log.redis as redis_module
from logsync.log import MemoryStore, NewEntry, open_store
from logsync.log.entry import PROCESSED, WAITING
from logsync.log.redis import RedisStore, StoreUnavailable, decode_published, parse_url
from logsync.log.store import LogStore
from tests.support.redis import start_redis

OpenStore = Callable[..., RedisStore]


def new(n: int, *indexes: str, time: int = 1000, status: str = WAITING) -> NewEntry:
    return NewEntry(
        id=f"{time} u:c:t {n}",
        time=time,
        action={"type": "t", "n": n, "f": 1.5, "nested": {"l": [1, "x", None, True]}},
        indexes=list(indexes),
        exclude_clients=["u:c"] if n % 2 else [],
        subprotocol=n if n % 3 else None,
        status=status,
    )


@pytest.fixture
def prefixed(redis_url: str) -> Callable[[], str]:
    """Makes URLs of fresh, empty logs on the session's Redis."""
    return lambda: f"{redis_url}?prefix=t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def open_redis() -> AsyncIterator[OpenStore]:
    """Opens RedisStores and closes them after the test."""
    opened: list[RedisStore] = []

    def opener(url: str) -> RedisStore:
        store = open_store(url)
        assert isinstance(store, RedisStore)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain Redis client on the session's Redis, to look behind the store's back."""
    plain = redis.asyncio.Redis.from_url(redis_url)
    yield plain
    await plain.aclose()


def test_url_prefix_is_taken_out_and_other_options_kept() -> None:
    assert parse_url("redis://h:1/2?prefix=abc&socket_timeout=3") == (
        "redis://h:1/2?socket_timeout=3",
        "abc",
    )
    assert parse_url("redis://h:1/0") == ("redis://h:1/0", "logsync")
    with pytest.raises(ValueError, match="empty prefix"):
        parse_url("redis://h/0?prefix=")


async def command_calls(client: redis.asyncio.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_append_is_one_script_call_per_batch(
    prefixed: Callable[[], str],
    open_redis: OpenStore,
    client: redis.asyncio.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = open_redis(prefixed())
    await store.append([new(0, "channel:warm")])  # loads the script, opens the connection
    before = await command_calls(client)
    sent: list[Any] = []  # every request that leaves the store's client, pipelines included
    send = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def spy(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        await send(self, command, check_health)

    monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", spy)
    for size in (1, 7, 100):
        results = await store.append(
            [new(size * 1000 + i, "channel:a", "user:u") for i in range(size)]
        )
        assert all(result.created for result in results)
    monkeypatch.undo()
    after = await command_calls(client)
    assert len(sent) == 3
    assert after["evalsha"] - before["evalsha"] == 3  # (commands the script runs count too)
    assert after.get("eval", 0) == before.get("eval", 0)
    assert await store.head() == 1 + 1 + 7 + 100


async def test_every_key_and_channel_starts_with_the_prefix(
    prefixed: Callable[[], str], open_redis: OpenStore, client: redis.asyncio.Redis
) -> None:
    url = prefixed()
    store = open_redis(url)
    prefix = store.prefix + ":"
    keys_before = set(await client.keys("*"))
    channels: list[bytes] = []
    async with client.pubsub() as pubsub:
        await pubsub.psubscribe("*")
        async with asyncio.timeout(10):
            assert (await anext(pubsub.listen()))["type"] == "psubscribe"
        results = await store.append([new(i, "channel:a", f"user:{i % 3}") for i in range(10)])
        await store.append([new(100, "node:n:c:t")])
        await store.set_status(results[0].entry.id, PROCESSED)
        await store.trim(keep_last=1)
        await store.trim(before_time_ms=2000)
        await store.forget_ids(2000)
        await store.read(["channel:a", "user:1"], 0, 5)
        await store.cursor_for_time("channel:a", 0)
        await store.stats()
        async with asyncio.timeout(10):
            async for message in pubsub.listen():
                channels.append(message["channel"])
                if message["channel"] == f"{prefix}pub:node:n:c:t".encode():
                    break
    new_keys = set(await client.keys("*")) - keys_before
    assert new_keys  # the log wrote something (the entries are trimmed, the ids stay)
    assert all(key.startswith(prefix.encode()) for key in new_keys), new_keys
    assert len(channels) == 10 * 2 + 1
    assert all(channel.startswith(prefix.encode()) for channel in channels)


async def test_two_nodes_share_one_gapless_order_and_dedupe_each_other(
    prefixed: Callable[[], str], open_redis: OpenStore
) -> None:
    url = prefixed()
    node_a, node_b = open_redis(url), open_redis(url)
    # A appends ids 0..299, B ids 150..449, both in batches of 3 from 25 concurrent tasks each.
    batches_a = [
        [new(n, "channel:c", f"user:{n % 5}") for n in range(i, i + 3)] for i in range(0, 300, 3)
    ]
    batches_b = [
        [new(n, "channel:c", f"user:{n % 5}") for n in range(i, i + 3)] for i in range(150, 450, 3)
    ]

    async def run(store: RedisStore, batches: list[list[NewEntry]], worker: int) -> list[Any]:
        return [result for batch in batches[worker::25] for result in await store.append(batch)]

    results = await asyncio.gather(
        *(run(node_a, batches_a, w) for w in range(25)),
        *(run(node_b, batches_b, w) for w in range(25)),
    )
    flat = [result for part in results for result in part]
    created = {r.entry.id: r.entry.added for r in flat if r.created}
    assert len(created) == 450  # each id appended exactly once across the two nodes
    assert sorted(created.values()) == list(range(1, 451))  # distinct, gapless
    for result in flat:
        assert result.entry.added == created[result.entry.id]  # duplicates answer the first copy
    assert sum(not r.created for r in flat) == 150
    assert await node_a.head() == await node_b.head() == 450
    page = await node_b.read(["channel:c"], 0, 1000)
    assert [e.added for e in page.entries] == list(range(1, 451))
    assert (page.next_cursor, page.more) == (450, False)


async def test_a_published_payload_decodes_to_the_appended_entry(
    prefixed: Callable[[], str], open_redis: OpenStore, client: redis.asyncio.Redis
) -> None:
    store = open_redis(prefixed())
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(store.channel("channel:p"), store.channel("user:p"))
        async with asyncio.timeout(10):
            listen = pubsub.listen()
            assert [(await anext(listen))["type"] for _ in range(2)] == ["subscribe"] * 2
            appended = await store.append([new(1, "channel:p", "user:p"), new(2, "user:p")])
            received = [await anext(listen) for _ in range(3)]
    channels = [m["channel"].decode().removeprefix(store.prefix + ":pub:") for m in received]
    assert channels == ["channel:p", "user:p", "user:p"]
    entries = [decode_published(m["data"]) for m in received]
    assert entries == [appended[0].entry, appended[0].entry, appended[1].entry]
    assert entries[2] == await store.get(appended[1].entry.id)


async def test_a_retried_append_call_reports_what_the_first_attempt_did(
    prefixed: Callable[[], str], open_redis: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py re-sends a command whose reply was lost; the call tag makes the retry say
    ``created`` for what that same call created (and still ``False`` for in-batch duplicates)."""
    store = open_redis(prefixed())
    monkeypatch.setattr(redis_module.os, "urandom", lambda n: b"\x01" * n)
    batch = [new(1, "channel:r"), new(1, "channel:r"), new(2, "channel:r")]
    first = await store.append(batch)
    again = await store.append(batch)  # same tag: what a retry of the same call sends
    assert [r.created for r in first] == [True, False, True]
    assert again == first
    monkeypatch.undo()
    other = await store.append(batch)  # another call with the same ids
    assert [r.created for r in other] == [False, False, False]
    assert [r.entry.added for r in other] == [1, 1, 2]
    assert await store.head() == 2


async def test_trim_keeps_waiting_entries_and_head(
    prefixed: Callable[[], str], open_redis: OpenStore
) -> None:
    store = open_redis(prefixed())
    done = await store.append([new(i, "channel:x", status=PROCESSED) for i in range(3)])
    waiting = await store.append([new(10, "channel:x"), new(11)])
    assert await store.trim(keep_last=0, before_time_ms=10**15) == 3 + 3 + 1
    assert await store.head() == 5
    assert await store.horizon("channel:x") == 4
    assert await store.waiting(10) == [w.entry for w in waiting]
    assert await store.get(done[0].entry.id) is None
    assert await store.seen(done[0].entry.id) == PROCESSED
    assert (await store.append([new(0, "channel:x")]))[0].created is False
    assert await store.forget_ids(10**15) == 3
    assert await store.seen(done[0].entry.id) is None
    assert (await store.append([new(0, "channel:x")]))[0].entry.added == 6


async def test_the_store_rides_over_a_redis_restart(tmp_path: Path, open_redis: OpenStore) -> None:
    server = start_redis(tmp_path / "redis", "--appendonly", "yes")
    try:
        store = open_redis(f"{server.url}?prefix=restart")
        first = await store.append([new(i, "channel:r") for i in range(5)])
        await store.set_status(first[0].entry.id, PROCESSED)
        first[0].entry.status = PROCESSED
        server.restart()
        # The pooled connection is dead and the script cache empty: both must heal by themselves.
        page = await store.read(["channel:r"], 0, 10)
        assert page.entries == [r.entry for r in first]
        assert (await store.append([new(0, "channel:r")]))[0].created is False
        assert (await store.append([new(9, "channel:r")]))[0].entry.added == 6
        assert await store.seen(first[0].entry.id) == PROCESSED
    finally:
        server.stop()


async def test_an_unreachable_redis_raises_store_unavailable_until_it_is_back(
    tmp_path: Path,
) -> None:
    server = start_redis(tmp_path / "redis", "--appendonly", "yes")
    store = RedisStore(f"{server.url}?prefix=down", retries=1)
    try:
        await store.append([new(1, "channel:x")])
        server.stop()
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:\d+ unavailable"):
            await store.append([new(2, "channel:x")])
        with pytest.raises(StoreUnavailable):
            await store.read(["channel:x"], 0, 10)
        server.start()
        assert (await store.append([new(2, "channel:x")]))[0].entry.added == 2
    finally:
        await store.close()
        server.stop()


async def test_a_redis_that_never_answered_raises_store_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        store = RedisStore(f"redis://127.0.0.1:{sock.getsockname()[1]}/0", retries=1)
        try:
            with pytest.raises(StoreUnavailable, match=r"unavailable: .*(refused|connect)"):
                await store.head()
        finally:
            await store.close()


# --- model check: RedisStore answers exactly like MemoryStore ------------------------------------

INDEXES = ["channel:a", "channel:b", "channel:*[x]", "user:1", "client:1:c", "node:1:c:t"]
PREFIXES = ["", "channel:", "channel:*", "user:", "node:", "nothing"]


def random_calls(
    rng: random.Random, count: int
) -> Iterator[tuple[str, Callable[[LogStore], Awaitable[Any]]]]:
    """Random calls drawn so that ids repeat, indexes overlap and trims hit."""
    ids = [f"{t} u:c:t 0" for t in range(0, 200, 7)]
    clock = 0
    for _ in range(count):
        op = rng.choice(["append"] * 5 + ["read"] * 3 + ["misc"] * 3 + ["trim", "forget"])
        if op == "append":
            batch = []
            for _ in range(rng.randint(1, 4)):
                clock += rng.randint(-20, 40)
                batch.append(
                    NewEntry(
                        id=rng.choice(ids),
                        time=clock,
                        action={"type": "a", "v": rng.random()},
                        indexes=rng.sample(INDEXES, rng.randint(0, 3)) * rng.randint(1, 2),
                        status=rng.choice([WAITING, WAITING, PROCESSED]),
                    )
                )
            yield "append", lambda s, b=batch: s.append(b)
        elif op == "read":
            indexes = rng.sample([*INDEXES, "channel:none"], rng.randint(1, 3))
            after, limit = rng.randint(-1, 30), rng.randint(0, 6)
            yield (
                f"read {indexes} {after} {limit}",
                lambda s, i=indexes, a=after, n=limit: s.read(i, a, n),
            )
        elif op == "misc":
            action_id, index, time = rng.choice(ids), rng.choice(INDEXES), rng.randint(-10, 400)
            limit = rng.randint(0, 8)
            status = rng.choice([PROCESSED, "error", WAITING])
            yield from [
                ("get", lambda s, i=action_id: s.get(i)),
                ("seen", lambda s, i=action_id: s.seen(i)),
                ("set_status", lambda s, i=action_id, st=status: s.set_status(i, st)),
                ("waiting", lambda s, n=limit: s.waiting(n)),
                ("cursor_for_time", lambda s, i=index, t=time: s.cursor_for_time(i, t)),
                ("horizon", lambda s, i=index: s.horizon(i)),
                ("head", lambda s: s.head()),
                ("stats", lambda s: s.stats()),
            ]
        elif op == "trim":
            kwargs = {
                "index_prefix": rng.choice(PREFIXES),
                "before_time_ms": rng.choice([None, rng.randint(0, 400)]),
                "keep_last": rng.choice([None, rng.randint(0, 4)]),
            }
            yield f"trim {kwargs}", lambda s, k=kwargs: s.trim(**k)
        else:
            before = rng.randint(0, 400)
            yield f"forget_ids {before}", lambda s, b=before: s.forget_ids(b)


@pytest.mark.parametrize("seed", range(12))
async def test_same_answers_as_the_memory_store(
    seed: int, prefixed: Callable[[], str], open_redis: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "PAGE", 2)  # every paged loop takes several turns
    memory, store = MemoryStore(), open_redis(prefixed())
    for step, (name, call) in enumerate(random_calls(random.Random(seed), 150)):
        expected, got = await call(memory), await call(store)
        assert got == expected, f"step {step}: {name}"
