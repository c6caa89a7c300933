"""SyncMap: maps of fields kept in sync with @logux/client's ``syncMapTemplate`` and ``createFilter``.

The Python side of @logux/server's ``addSyncMap`` / ``addSyncMapFilter``, built only on the rules
API (:meth:`App.type`, :meth:`App.channel`) and the :class:`~logsync.app.Outbox` (``add`` /
``subscribe``). For a plural name such as ``notes``::

    add_sync_map(app, "notes", access=..., load=..., create=..., change=..., delete=...)
    add_sync_map_filter(app, "notes", access=..., initial=...)

Protocol (``notes`` as the plural):

* a client sends ``notes/create`` ``{id, fields}``, ``notes/change`` ``{id, fields}`` (a part of
  the fields) and ``notes/delete`` ``{id}``; the server checks ``access``, calls the callback and
  then, unless it returned ``False``, adds ``notes/created`` / ``notes/changed`` /
  ``notes/deleted`` with ``meta.time`` = the client action's time, to every subscriber of
  ``notes`` and ``notes/<id>`` but the sending client (``notes/deleted``: ``notes/<id>`` only).
  Clients may not send those three types themselves (undo ``denied``).
* ``logux/subscribe {channel: "notes/<id>"}`` checks ``access`` and sends the map as one
  ``notes/changed`` per change time (``meta.time`` = that time), skipping times older than the
  subscription's ``since.time``; nothing with ``creating: true`` (a map the client is creating).
* ``logux/subscribe {channel: "notes", filter: {...}}`` sends every map ``initial`` returns:
  a server-side subscription to ``notes/<id>`` (``logux/subscribed``) and its fields as above.
  Later ``notes/created`` reach that subscriber only when every filter key equals the created
  field, ``notes/changed`` only when no filter key it changes contradicts the filter.

Clients merge fields by last-writer-wins on ``meta.time``, so ``load`` and ``initial`` report for
each field the time it was last changed: wrap it in :class:`ChangedAt`. A field wrapped in
:class:`NoConflictResolution` (or left unwrapped) is always sent, stamped with the server's current
time, so it wins over older changes on the client.

Callbacks (plain functions or coroutine functions). ``id`` is the map id (a string), ``time`` the
client action's ``meta.time`` in ms, ``since`` the subscription's ``since.time`` or 0, and
``action``/``meta`` the client action as received:

* ``access(ctx, id, action, meta) -> bool`` — for the three client types and the
  ``<plural>/<id>`` channel; false → undo ``denied``.
* ``load(ctx, id, since, action, meta) -> {field: ChangedAt | NoConflictResolution | value}``,
  or ``False``/``None`` → undo ``notFound`` (an ``id`` key in the dict is ignored).
* ``create(ctx, id, fields, time, action, meta)`` and ``change(...)`` (same arguments),
  ``delete(ctx, id, action, meta)`` — return ``False`` to store without resending.
* filter ``access(ctx, filter, action, meta) -> bool`` (``filter`` is ``{}`` when absent).
* ``initial(ctx, filter, since, action, meta)`` — an iterable of maps ``{"id": …, field: …}``.
* ``actions(ctx, filter, action, meta)`` — an extra predicate ``(action, meta) -> bool`` (or
  ``None``) for which later ``<plural>`` channel actions the filter subscriber receives.

Raise :class:`~logsync.app.Undo` (or :class:`~logsync.app.NotFound`) from any callback for a
``logux/undo`` with that reason; the client then reverts its optimistic change. A malformed
action (``id`` not a non-empty string without ``/``, ``fields`` not an object, ``filter`` not an
object) is undone with ``error``.

Differences from @logux/server: what ``load``/``initial`` send goes to the subscribing client only
(not resent to every subscriber of the channels); the groups of a map sent to a filter subscriber
start with those holding a filter key (@logux/client's ``createFilter`` builds the list item from
the first ``changed`` it gets); ``created``/``changed`` filtering looks at this plural's types
only; a ``Undo`` from ``create``/``change``/``delete`` keeps its reason (the reference says
``error``); and a resubscription with a known ``since`` gets the channels' history from the log
instead of ``load``/``initial`` (see ``logsync.engine.subscriptions``) — for a filter, the server-side
item subscriptions that ended with the old connection are then restored (``initial`` is called
for the ids; fields are not sent again).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from logsync.app import (
    Action,
    App,
    Context,
    Filter,
    MaybeAwaitable,
    Meta,
    NotFound,
    Undo,
    resolve,
)

T = TypeVar("T")

Fields = dict[str, Any]
SyncMapAccess = Callable[[Context, str, Action, Meta], MaybeAwaitable[bool]]
SyncMapLoad = Callable[
    [Context, str, int, Action, Meta], MaybeAwaitable[Mapping[str, Any] | Literal[False] | None]
]
SyncMapWrite = Callable[[Context, str, Fields, int, Action, Meta], MaybeAwaitable[bool | None]]
SyncMapDelete = Callable[[Context, str, Action, Meta], MaybeAwaitable[bool | None]]
FilterAccess = Callable[[Context, Fields, Action, Meta], MaybeAwaitable[bool]]
FilterInitial = Callable[
    [Context, Fields, int, Action, Meta], MaybeAwaitable[Iterable[Mapping[str, Any]]]
]
FilterActions = Callable[[Context, Fields, Action, Meta], MaybeAwaitable[Filter | None]]


@dataclass(frozen=True, slots=True)
class ChangedAt(Generic[T]):
    """A field's value and the time (ms, the ``meta.time`` of the change) it was last changed."""

    value: T
    time: int


@dataclass(frozen=True, slots=True)
class NoConflictResolution(Generic[T]):
    """A field value without a change time: always sent, stamped with the server's current time."""

    value: T


# -- the pure parts ------------------------------------------------------------------------------


def group_fields(fields: Mapping[str, Any], since: int = 0) -> list[tuple[int | None, Fields]]:
    """Split a map's fields into groups of one change time: ``[(time, {field: value})]``.

    :class:`ChangedAt` fields are grouped by their time, oldest first, and groups older than
    ``since`` are dropped (a group at exactly ``since`` is kept). :class:`NoConflictResolution`
    and unwrapped fields form the last group, with time ``None`` (sent with the current time),
    whatever ``since`` is. The ``id`` key is not a field.
    """
    timed: dict[int, Fields] = {}
    untimed: Fields = {}
    for key, value in fields.items():
        if key == "id":
            continue
        if isinstance(value, ChangedAt):
            timed.setdefault(_time(value.time), {})[key] = value.value
        elif isinstance(value, NoConflictResolution):
            untimed[key] = value.value
        else:
            untimed[key] = value
    groups: list[tuple[int | None, Fields]] = [
        (time, timed[time]) for time in sorted(timed) if time >= since
    ]
    if untimed:
        groups.append((None, untimed))
    return groups


def changed_actions(
    plural: str,
    map_id: str,
    fields: Mapping[str, Any],
    since: int = 0,
    *,
    first_keys: Iterable[str] = (),
) -> list[tuple[Action, Meta | None]]:
    """The ``<plural>/changed`` actions (and metas) that send a map: one per :func:`group_fields`
    group, ``meta.time`` = the group's time (``None`` meta: the current time).

    Groups holding one of ``first_keys`` go first (stable otherwise): @logux/client's filter
    judges a map by the first ``changed`` it gets, so it should see the filter's fields.
    """
    groups = group_fields(fields, since)
    keys = set(first_keys)
    if keys:
        groups.sort(key=lambda group: keys.isdisjoint(group[1]))
    return [
        (
            {"type": f"{plural}/changed", "id": map_id, "fields": group},
            None if time is None else {"time": time},
        )
        for time, group in groups
    ]


def same_value(a: Any, b: Any) -> bool:
    """Equality as JavaScript's ``===`` sees JSON values, except that lists and objects are
    compared by content: ``True`` is not ``1``, ``1`` is ``1.0``."""
    a_number = isinstance(a, int | float) and not isinstance(a, bool)
    b_number = isinstance(b, int | float) and not isinstance(b, bool)
    if a_number or b_number:
        return a_number and b_number and bool(a == b)
    return type(a) is type(b) and bool(a == b)


def created_matches(filter: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """A created map belongs to a filtered list when every filter key equals its field."""
    return all(key in fields and same_value(fields[key], want) for key, want in filter.items())


def changed_matches(filter: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """A change concerns a filtered list unless one of the fields it sets contradicts the filter."""
    return all(key not in fields or same_value(fields[key], want) for key, want in filter.items())


def filter_predicate(
    plural: str, filter: Mapping[str, Any], custom: Filter | None = None
) -> Filter:
    """Which later ``plural`` channel actions a filter subscriber receives: ``<plural>/created``
    per :func:`created_matches`, ``<plural>/changed`` per :func:`changed_matches`, everything else;
    and only what ``custom`` (the ``actions`` callback's predicate) accepts too."""
    created, changed = f"{plural}/created", f"{plural}/changed"
    wanted = dict(filter)

    def accepts(action: Action, meta: Meta) -> bool:
        kind = action.get("type")
        if kind in (created, changed):
            fields = action.get("fields")
            if not isinstance(fields, Mapping):
                fields = {}
            matches = created_matches if kind == created else changed_matches
            if not matches(wanted, fields):
                return False
        return custom is None or bool(custom(action, meta))

    return accepts


def since_time(action: Mapping[str, Any]) -> int:
    """The ``since.time`` of a ``logux/subscribe``, or 0."""
    since = action.get("since")
    if isinstance(since, Mapping):
        time = since.get("time")
        if isinstance(time, int | float) and not isinstance(time, bool):
            return int(time)
    return 0


def _time(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"ChangedAt time must be a number of ms, not {type(value).__name__}")
    return int(value)


# -- rules -------------------------------------------------------------------------------------


def _deny(ctx: Context, action: Any, meta: Meta) -> bool:
    return False


def _map_id(action: Mapping[str, Any]) -> str:
    map_id = action.get("id")
    if not isinstance(map_id, str) or not map_id or "/" in map_id:
        raise Undo("error", details="id must be a non-empty string without '/'")
    return map_id


def _fields(action: Mapping[str, Any]) -> Fields:
    fields = action.get("fields")
    if not isinstance(fields, dict):
        raise Undo("error", details="fields must be an object")
    return fields


def _filter(action: Mapping[str, Any]) -> Fields:
    filter = action.get("filter")
    if filter is None:
        return {}
    if not isinstance(filter, dict):
        raise Undo("error", details="filter must be an object")
    return filter


def _channel(plural: str, with_id: bool) -> re.Pattern[str]:
    return re.compile(re.escape(plural) + (r"/(?P<id>[^/]+)" if with_id else ""))


def add_sync_map(
    app: App,
    plural: str,
    *,
    access: SyncMapAccess,
    load: SyncMapLoad,
    create: SyncMapWrite | None = None,
    change: SyncMapWrite | None = None,
    delete: SyncMapDelete | None = None,
) -> None:
    """Serve the SyncMap ``plural`` (see the module docs for the protocol and the callbacks).

    Registers the types ``<plural>/create|change|delete`` (those whose callback is given),
    ``<plural>/created|changed|deleted`` (denied to clients) and the channel ``<plural>/{id}``.
    """
    created, changed, deleted = f"{plural}/created", f"{plural}/changed", f"{plural}/deleted"
    for kind in (created, changed, deleted):
        app.type(kind, access=_deny)

    async def check(ctx: Context, action: Action, meta: Meta) -> bool:
        map_id = _map_id(action)
        if action["type"] != f"{plural}/delete":
            _fields(action)
        return bool(await resolve(access(ctx, map_id, action, meta)))

    async def finished(ctx: Context, kind: str, action: Action, meta: Meta) -> None:
        map_id = action["id"]
        channels = [f"{plural}/{map_id}"] if kind == deleted else [plural, f"{plural}/{map_id}"]
        await ctx.node.add(
            {**action, "type": kind},
            channels=channels,
            exclude_clients=[ctx.client_id],
            meta={"time": meta["time"]},
        )

    def writer(
        write: SyncMapWrite, kind: str
    ) -> Callable[[Context, Action, Meta], Awaitable[None]]:
        async def process(ctx: Context, action: Action, meta: Meta) -> None:
            result = await resolve(
                write(ctx, action["id"], action["fields"], int(meta["time"]), action, meta)
            )
            if result is not False:
                await finished(ctx, kind, action, meta)

        return process

    if create is not None:
        app.type(f"{plural}/create", access=check, process=writer(create, created))
    if change is not None:
        app.type(f"{plural}/change", access=check, process=writer(change, changed))
    if delete is not None:
        remove = delete

        async def process_delete(ctx: Context, action: Action, meta: Meta) -> None:
            if await resolve(remove(ctx, action["id"], action, meta)) is not False:
                await finished(ctx, deleted, action, meta)

        app.type(f"{plural}/delete", access=check, process=process_delete)

    async def channel_access(ctx: Context, action: Action, meta: Meta) -> bool:
        return bool(await resolve(access(ctx, ctx.params["id"], action, meta)))

    async def channel_load(
        ctx: Context, action: Action, meta: Meta
    ) -> list[tuple[Action, Meta | None]]:
        if action.get("creating"):
            return []
        map_id, since = ctx.params["id"], since_time(action)
        fields = await resolve(load(ctx, map_id, since, action, meta))
        if fields is None or fields is False:
            raise NotFound()
        return changed_actions(plural, map_id, fields, since)

    app.channel(_channel(plural, True), access=channel_access, load=channel_load)


def add_sync_map_filter(
    app: App,
    plural: str,
    *,
    access: FilterAccess,
    initial: FilterInitial,
    actions: FilterActions | None = None,
) -> None:
    """Serve @logux/client's ``createFilter`` for ``plural``: the channel ``<plural>`` with a
    ``filter`` (see the module docs for the protocol and the callbacks)."""

    async def filter_access(ctx: Context, action: Action, meta: Meta) -> bool:
        return bool(await resolve(access(ctx, _filter(action), action, meta)))

    async def build(ctx: Context, action: Action, meta: Meta) -> Filter | None:
        filter = _filter(action)
        custom = await resolve(actions(ctx, filter, action, meta)) if actions else None
        if not filter and custom is None:
            return None
        return filter_predicate(plural, filter, custom)

    async def send_maps(ctx: Context, action: Action, meta: Meta, *, fields: bool) -> None:
        filter, since = _filter(action), since_time(action)
        for item in await resolve(initial(ctx, filter, since, action, meta)):
            map_id = _map_id(item)
            await ctx.node.subscribe(ctx.node_id, f"{plural}/{map_id}")
            if fields:
                for changed, changed_meta in changed_actions(
                    plural, map_id, item, since, first_keys=filter
                ):
                    await ctx.send_back(changed, changed_meta)

    async def load(ctx: Context, action: Action, meta: Meta) -> None:
        await send_maps(ctx, action, meta, fields=True)

    async def resume(ctx: Context, action: Action, meta: Meta) -> None:
        # The history replay brings the fields; the item subscriptions ended with the old
        # connection, so subscribe to each item again.
        await send_maps(ctx, action, meta, fields=False)

    app.channel(
        _channel(plural, False), access=filter_access, filter=build, load=load, resume=resume
    )
