"""What the wake-up tests run on: :class:`NodeServer`, a real node (SQLite file or Redis)
serving its WebSocket and HTTP endpoints on 127.0.0.1 in the test's loop (as ``logsync serve``
does), and :class:`Sink`, a local push service / webhook receiver that records what it gets."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from logsync.broker import open_broker
from logsync.engine import ServerNode
from logsync.log import open_store
from logsync.server.http import build_web_app, http_options
from logsync.server.ws import WebSocketProtocol
from logsync.settings import Settings
from tests.wakeup.app import app

TOKEN = "secret"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class NodeServer:
    """``await NodeServer.start(store=…, **settings)``; ``url`` (http://127.0.0.1:PORT),
    ``node``; :meth:`stop`."""

    def __init__(self, node: ServerNode, runner: web.AppRunner, listener: asyncio.Server) -> None:
        self.node = node
        self.runner = runner
        self.listener = listener
        port = listener.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/"

    @classmethod
    async def start(cls, store: str, **values: Any) -> NodeServer:
        settings = Settings(store=store, host="127.0.0.1", port=0, **values)
        log = open_store(settings.store)
        node = ServerNode(app, log, open_broker(settings.broker, log), settings)
        await node.start()
        runner = web.AppRunner(build_web_app(node), **http_options(settings))
        await runner.setup()
        http = runner.server
        assert http is not None
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: WebSocketProtocol(node, http), "127.0.0.1", 0)
        return cls(node, runner, listener)

    async def stop(self) -> None:
        self.listener.close()
        await self.node.stop()
        await self.runner.cleanup()

    async def register(
        self, session: aiohttp.ClientSession, node_id: str, kind: dict[str, Any]
    ) -> str:
        """POST /v1/wakeups; the registration's id."""
        body = {"node": node_id, "token": TOKEN, **kind}
        async with session.post(f"{self.url}/v1/wakeups", json=body) as answer:
            assert answer.status == 201, await answer.text()
            registered: dict[str, str] = await answer.json()
            return registered["id"]

    async def listed(self, session: aiohttp.ClientSession, node_id: str) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get(
            f"{self.url}/v1/wakeups", params={"node": node_id}, headers=headers
        ) as answer:
            assert answer.status == 200, await answer.text()
            body: dict[str, list[dict[str, Any]]] = await answer.json()
            return body["wakeups"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Sink:
    """A local HTTP receiver: ``POST /{path}`` recorded in ``received``; ``answer`` decides the
    response (default 201)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    @classmethod
    async def start(cls) -> Sink:
        sink = cls()
        web_app = web.Application()
        web_app.router.add_post("/{path:.*}", sink._handle)
        sink.runner = web.AppRunner(web_app, access_log=None)
        await sink.runner.setup()
        site = web.TCPSite(sink.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sink.url = f"http://127.0.0.1:{port}"
        return sink

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(
            Received(request.match_info["path"], dict(request.headers), await request.read())
        )
        self.arrived.set()
        if self.answer is not None:
            return await self.answer(request)
        return web.Response(status=201, headers={"Location": f"{self.url}/message/1"})

    def paths(self) -> list[str]:
        return [r.path for r in self.received]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Return once ``count`` requests have arrived (fail after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@dataclass
class Browser:
    """A browser's push subscription, made as the browser makes it: its P-256 key pair and
    auth secret, ``subscription`` as ``PushSubscription.toJSON()``."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64u(public), "auth": b64u(self.auth)},
        }
