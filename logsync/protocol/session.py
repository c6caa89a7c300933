"""The per-connection Logux v5 state machine, server side, without I/O.

Feed it decoded messages with :meth:`Session.receive`; it answers protocol-level messages itself
(``pong``, ``duilian``, errors) and returns :mod:`events <logsync.protocol.events>` for what needs the
application: a handshake to authenticate, actions to process, acknowledgements. Call
:meth:`Session.accept` or :meth:`Session.send_error` after authentication, :meth:`Session.send_sync` to
deliver actions and :meth:`Session.send_synced` to acknowledge. Everything the session wants sent
is collected; take it with :meth:`Session.take_outgoing` and write it to the transport. Time is
passed in (milliseconds); :meth:`Session.next_deadline` and :meth:`Session.on_timer` drive ping and
timeouts. Field rules come from :mod:`~logsync.protocol.schema`.
"""

from __future__ import annotations

import enum
from typing import Any

from logsync.protocol.events import (
    ActionsReceived,
    CloseRequested,
    ConnectRequested,
    ErrorReceived,
    Event,
    HeadersReceived,
    SyncedReceived,
)
from logsync.protocol.ids import NodeParts, compress_id, parse_node_id
from logsync.protocol.messages import (
    PROTOCOL_VERSION,
    Message,
    ProtocolError,
    validate,
    wrong_format,
)
from logsync.protocol.schema import (
    MAX_CHANNEL_LENGTH,
    SchemaError,
    check_entry,
    check_subprotocol,
    check_token,
    is_count,
    is_node_id,
    stand_in,
    wire_id,
)


class State(enum.Enum):
    AWAIT_CONNECT = "await-connect"
    AUTHENTICATING = "authenticating"
    CONNECTED = "connected"
    CLOSED = "closed"


# Rules:
# - A connection starts in AWAIT_CONNECT; `connect` moves it to AUTHENTICATING, and the application's
#   accept()/send_error() to CONNECTED or CLOSED. Any protocol error closes it.
# - Before CONNECTED, only the messages in HANDLED_BEFORE_AUTH are handled; other valid messages are
#   held (at most `preauth_held_messages` of them and `preauth_held_bytes` in all) and handled, in
#   order, right after accept() — as @logux/core does. Past either bound: wrong-format and close.
# - An `error` from the client before CONNECTED is reported, then the session closes (nothing is
#   sent back); after it, it is only reported.
# - Before `connect` the session waits `connect_timeout_ms` from opening; while the application
#   authenticates, `timeout_ms` from `connect`. Then it closes with "timeout".
# - A frame that is broken (bad shape, an id that does not decode to a valid id) is wrong-format and
#   closes. An action whose own fields are wrong (meta time or subprotocol, not round-tripping, a
#   bad subscribe) is refused alone: it goes to ActionsReceived.refused, the connection stays.
# - `sync` is answered with `synced` by the application, after the actions are durable.
# - `ping` is answered with `pong` carrying what this connection has been sent (its watermark),
#   never more: the client stores that value as its resume cursor.
HANDLED_BEFORE_AUTH = frozenset({"connect", "headers", "error", "debug", "connected", "duilian"})

DUILIAN = {"金木水火土": "板城烧锅酒"}


class Session:
    """One client connection's protocol state. See the module docstring for the call sequence."""

    def __init__(
        self,
        server_node_id: str,
        *,
        now: int,
        ping_ms: int = 20_000,
        timeout_ms: int = 70_000,
        connect_timeout_ms: int = 5_000,
        preauth_held_messages: int = 100,
        preauth_held_bytes: int = 64 * 1024,
        max_channel_length: int = MAX_CHANNEL_LENGTH,
    ) -> None:
        self.server_node_id = server_node_id
        self.ping_ms = ping_ms
        self.timeout_ms = timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.preauth_held_messages = preauth_held_messages
        self.preauth_held_bytes = preauth_held_bytes
        self.max_channel_length = max_channel_length
        self.state = State.AWAIT_CONNECT
        self.node: NodeParts | None = None
        self.subprotocol: int | None = None
        self.headers: dict[str, Any] = {}
        self.base_time = 0
        self.connect_time = 0
        # Highest `added` sent in a `sync`: the value `pong` and non-log actions carry.
        self.watermark = 0
        # Highest `added` the client confirmed with `synced` (a float if it sent one: `synced 5.0`
        # is valid; compiled by mypyc, an `int` attribute would refuse it).
        self.acknowledged = 0.0
        # (sync added, sent at), oldest first. A list, not a deque: an empty deque is 760 bytes,
        # a tenth of an idle connection, and at most live_window / replay_window wait at once.
        self._unacked: list[tuple[float, int]] = []
        self._held: list[tuple[Message, str]] = []
        self._held_bytes = 0
        # messages, and frames already encoded (bytes: see send_sync_encoded)
        self._outgoing: list[Message | bytes] = []
        self._last_received = now
        self._ping_sent_at: int | None = None
        self._opened_at = now

    # -- reading -------------------------------------------------------------------------------

    def receive(self, msg: Any, raw: str, now: int, size: int | None = None) -> list[Event]:
        """Handle one decoded message; ``raw`` is its printable text for ``wrong-format``, ``size``
        the frame's length in bytes (``len(raw)`` if not given), counted while messages are held.
        """
        if self.state is State.CLOSED:
            return []
        self._last_received = now
        self._ping_sent_at = None
        if (
            type(msg) is list
            and len(msg) == 2
            and msg[0] == "synced"
            and self.state is State.CONNECTED
            and is_count(msg[1])
        ):
            return self._on_synced(msg, raw, now)  # the most common message: skip the dispatch
        error = validate(msg, raw)
        if error is not None:
            return self._fail(error)
        name = msg[0]
        if self.state is not State.CONNECTED and name not in HANDLED_BEFORE_AUTH:
            self._held_bytes += len(raw) if size is None else size
            if (
                len(self._held) >= self.preauth_held_messages
                or self._held_bytes > self.preauth_held_bytes
            ):
                return self._fail(ProtocolError("wrong-format", "too many messages before auth"))
            self._held.append((msg, raw))
            return []
        handler = getattr(self, "_on_" + name)
        result: list[Event] = handler(msg, raw, now)
        return result

    def _on_connect(self, msg: Message, raw: str, now: int) -> list[Event]:
        if self.state is not State.AWAIT_CONNECT:
            return self._fail(wrong_format(raw))
        protocol, node_id, synced = msg[1], msg[2], msg[3]
        options: dict[str, Any] = msg[4] if len(msg) == 5 else {}
        if protocol < PROTOCOL_VERSION:
            return self._fail(
                ProtocolError("wrong-protocol", {"supported": PROTOCOL_VERSION, "used": protocol})
            )
        if not is_node_id(node_id):
            return self._fail(wrong_format(raw))
        try:
            token = check_token(options.get("token"))
            subprotocol = options.get("subprotocol")
            self.subprotocol = None if subprotocol is None else check_subprotocol(subprotocol)
        except SchemaError:
            return self._fail(wrong_format(raw))
        self.node = parse_node_id(node_id)
        self.connect_time = now
        self.state = State.AUTHENTICATING
        return [
            ConnectRequested(
                node=self.node,
                token=token,
                subprotocol=self.subprotocol,
                headers=self.headers,
                synced=synced,
            )
        ]

    def _on_headers(self, msg: Message, raw: str, now: int) -> list[Event]:
        self.headers = msg[1]
        return [HeadersReceived(msg[1])]

    def _on_error(self, msg: Message, raw: str, now: int) -> list[Event]:
        error = ErrorReceived(msg[1], msg[2] if len(msg) == 3 else None)
        if self.state is not State.CONNECTED:
            return [error, *self._close("error before auth")]
        return [error]

    def _on_debug(self, msg: Message, raw: str, now: int) -> list[Event]:
        return []

    def _on_connected(self, msg: Message, raw: str, now: int) -> list[Event]:
        # Only servers send `connected`; a client that does is ignored, as @logux/core's server does.
        return []

    def _on_duilian(self, msg: Message, raw: str, now: int) -> list[Event]:
        answer = DUILIAN.get(msg[1])
        if answer is not None:
            self._outgoing.append(["duilian", answer])
        return []

    def _on_ping(self, msg: Message, raw: str, now: int) -> list[Event]:
        self._outgoing.append(["pong", self.watermark])
        return []

    def _on_pong(self, msg: Message, raw: str, now: int) -> list[Event]:
        return []

    def _on_synced(self, msg: Message, raw: str, now: int) -> list[Event]:
        added = msg[1]
        unacked = self._unacked
        acked = 0
        while acked < len(unacked) and unacked[acked][0] <= added:
            acked += 1
        if acked:
            del unacked[:acked]
        if added > self.acknowledged:
            self.acknowledged = added
        return [SyncedReceived(added)]

    def _on_sync(self, msg: Message, raw: str, now: int) -> list[Event]:
        assert self.node is not None
        entries: list[tuple[dict[str, Any], dict[str, Any]]] = []
        refused: list[tuple[dict[str, Any], dict[str, Any], str]] = []
        for i in range(2, len(msg), 2):
            action = msg[i]
            meta = dict(msg[i + 1])
            try:
                meta["id"] = wire_id(meta["id"], self.base_time, self.node.node_id)
            except SchemaError:
                return self._fail(wrong_format(raw))  # no id to answer
            meta["time"] = meta["time"] + self.base_time
            try:
                check_entry(action, meta, self.max_channel_length)
            except SchemaError as error:
                refused.append((stand_in(action), meta, str(error)))
            else:
                entries.append((action, meta))
        return [ActionsReceived(msg[1], entries, refused)]

    # -- the application's answers -------------------------------------------------------------

    def accept(
        self, now: int, options: dict[str, Any], headers: dict[str, Any] | None = None
    ) -> list[Event]:
        """Finish the handshake: send ``connected`` and handle the messages held before auth.

        ``options`` go into ``connected`` (``{"subprotocol": N}``); ``headers`` (for example
        ``{"env": "development"}``) are sent just before it.
        """
        if self.state is not State.AUTHENTICATING:
            return []
        self.state = State.CONNECTED
        self.base_time = now
        self._last_received = now  # sending `connected` restarts the idle timer, as in Logux
        if headers:
            self._outgoing.append(["headers", headers])
        self._outgoing.append(
            ["connected", PROTOCOL_VERSION, self.server_node_id, [self.connect_time, now], options]
        )
        events: list[Event] = []
        held, self._held = self._held, []
        for msg, raw in held:
            events.extend(self.receive(msg, raw, now))
        return events

    def send_sync(
        self, added: int | None, entries: list[tuple[Any, dict[str, Any]]], now: int
    ) -> None:
        """Send actions. ``meta`` needs ``id`` and ``time`` (``subprotocol`` is passed on if present).

        ``added`` is the log position of the newest entry; ``None`` for actions outside the log,
        which then carry the current watermark.
        """
        if self.state is not State.CONNECTED:
            return
        if added is not None and added > self.watermark:
            self.watermark = added
        message: Message = ["sync", self.watermark]
        for action, meta in entries:
            wire_meta: dict[str, Any] = {
                "id": compress_id(meta["id"], self.base_time, self.server_node_id),
                "time": meta["time"] - self.base_time,
            }
            if "subprotocol" in meta:
                wire_meta["subprotocol"] = meta["subprotocol"]
            message.append(action)
            message.append(wire_meta)
        self._unacked.append((self.watermark, now))
        self._outgoing.append(message)

    def send_sync_encoded(self, added: int, template: bytes, ms: int, time: int, now: int) -> None:
        """Send one log entry already encoded for a JSON client: what :meth:`send_sync` with one
        action sends, from the entry's :func:`~logsync.protocol.codec.sync_template` (``ms``: its
        id's, ``time``: its meta's). The frame is queued as ``bytes``, written as it is."""
        if self.state is not State.CONNECTED:
            return
        if added > self.watermark:
            self.watermark = added
        base = self.base_time
        self._outgoing.append(template % (self.watermark, ms - base, time - base))
        self._unacked.append((self.watermark, now))

    def send_sync_bodies(self, added: int, bodies: list[tuple[bytes, int, int]], now: int) -> None:
        """Send several log entries in one ``sync`` to a JSON client: what :meth:`send_sync`
        sends for them, from each entry's body (``Entry.json_sync_body``: the body, its id's
        ms, its meta's time), in order; ``added`` is the last one's."""
        if self.state is not State.CONNECTED:
            return
        if added > self.watermark:
            self.watermark = added
        base = self.base_time
        parts = [b'["sync",%d' % self.watermark]
        for body, ms, time in bodies:
            parts.append(body % (ms - base, time - base))
        self._outgoing.append(b",".join(parts) + b"]")
        self._unacked.append((self.watermark, now))

    def send_synced(self, added: float) -> None:
        """Acknowledge a client's ``sync`` once its actions are durable (or refused)."""
        if self.state is State.CONNECTED:
            self._outgoing.append(["synced", added])

    def send_debug(self, text: str) -> None:
        """A development-mode ``['debug', 'error', text]`` message."""
        if self.state is State.CONNECTED:
            self._outgoing.append(["debug", "error", text])

    def send_error(self, error: ProtocolError) -> list[Event]:
        """Report a protocol error and close, as for bad input."""
        return self._fail(error)

    @property
    def unacked_syncs(self) -> int:
        """How many ``sync`` messages wait for the client's ``synced``."""
        return len(self._unacked)

    # -- timers ------------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        """When :meth:`on_timer` next has something to do (ms), or None once closed."""
        if self.state is State.CLOSED:
            return None
        if self.state is State.AWAIT_CONNECT:
            return self._opened_at + self.connect_timeout_ms
        if self.state is State.AUTHENTICATING:
            return self.connect_time + self.timeout_ms
        candidates = [self._last_received + self.ping_ms]
        if self._ping_sent_at is not None:
            candidates = [self._ping_sent_at + self.timeout_ms]
        if self._unacked:
            candidates.append(self._unacked[0][1] + self.timeout_ms)
        return min(candidates)

    def on_timer(self, now: int) -> list[Event]:
        """Send a ``ping`` when idle; close with ``timeout`` when the peer stopped answering."""
        if self.state is State.CLOSED:
            return []
        if self.state is not State.CONNECTED:
            deadline = self.next_deadline()
            if deadline is not None and now >= deadline:
                return self._close("timeout")
            return []
        if self._unacked and now >= self._unacked[0][1] + self.timeout_ms:
            return self._close("timeout")
        if self._ping_sent_at is not None:
            if now >= self._ping_sent_at + self.timeout_ms:
                return self._close("timeout")
        elif now >= self._last_received + self.ping_ms:
            self._ping_sent_at = now
            self._outgoing.append(["ping", self.watermark])
        return []

    # -- output ------------------------------------------------------------------------------

    def take_outgoing(self) -> list[Message | bytes]:
        """Messages to write, oldest first (``bytes``: a JSON frame already encoded); the session
        forgets them."""
        out, self._outgoing = self._outgoing, []
        return out

    def close(self) -> None:
        """The transport closed: no more input or output."""
        self.state = State.CLOSED
        self._held.clear()

    def _fail(self, error: ProtocolError) -> list[Event]:
        self._outgoing.append(error.message())
        return self._close(error.type)

    def _close(self, reason: str) -> list[Event]:
        self.state = State.CLOSED
        self._held.clear()
        return [CloseRequested(reason)]
