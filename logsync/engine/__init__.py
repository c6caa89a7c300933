"""Transport-neutral server logic, one object per stage (see each module's docstring):

- ``peer``: the seam — what the engine needs of a client (:class:`Peer`) and what a peer may
  ask of the engine (:class:`Host`);
- ``registry``: peers by client, user and node; channel subscribers; routing of entries;
- ``admission``: the handshake gate for reconnect storms (token bucket, bounded queue);
- ``load``: the AIMD controller of the gate's rate and the event-loop lag monitor;
- ``handshake``: admission, brute-force lock, ``auth``, accept;
- ``inbound``: per-client queues, batches, ``synced`` in order, the inbound bound;
- ``rules``: dedupe → meta → type rules → append → ``process`` → answers;
- ``subscriptions``: subscribe, unsubscribe, resume points;
- ``answers``: server actions, ``logux/processed``, undo;
- ``recovery``: actions a crash left ``waiting``, retention;
- ``node``: :class:`ServerNode`, the composition, lifecycle and health.
"""

from logsync.engine.node import ServerNode
from logsync.engine.peer import Host, Peer, Subscription

__all__ = ["Host", "Peer", "ServerNode", "Subscription"]
