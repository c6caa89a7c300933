"""How many actions a second the Python client (``logsync_client``) sends and receives, per
transport and codec, against a real ``logsync serve loadtest.bench_app:app``:

    python -m loadtest.client_bench                              # ws and http, json and msgpack
    python -m loadtest.client_bench --transport ws --codec msgpack --actions 5000 --json

For each combination: a fresh server (``--store``: a SQLite file or memory), a receiver client
subscribed to one channel, and a sender client (its own SQLite state file) that queues
``--actions`` actions as fast as ``client.add`` goes. **sent/s** is actions over the time from the
first ``add`` to the last ``logux/processed`` (each persisted, sent, applied by the server and
answered, then removed from the sender's file); **received/s** is actions over the time from the
first ``add`` to the receiver's last one. Both clients run in this one process (one event loop),
so its CPU per action is reported too. Over WebSocket each ``add`` is its own ``sync`` message;
over HTTP up to ``push_batch`` (100) pending actions go in one request, and the receiver
long-polls pages of the server's default size. Every phase has a deadline (``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from loadtest.servers import machine, source
from logsync_client import Client
from tests.support.server import ServerProcess

APP = "loadtest.bench_app:app"


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(
    url: str, codec: Literal["json", "msgpack"], actions: int, directory: Path, timeout: float
) -> dict[str, Any]:
    """One sender and one receiver on one channel; the figures of a single run."""
    channel = f"c{int(time.time() * 1000)}"
    sender = Client(url, "sender", "x", codec=codec, store=directory / f"sender-{channel}.db")
    receiver = Client(url, "receiver", "x", codec=codec, wait=25)
    received = 0
    everything = asyncio.Event()
    last_received = 0.0

    def hear(action: dict[str, Any], meta: dict[str, Any]) -> None:
        nonlocal received, last_received
        received += 1
        if received == actions:
            last_received = time.perf_counter()
            everything.set()

    receiver.on("bench/msg", hear)
    await sender.start()
    await receiver.start()
    try:
        await asyncio.wait_for(
            asyncio.gather(sender.wait_connected(), receiver.wait_connected()), timeout
        )
        await asyncio.wait_for(receiver.subscribe(f"bench/{channel}"), timeout)
        cpu, start = cpu_now(), time.perf_counter()
        for i in range(actions):
            sender.add({"type": "bench/msg", "ch": channel, "n": i})
        queued = time.perf_counter()
        await asyncio.wait_for(sender.flush(), timeout)
        sent = time.perf_counter()
        await asyncio.wait_for(everything.wait(), timeout)
        cpu_used = cpu_now() - cpu
    finally:
        await sender.stop()
        await receiver.stop()
    return {
        "actions": actions,
        "received": received,
        "queue_us_per_add": round((queued - start) / actions * 1e6, 1),
        "sent_per_s": round(actions / (sent - start)),
        "received_per_s": round(actions / (last_received - start)),
        "client_cpu_us_per_action": round(cpu_used / actions * 1e6, 1),
    }


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    transports = ["ws", "http"] if args.transport == "all" else [args.transport]
    codecs = ["json", "msgpack"] if args.codec == "all" else [args.codec]
    results = []
    with tempfile.TemporaryDirectory(prefix="client-bench-") as tmp:
        directory = Path(tmp)
        for transport in transports:
            for codec in codecs:
                store = "memory://" if args.store == "memory" else None  # None: a SQLite file
                server = await asyncio.to_thread(
                    ServerProcess, APP, "--handshake-rate", "10000", store=store
                )
                try:
                    url = server.url if transport == "ws" else server.http_url
                    figures = await one_run(url, codec, args.actions, directory, args.timeout)
                finally:
                    await asyncio.to_thread(server.stop)
                results.append({"transport": transport, "codec": codec, **figures})
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=["ws", "http", "all"], default="all")
    parser.add_argument("--codec", choices=["json", "msgpack", "all"], default="all")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--actions", type=int, default=2000, help="actions sent per run")
    parser.add_argument("--timeout", type=float, default=120, help="seconds each phase may take")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    results = asyncio.run(bench(args))
    command = ("python -m loadtest.client_bench " + shlex.join(given)).strip()
    if args.json:
        output = {
            "command": command,
            "machine": machine(),
            "source": source(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "results": results,
        }
        print(json.dumps(output, indent=2))
        return
    print(f"$ {command}")
    print(f"{'transport':<10}{'codec':<9}{'sent/s':>9}{'received/s':>12}{'CPU µs/action':>15}")
    for r in results:
        print(
            f"{r['transport']:<10}{r['codec']:<9}{r['sent_per_s']:>9}{r['received_per_s']:>12}"
            f"{r['client_cpu_us_per_action']:>15}"
        )


if __name__ == "__main__":
    main()
