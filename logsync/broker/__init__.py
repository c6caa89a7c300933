"""Fan-out of appended entries to the nodes that have subscribers for them."""

from logsync.broker.base import Broker, EntryHandler
from logsync.broker.local import LocalBroker


def open_broker(url: str) -> Broker:
    """A broker for ``local://`` (in-process, one node)."""
    scheme = url.split("://", 1)[0]
    if scheme == "local":
        return LocalBroker()
    raise ValueError(f"unknown broker URL {url!r}: use local://")


__all__ = ["Broker", "EntryHandler", "LocalBroker", "open_broker"]
