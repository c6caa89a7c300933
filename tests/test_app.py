"""The rules API without a server: patterns, lookup order, routes."""

from __future__ import annotations

import re

import pytest

from logsync.app import App, Route, compile_pattern


def allow(ctx: object, action: object, meta: object) -> bool:
    return True


def test_patterns_in_both_spellings_give_params() -> None:
    app = App()
    app.channel("user/{id}", access=allow)
    app.channel("chat/:room/thread/:thread", access=allow)
    _, params = app.find_channel("user/42") or (None, None)
    assert params == {"id": "42"}
    found = app.find_channel("chat/a/thread/b")
    assert found is not None and found[1] == {"room": "a", "thread": "b"}
    # a parameter is one path segment, and the whole name must match
    assert app.find_channel("user/42/extra") is None
    assert app.find_channel("user/") is None
    assert app.find_channel("xuser/42") is None


def test_regex_channel_params_are_its_groups() -> None:
    app = App()
    app.channel(re.compile(r"posts/(\d+)"), access=allow)
    found = app.find_channel("posts/17")
    assert found is not None and found[1] == {"1": "17"}
    assert app.find_channel("posts/x") is None


def test_first_matching_channel_wins_then_fallback() -> None:
    app = App()
    first = app.channel("a/{x}", access=allow)
    app.channel("a/{y}", access=allow)
    found = app.find_channel("a/1")
    assert found is not None and found[0] is first
    assert app.find_channel("b/1") is None
    fallback = app.other_channel(access=allow)
    found = app.find_channel("b/1")
    assert found is not None and found[0] is fallback


def test_type_lookup_exact_then_regex_then_fallback() -> None:
    app = App()
    exact = app.type("todo/add", access=allow)
    pattern = app.type(re.compile(r"todo/.*"), access=allow)
    assert app.find_type("todo/add") is exact
    assert app.find_type("todo/remove") is pattern
    assert app.find_type("other") is None
    fallback = app.other_type(access=allow)
    assert app.find_type("other") is fallback


def test_duplicate_and_reserved_types_are_refused() -> None:
    app = App()
    app.type("a", access=allow)
    with pytest.raises(ValueError, match="already defined"):
        app.type("a", access=allow)
    with pytest.raises(ValueError, match="server's own"):
        app.type("logux/subscribe", access=allow)


def test_route_reads_every_resend_form() -> None:
    assert Route.of("chat/1").channels == ["chat/1"]
    assert Route.of(["a", "b"]).channels == ["a", "b"]
    route = Route.of(
        {
            "channel": "c",
            "users": ["u1", "u2"],
            "client": "k",
            "nodes": ["n"],
            "excludeClients": ["x"],
        }
    )
    assert route == Route(["c"], ["u1", "u2"], ["k"], ["n"], ["x"])
    assert route.indexes() == ["channel:c", "user:u1", "user:u2", "client:k", "node:n"]
    assert Route.of(None) == Route()
    with pytest.raises(TypeError):
        Route.of(42)
    with pytest.raises(TypeError):
        Route.of({"users": [1]})


def test_compile_pattern_escapes_literal_parts() -> None:
    assert compile_pattern("a.b/{id}").fullmatch("a.b/1") is not None
    assert compile_pattern("a.b/{id}").fullmatch("axb/1") is None


async def test_add_needs_a_running_node() -> None:
    with pytest.raises(RuntimeError, match="not being served"):
        await App().add({"type": "x"})
