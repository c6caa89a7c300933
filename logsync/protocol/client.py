"""The Logux v5 protocol, client side, without I/O: one connection to a server.

:class:`ClientSession` is made when the transport opens; it queues ``connect`` at once. Feed it
every decoded message with :meth:`ClientSession.receive`; it answers ``ping`` itself and returns
:data:`ClientEvent` values for the application: :class:`Connected` (the handshake is done, the
time fix is known: send what is pending), :class:`ActionsArrived` (apply, persist the cursor, then
call :meth:`ClientSession.send_synced`), :class:`SyncedArrived`, :class:`ServerError`,
:class:`Disconnect` (close the transport). Send actions with :meth:`ClientSession.send_sync`. Take
what to write with :meth:`ClientSession.take_outgoing`; drive pings and timeouts with
:meth:`ClientSession.next_deadline` and :meth:`ClientSession.on_timer`. Time is passed in as the
client's wall clock in milliseconds.

Times: the server's ``connected`` carries ``[start, end]`` (its clock when ``connect`` arrived and
when it answered; ``end`` is the connection's ``baseTime``). As ``@logux/core`` does, the time fix
is ``floor(connect_sent - start + round_trip / 2)`` with ``round_trip = now - connect_sent - (end -
start)``: about how far this client's clock is ahead of the server's. Sent ``meta.time`` is
``time - time_fix - baseTime``; received ``meta.time`` becomes ``time + baseTime + time_fix`` (the
client's clock). Ids are not time-fixed, only shortened against ``baseTime``.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from logsync.protocol.ids import IdError, compress_id, decompress_id
from logsync.protocol.messages import PROTOCOL_VERSION, Message, ProtocolError, validate

# Errors after which reconnecting cannot help (A.7 of the protocol notes).
FATAL_ERRORS = frozenset({"wrong-protocol", "wrong-subprotocol", "wrong-credentials"})


class ClientState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class ClientSessionError(RuntimeError):
    """A call the session's state does not allow (a bug in the caller)."""


@dataclass(frozen=True, slots=True)
class Connected:
    """The server accepted us. ``time_fix``: ms this client's clock is ahead of the server's."""

    server_node_id: str
    base_time: int
    time_fix: int
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ActionsArrived:
    """A server ``sync``: ``entries`` are ``(action, meta)`` with full ids and ``meta.time`` in this
    client's clock. Handle them, save ``added`` as the resume cursor, then ``send_synced(added)``."""

    added: float
    entries: list[tuple[dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class SyncedArrived:
    """The server confirmed our ``sync`` messages up to ``added`` (answers come as actions)."""

    added: float


@dataclass(frozen=True, slots=True)
class ServerError:
    """The server sent ``error``; ``fatal``: do not reconnect (a :class:`Disconnect` follows)."""

    type: str
    options: Any
    fatal: bool


@dataclass(frozen=True, slots=True)
class HeadersArrived:
    headers: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The session is over (``reason``: an error type or ``timeout``): write what is outgoing,
    then close the transport."""

    reason: str


ClientEvent = Connected | ActionsArrived | SyncedArrived | ServerError | HeadersArrived | Disconnect


# Rules:
# - The session starts CONNECTING with `connect` queued; `connected` (protocol >= 5) moves it to
#   CONNECTED; a fatal `error`, a protocol error or a timeout moves it to CLOSED. CLOSED is final.
# - Only `connected`, `headers`, `error`, `debug` and `duilian` are handled while CONNECTING; any
#   other message then is `wrong-format` (a server answers nothing before `connected`).
# - A message that fails validation, or a `sync` whose id does not decode, is answered with
#   `error` and closes, as the server does.
# - `send_sync` and `send_synced` need CONNECTED (else ClientSessionError); `synced` is the
#   caller's, after it has handled (and persisted) the actions.
# - `ping` is answered `pong` with the highest `added` we sent. After `ping_ms` without any
#   message either way we send `ping`; `timeout_ms` without `connected`, `pong`, or `synced` for the
#   oldest unconfirmed `sync`, closes with "timeout" (nothing is sent).
HANDLED_WHILE_CONNECTING = frozenset({"connected", "headers", "error", "debug", "duilian"})


class ClientSession:
    """One client connection's protocol state. See the module docstring for the call sequence."""

    def __init__(
        self,
        node_id: str,
        *,
        now: int,
        synced: float = 0,
        token: str | None = None,
        subprotocol: int | None = None,
        headers: dict[str, Any] | None = None,
        ping_ms: int = 10_000,
        timeout_ms: int = 70_000,
    ) -> None:
        self.node_id = node_id
        self.ping_ms = ping_ms
        self.timeout_ms = timeout_ms
        self.state = ClientState.CONNECTING
        self.server_node_id = ""
        self.base_time = 0
        self.time_fix = 0
        self.headers: dict[str, Any] = {}
        # Highest `added` of a server `sync` received (not yet necessarily confirmed).
        self.last_received = synced
        # Highest `added` of our own `sync` messages: what `pong` carries.
        self.last_sent: float = 0
        self._unacked: deque[tuple[float, int]] = deque()  # (added, sent at)
        self._outgoing: list[Message] = []
        self._connect_sent = now
        self._last_activity = now
        self._ping_sent_at: int | None = None
        if headers:
            self._outgoing.append(["headers", headers])
        options: dict[str, Any] = {}
        if token is not None:
            options["token"] = token
        if subprotocol is not None:
            options["subprotocol"] = subprotocol
        connect: Message = ["connect", PROTOCOL_VERSION, node_id, synced]
        if options:
            connect.append(options)
        self._outgoing.append(connect)

    # -- reading -------------------------------------------------------------------------------

    def receive(self, msg: Any, raw: str, now: int) -> list[ClientEvent]:
        """Handle one decoded message from the server; ``raw`` is its printable text."""
        if self.state is ClientState.CLOSED:
            return []
        self._last_activity = now
        self._ping_sent_at = None
        error = validate(msg, raw)
        if error is not None:
            return self._fail(error)
        name = msg[0]
        if self.state is ClientState.CONNECTING and name not in HANDLED_WHILE_CONNECTING:
            return self._fail(ProtocolError("wrong-format", f"{name} before connected"))
        handler = getattr(self, "_on_" + name)
        result: list[ClientEvent] = handler(msg, raw, now)
        return result

    def _on_connected(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        if self.state is not ClientState.CONNECTING:
            return []  # a second `connected`: ignored, as @logux/core's client does
        protocol, server_node_id, (start, end) = msg[1], msg[2], msg[3]
        if protocol < PROTOCOL_VERSION:
            return self._fail(
                ProtocolError("wrong-protocol", {"supported": PROTOCOL_VERSION, "used": protocol})
            )
        if not all(math.isfinite(t) for t in (start, end)):
            return self._fail(ProtocolError("wrong-format", raw))
        self.state = ClientState.CONNECTED
        self.server_node_id = server_node_id
        self.base_time = int(end)
        auth_time = end - start
        round_trip = now - self._connect_sent - auth_time
        self.time_fix = math.floor(self._connect_sent - start + round_trip / 2)
        options: dict[str, Any] = msg[4] if len(msg) == 5 else {}
        return [Connected(server_node_id, self.base_time, self.time_fix, options)]

    def _on_sync(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        entries: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for i in range(2, len(msg), 2):
            meta = dict(msg[i + 1])
            try:
                meta["id"] = decompress_id(meta["id"], self.base_time, self.server_node_id)
            except (IdError, ValueError, TypeError, IndexError):
                return self._fail(ProtocolError("wrong-format", raw))
            meta["time"] = meta["time"] + self.base_time + self.time_fix
            entries.append((msg[i], meta))
        added = msg[1]
        if added > self.last_received:
            self.last_received = added
        return [ActionsArrived(added, entries)]

    def _on_synced(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        added = msg[1]
        while self._unacked and self._unacked[0][0] <= added:
            self._unacked.popleft()
        return [SyncedArrived(added)]

    def _on_ping(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        self._outgoing.append(["pong", self.last_sent])
        return []

    def _on_pong(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        return []

    def _on_error(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        kind, options = msg[1], msg[2] if len(msg) == 3 else None
        if kind in FATAL_ERRORS:
            self.state = ClientState.CLOSED
            return [ServerError(kind, options, fatal=True), Disconnect(kind)]
        return [ServerError(kind, options, fatal=False)]

    def _on_headers(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        self.headers = msg[1]
        return [HeadersArrived(msg[1])]

    def _on_debug(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        return []

    def _on_duilian(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        return []

    def _on_connect(self, msg: Message, raw: str, now: int) -> list[ClientEvent]:
        return self._fail(ProtocolError("wrong-format", raw))  # only clients send `connect`

    # -- writing -------------------------------------------------------------------------------

    def send_sync(
        self, added: float, entries: list[tuple[dict[str, Any], dict[str, Any]]], now: int
    ) -> None:
        """Send our actions: ``meta`` has the full ``id`` and ``time`` in this client's clock
        (``subprotocol`` passed on if present). ``added``: the local position of the newest."""
        self._require_connected("send_sync")
        message: Message = ["sync", added]
        for action, meta in entries:
            wire: dict[str, Any] = {
                "id": compress_id(meta["id"], self.base_time, self.node_id),
                "time": meta["time"] - self.time_fix - self.base_time,
            }
            if "subprotocol" in meta:
                wire["subprotocol"] = meta["subprotocol"]
            message.append(action)
            message.append(wire)
        if added > self.last_sent:
            self.last_sent = added
        self._unacked.append((added, now))
        self._last_activity = now
        self._outgoing.append(message)

    def send_synced(self, added: float) -> None:
        """Confirm a server ``sync`` once its actions are handled."""
        self._require_connected("send_synced")
        self._outgoing.append(["synced", added])

    def send_error(self, error: ProtocolError) -> list[ClientEvent]:
        """Report a protocol error about the server's input (an undecodable frame) and close."""
        return self._fail(error)

    @property
    def unacked_syncs(self) -> int:
        """How many of our ``sync`` messages wait for ``synced``."""
        return len(self._unacked)

    # -- timers --------------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        """When :meth:`on_timer` next has something to do (ms), or None once closed."""
        if self.state is ClientState.CLOSED:
            return None
        if self.state is ClientState.CONNECTING:
            return self._connect_sent + self.timeout_ms
        if self._ping_sent_at is not None:
            candidates = [self._ping_sent_at + self.timeout_ms]
        else:
            candidates = [self._last_activity + self.ping_ms]
        if self._unacked:
            candidates.append(self._unacked[0][1] + self.timeout_ms)
        return min(candidates)

    def on_timer(self, now: int) -> list[ClientEvent]:
        """Send ``ping`` when idle; :class:`Disconnect` ``timeout`` when the server went quiet."""
        if self.state is ClientState.CLOSED:
            return []
        if self.state is ClientState.CONNECTING:
            if now >= self._connect_sent + self.timeout_ms:
                return self._close("timeout")
            return []
        if self._unacked and now >= self._unacked[0][1] + self.timeout_ms:
            return self._close("timeout")
        if self._ping_sent_at is not None:
            if now >= self._ping_sent_at + self.timeout_ms:
                return self._close("timeout")
        elif now >= self._last_activity + self.ping_ms:
            self._ping_sent_at = now
            self._outgoing.append(["ping", self.last_sent])
        return []

    # -- output --------------------------------------------------------------------------------

    def take_outgoing(self) -> list[Message]:
        """Messages to write, oldest first; the session forgets them."""
        out, self._outgoing = self._outgoing, []
        return out

    def close(self) -> None:
        """The transport closed: no more input or output."""
        self.state = ClientState.CLOSED

    def _require_connected(self, what: str) -> None:
        if self.state is not ClientState.CONNECTED:
            raise ClientSessionError(f"{what} needs a connected session, not {self.state.value}")

    def _fail(self, error: ProtocolError) -> list[ClientEvent]:
        self._outgoing.append(error.message())
        return self._close(error.type)

    def _close(self, reason: str) -> list[ClientEvent]:
        self.state = ClientState.CLOSED
        return [Disconnect(reason)]
