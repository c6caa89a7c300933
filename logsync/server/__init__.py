"""The transports, thin: ``ws`` (one asyncio protocol per socket over the pure
:mod:`logsync.websocket` protocol), ``connection`` (the WebSocket :class:`~logsync.engine.Peer`),
``http`` (plain HTTP through aiohttp: ``/health``, ``/metrics``; :func:`serve` runs a node until a
signal stops it)."""

from logsync.server.http import build_web_app, serve

__all__ = ["build_web_app", "serve"]
