"""Fan-out benchmark: publishers → one channel each action → every subscriber of that channel.

    python -m loadtest.fanout --nodes 1 --store sqlite
    python -m loadtest.fanout --nodes 3 --connections 300 --channels 3 --publishers 6 --duration 10
    python -m loadtest.fanout --nodes 1 --rate 200 --json

It starts what it measures: one ``logsync serve loadtest.bench_app:app`` (``--store sqlite``, the
durable default, ``redis`` or ``memory``), or ``--nodes 3`` nodes on one ``redis-server`` (AOF,
``appendfsync always`` like ``deploy/local-cluster``). Then a load generator in ``--procs``
separate processes (one by default) opens ``--connections`` subscriber connections, spread
round-robin over the nodes and the channels ``bench/0`` … ``bench/<channels-1>``, and
``--publishers`` more connections that send ``bench/msg`` actions (round-robin over the channels)
carrying their send time. Subscribers acknowledge every ``sync`` with ``synced`` and measure the
end-to-end latency of each delivery.

``--rate 0`` saturates in a closed loop: each publisher keeps at most ``--window`` actions that
have not yet reached every subscriber of its channel in the same generator process. ``--rate N``
sends N actions/s in total on a fixed schedule (open loop; the latency counts from the scheduled
time, so a generator that falls behind shows up in it).

Measured over the run (from the start signal until the last delivery): accepted actions/s (the
server's ``synced``), deliveries/s, latency p50/p99, each server process's CPU time from
``/proc/<pid>/stat`` (utime + stime) per delivery, and the generator's own CPU. After the
publishers stop it waits for every accepted action to reach every subscriber and reports any
difference (``lost``) and any action seen twice or out of order (``duplicates``).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import multiprocessing
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

import aiohttp

from loadtest.client import BenchClient, codec_named, connect
from loadtest.servers import Servers, cpu_seconds, machine, machine_busy_seconds, source

APP = "loadtest.bench_app:app"
CONNECT_CONCURRENCY = 50
START_DELAY = (
    0.3  # s between the start signal and the first action, so every process starts together
)


# -- configuration ---------------------------------------------------------------------------


@dataclass
class Config:
    nodes: int = 1
    connections: int = 300
    channels: int = 3
    publishers: int = 6
    duration: float = 10.0
    rate: float = 0.0
    window: int = 2
    store: str = "sqlite"
    codec: str = "json"
    payload_bytes: int = 0
    procs: int = 1
    redis_fsync: str = "always"
    drain_timeout: float = 30.0
    repeat: int = 1
    json: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.fanout",
        description="Fan-out benchmark of logsync: starts the server(s), runs publishers and "
        "subscribers, prints deliveries/s, latency and server CPU per delivery.",
    )
    add = parser.add_argument
    add("--nodes", type=int, default=1, choices=(1, 3), help="logsync nodes (3: on one Redis)")
    add("--connections", type=int, default=300, help="subscriber connections (default 300)")
    add("--channels", type=int, default=3, help="channels bench/0… (default 3)")
    add("--publishers", type=int, default=6, help="publisher connections, extra (default 6)")
    add("--duration", type=float, default=10.0, help="seconds of publishing (default 10)")
    add("--rate", type=float, default=0.0, help="actions/s in total; 0 saturates (default)")
    add("--window", type=int, default=2, help="saturating: undelivered actions per publisher")
    add("--store", choices=("sqlite", "redis", "memory"), default="sqlite", help="1 node only")
    add("--codec", choices=("json", "msgpack"), default="json", help="frames (default json)")
    add("--payload-bytes", type=int, default=0, help="extra padding in each action")
    add("--procs", type=int, default=1, help="load-generator processes (default 1)")
    add("--redis-fsync", choices=("always", "everysec", "no"), default="always")
    add("--drain-timeout", type=float, default=30.0, help="max s to wait for deliveries")
    add("--repeat", type=int, default=1, help="runs, each on fresh servers; medians reported")
    add("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def parse_config(argv: Sequence[str]) -> Config:
    args = build_parser().parse_args(argv)
    config = Config(**vars(args))
    if config.nodes > 1 and config.store != "redis":
        if "--store" in argv:
            raise SystemExit("--nodes 3 shares one log: use --store redis")
        config.store = "redis"
    if min(config.connections, config.channels, config.publishers, config.procs) < 1:
        raise SystemExit("connections, channels, publishers and procs must be at least 1")
    return config


# -- assignment of connections ---------------------------------------------------------------


@dataclass
class Plan:
    """Who connects where: subscriber j → node j % nodes, channel (j // nodes) % channels, process
    j % procs; publisher i → node i % nodes, process i % procs."""

    urls: list[str]
    config: Config
    subscribers: list[tuple[int, int, int]] = field(default_factory=list)  # (j, url index, channel)
    publishers: list[tuple[int, int]] = field(default_factory=list)  # (i, url index)

    def for_proc(self, proc: int) -> dict[str, Any]:
        c = self.config
        return {
            "proc": proc,
            "urls": self.urls,
            "config": asdict(c),
            "subscribers": [s for s in self.subscribers if s[0] % c.procs == proc],
            "publishers": [p for p in self.publishers if p[0] % c.procs == proc],
        }


def make_plan(urls: list[str], config: Config) -> Plan:
    plan = Plan(urls, config)
    n = len(urls)
    for j in range(config.connections):
        plan.subscribers.append((j, j % n, (j // n) % config.channels))
    for i in range(config.publishers):
        plan.publishers.append((i, i % n))
    return plan


def subscribers_per_channel(plan: Plan) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for _, _, channel in plan.subscribers:
        counts[channel] += 1
    return {c: counts[c] for c in range(plan.config.channels)}


# -- the load generator (one per process) ----------------------------------------------------


@dataclass
class Subscriber:
    """A subscriber connection and what it has seen."""

    client: BenchClient
    channel: int
    last_seq: dict[int, int] = field(default_factory=dict)  # publisher → newest seq received
    waiters: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Publisher:
    """A publisher connection: ``in_flight`` maps the ``sync`` numbers awaiting ``synced`` to
    their channel."""

    client: BenchClient
    index: int
    window: asyncio.Semaphore
    in_flight: dict[int, int] = field(default_factory=dict)
    drained: asyncio.Event = field(default_factory=asyncio.Event)


class Generator:
    """Publishers and subscribers of one generator process, and what they measured."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.config = Config(**spec["config"])
        self.codec = codec_named(self.config.codec)
        self.local_subs: dict[int, int] = defaultdict(int)
        for _, _, channel in spec["subscribers"]:
            self.local_subs[channel] += 1
        self.latencies = array.array("q")  # µs, one per delivery
        self.deliveries = 0
        self.duplicates = 0
        self.expected: int | None = None
        self.all_delivered = asyncio.Event()
        self.last_delivery = 0.0
        self.last_accept = 0.0
        self.first_send = 0.0
        self.accepted: dict[int, int] = defaultdict(int)
        self.refused = 0
        self.unexpected: list[str] = []
        # saturating: (publisher, seq) → local subscribers still to receive it
        self.pending: dict[tuple[int, int], int] = {}
        self.clients: list[BenchClient] = []
        self.publishers: dict[int, Publisher] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.saturate = self.config.rate <= 0

    # -- callbacks ---------------------------------------------------------------------------

    def on_subscriber_action(self, sub: Subscriber, action: dict[str, Any]) -> None:
        if action.get("type") != "bench/msg":
            self._answer(sub, action)
            return
        now = time.time()
        self.latencies.append(int(now * 1_000_000) - action["t"])
        self.deliveries += 1
        self.last_delivery = now
        publisher, seq = action["p"], action["s"]
        if seq <= sub.last_seq.get(publisher, -1):
            self.duplicates += 1
        sub.last_seq[publisher] = seq
        if self.saturate:
            key = (publisher, seq)
            left = self.pending.get(key)
            if left is not None:
                if left <= 1:
                    del self.pending[key]
                    self.publishers[publisher].window.release()
                else:
                    self.pending[key] = left - 1
        if self.expected is not None and self.deliveries >= self.expected:
            self.all_delivered.set()

    def _answer(self, sub: Subscriber, action: dict[str, Any]) -> None:
        kind = action.get("type")
        if kind in ("logux/processed", "logux/undo"):
            future = sub.waiters.pop(action.get("id", ""), None)
            if future is not None and not future.done():
                future.set_result(action)
            elif kind == "logux/undo":
                self.refused += 1
                self.unexpected.append(f"undo {action.get('reason')} for {action.get('id')}")

    def on_publisher_action(self, pub: Publisher, action: dict[str, Any]) -> None:
        if action.get("type") == "logux/undo":
            self.refused += 1
            self.unexpected.append(f"undo {action.get('reason')}: {action.get('action')}")
            if self.saturate:
                pub.window.release()

    def on_publisher_synced(self, pub: Publisher, added: float) -> None:
        channel = pub.in_flight.pop(int(added), None)
        if channel is None:
            return
        self.accepted[channel] += 1
        self.last_accept = time.time()
        if self.saturate and self.local_subs.get(channel, 0) == 0:
            pub.window.release()
        if not pub.in_flight:
            pub.drained.set()

    # -- setup -------------------------------------------------------------------------------

    async def open_client(self, http: aiohttp.ClientSession, url: str, node_id: str) -> BenchClient:
        client = await connect(http, url, node_id, codec=self.codec)
        self.clients.append(client)
        return client

    def start_reading(self, client: BenchClient) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(client.run()))

    async def add_subscriber(
        self, http: aiohttp.ClientSession, j: int, url: str, channel: int
    ) -> None:
        client = await self.open_client(http, url, f"sub{j}:1")
        sub = Subscriber(client, channel)
        client.on_action = lambda _, action, meta: self.on_subscriber_action(sub, action)
        self.start_reading(client)
        full, meta = client.new_meta()
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        sub.waiters[full] = answer
        subscribe = {"type": "logux/subscribe", "channel": f"bench/{channel}"}
        await client.send(["sync", 1, subscribe, meta])
        result = await asyncio.wait_for(answer, 60)
        if result["type"] != "logux/processed":
            raise RuntimeError(f"subscribe to bench/{channel} refused: {result}")

    async def add_publisher(self, http: aiohttp.ClientSession, i: int, url: str) -> None:
        client = await self.open_client(http, url, f"pub{i}:1")
        pub = Publisher(client, i, asyncio.Semaphore(self.config.window))
        pub.drained.set()
        client.on_action = lambda _, action, meta: self.on_publisher_action(pub, action)
        client.on_synced = lambda _, added: self.on_publisher_synced(pub, added)
        self.publishers[i] = pub
        self.start_reading(client)

    async def setup(self, http: aiohttp.ClientSession) -> None:
        urls = self.spec["urls"]
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def bounded(coro: Any) -> None:
            async with limit:
                await coro

        await asyncio.gather(
            *(
                bounded(self.add_subscriber(http, j, urls[u], c))
                for j, u, c in self.spec["subscribers"]
            )
        )
        await asyncio.gather(
            *(bounded(self.add_publisher(http, i, urls[u])) for i, u in self.spec["publishers"])
        )

    # -- the run -----------------------------------------------------------------------------

    async def publish(self, pub: Publisher, start: float, stop: float) -> None:
        c = self.config
        i, client, in_flight = pub.index, pub.client, pub.in_flight
        pad = "x" * c.payload_bytes
        interval = c.publishers / c.rate if c.rate > 0 else 0.0
        seq = 0
        await asyncio.sleep(max(0.0, start - time.time()))
        if interval:
            await asyncio.sleep(interval * i / c.publishers)  # spread publishers over one interval
        began = time.time()
        while True:
            if interval:
                scheduled = began + seq * interval
                if scheduled >= stop:
                    break
                delay = scheduled - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_at = scheduled
            else:
                await pub.window.acquire()
                sent_at = time.time()
                if sent_at >= stop or self.stopping:
                    break
            channel = (i + seq) % c.channels
            action: dict[str, Any] = {
                "type": "bench/msg",
                "ch": channel,
                "p": i,
                "s": seq,
                "t": int(sent_at * 1_000_000),
            }
            if pad:
                action["pad"] = pad
            added = seq + 1
            in_flight[added] = channel
            pub.drained.clear()
            if self.saturate:
                local = self.local_subs.get(channel, 0)
                if local:
                    self.pending[(i, seq)] = local
            if not self.first_send:
                self.first_send = sent_at
            await client.sync(added, action)
            seq += 1

    async def run(self, start: float) -> dict[str, Any]:
        """Publish from ``start`` for the configured duration; wait for every ``synced``."""
        stop = start + self.config.duration
        publishers = list(self.publishers.values())
        loop = asyncio.get_running_loop()
        # a saturating publisher may wait for its window when time is up: wake it
        loop.call_later(max(0.0, stop - time.time()), self._stop_publishing)
        await asyncio.gather(*(self.publish(p, start, stop) for p in publishers))
        try:
            async with asyncio.timeout(self.config.drain_timeout):
                for p in publishers:
                    await p.drained.wait()
        except TimeoutError:
            self.unexpected.append("not every action was acknowledged with synced in time")
        return {
            "accepted": {str(k): v for k, v in self.accepted.items()},
            "unacknowledged": sum(len(p.in_flight) for p in publishers),
            "last_accept": self.last_accept,
        }

    def _stop_publishing(self) -> None:
        self.stopping = True
        for pub in self.publishers.values():
            pub.window.release()

    async def drain(self, expected: int) -> dict[str, Any]:
        """Wait until this process's subscribers got ``expected`` deliveries (or time is up)."""
        self.expected = expected
        if self.deliveries >= expected:
            self.all_delivered.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_delivered.wait(), self.config.drain_timeout)
        closed = [c.closed_reason for c in self.clients if c.closed_reason]
        return {
            "deliveries": self.deliveries,
            "expected": expected,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "first_send": self.first_send,
            "last_delivery": self.last_delivery,
            "latencies": self.latencies.tobytes(),
            "closed": closed[:10],
            "closed_count": len(closed),
            "unexpected": self.unexpected[:10],
        }

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


async def _worker(pipe: Pipe, spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()

    async def recv() -> Any:
        return await loop.run_in_executor(None, pipe.recv)

    generator = Generator(spec)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            await generator.setup(http)
            pipe.send({"ready": True})
            start = (await recv())["start"]
            pipe.send({"published": await generator.run(start)})
            expected = (await recv())["expected"]
            pipe.send({"result": await generator.drain(expected)})
            await recv()  # the servers' CPU has been read: close
        finally:
            await generator.close()


def worker_main(pipe: Pipe, spec: dict[str, Any]) -> None:
    """Entry point of a generator process."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_worker(pipe, spec))
    except BaseException as error:
        with contextlib.suppress(OSError):
            pipe.send({"error": f"{type(error).__name__}: {error}"})
        raise


# -- servers ---------------------------------------------------------------------------------


def make_servers(config: Config) -> Servers:
    """The logsync node(s) running the bench app; 3 nodes (or ``--store redis``) on one
    redis-server with ``--redis-fsync``."""
    redis_args = ["--appendonly", "yes", "--appendfsync", config.redis_fsync]
    if config.redis_fsync == "no":
        redis_args = ["--appendonly", "no"]
    return Servers(
        APP, nodes=config.nodes, store=config.store, redis_args=redis_args, redis_prefix="bench"
    )


# -- one run ---------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[index])


def _receive(pipes: list[Pipe], key: str, timeout: float) -> list[Any]:
    answers = []
    for pipe in pipes:
        if not pipe.poll(timeout):
            raise RuntimeError(f"a generator process did not report {key!r} in {timeout:.0f} s")
        message = pipe.recv()
        if "error" in message:
            raise RuntimeError(f"generator process failed: {message['error']}")
        answers.append(message[key])
    return answers


def run_once(config: Config) -> dict[str, Any]:
    """Start the servers, run the generator processes, stop everything; the figures."""
    servers = make_servers(config)
    servers.start()
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    pipes: list[Pipe] = []
    try:
        plan = make_plan(servers.urls, config)
        for proc in range(config.procs):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker_main, args=(theirs, plan.for_proc(proc)), daemon=True
            )
            process.start()
            processes.append(process)
            pipes.append(ours)
        _receive(pipes, "ready", 120)

        gen_pids = [p.pid for p in processes]
        wall_before = time.time()
        node_before, redis_before = servers.cpu(), servers.redis_cpu()
        gen_before = sum(cpu_seconds(pid) for pid in gen_pids)
        machine_before = machine_busy_seconds()
        start = time.time() + START_DELAY
        for pipe in pipes:
            pipe.send({"start": start})
        published = _receive(pipes, "published", config.duration + config.drain_timeout + 60)
        accepted: dict[int, int] = defaultdict(int)
        for part in published:
            for channel, count in part["accepted"].items():
                accepted[int(channel)] += count
        for proc, pipe in enumerate(pipes):
            local = subscribers_per_channel_of(plan, proc)
            pipe.send({"expected": sum(accepted[c] * n for c, n in local.items())})
        results = _receive(pipes, "result", config.drain_timeout + 60)
        node_after, redis_after = servers.cpu(), servers.redis_cpu()
        gen_after = sum(cpu_seconds(pid) for pid in gen_pids)
        machine_after = machine_busy_seconds()
        wall = time.time() - wall_before
        for pipe in pipes:
            pipe.send({"close": True})
        for process in processes:
            process.join(15)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
        servers.stop()

    latencies = array.array("q")
    for result in results:
        latencies.frombytes(result["latencies"])
    ordered = sorted(latencies)
    total_accepted = sum(accepted.values())
    deliveries = sum(r["deliveries"] for r in results)
    expected = sum(r["expected"] for r in results)
    last_delivery = max(r["last_delivery"] for r in results) or start
    last_accept = max(p["last_accept"] for p in published) or start
    deliver_window = max(last_delivery - start, 1e-9)
    accept_window = max(last_accept - start, 1e-9)
    node_cpu = node_after - node_before
    redis_cpu = redis_after - redis_before
    gen_cpu = gen_after - gen_before
    per_channel = subscribers_per_channel(plan)
    return {
        "accepted": total_accepted,
        "accepted_per_channel": {c: accepted[c] for c in range(config.channels)},
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "lost": expected - deliveries,
        "duplicates": sum(r["duplicates"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "unacknowledged": sum(p["unacknowledged"] for p in published),
        "subscribers_per_channel": per_channel,
        "accepted_per_s": total_accepted / accept_window,
        "deliveries_per_s": deliveries / deliver_window,
        "latency_p50_ms": percentile(ordered, 0.50) / 1000,
        "latency_p99_ms": percentile(ordered, 0.99) / 1000,
        "latency_max_ms": (ordered[-1] / 1000) if ordered else math.nan,
        "run_s": deliver_window,
        "server_cpu_s": node_cpu,
        "redis_cpu_s": redis_cpu,
        "server_cpu_us_per_delivery": node_cpu / deliveries * 1e6 if deliveries else math.nan,
        "server_and_redis_cpu_us_per_delivery": (
            (node_cpu + redis_cpu) / deliveries * 1e6 if deliveries else math.nan
        ),
        "server_cores": node_cpu / wall,
        "generator_cpu_s": gen_cpu,
        "generator_cores": gen_cpu / wall,
        "generator_cpu_share": gen_cpu / max(gen_cpu + node_cpu + redis_cpu, 1e-9),
        "cpu_wall_s": wall,
        # everything else the machine ran meanwhile (other users' work: the noise)
        "other_cores": max(0.0, machine_after - machine_before - node_cpu - redis_cpu - gen_cpu)
        / wall,
        "closed_connections": sum(r["closed_count"] for r in results),
        "problems": [text for r in results for text in r["closed"] + r["unexpected"]][:10],
    }


def subscribers_per_channel_of(plan: Plan, proc: int) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for j, _, channel in plan.subscribers:
        if j % plan.config.procs == proc:
            counts[channel] += 1
    return counts


# -- reporting -------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str]] = [
    ("accepted actions/s", "accepted_per_s", "{:,.0f}"),
    ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("latency p50 (ms)", "latency_p50_ms", "{:.1f}"),
    ("latency p99 (ms)", "latency_p99_ms", "{:.1f}"),
    ("server CPU µs / delivery", "server_cpu_us_per_delivery", "{:.1f}"),
    ("  + redis CPU µs / delivery", "server_and_redis_cpu_us_per_delivery", "{:.1f}"),
    ("server cores busy", "server_cores", "{:.2f}"),
    ("generator cores busy", "generator_cores", "{:.2f}"),
    ("generator share of CPU", "generator_cpu_share", "{:.0%}"),
    ("other processes' cores busy", "other_cores", "{:.2f}"),
    ("accepted actions", "accepted", "{:,}"),
    ("deliveries", "deliveries", "{:,}"),
    ("lost (expected - delivered)", "lost", "{:,}"),
    ("duplicates / out of order", "duplicates", "{:,}"),
    ("run (s, start → last delivery)", "run_s", "{:.1f}"),
]


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            result[key] = statistics.median(r[key] for r in runs)
        else:
            result[key] = value
    result["lost"] = max(r["lost"] for r in runs)
    result["duplicates"] = max(r["duplicates"] for r in runs)
    return result


def describe(config: Config) -> str:
    c = config
    load = "saturating" if c.rate <= 0 else f"{c.rate:g} actions/s"
    store = {"sqlite": "SQLite (synchronous=FULL)", "memory": "memory"}.get(
        c.store,
        f"Redis (AOF, appendfsync {c.redis_fsync})" if c.redis_fsync != "no" else "Redis (no AOF)",
    )
    return (
        f"{c.nodes} node{'s' if c.nodes > 1 else ''}, {store}; {c.connections} subscribers on "
        f"{c.channels} channels, {c.publishers} publishers, {load}, {c.duration:g} s, "
        f"{c.codec}, generator in {c.procs} process{'es' if c.procs > 1 else ''}"
    )


def table(result: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    lines = []
    header = ["metric", "median" if len(runs) > 1 else "value"]
    if len(runs) > 1:
        header += [f"run {i + 1}" for i in range(len(runs))]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for label, key, fmt in ROWS:
        cells = [label, fmt.format(result[key])]
        if len(runs) > 1:
            cells += [fmt.format(r[key]) for r in runs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(argv)
    command = "python -m loadtest.fanout " + shlex.join(argv)
    code_before = source()
    runs = []
    for i in range(config.repeat):
        if not config.json:
            print(f"run {i + 1}/{config.repeat}: {describe(config)} …", file=sys.stderr, flush=True)
        runs.append(run_once(config))
    result = median_of(runs)
    if source() != code_before:
        print("warning: the server code changed during the benchmark", file=sys.stderr)
    output = {
        "command": command.strip(),
        "parameters": asdict(config),
        "description": describe(config),
        "machine": machine(),
        "source": code_before,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "median" if len(runs) > 1 else "result": result,
        "runs": runs,
    }
    if config.json:
        print(json.dumps(output, indent=2, default=str))
    else:
        print(f"$ {command.strip()}")
        print(f"source: {output['source']}")
        print(describe(config))
        print(table(result, runs))
        for problem in result["problems"]:
            print(f"! {problem}")
    ok = all(r["lost"] == 0 and r["duplicates"] == 0 and r["unacknowledged"] == 0 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
