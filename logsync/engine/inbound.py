"""Client actions on their way in: one FIFO per client and queue name, drained one action (or one
run of ``batch=True`` actions) at a time by the rules stage; ``synced`` for each of a peer's
``sync`` messages, in order, once every action of it is answered; and the inbound bound (a peer
with too many unanswered actions is not read until they drain).

Call :meth:`Inbound.receive` with what a peer's session reported; :meth:`Inbound.forget` when the
peer leaves; :meth:`Inbound.wait_idle` on shutdown.

Rules:
- An action whose id belongs to another client, or whose meta has keys beyond ``id``, ``time``,
  ``subprotocol``, is refused ``denied`` on receipt: it never enters the in-flight table nor the
  dedupe lookup, so another user can neither block an id nor learn whether it exists.
- A resend of an id still in flight on the same peer is answered by the first copy.
- A queued action of a closed peer is dropped unless it is already stored (the client resends).
- Every action is answered before its batch's ``synced``, whatever a store or callback raised:
  not stored → an undo sent directly; stored but unanswered → the peer is closed (1011), so the
  client resends and the copy is answered from the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from logsync.app import App, ChannelRule, TypeRule
from logsync.engine.answers import Answers
from logsync.engine.jobs import Batch, Job
from logsync.engine.peer import Peer
from logsync.engine.rules import Rules, peer_owns
from logsync.log import StoreUnavailable
from logsync.metrics import Metrics
from logsync.protocol import ActionsReceived
from logsync.settings import Settings

logger = logging.getLogger("logsync.node")

ALLOWED_META = frozenset({"id", "time", "subprotocol"})

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass
class _Bound:
    """A peer's received actions not answered yet, and the bytes of their frames (until their
    ``synced``): past ``inbound_max_actions`` or ``inbound_max_bytes`` it is not read."""

    actions: int = 0
    size: int = 0
    paused: bool = False
    resuming: asyncio.Task[None] | None = None


@dataclass
class _ClientQueue:
    """A client's FIFO of actions for one queue name; a worker drains it one action at a time."""

    jobs: deque[Job] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


class Inbound:
    """The per-client queues of one node; see the module docstring."""

    def __init__(
        self,
        app: App,
        rules: Rules,
        answers: Answers,
        settings: Settings,
        metrics: Metrics,
        spawn: Spawn,
        store_failed: Callable[[Exception], None],
    ) -> None:
        self.app = app
        self.rules = rules
        self.answers = answers
        self.settings = settings
        self.metrics = metrics
        self.spawn = spawn
        self.store_failed = store_failed
        self._queues: dict[str, _ClientQueue] = {}
        # action id → the job handling it (a resend on the same peer waits for that one)
        self._in_flight: dict[str, Job] = {}
        # status writes and answers of processed actions, finishing beside the queues
        self._answering: set[asyncio.Task[None]] = set()
        self._batches: dict[Peer, deque[Batch]] = defaultdict(deque)
        self._bounds: dict[Peer, _Bound] = defaultdict(_Bound)
        self._unanswered = 0  # the sum of the bounds' actions (a scrape walks no peers)

    def unanswered(self) -> int:
        """Received actions not answered yet, over all peers (a gauge of /metrics)."""
        return self._unanswered

    def receive(self, peer: Peer, event: ActionsReceived, size: int = 0) -> None:
        """Queue a peer's actions (``size``: the bytes of their frame); ``synced`` goes out once
        all of them are answered."""
        received = time.perf_counter()
        total = len(event.entries) + len(event.refused)
        self.metrics.actions_received += total
        batch = Batch(event.added, total, size)
        self._batches[peer].append(batch)
        self._received(peer, total, size)
        for action, meta, details in event.refused:
            self.metrics.actions_invalid += 1
            invalid: tuple[str, str | None] = ("error", details)
            self._enqueue(Job(peer, action, meta, batch, "invalid", received, refusal=invalid))
        for action, meta in event.entries:
            action_id = meta["id"]
            if not peer_owns(peer, action_id) or not ALLOWED_META.issuperset(meta):
                denied: tuple[str, str | None] = ("denied", None)
                self._enqueue(Job(peer, action, meta, batch, "denied", received, refusal=denied))
                continue
            first = self._in_flight.get(action_id)
            if first is not None and first.peer is peer:
                self._accepted(peer, batch)  # the first copy answers for both
                continue
            # (A copy still in flight from a closed peer runs first; this one is then answered
            # as a duplicate.)
            name, kind = self._queue_name(action)
            job = Job(peer, action, meta, batch, kind, received)
            self._in_flight[action_id] = job
            self._enqueue(job, name)
        self._answer_batches(peer)

    def forget(self, peer: Peer) -> None:
        """``peer`` left: its unacknowledged batches can never be acknowledged."""
        self._batches.pop(peer, None)
        bound = self._bounds.pop(peer, None)
        if bound is not None:
            self._unanswered -= bound.actions

    # -- the bound -----------------------------------------------------------------------------

    def _received(self, peer: Peer, actions: int, size: int) -> None:
        bound = self._bounds[peer]
        bound.actions += actions
        self._unanswered += actions
        bound.size += size
        if not bound.paused and not self._may_read(peer, bound):
            bound.paused = True
            self.metrics.reading_paused += 1
            peer.pause_reading()

    def _answered(self, peer: Peer, actions: int, size: int) -> None:
        bound = self._bounds.get(peer)
        if bound is None:
            return
        bound.actions -= actions
        self._unanswered -= actions
        bound.size -= size
        if bound.paused and bound.resuming is None:
            self._resume_when_ready(peer, bound)

    def _may_read(self, peer: Peer, bound: _Bound, share: float = 1.0) -> bool:
        settings = self.settings
        return (
            bound.actions <= settings.inbound_max_actions * share
            and bound.size <= settings.inbound_max_bytes * share
            and peer.buffered_bytes < settings.outbound_high_water_bytes
        )

    def _resume_when_ready(self, peer: Peer, bound: _Bound) -> None:
        """Read again once the unanswered actions are under half their bound and the client has
        read what it was sent (its answers must not pile up in our buffer instead)."""
        if peer.closed:
            return
        if self._may_read(peer, bound, 0.5):
            bound.paused = False
            peer.resume_reading()
        elif peer.buffered_bytes >= self.settings.outbound_high_water_bytes:
            bound.resuming = self.spawn(self._resume_after_drain(peer, bound))

    async def _resume_after_drain(self, peer: Peer, bound: _Bound) -> None:
        try:
            await peer.wait_drained(self.settings.outbound_high_water_bytes // 2)
        finally:
            bound.resuming = None
        if bound.paused:
            self._resume_when_ready(peer, bound)

    async def wait_idle(self, timeout: float) -> None:
        """Let queued actions and pending answers finish (shutdown), for at most ``timeout``."""
        workers = [q.worker for q in self._queues.values() if q.worker is not None]
        if workers:
            await asyncio.wait(workers, timeout=timeout)
        if self._answering:
            await asyncio.wait(list(self._answering), timeout=timeout)

    def _enqueue(self, job: Job, name: str = "main") -> None:
        key = f"{job.peer.client_id}/{name}"
        queue = self._queues.setdefault(key, _ClientQueue())
        queue.jobs.append(job)
        if queue.worker is None or queue.worker.done():
            queue.worker = self.spawn(self._drain(key, queue))

    def _release(self, job: Job) -> None:
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
            if group[0].peer.closed:
                # Its peer is gone and nothing of it is stored or acknowledged: drop it (the
                # client sends it again when it reconnects).
                self._release(group[0])
                continue
            if self._batchable(group[0]):
                while (
                    queue.jobs
                    and len(group) < self.settings.inbound_batch
                    and queue.jobs[0].peer is group[0].peer
                    and self._batchable(queue.jobs[0])
                ):
                    group.append(queue.jobs.popleft())
            try:
                if len(group) == 1:
                    await self.rules.handle(group[0])
                else:
                    await self.rules.handle_group(group)
            except StoreUnavailable as error:
                self.store_failed(error)
                for job in group:
                    self._answer_failed(job, "the log store is unavailable; try again later")
            except Exception as error:
                logger.exception("action %s failed", group[0].meta.get("id"))
                for job in group:
                    if job.writing is None:
                        self._answer_failed(job, self.answers.error_details(error))
            finally:
                for job in group:
                    if job.writing is not None and not job.stranded:
                        job.answering = self._finish_later(job, *job.writing)
                        continue  # answered and acknowledged by `_finish`
                    self._release(job)
                    if not job.stranded:
                        self._accept_job(job)
        if self._queues.get(key) is queue:
            del self._queues[key]

    def _batchable(self, job: Job) -> bool:
        if job.refusal is not None:
            return False
        kind = job.action["type"]
        if kind.startswith("logux/"):
            return False
        rule = self.app.find_type(kind)
        return rule is not None and rule.batch

    def _finish_later(self, job: Job, writing: Awaitable[None], barrier: int) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._finish(job, writing, barrier))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)
        return task

    async def _finish(self, job: Job, writing: Awaitable[None], barrier: int) -> None:
        """Wait for the ``processed`` status of an action to be durable, then answer it and let
        its batch be acknowledged (as :meth:`_drain` does for the others)."""
        action_id, start = job.meta["id"], time.perf_counter()
        try:
            await writing
            self.metrics.stage(job.kind, "status", time.perf_counter() - start)
            await self.answers.processed(job.peer.client_id, action_id, barrier)
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

    def _answer_failed(self, job: Job, details: str) -> None:
        """The store or the server failed while handling ``job``; see the module's rules."""
        if job.appended:
            job.stranded = True
            logger.warning(
                "closing %s: action %s stored but not answered",
                job.peer.client_id,
                job.meta["id"],
                extra={"client": job.peer.client_id, "reason": "unanswered"},
            )
            job.peer.close(1011, "server error: reconnect and resend")
            return
        if not job.peer.closed:
            self.answers.undo_directly(job.peer, job.action, job.meta["id"], details)

    def _accept_job(self, job: Job) -> None:
        """The action is answered (processed or refused): its batch may now be acknowledged."""
        if not job.accepted:
            job.accepted = True
            if job.ctx is not None:
                job.batch.barrier = max(job.batch.barrier, job.ctx.last_added)
            elapsed = time.perf_counter() - job.received
            self.metrics.stage(job.kind, "answered", elapsed)
            self._accepted(job.peer, job.batch)

    def _accepted(self, peer: Peer, batch: Batch) -> None:
        if batch.remaining > 0:
            batch.remaining -= 1
            self._answered(peer, 1, 0)
            self._answer_batches(peer)

    def _answer_batches(self, peer: Peer) -> None:
        # `synced` in order: a later batch is acknowledged only after the earlier ones.
        batches = self._batches.get(peer)
        while batches and batches[0].remaining == 0:
            batch = batches.popleft()
            self._answered(peer, 0, batch.size)
            peer.synced_after(batch.barrier, batch.added)
