"""Wake-ups sent per second: a real node (in this process, SQLite file or memory store) with
``--clients`` registered clients, offline, woken by entries addressed to their users (100 users
per entry), against a local sink in its own process that answers every request 201 — a webhook
receiver, or a Web Push service (the node then encrypts and signs each message for real).

    python -m loadtest.wakeups --kind webhook --clients 2000
    python -m loadtest.wakeups --kind webpush --clients 2000 --store memory

Printed: the wake-ups the sink received per second, from the first append to the last request
received (the decision — registrations, presence, the coalescing claim — and the sending), and
the node process's CPU per wake-up. 127.0.0.1 only; bounded by ``--clients`` and ``--seconds``;
the sink it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from loadtest.servers import ROOT
from logsync.app import App
from logsync.broker import open_broker
from logsync.engine import ServerNode
from logsync.log import open_store
from logsync.settings import Settings
from logsync.wakeup import WebhookTarget, WebPushSubscription, generate_vapid_keys
from logsync.wakeup.registration import b64url

USERS_PER_ENTRY = 100


# -- the sink (its own process) -------------------------------------------------------------


async def run_sink() -> None:
    """Answer every POST 201; ``GET /count`` → how many and when the last one came (epoch s)."""
    state = {"count": 0, "last": 0.0}

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        state["count"] += 1
        state["last"] = time.time()
        return web.Response(status=201)

    async def count(request: web.Request) -> web.Response:
        return web.json_response(state)

    web_app = web.Application()
    web_app.router.add_get("/count", count)
    web_app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"sink on {port}", flush=True)
    await asyncio.Event().wait()


def start_sink() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.wakeups", "--sink"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("sink on "):
        process.kill()
        raise RuntimeError(f"the sink did not start: {line!r}")
    return process, f"http://127.0.0.1:{int(line.split()[2])}"


# -- the node ---------------------------------------------------------------------------------


def subscription(endpoint: str) -> WebPushSubscription:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return WebPushSubscription.model_validate(
        {"endpoint": endpoint, "keys": {"p256dh": b64url(raw), "auth": b64url(os.urandom(16))}}
    )


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    kind: str, clients: int, store: str, concurrency: int, seconds: float
) -> dict[str, Any]:
    sink, sink_url = start_sink()
    tmp = tempfile.TemporaryDirectory(prefix="logsync-wakeups-")
    try:
        values: dict[str, Any] = {
            "store": f"sqlite:///{tmp.name}/log.db" if store == "sqlite" else "memory://",
            "wakeup_queue": clients,
            "wakeup_concurrency": concurrency,
            "wakeup_interval_ms": 3_600_000,
            "log_level": "warning",
        }
        if kind == "webpush":
            key_file = f"{tmp.name}/vapid.pem"
            with open(key_file, "w") as file:
                file.write(generate_vapid_keys()[0])
            values["vapid_private_key"] = key_file
        settings = Settings(**values)
        log = open_store(settings.store)
        node = ServerNode(App(), log, open_broker(settings.broker, log), settings)
        await node.start()
        try:
            users = [f"u{n}" for n in range(clients)]
            for n, user in enumerate(users):
                if kind == "webpush":
                    await node.wakeups.book.register(
                        f"{user}:c", webpush=subscription(f"{sink_url}/push/{n}")
                    )
                else:
                    target = WebhookTarget(url=f"{sink_url}/hook/{n}")
                    await node.wakeups.book.register(f"{user}:c", webhook=target.url)
            cpu_before, started = cpu_s(), time.time()
            for start in range(0, clients, USERS_PER_ENTRY):
                await node.add({"type": "note"}, users=users[start : start + USERS_PER_ENTRY])
            appended = time.time() - started
            await asyncio.wait_for(node.wakeups.idle(), seconds)
            cpu = cpu_s() - cpu_before
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{sink_url}/count") as answer,
            ):
                state = await answer.json()
            results = node.metrics.wakeups
        finally:
            await node.stop()
    finally:
        sink.terminate()
        sink.wait(10)
        tmp.cleanup()
    elapsed = max(state["last"] - started, 1e-9)
    return {
        "kind": kind,
        "store": store,
        "clients": clients,
        "concurrency": concurrency,
        "received": state["count"],
        "sent": results.get((kind, "sent"), 0),
        "failed": results.get((kind, "failed"), 0),
        "dropped": results.get((kind, "dropped"), 0) + results.get(("any", "dropped"), 0),
        "seconds": round(elapsed, 3),
        "appends_seconds": round(appended, 3),
        "per_second": round(state["count"] / elapsed, 1),
        "cpu_us_per_wakeup": round(cpu / max(state["count"], 1) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["webhook", "webpush"], default="webhook")
    parser.add_argument("--clients", type=int, default=2000, help="registered clients to wake")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=8, help="wakeup_concurrency")
    parser.add_argument("--seconds", type=float, default=120, help="give up after this long")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        asyncio.run(run_sink())
        return
    result = asyncio.run(
        measure(args.kind, args.clients, args.store, args.concurrency, args.seconds)
    )
    print(
        f"{result['kind']} ({result['store']}): {result['received']} wake-ups in "
        f"{result['seconds']} s = {result['per_second']}/s, "
        f"{result['cpu_us_per_wakeup']} us CPU each"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
