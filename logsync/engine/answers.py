"""How the server speaks: server-originated actions (:meth:`Answers.add`, ids from the hybrid
clock), and the answers to client actions — ``logux/processed`` (:meth:`Answers.processed`),
``logux/undo`` through the log (:meth:`Answers.undo`) or directly when the log cannot take it
(:meth:`Answers.undo_directly`), and development-mode ``debug`` messages.

Every append goes through the :class:`~logsync.log.writer.LogWriter`.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from typing import Any

from logsync.app import Context, Route
from logsync.engine.peer import Peer
from logsync.engine.registry import Registry
from logsync.log import PROCESSED, Entry, NewEntry, encodes
from logsync.log.writer import LogWriter
from logsync.metrics import Metrics
from logsync.protocol.clock import HybridClock
from logsync.settings import Settings
from logsync.wallclock import now_ms

logger = logging.getLogger("logsync.node")


class Answers:
    """Appends server actions and answers clients; see the module docstring."""

    def __init__(
        self,
        writer: LogWriter,
        registry: Registry,
        clock: HybridClock,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.writer = writer
        self.registry = registry
        self.clock = clock
        self.settings = settings
        self.metrics = metrics

    async def add(
        self,
        action: dict[str, Any],
        *,
        channels: Iterable[str] = (),
        users: Iterable[str] = (),
        clients: Iterable[str] = (),
        nodes: Iterable[str] = (),
        exclude_clients: Iterable[str] = (),
        route: Route | None = None,
        meta: dict[str, Any] | None = None,
        status: str = PROCESSED,
    ) -> Entry:
        """Append a server action (id from the hybrid clock) and deliver it to its route."""
        if not isinstance(action, dict) or not isinstance(action.get("type"), str):
            raise TypeError("an action is a dict with a string 'type'")
        if not encodes(action):
            # stored, it could never be sent: refused here rather than skipped by every reader
            raise TypeError(f"action {action['type']!r} cannot be encoded as JSON and msgpack")
        if route is None:
            route = Route(
                list(channels), list(users), list(clients), list(nodes), list(exclude_clients)
            )
        meta = meta or {}
        if "id" in meta:
            action_id, time_ms = meta["id"], int(meta.get("time", now_ms()))
        else:
            action_id, time_ms = self.clock.next_id(now_ms())
            if "time" in meta:
                time_ms = int(meta["time"])
        new = NewEntry(
            id=action_id,
            time=time_ms,
            action=action,
            indexes=route.indexes(),
            exclude_clients=route.exclude_clients,
            subprotocol=meta.get("subprotocol"),
            status=status,
        )
        [appended] = await self.writer.append([new])
        return appended.entry

    async def processed(self, client_id: str, action_id: str, barrier: int) -> None:
        """Answer ``logux/processed``: straight to the client's peer, or, when it is not
        connected here (it left while the action was processed), through the log, so that it gets
        the answer when it comes back instead of waiting for it forever."""
        peer = self.registry.by_client.get(client_id)
        if peer is None or peer.closed:
            await self.add({"type": "logux/processed", "id": action_id}, clients=[client_id])
            return
        processed_id, time_ms = self.clock.next_id(now_ms())
        peer.send_after(
            barrier,
            {"type": "logux/processed", "id": action_id},
            {"id": processed_id, "time": time_ms},
        )

    async def undo(
        self,
        ctx: Context,
        action: dict[str, Any],
        meta: dict[str, Any],
        reason: str,
        *,
        route: Route | None = None,
        **extra: Any,
    ) -> Entry:
        """Revert an action: ``logux/undo`` to its client, and to everyone it was resent to."""
        undo_route = Route(
            channels=list(route.channels) if route else [],
            users=list(route.users) if route else [],
            clients=[ctx.client_id, *(route.clients if route else [])],
            nodes=list(route.nodes) if route else [],
            exclude_clients=list(route.exclude_clients) if route else [],
        )
        self.metrics.actions_refused += 1
        undo = {"type": "logux/undo", "id": meta["id"], "reason": reason, "action": action, **extra}
        entry = await self.add(undo, route=undo_route, status=PROCESSED)
        # the answer is in the log: the `synced` of its action waits until it went out
        ctx.last_added = max(ctx.last_added, entry.added)
        return entry

    def undo_directly(
        self, peer: Peer, action: dict[str, Any], action_id: str, details: str
    ) -> None:
        """``logux/undo`` reason ``error`` sent to ``peer`` without the log (which may be what
        failed): the action was not stored, and the client may send it again later."""
        undo = {
            "type": "logux/undo",
            "id": action_id,
            "reason": "error",
            "action": action,
            "details": details,
        }
        undo_id, time_ms = self.clock.next_id(now_ms())
        peer.send_after(0, undo, {"id": undo_id, "time": time_ms})

    async def fail(
        self,
        ctx: Context,
        action: dict[str, Any],
        meta: dict[str, Any],
        error: Exception,
        route: Route | None = None,
    ) -> None:
        """A rule callback raised: log it, undo ``error`` (the stack to every client in
        development mode, as @logux/server does)."""
        logger.error("error in rules for %s", meta.get("id"), exc_info=error)
        if self.settings.development:
            text = "".join(traceback.format_exception(error))
            for peer in self.registry.peers:
                if peer.authenticated:
                    peer.debug(text)
        await self.undo(ctx, action, meta, "error", route=route)

    def debug(self, peer: Peer, text: str) -> None:
        """A ``debug`` message to ``peer`` in development mode."""
        if self.settings.development:
            peer.debug(text)

    def error_details(self, error: Exception) -> str:
        """What an undo for a server error says: the stack in development mode."""
        if self.settings.development:
            return "".join(traceback.format_exception(error))
        return "server error"
