"""What a transport (:mod:`logsync_client.ws`, :mod:`logsync_client.http`) needs of the client it
serves: its settings, its offline state, and the calls through which it reports what the server
said. :class:`~logsync_client.client.Client` is the one implementation; the transports depend on
this protocol, not on it, so the client imports its transports and never the other way round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import aiohttp

from logsync_client.backoff import Backoff
from logsync_client.pending import PendingQueue
from logsync_client.store import Store


class TransportHost(Protocol):
    """The client as its transport sees it."""

    # -- settings and state --------------------------------------------------------------------
    url: str
    node_id: str
    token: str | None
    codec: Literal["json", "msgpack"]
    subprotocol: int | None
    headers: dict[str, Any] | None
    ping_ms: int
    timeout_ms: int
    wait: float
    limit: int | None
    push_batch: int
    max_message_bytes: int
    request_timeout: float
    store: Store
    queue: PendingQueue
    backoff: Backoff
    time_fix: int
    http: aiohttp.ClientSession | None
    clock: Callable[[], int]  # this machine's clock (ms)

    # -- what the transport reports ------------------------------------------------------------

    def new_id(self) -> tuple[str, int]:
        """An id and time for a message the client makes itself (a ``logux/subscribe``)."""
        ...

    def handshake_done(self, time_fix: int) -> None:
        """Connected, with this time fix (ms)."""
        ...

    def receive(self, action: dict[str, Any], meta: dict[str, Any]) -> None:
        """One action from the server (``meta.time`` in this client's clock)."""
        ...

    def processed(self, action_id: str, meta: dict[str, Any]) -> None:
        """The server answered a pending action ``logux/processed``."""
        ...

    def undone(self, undo: dict[str, Any]) -> None:
        """The server answered a pending action with this ``logux/undo``."""
        ...

    def subscription_answered(
        self, channel: str, extra: dict[str, Any], undo: dict[str, Any] | None
    ) -> None:
        """The server answered a subscription: ``undo`` is its ``logux/undo`` if refused."""
        ...

    def reset(self) -> None:
        """HTTP reset: the server dropped the subscriptions."""
        ...

    def woken(self) -> asyncio.Event:
        """The event a pull waits on between requests (set by a wake-up or a new action)."""
        ...

    def wake(self) -> None:
        """Pull now."""
        ...

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` as a task the client owns."""
        ...
