"""The client's offline state in one SQLite file: node id, cursors, pending actions, subscriptions.

:class:`Store` survives a process restart (or a SIGKILL): every change is one small transaction,
committed before the client acts on it (a pending action is in the file before it is sent; a
received page's cursor is saved only after its actions were handed to the application).

Why synchronous ``sqlite3`` on the event loop, not a thread: each transaction writes one or a few
rows of a file only this process uses (WAL journal, ``synchronous=NORMAL`` by default), which takes
tens of microseconds and keeps the order of writes the order of calls with no locking. A thread
hop per write would cost more than the write. ``durable=True`` (``synchronous=FULL``) adds an
fsync per commit, for surviving power loss rather than only a process crash.

Open with :meth:`Store.open`; the client calls the rest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    added INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order
    id TEXT NOT NULL UNIQUE,
    action BLOB NOT NULL,                     -- JSON
    meta BLOB NOT NULL,                       -- JSON: id, time (client clock), subprotocol?
    sent INTEGER NOT NULL DEFAULT 0           -- 1 once handed to a transport (maybe on the server)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    channel TEXT NOT NULL,
    filter TEXT NOT NULL,                     -- JSON of the extra fields ('{}' for none)
    since_id TEXT,                            -- WebSocket resume point: the processed meta's id
    since_time INTEGER,                       --   and its time (server clock)
    confirmed INTEGER NOT NULL DEFAULT 0,     -- HTTP: the server keeps it (answered processed)
    PRIMARY KEY (channel, filter)
);
"""


@dataclass(frozen=True, slots=True)
class StoredAction:
    """One pending action as stored: ``added`` is its creation-order key."""

    added: int
    action: dict[str, Any]
    meta: dict[str, Any]
    sent: bool

    @property
    def id(self) -> str:
        return str(self.meta["id"])


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    """A channel subscription: ``extra`` holds ``filter`` and other subscribe fields."""

    channel: str
    extra: dict[str, Any]
    since_id: str | None
    since_time: int | None
    confirmed: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.channel, _dump_extra(self.extra)


def _dump_extra(extra: dict[str, Any]) -> str:
    return orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()


class Store:
    """One SQLite file (or ``":memory:"``) of a client's state; see the module docstring."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, path: str | Path, *, durable: bool = False) -> Store:
        """Open (creating if needed) the file at ``path``; ``":memory:"`` keeps nothing."""
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        db.executescript(_SCHEMA)
        return cls(db)

    def close(self) -> None:
        self._db.close()

    # -- meta ----------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_key(self, key: str) -> None:
        self._db.execute("DELETE FROM meta WHERE key = ?", (key,))

    # -- pending actions -----------------------------------------------------------------------

    def add_pending(
        self,
        action: dict[str, Any],
        meta: dict[str, Any],
        *,
        drop: Iterable[str] = (),
        rewrite: Mapping[str, dict[str, Any]] | None = None,
        clock_ms: int | None = None,
    ) -> int:
        """Persist a new pending action (removing ``drop`` ids and giving ``rewrite`` ids their
        new bodies, never-sent ones only, in the same transaction) and return its ``added``;
        ``clock_ms`` is saved as the clock's floor after a restart."""
        with self._transaction():
            self._compact(drop, rewrite or {})
            cursor = self._db.execute(
                "INSERT INTO pending (id, action, meta) VALUES (?, ?, ?)",
                (meta["id"], orjson.dumps(action), orjson.dumps(meta)),
            )
            if clock_ms is not None:
                self.put("clock_ms", str(clock_ms))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def drop_pending(
        self,
        ids: Iterable[str],
        *,
        rewrite: Mapping[str, dict[str, Any]] | None = None,
        clock_ms: int | None = None,
    ) -> None:
        """Remove (and rewrite) never-sent pending actions: a compactor made them redundant."""
        with self._transaction():
            self._compact(ids, rewrite or {})
            if clock_ms is not None:
                self.put("clock_ms", str(clock_ms))

    def _compact(self, drop: Iterable[str], rewrite: Mapping[str, dict[str, Any]]) -> None:
        for action_id in drop:
            self._db.execute("DELETE FROM pending WHERE id = ? AND sent = 0", (action_id,))
        for action_id, body in rewrite.items():
            self._db.execute(
                "UPDATE pending SET action = ? WHERE id = ? AND sent = 0",
                (orjson.dumps(body), action_id),
            )

    def pending(self) -> list[StoredAction]:
        """Every pending action, in creation order."""
        rows = self._db.execute(
            "SELECT added, action, meta, sent FROM pending ORDER BY added"
        ).fetchall()
        return [
            StoredAction(r[0], orjson.loads(r[1]), orjson.loads(r[2]), bool(r[3])) for r in rows
        ]

    def mark_sent(self, ids: Iterable[str]) -> None:
        """Record that these actions were handed to a transport (before writing them)."""
        with self._transaction():
            for action_id in ids:
                self._db.execute("UPDATE pending SET sent = 1 WHERE id = ?", (action_id,))

    def remove_pending(self, action_id: str) -> bool:
        """The server answered this action: forget it. ``False`` if it was not pending."""
        cursor = self._db.execute("DELETE FROM pending WHERE id = ?", (action_id,))
        return cursor.rowcount > 0

    # -- subscriptions -------------------------------------------------------------------------

    def subscriptions(self) -> list[StoredSubscription]:
        rows = self._db.execute(
            "SELECT channel, filter, since_id, since_time, confirmed FROM subscriptions"
            " ORDER BY rowid"
        ).fetchall()
        return [StoredSubscription(r[0], orjson.loads(r[1]), r[2], r[3], bool(r[4])) for r in rows]

    def add_subscription(self, channel: str, extra: dict[str, Any]) -> bool:
        """Remember a subscription; ``False`` if it was already there (unchanged)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO subscriptions (channel, filter) VALUES (?, ?)",
            (channel, _dump_extra(extra)),
        )
        return cursor.rowcount > 0

    def remove_subscription(self, channel: str, extra: dict[str, Any]) -> bool:
        cursor = self._db.execute(
            "DELETE FROM subscriptions WHERE channel = ? AND filter = ?",
            (channel, _dump_extra(extra)),
        )
        return cursor.rowcount > 0

    def set_since(self, channel: str, extra: dict[str, Any], since_id: str, time: int) -> None:
        """The WebSocket resume point: the ``logux/processed`` that answered the subscription."""
        self._db.execute(
            "UPDATE subscriptions SET since_id = ?, since_time = ? WHERE channel = ? AND filter = ?",
            (since_id, time, channel, _dump_extra(extra)),
        )

    def set_confirmed(self, channel: str, extra: dict[str, Any], confirmed: bool) -> None:
        """HTTP: whether the server keeps this subscription (answered ``processed``)."""
        self._db.execute(
            "UPDATE subscriptions SET confirmed = ? WHERE channel = ? AND filter = ?",
            (int(confirmed), channel, _dump_extra(extra)),
        )

    def reset_subscriptions(self) -> None:
        """After an HTTP reset: the server dropped every subscription; resume points are void."""
        self._db.execute(
            "UPDATE subscriptions SET confirmed = 0, since_id = NULL, since_time = NULL"
        )

    # -- helpers -------------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
