"""What the log holds: :class:`Entry`, one appended action with its position and routing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from logsync.protocol.ids import parse_node_id

WAITING, PROCESSED, ERROR = "waiting", "processed", "error"


@dataclass(slots=True)
class NewEntry:
    """An action to append: the log dedupes it by ``id`` and files it under ``indexes``."""

    id: str
    time: int
    action: dict[str, Any]
    indexes: list[str] = field(default_factory=list)
    exclude_clients: list[str] = field(default_factory=list)
    subprotocol: int | None = None
    status: str = WAITING


@dataclass(slots=True)
class Entry:
    """An appended action. ``added`` is its position in the deployment-wide order (the cursor)."""

    added: int
    id: str
    time: int
    action: dict[str, Any]
    indexes: list[str]
    exclude_clients: list[str]
    subprotocol: int | None
    status: str
    # The action as JSON, encoded once however many sessions it goes to (see wire_action),
    # and the client-visible meta, made once.
    encoded: Any = None
    visible_meta: dict[str, Any] | None = None
    origin: str | None = None

    @classmethod
    def from_new(cls, added: int, new: NewEntry) -> Entry:
        return cls(
            added,
            new.id,
            new.time,
            new.action,
            new.indexes,
            new.exclude_clients,
            new.subprotocol,
            new.status,
        )

    @property
    def origin_client(self) -> str:
        """The client id that created the action (from its id; parsed once per entry, as every
        recipient of a fan-out asks)."""
        if self.origin is None:
            self.origin = parse_node_id(self.id).client_id
        return self.origin

    def wire_action(self, binary: bool) -> Any:
        """The action to put in a ``sync`` message: the dict for binary (msgpack) sessions, and
        for JSON sessions its encoding, made once per entry and spliced into every frame."""
        if binary:
            return self.action
        if self.encoded is None:
            self.encoded = orjson.Fragment(orjson.dumps(self.action))
        return self.encoded

    def meta(self) -> dict[str, Any]:
        """The meta a client may see: ``id``, ``time`` and ``subprotocol`` (shared: don't change)."""
        if self.visible_meta is None:
            meta: dict[str, Any] = {"id": self.id, "time": self.time}
            if self.subprotocol is not None:
                meta["subprotocol"] = self.subprotocol
            self.visible_meta = meta
        return self.visible_meta
