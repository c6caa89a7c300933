"""Optimistic local state: a reducer over the actions in creation order, rolled back on undo.

:class:`LocalState` holds the actions it has seen sorted by ``(time, node id, seq)`` — the order
of Logux's ``isFirstOlder`` (:func:`logsync.protocol.ids.is_first_older`) — and the reducer's
value over them. An action that sorts last is applied at once; one that sorts earlier (written
offline, arriving late) or an undo recomputes the value from the last checkpoint. Only the newest
``window`` actions are kept: older *answered* ones are folded into the checkpoint (an unanswered
action is never folded, so it can always be rolled back). Times of actions from the server are in
this client's clock (the client adds its time fix, as Logux does).

Made by :meth:`logsync_client.Client.state`; read :attr:`LocalState.value`, listen with
:meth:`LocalState.on_change`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

S = TypeVar("S")
Reducer = Callable[[S, dict[str, Any], dict[str, Any]], S]
SortKey = tuple[float, bytes, int, int]


def order_key(meta: dict[str, Any]) -> SortKey:
    """The creation-order key of a meta: ``(time, node id as UTF-16, seq, id's ms)``."""
    ms, node, seq = str(meta["id"]).split(" ")
    # JavaScript compares strings by UTF-16 code units, as is_first_older does
    return float(meta["time"]), node.encode("utf-16-be"), int(seq), int(ms)


class LocalState(Generic[S]):
    """A reducer's value over the actions seen, in creation order. See the module docstring.

    The reducer must not mutate the state it is given (return a new one): a rollback replays
    from the checkpoint's value.
    """

    def __init__(self, reducer: Reducer[S], initial: S, *, window: int = 1000) -> None:
        self._reducer = reducer
        self._base = initial
        self._window = window
        self._keys: list[SortKey] = []
        self._entries: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self._unanswered: set[str] = set()
        self._value = initial
        self._listeners: list[Callable[[S], None]] = []

    @property
    def value(self) -> S:
        return self._value

    @property
    def actions(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The actions kept (beyond the checkpoint), in creation order."""
        return [(action, meta) for _, action, meta in self._entries]

    def on_change(self, listener: Callable[[S], None]) -> Callable[[], None]:
        """Call ``listener(value)`` after each change; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def apply(self, action: dict[str, Any], meta: dict[str, Any], *, answered: bool = True) -> None:
        """Add an action in its creation-order place (``answered=False``: ours, not yet answered
        by the server, so it may be rolled back). An id already here is ignored."""
        action_id = str(meta["id"])
        if any(entry[0] == action_id for entry in self._entries):
            return
        key = order_key(meta)
        place = bisect.bisect_right(self._keys, key)
        self._keys.insert(place, key)
        self._entries.insert(place, (action_id, action, meta))
        if not answered:
            self._unanswered.add(action_id)
        if place == len(self._entries) - 1:
            self._value = self._reducer(self._value, action, meta)
        else:
            self._recompute()
        self._fold()
        self._changed()

    def answered(self, action_id: str) -> None:
        """The server processed our action: it may now be folded into the checkpoint."""
        self._unanswered.discard(action_id)
        self._fold()

    def undo(self, ids: Iterable[str]) -> bool:
        """Roll back these actions (undone by the server); ``True`` if any was here."""
        drop = set(ids)
        self._unanswered -= drop
        kept = [(k, e) for k, e in zip(self._keys, self._entries, strict=True) if e[0] not in drop]
        if len(kept) == len(self._entries):
            return False
        self._keys = [k for k, _ in kept]
        self._entries = [e for _, e in kept]
        self._recompute()
        self._changed()
        return True

    def replace(self, bodies: dict[str, dict[str, Any]]) -> bool:
        """Give kept actions new bodies (a compactor rewrote them in the queue); ``True`` if any
        was here. Their place (id, time) stays."""
        changed = False
        for i, (action_id, _, meta) in enumerate(self._entries):
            if action_id in bodies:
                self._entries[i] = (action_id, bodies[action_id], meta)
                changed = True
        if changed:
            self._recompute()
            self._changed()
        return changed

    def _recompute(self) -> None:
        value = self._base
        for _, action, meta in self._entries:
            value = self._reducer(value, action, meta)
        self._value = value

    def _fold(self) -> None:
        while len(self._entries) > self._window and self._entries[0][0] not in self._unanswered:
            _, action, meta = self._entries.pop(0)
            self._keys.pop(0)
            self._base = self._reducer(self._base, action, meta)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener(self._value)
