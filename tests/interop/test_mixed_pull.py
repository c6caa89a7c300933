"""Mixed clients on one channel: a real ``@logux/client`` over the WebSocket
(``js/mixed-pull.mjs``, driven line by line over its stdin) and an HTTP pull client
(``POST /v1/sync`` with aiohttp, docs/http-pull.md) of the same user, against a real
``logsync serve`` of the interop app (``tests/interop/app.py``: ``chat/{id}`` and the
``notify`` resend to a user), or two of them on one Redis, a client on each.

Every push is awaited (answered) before the next one, so the log order, and with it what each
client must see and in which order, is known in advance.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import pytest

from logsync.wallclock import now_ms
from tests.conftest import INTEROP_APP
from tests.interop.conftest import JS_DIR
from tests.support.deadline import Deadline
from tests.support.server import ServerProcess

SUBPROTOCOL = 3
TYPES = ("chat/message", "notify")
OUT_META = {"id", "time", "subprotocol", "added"}


class SocketScript:
    """``node js/mixed-pull.mjs URL USER CHAT``: one JSON command per stdin line, one progress
    line back (see the script); stderr goes to ``log``. Killed by its own PID on exit."""

    def __init__(self, node_bin: str, url: str, user: str, chat: str, log: Path) -> None:
        self.args = [node_bin, str(JS_DIR / "mixed-pull.mjs"), url, user, chat]
        self.log = log
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        with self.log.open("wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                *self.args,
                cwd=JS_DIR,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "LOGUX_DEADLINE_MS": "60000"},
            )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def line(self, deadline: Deadline) -> dict[str, Any]:
        """The script's next stdout line as JSON; fails the test if it ends or hangs."""
        assert self.process is not None and self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), deadline.left())
        except TimeoutError:
            pytest.fail(f"mixed-pull.mjs hung after {self.lines}\n{self.stderr()}")
        if not raw:
            code = await self.process.wait()
            pytest.fail(f"mixed-pull.mjs exited {code} after {self.lines}\n{self.stderr()}")
        self.lines.append(raw.decode())
        line: dict[str, Any] = json.loads(raw)
        return line

    async def event(self, name: str, deadline: Deadline) -> dict[str, Any]:
        line = await self.line(deadline)
        assert line.get("event") == name, (line, self.stderr())
        return line

    async def command(self, command: dict[str, Any], answer: str, deadline: Deadline) -> Any:
        """Send ``command``; its progress line (event ``answer``)."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        return await self.event(answer, deadline)

    async def wait_for(self, texts: list[str], deadline: Deadline) -> None:
        """Until the socket client has received an action with each of ``texts``."""
        await self.command({"cmd": "wait", "texts": texts}, "got", deadline)

    async def send(self, action: dict[str, Any], deadline: Deadline) -> str:
        """Sync ``action`` from the socket client; its id once the server processed it."""
        sent = await self.command({"cmd": "send", "action": action}, "sent", deadline)
        assert sent["ok"] is True, sent
        action_id: str = sent["id"]
        return action_id

    async def finish(self, deadline: Deadline) -> Any:
        """The result line; the script must exit 0."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(b'{"cmd": "finish"}\n')
        await self.process.stdin.drain()
        result = await self.line(deadline)
        code = await asyncio.wait_for(self.process.wait(), deadline.left())
        assert code == 0, self.stderr()
        assert result["scenario"] == "mixed-pull", result
        return result

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class Puller:
    """One HTTP pull client: its node id, the cursor of its last 200, every page it got."""

    def __init__(self, http: aiohttp.ClientSession, node_id: str) -> None:
        self.http = http
        self.node_id = node_id
        self.cursor: str | None = None
        self.seq = 0
        self.pages: list[dict[str, Any]] = []

    def action(self, action: dict[str, Any]) -> list[Any]:
        """``[action, meta]`` with a new full id of this client's node."""
        self.seq += 1
        now = now_ms()
        return [action, {"id": f"{now} {self.node_id} {self.seq}", "time": now}]

    async def sync(self, timeout: float, **fields: Any) -> dict[str, Any]:
        """``POST /v1/sync`` from the last cursor; it must answer 200. The cursor moves on."""
        body = {"node": self.node_id, "token": "secret", "subprotocol": SUBPROTOCOL, **fields}
        if self.cursor is not None:
            body["cursor"] = self.cursor
        async with self.http.post(
            "/v1/sync", json=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            answer: dict[str, Any] = await response.json()
            assert response.status == 200, answer
            assert response.headers["Cache-Control"] == "no-store"
        self.cursor = answer["cursor"]
        self.pages.append(answer)
        return answer

    async def push(self, deadline: Deadline, *actions: dict[str, Any]) -> list[str]:
        """Push ``actions`` in one request; their ids, each answered ``processed``."""
        pushed = [self.action(action) for action in actions]
        answer = await self.sync(deadline.left(), actions=pushed)
        ids = [meta["id"] for _, meta in pushed]
        assert answer["answers"] == [{"id": i, "status": "processed"} for i in ids], answer
        return ids

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        """``(text, meta)`` of every chat/message and notify of every page, in page order."""
        return [
            (action["text"], meta)
            for page in self.pages
            for action, meta in page["actions"]
            if action["type"] in TYPES
        ]


def message(chat: str, text: str) -> dict[str, Any]:
    return {"type": "chat/message", "chat": chat, "text": text}


def notify(user: str, text: str) -> dict[str, Any]:
    return {"type": "notify", "user": user, "text": text}


async def pull_waiting(http: aiohttp.ClientSession) -> float:
    """The ``logsync_pull_waiting`` gauge of ``/metrics``: long-polls waiting now."""
    async with http.get("/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("logsync_pull_waiting "):
            return float(line.split()[1])
    raise AssertionError("no logsync_pull_waiting in /metrics")


@pytest.fixture(params=["one-node", "two-nodes-redis"])
def nodes(request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """``(socket node, HTTP node)``: one SQLite node serving both clients, or two nodes on one
    Redis log and broker, the socket client on the first and the HTTP clients on the second
    (so every live push, and the long-poll's wake-up, crosses the broker)."""
    if request.param == "one-node":
        servers = [ServerProcess(INTEROP_APP)]
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        store = f"{redis_url}?prefix=mix{uuid.uuid4().hex[:8]}"
        servers = [ServerProcess(INTEROP_APP, store=store) for _ in range(2)]
    try:
        yield servers[0], servers[-1]
    finally:
        for server in servers:
            server.stop()


async def test_socket_and_pull_clients_share_one_log(
    nodes: tuple[ServerProcess, ServerProcess], node_bin: str, js_deps: Path, tmp_path: Path
) -> None:
    ws_node, http_node = nodes
    run = uuid.uuid4().hex[:10]
    user, other, chat = f"u{run}", f"t{run}", f"mix{run}"
    channel = f"chat/{chat}"
    deadline = Deadline(45, per_read=15)
    log = tmp_path / "mixed-pull.stderr"
    async with (
        aiohttp.ClientSession(base_url=http_node.http_url) as http,
        SocketScript(node_bin, ws_node.url, user, chat, log) as ws,
    ):
        ready = await ws.event("ready", deadline)
        assert ready["clientId"].startswith(f"{user}:")
        pull = Puller(http, f"{user}:http")  # the same user as the socket client
        third = Puller(http, f"{other}:http")  # another user, pushing only

        first = await pull.sync(deadline.left(), subscribe=[{"channel": channel}])
        assert first["subscriptions"] == [{"channel": channel, "status": "processed"}]

        # an action pushed over HTTP reaches the socket client live; not the pusher
        [h1] = await pull.push(deadline, message(chat, "h1"))
        await ws.wait_for(["h1"], deadline)

        # one the socket client sends wakes the HTTP client's waiting long-poll
        poll = asyncio.create_task(pull.sync(deadline.left(), wait=20))
        while await pull_waiting(http) < 1:
            assert not poll.done(), poll.result()
            await asyncio.wait({poll}, timeout=min(0.02, deadline.left()))
        started = asyncio.get_running_loop().time()
        w1 = await ws.send(message(chat, "w1"), deadline)
        woken = await asyncio.wait_for(poll, deadline.left())
        assert asyncio.get_running_loop().time() - started < 10, "the long-poll was not woken"
        assert [
            (action["text"], meta["id"])
            for action, meta in woken["actions"]
            if action["type"] in TYPES
        ] == [("w1", w1)]

        # a third party's messages and resends to the user reach both, interleaved with each
        # client's own pushes (which the other one gets)
        await third.push(deadline, message(chat, "t1"), message(chat, "t2"), notify(user, "n1"))
        await third.push(deadline, message(chat, "t3"))
        await pull.push(deadline, message(chat, "h2"), notify(user, "n3"))
        await ws.send(notify(user, "n2"), deadline)
        await ws.send(message(chat, "w2"), deadline)
        await third.push(deadline, message(chat, "t4"))

        await ws.wait_for(["t1", "t2", "n1", "t3", "h2", "n3", "t4"], deadline)
        while "t4" not in [text for text, _ in pull.received()]:
            await pull.sync(deadline.left(), wait=5)
        # one more pull: nothing is sent twice
        last = await pull.sync(deadline.left())
        assert [a for a, _ in last["actions"] if a["type"] in TYPES] == []
        result = await ws.finish(deadline)

    assert result["errors"] == []
    assert third.received() == []  # not subscribed, not the user: none of it
    theirs = ["t1", "t2", "n1", "t3", "t4"]

    # the HTTP client: in added order, once each, never its own actions
    got = pull.received()
    assert [text for text, _ in got] == ["w1", "t1", "t2", "n1", "t3", "n2", "w2", "t4"]
    added = [meta["added"] for _, meta in got]
    assert added == sorted(set(added)), added
    assert all(f" {pull.node_id} " not in meta["id"] for _, meta in got)
    assert h1 not in [meta["id"] for _, meta in got]
    for page in pull.pages:
        for _, meta in page["actions"]:
            assert set(meta) <= OUT_META and {"id", "time", "added"} <= set(meta), meta

    # the socket client: in added order, once each, never its own actions
    wire = result["wire"]
    assert [a["text"] for a in wire] == ["h1", "t1", "t2", "n1", "t3", "h2", "n3", "t4"]
    frames = [a["added"] for a in wire if a["last"]]
    assert frames == sorted(set(frames)), wire

    # both saw the third party's actions with the same ids, at the same log positions
    ids = result["ids"]
    http_meta = dict(got)
    assert [ids[t] for t in theirs] == [http_meta[t]["id"] for t in theirs]
    for a in wire:
        if a["text"] in theirs and a["last"]:
            assert a["added"] == http_meta[a["text"]]["added"], (a, http_meta[a["text"]])
    # and one order: the socket client's own actions fall where the HTTP client saw them
    assert ids["w1"] == w1
    assert http_meta["w1"]["added"] < http_meta["t1"]["added"]
    assert http_meta["t3"]["added"] < http_meta["n2"]["added"] < http_meta["w2"]["added"]
