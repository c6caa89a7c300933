"""The client against a real ``logsync serve`` (SQLite and Redis), over WebSocket and HTTP pull:
sync → processed, undo → Undone and the local state rolled back, an action written offline
ordered where it was written, the server's time offset applied, subscriptions kept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from logsync.wallclock import now_ms
from logsync_client import Client, Undone
from tests.client.conftest import Served

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["ws", "http"]


def room() -> str:
    return uuid.uuid4().hex[:10]


@asynccontextmanager
async def connected(
    served: Served, transport: str, user: str, **options: Any
) -> AsyncIterator[Client]:
    client = Client(served.url(transport), user, "secret", wait=5, **options)
    await client.start()
    try:
        await asyncio.wait_for(client.wait_connected(), 10)
        yield client
    finally:
        await client.stop()


def texts(state: list[str], action: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    return [*state, action["text"]] if action["type"] == "rooms/add" else state


def collector(client: Client, kind: str) -> tuple[list[dict[str, Any]], Callable[[int], Any]]:
    """Received actions of ``kind``, and an awaitable for "at least n of them"."""
    got: list[dict[str, Any]] = []
    changed = asyncio.Event()

    def listener(action: dict[str, Any], meta: dict[str, Any]) -> None:
        got.append({**action, "_meta": meta})
        changed.set()

    client.on(kind, listener)

    async def at_least(n: int) -> None:
        while len(got) < n:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 10)

    return got, at_least


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sync_is_processed_and_reaches_a_subscriber(
    served: Served, transport: str, codec: str
) -> None:
    channel = room()
    async with (
        connected(served, transport, "alice", codec=codec) as alice,
        connected(served, transport, "bob", codec=codec) as bob,
    ):
        got, at_least = collector(bob, "rooms/add")
        loaded, loads = collector(bob, "rooms/state")
        await asyncio.wait_for(bob.subscribe(f"rooms/{channel}"), 10)
        await loads(1)
        assert loaded[0]["room"] == channel
        meta = await asyncio.wait_for(
            alice.sync({"type": "rooms/add", "room": channel, "text": "hi"}), 10
        )
        assert meta["id"]
        await at_least(1)
        assert got[0]["text"] == "hi"
        assert alice.pending() == []
        assert bob.subscriptions()[0].channel == f"rooms/{channel}"
    ids = [row[0] for row in served.processed()]
    assert got[0]["_meta"]["id"] in ids


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_undo_raises_with_reason_and_rolls_back_local_state(
    served: Served, transport: str
) -> None:
    channel = room()
    async with connected(served, transport, "carol") as carol:
        state = carol.state(texts, [])
        await carol.sync({"type": "rooms/add", "room": channel, "text": "kept"})
        action_id = carol.add({"type": "rooms/add", "room": channel, "text": "forbidden"})
        assert state.value == ["kept", "forbidden"]  # applied at once, optimistically
        with pytest.raises(Undone) as undone:
            await asyncio.wait_for(carol.queue.waiter(action_id), 10)
        assert undone.value.reason == "forbiddenWord"
        assert undone.value.undo["word"] == "forbidden"
        assert undone.value.action == {"type": "rooms/add", "room": channel, "text": "forbidden"}
        assert state.value == ["kept"]
        assert carol.pending() == []
        with pytest.raises(Undone) as denied:
            await asyncio.wait_for(carol.sync({"type": "denied/action"}), 10)
        assert denied.value.reason == "denied"
        with pytest.raises(Undone) as refused:
            await asyncio.wait_for(carol.subscribe("rooms/secret"), 10)
        assert refused.value.reason == "denied"
        assert carol.subscriptions() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_action_written_offline_is_ordered_where_it_was_written(
    served: Served, transport: str, tmp_path: Path
) -> None:
    channel = room()
    # dave writes while offline (never started): the action is in his store only
    dave = Client(served.url(transport), "dave", "secret", store=tmp_path / "dave.db", wait=5)
    early = dave.add({"type": "rooms/add", "room": channel, "text": "early"})
    async with (
        connected(served, transport, "erin") as erin,
        connected(served, transport, "frank") as frank,
    ):
        state = erin.state(texts, [])
        got, at_least = collector(erin, "rooms/add")
        await erin.subscribe(f"rooms/{channel}")
        await frank.sync({"type": "rooms/add", "room": channel, "text": "late"})
        await at_least(1)
        assert state.value == ["late"]
        await dave.start()
        await asyncio.wait_for(dave.flush(), 10)
        await at_least(2)
        await dave.stop()
        # received last, but written first: it sorts before
        assert [a["text"] for a in got] == ["late", "early"]
        assert state.value == ["early", "late"]
        assert state.actions[0][1]["id"] == early


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_time_offset_is_estimated_and_applied(served: Served, transport: str) -> None:
    """A client whose clock is an hour ahead: without the time fix the server would refuse its
    actions (max_future_ms is 60 s); with it, the server stores its own time."""
    channel = room()
    skew = 3_600_000
    async with (
        connected(served, transport, "gina", clock=lambda: now_ms() + skew) as gina,
        connected(served, transport, "hank") as hank,
    ):
        assert abs(gina.time_fix - skew) < 2_000
        assert abs(hank.time_fix) < 2_000
        got, at_least = collector(gina, "rooms/add")
        await gina.subscribe(f"rooms/{channel}")
        meta = await asyncio.wait_for(
            gina.sync({"type": "rooms/add", "room": channel, "text": "skewed"}), 10
        )
        assert meta
        written = [row for row in served.processed() if " gina:" in row[0]][-1]
        assert abs(written[1] - written[2]) < 2_000  # meta.time in the server's clock
        await hank.sync({"type": "rooms/add", "room": channel, "text": "plain"})
        await at_least(1)
        # what gina receives is in her clock
        assert abs(got[0]["_meta"]["time"] - (now_ms() + skew)) < 2_000


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_state_survives_in_the_store(served: Served, transport: str, tmp_path: Path) -> None:
    """Node id, subscriptions (with their resume point) and the cursor are in the file."""
    path = tmp_path / "ivy.db"
    channel = room()
    async with connected(served, transport, "ivy", store=path) as ivy:
        node_id = ivy.node_id
        await ivy.subscribe(f"rooms/{channel}")
        await ivy.sync({"type": "rooms/add", "room": channel, "text": "x"})
    again = Client(served.url(transport), "ivy", "secret", store=path)
    try:
        assert again.node_id == node_id
        (sub,) = again.subscriptions()
        assert sub.channel == f"rooms/{channel}"
        if transport == "ws":
            assert sub.since_id is not None and again.store.get("synced") is not None
        else:
            assert sub.confirmed and again.store.get("cursor") is not None
    finally:
        again.store.close()
