"""Who is connected to this node: peers by client, user and node id, channel subscribers, and
:meth:`Registry.route`, which names the local peers an appended entry may concern.

Pure bookkeeping: no I/O, no rules. The handshake registers a peer once it is accepted; the node
forgets it when its transport closes.
"""

from __future__ import annotations

from collections import defaultdict

from logsync.engine.peer import Peer
from logsync.log import Entry
from logsync.protocol.ids import parse_node_id


class Registry:
    """The peers of one node. A client id has at most one registered peer (the newest)."""

    def __init__(self) -> None:
        self.peers: set[Peer] = set()
        self.by_client: dict[str, Peer] = {}
        self.by_user: dict[str, set[Peer]] = defaultdict(set)
        self.subscribers: dict[str, set[Peer]] = defaultdict(set)
        # Gauges of /metrics kept as they change (a scrape must not walk 10,000 peers). Pull-only
        # HTTP requests (peers that keep their subscriptions) are not counted: they are not
        # connections. `live` is reported by the peers themselves (:meth:`live_changed`).
        self.connections = 0  # attached
        self.sessions = 0  # attached and authenticated
        self.live = 0  # attached, authenticated and delivering live

    def attach(self, peer: Peer) -> None:
        """A transport opened ``peer`` (not authenticated yet)."""
        if peer in self.peers:
            return
        self.peers.add(peer)
        if not getattr(peer, "keeps_subscriptions", False):
            self.connections += 1

    def authenticate(self, peer: Peer) -> None:
        """``peer``'s credentials are accepted: mark it authenticated (and count it, if it is
        still attached)."""
        if peer.authenticated:
            return
        peer.authenticated = True
        if peer in self.peers and not getattr(peer, "keeps_subscriptions", False):
            self.sessions += 1

    def live_changed(self, peer: Peer, live: bool) -> None:
        """``peer`` turned live, or stopped being live (it must say so before it is forgotten:
        :meth:`~logsync.engine.peer.Peer.closed_by_peer` ends live delivery)."""
        if peer in self.peers and not getattr(peer, "keeps_subscriptions", False):
            self.live += 1 if live else -1

    def register(self, peer: Peer) -> Peer | None:
        """``peer`` was accepted: file it by client and user; the peer it replaces, if any."""
        replaced = self.by_client.get(peer.client_id)
        self.by_client[peer.client_id] = peer
        if peer.user_id is not None:
            self.by_user[peer.user_id].add(peer)
        return None if replaced is peer else replaced

    def forget(self, peer: Peer) -> bool:
        """Drop ``peer`` from every table; False if it was already forgotten."""
        if peer not in self.peers:
            return False
        self.peers.discard(peer)
        if not getattr(peer, "keeps_subscriptions", False):
            self.connections -= 1
            if peer.authenticated:
                self.sessions -= 1
        if not peer.authenticated:
            return True
        if self.by_client.get(peer.client_id) is peer:
            del self.by_client[peer.client_id]
        if peer.user_id is not None:
            users = self.by_user[peer.user_id]
            users.discard(peer)
            if not users:
                del self.by_user[peer.user_id]
        return True

    def subscribe(self, peer: Peer, channel: str) -> bool:
        """``peer`` receives ``channel``; True if it is the channel's first subscriber here."""
        subscribers = self.subscribers[channel]
        subscribers.add(peer)
        return len(subscribers) == 1

    def unsubscribe(self, peer: Peer, channel: str) -> bool:
        """``peer`` no longer receives ``channel``; True if the channel has no subscriber left."""
        subscribers = self.subscribers.get(channel)
        if subscribers is None:
            return False
        subscribers.discard(peer)
        if subscribers:
            return False
        del self.subscribers[channel]
        return True

    def peer_of_node(self, node_id: str) -> Peer | None:
        """The connected peer with exactly this node id."""
        peer = self.by_client.get(parse_node_id(node_id).client_id)
        return peer if peer is not None and peer.node_id == node_id else None

    def route(self, entry: Entry) -> set[Peer]:
        """The local peers ``entry`` may concern (each decides with its own delivery rules)."""
        targets: set[Peer] = set()
        for index in entry.indexes:
            kind, _, name = index.partition(":")
            if kind == "channel":
                targets.update(self.subscribers.get(name, ()))
            elif kind == "user":
                targets.update(self.by_user.get(name, ()))
            elif kind == "client":
                peer = self.by_client.get(name)
                if peer is not None:
                    targets.add(peer)
            elif kind == "node":
                peer = self.peer_of_node(name)
                if peer is not None:
                    targets.add(peer)
        return targets
