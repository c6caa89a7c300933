"""The pending queue: actions made here that the server has not answered yet, and the compaction hook.

:class:`PendingQueue` keeps them in the :class:`~logsync_client.store.Store` (creation order) and
a future per action for ``await client.sync(...)``. Before persisting a new action it asks the
:class:`Compactor`, if one is given, what to keep (the contract is in ``clients/python/README.md``,
"Compaction hook"). Call :meth:`PendingQueue.add` to queue, :meth:`PendingQueue.to_send` /
:meth:`PendingQueue.mark_sent` from a transport, and :meth:`PendingQueue.processed` /
:meth:`PendingQueue.undone` when the server answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from logsync_client.errors import Undone
from logsync_client.store import Store, StoredAction

PendingAction = StoredAction


@dataclass(frozen=True, slots=True)
class Keep:
    """A :class:`Compactor`'s answer: what the queue keeps when a new action arrives.

    ``drop``: ids of offered (never sent) pending actions to remove. ``action``: the new action's
    body to persist (the one offered, or a rewritten one, e.g. merged with dropped ones); ``None``
    persists nothing new. Its meta (id, time) is always the new action's own. ``into``: the id whose
    answer also answers the dropped actions (and the new one if not persisted): by default the new
    action's id when it is persisted, else nothing (their ``sync()`` resolve at once).
    ``rewrite``: new bodies for offered actions that stay (same id, time and place), written in
    the same transaction; ids that were sent meanwhile are left as they are.
    """

    drop: frozenset[str] = field(default_factory=frozenset)
    action: dict[str, Any] | None = None
    into: str | None = None
    rewrite: Mapping[str, dict[str, Any]] = field(default_factory=dict)


class Compactor(Protocol):
    """Decides which pending actions a new one makes redundant (see :class:`Keep`)."""

    def compact(self, offered: Sequence[PendingAction], new: PendingAction) -> Keep:
        """``offered``: the pending actions never handed to a transport, oldest first (those
        sent may already be on the server, so they are not offered). ``new``: the action being
        added (its ``added`` is 0: not stored yet)."""
        ...


# What a meta adds to an action's encoded size in a message, at most (id, time, punctuation).
META_BYTES = 128


def encoded_size(action: dict[str, Any]) -> int:
    """About how many bytes an action takes in a ``sync`` message or a request body."""
    return len(orjson.dumps(action)) + META_BYTES


def batches(
    actions: Sequence[StoredAction], count: int, max_bytes: int
) -> list[list[StoredAction]]:
    """Split actions (in order) into runs of at most ``count`` and about ``max_bytes`` each (an
    action alone is never split: :meth:`~logsync_client.Client.add` refuses larger ones)."""
    runs: list[list[StoredAction]] = []
    run: list[StoredAction] = []
    size = 0
    for action in actions:
        cost = encoded_size(action.action)
        if run and (len(run) >= count or size + cost > max_bytes):
            runs.append(run)
            run, size = [], 0
        run.append(action)
        size += cost
    if run:
        runs.append(run)
    return runs


class PendingQueue:
    """Pending actions in the store plus their waiters; one per client."""

    def __init__(self, store: Store, compactor: Compactor | None = None) -> None:
        self.store = store
        self.compactor = compactor
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # id → ids folded into it by compaction, answered with it
        self._folded: dict[str, list[str]] = {}
        self.last_keep: Keep | None = None
        self.changed = asyncio.Event()  # set on every add: wakes a transport waiting to pull

    def add(
        self, action: dict[str, Any], meta: dict[str, Any], *, clock_ms: int | None = None
    ) -> StoredAction | None:
        """Persist a new action (after asking the compactor); returns it as stored, or None
        when the compactor kept nothing new."""
        new = StoredAction(0, action, meta, False)
        keep = Keep(action=action)
        if self.compactor is not None:
            offered = [p for p in self.store.pending() if not p.sent]
            keep = self.compactor.compact(offered, new)
        self.last_keep = keep  # compaction: what the last add kept (Client.add mirrors it)
        kept_id = meta["id"] if keep.action is not None else None
        stored: StoredAction | None = None
        into = keep.into if keep.into is not None else kept_id
        absorbed = list(keep.drop)
        if keep.action is None:
            absorbed.append(meta["id"])
        rewrite = {i: body for i, body in keep.rewrite.items() if i not in keep.drop}
        if keep.action is not None:
            added = self.store.add_pending(
                keep.action, meta, drop=keep.drop, rewrite=rewrite, clock_ms=clock_ms
            )
            stored = StoredAction(added, keep.action, meta, False)
        else:
            self.store.drop_pending(keep.drop, rewrite=rewrite, clock_ms=clock_ms)
        if into is not None:
            folded = self._folded.setdefault(into, [])
            for action_id in absorbed:
                if action_id != into:
                    folded.append(action_id)
                    folded.extend(self._folded.pop(action_id, []))
        else:
            for action_id in absorbed:
                # (compaction) with those folded into it earlier: they end with it
                for answered in [action_id, *self._folded.pop(action_id, [])]:
                    self._resolve(answered, {"id": answered})
        self.changed.set()
        return stored

    def waiter(self, action_id: str) -> asyncio.Future[dict[str, Any]]:
        """A future resolved with the ``logux/processed`` meta, or failed with :class:`Undone`."""
        future = self._waiters.get(action_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiters[action_id] = future
        return future

    def to_send(self) -> list[StoredAction]:
        """Every pending action, in creation order (a reconnect sends them all again)."""
        return self.store.pending()

    def mark_sent(self, actions: Sequence[StoredAction]) -> None:
        self.store.mark_sent(a.id for a in actions if not a.sent)

    def processed(self, action_id: str, meta: dict[str, Any]) -> bool:
        """The server processed ``action_id``: forget it and resolve its waiters."""
        removed = self.store.remove_pending(action_id)
        for folded in [action_id, *self._folded.pop(action_id, [])]:
            self._resolve(folded, meta)
        return removed

    def undone(self, action_id: str, undo: dict[str, Any]) -> list[str]:
        """The server undid ``action_id``: forget it, fail its waiters; returns every id it
        answers (itself and those folded into it), for rolling back local state."""
        self.store.remove_pending(action_id)
        ids = [action_id, *self._folded.pop(action_id, [])]
        for folded in ids:
            future = self._waiters.pop(folded, None)
            if future is not None and not future.done():
                future.set_exception(Undone(undo))
        return ids

    def fail_all(self, error: BaseException) -> None:
        """The client stopped for good: fail every waiter (the actions stay in the store)."""
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(error)
        self._waiters.clear()

    def _resolve(self, action_id: str, meta: dict[str, Any]) -> None:
        future = self._waiters.pop(action_id, None)
        if future is not None and not future.done():
            future.set_result(meta)
