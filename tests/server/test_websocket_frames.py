"""RFC 6455 handshake and frames (logsync.server.websocket), without sockets."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logsync.server.websocket import (
    CloseCode,
    FrameError,
    FrameReader,
    HandshakeError,
    Opcode,
    accept,
    close_code,
    close_payload,
    frame,
    http_response,
    parse_request_head,
)

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


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """A frame as a client sends it: masked."""
    mask = os.urandom(4) if mask is None else mask
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


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
