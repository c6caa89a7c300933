"""What a :class:`~logsync.protocol.session.Session` reports to the application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from logsync.protocol.ids import NodeParts


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """A client asked to connect: authenticate it, then call ``accept`` or ``reject``."""

    node: NodeParts
    token: str | None
    subprotocol: int | None
    headers: dict[str, Any]
    synced: float


@dataclass(frozen=True, slots=True)
class ActionsReceived:
    """A client sent actions (meta with full ``id`` and absolute ``time``).

    Process them, then acknowledge with ``send_synced(added)`` once each is durable or refused.
    """

    added: float
    entries: list[tuple[dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class SyncedReceived:
    """The client confirmed every ``sync`` up to ``added``."""

    added: float


@dataclass(frozen=True, slots=True)
class HeadersReceived:
    headers: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """The client reported a protocol error about our messages."""

    type: str
    options: Any


@dataclass(frozen=True, slots=True)
class CloseRequested:
    """The session is over (``reason`` is the error type or ``timeout``): write what is
    outgoing, then close the transport."""

    reason: str


Event = (
    ConnectRequested
    | ActionsReceived
    | SyncedReceived
    | HeadersReceived
    | ErrorReceived
    | CloseRequested
)
