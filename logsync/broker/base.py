"""The broker interface: publish appended entries, hear those of the topics this node needs."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable

from logsync.log.entry import Entry

EntryHandler = Callable[[Entry], None]
# (client id, owner): the connection ``owner`` now holds that client id
ClaimHandler = Callable[[str, str], None]


class Broker(abc.ABC):
    """Carries entries from the node that appended them to every node with interested sessions.

    Topics are log index names (``channel:chat/1``, ``user:alice``…). Handlers run in ``added``
    order for the entries they receive.
    """

    healthy = True
    # True when every entry published after listen() returned reaches this node's handler (an
    # in-process broker); a network broker may still be subscribing, so sessions read the log.
    immediate = False

    def __init__(self) -> None:
        self._handler: EntryHandler | None = None
        self._resync: Callable[[], None] | None = None
        self._claimed: ClaimHandler | None = None

    def on_entry(self, handler: EntryHandler) -> None:
        """Call ``handler`` for every entry published to a topic this node listens to."""
        self._handler = handler

    def on_resync(self, handler: Callable[[], None]) -> None:
        """Call ``handler`` after entries may have been missed (a lost and regained connection)."""
        self._resync = handler

    def on_claim(self, handler: ClaimHandler) -> None:
        """Call ``handler`` for each claim on a client id this node listens to (``claim:<id>``)."""
        self._claimed = handler

    async def claim(self, client_id: str, owner: str) -> None:
        """Tell every node listening to ``claim:<client_id>`` that the connection ``owner`` now
        holds ``client_id`` (they close their older one). One node has no one to tell."""

    async def start(self) -> None:
        """Connect; call before the node accepts sessions."""

    @abc.abstractmethod
    async def publish(self, entry: Entry) -> None:
        """Send an appended entry to every node listening to one of its indexes."""

    @abc.abstractmethod
    async def listen(self, topics: Iterable[str]) -> None:
        """Start hearing these topics."""

    @abc.abstractmethod
    async def unlisten(self, topics: Iterable[str]) -> None:
        """Stop hearing these topics."""

    async def close(self) -> None:
        """Stop and release resources."""
