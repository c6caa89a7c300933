"""A raw Logux v5 client for tests: sends exact frames and reads what the server answers."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import msgpack
import orjson

TIMEOUT = 10.0


class RawClient:
    """One WebSocket to the server. ``binary=True`` speaks msgpack frames instead of JSON text."""

    def __init__(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, binary: bool
    ) -> None:
        self.session = session
        self.ws = ws
        self.binary = binary
        self.base_time = 0
        self.node_id = ""
        self.server_id = ""
        self.watermark = 0  # highest `added` of a received `sync`
        self._seq = itertools.count()

    @classmethod
    async def open(cls, url: str, *, binary: bool = False, **kwargs: Any) -> RawClient:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url, max_msg_size=0, **kwargs)
        return cls(session, ws, binary)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    async def send(self, message: list[Any]) -> None:
        if self.binary:
            await self.ws.send_bytes(msgpack.packb(message, use_bin_type=True))
        else:
            await self.ws.send_str(orjson.dumps(message).decode())

    async def send_raw(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_bytes(frame)

    async def recv(self, timeout: float = TIMEOUT) -> list[Any]:
        """The next message; raises ``ConnectionError`` when the socket closes instead."""
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            result: list[Any] = orjson.loads(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            result = msgpack.unpackb(msg.data, raw=False)
        else:
            result = []
        if result:
            if result[0] == "sync":
                self.watermark = max(self.watermark, result[1])
            return result
        raise ConnectionError(f"socket closed: {msg.type.name} {self.ws.close_code}")

    async def recv_until(
        self, name: str, timeout: float = TIMEOUT
    ) -> tuple[list[Any], list[list[Any]]]:
        """Read until a message of type ``name``; returns it and everything read before it."""
        before = []
        while True:
            msg = await self.recv(timeout)
            if msg[0] == name:
                return msg, before
            before.append(msg)

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait for the server to close the socket; its close code."""
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                return self.ws.close_code

    async def connect(
        self,
        node_id: str,
        token: str = "secret",
        *,
        synced: int = 0,
        subprotocol: int = 3,
    ) -> list[Any]:
        """Handshake; returns ``connected`` and remembers the base time for ids."""
        self.node_id = node_id
        await self.send(
            ["connect", 5, node_id, synced, {"token": token, "subprotocol": subprotocol}]
        )
        connected, _ = await self.recv_until("connected")
        self.base_time = connected[3][1]
        self.server_id = connected[2]
        return connected

    def next_id(self) -> list[Any]:
        """A fresh id of this node, compressed as ``[ms, seq]`` against the base time."""
        return [0, next(self._seq)]

    async def sync(
        self, added: int, *actions: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> list[list[Any]]:
        """Send actions (ids from :meth:`next_id`); returns the compressed ids used."""
        message: list[Any] = ["sync", added]
        ids = []
        for action in actions:
            wire_id = self.next_id()
            ids.append(wire_id)
            message += [action, {"id": wire_id, "time": 0, **(meta or {})}]
        await self.send(message)
        return ids

    def full_id(self, wire_id: list[Any]) -> str:
        return f"{wire_id[0] + self.base_time} {self.node_id} {wire_id[1]}"

    async def answer(self, action_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Read until the ``logux/processed`` or ``logux/undo`` for ``action_id``; return it."""
        return (await self.answer_with_meta(action_id, timeout))[0]

    async def answer_with_meta(
        self, action_id: str, timeout: float = TIMEOUT
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Like :meth:`answer`, with the answer's meta (full id, absolute time)."""
        answers = ("logux/processed", "logux/undo")
        while True:
            msg = await self.recv(timeout)
            if msg[0] != "sync":
                continue
            for action, meta in zip(msg[2::2], msg[3::2], strict=True):
                if action.get("type") in answers and action.get("id") == action_id:
                    return dict(action), self.full_meta(meta)

    def full_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        """A received meta with its id decompressed and its time absolute."""
        wire = meta["id"]
        if isinstance(wire, list) and len(wire) == 3:
            full = f"{wire[0] + self.base_time} {wire[1]} {wire[2]}"
        elif isinstance(wire, list):
            full = f"{wire[0] + self.base_time} {self.server_id} {wire[1]}"
        else:
            full = f"{wire + self.base_time} {self.server_id} 0"
        return {**meta, "id": full, "time": meta["time"] + self.base_time}
