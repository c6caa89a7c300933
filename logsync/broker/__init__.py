"""Fan-out of appended entries to the nodes that have sessions for them."""

from logsync.broker.base import Broker, EntryHandler
from logsync.broker.local import LocalBroker
from logsync.log import LogStore


def open_broker(url: str, store: LogStore) -> Broker:
    """``local://`` (in-process, one node) or ``redis://`` (pub/sub; needs the Redis store).

    An empty URL picks what fits the store: Redis pub/sub for a Redis log, else local.
    """
    from logsync.log.redis import RedisStore

    scheme = (
        url.split("://", 1)[0] if url else ("redis" if isinstance(store, RedisStore) else "local")
    )
    if scheme == "local":
        return LocalBroker()
    if scheme in ("redis", "rediss"):
        if not isinstance(store, RedisStore):
            raise ValueError(
                "the redis broker needs the redis log store (nodes must share the log)"
            )
        from logsync.broker.redis import RedisBroker

        return RedisBroker(store)
    raise ValueError(f"unknown broker URL {url!r}: use local:// or redis://")


__all__ = ["Broker", "EntryHandler", "LocalBroker", "open_broker"]
