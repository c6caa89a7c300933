"""One logsync node: the stages composed, its lifecycle (start, stop, supervision), its health.

Data flows one way through it: a transport's :class:`~logsync.engine.peer.Peer` reports a
handshake (:class:`~logsync.engine.handshake.Handshake`) or actions
(:class:`~logsync.engine.inbound.Inbound` → :class:`~logsync.engine.rules.Rules`, which appends
through the :class:`~logsync.log.writer.LogWriter`); the broker hands every appended entry back
to :meth:`ServerNode.route`, which offers it to the local peers the
:class:`~logsync.engine.registry.Registry` names. Each stage gets only what it needs.

``ServerNode(app, store, broker, settings)``, then :meth:`ServerNode.start`; a transport calls
:meth:`attach` for a new client, and the :class:`~logsync.engine.peer.Host` methods after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from logsync.app import App
from logsync.broker import Broker
from logsync.engine.admission import NODE_TICK_S, Admission
from logsync.engine.answers import Answers
from logsync.engine.budget import Budget, default_limit
from logsync.engine.handshake import Handshake
from logsync.engine.inbound import Inbound
from logsync.engine.load import Controller, LagMonitor, Limits, Sample
from logsync.engine.peer import Peer
from logsync.engine.recovery import Recovery
from logsync.engine.registry import Registry
from logsync.engine.rules import Rules
from logsync.engine.subscriptions import Subscriptions
from logsync.engine.wakeups import Wakeups
from logsync.log import Entry, LogStore, ReadResult, StoreUnavailable
from logsync.log.writer import LogWriter
from logsync.logfmt import shorten
from logsync.metrics import Metrics, Snapshot
from logsync.protocol import ActionsReceived, ConnectRequested
from logsync.protocol.clock import HybridClock
from logsync.settings import LIMITS, Settings

logger = logging.getLogger("logsync.node")
T = TypeVar("T")


class Queued(Protocol):
    """A transport with bytes queued for its socket (see :attr:`ServerNode.queued`)."""

    @property
    def buffered_bytes(self) -> int: ...


class ServerNode:
    """One logsync node; see the module docstring. It is the app's
    :class:`~logsync.app.Outbox` (``add``, ``subscribe``) and its peers'
    :class:`~logsync.engine.peer.Host`."""

    def __init__(
        self,
        app: App,
        store: LogStore,
        broker: Broker,
        settings: Settings,
        *,
        budget_fill: Callable[[], float] | None = None,
    ) -> None:
        """``budget_fill``: how full the catch-up budget is (0.0 to 1.0 and beyond), one of the
        signals admission follows; none: always 0.0."""
        self.app = app
        self.store = store
        self.broker = broker
        self.settings = settings
        self.node_id = "server:" + (settings.node_id or secrets.token_urlsafe(6))
        self.clock = HybridClock(self.node_id)
        self.metrics = metrics = Metrics()
        self.stopping = False
        self._running = asyncio.Event()
        self._store_ok = True
        self._tasks: set[asyncio.Task[Any]] = set()
        # ids of entries found undeliverable, reported once (bounded)
        self._undeliverable: set[str] = set()
        #: log chunks read at once (``replay_concurrency``): :meth:`read` takes one; catch-up
        #: takes it itself to charge the budget only once its read is next (``in_slot``)
        self.replay_slots = asyncio.Semaphore(settings.replay_concurrency)
        # what catch-up may hold over all peers; `fill` is a health signal (engine.budget)
        self.budget = Budget(settings.catch_up_budget_bytes or default_limit())
        self.budget_fill: Callable[[], float] = budget_fill or (lambda: self.budget.fill)
        self.admission = Admission(
            settings.handshake_rate,
            settings.handshake_burst,
            settings.handshake_queue,
            wait_max=settings.handshake_wait_max_ms / 1000,
            # the queue's drain is estimated with the controller's recovery (none when fixed)
            increase=settings.admission_increase if settings.admission_adaptive else 0.0,
            ceiling=settings.handshake_rate,
            concurrency=settings.handshake_concurrency,
            retry_min=settings.handshake_retry_min_ms / 1000,
            retry_max=settings.handshake_retry_max_ms / 1000,
            tick=NODE_TICK_S,
        )
        self.controller = Controller(
            Limits(
                ceiling=settings.handshake_rate,
                floor=min(settings.admission_floor, settings.handshake_rate),
                increase=settings.admission_increase,
                decrease=settings.admission_decrease,
                loop_lag_s=settings.admission_loop_lag_ms / 1000,
                store_queue=settings.admission_store_queue,
                budget_fill=settings.admission_budget_fill,
                adaptive=settings.admission_adaptive,
            ),
            time.monotonic(),
        )
        self.monitor = LagMonitor(metrics.loop_lag.observe, self._step)
        self.registry = registry = Registry()
        #: transports that may have bytes queued for their socket (``logsync_outbound_bytes``
        #: sums these): a transport adds itself when it queues bytes and removes itself when
        #: its socket took all of them; one whose socket drained later adds 0 meanwhile
        self.queued: set[Queued] = set()
        writer = LogWriter(store, broker, metrics)
        self.answers = answers = Answers(writer, registry, self.clock, settings, metrics)
        self.subscriptions = Subscriptions(
            app, registry, answers, writer, store, broker, settings, metrics, self.spawn
        )
        self.rules = Rules(
            app, answers, self.subscriptions, writer, store, self.clock, settings, metrics
        )
        self.inbound = Inbound(
            app, self.rules, answers, settings, metrics, self.spawn, self.store_failed
        )
        self.handshake = Handshake(
            app,
            self.node_id,
            registry,
            self.admission,
            broker,
            store,
            settings,
            metrics,
            self.store_failed,
            self._replace,
        )
        self.recovery = Recovery(store, self.rules, settings)
        self.wakeups = Wakeups(store, registry, self.node_id, settings, metrics, self.spawn)
        writer.observer = self.wakeups.appended
        self.handshake.on_accepted = self.wakeups.online
        app.node = self
        broker.on_entry(self.route)
        broker.on_claim(self.handshake.claimed)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Ready the node: attach the app, connect the broker, process what a crash left
        ``waiting``, start trimming."""
        self.app.node = self
        self._running.set()
        self.broker.on_resync(self.resync)
        await self.broker.start()
        self.store.timing = self.metrics.store_timing
        await self.recovery.recover()
        await self.wakeups.start()
        self.monitor.start()
        if self.settings.trim_interval_ms > 0:
            self.spawn(self.recovery.trim_periodically(self._running))

    async def stop(self) -> None:
        """Close every peer and wait for queued actions to finish."""
        self.stopping = True
        self._running.clear()
        peers = list(self.registry.peers)
        for peer in peers:
            peer.close(1001, "server shutdown")
        await asyncio.gather(*(peer.wait_closed() for peer in peers))
        await self.inbound.wait_idle(timeout=10)
        await self.wakeups.stop()
        self.monitor.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.broker.close()
        await self.store.close()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run a background task that is kept referenced and whose failure is logged."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task failed", exc_info=task.exception())

    def sample(self, loop_lag_s: float | None = None) -> Sample:
        """The node's health signals now (admission follows them)."""
        lag = self.monitor.lag if loop_lag_s is None else loop_lag_s
        return Sample(lag, self.store.queue_depth, self.budget_fill())

    def _step(self, now: float, loop_lag_s: float) -> None:
        """Each tick of the lag monitor: step the admitted handshake rate."""
        self.admission.set_rate(self.controller.update(now, self.sample(loop_lag_s)))

    # -- health --------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Whether this node can accept writes: its store and broker answer."""
        return self._store_ok and self.broker.healthy and not self.stopping

    def store_failed(self, error: Exception) -> None:
        """The store stopped answering: report unhealthy until a probe succeeds."""
        if self._store_ok:
            logger.error("log store unavailable: %s", error)
            self._store_ok = False
            self.spawn(self._probe_store())

    async def _probe_store(self) -> None:
        delay = 0.05
        while not self.stopping:
            await asyncio.sleep(delay)
            try:
                await self.store.head()
            except StoreUnavailable:
                delay = min(delay * 2, 2.0)
                continue
            logger.warning("log store is back")
            self._store_ok = True
            self.resync()
            return

    def resync(self) -> None:
        """Entries may have been published without reaching this node: serve every peer from
        the log, from its own cursor (the log is the buffer)."""
        for peer in self.registry.peers:
            if peer.authenticated and not peer.closed:
                peer.catch_up()

    def snapshot(self) -> Snapshot:
        """The node's gauges now, for ``/metrics``. Pull-only HTTP requests (peers whose
        subscriptions outlive them) are not connections nor sessions catching up: they have
        their own figures (``logsync_pull_requests_total``, ``logsync_pull_waiting``).

        No walk over every peer (a scrape of 10,000 connections took 31 ms of the loop): the
        counts are kept by the registry as peers change, and the queued bytes are summed over
        the transports in :attr:`queued`, the few with bytes queued."""
        registry = self.registry
        admission, settings, budget = self.admission, self.settings, self.budget
        return Snapshot(
            connections=registry.connections,
            sessions=registry.sessions,
            catching_up=registry.sessions - registry.live,
            outbound_bytes=sum(t.buffered_bytes for t in self.queued),
            inbound_actions=self.inbound.unanswered(),
            handshakes_waiting=admission.waiting,
            handshakes_in_progress=admission.in_progress,
            admission_rate=admission.rate,
            admission_state=self.controller.state.value,
            admission_decreases=dict(self.controller.decreases),
            loop_lag_s=self.monitor.lag,
            store_queue=self.store.queue_depth,
            budget_fill=self.budget_fill(),
            handshakes={
                "admitted": admission.admitted,
                "deferred": admission.deferred,
                "refused": admission.refused,
            },
            healthy=self.healthy,
            limits={
                **{name: getattr(settings, name) for name in LIMITS},
                "catch_up_budget_bytes": budget.limit,
            },
            budget_used=budget.used,
            budget_peak=budget.peak,
            budget_waiting=budget.waiting,
            budget_waits=budget.waits,
        )

    # -- peers (the Host of logsync.engine.peer) -----------------------------------------------

    def attach(self, peer: Peer) -> None:
        """A transport opened a new client."""
        self.registry.attach(peer)

    def live_changed(self, peer: Peer, live: bool) -> None:
        self.registry.live_changed(peer, live)

    def detach(self, peer: Peer) -> None:
        """The transport closed (or the peer was replaced): forget it and end its subscriptions,
        once — a replaced zombie is detached again when its socket closes."""
        if peer not in self.registry.peers:
            return
        peer.closed_by_peer()
        self.inbound.forget(peer)
        self.registry.forget(peer)
        if not peer.authenticated:
            return
        self.spawn(self.broker.unlisten([*peer.topics(), f"claim:{peer.client_id}"]))
        self.wakeups.offline(peer)
        self.subscriptions.end(peer)

    def _replace(self, zombie: Peer) -> None:
        """A newer connection holds ``zombie``'s client id: close the old one, as Logux does."""
        zombie.close(1000, "zombie")
        self.detach(zombie)

    async def authenticate(self, peer: Peer, event: ConnectRequested) -> None:
        await self.handshake.authenticate(peer, event)

    def receive_actions(self, peer: Peer, event: ActionsReceived, size: int = 0) -> None:
        self.inbound.receive(peer, event, size)

    async def read(
        self, indexes: list[str], after: int, limit: int, *, in_slot: bool = False
    ) -> ReadResult:
        slot: contextlib.AbstractAsyncContextManager[Any] = (
            contextlib.nullcontext() if in_slot else self.replay_slots
        )
        async with slot:
            with self.metrics.timed("read"):
                return await self.store.read(indexes, after=after, limit=limit)

    def undeliverable(self, entry: Entry) -> None:
        if entry.id in self._undeliverable:
            return
        if len(self._undeliverable) >= 1000:
            self._undeliverable.clear()
        self._undeliverable.add(entry.id)
        self.metrics.undeliverable += 1
        logger.error(
            "skipping entry %d (%s): it cannot be encoded for delivery",
            entry.added,
            shorten(entry.id, self.settings.log_value_chars),
            extra={"reason": "undeliverable"},
        )

    def route(self, entry: Entry) -> None:
        """Hand a published entry to each local peer it may concern (once each)."""
        for peer in self.registry.route(entry):
            peer.offer(entry)

    # -- the app's Outbox ----------------------------------------------------------------------

    async def add(self, action: dict[str, Any], **route: Any) -> Entry:
        """Append a server action (id from the hybrid clock) and deliver it to its route: the
        keywords of :meth:`Answers.add` (``channels``, ``users``, ``clients``, ``nodes``,
        ``exclude_clients``, ``route``, ``meta``, ``status``)."""
        return await self.answers.add(action, **route)

    async def subscribe(self, node_id: str, channel: str) -> bool:
        """Subscribe a connected node to ``channel`` from the server side."""
        return await self.subscriptions.subscribe_node(node_id, channel)

    async def recover(self) -> int:
        """Process again what a crash left ``waiting`` (see :class:`Recovery`)."""
        return await self.recovery.recover()

    async def trim(self) -> int:
        """Apply the retention settings once (see :class:`Recovery`)."""
        return await self.recovery.trim()
