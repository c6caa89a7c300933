"""What the log holds: :class:`Entry`, one appended action with its position and routing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from logsync.protocol.codec import sync_template
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
    # whether it can be sent over both codecs (see `deliverable`), found once per entry
    sendable: bool | None = None
    # (local node id, the `sync` template and body of json_sync, the id's ms), made once
    json_sync_cache: tuple[str, bytes, bytes, int] | None = None
    # what keeps it out of a `sync` that has another action of the same key (see batch_key)
    batch_key_cache: tuple[str, ...] | None = None
    # (its channels' names, whether it has an index that is not a channel's), see routing
    routing_cache: tuple[tuple[str, ...], bool] | None = None

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
            self.encoded = _fragment(orjson.dumps(self.action))
        return self.encoded

    def json_sync(self, local_node_id: str) -> tuple[bytes, int]:
        """This entry alone in a ``sync`` to a JSON client of node ``local_node_id``: the
        :func:`~logsync.protocol.codec.sync_template` and the id's ms, made once per entry (a
        fan-out fills it per recipient). Only for a :attr:`deliverable` entry."""
        cached = self.json_sync_cache
        if cached is None or cached[0] != local_node_id:
            cached = self._json_sync(local_node_id)
        return cached[1], cached[3]

    def json_sync_body(self, local_node_id: str) -> tuple[bytes, int]:
        """This entry's part of a several-action ``sync`` (the template's body) and the id's ms;
        see :meth:`json_sync`."""
        cached = self.json_sync_cache
        if cached is None or cached[0] != local_node_id:
            cached = self._json_sync(local_node_id)
        return cached[2], cached[3]

    def _json_sync(self, local_node_id: str) -> tuple[str, bytes, bytes, int]:
        action = orjson.dumps(self.wire_action(False))  # the fragment's bytes
        template, body, ms = sync_template(action, self.id, self.subprotocol, local_node_id)
        cached = self.json_sync_cache = (local_node_id, template, body, ms)
        return cached

    @property
    def routing(self) -> tuple[tuple[str, ...], bool]:
        """The names of the channels it is filed under, and whether it is also addressed
        otherwise (a ``client:``, ``node:`` or ``user:`` index): found once per entry, as
        every recipient of a fan-out asks."""
        routing = self.routing_cache
        if routing is None:
            indexes = self.indexes
            channels = tuple(i[8:] for i in indexes if i.startswith("channel:"))
            routing = self.routing_cache = (channels, len(channels) < len(indexes))
        return routing

    @property
    def batch_key(self) -> tuple[str, ...]:
        """What a live ``sync`` of several actions may hold only once: ``(prefix, id)`` for an
        action whose ``type`` is ``<prefix>/<name>`` and which has a string ``id`` (a SyncMap
        item's ``notes/changed`` … ``{"id": "n1"}``), else ``()`` (found once per entry).

        @logux/client adds the actions of one ``sync`` concurrently: ``createFilter`` builds an
        item's store from the first ``<plural>/changed`` of it and binds the store's listeners a
        few microtasks later, so a second change of the same item in the same ``sync`` is lost.
        Two messages are two event-loop turns in a browser (one frame each), which is safe."""
        key = self.batch_key_cache
        if key is None:
            action = self.action
            kind, item = action.get("type"), action.get("id")
            key = ()
            if type(kind) is str and type(item) is str:
                slash = kind.rfind("/")
                if slash > 0:
                    key = (kind[:slash], item)
            self.batch_key_cache = key
        return key

    @property
    def deliverable(self) -> bool:
        """Whether this entry can be put in a ``sync`` over both codecs: id and time within the
        protocol's ranges, an integer subprotocol, an action both JSON and msgpack encode.

        Validation at the door keeps such entries out of the log; this guards delivery against
        one that got in anyway (written by an older version, or by app code): it is skipped,
        never allowed to stop the delivery of the entries after it."""
        if self.sendable is None:
            self.sendable = _sendable(self)
        return self.sendable

    def meta(self) -> dict[str, Any]:
        """The meta a client may see: ``id``, ``time`` and ``subprotocol`` (shared: don't change)."""
        if self.visible_meta is None:
            meta: dict[str, Any] = {"id": self.id, "time": self.time}
            if self.subprotocol is not None:
                meta["subprotocol"] = self.subprotocol
            self.visible_meta = meta
        return self.visible_meta


# The protocol's integer range: what a JavaScript number holds exactly.
MAX_SAFE_INTEGER = 2**53


def encodes(value: Any) -> bool:
    """Whether both wire codecs (JSON text and msgpack) can encode ``value``."""
    try:
        orjson.dumps(value)
        msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _in_range(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_SAFE_INTEGER


def _sendable(entry: Entry) -> bool:
    parts = entry.id.split(" ")
    if len(parts) != 3 or not parts[1] or len(parts[0]) > 16 or len(parts[2]) > 16:
        return False
    try:
        ms, seq = int(parts[0]), int(parts[2])
    except ValueError:
        return False
    if not (_in_range(ms) and _in_range(seq) and _in_range(entry.time)):
        return False
    if entry.subprotocol is not None and not _in_range(entry.subprotocol):
        return False
    try:
        encoded = orjson.dumps(entry.action)
        msgpack.packb(entry.action, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return False
    if entry.encoded is None:
        entry.encoded = _fragment(encoded)
    return True


def _fragment(encoded: bytes) -> orjson.Fragment:
    """An action's JSON kept with its entry, copied to its own size: an ``orjson.dumps`` result
    keeps a 4 KiB buffer however short it is, and this one lives as long as the entry."""
    return orjson.Fragment(bytes(memoryview(encoded)))
