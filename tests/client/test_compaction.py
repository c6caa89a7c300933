"""logsync_client.compaction: the rules one by one, then "sending the compacted queue leaves the
server as sending every change" as a hypothesis state machine — against the in-process reference
of the SyncMap rules (tests/client/compaction_app.py ``Notes``), then against a real
``logsync serve`` running that app, driven over ``POST /v1/sync``.

The machine is one client (node ``w:1``, a clock that never goes back, ties included) making
``notes/create|change|delete`` of two records, handing some of its queue to the transport (sent:
no longer offered to the compactor), another client (``o:1``) changing or deleting the same
records meanwhile at newer times (seen by the compactor as the server's
``notes/changed|deleted``), and
flushes: the every-change queue goes to one copy of the records, the compacted queue to another;
after each flush both copies hold the same fields, and the compacted queue never held more.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from logsync.wallclock import now_ms
from logsync_client.compaction import Compactor, Entry, Plan
from logsync_client.pending import PendingQueue
from logsync_client.store import Store
from tests.client.compaction_app import Notes
from tests.support.server import ServerProcess

WRITER = "w:1"
OTHER = "o:1"


class Clock:
    """``meta`` for one node: ids ``"<ms> <node> <seq>"``, time moved on by ``step`` ms."""

    def __init__(self, node: str, start: int = 1_000) -> None:
        self.node = node
        self.time = start
        self.seq = itertools.count()

    def meta(self, step: int = 1) -> dict[str, Any]:
        self.time += step
        return {"id": f"{self.time} {self.node} {next(self.seq)}", "time": self.time}


def create(rid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "notes/create", "id": rid, "fields": fields}


def change(rid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "notes/change", "id": rid, "fields": fields}


def delete(rid: str) -> dict[str, Any]:
    return {"type": "notes/delete", "id": rid}


class Queue:
    """A pending queue as a list, applying the compactor's :class:`Plan` (with rewrites)."""

    def __init__(self, compactor: Compactor, clock: Clock | None = None) -> None:
        self.compactor = compactor
        self.clock = clock or Clock(WRITER)
        self.entries: list[Entry] = []
        self.sent: set[str] = set()
        self.last: Plan | None = None

    def add(self, action: dict[str, Any], step: int = 1) -> dict[str, Any]:
        meta = self.clock.meta(step)
        offered = [e for e in self.entries if e.id not in self.sent]
        self.last = self.compactor.plan(offered, Entry(action, meta))
        offered_ids = {e.id for e in offered}
        assert self.last.drop <= offered_ids, "only actions never sent may be dropped"
        assert set(self.last.rewrite) <= offered_ids, "only actions never sent may be rewritten"
        self.entries = self.last.apply(self.entries, meta)
        return meta

    def send(self, count: int | None = None) -> None:
        for entry in self.entries[:count]:
            self.sent.add(entry.id)

    def bodies(self) -> list[dict[str, Any]]:
        return [e.action for e in self.entries]

    def times(self) -> list[int]:
        return [e.meta["time"] for e in self.entries]

    def take(self) -> list[Entry]:
        """Every pending action, handed over for sending and forgotten (a flush)."""
        taken, self.entries = self.entries, []
        self.sent.clear()
        return taken


class StoreQueue(Queue):
    """The client's own :class:`PendingQueue` on a SQLite store, with the compactor as its hook."""

    def __init__(self, compactor: Compactor, clock: Clock | None = None) -> None:
        super().__init__(compactor, clock)
        self.store = Store.open(":memory:")
        self.pending = PendingQueue(self.store, compactor)

    def add(self, action: dict[str, Any], step: int = 1) -> dict[str, Any]:
        meta = self.clock.meta(step)
        self.pending.add(action, meta)
        self.entries = [Entry(p.action, p.meta) for p in self.store.pending()]
        return meta

    def send(self, count: int | None = None) -> None:
        self.pending.mark_sent(self.store.pending()[:count])

    def take(self) -> list[Entry]:
        taken = [Entry(p.action, p.meta) for p in self.store.pending()]
        for entry in taken:
            self.store.remove_pending(entry.id)
        self.entries = []
        return taken


# -- the rules, one by one ----------------------------------------------------------------------


def test_a_change_of_the_same_fields_replaces_the_pending_one() -> None:
    queue = Queue(Compactor(["notes"], rewrite=True))
    first = queue.add(change("r", title="a", text="x"))
    second = queue.add(change("r", text="y", title="b"))
    assert queue.bodies() == [change("r", text="y", title="b")]
    assert queue.last is not None and queue.last.drop == {first["id"]}
    assert queue.times() == [second["time"]]


def test_a_merged_change_keeps_each_field_at_its_own_time() -> None:
    queue = Queue(Compactor(["notes"], rewrite=True))
    first = queue.add(change("r", title="a", text="x"))
    second = queue.add(change("r", title="b"), step=5)
    # text still travels at the first change's time, title at the second's
    assert queue.bodies() == [change("r", text="x"), change("r", title="b")]
    assert queue.times() == [first["time"], second["time"]]
    queue.add(change("r", text="z", title="c"))
    assert queue.bodies() == [change("r", text="z", title="c")]


def test_without_rewrite_a_partly_covered_change_stays_whole() -> None:
    queue = Queue(Compactor(["notes"], rewrite=False))
    queue.add(change("r", title="a", text="x"))
    queue.add(change("r", title="b"))
    assert queue.bodies() == [change("r", title="a", text="x"), change("r", title="b")]
    queue.add(change("r", title="c", text="y"))
    assert queue.bodies() == [change("r", title="c", text="y")]


def test_a_change_back_to_the_server_state_drops_the_pending_change() -> None:
    compactor = Compactor(["notes"], rewrite=True)
    compactor.observe(
        {"type": "notes/changed", "id": "r", "fields": {"title": "t", "n": 1}},
        {
            "id": "5 server:x 0",
            "time": 5,
        },
    )
    queue = Queue(compactor)
    queue.add(change("r", title="edited", n=2))
    queue.add(change("r", title="t"))
    assert queue.bodies() == [change("r", n=2)]
    queue.add(change("r", n=1.0))  # 1 and 1.0 are one JSON number
    assert queue.bodies() == []
    assert queue.last is not None and queue.last.action is None and queue.last.into is None
    # nothing pending: a change to the server's own value is not queued at all
    queue.add(change("r", title="t"))
    assert queue.bodies() == []
    queue.add(change("r", n=True))  # true is not 1
    assert queue.bodies() == [change("r", n=True)]


def test_a_field_in_flight_blocks_the_revert() -> None:
    compactor = Compactor(["notes"], rewrite=True)
    compactor.observe(
        {"type": "notes/changed", "id": "r", "fields": {"title": "t"}}, {"id": "5 s:x 0", "time": 5}
    )
    queue = Queue(compactor)
    queue.add(change("r", title="edited"))
    queue.send()  # may be on the server already
    queue.add(change("r", title="t"))
    assert queue.bodies() == [change("r", title="edited"), change("r", title="t")]


def test_a_dropped_return_lets_an_older_concurrent_write_stay() -> None:
    """Rule 3's one difference from sending every change: a change back to the server's value is
    not sent, so a concurrent write older than it (arriving later) stays on the server."""
    compactor = Compactor(["notes"])
    compactor.observe(
        {"type": "notes/changed", "id": "r", "fields": {"t": "v"}}, {"id": "5 s:x 0", "time": 5}
    )
    queue = Queue(compactor, Clock(WRITER, start=10))
    queue.add(change("r", t="w"))
    meta = queue.add(change("r", t="v"))
    assert queue.entries == []
    every, compacted = Notes(), Notes()
    for notes in (every, compacted):
        notes.create("r", {"t": "v"}, 5)
        notes.change("r", {"t": "x"}, meta["time"] - 1)  # the other client, older, arriving now
    every.change("r", {"t": "w"}, meta["time"] - 1)
    every.change("r", {"t": "v"}, meta["time"])
    assert every.values() == {"r": {"t": "v"}}
    assert compacted.values() == {"r": {"t": "x"}}


def test_after_a_restart_it_tracks_the_sent_actions_it_is_given() -> None:
    store = Store.open(":memory:")
    clock = Clock(WRITER)
    PendingQueue(store).add(change("r", title="edited"), clock.meta())
    store.mark_sent(p.id for p in store.pending())
    compactor = Compactor(["notes"])
    compactor.track(store.pending())  # the new process: the sent change may be on the server
    compactor.observe(
        {"type": "notes/changed", "id": "r", "fields": {"title": "t"}}, {"id": "5 s:x 0", "time": 5}
    )
    queue = PendingQueue(store, compactor)
    queue.add(change("r", title="t"), clock.meta())
    assert [p.action for p in store.pending()] == [
        change("r", title="edited"),
        change("r", title="t"),
    ]
    store.close()


def test_processed_changes_are_the_server_state() -> None:
    compactor = Compactor(["notes"], rewrite=True)
    queue = Queue(compactor)
    meta = queue.add(change("r", title="mine"))
    compactor.processed(meta["id"])
    queue.entries.clear()
    assert compactor.server_record(("notes", "r")).value() == {"title": "mine"}
    queue.add(change("r", title="mine"))
    assert queue.bodies() == []
    undone = queue.add(change("r", title="undone"))
    compactor.undone(undone["id"])
    queue.entries.clear()
    assert compactor.server_record(("notes", "r")).value() == {"title": "mine"}


def test_create_then_delete_sends_nothing() -> None:
    queue = Queue(Compactor(["notes"], rewrite=True))
    queue.add(create("other", a=1))
    queue.add(create("r", a=1))
    queue.add(change("r", b=2))
    queue.add(change("other", b=2))
    queue.add(delete("r"))
    assert queue.bodies() == [create("other", a=1, b=2)]
    assert queue.last is not None and queue.last.into is None


def test_delete_drops_the_pending_changes_but_not_those_sent() -> None:
    queue = Queue(Compactor(["notes"], rewrite=True))
    queue.add(change("r", a=1))
    queue.send()
    queue.add(change("r", b=2))
    queue.add(change("r", c=3))
    meta = queue.add(delete("r"))
    assert queue.bodies() == [change("r", a=1), delete("r")]
    assert queue.last is not None and queue.last.drop and queue.last.into is None
    assert queue.entries[-1].id == meta["id"]


def test_a_sent_create_is_not_dropped_by_its_delete() -> None:
    queue = Queue(Compactor(["notes"], rewrite=True))
    queue.add(create("r", a=1))
    queue.send()
    queue.add(change("r", a=2))
    queue.add(delete("r"))
    assert queue.bodies() == [create("r", a=1), delete("r")]


def test_a_create_of_a_record_the_server_has_keeps_its_delete() -> None:
    compactor = Compactor(["notes"], rewrite=True)
    compactor.observe(
        {"type": "notes/created", "id": "r", "fields": {"a": 0}}, {"id": "5 s:x 0", "time": 5}
    )
    queue = Queue(compactor)
    queue.add(create("r", a=1))  # will be undone `exists`
    queue.add(change("r", a=2))
    queue.add(delete("r"))
    assert queue.bodies() == [create("r", a=1), delete("r")]


def test_a_create_referred_to_by_a_later_action_is_not_dropped() -> None:
    def references(action: Any) -> list[tuple[str, str]]:
        project = action.get("fields", {}).get("project")
        return [("notes", project)] if project else []

    queue = Queue(Compactor(["notes"], rewrite=True, references=references))
    queue.add(create("p", title="project"))
    queue.add(create("t", project="p"))
    queue.add(delete("p"))
    assert queue.bodies() == [create("p", title="project"), create("t", project="p"), delete("p")]


def test_a_create_absorbs_its_changes_in_place() -> None:
    queue = Queue(Compactor(["notes"], rewrite=True))
    created = queue.add(create("r", title="a"))
    queue.add(create("other", n=1))
    queue.add(change("r", title="b", text="x"))
    queue.add(change("r", text="y"))
    assert queue.bodies() == [create("r", title="b", text="y"), create("other", n=1)]
    assert queue.times()[0] == created["time"]
    assert queue.last is not None and queue.last.into == created["id"]


def test_without_rewrite_a_change_stays_ordered_after_its_create() -> None:
    queue = Queue(Compactor(["notes"], rewrite=False))
    queue.add(create("r", title="a"))
    queue.add(create("t", project="r"))
    queue.add(change("r", title="b"))
    assert queue.bodies() == [
        create("r", title="a"),
        create("t", project="r"),
        change("r", title="b"),
    ]
    # the create last in the queue: re-queued as the new action with the merged fields
    queue = Queue(Compactor(["notes"], rewrite=False))
    queue.add(create("r", title="a"))
    meta = queue.add(change("r", text="x"))
    assert queue.bodies() == [create("r", title="a", text="x")]
    assert queue.entries[0].id == meta["id"]


def test_a_change_older_than_a_pending_write_loses_that_field() -> None:
    clock = Clock(WRITER)
    queue = Queue(Compactor(["notes"], rewrite=True), clock)
    queue.add(change("r", a=1, b=1), step=10)
    clock.time -= 5  # a clock that went back
    queue.add(change("r", a=2, c=2))
    assert queue.bodies() == [change("r", a=1, b=1), change("r", c=2)]


def test_other_actions_and_plurals_are_left_alone() -> None:
    queue = Queue(Compactor(["notes"], rewrite=True))
    queue.add({"type": "chat/add", "text": "hi"})
    queue.add({"type": "chat/add", "text": "hi"})
    queue.add({"type": "tasks/change", "id": "r", "fields": {"a": 1}})
    queue.add({"type": "tasks/change", "id": "r", "fields": {"a": 1}})
    queue.add({"type": "notes/change", "id": "bad/id", "fields": {"a": 1}})
    queue.add({"type": "notes/change", "id": "bad/id", "fields": {"a": 1}})
    assert len(queue.entries) == 6


async def test_the_pending_queue_applies_the_compactor() -> None:
    """Through the client's own PendingQueue and SQLite store."""
    store = Store.open(":memory:")
    compactor = Compactor(["notes"])
    queue = PendingQueue(store, compactor)
    clock = Clock(WRITER)
    first = clock.meta()
    queue.add(change("r", title="a"), first)
    waiter = queue.waiter(first["id"])
    second = clock.meta()
    queue.add(change("r", title="b"), second)
    assert [p.action for p in store.pending()] == [change("r", title="b")]
    queue.processed(second["id"], {"id": second["id"]})
    assert (await waiter)["id"] == second["id"]  # answered with the change that replaced it
    compactor.processed(second["id"])
    third = clock.meta()
    queue.add(change("r", title="c"), third)
    reverted = queue.waiter(third["id"])
    queue.add(change("r", title="b"), clock.meta())
    assert store.pending() == []
    assert (await reverted)["id"] == third["id"]  # nothing left to send: answered at once
    store.close()


async def test_actions_folded_into_one_that_cancels_out_are_answered_too() -> None:
    store = Store.open(":memory:")
    compactor = Compactor(["notes"])
    compactor.observe(
        {"type": "notes/changed", "id": "r", "fields": {"t": "v"}}, {"id": "5 s:x 0", "time": 5}
    )
    queue = PendingQueue(store, compactor)
    clock = Clock(WRITER)
    first = clock.meta()
    queue.add(change("r", t="a"), first)
    waiter = queue.waiter(first["id"])
    queue.add(change("r", t="b"), clock.meta())  # the first is folded into this one
    queue.add(change("r", t="v"), clock.meta())  # back to the server's value: nothing to send
    assert store.pending() == []
    assert (await asyncio.wait_for(waiter, 1))["id"] == first["id"]
    store.close()


async def test_the_pending_queue_rewrites_a_create_in_place() -> None:
    store = Store.open(":memory:")
    queue = PendingQueue(store, Compactor(["notes"]))
    clock = Clock(WRITER)
    created = clock.meta()
    queue.add(create("r", title="a"), created)
    queue.add(create("other", n=1), clock.meta())
    changed = clock.meta()
    queue.add(change("r", title="b", text="x"), changed)
    waiter = queue.waiter(changed["id"])
    assert [(p.id, p.action["id"]) for p in store.pending()] == [
        (created["id"], "r"),
        (store.pending()[1].id, "other"),
    ]
    assert store.pending()[0].action == create("r", title="b", text="x")
    queue.processed(created["id"], {"id": created["id"]})
    assert (await waiter)["id"] == created["id"]  # the change is answered with its create
    store.close()


# -- sending every change vs the compacted queue ------------------------------------------------


class Servers:
    """Where the two queues go: ``every`` (each action as made) and ``compacted``."""

    def send(self, copy: str, entries: list[Entry]) -> list[str | None]:
        """Send ``entries`` in order to the ``copy`` (``"every"``/``"compacted"``) of the
        records; the undo reason of each (``None``: processed)."""
        raise NotImplementedError

    def other(self, action: dict[str, Any], meta: dict[str, Any]) -> list[str | None]:
        """Another client's action, to both copies."""
        raise NotImplementedError

    def values(self, copy: str) -> dict[str, dict[str, Any]]:
        raise NotImplementedError


class Reference(Servers):
    """Two in-process :class:`Notes`: the SyncMap rules of the test app."""

    def __init__(self) -> None:
        self.copies = {"every": Notes(), "compacted": Notes()}

    def send(self, copy: str, entries: list[Entry]) -> list[str | None]:
        return [self.copies[copy].apply(e.action, e.meta["time"]) for e in entries]

    def other(self, action: dict[str, Any], meta: dict[str, Any]) -> list[str | None]:
        return [notes.apply(action, meta["time"]) for notes in self.copies.values()]

    def values(self, copy: str) -> dict[str, dict[str, Any]]:
        return self.copies[copy].values()


RECORDS = st.sampled_from(["r1", "r2"])
# few values, so that changes back to the server's value are frequent
FIELDS = st.dictionaries(st.sampled_from("abc"), st.integers(0, 1), max_size=3)
STEPS = st.integers(0, 2)


class CompactionMachine(RuleBasedStateMachine):
    """See the module docs. Subclasses set ``rewrite`` and ``make_servers``."""

    rewrite = True
    queue_class: type[Queue] = Queue

    def make_servers(self) -> Servers:
        return Reference()

    def __init__(self) -> None:
        super().__init__()
        self.servers = self.make_servers()
        self.clock = Clock(WRITER, start=self.start_time())
        self.other_clock = Clock(OTHER)
        self.compactor = Compactor(["notes"], rewrite=self.rewrite)
        self.queue = self.queue_class(self.compactor, self.clock)
        self.every: list[Entry] = []

    def start_time(self) -> int:
        return 1_000

    def make(self, action: dict[str, Any], step: int) -> None:
        meta = self.queue.add(action, step)
        self.every.append(Entry(action, meta))

    @initialize(fields=FIELDS)
    def seeded(self, fields: dict[str, int]) -> None:
        """r1 exists on the server from the start (created and processed)."""
        self.make(create("r1", **fields), 1)
        self.flush()

    @rule(rid=RECORDS, fields=FIELDS, step=STEPS)
    def make_create(self, rid: str, fields: dict[str, int], step: int) -> None:
        self.make(create(rid, **fields), step)

    @rule(rid=RECORDS, fields=FIELDS, step=STEPS)
    def make_change(self, rid: str, fields: dict[str, int], step: int) -> None:
        self.make(change(rid, **fields), step)

    @rule(rid=RECORDS, step=STEPS)
    def make_delete(self, rid: str, step: int) -> None:
        self.make(delete(rid), step)

    @rule(count=st.integers(1, 3))
    def hand_to_transport(self, count: int) -> None:
        self.queue.send(count)

    @rule(rid=RECORDS, fields=FIELDS, step=STEPS, deleting=st.booleans())
    def other_client(self, rid: str, fields: dict[str, int], step: int, deleting: bool) -> None:
        # newer than every change made so far: an older concurrent write may beat a change the
        # compactor dropped as a return to the server's value (rule 3, by design: see
        # test_a_dropped_return_lets_an_older_concurrent_write_stay)
        self.other_clock.time = self.clock.time
        meta = self.other_clock.meta(step + 1)
        action = delete(rid) if deleting else change(rid, **fields)
        answers = self.servers.other(action, meta)
        assert answers[0] == answers[1]
        if answers[0] is None:  # the server resends it: the client sees notes/changed|deleted
            resent = {**action, "type": "notes/deleted" if deleting else "notes/changed"}
            self.compactor.observe(resent, meta)

    @rule()
    def flush(self) -> None:
        every, self.every = self.every, []
        compacted = self.queue.take()
        assert len(compacted) <= len(every)
        self.servers.send("every", every)
        for entry, undo in zip(compacted, self.servers.send("compacted", compacted), strict=True):
            if undo is None:
                self.compactor.processed(entry.id)
            else:
                self.compactor.undone(entry.id)
        assert self.servers.values("compacted") == self.servers.values("every")

    @invariant()
    def never_more_than_every_change(self) -> None:
        assert len(self.queue.entries) <= len(self.every)

    def teardown(self) -> None:
        self.flush()


class RewritingMachine(CompactionMachine):
    rewrite = True


class NoRewriteMachine(CompactionMachine):
    """The compactor without rewrites (``rewrite=False``), for a queue that cannot rewrite."""

    rewrite = False


class PendingQueueMachine(CompactionMachine):
    """The compactor through the client's PendingQueue and SQLite store (``Keep.rewrite``)."""

    queue_class = StoreQueue
    rewrite = True


TestReferenceRewriting = RewritingMachine.TestCase
TestReferenceRewriting.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestReferenceNoRewrite = NoRewriteMachine.TestCase
TestReferenceNoRewrite.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestPendingQueue = PendingQueueMachine.TestCase
TestPendingQueue.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


# -- against a real logsync serve ---------------------------------------------------------------


class RealServer(Servers):
    """The two copies as id prefixes on a real server, written over ``POST /v1/sync``."""

    examples = itertools.count()
    pushed = 0  # actions pushed, over all examples

    def __init__(self, http_url: str) -> None:
        self.url = http_url.rstrip("/") + "/v1/sync"
        self.example = n = next(self.examples)
        self.prefix = {"every": f"e{n}-", "compacted": f"c{n}-"}
        self.readers = itertools.count()
        self.seen: set[str] = set()

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"token": "secret", "subprotocol": 3, **body}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def push(
        self, node: str, copy: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> list[str | None]:
        """Push ``pairs`` as ``node``'s of this example and copy: the server dedupes by id, so
        each copy (and each example) has its own node ids and record ids."""
        if not pairs:
            return []
        node = f"{node.split(':')[0]}x{self.example}:{copy}"
        prefix = self.prefix[copy]
        actions = []
        for action, meta in pairs:
            ms, _, seq = str(meta["id"]).split(" ")
            moved = {**action, "id": prefix + action["id"]}
            actions.append([moved, {"id": f"{ms} {node} {seq}", "time": meta["time"]}])
        answers = self.post({"node": node, "actions": actions})["answers"]
        assert len(answers) == len(pairs)
        RealServer.pushed += len(pairs)
        return [None if a["status"] == "processed" else a["reason"] for a in answers]

    def send(self, copy: str, entries: list[Entry]) -> list[str | None]:
        return self.push(WRITER, copy, [(e.action, e.meta) for e in entries])

    def other(self, action: dict[str, Any], meta: dict[str, Any]) -> list[str | None]:
        return [self.push(OTHER, copy, [(action, meta)])[0] for copy in self.prefix]

    def values(self, copy: str) -> dict[str, dict[str, Any]]:
        """Subscribe a fresh reader to each record: the ``notes/changed`` its ``load`` sends."""
        prefix = self.prefix[copy]
        channels = [f"notes/{prefix}{rid}" for rid in ("r1", "r2")]
        reader = f"reader:{prefix}{next(self.readers)}"
        page = self.post({"node": reader, "subscribe": [{"channel": c} for c in channels]})
        found: dict[str, dict[str, Any]] = {}
        for answer, channel in zip(page["subscriptions"], channels, strict=True):
            rid = channel.removeprefix(f"notes/{prefix}")
            if answer["status"] == "processed":
                found[rid] = {}
            else:
                assert answer.get("reason") == "notFound", answer
        for action, _ in page["actions"]:
            if action["type"] == "notes/changed":
                found[action["id"].removeprefix(prefix)].update(action["fields"])
        assert not page["more"]
        self.post({"node": reader, "unsubscribe": [{"channel": c} for c in channels]})
        return found


@pytest.fixture(scope="module")
def compaction_server() -> Iterator[ServerProcess]:
    server = ServerProcess("tests.client.compaction_app:app", store="memory://")
    try:
        yield server
    finally:
        server.stop()


def test_the_compacted_queue_leaves_a_real_server_as_every_change(
    compaction_server: ServerProcess,
) -> None:
    url = compaction_server.http_url
    start = now_ms()

    class Real(CompactionMachine):
        rewrite = False

        def make_servers(self) -> Servers:
            return RealServer(url)

        def start_time(self) -> int:
            return start

    class RealRewriting(Real):
        rewrite = True

    before = RealServer.pushed
    for machine in (Real, RealRewriting):
        case = machine.TestCase
        case.settings = settings(
            max_examples=50,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        case("runTest").runTest()
    assert RealServer.pushed - before > 500  # the examples did reach the server
