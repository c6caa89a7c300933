"""RFC 6455 handshake and frames (logsync.websocket.handshake, .frames), without sockets."""

from __future__ import annotations

import os
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logsync.websocket.frames import (
    CloseCode,
    FrameError,
    FrameReader,
    Opcode,
    close_code,
    close_payload,
    frame,
    is_valid_close_code,
    parse_close,
)
from logsync.websocket.handshake import (
    HandshakeError,
    accept,
    check_origin,
    http_response,
    parse_request_head,
)
from tests.support.rawsocket import client_frame

UPGRADE = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"X-Forwarded-For: 10.0.0.1\r\n"
    b"x-forwarded-for: 10.0.0.2\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def test_the_rfc_example_handshake_is_accepted() -> None:
    assert parse_request_head(UPGRADE[:-3]) is None  # incomplete: wait for more
    head = parse_request_head(UPGRADE + b"\x81")
    assert head is not None
    assert head.size == len(UPGRADE)
    assert head.is_upgrade and head.target == "/chat"
    assert head.headers["x-forwarded-for"] == "10.0.0.1, 10.0.0.2"
    response = accept(head)
    assert response.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response  # RFC 6455 §1.3
    assert response.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ((b"GET /chat", b"POST /chat"), 405),
        ((b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), 426),
        ((b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="), 400),
        ((b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!"), 400),
        ((b"keep-alive, Upgrade", b"keep-alive"), 400),
        ((b"keep-alive, Upgrade", b"keep-alive, Upgraded"), 400),
        ((b"Upgrade: websocket", b"Upgrade: notwebsocket"), 400),
        ((b"Upgrade: websocket", b"Upgrade: websockets"), 400),
    ],
)
def test_a_bad_upgrade_gets_an_http_error(change: tuple[bytes, bytes], status: int) -> None:
    head = parse_request_head(UPGRADE.replace(*change))
    assert head is not None
    with pytest.raises(HandshakeError) as error:
        accept(head)
    assert error.value.status == status


def test_malformed_or_huge_heads_are_refused() -> None:
    with pytest.raises(HandshakeError) as error:
        parse_request_head(b"GET /\r\n\r\n")
    assert error.value.status == 400
    with pytest.raises(HandshakeError) as error:
        parse_request_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
    assert error.value.status == 400
    with pytest.raises(HandshakeError) as error:
        parse_request_head(b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000)
    assert error.value.status == 431


def test_http_response_is_complete() -> None:
    response = http_response(503, "later\n", {"Retry-After": "7"})
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable")
    assert b"Retry-After: 7" in head and b"Connection: close" in head
    assert b"Content-Length: 6" in head and body == b"later\n"


@given(st.binary(max_size=70_000), st.binary(min_size=4, max_size=4), st.integers(1, 50))
def test_frames_are_unmasked_whatever_the_chunking(payload: bytes, mask: bytes, step: int) -> None:
    data = client_frame(Opcode.BINARY, payload, mask=mask) + client_frame(Opcode.PING, b"p")
    reader = FrameReader(100_000)
    out: list[tuple[Opcode, bytes]] = []
    chunk = max(1, len(data) // step)
    for i in range(0, len(data), chunk):
        out.extend(reader.feed(data[i : i + chunk]))
    assert out == [(Opcode.BINARY, payload), (Opcode.PING, b"p")]


def test_fragments_are_joined_and_control_frames_may_come_between() -> None:
    reader = FrameReader(100)
    data = (
        client_frame(Opcode.TEXT, b"hel", fin=False)
        + client_frame(Opcode.PING, b"?")
        + client_frame(Opcode.CONTINUATION, b"lo", fin=False)
        + client_frame(Opcode.CONTINUATION, b"!")
    )
    assert reader.feed(data) == [(Opcode.PING, b"?"), (Opcode.TEXT, b"hello!")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes((0x81, 0x01)) + b"x", CloseCode.PROTOCOL_ERROR),  # not masked
        (client_frame(Opcode.TEXT, b"x")[:1], None),  # incomplete: no error yet
        (bytes((0xC1,)) + client_frame(Opcode.TEXT, b"x")[1:], CloseCode.PROTOCOL_ERROR),  # RSV1
        (client_frame(0x3, b"x"), CloseCode.PROTOCOL_ERROR),  # reserved opcode
        (client_frame(Opcode.CONTINUATION, b"x"), CloseCode.PROTOCOL_ERROR),
        (client_frame(Opcode.PING, b"x" * 126), CloseCode.PROTOCOL_ERROR),
        (client_frame(Opcode.PING, b"x", fin=False), CloseCode.PROTOCOL_ERROR),
        (
            client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b"),
            CloseCode.PROTOCOL_ERROR,
        ),
    ],
)
def test_broken_frames_close_with_a_code(data: bytes, code: CloseCode | None) -> None:
    reader = FrameReader(100)
    if code is None:
        assert reader.feed(data) == []
        return
    with pytest.raises(FrameError) as error:
        reader.feed(data)
    assert error.value.code == code


def test_a_too_big_message_is_refused_from_its_header_alone() -> None:
    reader = FrameReader(1000)
    header = client_frame(Opcode.TEXT, b"x" * 5000)[:8]  # length and mask, no payload yet
    with pytest.raises(FrameError) as error:
        reader.feed(header)
    assert error.value.code == CloseCode.MESSAGE_TOO_BIG
    fragmented = FrameReader(1000)
    fragmented.feed(client_frame(Opcode.TEXT, b"x" * 600, fin=False))
    with pytest.raises(FrameError):
        fragmented.feed(client_frame(Opcode.CONTINUATION, b"x" * 600))


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_have_the_right_length_encoding(size: int) -> None:
    data = frame(Opcode.TEXT, b"y" * size)
    assert data[0] == 0x81 and not data[1] & 0x80  # FIN + text, never masked
    length = data[1] & 0x7F
    if size < 126:
        assert length == size and len(data) == 2 + size
    elif size < 65536:
        assert length == 126 and struct.unpack("!H", data[2:4])[0] == size
    else:
        assert length == 127 and struct.unpack("!Q", data[2:10])[0] == size


def test_close_payload_round_trip() -> None:
    payload = close_payload(1013, "try again later" + "x" * 200)
    assert close_code(payload) == 1013 and len(payload) == 125
    assert close_code(b"") is None


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [
        (b"websocket", b"Upgrade"),
        (b"WebSocket", b"keep-alive, upgrade"),
        (b"h2c, websocket", b"Upgrade ,keep-alive"),
    ],
)
def test_upgrade_and_connection_are_token_lists(upgrade: bytes, connection: bytes) -> None:
    request = UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: " + upgrade).replace(
        b"keep-alive, Upgrade", connection
    )
    head = parse_request_head(request)
    assert head is not None and head.is_upgrade
    assert accept(head).startswith(b"HTTP/1.1 101 ")


def test_only_websocket_requests_are_judged_as_upgrades() -> None:
    # a WebSocket key with a wrong Upgrade is a (refused) WebSocket request...
    wrong = parse_request_head(UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: notwebsocket"))
    assert wrong is not None and wrong.is_upgrade
    # ...another protocol's upgrade is a plain HTTP request, which may ignore it
    h2c = parse_request_head(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
    assert h2c is not None and not h2c.is_upgrade


def test_the_head_is_searched_once_whatever_the_chunking() -> None:
    data = bytearray()
    searched = 0
    for byte in UPGRADE:
        assert parse_request_head(data, searched) is None
        searched = len(data)
        data.append(byte)
    head = parse_request_head(data, searched)
    assert head is not None and head.size == len(UPGRADE)


def with_headers(**headers: str) -> bytes:
    extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return UPGRADE.replace(b"Host: example.com\r\n", extra.encode())


@pytest.mark.parametrize(
    ("headers", "allowed", "ok"),
    [
        ({"Host": "example.com"}, "", True),  # no Origin: not a browser
        ({"Host": "example.com", "Origin": "https://example.com"}, "", True),
        ({"Host": "example.com:443", "Origin": "https://EXAMPLE.com"}, "", True),
        ({"Host": "example.com:8080", "Origin": "http://example.com:8080"}, "", True),
        ({"Host": "example.com", "Origin": "https://evil.example"}, "", False),
        ({"Host": "example.com", "Origin": "https://example.com:8443"}, "", False),
        ({"Host": "example.com", "Origin": "null"}, "", False),
        ({"Host": "example.com", "Origin": "https://example.com.evil.example"}, "", False),
        ({"Host": "api.example", "Origin": "https://app.example"}, "https://app.example", True),
        (
            {"Host": "api.example", "Origin": "https://app.example:443"},
            "https://app.example/",
            True,
        ),
        ({"Host": "api.example", "Origin": "http://app.example"}, "https://app.example", False),
        ({"Host": "api.example", "Origin": "https://api.example"}, "https://app.example", False),
        (
            {"Host": "api.example", "Origin": "https://b.example"},
            "https://a.example, https://b.example",
            True,
        ),
        ({"Host": "api.example", "Origin": "https://evil.example"}, "*", True),
        ({"Host": "api.example", "Origin": "null"}, "*", True),
    ],
)
def test_origins(headers: dict[str, str], allowed: str, ok: bool) -> None:
    head = parse_request_head(with_headers(**headers))
    assert head is not None
    if ok:
        check_origin(head, allowed)
        assert accept(head, allowed).startswith(b"HTTP/1.1 101 ")
        return
    with pytest.raises(HandshakeError) as error:
        accept(head, allowed)
    assert error.value.status == 403
    assert http_response(403, error.value.text).startswith(b"HTTP/1.1 403 Forbidden")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (None, "")),
        (close_payload(1000, ""), (1000, "")),
        (close_payload(1001, "bye"), (1001, "bye")),
        (close_payload(3000, "é"), (3000, "é")),
        (close_payload(4999, ""), (4999, "")),
        (b"\x03", CloseCode.PROTOCOL_ERROR),
        (close_payload(1000, "") + b"\xff\xfe", CloseCode.INVALID_DATA),
        (close_payload(1000, "") + "é".encode()[:1], CloseCode.INVALID_DATA),
    ]
    + [
        (close_payload(code, ""), CloseCode.PROTOCOL_ERROR)
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)
    ],
)
def test_received_close_frames_are_checked(
    payload: bytes, expected: tuple[int | None, str] | CloseCode
) -> None:
    if isinstance(expected, tuple):
        assert parse_close(payload) == expected
        return
    with pytest.raises(FrameError) as error:
        parse_close(payload)
    assert error.value.code == expected


def test_valid_close_codes() -> None:
    valid = [code for code in range(70_000) if is_valid_close_code(code)]
    assert valid == [1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)]


def test_the_limit_can_change_between_feeds() -> None:
    reader = FrameReader(16)
    with pytest.raises(FrameError) as error:
        reader.feed(client_frame(Opcode.TEXT, b"x" * 17)[:6])
    assert error.value.code == CloseCode.MESSAGE_TOO_BIG
    reader = FrameReader(16)
    assert reader.feed(client_frame(Opcode.TEXT, b"x" * 16)) == [(Opcode.TEXT, b"x" * 16)]
    reader.max_message_bytes = 1000
    assert reader.feed(client_frame(Opcode.TEXT, b"y" * 999)) == [(Opcode.TEXT, b"y" * 999)]


def test_a_frame_fed_16_bytes_at_a_time_costs_linear_time() -> None:
    """Bound: 2 MiB fed in 16-byte pieces (131,072 feeds) in under 5 s. Copying the partial
    frame on every feed, as the reader once did, moves 2 MiB * 131,072 / 2 = 128 GiB."""
    payload = os.urandom(2 << 20)
    data = client_frame(Opcode.BINARY, payload) + client_frame(Opcode.PING, b"p")
    reader = FrameReader(4 << 20)
    out: list[tuple[Opcode, bytes]] = []
    started = time.perf_counter()
    for i in range(0, len(data), 16):
        out.extend(reader.feed(data[i : i + 16]))
    elapsed = time.perf_counter() - started
    assert out == [(Opcode.BINARY, payload), (Opcode.PING, b"p")]
    assert reader.buffered == 0
    assert elapsed < 5, elapsed


def test_one_byte_fragments_are_held_in_one_buffer() -> None:
    """Bound: a message sent in 1-byte fragments is held as its bytes (not one object per
    fragment), and still refused once over the limit."""
    reader = FrameReader(100_000)
    pieces = b"".join(client_frame(Opcode.CONTINUATION, b"x", fin=False) for _ in range(50_000))
    data = client_frame(Opcode.TEXT, b"x", fin=False) + pieces
    assert reader.feed(data) == []
    assert reader.buffered == 50_001
    assert reader.feed(client_frame(Opcode.CONTINUATION, b"!")) == [
        (Opcode.TEXT, b"x" * 50_001 + b"!")
    ]
    assert reader.buffered == 0
    with pytest.raises(FrameError) as error:
        reader.feed(client_frame(Opcode.TEXT, b"x", fin=False) + pieces * 2)
    assert error.value.code == CloseCode.MESSAGE_TOO_BIG
