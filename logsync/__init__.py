"""logsync: a Logux protocol v5 server keeping an append-only action log in sync.

Start with :class:`App` (your rules) and ``logsync serve module:app``.
"""

from logsync.app import App, AuthContext, Context, NotFound, Route, Undo

__all__ = ["App", "AuthContext", "Context", "NotFound", "Route", "Undo"]
from logsync.syncmap import ChangedAt, NoConflictResolution, add_sync_map, add_sync_map_filter

__all__ += ["ChangedAt", "NoConflictResolution", "add_sync_map", "add_sync_map_filter"]
