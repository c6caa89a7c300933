"""Long-poll on one in-process node: woken by an action another request pushes, the timeout
with the same cursor, a newer request of the same client ending an older waiting one, and
shutdown answering a waiting request."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from logsync.engine import ServerNode
from tests.pull.conftest import Puller
from tests.support.deadline import Deadline

pytestmark = pytest.mark.timeout(60)

Client = TestClient[Any, Any]


async def until_waiting(node: ServerNode, count: int = 1, seconds: float = 10) -> None:
    """Poll the waiting-long-polls gauge until ``count`` requests wait."""
    deadline = Deadline(seconds)
    while node.metrics.pull_waiting != count:
        deadline.left()
        await asyncio.sleep(0.005)


async def test_long_poll_is_woken_by_an_action_pushed_by_another_request(
    client: Client, node: ServerNode
) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "11:laptop")
    await reader.sync(subscribe=[{"channel": "rooms/poll"}])
    started = time.monotonic()
    waiting = asyncio.ensure_future(reader.sync(wait=20))
    await until_waiting(node)
    pushed = sender.action({"type": "rooms/add", "room": "poll", "text": "wake"})
    await sender.sync(actions=[pushed])
    page = await asyncio.wait_for(waiting, 10)
    assert [a["text"] for a, _ in page["actions"]] == ["wake"]
    assert time.monotonic() - started < 10
    assert node.metrics.pull_waiting == 0


async def test_long_poll_ignores_entries_not_for_the_client(
    client: Client, node: ServerNode
) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "12:tablet")
    await reader.sync(subscribe=[{"channel": "tasks", "filter": {"done": False}}])
    waiting = asyncio.ensure_future(reader.sync(wait=20))
    await until_waiting(node)
    # filtered out, another user's, its own channel's other room: none wakes it for good
    await sender.sync(actions=[sender.action({"type": "tasks/set", "done": True})])
    await sender.sync(actions=[sender.action({"type": "notify", "user": "99"})])
    assert not waiting.done()
    await sender.sync(actions=[sender.action({"type": "tasks/set", "done": False, "n": 1})])
    page = await asyncio.wait_for(waiting, 10)
    assert [a.get("n") for a, _ in page["actions"]] == [1]


async def test_long_poll_timeout_answers_200_with_the_same_cursor(client: Client) -> None:
    reader = Puller(client, "11:laptop")
    first = await reader.sync()
    started = time.monotonic()
    page = await reader.sync(wait=0.3)
    assert time.monotonic() - started >= 0.3
    assert page["actions"] == [] and not page["more"]
    assert page["cursor"] == first["cursor"]


async def test_a_newer_request_ends_an_older_waiting_one(client: Client, node: ServerNode) -> None:
    older, newer = Puller(client, "11:laptop"), Puller(client, "11:laptop:tab2")
    await older.sync()
    started = time.monotonic()
    waiting = asyncio.ensure_future(older.sync(wait=20))
    await until_waiting(node)
    await newer.sync()
    page = await asyncio.wait_for(waiting, 10)
    assert time.monotonic() - started < 10
    assert page["actions"] == []


async def test_shutdown_answers_a_waiting_request(client: Client, node: ServerNode) -> None:
    reader = Puller(client, "11:laptop")
    waiting = asyncio.ensure_future(reader.sync(wait=20))
    await until_waiting(node)
    await asyncio.wait_for(node.stop(), 10)
    page = await asyncio.wait_for(waiting, 10)
    assert page["actions"] == []


async def test_waiting_long_polls_hold_little_memory_and_no_task_of_their_own(
    client: Client, node: ServerNode, store_url: str
) -> None:
    if store_url == "memory://":
        return  # the memory store keeps every pushed action in the process: see the SQLite run
    count, payload = 20, "x" * 50_000
    readers = [Puller(client, f"w{i}:c") for i in range(count)]
    for reader in readers:
        await reader.sync(subscribe=[{"channel": "rooms/many"}])
    before_tasks = set(asyncio.all_tasks())
    tracemalloc.start(30)  # deep enough to see the test client's frames
    try:
        before = tracemalloc.take_snapshot()
        waiting = [
            asyncio.ensure_future(
                r.sync(wait=20, actions=[r.action({"type": "notify", "user": "x", "p": payload})])
            )
            for r in readers
        ]
        await until_waiting(node, count, seconds=40)  # (tracing slows everything down)
        during = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    new_tasks = asyncio.all_tasks() - before_tasks
    ours = [t for t in new_tasks if "/logsync/" in t.get_coro().cr_code.co_filename]  # type: ignore[union-attr]
    assert ours == []  # aiohttp's own handler task per request, nothing more
    # What the server side holds for them (allocations not made by the test's client): far
    # less than the 50 KB each pushed (released once answered).
    client_side = [tracemalloc.Filter(False, "*/tests/pull/*", all_frames=True)]
    growth = during.filter_traces(client_side).compare_to(
        before.filter_traces(client_side), "filename"
    )
    held = sum(stat.size_diff for stat in growth)
    assert held / count < 40_000, held / count
    sender = Puller(client, "s:c")
    await sender.sync(actions=[sender.action({"type": "rooms/add", "room": "many", "text": "all"})])
    pages = await asyncio.wait_for(asyncio.gather(*waiting), 15)
    assert all([a["text"] for a, _ in p["actions"]] == ["all"] for p in pages)


async def test_a_waiting_request_is_no_connection_nor_session_catching_up(
    client: Client, node: ServerNode
) -> None:
    waiting = asyncio.ensure_future(Puller(client, "11:laptop").sync(wait=20))
    await until_waiting(node)
    text = await (await client.get("/metrics")).text()
    values = dict(line.split(" ", 1) for line in text.splitlines() if line[:1] != "#")
    assert values["logsync_pull_waiting"] == "1.0"
    assert values["logsync_connections"] == "0.0"
    assert values["logsync_sessions_catching_up"] == "0.0"
    await Puller(client, "11:laptop").sync()  # ends it
    await asyncio.wait_for(waiting, 10)
