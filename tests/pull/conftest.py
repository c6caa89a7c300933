"""In-process pull tests: a real :class:`~logsync.engine.ServerNode` (memory or SQLite store,
the local broker) behind the node's own aiohttp application, driven by pytest-aiohttp's client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from aiohttp.test_utils import TestClient

from logsync.broker import LocalBroker
from logsync.engine import ServerNode
from logsync.log import MemoryStore, open_store
from logsync.server.http import build_web_app
from logsync.settings import Settings
from logsync.wallclock import now_ms
from tests.pull.app import app, loads, unsubscribed

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/log.db"


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    """The app's callback counters start at zero in every test."""
    loads.clear()
    unsubscribed.clear()


async def start_node(store_url: str, **settings: Any) -> ServerNode:
    store = MemoryStore() if store_url == "memory://" else open_store(store_url)
    node = ServerNode(app, store, LocalBroker(), Settings(**settings))
    await node.start()
    return node


@pytest.fixture
async def node(store_url: str) -> AsyncIterator[ServerNode]:
    started = await start_node(store_url, trim_interval_ms=0)
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def client(node: ServerNode, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(build_web_app(node))


class Puller:
    """One pull client: its node id and token, the cursor of its last 200, its action ids."""

    def __init__(self, http: TestClient[Any, Any], node_id: str, token: str = "secret") -> None:
        self.http = http
        self.node_id = node_id
        self.token = token
        self.cursor: str | None = None
        self.seq = 0

    def action(self, action: dict[str, Any], **meta: Any) -> list[Any]:
        """``[action, meta]`` with a new id of this client's node."""
        self.seq += 1
        full = {"id": f"{now_ms()} {self.node_id} {self.seq}", "time": now_ms(), **meta}
        return [action, full]

    async def post(self, body: dict[str, Any], *, msgpack_body: bool = False) -> tuple[int, Any]:
        """POST /v1/sync with this client's node and token (and cursor unless given)."""
        body = {"node": self.node_id, "token": self.token, "subprotocol": 2, **body}
        if self.cursor is not None:
            body.setdefault("cursor", self.cursor)
        if msgpack_body:
            data = msgpack.packb(body, use_bin_type=True)
            headers = {"Content-Type": "application/msgpack"}
        else:
            data, headers = orjson.dumps(body), {"Content-Type": "application/json"}
        response = await self.http.post("/v1/sync", data=data, headers=headers)
        raw = await response.read()
        assert response.headers["Cache-Control"] == "no-store"
        if response.content_type == "application/msgpack":
            decoded = msgpack.unpackb(raw, raw=False)
        else:
            decoded = orjson.loads(raw)
        return response.status, decoded

    async def sync(self, **body: Any) -> dict[str, Any]:
        """A request that must answer 200; the cursor moves on."""
        status, answer = await self.post(body)
        assert status == 200, answer
        self.cursor = answer["cursor"]
        result: dict[str, Any] = answer
        return result


def types(answer: dict[str, Any]) -> list[str]:
    """The action types of a page."""
    return [action["type"] for action, _ in answer["actions"]]
