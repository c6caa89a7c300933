"""next_deadline()/on_timer(): connect timeout, idle ping, pong timeout, synced timeout (A.6)."""

from __future__ import annotations

from logsync.protocol.events import CloseRequested
from logsync.protocol.session import Session, State
from tests.protocol.helpers import (
    ACCEPT_AT,
    CONNECT_AT,
    CONNECT_TIMEOUT_MS,
    OPENED_AT,
    PING_MS,
    TIMEOUT_MS,
    authenticating_session,
    connected_session,
    new_session,
)


def test_connect_timeout_before_connect() -> None:
    session = new_session()
    deadline = OPENED_AT + CONNECT_TIMEOUT_MS
    assert session.next_deadline() == deadline
    assert session.on_timer(deadline - 1) == []
    assert session.next_deadline() == deadline  # still waiting for `connect`
    assert session.on_timer(deadline) == [CloseRequested("timeout")]
    assert session.take_outgoing() == []  # a timeout is local: nothing is sent
    assert session.state is State.CLOSED
    assert session.next_deadline() is None
    assert session.on_timer(deadline + 1) == []


def test_auth_taking_too_long_times_out() -> None:
    # Authentication may wait for admission in a storm: `timeout_ms` from `connect`, not from
    # opening, and past the connect timeout.
    session, _ = authenticating_session()
    deadline = CONNECT_AT + TIMEOUT_MS
    assert session.next_deadline() == deadline
    assert session.on_timer(OPENED_AT + CONNECT_TIMEOUT_MS) == []
    assert session.on_timer(deadline - 1) == []
    assert session.on_timer(deadline) == [CloseRequested("timeout")]
    assert session.accept(deadline + 1, {}) == []
    assert session.take_outgoing() == []


def test_connect_timeout_is_its_own_setting() -> None:
    session = Session("server:x", now=OPENED_AT, timeout_ms=10**6, connect_timeout_ms=300)
    assert session.next_deadline() == OPENED_AT + 300
    assert session.on_timer(OPENED_AT + 299) == []
    assert session.on_timer(OPENED_AT + 300) == [CloseRequested("timeout")]


def test_messages_before_connect_do_not_extend_the_connect_timeout() -> None:
    session = new_session()
    session.receive(["headers", {}], "", OPENED_AT + CONNECT_TIMEOUT_MS - 10)
    assert session.on_timer(OPENED_AT + CONNECT_TIMEOUT_MS) == [CloseRequested("timeout")]


def test_idle_connection_is_pinged_with_the_watermark() -> None:
    session = connected_session()
    session.receive(["ping", 1], "", ACCEPT_AT + 10)
    session.take_outgoing()
    session.send_sync(6, [], ACCEPT_AT + 11)
    session.receive(["synced", 6], "", ACCEPT_AT + 12)
    session.take_outgoing()
    idle_at = ACCEPT_AT + 12 + PING_MS
    assert session.next_deadline() == idle_at
    assert session.on_timer(idle_at - 1) == []
    assert session.take_outgoing() == []
    assert session.on_timer(idle_at) == []
    assert session.take_outgoing() == [["ping", 6]]
    assert session.state is State.CONNECTED
    # A second timer call while waiting for pong does not ping again.
    assert session.on_timer(idle_at + 1) == []
    assert session.take_outgoing() == []


def test_no_pong_within_timeout_closes() -> None:
    session = connected_session()
    session.receive(["pong", 0], "", ACCEPT_AT)
    ping_at = ACCEPT_AT + PING_MS
    session.on_timer(ping_at)
    assert session.take_outgoing() == [["ping", 0]]
    assert session.next_deadline() == ping_at + TIMEOUT_MS
    assert session.on_timer(ping_at + TIMEOUT_MS - 1) == []
    assert session.on_timer(ping_at + TIMEOUT_MS) == [CloseRequested("timeout")]
    assert session.take_outgoing() == []
    assert session.state is State.CLOSED


def test_pong_ends_the_ping_wait_and_rearms_idle() -> None:
    session = connected_session()
    session.receive(["pong", 0], "", ACCEPT_AT)
    ping_at = ACCEPT_AT + PING_MS
    session.on_timer(ping_at)
    session.take_outgoing()
    session.receive(["pong", 0], "", ping_at + 100)
    assert session.next_deadline() == ping_at + 100 + PING_MS
    assert session.on_timer(ping_at + TIMEOUT_MS) == []  # would have been the pong timeout
    assert session.state is State.CONNECTED
    assert session.take_outgoing() == [["ping", 0]]  # idle again by then


def test_any_received_message_resets_the_idle_timer() -> None:
    session = connected_session()
    for offset, msg in enumerate(
        [["headers", {}], ["debug", "error", "x"], ["duilian", "x"], ["error", "timeout"]],
        start=1,
    ):
        now = ACCEPT_AT + offset * (PING_MS - 1)
        session.receive(msg, "", now)
        assert session.next_deadline() == now + PING_MS
        assert session.on_timer(now + PING_MS - 1) == []
        assert session.take_outgoing() == []


def test_unacked_sync_older_than_timeout_closes() -> None:
    session = connected_session()
    sent_at = ACCEPT_AT + 5
    session.send_sync(3, [], sent_at)
    session.take_outgoing()
    # The client keeps pinging but never sends `synced`.
    now = sent_at
    while now + PING_MS // 2 < sent_at + TIMEOUT_MS:
        now += PING_MS // 2
        session.receive(["ping", 0], "", now)
        assert session.on_timer(now) == []
    assert session.next_deadline() == sent_at + TIMEOUT_MS
    assert session.on_timer(sent_at + TIMEOUT_MS - 1) == []
    assert session.on_timer(sent_at + TIMEOUT_MS) == [CloseRequested("timeout")]
    assert session.state is State.CLOSED


def test_synced_clears_the_sync_timeout() -> None:
    session = connected_session()
    session.send_sync(3, [], ACCEPT_AT + 5)
    session.receive(["synced", 3], "", ACCEPT_AT + 6)
    assert session.next_deadline() == ACCEPT_AT + 6 + PING_MS
    session.receive(["ping", 0], "", ACCEPT_AT + TIMEOUT_MS)
    assert session.on_timer(ACCEPT_AT + 5 + TIMEOUT_MS) == []
    assert session.state is State.CONNECTED


def test_sync_timeout_follows_the_oldest_unacked_sync() -> None:
    session = connected_session()
    session.send_sync(1, [], ACCEPT_AT + 1)
    session.send_sync(2, [], ACCEPT_AT + 1000)
    session.receive(["synced", 1], "", ACCEPT_AT + 1001)
    session.receive(["ping", 0], "", ACCEPT_AT + 1 + TIMEOUT_MS - PING_MS + 5)
    assert session.on_timer(ACCEPT_AT + 1 + TIMEOUT_MS) == []  # first sync was acknowledged
    assert session.state is State.CONNECTED
    session.receive(["ping", 0], "", ACCEPT_AT + 999 + TIMEOUT_MS)
    assert session.next_deadline() == ACCEPT_AT + 1000 + TIMEOUT_MS
    assert session.on_timer(ACCEPT_AT + 1000 + TIMEOUT_MS) == [CloseRequested("timeout")]


def test_deadline_is_the_earliest_of_idle_and_sync_timeouts() -> None:
    session = connected_session()
    session.send_sync(1, [], ACCEPT_AT)
    session.receive(["ping", 0], "", ACCEPT_AT + TIMEOUT_MS - 1)
    assert session.next_deadline() == ACCEPT_AT + TIMEOUT_MS


def test_next_deadline_is_always_when_on_timer_acts() -> None:
    # Driving the session only at its deadlines reaches ping, then timeout.
    session = connected_session()
    first = session.next_deadline()
    assert first is not None
    session.on_timer(first)
    assert session.take_outgoing() == [["ping", 0]]
    second = session.next_deadline()
    assert second is not None
    assert second == first + TIMEOUT_MS
    assert session.on_timer(second) == [CloseRequested("timeout")]


def test_ping_waits_ping_ms_after_connected() -> None:
    session, _ = authenticating_session()
    accepted_at = CONNECT_AT + PING_MS - 100
    session.accept(accepted_at, {})
    session.take_outgoing()
    assert session.next_deadline() == accepted_at + PING_MS
    session.on_timer(accepted_at + 100)
    assert session.take_outgoing() == []
