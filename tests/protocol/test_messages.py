"""validate(): the shapes @logux/core's server validator accepts and rejects (reference A.2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from logsync.protocol.messages import (
    PROTOCOL_VERSION,
    VALIDATORS,
    ProtocolError,
    is_number,
    is_wire_id,
    validate,
)

ACTION = {"type": "A"}
META = {"time": 0, "id": 0}

VALID: list[list[Any]] = [
    # connect: len 4, or len 5 with an options object
    ["connect", 5, "10:abc:tab", 0],
    ["connect", 5, "10:abc:tab", 42, {}],
    ["connect", 5, "10:abc:tab", 42, {"token": "secret", "subprotocol": 1}],
    ["connect", 5.0, "a", 1.5, {"anything": [1, 2]}],
    ["connect", 4, "a", 0],  # an old protocol is valid; the session answers wrong-protocol
    # connected
    ["connected", 5, "server:x", [1, 2]],
    ["connected", 5, "server:x", [1.5, -2], {"subprotocol": 1}],
    # one number
    ["ping", 0],
    ["ping", 1.5],
    ["pong", 10],
    ["synced", 3],
    ["synced", 2.5],
    # sync: even length, action objects with string type, meta with time + wire id
    ["sync", 1],
    ["sync", 1, ACTION, META],
    ["sync", 1, {"type": "A", "x": [1]}, {"time": 1.5, "id": [1, 2], "extra": "ok"}],
    ["sync", 1, ACTION, {"time": -5, "id": [-5, "other:node", 0]}],
    ["sync", 0.5, ACTION, META, {"type": ""}, {"time": 1, "id": [1.0, 3.0]}],
    # error: len 2-3
    ["error", "wrong-format"],
    ["error", "timeout", 5000],
    ["error", "wrong-protocol", {"supported": 5, "used": 4}],
    ["error", "x", None],
    # debug: exactly ['debug', 'error', text]
    ["debug", "error", "stack trace"],
    ["debug", "error", ""],
    # headers: one object
    ["headers", {}],
    ["headers", {"env": "development"}],
    # duilian: one string
    ["duilian", "金木水火土"],
    ["duilian", "anything"],
]


@pytest.mark.parametrize("msg", VALID, ids=lambda m: json.dumps(m, ensure_ascii=False))
def test_valid_messages_pass(msg: list[Any]) -> None:
    assert validate(msg, json.dumps(msg)) is None


def _bad_metas() -> list[Any]:
    return [
        None,
        [],
        "meta",
        {"id": 0},  # no time
        {"time": 0},  # no id
        {"time": "0", "id": 0},
        {"time": True, "id": 0},
        {"time": None, "id": 0},
        {"time": 0, "id": "1 a 0"},  # full string id is not a wire form
        {"time": 0, "id": True},
        {"time": 0, "id": None},
        {"time": 0, "id": []},
        {"time": 0, "id": [1]},
        {"time": 0, "id": [1, "2"]},
        {"time": 0, "id": ["1", 2]},
        {"time": 0, "id": [True, 2]},
        {"time": 0, "id": [1, False]},
        {"time": 0, "id": [1, "node"]},
        {"time": 0, "id": [1, 2, 3]},  # 3 elements: middle must be a string
        {"time": 0, "id": [1, "node", "3"]},
        {"time": 0, "id": ["1", "node", 3]},
        {"time": 0, "id": [1, "node", True]},
        {"time": 0, "id": [1, "node", 2, 3]},
        {"time": 0, "id": {"ms": 1}},
    ]


BAD_ONE_NUMBER_ARGS: list[list[Any]] = [[], ["1"], [True], [False], [None], [[1]], [{}], [1, 2]]

WRONG_FORMAT: list[Any] = [
    # connect
    ["connect", 5, "a", 0, {}, 1],
    ["connect", "5", "a", 0],
    ["connect", True, "a", 0],
    ["connect", None, "a", 0],
    ["connect", 5, 10, 0],
    ["connect", 5, None, 0],
    ["connect", 5, "a", "0"],
    ["connect", 5, "a", False],
    ["connect", 5, "a", 0, []],
    ["connect", 5, "a", 0, "token"],
    ["connect", 5, "a", 0, None],
    ["connect"],
    # connected
    ["connected", 5, "s", [1]],
    ["connected", 5, "s", [1, 2, 3]],
    ["connected", 5, "s", 1],
    ["connected", 5, "s", [1, "2"]],
    ["connected", 5, "s", [1, True]],
    ["connected", 5, "s", [1, 2], []],
    ["connected", 5, "s", [1, 2], None],
    ["connected", 5, 1, [1, 2]],
    ["connected", "5", "s", [1, 2]],
    ["connected", 5, "s", [1, 2], {}, {}],
    ["connected"],
    # one number
    *[[name, *args] for name in ("ping", "pong", "synced") for args in BAD_ONE_NUMBER_ARGS],
    # sync
    ["sync"],
    ["sync", "1"],
    ["sync", True],
    ["sync", None],
    ["sync", 1, ACTION],  # odd length
    ["sync", 1, ACTION, META, ACTION],
    ["sync", 1, {}, META],
    ["sync", 1, {"type": 1}, META],
    ["sync", 1, {"type": None}, META],
    ["sync", 1, {"type": ["A"]}, META],
    ["sync", 1, [], META],
    ["sync", 1, "A", META],
    ["sync", 1, None, META],
    *[["sync", 1, ACTION, meta] for meta in _bad_metas()],
    ["sync", 1, ACTION, META, ACTION, {"time": 0}],  # a later entry is bad
    ["sync", 1, ACTION, META, {"type": 2}, META],
    # error
    ["error"],
    ["error", 1],
    ["error", None],
    ["error", "a", 1, 2],
    # debug
    ["debug"],
    ["debug", "error"],
    ["debug", "warn", "x"],
    ["debug", "error", 1],
    ["debug", "error", None],
    ["debug", "error", "x", "y"],
    ["debug", "x"],
    # headers
    ["headers"],
    ["headers", []],
    ["headers", "x"],
    ["headers", None],
    ["headers", {}, {}],
    # duilian
    ["duilian"],
    ["duilian", 1],
    ["duilian", None],
    ["duilian", "a", "b"],
]


@pytest.mark.parametrize("msg", WRONG_FORMAT, ids=lambda m: json.dumps(m, ensure_ascii=False))
def test_malformed_messages_are_wrong_format_with_raw_text(msg: list[Any]) -> None:
    raw = json.dumps(msg)
    error = validate(msg, raw)
    assert isinstance(error, ProtocolError)
    assert error.type == "wrong-format"
    assert error.options == raw
    assert error.message() == ["error", "wrong-format", raw]


@pytest.mark.parametrize(
    "msg",
    [
        ["connect", 5, "a"],
        ["connect", 5],
        ["connected", 5, "s"],
        ["connected", 5],
    ],
    ids=lambda m: json.dumps(m),
)
def test_short_connect_and_connected_are_wrong_format(msg: list[Any]) -> None:
    # Regression: _connect/_connected used to index msg[3] unguarded (IndexError).
    error = validate(msg, "raw")
    assert error is not None
    assert error.type == "wrong-format"


@pytest.mark.parametrize(
    "msg",
    [
        {"0": "ping"},
        ("ping", 1),  # a tuple is not a JSON array
        "ping",
        5,
        None,
        True,
        [],
        [1],
        [None],
        [True, 1],
        [["ping"], 1],
        [{"type": "ping"}],
    ],
    ids=repr,
)
def test_non_list_empty_or_non_string_type_is_wrong_format(msg: Any) -> None:
    error = validate(msg, "the raw text")
    assert error is not None
    assert (error.type, error.options) == ("wrong-format", "the raw text")


@pytest.mark.parametrize(
    "msg",
    [
        ["pung", 1],
        ["", 1],
        ["Ping", 1],
        ["unknown"],  # type is checked before length
        ["__class__", 1],
        ["_on_ping", 1],
        ["constructor"],
        ["missed-auth"],
    ],
    ids=lambda m: json.dumps(m),
)
def test_unknown_type_is_unknown_message_with_the_type(msg: list[Any]) -> None:
    error = validate(msg, json.dumps(msg))
    assert error is not None
    assert error.type == "unknown-message"
    assert error.options == msg[0]
    assert error.message() == ["error", "unknown-message", msg[0]]


def test_validator_table_covers_exactly_the_v5_messages() -> None:
    assert set(VALIDATORS) == {
        "connect",
        "connected",
        "ping",
        "pong",
        "sync",
        "synced",
        "error",
        "debug",
        "headers",
        "duilian",
    }
    assert PROTOCOL_VERSION == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, True),
        (-1, True),
        (1.5, True),
        (True, False),
        (False, False),
        ("1", False),
        (None, False),
    ],
)
def test_is_number_excludes_booleans(value: Any, expected: bool) -> None:
    assert is_number(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, True),
        (-5.0, True),
        ([1, 2], True),
        ([1, "n", 2], True),
        (True, False),
        ([1], False),
        ([1, "n"], False),
        ([1, 2, 3], False),
        ("1 n 0", False),
        ((1, 2), False),
    ],
)
def test_is_wire_id(value: Any, expected: bool) -> None:
    assert is_wire_id(value) is expected


def test_protocol_error_message_with_and_without_options() -> None:
    assert ProtocolError("wrong-credentials").message() == ["error", "wrong-credentials"]
    assert ProtocolError("timeout", 70000).message() == ["error", "timeout", 70000]
    assert ProtocolError("x", 0).message() == ["error", "x", 0]  # falsy options are kept
    assert str(ProtocolError("wrong-credentials")) == "wrong-credentials"
