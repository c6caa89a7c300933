"""What the client raises: :class:`Undone` for a refused action, :class:`Refused` for a refused
client (wrong credentials or subprotocol: no retry), :class:`ClientClosed` once stopped."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of the client's errors."""


class Undone(ClientError):
    """The server answered an action with ``logux/undo``.

    ``reason`` is the undo reason (``denied``, ``error``, ``unknownType``, a custom one…),
    ``undo`` the whole ``logux/undo`` action (extra fields included), ``action`` the undone action.
    """

    def __init__(self, undo: dict[str, Any]) -> None:
        self.undo = undo
        self.reason: str = str(undo.get("reason", "error"))
        self.action: dict[str, Any] | None = undo.get("action")
        self.id: str = str(undo.get("id", ""))
        super().__init__(f"action {self.id} undone: {self.reason}")


class Refused(ClientError):
    """The server refused this client for good (``wrong-credentials``, ``wrong-protocol``,
    ``wrong-subprotocol``, or HTTP 401/400): it will not reconnect. ``type`` is the error type."""

    def __init__(self, type: str, options: Any = None) -> None:
        self.type = type
        self.options = options
        super().__init__(type if options is None else f"{type}: {options!r}")


class ClientClosed(ClientError):
    """The client was stopped before the action was answered (it stays pending in the store)."""
