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
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from logsync.protocol import PROTOCOL_VERSION, Message, validate
from logsync.protocol.codec import JSON, MSGPACK, Codec
from logsync.protocol.ids import compress_id, decompress_id

HANDSHAKE_TIMEOUT = 30.0
HINT = re.compile(r"try again in (\d+(?:\.\d+)?) s")  # in a close 1013's reason

# (client, action, meta) for each action of a received `sync`; meta as it came (compressed id).
OnAction = Callable[["BenchClient", dict[str, Any], dict[str, Any]], None]
# (client, value) for each received `synced`; and for each `sync` once it is acknowledged.
OnSynced = Callable[["BenchClient", float], None]


class Refusal(Exception):
    """A handshake refused by flow control (HTTP 503 or close 1013), with the server's retry
    hint in seconds (``None`` when it gave none)."""

    def __init__(self, hint: float | None, how: str) -> None:
        super().__init__(how)
        self.hint = hint


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
        after_sync: OnSynced | None = None,
    ) -> None:
        self.ws = ws
        self.node_id = node_id
        self.codec = codec
        self.on_action = on_action
        self.on_synced = on_synced
        self.after_sync = after_sync
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
        """Open the socket; :class:`Refusal` when the server answers 503."""
        try:
            ws = await http.ws_connect(url, max_msg_size=0, compress=0, autoping=True)
        except aiohttp.WSServerHandshakeError as error:
            if error.status == 503:
                header = (error.headers or {}).get("Retry-After")
                raise Refusal(float(header) if header else None, "503") from error
            raise
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

    async def handshake(
        self,
        token: str = "bench",
        subprotocol: int = 1,
        synced: float = 0,
        timeout: float = HANDSHAKE_TIMEOUT,
    ) -> Message:
        """``connect`` (with ``synced``) → ``connected``; remembers ``baseTime`` and the server's
        node id. :class:`Refusal` on close 1013, ``ConnectionError`` on any other close or an
        ``error`` message."""
        await self.send(
            [
                "connect",
                PROTOCOL_VERSION,
                self.node_id,
                synced,
                {"token": token, "subprotocol": subprotocol},
            ]
        )
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.receive()
                if msg is None:
                    if self.ws.close_code == 1013:
                        found = HINT.search(self.closed_reason or "")
                        raise Refusal(float(found.group(1)) if found else None, "1013")
                    raise ConnectionError(
                        f"{self.node_id}: closed in handshake: {self.closed_reason}"
                    )
                if msg[0] == "error":
                    raise ConnectionError(f"{self.node_id}: {msg!r}")
                error = validate(msg, "")
                if error is not None:
                    raise error
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
        """Read until the socket closes, each message through :meth:`handle`."""
        receive, handle = self.receive, self.handle
        while True:
            msg = await receive()
            if msg is None:
                return
            await handle(msg)

    async def handle(self, msg: Message) -> None:
        """What a client does with a received message: each action of a ``sync`` goes to
        ``on_action``, then the ``sync`` is acknowledged with ``synced`` and ``after_sync`` is
        called; ``synced`` goes to ``on_synced``; ``ping`` is answered with ``pong``."""
        kind = msg[0]
        if kind == "sync":
            added = msg[1]
            if added > self.watermark:
                self.watermark = added
            on_action = self.on_action
            if on_action is not None:
                for i in range(2, len(msg), 2):
                    on_action(self, msg[i], msg[i + 1])
            await self.send(["synced", added])
            if self.after_sync is not None:
                self.after_sync(self, added)
        elif kind == "synced":
            if self.on_synced is not None:
                self.on_synced(self, msg[1])
        elif kind == "ping":
            await self.send(["pong", self.watermark])
        elif kind == "error":
            self.closed_reason = f"error {msg[1:]!r}"

    async def close(self) -> None:
        await self.ws.close()


async def connect(
    http: aiohttp.ClientSession,
    url: str,
    node_id: str,
    *,
    synced: float = 0,
    codec: Codec = JSON,
    token: str = "bench",
    subprotocol: int = 1,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> BenchClient:
    """A client that has opened its socket and finished its handshake with ``synced``, in at most
    ``timeout`` s each; :class:`Refusal` when flow control refused it."""
    async with asyncio.timeout(timeout):
        client = await BenchClient.open(http, url, node_id, codec)
    await client.handshake(token, subprotocol, synced, timeout)
    return client
