"""The client's pieces without a server: the pending queue and its compaction hook (what is
offered, what is dropped, whose answer answers whom), the optimistic local state (creation
order, rollback, the checkpoint window), the backoff delays, and the SQLite store on a file."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from logsync_client import Keep, LocalState, PendingAction, PendingQueue, Store, Undone
from logsync_client.backoff import Backoff, parse_retry_after
from logsync_client.pending import batches

NODE = "10:abc"


def meta(ms: int, seq: int = 0, node: str = NODE, time: int | None = None) -> dict[str, Any]:
    return {"id": f"{ms} {node} {seq}", "time": ms if time is None else time}


class LastWins:
    """A toy compactor: a new `set` of a key drops the offered `set`s of that key into it."""

    def __init__(self) -> None:
        self.offered: list[list[str]] = []

    def compact(self, offered: Sequence[PendingAction], new: PendingAction) -> Keep:
        self.offered.append([p.id for p in offered])
        if new.action.get("same"):
            return Keep(action=None, into=None)  # changes nothing: persist nothing
        same = frozenset(p.id for p in offered if p.action["key"] == new.action["key"])
        return Keep(drop=same, action=new.action)


async def test_compactor_drops_offered_actions_into_the_new_one() -> None:
    store = Store.open(":memory:")
    compactor = LastWins()
    queue = PendingQueue(store, compactor)
    first = queue.add({"type": "set", "key": "a"}, meta(1))
    assert first is not None and first.added > 0
    waiter_first = queue.waiter(meta(1)["id"])
    queue.add({"type": "set", "key": "b"}, meta(2))
    queue.add({"type": "set", "key": "a"}, meta(3))
    assert [p.id for p in store.pending()] == [meta(2)["id"], meta(3)["id"]]
    assert compactor.offered[-1] == [meta(1)["id"], meta(2)["id"]]
    # the dropped action is answered by the one it was folded into
    assert not waiter_first.done()
    queue.processed(meta(3)["id"], {"id": "answer"})
    assert waiter_first.result() == {"id": "answer"}


async def test_sent_actions_are_never_offered() -> None:
    store = Store.open(":memory:")
    compactor = LastWins()
    queue = PendingQueue(store, compactor)
    sent = queue.add({"type": "set", "key": "a"}, meta(1))
    assert sent is not None
    queue.mark_sent([sent])
    queue.add({"type": "set", "key": "a"}, meta(2))
    assert compactor.offered[-1] == []
    assert len(store.pending()) == 2  # the sent one may be on the server: kept until answered


async def test_an_unpersisted_new_action_resolves_at_once_and_undo_fails_folded_ones() -> None:
    store = Store.open(":memory:")
    queue = PendingQueue(store, LastWins())
    assert queue.add({"type": "set", "key": "a", "same": True}, meta(1)) is None
    assert store.pending() == []
    queue.add({"type": "set", "key": "b"}, meta(2))
    folded = queue.waiter(meta(2)["id"])
    queue.add({"type": "set", "key": "b"}, meta(3))
    ids = queue.undone(meta(3)["id"], {"type": "logux/undo", "id": meta(3)["id"], "reason": "no"})
    assert ids == [meta(3)["id"], meta(2)["id"]]  # roll back both
    with pytest.raises(Undone) as undone:
        folded.result()
    assert undone.value.reason == "no"
    assert store.pending() == []


def texts(state: list[str], action: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    return [*state, action["t"]]


def test_local_state_orders_by_time_node_seq_and_rolls_back() -> None:
    state = LocalState(texts, [])
    state.apply({"t": "b"}, meta(20))
    state.apply({"t": "d"}, meta(40), answered=False)
    state.apply({"t": "a"}, meta(10, node="11:z"))  # older: recomputed in its place
    state.apply({"t": "c2"}, meta(30, seq=1))
    state.apply({"t": "c1"}, meta(30, seq=0, node="10:abc"))
    state.apply({"t": "c0"}, meta(30, seq=5, node="10:ab"))  # same time: node id first
    assert state.value == ["a", "b", "c0", "c1", "c2", "d"]
    state.apply({"t": "dup"}, meta(20))  # same id: ignored
    assert state.undo([meta(40)["id"]])
    assert state.value == ["a", "b", "c0", "c1", "c2"]
    assert not state.undo(["1 nobody 0"])


def test_local_state_folds_only_answered_actions_beyond_its_window() -> None:
    changes: list[list[str]] = []
    state = LocalState(texts, [], window=2)
    state.on_change(changes.append)
    state.apply({"t": "mine"}, meta(1), answered=False)
    state.apply({"t": "x"}, meta(2))
    state.apply({"t": "y"}, meta(3))
    # "mine" is unanswered: it stays (so it can still be rolled back)
    assert [a["t"] for a, _ in state.actions] == ["mine", "x", "y"]
    state.answered(meta(1)["id"])
    assert [a["t"] for a, _ in state.actions] == ["x", "y"]  # now folded into the checkpoint
    assert state.value == ["mine", "x", "y"]
    assert changes[-1] == ["mine", "x", "y"]


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(7))
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [backoff.next() for _ in caps]
    assert all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    assert 3.0 <= backoff.next(retry_after=3.0) <= 3.5
    backoff.reset()
    assert backoff.next() <= 0.5
    assert parse_retry_after("7", 1.0) == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1.0) == 1.0
    assert parse_retry_after(None, 2.0) == 2.0


def test_batches_respect_count_and_bytes() -> None:
    store = Store.open(":memory:")
    queue = PendingQueue(store)
    for i in range(10):
        queue.add({"type": "t", "pad": "x" * 1000}, meta(i + 1))
    runs = batches(store.pending(), 4, 3 * 1200)
    assert [len(r) for r in runs] == [3, 3, 3, 1]
    assert [a.id for r in runs for a in r] == [a.id for a in store.pending()]
    assert [len(r) for r in batches(store.pending(), 4, 10**9)] == [4, 4, 2]


def test_store_keeps_everything_in_its_file(tmp_path: Path) -> None:
    path = tmp_path / "client.db"
    store = Store.open(path)
    store.put("node_id", NODE)
    store.add_pending({"type": "a"}, meta(1), clock_ms=1)
    store.add_pending({"type": "b"}, meta(2), clock_ms=2)
    store.mark_sent([meta(1)["id"]])
    store.add_subscription("rooms/1", {"filter": {"x": 1}})
    assert not store.add_subscription("rooms/1", {"filter": {"x": 1}})
    store.set_since("rooms/1", {"filter": {"x": 1}}, "5 server:s 0", 5)
    store.close()
    again = Store.open(path)
    assert again.get("node_id") == NODE and again.get("clock_ms") == "2"
    assert [(p.id, p.sent) for p in again.pending()] == [
        (meta(1)["id"], True),
        (meta(2)["id"], False),
    ]
    (sub,) = again.subscriptions()
    assert (sub.channel, sub.extra, sub.since_id, sub.since_time) == (
        "rooms/1",
        {"filter": {"x": 1}},
        "5 server:s 0",
        5,
    )
    assert again.remove_pending(meta(1)["id"]) and not again.remove_pending(meta(1)["id"])
    again.reset_subscriptions()
    assert again.subscriptions()[0].since_id is None


class Rewriter:
    """A toy compactor: a new `set` of a key moves its value into the offered `set` of that key."""

    def compact(self, offered: Sequence[PendingAction], new: PendingAction) -> Keep:
        for pending in offered:
            if pending.action["key"] == new.action["key"]:
                return Keep(rewrite={pending.id: new.action}, into=pending.id)
        return Keep(action=new.action)


async def test_compactor_rewrites_offered_actions_in_place() -> None:
    store = Store.open(":memory:")
    queue = PendingQueue(store, Rewriter())
    queue.add({"type": "set", "key": "a", "v": 1}, meta(1))
    queue.add({"type": "set", "key": "b", "v": 1}, meta(2))
    queue.add({"type": "set", "key": "a", "v": 2}, meta(3))
    assert [(p.id, p.action["v"]) for p in store.pending()] == [
        (meta(1)["id"], 2),
        (meta(2)["id"], 1),
    ]
    waiter = queue.waiter(meta(3)["id"])  # answered with the action it was folded into
    queue.processed(meta(1)["id"], {"id": "answer"})
    assert waiter.result() == {"id": "answer"}
    # a sent action is never rewritten by the store
    (b,) = store.pending()
    store.mark_sent([b.id])
    store.drop_pending([], rewrite={b.id: {"type": "set", "key": "b", "v": 9}})
    assert store.pending()[0].action["v"] == 1


def test_local_state_replace_keeps_the_place() -> None:
    state = LocalState(texts, [])
    state.apply({"t": "a"}, meta(1), answered=False)
    state.apply({"t": "b"}, meta(2))
    assert state.replace({meta(1)["id"]: {"t": "A"}})
    assert state.value == ["A", "b"]
    assert not state.replace({"9 x:y 0": {"t": "?"}})
