"""A WebSocket over a bare asyncio stream, for tests that must control reading: the client writes
masked frames and reads only when the test says so (an aiohttp client reads in the background)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import Any
from urllib.parse import urlparse

import orjson

TIMEOUT = 10.0


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """A frame as a client sends it: masked."""
    mask = os.urandom(4) if mask is None else mask
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
    masked = (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")
    return header + mask + masked


class RawSocket:
    """``await RawSocket.open(url)``: the upgrade is done; :meth:`send` writes a Logux message."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str, *, rcvbuf: int = 0) -> RawSocket:
        """``rcvbuf``: the socket's receive buffer, set before it connects (the kernel then
        never takes more than about twice that of what the server sends)."""
        parts = urlparse(url)
        if rcvbuf:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, (parts.hostname, parts.port)), TIMEOUT)
            reader, writer = await asyncio.open_connection(sock=sock)
        else:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port), TIMEOUT
            )
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, message: list[Any]) -> None:
        """Queue one JSON text frame (see :meth:`drain`)."""
        self.writer.write(client_frame(0x1, orjson.dumps(message)))

    async def drain(self, timeout: float) -> bool:
        """Wait until the kernel took what was written; False if the server stopped reading."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except TimeoutError:
            return False
        return True

    async def recv(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """The next server frame as (opcode, payload) (server frames are never masked)."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(size), timeout)

    async def recv_message(self, timeout: float = TIMEOUT) -> list[Any]:
        """The next text frame's Logux message."""
        opcode, payload = await self.recv(timeout)
        assert opcode == 0x1, (opcode, payload[:100])
        message: list[Any] = orjson.loads(payload)
        return message

    def abort(self) -> None:
        self.writer.transport.abort()
