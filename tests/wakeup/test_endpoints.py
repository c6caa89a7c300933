"""The registration endpoints on a real node: register, list, delete; the same endpoint gives
the same id; credentials (401, the brute-force lock), malformed bodies (400), the per-client
limit, Web Push off (404/400), and registrations surviving a restart (SQLite file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from logsync.wakeup import generate_vapid_keys
from tests.wakeup.support import TOKEN, Browser, NodeServer


@pytest.fixture
async def vapid_file(tmp_path: Path) -> Path:
    path = tmp_path / "vapid.pem"
    path.write_text(generate_vapid_keys()[0])
    return path


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(session: aiohttp.ClientSession, url: str, body: Any, **kw: Any) -> tuple[int, Any]:
    async with session.post(f"{url}/v1/wakeups", json=body, **kw) as answer:
        assert answer.headers["Cache-Control"] == "no-store"
        return answer.status, await answer.json()


async def test_register_list_delete_and_survive_a_restart(
    tmp_path: Path, vapid_file: Path, session: aiohttp.ClientSession
) -> None:
    store = f"sqlite:///{tmp_path}/log.db"
    server = await NodeServer.start(store, vapid_private_key=str(vapid_file))
    browser = Browser("https://push.example.net/send/abc")
    try:
        push_id = await server.register(session, "10:phone", {"webpush": browser.subscription})
        # the token may come as a bearer header; the same endpoint again gives the same id
        status, body = await post(
            session,
            server.url,
            {"node": "10:phone:tab", "webpush": browser.subscription},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert (status, body) == (201, {"id": push_id})
        hook_id = await server.register(
            session, "10:phone", {"webhook": {"url": "http://gateway.internal/wake"}}
        )
        assert hook_id != push_id
        listed = await server.listed(session, "10:phone")
        assert sorted(listed, key=lambda r: r["kind"]) == [
            {"id": hook_id, "kind": "webhook", "endpoint": "http://gateway.internal/wake"},
            {"id": push_id, "kind": "webpush", "endpoint": browser.endpoint},
        ]
        assert await server.listed(session, "10:laptop") == []  # per client
    finally:
        await server.stop()

    server = await NodeServer.start(store, vapid_private_key=str(vapid_file))
    try:
        assert len(await server.listed(session, "10:phone")) == 2
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        url = f"{server.url}/v1/wakeups/{hook_id}"
        async with session.delete(url, params={"node": "10:phone"}, headers=bearer) as answer:
            assert answer.status == 204
        async with session.delete(url, params={"node": "10:phone"}, headers=bearer) as answer:
            assert answer.status == 404
        assert [r["id"] for r in await server.listed(session, "10:phone")] == [push_id]
        async with session.delete(
            f"{server.url}/v1/wakeups/{push_id}", params={"node": "10:phone"}
        ) as answer:
            assert answer.status == 401  # no token
        assert [r["id"] for r in await server.listed(session, "10:phone")] == [push_id]
    finally:
        await server.stop()


async def test_refused_credentials_and_the_lock(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = await NodeServer.start(f"sqlite:///{tmp_path}/log.db", bruteforce_failures=3)
    hook = {"webhook": {"url": "https://example.com/wake"}}
    try:
        for node in ("server:x", "server"):  # reserved ids, whatever the token
            status, body = await post(session, server.url, {"node": node, "token": TOKEN, **hook})
            assert (status, body["error"]) == (401, "wrong-credentials")
        status, _ = await post(session, server.url, {"node": "1:a", "token": "nope", **hook})
        assert status == 401
        # three failures from this address: locked, even with the right token
        status, _ = await post(session, server.url, {"node": "1:a", "token": TOKEN, **hook})
        assert status == 401
        async with session.get(
            f"{server.url}/v1/wakeups",
            params={"node": "1:a"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as answer:
            assert answer.status == 401
        assert server.node.metrics.auth_refused == 5
        assert await server.node.wakeups.book.registrations("1:a") == []
    finally:
        await server.stop()


BAD_BODIES: list[tuple[Any, str]] = [
    ({"node": "2:a", "token": TOKEN}, "exactly one of webpush and webhook"),
    (
        {"node": "2:a", "token": TOKEN, "webhook": {"url": "ftp://example.com/x"}},
        "http:// or https://",
    ),
    ({"node": "2:a", "token": TOKEN, "webhook": {"url": "https:///nohost"}}, "http:// or https://"),
    (
        {"node": "2:a", "token": TOKEN, "webhook": {"url": "https://e.com/" + "x" * 3000}},
        "at most 2048",
    ),
    ({"node": "2 a", "token": TOKEN, "webhook": {"url": "https://e.com/"}}, "node id"),
    ({"node": "2:a", "token": TOKEN, "webhook": {"url": "https://e.com/"}, "x": 1}, "Extra"),
    (
        {
            "node": "2:a",
            "token": TOKEN,
            "webpush": {"endpoint": "https://e.com/", "keys": {"p256dh": "AAAA", "auth": "AAAA"}},
        },
        "P-256",
    ),
    ([1, 2], "should be an object"),
]


@pytest.mark.parametrize(("body", "reason"), BAD_BODIES)
async def test_malformed_bodies_are_400_with_the_reason(
    tmp_path: Path, vapid_file: Path, session: aiohttp.ClientSession, body: Any, reason: str
) -> None:
    server = await NodeServer.start(
        f"sqlite:///{tmp_path}/log.db", vapid_private_key=str(vapid_file)
    )
    try:
        status, answer = await post(session, server.url, body)
        assert status == 400
        assert answer["error"] == "bad-request" and reason in answer["reason"], answer
        async with session.post(f"{server.url}/v1/wakeups", data=b"{not json") as raw:
            assert raw.status == 400
        async with session.post(f"{server.url}/v1/wakeups", data=b"x" * 20_000) as raw:
            assert raw.status == 413  # over preauth_frame_bytes
        assert await server.node.wakeups.book.registrations("2:a") == []
    finally:
        await server.stop()


async def test_registrations_per_client_are_bounded(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = await NodeServer.start(f"sqlite:///{tmp_path}/log.db", wakeups_per_client=2)
    try:
        first = await server.register(session, "3:a", {"webhook": {"url": "https://e.com/1"}})
        await server.register(session, "3:a", {"webhook": {"url": "https://e.com/2"}})
        status, body = await post(
            session,
            server.url,
            {"node": "3:a", "token": TOKEN, "webhook": {"url": "https://e.com/3"}},
        )
        assert (status, body["error"], body["limit"]) == (400, "limit", 2)
        # the same endpoint again is not a new one; another client has its own
        assert (
            await server.register(session, "3:a", {"webhook": {"url": "https://e.com/1"}}) == first
        )
        await server.register(session, "3:b", {"webhook": {"url": "https://e.com/3"}})
        assert len(await server.listed(session, "3:a")) == 2
    finally:
        await server.stop()


async def test_webhooks_only_to_the_allowed_prefixes(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = await NodeServer.start(
        f"sqlite:///{tmp_path}/log.db",
        wakeup_webhook_prefixes="https://gateway.example/, http://10.0.0.9:8088/push",
    )
    try:
        await server.register(session, "5:a", {"webhook": {"url": "https://gateway.example/w"}})
        await server.register(session, "5:a", {"webhook": {"url": "http://10.0.0.9:8088/push/1"}})
        for url in ("http://169.254.169.254/latest", "https://gateway.example.evil/"):
            status, body = await post(
                session, server.url, {"node": "5:a", "token": TOKEN, "webhook": {"url": url}}
            )
            assert (status, body["reason"]) == (400, "this webhook URL is not allowed here")
        assert len(await server.listed(session, "5:a")) == 2
    finally:
        await server.stop()


async def test_web_push_off_without_a_vapid_key(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = await NodeServer.start(f"sqlite:///{tmp_path}/log.db")
    try:
        async with session.get(f"{server.url}/v1/vapid") as answer:
            assert answer.status == 404
        browser = Browser("https://push.example.net/send/abc")
        status, body = await post(
            session, server.url, {"node": "4:a", "token": TOKEN, "webpush": browser.subscription}
        )
        assert status == 400 and "Web Push is off" in body["reason"]
        async with session.get(f"{server.url}/v1/openapi.json") as answer:
            document = await answer.json()
        assert {"/v1/vapid", "/v1/wakeups", "/v1/wakeups/{id}"} <= set(document["paths"])
        assert "WakeupRequest" in document["components"]["schemas"]
    finally:
        await server.stop()
