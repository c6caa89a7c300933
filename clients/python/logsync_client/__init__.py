"""logsync_client: the Python client of logsync, over WebSocket or pull-only HTTP.

Start with :class:`Client` (``async with Client(url, user_id, token, store="app.db") as client``),
then ``await client.sync(action)``, ``await client.subscribe(channel)``, ``client.on(type, cb)``
and ``client.state(reducer, initial)``. The protocol itself is :mod:`logsync.protocol` (shared
with the server); the reference is ``clients/python/README.md``.
"""

from logsync_client.client import Client
from logsync_client.errors import ClientClosed, ClientError, Refused, Undone
from logsync_client.pending import Compactor, Keep, PendingAction, PendingQueue
from logsync_client.state import LocalState
from logsync_client.store import Store

__all__ = [
    "Client",
    "ClientClosed",
    "ClientError",
    "Compactor",
    "Keep",
    "LocalState",
    "PendingAction",
    "PendingQueue",
    "Refused",
    "Store",
    "Undone",
]
