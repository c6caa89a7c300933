"""The SyncMap app the interop tests run (same rules as js/syncmap-reference-server.mjs).

``notes``: an in-memory store of maps whose every field keeps the time it was last changed, so
that ``load``/``initial`` report :class:`ChangedAt` times and ``change`` keeps the newest write of
each field (last-writer-wins, as the clients do). Ids starting with ``secret`` are denied; a
filter with ``"secret"`` in it is denied. ``notes/seeded`` exists from the start, its fields
changed at three different times plus a field without a time (``NoConflictResolution``).
"""

from __future__ import annotations

from typing import Any

from logsync import (
    App,
    AuthContext,
    ChangedAt,
    Context,
    NoConflictResolution,
    NotFound,
    Undo,
    add_sync_map,
    add_sync_map_filter,
)

app = App(subprotocol=3, min_subprotocol=2)

# id → field → (value, time it was last changed)
notes: dict[str, dict[str, tuple[Any, int]]] = {
    "seeded": {
        "title": ("Seeded", 1_000),
        "project": ("seed", 1_000),
        "text": ("first text", 2_000),
        "color": ("red", 3_000),
    }
}
SEEDED_UNTIMED = {"kind": "sample"}


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.token == "secret"


def access(ctx: Context, note_id: str, action: Any, meta: Any) -> bool:
    return not note_id.startswith("secret")


def as_map(note_id: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        key: ChangedAt(value, time) for key, (value, time) in notes[note_id].items()
    }
    if note_id == "seeded":
        fields.update({k: NoConflictResolution(v) for k, v in SEEDED_UNTIMED.items()})
    return fields


def load(ctx: Context, note_id: str, since: int, action: Any, meta: Any) -> dict[str, Any] | bool:
    if note_id not in notes:
        return False
    return as_map(note_id)


def create(
    ctx: Context, note_id: str, fields: dict[str, Any], time: int, action: Any, meta: Any
) -> None:
    if note_id in notes:
        raise Undo("exists")
    notes[note_id] = {key: (value, time) for key, value in fields.items()}


async def change(
    ctx: Context, note_id: str, fields: dict[str, Any], time: int, action: Any, meta: Any
) -> bool:
    note = notes.get(note_id)
    if note is None:
        raise NotFound()
    for key, value in fields.items():
        if key not in note or note[key][1] <= time:
            note[key] = (value, time)
    # `quiet` changes are stored but not resent (the callback's False)
    return fields.get("quiet") is not True


def delete(ctx: Context, note_id: str, action: Any, meta: Any) -> None:
    if notes.pop(note_id, None) is None:
        raise NotFound()


add_sync_map(app, "notes", access=access, load=load, create=create, change=change, delete=delete)


def filter_access(ctx: Context, filter: dict[str, Any], action: Any, meta: Any) -> bool:
    return "secret" not in filter


def initial(
    ctx: Context, filter: dict[str, Any], since: int, action: Any, meta: Any
) -> list[dict[str, Any]]:
    return [
        {"id": note_id, **as_map(note_id)}
        for note_id, note in notes.items()
        if all(key in note and note[key][0] == want for key, want in filter.items())
    ]


add_sync_map_filter(app, "notes", access=filter_access, initial=initial)


async def burst(ctx: Context, action: Any, meta: Any) -> None:
    """``notes/burst``: ``changes`` (``[{"id", "fields"}, …]``) made by the server and sent as
    ``notes/changed`` one after the other in one event-loop turn (the memory store's append does
    not wait), so a live subscriber is offered them together (js/syncmap-batched.mjs)."""
    for change in action["changes"]:
        note_id, fields = change["id"], change["fields"]
        note = notes.setdefault(note_id, {})
        for key, value in fields.items():
            note[key] = (value, meta["time"])
        await ctx.node.add(
            # `burst` tells these from the `changed` a load sends (createFilter ignores it)
            {"type": "notes/changed", "id": note_id, "fields": fields, "burst": True},
            channels=["notes", f"notes/{note_id}"],
            meta={"time": meta["time"]},
        )


app.type("notes/burst", access=lambda ctx, action, meta: True, process=burst)
