"""aiohttp wiring: the WebSocket endpoint, health, and running a node until a signal stops it."""

from logsync.server.http import build_web_app, serve

__all__ = ["build_web_app", "serve"]
