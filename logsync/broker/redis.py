"""``redis://``: fan-out between nodes through Redis pub/sub, for nodes sharing a Redis log store.

The store's append script already ``PUBLISH``es each new entry on ``P:pub:<index>`` for every index
it is filed under, in ``added`` order. This broker subscribes only to the indexes that have local
sessions (channels with subscribers, connected users, clients, nodes) and hands what arrives to the
node in order. When its connection drops, the messages in between are lost: after it has
resubscribed it calls the resync handler, and the node serves every session from the log again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable

import redis.asyncio
import redis.exceptions

from logsync.broker.base import Broker
from logsync.log.redis import RedisStore, decode_published

logger = logging.getLogger("logsync.broker.redis")

RETRY_MAX_S = 2.0
# Topics ``claim:<client id>`` carry claims (see Broker.claim), not entries.
CLAIM = "claim:"


class RedisBroker(Broker):
    """Pub/sub on the store's Redis. ``publish`` does nothing: the append script published already."""

    def __init__(self, store: RedisStore) -> None:
        super().__init__()
        self.store = store
        self.healthy = False
        self._topics: Counter[str] = Counter()
        self._redis = redis.asyncio.Redis.from_url(
            store.redis_url, socket_connect_timeout=5.0, health_check_interval=5
        )
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None
        self._last_added = 0
        self._lock = asyncio.Lock()
        self._claims = self._channel(CLAIM)

    def _channel(self, topic: str) -> str:
        return self.store.channel(topic)

    async def start(self) -> None:
        # A channel nobody publishes on keeps the connection subscribed (and checkable) even when
        # no session is listening to anything yet.
        await self._pubsub.subscribe(self._channel("-"))
        self.healthy = True
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def publish(self, entry: object) -> None:
        return None

    async def claim(self, client_id: str, owner: str) -> None:
        if self.healthy:
            with contextlib.suppress(redis.exceptions.ConnectionError, OSError):
                await self._redis.publish(self._channel(CLAIM + client_id), owner)

    async def listen(self, topics: Iterable[str]) -> None:
        new = []
        for topic in topics:
            self._topics[topic] += 1
            if self._topics[topic] == 1:
                new.append(self._channel(topic))
        if new and self.healthy:
            async with self._lock:
                # on failure the reader reconnects and subscribes to every topic then
                with contextlib.suppress(redis.exceptions.ConnectionError, OSError):
                    await self._pubsub.subscribe(*new)

    async def unlisten(self, topics: Iterable[str]) -> None:
        gone = []
        for topic in topics:
            self._topics[topic] -= 1
            if self._topics[topic] <= 0:
                del self._topics[topic]
                gone.append(self._channel(topic))
        if gone and self.healthy:
            async with self._lock:
                with contextlib.suppress(redis.exceptions.ConnectionError, OSError):
                    await self._pubsub.unsubscribe(*gone)

    async def _read(self) -> None:
        lost = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        delay = 0.05
        while True:
            if not self.healthy:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                await self._resubscribe()
                continue
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except lost as error:
                logger.warning("lost the Redis pub/sub connection: %s", error)
                self.healthy = False
                continue
            delay = 0.05
            if message is None or message["type"] != "message":
                continue
            channel = message["channel"].decode()
            if channel.startswith(self._claims):
                if self._claimed is not None:
                    self._claimed(channel[len(self._claims) :], message["data"].decode())
                continue
            entry = decode_published(message["data"])
            # An entry filed under several indexes arrives once per index, back to back.
            if entry.added <= self._last_added:
                continue
            self._last_added = entry.added
            if self._handler is not None:
                self._handler(entry)

    async def _resubscribe(self) -> None:
        """Try once to subscribe again to every topic; on success, report healthy and resync."""
        lost = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        async with self._lock:
            with contextlib.suppress(*lost):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            channels = [self._channel("-")] + [self._channel(t) for t in self._topics]
            try:
                await self._pubsub.subscribe(*channels)
            except lost:
                return
        logger.warning("Redis pub/sub is back: serving every session from the log to fill the gap")
        self.healthy = True
        if self._resync is not None:
            self._resync()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        try:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._redis.aclose()
        except (redis.exceptions.ConnectionError, OSError):
            pass
