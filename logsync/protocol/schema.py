"""Validation at the door: the type and range of every field a client sends, written once.

Pure functions on plain decoded values (no session state, no I/O), for every transport: the
WebSocket :class:`~logsync.protocol.session.Session` calls them now, an HTTP transport can call
them on the same values later. Each ``check_*`` function returns the value in its normal form (an
``int`` for an integral ``5.0``) or raises :class:`SchemaError`, whose text is the ``details`` an
``logux/undo`` carries; each ``is_*`` function is a cheap yes/no for frame-level checks.

What is checked:

* milliseconds (ids and ``time``, absolute: after adding the connection's ``baseTime``),
  sequence numbers and subprotocols are whole numbers in ``0..MAX_SAFE``; ``added`` and
  ``synced`` values are finite numbers in that range;
* node ids follow the Logux grammar (:func:`is_node_id`); tokens are strings of at most
  ``MAX_TOKEN_LENGTH``;
* an action is accepted only if it round-trips through both codecs (:func:`round_trips`) and, for
  ``logux/subscribe`` and ``logux/unsubscribe``, has the shape the engine relies on
  (:func:`check_action`).
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgpack
import orjson

from logsync.protocol.ids import ActionId

# JavaScript numbers are exact up to here; ids, times, sequence numbers and positions stay within.
MAX_SAFE = 2**53
MAX_NODE_ID_LENGTH = 256
MAX_TOKEN_LENGTH = 64 * 1024
MAX_CHANNEL_LENGTH = 512
# At most this much of a bad frame is echoed back in `wrong-format`.
MAX_ECHO = 1024
# orjson encodes at most 254 levels of nesting. An accepted action is later sent inside more
# levels (the message array; a `logux/undo` quoting it; an envelope of some transport): values
# may use this many, leaving the rest for those.
MAX_DEPTH = 200
_HEADROOM = 254 - MAX_DEPTH

SUBSCRIPTION_TYPES = frozenset({"logux/subscribe", "logux/unsubscribe"})

# One node id part: no ':', whitespace, control characters (C0, DEL, C1) or lone surrogates.
_PART = "[^:\\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+"
_NODE_ID = re.compile(rf"{_PART}(?::{_PART}){{0,2}}")
_SURROGATE = re.compile("[\ud800-\udfff]")
# One packer for every check (3x faster than msgpack.packb, which builds one per call). It resets
# after a failed pack and, with no `default` hook, packs without releasing the GIL.
_PACKER = msgpack.Packer(use_bin_type=True)
# A full id: canonical decimal ms and seq (no sign, no leading zeros, at most 16 digits).
_NUMBER = r"0|[1-9][0-9]{0,15}"
_ACTION_ID = re.compile(rf"({_NUMBER}) (\S+) ({_NUMBER})")


class SchemaError(ValueError):
    """A field out of its type or range; ``str(error)`` says which, for ``details``."""


# -- numbers -----------------------------------------------------------------------------------


def check_whole(value: Any, what: str) -> int:
    """``value`` as an int in ``0..MAX_SAFE``: ints and integral floats pass, bools, NaN, inf and
    fractions do not."""
    if type(value) is int:
        if 0 <= value <= MAX_SAFE:
            return value
    elif type(value) is float and value.is_integer() and 0 <= value <= MAX_SAFE:
        return int(value)
    raise SchemaError(f"{what} must be a whole number in 0..2**53, got {_show(value)}")


def is_count(value: Any) -> bool:
    """An ``added``/``synced`` value: a finite number (not a bool) in ``0..MAX_SAFE``."""
    kind = type(value)
    return (kind is int or kind is float) and 0 <= value <= MAX_SAFE


def is_finite_number(value: Any) -> bool:
    """A number that is neither a bool nor NaN nor infinite (a ``connect`` protocol version)."""
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


# -- identities --------------------------------------------------------------------------------


def is_node_id(value: Any) -> bool:
    """A Logux node id: a non-empty string of at most ``MAX_NODE_ID_LENGTH`` characters without
    whitespace, control characters or lone surrogates, of one to three non-empty ``:``-separated
    parts."""
    return (
        type(value) is str
        and len(value) <= MAX_NODE_ID_LENGTH
        and _NODE_ID.fullmatch(value) is not None
    )


def check_node_id(value: Any) -> str:
    if not is_node_id(value):
        raise SchemaError(f"node id must be 1 to 3 ':'-separated parts, got {_show(value)}")
    result: str = value
    return result


def check_token(value: Any) -> str | None:
    """A ``connect`` token: a string of at most ``MAX_TOKEN_LENGTH`` characters, or absent (None)."""
    if value is None or (type(value) is str and len(value) <= MAX_TOKEN_LENGTH):
        return value
    raise SchemaError(f"token must be a string of at most {MAX_TOKEN_LENGTH} characters")


def check_subprotocol(value: Any) -> int:
    """A subprotocol (``connect`` option or ``meta.subprotocol``): a whole number in ``0..MAX_SAFE``."""
    return check_whole(value, "subprotocol")


def parse_action_id(text: Any) -> ActionId:
    """A full id string, parsed and checked: ms and seq in range, a valid node id."""
    match = _ACTION_ID.fullmatch(text) if type(text) is str else None
    if match is not None:
        parsed = ActionId(int(match[1]), match[2], int(match[3]))
        if parsed.ms <= MAX_SAFE and parsed.seq <= MAX_SAFE and is_node_id(parsed.node_id):
            return parsed
    raise SchemaError(f"action id must be '<ms> <node> <seq>' in range, got {_show(text)}")


def wire_id(wire: Any, base_time: int, remote_node_id: str) -> str:
    """Expand and check a received compressed id: ``ms`` (relative to ``base_time``),
    ``[ms, seq]`` or ``[ms, node, seq]``, to ``"<ms> <node> <seq>"`` with ms (absolute) and seq in
    range and a valid node. ``remote_node_id``, the sender's node for the first two forms, was
    checked at ``connect`` and is not checked again.
    """
    if type(wire) is list:
        if len(wire) == 2:
            ms, node, seq = wire[0], remote_node_id, wire[1]
        elif len(wire) == 3:
            ms, node, seq = wire[0], check_node_id(wire[1]), wire[2]
        else:
            raise SchemaError(f"id must be ms, [ms, seq] or [ms, node, seq], got {_show(wire)}")
    else:
        ms, node, seq = wire, remote_node_id, 0
    return f"{check_whole(_relative(ms, base_time), 'id ms')} {node} {check_whole(seq, 'id seq')}"


def _relative(ms: Any, base_time: int) -> Any:
    kind = type(ms)
    if kind is int or (kind is float and ms.is_integer()):
        return int(ms) + base_time
    return ms  # check_whole() refuses it


# -- actions -----------------------------------------------------------------------------------


def round_trips(value: Any) -> bool:
    """Whether ``value`` survives ``orjson.dumps``/``loads`` and ``msgpack.packb``/``unpackb``
    unchanged, with integers within JavaScript's safe range (``|n| < 2**53``).

    Refused: bytes, NaN and infinities, integers beyond 53 bits, non-string keys, nesting deeper
    than ``MAX_DEPTH`` levels (so that the value can still be sent inside a message), lone
    surrogates. ``orjson.dumps`` raises for all of them except the non-finite floats, which it
    writes as ``null``, and the depth, which is checked (by encoding the value under
    ``254 - MAX_DEPTH`` more levels) only when the text has that many brackets: the full
    comparison runs only when the text has a ``null``. What orjson writes is plain JSON data, which
    msgpack carries losslessly. (For the values the codecs produce: a tuple would come back as a
    list.)
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER)
        _PACKER.pack(value)
        if text.count(b"[") + text.count(b"{") > MAX_DEPTH:
            wrapped = value
            for _ in range(_HEADROOM):
                wrapped = [wrapped]
            orjson.dumps(wrapped)
    except (TypeError, ValueError, OverflowError):  # orjson.JSONEncodeError is a TypeError
        return False
    return b"null" not in text or bool(orjson.loads(text) == value)


def check_action(action: dict[str, Any], max_channel_length: int = MAX_CHANNEL_LENGTH) -> None:
    """Check one action (a dict with a string ``type``): it round-trips both codecs, and a
    ``logux/subscribe``/``logux/unsubscribe`` has a string ``channel`` of at most
    ``max_channel_length`` characters, an optional ``since`` dict (``id`` a valid action id,
    ``time`` a whole number in range, both optional) and an optional ``filter`` dict."""
    if not round_trips(action):
        raise SchemaError("action does not round-trip through JSON and msgpack")
    if action["type"] not in SUBSCRIPTION_TYPES:
        return
    channel = action.get("channel")
    if type(channel) is not str or len(channel) > max_channel_length:
        raise SchemaError(f"channel must be a string of at most {max_channel_length} characters")
    if "since" in action:
        since = action["since"]
        if type(since) is not dict:
            raise SchemaError("since must be an object")
        if "id" in since:
            parse_action_id(since["id"])
        if "time" in since:
            check_whole(since["time"], "since.time")
    if "filter" in action and type(action["filter"]) is not dict:
        raise SchemaError("filter must be an object")


def check_entry(
    action: dict[str, Any], meta: dict[str, Any], max_channel_length: int = MAX_CHANNEL_LENGTH
) -> None:
    """Check an action and its meta, whose ``id`` is already a checked full id and ``time``
    absolute. Normalises ``meta`` in place: ``time`` and ``subprotocol`` (if present) become ints."""
    meta["time"] = check_whole(meta.get("time"), "meta.time")
    if "subprotocol" in meta:
        meta["subprotocol"] = check_subprotocol(meta["subprotocol"])
    check_action(action, max_channel_length)


def stand_in(action: dict[str, Any]) -> dict[str, Any]:
    """What to quote of a refused action (in its ``logux/undo``): itself if it round-trips, else
    only its type (lone surrogates replaced), so the answer can always be encoded."""
    return action if round_trips(action) else {"type": replace_surrogates(action["type"])}


def is_headers(value: Any) -> bool:
    """Whether a ``headers`` message carries an object that round-trips both codecs."""
    return type(value) is dict and round_trips(value)


# -- echoes ------------------------------------------------------------------------------------


def echo(text: str) -> str:
    """Client text quoted back in an error: at most ``MAX_ECHO`` characters, lone surrogates
    replaced by U+FFFD so that it encodes."""
    return replace_surrogates(text[:MAX_ECHO])


def replace_surrogates(text: str) -> str:
    """``text`` with every lone UTF-16 surrogate replaced by U+FFFD."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _show(value: Any) -> str:
    # A short, encodable description of a bad value (containers by type only: no deep repr).
    if type(value) is list or type(value) is dict:
        return f"{type(value).__name__} of {len(value)}"
    return echo(repr(value)[:80])
