"""Action ids: parsing, node id parts, wire compression and creation order (reference A.4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logsync.protocol.ids import (
    ActionId,
    IdError,
    NodeParts,
    compress_id,
    decompress_id,
    is_first_older,
    parse_node_id,
)

PROPS = settings(max_examples=200, deadline=None)

# --- ActionId.parse -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "1564508138460 380:R7BNGAP5:px3-J3oc 0",
            ActionId(1564508138460, "380:R7BNGAP5:px3-J3oc", 0),
        ),
        ("0 server:x 12", ActionId(0, "server:x", 12)),
        ("-5 a 3", ActionId(-5, "a", 3)),
    ],
)
def test_action_id_parse(text: str, expected: ActionId) -> None:
    parsed = ActionId.parse(text)
    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1 a",
        "1 a 0 extra",
        "1  0",  # empty node
        "x a 0",
        "1 a y",
        "1.5 a 0",
        "1 a 0.5",
        "1\ta\t0",
        " 1 a 0",
    ],
)
def test_action_id_parse_rejects(text: str) -> None:
    with pytest.raises(IdError):
        ActionId.parse(text)


def test_id_error_is_a_value_error() -> None:
    assert issubclass(IdError, ValueError)


# --- parse_node_id (Logux parseId) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10:abc:tab", NodeParts("10", "10:abc", "10:abc:tab")),
        ("10:abc", NodeParts("10", "10:abc", "10:abc")),
        ("server", NodeParts(None, "server", "server")),
        ("server:x", NodeParts("server", "server:x", "server:x")),
        ("1564508138460 10:abc:tab 0", NodeParts("10", "10:abc", "10:abc:tab")),
        ("1 solo 0", NodeParts(None, "solo", "solo")),
        ("a:b:c:d", NodeParts("a", "a:b", "a:b:c:d")),
        (":b", NodeParts("", ":b", ":b")),
        ("false:x", NodeParts("false", "false:x", "false:x")),
    ],
)
def test_parse_node_id_like_logux_parse_id(text: str, expected: NodeParts) -> None:
    assert parse_node_id(text) == expected


# --- compression --------------------------------------------------------------------------------

BASE = 1_700_000_000_000
OWN = "server:x"


@pytest.mark.parametrize(
    ("action_id", "wire"),
    [
        (f"{BASE + 5} {OWN} 0", 5),
        (f"{BASE + 5} {OWN} 3", [5, 3]),
        (f"{BASE - 10} {OWN} 0", -10),
        (f"{BASE - 10} {OWN} 1", [-10, 1]),
        (f"{BASE} 10:abc:tab 0", [0, "10:abc:tab", 0]),
        (f"{BASE - 7} 10:abc:tab 2", [-7, "10:abc:tab", 2]),
        (f"{BASE} server:y 0", [0, "server:y", 0]),  # another server is another node
    ],
)
def test_compress_id_forms(action_id: str, wire: object) -> None:
    assert compress_id(action_id, BASE, OWN) == wire


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (5, f"{BASE + 5} 10:abc:tab 0"),
        (-5, f"{BASE - 5} 10:abc:tab 0"),
        (5.0, f"{BASE + 5} 10:abc:tab 0"),
        ([5, 2], f"{BASE + 5} 10:abc:tab 2"),
        ([5.0, 2.0], f"{BASE + 5} 10:abc:tab 2"),
        ([-5, "other:n", 1], f"{BASE - 5} other:n 1"),
    ],
)
def test_decompress_id_forms(wire: object, expected: str) -> None:
    assert decompress_id(wire, BASE, "10:abc:tab") == expected  # type: ignore[arg-type]


def test_compress_rejects_a_malformed_id() -> None:
    with pytest.raises(IdError):
        compress_id("not an id at all", BASE, OWN)


node_ids = st.text(
    alphabet=st.characters(blacklist_characters=" ", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=20,
)
ms_values = st.integers(min_value=-(2**53), max_value=2**53)
seqs = st.integers(min_value=0, max_value=2**31)


@PROPS
@given(ms=ms_values, base=ms_values, seq=seqs, node=node_ids)
def test_own_ids_round_trip_as_number_or_pair(ms: int, base: int, seq: int, node: str) -> None:
    action_id = f"{ms} {node} {seq}"
    wire = compress_id(action_id, base, node)
    if seq == 0:
        assert wire == ms - base
    else:
        assert wire == [ms - base, seq]
    # The receiver knows the sender's node id as its remote node id.
    assert decompress_id(wire, base, node) == action_id


@PROPS
@given(ms=ms_values, base=ms_values, seq=seqs, node=node_ids, local=node_ids, remote=node_ids)
def test_other_ids_round_trip_as_triple(
    ms: int, base: int, seq: int, node: str, local: str, remote: str
) -> None:
    if node == local:
        local = local + "-other"
    action_id = f"{ms} {node} {seq}"
    wire = compress_id(action_id, base, local)
    assert wire == [ms - base, node, seq]
    assert decompress_id(wire, base, remote) == action_id


# --- is_first_older -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ((1, "9 z 9"), (2, "0 a 0")),  # time first, whatever the id says
        ((-1, "5 a 0"), (0, "5 a 0")),
        ((1, "1 a 0"), (1, "1 b 0")),  # then node id
        ((1, "1 10:x 0"), (1, "1 9:x 0")),  # node ids compare as strings, not numbers
        ((1, "9 server:x 9"), (1, "0 zzz:a:b 0")),  # node before seq and id ms
        ((1, "1 a 2"), (1, "1 a 10")),  # then seq, numerically
        ((1, "1 a 9"), (1, "0 a 10")),  # seq before id ms
        ((1, "1 a 0"), (1, "2 a 0")),  # then the id's ms
        ((1, "9 a 0"), (1, "10 a 0")),  # numerically
        ((1.5, "1 a 0"), (2, "1 a 0")),
    ],
)
def test_is_first_older_order(older: tuple[float, str], newer: tuple[float, str]) -> None:
    assert is_first_older(older, newer) is True
    assert is_first_older(newer, older) is False


def test_is_first_older_is_false_for_equal() -> None:
    assert is_first_older((1, "1 a 0"), (1, "1 a 0")) is False


def test_is_first_older_compares_node_ids_like_javascript() -> None:
    # JS: "\uffff" > "\ud83d\ude42" ("🙂" as UTF-16), so the 🙂 node's action is older.
    assert is_first_older((1, "1 🙂 0"), (1, "1 \uffff 0")) is True


pairs = st.tuples(
    st.integers(min_value=-5, max_value=5),
    st.builds(
        lambda ms, node, seq: f"{ms} {node} {seq}",
        st.integers(min_value=-5, max_value=5),
        st.sampled_from(["a", "b", "server:x", "zzz:a:b", "10:x", "9:x"]),
        st.integers(min_value=0, max_value=3),
    ),
)


@PROPS
@given(a=pairs, b=pairs, c=pairs)
def test_is_first_older_is_a_strict_total_order(
    a: tuple[int, str], b: tuple[int, str], c: tuple[int, str]
) -> None:
    assert not is_first_older(a, a)  # irreflexive
    assert not (is_first_older(a, b) and is_first_older(b, a))  # antisymmetric
    if a != b:
        assert is_first_older(a, b) or is_first_older(b, a)  # total on distinct pairs
    if is_first_older(a, b) and is_first_older(b, c):
        assert is_first_older(a, c)  # transitive


@PROPS
@given(a=pairs, b=pairs)
def test_is_first_older_matches_a_sort_key(a: tuple[int, str], b: tuple[int, str]) -> None:
    def key(pair: tuple[int, str]) -> tuple[int, str, int, int]:
        ms, node, seq = pair[1].split(" ")
        return (pair[0], node, int(seq), int(ms))

    assert is_first_older(a, b) == (key(a) < key(b))
