"""One WebSocket client on this node — the WebSocket :class:`~logsync.engine.peer.Peer`: its
Logux session (:mod:`logsync.protocol`), its codec, and the driver of its delivery.

What it is sent, and when, is decided by its :class:`~logsync.engine.delivery.Delivery` (pure:
strictly increasing ``added``, live or catching up, answers held behind their barrier); this
class feeds that machine, writes what it returns through the session, and runs the catch-up
reads it asks for — after the client acknowledged (at most ``replay_window`` chunks in flight)
and its socket drained. Frames come from :mod:`logsync.server.ws`; rules are the engine's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from logsync.app import Context
from logsync.engine.delivery import (
    ONLY_SEND_OFFERED,
    SEND_OFFERED,
    Delivery,
    FellBehind,
    Output,
    SendAnswer,
    SendEntries,
    SendSynced,
    Skipped,
)
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
    ProtocolError,
    Session,
    SyncedReceived,
)
from logsync.protocol.codec import JSON, Codec, codec_for
from logsync.wallclock import now_ms

__all__ = ["Connection", "Transport", "now_ms"]

logger = logging.getLogger("logsync.server.connection")


class Transport(Protocol):
    """What the network layer gives a connection: write encoded frames, close."""

    def write(self, payloads: list[bytes], binary: bool) -> None:
        """Queue frames for sending, in order: binary ones (msgpack) or text ones (UTF-8 JSON)."""

    def flush_soon(self) -> None:
        """Call the connection's :meth:`Connection.send_offered` at the end of this event-loop
        turn (once, however often asked in the turn), then write what is queued."""

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

    def hold_budget(self, chunk: int) -> None:
        """A catch-up chunk of ``chunk`` bytes was just written: report what is queued to the
        node's catch-up budget now and as the socket drains, until nothing is
        (:meth:`~logsync.engine.budget.Budget.hold`)."""


def _never_behind(live_window: int, high_water: int) -> bool:
    return False


class Connection:
    """The WebSocket :class:`~logsync.engine.peer.Peer`: feed it frames with :meth:`receive`; the
    engine (its :class:`~logsync.engine.peer.Host`) answers through the Peer methods."""

    # its subscriptions end with it (the channels' `unsubscribe` callbacks run)
    keeps_subscriptions = False

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
        self._cookie = cookie  # None: no Cookie header (no dict kept for it)
        settings = node.settings
        self.session = Session(
            node.node_id,
            now=now_ms(),
            ping_ms=settings.ping_ms,
            timeout_ms=settings.timeout_ms,
            connect_timeout_ms=settings.connect_timeout_ms,
            preauth_held_messages=settings.preauth_held_messages,
            preauth_held_bytes=settings.preauth_held_bytes,
            max_channel_length=settings.max_channel_length,
        )
        self.codec: Codec = JSON
        self.authenticated = False
        self.closed = False
        self.subscriptions: dict[str, Subscription] = {}
        self._delivery: Delivery | None = None
        self._live = False  # as last reported to the node (Host.live_changed)
        self._catching_up: asyncio.Task[None] | None = None
        self._budget_turn: asyncio.Future[None] | None = None  # waiting for the catch-up budget
        # catch-up waiting for the client's `synced` (made when needed: an asyncio.Event costs
        # 860 bytes, an eighth of an idle connection)
        self._ack_waiter: asyncio.Future[None] | None = None
        self._own: tuple[str, ...] | None = None
        # The client's `synced` value at connect: it has everything addressed to it up to here.
        self.connect_synced = 0
        # what `accept` left to handle once delivery has started (messages held before auth)
        self._accepted_events: list[Event] = []
        self._frame_size = 0
        # live entries offered this loop turn, sent together by send_offered (at most live_batch)
        self._offered: list[Entry] = []
        self._live_batch = settings.live_batch
        # What this connection told other nodes when it took its client id (Broker.claim), and
        # whether that claim has come back through the broker.
        self.claim: str | None = None
        self.claim_seen = False

    # -- identity ------------------------------------------------------------------------------

    @property
    def cookie(self) -> dict[str, str]:
        """The cookies the upgrade request carried (a new empty dict when none did)."""
        return {} if self._cookie is None else self._cookie

    @cookie.setter
    def cookie(self, value: dict[str, str]) -> None:
        self._cookie = value

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
            if isinstance(event, SyncedReceived):  # the most common: one per delivery
                if self._ack_waiter is not None:
                    self._wake_acked()
            elif isinstance(event, ConnectRequested):
                self.node.spawn(self.node.authenticate(self, event))
            elif isinstance(event, ActionsReceived):
                self.node.receive_actions(self, event, self._frame_size)
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
        messages = self.session.take_outgoing()
        if len(messages) == 1:
            only = messages[0]
            if isinstance(only, bytes):  # a live push alone: already encoded
                self.transport.write([only], False)
                return
        if messages:
            codec = self.codec
            try:
                payloads = [
                    m if isinstance(m, bytes) else codec.encode_payload(m) for m in messages
                ]
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

    # -- output: driving the delivery state machine (Peer) ----------------------------------

    @property
    def delivery(self) -> Delivery:
        """This peer's :class:`~logsync.engine.delivery.Delivery` (made once the client said who
        it is: entries are offered only after that)."""
        if self._delivery is None:
            settings = self.node.settings
            self._delivery = Delivery(
                self.client_id,
                self._own_indexes,
                self.subscriptions,
                chunk=settings.replay_chunk,
                live_window=settings.live_window,
                high_water=settings.outbound_high_water_bytes,
            )
        return self._delivery

    @property
    def live(self) -> bool:
        return self._delivery is not None and self._delivery.live

    def start_delivery(self, synced: int, *, up_to_date: bool = False) -> None:
        """After ``connected``: catch up from the client's ``synced`` value, then go live (see
        :meth:`Delivery.start`); then handle what the client sent before it was accepted."""
        self.connect_synced = synced
        self._apply(self.delivery.start(synced, up_to_date=up_to_date))
        events, self._accepted_events = self._accepted_events, []
        self.dispatch(events)

    def replay_channel(self, channel: str, after: int) -> None:
        self.delivery.replay_channel(channel, after)
        self._apply([])

    def offer(self, entry: Entry) -> None:
        if not self.authenticated or self.closed:
            return
        # Once an entry is waiting in `_offered`, the client was not behind, and nothing was
        # sent since that could have put it behind (anything sent first sends `_offered`).
        behind = _never_behind if self._offered else self._behind
        outputs = (self._delivery or self.delivery).offer(entry, behind)
        if outputs is ONLY_SEND_OFFERED:
            # the live push alone, every delivery of a fan-out: no dispatch, no catch-up to
            # check; sent at the end of the loop turn with the others offered in it
            offered = self._offered
            offered.append(entry)
            if len(offered) == 1:
                self.transport.flush_soon()
            elif len(offered) >= self._live_batch:
                self.send_offered()
        elif outputs:
            self._apply(outputs, entry)

    def send_offered(self) -> None:
        """Send the live entries offered since the last call, in as few ``sync`` messages as
        is safe (see :meth:`_queue_offered`), and write them. The transport calls this at the
        end of the loop turn (:meth:`Transport.flush_soon`)."""
        offered = self._offered
        if not offered:
            return
        if len(offered) == 1:  # the usual case below saturation
            self._push(offered.pop())
        else:
            self._queue_offered()
        self.flush()

    def _queue_offered(self) -> None:
        """Queue the offered entries: one ``sync`` for all of them, in ``added`` order, except
        that an entry whose :attr:`~logsync.log.entry.Entry.batch_key` is already in the current
        ``sync`` starts the next one (two changes of one SyncMap item never share a ``sync``).
        Anything else sent to the session first sends these (answers follow their entries)."""
        entries, self._offered = self._offered, []
        if len(entries) == 1:
            self._push(entries[0])
            return
        start = 0
        keys: set[tuple[str, ...]] = set()
        for i, entry in enumerate(entries):
            key = entry.batch_key
            if key:
                if key in keys:
                    self._push_many(entries[start:i])
                    start = i
                    keys.clear()
                keys.add(key)
        self._push_many(entries[start:])

    def _push_many(self, entries: list[Entry]) -> None:
        """Send offered entries live in one ``sync`` (spliced for a JSON client)."""
        if len(entries) == 1:
            self._push(entries[0])
            return
        metrics = self.node.metrics
        metrics.deliveries += len(entries)
        metrics.live_syncs += 1
        session, added = self.session, entries[-1].added
        if self.codec.binary:
            session.send_sync(added, [(e.action, e.meta()) for e in entries], now_ms())
            return
        local = session.server_node_id
        bodies = []
        for entry in entries:
            body, ms = entry.json_sync_body(local)
            bodies.append((body, ms, entry.time))
        session.send_sync_bodies(added, bodies, now_ms())

    def _push(self, entry: Entry) -> None:
        """Send an offered entry live, alone in its ``sync``."""
        metrics = self.node.metrics
        metrics.deliveries += 1
        metrics.live_syncs += 1
        session = self.session
        if self.codec.binary:
            session.send_sync(entry.added, [(entry.action, entry.meta())], now_ms())
        else:
            # spliced: the entry's frame is encoded once per fan-out, not once per recipient
            template, ms = entry.json_sync(session.server_node_id)
            session.send_sync_encoded(entry.added, template, ms, entry.time, now_ms())

    def _behind(self, live_window: int, high_water: int) -> bool:
        """Whether the client is not keeping up (see :meth:`Delivery.offer`)."""
        return (
            self.session.unacked_syncs >= live_window or self.transport.buffered_bytes >= high_water
        )

    def catch_up(self) -> None:
        self.delivery.catch_up()
        self._apply([])

    def send_after(self, barrier: int, action: dict[str, Any], meta: dict[str, Any]) -> None:
        if not self.closed:
            self._apply(self.delivery.answer_after(barrier, action, meta))

    def synced_after(self, barrier: int, added: float) -> None:
        if not self.closed:
            self._apply(self.delivery.synced_after(barrier, added))

    def should_deliver(self, entry: Entry) -> bool:
        return self.delivery.should_deliver(entry)

    def _apply(self, outputs: list[Output], offered: Entry | None = None) -> None:
        """Carry out what the delivery machine returned (``offered``: the entry of an
        :meth:`offer`), then make sure a catch-up runs while it asks for reads."""
        metrics, binary, now = self.node.metrics, self.codec.binary, now_ms()
        queued = bool(self._offered)
        if queued:
            self._queue_offered()  # what was offered before goes out before this
        for out in outputs:
            if out is SEND_OFFERED:
                assert offered is not None
                self._push(offered)
            elif isinstance(out, SendEntries):
                entries = out.entries
                metrics.deliveries += len(entries)
                if out.from_log:
                    metrics.catch_up_chunks += 1
                self.session.send_sync(
                    entries[-1].added, [(e.wire_action(binary), e.meta()) for e in entries], now
                )
            elif isinstance(out, SendAnswer):
                self.session.send_sync(None, [(out.action, out.meta)], now)
            elif isinstance(out, SendSynced):
                self.session.send_synced(out.added)
            elif isinstance(out, Skipped):
                self.node.undeliverable(out.entry)
            elif isinstance(out, FellBehind):
                metrics.fell_behind += 1
        if outputs or queued:
            self.flush()
        delivery, task = self._delivery, self._catching_up
        if delivery is not None and delivery.live is not self._live:
            self._live = not self._live
            self.node.live_changed(self, self._live)
        reading = delivery is not None and delivery.reading and not self.closed
        if reading and (task is None or task.done()):
            self._catching_up = self.node.spawn(self._catch_up())

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

    def read_indexes(self) -> list[str]:
        """The log indexes catch-up reads for this client."""
        return self.topics() + [f"channel:{c}" for c in self.subscriptions]

    async def _catch_up(self) -> None:
        try:
            await self._read_while_catching_up()
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

    async def _read_while_catching_up(self) -> None:
        """The driver of :meth:`Delivery.next_read`: at most ``replay_window`` chunks wait for
        ``synced``, the socket's buffer is under half the high-water mark, then, holding one of
        the node's read slots, the catch-up budget grants a chunk (:meth:`Budget.ask`) before
        each read; what the chunk leaves queued is held in the budget until the socket has
        drained it."""
        settings, delivery, transport = self.node.settings, self.delivery, self.transport
        while delivery.reading and not self.closed:
            while self.session.unacked_syncs >= settings.replay_window and not self.closed:
                self._ack_waiter = asyncio.get_running_loop().create_future()
                await self._ack_waiter
                self._ack_waiter = None
            await transport.wait_below(settings.outbound_high_water_bytes // 2)
            if self.closed or not delivery.reading:
                return
            budget = self.node.budget
            if budget.holding(self):
                await transport.wait_below(1)  # its last chunk drained before it asks again
                if self.closed or not delivery.reading:
                    return
            # the budget is charged inside the read slot, when the read is next: connections
            # waiting for a slot hold no reservation (the budget bounds bytes, not readers)
            async with self.node.replay_slots:
                if self.closed or not delivery.reading:
                    return
                if not budget.ask(self, self._budget_granted):
                    self._budget_turn = asyncio.get_running_loop().create_future()
                    await self._budget_turn  # closed_by_peer drops it from the queue
                    self._budget_turn = None
                    if self.closed or not delivery.reading:
                        transport.hold_budget(0)
                        return
                read = delivery.next_read(self.read_indexes())
                try:
                    result = await self.node.read(
                        read.indexes, after=read.after, limit=read.limit, in_slot=True
                    )
                except StoreUnavailable as error:
                    # stay off live delivery; the node resyncs every session when it is back
                    transport.hold_budget(0)
                    self.node.store_failed(error)
                    return
            if self.closed:
                return
            before = transport.buffered_bytes
            self._apply(delivery.read_done(result))
            # no decoded copy of the chunk outlives its frame (this loop may wait long for the
            # next turn)
            del result, read
            transport.hold_budget(transport.buffered_bytes - before)

    def _wake_acked(self) -> None:
        waiter = self._ack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _budget_granted(self) -> None:
        turn = self._budget_turn
        if turn is not None and not turn.done():
            turn.set_result(None)

    def closed_by_peer(self) -> None:
        """The socket is gone: stop delivery (the node forgets this connection)."""
        self.closed = True
        self.session.close()
        self._offered.clear()
        if self._delivery is not None:
            self._delivery.close()
            if self._live:
                self._live = False
                self.node.live_changed(self, False)
        self._wake_acked()
        self.node.budget.drop(self)
        if self._catching_up is not None:
            self._catching_up.cancel()
