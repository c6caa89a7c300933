"""Who asked to be woken: the registrations of pull-only clients (Web Push subscriptions,
webhooks) and the indexes the wake-up decision reads — a user's registered clients, and the
registered clients pulling a channel — all in the store's records (see
:mod:`logsync.engine.wakeups` for the table of kinds), so they survive restarts and every node
sees them.

The HTTP endpoints call :meth:`WakeupRegistrations.register`, :meth:`~WakeupRegistrations.registrations`
and :meth:`~WakeupRegistrations.unregister`; the decision calls
:meth:`~WakeupRegistrations.clients_of` and :meth:`~WakeupRegistrations.still_pulls`; the pull
transport's peers, as they leave, :meth:`~WakeupRegistrations.pull_subscriptions_changed`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import orjson

from logsync.engine.subscriptions import PULL_RECORDS
from logsync.log import LogStore
from logsync.protocol.ids import parse_node_id
from logsync.settings import Settings
from logsync.wakeup import Registration, WebPushSubscription, registration_id
from logsync.wakeup.registration import Kind
from logsync.wallclock import now_ms

KIND = "wakeup"
USERS = "wake-user"
CHANNELS = "wake-channel"
INDEXED = "wake-channels"
ACTIVE = "wake-active"
# The pull transport's record of a client's subscriptions: {"channels": {channel: {...}}}.
PULL = PULL_RECORDS


class RegistrationRefused(ValueError):
    """A registration the server does not take; ``code`` is the API's error code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WakeupRegistrations:
    """The registrations and their indexes; see the module docstring. ``web_push``: whether
    this server can send Web Push (a VAPID key is set); ``on_registered`` is called after each
    registration (the node starts tracking presence at the first one)."""

    def __init__(
        self,
        store: LogStore,
        settings: Settings,
        *,
        web_push: bool,
        on_registered: Callable[[], None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.web_push = web_push
        self.on_registered = on_registered

    async def register(
        self,
        node_id: str,
        *,
        webpush: WebPushSubscription | None = None,
        webhook: str | None = None,
    ) -> Registration:
        """Register ``node_id``'s client to be woken (one of ``webpush``, ``webhook``); the same
        endpoint again gives the same id. :class:`RegistrationRefused` past
        ``wakeups_per_client`` or for Web Push while it is off."""
        node = parse_node_id(node_id)
        client = node.client_id
        if webpush is not None:
            if not self.web_push:
                raise RegistrationRefused(
                    "bad-request", "Web Push is off on this server (no vapid_private_key)"
                )
            kind: Kind = "webpush"
            endpoint, keys = webpush.endpoint, webpush.keys
        elif webhook is not None:
            prefixes = [p.strip() for p in self.settings.wakeup_webhook_prefixes.split(",")]
            allowed = [p for p in prefixes if p]
            if allowed and not any(webhook.startswith(p) for p in allowed):
                raise RegistrationRefused("bad-request", "this webhook URL is not allowed here")
            kind, endpoint, keys = "webhook", webhook, None
        else:
            raise RegistrationRefused("bad-request", "give webpush or webhook")
        reg_id = registration_id(kind, endpoint)
        limit = self.settings.wakeups_per_client
        existing = await self.store.list_records(KIND, client + "\0", limit=limit + 1)
        if client + "\0" + reg_id not in dict(existing) and len(existing) >= limit:
            raise RegistrationRefused(
                "limit", f"a client may have at most {limit} wake-up registrations"
            )
        registration = Registration(
            id=reg_id, kind=kind, endpoint=endpoint, keys=keys, node=node_id, created=now_ms()
        )
        await self.store.put_record(KIND, client + "\0" + reg_id, registration.dump())
        if _has_user(node.user_id):
            await self.store.put_record(USERS, f"{node.user_id}\0{client}", b"")
        pulled = await self.store.get_record(PULL, client)
        await self._index_channels(client, _pull_channels(pulled))
        await self.store.add_record(ACTIVE, "", b"1")
        self.on_registered()
        return registration

    async def registrations(self, client_id: str) -> list[Registration]:
        """The client's registrations, in id order."""
        found = await self.store.list_records(
            KIND, client_id + "\0", limit=self.settings.wakeups_per_client
        )
        return [Registration.load(value) for _, value in found]

    async def unregister(self, client_id: str, reg_id: str) -> bool:
        """Remove a registration; whether there was one. The client's last one takes its
        user and channel index records with it."""
        removed = await self.store.delete_record(KIND, f"{client_id}\0{reg_id}")
        if removed and not await self.store.list_records(KIND, client_id + "\0", limit=1):
            user = parse_node_id(client_id).user_id
            if _has_user(user):
                await self.store.delete_record(USERS, f"{user}\0{client_id}")
            await self._index_channels(client_id, ())
        return removed

    async def pull_subscriptions_changed(self, client_id: str, channels: Collection[str]) -> None:
        """The pull transport saved ``client_id``'s subscriptions: keep the channel index of
        a registered client in step (nothing for a client without registrations)."""
        if await self.store.list_records(KIND, client_id + "\0", limit=1):
            await self._index_channels(client_id, channels)

    async def _index_channels(self, client_id: str, channels: Collection[str]) -> None:
        """Make ``wake-channel`` hold exactly ``channels`` for the client."""
        stored = await self.store.get_record(INDEXED, client_id)
        before = set(orjson.loads(stored)) if stored else set()
        after = set(channels)
        for channel in after - before:
            await self.store.put_record(CHANNELS, f"{channel}\0{client_id}", b"")
        for channel in before - after:
            await self.store.delete_record(CHANNELS, f"{channel}\0{client_id}")
        if after:
            await self.store.put_record(INDEXED, client_id, orjson.dumps(sorted(after)))
        elif stored:
            await self.store.delete_record(INDEXED, client_id)

    async def clients_of(self, index: str) -> list[tuple[str, str | None]]:
        """The registered clients an entry filed under ``index`` concerns: ``(client, the
        channel it came through)``, or ``(client, None)`` for one of its own indexes."""
        kind, _, name = index.partition(":")
        if kind == "client":
            return [(name, None)]
        if kind == "node":
            return [(parse_node_id(name).client_id, None)]
        fanout = self.settings.wakeup_fanout
        if kind == "user":
            keys = await self.store.list_records(USERS, name + "\0", limit=fanout)
            return [(key.partition("\0")[2], None) for key, _ in keys]
        if kind == "channel":
            keys = await self.store.list_records(CHANNELS, name + "\0", limit=fanout)
            return [(key.partition("\0")[2], name) for key, _ in keys]
        return []

    async def still_pulls(self, client: str, via: set[str]) -> bool:
        """Whether the client's pull subscriptions still hold one of ``via`` (the channel index
        may be behind them: expired or unsubscribed); a stale index is brought in step."""
        channels = _pull_channels(await self.store.get_record(PULL, client))
        if via & channels:
            return True
        await self._index_channels(client, channels)
        return False


def _has_user(user_id: str | None) -> bool:
    return user_id is not None and user_id != "false"


def _pull_channels(value: bytes | None) -> set[str]:
    """The channels of a ``pull`` record."""
    if not value:
        return set()
    try:
        channels = orjson.loads(value).get("channels")
    except (orjson.JSONDecodeError, AttributeError):
        return set()
    return set(channels) if isinstance(channels, dict | list) else set()
