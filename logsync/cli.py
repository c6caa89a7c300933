"""``logsync`` command line: ``logsync serve [module:app]`` and its settings; ``logsync log …``.

Settings come from, in rising priority: defaults, a TOML file (``--config`` or ``LOGSYNC_CONFIG``),
``LOGSYNC_*`` environment variables (``LOGSYNC_PORT=8080``), then flags.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import os
import sys
import time
import tomllib
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson

from logsync.app import App
from logsync.log.entry import Entry
from logsync.logfmt import configure_logging
from logsync.settings import LIMITS, Settings

# flag → (settings field, help)
FLAGS: dict[str, tuple[str, str]] = {
    "--host": ("host", "address to listen on (default 127.0.0.1)"),
    "--port": ("port", "port to listen on (default 31337; 0 picks a free one)"),
    "--env": ("env", "production or development (debug messages, env header)"),
    "--store": ("store", "log store URL (default sqlite:///logsync.db; memory://, redis://…)"),
    "--broker": ("broker", "local:// or redis:// (default: redis:// with a redis store)"),
    "--node-id": ("node_id", "this node's id (server:<id>); random by default"),
    "--ping": ("ping_ms", "ms of silence before the server pings a client (default 20000)"),
    "--timeout": ("timeout_ms", "ms to wait for an answer before closing (default 70000)"),
    "--max-frame-bytes": ("max_frame_bytes", "largest accepted WebSocket frame (default 1 MiB)"),
    "--preauth-frame-bytes": ("preauth_frame_bytes", "largest frame before `connect` (16 KiB)"),
    "--preauth-held-messages": ("preauth_held_messages", "messages held before auth (100)"),
    "--preauth-held-bytes": ("preauth_held_bytes", "bytes of messages held before auth (64 KiB)"),
    "--connect-timeout-ms": ("connect_timeout_ms", "ms a socket has to send `connect` (5000)"),
    "--inbound-max-actions": ("inbound_max_actions", "unanswered actions per connection (1000)"),
    "--inbound-max-bytes": ("inbound_max_bytes", "unanswered frame bytes per connection (1 MiB)"),
    "--max-subscriptions": ("max_subscriptions", "channels per connection (default 1000)"),
    "--max-channel-length": ("max_channel_length", "longest channel name (default 512)"),
    "--log-value-chars": ("log_value_chars", "client-sent text kept in a log line (200)"),
    "--head-timeout-ms": ("head_timeout_ms", "ms for an HTTP request head (default 10000)"),
    "--http-keepalive-ms": ("http_keepalive_ms", "idle kept-alive HTTP connection (15000)"),
    "--bruteforce-failures": ("bruteforce_failures", "refused logins that lock an address (3)"),
    "--bruteforce-window-ms": ("bruteforce_window_ms", "brute-force window and lock (3000)"),
    "--allowed-origins": ("allowed_origins", "WebSocket origins allowed (comma-separated, *)"),
    "--metrics-listen": ("metrics_listen", "host:port serving /metrics instead of the port"),
    "--metrics-token": ("metrics_token", "bearer token /metrics requires"),
    "--log-format": ("log_format", "text or json log lines (default text)"),
    "--max-future-ms": ("max_future_ms", "how far ahead of the server clock meta.time may be"),
    "--history-max-age-ms": ("history_max_age_ms", "trim history older than this (0: keep)"),
    "--history-keep-last": ("history_keep_last", "actions each channel keeps (0: no limit)"),
    "--id-retention-ms": ("id_retention_ms", "how long duplicate ids are refused (0: forever)"),
    "--handshake-rate": ("handshake_rate", "handshakes admitted per second (default 500)"),
    "--handshake-burst": ("handshake_burst", "handshakes admitted at once (default 100)"),
    "--handshake-queue": ("handshake_queue", "handshakes waiting before refusals (default 5000)"),
    "--replay-concurrency": ("replay_concurrency", "log chunks replayed at once (default 32)"),
    "--trusted-proxies": (
        "trusted_proxies",
        "load balancer addresses whose X-Forwarded-For is used",
    ),
    "--tls-cert": ("tls_cert", "PEM certificate file (with --tls-key: serve wss://)"),
    "--tls-key": ("tls_key", "PEM private key file"),
    "--log-level": ("log_level", "debug, info, warning or error (default info)"),
}


def load_settings(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Merge defaults, TOML, ``LOGSYNC_*`` env and flags into :class:`Settings`."""
    settings = Settings()
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    config = args.config or environ.get("LOGSYNC_CONFIG")
    if config:
        with open(config, "rb") as file:
            values.update(tomllib.load(file))
    for name in fields:
        env = environ.get("LOGSYNC_" + name.upper())
        if env is not None:
            values[name] = env
    for _, (name, _) in FLAGS.items():
        flag = getattr(args, name)
        if flag is not None:
            values[name] = flag
    for name, value in values.items():
        if name not in fields:
            raise SystemExit(f"unknown setting {name!r}")
        default = getattr(settings, name)
        if isinstance(default, float):
            try:
                value = float(value)
            except ValueError:
                raise SystemExit(f"setting {name} must be a number, not {value!r}") from None
        elif isinstance(default, int) and not isinstance(default, bool):
            try:
                value = int(value)
            except ValueError:
                raise SystemExit(f"setting {name} must be a whole number, not {value!r}") from None
        setattr(settings, name, value)
    if settings.env not in ("production", "development"):
        raise SystemExit("env must be production or development")
    if settings.log_format not in ("text", "json"):
        raise SystemExit("log_format must be text or json")
    for name in LIMITS:
        if getattr(settings, name) <= 0:
            raise SystemExit(f"setting {name} must be positive, not {getattr(settings, name)!r}")
    return settings


def load_app(spec: str | None) -> App:
    """Import ``module:attribute`` (attribute defaults to ``app``); the demo app when None."""
    if not spec:
        spec = "logsync.demo:app"
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, App):
        raise SystemExit(f"{spec} is not a logsync App")
    return app


async def log_command(args: argparse.Namespace) -> None:
    """``logsync log stats|tail|trim``: look into a store or trim it (the server may be running)."""
    from logsync.log import open_store

    store = open_store(args.store)
    try:
        if args.log_command == "stats":
            stats = await store.stats()
            print(
                f"head {stats.head}\nentries {stats.entries}\nids {stats.ids}\nindexes {stats.indexes}"
            )
        elif args.log_command == "tail":
            newest: deque[Entry] = deque(maxlen=args.n)
            cursor = await store.horizon(args.index)
            while True:
                result = await store.read([args.index], cursor, 1000)
                newest.extend(result.entries)
                cursor = result.next_cursor
                if not result.more:
                    break
            for entry in newest:
                line = {
                    "added": entry.added,
                    "id": entry.id,
                    "time": entry.time,
                    "status": entry.status,
                }
                print(orjson.dumps({**line, "action": entry.action}).decode())
        else:
            now = int(time.time() * 1000)
            removed = await store.trim(
                index_prefix=args.index_prefix,
                before_time_ms=now - args.max_age_ms if args.max_age_ms else None,
                keep_last=args.keep_last,
            )
            if args.forget_ids_older_ms:
                removed += await store.forget_ids(now - args.forget_ids_older_ms)
            print(f"removed {removed}")
    finally:
        await store.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logsync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a server node")
    serve.add_argument("app", nargs="?", help="module:attribute of your App (default: the demo)")
    serve.add_argument("--config", help="TOML settings file")
    for flag, (name, text) in FLAGS.items():
        serve.add_argument(flag, dest=name, default=None, help=text)

    log = commands.add_parser("log", help="inspect or trim a log store")
    log_commands = log.add_subparsers(dest="log_command", required=True)
    store_help = "store URL (default sqlite:///logsync.db)"
    stats = log_commands.add_parser("stats", help="head, entry, id and index counts")
    tail = log_commands.add_parser("tail", help="the newest entries of one index, as JSON lines")
    tail.add_argument("index", help="an index: channel:NAME, user:ID, client:ID or node:ID")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    trim = log_commands.add_parser("trim", help="remove old history now")
    trim.add_argument("--index-prefix", default="", help="only indexes starting with this")
    trim.add_argument("--max-age-ms", type=int, default=0, help="remove filings older than this")
    trim.add_argument("--keep-last", type=int, default=None, help="filings each index keeps")
    trim.add_argument("--forget-ids-older-ms", type=int, default=0, help="end dedupe for old ids")
    for command in (stats, tail, trim):
        command.add_argument("--store", default="sqlite:///logsync.db", help=store_help)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "log":
        asyncio.run(log_command(args))
        return
    settings = load_settings(args, dict(os.environ))
    configure_logging(settings)
    app = load_app(args.app)
    from logsync.server import serve

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(app, settings))


if __name__ == "__main__":
    main()
