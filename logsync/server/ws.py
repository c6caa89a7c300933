"""The WebSocket endpoint: an aiohttp handler that feeds frames to a
:class:`~logsync.connection.Connection` and writes what it returns. No protocol decisions here."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
import weakref
from http.cookies import SimpleCookie

from aiohttp import WSCloseCode, WSMsgType, web

from logsync.connection import Connection, now_ms
from logsync.node import ServerNode
from logsync.protocol import ProtocolError
from logsync.settings import Settings

logger = logging.getLogger("logsync.ws")


class _Flusher:
    """Writes, once per event-loop turn, what each transport collected during the turn: a
    connection that is sent several frames in one turn gets them in one socket write."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[WebSocketTransport] = []

    def mark(self, transport: WebSocketTransport) -> None:
        if not self._dirty:
            self._loop.call_soon(self._flush)
        self._dirty.append(transport)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for transport in dirty:
            transport.flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = (
    weakref.WeakKeyDictionary()
)


def _frame_header(payload_length: int, binary: bool) -> bytes:
    """A server-to-client WebSocket frame header (RFC 6455 §5.2): FIN, text or binary, no mask."""
    first = 0x82 if binary else 0x81
    if payload_length < 126:
        return bytes((first, payload_length))
    if payload_length < 1 << 16:
        return _HEADER_16.pack(first, 126, payload_length)
    return _HEADER_64.pack(first, 127, payload_length)


_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


class WebSocketTransport:
    """Frames from the connection, framed here and written straight to the socket at the end of
    the loop turn (no writer task, no per-frame await). aiohttp still owns the handshake, reading,
    ping/pong and the closing handshake."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, *, high_water_bytes: int
    ) -> None:
        self.ws = ws
        socket = request.transport
        assert socket is not None
        self._socket = socket
        self._protocol = request.protocol
        # The socket pauses the protocol once its buffer passes a quarter of the connection's
        # high-water mark, so wait_below (called with half of it) has a pause to wait on.
        socket.set_write_buffer_limits(high=max(1, high_water_bytes // 4))
        loop = asyncio.get_running_loop()
        flusher = _flushers.get(loop)
        if flusher is None:
            flusher = _flushers[loop] = _Flusher(loop)
        self._flusher = flusher
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._closing: asyncio.Task[None] | None = None

    def write(self, payloads: list[bytes], binary: bool) -> None:
        if self._closing is not None:
            return
        if not self._pending:
            self._flusher.mark(self)
        for payload in payloads:
            self._pending.append(_frame_header(len(payload), binary))
            self._pending.append(payload)
            self._pending_bytes += len(payload)

    def flush(self) -> None:
        """Write what was collected (the flusher calls this at the end of the turn)."""
        if self._pending:
            pending, self._pending = self._pending, []
            self._pending_bytes = 0
            if not self._socket.is_closing():
                self._socket.write(b"".join(pending))

    @property
    def buffered_bytes(self) -> int:
        return self._pending_bytes + self._socket.get_write_buffer_size()

    async def wait_below(self, limit: int) -> None:
        self.flush()
        while (
            self.buffered_bytes >= limit
            and self._protocol.writing_paused
            and not self._socket.is_closing()
        ):
            # Returns once the socket's buffer is below its low-water mark.
            await self._protocol._drain_helper()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self.flush()
            self._closing = asyncio.get_running_loop().create_task(
                self._close(code, reason.encode()[:120])
            )

    async def _close(self, code: int, reason: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):  # the peer went away
            await self.ws.close(code=code, message=reason)

    async def wait_closed(self) -> None:
        if self._closing is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._closing), timeout=5)
        except (TimeoutError, asyncio.CancelledError):
            self._closing.cancel()


async def handle_websocket(request: web.Request, node: ServerNode) -> web.WebSocketResponse:
    """Serve one client for the life of its socket."""
    settings = node.settings
    # aiohttp closes with 1009 (before reading the payload) when a frame is over max_msg_size, with
    # no chance to say why in Logux terms. Let it guard at 4 times our limit, and answer frames between
    # the two with a Logux error before closing.
    ws = web.WebSocketResponse(
        max_msg_size=settings.max_frame_bytes * 4, autoping=True, compress=False
    )
    await ws.prepare(request)
    transport = WebSocketTransport(ws, request, high_water_bytes=settings.outbound_high_water_bytes)
    cookie = {k: v.value for k, v in SimpleCookie(request.headers.get("Cookie", "")).items()}
    conn = Connection(node, transport, remote=client_address(request, settings), cookie=cookie)
    node.attach(conn)
    timer = _Timer(conn)
    try:
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = message.data
                if len(data) > settings.max_frame_bytes:
                    conn.error(
                        ProtocolError(
                            "wrong-format", f"frame is larger than {settings.max_frame_bytes} bytes"
                        )
                    )
                    break
                conn.receive(data)
            elif message.type == WSMsgType.ERROR:
                conn.error(ProtocolError("wrong-format", str(ws.exception())))
                break
            if conn.closed:
                break
    finally:
        timer.cancel()
        node.detach(conn)
        transport.close(WSCloseCode.OK, "")
        await transport.wait_closed()
    return ws


def client_address(request: web.Request, settings: Settings) -> str | None:
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

    remote = request.remote
    if not trusted or not is_trusted(remote):
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return remote


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
