"""The RFC 6455 opening handshake, server side, without I/O.

Feed the bytes a connection starts with to :func:`parse_request_head` until it returns a
:class:`RequestHead`; answer an upgrade with :func:`accept` (the ``101`` response, after the
origin check of :func:`check_origin`) or an :func:`http_response` error. Errors are
:class:`HandshakeError` (an HTTP status). The head is searched only from where the previous
search ended, so bytes arriving one at a time cost linear time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 16 * 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(Exception):
    """The request can't be upgraded: answer with this HTTP status (and headers) and close."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or {}


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
