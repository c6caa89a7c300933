"""A client's ``connect``: admission (the storm gate), the subprotocol, the reserved ``server``
ids, the brute-force lock and the app's ``auth``; then accept — register the peer, close the
older connection of its client on any node (claims through the broker), start delivery.

Call :meth:`Handshake.authenticate` for a peer's ``ConnectRequested``; :meth:`Handshake.claimed`
is the broker's claim handler.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from logsync.app import App, AuthContext, resolve
from logsync.broker import Broker
from logsync.engine.admission import Admission, Refused
from logsync.engine.peer import Peer
from logsync.engine.registry import Registry
from logsync.log import LogStore, StoreUnavailable
from logsync.metrics import Metrics
from logsync.protocol import ConnectRequested, ProtocolError
from logsync.protocol.ids import parse_node_id
from logsync.settings import Settings
from logsync.wallclock import now_ms

logger = logging.getLogger("logsync.node")


class Handshake:
    """Admits, authenticates and accepts peers; see the module docstring."""

    def __init__(
        self,
        app: App,
        node_id: str,
        registry: Registry,
        admission: Admission,
        broker: Broker,
        store: LogStore,
        settings: Settings,
        metrics: Metrics,
        store_failed: Callable[[Exception], None],
        replace: Callable[[Peer], None],
    ) -> None:
        self.app = app
        self.node_id = node_id
        self.registry = registry
        self.admission = admission
        self.broker = broker
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.store_failed = store_failed
        self.replace = replace
        self._failures: dict[str, deque[float]] = {}
        self._claims = itertools.count()
        # told of each peer once it is registered (the wake-ups' presence)
        self.on_accepted: Callable[[Peer], None] | None = None

    async def authenticate(self, peer: Peer, event: ConnectRequested) -> None:
        """Wait for admission; check subprotocol, reserved ids, brute force and the app's
        ``auth``; then accept."""
        try:
            await self.admission.admit()
        except Refused as refused:
            peer.close(1013, f"try again later ({refused})")
            return
        try:
            if not peer.closed:
                await self._admitted(peer, event)
        finally:
            self.admission.done()

    async def _admitted(self, peer: Peer, event: ConnectRequested) -> None:
        node = event.node
        used = event.subprotocol or 0
        if used < self.app.min_subprotocol:
            supported = {"supported": self.app.min_subprotocol, "used": used}
            peer.refuse(ProtocolError("wrong-subprotocol", supported))
            return
        ctx = AuthContext(
            user_id=node.user_id,
            client_id=node.client_id,
            node_id=node.node_id,
            token=event.token,
            headers=event.headers,
            cookie=peer.cookie,
            subprotocol=event.subprotocol,
            remote=peer.remote,
        )
        allowed = await self._credentials(ctx)
        if peer.closed:
            return
        if not allowed:
            peer.refuse(ProtocolError("wrong-credentials"))
            return
        await self._accept(peer, event)

    async def check_credentials(
        self,
        node_id: str,
        token: str | None,
        *,
        remote: str | None,
        headers: dict[str, Any],
        cookie: dict[str, str],
        subprotocol: int | None = None,
    ) -> bool:
        """Whether ``node_id`` with ``token`` from ``remote`` may act as that client — the same
        checks as :meth:`authenticate` (reserved ``server`` ids, the brute-force lock, the app's
        ``auth``, a refusal counted towards the lock) — without registering anything. For
        requests that are not a session (the wake-up registrations)."""
        node = parse_node_id(node_id)
        ctx = AuthContext(
            user_id=node.user_id,
            client_id=node.client_id,
            node_id=node.node_id,
            token=token,
            headers=headers,
            cookie=cookie,
            subprotocol=subprotocol,
            remote=remote,
        )
        return await self._credentials(ctx)

    async def _credentials(self, ctx: AuthContext) -> bool:
        """The reserved ids, the brute-force lock and the app's ``auth``, for every way in."""
        # Brute-force lock: `bruteforce_failures` refused credentials from one address within
        # `bruteforce_window_ms` refuse it until the oldest of them leaves the window. Only real
        # failures count: an attempt refused because of the lock does not extend it.
        settings = self.settings
        ip = ctx.remote or ""
        failures = self._failures.get(ip)  # none (the usual case): no deque made and dropped
        now = time.monotonic()
        if failures is not None:
            while failures and failures[0] < now - settings.bruteforce_window_ms / 1000:
                failures.popleft()
        locked = len(failures or ()) >= settings.bruteforce_failures
        allowed = False
        if ctx.user_id != "server" and ctx.node_id != "server" and not locked:
            allowed = await self._call_auth(ctx)
        if not allowed and not locked:
            # looked up again: another attempt from this address may have run meanwhile
            current = self._failures.get(ip)
            if current is None:
                current = self._failures[ip] = deque()
            current.append(now)
        elif failures is not None and not failures and self._failures.get(ip) is failures:
            del self._failures[ip]
        if not allowed:
            self.metrics.auth_refused += 1
        return allowed

    async def _call_auth(self, ctx: AuthContext) -> bool:
        if self.app.authenticator is None:
            logger.warning("the app has no auth rule: every client is refused")
            return False
        try:
            return bool(await resolve(self.app.authenticator(ctx)))
        except Exception:
            logger.exception("auth failed with an error")
            return False

    async def _accept(self, peer: Peer, event: ConnectRequested) -> None:
        # Registered before the head is read: whatever is appended after that read is routed to
        # this peer, so a client that already has the head can go live without a read.
        self.registry.authenticate(peer)
        await self.broker.listen([*peer.topics(), f"claim:{peer.client_id}"])
        if peer.closed:
            return
        replaced = self.registry.register(peer)
        if replaced is not None:
            self.replace(replaced)
        if self.on_accepted is not None:
            self.on_accepted(peer)
        # On other nodes, an older connection of this client is closed the same way.
        peer.claim = f"{self.node_id} {next(self._claims)}"
        await self.broker.claim(peer.client_id, peer.claim)
        try:
            head = await self.store.head()
        except StoreUnavailable as error:
            self.store_failed(error)
            peer.close(1013, "try again later")
            return
        if peer.closed:
            return
        headers = {"env": "development"} if self.settings.development else None
        peer.accept(now_ms(), {"subprotocol": self.app.subprotocol}, headers)
        synced = int(event.synced) if event.synced > 0 else 0
        up_to_date = synced >= head and self.broker.immediate
        peer.start_delivery(min(synced, head), up_to_date=up_to_date)

    def claimed(self, client_id: str, owner: str) -> None:
        """A node (maybe this one) says the connection ``owner`` holds ``client_id``.

        Claims reach every node in the one order Redis published them, so the last claim wins
        everywhere: a peer whose own claim has come back is older than any claim after it and
        is closed; one whose claim has not come back yet is the newer one and stays."""
        peer = self.registry.by_client.get(client_id)
        if peer is None or peer.claim is None:
            return
        if owner == peer.claim:
            peer.claim_seen = True
        elif peer.claim_seen:
            self.replace(peer)
