"""JSON and msgpack codecs: round trips, wrong-format on undecodable input, frame-type choice."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from logsync.protocol.codec import JSON, MSGPACK, JsonCodec, MsgpackCodec, codec_for
from logsync.protocol.messages import ProtocolError

MESSAGES: list[list[Any]] = [
    ["connect", 5, "10:abc:tab", 0, {"token": "secret", "subprotocol": 1}],
    ["connected", 5, "server:x", [1_700_000_000_000, 1_700_000_000_005], {"subprotocol": 1}],
    ["ping", 0],
    ["pong", 123456789012],
    ["sync", 7, {"type": "A", "n": None, "f": 1.5, "b": True}, {"time": -3, "id": [-3, "n:x", 2]}],
    ["sync", 7, {"type": "ünïcødé", "emoji": "🙂"}, {"time": 0, "id": [0, 1]}],
    ["synced", 7],
    ["error", "wrong-protocol", {"supported": 5, "used": 4}],
    ["debug", "error", "line 1\nline 2"],
    ["headers", {"env": "development", "nested": {"a": [1, {"b": []}]}}],
    ["duilian", "金木水火土"],
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m[0])
def test_json_round_trip(msg: list[Any]) -> None:
    frame = JSON.encode(msg)
    assert isinstance(frame, str)
    assert JSON.decode(frame) == msg
    assert JSON.decode(frame.encode()) == msg  # a text frame handed over as bytes


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m[0])
def test_msgpack_round_trip(msg: list[Any]) -> None:
    frame = MSGPACK.encode(msg)
    assert isinstance(frame, bytes)
    decoded = MSGPACK.decode(frame)
    assert decoded == msg
    assert type(decoded) is list  # arrays come back as lists, not tuples
    assert decoded == JSON.decode(JSON.encode(msg))  # both codecs carry the same arrays


def test_json_encoding_is_compact_json_array() -> None:
    assert JSON.encode(["ping", 1]) == '["ping",1]'
    assert JSON.encode(["duilian", "金木水火土"]) == '["duilian","金木水火土"]'


def test_msgpack_strings_stay_strings_and_bytes_stay_bytes() -> None:
    decoded = MSGPACK.decode(MSGPACK.encode(["headers", {"k": "v", "b": b"\x00\x01"}]))
    assert decoded == ["headers", {"k": "v", "b": b"\x00\x01"}]
    assert isinstance(decoded[1]["k"], str)


@pytest.mark.parametrize(
    "frame",
    ["", "[", "]", "[1,]", "{'a': 1}", "NaN", "[NaN]", "[Infinity]", "[1e400]", "ping", "[1] [2]"],
)
def test_json_undecodable_text_is_wrong_format_with_the_text(frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        JSON.decode(frame)
    assert info.value.type == "wrong-format"
    assert info.value.options == frame


def test_json_invalid_utf8_bytes_are_wrong_format() -> None:
    with pytest.raises(ProtocolError) as info:
        JSON.decode(b'["ping", "\xff"]')
    assert info.value.type == "wrong-format"
    assert isinstance(info.value.options, str)
    assert info.value.options.startswith('["ping"')


def test_json_lone_surrogate_character_is_wrong_format() -> None:
    # A str holding an actual lone surrogate is not UTF-8 text (it cannot come off a socket).
    with pytest.raises(ProtocolError) as info:
        JSON.decode('["\ud800"]')
    assert info.value.type == "wrong-format"
    assert info.value.options == '["\ufffd"]'  # the echo is encodable


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        # what JSON.stringify writes for an emoji cut in half
        (r'["sync",1,{"type":"A","text":"hi \ud83d"},{"time":0,"id":0}]',
         ["sync", 1, {"type": "A", "text": "hi \ufffd"}, {"time": 0, "id": 0}]),
        (r'["\udc00x\ud800"]', ["\ufffdx\ufffd"]),
        (r'["\ud83d\ude00\ud83d"]', ["\U0001f600\ufffd"]),  # a pair stays
        (r'{"k\uDBFF": ["\uDFFF", {"\ud800": 1}]}', {"k\ufffd": ["\ufffd", {"\ufffd": 1}]}),
        (r'"\ud800"', "\ufffd"),
        (r'[1e300, -5, 2.5, true, null]', [1e300, -5, 2.5, True, None]),
    ],
)  # fmt: skip
def test_json_lone_surrogate_escapes_become_replacement_characters(
    frame: str, expected: Any
) -> None:
    assert JSON.decode(frame) == expected
    assert JSON.decode(frame.encode()) == expected
    # and encode again (in a list: `encode` takes messages, and mypyc-compiled it checks that)
    assert JSON.decode(JSON.encode([JSON.decode(frame)])) == [expected]


def test_surrogate_fallback_only_when_orjson_fails() -> None:
    assert JSON.decode(r'["\ud83d\ude00"]') == ["\U0001f600"]
    assert JSON.decode(r'["\\ud800"]') == ["\\ud800"]  # an escaped backslash, not an escape


@pytest.mark.parametrize(
    "frame",
    [
        r'["\ud800", NaN]',
        r'["\ud800", Infinity]',
        r'["\ud800", -Infinity]',
        r'["\ud800", 1e400]',
        r'["\ud800"',
        r'["\ud800"] x',
        r"['\ud800']",
        "[" * 100_000 + r'"\ud800"' + "]" * 100_000,
        r'["\ud800", "' + "\x01" + '"]',  # a raw control character
        r"\ud800",
    ],
    ids=lambda f: f[:30],
)
def test_surrogate_fallback_is_still_strict_json(frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        JSON.decode(frame)
    assert info.value.type == "wrong-format"
    assert info.value.options == frame[:1024]


def test_json_wrong_format_echo_is_truncated() -> None:
    frame = "[" + "x" * 1_000_000
    with pytest.raises(ProtocolError) as info:
        JSON.decode(frame)
    assert info.value.options == frame[:1024]
    with pytest.raises(ProtocolError) as info:
        MSGPACK.decode(frame)
    assert info.value.options == frame[:1024]


def test_json_decodes_non_arrays_for_validate_to_reject() -> None:
    # The codec only parses; shape checks are validate()'s job.
    assert JSON.decode('{"a": 1}') == {"a": 1}
    assert JSON.decode("5") == 5


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",  # never-used type byte
        b"\x92\x01",  # array of 2 with 1 element
        b"\x01\x02",  # extra data after the first object
        b"\xd9\x05ab",  # truncated str8
        msgpack.packb({1: 2}),  # non-string map key
        msgpack.packb(["a"]) + b"\x00",
    ],
    ids=lambda b: b.hex() or "empty",
)
def test_msgpack_undecodable_bytes_are_wrong_format_with_hex(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        MSGPACK.decode(frame)
    assert info.value.type == "wrong-format"
    assert info.value.options == "0x" + frame.hex()


def test_msgpack_describe_truncates_long_frames() -> None:
    frame = b"\xc1" * 1000
    with pytest.raises(ProtocolError) as info:
        MSGPACK.decode(frame)
    assert info.value.options == "0x" + "c1" * 256


def test_msgpack_refuses_text_frames() -> None:
    with pytest.raises(ProtocolError) as info:
        MSGPACK.decode('["ping",1]')
    assert (info.value.type, info.value.options) == ("wrong-format", '["ping",1]')


def test_codec_for_picks_by_frame_type() -> None:
    assert codec_for('["ping",1]') is JSON
    assert codec_for(b"\x92\xa4ping\x01") is MSGPACK
    assert isinstance(codec_for(""), JsonCodec)
    assert isinstance(codec_for(b""), MsgpackCodec)
    assert JSON.binary is False
    assert MSGPACK.binary is True


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m[0])
def test_codec_for_decodes_what_each_codec_encodes(msg: list[Any]) -> None:
    for codec in (JSON, MSGPACK):
        frame = codec.encode(msg)
        assert codec_for(frame) is codec
        assert codec_for(frame).decode(frame) == msg
