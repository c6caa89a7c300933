"""The demo chat's server rules (logsync/demo.py) over ``POST /v1/sync`` of a real
``logsync serve``: the history load and its pages, direct conversations kept to their two users,
read receipts and reactions resent to the conversation, and the id checks the chat relies on
(a resend answered as processed, a time too far ahead refused). The page's side is
tests/browser/test_chat.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.server import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(None, store=f"sqlite:///{tmp_path}/chat.db")
    try:
        yield process
    finally:
        process.stop()


async def sync(server: ServerProcess, node: str, **body: Any) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.http_url.rstrip('/')}/v1/sync",
            json={"node": node, "token": "demo", **body},
            timeout=aiohttp.ClientTimeout(total=20),
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


def message(room: str, text: str, node: str, time_ms: int, seq: int = 0) -> list[Any]:
    return [
        {"type": "chat/message", "room": room, "text": text},
        {"id": f"{time_ms} {node} {seq}", "time": time_ms},
    ]


def of_type(page: Any, kind: str) -> list[Any]:
    return [action for action, _ in page["actions"] if action["type"] == kind]


async def test_history_loads_the_latest_page_and_pages_older_ones(server: ServerProcess) -> None:
    start = int(time.time() * 1000) - 100_000
    actions = [message("lobby", f"m{i}", "carol:seed", start + i * 100) for i in range(70)]
    seeded = await sync(server, "carol:seed", actions=actions)
    assert {answer["status"] for answer in seeded["answers"]} == {"processed"}

    bare = await sync(server, "dave:one", subscribe=[{"channel": "chat/lobby"}])
    assert of_type(bare, "chat/history") == [], "a subscription without history gets no load"

    first = await sync(server, "alice:one", subscribe=[{"channel": "chat/lobby", "history": 30}])
    [latest] = of_type(first, "chat/history")
    assert [m["action"]["text"] for m in latest["messages"]] == [f"m{i}" for i in range(40, 70)]
    assert latest["more"] is True and latest["older"] is False

    older = {"type": "chat/older", "room": "lobby", "before": latest["before"], "limit": 30}
    meta = {"id": f"{int(time.time() * 1000)} alice:one 0", "time": int(time.time() * 1000)}
    paged = await sync(server, "alice:one", cursor=first["cursor"], actions=[[older, meta]])
    [page] = of_type(paged, "chat/history")
    assert [m["action"]["text"] for m in page["messages"]] == [f"m{i}" for i in range(10, 40)]
    assert page["older"] is True and page["more"] is True

    too_many = await sync(server, "erin:one", subscribe=[{"channel": "chat/lobby", "history": 101}])
    assert too_many["subscriptions"][0]["status"] == "undo"


async def test_a_direct_conversation_is_for_its_two_users_and_reaches_them_unopened(
    server: ServerProcess,
) -> None:
    room = "dm~alice~bob"
    mallory = await sync(server, "mallory:one", subscribe=[{"channel": f"chat/{room}"}])
    assert mallory["subscriptions"][0]["reason"] == "denied"
    now = int(time.time() * 1000)
    sneaky = await sync(server, "mallory:one", actions=[message(room, "hi", "mallory:one", now)])
    assert sneaky["answers"][0]["reason"] == "denied"

    bob = await sync(server, "bob:one")
    sent = await sync(server, "alice:one", actions=[message(room, "psst", "alice:one", now)])
    assert sent["answers"][0]["status"] == "processed"
    # Bob never subscribed: it reaches him through his user index.
    later = await sync(server, "bob:one", cursor=bob["cursor"])
    assert [a["text"] for a in of_type(later, "chat/message")] == ["psst"]


async def test_reads_and_reactions_go_to_the_conversation(server: ServerProcess) -> None:
    now = int(time.time() * 1000)
    bob = await sync(server, "bob:one", subscribe=[{"channel": "chat/lobby"}])
    said = message("lobby", "hello", "alice:one", now)
    read = [
        {"type": "chat/read", "room": "lobby", "id": said[1]["id"]},
        {"id": f"{now + 1} carol:one 0", "time": now + 1},
    ]
    react = [
        {"type": "chat/react", "room": "lobby", "id": said[1]["id"], "emoji": "♥"},
        {"id": f"{now + 2} carol:one 0", "time": now + 2},
    ]
    await sync(server, "alice:one", actions=[said])
    answered = await sync(server, "carol:one", actions=[read, react])
    assert [a["status"] for a in answered["answers"]] == ["processed", "processed"]
    page = await sync(server, "bob:one", cursor=bob["cursor"])
    kinds = [a["type"] for a, _ in page["actions"] if a["type"].startswith("chat/")]
    assert kinds == ["chat/message", "chat/read", "chat/react"]


async def test_a_resend_is_processed_once_and_a_future_time_is_refused(
    server: ServerProcess,
) -> None:
    now = int(time.time() * 1000)
    bob = await sync(server, "bob:one", subscribe=[{"channel": "chat/lobby"}])
    said = message("lobby", "once", "alice:one", now)
    for _ in range(2):
        again = await sync(server, "alice:one", actions=[said])
        assert again["answers"][0]["status"] == "processed"
    page = await sync(server, "bob:one", cursor=bob["cursor"])
    assert [a["text"] for a in of_type(page, "chat/message")] == ["once"]

    ahead = now + 10 * 60_000  # past max_future_ms (60 s)
    future = await sync(server, "alice:one", actions=[message("lobby", "x", "alice:one", ahead)])
    assert future["answers"][0]["status"] == "undo"
