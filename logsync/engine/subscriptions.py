"""Channels: ``logux/subscribe`` and ``logux/unsubscribe`` from clients, server-side subscriptions
(:meth:`Subscriptions.subscribe_node`, as @logux/server's ``server.subscribe``), resume points
(a resubscription with ``since`` continues from the cursor its earlier subscription was answered
at), and the end of a peer's subscriptions when it leaves.

The rules stage hands subscribe and unsubscribe jobs here after the dedupe and meta checks. A
peer whose subscriptions outlive it (``Peer.keeps_subscriptions``: a pull-only HTTP request) has
them saved with :meth:`Subscriptions.saved` (into the store's records, kind :data:`PULL_RECORDS`)
and rebuilt on its next request with :meth:`Subscriptions.restore`; its leaving runs no
``unsubscribe`` callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from logsync.app import App, Context, Route, Undo, call_quietly, resolve
from logsync.broker import Broker
from logsync.engine.answers import Answers
from logsync.engine.jobs import Job, append_job
from logsync.engine.peer import Peer, Subscription
from logsync.engine.registry import Registry
from logsync.log import ERROR, PROCESSED, LogStore
from logsync.log.writer import LogWriter
from logsync.metrics import Metrics
from logsync.protocol.messages import is_number
from logsync.settings import Settings

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]

logger = logging.getLogger("logsync.node")

# The store records (LogStore.put_record) of pull clients' subscriptions, keyed by client id.
PULL_RECORDS = "pull"


class Subscriptions:
    """Subscribe and unsubscribe peers; see the module docstring."""

    def __init__(
        self,
        app: App,
        registry: Registry,
        answers: Answers,
        writer: LogWriter,
        store: LogStore,
        broker: Broker,
        settings: Settings,
        metrics: Metrics,
        spawn: Spawn,
    ) -> None:
        self.app = app
        self.registry = registry
        self.answers = answers
        self.writer = writer
        self.store = store
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.spawn = spawn

    async def subscribe(self, job: Job, ctx: Context) -> None:
        """A client's ``logux/subscribe``: access, filter, history or ``load``, answer."""
        peer, action, meta = job.peer, job.action, job.meta
        answers = self.answers
        channel = action.get("channel")
        found = self.app.find_channel(channel) if isinstance(channel, str) else None
        if found is None or not isinstance(channel, str):
            answers.debug(peer, f"Wrong channel name {channel}")
            await answers.undo(ctx, action, meta, "wrongChannel")
            return
        rule, ctx.params = found
        limit = self.settings.max_subscriptions
        if channel not in peer.subscriptions and len(peer.subscriptions) >= limit:
            details = f"a connection may subscribe to at most {limit} channels"
            await answers.undo(ctx, action, meta, "limit", details=details)
            return
        try:
            if not await resolve(rule.access(ctx, action, meta)):
                answers.debug(peer, f"Action {meta['id']} was denied")
                await answers.undo(ctx, action, meta, "denied")
                return
            predicate = await resolve(rule.filter(ctx, action, meta)) if rule.filter else None
        except Undo as undo:
            await answers.undo(ctx, action, meta, undo.reason, **undo.extra)
            return
        except Exception as error:
            await answers.fail(ctx, action, meta, error)
            return
        entry = await append_job(self.writer, self.metrics, job, Route())
        if entry is None:
            return
        resume = None
        if isinstance(action.get("since"), dict) and not action.get("creating"):
            resume = await self._resume_point(peer, channel, action["since"])
        key = filter_key(action)
        sub = peer.subscriptions.get(channel)
        if sub is None:
            start = entry.added if resume is None else resume
            sub = peer.subscriptions[channel] = Subscription(from_added=start)
            if self.registry.subscribe(peer, channel):
                await self.broker.listen([f"channel:{channel}"])
        sub.filters[key] = predicate
        if getattr(peer, "keeps_subscriptions", False):
            sub.sources[key] = action
        if resume is not None:
            peer.replay_channel(channel, resume)
        try:
            first = rule.load if resume is None else rule.resume
            if first is not None:
                loaded = await resolve(first(ctx, action, meta))
                for item_action, item_meta in _loaded(loaded):
                    await ctx.send_back(item_action, item_meta)
        except Undo as undo:
            self._remove_filter(peer, channel, key)
            await self.store.set_status(entry.id, ERROR)
            await answers.undo(ctx, action, meta, undo.reason, **undo.extra)
        except Exception as error:
            self._remove_filter(peer, channel, key)
            await self.store.set_status(entry.id, ERROR)
            await answers.fail(ctx, action, meta, error)
        else:
            await self.store.set_status(entry.id, PROCESSED)
            # Logged, unlike other answers: its id is the `since` of the client's resubscription,
            # and its position is where that resubscription resumes.
            await answers.add({"type": "logux/processed", "id": entry.id}, clients=[ctx.client_id])
        finally:
            if rule.finally_ is not None:
                await call_quietly(rule.finally_, ctx, action, meta)

    async def _resume_point(self, peer: Peer, channel: str, since: dict[str, Any]) -> int | None:
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
        cursor = max(cursor, peer.connect_synced)
        if cursor < await self.store.horizon(index):
            return None
        return cursor

    async def unsubscribe(self, job: Job, ctx: Context) -> None:
        """A client's ``logux/unsubscribe``: drop its filter, call the channel's rule, answer."""
        peer, action, meta = job.peer, job.action, job.meta
        channel = action.get("channel")
        if not isinstance(channel, str):
            await self.answers.undo(ctx, action, meta, "wrongChannel")
            return
        entry = await append_job(self.writer, self.metrics, job, Route())
        if entry is None:
            return
        self._remove_filter(peer, channel, filter_key(action))
        found = self.app.find_channel(channel)
        if found is not None and found[0].unsubscribe is not None:
            ctx.params = found[1]
            await call_quietly(found[0].unsubscribe, ctx, action, meta)
        await self.store.set_status(entry.id, PROCESSED)
        await self.answers.processed(ctx.client_id, entry.id, 0)

    async def subscribe_node(self, node_id: str, channel: str) -> bool:
        """Subscribe a connected node to ``channel`` from the server side (as @logux/server's
        ``server.subscribe``), and tell it with ``logux/subscribed``. False if it is not here."""
        peer = self.registry.peer_of_node(node_id)
        if peer is None or peer.closed:
            return False
        if channel not in peer.subscriptions:
            peer.subscriptions[channel] = Subscription(from_added=await self.store.head())
            if self.registry.subscribe(peer, channel):
                await self.broker.listen([f"channel:{channel}"])
        peer.subscriptions[channel].filters.setdefault("{}", None)
        await self.answers.add({"type": "logux/subscribed", "channel": channel}, nodes=[node_id])
        return True

    def end(self, peer: Peer) -> None:
        """``peer`` left: drop its subscriptions and run each channel's ``unsubscribe`` — unless
        they outlive it (``keeps_subscriptions``: they stay saved for the client's next request).
        """
        # (test doubles written before the flag have none: their subscriptions end with them)
        keeps = getattr(peer, "keeps_subscriptions", False)
        for channel in list(peer.subscriptions):
            self._drop_subscriber(peer, channel)
            if keeps:
                continue
            found = self.app.find_channel(channel)
            if found is not None and found[0].unsubscribe is not None:
                ctx = peer.context()
                ctx.params = found[1]
                action = {"type": "logux/unsubscribe", "channel": channel}
                self.spawn(call_quietly(found[0].unsubscribe, ctx, action, {}))
        peer.subscriptions.clear()

    # -- subscriptions that outlive their peer ----------------------------------------------

    def state(self, peer: Peer) -> dict[str, Any]:
        """What :meth:`saved` keeps of ``peer``'s subscriptions: per channel, the position it
        receives entries after and the subscribe action of each filter (compare two to see
        whether a request changed them)."""
        return {
            channel: {"from": sub.from_added, "subscribe": list(sub.sources.values())}
            for channel, sub in peer.subscriptions.items()
            if sub.sources
        }

    def saved(self, peer: Peer, now: int) -> bytes:
        """``peer``'s subscriptions as the small document :meth:`restore` reads, saved at
        ``now`` (ms)."""
        return orjson.dumps({"channels": self.state(peer), "saved": now})

    async def restore(self, peer: Peer, saved: bytes | None) -> list[str]:
        """Give an authenticated ``peer`` the subscriptions :meth:`saved` kept: each filter's
        predicate made again by its channel rule's ``filter``, the peer registered as the
        channel's subscriber (and the broker listening), as a subscribe would. A channel no rule
        matches any more, or whose ``filter`` fails now, is left out. Returns the channels."""
        if not saved:
            return []
        try:
            channels = orjson.loads(saved)["channels"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.error("unreadable saved subscriptions of %s: dropped", peer.client_id)
            return []
        topics = []
        for channel, state in channels.items():
            found = self.app.find_channel(channel)
            if found is None:
                continue
            rule, params = found
            sub = Subscription(from_added=int(state["from"]))
            for action in state["subscribe"]:
                ctx = peer.context()
                ctx.params = params
                try:
                    predicate = await resolve(rule.filter(ctx, action, {})) if rule.filter else None
                except Exception:
                    logger.exception("filter of %s failed on restore: left out", channel)
                    continue
                key = filter_key(action)
                sub.filters[key] = predicate
                sub.sources[key] = action
            if not sub.filters:
                continue
            peer.subscriptions[channel] = sub
            if self.registry.subscribe(peer, channel):
                topics.append(f"channel:{channel}")
        if topics:
            await self.broker.listen(topics)
        return list(peer.subscriptions)

    def _remove_filter(self, peer: Peer, channel: str, key: str) -> None:
        sub = peer.subscriptions.get(channel)
        if sub is None:
            return
        sub.filters.pop(key, None)
        sub.sources.pop(key, None)
        if not sub.filters:
            del peer.subscriptions[channel]
            self._drop_subscriber(peer, channel)

    def _drop_subscriber(self, peer: Peer, channel: str) -> None:
        if self.registry.unsubscribe(peer, channel):
            self.spawn(self.broker.unlisten([f"channel:{channel}"]))


def saved_at(saved: bytes | None) -> int | None:
    """When a document of :meth:`Subscriptions.saved` was written (ms), if it says."""
    try:
        when = orjson.loads(saved or b"null")["saved"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return when if type(when) is int else None


def filter_key(action: dict[str, Any]) -> str:
    """What tells a channel's subscriptions apart: the subscribe action's ``filter``."""
    return orjson.dumps(action.get("filter") or {}, option=orjson.OPT_SORT_KEYS).decode()


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
