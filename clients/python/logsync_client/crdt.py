"""CRDT helpers that converge with the server's SyncMap and with @logux/client: pure, no I/O.

* :class:`LWWMap` — one SyncMap record (``<plural>/create|created|change|changed|delete|deleted``
  with ``{id, fields}``): each field keeps the value of the change with the newest *stamp*
  ``(meta.time, meta.id)``, compared as ``isFirstOlder`` of @logux/core does (time, then node id,
  then seq, then the id's ms) — what @logux/client's ``syncMapTemplate`` does per field
  (``changeIfLast``) and what ``logsync.syncmap`` asks of an app (``ChangedAt`` per field).
  :class:`SyncMapState` is the ``plural``'s collection of them, routed by ``action.id``.
* :class:`GSet` — a grow-only set of actions (a chat's messages), one element per key (the
  action id by default), read in creation order: every replica lists them in the same order.
* :class:`Counter` — a PN-counter over ``{type, by: n}`` actions, each counted once by its id.

Every helper has ``apply(action, meta)`` (idempotent, commutative: any order, any repetition of
the same actions gives the same state) and ``merge(other)`` (the state-based join). Feed them every
action of the type, one's own (when made, optimistically) and the server's (as received).

What the server does not decide for these helpers, and the rule chosen:

* A delete is a tombstone at its stamp: fields set by older changes go, a change older than the
  delete that arrives later is ignored, a create/change newer than it brings the record back (the
  server pops the record and a later create makes it anew; in arrival order that is the same
  outcome whenever the delete is the newest action of the record, as it is in practice).
* ``logux/undo`` of an own optimistic change is not handled here (the field's previous value is
  gone): use :meth:`SyncMapState.applied` as the reducer of ``Client.state(...)``, whose
  ``LocalState`` replays the actions left after an undo (and follows the compacted queue).
* The server has no counter type: :class:`Counter` needs only that the actions reach every replica
  once or more (a channel's resend does that); the sum does not depend on order.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from logsync.protocol.ids import is_first_older

Action = Mapping[str, Any]
Meta = Mapping[str, Any]
# (meta.time, meta.id): the order of two changes of one field
Stamp = tuple[float, str]

RECORD_VERBS = frozenset({"create", "created", "change", "changed", "delete", "deleted"})


def stamp_of(meta: Meta) -> Stamp:
    """The stamp ``(time, id)`` of an action's meta (time defaults to the id's ms)."""
    action_id = str(meta["id"])
    time = meta.get("time")
    if not isinstance(time, int | float) or isinstance(time, bool):
        time = int(action_id.split(" ", 1)[0])
    return (time, action_id)


def wins(new: Stamp, old: Stamp | None) -> bool:
    """Whether a change stamped ``new`` replaces one stamped ``old`` (``None``: nothing yet).

    ``isFirstOlder(old, new)``: equal stamps (the same action again) do not win."""
    return old is None or is_first_older(old, new)


def creation_key(stamp: Stamp) -> tuple[float, bytes, int, int]:
    """A sort key giving :func:`is_first_older`'s order (node ids compared as UTF-16, as in JS)."""
    time, action_id = stamp
    ms, node, seq = action_id.split(" ")
    return (time, node.encode("utf-16-be"), int(seq), int(ms))


def split_type(kind: object) -> tuple[str, str] | None:
    """``"notes/change"`` → ``("notes", "change")`` for the six SyncMap verbs, else ``None``."""
    if not isinstance(kind, str) or "/" not in kind:
        return None
    plural, verb = kind.rsplit("/", 1)
    if not plural or verb not in RECORD_VERBS:
        return None
    return plural, verb


@dataclass(slots=True)
class LWWMap:
    """One SyncMap record: per-field last-writer-wins by stamp, with a delete tombstone.

    Call :meth:`apply` with each of the record's actions (any order); read :attr:`exists`,
    :meth:`value`, ``fields`` and ``stamps``. :meth:`set` and :meth:`delete` are the same
    operations without an action.
    """

    fields: dict[str, Any] = field(default_factory=dict)
    stamps: dict[str, Stamp] = field(default_factory=dict)
    # the newest create/change applied since the newest delete (None: none), and that delete
    alive: Stamp | None = None
    deleted: Stamp | None = None

    @property
    def exists(self) -> bool:
        """Created or changed more recently than deleted."""
        return self.alive is not None and wins(self.alive, self.deleted)

    def value(self) -> dict[str, Any] | None:
        """The fields, or ``None`` when the record does not exist."""
        return dict(self.fields) if self.exists else None

    def apply(self, action: Action, meta: Meta) -> dict[str, Any]:
        """Apply a ``<plural>/create|created|change|changed|delete|deleted`` of this record;
        returns the fields whose value this changed (``{}`` for a delete or a losing change)."""
        parts = split_type(action.get("type"))
        if parts is None:
            raise ValueError(f"not a SyncMap action: {action.get('type')!r}")
        if parts[1] in ("delete", "deleted"):
            self.delete(stamp_of(meta))
            return {}
        fields = action.get("fields")
        if not isinstance(fields, Mapping):
            raise ValueError("a SyncMap create/change needs an object of fields")
        return self.set(fields, stamp_of(meta))

    def set(self, fields: Mapping[str, Any], stamp: Stamp) -> dict[str, Any]:
        """Set each field whose current stamp is older than ``stamp``; returns those set."""
        if not wins(stamp, self.deleted):
            return {}
        if wins(stamp, self.alive):
            self.alive = stamp
        changed: dict[str, Any] = {}
        for key, value in fields.items():
            if wins(stamp, self.stamps.get(key)):
                self.fields[key] = value
                self.stamps[key] = stamp
                changed[key] = value
        return changed

    def delete(self, stamp: Stamp) -> None:
        """Tombstone at ``stamp``: drop the fields set by older changes."""
        if not wins(stamp, self.deleted):
            return
        self.deleted = stamp
        if self.alive is not None and not wins(self.alive, stamp):
            self.alive = None
        for key in [k for k, s in self.stamps.items() if not wins(s, stamp)]:
            del self.fields[key]
            del self.stamps[key]

    def merge(self, other: LWWMap) -> None:
        """Join with another replica's state of the same record."""
        if other.deleted is not None:
            self.delete(other.deleted)
        if other.alive is not None:
            self.set({}, other.alive)
        for key, value in other.fields.items():
            self.set({key: value}, other.stamps[key])


class SyncMapState:
    """Every record of one SyncMap ``plural``, as :class:`LWWMap` by id.

    :meth:`apply` takes any action and ignores those not of this plural; :meth:`value` is the
    collection ``{id: fields}`` of the records that exist; ``records[id]`` the per-record state.
    """

    def __init__(self, plural: str) -> None:
        self.plural = plural
        self.records: dict[str, LWWMap] = {}

    def apply(self, action: Action, meta: Meta) -> dict[str, Any]:
        """Apply an action of this plural (see :meth:`LWWMap.apply`); others return ``{}``."""
        parts = split_type(action.get("type"))
        record_id = action.get("id")
        if parts is None or parts[0] != self.plural or not isinstance(record_id, str):
            return {}
        return self.record(record_id).apply(action, meta)

    def applied(self, action: Action, meta: Meta) -> SyncMapState:
        """A new state with the action applied, this one unchanged (only the record it touches
        is copied): the reducer of ``Client.state(lambda s, a, m: s.applied(a, m),
        SyncMapState("notes"))``, which the client replays on an undo."""
        parts = split_type(action.get("type"))
        record_id = action.get("id")
        if parts is None or parts[0] != self.plural or not isinstance(record_id, str):
            return self
        new = SyncMapState(self.plural)
        new.records = dict(self.records)
        old = self.records.get(record_id)
        copy = (
            LWWMap()
            if old is None
            else LWWMap(dict(old.fields), dict(old.stamps), old.alive, old.deleted)
        )
        new.records[record_id] = copy
        try:
            copy.apply(action, meta)
        except ValueError:
            return self
        return new

    def record(self, record_id: str) -> LWWMap:
        """The state of one record (an empty one, not existing, if nothing was applied)."""
        record = self.records.get(record_id)
        if record is None:
            record = self.records[record_id] = LWWMap()
        return record

    def value(self) -> dict[str, dict[str, Any]]:
        return {rid: dict(r.fields) for rid, r in self.records.items() if r.exists}

    def merge(self, other: SyncMapState) -> None:
        for record_id, record in other.records.items():
            self.record(record_id).merge(record)


Key = Callable[[Action, Meta], Any]


def _by_id(action: Action, meta: Meta) -> Any:
    return str(meta["id"])


class GSet:
    """A grow-only set of actions of the given ``types`` (all types when ``None``).

    One element per ``key(action, meta)`` (default: the action id; the first stamp seen for a
    key wins, so replicas agree on each element's position). :meth:`items` lists
    ``(action, meta)`` in creation order — the same on every replica, whatever order the actions
    arrived in.
    """

    def __init__(self, types: Iterable[str] | None = None, key: Key = _by_id) -> None:
        self.types = None if types is None else frozenset(types)
        self.key = key
        self._elements: dict[Any, tuple[Stamp, Action, Meta]] = {}
        self._order: list[tuple[tuple[float, bytes, int, int], Any]] = []

    def apply(self, action: Action, meta: Meta) -> bool:
        """Add the action's element; ``True`` if it was new (or took an older stamp)."""
        if self.types is not None and action.get("type") not in self.types:
            return False
        return self._add(self.key(action, meta), stamp_of(meta), action, meta)

    def _add(self, key: Any, stamp: Stamp, action: Action, meta: Meta) -> bool:
        known = self._elements.get(key)
        if known is not None:
            if not is_first_older(stamp, known[0]):
                return False
            self._order.remove((creation_key(known[0]), key))
        self._elements[key] = (stamp, action, meta)
        bisect.insort(self._order, (creation_key(stamp), key), key=lambda item: item[0])
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._elements

    def __len__(self) -> int:
        return len(self._elements)

    def __iter__(self) -> Iterator[Any]:
        return (key for _, key in self._order)

    def items(self) -> list[tuple[Action, Meta]]:
        """Every element's ``(action, meta)``, oldest first."""
        return [self._elements[key][1:] for _, key in self._order]

    def merge(self, other: GSet) -> None:
        for key, (stamp, action, meta) in other._elements.items():
            self._add(key, stamp, action, meta)


class Counter:
    """A PN-counter: each action of ``types`` adds its ``field`` (a number, default ``by``,
    negative to decrement) once, by action id; :attr:`value` is the sum.

    :attr:`increments` and :attr:`decrements` are the P and N halves; :meth:`per_node` the
    contributions by node id. The state is the set of counted ids (the log's own dedupe key).
    Sums are exact (integers, or ``math.fsum``), so the order of arrival never shows.
    """

    def __init__(self, types: Iterable[str], field: str = "by") -> None:
        self.types = frozenset(types)
        self.field = field
        self._deltas: dict[str, int | float] = {}

    @property
    def increments(self) -> int | float:
        return _exact_sum(d for d in self._deltas.values() if d > 0)

    @property
    def decrements(self) -> int | float:
        return -_exact_sum(d for d in self._deltas.values() if d < 0)

    @property
    def value(self) -> int | float:
        return _exact_sum(self._deltas.values())

    def apply(self, action: Action, meta: Meta) -> bool:
        """Count the action once; ``True`` if it changed the counter (new id of a counted type)."""
        if action.get("type") not in self.types:
            return False
        delta = action.get(self.field, 1)
        if not isinstance(delta, int | float) or isinstance(delta, bool):
            raise ValueError(f"{action.get('type')}: {self.field!r} must be a number")
        return self._count(str(meta["id"]), delta)

    def _count(self, action_id: str, delta: int | float) -> bool:
        if action_id in self._deltas:
            return False
        self._deltas[action_id] = delta
        return True

    def per_node(self) -> dict[str, int | float]:
        by_node: dict[str, list[int | float]] = {}
        for action_id, delta in self._deltas.items():
            by_node.setdefault(action_id.split(" ")[1], []).append(delta)
        return {node: _exact_sum(deltas) for node, deltas in by_node.items()}

    def merge(self, other: Counter) -> None:
        for action_id, delta in other._deltas.items():
            self._count(action_id, delta)


def _exact_sum(values: Iterable[int | float]) -> int | float:
    # ints add exactly; floats through fsum, which does not depend on the order
    items = list(values)
    if all(isinstance(v, int) for v in items):
        return sum(items)
    return math.fsum(items)
