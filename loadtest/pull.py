"""HTTP pull benchmark: ``POST /v1/sync`` pages and long-polls (docs/http-pull.md).

    python -m loadtest.pull                                   # both scenarios, JSON bodies
    python -m loadtest.pull --scenario pages --codec msgpack --clients 50 --procs 2
    python -m loadtest.pull --scenario waiters --waiters 2000 --repeat 3 --json

Each run starts a fresh ``logsync serve loadtest.bench_app:app`` per scenario (``--store sqlite``,
the durable default, ``memory`` or ``redis``), drives it from 127.0.0.1 with aiohttp's client and
stops it by its PID.

``pages`` — pull throughput and latency for a full page. ``--clients`` pull clients (distinct
client ids ``r<k>:c<k>``) subscribe to ``bench/0`` and keep the cursor of that answer; then one
writer fills the channel with ``--actions`` ``bench/msg`` actions (batches of 100 in ``/v1/sync``).
The clients, spread over ``--procs`` generator processes, then repeat ``POST /v1/sync`` from their
fixed cursor with ``limit=--limit`` for ``--duration`` seconds, each waiting for its answer before
the next (closed loop), so every request is answered the same full page of the first ``--limit``
fill actions. Measured: requests/s, latency p50/p99 (request sent → body read), each server
process's CPU time (``/proc/<pid>/stat``) per request, the generator's CPU, the response size.
Every answer is checked: 200, ``--limit`` actions, the fill's first ones in order, ``more``.

``waiters`` — memory per waiting long-poll. ``--waiters`` clients subscribe to ``bench/wake``
(50 at a time, on connections closed afterwards), then the server's RSS (VmRSS of
``/proc/<pid>/status``) is read; then one ``ClientSession`` opens as many kept-alive
connections (a ``GET /health/live`` each) and the RSS is read again; then every client opens
``POST /v1/sync`` with ``wait=--wait`` from its up-to-date cursor on those connections, all at
once, and once the server's ``logsync_pull_waiting`` gauge (``/metrics``) counts them all the RSS
is read a third time. The differences over the waiters are the KiB one waiting long-poll costs
the server: its idle connection, and the waiting request on it. Then one action on
``bench/wake`` wakes them: the time until every one has answered, and that every one answered 200
with exactly that action; the server's CPU per long-poll opened and per long-poll woken.

Each pull request is a handshake to the node's admission (``handshake_rate``, 500/s by default):
``--handshake-rate`` (default 100,000) is passed to the server so that the pull path is measured
rather than the admission limit; ``--handshake-rate 0`` keeps the server's default.

The exit status is 1 when any request failed or any check above did not hold.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

import aiohttp
import msgpack
import orjson

from loadtest.fanout import percentile
from loadtest.servers import (
    Servers,
    cpu_seconds,
    machine,
    machine_busy_seconds,
    raise_fd_limit,
    source,
)

APP = "loadtest.bench_app:app"
TOKEN = "bench"
SUBPROTOCOL = 1
PAGE_CHANNEL = "0"  # bench/0: the channel the pages are read from
WAKE_CHANNEL = "wake"  # bench/wake: the channel the waiters are woken on
FILL_BATCH = 100  # actions per /v1/sync request of the writer (under inbound_max_actions)
SETUP_CONCURRENCY = 50  # subscribing requests in flight at once
START_DELAY = (
    0.3  # s between the start signal and the first request, so every process starts together
)
REQUEST_TIMEOUT = 60.0  # s: any one request of the pages scenario or of the setup
WAITING_TIMEOUT = 20.0  # s for every long-poll to be counted waiting (under --wait)


# -- configuration ---------------------------------------------------------------------------


@dataclass
class Config:
    scenario: str = "both"
    store: str = "sqlite"
    codec: str = "json"
    clients: int = 50
    actions: int = 1000
    limit: int = 100
    duration: float = 10.0
    procs: int = 1
    payload_bytes: int = 0
    waiters: int = 2000
    wait: float = 25.0
    handshake_rate: float = 100_000.0
    repeat: int = 1
    json: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.pull",
        description="HTTP pull benchmark of logsync: starts a server, measures full-page "
        "POST /v1/sync requests and the memory and wake-up of waiting long-polls.",
    )
    add = parser.add_argument
    add("--scenario", choices=("pages", "waiters", "both"), default="both")
    add("--store", choices=("sqlite", "redis", "memory"), default="sqlite", help="the log")
    add("--codec", choices=("json", "msgpack"), default="json", help="request/response bodies")
    add("--clients", type=int, default=50, help="pages: concurrent pull clients (default 50)")
    add("--actions", type=int, default=1000, help="pages: actions in the channel (default 1000)")
    add("--limit", type=int, default=100, help="pages: the page size asked for (default 100)")
    add("--duration", type=float, default=10.0, help="pages: seconds of pulling (default 10)")
    add("--procs", type=int, default=1, help="pages: load-generator processes (default 1)")
    add("--payload-bytes", type=int, default=0, help="pages: padding in each filled action")
    add("--waiters", type=int, default=2000, help="waiters: concurrent long-polls (default 2000)")
    add("--wait", type=float, default=25.0, help="waiters: their wait in s (default 25)")
    add(
        "--handshake-rate",
        type=float,
        default=100_000.0,
        help="the server's admission rate (and burst); 0: the server's default",
    )
    add("--repeat", type=int, default=1, help="runs, each on fresh servers; medians reported")
    add("--json", action="store_true", help="print one JSON object instead of tables")
    return parser


def parse_config(argv: Sequence[str]) -> Config:
    config = Config(**vars(build_parser().parse_args(argv)))
    if min(config.clients, config.procs, config.waiters, config.limit, config.repeat) < 1:
        raise SystemExit("clients, procs, waiters, limit and repeat must be at least 1")
    if config.actions <= config.limit:
        raise SystemExit("--actions must be more than --limit: every page is a full one")
    if not 0 < config.wait <= 25:
        raise SystemExit("--wait is 0 < s <= 25 (the server's pull_wait_max_s)")
    if not 0 < config.duration <= 600:
        raise SystemExit("--duration is 0 < s <= 600")
    return config


def make_servers(config: Config) -> Servers:
    serve_args: list[str] = []
    if config.handshake_rate > 0:
        burst = max(100, int(config.handshake_rate))
        serve_args = ["--handshake-rate", f"{config.handshake_rate:g}"]
        serve_args += ["--handshake-burst", str(burst)]
    return Servers(APP, store=config.store, serve_args=serve_args, redis_prefix="pull")


# -- the HTTP client ---------------------------------------------------------------------------


class Puller:
    """Bodies of ``POST /v1/sync`` in one codec, sent on one ``ClientSession``. :meth:`post`
    returns the status and the decoded body."""

    def __init__(self, http: aiohttp.ClientSession, base: str, codec: str) -> None:
        self.http = http
        self.url = base.rstrip("/") + "/v1/sync"
        self.binary = codec == "msgpack"
        kind = "application/msgpack" if self.binary else "application/json"
        self.headers = {"Content-Type": kind, "Accept": kind}

    def encode(self, body: dict[str, Any]) -> bytes:
        data: bytes = msgpack.packb(body, use_bin_type=True) if self.binary else orjson.dumps(body)
        return data

    def decode(self, raw: bytes, content_type: str) -> Any:
        if content_type == "application/msgpack":
            return msgpack.unpackb(raw, raw=False)
        return orjson.loads(raw)

    async def post_raw(
        self, data: bytes, timeout: float = REQUEST_TIMEOUT
    ) -> tuple[int, bytes, Any]:
        """Send an encoded body; (status, raw response, decoded response)."""
        async with asyncio.timeout(timeout):
            async with self.http.post(self.url, data=data, headers=self.headers) as response:
                raw = await response.read()
                return response.status, raw, self.decode(raw, response.content_type)

    async def post(self, body: dict[str, Any], timeout: float = REQUEST_TIMEOUT) -> tuple[int, Any]:
        status, _, decoded = await self.post_raw(self.encode(body), timeout)
        return status, decoded


def request(node: str, **fields: Any) -> dict[str, Any]:
    return {"node": node, "token": TOKEN, "subprotocol": SUBPROTOCOL, **fields}


async def subscribe_all(
    puller: Puller, nodes: Sequence[str], channel: str, problems: list[str]
) -> dict[str, str]:
    """Subscribe every node id to ``bench/<channel>``, :data:`SETUP_CONCURRENCY` at a time;
    node id → the cursor of its answer. A refusal is a problem (and leaves the node out)."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    cursors: dict[str, str] = {}

    async def one(node: str) -> None:
        async with gate:
            status, body = await puller.post(
                request(node, subscribe=[{"channel": f"bench/{channel}"}])
            )
        subscribed = status == 200 and body["subscriptions"][0]["status"] == "processed"
        if not subscribed:
            problems.append(f"subscribe {node}: {status} {str(body)[:200]}")
            return
        cursors[node] = body["cursor"]

    await asyncio.gather(*(one(node) for node in nodes))
    return cursors


def bench_actions(writer: str, channel: str, first: int, count: int, pad: str) -> list[Any]:
    """``count`` ``bench/msg`` actions to ``bench/<channel>`` numbered ``first``…, with ids of
    the writer's node."""
    now = int(time.time() * 1000)
    actions = []
    for i in range(first, first + count):
        action: dict[str, Any] = {"type": "bench/msg", "ch": channel, "i": i}
        if pad:
            action["pad"] = pad
        actions.append([action, {"id": f"{now} {writer} {i}", "time": now}])
    return actions


async def push(puller: Puller, writer: str, actions: list[Any], problems: list[str]) -> None:
    """Push actions from the writer; every one must be answered ``processed``."""
    status, body = await puller.post(request(writer, actions=actions))
    if status != 200:
        problems.append(f"push: {status} {str(body)[:200]}")
        return
    refused = [a for a in body["answers"] if a["status"] != "processed"]
    if len(body["answers"]) != len(actions) or refused:
        problems.append(f"push: {len(refused)} of {len(actions)} not processed: {refused[:3]}")


# -- pages: the generator (one per process) ----------------------------------------------------


@dataclass
class PagesSpec:
    """What one generator process runs: its readers (node id, cursor) against ``url``."""

    url: str
    codec: str
    limit: int
    readers: list[tuple[str, str]]


class PageLoop:
    """The readers of one process: each repeats its fixed request until the end time, checking
    every answer is the full page of the fill's first ``limit`` actions."""

    def __init__(self, spec: PagesSpec, puller: Puller) -> None:
        self.spec = spec
        self.puller = puller
        self.latencies = array.array("q")  # µs
        self.requests = 0
        self.full = 0
        self.errors = 0
        self.not_full = 0
        self.response_bytes = 0
        self.problems: list[str] = []

    def check(self, status: int, body: Any) -> None:
        limit = self.spec.limit
        if status != 200:
            self.errors += 1
            self._problem(f"status {status}: {str(body)[:200]}")
            return
        actions = body["actions"]
        full = (
            len(actions) == limit
            and body["more"] is True
            and all(a[0]["i"] == i for i, a in enumerate(actions))
        )
        if full:
            self.full += 1
        else:
            self.not_full += 1
            self._problem(f"not a full page: {len(actions)} actions, more={body['more']}")

    def _problem(self, text: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(text)

    async def reader(self, node: str, cursor: str, start: float, end: float) -> None:
        data = self.puller.encode(request(node, cursor=cursor, limit=self.spec.limit))
        await asyncio.sleep(max(0.0, start - time.time()))  # the common start time
        post, check, latencies = self.puller.post_raw, self.check, self.latencies
        while time.time() < end:
            began = time.perf_counter_ns()
            try:
                status, raw, body = await post(data)
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                self.requests += 1
                self.errors += 1
                self._problem(f"{type(error).__name__}: {error}")
                continue
            latencies.append((time.perf_counter_ns() - began) // 1000)
            self.requests += 1
            self.response_bytes += len(raw)
            check(status, body)

    async def run(self, start: float, end: float) -> dict[str, Any]:
        await asyncio.gather(*(self.reader(n, c, start, end) for n, c in self.spec.readers))
        return {
            "requests": self.requests,
            "full": self.full,
            "errors": self.errors,
            "not_full": self.not_full,
            "response_bytes": self.response_bytes,
            "latencies": self.latencies.tobytes(),
            "problems": self.problems,
            "last_answer": time.time(),
        }


async def _pages_worker(pipe: Pipe, spec: PagesSpec) -> None:
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        generator = PageLoop(spec, Puller(http, spec.url, spec.codec))
        pipe.send({"ready": True})
        message = await loop.run_in_executor(None, pipe.recv)
        pipe.send({"result": await generator.run(message["start"], message["end"])})


def pages_worker_main(pipe: Pipe, spec: PagesSpec) -> None:
    """Entry point of a generator process of the pages scenario."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        asyncio.run(_pages_worker(pipe, spec))
    except BaseException as error:
        with contextlib.suppress(OSError):
            pipe.send({"error": f"{type(error).__name__}: {error}"})
        raise


def receive_all(pipes: list[Pipe], key: str, timeout: float) -> list[Any]:
    """Each generator process's answer ``key``; fails when one is late or failed."""
    answers = []
    for pipe in pipes:
        if not pipe.poll(timeout):
            raise RuntimeError(f"a generator process did not report {key!r} in {timeout:.0f} s")
        try:
            message = pipe.recv()
        except EOFError:
            raise RuntimeError(f"a generator process ended before reporting {key!r}") from None
        if "error" in message:
            raise RuntimeError(f"generator process failed: {message['error']}")
        answers.append(message[key])
    return answers


async def prepare_pages(config: Config, url: str, problems: list[str]) -> list[tuple[str, str]]:
    """Subscribe the readers, then fill the channel; (node id, cursor) of each reader."""
    nodes = [f"r{k}:c{k}" for k in range(config.clients)]
    writer = "w:writer"
    pad = "x" * config.payload_bytes
    async with aiohttp.ClientSession() as http:
        puller = Puller(http, url, config.codec)
        cursors = await subscribe_all(puller, nodes, PAGE_CHANNEL, problems)
        for first in range(0, config.actions, FILL_BATCH):
            count = min(FILL_BATCH, config.actions - first)
            await push(
                puller, writer, bench_actions(writer, PAGE_CHANNEL, first, count, pad), problems
            )
    return [(node, cursors[node]) for node in nodes if node in cursors]


def run_pages(config: Config) -> dict[str, Any]:
    """One run of the pages scenario on a fresh server; its figures."""
    servers = make_servers(config)
    servers.start()
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    pipes: list[Pipe] = []
    problems: list[str] = []
    try:
        url = servers.nodes[0].http_url
        readers = asyncio.run(prepare_pages(config, url, problems))
        for proc in range(config.procs):
            spec = PagesSpec(url, config.codec, config.limit, readers[proc :: config.procs])
            ours, theirs = context.Pipe()
            process = context.Process(target=pages_worker_main, args=(theirs, spec), daemon=True)
            process.start()
            theirs.close()  # ours then reads EOF if the process dies
            processes.append(process)
            pipes.append(ours)
        receive_all(pipes, "ready", 120)

        gen_pids = [p.pid for p in processes]
        start = time.time() + START_DELAY
        end = start + config.duration
        node_before, gen_before = servers.cpu(), sum(cpu_seconds(pid) for pid in gen_pids)
        machine_before, wall_before = machine_busy_seconds(), time.time()
        for pipe in pipes:
            pipe.send({"start": start, "end": end})
        results = receive_all(pipes, "result", config.duration + REQUEST_TIMEOUT + 30)
        node_cpu = servers.cpu() - node_before
        gen_cpu = sum(cpu_seconds(pid) for pid in gen_pids) - gen_before
        busy, wall = machine_busy_seconds() - machine_before, time.time() - wall_before
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
    requests = sum(r["requests"] for r in results)
    answered = len(ordered)
    window = max(max(r["last_answer"] for r in results) - start, 1e-9)
    size = sum(r["response_bytes"] for r in results)
    return {
        "clients": len(readers),
        "requests": requests,
        "full_pages": sum(r["full"] for r in results),
        "not_full": sum(r["not_full"] for r in results),
        "errors": sum(r["errors"] for r in results) + len(problems),
        "requests_per_s": requests / window,
        "actions_per_s": sum(r["full"] for r in results) * config.limit / window,
        "latency_p50_ms": percentile(ordered, 0.50) / 1000,
        "latency_p99_ms": percentile(ordered, 0.99) / 1000,
        "latency_max_ms": (ordered[-1] / 1000) if ordered else math.nan,
        "response_bytes": size / answered if answered else math.nan,
        "run_s": window,
        "server_cpu_s": node_cpu,
        "server_cpu_us_per_request": node_cpu / requests * 1e6 if requests else math.nan,
        "server_cores": node_cpu / wall,
        "generator_cores": gen_cpu / wall,
        "other_cores": max(0.0, busy - node_cpu - gen_cpu) / wall,
        "problems": (problems + [p for r in results for p in r["problems"]])[:10],
    }


# -- waiters -----------------------------------------------------------------------------------


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    """One sample's value from the server's ``/metrics`` (NaN when it is not there)."""
    async with asyncio.timeout(REQUEST_TIMEOUT):
        async with http.get(url.rstrip("/") + "/metrics") as response:
            text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return math.nan


async def until(check: Callable[[], Awaitable[bool]], seconds: float, every: float = 0.1) -> float:
    """Ask ``check`` every ``every`` s until it is true; the seconds it took (``inf`` when it
    was still false after ``seconds``)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while True:
        if await check():
            return loop.time() - began
        if loop.time() - began > seconds:
            return math.inf
        await asyncio.sleep(every)


@dataclass
class Waiter:
    node: str
    cursor: str
    status: int = 0
    actions: Any = None
    answered: float = 0.0  # perf_counter of the answer
    error: str = ""


async def open_connections(
    http: aiohttp.ClientSession, url: str, count: int, servers: Servers, problems: list[str]
) -> int:
    """Open ``count`` kept-alive connections (one ``GET /health/live`` each, all at once), left
    idle in the session's pool for the long-polls to reuse; the server's RSS then."""

    async def one() -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            async with http.get(url.rstrip("/") + "/health/live") as response:
                await response.read()
                if response.status != 200:
                    problems.append(f"/health/live: {response.status}")

    await asyncio.gather(*(one() for _ in range(count)))
    return servers.rss_kib()


async def measure_waiters(config: Config, servers: Servers) -> dict[str, Any]:
    url = servers.nodes[0].http_url
    problems: list[str] = []
    nodes = [f"u{k}:w{k}" for k in range(config.waiters)]
    writer = "w:waker"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        cursors = await subscribe_all(
            Puller(http, url, config.codec), nodes, WAKE_CHANNEL, problems
        )
    waiters = [Waiter(node, cursors[node]) for node in nodes if node in cursors]
    rss_before = servers.rss_kib()
    cpu_open, busy_before, wall_before = servers.cpu(), machine_busy_seconds(), time.time()
    gen_before = cpu_seconds(os.getpid())

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        puller = Puller(http, url, config.codec)
        rss_connected = await open_connections(http, url, len(waiters), servers, problems)

        async def wait(waiter: Waiter) -> None:
            body = request(waiter.node, cursor=waiter.cursor, wait=config.wait)
            try:
                waiter.status, waiter.actions = await puller.post(body, config.wait + 30)
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                waiter.error = f"{type(error).__name__}: {error}"
            waiter.answered = time.perf_counter()

        tasks = [asyncio.create_task(wait(w)) for w in waiters]

        async def all_waiting() -> bool:
            return await metric(http, url, "logsync_pull_waiting") >= len(waiters)

        open_s = await until(all_waiting, WAITING_TIMEOUT)
        waiting_seen = await metric(http, url, "logsync_pull_waiting")
        rss_waiting = servers.rss_kib()
        cpu_wake = servers.cpu()
        early = sum(task.done() for task in tasks)

        woke = time.perf_counter()
        wake = bench_actions(writer, WAKE_CHANNEL, 0, 1, "")
        await push(puller, writer, wake, problems)
        await asyncio.gather(*tasks)
        all_answered = max((w.answered for w in waiters), default=woke)
        cpu_end = servers.cpu()

        async def none_waiting() -> bool:
            return await metric(http, url, "logsync_pull_waiting") == 0

        drained = await until(none_waiting, 10)
    busy, wall = machine_busy_seconds() - busy_before, time.time() - wall_before
    gen_cpu = cpu_seconds(os.getpid()) - gen_before

    wake_id = wake[0][1]["id"]
    woken, errors = 0, len(problems)
    latencies = []
    for waiter in waiters:
        got = waiter.actions["actions"] if waiter.status == 200 else None
        if got is not None and [meta["id"] for _, meta in got] == [wake_id]:
            woken += 1
            latencies.append(int((waiter.answered - woke) * 1e6))
        elif waiter.status != 200:
            errors += 1
            if len(problems) < 10:
                problems.append(f"{waiter.node}: {waiter.status} {waiter.error or waiter.actions}")
        elif len(problems) < 10:
            problems.append(f"{waiter.node}: answered {len(got or [])} actions, not the wake-up")
    latencies.sort()
    grown = rss_waiting - rss_before
    return {
        "waiters": len(waiters),
        "waiting_seen": waiting_seen,
        "answered_before_wake": early,
        "open_s": open_s if open_s != math.inf else -1.0,
        "rss_before_mib": rss_before / 1024,
        "rss_waiting_mib": rss_waiting / 1024,
        "rss_connected_mib": rss_connected / 1024,
        "kib_per_waiter": grown / len(waiters) if waiters else math.nan,
        "kib_per_connection": (rss_connected - rss_before) / len(waiters) if waiters else math.nan,
        "kib_per_request": (rss_waiting - rss_connected) / len(waiters) if waiters else math.nan,
        "woken": woken,
        "not_woken": len(waiters) - woken,
        "errors": errors,
        "wake_all_s": all_answered - woke,
        "wake_p50_ms": percentile(latencies, 0.50) / 1000,
        "wake_p99_ms": percentile(latencies, 0.99) / 1000,
        "waiting_after": 0 if drained != math.inf else -1,
        "server_cpu_us_per_open": (cpu_wake - cpu_open) / len(waiters) * 1e6 if waiters else 0,
        "server_cpu_us_per_wake": (cpu_end - cpu_wake) / len(waiters) * 1e6 if waiters else 0,
        "generator_cores": gen_cpu / wall,
        "other_cores": max(0.0, busy - (servers.cpu() - cpu_open) - gen_cpu) / wall,
        "problems": problems[:10],
    }


def run_waiters(config: Config) -> dict[str, Any]:
    """One run of the waiters scenario on a fresh server; its figures."""
    raise_fd_limit(2 * config.waiters + 1000)  # ours and the server's (it inherits the limit)
    servers = make_servers(config)
    servers.start()
    try:
        return asyncio.run(measure_waiters(config, servers))
    finally:
        servers.stop()


# -- reporting -------------------------------------------------------------------------------

PAGE_ROWS: list[tuple[str, str, str]] = [
    ("requests/s", "requests_per_s", "{:,.0f}"),
    ("actions/s pulled", "actions_per_s", "{:,.0f}"),
    ("latency p50 (ms)", "latency_p50_ms", "{:.1f}"),
    ("latency p99 (ms)", "latency_p99_ms", "{:.1f}"),
    ("server CPU µs / request", "server_cpu_us_per_request", "{:.0f}"),
    ("response bytes", "response_bytes", "{:,.0f}"),
    ("server cores busy", "server_cores", "{:.2f}"),
    ("generator cores busy", "generator_cores", "{:.2f}"),
    ("other processes' cores busy", "other_cores", "{:.2f}"),
    ("requests", "requests", "{:,}"),
    ("full pages", "full_pages", "{:,}"),
    ("not full / errors", "bad", "{}"),
]
WAITER_ROWS: list[tuple[str, str, str]] = [
    ("waiting long-polls", "waiters", "{:,}"),
    ("all waiting after (s)", "open_s", "{:.2f}"),
    ("server RSS before (MiB)", "rss_before_mib", "{:.1f}"),
    ("server RSS connected, idle (MiB)", "rss_connected_mib", "{:.1f}"),
    ("server RSS waiting (MiB)", "rss_waiting_mib", "{:.1f}"),
    ("KiB / waiting long-poll, all told", "kib_per_waiter", "{:.1f}"),
    ("  of it: its kept-alive connection", "kib_per_connection", "{:.1f}"),
    ("  of it: the waiting request", "kib_per_request", "{:.1f}"),
    ("woken by one action", "woken", "{:,}"),
    ("all answered after (s)", "wake_all_s", "{:.3f}"),
    ("server CPU µs / long-poll opened", "server_cpu_us_per_open", "{:.0f}"),
    ("server CPU µs / long-poll woken", "server_cpu_us_per_wake", "{:.0f}"),
    ("wake-up p50 (ms)", "wake_p50_ms", "{:.0f}"),
    ("wake-up p99 (ms)", "wake_p99_ms", "{:.0f}"),
    ("other processes' cores busy", "other_cores", "{:.2f}"),
    ("not woken / errors", "bad", "{}"),
]


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the numbers; the worst of the failure counts; the first run's problems."""
    result: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            result[key] = statistics.median(r[key] for r in runs)
        else:
            result[key] = value
    for key in ("errors", "not_full", "not_woken", "answered_before_wake"):
        if key in result:
            result[key] = max(r[key] for r in runs)
    result["problems"] = [p for r in runs for p in r["problems"]][:10]
    return result


def ok(result: dict[str, Any]) -> bool:
    """Whether a run's checks held (see the module docstring)."""
    if "full_pages" in result:
        return bool(
            result["errors"] == 0
            and result["not_full"] == 0
            and result["full_pages"] == result["requests"] > 0
        )
    return bool(
        result["errors"] == 0
        and result["not_woken"] == 0
        and result["answered_before_wake"] == 0
        and result["waiting_seen"] == result["waiters"] > 0
        and result["waiting_after"] == 0
    )


def describe(config: Config, scenario: str) -> str:
    c = config
    store = {"sqlite": "SQLite (synchronous=FULL)", "memory": "memory"}.get(
        c.store, "Redis (AOF, appendfsync always)"
    )
    admission = (
        f"admission {c.handshake_rate:,.0f}/s" if c.handshake_rate > 0 else "default admission"
    )
    if scenario == "pages":
        return (
            f"1 node, {store}, {admission}; {c.clients} clients pulling {c.limit}-action pages "
            f"of {c.actions:,} actions, {c.duration:g} s, {c.codec}, generator in {c.procs} "
            f"process{'es' if c.procs > 1 else ''}"
        )
    return (
        f"1 node, {store}, {admission}; {c.waiters:,} long-polls (wait={c.wait:g}) "
        f"woken by one action, {c.codec}"
    )


def table(
    rows: list[tuple[str, str, str]], result: dict[str, Any], runs: list[dict[str, Any]]
) -> str:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        if key == "bad":
            first, second = ("not_full", "errors") if "not_full" in row else ("not_woken", "errors")
            return f"{row[first]} / {row[second]}"
        return fmt.format(row[key])

    header = ["metric", "median" if len(runs) > 1 else "value"]
    header += [f"run {i + 1}" for i in range(len(runs))] if len(runs) > 1 else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, key, fmt in rows:
        cells = [label, cell(result, key, fmt)]
        if len(runs) > 1:
            cells += [cell(r, key, fmt) for r in runs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(argv)
    command = ("python -m loadtest.pull " + shlex.join(argv)).strip()
    scenarios = ["pages", "waiters"] if config.scenario == "both" else [config.scenario]
    code_before = source()
    output: dict[str, Any] = {
        "command": command,
        "parameters": asdict(config),
        "machine": machine(),
        "source": code_before,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    passed = True
    for scenario in scenarios:
        runner = run_pages if scenario == "pages" else run_waiters
        runs = []
        for i in range(config.repeat):
            if not config.json:
                note = f"{scenario} run {i + 1}/{config.repeat}: {describe(config, scenario)} …"
                print(note, file=sys.stderr, flush=True)
            runs.append(runner(config))
        result = median_of(runs) if len(runs) > 1 else runs[0]
        passed = passed and all(ok(r) for r in runs)
        output[scenario] = {
            "description": describe(config, scenario),
            "median" if len(runs) > 1 else "result": result,
            "runs": runs,
        }
    if source() != code_before:
        print("warning: the server code changed during the benchmark", file=sys.stderr)
    if config.json:
        print(json.dumps(output, indent=2, default=str))
        return 0 if passed else 1
    print(f"$ {command}")
    print(f"source: {output['source']}")
    for scenario in scenarios:
        part = output[scenario]
        result = part.get("median", part.get("result"))
        print(part["description"])
        print(table(PAGE_ROWS if scenario == "pages" else WAITER_ROWS, result, part["runs"]))
        for problem in result["problems"]:
            print(f"! {problem}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
