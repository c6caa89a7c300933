"""What a :class:`~logsync.protocol.session.Session` reports to the application."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """A client sent actions, in ``entries`` (in order) those whose fields are valid: meta with a
    full, checked ``id``, an absolute int ``time`` and an int ``subprotocol`` if present; the
    action round-trips both codecs.

    ``refused`` are the others, as ``(action, meta, details)``: meta has the full ``id`` and
    whatever ``time`` was sent; ``action`` is the action, or just its ``{"type": ...}`` when it
    does not round-trip (so that it can be quoted); ``details`` says which field is wrong. Answer
    each with ``logux/undo`` reason ``error`` and those ``details``, without storing it.

    Process the entries, then acknowledge with ``send_synced(added)`` once each action of both
    lists is durable or answered.
    """

    added: float
    entries: list[tuple[dict[str, Any], dict[str, Any]]]
    refused: list[tuple[dict[str, Any], dict[str, Any], str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SyncedReceived:
    """The client confirmed every ``sync`` up to ``added``."""

    added: float


@dataclass(frozen=True, slots=True)
class HeadersReceived:
    headers: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """The client reported a protocol error about our messages (before authentication, a
    :class:`CloseRequested` follows)."""

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
