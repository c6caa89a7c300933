"""The per-connection Session state machine: handshake, held messages, sync, ping, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from logsync.protocol.events import (
    ActionsReceived,
    CloseRequested,
    ConnectRequested,
    ErrorReceived,
    HeadersReceived,
    SyncedReceived,
)
from logsync.protocol.ids import NodeParts
from logsync.protocol.messages import ProtocolError
from logsync.protocol.session import Session, State
from tests.protocol.helpers import (
    ACCEPT_AT,
    CLIENT,
    CONNECT_AT,
    SERVER,
    authenticating_session,
    connect_msg,
    connected_session,
    new_session,
)


def receive(session: Session, msg: Any, now: int) -> list[Any]:
    return session.receive(msg, json.dumps(msg, ensure_ascii=False), now)


# --- handshake ----------------------------------------------------------------------------------


def test_connect_reports_node_parts_token_subprotocol_synced() -> None:
    session = new_session()
    events = receive(
        session, connect_msg(CLIENT, 42, {"token": "secret", "subprotocol": 3}), CONNECT_AT
    )
    assert events == [
        ConnectRequested(
            node=NodeParts("10", "10:abc", "10:abc:tab"),
            token="secret",
            subprotocol=3,
            headers={},
            synced=42,
        )
    ]
    assert session.state is State.AUTHENTICATING
    assert session.node == NodeParts("10", "10:abc", "10:abc:tab")
    assert session.subprotocol == 3
    assert session.take_outgoing() == []  # nothing is answered before the app decides


def test_connect_without_options() -> None:
    session = new_session()
    (event,) = receive(session, ["connect", 5, "anon", 0], CONNECT_AT)
    assert isinstance(event, ConnectRequested)
    assert event.node == NodeParts(None, "anon", "anon")
    assert (event.token, event.subprotocol, event.synced) == (None, None, 0)


def test_connect_float_subprotocol_becomes_int() -> None:
    _, events = authenticating_session(options={"subprotocol": 2.0})
    assert isinstance(events[0], ConnectRequested)
    assert events[0].subprotocol == 2
    assert isinstance(events[0].subprotocol, int)


def test_headers_before_connect_reach_connect_requested() -> None:
    session = new_session()
    assert receive(session, ["headers", {"lang": "fr"}], CONNECT_AT - 1) == [
        HeadersReceived({"lang": "fr"})
    ]
    (event,) = receive(session, connect_msg(), CONNECT_AT)
    assert isinstance(event, ConnectRequested)
    assert event.headers == {"lang": "fr"}


def test_headers_last_one_wins() -> None:
    session = connected_session()
    receive(session, ["headers", {"a": 1, "b": 2}], ACCEPT_AT + 1)
    events = receive(session, ["headers", {"c": 3}], ACCEPT_AT + 2)
    assert events == [HeadersReceived({"c": 3})]
    assert session.headers == {"c": 3}  # replaced, not merged


def test_accept_sends_headers_then_connected_and_sets_base_time() -> None:
    session, _ = authenticating_session()
    events = session.accept(ACCEPT_AT, {"subprotocol": 1}, {"env": "development"})
    assert events == []
    assert session.take_outgoing() == [
        ["headers", {"env": "development"}],
        ["connected", 5, SERVER, [CONNECT_AT, ACCEPT_AT], {"subprotocol": 1}],
    ]
    assert session.state is State.CONNECTED
    assert session.base_time == ACCEPT_AT
    assert session.connect_time == CONNECT_AT


def test_accept_without_headers_sends_only_connected() -> None:
    session, _ = authenticating_session()
    session.accept(ACCEPT_AT, {})
    assert session.take_outgoing() == [["connected", 5, SERVER, [CONNECT_AT, ACCEPT_AT], {}]]


def test_accept_twice_or_before_connect_does_nothing() -> None:
    session = new_session()
    assert session.accept(ACCEPT_AT, {}) == []
    assert session.take_outgoing() == []
    assert session.state is State.AWAIT_CONNECT
    session = connected_session()
    assert session.accept(ACCEPT_AT + 5, {}) == []
    assert session.take_outgoing() == []
    assert session.base_time == ACCEPT_AT


@pytest.mark.parametrize("protocol", [4, 3, 0, -1, 4.9])
def test_old_protocol_is_wrong_protocol_and_closes(protocol: float) -> None:
    session = new_session()
    events = receive(session, ["connect", protocol, CLIENT, 0], CONNECT_AT)
    assert events == [CloseRequested("wrong-protocol")]
    assert session.take_outgoing() == [
        ["error", "wrong-protocol", {"supported": 5, "used": protocol}]
    ]
    assert session.state is State.CLOSED


def test_newer_protocol_is_accepted() -> None:
    session = new_session()
    (event,) = receive(session, ["connect", 6, CLIENT, 0], CONNECT_AT)
    assert isinstance(event, ConnectRequested)


@pytest.mark.parametrize(
    "msg",
    [
        connect_msg(options={"token": 123}),
        connect_msg(options={"token": ["secret"]}),
        connect_msg(options={"token": True}),
        connect_msg(options={"subprotocol": "1"}),
        connect_msg(options={"subprotocol": True}),
        connect_msg(options={"subprotocol": [1]}),
        connect_msg("10:abc tab"),
        connect_msg(" "),
        connect_msg(""),
    ],
    ids=lambda m: json.dumps(m),
)
def test_malformed_connect_options_are_wrong_format(msg: list[Any]) -> None:
    session = new_session()
    raw = json.dumps(msg)
    events = session.receive(msg, raw, CONNECT_AT)
    assert events == [CloseRequested("wrong-format")]
    assert session.take_outgoing() == [["error", "wrong-format", raw]]
    assert session.state is State.CLOSED


@pytest.mark.parametrize(
    "options", [{"subprotocol": float("inf")}, {"subprotocol": float("nan")}], ids=str
)
def test_non_finite_subprotocol_is_wrong_format(options: dict[str, Any]) -> None:
    session = new_session()
    events = session.receive(connect_msg(options=options), "raw", CONNECT_AT)
    assert events == [CloseRequested("wrong-format")]


def test_second_connect_is_wrong_format() -> None:
    session, _ = authenticating_session()
    events = receive(session, connect_msg(), CONNECT_AT + 1)
    assert events == [CloseRequested("wrong-format")]
    assert session.take_outgoing()[0][:2] == ["error", "wrong-format"]


def test_reject_sends_the_error_then_closes() -> None:
    session, _ = authenticating_session()
    events = session.send_error(ProtocolError("wrong-credentials"))
    assert events == [CloseRequested("wrong-credentials")]
    assert session.take_outgoing() == [["error", "wrong-credentials"]]
    assert session.state is State.CLOSED
    assert session.accept(ACCEPT_AT, {}) == []
    assert session.take_outgoing() == []


def test_reject_with_options() -> None:
    session, _ = authenticating_session(options={"subprotocol": 1})
    events = session.send_error(ProtocolError("wrong-subprotocol", {"supported": 2, "used": 1}))
    assert events == [CloseRequested("wrong-subprotocol")]
    assert session.take_outgoing() == [["error", "wrong-subprotocol", {"supported": 2, "used": 1}]]


def test_unknown_message_closes_with_type() -> None:
    session = connected_session()
    events = receive(session, ["pung", 1], ACCEPT_AT + 1)
    assert events == [CloseRequested("unknown-message")]
    assert session.take_outgoing() == [["error", "unknown-message", "pung"]]


def test_invalid_message_closes_with_raw_text() -> None:
    session = connected_session()
    events = session.receive(["ping", "x"], '["ping","x"]', ACCEPT_AT + 1)
    assert events == [CloseRequested("wrong-format")]
    assert session.take_outgoing() == [["error", "wrong-format", '["ping","x"]']]


# --- messages held before auth ------------------------------------------------------------------


def test_messages_before_auth_are_held_and_replayed_in_order_after_accept() -> None:
    session, _ = authenticating_session()
    assert receive(session, ["ping", 3], CONNECT_AT + 1) == []
    action = {"type": "A"}
    sync = [
        "sync",
        7,
        action,
        {"time": 0, "id": 5},
        {"type": "B"},
        {"time": -3, "id": [-3, 2]},
        {"type": "C"},
        {"time": 10, "id": [-20, "other:node", 4], "subprotocol": 2},
    ]
    assert receive(session, sync, CONNECT_AT + 2) == []
    assert receive(session, ["synced", 0], CONNECT_AT + 3) == []
    assert session.take_outgoing() == []  # no pong before auth

    events = session.accept(ACCEPT_AT, {})
    base = ACCEPT_AT
    assert events == [
        ActionsReceived(
            7,
            [
                (action, {"time": base, "id": f"{base + 5} {CLIENT} 0"}),
                ({"type": "B"}, {"time": base - 3, "id": f"{base - 3} {CLIENT} 2"}),
                (
                    {"type": "C"},
                    {"time": base + 10, "id": f"{base - 20} other:node 4", "subprotocol": 2},
                ),
            ],
        ),
        SyncedReceived(0),
    ]
    assert session.take_outgoing() == [
        ["connected", 5, SERVER, [CONNECT_AT, ACCEPT_AT], {}],
        ["pong", 0],
    ]


def test_ping_before_connect_is_held_too() -> None:
    session = new_session()
    assert receive(session, ["ping", 1], CONNECT_AT - 1) == []
    receive(session, connect_msg(), CONNECT_AT)
    assert session.take_outgoing() == []
    session.accept(ACCEPT_AT, {})
    assert session.take_outgoing()[-1] == ["pong", 0]


def test_received_sync_does_not_alias_the_wire_meta() -> None:
    session = connected_session()
    meta = {"time": 1, "id": 1}
    (event,) = receive(session, ["sync", 1, {"type": "A"}, meta], ACCEPT_AT + 1)
    assert isinstance(event, ActionsReceived)
    assert meta == {"time": 1, "id": 1}
    assert event.entries[0][1] == {"time": ACCEPT_AT + 1, "id": f"{ACCEPT_AT + 1} {CLIENT} 0"}


def test_held_queue_is_bounded() -> None:
    session, _ = authenticating_session()
    assert session.preauth_held_messages == 100
    for i in range(session.preauth_held_messages):
        assert receive(session, ["ping", i], CONNECT_AT + 1) == []
    events = receive(session, ["ping", 0], CONNECT_AT + 2)
    assert events == [CloseRequested("wrong-format")]
    out = session.take_outgoing()
    assert len(out) == 1
    assert out[0][:2] == ["error", "wrong-format"]
    assert session.state is State.CLOSED
    assert session.accept(ACCEPT_AT, {}) == []
    assert session.take_outgoing() == []


def test_handled_before_auth_messages_are_not_held() -> None:
    session, _ = authenticating_session()
    assert receive(session, ["debug", "error", "x"], CONNECT_AT + 1) == []
    assert receive(session, ["connected", 5, "x", [1, 2]], CONNECT_AT + 1) == []
    assert receive(session, ["duilian", "金木水火土"], CONNECT_AT + 1) == []
    assert session.take_outgoing() == [["duilian", "板城烧锅酒"]]
    assert session.accept(ACCEPT_AT, {}) == []  # nothing was held


def test_held_bad_id_closes_after_accept_and_later_messages_are_dropped() -> None:
    session, _ = authenticating_session()
    receive(session, ["sync", 1, {"type": "A"}, {"time": 0, "id": float("inf")}], CONNECT_AT + 1)
    receive(session, ["ping", 1], CONNECT_AT + 2)
    events = session.accept(ACCEPT_AT, {})
    assert events == [CloseRequested("wrong-format")]
    out = session.take_outgoing()
    assert out[0][0] == "connected"
    assert out[1][:2] == ["error", "wrong-format"]
    assert len(out) == 2  # the held ping is not answered after the close


# --- after close --------------------------------------------------------------------------------


def test_after_close_receive_and_sends_do_nothing() -> None:
    session = connected_session()
    session.close()
    assert session.state is State.CLOSED
    assert receive(session, ["ping", 1], ACCEPT_AT + 1) == []
    assert receive(session, ["pung"], ACCEPT_AT + 1) == []
    assert receive(session, "garbage", ACCEPT_AT + 1) == []
    session.send_sync(5, [({"type": "A"}, {"id": f"1 {SERVER} 0", "time": 1})], ACCEPT_AT + 1)
    session.send_synced(3)
    session.send_debug("x")
    assert session.take_outgoing() == []
    assert session.next_deadline() is None
    assert session.on_timer(10**12) == []
    assert session.watermark == 0


def test_after_protocol_error_nothing_more_is_handled() -> None:
    session = connected_session()
    receive(session, ["ping", "bad"], ACCEPT_AT + 1)
    session.take_outgoing()
    assert receive(session, ["ping", 1], ACCEPT_AT + 2) == []
    assert session.take_outgoing() == []


def test_send_error_reports_and_closes() -> None:
    session = connected_session()
    assert session.send_error(ProtocolError("wrong-format", "x")) == [
        CloseRequested("wrong-format")
    ]
    assert session.take_outgoing() == [["error", "wrong-format", "x"]]
    assert session.state is State.CLOSED


# --- receiving ----------------------------------------------------------------------------------


def test_sync_is_decompressed_against_base_time() -> None:
    session = connected_session()
    base = session.base_time
    msg = [
        "sync",
        9,
        {"type": "A"},
        {"time": 5, "id": 5},
        {"type": "B"},
        {"time": 5.0, "id": [6.0, 1]},
        {"type": "C"},
        {"time": -100, "id": [-100, "1:other:t", 3]},
    ]
    (event,) = receive(session, msg, ACCEPT_AT + 10)
    assert event == ActionsReceived(
        9,
        [
            ({"type": "A"}, {"time": base + 5, "id": f"{base + 5} {CLIENT} 0"}),
            ({"type": "B"}, {"time": base + 5, "id": f"{base + 6} {CLIENT} 1"}),
            ({"type": "C"}, {"time": base - 100, "id": f"{base - 100} 1:other:t 3"}),
        ],
    )
    assert isinstance(event, ActionsReceived)
    assert type(event.entries[1][1]["time"]) is int  # integral floats become ints
    assert session.take_outgoing() == []  # `synced` is the application's job


def test_empty_sync_is_an_event() -> None:
    session = connected_session()
    assert receive(session, ["sync", 4], ACCEPT_AT + 1) == [ActionsReceived(4, [])]


def test_ping_is_answered_with_the_watermark_not_the_client_value() -> None:
    session = connected_session()
    receive(session, ["ping", 999], ACCEPT_AT + 1)
    assert session.take_outgoing() == [["pong", 0]]
    session.send_sync(7, [], ACCEPT_AT + 2)
    session.take_outgoing()
    receive(session, ["ping", 3], ACCEPT_AT + 3)
    assert session.take_outgoing() == [["pong", 7]]


def test_pong_from_client_is_silent() -> None:
    session = connected_session()
    assert receive(session, ["pong", 5], ACCEPT_AT + 1) == []
    assert session.take_outgoing() == []


def test_synced_pops_unacked_syncs_and_sets_acknowledged() -> None:
    session = connected_session()
    for added in (1, 2, 3):
        session.send_sync(added, [], ACCEPT_AT + added)
    assert session.unacked_syncs == 3
    assert receive(session, ["synced", 2], ACCEPT_AT + 10) == [SyncedReceived(2)]
    assert session.unacked_syncs == 1
    assert session.acknowledged == 2
    assert receive(session, ["synced", 1], ACCEPT_AT + 11) == [SyncedReceived(1)]
    assert session.acknowledged == 2  # never goes back
    assert session.unacked_syncs == 1
    receive(session, ["synced", 3], ACCEPT_AT + 12)
    assert session.unacked_syncs == 0
    assert session.acknowledged == 3


def test_duilian() -> None:
    session = connected_session()
    assert receive(session, ["duilian", "金木水火土"], ACCEPT_AT + 1) == []
    assert session.take_outgoing() == [["duilian", "板城烧锅酒"]]
    receive(session, ["duilian", "other"], ACCEPT_AT + 2)
    assert session.take_outgoing() == []
    assert session.state is State.CONNECTED


def test_error_from_client_is_reported_and_keeps_the_session() -> None:
    session = connected_session()
    assert receive(session, ["error", "wrong-format", "x"], ACCEPT_AT + 1) == [
        ErrorReceived("wrong-format", "x")
    ]
    assert receive(session, ["error", "timeout"], ACCEPT_AT + 1) == [ErrorReceived("timeout", None)]
    assert session.take_outgoing() == []
    assert session.state is State.CONNECTED


def test_debug_and_connected_from_client_are_ignored() -> None:
    session = connected_session()
    assert receive(session, ["debug", "error", "x"], ACCEPT_AT + 1) == []
    assert receive(session, ["connected", 5, "x", [1, 2]], ACCEPT_AT + 1) == []
    assert session.take_outgoing() == []
    assert session.state is State.CONNECTED


@pytest.mark.parametrize("node", ["", "a b", "a  b"])
def test_sync_with_unparseable_node_in_wire_id_is_wrong_format(node: str) -> None:
    session = connected_session()
    events = receive(session, ["sync", 1, {"type": "A"}, {"time": 0, "id": [0, node, 0]}], 1)
    assert events == [CloseRequested("wrong-format")]


# --- sending ------------------------------------------------------------------------------------


def test_send_sync_compresses_ids_and_time() -> None:
    session = connected_session()
    base = session.base_time
    session.send_sync(
        12,
        [
            ({"type": "A"}, {"id": f"{base + 5} {SERVER} 0", "time": base + 5, "added": 11}),
            ({"type": "B"}, {"id": f"{base - 5} {SERVER} 2", "time": base - 4}),
            ({"type": "C"}, {"id": f"{base} {CLIENT} 1", "time": base, "subprotocol": 3}),
            ({"type": "D"}, {"id": f"{base + 1} server:other 0", "time": base + 1}),
        ],
        ACCEPT_AT + 1,
    )
    assert session.take_outgoing() == [
        [
            "sync",
            12,
            {"type": "A"},
            {"id": 5, "time": 5},
            {"type": "B"},
            {"id": [-5, 2], "time": -4},
            {"type": "C"},
            {"id": [0, CLIENT, 1], "time": 0, "subprotocol": 3},
            {"type": "D"},
            {"id": [1, "server:other", 0], "time": 1},
        ]
    ]
    assert session.watermark == 12
    assert session.unacked_syncs == 1


def test_send_sync_watermark_only_moves_up_and_none_uses_it() -> None:
    session = connected_session()
    entry = ({"type": "A"}, {"id": f"{ACCEPT_AT} {SERVER} 0", "time": ACCEPT_AT})
    session.send_sync(None, [entry], ACCEPT_AT + 1)
    session.send_sync(10, [entry], ACCEPT_AT + 2)
    session.send_sync(None, [entry], ACCEPT_AT + 3)
    session.send_sync(4, [entry], ACCEPT_AT + 4)  # an older entry re-sent
    out = session.take_outgoing()
    assert [msg[1] for msg in out] == [0, 10, 10, 10]
    assert session.watermark == 10
    assert session.unacked_syncs == 4


def test_send_sync_before_accept_is_dropped() -> None:
    session, _ = authenticating_session()
    session.send_sync(5, [], CONNECT_AT + 1)
    assert session.take_outgoing() == []
    assert session.watermark == 0
    assert session.unacked_syncs == 0


def test_send_synced_and_debug() -> None:
    session = connected_session()
    session.send_synced(7)
    session.send_debug("Action was denied")
    assert session.take_outgoing() == [["synced", 7], ["debug", "error", "Action was denied"]]
    session, _ = authenticating_session()
    session.send_synced(7)
    session.send_debug("x")
    assert session.take_outgoing() == []


def test_take_outgoing_empties_the_queue() -> None:
    session = connected_session()
    receive(session, ["ping", 1], ACCEPT_AT + 1)
    assert session.take_outgoing() == [["pong", 0]]
    assert session.take_outgoing() == []


# --- validated at the door ----------------------------------------------------------------------

NAN = float("nan")


def sync_of(*entries: tuple[Any, Any], added: float = 1) -> list[Any]:
    return ["sync", added, *[x for entry in entries for x in entry]]


def test_actions_received_refused_defaults_to_empty() -> None:
    assert ActionsReceived(1, []).refused == []


def test_an_action_with_bad_fields_is_refused_alone_and_the_connection_stays() -> None:
    session = connected_session()
    base = session.base_time
    msg = sync_of(
        ({"type": "A"}, {"time": 0, "id": 0}),
        ({"type": "B", "blob": b"\x00"}, {"time": 1, "id": 1}),
        ({"type": "C"}, {"time": 1e300, "id": 2}),
        ({"type": "D"}, {"time": 0.5, "id": [3, 1]}),
        ({"type": "E"}, {"time": 0, "id": 4, "subprotocol": "1"}),
        ({"type": "F"}, {"time": -base - 1, "id": 5}),
        ({"type": "G"}, {"time": 0, "id": 6, "subprotocol": 2.0}),
        added=9,
    )
    (event,) = session.receive(msg, "raw", ACCEPT_AT + 1)
    assert isinstance(event, ActionsReceived)
    assert event.added == 9
    assert event.entries == [
        ({"type": "A"}, {"time": base, "id": f"{base} {CLIENT} 0"}),
        ({"type": "G"}, {"time": base, "id": f"{base + 6} {CLIENT} 0", "subprotocol": 2}),
    ]
    refused = {action["type"]: (action, meta, details) for action, meta, details in event.refused}
    assert list(refused) == ["B", "C", "D", "E", "F"]  # in order
    assert refused["B"] == (
        {"type": "B"},  # only its type: the bytes cannot be quoted back in JSON
        {"time": base + 1, "id": f"{base + 1} {CLIENT} 0"},
        "action does not round-trip through JSON and msgpack",
    )
    assert refused["C"][1] == {"time": 1e300 + base, "id": f"{base + 2} {CLIENT} 0"}
    assert refused["C"][2].startswith("meta.time must be a whole number in 0..2**53")
    assert refused["D"][1]["id"] == f"{base + 3} {CLIENT} 1"
    assert "meta.time" in refused["D"][2]
    assert "subprotocol" in refused["E"][2]
    assert "meta.time" in refused["F"][2]
    assert session.state is State.CONNECTED
    assert session.take_outgoing() == []  # the application answers them (undo) and sends synced


def test_refused_actions_are_quoted_whole_when_they_round_trip() -> None:
    session = connected_session()
    action = {"type": "logux/subscribe", "channel": 5}
    (event,) = receive(session, sync_of((action, {"time": 0, "id": 0})), ACCEPT_AT + 1)
    assert isinstance(event, ActionsReceived)
    assert event.entries == []
    assert [(a, d) for a, _, d in event.refused] == [
        (action, "channel must be a string of at most 512 characters")
    ]


def test_max_channel_length_is_a_session_setting() -> None:
    session, _ = authenticating_session()
    session.max_channel_length = 3
    session.accept(ACCEPT_AT, {})
    msg = sync_of(
        ({"type": "logux/subscribe", "channel": "abc"}, {"time": 0, "id": 0}),
        ({"type": "logux/subscribe", "channel": "abcd"}, {"time": 0, "id": 1}),
    )
    (event,) = receive(session, msg, ACCEPT_AT + 1)
    assert isinstance(event, ActionsReceived)
    assert [a["channel"] for a, _ in event.entries] == ["abc"]
    assert [a["channel"] for a, _, _ in event.refused] == ["abcd"]
    assert Session(SERVER, now=0, max_channel_length=7).max_channel_length == 7


def test_nan_time_from_msgpack_is_refused_not_stored() -> None:
    session = connected_session()
    (event,) = session.receive(sync_of(({"type": "A"}, {"time": NAN, "id": 0})), "0x", 1)
    assert isinstance(event, ActionsReceived)
    assert event.entries == []
    assert len(event.refused) == 1


@pytest.mark.parametrize(
    "wire_id",
    [
        [1e300, 0],  # the 301-digit millisecond
        1e300,
        [0, 2**60],
        [0.5, 0],
        [0, "a:b:c:d", 0],
        [0, "a\tb", 0],
        [-(10**13), "o", 0],  # before 1970
        NAN,
    ],
    ids=repr,
)
def test_an_id_that_does_not_decode_to_a_valid_id_is_wrong_format(wire_id: Any) -> None:
    session = connected_session()
    msg = sync_of(
        ({"type": "A"}, {"time": 0, "id": 0}), ({"type": "B"}, {"time": 0, "id": wire_id})
    )
    events = session.receive(msg, "the frame", ACCEPT_AT + 1)
    assert events == [CloseRequested("wrong-format")]  # nothing of the frame is reported
    assert session.take_outgoing() == [["error", "wrong-format", "the frame"]]


@pytest.mark.parametrize(
    "msg",
    [
        ["sync", -1],
        ["sync", 1e300],
        ["sync", NAN],
        ["synced", -1],
        ["synced", 2**53 + 1],
        ["synced", NAN],
        ["ping", float("inf")],
        ["pong", -0.5],
        ["sync", 1, {"type": "A"}, [0, 0]],  # meta not an object
        ["sync", 1, {"type": 5}, {"time": 0, "id": 0}],  # type not a string
        ["headers", {"b": b"\x00"}],
    ],
    ids=repr,
)
def test_frame_level_errors_close(msg: list[Any]) -> None:
    session = connected_session()
    assert session.receive(msg, "raw", ACCEPT_AT + 1) == [CloseRequested("wrong-format")]


@pytest.mark.parametrize(
    "msg",
    [
        ["connect", NAN, CLIENT, 0],
        ["connect", float("-inf"), CLIENT, 0],  # not wrong-protocol: -inf cannot be echoed
        ["connect", float("inf"), CLIENT, 0],
        ["connect", 5, CLIENT, 1e300],
        ["connect", 5, CLIENT, -1],
        ["connect", 5, CLIENT, NAN],
        connect_msg("a:b:c:d"),
        connect_msg("a::b"),
        connect_msg("a\nb"),
        connect_msg("x" * 257),
        connect_msg(options={"subprotocol": 1e308}),
        connect_msg(options={"subprotocol": -1}),
        connect_msg(options={"subprotocol": 1.5}),
        connect_msg(options={"subprotocol": b"\x01"}),
        connect_msg(options={"token": "t" * (64 * 1024 + 1)}),
        connect_msg(options={"token": b"secret"}),
    ],
    ids=lambda m: repr(m)[:60],
)
def test_out_of_range_connect_is_wrong_format(msg: list[Any]) -> None:
    session = new_session()
    assert session.receive(msg, "raw", CONNECT_AT) == [CloseRequested("wrong-format")]
    assert session.take_outgoing() == [["error", "wrong-format", "raw"]]


def test_connect_at_the_bounds_is_accepted() -> None:
    session = new_session()
    msg = connect_msg("u:" + "c" * 250 + ":t", 2**53, {"token": "t" * 65536, "subprotocol": 2**53})
    (event,) = session.receive(msg, "raw", CONNECT_AT)
    assert isinstance(event, ConnectRequested)
    assert event.subprotocol == 2**53
    _, events = authenticating_session(options={"token": None})
    assert isinstance(events[0], ConnectRequested)
    assert events[0].token is None


def test_held_messages_are_bounded_in_bytes_too() -> None:
    session, _ = authenticating_session()
    assert session.preauth_held_bytes == 64 * 1024
    for _ in range(3):
        assert session.receive(["ping", 0], "r", CONNECT_AT + 1, size=20_000) == []
    assert session.receive(["ping", 0], "r", CONNECT_AT + 2, size=5_536) == []  # 65536 in all
    events = session.receive(["ping", 0], "r", CONNECT_AT + 2, size=1)
    assert events == [CloseRequested("wrong-format")]
    assert session.take_outgoing() == [["error", "wrong-format", "too many messages before auth"]]


def test_held_bytes_default_to_the_raw_length_and_the_bounds_are_settings() -> None:
    session = Session(SERVER, now=0, preauth_held_bytes=10, preauth_held_messages=5)
    session.receive(connect_msg(), "c", 1)
    assert session.receive(["ping", 0], "x" * 10, 2) == []
    assert session.receive(["ping", 0], "x", 3) == [CloseRequested("wrong-format")]
    session = Session(SERVER, now=0, preauth_held_messages=2)
    for _ in range(2):
        assert session.receive(["ping", 0], "x", 1) == []
    assert session.receive(["ping", 0], "x", 1) == [CloseRequested("wrong-format")]


@pytest.mark.parametrize("authenticating", [False, True])
def test_error_before_auth_is_reported_then_closes(authenticating: bool) -> None:
    session = authenticating_session()[0] if authenticating else new_session()
    receive(session, ["ping", 1], CONNECT_AT + 1)  # held, then dropped
    events = receive(session, ["error", "timeout", 5], CONNECT_AT + 1)
    assert events == [ErrorReceived("timeout", 5), CloseRequested("error before auth")]
    assert session.take_outgoing() == []  # an error is not answered with an error
    assert session.state is State.CLOSED
    assert session.accept(ACCEPT_AT, {}) == []
    assert session.take_outgoing() == []


def test_wrong_format_echoes_at_most_1024_characters() -> None:
    session = connected_session()
    raw = '["ping","' + "x" * 1_000_000 + '"]'
    session.receive(["ping", "x" * 1_000_000], raw, ACCEPT_AT + 1)
    assert session.take_outgoing() == [["error", "wrong-format", raw[:1024]]]


def test_unknown_message_echo_is_bounded_too() -> None:
    session = connected_session()
    session.receive(["p" * 5000], "raw", ACCEPT_AT + 1)
    assert session.take_outgoing() == [["error", "unknown-message", "p" * 1024]]


def test_a_bad_id_in_a_held_sync_is_wrong_format_after_accept() -> None:
    session, _ = authenticating_session()
    receive(session, ["sync", 1, {"type": "A"}, {"time": 0, "id": [1e300, 0]}], CONNECT_AT + 1)
    assert session.accept(ACCEPT_AT, {}) == [CloseRequested("wrong-format")]
