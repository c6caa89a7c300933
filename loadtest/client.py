"""A thin asyncio Logux v5 client for load generation.

It is the client half only as far as a benchmark needs it: the handshake, sending actions in
``sync`` with ids made and compressed by :mod:`logsync.protocol.ids`, acknowledging every received
``sync`` with ``synced``, answering ``ping``. Frames are encoded and decoded with the project's own
codecs (:mod:`logsync.protocol.codec`), and received ids are expanded with
:func:`~logsync.protocol.ids.decompress_id` against the ``baseTime`` and server node id of
``connected`` — the way ``tests/support/wsclient.py`` does. Everything else (what to do with a
received action) is a callback: see :class:`BenchClient`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from logsync.protocol import PROTOCOL_VERSION, Message, ProtocolError, validate
from logsync.protocol.codec import JSON, MSGPACK, Codec
from logsync.protocol.ids import compress_id, decompress_id

HANDSHAKE_TIMEOUT = 30.0

# (client, action, meta) for each action of a received `sync`; meta as it came (compressed id).
OnAction = Callable[["BenchClient", dict[str, Any], dict[str, Any]], None]
# (client, value) for each received `synced`.
OnSynced = Callable[["BenchClient", float], None]


CODECS: dict[str, Codec] = {"json": JSON, "msgpack": MSGPACK}


def codec_named(name: str) -> Codec:
    return CODECS[name]


class BenchClient:
    """One WebSocket, one Logux node id. :meth:`open`, :meth:`handshake`, then :meth:`run` reads
    until the socket closes, calling ``on_action`` / ``on_synced``."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        node_id: str,
        codec: Codec,
        on_action: OnAction | None = None,
        on_synced: OnSynced | None = None,
    ) -> None:
        self.ws = ws
        self.node_id = node_id
        self.codec = codec
        self.on_action = on_action
        self.on_synced = on_synced
        self.base_time = 0
        self.server_id = ""
        self.watermark: float = 0  # highest `added` the server sent us in a `sync`
        self._seq = 0
        self._send_text = not codec.binary
        self.closed_reason: str | None = None

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        node_id: str,
        codec: Codec = JSON,
        **callbacks: Any,
    ) -> BenchClient:
        ws = await http.ws_connect(url, max_msg_size=0, compress=0, autoping=True)
        return cls(ws, node_id, codec, **callbacks)

    # -- frames ------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        frame = self.codec.encode(message)
        if self._send_text:
            await self.ws.send_str(frame)  # type: ignore[arg-type]
        else:
            await self.ws.send_bytes(frame)  # type: ignore[arg-type]

    async def receive(self) -> Message | None:
        """The next decoded message, or None once the socket is closed."""
        while True:
            msg = await self.ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                decoded: Message = self.codec.decode(msg.data)
                return decoded
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                self.closed_reason = f"{msg.type.name} {self.ws.close_code} {msg.extra or ''}"
                return None

    # -- protocol ----------------------------------------------------------------------------

    async def handshake(self, token: str = "bench", subprotocol: int = 1) -> Message:
        """``connect`` → ``connected``; remembers ``baseTime`` and the server's node id."""
        await self.send(
            [
                "connect",
                PROTOCOL_VERSION,
                self.node_id,
                0,
                {"token": token, "subprotocol": subprotocol},
            ]
        )
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            while True:
                msg = await self.receive()
                if msg is None:
                    raise ConnectionError(
                        f"{self.node_id}: closed in handshake: {self.closed_reason}"
                    )
                error = validate(msg, "")
                if error is not None:
                    raise error
                if msg[0] == "error":
                    raise ProtocolError(msg[1], msg[2] if len(msg) > 2 else None)
                if msg[0] == "connected":
                    self.server_id = msg[2]
                    self.base_time = int(msg[3][1])
                    return msg

    def new_meta(self) -> tuple[str, dict[str, Any]]:
        """A fresh action id of this node and its wire meta (id and time relative to baseTime)."""
        now = int(time.time() * 1000)
        full = f"{now} {self.node_id} {self._seq}"
        self._seq += 1
        return full, {
            "id": compress_id(full, self.base_time, self.node_id),
            "time": now - self.base_time,
        }

    def full_id(self, wire: Any) -> str:
        """A received (compressed) id expanded against this connection's baseTime."""
        return decompress_id(wire, self.base_time, self.server_id)

    async def sync(self, added: int, action: dict[str, Any]) -> str:
        """Send one action in a ``sync`` numbered ``added``; returns its full id."""
        full, meta = self.new_meta()
        await self.send(["sync", added, action, meta])
        return full

    async def run(self) -> None:
        """Read until the socket closes: every ``sync`` is handed over action by action and then
        acknowledged with ``synced``; ``ping`` is answered with ``pong``."""
        on_action, on_synced = self.on_action, self.on_synced
        while True:
            msg = await self.receive()
            if msg is None:
                return
            kind = msg[0]
            if kind == "sync":
                added = msg[1]
                if added > self.watermark:
                    self.watermark = added
                if on_action is not None:
                    for i in range(2, len(msg), 2):
                        on_action(self, msg[i], msg[i + 1])
                await self.send(["synced", added])
            elif kind == "synced":
                if on_synced is not None:
                    on_synced(self, msg[1])
            elif kind == "ping":
                await self.send(["pong", self.watermark])
            elif kind == "error":
                self.closed_reason = f"error {msg[1:]!r}"

    async def close(self) -> None:
        await self.ws.close()
