"""One command, fixed scenarios, one table: logsync and/or the reference @logux/server.

    python -m loadtest.bench                       # logsync, --repeat 3, full sizes
    python -m loadtest.bench --quick               # 1 repeat, small sizes
    python -m loadtest.bench --target both --json  # logsync and @logux/server 0.14 side by side
    python -m loadtest.bench --target both --only fanout,rate  # some scenarios only
    python -m loadtest.bench --target both --only wide --generator python  # the load from Python
    python -m loadtest.bench --url ws://127.0.0.1:31337/ --pid 1234 --png storm  # and a running server

Every scenario starts a fresh server (``logsync serve tests.interop.app:app`` on a fresh SQLite
file, or ``node tests/interop/js/reference-server.mjs`` with ``LOGUX_QUIET=1``, which keeps its log
in memory) and stops it by PID. Both run the same app (``tests/interop/app.py`` /
``reference-server.mjs``), so the columns compare like with like:

- **fan-out (fanout.py)**, logsync only: ``loadtest.fanout`` (its own ``bench_app``), saturating.
- **fan-out, interop app**: S subscribers on 3 ``chat/<id>`` channels, 6 publishers sending
  ``chat/message`` (saturating with 2 undelivered actions per publisher): deliveries/s, server CPU µs
  per delivery; then a fixed rate (200 actions/s; ``--quick`` 100) for the latency p50/p99.
- **wide fan-out**: issue 13's saturated shape: 1000 subscribers on 10 ``chat/b<n>`` channels (``--quick``:
  200), 10 publishers with 50 undelivered actions each, once with ``chat/message`` (it has a
  ``process``: one client's actions run one at a time) and once with ``chat/note`` (no ``process``).
- **handshakes**: N idle clients connect, 100 handshakes in flight: handshakes/s, server CPU per
  connection, RSS growth per idle connection.
- **storm**: ``loadtest.storm`` (``notify``, which both servers keep for replay): catch-up p50/p99,
  all caught up, live p99, peak / pre-storm RSS.

The fan-outs on the interop app (``fanout``, ``wide``, ``rate``) take their load from
``--generator node`` (the default: ``--procs`` processes of ``loadtest/js/fanout.mjs``, raw
``ws`` sockets speaking Logux v5 message for message as ``loadtest.client`` does) or
``--generator python`` (``loadtest.client.BenchClient`` in this process); each reports the
generator's cores busy beside its figures, so a saturated generator shows. ``--logsync-store
memory`` runs the logsync servers of those and of the handshakes on the memory log instead of
the durable SQLite default, to tell the store's share of a figure from the rest.

Each figure is the median of ``--repeat`` runs (3; ``--quick``: 1). ``--url`` adds a column for any
running Logux v5 server that implements the same app (the rules of ``tests/interop/app.py``); its
``--pid`` lets the CPU and memory columns be read, and the storm scenario then runs against it
without a restart. ``--png PREFIX`` draws each target's first storm to ``PREFIX-<target>.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import fanout, storm
from loadtest.client import BenchClient, OnAction, OnSynced
from loadtest.fanout import percentile
from loadtest.servers import Servers, cpu_seconds, machine, raise_fd_limit, source
from loadtest.storm import connect


@dataclass
class Sizes:
    subscribers: int
    publishers: int
    duration: float
    rate: float
    idle: int
    storm_clients: int
    storm_missed: int


FULL = Sizes(300, 6, 10.0, 200.0, 2000, 2000, 50)
QUICK = Sizes(100, 6, 3.0, 100.0, 500, 300, 10)
CHANNELS = 3
WINDOW = 2
IN_FLIGHT = 100
DRAIN_S = 30.0  # after publishing: how long every action may take to be acknowledged, delivered
START_DELAY = 0.3  # s between the start signal and the first action (Node generator processes)
NODE_GENERATOR = Path(__file__).with_name("js") / "fanout.mjs"
GENERATORS = ("node", "python")


# PIDs of the running servers given with --url (for their CPU and memory).
URL_PIDS: dict[str, int] = {}


def target_config(target: str, **options: Any) -> storm.Config:
    """The storm settings for ``target``: ``logsync``, ``logux`` or the URL of a running server."""
    if target.startswith(("ws://", "wss://")):
        return storm.Config(url=target, pid=URL_PIDS.get(target, 0), **options)
    return storm.Config(server=target, **options)


# The log stores the logsync servers the scenarios start may have (--logsync-store).
LOGSYNC_STORES = ("sqlite", "memory")


def start(target: str, store: str = "sqlite") -> Servers:
    """A fresh ``target`` server (a logsync one on ``store``), started."""
    servers = storm.make_servers(target_config(target, store=store))
    servers.start()
    return servers


# -- fan-out on the interop app --------------------------------------------------------------


@dataclass
class Shape:
    """A fan-out's shape: subscribers on ``channels`` ``chat/b<n>`` channels, publishers with
    ``window`` undelivered actions each (saturating), of type ``kind``."""

    subscribers: int
    publishers: int
    channels: int = CHANNELS
    window: int = WINDOW
    kind: str = "chat/message"


# The saturated fan-out of issue 13: 1000 connections on 10 channels, 10 publishers with 50
# undelivered actions each (`--quick`: 200 connections).
WIDE = Shape(1000, 10, 10, 50)
WIDE_QUICK = Shape(200, 10, 10, 50)


async def _fanout(
    servers: Servers, sizes: Sizes, rate: float, shape: Shape | None = None
) -> dict[str, Any]:
    shape = shape or Shape(sizes.subscribers, sizes.publishers)
    url = servers.urls[0]
    latencies: list[float] = []
    deliveries = 0
    duplicates = 0
    last_seq: dict[tuple[int, int], int] = {}
    local: dict[int, int] = defaultdict(int)
    pending: dict[tuple[int, int], int] = {}
    windows: dict[int, asyncio.Semaphore] = {}
    accepted: dict[int, int] = defaultdict(int)
    in_flight: dict[tuple[int, int], int] = {}
    last_delivery = 0.0
    done = asyncio.Event()
    expected: list[int | None] = [None]
    tasks: list[asyncio.Task[None]] = []
    clients: list[BenchClient] = []

    def deliveries_to(sub: int) -> OnAction:
        def on_action(_: BenchClient, action: dict[str, Any], meta: dict[str, Any]) -> None:
            nonlocal deliveries, duplicates, last_delivery
            if action.get("type") != shape.kind:
                return
            now = time.time()
            p, s, t = (int(x) for x in action["text"].split(":"))
            latencies.append(now - t / 1e6)
            deliveries += 1
            last_delivery = now
            if s <= last_seq.get((sub, p), -1):
                duplicates += 1
            last_seq[(sub, p)] = s
            left = pending.get((p, s))
            if left is not None:
                if left <= 1:
                    del pending[(p, s)]
                    windows[p].release()
                else:
                    pending[(p, s)] = left - 1
            if expected[0] is not None and deliveries >= expected[0]:
                done.set()

        return on_action

    def accepted_from(pub: int) -> OnSynced:
        def on_synced(_: BenchClient, value: float) -> None:
            channel = in_flight.pop((pub, int(value)), None)
            if channel is not None:
                accepted[channel] += 1

        return on_synced

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def subscriber(j: int) -> None:
            async with limit:
                client = await connect(http, url, f"f{j}:1")
            clients.append(client)
            channel = j % shape.channels
            local[channel] += 1
            _, meta = client.new_meta()
            subscribe = {"type": "logux/subscribe", "channel": f"chat/b{channel}"}
            await client.send(["sync", 1, subscribe, meta])
            client.on_action = deliveries_to(j)
            tasks.append(asyncio.create_task(client.run()))

        await asyncio.gather(*(subscriber(j) for j in range(shape.subscribers)))
        publishers = []
        for i in range(shape.publishers):
            client = await connect(http, url, f"p{i}:1")
            clients.append(client)
            publishers.append(client)
            windows[i] = asyncio.Semaphore(shape.window)
            client.on_synced = accepted_from(i)
            tasks.append(asyncio.create_task(client.run()))
        await asyncio.sleep(1.0)  # subscriptions processed
        cpu_before = servers.cpu()
        gen_before = cpu_seconds(os.getpid())
        began = time.time()
        stop = began + sizes.duration

        async def publish(i: int, client: BenchClient) -> None:
            interval = shape.publishers / rate if rate else 0.0
            if interval:
                await asyncio.sleep(interval * i / shape.publishers)
            first = time.time()
            seq = 0
            while True:
                if interval:
                    sent_at = first + seq * interval
                    if sent_at >= stop:
                        return
                    await asyncio.sleep(max(0.0, sent_at - time.time()))
                else:
                    await windows[i].acquire()
                    sent_at = time.time()
                    if sent_at >= stop:
                        return
                channel = (i + seq) % shape.channels
                pending[(i, seq)] = local[channel]
                in_flight[(i, seq + 1)] = channel
                text = f"{i}:{seq}:{int(sent_at * 1e6)}"
                _, meta = client.new_meta()
                action = {"type": shape.kind, "chat": f"b{channel}", "text": text}
                await client.send(["sync", seq + 1, action, meta])
                seq += 1

        await asyncio.gather(*(publish(i, c) for i, c in enumerate(publishers)))
        settle = time.time() + 30
        while in_flight and time.time() < settle:
            await asyncio.sleep(0.05)
        expected[0] = sum(accepted[c] * local[c] for c in range(shape.channels))
        if deliveries < expected[0]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 30)
        cpu = servers.cpu() - cpu_before
        gen_cpu = cpu_seconds(os.getpid()) - gen_before
        wall = time.time() - began
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    ordered = sorted(latencies)
    window = max(last_delivery - began, 1e-9)
    return {
        "deliveries": deliveries,
        "expected": expected[0],
        "lost": (expected[0] or 0) - deliveries,
        "duplicates": duplicates,
        "deliveries_per_s": deliveries / window,
        "cpu_us_per_delivery": cpu / deliveries * 1e6 if deliveries else math.nan,
        "p50_ms": percentile(ordered, 0.5) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "gen_cores": gen_cpu / wall,
    }


# -- the same fan-out from Node generator processes (loadtest/js/fanout.mjs) ------------------


def node_specs(url: str, sizes: Sizes, rate: float, shape: Shape, procs: int) -> list[Any]:
    """What each Node generator process runs: subscriber ``j`` on channel ``j % channels`` in
    process ``(j // channels) % procs`` (so each process has subscribers of every channel, and a
    publisher's window waits for its deliveries), publisher ``i`` in process ``i % procs``."""
    return [
        {
            "url": url,
            "token": storm.TOKEN,
            "subprotocol": storm.SUBPROTOCOL,
            "kind": shape.kind,
            "channels": shape.channels,
            "window": shape.window,
            "rate": rate,
            "duration": sizes.duration,
            "publishersTotal": shape.publishers,
            "connectInFlight": max(1, IN_FLIGHT // procs),
            "drainMs": DRAIN_S * 1000,
            "subscribers": [
                [j, j % shape.channels]
                for j in range(shape.subscribers)
                if (j // shape.channels) % procs == n
            ],
            "publishers": list(range(n, shape.publishers, procs)),
        }
        for n in range(procs)
    ]


async def _ask(
    gens: list[asyncio.subprocess.Process], message: Any, key: str, timeout: float
) -> list[Any]:
    """Send ``message`` (one JSON line) to every generator process, then read each one's
    answer line and return its ``key``."""
    if message is not None:
        line = (json.dumps(message) + "\n").encode()
        for gen in gens:
            assert gen.stdin is not None
            gen.stdin.write(line)
            await gen.stdin.drain()
    answers = []
    for gen in gens:
        assert gen.stdout is not None
        try:
            raw = await asyncio.wait_for(gen.stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(
                f"a Node generator did not report {key!r} in {timeout:.0f} s"
            ) from None
        if not raw:
            raise RuntimeError(f"a Node generator exited before {key!r} (code {gen.returncode})")
        answer = json.loads(raw)
        if "error" in answer:
            raise RuntimeError(f"Node generator failed: {answer['error']}")
        answers.append(answer[key])
    return answers


async def _fanout_node(
    servers: Servers, sizes: Sizes, rate: float, shape: Shape, procs: int
) -> dict[str, Any]:
    specs = node_specs(servers.urls[0], sizes, rate, shape, procs)
    gens = []
    try:
        for spec in specs:
            gens.append(
                await asyncio.create_subprocess_exec(
                    "node",
                    str(NODE_GENERATOR),
                    json.dumps(spec),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=1 << 30,  # the result line holds every latency
                )
            )
        await _ask(gens, None, "ready", 120)
        cpu_before = servers.cpu()
        gen_before = sum(cpu_seconds(g.pid) for g in gens)
        wall_before = time.time()
        start = wall_before + START_DELAY
        published = await _ask(gens, {"start": start}, "published", sizes.duration + DRAIN_S + 60)
        accepted: dict[int, int] = defaultdict(int)
        for part in published:
            for channel, count in part["accepted"].items():
                accepted[int(channel)] += count
        owed = [{"expected": sum(accepted[c] for _, c in spec["subscribers"])} for spec in specs]
        results = []
        for gen, message in zip(gens, owed, strict=True):
            results += await _ask([gen], message, "result", DRAIN_S + 60)
        cpu = servers.cpu() - cpu_before
        gen_cpu = sum(cpu_seconds(g.pid) for g in gens) - gen_before
        wall = time.time() - wall_before
        for gen in gens:
            assert gen.stdin is not None
            gen.stdin.write(b'{"close": true}\n')
            await gen.stdin.drain()
        for gen in gens:
            await asyncio.wait_for(gen.wait(), 15)
    finally:
        for gen in gens:
            if gen.returncode is None:
                gen.kill()
                await gen.wait()
    deliveries = sum(r["deliveries"] for r in results)
    expected = sum(r["expected"] for r in results)
    ordered = sorted(us for r in results for us in r["latenciesUs"])
    last_delivery = max(r["lastDelivery"] for r in results) or start
    problems = [p for r in results for p in r["closed"] + r["problems"]]
    for problem in problems[:10]:
        print(f"! {problem}", file=sys.stderr)
    return {
        "deliveries": deliveries,
        "expected": expected,
        "lost": expected - deliveries,
        "duplicates": sum(r["duplicates"] for r in results),
        "unacknowledged": sum(p["unacknowledged"] for p in published),
        "deliveries_per_s": deliveries / max(last_delivery - start, 1e-9),
        "cpu_us_per_delivery": cpu / deliveries * 1e6 if deliveries else math.nan,
        "p50_ms": percentile(ordered, 0.5) / 1000,
        "p99_ms": percentile(ordered, 0.99) / 1000,
        "gen_cores": gen_cpu / wall,
    }


def fanout_interop(
    target: str,
    sizes: Sizes,
    rate: float,
    shape: Shape | None = None,
    generator: str = "node",
    procs: int = 1,
    store: str = "sqlite",
) -> dict[str, Any]:
    """One fan-out on a fresh ``target`` server (logsync on ``store``), its load from
    ``generator`` (``node``: ``procs`` processes of ``loadtest/js/fanout.mjs``; ``python``: this
    process)."""
    shape = shape or Shape(sizes.subscribers, sizes.publishers)
    raise_fd_limit(shape.subscribers * 2 + 1000)
    servers = start(target, store)
    try:
        if generator == "node":
            return asyncio.run(_fanout_node(servers, sizes, rate, shape, procs))
        return asyncio.run(_fanout(servers, sizes, rate, shape))
    finally:
        servers.stop()


# -- handshakes and idle memory --------------------------------------------------------------


async def _handshakes(servers: Servers, n: int) -> dict[str, Any]:
    url = servers.urls[0]
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    clients: list[BenchClient] = []
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.sleep(1.0)
        rss_before = servers.rss_kib()
        cpu_before = servers.cpu()
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> None:
            async with limit:
                clients.append(await connect(http, url, f"h{i}:1"))

        began = time.time()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.time() - began
        cpu = servers.cpu() - cpu_before
        await asyncio.sleep(1.0)
        rss_after = servers.rss_kib()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "handshakes_per_s": n / elapsed,
        "cpu_us_per_connection": cpu / n * 1e6,
        "kib_per_idle_connection": (rss_after - rss_before) / n,
    }


def handshakes(target: str, n: int, store: str = "sqlite") -> dict[str, Any]:
    raise_fd_limit(n * 2 + 1000)
    servers = start(target, store)
    try:
        return asyncio.run(_handshakes(servers, n))
    finally:
        servers.stop()


def storm_scenario(target: str, sizes: Sizes, png: str = "") -> dict[str, Any]:
    config = target_config(
        target,
        clients=sizes.storm_clients,
        missed=sizes.storm_missed,
        own=sizes.storm_missed // 5,
        png=png,
    )
    return storm.run_once(config)


def fanout_py(sizes: Sizes) -> dict[str, Any]:
    config = fanout.Config(
        connections=sizes.subscribers, publishers=sizes.publishers, duration=sizes.duration
    )
    return fanout.run_once(config)


# -- the table -------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str]] = [
    ("fan-out.py (bench_app) deliveries/s", "fpy_deliveries_per_s", "{:,.0f}"),
    ("fan-out.py server CPU µs / delivery", "fpy_cpu_us", "{:.1f}"),
    ("fan-out (interop app) deliveries/s", "fan_deliveries_per_s", "{:,.0f}"),
    ("fan-out server CPU µs / delivery", "fan_cpu_us", "{:.1f}"),
    ("fan-out generator cores busy", "fan_gen_cores", "{:.2f}"),
    ("wide fan-out, chat/message (process) deliveries/s", "wide_deliveries_per_s", "{:,.0f}"),
    ("wide fan-out, chat/message server CPU µs / delivery", "wide_cpu_us", "{:.1f}"),
    ("wide fan-out, chat/message generator cores busy", "wide_gen_cores", "{:.2f}"),
    ("wide fan-out, chat/note (no process) deliveries/s", "note_deliveries_per_s", "{:,.0f}"),
    ("wide fan-out, chat/note server CPU µs / delivery", "note_cpu_us", "{:.1f}"),
    ("wide fan-out, chat/note generator cores busy", "note_gen_cores", "{:.2f}"),
    ("fan-out p50 at fixed rate (ms)", "rate_p50_ms", "{:.1f}"),
    ("fan-out p99 at fixed rate (ms)", "rate_p99_ms", "{:.1f}"),
    ("fixed rate deliveries/s", "rate_deliveries_per_s", "{:,.0f}"),
    ("fixed rate server CPU µs / delivery", "rate_cpu_us", "{:.1f}"),
    ("fixed rate generator cores busy", "rate_gen_cores", "{:.2f}"),
    ("handshakes/s (100 in flight)", "handshakes_per_s", "{:,.0f}"),
    ("server CPU µs / connection", "cpu_us_per_connection", "{:,.0f}"),
    ("RSS KiB / idle connection", "kib_per_idle_connection", "{:.1f}"),
    ("storm catch-up p50 (ms)", "storm_p50_ms", "{:,.0f}"),
    ("storm catch-up p99 (ms)", "storm_p99_ms", "{:,.0f}"),
    ("storm all caught up (s)", "storm_all_s", "{:.2f}"),
    ("storm live p99 (ms)", "storm_live_p99_ms", "{:.1f}"),
    ("storm peak / pre-storm RSS", "storm_rss_ratio", "{:.2f}"),
    ("lost / duplicated (all scenarios)", "errors", "{:,}"),
]


SCENARIOS = ("fanout", "wide", "rate", "handshakes", "storm")


def wide_shape(sizes: Sizes) -> Shape:
    """The wide fan-out of ``sizes`` (whatever its fixed rate): issue 13's for the full sizes,
    200 subscribers for ``--quick``, a small one for others (the smoke test's)."""
    if replace(sizes, rate=0) == replace(FULL, rate=0):
        return WIDE
    if replace(sizes, rate=0) == replace(QUICK, rate=0):
        return WIDE_QUICK
    return Shape(sizes.subscribers, sizes.publishers, 2, 5)


def one_round(
    target: str,
    sizes: Sizes,
    png: str = "",
    only: Sequence[str] = SCENARIOS,
    generator: str = "node",
    procs: int = 1,
    store: str = "sqlite",
) -> dict[str, Any]:
    """One run of each scenario in ``only`` against ``target`` (``fanout`` includes
    ``loadtest.fanout``'s own bench app when the target is logsync); ``fanout``, ``wide`` and
    ``rate`` take their load from ``generator`` (``procs`` Node processes, or this one); the
    logsync servers of those and of ``handshakes`` run on ``store``."""
    row: dict[str, Any] = {}
    errors = 0

    def fan(rate: float, shape: Shape | None, key: str) -> dict[str, Any]:
        nonlocal errors
        f = fanout_interop(target, sizes, rate, shape, generator, procs, store)
        row[f"{key}_gen_cores"] = f["gen_cores"]
        errors += f["lost"] + f["duplicates"] + f.get("unacknowledged", 0)
        return f

    if target == "logsync" and "fanout" in only:
        f = fanout_py(sizes)
        row["fpy_deliveries_per_s"] = f["deliveries_per_s"]
        row["fpy_cpu_us"] = f["server_cpu_us_per_delivery"]
        errors += f["lost"] + f["duplicates"]
    if "fanout" in only:
        f = fan(0.0, None, "fan")
        row["fan_deliveries_per_s"] = f["deliveries_per_s"]
        row["fan_cpu_us"] = f["cpu_us_per_delivery"]
    if "wide" in only:
        wide = wide_shape(sizes)
        for kind, key in (("chat/message", "wide"), ("chat/note", "note")):
            shape = Shape(wide.subscribers, wide.publishers, wide.channels, wide.window, kind)
            f = fan(0.0, shape, key)
            row[f"{key}_deliveries_per_s"] = f["deliveries_per_s"]
            row[f"{key}_cpu_us"] = f["cpu_us_per_delivery"]
    if "rate" in only:
        f = fan(sizes.rate, None, "rate")
        row["rate_p50_ms"] = f["p50_ms"]
        row["rate_p99_ms"] = f["p99_ms"]
        row["rate_deliveries_per_s"] = f["deliveries_per_s"]
        row["rate_cpu_us"] = f["cpu_us_per_delivery"]  # how close the fixed rate is to saturation
    if "handshakes" in only:
        row.update(handshakes(target, sizes.idle, store))
    if "storm" in only:
        s = storm_scenario(target, sizes, png)
        row["storm_p50_ms"] = s["catch_up_p50_ms"]
        row["storm_p99_ms"] = s["catch_up_p99_ms"]
        row["storm_all_s"] = s["all_caught_up_s"]
        row["storm_live_p99_ms"] = s["live_p99_ms"]
        row["storm_rss_ratio"] = s["rss_peak_ratio"]
        errors += s["lost"] + s["duplicates"] + (0 if s["ok"] else 1)
    row["errors"] = errors
    return row


def median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
        out[key] = statistics.median(values) if values else math.nan
    out["errors"] = sum(r["errors"] for r in rows)
    return out


def table(columns: dict[str, dict[str, Any]]) -> str:
    names = list(columns)
    lines = ["| scenario | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, key, fmt in ROWS:
        cells = []
        for name in names:
            value = columns[name].get(key)
            cells.append("n/a" if value is None else fmt.format(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repeat, small sizes")
    parser.add_argument("--target", choices=("logsync", "logux", "both"), default="logsync")
    parser.add_argument("--repeat", type=int, default=0, help="runs per scenario (3; quick 1)")
    parser.add_argument("--url", default="", help="also measure this running Logux v5 server")
    parser.add_argument("--pid", type=int, default=0, help="with --url: its PID, for CPU and RSS")
    parser.add_argument(
        "--png", default="", help="draw each target's first storm to PNG-<target>.png"
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help="comma-separated scenarios to run: " + ", ".join(SCENARIOS) + " (default: all)",
    )
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default="node",
        help="load generator of fanout, wide and rate: node (loadtest/js/fanout.mjs, the "
        "default) or python (loadtest.client in this process)",
    )
    parser.add_argument(
        "--procs", type=int, default=1, help="with --generator node: its processes (default 1)"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="the fixed rate in actions/s (200; quick 100)"
    )
    parser.add_argument(
        "--logsync-store",
        choices=LOGSYNC_STORES,
        default="sqlite",
        help="the log of the logsync servers started: sqlite (a fresh file, the default) or "
        "memory (to tell the store's share from the rest; the storm scenario keeps SQLite)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := sorted(set(only) - set(SCENARIOS)):
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    sizes = QUICK if args.quick else FULL
    if args.rate > 0:
        sizes = replace(sizes, rate=args.rate)
    repeat = args.repeat or (1 if args.quick else 3)
    targets = ["logsync", "logux"] if args.target == "both" else [args.target]
    if args.url:
        targets.append(args.url)
        URL_PIDS[args.url] = args.pid
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for i in range(repeat):
        for target in targets:  # interleaved, so noise spreads over both
            print(f"round {i + 1}/{repeat}: {target} …", file=sys.stderr, flush=True)
            png = ""
            if args.png and i == 0:
                name = "url" if target == args.url else target
                png = f"{args.png}-{name}.png"
            runs[target].append(
                one_round(
                    target,
                    sizes,
                    png,
                    only,
                    args.generator,
                    max(1, args.procs),
                    args.logsync_store,
                )
            )
    columns = {t: median(runs[t]) for t in targets}
    output = {
        "command": ("python -m loadtest.bench " + shlex.join(argv)).strip(),
        "sizes": sizes.__dict__,
        "generator": {"kind": args.generator, "procs": args.procs},
        "logsync_store": args.logsync_store,
        "repeat": repeat,
        "machine": machine(),
        "source": source(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "median": columns,
        "runs": runs,
    }
    if args.json:
        print(json.dumps(output, indent=2, default=str))
    else:
        print(f"$ {output['command']}")
        print(
            f"sizes: {sizes.subscribers} subscribers / {sizes.publishers} publishers, "
            f"{sizes.duration:g} s, fixed rate {sizes.rate:g}/s; {sizes.idle} idle connections; "
            f"storm {sizes.storm_clients} x {sizes.storm_missed}; median of {repeat}; "
            f"generator {args.generator}"
            + (f" x {args.procs}" if args.generator == "node" else "")
            + f"; logsync on {args.logsync_store}"
        )
        print(table(columns))
    return 0 if all(c["errors"] == 0 for c in columns.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
