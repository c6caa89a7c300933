"""The server node: runs the app's rules on what sessions report, appends to the log, and routes
published entries to the sessions that should receive them.

Flow: a :class:`~logsync.connection.Connection` reports a handshake (:meth:`ServerNode.authenticate`)
or actions (:meth:`ServerNode.receive_actions`). Each action waits in its client's queue and goes
through dedupe → identity and meta checks → type or channel rules → append → process, exactly as
@logux/server orders them. Appended entries go to the broker; :meth:`ServerNode.route` hands each to
the local connections it may concern, which decide with their own delivery rules.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
import traceback
from collections import defaultdict, deque
from collections.abc import Awaitable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from logsync.app import (
    App,
    AuthContext,
    ChannelRule,
    Context,
    Route,
    TypeRule,
    Undo,
    resolve,
)
from logsync.broker import Broker
from logsync.connection import Connection, Subscription, now_ms
from logsync.log import (
    ERROR,
    PROCESSED,
    UNKNOWN,
    WAITING,
    Entry,
    LogStore,
    NewEntry,
    StoreUnavailable,
    encodes,
)
from logsync.logfmt import shorten
from logsync.metrics import Metrics, Snapshot
from logsync.protocol import ActionsReceived, ConnectRequested, ProtocolError
from logsync.protocol.clock import HybridClock
from logsync.protocol.ids import parse_node_id
from logsync.protocol.messages import is_number
from logsync.server.flow import Admission, Refused
from logsync.settings import LIMITS, Settings

logger = logging.getLogger("logsync.node")
T = TypeVar("T")

ALLOWED_META = frozenset({"id", "time", "subprotocol"})
# How often the event loop's lag is sampled (logsync_loop_lag_seconds).
LAG_INTERVAL_S = 0.05


@dataclass
class _Batch:
    """One client `sync` message: answered with `synced` once every action in it is answered
    (processed or undone)."""

    added: float
    remaining: int
    # the frame's bytes, counted against the connection's inbound bound until `synced`
    size: int = 0
    # the highest log position its actions' answers were written at (a logged undo): its
    # `synced` waits until the connection has sent that far
    barrier: int = 0


@dataclass
class _Job:
    """One received action on its way through the rules."""

    conn: Connection
    action: dict[str, Any]
    meta: dict[str, Any]
    batch: _Batch
    # what `logsync_action_stage_seconds` calls its type (bounded: a rule's name, not any string)
    kind: str = ""
    # perf_counter() when the frame was handed to the node (stage timings)
    received: float = 0.0
    accepted: bool = False
    appended: bool = False
    # appended, then the store failed before the answer: leave it unacknowledged, the client resends
    stranded: bool = False
    # processed; its status write and answer finish in this task while the queue moves on
    answering: asyncio.Task[None] | None = None
    # refused at the door (reason, details): undone in its turn, never deduped nor appended
    refusal: tuple[str, str | None] | None = None
    # the rule context its handling runs with (what it wrote: `ctx.last_added`)
    ctx: Context | None = None


@dataclass
class _ClientQueue:
    """A client's FIFO of actions for one queue name; a worker drains it one action at a time."""

    jobs: deque[_Job] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


class ServerNode:
    """One logsync node. Create with an app, a store and a broker; :meth:`start`, then attach
    connections from a transport (see :mod:`logsync.server.ws`)."""

    def __init__(self, app: App, store: LogStore, broker: Broker, settings: Settings) -> None:
        self.app = app
        self.store = store
        self.broker = broker
        self.settings = settings
        self.node_id = "server:" + (settings.node_id or secrets.token_urlsafe(6))
        self.clock = HybridClock(self.node_id)
        self.connections: set[Connection] = set()
        self.by_client: dict[str, Connection] = {}
        self.by_user: dict[str, set[Connection]] = defaultdict(set)
        self.subscribers: dict[str, set[Connection]] = defaultdict(set)
        self._queues: dict[str, _ClientQueue] = {}
        # action id → the job handling it (a resend on the same connection waits for that one)
        self._in_flight: dict[str, _Job] = {}
        # `_finish` tasks: status writes and answers of processed actions (stop waits for them)
        self._answering: set[asyncio.Task[None]] = set()
        self._batches: dict[Connection, deque[_Batch]] = defaultdict(deque)
        self._auth_failures: dict[str, deque[float]] = defaultdict(deque)
        # ids of entries found undeliverable, reported once (bounded)
        self._undeliverable: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self._store_ok = True
        self.metrics = Metrics()
        self.admission = Admission(
            settings.handshake_rate, settings.handshake_burst, settings.handshake_queue
        )
        self.replay_slots = asyncio.Semaphore(settings.replay_concurrency)
        app.node = self
        broker.on_entry(self.route)
        broker.on_claim(self._claimed)
        self._claims = itertools.count()

    async def start(self) -> None:
        """Ready the node: attach the app, connect the broker, process what a crash left
        ``waiting``, start trimming."""
        self.app.node = self
        self.broker.on_resync(self.resync)
        await self.broker.start()
        self.store.timing = self.metrics.store_timing
        await self.recover()
        self.spawn(self._watch_loop())
        if self.settings.trim_interval_ms > 0:
            self.spawn(self._trim_periodically())

    def resync(self) -> None:
        """Entries may have been published without reaching this node: serve every session from
        the log, from its own cursor (the log is the buffer)."""
        for conn in self.connections:
            if conn.authenticated and not conn.closed:
                conn.catch_up()

    def snapshot(self) -> Snapshot:
        """The node's gauges now, for ``/metrics``."""
        authenticated = [c for c in self.connections if c.authenticated]
        admission, settings = self.admission, self.settings
        return Snapshot(
            connections=len(self.connections),
            sessions=len(authenticated),
            catching_up=sum(1 for c in authenticated if not c.live),
            outbound_bytes=sum(c.transport.buffered_bytes for c in self.connections),
            inbound_actions=sum(c.inbound_actions for c in self.connections),
            handshakes_waiting=admission.waiting,
            handshakes={
                "admitted": admission.admitted,
                "deferred": admission.deferred,
                "refused": admission.refused,
            },
            healthy=self.healthy,
            limits={name: getattr(settings, name) for name in LIMITS},
        )

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

    async def recover(self) -> int:
        """Process again the actions that were appended but whose ``process`` never finished
        (the node died in between): append exactly once, ``process`` at least once."""
        count = 0
        while pending := await self.store.waiting(100):
            for entry in pending:
                await self._reprocess(entry)
                count += 1
        if count:
            logger.warning("processed %d actions a previous run left waiting", count)
        return count

    async def _reprocess(self, entry: Entry) -> None:
        node = parse_node_id(entry.id)
        ctx = Context(
            node=self,
            user_id=node.user_id,
            client_id=node.client_id,
            node_id=node.node_id,
            subprotocol=entry.subprotocol,
            headers={},
        )
        meta = dict(entry.meta())
        rule = (
            None
            if entry.action["type"].startswith("logux/")
            else self.app.find_type(entry.action["type"])
        )
        if rule is None or rule.process is None:
            # subscriptions ended with their connection; nothing else has work left
            await self.store.set_status(entry.id, PROCESSED)
            await self._send_processed(ctx.client_id, entry.id, 0)
            return
        try:
            payload = rule.model.model_validate(entry.action) if rule.model else entry.action
            await resolve(rule.process(ctx, payload, meta))
        except Exception as error:
            await self.store.set_status(entry.id, ERROR)
            logger.error("recovered action %s failed", entry.id, exc_info=error)
            reason = error.reason if isinstance(error, Undo) else "error"
            route = _route_of(entry)
            await self.undo(ctx, entry.action, meta, reason, route=route)
        else:
            await self.store.set_status(entry.id, PROCESSED)
            await self._send_processed(ctx.client_id, entry.id, 0)

    async def _watch_loop(self) -> None:
        """Sample how late the event loop runs a timer (every callback waits that long)."""
        loop = asyncio.get_running_loop()
        while not self.stopping:
            due = loop.time() + LAG_INTERVAL_S
            await asyncio.sleep(LAG_INTERVAL_S)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - due))

    async def _trim_periodically(self) -> None:
        interval = self.settings.trim_interval_ms / 1000
        while not self.stopping:
            await asyncio.sleep(interval)
            try:
                await self.trim()
            except Exception:
                logger.exception("trimming the log failed")

    async def trim(self) -> int:
        """Apply the retention settings once: channel history by age and count, other indexes
        by age, dedupe ids by their own window."""
        settings, now = self.settings, now_ms()
        age = settings.history_max_age_ms
        removed = await self.store.trim(
            index_prefix="channel:",
            before_time_ms=now - age if age else None,
            keep_last=settings.history_keep_last or None,
        )
        if age:
            removed += await self.store.trim(before_time_ms=now - age)
        if settings.id_retention_ms:
            removed += await self.store.forget_ids(now - settings.id_retention_ms)
        return removed

    async def stop(self) -> None:
        """Close every connection and wait for queued actions to finish."""
        self.stopping = True
        connections = list(self.connections)
        for conn in connections:
            conn.transport.close(1001, "server shutdown")
        await asyncio.gather(*(conn.transport.wait_closed() for conn in connections))
        workers = [q.worker for q in self._queues.values() if q.worker is not None]
        if workers:
            await asyncio.wait(workers, timeout=10)
        if self._answering:
            await asyncio.wait(list(self._answering), timeout=10)
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

    # -- connections ---------------------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        self.connections.add(conn)

    def _replace(self, zombie: Connection) -> None:
        """A newer connection holds ``zombie``'s client id: close the old one, as Logux does."""
        zombie.transport.close(1000, "zombie")
        self.detach(zombie)

    def _claimed(self, client_id: str, owner: str) -> None:
        """A node (maybe this one) says the connection ``owner`` holds ``client_id``.

        Claims reach every node in the one order Redis published them, so the last claim wins
        everywhere: a connection whose own claim has come back is older than any claim after
        it and is closed; one whose claim has not come back yet is the newer one and stays."""
        conn = self.by_client.get(client_id)
        if conn is None or conn.claim is None:
            return
        if owner == conn.claim:
            conn.claim_seen = True
        elif conn.claim_seen:
            self._replace(conn)

    def detach(self, conn: Connection) -> None:
        """The socket closed (or the connection was replaced): forget the connection and end its
        subscriptions, once — a replaced zombie is detached again when its socket closes."""
        if conn not in self.connections:
            return
        conn.closed_by_peer()
        self.connections.discard(conn)
        self._batches.pop(conn, None)
        if not conn.authenticated:
            return
        if self.by_client.get(conn.client_id) is conn:
            del self.by_client[conn.client_id]
        if conn.user_id is not None:
            self.by_user[conn.user_id].discard(conn)
            if not self.by_user[conn.user_id]:
                del self.by_user[conn.user_id]
        self.spawn(self.broker.unlisten([*conn.topics(), f"claim:{conn.client_id}"]))
        for channel in list(conn.subscriptions):
            self._drop_subscriber(conn, channel)
            found = self.app.find_channel(channel)
            if found is not None and found[0].unsubscribe is not None:
                ctx = conn.context()
                ctx.params = found[1]
                action = {"type": "logux/unsubscribe", "channel": channel}
                self.spawn(self._call_quietly(found[0].unsubscribe, ctx, action, {}))
        conn.subscriptions.clear()

    async def authenticate(self, conn: Connection, event: ConnectRequested) -> None:
        """Wait for admission; check subprotocol, reserved ids, brute force and the app's
        ``auth``; then accept."""
        try:
            await self.admission.admit()
        except Refused as refused:
            conn.transport.close(1013, f"try again later ({refused})")
            return
        if conn.closed:
            return
        node = event.node
        used = event.subprotocol or 0
        if used < self.app.min_subprotocol:
            conn.error(
                ProtocolError(
                    "wrong-subprotocol", {"supported": self.app.min_subprotocol, "used": used}
                )
            )
            return
        # Brute-force lock: `bruteforce_failures` refused credentials from one address within
        # `bruteforce_window_ms` refuse it until the oldest of them leaves the window. Only real
        # failures count: an attempt refused because of the lock does not extend it.
        settings = self.settings
        ip = conn.remote or ""
        failures = self._auth_failures[ip]
        now = time.monotonic()
        while failures and failures[0] < now - settings.bruteforce_window_ms / 1000:
            failures.popleft()
        locked = len(failures) >= settings.bruteforce_failures
        allowed = False
        if node.user_id != "server" and node.node_id != "server" and not locked:
            allowed = await self._call_auth(conn, event)
        if not allowed and not locked:
            failures.append(now)
        if not failures:
            self._auth_failures.pop(ip, None)
        if conn.closed:
            return
        if not allowed:
            self.metrics.auth_refused += 1
            conn.error(ProtocolError("wrong-credentials"))
            return
        await self._accept(conn, event)

    async def _call_auth(self, conn: Connection, event: ConnectRequested) -> bool:
        if self.app.authenticator is None:
            logger.warning("the app has no auth rule: every client is refused")
            return False
        ctx = AuthContext(
            user_id=event.node.user_id,
            client_id=event.node.client_id,
            node_id=event.node.node_id,
            token=event.token,
            headers=event.headers,
            cookie=conn.cookie,
            subprotocol=event.subprotocol,
            remote=conn.remote,
        )
        try:
            return bool(await resolve(self.app.authenticator(ctx)))
        except Exception:
            logger.exception("auth failed with an error")
            return False

    async def _accept(self, conn: Connection, event: ConnectRequested) -> None:
        # Registered before the head is read: whatever is appended after that read is routed to
        # this connection, so a client that already has the head can go live without a read.
        conn.authenticated = True
        await self.broker.listen([*conn.topics(), f"claim:{conn.client_id}"])
        if conn.closed:
            return
        zombie = self.by_client.get(conn.client_id)
        if zombie is not None and zombie is not conn:
            self._replace(zombie)
        self.by_client[conn.client_id] = conn
        # On other nodes, an older connection of this client is closed the same way.
        conn.claim = f"{self.node_id} {next(self._claims)}"
        await self.broker.claim(conn.client_id, conn.claim)
        if conn.user_id is not None:
            self.by_user[conn.user_id].add(conn)
        try:
            head = await self.store.head()
        except StoreUnavailable as error:
            self.store_failed(error)
            conn.transport.close(1013, "try again later")
            return
        if conn.closed:
            return
        headers = {"env": "development"} if self.settings.development else None
        events = conn.session.accept(now_ms(), {"subprotocol": self.app.subprotocol}, headers)
        conn.flush()
        synced = int(event.synced) if event.synced > 0 else 0
        conn.start_delivery(min(synced, head), up_to_date=synced >= head and self.broker.immediate)
        conn.dispatch(events)

    # -- inbound actions -----------------------------------------------------------------------

    def receive_actions(self, conn: Connection, event: ActionsReceived, size: int = 0) -> None:
        """Queue a client's actions (``size``: the bytes of their frame); ``synced`` goes out once
        all of them are answered.

        Identity comes first: an action whose id belongs to another client, or whose meta has
        keys beyond ``id``, ``time``, ``subprotocol``, is undone ``denied`` and reserves nothing —
        it never enters the in-flight set nor the dedupe lookup, so another user cannot block an
        id or learn whether it exists. Actions the session refused at the door (a field out of
        range, a payload that does not round-trip) are undone ``error`` with the details."""
        received = time.perf_counter()
        total = len(event.entries) + len(event.refused)
        self.metrics.actions_received += total
        batch = _Batch(event.added, total, size)
        self._batches[conn].append(batch)
        conn.inbound_received(total, size)
        for action, meta, details in event.refused:
            self.metrics.actions_invalid += 1
            self._enqueue(
                _Job(conn, action, meta, batch, "invalid", received, refusal=("error", details))
            )
        for action, meta in event.entries:
            action_id = meta["id"]
            if parse_node_id(action_id).client_id != conn.client_id or not ALLOWED_META.issuperset(
                meta
            ):
                self._enqueue(
                    _Job(conn, action, meta, batch, "denied", received, refusal=("denied", None))
                )
                continue
            first = self._in_flight.get(action_id)
            if first is not None and first.conn is conn:
                self._accepted(conn, batch)  # the first copy answers for both
                continue
            # (A copy still in flight from a closed connection runs first; this one is then
            # answered as a duplicate.)
            name, kind = self._queue_name(action)
            job = _Job(conn, action, meta, batch, kind, received)
            self._in_flight[action_id] = job
            self._enqueue(job, name)
        self._answer_batches(conn)

    def _enqueue(self, job: _Job, name: str = "main") -> None:
        key = f"{job.conn.client_id}/{name}"
        queue = self._queues.setdefault(key, _ClientQueue())
        queue.jobs.append(job)
        if queue.worker is None or queue.worker.done():
            queue.worker = self.spawn(self._drain(key, queue))

    def _release(self, job: _Job) -> None:
        """The job no longer holds its action id."""
        if self._in_flight.get(job.meta["id"]) is job:
            del self._in_flight[job.meta["id"]]

    def _queue_name(self, action: dict[str, Any]) -> tuple[str, str]:
        """The queue an action waits in, and the type its stage timings are recorded under."""
        rule: TypeRule | ChannelRule | None
        kind = action["type"]
        if kind in ("logux/subscribe", "logux/unsubscribe"):
            channel = action.get("channel")
            found = self.app.find_channel(channel) if isinstance(channel, str) else None
            rule = found[0] if found else None
        elif kind.startswith("logux/"):
            return "main", "logux/other"
        else:
            rule = self.app.find_type(kind)
            if rule is None:
                kind = "unknown"
            elif rule.name is None:
                kind = "*"
            elif not isinstance(rule.name, str):
                kind = rule.name.pattern
        return rule.queue if rule is not None else "main", kind

    async def _drain(self, key: str, queue: _ClientQueue) -> None:
        while queue.jobs:
            group = [queue.jobs.popleft()]
            if group[0].conn.closed:
                # Its connection is gone and nothing of it is stored or acknowledged: drop it
                # (the client sends it again when it reconnects).
                self._release(group[0])
                continue
            if self._batchable(group[0]):
                while (
                    queue.jobs
                    and len(group) < self.settings.replay_chunk
                    and queue.jobs[0].conn is group[0].conn
                    and self._batchable(queue.jobs[0])
                ):
                    group.append(queue.jobs.popleft())
            try:
                if len(group) == 1:
                    await self._handle(group[0])
                else:
                    await self._handle_group(group)
            except StoreUnavailable as error:
                self.store_failed(error)
                for job in group:
                    self._answer_failed(job, "the log store is unavailable; try again later")
            except Exception as error:
                logger.exception("action %s failed", group[0].meta.get("id"))
                for job in group:
                    if job.answering is None:
                        self._answer_failed(job, self._error_details(error))
            finally:
                for job in group:
                    if job.answering is not None:
                        continue  # answered and acknowledged by `_finish`
                    self._release(job)
                    if not job.stranded:
                        self._accept_job(job)
        if self._queues.get(key) is queue:
            del self._queues[key]

    def _batchable(self, job: _Job) -> bool:
        if job.refusal is not None:
            return False
        kind = job.action["type"]
        if kind.startswith("logux/"):
            return False
        rule = self.app.find_type(kind)
        return rule is not None and rule.batch

    async def _handle_group(self, group: list[_Job]) -> None:
        """Consecutive actions of ``batch=True`` types from one client: checked in order, then
        appended in one store call, then processed in order. A resent id shows up as a duplicate
        of the append (answered again, not processed)."""
        checked: list[tuple[_Job, Context, TypeRule, Any, Route, NewEntry]] = []
        metrics, start = self.metrics, time.perf_counter()
        for job in group:
            metrics.stage(job.kind, "queued", start - job.received)
            ctx = job.ctx = job.conn.context()
            if not await self._check_meta(job, ctx):
                continue
            checks = await self._check_type(job, ctx)
            if checks is None:
                continue
            rule, payload, route = checks
            status = WAITING if rule.process is not None else PROCESSED
            checked.append((job, ctx, rule, payload, route, self._new_entry(job, route, status)))
        if not checked:
            return
        start = time.perf_counter()
        with metrics.timed("append"):
            appended = await self.store.append([item[5] for item in checked])
        metrics.stage(checked[0][0].kind, "append", time.perf_counter() - start)
        for (job, *_), result in zip(checked, appended, strict=True):
            job.appended = True
            if result.created:
                self.metrics.actions_appended += 1
                await self.broker.publish(result.entry)
        for (job, ctx, rule, payload, route, _), result in zip(checked, appended, strict=True):
            if not result.created:
                await self._answer_duplicate(ctx, job.meta["id"], result.entry.status)
            elif rule.process is not None:
                await self._run_process(job, ctx, rule, payload, route, result.entry)
            else:
                await self._send_processed(ctx.client_id, job.meta["id"], 0)
                if rule.finally_ is not None:
                    await self._call_quietly(rule.finally_, ctx, payload, job.meta)

    def _answer_failed(self, job: _Job, details: str) -> None:
        """The store or the server failed while handling ``job``: it must still be answered before
        its ``synced``. Not stored: an undo ``error`` sent directly (it can't be logged either),
        and the client may send the action again later. Stored already but unanswered: no
        ``synced`` for it; its connection is closed, so the client reconnects and resends it, and
        that copy is answered (or taken over) from the log."""
        if job.appended:
            job.stranded = True
            logger.warning(
                "closing %s: action %s stored but not answered",
                job.conn.client_id,
                job.meta["id"],
                extra={"client": job.conn.client_id, "reason": "unanswered"},
            )
            job.conn.transport.close(1011, "server error: reconnect and resend")
            return
        if job.conn.closed:
            return
        undo = {
            "type": "logux/undo",
            "id": job.meta["id"],
            "reason": "error",
            "action": job.action,
            "details": details,
        }
        undo_id, time_ms = self.clock.next_id(now_ms())
        job.conn.send_after(0, undo, {"id": undo_id, "time": time_ms})

    def _error_details(self, error: Exception) -> str:
        if self.settings.development:
            return "".join(traceback.format_exception(error))
        return "server error"

    def _accept_job(self, job: _Job) -> None:
        """The action is answered (processed or refused): its batch may now be acknowledged."""
        if not job.accepted:
            job.accepted = True
            if job.ctx is not None:
                job.batch.barrier = max(job.batch.barrier, job.ctx.last_added)
            elapsed = time.perf_counter() - job.received
            self.metrics.stage(job.kind, "answered", elapsed)
            self._accepted(job.conn, job.batch)

    def _accepted(self, conn: Connection, batch: _Batch) -> None:
        if batch.remaining > 0:
            batch.remaining -= 1
            conn.inbound_answered(1, 0)
            self._answer_batches(conn)

    def _answer_batches(self, conn: Connection) -> None:
        # `synced` in order: a later batch is acknowledged only after the earlier ones.
        batches = self._batches.get(conn)
        while batches and batches[0].remaining == 0:
            batch = batches.popleft()
            conn.inbound_answered(0, batch.size)
            conn.synced_after(batch.barrier, batch.added)
        conn.flush()

    async def _handle(self, job: _Job) -> None:
        conn, action, meta = job.conn, job.action, job.meta
        ctx = job.ctx = conn.context()
        metrics, start = self.metrics, time.perf_counter()
        metrics.stage(job.kind, "queued", start - job.received)
        if job.refusal is not None:
            reason, details = job.refusal
            if reason == "denied":
                self._debug(conn, f"Action {meta['id']} was denied")
            shown = action if encodes(action) else {"type": str(action.get("type"))}
            if details is None:
                await self.undo(ctx, shown, meta, reason)
            else:
                await self.undo(ctx, shown, meta, reason, details=details)
            return
        status = self.store.seen_now(meta["id"])
        if status is UNKNOWN:
            status = await self.store.seen(meta["id"])
        metrics.stage(job.kind, "seen", time.perf_counter() - start)
        if status is not None:
            await self._answer_duplicate(ctx, meta["id"], status)
            return
        if not await self._check_meta(job, ctx):
            return
        kind = action["type"]
        if kind == "logux/subscribe":
            await self._subscribe(job, ctx)
        elif kind == "logux/unsubscribe":
            await self._unsubscribe(job, ctx)
        elif kind.startswith("logux/"):
            await self.undo(ctx, action, meta, "denied")
        else:
            await self._process(job, ctx)

    async def _answer_duplicate(self, ctx: Context, action_id: str, status: str) -> None:
        """A resend of an action the log has had: answer again, never process it twice.

        ``processed``: answer again. ``error``: its undo is in the log, on its way. ``waiting``:
        another node (or this one before a restart) appended it and has not finished; wait for
        it, and take it over if it does not finish in ``takeover_ms`` (its node died)."""
        deadline = time.monotonic() + self.settings.takeover_ms / 1000
        delay = 0.01
        while status == WAITING and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            status = await self.store.seen(action_id) or WAITING
        if status == PROCESSED:
            await self._send_processed(ctx.client_id, action_id, 0)
        elif status == WAITING:
            entry = await self.store.get(action_id)
            if entry is not None and entry.status == WAITING:
                logger.warning("taking over %s, left waiting by another node", action_id)
                await self._reprocess(entry)

    async def _check_meta(self, job: _Job, ctx: Context) -> bool:
        """The server-side meta checks (identity was checked on receipt); False: undone."""
        conn, action, meta = job.conn, job.action, job.meta
        if meta["time"] > now_ms() + self.settings.max_future_ms:
            limit = self.settings.max_future_ms
            details = f"meta.time is more than {limit} ms ahead of the server clock"
            await self.undo(ctx, action, meta, "error", details=details)
            return False
        self.clock.observe(int(meta["time"]))
        meta.setdefault("subprotocol", conn.session.subprotocol)
        if meta["subprotocol"] is None:
            del meta["subprotocol"]
        return True

    async def _check_type(self, job: _Job, ctx: Context) -> tuple[TypeRule, Any, Route] | None:
        """The type's model, ``access`` and ``resend``: the rule, the payload and the route, or
        None when the action was undone."""
        conn, action, meta = job.conn, job.action, job.meta
        rule = self.app.find_type(action["type"])
        if rule is None:
            self._debug(conn, f"Action with unknown type {action['type']}")
            await self.undo(ctx, action, meta, "unknownType")
            return None
        payload: Any = action
        if rule.model is not None:
            try:
                payload = rule.model.model_validate(action)
            except ValidationError as error:
                details = error.errors(
                    include_url=False, include_context=False, include_input=False
                )
                await self.undo(ctx, action, meta, "error", details=_json_safe(details))
                return None
        try:
            if not await resolve(rule.access(ctx, payload, meta)):
                self._debug(conn, f"Action {meta['id']} was denied")
                await self.undo(ctx, action, meta, "denied")
                return None
            route = (
                Route.of(await resolve(rule.resend(ctx, payload, meta))) if rule.resend else Route()
            )
        except Undo as undo:
            await self.undo(ctx, action, meta, undo.reason, **undo.extra)
            return None
        except Exception as error:
            await self._fail(conn, ctx, action, meta, error)
            return None
        return rule, payload, route

    async def _process(self, job: _Job, ctx: Context) -> None:
        checked = await self._check_type(job, ctx)
        if checked is None:
            return
        rule, payload, route = checked
        # Without `process` there is nothing to wait for: stored as processed, one write.
        status = WAITING if rule.process is not None else PROCESSED
        entry = await self._append_client_action(job, route, status)
        if entry is None:
            return
        await self._run_process(job, ctx, rule, payload, route, entry)

    async def _run_process(
        self, job: _Job, ctx: Context, rule: TypeRule, payload: Any, route: Route, entry: Entry
    ) -> None:
        """``process``, the status, the answer, ``finally_`` — for an appended action.

        When ``process`` succeeds and there is no ``finally_``, the status write is started and
        its answer left to :meth:`_finish` (``job.answering``): the client's next action does not
        wait for that write, and the store commits it with the next append (stores that cannot
        keep that order are awaited here instead, see :meth:`LogStore.start_set_status`)."""
        conn, action, meta = job.conn, job.action, job.meta
        try:
            if rule.process is not None:
                start = time.perf_counter()
                await resolve(rule.process(ctx, payload, meta))
                self.metrics.stage(job.kind, "process", time.perf_counter() - start)
        except Undo as undo:
            await self.store.set_status(entry.id, ERROR)
            await self.undo(ctx, action, meta, undo.reason, route=route, **undo.extra)
        except Exception as error:
            await self.store.set_status(entry.id, ERROR)
            await self._fail(conn, ctx, action, meta, error, route=route)
        else:
            if rule.process is not None:
                if rule.finally_ is None:
                    writing = self.store.start_set_status(entry.id, PROCESSED)
                    if writing is not None:
                        job.answering = self._finish_later(job, ctx, writing, ctx.last_added)
                        return
                start = time.perf_counter()
                await self.store.set_status(entry.id, PROCESSED)
                self.metrics.stage(job.kind, "status", time.perf_counter() - start)
            await self._send_processed(ctx.client_id, entry.id, ctx.last_added)
        finally:
            if rule.finally_ is not None:
                await self._call_quietly(rule.finally_, ctx, payload, meta)

    def _finish_later(
        self, job: _Job, ctx: Context, writing: Awaitable[None], barrier: int
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._finish(job, ctx, writing, barrier))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)
        return task

    async def _finish(
        self, job: _Job, ctx: Context, writing: Awaitable[None], barrier: int
    ) -> None:
        """Wait for the ``processed`` status of an action to be durable, then answer it and let
        its batch be acknowledged (as :meth:`_drain` does for the others)."""
        action_id, start = job.meta["id"], time.perf_counter()
        try:
            await writing
            self.metrics.stage(job.kind, "status", time.perf_counter() - start)
            await self._send_processed(ctx.client_id, action_id, barrier)
        except StoreUnavailable as error:
            # stays `waiting`, unanswered: the client resends it, and that copy is answered
            self.store_failed(error)
            self._answer_failed(job, "")
        except Exception:
            logger.exception("answering %s failed", action_id)
            self._answer_failed(job, "")
        finally:
            self._release(job)
            if not job.stranded:
                self._accept_job(job)

    @staticmethod
    def _new_entry(job: _Job, route: Route, status: str = WAITING) -> NewEntry:
        meta = job.meta
        return NewEntry(
            id=meta["id"],
            time=int(meta["time"]),
            action=job.action,
            indexes=route.indexes(),
            exclude_clients=route.exclude_clients,
            subprotocol=meta.get("subprotocol"),
            status=status,
        )

    async def _append_client_action(
        self, job: _Job, route: Route, status: str = WAITING
    ) -> Entry | None:
        """Append a client's action (None if the log had its id already)."""
        new = self._new_entry(job, route, status)
        start = time.perf_counter()
        with self.metrics.timed("append"):
            [appended] = await self.store.append([new])
        self.metrics.stage(job.kind, "append", time.perf_counter() - start)
        self.metrics.actions_appended += appended.created
        job.appended = True
        if not appended.created:
            return None
        await self.broker.publish(appended.entry)
        return appended.entry

    # -- subscriptions -------------------------------------------------------------------------

    async def _subscribe(self, job: _Job, ctx: Context) -> None:
        conn, action, meta = job.conn, job.action, job.meta
        channel = action.get("channel")
        found = self.app.find_channel(channel) if isinstance(channel, str) else None
        if found is None or not isinstance(channel, str):
            self._debug(conn, f"Wrong channel name {channel}")
            await self.undo(ctx, action, meta, "wrongChannel")
            return
        rule, ctx.params = found
        limit = self.settings.max_subscriptions
        if channel not in conn.subscriptions and len(conn.subscriptions) >= limit:
            details = f"a connection may subscribe to at most {limit} channels"
            await self.undo(ctx, action, meta, "limit", details=details)
            return
        try:
            if not await resolve(rule.access(ctx, action, meta)):
                self._debug(conn, f"Action {meta['id']} was denied")
                await self.undo(ctx, action, meta, "denied")
                return
            predicate = await resolve(rule.filter(ctx, action, meta)) if rule.filter else None
        except Undo as undo:
            await self.undo(ctx, action, meta, undo.reason, **undo.extra)
            return
        except Exception as error:
            await self._fail(conn, ctx, action, meta, error)
            return
        entry = await self._append_client_action(job, Route())
        if entry is None:
            return
        resume = None
        if isinstance(action.get("since"), dict) and not action.get("creating"):
            resume = await self._resume_point(conn, channel, action["since"])
        key = orjson.dumps(action.get("filter") or {}, option=orjson.OPT_SORT_KEYS).decode()
        sub = conn.subscriptions.get(channel)
        if sub is None:
            start = entry.added if resume is None else resume
            sub = conn.subscriptions[channel] = Subscription(from_added=start)
            self.subscribers[channel].add(conn)
            await self.broker.listen([f"channel:{channel}"])
        sub.filters[key] = predicate
        if resume is not None:
            conn.replay_channel(channel, resume)
        try:
            first = rule.load if resume is None else rule.resume
            if first is not None:
                loaded = await resolve(first(ctx, action, meta))
                for item_action, item_meta in _loaded(loaded):
                    await ctx.send_back(item_action, item_meta)
        except Undo as undo:
            self._remove_filter(conn, channel, key)
            await self.store.set_status(entry.id, ERROR)
            await self.undo(ctx, action, meta, undo.reason, **undo.extra)
        except Exception as error:
            self._remove_filter(conn, channel, key)
            await self.store.set_status(entry.id, ERROR)
            await self._fail(conn, ctx, action, meta, error)
        else:
            await self.store.set_status(entry.id, PROCESSED)
            # Logged, unlike other answers: its id is the `since` of the client's resubscription,
            # and its position is where that resubscription resumes.
            await self.add({"type": "logux/processed", "id": entry.id}, clients=[ctx.client_id])
        finally:
            if rule.finally_ is not None:
                await self._call_quietly(rule.finally_, ctx, action, meta)

    async def _resume_point(
        self, conn: Connection, channel: str, since: dict[str, Any]
    ) -> int | None:
        """Where a resubscription's channel history resumes, or None when it cannot (unknown
        ``since``, or history trimmed past it): then the channel's ``load`` runs instead."""
        index = f"channel:{channel}"
        cursor = None
        if isinstance(since.get("id"), str):
            answered = await self.store.get(since["id"])
            if answered is not None:
                cursor = answered.added
        if cursor is None and is_number(since.get("time")):
            if await self.store.horizon(index):
                return None  # trimmed entries' times are unknown: a time can't place the client
            cursor = await self.store.cursor_for_time(index, int(since["time"]))
        if cursor is None:
            return None
        cursor = max(cursor, conn.connect_synced)
        if cursor < await self.store.horizon(index):
            return None
        return cursor

    async def _unsubscribe(self, job: _Job, ctx: Context) -> None:
        conn, action, meta = job.conn, job.action, job.meta
        channel = action.get("channel")
        if not isinstance(channel, str):
            await self.undo(ctx, action, meta, "wrongChannel")
            return
        entry = await self._append_client_action(job, Route())
        if entry is None:
            return
        key = orjson.dumps(action.get("filter") or {}, option=orjson.OPT_SORT_KEYS).decode()
        self._remove_filter(conn, channel, key)
        found = self.app.find_channel(channel)
        if found is not None and found[0].unsubscribe is not None:
            ctx.params = found[1]
            await self._call_quietly(found[0].unsubscribe, ctx, action, meta)
        await self.store.set_status(entry.id, PROCESSED)
        await self._send_processed(ctx.client_id, entry.id, 0)

    async def subscribe(self, node_id: str, channel: str) -> bool:
        """Subscribe a connected node to ``channel`` from the server side (as @logux/server's
        ``server.subscribe``), and tell it with ``logux/subscribed``. False if it is not here."""
        conn = self.by_client.get(parse_node_id(node_id).client_id)
        if conn is None or conn.node_id != node_id or conn.closed:
            return False
        if channel not in conn.subscriptions:
            conn.subscriptions[channel] = Subscription(from_added=await self.store.head())
            self.subscribers[channel].add(conn)
            await self.broker.listen([f"channel:{channel}"])
        conn.subscriptions[channel].filters.setdefault("{}", None)
        await self.add({"type": "logux/subscribed", "channel": channel}, nodes=[node_id])
        return True

    def _remove_filter(self, conn: Connection, channel: str, key: str) -> None:
        sub = conn.subscriptions.get(channel)
        if sub is None:
            return
        sub.filters.pop(key, None)
        if not sub.filters:
            del conn.subscriptions[channel]
            self._drop_subscriber(conn, channel)

    def _drop_subscriber(self, conn: Connection, channel: str) -> None:
        subscribers = self.subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(conn)
            if not subscribers:
                del self.subscribers[channel]
                self.spawn(self.broker.unlisten([f"channel:{channel}"]))

    # -- answers -------------------------------------------------------------------------------

    async def _send_processed(self, client_id: str, action_id: str, barrier: int) -> None:
        """Answer ``logux/processed``: straight to the client's connection, or, when it is not
        connected here (it left while the action was processed), through the log, so that it gets
        the answer when it comes back instead of waiting for it forever."""
        conn = self.by_client.get(client_id)
        if conn is None or conn.closed:
            await self.add({"type": "logux/processed", "id": action_id}, clients=[client_id])
            return
        processed_id, time_ms = self.clock.next_id(now_ms())
        conn.send_after(
            barrier,
            {"type": "logux/processed", "id": action_id},
            {"id": processed_id, "time": time_ms},
        )

    async def undo(
        self,
        ctx: Context,
        action: dict[str, Any],
        meta: dict[str, Any],
        reason: str,
        *,
        route: Route | None = None,
        **extra: Any,
    ) -> Entry:
        """Revert an action: ``logux/undo`` to its client, and to everyone it was resent to."""
        undo_route = Route(
            channels=list(route.channels) if route else [],
            users=list(route.users) if route else [],
            clients=[ctx.client_id, *(route.clients if route else [])],
            nodes=list(route.nodes) if route else [],
            exclude_clients=list(route.exclude_clients) if route else [],
        )
        self.metrics.actions_refused += 1
        undo = {"type": "logux/undo", "id": meta["id"], "reason": reason, "action": action, **extra}
        entry = await self.add(undo, route=undo_route, status=PROCESSED)
        # the answer is in the log: the `synced` of its action waits until it went out
        ctx.last_added = max(ctx.last_added, entry.added)
        return entry

    async def _fail(
        self,
        conn: Connection,
        ctx: Context,
        action: dict[str, Any],
        meta: dict[str, Any],
        error: Exception,
        route: Route | None = None,
    ) -> None:
        logger.error("error in rules for %s", meta.get("id"), exc_info=error)
        if self.settings.development:
            text = "".join(traceback.format_exception(error))
            for other in self.connections:
                if other.authenticated:
                    other.session.send_debug(text)
                    other.flush()
        await self.undo(ctx, action, meta, "error", route=route)

    def _debug(self, conn: Connection, text: str) -> None:
        if self.settings.development:
            conn.session.send_debug(text)
            conn.flush()

    async def _call_quietly(self, fn: Any, ctx: Context, action: Any, meta: dict[str, Any]) -> None:
        try:
            await resolve(fn(ctx, action, meta))
        except Exception:
            logger.exception("error in %s", getattr(fn, "__name__", fn))

    # -- server-originated actions and routing -----------------------------------------------

    async def add(
        self,
        action: dict[str, Any],
        *,
        channels: Iterable[str] = (),
        users: Iterable[str] = (),
        clients: Iterable[str] = (),
        nodes: Iterable[str] = (),
        exclude_clients: Iterable[str] = (),
        route: Route | None = None,
        meta: dict[str, Any] | None = None,
        status: str = PROCESSED,
    ) -> Entry:
        """Append a server action (id from the hybrid clock) and deliver it to its route."""
        if not isinstance(action, dict) or not isinstance(action.get("type"), str):
            raise TypeError("an action is a dict with a string 'type'")
        if not encodes(action):
            # stored, it could never be sent: refused here rather than skipped by every reader
            raise TypeError(f"action {action['type']!r} cannot be encoded as JSON and msgpack")
        if route is None:
            route = Route(
                list(channels), list(users), list(clients), list(nodes), list(exclude_clients)
            )
        meta = meta or {}
        if "id" in meta:
            action_id, time_ms = meta["id"], int(meta.get("time", now_ms()))
        else:
            action_id, time_ms = self.clock.next_id(now_ms())
            if "time" in meta:
                time_ms = int(meta["time"])
        new = NewEntry(
            id=action_id,
            time=time_ms,
            action=action,
            indexes=route.indexes(),
            exclude_clients=route.exclude_clients,
            subprotocol=meta.get("subprotocol"),
            status=status,
        )
        with self.metrics.timed("append"):
            [appended] = await self.store.append([new])
        if appended.created:
            self.metrics.actions_appended += 1
            await self.broker.publish(appended.entry)
        return appended.entry

    def undeliverable(self, entry: Entry) -> None:
        """A connection skipped ``entry``: it cannot be encoded (logged and counted once)."""
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
        """Hand a published entry to each local connection it may concern (once each)."""
        targets: set[Connection] = set()
        for index in entry.indexes:
            kind, _, name = index.partition(":")
            if kind == "channel":
                targets.update(self.subscribers.get(name, ()))
            elif kind == "user":
                targets.update(self.by_user.get(name, ()))
            elif kind == "client":
                conn = self.by_client.get(name)
                if conn is not None:
                    targets.add(conn)
            elif kind == "node":
                conn = self.by_client.get(parse_node_id(name).client_id)
                if conn is not None and conn.node_id == name:
                    targets.add(conn)
        for conn in targets:
            conn.offer(entry)


def _loaded(value: Any) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """What ``load`` returned → ``(action, meta)`` pairs."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [(value, None)]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], dict):
        return [(value[0], value[1])]
    pairs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for item in value:
        if isinstance(item, dict):
            pairs.append((item, None))
        else:
            pairs.append((item[0], item[1]))
    return pairs


def _json_safe(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


def _route_of(entry: Entry) -> Route:
    """The route an appended entry was filed under (for its undo)."""
    route = Route(exclude_clients=list(entry.exclude_clients))
    for index in entry.indexes:
        kind, _, name = index.partition(":")
        {
            "channel": route.channels,
            "user": route.users,
            "client": route.clients,
            "node": route.nodes,
        }[kind].append(name)
    return route
