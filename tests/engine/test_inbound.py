"""The inbound stage in-process: a real node on the memory store, peers that record what the
engine asks of them. No sockets: what is checked is the engine's own order and bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from logsync.app import App, Context
from logsync.broker import LocalBroker
from logsync.engine import ServerNode
from logsync.log import MemoryStore
from logsync.protocol import ActionsReceived
from logsync.settings import Settings
from tests.engine.peers import RecordingPeer

pytestmark = pytest.mark.timeout(20)


class Gate:
    """``process`` of ``gated`` actions waits here until the test opens it."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = asyncio.Event()


def build_app(gate: Gate) -> App:
    app = App()
    app.auth(lambda ctx: True)

    async def gated(ctx: Context, action: Any, meta: dict[str, Any]) -> None:
        gate.entered.set()
        await gate.open.wait()

    app.type("gated", access=lambda ctx, action, meta: True, process=gated)
    app.type("fast", access=lambda ctx, action, meta: True, process=lambda ctx, a, m: None)
    app.type(
        "note",
        access=lambda ctx, action, meta: True,
        resend=lambda ctx, action, meta: {"user": action["to"]},
    )
    return app


@pytest.fixture
async def node_and_gate() -> AsyncIterator[tuple[ServerNode, Gate]]:
    gate = Gate()
    node = ServerNode(
        build_app(gate), MemoryStore(), LocalBroker(), Settings(inbound_max_actions=4)
    )
    await node.start()
    try:
        yield node, gate
    finally:
        gate.open.set()
        await node.stop()


def connect(node: ServerNode, node_id: str) -> RecordingPeer:
    peer = RecordingPeer(node, node_id)
    node.attach(peer)
    node.registry.register(peer)
    return peer


def sync(added: int, *actions: tuple[dict[str, Any], str]) -> ActionsReceived:
    return ActionsReceived(added, [(action, {"id": i, "time": 1}) for action, i in actions])


async def until(peer: RecordingPeer, name: str) -> None:
    """Wait (a few event-loop turns at most, bounded) until ``name`` is in what ``peer`` got."""
    for _ in range(2000):
        if name in peer.kinds():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{name} never came: {peer.kinds()}")


async def test_synced_goes_out_in_order_once_every_action_is_answered(
    node_and_gate: tuple[ServerNode, Gate],
) -> None:
    node, gate = node_and_gate
    peer = connect(node, "u:c:t")
    node.receive_actions(peer, sync(1, ({"type": "gated"}, "1 u:c:t 0")))
    node.receive_actions(peer, sync(2, ({"type": "fast"}, "1 u:c:t 1")))
    await gate.entered.wait()
    assert peer.kinds() == []  # the second waits behind the first (one queue per client)
    gate.open.set()
    await until(peer, "synced:2")
    assert peer.kinds() == ["processed:0", "synced:1", "processed:1", "synced:2"]


async def test_another_clients_id_is_denied_and_reserves_nothing(
    node_and_gate: tuple[ServerNode, Gate],
) -> None:
    node, _ = node_and_gate
    thief = connect(node, "thief:t:1")
    owner = connect(node, "owner:o:1")
    node.receive_actions(thief, sync(1, ({"type": "fast"}, "5 owner:o:1 0")))
    await until(thief, "synced:1")
    assert thief.kinds() == ["undo:denied", "synced:1"]
    # the undo is in the log, and the synced waits until the thief has been sent that far
    [(_, _, undo_added)] = [item for item in thief.log if item[0] == "entry"]
    assert thief.log[-1] == ("synced", 1, undo_added)
    node.receive_actions(owner, sync(1, ({"type": "fast"}, "5 owner:o:1 0")))
    await until(owner, "synced:1")
    assert owner.kinds() == ["processed:0", "synced:1"]


async def test_a_duplicate_is_answered_processed_only_to_its_owner(
    node_and_gate: tuple[ServerNode, Gate],
) -> None:
    node, _ = node_and_gate
    owner = connect(node, "dup:o:1")
    other = connect(node, "peek:p:1")
    node.receive_actions(owner, sync(1, ({"type": "fast"}, "7 dup:o:1 0")))
    await until(owner, "synced:1")
    node.receive_actions(owner, sync(2, ({"type": "fast"}, "7 dup:o:1 0")))
    await until(owner, "synced:2")
    assert owner.kinds() == ["processed:0", "synced:1", "processed:0", "synced:2"]
    node.receive_actions(other, sync(1, ({"type": "fast"}, "7 dup:o:1 0")))
    await until(other, "synced:1")
    assert other.kinds() == ["undo:denied", "synced:1"]


async def test_past_the_bound_the_peer_is_not_read_until_it_drains(
    node_and_gate: tuple[ServerNode, Gate],
) -> None:
    node, gate = node_and_gate
    peer = connect(node, "flood:f:1")
    actions = [({"type": "gated"}, f"1 flood:f:1 {i}") for i in range(6)]
    node.receive_actions(peer, sync(1, *actions))  # 6 > inbound_max_actions (4)
    await gate.entered.wait()
    assert peer.kinds() == ["paused"]
    assert node.snapshot().inbound_actions == 6
    gate.open.set()
    await until(peer, "synced:1")
    kinds = peer.kinds()
    # read again once under half the bound (2 left unanswered), before the batch's synced
    assert kinds.index("resumed") < kinds.index("synced:1")
    assert kinds.count("processed:5") == 1 and node.snapshot().inbound_actions == 0


async def test_a_closed_peers_queued_actions_are_dropped(
    node_and_gate: tuple[ServerNode, Gate],
) -> None:
    node, gate = node_and_gate
    peer = connect(node, "gone:g:1")
    queued = [({"type": "fast"}, f"1 gone:g:1 {i}") for i in range(1, 4)]
    node.receive_actions(peer, sync(1, ({"type": "gated"}, "1 gone:g:1 0"), *queued))
    await gate.entered.wait()
    node.detach(peer)  # its socket closed while the first action was being processed
    gate.open.set()
    await node.inbound.wait_idle(timeout=5)
    # the action already stored stays; the three queued behind it were never stored
    assert await node.store.get("1 gone:g:1 0") is not None
    assert [await node.store.get(action_id) for _, action_id in queued] == [None, None, None]
