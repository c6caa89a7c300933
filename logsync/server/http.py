"""The listening socket and the plain HTTP endpoints: :func:`serve` runs a node; WebSocket
upgrades are served by :class:`~logsync.server.ws.WebSocketProtocol`, every other request by
the aiohttp application of :func:`build_web_app` (``/health``, ``/health/live``, ``/metrics``,
a hello page)."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl

from aiohttp import web

from logsync.app import App
from logsync.broker import open_broker
from logsync.log import open_store
from logsync.metrics import render
from logsync.node import ServerNode
from logsync.server.ws import WebSocketProtocol
from logsync.settings import Settings

logger = logging.getLogger("logsync.server")

NODE_KEY = web.AppKey("node", ServerNode)
# Pending TCP connections the kernel keeps (capped by net.core.somaxconn). At 128, a reconnect
# storm's connects overflow it and wait for SYN retransmits (1 s, then 3 s).
LISTEN_BACKLOG = 4096


def build_web_app(node: ServerNode) -> web.Application:
    """The aiohttp application for ``node``'s plain HTTP requests. (WebSocket upgrades, on every
    path like Logux, never reach it: the socket's first request is read by WebSocketProtocol.)"""
    web_app = web.Application()
    web_app[NODE_KEY] = node

    async def root(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            # A later request on a kept-alive HTTP connection; browsers and proxies open a
            # new connection for each WebSocket.
            return web.Response(status=400, text="open a new connection for a WebSocket upgrade\n")
        return web.Response(text="logsync: a Logux protocol v5 server\n")

    async def health(request: web.Request) -> web.Response:
        if node.stopping:
            return web.Response(status=503, text="stopping\n")
        if not node.healthy:
            return web.Response(status=503, text="log store or broker unavailable\n")
        return web.Response(text="OK\n")

    async def alive(request: web.Request) -> web.Response:
        # Liveness: the process answers. Readiness (`/health`) also needs the store and broker.
        return web.Response(text="OK\n")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=render(node), content_type="text/plain", charset="utf-8")

    web_app.router.add_get("/health", health)
    web_app.router.add_get("/metrics", metrics)
    web_app.router.add_get("/health/live", alive)
    web_app.router.add_get("/{tail:.*}", root)
    return web_app


async def serve(app: App, settings: Settings) -> None:
    """Run a node for ``app`` until SIGINT or SIGTERM, then shut down gracefully."""
    store = open_store(settings.store)
    broker = open_broker(settings.broker, store)
    node = ServerNode(app, store, broker, settings)
    await node.start()
    runner = web.AppRunner(build_web_app(node), handle_signals=False, access_log=None)
    await runner.setup()
    ssl_context = None
    if settings.tls_cert or settings.tls_key:
        if not (settings.tls_cert and settings.tls_key):
            raise SystemExit("TLS needs both --tls-cert and --tls-key")
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    loop = asyncio.get_running_loop()
    http = runner.server
    assert http is not None
    listener = await loop.create_server(
        lambda: WebSocketProtocol(node, http),
        settings.host,
        settings.port,
        ssl=ssl_context,
        backlog=LISTEN_BACKLOG,
    )
    port = listener.sockets[0].getsockname()[1] if listener.sockets else settings.port
    scheme = "wss" if ssl_context else "ws"
    # Tests and launchers wait for this exact line.
    print(
        f"logsync listening on {scheme}://{settings.host}:{port}/ node {node.node_id}", flush=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        logger.info("shutting down")
        listener.close()
        await node.stop()
        await runner.cleanup()
