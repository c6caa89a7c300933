"""Pull clients across two in-process nodes on one real Redis (store and pub/sub): a long-poll
on one node woken by an action pushed on the other, subscriptions saved by one node served by
the other, and a newer request on one node ending an older waiting one on the other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from logsync.broker import open_broker
from logsync.engine import ServerNode
from logsync.log import open_store
from logsync.server.http import build_web_app
from logsync.settings import Settings
from tests.pull.app import app
from tests.pull.conftest import ClientFactory, Puller
from tests.pull.test_long_poll import until_waiting
from tests.support.redis import start_redis

pytestmark = pytest.mark.timeout(60)

Client = TestClient[Any, Any]


@pytest.fixture
async def nodes(
    redis_url: str, aiohttp_client: ClientFactory
) -> AsyncIterator[list[tuple[ServerNode, Client]]]:
    url = f"{redis_url}?prefix=pull{uuid.uuid4().hex[:8]}"
    started = []
    for i in range(2):
        store = open_store(url)
        node = ServerNode(app, store, open_broker("", store), Settings(node_id=f"n{i}"))
        await node.start()
        started.append((node, await aiohttp_client(build_web_app(node))))
    try:
        yield started
    finally:
        for node, _ in started:
            await node.stop()


async def test_long_poll_on_one_node_is_woken_by_a_push_on_the_other(
    nodes: list[tuple[ServerNode, Client]],
) -> None:
    (node1, http1), (_, http2) = nodes
    reader, sender = Puller(http1, "c1:reader"), Puller(http2, "c2:writer")
    await reader.sync(subscribe=[{"channel": "rooms/cluster"}])
    started = time.monotonic()
    waiting = asyncio.ensure_future(reader.sync(wait=20))
    await until_waiting(node1)
    await sender.sync(
        actions=[sender.action({"type": "rooms/add", "room": "cluster", "text": "x"})]
    )
    page = await asyncio.wait_for(waiting, 15)
    assert [a["text"] for a, _ in page["actions"]] == ["x"]
    assert time.monotonic() - started < 15


async def test_subscriptions_saved_on_one_node_are_served_by_the_other(
    nodes: list[tuple[ServerNode, Client]],
) -> None:
    (_, http1), (_, http2) = nodes
    on_first = Puller(http1, "c3:reader")
    await on_first.sync(subscribe=[{"channel": "rooms/moved"}])
    sender = Puller(http1, "c4:writer")
    await sender.sync(actions=[sender.action({"type": "rooms/add", "room": "moved", "text": "y"})])
    on_second = Puller(http2, "c3:reader")
    on_second.cursor = on_first.cursor
    page = await on_second.sync()
    assert [a["text"] for a, _ in page["actions"]] == ["y"]


async def test_a_newer_request_on_another_node_ends_an_older_waiting_one(
    nodes: list[tuple[ServerNode, Client]],
) -> None:
    (node1, http1), (_, http2) = nodes
    older = Puller(http1, "c5:phone")
    await older.sync()
    started = time.monotonic()
    waiting = asyncio.ensure_future(older.sync(wait=20))
    await until_waiting(node1)
    await Puller(http2, "c5:phone").sync()
    page = await asyncio.wait_for(waiting, 15)
    assert page["actions"] == []
    assert time.monotonic() - started < 15


async def test_a_store_that_is_down_is_answered_503(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    redis = start_redis(tmp_path)
    store = open_store(f"{redis.url}?prefix=down")
    node = ServerNode(app, store, open_broker("", store), Settings())
    await node.start()
    try:
        http = await aiohttp_client(build_web_app(node))
        p = Puller(http, "c6:phone")
        await p.sync()
        redis.stop()
        started = time.monotonic()
        status, answer = await p.post({})
        assert (status, answer["error"]) == (503, "try-again-later"), answer
        assert time.monotonic() - started < 30
    finally:
        redis.stop()
        await node.stop()
