"""Shared builders for the protocol-core tests: sessions in a known state at known times."""

from __future__ import annotations

from typing import Any

from logsync.protocol.events import Event
from logsync.protocol.session import Session, State

SERVER = "server:x"
CLIENT = "10:abc:tab"
PING_MS = 20_000
TIMEOUT_MS = 70_000
CONNECT_TIMEOUT_MS = 5_000

OPENED_AT = 1_000
CONNECT_AT = 1_100
ACCEPT_AT = 1_200  # = base_time of a session built by connected_session()


def new_session(now: int = OPENED_AT) -> Session:
    return Session(
        SERVER,
        now=now,
        ping_ms=PING_MS,
        timeout_ms=TIMEOUT_MS,
        connect_timeout_ms=CONNECT_TIMEOUT_MS,
    )


def connect_msg(
    node_id: str = CLIENT, synced: float = 0, options: dict[str, Any] | None = None
) -> list[Any]:
    msg: list[Any] = ["connect", 5, node_id, synced]
    if options is not None:
        msg.append(options)
    return msg


def authenticating_session(
    node_id: str = CLIENT, options: dict[str, Any] | None = None
) -> tuple[Session, list[Event]]:
    session = new_session()
    events = session.receive(connect_msg(node_id, 0, options), "connect", CONNECT_AT)
    assert session.state is State.AUTHENTICATING
    return session, events


def connected_session(node_id: str = CLIENT) -> Session:
    """A session past the handshake with base_time = ACCEPT_AT and no pending output."""
    session, _ = authenticating_session(node_id)
    assert session.accept(ACCEPT_AT, {}) == []
    session.take_outgoing()
    assert session.state is State.CONNECTED
    assert session.base_time == ACCEPT_AT
    return session
