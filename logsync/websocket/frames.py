"""RFC 6455 frames, server side, without I/O: the frame format and the close frame's payload.

Feed a client's bytes to :meth:`FrameReader.feed`, which returns whole messages and control
frames, unmasked; check a received close frame with :func:`parse_close`; build what to send with
:func:`frame` (or :func:`frame_header` in front of a payload). A client that breaks the format
gets a :class:`FrameError` (the close code to end the connection with). The protocol state
(ping/pong, the close handshake, UTF-8, limits) is :mod:`logsync.websocket.protocol`'s.

The work done for a client's bytes is linear in their number however they are split: a frame's
bytes are appended to one buffer that is read only once it holds as many bytes as the frame's
header says it needs, and a whole frame in one read is parsed without copying it.
"""

from __future__ import annotations

import enum
import struct

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013


class FrameError(Exception):
    """The client broke the frame format: close the connection with ``code``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def frame_header(payload_length: int, opcode: Opcode) -> bytes:
    """The header of a server frame (FIN set, never masked) carrying ``payload_length`` bytes."""
    first = 0x80 | opcode
    if payload_length < 126:
        return bytes((first, payload_length))
    if payload_length < 1 << 16:
        return _HEADER_16.pack(first, 126, payload_length)
    return _HEADER_64.pack(first, 127, payload_length)


def frame(opcode: Opcode, payload: bytes) -> bytes:
    """One whole server frame."""
    return frame_header(len(payload), opcode) + payload


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload: the code, then at most 123 bytes of UTF-8 reason."""
    return code.to_bytes(2, "big") + reason.encode()[:123]


def close_code(payload: bytes) -> int | None:
    """The code in a received close frame's payload (None when it has none)."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """A received close frame's code (None when it has none) and reason. Raises ``FrameError``
    (to close with) for a 1-byte payload or a code no endpoint may send (RFC 6455 §7.4:
    ``PROTOCOL_ERROR``) and for a reason that is not UTF-8 (``INVALID_DATA``)."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise FrameError(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise FrameError(CloseCode.PROTOCOL_ERROR, "invalid close code")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CloseCode.INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


def is_valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame: the defined codes (not 1004, 1005,
    1006 and 1015, which are never sent), the registered 1012 to 1014, and 3000 to 4999 (libraries,
    applications)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class FrameReader:
    """Reassembles a client's frames: :meth:`feed` returns ``(opcode, payload)`` for each whole
    message (``TEXT``/``BINARY``, fragments joined) and each control frame, unmasked.

    A message longer than ``max_message_bytes`` raises ``MESSAGE_TOO_BIG`` as soon as its header
    says so, before its payload is read. The limit may be changed between two calls (a
    connection allows larger frames once authenticated).

    Cost is linear in the bytes fed, however they are split: a frame that does not arrive in
    one piece is appended to a buffer, which is parsed only once it holds what the header said
    is needed (at most three times per frame: the first two bytes, the extended length, the
    whole frame). A whole frame in one ``feed`` is parsed without copying it."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._need = 0  # bytes the buffer must hold before parsing it can go further
        self._message_opcode: Opcode | None = None
        # A fragmented message's payload so far: one buffer, not a list of (maybe 1-byte)
        # pieces each costing an object.
        self._fragments = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held: of an incomplete frame, and of an unfinished fragmented message."""
        return len(self._buffer) + len(self._fragments)

    def feed(self, data: bytes) -> list[tuple[Opcode, bytes]]:
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []
            data = bytes(buffer)
            buffer.clear()
        out: list[tuple[Opcode, bytes]] = []
        pos, size = 0, len(data)
        need = 2
        while size - pos >= 2:
            first, second = data[pos], data[pos + 1]
            if first & 0x70:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "reserved bits set (no extension)")
            if not second & 0x80:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
            length, header = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    need = 4
                    break
                length, header = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    need = 10
                    break
                length, header = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            opcode = _OPCODES.get(first & 0x0F)
            if opcode is None:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "unknown opcode")
            fin = first & 0x80
            if opcode >= Opcode.CLOSE:
                if length > 125 or not fin:
                    raise FrameError(CloseCode.PROTOCOL_ERROR, "malformed control frame")
            elif length + len(self._fragments) > self.max_message_bytes:
                raise FrameError(CloseCode.MESSAGE_TOO_BIG, "message too big")
            start = pos + header + 4
            end = start + length
            if size < end:
                need = end - pos
                break
            payload = unmask(data[start:end], data[start - 4 : start])
            pos = end
            if fin and opcode is not Opcode.CONTINUATION and self._message_opcode is None:
                out.append((opcode, payload))  # the usual case: a whole message in one frame
                continue
            message = self._assemble(opcode, bool(fin), payload)
            if message is not None:
                out.append(message)
        if pos < size:
            buffer += memoryview(data)[pos:]
            self._need = need
        return out

    def _assemble(self, opcode: Opcode, fin: bool, payload: bytes) -> tuple[Opcode, bytes] | None:
        if opcode >= Opcode.CLOSE:
            return opcode, payload  # control frames may come between fragments
        if opcode is Opcode.CONTINUATION:
            if self._message_opcode is None:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "continuation of nothing")
        elif self._message_opcode is not None:
            raise FrameError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
        elif fin:
            return opcode, payload
        else:
            self._message_opcode = opcode
        self._fragments += payload
        if not fin:
            return None
        message = self._message_opcode, bytes(self._fragments)
        self._message_opcode, self._fragments = None, bytearray()
        return message


_OPCODES = {int(opcode): opcode for opcode in Opcode}


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, repeated: done on whole integers, not byte by byte."""
    size = len(payload)
    if not size:
        return b""
    key = int.from_bytes((mask * ((size >> 2) + 1))[:size], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")
