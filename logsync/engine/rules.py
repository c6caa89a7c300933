"""The rule pipeline for one client action, in @logux/server's order: refusal at the door →
dedupe → meta → the type's model, ``access``, ``resend`` → append → ``process`` → the answer →
``finally_``; or, for ``logux/subscribe``/``logux/unsubscribe``, the subscriptions stage.

The inbound stage calls :meth:`Rules.handle` for one job or :meth:`Rules.handle_group` for a run
of ``batch=True`` actions, one client queue at a time. A processed action whose status write was
only started leaves ``job.writing`` set: the inbound stage answers it once the write is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from pydantic import ValidationError

from logsync.app import App, Context, Route, TypeRule, Undo, call_quietly, resolve
from logsync.engine.answers import Answers
from logsync.engine.jobs import Job, append_job, new_entry
from logsync.engine.peer import Peer
from logsync.engine.subscriptions import Subscriptions
from logsync.log import (
    ERROR,
    PROCESSED,
    UNKNOWN,
    WAITING,
    Appended,
    Entry,
    LogStore,
    NewEntry,
    encodes,
)
from logsync.log.writer import LogWriter
from logsync.metrics import Metrics
from logsync.protocol.clock import HybridClock
from logsync.protocol.ids import parse_node_id
from logsync.settings import Settings
from logsync.wallclock import now_ms

logger = logging.getLogger("logsync.node")


class Rules:
    """Runs the app's rules on client actions; see the module docstring."""

    def __init__(
        self,
        app: App,
        answers: Answers,
        subscriptions: Subscriptions,
        writer: LogWriter,
        store: LogStore,
        clock: HybridClock,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.answers = answers
        self.subscriptions = subscriptions
        self.writer = writer
        self.store = store
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        # ids whose append was started and has not been answered (see _process_appending)
        self._appending: set[str] = set()

    async def handle(self, job: Job) -> None:
        """One client action, from refusal or dedupe to its answer."""
        peer, action, meta = job.peer, job.action, job.meta
        ctx = job.ctx = peer.context()
        metrics, start = self.metrics, time.perf_counter()
        metrics.stage(job.kind, "queued", start - job.received)
        if job.refusal is not None:
            await self._refuse(job, ctx)
            return
        status = self.store.seen_now(meta["id"])
        # new for sure: the store said so itself, and no append of it is on its way (a resend
        # from a reconnected client may follow its first copy in the queue)
        known_new = status is None and meta["id"] not in self._appending
        if status is UNKNOWN:
            status = await self.store.seen(meta["id"])
        metrics.stage(job.kind, "seen", time.perf_counter() - start)
        if status is not None:
            await self.answer_duplicate(ctx, meta["id"], status)
            return
        if not await self._check_meta(job, ctx):
            return
        kind = action["type"]
        if kind == "logux/subscribe":
            await self.subscriptions.subscribe(job, ctx)
        elif kind == "logux/unsubscribe":
            await self.subscriptions.unsubscribe(job, ctx)
        elif kind.startswith("logux/"):
            await self.answers.undo(ctx, action, meta, "denied")
        else:
            await self._process(job, ctx, known_new)

    async def handle_group(self, group: list[Job]) -> None:
        """Consecutive actions of ``batch=True`` types from one client: checked in order, then
        appended in one store call, then processed in order. A resent id shows up as a duplicate
        of the append (answered again, not processed)."""
        checked: list[tuple[Job, Context, TypeRule, Any, Route, NewEntry]] = []
        metrics, start = self.metrics, time.perf_counter()
        for job in group:
            metrics.stage(job.kind, "queued", start - job.received)
            ctx = job.ctx = job.peer.context()
            if not await self._check_meta(job, ctx):
                continue
            checks = await self._check_type(job, ctx)
            if checks is None:
                continue
            rule, payload, route = checks
            status = WAITING if rule.process is not None else PROCESSED
            checked.append((job, ctx, rule, payload, route, new_entry(job, route, status)))
        if not checked:
            return
        start = time.perf_counter()
        appended = await self.writer.append([item[5] for item in checked])
        metrics.stage(checked[0][0].kind, "append", time.perf_counter() - start)
        for (job, ctx, rule, payload, route, _), result in zip(checked, appended, strict=True):
            job.appended = True
            if not result.created:
                await self.answer_duplicate(ctx, job.meta["id"], result.entry.status)
            elif rule.process is not None:
                await self._run_process(job, ctx, rule, payload, route, result.entry)
            else:
                await self.answers.processed(ctx.client_id, job.meta["id"], 0)
                if rule.finally_ is not None:
                    await call_quietly(rule.finally_, ctx, payload, job.meta)

    async def _refuse(self, job: Job, ctx: Context) -> None:
        """Refused on receipt (another client's id, extra meta, a field out of range): undone,
        never deduped nor appended; an action that can't be encoded is quoted by its type."""
        assert job.refusal is not None
        reason, details = job.refusal
        if reason == "denied":
            self.answers.debug(job.peer, f"Action {job.meta['id']} was denied")
        shown = job.action if encodes(job.action) else {"type": str(job.action.get("type"))}
        if details is None:
            await self.answers.undo(ctx, shown, job.meta, reason)
        else:
            await self.answers.undo(ctx, shown, job.meta, reason, details=details)

    async def answer_duplicate(self, ctx: Context, action_id: str, status: str) -> None:
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
            await self.answers.processed(ctx.client_id, action_id, 0)
        elif status == WAITING:
            entry = await self.store.get(action_id)
            if entry is not None and entry.status == WAITING:
                logger.warning("taking over %s, left waiting by another node", action_id)
                await self.reprocess(entry)

    async def reprocess(self, entry: Entry) -> None:
        """Run ``process`` again for an appended action left ``waiting`` (its node died before
        the end of ``process``), then answer it: append exactly once, ``process`` at least once."""
        node = parse_node_id(entry.id)
        outbox = self.app.node
        assert outbox is not None
        ctx = Context(
            node=outbox,
            user_id=node.user_id,
            client_id=node.client_id,
            node_id=node.node_id,
            subprotocol=entry.subprotocol,
            headers={},
        )
        meta = dict(entry.meta())
        kind = entry.action["type"]
        rule = None if kind.startswith("logux/") else self.app.find_type(kind)
        if rule is None or rule.process is None:
            # subscriptions ended with their connection; nothing else has work left
            await self._mark_processed(ctx.client_id, entry.id, 0)
            return
        try:
            payload = rule.model.model_validate(entry.action) if rule.model else entry.action
            await resolve(rule.process(ctx, payload, meta))
        except Exception as error:
            await self.store.set_status(entry.id, ERROR)
            logger.error("recovered action %s failed", entry.id, exc_info=error)
            reason = error.reason if isinstance(error, Undo) else "error"
            await self.answers.undo(ctx, entry.action, meta, reason, route=_route_of(entry))
        else:
            await self._mark_processed(ctx.client_id, entry.id, 0)

    async def _mark_processed(self, client_id: str, action_id: str, last_added: int) -> None:
        """The ``processed`` status, awaited until durable, then the client's answer."""
        await self.store.set_status(action_id, PROCESSED)
        await self.answers.processed(client_id, action_id, last_added)

    async def _check_meta(self, job: Job, ctx: Context) -> bool:
        """The server-side meta checks (identity was checked on receipt); False: undone."""
        peer, action, meta = job.peer, job.action, job.meta
        if meta["time"] > now_ms() + self.settings.max_future_ms:
            limit = self.settings.max_future_ms
            details = f"meta.time is more than {limit} ms ahead of the server clock"
            await self.answers.undo(ctx, action, meta, "error", details=details)
            return False
        self.clock.observe(int(meta["time"]))
        meta.setdefault("subprotocol", peer.subprotocol)
        if meta["subprotocol"] is None:
            del meta["subprotocol"]
        return True

    async def _check_type(self, job: Job, ctx: Context) -> tuple[TypeRule, Any, Route] | None:
        """The type's model, ``access`` and ``resend``: the rule, the payload and the route, or
        None when the action was undone."""
        peer, action, meta = job.peer, job.action, job.meta
        answers = self.answers
        rule = self.app.find_type(action["type"])
        if rule is None:
            answers.debug(peer, f"Action with unknown type {action['type']}")
            await answers.undo(ctx, action, meta, "unknownType")
            return None
        payload: Any = action
        if rule.model is not None:
            try:
                payload = rule.model.model_validate(action)
            except ValidationError as error:
                details = error.errors(
                    include_url=False, include_context=False, include_input=False
                )
                await answers.undo(ctx, action, meta, "error", details=_json_safe(details))
                return None
        try:
            if not await resolve(rule.access(ctx, payload, meta)):
                answers.debug(peer, f"Action {meta['id']} was denied")
                await answers.undo(ctx, action, meta, "denied")
                return None
            route = (
                Route.of(await resolve(rule.resend(ctx, payload, meta))) if rule.resend else Route()
            )
        except Undo as undo:
            await answers.undo(ctx, action, meta, undo.reason, **undo.extra)
            return None
        except Exception as error:
            await answers.fail(ctx, action, meta, error)
            return None
        return rule, payload, route

    async def _process(self, job: Job, ctx: Context, known_new: bool = False) -> None:
        checked = await self._check_type(job, ctx)
        if checked is None:
            return
        rule, payload, route = checked
        if rule.process is not None and rule.finally_ is None and known_new:
            appending = self.writer.start_append([new_entry(job, route, WAITING)])
            if appending is not None:
                action_id = job.meta["id"]
                self._appending.add(action_id)
                appending.add_done_callback(lambda _: self._appending.discard(action_id))
                await self._process_appending(job, ctx, rule, payload, route, appending)
                return
        # Without `process` there is nothing to wait for: stored as processed, one write.
        status = WAITING if rule.process is not None else PROCESSED
        entry = await append_job(self.writer, self.metrics, job, route, status)
        if entry is None:
            return
        await self._run_process(job, ctx, rule, payload, route, entry)

    async def _process_appending(
        self,
        job: Job,
        ctx: Context,
        rule: TypeRule,
        payload: Any,
        route: Route,
        appending: asyncio.Future[list[Appended]],
    ) -> None:
        """``process`` while the action's append is on its way to the disk (see
        :meth:`LogStore.start_append`), so the client's next action need not wait for a commit:
        several of one client's actions then share one transaction, and their subscribers one
        ``sync``. The order of ``process`` calls, delivery after durability and the answer
        after the ``processed`` status is durable are as in :meth:`_run_process`; taken only for
        an id the store said is new (the append will create it), with no ``finally_``.

        From here the action is the store's: if the append fails, the connection is closed and
        the client resends it (``job.appended``), never undone after ``process`` ran."""
        meta = job.meta
        job.appended = True
        start = time.perf_counter()
        try:
            assert rule.process is not None
            await resolve(rule.process(ctx, payload, meta))
            self.metrics.stage(job.kind, "process", time.perf_counter() - start)
        except Exception as error:
            await self._appended(job, appending)
            await self._process_failed(job, ctx, route, error)
            return
        status = self.store.start_set_status(meta["id"], PROCESSED)
        if status is None:
            await self._appended(job, appending)
            await self._mark_processed(ctx.client_id, meta["id"], ctx.last_added)
            return
        job.writing = (self._appended_then(job, appending, status), ctx.last_added)

    async def _appended_then(
        self, job: Job, appending: asyncio.Future[list[Appended]], status: Awaitable[None]
    ) -> None:
        """The action's append and then its ``processed`` status, both durable."""
        await self._appended(job, appending)
        await status

    async def _appended(self, job: Job, appending: asyncio.Future[list[Appended]]) -> None:
        start = time.perf_counter()
        [appended] = await appending
        self.metrics.stage(job.kind, "append", time.perf_counter() - start)
        if not appended.created:  # the store broke its word (see LogStore.start_append)
            raise RuntimeError(f"{job.meta['id']} was in the log already; process ran again")

    async def _run_process(
        self, job: Job, ctx: Context, rule: TypeRule, payload: Any, route: Route, entry: Entry
    ) -> None:
        """``process``, the status, the answer, ``finally_`` — for an appended action.

        When ``process`` succeeds and there is no ``finally_``, the status write is only started
        (``job.writing``): the client's next action does not wait for it, and the store commits
        it with the next append (stores that cannot keep that order are awaited here instead,
        see :meth:`LogStore.start_set_status`)."""
        meta, answers = job.meta, self.answers
        try:
            if rule.process is not None:
                start = time.perf_counter()
                await resolve(rule.process(ctx, payload, meta))
                self.metrics.stage(job.kind, "process", time.perf_counter() - start)
        except Exception as error:
            await self._process_failed(job, ctx, route, error)
        else:
            if rule.process is not None:
                if rule.finally_ is None:
                    writing = self.store.start_set_status(entry.id, PROCESSED)
                    if writing is not None:
                        job.writing = (writing, ctx.last_added)
                        return
                start = time.perf_counter()
                await self.store.set_status(entry.id, PROCESSED)
                self.metrics.stage(job.kind, "status", time.perf_counter() - start)
            await answers.processed(ctx.client_id, entry.id, ctx.last_added)
        finally:
            if rule.finally_ is not None:
                await call_quietly(rule.finally_, ctx, payload, meta)

    async def _process_failed(self, job: Job, ctx: Context, route: Route, error: Exception) -> None:
        """``process`` raised for an appended action: its status becomes ``error`` and the client
        gets the undo (an :class:`Undo`'s reason, else ``error``), routed as the action was."""
        action, meta = job.action, job.meta
        await self.store.set_status(meta["id"], ERROR)
        if isinstance(error, Undo):
            await self.answers.undo(ctx, action, meta, error.reason, route=route, **error.extra)
        else:
            await self.answers.fail(ctx, action, meta, error, route=route)


def peer_owns(peer: Peer, action_id: str) -> bool:
    """Whether ``action_id`` was made by ``peer``'s client (the identity check on receipt)."""
    return parse_node_id(action_id).client_id == peer.client_id


def _json_safe(value: Any) -> Any:
    import orjson

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
