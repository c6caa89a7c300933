"""Codecs: message lists to frames and back.

:class:`JsonCodec` is what Logux clients use (one JSON array per text frame); :class:`MsgpackCodec`
carries the same arrays in binary frames, for our own clients and node-to-node traffic. Both raise
:class:`~logsync.protocol.messages.ProtocolError` (``wrong-format``) on undecodable input; validate
the result with :func:`~logsync.protocol.messages.validate`.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgpack
import orjson

from logsync.protocol.messages import Message, ProtocolError


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
            raise ProtocolError("wrong-format", self.describe(frame)) from None

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
            raise ProtocolError("wrong-format", frame)
        try:
            return msgpack.unpackb(frame, raw=False, strict_map_key=True)
        except Exception:
            raise ProtocolError("wrong-format", self.describe(frame)) from None

    def encode(self, message: Message) -> bytes:
        return bytes(msgpack.packb(message, use_bin_type=True))

    encode_payload = encode

    def describe(self, frame: str | bytes) -> str:
        data = frame.encode() if isinstance(frame, str) else frame
        return "0x" + data[:256].hex()


JSON = JsonCodec()
MSGPACK = MsgpackCodec()


def codec_for(frame: str | bytes) -> Codec:
    """The codec a received frame is in: text → JSON, binary → msgpack."""
    return JSON if isinstance(frame, str) else MSGPACK
