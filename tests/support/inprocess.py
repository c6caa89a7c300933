"""A :class:`~logsync.engine.ServerNode` in the test's own event loop, serving WebSocket on
127.0.0.1: for tests that reach into the node (its budget, slots, store) while real sockets talk
to it. ``async with serving(node, settings) as url:`` starts the node, then stops it and its
listener on the way out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from logsync.engine import ServerNode
from logsync.server.http import build_web_app, http_options
from logsync.server.ws import WebSocketProtocol
from logsync.settings import Settings


@contextlib.asynccontextmanager
async def serving(node: ServerNode, settings: Settings) -> AsyncIterator[str]:
    """Start ``node`` and listen on a free port; the ``ws://`` URL."""
    await node.start()
    runner = web.AppRunner(build_web_app(node), **http_options(settings))
    await runner.setup()
    assert runner.server is not None
    http = runner.server
    listener = await asyncio.get_running_loop().create_server(
        lambda: WebSocketProtocol(node, http), "127.0.0.1", 0
    )
    try:
        yield f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
    finally:
        listener.close()
        await node.stop()
        await runner.cleanup()
