"""Codecs: message lists to frames and back.

:class:`JsonCodec` is what Logux clients use (one JSON array per text frame); :class:`MsgpackCodec`
carries the same arrays in binary frames, for our own clients and node-to-node traffic. Both raise
:class:`~logsync.protocol.messages.ProtocolError` (``wrong-format``, quoting at most
:data:`~logsync.protocol.schema.MAX_ECHO` characters of the frame) on undecodable input; validate
the result with :func:`~logsync.protocol.messages.validate`.

JSON text with a lone UTF-16 surrogate escape (``"\\ud83d"``: what ``JSON.stringify`` writes for an
emoji cut in half) is decoded too, each lone surrogate becoming U+FFFD; orjson refuses it, so only
then does :func:`decode_lenient_json` run.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn, Protocol

import msgpack
import orjson

from logsync.protocol.ids import ActionId
from logsync.protocol.messages import Message, ProtocolError
from logsync.protocol.schema import echo, replace_surrogates

# An escape of a UTF-16 surrogate (high or low): the only reason to retry what orjson refused.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class Codec(Protocol):
    """Turns frames into message lists and back. ``binary`` says which WebSocket frame type it uses."""

    binary: bool

    def decode(self, frame: str | bytes) -> Any: ...

    def encode(self, message: Message) -> str | bytes:
        """A frame to send: ``str`` for a text frame, ``bytes`` for a binary one."""
        ...

    def encode_payload(self, message: Message) -> bytes:
        """The frame's payload as bytes (UTF-8 for text frames), for writing it to a socket."""
        ...

    def describe(self, frame: str | bytes) -> str:
        """A printable form of a frame for ``wrong-format`` errors."""
        ...


class JsonCodec:
    """JSON text frames."""

    binary = False

    def decode(self, frame: str | bytes) -> Any:
        try:
            return orjson.loads(frame)
        except orjson.JSONDecodeError:
            pass
        try:
            text = frame if isinstance(frame, str) else frame.decode()
        except UnicodeDecodeError:
            raise ProtocolError("wrong-format", echo(self.describe(frame))) from None
        if _SURROGATE_ESCAPE.search(text):
            try:
                return decode_lenient_json(text)
            except (ValueError, RecursionError):
                pass
        raise ProtocolError("wrong-format", echo(text))

    def encode(self, message: Message) -> str:
        return orjson.dumps(message).decode()

    def encode_payload(self, message: Message) -> bytes:
        return orjson.dumps(message)

    def describe(self, frame: str | bytes) -> str:
        return frame if isinstance(frame, str) else frame.decode("utf-8", "replace")


class MsgpackCodec:
    """msgpack binary frames holding the same message arrays."""

    binary = True

    def decode(self, frame: str | bytes) -> Any:
        if isinstance(frame, str):
            raise ProtocolError("wrong-format", echo(frame))
        try:
            return msgpack.unpackb(frame, raw=False, strict_map_key=True)
        except Exception:
            raise ProtocolError("wrong-format", self.describe(frame)) from None

    def encode(self, message: Message) -> bytes:
        return bytes(msgpack.packb(message, use_bin_type=True))

    def encode_payload(self, message: Message) -> bytes:
        # A method, not `encode_payload = encode`: mypyc's native classes lose such an alias.
        return self.encode(message)

    def describe(self, frame: str | bytes) -> str:
        data = frame.encode() if isinstance(frame, str) else frame
        return "0x" + data[:256].hex()


def decode_lenient_json(text: str) -> Any:
    """Strict JSON (no NaN or Infinity, no number overflowing to infinity) in which lone
    surrogates are replaced by U+FFFD, in strings and keys. Raises ``ValueError`` (or
    ``RecursionError`` when nested too deep) otherwise."""
    value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    # Walk without recursion: every container once, every string once.
    if isinstance(value, str):
        return replace_surrogates(value)
    stack = [value] if isinstance(value, list | dict) else []
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = replace_surrogates(item)
                elif isinstance(item, list | dict):
                    stack.append(item)
        else:
            for key, item in list(node.items()):
                if isinstance(item, str):
                    item = replace_surrogates(item)
                elif isinstance(item, list | dict):
                    stack.append(item)
                fixed = replace_surrogates(key)
                if fixed != key:
                    del node[key]
                node[fixed] = item
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"{text} overflows")
    return number


def sync_template(
    action_json: bytes, action_id: str, subprotocol: int | None, local_node_id: str
) -> tuple[bytes, bytes, int]:
    """The JSON of a one-action ``sync`` message as a ``bytes`` %-template, the same action's
    part of a several-action ``sync`` (its body), and the id's ms.

    The template has three ``%d`` holes: the ``sync`` value, the id's ms and the action's time,
    the last two relative to the connection's ``baseTime``; the body has the last two. Everything
    else (the action's JSON, the compressed id's node and seq, the subprotocol) is spliced in
    once, so a fan-out fills the template per recipient
    (:meth:`~logsync.protocol.session.Session.send_sync_encoded`, or the bodies with
    :meth:`~logsync.protocol.session.Session.send_sync_bodies`) instead of building and encoding
    a message each time. Filled, it is byte for byte what :meth:`JsonCodec.encode_payload` makes
    of the message :meth:`Session.send_sync` builds. ``action_id`` must parse (entries are
    checked before delivery)."""
    parsed = ActionId.parse(action_id)
    if parsed.node_id != local_node_id:
        node = orjson.dumps(parsed.node_id).replace(b"%", b"%%")
        wire_id = b"[%d," + node + b"," + str(parsed.seq).encode() + b"]"
    elif parsed.seq == 0:
        wire_id = b"%d"
    else:
        wire_id = b"[%d," + str(parsed.seq).encode() + b"]"
    tail = b"" if subprotocol is None else b',"subprotocol":' + str(subprotocol).encode()
    action = action_json.replace(b"%", b"%%")
    body = action + b',{"id":' + wire_id + b',"time":%d' + tail + b"}"
    return b'["sync",%d,' + body + b"]", body, parsed.ms


JSON = JsonCodec()
MSGPACK = MsgpackCodec()


def codec_for(frame: str | bytes) -> Codec:
    """The codec a received frame is in: text → JSON, binary → msgpack."""
    return JSON if isinstance(frame, str) else MSGPACK
