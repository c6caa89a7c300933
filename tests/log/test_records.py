"""The records API every store offers (``epoch``, ``get/put/add/delete/list_records``), checked the
same way on each backend through the ``store`` / ``url`` / ``backend`` fixtures of ``conftest.py``."""

from __future__ import annotations

import asyncio

import pytest

from logsync.log import LogStore, open_store
from logsync.wallclock import now_ms


async def test_epoch_is_stable_and_differs_between_logs(store: LogStore, url: str) -> None:
    first = await store.epoch()
    assert first and first == await store.epoch()
    other = open_store("memory://")
    try:
        assert await other.epoch() != first
    finally:
        await other.close()


async def test_epoch_survives_reopen_when_the_log_does(backend: str, url: str) -> None:
    store = open_store(url)
    try:
        epoch = await store.epoch()
    finally:
        await store.close()
    reopened = open_store(url)
    try:
        again = await reopened.epoch()
    finally:
        await reopened.close()
    if backend == "memory":
        assert again != epoch  # nothing survives: a new log, a new epoch
    else:
        assert again == epoch


async def test_put_get_replace_delete(store: LogStore) -> None:
    assert await store.get_record("pull", "alice") is None
    await store.put_record("pull", "alice", b"one")
    assert await store.get_record("pull", "alice") == b"one"
    await store.put_record("pull", "alice", b"two")
    assert await store.get_record("pull", "alice") == b"two"
    # kinds are separate collections
    assert await store.get_record("wakeup", "alice") is None
    assert await store.delete_record("pull", "alice") is True
    assert await store.delete_record("pull", "alice") is False
    assert await store.get_record("pull", "alice") is None


async def test_add_record_only_when_absent(store: LogStore) -> None:
    assert await store.add_record("claim", "c1", b"node-a") is True
    assert await store.add_record("claim", "c1", b"node-b") is False
    assert await store.get_record("claim", "c1") == b"node-a"


async def test_concurrent_adds_have_one_winner(store: LogStore) -> None:
    results = await asyncio.gather(
        *(store.add_record("claim", "burst", str(i).encode(), ttl_ms=60_000) for i in range(20))
    )
    assert results.count(True) == 1


async def test_expired_records_are_absent_and_can_be_claimed_again(store: LogStore) -> None:
    await store.put_record("online", "gone", b"x", ttl_ms=30)
    await store.put_record("online", "kept", b"y", ttl_ms=60_000)
    assert await store.get_record("online", "gone") == b"x"
    deadline = now_ms() + 5_000
    while await store.get_record("online", "gone") is not None:
        assert now_ms() < deadline, "a record outlived its TTL by seconds"
        await asyncio.sleep(0.01)
    assert await store.list_records("online") == [("kept", b"y")]
    assert await store.delete_record("online", "gone") is False
    assert await store.add_record("online", "gone", b"z", ttl_ms=60_000) is True
    assert await store.get_record("online", "gone") == b"z"


async def test_list_by_prefix_in_key_order_with_limit(store: LogStore) -> None:
    keys = ["room\x00bob", "room\x00alice", "room2\x00carol", "roo\x00dan", "room\x00émile"]
    for key in keys:
        await store.put_record("wake-channel", key, key.encode())
    listed = await store.list_records("wake-channel", "room\x00")
    assert [k for k, _ in listed] == ["room\x00alice", "room\x00bob", "room\x00émile"]
    assert all(value == key.encode() for key, value in listed)
    assert [k for k, _ in await store.list_records("wake-channel", "room\x00", limit=2)] == [
        "room\x00alice",
        "room\x00bob",
    ]
    everything = await store.list_records("wake-channel")
    assert [k for k, _ in everything] == sorted(keys)
    assert await store.list_records("other") == []


@pytest.mark.parametrize("count", [3])
async def test_records_survive_reopen(backend: str, url: str, count: int) -> None:
    store = open_store(url)
    try:
        for i in range(count):
            await store.put_record("wakeup", f"k{i}", f"v{i}".encode())
    finally:
        await store.close()
    reopened = open_store(url)
    try:
        listed = await reopened.list_records("wakeup")
    finally:
        await reopened.close()
    if backend == "memory":
        assert listed == []
    else:
        assert listed == [(f"k{i}", f"v{i}".encode()) for i in range(count)]
