"""The listening socket and the plain HTTP endpoints: :func:`serve` runs a node; WebSocket
upgrades are served by :class:`~logsync.server.ws.WebSocketProtocol`, every other request by
the aiohttp application of :func:`build_web_app` (``/health``, ``/health/live``, ``/metrics``,
the pull API of :mod:`logsync.server.pull`, and at ``/`` the demo chat's page when the app is
:mod:`logsync.demo`, else a hello line).

``/metrics`` may be served on its own address instead (``metrics_listen``, e.g. an internal
interface; the public port then answers 404 for it) and may require a bearer token
(``metrics_token``). A kept-alive plain HTTP connection is closed once idle for
``http_keepalive_ms``: aiohttp's keep-alive timer, which also closes a connection whose next
request head is still incomplete by then (its first head is bounded by ``head_timeout_ms``,
read by the WebSocket protocol before the socket is handed over)."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import signal
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from logsync import demo
from logsync.app import App
from logsync.broker import open_broker
from logsync.compiled import HOT_MODULES, compiled_modules
from logsync.engine import ServerNode
from logsync.log import open_store
from logsync.metrics import render
from logsync.server.pull import add_pull_routes
from logsync.server.wakeups import add_wakeup_routes
from logsync.server.ws import WebSocketProtocol
from logsync.settings import Settings

logger = logging.getLogger("logsync.server")

NODE_KEY = web.AppKey("node", ServerNode)
# Pending TCP connections the kernel keeps (capped by net.core.somaxconn). At 128, a reconnect
# storm's connects overflow it and wait for SYN retransmits (1 s, then 3 s).
LISTEN_BACKLOG = 4096


def metrics_handler(node: ServerNode) -> Any:
    """The ``/metrics`` handler: Prometheus text, behind ``metrics_token`` when it is set."""
    token = node.settings.metrics_token.encode()

    async def metrics(request: web.Request) -> web.Response:
        if token:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, b"Bearer " + token):
                return web.Response(
                    status=401,
                    text="/metrics needs Authorization: Bearer <metrics_token>\n",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return web.Response(text=render(node), content_type="text/plain", charset="utf-8")

    return metrics


# The demo chat's page, and the JS client's ES modules (clients/js/src, in the package through
# the logsync/static/js link and pyproject's package-data).
STATIC = Path(__file__).resolve().parent.parent / "static"
CLIENT_JS = STATIC / "js"
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
}


def static_file(folder: Path, request: web.Request | str) -> web.StreamResponse:
    """A file of ``folder`` by name (no subfolders, known kinds only), else 404."""
    name = request if isinstance(request, str) else request.match_info["name"]
    kind = CONTENT_TYPES.get(Path(name).suffix)
    path = folder / name
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        return web.Response(status=404, text="Not Found\n")
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "no-cache"})


def static_handler(folder: Path, name: str | None = None) -> Any:
    """The handler serving ``folder``'s files by ``{name}`` (or always the file ``name``)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return static_file(folder, request if name is None else name)

    return handler


def build_web_app(node: ServerNode) -> web.Application:
    """The aiohttp application for ``node``'s plain HTTP requests. (WebSocket upgrades, on every
    path like Logux, never reach it: the socket's first request is read by WebSocketProtocol.)
    ``/metrics`` is here unless ``metrics_listen`` serves it (:func:`build_metrics_app`)."""
    web_app = web.Application()
    web_app[NODE_KEY] = node

    async def root(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            # A later request on a kept-alive HTTP connection; browsers and proxies open a
            # new connection for each WebSocket.
            return web.Response(status=400, text="open a new connection for a WebSocket upgrade\n")
        if request.path == "/" and node.app is demo.app:
            return static_file(STATIC, "index.html")
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

    async def not_here(request: web.Request) -> web.Response:
        return web.Response(status=404, text="Not Found\n")

    web_app.router.add_get("/health", health)
    add_pull_routes(web_app, node)  # POST /v1/sync, GET /v1/openapi.json
    add_wakeup_routes(web_app, node)  # /v1/vapid, /v1/wakeups (after the pull routes)
    if node.settings.metrics_listen:
        web_app.router.add_route("*", "/metrics", not_here)
    else:
        web_app.router.add_get("/metrics", metrics_handler(node))
    web_app.router.add_get("/health/live", alive)
    # The demo chat's page (logsync/static) and the JS client modules it imports.
    web_app.router.add_get("/static/{name}", static_handler(STATIC))
    # The page's service worker, at the root so that its scope is the whole site.
    web_app.router.add_get("/sw.js", static_handler(STATIC, "sw.js"))
    web_app.router.add_get("/clients/js/{name}", static_handler(CLIENT_JS))
    web_app.router.add_get("/{tail:.*}", root)
    return web_app


def build_metrics_app(node: ServerNode) -> web.Application:
    """The application on ``metrics_listen``: ``/metrics`` only."""
    web_app = web.Application()
    web_app[NODE_KEY] = node
    web_app.router.add_get("/metrics", metrics_handler(node))
    return web_app


def http_options(settings: Settings) -> dict[str, Any]:
    """aiohttp's per-connection options: an idle kept-alive connection (or one whose next
    request head is incomplete) is closed after ``http_keepalive_ms``; the unread rest of a
    request body is drained for at most ``head_timeout_ms`` before the connection is closed; a
    request whose client went away is cancelled (a long-poll of ``/v1/sync`` ends then, not at
    its timeout)."""
    return {
        "keepalive_timeout": settings.http_keepalive_ms / 1000,
        "lingering_time": settings.head_timeout_ms / 1000,
        "handler_cancellation": True,
        "handle_signals": False,
        "access_log": None,
    }


def parse_listen(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as ``(host, port)``."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit():
        raise SystemExit(f"--metrics-listen wants host:port, not {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def freeze_startup() -> None:
    """Move what start-up made (modules, the app, the node: ~75,000 objects, there for the
    life of the process) out of the garbage collector's passes, which otherwise walk all of it
    again and again as connections arrive (a tenth of a handshake's CPU: ``python -m
    loadtest.microbench --handshakes``). Call once the node has started."""
    gc.collect()
    gc.freeze()


async def serve(app: App, settings: Settings) -> None:
    """Run a node for ``app`` until SIGINT or SIGTERM, then shut down gracefully."""
    store = open_store(settings.store)
    broker = open_broker(settings.broker, store)
    node = ServerNode(app, store, broker, settings)
    await node.start()
    runner = web.AppRunner(build_web_app(node), **http_options(settings))
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
    metrics_runner: web.AppRunner | None = None
    metrics_listener: asyncio.Server | None = None
    if settings.metrics_listen:
        metrics_host, metrics_port = parse_listen(settings.metrics_listen)
        metrics_runner = web.AppRunner(build_metrics_app(node), **http_options(settings))
        await metrics_runner.setup()
        assert metrics_runner.server is not None
        metrics_listener = await loop.create_server(
            metrics_runner.server, metrics_host, metrics_port
        )
        if metrics_listener.sockets:
            metrics_port = metrics_listener.sockets[0].getsockname()[1]
        shown = f"[{metrics_host}]" if ":" in metrics_host else metrics_host
        # Printed before the listening line, so it is there once that line is.
        print(f"logsync metrics on http://{shown}:{metrics_port}/metrics", flush=True)
    compiled = sum(compiled_modules().values())
    logger.info("hot modules compiled by mypyc: %d of %d", compiled, len(HOT_MODULES))
    freeze_startup()
    # Tests and launchers wait for this exact line.
    print(
        f"logsync listening on {scheme}://{settings.host}:{port}/ node {node.node_id}", flush=True
    )
    if app is demo.app:
        shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
        print(f"the demo chat: open http{scheme[2:]}://{shown_host}:{port}/", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        logger.info("shutting down")
        listener.close()
        if metrics_listener is not None:
            metrics_listener.close()
        await node.stop()
        await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
