"""Logux protocol v5 messages: names, shapes and validation.

A message is a list ``[type, *args]``. :func:`validate` checks one against the rules
``@logux/core``'s server validator enforces and returns the protocol error to answer with, or
``None``. Numbers are ints or floats, never booleans; objects are dicts. Beyond Logux, positions
(``added``, ``synced``) must be finite and within ``0..2**53``, a ``connect`` protocol finite, and
``headers`` must round-trip both codecs (:mod:`~logsync.protocol.schema` has the rules); the session
checks the rest of ``connect`` and each action's fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from logsync.protocol.schema import echo, is_count, is_finite_number, is_headers

PROTOCOL_VERSION = 5

Message = list[Any]


class ProtocolError(Exception):
    """A Logux protocol error: sent to the peer as ``['error', type, options?]``."""

    def __init__(self, type: str, options: Any = None) -> None:
        super().__init__(type if options is None else f"{type}: {options!r}")
        self.type = type
        self.options = options

    def message(self) -> Message:
        """The ``error`` message that reports this error."""
        if self.options is None:
            return ["error", self.type]
        return ["error", self.type, self.options]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_two_numbers(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)


def is_wire_id(value: Any) -> bool:
    """One of the three compressed id forms: ms, [ms, seq], [ms, node, seq]."""
    if is_number(value) or _is_two_numbers(value):
        return True
    return (
        isinstance(value, list)
        and len(value) == 3
        and is_number(value[0])
        and isinstance(value[1], str)
        and is_number(value[2])
    )


def _is_meta(value: Any) -> bool:
    return isinstance(value, dict) and is_number(value.get("time")) and is_wire_id(value.get("id"))


def _connect(msg: Message) -> bool:
    return (
        len(msg) >= 4
        and is_finite_number(msg[1])
        and isinstance(msg[2], str)
        and is_count(msg[3])
        and (len(msg) == 4 or (len(msg) == 5 and isinstance(msg[4], dict)))
    )


def _connected(msg: Message) -> bool:
    return (
        len(msg) >= 4
        and is_number(msg[1])
        and isinstance(msg[2], str)
        and _is_two_numbers(msg[3])
        and (len(msg) == 4 or (len(msg) == 5 and isinstance(msg[4], dict)))
    )


def _one_count(msg: Message) -> bool:
    return len(msg) == 2 and is_count(msg[1])


def _sync(msg: Message) -> bool:
    if not is_count(msg[1]) or len(msg) % 2 != 0:
        return False
    for i in range(2, len(msg), 2):
        action, meta = msg[i], msg[i + 1]
        if not isinstance(action, dict) or not isinstance(action.get("type"), str):
            return False
        if not _is_meta(meta):
            return False
    return True


def _error(msg: Message) -> bool:
    return len(msg) in (2, 3) and isinstance(msg[1], str)


def _debug(msg: Message) -> bool:
    return len(msg) == 3 and msg[1] == "error" and isinstance(msg[2], str)


def _headers(msg: Message) -> bool:
    return len(msg) == 2 and is_headers(msg[1])


def _duilian(msg: Message) -> bool:
    return len(msg) == 2 and isinstance(msg[1], str)


# Message type → shape check. Types outside this table get ``unknown-message``.
VALIDATORS: dict[str, Callable[[Message], bool]] = {
    "connect": _connect,
    "connected": _connected,
    "ping": _one_count,
    "pong": _one_count,
    "sync": _sync,
    "synced": _one_count,
    "error": _error,
    "debug": _debug,
    "headers": _headers,
    "duilian": _duilian,
}


def validate(msg: Any, raw: str) -> ProtocolError | None:
    """Check a decoded message; ``raw`` is its text, echoed in ``wrong-format`` as Logux does
    (at most :data:`~logsync.protocol.schema.MAX_ECHO` characters of it)."""
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
        return wrong_format(raw)
    check = VALIDATORS.get(msg[0])
    if check is None:
        return ProtocolError("unknown-message", echo(msg[0]))
    if len(msg) < 2 or not check(msg):
        return wrong_format(raw)
    return None


def wrong_format(raw: str) -> ProtocolError:
    """The ``wrong-format`` error quoting (the start of) a bad frame's text."""
    return ProtocolError("wrong-format", echo(raw))
