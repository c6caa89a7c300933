"""The RFC 6455 protocol state (logsync.websocket.protocol), in process: bytes in, events and
bytes out, one test per rule of the Rules comment above ``TRANSITIONS``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logsync.websocket.frames import CloseCode, FrameReader, Opcode, close_payload, frame
from logsync.websocket.protocol import (
    TRANSITIONS,
    BinaryMessage,
    CloseReceived,
    InvalidState,
    MessageTooBig,
    PingReceived,
    ProtocolFailed,
    ServerProtocol,
    State,
    TextMessage,
)
from tests.support.rawsocket import client_frame


def sent(protocol: ServerProtocol) -> list[tuple[Opcode, bytes]]:
    """What the protocol queued, as the client reads it (server frames are never masked)."""
    data = protocol.data_to_send()
    frames: list[tuple[Opcode, bytes]] = []
    pos = 0
    while pos < len(data):
        first, second, pos = data[pos], data[pos + 1], pos + 2
        assert not second & 0x80  # never masked
        length = second & 0x7F
        if length == 126:
            length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif length == 127:
            length, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        assert first & 0x80  # FIN: the server never fragments
        frames.append((Opcode(first & 0x0F), bytes(data[pos : pos + length])))
        pos += length
    return frames


def text(value: str) -> bytes:
    return client_frame(Opcode.TEXT, value.encode())


def test_messages_come_out_as_events_in_order() -> None:
    """A text message is its str (TextMessage), a binary one its bytes (BinaryMessage)."""
    protocol = ServerProtocol(1000)
    data = text("a") + client_frame(Opcode.BINARY, b"\x00\x01") + text("é")
    events = protocol.receive_data(data)
    assert [type(event) for event in events] == [TextMessage, BinaryMessage, TextMessage]
    assert events == [
        "a",
        b"\x00\x01",
        "é",
    ]
    assert protocol.state is State.OPEN
    assert protocol.pending_bytes == 0 and protocol.data_to_send() == b""


@given(st.text(max_size=300), st.integers(1, 40))
def test_a_text_message_whatever_the_chunking(value: str, step: int) -> None:
    protocol = ServerProtocol(10_000)
    data = client_frame(Opcode.TEXT, value.encode(), fin=False) + client_frame(
        Opcode.CONTINUATION, b"!"
    )
    events = []
    for i in range(0, len(data), step):
        events.extend(protocol.receive_data(data[i : i + step]))
    assert events == [value + "!"]
    assert protocol.buffered == 0


def test_a_ping_is_answered_with_its_payload() -> None:
    protocol = ServerProtocol(1000)
    events = protocol.receive_data(client_frame(Opcode.PING, b"hi") + text("after"))
    assert events == [PingReceived(b"hi"), "after"]
    assert protocol.pending_bytes == 4
    assert sent(protocol) == [(Opcode.PONG, b"hi")]


def test_pongs_from_the_peer_are_dropped() -> None:
    protocol = ServerProtocol(1000)
    assert protocol.receive_data(client_frame(Opcode.PONG, b"x")) == []
    assert protocol.data_to_send() == b""


def test_while_pongs_are_held_only_the_last_ping_is_answered() -> None:
    protocol = ServerProtocol(1000)
    protocol.hold_pongs()
    pings = b"".join(client_frame(Opcode.PING, b"p%d" % i) for i in range(100))
    assert len(protocol.receive_data(pings)) == 100
    assert protocol.pending_bytes == 0
    assert protocol.release_pongs()
    assert sent(protocol) == [(Opcode.PONG, b"p99")]
    assert not protocol.release_pongs()  # nothing held any more
    assert protocol.receive_data(client_frame(Opcode.PING, b"now")) == [PingReceived(b"now")]
    assert sent(protocol) == [(Opcode.PONG, b"now")]


def test_a_held_pong_is_not_sent_once_closing() -> None:
    protocol = ServerProtocol(1000)
    protocol.hold_pongs()
    protocol.receive_data(client_frame(Opcode.PING, b"p"))
    protocol.send_close(1001, "going away")
    assert not protocol.release_pongs()
    assert sent(protocol) == [(Opcode.CLOSE, close_payload(1001, "going away"))]


def test_sent_messages_are_queued_in_order_without_copying() -> None:
    protocol = ServerProtocol(1000)
    payload = b"y" * 70_000
    protocol.send_text(b'["ping",1]')
    protocol.send_messages([payload, b"z"], binary=True)
    protocol.send_binary(b"")
    assert protocol.pending_bytes == 12 + 70_010 + 3 + 2
    assert sent(protocol) == [
        (Opcode.TEXT, b'["ping",1]'),
        (Opcode.BINARY, payload),
        (Opcode.BINARY, b"z"),
        (Opcode.BINARY, b""),
    ]
    assert protocol.pending_bytes == 0


def test_a_message_over_the_hard_limit_fails_from_its_header() -> None:
    protocol = ServerProtocol(100)
    header = client_frame(Opcode.TEXT, b"x" * 101)[:8]
    assert protocol.receive_data(header) == [
        ProtocolFailed(CloseCode.MESSAGE_TOO_BIG, "message too big")
    ]
    assert protocol.state is State.CLOSED
    assert sent(protocol) == [(Opcode.CLOSE, close_payload(1009, "message too big"))]


def test_a_message_over_the_soft_limit_is_reported_without_its_payload() -> None:
    protocol = ServerProtocol(400, soft_message_bytes=100)
    data = (
        client_frame(Opcode.TEXT, b"x" * 101)
        + client_frame(Opcode.BINARY, b"\xff" * 300)
        + client_frame(Opcode.TEXT, b"\xff" * 101)  # not UTF-8, but not read either
        + text("ok")
    )
    assert protocol.receive_data(data) == [
        MessageTooBig(101, 100),
        MessageTooBig(300, 100),
        MessageTooBig(101, 100),
        "ok",
    ]
    assert protocol.state is State.OPEN and protocol.data_to_send() == b""


def test_the_limits_may_change_between_reads() -> None:
    protocol = ServerProtocol(16)
    assert protocol.receive_data(text("x" * 16)) == ["x" * 16]
    protocol.max_message_bytes = 1000
    assert protocol.max_message_bytes == 1000
    assert protocol.receive_data(text("y" * 999)) == ["y" * 999]
    protocol.soft_message_bytes = 10
    assert protocol.receive_data(text("z" * 11)) == [MessageTooBig(11, 10)]


def test_a_text_message_that_is_not_utf8_fails_with_1007() -> None:
    protocol = ServerProtocol(1000)
    data = text("before") + client_frame(Opcode.TEXT, b"\xff\xfe") + text("after")
    assert protocol.receive_data(data) == [
        "before",
        ProtocolFailed(CloseCode.INVALID_DATA, "text frame is not UTF-8"),
    ]
    assert protocol.state is State.CLOSED
    assert sent(protocol) == [(Opcode.CLOSE, close_payload(1007, "text frame is not UTF-8"))]


def test_a_broken_frame_fails_with_1002() -> None:
    protocol = ServerProtocol(1000)
    events = protocol.receive_data(bytes((0x81, 0x01)) + b"x")  # not masked
    assert events == [ProtocolFailed(CloseCode.PROTOCOL_ERROR, "client frames must be masked")]
    assert sent(protocol) == [(Opcode.CLOSE, close_payload(1002, "client frames must be masked"))]


def test_a_close_frame_is_answered_with_its_code_and_ends_reading() -> None:
    protocol = ServerProtocol(1000)
    data = text("a") + client_frame(Opcode.CLOSE, close_payload(4000, "bye")) + text("b")
    assert protocol.receive_data(data) == ["a", CloseReceived(4000, "bye")]
    assert protocol.state is State.CLOSED
    assert sent(protocol) == [(Opcode.CLOSE, close_payload(4000, ""))]
    assert protocol.receive_data(text("later")) == []  # CLOSED: discarded


def test_a_close_frame_without_a_code_is_answered_with_1000() -> None:
    protocol = ServerProtocol(1000)
    assert protocol.receive_data(client_frame(Opcode.CLOSE, b"")) == [CloseReceived(None, "")]
    assert sent(protocol) == [(Opcode.CLOSE, close_payload(1000, ""))]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", CloseCode.PROTOCOL_ERROR),
        (close_payload(1005, ""), CloseCode.PROTOCOL_ERROR),
        (close_payload(1000, "") + b"\xff", CloseCode.INVALID_DATA),
    ],
)
def test_a_broken_close_frame_fails(payload: bytes, code: CloseCode) -> None:
    protocol = ServerProtocol(1000)
    [event] = protocol.receive_data(client_frame(Opcode.CLOSE, payload))
    assert isinstance(event, ProtocolFailed) and event.code == code
    assert protocol.state is State.CLOSED
    assert [opcode for opcode, _ in sent(protocol)] == [Opcode.CLOSE]


def test_our_close_waits_for_the_peers_and_reads_nothing_else() -> None:
    protocol = ServerProtocol(1000)
    protocol.send_text(b"last")
    protocol.send_close(1008, "policy")
    assert protocol.state is State.CLOSING
    assert sent(protocol) == [
        (Opcode.TEXT, b"last"),
        (Opcode.CLOSE, close_payload(1008, "policy")),
    ]
    data = text("ignored") + client_frame(Opcode.PING, b"p") + client_frame(Opcode.BINARY, b"b")
    assert protocol.receive_data(data) == []
    assert protocol.data_to_send() == b""  # no pong after our close frame
    close = client_frame(Opcode.CLOSE, close_payload(1008, ""))
    assert protocol.receive_data(close) == [CloseReceived(1008, "")]
    assert protocol.state is State.CLOSED
    assert protocol.data_to_send() == b""  # not answered: ours was the first


def test_a_broken_frame_while_closing_sends_no_second_close() -> None:
    protocol = ServerProtocol(1000)
    protocol.send_close(1000, "")
    protocol.data_to_send()
    events = protocol.receive_data(client_frame(0x3, b""))
    assert events == [ProtocolFailed(CloseCode.PROTOCOL_ERROR, "unknown opcode")]
    assert protocol.state is State.CLOSED and protocol.data_to_send() == b""


@pytest.mark.parametrize("state", [State.CLOSING, State.CLOSED])
def test_sending_once_the_close_is_under_way_raises(state: State) -> None:
    protocol = ServerProtocol(1000)
    protocol.send_close(1000, "")
    if state is State.CLOSED:
        protocol.receive_data(client_frame(Opcode.CLOSE, b""))
    assert protocol.state is state
    with pytest.raises(InvalidState):
        protocol.send_text(b"x")
    with pytest.raises(InvalidState):
        protocol.send_messages([b"x"], binary=True)
    with pytest.raises(InvalidState):
        protocol.send_close(1000, "")


def test_the_transitions_are_the_rules() -> None:
    """Every state but CLOSED can be left, CLOSED only entered; only OPEN can send a close."""
    assert {start for start, _ in TRANSITIONS} == {State.OPEN, State.CLOSING}
    assert TRANSITIONS[State.OPEN, "send_close"] is State.CLOSING
    assert all(
        end is State.CLOSED for (_, cause), end in TRANSITIONS.items() if cause != "send_close"
    )
    assert (State.CLOSING, "send_close") not in TRANSITIONS


def test_what_is_sent_is_what_frame_builds() -> None:
    protocol = ServerProtocol(1000)
    protocol.send_text(b"abc")
    protocol.send_close(1000, "bye")
    expected = frame(Opcode.TEXT, b"abc") + frame(Opcode.CLOSE, close_payload(1000, "bye"))
    assert protocol.data_to_send() == expected


def test_a_whole_small_frame_is_parsed_in_one_read() -> None:
    """The reader under the protocol holds nothing between whole frames (no copy kept)."""
    protocol = ServerProtocol(1000)
    reader = FrameReader(1000)
    data = b"".join(text(f"m{i}") for i in range(100))
    assert len(protocol.receive_data(data)) == 100 and protocol.buffered == 0
    assert len(reader.feed(data)) == 100 and reader.buffered == 0
