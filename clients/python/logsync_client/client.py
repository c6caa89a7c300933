"""The client: one object over either transport, its offline state in a :class:`Store`.

``Client(url, user_id, token, store="app.db")`` picks the transport by the URL's scheme:
``ws://``/``wss://`` is the Logux WebSocket protocol (:mod:`logsync_client.ws`, JSON or msgpack
frames), ``http://``/``https://`` the pull-only HTTP API (:mod:`logsync_client.http`, long-poll
or pull when woken). Start it with ``await client.start()`` (or ``async with``); it reconnects by
itself (full-jitter exponential backoff, the server's ``Retry-After`` honoured) until
``await client.stop()`` or a :class:`Refused`.

``client.add(action)`` queues an action (persisted before it is sent, sent in creation order,
removed once the server answered it); ``await client.sync(action)`` also waits for the answer and
raises :class:`Undone` on ``logux/undo``. ``await client.subscribe(channel)`` subscribes (kept in
the store with its resume point, resubscribed after every reconnect). ``client.on(type, cb)``
hears received actions; ``client.state(reducer, initial)`` is an optimistic
:class:`LocalState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from logsync.protocol.clock import HybridClock
from logsync.protocol.ids import ActionId, parse_node_id
from logsync_client.backoff import Backoff, RetryLater
from logsync_client.errors import ClientClosed, Refused, Undone
from logsync_client.pending import Compactor, PendingQueue, encoded_size
from logsync_client.state import LocalState, Reducer
from logsync_client.store import Store, StoredAction, StoredSubscription

logger = logging.getLogger("logsync_client")

S = TypeVar("S")
Listener = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None] | None]
SubKey = tuple[str, str]


def wall_ms() -> int:
    """This machine's clock in milliseconds (the default ``clock`` of a :class:`Client`)."""
    import time

    return int(time.time() * 1000)


class Transport(Protocol):
    """One transport's connection loop (see :mod:`logsync_client.ws`, :mod:`logsync_client.http`)."""

    async def run(self) -> None:
        """Connect and serve until the connection ends; raise :class:`RetryLater` or
        :class:`Refused` to say how it ended, anything else to back off and retry."""
        ...

    def push(self, stored: StoredAction) -> None:
        """A new pending action: send it now if connected."""
        ...

    def subscribe(self, sub: StoredSubscription) -> None:
        """A new subscription: send it now if connected."""
        ...

    def unsubscribe(self, channel: str, extra: dict[str, Any]) -> None: ...


def _sub_key(channel: str, extra: dict[str, Any]) -> SubKey:
    return channel, orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()


class Client:
    """A logsync client; see the module docstring and ``clients/python/README.md``.

    ``store``: a path of the SQLite file (``":memory:"``: nothing survives), or a :class:`Store`.
    ``codec``: WebSocket frames in ``"json"`` or ``"msgpack"`` (HTTP bodies too). ``wait``: HTTP
    long-poll seconds (0: pull only when :meth:`wake` is called or an action is added).
    ``clock``: the wall clock in ms (for tests). Delays are in seconds, ``ping_ms``/``timeout_ms``
    in milliseconds; ``push_batch`` is the most actions sent in one message or request, and
    ``max_message_bytes`` about the most bytes (the server's ``max_frame_bytes``, 1 MiB by
    default): :meth:`add` refuses an action that would not fit alone.
    """

    def __init__(
        self,
        url: str,
        user_id: str,
        token: str | None = None,
        *,
        store: str | Path | Store = ":memory:",
        codec: Literal["json", "msgpack"] = "json",
        subprotocol: int | None = None,
        compactor: Compactor | None = None,
        client_id: str | None = None,
        headers: dict[str, Any] | None = None,
        clock: Callable[[], int] = wall_ms,
        min_delay: float = 0.5,
        max_delay: float = 30.0,
        ping_ms: int = 10_000,
        timeout_ms: int = 70_000,
        wait: float = 25.0,
        limit: int | None = None,
        push_batch: int = 100,
        max_message_bytes: int = 1 << 20,
        request_timeout: float = 30.0,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("ws", "wss", "http", "https"):
            raise ValueError(f"url must be ws://, wss://, http:// or https://, not {url!r}")
        if not user_id or ":" in user_id or " " in user_id:
            raise ValueError("user_id must be a non-empty string without ':' or spaces")
        if codec not in ("json", "msgpack"):
            raise ValueError("codec must be 'json' or 'msgpack'")
        self.url = url
        self.user_id = user_id
        self.token = token
        self.codec: Literal["json", "msgpack"] = codec
        self.subprotocol = subprotocol
        self.headers = headers
        self.clock = clock
        self.ping_ms = ping_ms
        self.timeout_ms = timeout_ms
        self.wait = wait
        self.limit = limit
        self.push_batch = push_batch
        self.max_message_bytes = max_message_bytes
        self.request_timeout = request_timeout
        self.store = store if isinstance(store, Store) else Store.open(store)
        self.node_id = self._node_id(client_id)
        self.client_id = parse_node_id(self.node_id).client_id
        self.clock_ = HybridClock(self.node_id)
        self._restore_clock()
        self.queue = PendingQueue(self.store, compactor)
        self.backoff = Backoff(min_delay, max_delay)
        self.time_fix = 0
        # the transport's state, for callers and tests
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()  # set once a connection ended, cleared by the next
        self.connections = 0
        self.last_retry_after: float | None = None
        self.delays: list[float] = []  # every reconnect delay taken, in seconds
        # (the server's Retry-After, the delay taken, why) for each overload answer
        self.retry_hints: list[tuple[float, float, str]] = []
        self.error: Refused | None = None
        self._refused = asyncio.Event()
        self._listeners: dict[str, list[Listener]] = {}
        self._reset_listeners: list[Callable[[], None]] = []
        self._states: list[LocalState[Any]] = []
        self._sub_waiters: dict[SubKey, asyncio.Future[None]] = {}
        self._answered_subs: set[SubKey] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._run_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.http: aiohttp.ClientSession | None = None
        self.transport: Transport = self._transport(scheme)

    # -- identity ------------------------------------------------------------------------------

    def _node_id(self, client_id: str | None) -> str:
        stored = self.store.get("node_id")
        if stored is not None:
            if parse_node_id(stored).user_id != self.user_id:
                raise ValueError(f"store belongs to node {stored!r}, not to user {self.user_id!r}")
            return stored
        node_id = f"{self.user_id}:{client_id or secrets.token_urlsafe(6)}"
        self.store.put("node_id", node_id)
        return node_id

    def _restore_clock(self) -> None:
        floor = int(self.store.get("clock_ms") or 0)
        for pending in self.store.pending():
            floor = max(floor, ActionId.parse(pending.id).ms)
        if floor:
            self.clock_.observe(floor)

    def _transport(self, scheme: str) -> Transport:
        if scheme in ("ws", "wss"):
            from logsync_client.ws import WsTransport

            return WsTransport(self)
        from logsync_client.http import HttpTransport

        return HttpTransport(self)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting (returns at once; :meth:`wait_connected` waits for the handshake)."""
        if self._run_task is not None:
            return
        self.http = aiohttp.ClientSession()
        self._run_task = asyncio.create_task(self._run(), name=f"logsync-client {self.node_id}")

    async def stop(self) -> None:
        """Disconnect and close the store; unanswered actions stay in it for the next start."""
        self._stopping = True
        if self._run_task is not None:
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
            self._run_task = None
        for task in list(self._tasks):
            task.cancel()
        if self.http is not None:
            await self.http.close()
            self.http = None
        self.queue.fail_all(ClientClosed("client stopped"))
        for future in self._sub_waiters.values():
            if not future.done():
                future.set_exception(ClientClosed("client stopped"))
        self.store.close()

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_connected(self) -> None:
        """Wait for the handshake (WebSocket) or a first answered request (HTTP); raises
        :class:`Refused` if the server refused this client for good."""
        refused = asyncio.ensure_future(self._refused.wait())
        connected = asyncio.ensure_future(self.connected.wait())
        try:
            await asyncio.wait({refused, connected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
            connected.cancel()
        if self.error is not None:
            raise self.error

    async def _run(self) -> None:
        while not self._stopping:
            retry_after: float | None = None
            why = ""
            try:
                await self.transport.run()
            except Refused as refused:
                self.error = refused
                self._refused.set()
                self.queue.fail_all(refused)
                logger.warning("logsync client refused: %s", refused)
                return
            except RetryLater as later:
                retry_after = later.seconds
                self.last_retry_after = later.seconds
                why = str(later)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.info("logsync client disconnected: %r", error)
            finally:
                self.connected.clear()
                self.disconnected.set()
            delay = self.backoff.next(retry_after)
            self.delays.append(delay)
            if retry_after is not None:
                self.retry_hints.append((retry_after, delay, why))
            await asyncio.sleep(delay)

    def wake(self) -> None:
        """HTTP: pull now (after a Web Push or webhook tickle); WebSocket: nothing to do."""
        self._wake.set()

    # -- actions -------------------------------------------------------------------------------

    def add(self, action: dict[str, Any]) -> str:
        """Queue an action made here; returns its id. It is in the store before this returns,
        applied to every :meth:`state` at once, and sent now if connected."""
        if not isinstance(action.get("type"), str):
            raise ValueError("an action is a dict with a string 'type'")
        # headroom for the message around it (or the request's other fields)
        if encoded_size(action) > self.max_message_bytes - 1024:
            raise ValueError(f"action larger than max_message_bytes ({self.max_message_bytes})")
        action_id, time = self.clock_.next_id(self.clock())
        meta: dict[str, Any] = {"id": action_id, "time": time}
        stored = self.queue.add(action, meta, clock_ms=time)
        # compaction (logsync_client/compaction.py): the states hold what the queue holds, so the
        # optimistic value is what the server will end with (a change back to the server's value
        # is dropped from both; otherwise a concurrent older write would win there, not here)
        keep = self.queue.last_keep
        for state in self._states:
            if keep is not None and keep.drop:
                state.undo(keep.drop)
            if keep is not None and keep.rewrite:
                state.replace({i: b for i, b in keep.rewrite.items() if i not in keep.drop})
            if stored is not None:
                state.apply(stored.action, meta, answered=False)
        if stored is not None:
            self.transport.push(stored)
        return action_id

    async def sync(self, action: dict[str, Any]) -> dict[str, Any]:
        """Queue an action and wait until the server processed it: returns the
        ``logux/processed`` meta; raises :class:`Undone` (with the reason) on ``logux/undo``."""
        action_id = self.add(action)
        return await self.queue.waiter(action_id)

    def pending(self) -> list[StoredAction]:
        """The actions not answered yet, in creation order."""
        return self.store.pending()

    async def flush(self) -> None:
        """Wait until every pending action is answered."""
        while pending := self.store.pending():
            # every waiter first: one answer page may answer them all
            waiters = [self.queue.waiter(p.id) for p in pending]
            for waiter in waiters:
                with contextlib.suppress(Undone):
                    await waiter

    # -- subscriptions -------------------------------------------------------------------------

    async def subscribe(self, channel: str, **extra: Any) -> None:
        """Subscribe (``extra``: ``filter`` and other ``logux/subscribe`` fields) and wait until
        the server processed it; raises :class:`Undone` if refused. Kept in the store and
        resubscribed (with its resume point) after every reconnect."""
        key = _sub_key(channel, extra)
        self.store.add_subscription(channel, extra)
        if key in self._answered_subs:
            return
        future = self._sub_waiter(key)
        for sub in self.store.subscriptions():
            if sub.key == key:
                self.transport.subscribe(sub)
        await future

    async def unsubscribe(self, channel: str, **extra: Any) -> None:
        """Forget a subscription (the server is told now, or on the next connection)."""
        self.store.remove_subscription(channel, extra)
        self._answered_subs.discard(_sub_key(channel, extra))
        self.transport.unsubscribe(channel, extra)

    def subscriptions(self) -> list[StoredSubscription]:
        return self.store.subscriptions()

    def _sub_waiter(self, key: SubKey) -> asyncio.Future[None]:
        future = self._sub_waiters.get(key)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._sub_waiters[key] = future
        return future

    # -- listening -----------------------------------------------------------------------------

    def on(self, type: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(action, meta)`` for each received action of ``type`` (``"*"``: every
        type but ``logux/processed`` and ``logux/undo``); a coroutine listener runs as a task.
        ``meta.time`` is in this client's clock. Returns a function that removes the listener."""
        self._listeners.setdefault(type, []).append(listener)
        return lambda: self._listeners[type].remove(listener)

    def on_reset(self, listener: Callable[[], None]) -> None:
        """HTTP: the server's log was reset (409): drop what was derived from it; the client
        resubscribes (each channel's ``load`` runs again)."""
        self._reset_listeners.append(listener)

    def state(self, reducer: Reducer[S], initial: S, *, window: int = 1000) -> LocalState[S]:
        """An optimistic :class:`LocalState` fed every action made here or received from now on
        (pending ones first, in creation order)."""
        local: LocalState[S] = LocalState(reducer, initial, window=window)
        for pending in self.store.pending():
            local.apply(pending.action, pending.meta, answered=False)
        self._states.append(local)
        return local

    # -- for the transports --------------------------------------------------------------------

    def new_id(self) -> tuple[str, int]:
        """An id and time for a message the client makes itself (a ``logux/subscribe``)."""
        return self.clock_.next_id(self.clock())

    def handshake_done(self, time_fix: int) -> None:
        """A transport connected: remember the time fix, reset the backoff."""
        self.time_fix = time_fix
        self.connections += 1
        self.backoff.reset()
        self.disconnected.clear()
        self.connected.set()

    def receive(self, action: dict[str, Any], meta: dict[str, Any]) -> None:
        """One action from the server (``meta.time`` in this client's clock)."""
        with contextlib.suppress(ValueError, TypeError):
            self.clock_.observe(int(meta["time"]))
        kind = action.get("type")
        if kind == "logux/processed":
            self.processed(str(action.get("id")), meta)
            self._emit(kind, action, meta, star=False)
            return
        if kind == "logux/undo":
            self.undone(action)
            self._emit(kind, action, meta, star=False)
            return
        if not str(kind).startswith("logux/"):
            for state in self._states:
                state.apply(action, meta)
        self._emit(str(kind), action, meta, star=True)

    def processed(self, action_id: str, meta: dict[str, Any]) -> None:
        self.queue.processed(action_id, meta)
        for state in self._states:
            state.answered(action_id)

    def undone(self, undo: dict[str, Any]) -> None:
        ids = self.queue.undone(str(undo.get("id")), undo)
        for state in self._states:
            state.undo(ids)

    def subscription_answered(
        self, channel: str, extra: dict[str, Any], undo: dict[str, Any] | None
    ) -> None:
        """The server answered a subscription: ``undo`` is its ``logux/undo`` if refused."""
        key = _sub_key(channel, extra)
        future = self._sub_waiters.pop(key, None)
        if undo is None:
            self._answered_subs.add(key)
            if future is not None and not future.done():
                future.set_result(None)
            return
        self.store.remove_subscription(channel, extra)
        if future is not None and not future.done():
            future.set_exception(Undone(undo))

    def reset(self) -> None:
        """HTTP reset: the server dropped our subscriptions; tell the listeners."""
        self.store.reset_subscriptions()
        self._answered_subs.clear()
        for listener in list(self._reset_listeners):
            listener()

    def woken(self) -> asyncio.Event:
        return self._wake

    def _emit(self, kind: str, action: dict[str, Any], meta: dict[str, Any], *, star: bool) -> None:
        listeners = list(self._listeners.get(kind, ()))
        if star:
            listeners += self._listeners.get("*", ())
        for listener in listeners:
            result = listener(action, meta)
            if inspect.isawaitable(result):
                self.spawn(result)

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` as a task the client owns (cancelled by :meth:`stop`)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("listener failed", exc_info=task.exception())
