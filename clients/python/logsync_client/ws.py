"""The WebSocket transport: aiohttp's client socket feeding :class:`~logsync.protocol.client.ClientSession`.

:class:`WsTransport.run` is one connection: open the socket, let the session send ``connect``,
then feed it every frame (JSON text or msgpack binary, ``Client(codec=...)``) and write what it
returns. On ``connected`` it sends every pending action (creation order, ``push_batch`` per
``sync``) and resubscribes each stored subscription with its resume point. A received ``sync`` is
handed to the client, its ``added`` saved as the cursor, and only then confirmed with ``synced``.
A refused upgrade (503) or a close with 1013 ends it with
:class:`~logsync_client.backoff.RetryLater` (the server's ``Retry-After``); a fatal ``error``
with :class:`~logsync_client.errors.Refused`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson

from logsync.protocol.client import (
    ActionsArrived,
    ClientEvent,
    ClientSession,
    ClientState,
    Connected,
    Disconnect,
    ServerError,
)
from logsync.protocol.codec import JSON, MSGPACK, Codec
from logsync.protocol.messages import ProtocolError
from logsync_client.backoff import RetryLater, parse_retry_after
from logsync_client.errors import Refused
from logsync_client.host import TransportHost
from logsync_client.pending import batches
from logsync_client.store import StoredAction, StoredSubscription

# logsync closes with 1013 "try again later (try again in 3 s)" past its handshake queue.
_RETRY_IN = re.compile(r"try again in (\d+(?:\.\d+)?) s")
# When the server gave no delay.
DEFAULT_RETRY_S = 1.0


class WsTransport:
    """The ``ws://``/``wss://`` transport of a :class:`~logsync_client.Client`."""

    def __init__(self, client: TransportHost) -> None:
        self.client = client
        self.codec: Codec = MSGPACK if client.codec == "msgpack" else JSON
        self.session: ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._write_lock = asyncio.Lock()
        self._refused: Refused | None = None
        # logux/subscribe ids of this connection → (channel, extra)
        self._subscribing: dict[str, tuple[str, dict[str, Any]]] = {}
        self._outbox: list[StoredAction] = []  # added while connected, to send this turn

    async def run(self) -> None:
        client = self.client
        assert client.http is not None
        self._refused = None
        self._subscribing.clear()
        self._outbox.clear()
        try:
            ws = await client.http.ws_connect(
                client.url, autoping=True, max_msg_size=16 * 1024 * 1024
            )
        except aiohttp.WSServerHandshakeError as error:
            if error.status == 503:
                retry = error.headers.get("Retry-After") if error.headers else None
                raise RetryLater(
                    parse_retry_after(retry, DEFAULT_RETRY_S),
                    "handshake refused: 503",
                ) from None
            raise
        self._ws = ws
        session = ClientSession(
            client.node_id,
            now=client.clock(),
            synced=float(client.store.get("synced") or 0),
            token=client.token,
            subprotocol=client.subprotocol,
            headers=client.headers,
            ping_ms=client.ping_ms,
            timeout_ms=client.timeout_ms,
        )
        self.session = session
        timer = asyncio.create_task(self._timer(session))
        close_reason = ""
        try:
            await self._flush()
            while session.state is not ClientState.CLOSED:
                message = await ws.receive()
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    await self._frame(session, message.data)
                elif message.type is aiohttp.WSMsgType.CLOSE:
                    close_reason = str(message.extra or "")
                    break
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
                elif message.type is aiohttp.WSMsgType.ERROR:
                    raise ConnectionError(f"websocket error: {ws.exception()!r}")
        finally:
            timer.cancel()
            session.close()
            self.session = None
            self._ws = None
            await ws.close()
        if self._refused is not None:
            raise self._refused
        if ws.close_code == 1013:
            found = _RETRY_IN.search(close_reason)
            raise RetryLater(float(found.group(1)) if found else DEFAULT_RETRY_S, close_reason)
        raise ConnectionError(f"websocket closed: {ws.close_code} {close_reason}")

    async def _frame(self, session: ClientSession, frame: str | bytes) -> None:
        codec = JSON if isinstance(frame, str) else MSGPACK
        client = self.client
        try:
            decoded = codec.decode(frame)
        except ProtocolError as error:
            events = session.send_error(error)
        else:
            events = session.receive(decoded, codec.describe(frame), client.clock())
        for event in events:
            self._event(session, event)
        await self._flush()

    def _event(self, session: ClientSession, event: ClientEvent) -> None:
        client = self.client
        if isinstance(event, ActionsArrived):
            for action, meta in event.entries:
                self._receive(action, meta)
            client.store.put("synced", str(event.added))
            session.send_synced(event.added)
        elif isinstance(event, Connected):
            client.handshake_done(event.time_fix)
            self._send_pending(session)
            for sub in client.store.subscriptions():
                self._send_subscribe(session, sub)
        elif isinstance(event, ServerError):
            if event.fatal:
                self._refused = Refused(event.type, event.options)
        elif isinstance(event, Disconnect) and self._ws is not None:
            self.client.spawn(self._close_after_flush())

    def _receive(self, action: dict[str, Any], meta: dict[str, Any]) -> None:
        client = self.client
        kind = action.get("type")
        if kind in ("logux/processed", "logux/undo"):
            sub = self._subscribing.pop(str(action.get("id")), None)
            if sub is not None:
                channel, extra = sub
                if kind == "logux/processed":
                    # the resume point: this answer's id and time (server clock)
                    server_time = int(meta["time"]) - client.time_fix
                    client.store.set_since(channel, extra, str(meta["id"]), server_time)
                    client.subscription_answered(channel, extra, None)
                else:
                    client.subscription_answered(channel, extra, action)
                return
        client.receive(action, meta)

    def _send_pending(self, session: ClientSession) -> None:
        client = self.client
        for run in batches(client.queue.to_send(), client.push_batch, client.max_message_bytes):
            self._send_actions(session, run)

    def _send_actions(self, session: ClientSession, actions: list[StoredAction]) -> None:
        self.client.queue.mark_sent(actions)
        entries = [(a.action, a.meta) for a in actions]
        session.send_sync(actions[-1].added, entries, self.client.clock())

    def _send_subscribe(self, session: ClientSession, sub: StoredSubscription) -> None:
        action: dict[str, Any] = {"type": "logux/subscribe", "channel": sub.channel, **sub.extra}
        if sub.since_id is not None:
            since: dict[str, Any] = {"id": sub.since_id}
            if sub.since_time is not None:
                since["time"] = sub.since_time
            action["since"] = since
        action_id, time = self.client.new_id()
        self._subscribing[action_id] = (sub.channel, sub.extra)
        session.send_sync(session.last_sent, [(action, {"id": action_id, "time": time})], time)

    # -- the client's calls --------------------------------------------------------------------

    def push(self, stored: StoredAction) -> None:
        # Actions added in one turn of the event loop go out together, push_batch per `sync`.
        session = self.session
        if session is not None and session.state is ClientState.CONNECTED:
            if not self._outbox:
                asyncio.get_running_loop().call_soon(self._send_outbox, session)
            self._outbox.append(stored)

    def _send_outbox(self, session: ClientSession) -> None:
        outbox, self._outbox = self._outbox, []
        if session is not self.session or session.state is not ClientState.CONNECTED:
            return  # that connection ended: the next one sends every pending action
        client = self.client
        for run in batches(outbox, client.push_batch, client.max_message_bytes):
            self._send_actions(session, run)
        self._flush_soon()

    def subscribe(self, sub: StoredSubscription) -> None:
        session = self.session
        sending = {(c, _key(e)) for c, e in self._subscribing.values()}
        if (
            session is not None
            and session.state is ClientState.CONNECTED
            and sub.key not in sending
        ):
            self._send_subscribe(session, sub)
            self._flush_soon()

    def unsubscribe(self, channel: str, extra: dict[str, Any]) -> None:
        session = self.session
        if session is not None and session.state is ClientState.CONNECTED:
            action_id, time = self.client.new_id()
            action = {"type": "logux/unsubscribe", "channel": channel, **extra}
            session.send_sync(session.last_sent, [(action, {"id": action_id, "time": time})], time)
            self._flush_soon()

    # -- writing -------------------------------------------------------------------------------

    def _flush_soon(self) -> None:
        self.client.spawn(self._flush())

    async def _flush(self) -> None:
        async with self._write_lock:
            session, ws = self.session, self._ws
            if session is None or ws is None:
                return
            for message in session.take_outgoing():
                payload = self.codec.encode(message)
                if isinstance(payload, str):
                    await ws.send_str(payload)
                else:
                    await ws.send_bytes(payload)

    async def _close_after_flush(self) -> None:
        await self._flush()
        if self._ws is not None:
            await self._ws.close()

    async def _timer(self, session: ClientSession) -> None:
        while True:
            deadline = session.next_deadline()
            if deadline is None:
                return
            await asyncio.sleep(max(0, deadline - self.client.clock()) / 1000)
            for event in session.on_timer(self.client.clock()):
                self._event(session, event)
            await self._flush()


def _key(extra: dict[str, Any]) -> str:
    return orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()
