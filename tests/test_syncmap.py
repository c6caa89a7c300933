"""logsync.syncmap without sockets: field groups, ``since``, filter predicates, and the rules it
registers, run on a real node (memory store) whose log shows what they added."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from logsync import App, Context, NotFound, Undo
from logsync.broker import LocalBroker
from logsync.engine import ServerNode
from logsync.log import Entry, MemoryStore
from logsync.settings import Settings
from logsync.syncmap import (
    ChangedAt,
    NoConflictResolution,
    add_sync_map,
    add_sync_map_filter,
    changed_actions,
    changed_matches,
    created_matches,
    filter_predicate,
    group_fields,
    same_value,
    since_time,
)
from tests.engine.peers import RecordingPeer

pytestmark = pytest.mark.timeout(20)

# -- field groups ------------------------------------------------------------------------------


def test_fields_are_grouped_by_time_oldest_first_untimed_last() -> None:
    fields = {
        "id": "n1",
        "text": ChangedAt("b", 2000),
        "title": ChangedAt("a", 1000),
        "kind": NoConflictResolution("x"),
        "project": ChangedAt("p", 1000),
        "plain": 5,
    }
    assert group_fields(fields) == [
        (1000, {"title": "a", "project": "p"}),
        (2000, {"text": "b"}),
        (None, {"kind": "x", "plain": 5}),
    ]


def test_since_drops_older_groups_but_keeps_equal_ones_and_untimed() -> None:
    fields = {
        "a": ChangedAt(1, 1000),
        "b": ChangedAt(2, 2000),
        "c": ChangedAt(3, 3000),
        "d": NoConflictResolution(4),
    }
    assert group_fields(fields, since=2000) == [
        (2000, {"b": 2}),
        (3000, {"c": 3}),
        (None, {"d": 4}),
    ]
    assert group_fields(fields, since=10**13) == [(None, {"d": 4})]
    assert group_fields({}, since=0) == []


def test_changed_at_time_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="ms"):
        group_fields({"a": ChangedAt(1, "soon")})
    with pytest.raises(TypeError):
        group_fields({"a": ChangedAt(1, True)})
    assert group_fields({"a": ChangedAt(1, 1500.0)}) == [(1500, {"a": 1})]


def test_changed_actions_one_per_group_with_its_time() -> None:
    fields = {"title": ChangedAt("t", 5), "done": ChangedAt(True, 7), "n": NoConflictResolution(1)}
    assert changed_actions("tasks", "t1", fields, since=6) == [
        ({"type": "tasks/changed", "id": "t1", "fields": {"done": True}}, {"time": 7}),
        ({"type": "tasks/changed", "id": "t1", "fields": {"n": 1}}, None),
    ]


def test_groups_holding_filter_keys_go_first() -> None:
    # createFilter builds a list item from the first `changed` it gets of that item
    fields = {"title": ChangedAt("six", 10), "project": ChangedAt("p", 20), "x": ChangedAt(0, 5)}
    actions = changed_actions("notes", "n6", fields, first_keys={"project": "p"})
    assert [a["fields"] for a, _ in actions] == [{"project": "p"}, {"x": 0}, {"title": "six"}]
    assert [m for _, m in actions] == [{"time": 20}, {"time": 5}, {"time": 10}]


def test_since_time_of_a_subscribe() -> None:
    assert since_time({"type": "logux/subscribe"}) == 0
    assert since_time({"since": {"id": "1 a 0", "time": 1234}}) == 1234
    assert since_time({"since": {"time": 12.7}}) == 12
    assert since_time({"since": {"time": "1"}}) == 0
    assert since_time({"since": {"time": True}}) == 0
    assert since_time({"since": None}) == 0


# -- filters ---------------------------------------------------------------------------------


def test_same_value_follows_javascript_strict_equality_for_scalars() -> None:
    assert same_value(1, 1.0)
    assert not same_value(True, 1)
    assert not same_value(1, "1")
    assert not same_value(None, False)
    assert same_value(None, None)
    assert same_value("a", "a")
    assert same_value({"a": [1]}, {"a": [1]})


def test_created_needs_every_filter_key() -> None:
    assert created_matches({}, {"a": 1})
    assert created_matches({"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 0})
    assert not created_matches({"a": 1, "b": "x"}, {"a": 1})
    assert not created_matches({"a": 1}, {"a": 2})
    assert not created_matches({"a": None}, {})


def test_changed_passes_unless_a_listed_key_contradicts() -> None:
    assert changed_matches({"a": 1}, {"b": 2})
    assert changed_matches({"a": 1}, {"a": 1, "b": 2})
    assert not changed_matches({"a": 1}, {"a": 2})
    assert not changed_matches({"a": False}, {"a": 0})


def test_filter_predicate() -> None:
    accepts = filter_predicate("notes", {"project": "p"})
    meta: dict[str, Any] = {}
    created = {"type": "notes/created", "id": "1", "fields": {"project": "p", "title": "t"}}
    assert accepts(created, meta)
    assert not accepts({**created, "fields": {"project": "q"}}, meta)
    assert not accepts({**created, "fields": {"title": "t"}}, meta)
    assert accepts({"type": "notes/changed", "id": "1", "fields": {"title": "u"}}, meta)
    assert not accepts({"type": "notes/changed", "id": "1", "fields": {"project": "q"}}, meta)
    assert not accepts({"type": "notes/created", "id": "1"}, meta)  # no fields: no match
    # other types (including another plural's) are not this filter's business
    assert accepts({"type": "notes/deleted", "id": "1"}, meta)
    assert accepts({"type": "tasks/created", "id": "1", "fields": {}}, meta)


def test_filter_predicate_and_custom_predicate() -> None:
    accepts = filter_predicate(
        "notes", {"project": "p"}, lambda action, meta: action.get("id") != "hidden"
    )
    fields = {"project": "p"}
    assert accepts({"type": "notes/created", "id": "1", "fields": fields}, {})
    assert not accepts({"type": "notes/created", "id": "hidden", "fields": fields}, {})
    assert not accepts({"type": "notes/created", "id": "1", "fields": {"project": "q"}}, {})


# -- the registered rules, on a real node -------------------------------------------------------
#
# A ServerNode on the memory store: what the rules add is read back from its log, what they
# subscribe from the connected peer's subscriptions.

NODE_ID = "u:c:t"  # the client whose action the rules handle: user "u", client "u:c"


class Store:
    """A tiny app: one map, and a log of the callbacks' arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.maps: dict[str, dict[str, Any]] = {
            "n1": {"title": ChangedAt("one", 100), "project": ChangedAt("p", 200)}
        }

    def access(self, ctx: Context, id: str, action: Any, meta: Any) -> bool:
        self.calls.append(("access", id))
        return id != "secret"

    def load(self, ctx: Context, id: str, since: int, action: Any, meta: Any) -> Any:
        self.calls.append(("load", id, since))
        return self.maps.get(id, False)

    async def create(self, ctx: Context, id: str, fields: Any, time: int, a: Any, m: Any) -> None:
        self.calls.append(("create", id, fields, time))

    def change(self, ctx: Context, id: str, fields: Any, time: int, a: Any, m: Any) -> bool:
        self.calls.append(("change", id, fields, time))
        return not fields.get("quiet")

    def delete(self, ctx: Context, id: str, action: Any, meta: Any) -> None:
        self.calls.append(("delete", id))


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def app(store: Store) -> App:
    app = App()
    add_sync_map(
        app,
        "notes",
        access=store.access,
        load=store.load,
        create=store.create,
        change=store.change,
        delete=store.delete,
    )
    return app


@asynccontextmanager
async def running(app: App) -> AsyncIterator[ServerNode]:
    """A started node serving ``app`` on a fresh memory store; stopped after."""
    node = ServerNode(app, MemoryStore(), LocalBroker(), Settings())
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@pytest.fixture
async def node(app: App) -> AsyncIterator[ServerNode]:
    async with running(app) as started:
        yield started


def connect(node: ServerNode, node_id: str = NODE_ID) -> RecordingPeer:
    """A connected client: the node can subscribe it from the server side."""
    peer = RecordingPeer(node, node_id)
    node.attach(peer)
    node.registry.register(peer)
    return peer


def context(node: ServerNode, **params: str) -> Context:
    return Context(
        node=node,
        user_id="u",
        client_id="u:c",
        node_id=NODE_ID,
        subprotocol=None,
        headers={},
        params=dict(params),
    )


async def log(node: ServerNode, *indexes: str) -> list[Entry]:
    """What the node's log holds under ``indexes``, in log order."""
    found = await node.store.read(list(indexes), 0, 100)
    assert not found.more
    return found.entries


async def call(fn: Any, *args: Any) -> Any:
    result = fn(*args)
    if hasattr(result, "__await__"):
        result = await result
    return result


def rule(app: App, name: str) -> Any:
    found = app.find_type(name)
    assert found is not None, name
    return found


async def test_server_types_are_denied_to_clients(app: App, node: ServerNode) -> None:
    for kind in ("notes/created", "notes/changed", "notes/deleted"):
        assert (
            await call(rule(app, kind).access, context(node), {"type": kind, "id": "n1"}, {})
            is False
        )
    assert await node.store.head() == 0


async def test_create_adds_created_with_the_client_time_to_both_channels(
    app: App, store: Store, node: ServerNode
) -> None:
    ctx = context(node)
    action = {"type": "notes/create", "id": "n2", "fields": {"title": "two"}}
    meta = {"id": "1 u:c:t 0", "time": 1234}
    create = rule(app, "notes/create")
    assert await call(create.access, ctx, action, meta) is True
    await call(create.process, ctx, action, meta)
    assert store.calls == [("access", "n2"), ("create", "n2", {"title": "two"}, 1234)]
    # one server action in the log, filed under both channels, kept from the sending client
    assert await node.store.head() == 1
    [created] = await log(node, "channel:notes")
    assert await log(node, "channel:notes/n2") == [created]
    assert await node.store.get(created.id) == created
    assert created.action == {"type": "notes/created", "id": "n2", "fields": {"title": "two"}}
    assert created.indexes == ["channel:notes", "channel:notes/n2"]
    assert created.exclude_clients == ["u:c"]
    assert created.time == 1234
    assert created.id != meta["id"] and created.id.split(" ")[1] == node.node_id


async def test_change_false_is_not_resent_and_delete_goes_to_the_map_channel(
    app: App, node: ServerNode
) -> None:
    ctx = context(node)
    change = rule(app, "notes/change")
    quiet = {"type": "notes/change", "id": "n1", "fields": {"quiet": True}}
    await call(change.process, ctx, quiet, {"time": 5})
    assert await node.store.head() == 0
    loud = {"type": "notes/change", "id": "n1", "fields": {"title": "x"}}
    await call(change.process, ctx, loud, {"time": 6})
    await call(
        rule(app, "notes/delete").process, ctx, {"type": "notes/delete", "id": "n1"}, {"time": 7}
    )
    entries = await log(node, "channel:notes", "channel:notes/n1")
    assert [(e.action["type"], e.indexes, e.time, e.exclude_clients) for e in entries] == [
        ("notes/changed", ["channel:notes", "channel:notes/n1"], 6, ["u:c"]),
        ("notes/deleted", ["channel:notes/n1"], 7, ["u:c"]),
    ]
    assert entries[0].action["fields"] == {"title": "x"}
    assert await node.store.head() == 2


@pytest.mark.parametrize(
    "action",
    [
        {"type": "notes/change", "fields": {}},
        {"type": "notes/change", "id": 5, "fields": {}},
        {"type": "notes/change", "id": "a/b", "fields": {}},
        {"type": "notes/change", "id": "n1", "fields": "x"},
        {"type": "notes/create", "id": "n1"},
    ],
)
async def test_malformed_actions_are_undone_with_error(
    app: App, node: ServerNode, action: dict[str, Any]
) -> None:
    with pytest.raises(Undo) as raised:
        await call(rule(app, action["type"]).access, context(node), action, {})
    assert raised.value.reason == "error"


async def test_access_refusal_and_delete_without_fields(app: App, node: ServerNode) -> None:
    ctx = context(node)
    change = {"type": "notes/change", "id": "secret", "fields": {}}
    assert await call(rule(app, "notes/change").access, ctx, change, {}) is False
    delete = {"type": "notes/delete", "id": "n1"}
    assert await call(rule(app, "notes/delete").access, ctx, delete, {}) is True


async def test_channel_load_sends_groups_since_and_skips_creating(
    app: App, store: Store, node: ServerNode
) -> None:
    found = app.find_channel("notes/n1")
    assert found is not None
    channel, params = found
    assert params == {"id": "n1"}
    ctx = context(node, **params)
    subscribe = {"type": "logux/subscribe", "channel": "notes/n1"}
    assert await call(channel.access, ctx, subscribe, {}) is True
    assert await call(channel.load, ctx, subscribe, {}) == [
        ({"type": "notes/changed", "id": "n1", "fields": {"title": "one"}}, {"time": 100}),
        ({"type": "notes/changed", "id": "n1", "fields": {"project": "p"}}, {"time": 200}),
    ]
    since = {**subscribe, "since": {"id": "x", "time": 150}}
    assert await call(channel.load, ctx, since, {}) == [
        ({"type": "notes/changed", "id": "n1", "fields": {"project": "p"}}, {"time": 200}),
    ]
    assert await call(channel.load, ctx, {**subscribe, "creating": True}, {}) == []
    assert store.calls == [("access", "n1"), ("load", "n1", 0), ("load", "n1", 150)]
    # `load` returns what to send; the node (not the rule) appends it
    assert await node.store.head() == 0


async def test_channel_load_of_a_missing_map_is_not_found(app: App, node: ServerNode) -> None:
    found = app.find_channel("notes/zzz")
    assert found is not None
    ctx = context(node, **found[1])
    with pytest.raises(NotFound):
        await call(found[0].load, ctx, {"type": "logux/subscribe", "channel": "notes/zzz"}, {})


async def test_channel_load_none_is_not_found_but_empty_map_is_fine() -> None:
    app = App()
    maps: dict[str, Any] = {"empty": {}}
    add_sync_map(app, "notes", access=lambda *a: True, load=lambda ctx, id, *a: maps.get(id))
    async with running(app) as node:
        for name, expected in (("empty", []), ("none", None)):
            found = app.find_channel(f"notes/{name}")
            assert found is not None
            ctx = context(node, **found[1])
            action = {"type": "logux/subscribe", "channel": f"notes/{name}"}
            if expected is None:
                with pytest.raises(NotFound):
                    await call(found[0].load, ctx, action, {})
            else:
                assert await call(found[0].load, ctx, action, {}) == expected
    # no create/change/delete callbacks: those types stay unknown
    assert app.find_type("notes/create") is None


# -- the filter channel --------------------------------------------------------------------------


def filter_app(maps: list[dict[str, Any]], calls: list[Any]) -> App:
    app = App()

    def initial(ctx: Context, filter: Any, since: int, action: Any, meta: Any) -> Any:
        calls.append(("initial", filter, since))
        return [m for m in maps if all(k in m and m[k].value == v for k, v in filter.items())]

    add_sync_map_filter(
        app,
        "notes",
        access=lambda ctx, filter, action, meta: "secret" not in filter,
        initial=initial,
        actions=lambda ctx, filter, action, meta: lambda a, m: a.get("id") != "hidden",
    )
    return app


MAPS = [
    {"id": "a", "project": ChangedAt("p", 10), "title": ChangedAt("A", 20)},
    {"id": "b", "project": ChangedAt("q", 10)},
]


async def test_filter_subscribe_sends_subscribed_and_fields_per_map() -> None:
    calls: list[Any] = []
    app = filter_app(MAPS, calls)
    found = app.find_channel("notes")
    assert found is not None
    channel = found[0]
    async with running(app) as node:
        peer = connect(node)
        ctx = context(node)
        action = {"type": "logux/subscribe", "channel": "notes", "filter": {"project": "p"}}
        assert await call(channel.access, ctx, action, {}) is True
        assert await call(channel.access, ctx, {**action, "filter": {"secret": 1}}, {}) is False
        predicate = await call(channel.filter, ctx, action, {})
        assert predicate({"type": "notes/created", "id": "x", "fields": {"project": "p"}}, {})
        assert not predicate({"type": "notes/created", "id": "x", "fields": {"project": "q"}}, {})
        hidden = {"type": "notes/created", "id": "hidden", "fields": {"project": "p"}}
        assert not predicate(hidden, {})
        await call(channel.load, ctx, action, {})
        assert calls == [("initial", {"project": "p"}, 0)]
        # the client is subscribed, from the server side, to the one matching map
        assert list(peer.subscriptions) == ["notes/a"]
        assert node.registry.subscribers["notes/a"] == {peer}
        # the log: `logux/subscribed` to that node, then the map's fields to that client only,
        # one action per change time, the filter's field first
        entries = await log(node, f"node:{NODE_ID}", "client:u:c")
        assert [(e.action["type"], e.action.get("fields"), e.indexes) for e in entries] == [
            ("logux/subscribed", None, [f"node:{NODE_ID}"]),
            ("notes/changed", {"project": "p"}, ["client:u:c"]),
            ("notes/changed", {"title": "A"}, ["client:u:c"]),
        ]
        assert entries[0].action == {"type": "logux/subscribed", "channel": "notes/a"}
        assert [e.time for e in entries[1:]] == [10, 20]
        assert all(e.action.get("id") == "a" for e in entries[1:])
        assert await node.store.head() == len(entries)  # nothing else, nothing to a channel
        assert ctx.last_added == entries[-1].added


async def test_resumed_filter_subscription_restores_item_subscriptions_only() -> None:
    # the node resumed from the log's history: `resume` runs instead of `load`
    calls: list[Any] = []
    app = filter_app(MAPS, calls)
    found = app.find_channel("notes")
    assert found is not None
    channel = found[0]
    async with running(app) as node:
        peer = connect(node)
        ctx = context(node)
        action = {
            "type": "logux/subscribe",
            "channel": "notes",
            "since": {"id": "1 x 0", "time": 15},
        }
        await call(channel.filter, ctx, action, {})
        await call(channel.resume, ctx, action, {})
        assert calls == [("initial", {}, 15)]
        assert list(peer.subscriptions) == ["notes/a", "notes/b"]
        assert all(node.registry.subscribers[c] == {peer} for c in peer.subscriptions)
        entries = await log(node, f"node:{NODE_ID}", "client:u:c")
        assert [(e.action["type"], e.action["channel"]) for e in entries] == [
            ("logux/subscribed", "notes/a"),
            ("logux/subscribed", "notes/b"),
        ]
        assert await node.store.head() == 2  # no fields: the history replay brings them


async def test_filter_must_be_an_object_and_no_filter_means_everything() -> None:
    app = App()
    add_sync_map_filter(app, "notes", access=lambda *a: True, initial=lambda *a: [])
    found = app.find_channel("notes")
    assert found is not None
    async with running(app) as node:
        ctx = context(node)
        with pytest.raises(Undo):
            await call(found[0].access, ctx, {"type": "logux/subscribe", "filter": [1]}, {})
        assert await call(found[0].filter, ctx, {"type": "logux/subscribe"}, {}) is None
    assert app.find_channel("notesx") is None and app.find_channel("notes/1") is None
