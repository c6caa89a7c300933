"""The SyncMap app of the client compaction and convergence tests, and its rules as a pure model.

:class:`Notes` is the server-side state of the ``notes`` SyncMap: every field keeps its value and
the time it was last changed; ``create`` of an existing id is undone ``exists``, ``change`` and
``delete`` of a missing one ``notFound``, ``change`` is per-field last-writer-wins on
``meta.time`` (a later action with the same time wins, as the server processes them in order).
The app serves one :class:`Notes` through ``logsync.syncmap``; the tests run the same class
in-process as the reference of what sending every change does.

Run: ``logsync serve tests.client.compaction_app:app`` (token ``secret``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from logsync import (
    App,
    AuthContext,
    ChangedAt,
    Context,
    NotFound,
    Undo,
    add_sync_map,
    add_sync_map_filter,
)


class Notes:
    """Maps by id: field → (value, time it was last changed). The rules of the module docs."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, tuple[Any, int]]] = {}

    def create(self, note_id: str, fields: Mapping[str, Any], time: int) -> None:
        if note_id in self.maps:
            raise Undo("exists")
        self.maps[note_id] = {key: (value, time) for key, value in fields.items()}

    def change(self, note_id: str, fields: Mapping[str, Any], time: int) -> None:
        note = self.maps.get(note_id)
        if note is None:
            raise NotFound()
        for key, value in fields.items():
            if key not in note or note[key][1] <= time:
                note[key] = (value, time)

    def delete(self, note_id: str) -> None:
        if self.maps.pop(note_id, None) is None:
            raise NotFound()

    def apply(self, action: Mapping[str, Any], time: int) -> str | None:
        """Apply a client ``notes/create|change|delete``; the undo reason, or ``None``."""
        verb = str(action["type"]).rsplit("/", 1)[1]
        try:
            if verb == "create":
                self.create(action["id"], action["fields"], time)
            elif verb == "change":
                self.change(action["id"], action["fields"], time)
            else:
                self.delete(action["id"])
        except Undo as undo:
            return undo.reason
        return None

    def values(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """``{id without prefix: {field: value}}`` of the maps whose id starts with ``prefix``."""
        return {
            note_id.removeprefix(prefix): {key: value for key, (value, _) in note.items()}
            for note_id, note in self.maps.items()
            if note_id.startswith(prefix)
        }


app = App(subprotocol=3, min_subprotocol=2)
notes = Notes()


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.token == "secret"


def access(ctx: Context, note_id: str, action: Any, meta: Any) -> bool:
    return True


def as_map(note_id: str) -> dict[str, Any]:
    return {key: ChangedAt(value, time) for key, (value, time) in notes.maps[note_id].items()}


def load(
    ctx: Context, note_id: str, since: int, action: Any, meta: Any
) -> dict[str, Any] | Literal[False]:
    return as_map(note_id) if note_id in notes.maps else False


def create(
    ctx: Context, note_id: str, fields: dict[str, Any], time: int, action: Any, meta: Any
) -> None:
    notes.create(note_id, fields, time)


def change(
    ctx: Context, note_id: str, fields: dict[str, Any], time: int, action: Any, meta: Any
) -> None:
    notes.change(note_id, fields, time)


def delete(ctx: Context, note_id: str, action: Any, meta: Any) -> None:
    notes.delete(note_id)


add_sync_map(app, "notes", access=access, load=load, create=create, change=change, delete=delete)


def filter_access(ctx: Context, filter: dict[str, Any], action: Any, meta: Any) -> bool:
    return True


def initial(
    ctx: Context, filter: dict[str, Any], since: int, action: Any, meta: Any
) -> list[dict[str, Any]]:
    return [
        {"id": note_id, **as_map(note_id)}
        for note_id, note in notes.maps.items()
        if all(key in note and note[key][0] == want for key, want in filter.items())
    ]


add_sync_map_filter(app, "notes", access=filter_access, initial=initial)
