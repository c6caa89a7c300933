"""Wake-ups of pull-only clients: who registered to be woken (Web Push subscriptions, webhooks),
and, for every entry this node appends, which of them to tickle — those whose indexes the entry
lands in (``client:``, ``node:``, ``user:``, and ``channel:`` through their pull subscriptions),
never its origin or excluded clients, not while they are connected on any node, at most once per
``wakeup_interval_ms`` across all nodes — and, when an entry was coalesced away, once more at the
interval's end (the trailing edge: an entry that came after the last tickle is never left
without one). Sending runs in a bounded queue beside the log
(:class:`~logsync.wakeup.Dispatcher`): a slow push service never slows an append.

Everything shared lives in the store's records, so it survives restarts and every node sees it:

=================  ====================  ==================================================
kind               key                   value
=================  ====================  ==================================================
``wakeup``         ``client\\0id``        a :class:`~logsync.wakeup.Registration`
``wake-user``      ``user\\0client``      (empty): the user's clients with registrations
``wake-channel``   ``channel\\0client``   (empty): registered clients pulling the channel
``wake-channels``  ``client``            the channels indexed for the client (JSON list)
``online``         ``client``            the node it is connected to (``wakeup_presence_ms``)
``wake-claim``     ``client``            the node that woke it, and when (``wakeup_interval_ms``)
``wake-backoff``   registration id       (empty): its endpoint said 429/503 (Retry-After)
``wake-active``    ``""``                someone registered once: nodes start tracking
=================  ====================  ==================================================

Until the first registration of a deployment, a node keeps no presence and looks at no entry
(it polls ``wake-active`` each second), so wake-ups cost nothing where they are not used.

The registrations and their indexes are :attr:`Wakeups.book`'s
(:class:`~logsync.engine.wakeup_registrations.WakeupRegistrations`: the HTTP endpoints call it).
The node calls :meth:`Wakeups.start` / :meth:`stop`, :meth:`appended` for each created entry
(the :class:`~logsync.log.writer.LogWriter`'s observer), :meth:`online` / :meth:`offline` as
peers come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from logsync.engine.peer import Peer
from logsync.engine.registry import Registry
from logsync.engine.wakeup_registrations import ACTIVE, WakeupRegistrations
from logsync.log import Entry, LogStore, StoreUnavailable
from logsync.logfmt import shorten
from logsync.metrics import Metrics
from logsync.settings import Settings
from logsync.wakeup import Dispatcher, Outcome, Registration, VapidKey, WebhookSender, WebPushSender
from logsync.wallclock import now_ms

logger = logging.getLogger("logsync.wakeup")
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]

ONLINE = "online"
CLAIMS = "wake-claim"
BACKOFF = "wake-backoff"

# How often a node that has seen no registration yet looks again.
ACTIVE_POLL_S = 1.0
# Entries decided on in one go: their indexes are looked up once per batch.
DECIDE_BATCH = 256
# Indexes looked up, and clients decided on, at once.
DECIDE_CHUNK = 64
# Presence records written at once when refreshing.
PRESENCE_CHUNK = 64


@dataclass(slots=True)
class _Job:
    registration: Registration
    client_id: str


class Wakeups:
    """Registrations, presence, the wake-up decision and its sending; see the module
    docstring."""

    def __init__(
        self,
        store: LogStore,
        registry: Registry,
        node_id: str,
        settings: Settings,
        metrics: Metrics,
        spawn: Spawn,
    ) -> None:
        self.store = store
        self.registry = registry
        self.node_id = node_id
        self.settings = settings
        self.metrics = metrics
        self.spawn = spawn
        # Raises ValueError (one line) for a key that cannot be read: the node does not start.
        self.vapid = (
            VapidKey.load(settings.vapid_private_key, settings.vapid_subject)
            if settings.vapid_private_key
            else None
        )
        self.book = WakeupRegistrations(
            store, settings, web_push=self.vapid is not None, on_registered=self._activate
        )
        self.active = False
        # set once active (a registration seen): the node keeps presence and decides
        self.activated = asyncio.Event()
        self._entries: asyncio.Queue[Entry] | None = None
        self._dispatcher: Dispatcher[_Job] = Dispatcher(
            self._send, settings.wakeup_queue, settings.wakeup_concurrency
        )
        self._session: aiohttp.ClientSession | None = None
        self._webpush: WebPushSender | None = None
        self._webhook: WebhookSender | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._updates: set[asyncio.Task[Any]] = set()
        # clients whose wake-up was coalesced away: client → (the channels it came through, or
        # None for its own indexes; when), retried once the interval's claim has expired
        self._deferred: dict[str, tuple[set[str] | None, int]] = {}
        self._retries: list[asyncio.TimerHandle] = []

    @property
    def public_key(self) -> str | None:
        """The VAPID ``applicationServerKey`` (base64url), None when Web Push is off."""
        return None if self.vapid is None else self.vapid.public_key

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP client session, start the decision and sending tasks."""
        settings = self.settings
        self._entries = asyncio.Queue(maxsize=settings.wakeup_decide_queue)
        connector = aiohttp.TCPConnector(limit=settings.wakeup_concurrency)
        self._session = aiohttp.ClientSession(connector=connector)
        timeout_s = settings.wakeup_timeout_ms / 1000
        if self.vapid is not None:
            self._webpush = WebPushSender(
                self._session, self.vapid, settings.wakeup_ttl_s, timeout_s
            )
        self._webhook = WebhookSender(self._session, timeout_s)
        self._dispatcher.start()
        self._tasks = [
            self.spawn(self._decide_loop()),
            self.spawn(self._presence_loop()),
        ]

    async def stop(self) -> None:
        """Stop deciding and sending (queued wake-ups are dropped), close the session."""
        self.active = False
        for handle in self._retries:
            handle.cancel()
        self._deferred.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._dispatcher.stop()
        if self._session is not None:
            await self._session.close()

    async def idle(self) -> None:
        """Return once the presence and index updates started so far are done, and every entry
        handed over so far is decided on and its wake-ups sent."""
        while self._updates:
            await asyncio.gather(*self._updates, return_exceptions=True)
        if self._entries is not None:
            await self._entries.join()
        await self._dispatcher.idle()

    def _later(self, update: Coroutine[Any, Any, Any]) -> None:
        """Run a presence or index update in the background (kept for :meth:`idle`)."""
        task = self.spawn(update)
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    # -- presence --------------------------------------------------------------------------------

    def online(self, peer: Peer) -> None:
        """``peer`` was accepted: its client is online for every node (no wake-ups)."""
        if self.active:
            self._later(self._mark_online([peer.client_id]))

    def offline(self, peer: Peer) -> None:
        """``peer``'s transport is gone: its client is offline, unless another peer (here, or
        on the node that now has the record) holds it. A pull request's peer leaves with the
        client's saved subscriptions: the channel index follows them."""
        if self.active and peer.authenticated:
            self._later(self._mark_offline(peer))
            if getattr(peer, "keeps_subscriptions", False):
                channels = list(peer.subscriptions)
                self._later(self.book.pull_subscriptions_changed(peer.client_id, channels))

    async def _mark_online(self, clients: list[str]) -> None:
        value, ttl = self.node_id.encode(), self.settings.wakeup_presence_ms
        with contextlib.suppress(StoreUnavailable):  # marked again at the next refresh
            await asyncio.gather(
                *(self.store.put_record(ONLINE, client, value, ttl_ms=ttl) for client in clients)
            )

    async def _mark_offline(self, peer: Peer) -> None:
        client = peer.client_id
        try:
            if await self.store.get_record(ONLINE, client) != self.node_id.encode():
                return  # a newer connection on another node holds it
            current = self.registry.by_client.get(client)
            if current is not None and current is not peer:
                return  # replaced here by a newer peer
            await self.store.delete_record(ONLINE, client)
        except StoreUnavailable:
            pass  # the record expires on its own

    def _activate(self) -> None:
        """Wake-ups are in use: track presence and look at entries from now on."""
        if not self.active:
            self.active = True
            self.activated.set()
            self._later(self._refresh_presence())

    async def _refresh_presence(self) -> None:
        clients = [
            client
            for client, peer in self.registry.by_client.items()
            if peer.authenticated and not peer.closed
        ]
        for start in range(0, len(clients), PRESENCE_CHUNK):
            await self._mark_online(clients[start : start + PRESENCE_CHUNK])

    async def _presence_loop(self) -> None:
        while not self.active:
            try:
                if await self.store.get_record(ACTIVE, "") is not None:
                    self._activate()
                    break
            except StoreUnavailable:
                pass
            # or activated here meanwhile, by a registration
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.activated.wait(), ACTIVE_POLL_S)
        while True:
            await asyncio.sleep(self.settings.wakeup_presence_ms / 3000)
            await self._refresh_presence()

    # -- the decision (the log's observer) -----------------------------------------------------

    def appended(self, entry: Entry) -> None:
        """This node created ``entry``: decide on its wake-ups later, beside the log (dropped
        and counted when too many wait). Protocol answers (``logux/processed``, ``logux/undo``…)
        wake nobody: they answer the client's own request, which a pull client gets in its
        response — a wake-up for one would only spend the client's interval."""
        if not self.active or self._entries is None:
            return
        kind = entry.action.get("type")
        if isinstance(kind, str) and kind.startswith("logux/"):
            return
        try:
            self._entries.put_nowait(entry)
        except asyncio.QueueFull:
            self.metrics.wakeup("any", "dropped")

    async def _decide_loop(self) -> None:
        assert self._entries is not None
        entries = self._entries
        while True:
            batch = [await entries.get()]
            while len(batch) < DECIDE_BATCH and not entries.empty():
                batch.append(entries.get_nowait())
            try:
                await self._decide(batch)
            except StoreUnavailable as error:
                logger.warning(
                    "wake-ups of %d entries skipped: store unavailable: %s", len(batch), error
                )
            except Exception:
                logger.exception("wake-up decision failed")
            finally:
                for _ in batch:
                    entries.task_done()

    async def _decide(self, batch: list[Entry]) -> None:
        # index → [(client, the channel it came through, None for its own indexes)], looked up
        # DECIDE_CHUNK at a time (a store answers concurrent calls together)
        indexes = list(dict.fromkeys(index for entry in batch for index in entry.indexes))
        found: dict[str, list[tuple[str, str | None]]] = {}
        for start in range(0, len(indexes), DECIDE_CHUNK):
            chunk = indexes[start : start + DECIDE_CHUNK]
            for index, clients in zip(
                chunk, await asyncio.gather(*map(self.book.clients_of, chunk)), strict=True
            ):
                found[index] = clients
        # client → the channels it came through, None once one of its own indexes matched
        reached: dict[str, set[str] | None] = {}
        # client → how many of the entries concern it (all but one are coalesced)
        hits: dict[str, int] = {}
        for entry in batch:
            skip = {entry.origin_client, *entry.exclude_clients}
            concerned: set[str] = set()
            for index in entry.indexes:
                for client, channel in found[index]:
                    if client in skip:
                        continue
                    concerned.add(client)
                    if channel is None:
                        reached[client] = None
                    elif client not in reached:
                        reached[client] = {channel}
                    else:
                        via = reached[client]
                        if via is not None:
                            via.add(channel)
            for client in concerned:
                hits[client] = hits.get(client, 0) + 1
        woken = list(reached.items())
        for start in range(0, len(woken), DECIDE_CHUNK):
            await asyncio.gather(
                *(
                    self._wake(client, via, hits[client])
                    for client, via in woken[start : start + DECIDE_CHUNK]
                )
            )

    async def _wake(
        self, client: str, via: set[str] | None, entries: int, since: int | None = None
    ) -> None:
        """Wake ``client`` (concerned by ``entries`` of the batch, decided on at ``since``)
        unless connected, coalesced, or not (any more) concerned."""
        since = now_ms() if since is None else since
        peer = self.registry.by_client.get(client)
        if peer is not None and peer.authenticated and not peer.closed:
            return
        store = self.store
        registrations = await self.book.registrations(client)
        if not registrations:
            return
        if await store.get_record(ONLINE, client) is not None:
            return
        if via is not None and not await self.book.still_pulls(client, via):
            return
        claim = f"{self.node_id} {now_ms()}".encode()
        claimed = await store.add_record(
            CLAIMS, client, claim, ttl_ms=self.settings.wakeup_interval_ms
        )
        coalesced = entries if not claimed else entries - 1
        for registration in registrations:
            if coalesced > 0:
                self.metrics.wakeup(registration.kind, "coalesced", coalesced)
            if not claimed:
                continue
            if await store.get_record(BACKOFF, registration.id) is not None:
                self.metrics.wakeup(registration.kind, "backoff")
            elif not self._dispatcher.offer(_Job(registration, client)):
                self.metrics.wakeup(registration.kind, "dropped")
        if not claimed:
            await self._defer(client, via, since)

    async def _defer(self, client: str, via: set[str] | None, since: int) -> None:
        """A wake-up coalesced away: try again when the interval's claim has expired — unless
        the claim in the way was made after ``since`` (that tickle came after the entries, so it
        covers them). One retry per client per node at a time, at most ``wakeup_decide_queue``."""
        claim = await self.store.get_record(CLAIMS, client)
        if claim is not None and _claimed_at(claim) >= since:
            return
        deferred = self._deferred.get(client)
        if deferred is not None:
            channels, first = deferred
            merged = None if channels is None or via is None else channels | via
            self._deferred[client] = (merged, min(first, since))
            return
        if len(self._deferred) >= self.settings.wakeup_decide_queue:
            self.metrics.wakeup("any", "dropped")
            return
        self._deferred[client] = (via, since)
        loop = asyncio.get_running_loop()
        self._retries = [h for h in self._retries if not h.cancelled() and h.when() > loop.time()]
        delay = self.settings.wakeup_interval_ms / 1000
        self._retries.append(loop.call_later(delay, self._retry, client))

    def _retry(self, client: str) -> None:
        deferred = self._deferred.pop(client, None)
        if deferred is not None and self.active:
            via, since = deferred
            self._later(self._wake(client, via, 0, since))

    # -- sending -----------------------------------------------------------------------------------

    async def _send(self, job: _Job) -> None:
        registration = job.registration
        if registration.kind == "webpush":
            if self._webpush is None:
                outcome = Outcome("failed", detail="Web Push is off (no vapid_private_key)")
            else:
                outcome = await self._webpush.send(registration.subscription_info())
        else:
            assert self._webhook is not None
            outcome = await self._webhook.send(
                registration.endpoint, registration.node, job.client_id
            )
        self.metrics.wakeup(registration.kind, outcome.result)
        chars = self.settings.log_value_chars
        endpoint = shorten(registration.endpoint, chars)
        if outcome.result == "gone":
            logger.info("wake-up endpoint gone (%s), removed: %s", outcome.status, endpoint)
            await self.book.unregister(job.client_id, registration.id)
        elif outcome.result == "backoff":
            retry = outcome.retry_after_s
            delay_ms = self.settings.wakeup_interval_ms if retry is None else int(retry * 1000)
            delay_ms = max(1, min(delay_ms, self.settings.wakeup_backoff_max_ms))
            await self.store.put_record(BACKOFF, registration.id, b"", ttl_ms=delay_ms)
            logger.info(
                "wake-up endpoint busy (%s), backing off %d ms: %s",
                outcome.status,
                delay_ms,
                endpoint,
            )
        elif outcome.result == "failed":
            logger.warning(
                "wake-up %s failed: %s: %s",
                registration.kind,
                endpoint,
                shorten(outcome.detail, chars),
            )


def _claimed_at(claim: bytes) -> int:
    """When a ``wake-claim`` was made (ms; 0 when its value has no time)."""
    _, _, at = claim.decode(errors="replace").rpartition(" ")
    return int(at) if at.isdigit() else 0
