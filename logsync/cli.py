"""``logsync`` command line: ``logsync serve [module:app]`` and its settings; ``logsync log …``;
``logsync vapid-keys`` (a key pair for Web Push wake-ups).

Settings (``logsync.settings``) come from, in rising priority: defaults, a TOML file (``--config``
or ``LOGSYNC_CONFIG``), ``LOGSYNC_*`` environment variables (``LOGSYNC_PORT=8080``), then flags
(``--port 8080``; every setting has one).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Literal, get_args, get_origin

import orjson

# The server's own dependencies are the `server` extra (`pip install logsync` is the client only):
# without them, say so in one line instead of a traceback.
SERVER_ONLY = frozenset(
    {"pydantic_settings", "prometheus_client", "pythonjsonlogger", "redis", "pywebpush"}
)
try:
    from logsync.app import App
    from logsync.log.entry import Entry
    from logsync.logfmt import configure_logging
    from logsync.settings import ENV_PREFIX, Settings, SettingsError
except ModuleNotFoundError as missing:
    if (missing.name or "").split(".")[0] not in SERVER_ONLY:
        raise
    sys.exit(
        f"logsync: the server needs its extra ({missing.name} is missing): "
        "pip install 'logsync[server]'"
    )

# Every setting is a flag named after it (``node_id`` → ``--node-id``); these keep a short form.
SHORT_FLAGS = {"ping_ms": "--ping", "timeout_ms": "--timeout"}


def flags_of(name: str) -> list[str]:
    """The flags that set ``name``: ``--its-name``, after the short form if it has one."""
    long = "--" + name.replace("_", "-")
    return [SHORT_FLAGS[name], long] if name in SHORT_FLAGS else [long]


def _help(name: str) -> str:
    field = Settings.model_fields[name]
    default = field.default
    shown = "none" if default is None or default == "" else default
    text = f"{field.description} (default {shown}; env {ENV_PREFIX}{name.upper()})"
    return text.replace("%", "%%")  # argparse %-formats help


def _metavar(name: str) -> str | None:
    annotation = Settings.model_fields[name].annotation
    if get_origin(annotation) is Literal:
        return "{" + ",".join(get_args(annotation)) + "}"
    return "N" if annotation in (int, float) else None


def load_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Defaults < TOML (``--config`` or ``LOGSYNC_CONFIG``) < ``LOGSYNC_*`` env < flags.

    A refused value exits with one line naming the setting and where it came from.
    """
    flags = {name: getattr(args, name) for name in Settings.model_fields}
    names = {name: flags_of(name)[0] for name in Settings.model_fields}
    try:
        return Settings.load(flags, environ, config=args.config, flag_names=names)
    except SettingsError as error:
        raise SystemExit(f"logsync: {error}") from None


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


def vapid_keys_command(args: argparse.Namespace) -> None:
    """``logsync vapid-keys [--out FILE]``: a new VAPID key pair. The private key (PEM) goes to
    ``FILE`` (created with mode 0600, never overwritten) or stdout; the public
    ``applicationServerKey`` (base64url) is printed last, on its own line."""
    from logsync.wakeup import generate_vapid_keys

    pem, public_key = generate_vapid_keys()
    if args.out:
        try:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SystemExit(f"logsync: {args.out} exists; not overwriting a VAPID key") from None
        with os.fdopen(fd, "w") as file:
            file.write(pem)
        print(f"private key written to {args.out} (--vapid-private-key {args.out})")
    else:
        print(pem, end="")
    print(f"applicationServerKey {public_key}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logsync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a server node")
    serve.add_argument("app", nargs="?", help="module:attribute of your App (default: the demo)")
    serve.add_argument(
        "--config", help=f"TOML file of settings (default: env {ENV_PREFIX}CONFIG, else none)"
    )
    for name in Settings.model_fields:
        serve.add_argument(
            *flags_of(name), dest=name, default=None, metavar=_metavar(name), help=_help(name)
        )

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

    vapid = commands.add_parser(
        "vapid-keys", help="make a VAPID key pair for Web Push wake-ups (--vapid-private-key)"
    )
    vapid.add_argument(
        "--out", help="write the private key (PEM) to this new file instead of stdout"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "log":
        asyncio.run(log_command(args))
        return
    if args.command == "vapid-keys":
        vapid_keys_command(args)
        return
    settings = load_settings(args, dict(os.environ))
    if settings.vapid_private_key:
        from logsync.wakeup import VapidKey

        try:
            VapidKey.load(settings.vapid_private_key, settings.vapid_subject)
        except ValueError as error:
            raise SystemExit(f"logsync: {error}") from None
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
