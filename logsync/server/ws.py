"""The socket side: an asyncio protocol per TCP connection that reads the HTTP request head,
upgrades WebSocket requests itself (with :mod:`logsync.server.websocket`, which does the parsing)
and feeds each message to a :class:`~logsync.connection.Connection`, writing what it returns.
Any other request is handed to the aiohttp application (health, metrics, hello page) by giving
it the socket. No Logux decisions here.

Data is handled in ``data_received`` as it arrives: no task and no queue per connection. Frames
the connection is sent during one event-loop turn go out in one socket write at its end.

Bounds on what one socket can make the server hold (README "Limits"): the request head must
arrive within ``head_timeout_ms``; before ``connect`` is accepted a frame may be at most
``preauth_frame_bytes`` (longer: close 1009 before its payload is read), after it
``max_frame_bytes`` (longer: a Logux ``wrong-format`` error; over 4 times that, 1009); and the
connection may stop reading the socket (:meth:`WebSocketProtocol.pause_reading`) while the
client's actions wait for their answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import weakref
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import cast

from logsync.connection import Connection, now_ms
from logsync.logfmt import shorten
from logsync.node import ServerNode
from logsync.protocol import ProtocolError
from logsync.server.websocket import (
    CloseCode,
    FrameError,
    FrameReader,
    HandshakeError,
    Opcode,
    RequestHead,
    accept,
    close_payload,
    frame,
    frame_header,
    http_response,
    parse_close,
    parse_request_head,
)
from logsync.settings import Settings

logger = logging.getLogger("logsync.ws")

# A closing handshake the peer does not answer is cut after this. (The request head's deadline
# is the `head_timeout_ms` setting.)
CLOSE_TIMEOUT_S = 5.0


class _Flusher:
    """Writes, once per event-loop turn, what each connection collected during the turn: a
    connection that is sent several frames in one turn gets them in one socket write."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[WebSocketProtocol] = []

    def mark(self, protocol: WebSocketProtocol) -> None:
        if not self._dirty:
            self._loop.call_soon(self._flush)
        self._dirty.append(protocol)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for protocol in dirty:
            protocol.flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = (
    weakref.WeakKeyDictionary()
)


class WebSocketProtocol(asyncio.Protocol):
    """One TCP connection. Before the upgrade it reads the request head; after it, it is the
    :class:`~logsync.connection.Transport` of its connection: :meth:`write`, :meth:`close`."""

    def __init__(self, node: ServerNode, http: Callable[[], asyncio.Protocol]) -> None:
        self._node = node
        self._http = http
        self._loop = asyncio.get_running_loop()
        flusher = _flushers.get(self._loop)
        if flusher is None:
            flusher = _flushers[self._loop] = _Flusher(self._loop)
        self._flusher = flusher
        self._socket: asyncio.Transport | None = None
        self._head: bytearray | None = bytearray()
        self._searched = 0  # bytes of the head already searched for its end
        self._reader: FrameReader | None = None
        self._failed = False  # the client broke the frame format: what it sends is dropped
        self.conn: Connection | None = None
        self._timer: _Timer | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._close_sent = False
        self._closed = self._loop.create_future()
        self._paused = False
        self._drained: list[asyncio.Future[None]] = []
        # While the socket's write buffer is full, only the last ping is answered (when it
        # drains): a client that sends pings and reads nothing can't grow the buffer with pongs.
        self._pong: bytes | None = None
        # Reading paused by the connection (inbound backpressure), and the messages of the last
        # read that came after the pause, handed over once reading resumes.
        self._reading_paused = False
        self._held: list[tuple[Opcode, bytes]] = []

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        timeout = self._node.settings.head_timeout_ms / 1000
        self._deadline = self._loop.call_later(timeout, self._socket.abort)

    def data_received(self, data: bytes) -> None:
        if self._reader is not None:
            self._frames(data)
            return
        if self._head is None:
            return  # refused: closing
        self._head += data
        try:
            head = parse_request_head(self._head, self._searched)
        except HandshakeError as error:
            self._refuse(error)
            return
        if head is None:
            self._searched = len(self._head)
            return
        if not head.is_upgrade:
            self._hand_to_http()
        else:
            self._upgrade(head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self.conn is not None:
            self._node.detach(self.conn)
        self._pending.clear()
        self._held.clear()
        self._resume_waiters()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._pong is not None:
            pong, self._pong = self._pong, None
            self._write_now(frame(Opcode.PONG, pong))
        self._resume_waiters()

    # -- before the upgrade --------------------------------------------------------------------

    def _hand_to_http(self) -> None:
        """Not a WebSocket request: aiohttp serves this socket from here on."""
        assert self._socket is not None and self._head is not None
        if self._deadline is not None:
            self._deadline.cancel()
        http = self._http()
        self._socket.set_protocol(http)
        http.connection_made(self._socket)
        http.data_received(bytes(self._head))
        self._head = None

    def _refuse(self, error: HandshakeError) -> None:
        assert self._socket is not None
        self._head = None
        self._socket.write(http_response(error.status, error.text + "\n", error.headers))
        self._socket.close()

    def _upgrade(self, head: RequestHead) -> None:
        assert self._socket is not None and self._head is not None
        node, settings = self._node, self._node.settings
        try:
            response = accept(head, settings.allowed_origins)
        except HandshakeError as error:
            if error.status == 403:
                limit = settings.log_value_chars
                origin = shorten(head.headers.get("origin"), limit)
                peer = self._socket.get_extra_info("peername")
                logger.info("refused upgrade from %s: origin %s", peer and peer[0], origin)
            self._refuse(error)
            return
        if node.admission.full():
            # Cheaper than opening the socket only to close it with 1013.
            refused = node.admission.refuse()
            retry = {"Retry-After": str(round(refused.retry_after))}
            self._refuse(HandshakeError(503, "too many handshakes waiting: try again later", retry))
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._socket.write(response)
        # The socket pauses us once its buffer passes a quarter of the connection's high-water
        # mark, so wait_below (called with half of it) has a pause to wait for.
        self._socket.set_write_buffer_limits(high=max(1, settings.outbound_high_water_bytes // 4))
        # Frames over max_frame_bytes get a Logux error; over 4 times that, the connection is
        # closed with 1009 before the payload is read.
        self._reader = FrameReader(settings.max_frame_bytes * 4)
        peer = self._socket.get_extra_info("peername")
        remote = client_address(
            peer[0] if peer else None, head.headers.get("x-forwarded-for", ""), settings
        )
        cookie = SimpleCookie(head.headers.get("cookie", ""))
        self.conn = Connection(
            node, self, remote=remote, cookie={k: v.value for k, v in cookie.items()}
        )
        node.attach(self.conn)
        self._timer = _Timer(self.conn)
        rest = bytes(self._head[head.size :])
        self._head = None
        if rest:
            self._frames(rest)

    # -- after it ------------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        assert self._reader is not None and self.conn is not None
        if self._failed:
            return
        settings = self._node.settings
        # Before `connect` is accepted a socket may hold only small frames.
        self._reader.max_message_bytes = (
            settings.max_frame_bytes * 4
            if self.conn.authenticated
            else settings.preauth_frame_bytes
        )
        try:
            messages = self._reader.feed(data)
        except FrameError as error:
            self._fail(error.code, error.reason)
            return
        if self._held:
            self._held.extend(messages)
        else:
            self._dispatch(messages)

    def _dispatch(self, messages: list[tuple[Opcode, bytes]]) -> None:
        assert self.conn is not None
        conn, limit = self.conn, self._node.settings.max_frame_bytes
        for index, (opcode, payload) in enumerate(messages):
            if self._reading_paused:
                # The connection asked for no more input: the rest waits for resume_reading.
                self._held = messages[index:]
                return
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if self._close_sent:
                    continue  # closing: what the client still sends is not read
                if len(payload) > limit:
                    conn.error(ProtocolError("wrong-format", f"frame is larger than {limit} bytes"))
                    continue
                if opcode is Opcode.BINARY:
                    conn.receive(payload)
                    continue
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    self._fail(CloseCode.INVALID_DATA, "text frame is not UTF-8")
                    return
                conn.receive(text)
            elif opcode is Opcode.PING:
                if self._paused:
                    self._pong = payload  # RFC 6455 §5.5.3: the most recent ping is enough
                else:
                    self._write_now(frame(Opcode.PONG, payload))
            elif opcode is Opcode.CLOSE:
                self._on_close_frame(payload)
                return

    def _on_close_frame(self, payload: bytes) -> None:
        assert self._socket is not None
        try:
            code, _ = parse_close(payload)
        except FrameError as error:
            self._fail(error.code, error.reason)
            return
        if not self._close_sent:
            self.flush()
            self._write_now(frame(Opcode.CLOSE, close_payload(code or CloseCode.NORMAL, "")))
            self._close_sent = True
        self._socket.close()

    def _fail(self, code: CloseCode, reason: str) -> None:
        """The client broke the frame format: send the close frame and end the TCP connection
        without waiting for an answer (RFC 6455 §7.1.7); what it still sends is dropped unread."""
        assert self._socket is not None
        remote = shorten(
            self.conn.remote if self.conn else None, self._node.settings.log_value_chars
        )
        logger.info("closing %s: %s", remote, reason)
        self._failed = True
        self._held.clear()
        self.close(code, reason)
        socket = self._socket
        if socket.can_write_eof():
            # FIN after the close frame; the socket closes at the client's EOF (or at the close
            # deadline). Closing it now, with unread bytes, would reset it, and a reset may make
            # the client drop the close frame unread.
            socket.write_eof()

    def _write_now(self, data: bytes) -> None:
        assert self._socket is not None
        if not self._socket.is_closing():
            self._socket.write(data)

    # -- the Connection's transport ------------------------------------------------------------

    def write(self, payloads: list[bytes], binary: bool) -> None:
        if self._close_sent:
            return
        if not self._pending:
            self._flusher.mark(self)
        opcode = Opcode.BINARY if binary else Opcode.TEXT
        for payload in payloads:
            self._pending.append(frame_header(len(payload), opcode))
            self._pending.append(payload)
            self._pending_bytes += len(payload)

    def flush(self) -> None:
        """Write what was collected (the flusher calls this at the end of the loop turn)."""
        if self._pending:
            pending, self._pending = self._pending, []
            self._pending_bytes = 0
            self._write_now(b"".join(pending))

    @property
    def buffered_bytes(self) -> int:
        socket = self._socket
        return self._pending_bytes + (socket.get_write_buffer_size() if socket else 0)

    async def wait_below(self, limit: int) -> None:
        self.flush()
        while self.buffered_bytes >= limit and self._paused and not self._closed.done():
            waiter = self._loop.create_future()
            self._drained.append(waiter)
            await waiter

    def _resume_waiters(self) -> None:
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def pause_reading(self) -> None:
        """Stop reading the socket (inbound backpressure): no more messages reach the
        connection, not even those already read, until :meth:`resume_reading`. Idempotent; a
        no-op once the socket is closing."""
        if self._reading_paused or self._close_sent:
            return
        self._reading_paused = True
        socket = self._socket
        if socket is not None and not socket.is_closing():
            socket.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again; the messages held since the pause are handed over first (in
        a later callback, not inside the caller). Idempotent; a no-op once the socket is
        closing."""
        if not self._reading_paused:
            return
        self._reading_paused = False
        socket = self._socket
        if socket is not None and not socket.is_closing():
            socket.resume_reading()
        if self._held:
            self._loop.call_soon(self._release_held)

    @property
    def reading_paused(self) -> bool:
        return self._reading_paused

    def _release_held(self) -> None:
        if self._reading_paused or not self._held or self.conn is None:
            return
        held, self._held = self._held, []
        self._dispatch(held)

    def close(self, code: int, reason: str) -> None:
        """Send what is queued and a close frame; the socket closes when the client answers (or
        after ``CLOSE_TIMEOUT_S``)."""
        if self._close_sent or self._socket is None:
            return
        self.flush()
        self._write_now(frame(Opcode.CLOSE, close_payload(code, reason)))
        self._close_sent = True
        if self._reading_paused:
            # The client's answer to the close must be read.
            self.resume_reading()
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_later(CLOSE_TIMEOUT_S, self._socket.abort)

    async def wait_closed(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:
            if self._socket is not None:
                self._socket.abort()


def client_address(peer: str | None, forwarded_for: str, settings: Settings) -> str | None:
    """The client's address: the peer's, or the nearest untrusted hop of X-Forwarded-For when the
    peer is a trusted load balancer (``trusted_proxies``: addresses or networks, comma-separated)."""
    trusted = [
        ipaddress.ip_network(a.strip(), strict=False)
        for a in settings.trusted_proxies.split(",")
        if a.strip()
    ]

    def is_trusted(address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return peer


class _Timer:
    """Wakes the session at its deadlines (ping, timeouts): one timer handle per connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        conn = self._conn
        deadline = conn.session.next_deadline()
        if deadline is None or conn.closed:
            return
        delay = max(0.0, (deadline - now_ms()) / 1000)
        if not conn.authenticated:
            delay = min(delay, 1.0)  # the deadlines move earlier once connected
        self._handle = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._conn.on_timer()
        self._arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
