"""logsync.syncmap without a server: field groups, ``since``, filter predicates, and the rules it
registers, run against a recording stand-in for the node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from logsync import App, Context, NotFound, Undo
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


# -- the registered rules, against a recording node ---------------------------------------------


@dataclass
class _Entry:
    added: int


@dataclass
class FakeNode:
    """Records what the rules ask of a ServerNode."""

    added: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    subscribed: list[tuple[str, str]] = field(default_factory=list)

    async def add(self, action: dict[str, Any], **route: Any) -> _Entry:
        self.added.append((action, route))
        return _Entry(len(self.added))

    async def subscribe(self, node_id: str, channel: str) -> bool:
        self.subscribed.append((node_id, channel))
        self.added.append(({"type": "logux/subscribed", "channel": channel}, {"nodes": [node_id]}))
        return True


def context(node: FakeNode, **params: str) -> Context:
    return Context(
        node=node,
        user_id="u",
        client_id="u:c",
        node_id="u:c:t",
        subprotocol=None,
        headers={},
        params=dict(params),
    )


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


async def call(fn: Any, *args: Any) -> Any:
    result = fn(*args)
    if hasattr(result, "__await__"):
        result = await result
    return result


def rule(app: App, name: str) -> Any:
    found = app.find_type(name)
    assert found is not None, name
    return found


async def test_server_types_are_denied_to_clients(app: App) -> None:
    node = FakeNode()
    for kind in ("notes/created", "notes/changed", "notes/deleted"):
        assert (
            await call(rule(app, kind).access, context(node), {"type": kind, "id": "n1"}, {})
            is False
        )


async def test_create_adds_created_with_the_client_time_to_both_channels(
    app: App, store: Store
) -> None:
    node = FakeNode()
    ctx = context(node)
    action = {"type": "notes/create", "id": "n2", "fields": {"title": "two"}}
    meta = {"id": "1 u:c:t 0", "time": 1234}
    create = rule(app, "notes/create")
    assert await call(create.access, ctx, action, meta) is True
    await call(create.process, ctx, action, meta)
    assert store.calls == [("access", "n2"), ("create", "n2", {"title": "two"}, 1234)]
    assert node.added == [
        (
            {"type": "notes/created", "id": "n2", "fields": {"title": "two"}},
            {
                "channels": ["notes", "notes/n2"],
                "exclude_clients": ["u:c"],
                "meta": {"time": 1234},
            },
        )
    ]


async def test_change_false_is_not_resent_and_delete_goes_to_the_map_channel(app: App) -> None:
    node = FakeNode()
    ctx = context(node)
    change = rule(app, "notes/change")
    quiet = {"type": "notes/change", "id": "n1", "fields": {"quiet": True}}
    await call(change.process, ctx, quiet, {"time": 5})
    assert node.added == []
    loud = {"type": "notes/change", "id": "n1", "fields": {"title": "x"}}
    await call(change.process, ctx, loud, {"time": 6})
    await call(
        rule(app, "notes/delete").process, ctx, {"type": "notes/delete", "id": "n1"}, {"time": 7}
    )
    assert [(a["type"], r["channels"], r["meta"]) for a, r in node.added] == [
        ("notes/changed", ["notes", "notes/n1"], {"time": 6}),
        ("notes/deleted", ["notes/n1"], {"time": 7}),
    ]


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
async def test_malformed_actions_are_undone_with_error(app: App, action: dict[str, Any]) -> None:
    with pytest.raises(Undo) as raised:
        await call(rule(app, action["type"]).access, context(FakeNode()), action, {})
    assert raised.value.reason == "error"


async def test_access_refusal_and_delete_without_fields(app: App) -> None:
    ctx = context(FakeNode())
    change = {"type": "notes/change", "id": "secret", "fields": {}}
    assert await call(rule(app, "notes/change").access, ctx, change, {}) is False
    delete = {"type": "notes/delete", "id": "n1"}
    assert await call(rule(app, "notes/delete").access, ctx, delete, {}) is True


async def test_channel_load_sends_groups_since_and_skips_creating(app: App, store: Store) -> None:
    found = app.find_channel("notes/n1")
    assert found is not None
    channel, params = found
    assert params == {"id": "n1"}
    ctx = context(FakeNode(), **params)
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


async def test_channel_load_of_a_missing_map_is_not_found(app: App) -> None:
    found = app.find_channel("notes/zzz")
    assert found is not None
    ctx = context(FakeNode(), **found[1])
    with pytest.raises(NotFound):
        await call(found[0].load, ctx, {"type": "logux/subscribe", "channel": "notes/zzz"}, {})


async def test_channel_load_none_is_not_found_but_empty_map_is_fine() -> None:
    app = App()
    maps: dict[str, Any] = {"empty": {}}
    add_sync_map(app, "notes", access=lambda *a: True, load=lambda ctx, id, *a: maps.get(id))
    for name, expected in (("empty", []), ("none", None)):
        found = app.find_channel(f"notes/{name}")
        assert found is not None
        ctx = context(FakeNode(), **found[1])
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
    node = FakeNode()
    ctx = context(node)
    action = {"type": "logux/subscribe", "channel": "notes", "filter": {"project": "p"}}
    assert await call(channel.access, ctx, action, {}) is True
    assert await call(channel.access, ctx, {**action, "filter": {"secret": 1}}, {}) is False
    predicate = await call(channel.filter, ctx, action, {})
    assert predicate({"type": "notes/created", "id": "x", "fields": {"project": "p"}}, {})
    assert not predicate({"type": "notes/created", "id": "x", "fields": {"project": "q"}}, {})
    assert not predicate({"type": "notes/created", "id": "hidden", "fields": {"project": "p"}}, {})
    await call(channel.load, ctx, action, {})
    assert calls == [("initial", {"project": "p"}, 0)]
    assert node.subscribed == [("u:c:t", "notes/a")]
    assert [(a["type"], a.get("fields"), r.get("meta")) for a, r in node.added] == [
        ("logux/subscribed", None, None),
        ("notes/changed", {"project": "p"}, {"time": 10}),
        ("notes/changed", {"title": "A"}, {"time": 20}),
    ]
    assert all(r.get("clients", ["u:c"]) == ["u:c"] for _, r in node.added)


async def test_resumed_filter_subscription_restores_item_subscriptions_only() -> None:
    # the node resumed from the log's history: `resume` runs instead of `load`
    calls: list[Any] = []
    app = filter_app(MAPS, calls)
    found = app.find_channel("notes")
    assert found is not None
    channel, node = found[0], FakeNode()
    ctx = context(node)
    action = {"type": "logux/subscribe", "channel": "notes", "since": {"id": "1 x 0", "time": 15}}
    await call(channel.filter, ctx, action, {})
    await call(channel.resume, ctx, action, {})
    assert calls == [("initial", {}, 15)]
    assert node.subscribed == [("u:c:t", "notes/a"), ("u:c:t", "notes/b")]
    assert [a["type"] for a, _ in node.added] == ["logux/subscribed", "logux/subscribed"]


async def test_filter_must_be_an_object_and_no_filter_means_everything() -> None:
    app = App()
    add_sync_map_filter(app, "notes", access=lambda *a: True, initial=lambda *a: [])
    found = app.find_channel("notes")
    assert found is not None
    ctx = context(FakeNode())
    with pytest.raises(Undo):
        await call(found[0].access, ctx, {"type": "logux/subscribe", "filter": [1]}, {})
    assert await call(found[0].filter, ctx, {"type": "logux/subscribe"}, {}) is None
    assert app.find_channel("notesx") is None and app.find_channel("notes/1") is None
