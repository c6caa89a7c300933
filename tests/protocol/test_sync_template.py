"""The spliced live push (``Entry.json_sync`` + ``Session.send_sync_encoded``) sends byte for byte
what the general path (``Session.send_sync`` encoded by the JSON codec) sends."""

from __future__ import annotations

from typing import Any

import pytest

from logsync.log.entry import Entry
from logsync.protocol.codec import JSON
from logsync.protocol.session import Session

SERVER = "server:abc"


def connected(base_time: int) -> Session:
    session = Session(SERVER, now=0)
    session.receive(["connect", 5, "u:c:t", 0, {"token": "x"}], "", 0)
    session.accept(base_time, {})
    session.take_outgoing()
    return session


CASES: list[tuple[str, int, dict[str, Any], int | None]] = [
    ("1000 other:x:1 0", 1000, {"type": "chat", "text": "hi"}, None),
    ("1000 other:x:1 7", 999, {"type": "chat", "text": "100% «ü» \U0001f600"}, 3),
    (f"5 {SERVER} 0", 5, {"type": "a", "n": [1, 2.5, None, True]}, None),
    (f"2000 {SERVER} 12", 2500, {"type": "%d%s%%"}, 1),
    ("1700000000000 u%:c:t 3", 1700000000001, {"type": "x", "%": "%"}, None),
]


@pytest.mark.parametrize(("action_id", "time", "action", "subprotocol"), CASES)
@pytest.mark.parametrize("base_time", [0, 1500, 1700000000000])
def test_the_spliced_frame_is_the_encoded_message(
    action_id: str, time: int, action: dict[str, Any], subprotocol: int | None, base_time: int
) -> None:
    entry = Entry(7, action_id, time, action, ["channel:a"], [], subprotocol, "processed")
    assert entry.deliverable
    general, spliced = connected(base_time), connected(base_time)
    general.watermark = spliced.watermark = 3
    for added in (7, 2):  # a lower `added` keeps the watermark (it is never lowered)
        general.send_sync(added, [(entry.wire_action(False), entry.meta())], 10)
        template, ms = entry.json_sync(SERVER)
        spliced.send_sync_encoded(added, template, ms, entry.time, 10)
    expected = [JSON.encode_payload(m) for m in general.take_outgoing()]  # type: ignore[arg-type]
    assert spliced.take_outgoing() == expected
    assert spliced.watermark == general.watermark == 7
    assert spliced.unacked_syncs == general.unacked_syncs == 2


def test_the_template_follows_the_local_node_id() -> None:
    entry = Entry(1, f"5 {SERVER} 0", 5, {"type": "a"}, [], [], None, "processed")
    own, _ = entry.json_sync(SERVER)
    other, _ = entry.json_sync("server:other")
    assert own % (1, 2, 3) == b'["sync",1,{"type":"a"},{"id":2,"time":3}]'
    assert other % (1, 2, 3) == b'["sync",1,{"type":"a"},{"id":[2,"server:abc",0],"time":3}]'


def test_nothing_is_queued_before_connected() -> None:
    session = Session(SERVER, now=0)
    entry = Entry(1, "5 a:b:c 0", 5, {"type": "a"}, [], [], None, "processed")
    template, ms = entry.json_sync(SERVER)
    session.send_sync_encoded(1, template, ms, entry.time, 0)
    assert session.take_outgoing() == []
    assert session.unacked_syncs == 0


@pytest.mark.parametrize("base_time", [0, 1500, 1700000000000])
def test_several_spliced_bodies_are_the_encoded_message(base_time: int) -> None:
    entries = [
        Entry(10 + i, action_id, time, action, ["channel:a"], [], subprotocol, "processed")
        for i, (action_id, time, action, subprotocol) in enumerate(CASES)
    ]
    general, spliced = connected(base_time), connected(base_time)
    for batch in (entries, entries[1:3]):
        general.send_sync(batch[-1].added, [(e.wire_action(False), e.meta()) for e in batch], 10)
        bodies = []
        for entry in batch:
            body, ms = entry.json_sync_body(SERVER)
            bodies.append((body, ms, entry.time))
        spliced.send_sync_bodies(batch[-1].added, bodies, 10)
    expected = [JSON.encode_payload(m) for m in general.take_outgoing()]  # type: ignore[arg-type]
    assert spliced.take_outgoing() == expected
    assert spliced.watermark == general.watermark == 14  # the second batch's 12 is lower
    assert spliced.unacked_syncs == general.unacked_syncs == 2


def test_batch_key_names_a_syncmap_item() -> None:
    def key(action: dict[str, Any]) -> tuple[str, ...]:
        return Entry(1, "5 a:b:c 0", 5, action, [], [], None, "processed").batch_key

    assert key({"type": "notes/changed", "id": "n1", "fields": {}}) == ("notes", "n1")
    assert key({"type": "notes/created", "id": "n1"}) == key({"type": "notes/deleted", "id": "n1"})
    assert key({"type": "a/b/changed", "id": "n1"}) == ("a/b", "n1")
    assert key({"type": "chat/message", "text": "hi"}) == ()
    assert key({"type": "changed", "id": "n1"}) == ()
    assert key({"type": "notes/changed", "id": 7}) == ()
