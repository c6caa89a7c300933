"""The pull-only HTTP :class:`~logsync.engine.peer.Peer`: one ``POST /v1/sync`` request as the
engine sees it (:mod:`logsync.server.pull` drives it).

It records what the engine answers — the handshake's outcome (:meth:`PullPeer.accept`,
:meth:`PullPeer.refuse`, :meth:`PullPeer.close`), the answers sent outside the log
(:meth:`PullPeer.send_after`), the end of its batch (:meth:`PullPeer.synced_after`) — and holds
the :class:`~logsync.engine.delivery.Delivery` its page is read with. Its long-poll
(:meth:`PullPeer.wait_for_entry`) is one future and one timer handle, resolved by an offered
entry the client receives, by a resync, or by the peer's close. Its subscriptions outlive it
(``keeps_subscriptions``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from logsync.app import Context
from logsync.engine.delivery import Delivery
from logsync.engine.peer import Host, Subscription
from logsync.log import Entry
from logsync.protocol import ActionsReceived, ProtocolError
from logsync.protocol.ids import NodeParts


class PullPeer:
    """One ``POST /v1/sync`` request as the engine sees it: a :class:`~logsync.engine.peer.Peer`
    that records the handshake's outcome and the answers to its actions, and wakes its
    long-poll when an entry for it is offered."""

    keeps_subscriptions = True
    live = False
    buffered_bytes = 0

    def __init__(
        self,
        node: Host,
        parts: NodeParts,
        *,
        subprotocol: int | None,
        limit: int,
        remote: str | None,
        cookie: dict[str, str],
    ) -> None:
        self.node = node
        self.parts = parts
        self._subprotocol = subprotocol
        self.limit = limit
        self.remote = remote
        self.cookie = cookie
        self.authenticated = False
        self.closed = False
        self.subscriptions: dict[str, Subscription] = {}
        self.connect_synced = 0
        self.claim: str | None = None
        self.claim_seen = False
        self.accepted = False
        self.refused: ProtocolError | None = None
        self.delivery: Delivery | None = None
        # answers the engine sent outside the log: action id → logux/processed or logux/undo
        self.answers: dict[str, dict[str, Any]] = {}
        self._synced: asyncio.Future[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        # an entry for this client was offered since the last read of the page began
        self.pending = False
        self._done = asyncio.Event()

    # -- identity (Peer) -----------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self.parts.client_id

    @property
    def user_id(self) -> str | None:
        return self.parts.user_id

    @property
    def node_id(self) -> str:
        return self.parts.node_id

    @property
    def subprotocol(self) -> int | None:
        return self._subprotocol

    def context(self) -> Context:
        return Context(
            node=self.node,
            user_id=self.user_id,
            client_id=self.client_id,
            node_id=self.node_id,
            subprotocol=self._subprotocol,
            headers={},
        )

    def own_indexes(self) -> tuple[str, ...]:
        own = (f"client:{self.client_id}", f"node:{self.node_id}")
        return own if self.user_id is None else (*own, f"user:{self.user_id}")

    def topics(self) -> list[str]:
        return list(self.own_indexes())

    def read_indexes(self) -> list[str]:
        return [*self.own_indexes(), *(f"channel:{c}" for c in self.subscriptions)]

    # -- the handshake (Peer) ------------------------------------------------------------------

    def accept(self, now: int, options: dict[str, Any], headers: dict[str, Any] | None) -> None:
        self.accepted = True

    def refuse(self, error: ProtocolError) -> None:
        self.refused = error
        self.closed = True

    def start_delivery(self, synced: int, *, up_to_date: bool = False) -> None:
        """Accepted: the page is read from ``synced`` (the request's cursor)."""
        self.connect_synced = synced
        settings = self.node.settings
        self.delivery = Delivery(
            self.client_id,
            self.own_indexes(),
            self.subscriptions,
            chunk=self.limit,
            live_window=settings.live_window,
            high_water=settings.outbound_high_water_bytes,
        )
        self.delivery.start(synced)

    # -- answers (Peer) ------------------------------------------------------------------------

    def send_after(self, barrier: int, action: dict[str, Any], meta: dict[str, Any]) -> None:
        if action.get("type") in ("logux/processed", "logux/undo"):
            self.answers[action["id"]] = action

    def synced_after(self, barrier: int, added: float) -> None:
        if self._synced is not None and not self._synced.done():
            self._synced.set_result(None)

    async def push(self, event: ActionsReceived, size: int) -> bool:
        """Hand the batch to the engine and wait until every action in it is answered; False if
        the peer was closed first (shutdown, a store failure, a newer request of this client)."""
        self._synced = asyncio.get_running_loop().create_future()
        self.node.receive_actions(self, event, size)
        if not self.closed:
            await self._synced
        return self._synced.done() and not self._synced.cancelled() and not self.closed

    # -- delivery (Peer) -----------------------------------------------------------------------

    def should_deliver(self, entry: Entry) -> bool:
        return self.delivery is not None and self.delivery.should_deliver(entry)

    def offer(self, entry: Entry) -> None:
        delivery = self.delivery
        if delivery is None or self.closed or entry.added <= delivery.cursor:
            return
        if delivery.should_deliver(entry):
            self._wake_up()

    def catch_up(self) -> None:
        self._wake_up()

    def replay_channel(self, channel: str, after: int) -> None:
        if self.delivery is not None:
            self.delivery.replay_channel(channel, after)

    def _wake_up(self) -> None:
        self.pending = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def wait_for_entry(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an entry for this client (or the peer's close);
        whether one came. One future and one timer handle, no task."""
        if self.pending or self.closed:
            return self.pending
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(timeout, _resolve, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None
        return self.pending

    # -- flow control, debug, the end (Peer) ---------------------------------------------------

    def pause_reading(self) -> None:
        """Nothing to pause: a request's actions are bounded by its size."""

    def resume_reading(self) -> None:
        """See :meth:`pause_reading`."""

    async def wait_drained(self, limit: int) -> None:
        return None

    def debug(self, text: str) -> None:
        """Development-mode messages have no place in a pull response."""

    def close(self, code: int, reason: str) -> None:
        """End the request now: it answers with what it has (a waiting long-poll), or 503."""
        self.closed = True
        for future in (self._synced, self._wake):
            if future is not None and not future.done():
                future.set_result(None)

    async def wait_closed(self) -> None:
        await self._done.wait()

    def closed_by_peer(self) -> None:
        self.closed = True
        if self.delivery is not None:
            self.delivery.close()

    def finished(self) -> None:
        """The response is written (or failed): :meth:`wait_closed` returns."""
        self._done.set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
