"""Web Push end to end with real crypto and real HTTP: a node on a SQLite file wakes a browser
subscription through a local push service that checks the VAPID JWT (signature against the
server's public key, ``aud``, ``exp``, ``sub``), decrypts the body as the browser would
(``http_ece`` with the subscription's private key and auth secret) and checks ``TTL``/``Topic``;
answered 410, the registration is removed."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import aiohttp
import http_ece
import orjson
from aiohttp import web
from py_vapid import Vapid02

from logsync.wakeup import WAKE_PAYLOAD, generate_vapid_keys
from tests.wakeup.support import Browser, NodeServer, Sink

INTERVAL_MS = 300


def jwt_claims(authorization: str) -> dict[str, object]:
    token = authorization.split("t=", 1)[1].split(",", 1)[0]
    payload = token.split(".")[1]
    claims: dict[str, object] = orjson.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


async def test_a_wake_up_is_a_valid_encrypted_web_push_and_410_removes_it(tmp_path: Path) -> None:
    pem, public_key = generate_vapid_keys()
    key_file = tmp_path / "vapid.pem"
    key_file.write_text(pem)
    sink = await Sink.start()
    server = await NodeServer.start(
        f"sqlite:///{tmp_path}/log.db",
        vapid_private_key=str(key_file),
        vapid_subject="mailto:ops@example.com",
        wakeup_interval_ms=INTERVAL_MS,
        wakeup_ttl_s=600,
    )
    browser = Browser(f"{sink.url}/push/abc")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/v1/vapid") as answer:
                assert answer.status == 200
                assert (await answer.json()) == {"publicKey": public_key}
            await server.register(session, "10:phone", {"webpush": browser.subscription})

            await server.node.add({"type": "hello"}, users=["10"])
            await server.node.wakeups.idle()
            assert sink.paths() == ["push/abc"]
            pushed = sink.received[0]
            headers = {k.lower(): v for k, v in pushed.headers.items()}
            assert headers["ttl"] == "600"
            assert headers["topic"] == "logsync"
            assert headers["urgency"] == "normal"
            assert headers["content-encoding"] == "aes128gcm"
            authorization = headers["authorization"]
            assert authorization.startswith("vapid t=")
            assert authorization.endswith(f",k={public_key}")
            assert Vapid02.verify(authorization)  # the ES256 signature, against k
            claims = jwt_claims(authorization)
            assert claims["aud"] == sink.url
            assert claims["sub"] == "mailto:ops@example.com"
            assert time.time() < float(claims["exp"]) <= time.time() + 24 * 3600  # type: ignore[arg-type]
            # the browser's side: the RFC 8188 header, then decrypt with its own keys
            assert int.from_bytes(pushed.body[16:20], "big") == 4096 and pushed.body[20] == 65
            plain = http_ece.decrypt(
                pushed.body,
                private_key=browser.private_key,
                auth_secret=browser.auth,
                version="aes128gcm",
            )
            assert plain == WAKE_PAYLOAD
            assert orjson.loads(plain) == {"type": "logsync/wake"}

            # the subscription expires: the next wake-up is answered 410 and removes it
            async def gone(request: web.Request) -> web.Response:
                return web.Response(status=410)

            sink.answer = gone
            await asyncio.sleep(INTERVAL_MS / 1000)  # the coalescing interval has to pass
            await server.node.add({"type": "hello"}, users=["10"])
            await server.node.wakeups.idle()
            assert sink.paths() == ["push/abc", "push/abc"]
            assert await server.listed(session, "10:phone") == []
            metrics = server.node.metrics.wakeups
            assert metrics[("webpush", "sent")] == 1 and metrics[("webpush", "gone")] == 1

            # and nothing is sent to it any more
            await asyncio.sleep(INTERVAL_MS / 1000)
            await server.node.add({"type": "hello"}, users=["10"])
            await server.node.wakeups.idle()
            assert len(sink.received) == 2
    finally:
        await server.stop()
        await sink.stop()
