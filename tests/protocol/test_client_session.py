"""The client side of Logux v5 without sockets: handshake and time fix, sync both ways, ping,
errors, timeouts, wrong-state calls; and one client session talking to a real server Session."""

from __future__ import annotations

import pytest

from logsync.protocol.client import (
    ActionsArrived,
    ClientSession,
    ClientSessionError,
    ClientState,
    Connected,
    Disconnect,
    HeadersArrived,
    ServerError,
    SyncedArrived,
)
from logsync.protocol.codec import JSON
from logsync.protocol.events import ActionsReceived, ConnectRequested
from logsync.protocol.session import Session

NODE = "10:abc"


def connected(session: ClientSession, start: int, end: int, now: int) -> list[object]:
    return list(session.receive(["connected", 5, "server:x", [start, end], {}], "", now))


def test_connect_message_carries_node_synced_token_subprotocol_and_headers() -> None:
    session = ClientSession(
        NODE, now=1000, synced=42, token="secret", subprotocol=3, headers={"lang": "en"}
    )
    assert session.take_outgoing() == [
        ["headers", {"lang": "en"}],
        ["connect", 5, NODE, 42, {"token": "secret", "subprotocol": 3}],
    ]
    assert ClientSession(NODE, now=0).take_outgoing() == [["connect", 5, NODE, 0]]


def test_time_fix_is_logux_formula() -> None:
    # client clock 10 s ahead of the server; 40 ms each way; the server took 20 ms to authenticate
    session = ClientSession(NODE, now=100_000)
    start, end = 90_040, 90_060
    events = connected(session, start, end, now=100_100)
    (event,) = events
    assert isinstance(event, Connected)
    round_trip = 100_100 - 100_000 - (end - start)
    assert event.time_fix == (100_000 - start) + round_trip // 2 == 10_000
    assert session.base_time == end
    assert session.state is ClientState.CONNECTED


def test_sent_and_received_times_are_shifted_by_base_time_and_time_fix() -> None:
    session = ClientSession(NODE, now=100_000)
    connected(session, 90_040, 90_060, now=100_100)
    session.take_outgoing()
    session.send_sync(7, [({"type": "a"}, {"id": f"100200 {NODE} 0", "time": 100_200})], 100_200)
    session.send_sync(8, [({"type": "b"}, {"id": f"100200 {NODE} 1", "time": 100_200})], 100_200)
    first, second = session.take_outgoing()
    # own ids compress to ms (seq 0) or [ms, seq]; time is moved into the server's clock
    assert first == [
        "sync",
        7,
        {"type": "a"},
        {"id": 100_200 - 90_060, "time": 100_200 - 10_000 - 90_060},
    ]
    assert second[3]["id"] == [100_200 - 90_060, 1]
    # received: ids expand against baseTime and the server's node id; time gets the fix back
    (arrived,) = session.receive(
        [
            "sync",
            3,
            {"type": "x"},
            {"id": 5, "time": 5},
            {"type": "y"},
            {"id": [6, "11:z", 2], "time": 6},
        ],
        "",
        100_300,
    )
    assert isinstance(arrived, ActionsArrived)
    assert arrived.added == 3
    assert arrived.entries[0][1] == {"id": "90065 server:x 0", "time": 90_065 + 10_000}
    assert arrived.entries[1][1]["id"] == "90066 11:z 2"
    assert session.last_received == 3
    session.send_synced(3)
    assert session.take_outgoing() == [["synced", 3]]


def test_synced_confirms_syncs_up_to_its_value() -> None:
    session = ClientSession(NODE, now=0)
    connected(session, 0, 0, 0)
    for added in (1, 2, 3):
        session.send_sync(added, [({"type": "a"}, {"id": f"{added} {NODE} 0", "time": added})], 0)
    assert session.unacked_syncs == 3
    assert session.receive(["synced", 2], "", 10) == [SyncedArrived(2)]
    assert session.unacked_syncs == 1


def test_ping_is_answered_with_what_we_sent_and_sent_when_idle() -> None:
    session = ClientSession(NODE, now=0, ping_ms=1000, timeout_ms=5000)
    connected(session, 0, 0, 0)
    session.take_outgoing()
    session.send_sync(9, [({"type": "a"}, {"id": f"1 {NODE} 0", "time": 1})], 0)
    session.receive(["synced", 9], "", 0)
    session.take_outgoing()
    session.receive(["ping", 4], "", 10)
    assert session.take_outgoing() == [["pong", 9]]
    assert session.next_deadline() == 1010
    assert session.on_timer(1009) == []
    assert session.take_outgoing() == []
    assert session.on_timer(1010) == []
    assert session.take_outgoing() == [["ping", 9]]
    # no pong within the timeout: disconnect, nothing sent
    assert session.next_deadline() == 6010
    assert session.on_timer(6010) == [Disconnect("timeout")]
    assert session.take_outgoing() == []
    assert session.state is ClientState.CLOSED


def test_pong_ends_the_ping_wait() -> None:
    session = ClientSession(NODE, now=0, ping_ms=1000, timeout_ms=5000)
    connected(session, 0, 0, 0)
    session.on_timer(1000)
    session.receive(["pong", 0], "", 1500)
    assert session.next_deadline() == 2500
    assert session.on_timer(5999) != [Disconnect("timeout")]


def test_no_connected_within_timeout_disconnects() -> None:
    session = ClientSession(NODE, now=0, timeout_ms=3000)
    assert session.next_deadline() == 3000
    assert session.on_timer(2999) == []
    assert session.on_timer(3000) == [Disconnect("timeout")]


def test_unconfirmed_sync_times_out() -> None:
    session = ClientSession(NODE, now=0, ping_ms=100_000, timeout_ms=3000)
    connected(session, 0, 0, 0)
    session.send_sync(1, [({"type": "a"}, {"id": f"1 {NODE} 0", "time": 1})], 500)
    assert session.next_deadline() == 3500
    assert session.on_timer(3500) == [Disconnect("timeout")]


@pytest.mark.parametrize("kind", ["wrong-credentials", "wrong-subprotocol", "wrong-protocol"])
def test_fatal_errors_close_for_good(kind: str) -> None:
    session = ClientSession(NODE, now=0)
    events = session.receive(["error", kind], "", 1)
    assert events == [ServerError(kind, None, fatal=True), Disconnect(kind)]
    assert session.state is ClientState.CLOSED
    assert session.receive(["connected", 5, "s", [0, 0]], "", 2) == []


def test_other_errors_are_reported_only() -> None:
    session = ClientSession(NODE, now=0)
    connected(session, 0, 0, 0)
    assert session.receive(["error", "timeout", 5000], "", 1) == [
        ServerError("timeout", 5000, fatal=False)
    ]
    assert session.state is ClientState.CONNECTED


def test_old_server_protocol_is_refused() -> None:
    session = ClientSession(NODE, now=0)
    session.take_outgoing()
    events = session.receive(["connected", 4, "server:x", [0, 0]], "", 1)
    assert events == [Disconnect("wrong-protocol")]
    assert session.take_outgoing() == [["error", "wrong-protocol", {"supported": 5, "used": 4}]]


def test_bad_messages_are_wrong_format_and_close() -> None:
    session = ClientSession(NODE, now=0)
    session.take_outgoing()
    assert session.receive(["sync", 1, {"type": "a"}, {"id": 1, "time": 1}], "raw", 1) == [
        Disconnect("wrong-format")
    ]
    assert session.take_outgoing()[0][:2] == ["error", "wrong-format"]

    other = ClientSession(NODE, now=0)
    assert other.receive(["nonsense"], "", 1) == [Disconnect("unknown-message")]
    third = ClientSession(NODE, now=0)
    connected(third, 0, 0, 0)
    assert third.receive(["sync", "x"], "bad", 1) == [Disconnect("wrong-format")]


def test_headers_are_reported() -> None:
    session = ClientSession(NODE, now=0)
    assert session.receive(["headers", {"env": "development"}], "", 0) == [
        HeadersArrived({"env": "development"})
    ]
    assert session.headers == {"env": "development"}


def test_wrong_state_calls_raise() -> None:
    session = ClientSession(NODE, now=0)
    with pytest.raises(ClientSessionError):
        session.send_sync(1, [], 0)
    with pytest.raises(ClientSessionError):
        session.send_synced(1)
    session.close()
    with pytest.raises(ClientSessionError):
        session.send_synced(1)
    assert session.next_deadline() is None


def _pump(frames: list[list[object]]) -> list[tuple[object, str]]:
    return [(JSON.decode(JSON.encode(m)), JSON.encode(m)) for m in frames]


def test_against_the_server_session() -> None:
    """The two state machines agree: ids, times and cursors survive the round trip."""
    client = ClientSession(NODE, now=50_000, synced=0, token="t", subprotocol=1)
    server = Session("server:s", now=40_000)
    events = []
    for msg, raw in _pump(client.take_outgoing()):
        events += server.receive(msg, raw, 40_010)
    (request,) = events
    assert isinstance(request, ConnectRequested)
    assert request.token == "t" and request.node.node_id == NODE
    server.accept(40_020, {"subprotocol": 1})
    arrived = []
    for msg, raw in _pump(server.take_outgoing()):
        arrived += client.receive(msg, raw, 50_030)
    assert isinstance(arrived[0], Connected)
    assert arrived[0].time_fix == 10_000 - 0  # 50_000 - 40_010 + (30 - 10) / 2 = 10_000
    # client → server: the server sees the time in its own clock
    client.send_sync(1, [({"type": "a"}, {"id": f"50100 {NODE} 0", "time": 50_100})], 50_100)
    received = []
    for msg, raw in _pump(client.take_outgoing()):
        received += server.receive(msg, raw, 40_110)
    (actions,) = received
    assert isinstance(actions, ActionsReceived)
    assert actions.entries == [({"type": "a"}, {"id": f"50100 {NODE} 0", "time": 40_100})]
    # server → client
    server.send_sync(17, [({"type": "b"}, {"id": "40200 server:s 0", "time": 40_200})], 40_200)
    server.send_synced(1)
    back = []
    for msg, raw in _pump(server.take_outgoing()):
        back += client.receive(msg, raw, 50_210)
    assert back[0] == ActionsArrived(
        17, [({"type": "b"}, {"id": "40200 server:s 0", "time": 50_200})]
    )
    assert back[1] == SyncedArrived(1)
    assert client.unacked_syncs == 0
