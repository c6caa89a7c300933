"""Live entries offered to one connection in one loop turn share a ``sync`` (issue 13), over real
sockets: in ``added`` order, the ``sync`` value the last one's, JSON and msgpack alike; never two
changes of one SyncMap item in one ``sync`` (see ``Entry.batch_key``); at most ``live_batch``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.test_flow import metrics
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # `notify` is a batch type: one client `sync` of them is appended in one store call, so its
    # entries are offered to their recipient in one loop turn
    server = ServerProcess("tests.interop.app:app", env={"LOGSYNC_LIVE_BATCH": "4"})
    try:
        yield server
    finally:
        server.stop()


async def _syncs_of(receiver: RawClient, count: int) -> list[list[Any]]:
    """The next ``sync`` messages holding ``notify`` actions, until ``count`` actions came."""
    syncs: list[list[Any]] = []
    while sum(len(m[2::2]) for m in syncs) < count:
        msg = await receiver.recv()
        if msg[0] == "sync" and msg[2]["type"] == "notify":
            syncs.append(msg)
            await receiver.send(["synced", msg[1]])
    return syncs


@pytest.mark.parametrize("binary", [False, True])
async def test_one_turns_entries_share_a_sync(server: ServerProcess, binary: bool) -> None:
    user = f"batch{int(binary)}"
    receiver = await RawClient.open(server.url, binary=binary)
    await receiver.connect(f"{user}:c:t")
    sender = await RawClient.open(server.url)
    await sender.connect("sender:c:t")
    before = await metrics(server)
    ids = await sender.sync(
        1, *[{"type": "notify", "user": user, "text": f"n{i}"} for i in range(6)]
    )
    await sender.recv_until("synced")
    syncs = await _syncs_of(receiver, 6)
    # one turn's six entries: live_batch (4) in the first sync, the other two in the next
    assert [[a["text"] for a in m[2::2]] for m in syncs] == [["n0", "n1", "n2", "n3"], ["n4", "n5"]]
    sent = [sender.full_id(i) for i in ids]
    got = [receiver_id(receiver, sender, meta["id"]) for m in syncs for meta in m[3::2]]
    assert got == sent
    assert syncs[0][1] < syncs[1][1]  # each sync's value: its last entry's added
    after = await metrics(server)
    assert after["logsync_deliveries_total"] - before["logsync_deliveries_total"] == 6
    assert after["logsync_live_syncs_total"] - before["logsync_live_syncs_total"] == 2
    assert after['logsync_limit{setting="live_batch"}'] == 4
    await receiver.close()
    await sender.close()


def receiver_id(receiver: RawClient, sender: RawClient, wire_id: Any) -> str:
    """A compressed id in a ``sync`` to ``receiver`` of an action ``sender`` made, in full."""
    ms, node, seq = wire_id
    assert node == sender.node_id
    return f"{ms + receiver.base_time} {node} {seq}"


async def test_changes_of_one_syncmap_item_never_share_a_sync() -> None:
    server = ServerProcess("tests.interop.syncmap_app:app", store="memory://")
    try:
        receiver = await RawClient.open(server.url)
        await receiver.connect("watcher:c:t")
        subscribe = {"type": "logux/subscribe", "channel": "notes", "filter": {"project": "pb"}}
        [wire_id] = await receiver.sync(1, subscribe)
        await receiver.answer(receiver.full_id(wire_id))
        sender = await RawClient.open(server.url)
        await sender.connect("burster:c:t")
        changes = [
            {"id": "x", "fields": {"project": "pb"}},
            {"id": "y1", "fields": {"project": "pb"}},
            {"id": "x", "fields": {"title": "x!"}},
            {"id": "y2", "fields": {"project": "pb"}},
            {"id": "x", "fields": {"color": "blue"}},
        ]
        await sender.sync(1, {"type": "notes/burst", "changes": changes})
        got: list[list[tuple[str, dict[str, Any]]]] = []
        while sum(map(len, got)) < len(changes):
            msg = await receiver.recv()
            if msg[0] == "sync" and msg[2]["type"] == "notes/changed":
                got.append([(a["id"], a["fields"]) for a in msg[2::2]])
                await receiver.send(["synced", msg[1]])
        # offered in one turn: as few syncs as the rule allows, in order
        pairs = [(c["id"], c["fields"]) for c in changes]
        assert got == [pairs[0:2], pairs[2:4], pairs[4:5]]
        await receiver.close()
        await sender.close()
    finally:
        server.stop()
