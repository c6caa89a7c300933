"""The RFC 6455 protocol state of one server connection, without I/O: bytes in, events and bytes
out.

Feed what the socket reads to :meth:`ServerProtocol.receive_data`; it returns the
:data:`events <Event>` the bytes complete (messages, a close, a failure) and answers what RFC
6455 answers by itself (a ping with a pong, a close frame with a close frame). Send messages
with :meth:`~ServerProtocol.send_text` / :meth:`~ServerProtocol.send_binary` (or
:meth:`~ServerProtocol.send_messages`) and the close with :meth:`~ServerProtocol.send_close`.
Everything to write is collected; take it with :meth:`~ServerProtocol.data_to_send` and write
it to the socket. No sockets, no asyncio, no clock: the deadlines (of the close handshake, of
an unanswered ping) and when to end the TCP connection are the adapter's
(:mod:`logsync.server.ws`).

Frames to send are built straight into one list of pieces (a header, then the payload as given:
not copied), joined once per :meth:`~ServerProtocol.data_to_send`, so an adapter that takes the
data once per event-loop turn writes the socket once per turn however many frames it sent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from logsync.websocket.frames import (
    CloseCode,
    FrameError,
    FrameReader,
    Opcode,
    close_payload,
    frame_header,
    parse_close,
)


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # our close frame is queued: waiting for the peer's
    CLOSED = "closed"  # close frames exchanged, or the connection failed: end the TCP connection


# Rules:
# - A connection starts OPEN: messages come out as events (a text message as its str, UTF-8
#   checked; a binary one as its bytes), and each ping is answered with a pong carrying its
#   payload — while the adapter holds pongs (hold_pongs: its write buffer is full), only the last
#   ping's, once it releases them (RFC 6455 §5.5.3). Pongs from the peer are dropped.
# - A message longer than `max_message_bytes` fails the connection (1009) from its header alone,
#   before its payload is read. One longer than `soft_message_bytes` (if set) is reported as
#   MessageTooBig, without its payload, and the connection stays OPEN: what to do is the
#   application protocol's business. Both limits may change between two receive_data calls.
# - send_close() in OPEN queues our close frame: CLOSING. In CLOSING, received messages and pings
#   are dropped unread (a close frame is the last frame an endpoint sends); only the peer's close
#   frame matters, and it moves the connection to CLOSED.
# - A close frame received in OPEN is answered with a close frame carrying its code (1000 when it
#   has none): CLOSED. Frames after a close frame are never read.
# - A broken frame (format, a text message or close reason that is not UTF-8, a close code no
#   endpoint may send, over `max_message_bytes`) fails the connection: ProtocolFailed, a close
#   frame with its code queued (in OPEN; in CLOSING ours is already out), CLOSED at once — no
#   waiting for the peer's answer (RFC 6455 §7.1.7).
# - In CLOSED the adapter ends the TCP connection (the server ends it first, §7.1.1): bytes still
#   received are discarded. Sending in any state but OPEN raises InvalidState.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.OPEN, "send_close"): State.CLOSING,
    (State.OPEN, "close_received"): State.CLOSED,
    (State.OPEN, "failed"): State.CLOSED,
    (State.CLOSING, "close_received"): State.CLOSED,
    (State.CLOSING, "failed"): State.CLOSED,
}


class InvalidState(Exception):
    """A call the connection's state does not allow (sending once the close is under way)."""


# A message is reported as itself: a text message (fragments joined, UTF-8 checked) as its
# ``str``, a binary one as its ``bytes`` — no object per message on the hot path (an event
# object costs as much as a tenth of the rest of a small frame's handling).
TextMessage: TypeAlias = str
BinaryMessage: TypeAlias = bytes


@dataclass(slots=True)
class MessageTooBig:
    """A message longer than ``soft_message_bytes``: dropped, the connection stays open."""

    size: int
    limit: int


@dataclass(slots=True)
class PingReceived:
    """A ping, answered (or, while pongs are held, to be answered) with a pong."""

    payload: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer's close frame (answered in OPEN): end the TCP connection."""

    code: int | None
    reason: str


@dataclass(slots=True)
class ProtocolFailed:
    """The peer broke RFC 6455: our close frame with ``code`` is queued (unless ours was already
    out); end the TCP connection without waiting for an answer."""

    code: CloseCode
    reason: str


Event = TextMessage | BinaryMessage | MessageTooBig | PingReceived | CloseReceived | ProtocolFailed

_TEXT, _BINARY, _PING, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.CLOSE
_OPEN, _CLOSED = State.OPEN, State.CLOSED
_NO_LIMIT = 1 << 63


class ServerProtocol:
    """One server connection after the upgrade. See the module docstring for the call sequence.

    ``max_message_bytes``: longer messages fail the connection (1009). ``soft_message_bytes``
    (``None``: no such limit): longer ones are reported as :class:`MessageTooBig`.
    ``pending_bytes``: how many bytes :meth:`data_to_send` would return now (0 when nothing)."""

    def __init__(self, max_message_bytes: int, soft_message_bytes: int | None = None) -> None:
        self.state = State.OPEN
        self.pending_bytes = 0
        self._reader = FrameReader(max_message_bytes)
        self._feed = self._reader.feed
        self._soft = _NO_LIMIT if soft_message_bytes is None else soft_message_bytes
        self._pending: list[bytes] = []
        self._pongs_held = False
        self._held_pong: bytes | None = None

    @property
    def max_message_bytes(self) -> int:
        return self._reader.max_message_bytes

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        self._reader.max_message_bytes = value

    @property
    def soft_message_bytes(self) -> int | None:
        return None if self._soft == _NO_LIMIT else self._soft

    @soft_message_bytes.setter
    def soft_message_bytes(self, value: int | None) -> None:
        self._soft = _NO_LIMIT if value is None else value

    @property
    def buffered(self) -> int:
        """Bytes of the peer's held: of an incomplete frame or unfinished fragmented message."""
        return self._reader.buffered

    # -- received ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """The events the bytes complete, in order (a close or a failure is the last)."""
        if self.state is not _OPEN:
            return self._receive_closing(data)
        try:
            frames = self._feed(data)
        except FrameError as error:
            return [self._fail(error.code, error.reason)]
        events: list[Event] = []
        soft = self._soft
        for opcode, payload in frames:
            if opcode is _TEXT:
                if len(payload) > soft:
                    events.append(MessageTooBig(len(payload), soft))
                    continue
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    events.append(self._fail(CloseCode.INVALID_DATA, "text frame is not UTF-8"))
                    return events
                events.append(text)
            elif opcode is _BINARY:
                if len(payload) > soft:
                    events.append(MessageTooBig(len(payload), soft))
                    continue
                events.append(payload)
            elif opcode is _PING:
                self._ping(payload)
                events.append(PingReceived(payload))
            elif opcode is _CLOSE:
                events.append(self._close_received(payload))
                return events
        return events

    def _receive_closing(self, data: bytes) -> list[Event]:
        """CLOSING: only the peer's close frame (or a broken frame) counts. CLOSED: nothing."""
        if self.state is _CLOSED:
            return []
        try:
            frames = self._feed(data)
        except FrameError as error:
            return [self._fail(error.code, error.reason)]
        for opcode, payload in frames:
            if opcode is _CLOSE:
                return [self._close_received(payload)]
        return []

    def _ping(self, payload: bytes) -> None:
        if self._pongs_held:
            self._held_pong = payload
            return
        self._queue(Opcode.PONG, payload)

    def _close_received(self, payload: bytes) -> CloseReceived | ProtocolFailed:
        try:
            code, reason = parse_close(payload)
        except FrameError as error:
            return self._fail(error.code, error.reason)
        if self.state is _OPEN:
            self._queue(_CLOSE, close_payload(code or CloseCode.NORMAL, ""))
        self._move("close_received")
        return CloseReceived(code, reason)

    def _fail(self, code: CloseCode, reason: str) -> ProtocolFailed:
        if self.state is _OPEN:
            self._queue(_CLOSE, close_payload(code, reason))
        self._move("failed")
        return ProtocolFailed(code, reason)

    # -- sent --------------------------------------------------------------------------------

    def send_text(self, payload: bytes) -> None:
        """Queue a text message (``payload``: UTF-8, not checked: it is ours)."""
        self.send_messages((payload,), binary=False)

    def send_binary(self, payload: bytes) -> None:
        """Queue a binary message."""
        self.send_messages((payload,), binary=True)

    def send_messages(self, payloads: Iterable[bytes], binary: bool) -> None:
        """Queue messages, one frame each, in order: binary ones or text ones."""
        if self.state is not _OPEN:
            raise InvalidState(f"no message can be sent once {self.state.value}")
        opcode = _BINARY if binary else _TEXT
        pending = self._pending
        size = 0
        for payload in payloads:
            header = frame_header(len(payload), opcode)
            pending.append(header)
            pending.append(payload)
            size += len(header) + len(payload)
        self.pending_bytes += size

    def send_close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Queue our close frame (after what is queued): CLOSING, until the peer's answer."""
        if self.state is not _OPEN:
            raise InvalidState(f"the close can't be sent once {self.state.value}")
        self._queue(_CLOSE, close_payload(code, reason))
        self._move("send_close")

    def hold_pongs(self) -> None:
        """Answer no ping until :meth:`release_pongs` (the adapter can't write for now)."""
        self._pongs_held = True

    def release_pongs(self) -> bool:
        """Answer pings again, starting with the last one received while held (if still OPEN);
        whether that queued a pong."""
        self._pongs_held = False
        pong, self._held_pong = self._held_pong, None
        if pong is None or self.state is not _OPEN:
            return False
        self._queue(Opcode.PONG, pong)
        return True

    def data_to_send(self) -> bytes:
        """What to write to the socket now, in order (``b""`` when nothing); taken, not kept."""
        if not self._pending:
            return b""
        pending, self._pending = self._pending, []
        self.pending_bytes = 0
        return b"".join(pending)

    def _queue(self, opcode: Opcode, payload: bytes) -> None:
        header = frame_header(len(payload), opcode)
        self._pending.append(header)
        self._pending.append(payload)
        self.pending_bytes += len(header) + len(payload)

    def _move(self, cause: str) -> None:
        state = TRANSITIONS.get((self.state, cause))
        if state is None:
            raise InvalidState(f"{cause} is not possible once {self.state.value}")
        self.state = state
