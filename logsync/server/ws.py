"""The WebSocket endpoint: an aiohttp handler that feeds frames to a
:class:`~logsync.connection.Connection` and writes what it returns. No protocol decisions here."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import deque
from http.cookies import SimpleCookie

from aiohttp import WSCloseCode, WSMsgType, web

from logsync.connection import Connection, now_ms
from logsync.node import ServerNode
from logsync.protocol import ProtocolError
from logsync.settings import Settings

logger = logging.getLogger("logsync.ws")


class WebSocketTransport:
    """Frames queued by the connection, written in order by one writer task."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._frames: deque[str | bytes] = deque()
        self.buffered_bytes = 0
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def write(self, frames: list[str | bytes]) -> None:
        self._frames.extend(frames)
        self.buffered_bytes += sum(len(f) for f in frames)
        self._wakeup.set()

    async def wait_below(self, limit: int) -> None:
        while self.buffered_bytes >= limit and not self.writer.done():
            self._drained.clear()
            await self._drained.wait()

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._wakeup.set()

    async def wait_closed(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.writer), timeout=5)
        except (TimeoutError, asyncio.CancelledError):
            self.writer.cancel()

    async def _write(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._frames:
                    frame = self._frames.popleft()
                    if isinstance(frame, str):
                        await self.ws.send_str(frame)
                    else:
                        await self.ws.send_bytes(frame)
                    self.buffered_bytes -= len(frame)
                self._drained.set()
                if self._close is not None:
                    code, reason = self._close
                    await self.ws.close(code=code, message=reason.encode()[:120])
                    return
        except (ConnectionError, RuntimeError):
            return  # the peer went away; the reader notices too
        finally:
            self._drained.set()


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
    transport = WebSocketTransport(ws)
    cookie = {k: v.value for k, v in SimpleCookie(request.headers.get("Cookie", "")).items()}
    conn = Connection(node, transport, remote=client_address(request, settings), cookie=cookie)
    node.attach(conn)
    timer = asyncio.get_running_loop().create_task(_tick(conn))
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


async def _tick(conn: Connection) -> None:
    """Wake the session at its deadlines (ping, timeouts)."""
    while not conn.closed:
        deadline = conn.session.next_deadline()
        if deadline is None:
            return
        await asyncio.sleep(max(0.0, (deadline - now_ms()) / 1000))
        conn.on_timer()
