"""RFC 6455 without I/O, server side: the opening handshake and the frame format.

Feed the bytes a connection starts with to :func:`parse_request_head` until it returns a
:class:`RequestHead`; answer an upgrade with :func:`accept` (the ``101`` response, after the
origin check of :func:`check_origin`) or an :func:`http_response` error. From then on feed bytes
to :meth:`FrameReader.feed`, which returns whole messages and control frames, check a received
close frame with :func:`parse_close`, and build what to send with :func:`frame` (or
:func:`frame_header` in front of a payload). Errors are :class:`HandshakeError` (an HTTP status)
and :class:`FrameError` (a close code); nothing here touches a socket.

The work done for a client's bytes is linear in their number however they are split: the head
is searched only from where the previous search ended, and a frame's bytes are appended to one
buffer that is read only once it holds as many bytes as the frame's header says it needs.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 16 * 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
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


class HandshakeError(Exception):
    """The request can't be upgraded: answer with this HTTP status (and headers) and close."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or {}


class FrameError(Exception):
    """The client broke the frame format: close the connection with ``code``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class RequestHead:
    """An HTTP/1.1 request line and headers (names lower-cased, repeats joined with ``", "``);
    ``size`` is how many bytes of the input they took."""

    method: str
    target: str
    headers: dict[str, str]
    size: int

    @property
    def is_upgrade(self) -> bool:
        """Whether this asks for a WebSocket: ``Upgrade`` names it, or the request carries a
        WebSocket key (then :func:`accept` judges it, and refuses a wrong ``Upgrade``). Other
        upgrades (``h2c``) are plain HTTP requests whose ``Upgrade`` a server may ignore."""
        return "websocket" in tokens(self.headers.get("upgrade", "")) or (
            "sec-websocket-key" in self.headers
        )


def tokens(value: str) -> set[str]:
    """A comma-separated header value as a set of lower-cased tokens (RFC 9110 §5.6.1)."""
    return {token.strip().lower() for token in value.split(",")} - {""}


def parse_request_head(data: bytes | bytearray, searched: int = 0) -> RequestHead | None:
    """The request head, once ``data`` holds all of it; ``None`` while it is incomplete.

    ``searched``: how many bytes of ``data`` an earlier call already saw without finding the
    end of the head (so bytes arriving one at a time are not searched again and again)."""
    end = data.find(b"\r\n\r\n", max(0, searched - 3))
    if end < 0 or end > MAX_HEAD_BYTES:
        if len(data) > MAX_HEAD_BYTES:
            raise HandshakeError(431, "request head too large")
        return None
    lines = bytes(data[:end]).decode("latin-1").split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
        raise HandshakeError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HandshakeError(400, "malformed header")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return RequestHead(request_line[0], request_line[1], headers, end + 4)


def accept(head: RequestHead, allowed_origins: str = "") -> bytes:
    """The ``101 Switching Protocols`` answer to a valid upgrade (no subprotocol, no extensions)
    from an allowed origin (see :func:`check_origin`)."""
    if head.method != "GET":
        raise HandshakeError(405, "WebSocket upgrades use GET", {"Allow": "GET"})
    if "websocket" not in tokens(head.headers.get("upgrade", "")):
        raise HandshakeError(400, "Upgrade: websocket is missing")
    if "upgrade" not in tokens(head.headers.get("connection", "")):
        raise HandshakeError(400, "Connection: Upgrade is missing")
    if head.headers.get("sec-websocket-version") != "13":
        raise HandshakeError(426, "only WebSocket version 13", {"Sec-WebSocket-Version": "13"})
    key = head.headers.get("sec-websocket-key", "")
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid_key = False
    if not valid_key:
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    check_origin(head, allowed_origins)
    digest = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {digest}\r\n\r\n"
    ).encode()


def check_origin(head: RequestHead, allowed_origins: str = "") -> None:
    """Refuse (403) an upgrade a browser sent from a page of another site: a page can open a
    WebSocket to any server, with the user's cookies (cross-site WebSocket hijacking).

    ``allowed_origins``: origins (``scheme://host[:port]``), comma-separated, or ``*`` for any.
    Empty: only the origin whose ``host[:port]`` is the request's ``Host``. A request with no
    ``Origin`` is always allowed: browsers send one with every WebSocket, other clients (servers,
    apps, the Python and Node clients) need none and can't be made to carry a user's cookies."""
    origin = head.headers.get("origin")
    if origin is None:
        return
    allowed = _allowed_origins(allowed_origins)
    if allowed is None:
        return
    normal = _normal_origin(origin)
    if allowed:
        if normal in allowed:
            return
    elif normal is not None and normal.partition("://")[2] == _normal_host(
        head.headers.get("host", ""), normal.partition("://")[0]
    ):
        return
    raise HandshakeError(403, "this origin may not open a WebSocket here (see allowed_origins)")


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


@functools.lru_cache(maxsize=8)
def _allowed_origins(setting: str) -> frozenset[str] | None:
    """The ``allowed_origins`` setting, normalised; ``None`` for any origin, empty for same-site."""
    values = [value.strip() for value in setting.split(",") if value.strip()]
    if "*" in values:
        return None
    origins = {_normal_origin(value) for value in values}
    return frozenset(origin for origin in origins if origin is not None)


def _normal_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, without a default port; ``None`` if not an origin
    (``null``, a path, garbage)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if not parts.scheme or not host or parts.path not in ("", "/") or parts.query:
        return None
    if ":" in host:
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _normal_host(host: str, scheme: str) -> str:
    """A ``Host`` header lower-cased, without the default port of ``scheme``."""
    host = host.strip().lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is not None and host.endswith(f":{default}"):
        host = host[: -len(f":{default}")]
    return host


def http_response(status: int, text: str, headers: dict[str, str] | None = None) -> bytes:
    """A short plain-text HTTP/1.1 answer after which the connection closes."""
    body = text.encode()
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    fields = {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **(headers or {}),
    }
    lines.extend(f"{name}: {value}" for name, value in fields.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


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
            payload = _unmask(data[start:end], data[start - 4 : start])
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


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, repeated: done on whole integers, not byte by byte."""
    size = len(payload)
    if not size:
        return b""
    key = int.from_bytes((mask * ((size >> 2) + 1))[:size], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")
