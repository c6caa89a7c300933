"""One client connection on this node: its protocol session, identity, subscriptions, and delivery.

Delivery keeps one rule: a connection receives log entries in strictly increasing ``added``, so the
``synced`` value the client stores is a true watermark. It is either *live* (entries are pushed as
the broker hands them over) or *catching up* (entries are read from the log after ``cursor`` in
acknowledged chunks; live entries only mark it dirty, and are read from the log too — the log is
the buffer). It starts catching up from the client's ``synced`` value and turns live when reading
finds nothing new; it falls back to catching up when the client stops acknowledging.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from logsync.app import Context
from logsync.engine.peer import Host, Subscription
from logsync.log.entry import Entry
from logsync.log.store import StoreUnavailable
from logsync.logfmt import shorten
from logsync.protocol import (
    ActionsReceived,
    CloseRequested,
    ConnectRequested,
    ErrorReceived,
    Event,
    Message,
    ProtocolError,
    Session,
    SyncedReceived,
)
from logsync.protocol.codec import JSON, Codec, codec_for
from logsync.wallclock import now_ms

__all__ = ["Connection", "Transport", "now_ms"]

logger = logging.getLogger("logsync.connection")


class Transport(Protocol):
    """What the network layer gives a connection: write encoded frames, close."""

    def write(self, payloads: list[bytes], binary: bool) -> None:
        """Queue frames for sending, in order: binary ones (msgpack) or text ones (UTF-8 JSON)."""

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close the socket."""

    @property
    def buffered_bytes(self) -> int:
        """Bytes queued and not yet written to the socket."""

    async def wait_below(self, limit: int) -> None:
        """Return once fewer than ``limit`` bytes are queued (or the socket is gone)."""

    async def wait_closed(self) -> None:
        """Return once the queued frames and the close have been written (or given up)."""

    def pause_reading(self) -> None:
        """Stop reading the socket (the client's unanswered actions are over their bound)."""

    def resume_reading(self) -> None:
        """Read the socket again."""


class Connection:
    """The WebSocket :class:`~logsync.engine.peer.Peer`: feed it frames with :meth:`receive`; the
    engine (its :class:`~logsync.engine.peer.Host`) answers through the Peer methods."""

    def __init__(
        self,
        node: Host,
        transport: Transport,
        *,
        remote: str | None = None,
        cookie: dict[str, str] | None = None,
    ) -> None:
        self.node = node
        self.transport = transport
        self.remote = remote
        self.cookie = cookie or {}
        settings = node.settings
        self.session = Session(
            node.node_id,
            now=now_ms(),
            ping_ms=settings.ping_ms,
            timeout_ms=settings.timeout_ms,
            connect_timeout_ms=settings.connect_timeout_ms,
            preauth_held_messages=settings.preauth_held_messages,
            preauth_held_bytes=settings.preauth_held_bytes,
        )
        self.codec: Codec = JSON
        self.authenticated = False
        self.closed = False
        self.subscriptions: dict[str, Subscription] = {}
        # Every log entry up to `cursor` has been sent to this client or judged not addressed to it.
        self.cursor = 0
        self.live = False
        self._dirty = False
        self._catching_up: asyncio.Task[None] | None = None
        self._acked = asyncio.Event()
        # Answers waiting, in order, until every entry up to their barrier has gone out:
        # (barrier, action, meta) for an action outside the log, (barrier, None, added) for a
        # `synced`.
        self._held: deque[tuple[int, dict[str, Any] | None, Any]] = deque()
        self._own: tuple[str, ...] | None = None
        # The client's `synced` value at connect: it has everything addressed to it up to here.
        self.connect_synced = 0
        # what `accept` left to handle once delivery has started (messages held before auth)
        self._accepted_events: list[Event] = []
        # Channel history to send that lies below the cursor: (channel, after, up to).
        self._rewinds: list[tuple[str, int, int]] = []
        self._frame_size = 0
        # What this connection told other nodes when it took its client id (Broker.claim), and
        # whether that claim has come back through the broker.
        self.claim: str | None = None
        self.claim_seen = False

    # -- identity ------------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        assert self.session.node is not None
        return self.session.node.node_id

    @property
    def client_id(self) -> str:
        assert self.session.node is not None
        return self.session.node.client_id

    @property
    def user_id(self) -> str | None:
        assert self.session.node is not None
        return self.session.node.user_id

    @property
    def subprotocol(self) -> int | None:
        return self.session.subprotocol

    @property
    def buffered_bytes(self) -> int:
        return self.transport.buffered_bytes

    def context(self) -> Context:
        """A fresh rule context for an action this client sent."""
        return Context(
            node=self.node,
            user_id=self.user_id,
            client_id=self.client_id,
            node_id=self.node_id,
            subprotocol=self.session.subprotocol,
            headers=self.session.headers,
        )

    # -- input ---------------------------------------------------------------------------------

    def receive(self, frame: str | bytes) -> None:
        """Handle one frame from the socket."""
        if self.closed:
            return
        codec = codec_for(frame)
        try:
            msg = codec.decode(frame)
        except ProtocolError as error:
            self.codec = codec
            self.dispatch(self.session.send_error(error))
            return
        if self.session.node is None:
            self.codec = codec  # answer in the format the client speaks
        self._frame_size = len(frame)
        try:
            self.dispatch(self.session.receive(msg, codec.describe(frame), now_ms(), len(frame)))
        finally:
            self._frame_size = 0

    def dispatch(self, events: list[Event]) -> None:
        """Act on what the session reported, then write what it wants sent."""
        for event in events:
            if isinstance(event, ConnectRequested):
                self.node.spawn(self.node.authenticate(self, event))
            elif isinstance(event, ActionsReceived):
                self.node.receive_actions(self, event, self._frame_size)
            elif isinstance(event, SyncedReceived):
                self._acked.set()
            elif isinstance(event, CloseRequested):
                self.flush()
                self.transport.close(1000 if event.reason == "timeout" else 1008, event.reason)
                self.closed = True
            elif isinstance(event, ErrorReceived):
                limit = self.node.settings.log_value_chars
                logger.info(
                    "client %s reported error %s %s",
                    self.remote,
                    shorten(event.type, limit),
                    shorten(event.options, limit),
                    extra={"client": self._client_or_none(), "reason": "client error"},
                )
        self.flush()

    def _client_or_none(self) -> str | None:
        return None if self.session.node is None else self.session.node.client_id

    # -- flow control (Peer) --------------------------------------------------------------------

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()

    async def wait_drained(self, limit: int) -> None:
        await self.transport.wait_below(limit)

    def on_timer(self) -> None:
        self.dispatch(self.session.on_timer(now_ms()))

    def flush(self) -> None:
        """Encode and hand to the transport everything the session has queued."""
        messages: list[Message] = self.session.take_outgoing()
        if messages:
            codec = self.codec
            try:
                payloads = [codec.encode_payload(m) for m in messages]
            except (TypeError, ValueError, OverflowError):
                # Entries are checked before they are queued (Entry.deliverable); reaching this
                # is a bug, and the client must not be left waiting for what it never got.
                logger.exception("a message to %s could not be encoded", self._client_or_none())
                self.transport.close(1011, "server error: reconnect")
                self.closed = True
                return
            self.transport.write(payloads, codec.binary)

    def error(self, error: ProtocolError) -> None:
        """Send a protocol error and close."""
        self.dispatch(self.session.send_error(error))

    # -- the handshake, debug, close (Peer) -----------------------------------------------------

    def accept(self, now: int, options: dict[str, Any], headers: dict[str, Any] | None) -> None:
        self._accepted_events = self.session.accept(now, options, headers)
        self.flush()

    def refuse(self, error: ProtocolError) -> None:
        self.error(error)

    def debug(self, text: str) -> None:
        self.session.send_debug(text)
        self.flush()

    def close(self, code: int, reason: str) -> None:
        self.transport.close(code, reason)

    async def wait_closed(self) -> None:
        await self.transport.wait_closed()

    # -- output ------------------------------------------------------------------------------

    def start_delivery(self, synced: int, *, up_to_date: bool = False) -> None:
        """After ``connected``: catch up from the client's ``synced`` value, then go live.

        ``up_to_date``: the client has the log's head and every later entry will be offered to
        this connection; unless one was offered already, it goes live without reading the log."""
        self.cursor = self.connect_synced = synced
        if up_to_date and not self._dirty:
            self.live = True
            self._release_held(lambda barrier: True)
            self.flush()
        else:
            self._start_catch_up()
        events, self._accepted_events = self._accepted_events, []
        self.dispatch(events)

    def replay_channel(self, channel: str, after: int) -> None:
        """Send ``channel``'s history after ``after`` (a resubscription with ``since``), even where
        the cursor has passed it: the cursor goes back, and what was already sent is skipped."""
        if after < self.cursor:
            self._rewinds.append((channel, after, self.cursor))
            self.cursor = after
        # Live delivery only pushes what is published from now on: read the history.
        self._start_catch_up()

    def offer(self, entry: Entry) -> None:
        """A published entry that may concern this connection."""
        if not self.authenticated or self.closed or entry.added <= self.cursor:
            return
        if not self.live:
            self._dirty = True
            return
        if not self.should_deliver(entry) or not self._deliverable(entry):
            self.cursor = entry.added
            return
        settings = self.node.settings
        if (
            self.session.unacked_syncs >= settings.live_window
            or self.transport.buffered_bytes >= settings.outbound_high_water_bytes
        ):
            # The client is not keeping up: stop pushing; serve it from the log.
            self.node.metrics.fell_behind += 1
            self._start_catch_up()
            return
        self.cursor = entry.added
        self.node.metrics.deliveries += 1
        # One `sync` per live entry. (Coalescing a loop turn's entries into one message was
        # tried: @logux/client adds a message's actions concurrently, and its createFilter then
        # loses fields of a map whose first `changed` is still being added.)
        wire = entry.wire_action(self.codec.binary)
        self.session.send_sync(entry.added, [(wire, entry.meta())], now_ms())
        if self._held:
            self._release_held(lambda barrier: barrier <= self.cursor)
        self.flush()

    def send_after(self, barrier: int, action: dict[str, Any], meta: dict[str, Any]) -> None:
        """Send an action that is not in the log (``logux/processed``) once every entry up to
        ``barrier`` that concerns this client has gone out, so it never overtakes them."""
        self._send_or_hold(barrier, action, meta)

    def synced_after(self, barrier: int, added: float) -> None:
        """Acknowledge the client's ``sync`` of ``added`` once the answers to its actions went
        out: those held by :meth:`send_after` before this, and those in the log up to
        ``barrier`` (a logged ``logux/undo``)."""
        self._send_or_hold(barrier, None, added)

    def _send_or_hold(self, barrier: int, action: dict[str, Any] | None, value: Any) -> None:
        if self.closed:
            return
        if self.live and self.cursor >= barrier and not self._held:
            self._emit(action, value)
            self.flush()
        else:
            self._held.append((barrier, action, value))

    def _emit(self, action: dict[str, Any] | None, value: Any) -> None:
        if action is None:
            self.session.send_synced(value)
        else:
            self.session.send_sync(None, [(action, value)], now_ms())

    def should_deliver(self, entry: Entry) -> bool:
        """Whether this client receives ``entry`` (B.4 of the protocol notes).

        Addressed to its node or client: always. Otherwise never its own actions nor excluded
        clients; then its user, and channels it subscribed to before the entry, through filters.
        """
        indexes = entry.indexes
        own = self._own_indexes
        if own[0] in indexes or own[1] in indexes:
            return True
        if entry.origin_client == self.client_id or self.client_id in entry.exclude_clients:
            return False
        if len(own) == 3 and own[2] in indexes:
            return True
        for index in indexes:
            if index.startswith("channel:"):
                sub = self.subscriptions.get(index[8:])
                if sub is not None and entry.added > sub.from_added and sub.accepts(entry):
                    return True
        return False

    def _deliverable(self, entry: Entry) -> bool:
        if entry.deliverable:
            return True
        self.node.undeliverable(entry)
        return False

    def _deliver_in_catch_up(self, entry: Entry) -> bool:
        if not self._rewinds or entry.added > max(r[2] for r in self._rewinds):
            return self.should_deliver(entry)
        # Below a rewind's end this client has had everything but the replayed channels.
        if entry.origin_client == self.client_id or self.client_id in entry.exclude_clients:
            return False
        for channel, after, upto in self._rewinds:
            if after < entry.added <= upto and f"channel:{channel}" in entry.indexes:
                sub = self.subscriptions.get(channel)
                if sub is not None and sub.accepts(entry):
                    return True
        return False

    def topics(self) -> list[str]:
        """The broker topics this connection needs besides its channels."""
        return list(self._own_indexes)

    @property
    def _own_indexes(self) -> tuple[str, ...]:
        """``client:…``, ``node:…`` and, with a user, ``user:…`` of this client (made once)."""
        if self._own is None:
            own = (f"client:{self.client_id}", f"node:{self.node_id}")
            self._own = own if self.user_id is None else (*own, f"user:{self.user_id}")
        return self._own

    def catch_up(self) -> None:
        """Serve this client from the log from its cursor (after the broker may have missed some)."""
        self._start_catch_up()

    def read_indexes(self) -> list[str]:
        """The log indexes catch-up reads for this client."""
        return self.topics() + [f"channel:{c}" for c in self.subscriptions]

    def _start_catch_up(self) -> None:
        self.live = False
        self._dirty = True  # a running catch-up must read once more before it turns live
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = self.node.spawn(self._catch_up())

    async def _catch_up(self) -> None:
        try:
            await self._catch_up_from_log()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Never a silently stalled connection: the client reconnects and resumes from its
            # own `synced` value.
            logger.exception(
                "catch-up of %s failed; closing it",
                self.client_id,
                extra={"client": self.client_id, "reason": "catch-up failed"},
            )
            self.transport.close(1011, "server error: reconnect")

    async def _catch_up_from_log(self) -> None:
        settings = self.node.settings
        while not self.closed:
            self._dirty = False
            # Wait for the client to acknowledge and its socket to drain before reading more:
            # at most `replay_window` chunks in flight, the buffer under half the high-water mark.
            while self.session.unacked_syncs >= settings.replay_window and not self.closed:
                self._acked.clear()
                await self._acked.wait()
            await self.transport.wait_below(settings.outbound_high_water_bytes // 2)
            if self.closed:
                return
            metrics = self.node.metrics
            try:
                result = await self.node.read(
                    self.read_indexes(), after=self.cursor, limit=settings.replay_chunk
                )
            except StoreUnavailable as error:
                # stay off live delivery; the node resyncs every session when it is back
                self.node.store_failed(error)
                return
            if self.closed:
                return
            batch = [
                e for e in result.entries if self._deliver_in_catch_up(e) and self._deliverable(e)
            ]
            if result.entries:
                self.cursor = max(self.cursor, result.entries[-1].added)
            if batch:
                metrics.deliveries += len(batch)
                metrics.catch_up_chunks += 1
                binary = self.codec.binary
                self.session.send_sync(
                    batch[-1].added, [(e.wire_action(binary), e.meta()) for e in batch], now_ms()
                )
            self._release_held(lambda barrier: barrier <= self.cursor)
            self.flush()
            self._rewinds = [r for r in self._rewinds if r[2] > self.cursor]
            if not result.more and not self._dirty:
                self._rewinds.clear()
                self.live = True
                self._release_held(lambda barrier: True)
                self.flush()
                return

    def _release_held(self, ready: Callable[[int], bool]) -> None:
        # In order: an answer never overtakes one held before it (a `synced` its `processed`).
        held = self._held
        while held and ready(held[0][0]):
            _, action, value = held.popleft()
            self._emit(action, value)

    def closed_by_peer(self) -> None:
        """The socket is gone: stop delivery (the node forgets this connection)."""
        self.closed = True
        self.session.close()
        self._acked.set()
        if self._catching_up is not None:
            self._catching_up.cancel()
