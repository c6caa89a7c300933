"""logsync_client.crdt: LWWMap / SyncMapState, GSet, Counter.

Each helper converges: any order and any repetition of the same actions, and any split of them
over replicas joined with ``merge``, give the same state (hypothesis). The stamp order is checked
against @logux/core's own ``isFirstOlder`` run in Node (js/converge-order.mjs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logsync_client.crdt import (
    Counter,
    GSet,
    LWWMap,
    SyncMapState,
    creation_key,
    stamp_of,
    wins,
)
from tests.interop.conftest import js_deps, node_bin, run_script  # noqa: F401 (fixtures)

Pair = tuple[dict[str, Any], dict[str, Any]]


def meta(time: int, node: str = "u:c", seq: int = 0, ms: int | None = None) -> dict[str, Any]:
    return {"id": f"{time if ms is None else ms} {node} {seq}", "time": time}


def change(fields: dict[str, Any], record: str = "r") -> dict[str, Any]:
    return {"type": "notes/changed", "id": record, "fields": fields}


# -- LWWMap -------------------------------------------------------------------------------------


def test_newer_change_wins_per_field() -> None:
    record = LWWMap()
    record.apply({"type": "notes/create", "id": "r", "fields": {"a": 1, "b": 1}}, meta(10))
    assert record.apply(change({"a": 2}), meta(20)) == {"a": 2}
    assert record.apply(change({"a": 3, "b": 3}), meta(15)) == {"b": 3}
    assert record.value() == {"a": 2, "b": 3}
    assert record.stamps["a"] == (20, "20 u:c 0")
    assert record.stamps["b"] == (15, "15 u:c 0")


def test_same_time_ties_break_by_node_then_seq() -> None:
    record = LWWMap()
    record.apply(change({"a": "from b"}), meta(10, "b:1"))
    record.apply(change({"a": "from a"}), meta(10, "a:1"))
    assert record.fields["a"] == "from b"  # "a:1" < "b:1": a's change is the older one
    record.apply(change({"a": "b seq 1"}), meta(10, "b:1", seq=1))
    assert record.fields["a"] == "b seq 1"
    assert record.apply(change({"a": "again"}), meta(10, "b:1", seq=1)) == {}  # same id


def test_node_ids_compare_as_utf16_like_javascript() -> None:
    # U+FF5E sorts after U+1F600 in code points, before it in UTF-16 code units (as JS does)
    high, astral = "u\uff5e:1", "u\U0001f600:1"
    assert wins((10, f"10 {high} 0"), (10, f"10 {astral} 0"))
    assert creation_key((10, f"10 {astral} 0")) < creation_key((10, f"10 {high} 0"))


def test_delete_is_a_tombstone_at_its_stamp() -> None:
    record = LWWMap()
    record.apply({"type": "notes/created", "id": "r", "fields": {"a": 1}}, meta(10))
    record.apply(change({"b": 2}), meta(30))
    record.apply({"type": "notes/deleted", "id": "r"}, meta(20))
    assert record.exists  # the change at 30 is newer than the delete
    assert record.value() == {"b": 2}
    assert record.apply(change({"a": 5}), meta(15)) == {}  # older than the delete: ignored
    record.apply({"type": "notes/delete", "id": "r"}, meta(40))
    assert not record.exists and record.value() is None
    record.apply({"type": "notes/create", "id": "r", "fields": {"c": 3}}, meta(50))
    assert record.value() == {"c": 3}


def test_apply_rejects_what_is_not_a_syncmap_action() -> None:
    with pytest.raises(ValueError):
        LWWMap().apply({"type": "notes/add", "id": "r"}, meta(1))
    with pytest.raises(ValueError):
        LWWMap().apply({"type": "notes/change", "id": "r", "fields": [1]}, meta(1))


def test_stamp_time_defaults_to_the_id() -> None:
    assert stamp_of({"id": "17 u:c 2"}) == (17, "17 u:c 2")


def test_syncmap_state_routes_by_plural_and_id() -> None:
    state = SyncMapState("notes")
    state.apply({"type": "notes/created", "id": "x", "fields": {"a": 1}}, meta(1))
    state.apply({"type": "tasks/created", "id": "x", "fields": {"a": 2}}, meta(2))
    state.apply({"type": "notes/changed", "id": "y", "fields": {"b": 1}}, meta(3))
    state.apply({"type": "notes/deleted", "id": "y"}, meta(4))
    assert state.value() == {"x": {"a": 1}}


# -- convergence properties ---------------------------------------------------------------------

NODES = ["a:1", "b:1", "b:2"]

record_actions = st.lists(
    st.tuples(
        st.sampled_from(["notes/create", "notes/changed", "notes/change", "notes/deleted"]),
        st.sampled_from(["r1", "r2"]),
        st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=3),
        st.integers(0, 6),  # time: small, so that ties happen
        st.sampled_from(NODES),
    ),
    max_size=25,
)


def as_pairs(raw: list[tuple[str, str, dict[str, int], int, str]]) -> list[Pair]:
    pairs = []
    for seq, (kind, record, fields, time, node) in enumerate(raw):
        action: dict[str, Any] = {"type": kind, "id": record}
        if not kind.endswith("deleted"):
            action["fields"] = fields
        pairs.append((action, meta(time, node, seq)))
    return pairs


def syncmap_of(pairs: list[Pair]) -> SyncMapState:
    state = SyncMapState("notes")
    for action, m in pairs:
        state.apply(action, m)
    return state


def snapshot(state: SyncMapState) -> Any:
    return {
        rid: (r.exists, r.fields, r.stamps, r.alive, r.deleted)
        for rid, r in sorted(state.records.items())
    }


@settings(max_examples=100, deadline=None)
@given(record_actions, st.randoms(use_true_random=False), st.integers(0, 25))
def test_lwwmap_converges_in_any_order_and_split(raw: Any, rnd: Any, cut: int) -> None:
    pairs = as_pairs(raw)
    shuffled = pairs + pairs[: len(pairs) // 2]  # with repeats
    rnd.shuffle(shuffled)
    assert snapshot(syncmap_of(shuffled)) == snapshot(syncmap_of(pairs))
    left, right = syncmap_of(shuffled[:cut]), syncmap_of(shuffled[cut:])
    left.merge(right)
    assert snapshot(left) == snapshot(syncmap_of(pairs))


messages = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from(NODES), st.text(max_size=3)), max_size=20
)


@settings(max_examples=100, deadline=None)
@given(messages, st.randoms(use_true_random=False), st.integers(0, 20))
def test_gset_lists_the_same_messages_in_the_same_order(raw: Any, rnd: Any, cut: int) -> None:
    pairs = [
        ({"type": "chat/add", "text": text}, meta(time, node, seq))
        for seq, (time, node, text) in enumerate(raw)
    ]
    ordered = GSet(["chat/add"])
    for action, m in pairs:
        ordered.apply(action, m)
    shuffled = pairs * 2
    rnd.shuffle(shuffled)
    left, right = GSet(["chat/add"]), GSet(["chat/add"])
    for action, m in shuffled[:cut]:
        left.apply(action, m)
    for action, m in shuffled[cut:]:
        right.apply(action, m)
    left.merge(right)
    assert left.items() == ordered.items()
    assert len(left) == len(pairs)
    keys = [creation_key(stamp_of(m)) for _, m in ordered.items()]
    assert keys == sorted(keys)


def test_gset_ignores_other_types_and_keeps_one_per_key() -> None:
    texts = GSet(["chat/add"], key=lambda action, meta: action["text"])
    assert texts.apply({"type": "chat/add", "text": "hi"}, meta(5, "b:1"))
    assert not texts.apply({"type": "chat/remove", "text": "hi"}, meta(6))
    # the same key, an older stamp: the element takes the older position
    assert texts.apply({"type": "chat/add", "text": "hi"}, meta(3, "a:1"))
    assert not texts.apply({"type": "chat/add", "text": "hi"}, meta(9, "a:1"))
    assert list(texts) == ["hi"] and "hi" in texts
    assert texts.items()[0][1]["id"] == "3 a:1 0"


deltas = st.lists(
    st.tuples(
        st.sampled_from(NODES),
        st.one_of(st.integers(-5, 5), st.floats(-1e6, 1e6, allow_nan=False)),
    ),
    max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(deltas, st.randoms(use_true_random=False), st.integers(0, 20))
def test_counter_sums_each_action_once_in_any_order(raw: Any, rnd: Any, cut: int) -> None:
    pairs = [
        ({"type": "likes/add", "by": by}, meta(1, node, seq)) for seq, (node, by) in enumerate(raw)
    ]
    ordered = Counter(["likes/add"])
    for action, m in pairs:
        ordered.apply(action, m)
    shuffled = pairs * 2
    rnd.shuffle(shuffled)
    left, right = Counter(["likes/add"]), Counter(["likes/add"])
    for action, m in shuffled[:cut]:
        left.apply(action, m)
    for action, m in shuffled[cut:]:
        right.apply(action, m)
    left.merge(right)
    assert left.value == ordered.value  # exact: fsum does not depend on the order
    assert left.increments - left.decrements == ordered.value or isinstance(ordered.value, float)
    assert left.per_node() == ordered.per_node()


def test_counter_halves_and_types() -> None:
    counter = Counter(["likes/add"])
    assert counter.apply({"type": "likes/add", "by": 3}, meta(1, "a:1"))
    assert counter.apply({"type": "likes/add", "by": -1}, meta(2, "b:1"))
    assert counter.apply({"type": "likes/add"}, meta(3, "a:1"))  # `by` defaults to 1
    assert not counter.apply({"type": "likes/add", "by": 3}, meta(1, "a:1"))  # same id
    assert not counter.apply({"type": "likes/reset"}, meta(4))
    assert (counter.value, counter.increments, counter.decrements) == (3, 4, 1)
    assert counter.per_node() == {"a:1": 4, "b:1": -1}
    with pytest.raises(ValueError):
        counter.apply({"type": "likes/add", "by": True}, meta(5))


# -- the order, against @logux/core in Node -----------------------------------------------------


def test_wins_is_the_negation_of_logux_is_first_older(
    node_bin: str,  # noqa: F811 (the fixture)
    js_deps: Path,  # noqa: F811
) -> None:
    """``wins(new, old)`` is ``isFirstOlder(old, new)`` for stamps with ties in every part."""
    nodes = ["a:1", "b:1", "b:1:t", "\uff5e:1", "\U0001f600:1", "10:x"]
    stamps = [
        (time, f"{ms} {node} {seq}")
        for time in (5, 6)
        for node in nodes
        for seq in (0, 2, 10)
        for ms in (4, 5)
    ]
    pairs = [(a, b) for a in stamps[::5] for b in stamps[::3]]
    result = run_script(node_bin, "converge-order", json.dumps(pairs))
    assert len(result["older"]) == len(pairs)
    assert sum(result["older"]) > 0
    for (old, new), is_older in zip(pairs, result["older"], strict=True):
        assert wins(new, old) is is_older, (old, new)
