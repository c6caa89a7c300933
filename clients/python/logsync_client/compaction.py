"""Compaction of pending SyncMap actions: what the pending queue keeps when a new one arrives.

:class:`Compactor` is the pending queue's compactor (the hook of ``clients/python/README.md``
"Compaction hook": ``compact(offered, new) -> Keep``). It is pure: no I/O, only what it is told.
Wire it to a client like this (the feeds give it each record's last server state)::

    compactor = Compactor(["notes"])
    client = Client(url, user, token, store="app.db", compactor=compactor)
    compactor.track(client.pending())
    for kind in ("notes/created", "notes/changed", "notes/deleted"):
        client.on(kind, compactor.observe)
    client.on("logux/processed", lambda action, meta: compactor.processed(action["id"]))
    client.on("logux/undo", lambda action, meta: compactor.undone(action["id"]))

``track`` (or ``pending=``): the actions still waiting for an answer at start-up, sent ones
included (it must know what may already be on the server). ``observe`` takes every action received;
``processed``/``undone`` the answers to own actions. The server's order, not the stamps, says
whether a record exists (a create makes it anew, a delete removes it); its fields are
last-writer-wins (:class:`~logsync_client.crdt.LWWMap`).

Record actions are ``<plural>/create {id, fields}``, ``<plural>/change {id, fields}`` and
``<plural>/delete {id}`` (``logsync.syncmap``), for the ``plurals`` given (all when ``None``);
every other action is kept as it is. The server applies a change per field, last-writer-wins on
the change's ``meta.time`` (an action has one time for all its fields), so the rules are:

1. **A field travels with its newest write.** A new change takes the field out of the older
   pending (never sent) changes of the record; an older change left without fields is dropped
   (answered with the new one). Fields are never moved to another action: each keeps its own
   ``meta.time``, so the server ends with the same values *and* the same field times as if every
   change were sent. Two changes of different fields thus stay two actions (at most one per
   distinct time); a change of the same fields replaces the older one. A new change older than a
   pending write of a field (a clock that went back) loses that field, as it would on the server.
2. **A create absorbs the changes that follow it** while it is not sent: nothing can have
   changed a record the server does not have yet, so its fields may take the create's time. The
   create keeps its place (a change of a record pending creation never goes before it): with
   rewrites its fields take the newer values in place and the change is answered with it;
   without, a create that is the queue's last action is re-queued as the new action (the
   change's id and time) with the merged fields, and otherwise the change is queued after it.
3. **A change back to the last server state** drops the field, and the change when no field is
   left — provided nothing of the record is pending or in flight that would make the server's
   state differ (a create, a delete, a sent write of the field). A concurrent writer's value
   then stays, where sending the change would have overwritten it: the client meant "no
   change". For both clients to agree, the optimistic state must follow the queue, not the
   actions as made: ``Client.add`` removes the dropped actions from its ``state()`` views and
   applies the kept body (tests/client/test_convergence.py shows the case).
4. **A delete drops the pending changes** of the record (their ``change`` callbacks do not run
   on the server). **Create then delete sends nothing**: when the create is not sent and the
   record is not known on the server (a create of a record the server has would be undone, and
   the delete would then matter), the create, its changes and the delete all go (answered at
   once) — unless ``references(action)`` says another pending action after the create names the
   record (``{(plural, id)}``; none by default).
5. Order is never changed: an action is only dropped or, with rewrites, given fewer or newer
   field values in place. Actions of other records are not touched.

Assumed: own actions' times never go back (the client's clock keeps its floor across restarts),
and a create is of a new record unless the server state says the record exists.

Rewrites: the queue's ``Keep`` carries ``rewrite`` (an offered action's new body, same meta and
place: the store rewrites the row in the add's transaction, ``Client.add`` replaces it in its
states). ``Compactor(rewrite=False)`` plans without them, for a queue that cannot: rule 1 then
drops an older change only when the new one covers all its fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from logsync.syncmap import same_value
from logsync_client.crdt import LWWMap, Stamp, split_type, stamp_of, wins
from logsync_client.pending import Keep

Body = dict[str, Any]
RecordKey = tuple[str, str]  # (plural, id)
References = Callable[[Mapping[str, Any]], Iterable[RecordKey]]


class Queued(Protocol):
    """A pending action as the queue hands it over (``StoredAction`` is one)."""

    @property
    def action(self) -> dict[str, Any]: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    @property
    def id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Plan:
    """What the queue should hold after a new action: ``drop`` these offered ids, ``rewrite``
    these offered ids' bodies (same meta, same place), persist ``action`` (the new action's body,
    maybe with fewer fields; ``None``: nothing) with the new meta; ``into``: the id whose answer
    also answers the dropped ones (and the new one if not persisted), ``None`` with nothing
    persisted: they are answered at once. :meth:`apply` does it to a list."""

    drop: frozenset[str] = frozenset()
    rewrite: Mapping[str, Body] = field(default_factory=dict)
    action: Body | None = None
    into: str | None = None

    def apply(self, queue: Sequence[Entry], new_meta: Mapping[str, Any]) -> list[Entry]:
        """The queue (``[Entry]``, oldest first) after this plan."""
        kept = [
            Entry(self.rewrite.get(e.id, e.action), e.meta) for e in queue if e.id not in self.drop
        ]
        if self.action is not None:
            kept.append(Entry(self.action, dict(new_meta)))
        return kept


@dataclass(frozen=True, slots=True)
class Entry:
    """A pending action: body and meta (``id``, ``time``)."""

    action: dict[str, Any]
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.meta["id"])


@dataclass(slots=True)
class _Slot:
    """An own action waiting for its answer, as the compactor follows it."""

    action: Body
    meta: dict[str, Any]
    key: RecordKey | None
    verb: str
    # a create's fields absorbed from later changes: their own stamps
    stamps: dict[str, Stamp] = field(default_factory=dict)

    @property
    def stamp(self) -> Stamp:
        return stamp_of(self.meta)

    @property
    def fields(self) -> Mapping[str, Any]:
        fields = self.action.get("fields")
        return fields if isinstance(fields, Mapping) else {}

    def field_stamp(self, name: str) -> Stamp:
        return self.stamps.get(name, self.stamp)


def record_key(
    action: Mapping[str, Any], plurals: frozenset[str] | None
) -> tuple[RecordKey, str] | None:
    """``((plural, id), verb)`` of a client record action (create/change/delete), else ``None``."""
    parts = split_type(action.get("type"))
    record_id = action.get("id")
    if parts is None or not isinstance(record_id, str) or not record_id or "/" in record_id:
        return None
    plural, verb = parts
    if plurals is not None and plural not in plurals:
        return None
    if verb in ("create", "change") and not isinstance(action.get("fields"), Mapping):
        return None
    return (plural, record_id), verb


class Compactor:
    """Plans the pending queue of record actions (see the module docs for the rules and feeds).

    :meth:`compact` is the queue's hook; :meth:`plan` is the same decision as a :class:`Plan`
    (with ``rewrite``), :meth:`server_record` the last server state it knows of a record.
    """

    def __init__(
        self,
        plurals: Iterable[str] | None = None,
        *,
        pending: Iterable[Queued] = (),
        rewrite: bool = True,
        references: References | None = None,
    ) -> None:
        """``rewrite``: plan in-place rewrites of offered actions (``Keep.rewrite``)."""
        self.plurals = None if plurals is None else frozenset(plurals)
        self.rewrite = rewrite
        self.references = references
        self._slots: dict[str, _Slot] = {}  # own unanswered actions by id, oldest first
        self._server: dict[RecordKey, LWWMap] = {}
        # set by _change for _follow: the create absorbing the new change, its fields' stamps
        self._absorbed: tuple[str, dict[str, Stamp]] | None = None
        self.track(pending)

    def track(self, pending: Iterable[Queued]) -> None:
        """Follow these pending actions (the queue's, at start-up: sent ones too)."""
        for queued in pending:
            if queued.id not in self._slots:
                self._track(queued.action, queued.meta)

    # -- feeds ---------------------------------------------------------------------------------

    def observe(self, action: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """An action received from the server: ``<plural>/created|changed|deleted`` update the
        record's last server state; anything else is ignored."""
        parts = split_type(action.get("type"))
        record_id = action.get("id")
        if parts is None or parts[1] not in ("created", "changed", "deleted"):
            return
        if not isinstance(record_id, str):
            return
        if self.plurals is not None and parts[0] not in self.plurals:
            return
        fields = action.get("fields")
        if parts[1] != "deleted" and not isinstance(fields, Mapping):
            return
        verb = {"created": "create", "changed": "change", "deleted": "delete"}[parts[1]]
        self._server_did((parts[0], record_id), verb, fields or {}, stamp_of(meta))

    def processed(self, action_id: str) -> None:
        """The server processed an own action: it is now part of the server state."""
        slot = self._slots.pop(action_id, None)
        if slot is not None and slot.key is not None:
            # the server stamps every field with the action's one time
            self._server_did(slot.key, slot.verb, slot.fields, slot.stamp)

    def _server_did(
        self, key: RecordKey, verb: str, fields: Mapping[str, Any], stamp: Stamp
    ) -> None:
        # The server's order, not the stamps, decides whether a record exists: a create makes
        # it anew and a delete removes it whatever their times; fields are last-writer-wins.
        if verb in ("create", "delete"):
            self._server[key] = LWWMap()
        if verb != "delete":
            self.server_record(key).set(fields, stamp)

    def undone(self, action_id: str) -> None:
        """The server undid an own action: it changed nothing there."""
        self._slots.pop(action_id, None)

    def server_record(self, key: RecordKey) -> LWWMap:
        """The last server state known of ``(plural, id)`` (empty, not existing, if none)."""
        record = self._server.get(key)
        if record is None:
            record = self._server[key] = LWWMap()
        return record

    # -- the hook ------------------------------------------------------------------------------

    def compact(self, offered: Sequence[Queued], new: Queued) -> Keep:
        """The pending queue's hook: :meth:`plan` as a ``Keep``."""
        plan = self.plan(offered, new)
        return Keep(plan.drop, plan.action, plan.into, plan.rewrite)

    def plan(self, offered: Sequence[Queued], new: Queued) -> Plan:
        """Decide what the queue keeps when ``new`` arrives; ``offered``: the pending actions not
        sent yet, oldest first. The compactor then follows the result as applied."""
        for queued in offered:
            if queued.id not in self._slots:
                self._track(queued.action, queued.meta)
        parsed = record_key(new.action, self.plurals)
        if parsed is None:
            plan = Plan(action=new.action)
        else:
            key, verb = parsed
            mine = [s for s in self._slots.values() if s.key == key]
            if verb == "change":
                plan = self._change(key, new, mine, offered)
            elif verb == "delete":
                plan = self._delete(key, new, mine, offered)
            else:
                plan = Plan(action=new.action)
        self._follow(plan, new)
        return plan

    # -- rules ---------------------------------------------------------------------------------

    def _change(
        self, key: RecordKey, new: Queued, mine: list[_Slot], offered: Sequence[Queued]
    ) -> Plan:
        offered_ids = {q.id for q in offered}
        stamp = stamp_of(new.meta)
        fields: dict[str, Any] = dict(new.action["fields"])
        tail = _after_last_delete(mine)
        # rule 1: take the fields out of the older changes (or lose them to a newer write)
        remaining = {s.meta["id"]: dict(s.fields) for s in tail if s.verb == "change"}
        for name in list(fields):
            carriers = [s for s in tail if name in s.fields]
            if any(not wins(stamp, s.field_stamp(name)) for s in carriers):
                del fields[name]
                continue
            for slot in carriers:
                if slot.verb == "change" and slot.meta["id"] in offered_ids:
                    remaining[slot.meta["id"]].pop(name, None)
        drop: set[str] = set()
        rewrite: dict[str, Body] = {}
        for slot in tail:
            action_id = slot.meta["id"]
            if slot.verb != "change" or action_id not in offered_ids:
                continue
            left = remaining[action_id]
            if not left:
                drop.add(action_id)
            elif len(left) < len(slot.fields):
                if self.rewrite:
                    rewrite[action_id] = {**slot.action, "fields": left}
                else:
                    remaining[action_id] = dict(slot.fields)  # kept whole
        # rule 2: the record's only create, not sent, first of its incarnation, absorbs
        creates = [s for s in tail if s.verb == "create"]
        if (
            fields
            and len(creates) == 1
            and tail[0] is creates[0]
            and creates[0].meta["id"] in offered_ids
            and not self.server_record(key).exists
        ):
            create = creates[0]
            create_id = create.meta["id"]
            merged = {**create.action, "fields": {**create.fields, **fields}}
            if self.rewrite:
                rewrite[create_id] = merged
                self._absorbed = (create_id, {name: stamp for name in fields})
                return Plan(frozenset(drop), rewrite, None, create_id)
            if offered[-1].id == create_id:
                # the queue's last action: re-queued as the new one, nothing moves past it
                return Plan(frozenset(drop | {create_id}), rewrite, merged, None)
        # rule 3: back to the last server state
        server = self._server.get(key)
        if (
            server is not None
            and server.exists
            and not any(s.verb in ("create", "delete") for s in mine)
        ):
            still = {
                name
                for s in mine
                if s.verb == "change" and s.meta["id"] not in drop
                for name in remaining.get(s.meta["id"], s.fields)
            }
            for name in list(fields):
                if (
                    name in server.fields
                    and name not in still
                    and same_value(server.fields[name], fields[name])
                ):
                    del fields[name]
        if not fields:
            return Plan(frozenset(drop), rewrite, None, None)
        return Plan(frozenset(drop), rewrite, {**new.action, "fields": fields}, None)

    def _delete(
        self, key: RecordKey, new: Queued, mine: list[_Slot], offered_list: Sequence[Queued]
    ) -> Plan:
        offered = {q.id for q in offered_list}
        tail = _after_last_delete(mine)
        changes = {s.meta["id"] for s in tail if s.verb == "change" and s.meta["id"] in offered}
        creates = [s for s in tail if s.verb == "create"]
        if (
            len(creates) == 1
            and tail[0] is creates[0]
            and all(s.meta["id"] in offered for s in tail)
            and not self.server_record(key).exists
            and not self._referred(key, creates[0].meta["id"])
        ):
            return Plan(frozenset(s.meta["id"] for s in tail), {}, None, None)
        return Plan(frozenset(changes), {}, new.action, None)

    def _referred(self, key: RecordKey, since_id: str) -> bool:
        """Whether an own pending action after ``since_id`` names ``key`` (``references``)."""
        if self.references is None:
            return False
        after = False
        for action_id, slot in self._slots.items():
            if action_id == since_id:
                after = True
            elif after and slot.key != key and key in set(self.references(slot.action)):
                return True
        return False

    # -- bookkeeping ---------------------------------------------------------------------------

    def _track(self, action: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        parsed = record_key(action, self.plurals)
        if parsed is None and self.references is None:
            return  # only ``references`` looks at other actions
        key, verb = parsed if parsed is not None else (None, "")
        self._slots[str(meta["id"])] = _Slot(dict(action), dict(meta), key, verb)

    def _follow(self, plan: Plan, new: Queued) -> None:
        """Update the followed actions as the queue will hold them after ``plan``."""
        for action_id in plan.drop:
            self._slots.pop(action_id, None)
        for action_id, body in plan.rewrite.items():
            self._slots[action_id].action = dict(body)
        if self._absorbed is not None:
            absorbed_id, stamps = self._absorbed
            self._slots[absorbed_id].stamps.update(stamps)
            self._absorbed = None
        if plan.action is not None:
            self._track(plan.action, new.meta)


def _after_last_delete(slots: list[_Slot]) -> list[_Slot]:
    """The slots of the record's current incarnation: those after its last pending delete."""
    for index in range(len(slots) - 1, -1, -1):
        if slots[index].verb == "delete":
            return slots[index + 1 :]
    return slots
