"""Moved to :mod:`logsync.engine` (the node is composed of stages there)."""

from logsync.engine.node import ServerNode

__all__ = ["ServerNode"]
