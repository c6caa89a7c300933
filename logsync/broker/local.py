"""``local://``: one node, no network: every published entry goes straight to this node's handler."""

from __future__ import annotations

from collections.abc import Iterable

from logsync.broker.base import Broker
from logsync.log.entry import Entry


class LocalBroker(Broker):
    """In-process fan-out. Topics need no bookkeeping: the only node hears everything."""

    immediate = True

    async def publish(self, entry: Entry) -> None:
        if self._handler is not None:
            self._handler(entry)

    async def listen(self, topics: Iterable[str]) -> None:
        return None

    async def unlisten(self, topics: Iterable[str]) -> None:
        return None
