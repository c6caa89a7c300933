"""A real :class:`~logsync.engine.peer.Peer` for in-process engine tests: it keeps, in order,
everything the engine asks of it instead of writing it to a socket."""

from __future__ import annotations

from typing import Any

from logsync.app import Context
from logsync.engine import Host, Subscription
from logsync.log import Entry
from logsync.protocol import ProtocolError
from logsync.protocol.ids import NodeParts, parse_node_id


class RecordingPeer:
    """Always live, never behind; ``log`` is what the client would have received."""

    def __init__(self, host: Host, node_id: str) -> None:
        self.host = host
        self.parts: NodeParts = parse_node_id(node_id)
        self.remote: str | None = "127.0.0.1"
        self.cookie: dict[str, str] = {}
        self.authenticated = True
        self.closed = False
        self.subscriptions: dict[str, Subscription] = {}
        self.connect_synced = 0
        self.claim: str | None = None
        self.claim_seen = False
        self.live = True
        self.buffered_bytes = 0
        # ("answer", action) | ("entry", action, added) | ("synced", added, barrier) | ("paused",)
        # | ("resumed",) | ("closed", code)
        self.log: list[tuple[Any, ...]] = []

    @property
    def client_id(self) -> str:
        return self.parts.client_id

    @property
    def user_id(self) -> str | None:
        return self.parts.user_id

    @property
    def node_id(self) -> str:
        return self.parts.node_id

    @property
    def subprotocol(self) -> int | None:
        return None

    def context(self) -> Context:
        return Context(self.host, self.user_id, self.client_id, self.node_id, None, {})

    def accept(self, now: int, options: dict[str, Any], headers: dict[str, Any] | None) -> None:
        self.log.append(("accepted",))

    def refuse(self, error: ProtocolError) -> None:
        self.log.append(("refused", error.type))

    def start_delivery(self, synced: int, *, up_to_date: bool = False) -> None:
        self.connect_synced = synced

    def offer(self, entry: Entry) -> None:
        if self.should_deliver(entry):
            self.log.append(("entry", entry.action, entry.added))

    def should_deliver(self, entry: Entry) -> bool:
        return f"client:{self.client_id}" in entry.indexes or (
            f"user:{self.user_id}" in entry.indexes and entry.origin_client != self.client_id
        )

    def catch_up(self) -> None:
        pass

    def replay_channel(self, channel: str, after: int) -> None:
        pass

    def topics(self) -> list[str]:
        return [f"client:{self.client_id}", f"node:{self.node_id}", f"user:{self.user_id}"]

    def send_after(self, barrier: int, action: dict[str, Any], meta: dict[str, Any]) -> None:
        self.log.append(("answer", action))

    def synced_after(self, barrier: int, added: float) -> None:
        self.log.append(("synced", added, barrier))

    def pause_reading(self) -> None:
        self.log.append(("paused",))

    def resume_reading(self) -> None:
        self.log.append(("resumed",))

    async def wait_drained(self, limit: int) -> None:
        return None

    def debug(self, text: str) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        self.log.append(("closed", code))
        self.closed = True

    async def wait_closed(self) -> None:
        return None

    def closed_by_peer(self) -> None:
        self.closed = True

    def kinds(self) -> list[str]:
        """What happened, as short names: 'processed:<id>', 'undo:<reason>', 'synced:<added>'."""
        names = []
        for item in self.log:
            if item[0] in ("answer", "entry") and item[1]["type"] == "logux/processed":
                names.append(f"processed:{item[1]['id'].split(' ')[2]}")
            elif item[0] in ("answer", "entry") and item[1]["type"] == "logux/undo":
                names.append(f"undo:{item[1]['reason']}")
            elif item[0] == "synced":
                names.append(f"synced:{item[1]}")
            elif item[0] in ("paused", "resumed"):
                names.append(item[0])
        return names
