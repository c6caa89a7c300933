"""POST /v1/sync against a real ``logsync serve`` (SQLite store) with plain aiohttp requests, in
JSON and msgpack, on the WebSocket's port; its undo answers compared with the socket's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest

from logsync.wallclock import now_ms
from tests.support.deadline import Deadline
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient

pytestmark = pytest.mark.timeout(60)

APP = "tests.pull.app:app"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess(APP)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def pull(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    body: dict[str, Any],
    *,
    binary: bool = False,
    accept: str | None = None,
) -> tuple[int, str, Any]:
    body = {"token": "secret", "subprotocol": 2, **body}
    headers = {"Content-Type": "application/msgpack" if binary else "application/json"}
    if accept:
        headers["Accept"] = accept
    data = msgpack.packb(body, use_bin_type=True) if binary else orjson.dumps(body)
    async with http.post(server.http_url + "v1/sync", data=data, headers=headers) as response:
        raw = await response.read()
        assert response.headers["Cache-Control"] == "no-store"
        kind = response.content_type
        decoded = (
            msgpack.unpackb(raw, raw=False) if kind == "application/msgpack" else orjson.loads(raw)
        )
        return response.status, kind, decoded


async def test_json_push_and_pull_between_two_clients(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    status, _, first = await pull(
        http, server, {"node": "e1:reader", "subscribe": [{"channel": "rooms/e2e"}]}
    )
    assert status == 200 and first["subscriptions"][0]["status"] == "processed"
    meta = {"id": f"{now_ms()} e2:writer 0", "time": now_ms()}
    action = {"type": "rooms/add", "room": "e2e", "text": "over http"}
    status, _, pushed = await pull(http, server, {"node": "e2:writer", "actions": [[action, meta]]})
    assert pushed["answers"] == [{"id": meta["id"], "status": "processed"}]
    status, kind, page = await pull(http, server, {"node": "e1:reader", "cursor": first["cursor"]})
    assert (status, kind) == (200, "application/json")
    assert [a for a, _ in page["actions"]] == [action]
    assert set(page["actions"][0][1]) == {"id", "time", "subprotocol", "added"}


async def test_msgpack_both_ways_and_accept_choosing_json(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    meta = {"id": f"{now_ms()} e3:bin 0", "time": now_ms()}
    action = {"type": "notify", "user": "e4", "bytes": "ünïcode", "n": 2**40}
    status, kind, answer = await pull(
        http, server, {"node": "e3:bin", "actions": [[action, meta]]}, binary=True
    )
    assert (status, kind) == (200, "application/msgpack")
    assert answer["answers"] == [{"id": meta["id"], "status": "processed"}]
    status, kind, page = await pull(
        http, server, {"node": "e4:json"}, binary=True, accept="application/json"
    )
    assert (status, kind) == (200, "application/json")
    assert [a for a, _ in page["actions"]] == [action]


async def test_long_poll_over_the_network(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    status, _, first = await pull(http, server, {"node": "e5:poll"})
    waiting = asyncio.ensure_future(
        pull(http, server, {"node": "e5:poll", "cursor": first["cursor"], "wait": 20})
    )
    meta = {"id": f"{now_ms()} e6:push 0", "time": now_ms()}
    # (whether it lands while the other request waits or before its first read, that request
    # answers with it)
    status, _, _ = await pull(
        http, server, {"node": "e6:push", "actions": [[{"type": "notify", "user": "e5"}, meta]]}
    )
    status, _, page = await asyncio.wait_for(waiting, 20)
    assert status == 200
    assert [a["type"] for a, _ in page["actions"]] == ["notify"]


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("denied", {"type": "denied/action"}, {}),
    ("unknown type", {"type": "no/such/type"}, {}),
    ("extra meta", {"type": "notify", "user": "x"}, {"extra": 1}),
    ("future time", {"type": "notify", "user": "x"}, {"time": 3_600_000}),
    ("model", {"type": "rooms/add", "room": "x", "text": ""}, {}),
    ("process", {"type": "rooms/add", "room": "x", "text": "fail"}, {}),
    ("bad subscribe", {"type": "logux/subscribe", "channel": 5}, {}),
]


def comparable(undo: dict[str, Any]) -> dict[str, Any]:
    """An undo without its id (each transport's action has its own)."""
    return {k: v for k, v in undo.items() if k != "id"}


async def test_undo_answers_are_the_sockets(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    socket = await RawClient.open(server.url)
    try:
        await socket.connect("e7:socket", subprotocol=2)
        by_socket = []
        for _, action, extra in CASES:
            meta: dict[str, Any] = {"id": socket.next_id(), "time": extra.pop("time", 0), **extra}
            extra["time"] = meta["time"]  # (kept for the HTTP copy)
            await socket.send(["sync", 1, action, meta])
            by_socket.append(comparable(await socket.answer(socket.full_id(meta["id"]))))
    finally:
        await socket.close()
    actions = []
    for i, (_, action, extra) in enumerate(CASES):
        meta = {"id": f"{now_ms()} e8:http {i}", "time": now_ms() + extra.get("time", 0)}
        meta.update({k: v for k, v in extra.items() if k != "time"})
        actions.append([action, meta])
    status, _, answer = await pull(http, server, {"node": "e8:http", "actions": actions})
    assert status == 200
    by_http = [comparable(a["undo"]) for a in answer["answers"]]
    for (name, _, _), ws, over_http in zip(CASES, by_socket, by_http, strict=True):
        assert ws == over_http, name
    assert [a["reason"] for a in answer["answers"]] == [u["reason"] for u in by_socket]


async def test_a_long_poll_whose_client_left_ends_at_once(server: ServerProcess) -> None:
    host, port = server.url.removeprefix("ws://").strip("/").split(":")
    body = orjson.dumps({"node": "e9:gone", "token": "secret", "subprotocol": 2, "wait": 20})
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    deadline = Deadline(10)
    while await waiting(server) != 1:  # it waits
        deadline.left()
        await asyncio.sleep(0.02)
    writer.transport.abort()  # the client goes away
    while await waiting(server) != 0:  # and the server stops waiting for it, well before 20 s
        deadline.left()
        await asyncio.sleep(0.02)


async def waiting(server: ServerProcess) -> float:
    """The server's ``logsync_pull_waiting`` gauge."""
    async with aiohttp.ClientSession() as http, http.get(server.http_url + "metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("logsync_pull_waiting "):
                return float(line.split()[1])
    raise AssertionError("no logsync_pull_waiting in /metrics")
