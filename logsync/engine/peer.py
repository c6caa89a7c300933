"""The seam between the engine and its transports.

A :class:`Peer` is what the engine needs of a client it talks to; a transport implements one per
client (the WebSocket :class:`~logsync.server.connection.Connection` is one; a pull-only HTTP
request, :class:`~logsync.server.pull.PullPeer`, is another). The engine calls only what is listed
here — it never reaches into a transport's session, socket or framing — and a transport never
runs a rule: it reports what the client did to the :class:`Host` (the node) and carries out what
the engine asks.

The calls, in the order a client's life brings them:

1. handshake: the transport calls :meth:`Host.authenticate`; the engine answers with
   :meth:`Peer.accept` (then :meth:`Peer.start_delivery`) or :meth:`Peer.refuse`;
2. actions: the transport calls :meth:`Host.receive_actions`; the engine answers each action with
   :meth:`Peer.send_after` (``logux/processed`` or an undo outside the log) or through the log,
   and acknowledges the batch with :meth:`Peer.synced_after` once all are answered; it calls
   :meth:`Peer.pause_reading` while too many wait (or the client does not read its answers);
3. delivery: :meth:`Peer.offer` for every appended entry that may concern the peer,
   :meth:`Peer.catch_up` when it must be served from the log, :meth:`Peer.replay_channel` for a
   resubscription's history; the peer decides with :meth:`Peer.should_deliver`;
4. the end: :meth:`Peer.close` (replaced, shutdown, a server error); the transport calls
   :meth:`Host.detach` when its socket is gone, and the peer reports ``closed``. A peer whose
   ``keeps_subscriptions`` is true (pull-only HTTP) leaves its channels' ``unsubscribe``
   callbacks unrun: its subscriptions persist beyond it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from logsync.engine.budget import Budget
from logsync.log import Entry, ReadResult
from logsync.metrics import Metrics
from logsync.protocol import ActionsReceived, ConnectRequested, ProtocolError
from logsync.settings import Settings

if TYPE_CHECKING:
    import asyncio

from logsync.app import Context, Filter, Outbox

T = TypeVar("T")


@dataclass
class Subscription:
    """A channel a peer receives, with one predicate per distinct subscribe filter."""

    from_added: int
    filters: dict[str, Filter | None] = field(default_factory=dict)
    # filter key → the ``logux/subscribe`` action it came from, kept only for a peer whose
    # subscriptions outlive it (``Peer.keeps_subscriptions``): they are saved and rebuilt from it
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def accepts(self, entry: Entry) -> bool:
        filters = self.filters.values()
        if None in filters:
            return True
        meta = entry.meta()
        return any(f is not None and f(entry.action, meta) for f in filters)


class Peer(Protocol):
    """One client as the engine sees it. Identity properties are valid once ``authenticated``."""

    remote: str | None
    cookie: dict[str, str]
    authenticated: bool
    closed: bool
    # channel → what it receives of it (the engine's state, kept with the peer it belongs to)
    subscriptions: dict[str, Subscription]
    # the client's `synced` value at connect: it has everything addressed to it up to here
    connect_synced: int
    # what this peer told other nodes when it took its client id, and whether that claim came
    # back through the broker (see Broker.claim)
    claim: str | None
    claim_seen: bool
    # Whether the client's subscriptions outlive this peer (a pull-only HTTP request: they are
    # stored per client, see Subscriptions.saved); then its leaving runs no channel `unsubscribe`.
    keeps_subscriptions: bool

    @property
    def client_id(self) -> str: ...

    @property
    def user_id(self) -> str | None: ...

    @property
    def node_id(self) -> str: ...

    @property
    def subprotocol(self) -> int | None: ...

    @property
    def live(self) -> bool:
        """Whether entries are pushed as they are appended (else it is served from the log)."""

    @property
    def buffered_bytes(self) -> int:
        """Bytes queued for the client and not yet sent."""

    def context(self) -> Context:
        """A fresh rule context for an action this client sent."""

    def accept(self, now: int, options: dict[str, Any], headers: dict[str, Any] | None) -> None:
        """Finish the handshake (``connected`` with ``options``; ``headers`` first)."""

    def refuse(self, error: ProtocolError) -> None:
        """Refuse the handshake (or report a protocol error) and close."""

    def start_delivery(self, synced: int, *, up_to_date: bool = False) -> None:
        """After :meth:`accept`: serve what was appended after ``synced``, then go live."""

    def offer(self, entry: Entry) -> None:
        """An appended entry that may concern this peer."""

    def should_deliver(self, entry: Entry) -> bool:
        """Whether this client receives ``entry`` (its own indexes, subscriptions, filters)."""

    def catch_up(self) -> None:
        """Serve this peer from the log from its cursor (entries may have been missed)."""

    def replay_channel(self, channel: str, after: int) -> None:
        """Send ``channel``'s history after ``after``, even below the cursor."""

    def topics(self) -> list[str]:
        """The broker topics this peer needs besides its channels."""

    def send_after(self, barrier: int, action: dict[str, Any], meta: dict[str, Any]) -> None:
        """Send an action outside the log once every entry up to ``barrier`` has gone out."""

    def synced_after(self, barrier: int, added: float) -> None:
        """Acknowledge the client's batch ``added`` after the answers held before it."""

    def pause_reading(self) -> None:
        """Read nothing more from the client until :meth:`resume_reading`."""

    def resume_reading(self) -> None:
        """Read from the client again."""

    async def wait_drained(self, limit: int) -> None:
        """Return once fewer than ``limit`` bytes are queued for the client (or it is gone)."""

    def debug(self, text: str) -> None:
        """A development-mode ``debug`` message to the client."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection (its queued output first)."""

    async def wait_closed(self) -> None:
        """Return once it is closed (or gave up)."""

    def closed_by_peer(self) -> None:
        """The transport is gone: stop delivery."""


class Host(Outbox, Protocol):
    """What a peer may ask of the engine (the node); rule contexts use it as their Outbox."""

    node_id: str
    settings: Settings
    metrics: Metrics
    budget: Budget  # what catch-up may hold over all peers (engine.budget)
    replay_slots: asyncio.Semaphore  # log chunks read at once (replay_concurrency)

    async def authenticate(self, peer: Peer, event: ConnectRequested) -> None:
        """The client asked to connect: admission, checks, ``auth``, then accept or refuse."""

    def receive_actions(self, peer: Peer, event: ActionsReceived, size: int = 0) -> None:
        """The client sent actions in a frame of ``size`` bytes."""

    def detach(self, peer: Peer) -> None:
        """The peer's transport is gone."""

    def live_changed(self, peer: Peer, live: bool) -> None:
        """The peer's delivery turned live, or stopped being live (catching up, closed): the
        count of sessions catching up is kept from these (``/metrics`` walks no peers)."""

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run a supervised background task."""

    async def read(
        self, indexes: list[str], after: int, limit: int, *, in_slot: bool = False
    ) -> ReadResult:
        """A chunk of the log for catch-up (at most ``replay_concurrency`` at once per node:
        it takes one of :attr:`replay_slots`, or the caller holds one: ``in_slot``)."""

    def store_failed(self, error: Exception) -> None:
        """The store did not answer: the node reports unhealthy and resyncs when it is back."""

    def undeliverable(self, entry: Entry) -> None:
        """The peer skipped ``entry``: it cannot be encoded (logged and counted once)."""
