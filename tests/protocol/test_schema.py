"""schema.py: the type and range of every field, the round-trip rule, subscribe shapes, echoes."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest

from logsync.protocol.codec import JSON
from logsync.protocol.ids import ActionId
from logsync.protocol.schema import (
    MAX_CHANNEL_LENGTH,
    MAX_DEPTH,
    MAX_ECHO,
    MAX_NODE_ID_LENGTH,
    MAX_SAFE,
    MAX_TOKEN_LENGTH,
    SchemaError,
    check_action,
    check_entry,
    check_node_id,
    check_subprotocol,
    check_token,
    check_whole,
    echo,
    is_count,
    is_finite_number,
    is_headers,
    is_node_id,
    parse_action_id,
    replace_surrogates,
    round_trips,
    stand_in,
    wire_id,
)

NAN = float("nan")
INF = float("inf")

# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (5, 5), (5.0, 5), (MAX_SAFE, MAX_SAFE), (float(MAX_SAFE), MAX_SAFE)],
)
def test_whole_numbers_in_range_pass_as_ints(value: Any, expected: int) -> None:
    result = check_whole(value, "x")
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "value",
    [-1, MAX_SAFE + 1, 2**64, 1e300, 5.5, -0.5, NAN, INF, -INF, True, False, None, "5", [5], b"5"],
    ids=repr,
)
def test_other_values_are_not_whole_numbers(value: Any) -> None:
    with pytest.raises(SchemaError, match="x must be a whole number"):
        check_whole(value, "x")


@pytest.mark.parametrize("value", [0, 1, 2.5, MAX_SAFE, float(MAX_SAFE)])
def test_counts(value: Any) -> None:
    assert is_count(value)


@pytest.mark.parametrize(
    "value", [-1, -0.5, MAX_SAFE + 1, 1e300, NAN, INF, True, None, "1"], ids=repr
)
def test_not_counts(value: Any) -> None:
    assert not is_count(value)


def test_finite_numbers() -> None:
    assert is_finite_number(5) and is_finite_number(1e308) and is_finite_number(-3.5)
    assert not any(is_finite_number(v) for v in (NAN, INF, -INF, True, "5", None))


# --- identities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "node", ["a", "10:abc", "10:abc:tab", "server:x", "380:R7BNGAP5:px3-J3oc", "ü:ñ", "x" * 256]
)
def test_valid_node_ids(node: str) -> None:
    assert is_node_id(node)
    assert check_node_id(node) == node


@pytest.mark.parametrize(
    "node",
    [
        "",
        "a b",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "a\x85b",  # C1 control (also whitespace)
        "a\u2003b",  # em space
        "a\ud800",  # a lone surrogate: ids made of it could not be encoded
        ":",
        "a:",
        ":a",
        "a::b",
        "a:b:c:d",
        "x" * (MAX_NODE_ID_LENGTH + 1),
        5,
        None,
        ["a"],
    ],
    ids=repr,
)
def test_invalid_node_ids(node: Any) -> None:
    assert not is_node_id(node)
    with pytest.raises(SchemaError, match="node id"):
        check_node_id(node)


def test_tokens() -> None:
    assert check_token(None) is None
    assert check_token("") == ""
    assert check_token("t" * MAX_TOKEN_LENGTH) == "t" * MAX_TOKEN_LENGTH
    for bad in ("t" * (MAX_TOKEN_LENGTH + 1), 5, b"t", ["t"], True):
        with pytest.raises(SchemaError, match="token"):
            check_token(bad)


def test_subprotocols() -> None:
    assert check_subprotocol(3) == 3
    assert type(check_subprotocol(2.0)) is int
    for bad in (1e308, -1, 1.5, "1", True, NAN, b"\x01"):
        with pytest.raises(SchemaError, match="subprotocol"):
            check_subprotocol(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 a 0", ActionId(0, "a", 0)),
        (
            "1564508138460 380:R7BNGAP5:px3-J3oc 3",
            ActionId(1564508138460, "380:R7BNGAP5:px3-J3oc", 3),
        ),
        (f"{MAX_SAFE} a {MAX_SAFE}", ActionId(MAX_SAFE, "a", MAX_SAFE)),
    ],
)
def test_parse_action_id(text: str, expected: ActionId) -> None:
    assert parse_action_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1 a",
        "1 a 0 x",
        "-5 a 0",
        "1.5 a 0",
        "01 a 0",  # not canonical: the same id would have two spellings
        "1 a 00",
        f"{MAX_SAFE + 1} a 0",
        "1" * 301 + " a 0",  # the 301-digit millisecond of [1e300, 0]
        "1 a:b:c:d 0",
        "1 a  0",
        "² a 0",  # a unicode digit
        "1 a ٣",
        5,
        None,
    ],
    ids=repr,
)
def test_invalid_action_ids(text: Any) -> None:
    with pytest.raises(SchemaError, match="action id"):
        parse_action_id(text)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (5, "1005 me:x 0"),
        (-1000, "0 me:x 0"),
        (5.0, "1005 me:x 0"),
        ([5, 2], "1005 me:x 2"),
        ([-5, "o:t", 3], "995 o:t 3"),
        ([5.0, 2.0], "1005 me:x 2"),
    ],
)
def test_wire_id_expands_against_base_time(wire: Any, expected: str) -> None:
    assert wire_id(wire, 1000, "me:x") == expected


@pytest.mark.parametrize(
    "wire",
    [
        1e300,  # the 301-digit millisecond
        -1001,  # before 1970 once base_time is added
        MAX_SAFE,  # beyond 2**53 once base_time is added
        0.5,
        NAN,
        INF,
        [0, -1],
        [0, 2**60],
        [0, 1.5],
        [0, "a b", 0],
        [0, "", 0],
        [0, "a:b:c:d", 0],
        [0, 5, 0],
        [1e300, "o", 0],
        [0],
        [0, "o", 0, 0],
    ],
    ids=repr,
)
def test_bad_wire_ids_are_refused(wire: Any) -> None:
    with pytest.raises(SchemaError):
        wire_id(wire, 1000, "me:x")


# --- round trips --------------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {"type": "chat/send", "text": "hello", "room": "r1"},
        {"type": "A", "n": None, "f": 1.5, "b": True, "l": [1, {"x": []}], "e": "🙂"},
        {"type": "A", "big": MAX_SAFE - 1, "neg": -(MAX_SAFE - 1), "huge float": 1e300},
        {"type": "A", "deep": _nested(MAX_DEPTH - 2)},  # MAX_DEPTH levels with the dict
    ],
    ids=["small", "mixed", "edges", "deep"],
)
def test_json_data_round_trips(value: Any) -> None:
    assert round_trips(value)
    # ... and really does, through both codecs
    assert orjson.loads(orjson.dumps(value)) == value
    assert msgpack.unpackb(msgpack.packb(value, use_bin_type=True)) == value


@pytest.mark.parametrize(
    "value",
    [
        {"type": "A", "b": b"\x00"},
        {"type": "A", "x": NAN},
        {"type": "A", "x": [None, INF]},  # a `null` in the text does not hide the infinity
        {"type": "A", "x": -INF},
        {"type": "A", "x": MAX_SAFE},  # JavaScript cannot tell 2**53 from 2**53 + 1
        {"type": "A", "x": -MAX_SAFE},
        {"type": "A", "x": 2**64 - 1},
        {"type": "A", "x": 2**70},
        {"type": "A", "x": {1: 2}},
        {"type": "A", "x": {b"k": 2}},
        {"type": "A", "x": "\ud83d"},
        {"type": "A", "x": _nested(300)},
        {"type": "A", "x": msgpack.ExtType(1, b"x")},
    ],
    ids=["bytes", "nan", "inf-with-null", "-inf", "2**53", "-2**53", "u64", "2**70", "int-key",
         "bytes-key", "surrogate", "too-deep", "ext"],
)  # fmt: skip
def test_what_a_codec_cannot_carry_does_not_round_trip(value: Any) -> None:
    assert not round_trips(value)


def test_depth_leaves_room_to_send_the_action_inside_messages() -> None:
    deepest = {"type": "A", "x": _nested(MAX_DEPTH - 2)}
    assert round_trips(deepest)
    assert not round_trips({"type": "A", "x": _nested(MAX_DEPTH - 1)})
    # orjson alone would take it, but could not send it in a `sync` quoting it in an undo
    assert orjson.dumps({"type": "A", "x": _nested(251)})
    undo = {"type": "logux/undo", "id": "1 a 0", "reason": "error", "action": deepest}
    message = ["sync", 1, undo, {"id": 1, "time": 1}]
    assert JSON.decode(JSON.encode([[[[[[[[[[message]]]]]]]]]])) == [[[[[[[[[[message]]]]]]]]]]
    # brackets inside strings only make the exact check run
    assert round_trips({"type": "A", "text": "[" * 500})


def test_round_trips_with_null_compares_the_decoded_value() -> None:
    assert round_trips({"type": "A", "n": None, "s": "null"})
    assert not round_trips({"type": "A", "n": None, "x": NAN})


# --- actions ------------------------------------------------------------------------------------


def test_check_action_refuses_what_does_not_round_trip() -> None:
    check_action({"type": "A", "x": 1})
    with pytest.raises(SchemaError, match="round-trip"):
        check_action({"type": "A", "x": b"1"})


@pytest.mark.parametrize("kind", ["logux/subscribe", "logux/unsubscribe"])
@pytest.mark.parametrize(
    "action",
    [
        {"channel": "users/1"},
        {"channel": ""},
        {"channel": "c" * MAX_CHANNEL_LENGTH},
        {"channel": "c", "since": {}},
        {"channel": "c", "since": {"id": "1 a:b:c 0", "time": 1}},
        {"channel": "c", "since": {"time": 5.0}},
        {"channel": "c", "filter": {"a": 1}, "creating": True},
    ],
    ids=repr,
)
def test_good_subscriptions(kind: str, action: dict[str, Any]) -> None:
    check_action({"type": kind, **action})


@pytest.mark.parametrize("kind", ["logux/subscribe", "logux/unsubscribe"])
@pytest.mark.parametrize(
    ("action", "match"),
    [
        ({}, "channel"),
        ({"channel": 5}, "channel"),
        ({"channel": None}, "channel"),
        ({"channel": ["a"]}, "channel"),
        ({"channel": "c" * (MAX_CHANNEL_LENGTH + 1)}, "channel"),
        ({"channel": "c", "since": 5}, "since"),
        ({"channel": "c", "since": None}, "since"),
        ({"channel": "c", "since": {"id": "nope"}}, "action id"),
        ({"channel": "c", "since": {"id": 5}}, "action id"),
        ({"channel": "c", "since": {"id": "1" * 301 + " a 0"}}, "action id"),
        ({"channel": "c", "since": {"time": 1e300}}, "since.time"),
        ({"channel": "c", "since": {"time": -1}}, "since.time"),
        ({"channel": "c", "since": {"time": "1"}}, "since.time"),
        ({"channel": "c", "filter": "a"}, "filter"),
        ({"channel": "c", "filter": None}, "filter"),
    ],
    ids=repr,
)
def test_bad_subscriptions(kind: str, action: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        check_action({"type": kind, **action})


def test_channel_bound_is_a_parameter() -> None:
    action = {"type": "logux/subscribe", "channel": "c" * 20}
    check_action(action, max_channel_length=20)
    with pytest.raises(SchemaError, match="at most 19"):
        check_action(action, max_channel_length=19)


def test_other_logux_types_are_left_to_the_engine() -> None:
    check_action({"type": "logux/processed", "channel": 5, "since": "x"})


def test_check_entry_normalises_time_and_subprotocol_in_place() -> None:
    meta: dict[str, Any] = {"id": "1 a 0", "time": 7.0, "subprotocol": 2.0, "extra": "kept"}
    check_entry({"type": "A"}, meta)
    assert meta == {"id": "1 a 0", "time": 7, "subprotocol": 2, "extra": "kept"}
    assert type(meta["time"]) is int and type(meta["subprotocol"]) is int


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"time": 1e300}, "meta.time"),
        ({"time": -1}, "meta.time"),
        ({"time": 1.5}, "meta.time"),
        ({"time": NAN}, "meta.time"),
        ({}, "meta.time"),
        ({"time": 1, "subprotocol": "1"}, "subprotocol"),
        ({"time": 1, "subprotocol": 1e308}, "subprotocol"),
        ({"time": 1, "subprotocol": None}, "subprotocol"),
        ({"time": 1, "subprotocol": b"\x01"}, "subprotocol"),
    ],
    ids=repr,
)
def test_check_entry_refuses_bad_meta_fields(meta: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        check_entry({"type": "A"}, {"id": "1 a 0", **meta})


def test_check_entry_refuses_a_bad_action() -> None:
    with pytest.raises(SchemaError, match="channel"):
        check_entry({"type": "logux/subscribe"}, {"id": "1 a 0", "time": 1})


def test_stand_in_quotes_only_the_type_of_what_cannot_be_encoded() -> None:
    good = {"type": "A", "x": 1}
    assert stand_in(good) is good
    assert stand_in({"type": "A", "x": b"\x00"}) == {"type": "A"}
    assert stand_in({"type": "A\ud800"}) == {"type": "A\ufffd"}


def test_headers_must_round_trip() -> None:
    assert is_headers({}) and is_headers({"env": "development", "n": [1]})
    assert not is_headers({"b": b"x"})
    assert not is_headers({"x": NAN})
    assert not is_headers([])


# --- echoes -------------------------------------------------------------------------------------


def test_echo_truncates_and_replaces_surrogates() -> None:
    assert echo("x" * 5000) == "x" * MAX_ECHO
    assert echo("short") == "short"
    assert echo("a\ud83db") == "a\ufffdb"
    orjson.dumps(echo("\udc00" * 2000))  # encodes


def test_replace_surrogates_keeps_pairs_and_other_text() -> None:
    assert replace_surrogates("é🙂\ud800x\udfff") == "é🙂\ufffdx\ufffd"
    text = "plain ascii"
    assert replace_surrogates(text) is text


def test_error_details_are_short_and_encodable() -> None:
    with pytest.raises(SchemaError) as info:
        check_whole("\ud800" * 10_000, "meta.time")
    details = str(info.value)
    assert len(details) < 200
    orjson.dumps(details)
    with pytest.raises(SchemaError) as info:
        wire_id([0, _nested(900), 0], 0, "a")
    assert "list of 1" in str(info.value)
