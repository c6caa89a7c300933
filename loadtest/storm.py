"""Reconnect storm: N offline clients come back at once and catch up from the log.

    python -m loadtest.storm --clients 2000 --missed 50
    python -m loadtest.storm --clients 2000 --missed 50 --jitter-ms 1000 --png storm.png
    python -m loadtest.storm --clients 100 --missed 10 --handshake-rate 50 --handshake-queue 20 --json
    python -m loadtest.storm --server logux ...        # the reference @logux/server, same app

It starts what it measures (``logsync serve tests.interop.app:app`` on a fresh SQLite file, Redis or
memory; or ``node tests/interop/js/reference-server.mjs``), or targets ``--url`` (then give
``--pid`` to sample its memory). The app is the interop app: token ``secret``, ``notify {user,
text}`` is resent to that user and kept, ``chat/message`` goes to ``chat/<id>``.

1. N clients (``s<i>:1``, user ``s<i>``) connect; each receives one ``notify`` addressed to it and
   records the ``added`` of that ``sync`` as its watermark; all disconnect.
2. While they are offline a producer adds ``--missed`` ``notify`` actions per user (texts
   ``"0"`` … in order), and each client queues ``--missed``/5 own actions (``notify`` to user
   ``sink``) to send when it is back.
3. All N reconnect at once (or each after a random delay in ``--jitter-ms``) with ``synced`` =
   their watermark, send their queued actions and acknowledge every ``sync``. A refused handshake
   (close 1013 or HTTP 503) is retried after the server's hint plus jitter; retries are counted.
4. A live pair (``live:a``, ``live:b`` on ``chat/live``) exchanges a message every 50 ms
   throughout and measures its latency.
5. Afterwards a verifier (``sink:verify``) connects with ``synced`` 0 and must receive every own
   action exactly once.

Reported: per-client catch-up (reconnect start → every missed action received and acknowledged)
p50/p99/max, all caught up (storm start → last client caught up), live latency p50/p99 during the
storm, server RSS before / peak (``/proc/<pid>/status`` every 100 ms), handshakes refused and
retried, and correctness: missed actions exactly once and in order, own actions acknowledged and in
the log once. Exit status 1 when correctness fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from loadtest import client as protocol_client
from loadtest.client import BenchClient, Refusal
from loadtest.fanout import percentile
from loadtest.servers import Servers, cpu_seconds, machine, raise_fd_limit, source

APP = "tests.interop.app:app"
TOKEN = "secret"
SUBPROTOCOL = 3
SETUP_CONCURRENCY = 100
PRODUCER_BATCH = 100  # actions per `sync` of the producer
PRODUCER_WINDOW = 4  # producer `sync` messages awaiting `synced`
LIVE_INTERVAL = 0.05
SAMPLE_INTERVAL = 0.1


@dataclass
class Config:
    clients: int = 2000
    missed: int = 50
    own: int = -1  # own actions per client; -1: missed // 5
    jitter_ms: float = 0.0
    store: str = "sqlite"
    nodes: int = 1
    server: str = "logsync"
    url: str = ""
    pid: int = 0
    handshake_rate: float = 0.0  # 0: the server's default
    handshake_burst: int = 0
    handshake_queue: int = 0
    timeout: float = 120.0
    png: str = ""
    json: bool = False
    trace_memory: str = ""
    procs: int = 0  # generator processes; 0: one per CPU (at most 4), 1: this process only


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.storm",
        description="Reconnect storm: N clients reconnect at once and catch up from the log.",
    )
    add = parser.add_argument
    add("--clients", type=int, default=2000, help="clients that reconnect (default 2000)")
    add("--missed", type=int, default=50, help="actions per client added while offline")
    add("--own", type=int, default=-1, help="own actions per client sent on reconnect (missed/5)")
    add("--jitter-ms", type=float, default=0.0, help="spread the reconnects over this many ms")
    add("--store", choices=("sqlite", "redis", "memory"), default="sqlite")
    add("--nodes", type=int, default=1, help="logsync nodes (more than 1: on one Redis)")
    add("--server", choices=("logsync", "logux"), default="logsync", help="what to start")
    add("--url", default="", help="target a running server instead of starting one")
    add("--pid", type=int, default=0, help="with --url: the server's PID, for its memory")
    add("--handshake-rate", type=float, default=0.0, help="logsync --handshake-rate")
    add("--handshake-burst", type=int, default=0, help="logsync --handshake-burst")
    add("--handshake-queue", type=int, default=0, help="logsync --handshake-queue")
    add("--timeout", type=float, default=120.0, help="max s for the storm to settle")
    add("--png", default="", help="draw clients, memory and live latency over time")
    add("--json", action="store_true", help="print one JSON object instead of a table")
    add(
        "--procs",
        type=int,
        default=0,
        help="generator processes the clients are split over (0: one per CPU, at most 4)",
    )
    add(
        "--trace-memory",
        default="",
        metavar="DIR",
        help="trace the server's allocations (slow: locates memory, not a timing); its peak "
        "goes to DIR/peak.txt (loadtest/tracemem)",
    )
    return parser


def parse_config(argv: Sequence[str]) -> Config:
    config = Config(**vars(build_parser().parse_args(argv)))
    if config.own < 0:
        config.own = config.missed // 5
    if config.nodes > 1 and config.store != "redis":
        config.store = "redis"
    if config.server == "logux" and config.nodes != 1:
        raise SystemExit("--server logux runs one node")
    if config.clients < 1 or config.missed < 1:
        raise SystemExit("--clients and --missed must be at least 1")
    if config.procs <= 0:
        config.procs = min(4, os.cpu_count() or 1)
    config.procs = max(1, min(config.procs, config.clients))
    return config


# -- servers ---------------------------------------------------------------------------------


def make_servers(config: Config) -> Servers:
    """What the storm measures: logsync node(s) running the interop app (on one redis-server for
    ``--store redis``), the reference server, or ``--url``."""
    args: list[str] = []
    for flag, value in (
        ("--handshake-rate", config.handshake_rate),
        ("--handshake-burst", config.handshake_burst),
        ("--handshake-queue", config.handshake_queue),
    ):
        if value:
            args += [flag, f"{value:g}"]
    return Servers(
        APP,
        nodes=config.nodes,
        store=config.store,
        redis_args=("--appendonly", "yes"),
        redis_prefix="storm",
        serve_args=args,
        server=config.server,
        url=config.url,
        pid=config.pid,
        tmp_prefix="logsync-storm-",
        env=trace_env(config.trace_memory),
    )


def trace_env(directory: str) -> dict[str, str]:
    """The environment that makes a node trace its memory (loadtest/tracemem/sitecustomize.py)."""
    if not directory:
        return {}
    os.makedirs(directory, exist_ok=True)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tracemem")
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "STORM_TRACE_DIR": os.path.abspath(directory)}


# -- clients ---------------------------------------------------------------------------------


async def connect(
    http: aiohttp.ClientSession,
    url: str,
    node_id: str,
    synced: float = 0,
    timeout: float = 60.0,
) -> BenchClient:
    """A client of the interop app after its handshake with ``synced``; :class:`Refusal` on
    503 / close 1013."""
    return await protocol_client.connect(
        http, url, node_id, synced=synced, token=TOKEN, subprotocol=SUBPROTOCOL, timeout=timeout
    )


@dataclass
class StormClient:
    index: int
    url: str
    watermark: float = 0
    pre_seen: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # anything unexpected after reconnect
    own_ids: set[str] = field(default_factory=set)
    own_processed: int = 0
    own_synced: bool = False
    own_undone: int = 0
    start: float = 0.0  # reconnect start
    connected_at: float = 0.0
    caught_up_at: float = 0.0
    own_done_at: float = 0.0
    retries: int = 0
    refused_no_hint: int = 0
    timeouts: int = 0
    error: str = ""
    client: BenchClient | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def node_id(self) -> str:
        return f"s{self.index}:1"

    @property
    def user(self) -> str:
        return f"s{self.index}"


# -- live pair (its own process, so the storm generator's event loop does not delay it) --------


async def live_pair(
    http: aiohttp.ClientSession,
    url: str,
    should_stop: Callable[[], bool],
    ready: Callable[[], None],
    out: list[tuple[float, float]],
) -> None:
    """``live:a`` and ``live:b`` on ``chat/live`` each send a ``chat/message`` every 50 ms
    carrying its send time; every delivery's ``(time, latency ms)`` goes to ``out``."""
    pair = [await connect(http, url, f"live:{name}") for name in ("a", "b")]
    for client in pair:
        _, meta = client.new_meta()
        await client.send(["sync", 1, {"type": "logux/subscribe", "channel": "chat/live"}, meta])

    def on_action(client: BenchClient, action: dict[str, Any], meta: dict[str, Any]) -> None:
        if action.get("type") == "chat/message":
            now = time.time()
            sent = int(action["text"]) / 1e6
            out.append((now, (now - sent) * 1000))

    for client in pair:
        client.on_action = on_action
    readers = [asyncio.create_task(c.run()) for c in pair]
    await asyncio.sleep(0.3)  # subscriptions processed
    ready()
    try:
        n = 0
        next_at = time.time()
        while not should_stop():
            sender = pair[n % 2]
            text = str(int(time.time() * 1e6))
            _, meta = sender.new_meta()
            added = 2 + n // 2
            await sender.send(
                ["sync", added, {"type": "chat/message", "chat": "live", "text": text}, meta]
            )
            n += 1
            next_at += LIVE_INTERVAL / 2  # each of the two sends every 50 ms
            await asyncio.sleep(max(0.0, next_at - time.time()))
    finally:
        for task in readers:
            task.cancel()
        for client in pair:
            await client.close()


async def _live_child(url: str, pipe: Any) -> None:
    out: list[tuple[float, float]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await live_pair(http, url, pipe.poll, lambda: pipe.send("ready"), out)
    pipe.send(out)


def live_process(url: str, pipe: Any) -> None:
    """Entry point of the live pair's process."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_live_child(url, pipe))


# -- generator processes (--procs) ------------------------------------------------------------

# what a generator process sends back of each client after the storm
RECORD_FIELDS = (
    "index",
    "received",
    "extra",
    "own_processed",
    "own_synced",
    "own_undone",
    "start",
    "connected_at",
    "caught_up_at",
    "own_done_at",
    "retries",
    "refused_no_hint",
    "timeouts",
    "error",
)


class Group:
    """One generator process running a share of the clients (``--procs``): the main process
    tells it each phase over a pipe (:meth:`ask`) and reads its progress from shared counters."""

    def __init__(self, config: Config, urls: list[str], indexes: list[int]) -> None:
        context = multiprocessing.get_context("spawn")
        self.connected = context.Value("i", 0, lock=False)
        self.caught_up = context.Value("i", 0, lock=False)
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=group_process,
            args=(config, urls, indexes, theirs, self.connected, self.caught_up),
            daemon=True,
        )
        self.process.start()

    async def ask(self, phase: str, *args: Any) -> Any:
        """Run ``phase`` in the process; its answer (an error there is raised here)."""
        self.pipe.send((phase, *args))
        answer = await asyncio.get_running_loop().run_in_executor(None, self.pipe.recv)
        if isinstance(answer, dict) and "failed" in answer:
            raise RuntimeError(f"generator process: {answer['failed']}")
        return answer

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.pipe.send(("stop",))
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


def start_groups(config: Config, urls: list[str]) -> list[Group]:
    """``config.procs`` generator processes, client ``i`` in process ``i % procs``."""
    return [
        Group(config, urls, list(range(n, config.clients, config.procs)))
        for n in range(config.procs)
    ]


async def _group_main(
    config: Config, urls: list[str], indexes: list[int], pipe: Any, connected: Any, caught_up: Any
) -> None:
    storm = Storm(config, None, urls, indexes)
    loop = asyncio.get_running_loop()

    async def publish() -> None:
        while True:
            connected.value, caught_up.value = storm.connected, storm.caught_up
            await asyncio.sleep(SAMPLE_INTERVAL / 2)

    publisher = asyncio.create_task(publish())
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        while True:
            phase, *args = await loop.run_in_executor(None, pipe.recv)
            try:
                if phase == "first":
                    await storm.first_visits(http)
                    pipe.send("ok")
                elif phase == "offline":
                    await storm.offline()
                    pipe.send("ok")
                elif phase == "storm":
                    storm.t0 = args[0]
                    before = cpu_seconds(os.getpid())
                    await storm.storm(http)
                    connected.value, caught_up.value = storm.connected, storm.caught_up
                    records = [{f: getattr(sc, f) for f in RECORD_FIELDS} for sc in storm.clients]
                    pipe.send({"cpu": cpu_seconds(os.getpid()) - before, "clients": records})
                else:
                    await storm.close_all()
                    break
            except Exception as error:
                pipe.send({"failed": f"{type(error).__name__}: {error}"})
                break
    publisher.cancel()


def group_process(
    config: Config, urls: list[str], indexes: list[int], pipe: Any, connected: Any, caught_up: Any
) -> None:
    """Entry point of a generator process."""
    raise_fd_limit(len(indexes) + 200)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_group_main(config, urls, indexes, pipe, connected, caught_up))


# -- the storm -------------------------------------------------------------------------------


class Storm:
    """The storm against ``urls`` (``servers``: what was started, for its memory and CPU; None
    in a generator process, which runs the clients ``indexes`` only)."""

    def __init__(
        self,
        config: Config,
        servers: Servers | None,
        urls: list[str] | None = None,
        indexes: Sequence[int] | None = None,
    ) -> None:
        self.config = config
        self.servers = servers
        self.urls = urls if urls is not None else servers.urls if servers else []
        indexes = range(config.clients) if indexes is None else indexes
        self.clients = [StormClient(i, self.urls[i % len(self.urls)]) for i in indexes]
        self.live: list[tuple[float, float]] = []  # (time, latency ms)
        # (time, connected, caught up, RSS KiB, catch-up budget bytes)
        self.samples: list[tuple[float, int, int, int, float]] = []
        self.connected = 0
        self.caught_up = 0
        self.budget_bytes = math.nan  # last read from /metrics
        self.groups: list[Group] = []  # generator processes (--procs > 1)
        self.t0 = 0.0
        self.sampling = True
        self.problems: list[str] = []

    # -- phase 1: connect, get one action each, record the watermark, disconnect --------------

    def listen(self, sc: StormClient, client: BenchClient, storm: bool) -> asyncio.Task[None]:
        """Read ``client`` until it closes, acknowledging every ``sync``; sort what arrives into
        the client's record."""
        user, missed = sc.user, self.config.missed

        def on_action(_: BenchClient, action: dict[str, Any], meta: dict[str, Any]) -> None:
            kind_of = action.get("type")
            if kind_of == "notify" and action.get("user") == user:
                if not storm:
                    if action.get("text") == "pre":
                        sc.watermark = max(sc.watermark, client.watermark)
                        sc.pre_seen.set()
                else:
                    sc.received.append(action.get("text"))
            elif kind_of == "logux/processed" and action.get("id") in sc.own_ids:
                sc.own_processed += 1
            elif kind_of == "logux/undo":
                sc.own_undone += 1
                sc.extra.append(f"undo {action.get('reason')}")
            elif storm:
                sc.extra.append(str(kind_of))

        def after_sync(_: BenchClient, added: float) -> None:
            if not sc.caught_up_at and len(sc.received) >= missed:
                sc.caught_up_at = time.time()
                self.caught_up += 1
            self._check_done(sc)

        def on_synced(_: BenchClient, value: float) -> None:
            sc.own_synced = True
            self._check_done(sc)

        client.on_action = on_action
        if storm:
            client.after_sync = after_sync
            client.on_synced = on_synced
        return asyncio.create_task(client.run())

    def _check_done(self, sc: StormClient) -> None:
        own_ok = self.config.own == 0 or (
            sc.own_synced and sc.own_processed + sc.own_undone >= self.config.own
        )
        if own_ok and not sc.own_done_at:
            sc.own_done_at = time.time()
        if sc.caught_up_at and own_ok:
            sc.done.set()

    async def first_visit(self, http: aiohttp.ClientSession, sc: StormClient) -> None:
        client = await self.connect_retrying(http, sc, 0, count=False)
        task = self.listen(sc, client, storm=False)
        sc.client = client
        sc._task = task  # type: ignore[attr-defined]

    async def connect_retrying(
        self, http: aiohttp.ClientSession, sc: StormClient, synced: float, count: bool = True
    ) -> BenchClient:
        deadline = time.time() + self.config.timeout
        while True:
            try:
                return await connect(http, sc.url, sc.node_id, synced)
            except Refusal as refusal:
                if count:
                    sc.retries += 1
                    if refusal.hint is None:
                        sc.refused_no_hint += 1
                hint = refusal.hint if refusal.hint is not None else 1.0
                if time.time() + hint > deadline:
                    raise
                await asyncio.sleep(hint * random.uniform(1.0, 1.5))
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                # no answer in time (queued too long, or the TCP backlog overflowed): try again
                # after 1-3 s, as a real client's reconnect backoff would
                if count:
                    sc.timeouts += 1
                if time.time() + 3 > deadline:
                    raise
                await asyncio.sleep(random.uniform(1.0, 3.0))

    # -- the producer ------------------------------------------------------------------------

    async def produce(self, http: aiohttp.ClientSession, texts: list[str]) -> None:
        """Add ``notify`` to every client's user for each text, in batches; wait until each was
        acknowledged (``synced``) and processed."""
        client = await connect(http, self.urls[0], f"producer:{random.randrange(1 << 30)}")
        outstanding: dict[int, asyncio.Future[None]] = {}
        window = asyncio.Semaphore(PRODUCER_WINDOW)
        ids: set[str] = set()
        processed = 0
        all_processed = asyncio.Event()
        total = len(texts) * len(self.clients)

        def on_synced(_: BenchClient, value: float) -> None:
            future = outstanding.pop(int(value), None)
            if future is not None and not future.done():
                future.set_result(None)
                window.release()

        def on_action(_: BenchClient, action: dict[str, Any], meta: dict[str, Any]) -> None:
            nonlocal processed
            if action.get("type") == "logux/processed":
                processed += 1
            elif action.get("type") == "logux/undo":
                self.problems.append(f"producer: undo {action.get('reason')}")
                processed += 1
            if processed >= total:
                all_processed.set()

        client.on_action, client.on_synced = on_action, on_synced
        reading = asyncio.create_task(client.run())
        try:
            added = 0
            batch: list[Any] = []
            futures = []
            for text in texts:
                for sc in self.clients:
                    full, meta = client.new_meta()
                    ids.add(full)
                    batch += [{"type": "notify", "user": sc.user, "text": text}, meta]
                    if len(batch) >= 2 * PRODUCER_BATCH:
                        added += 1
                        await window.acquire()
                        futures.append(await self._send_batch(client, outstanding, added, batch))
                        batch = []
            if batch:
                added += 1
                await window.acquire()
                futures.append(await self._send_batch(client, outstanding, added, batch))
            await asyncio.wait_for(asyncio.gather(*futures), self.config.timeout)
            await asyncio.wait_for(all_processed.wait(), self.config.timeout)
        finally:
            reading.cancel()
            await client.close()

    async def _send_batch(
        self,
        client: BenchClient,
        outstanding: dict[int, asyncio.Future[None]],
        added: int,
        batch: list[Any],
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        outstanding[added] = future
        await client.send(["sync", added, *batch])
        return future

    # -- live pair ---------------------------------------------------------------------------

    # -- sampling ----------------------------------------------------------------------------

    async def sample(self, http: aiohttp.ClientSession) -> None:
        """Every ``SAMPLE_INTERVAL``: clients connected and caught up (all processes), the
        servers' RSS; every fifth, the catch-up budget in use from ``/metrics`` (summed)."""
        assert self.servers is not None
        n = 0
        while self.sampling:
            if n % 5 == 0:
                self.budget_bytes = await self.read_budget(http)
            n += 1
            connected = self.connected + sum(g.connected.value for g in self.groups)
            caught_up = self.caught_up + sum(g.caught_up.value for g in self.groups)
            self.samples.append(
                (time.time(), connected, caught_up, self.servers.rss_kib(), self.budget_bytes)
            )
            await asyncio.sleep(SAMPLE_INTERVAL)

    async def read_budget(self, http: aiohttp.ClientSession) -> float:
        """``logsync_catch_up_budget_bytes`` summed over the nodes (nan if none reports it)."""
        total = math.nan
        for url in self.urls:
            metrics_url = "http" + url.removeprefix("ws").rstrip("/") + "/metrics"
            try:
                async with http.get(metrics_url, timeout=aiohttp.ClientTimeout(2)) as response:
                    text = await response.text()
            except (TimeoutError, aiohttp.ClientError):
                continue
            for line in text.splitlines():
                if line.startswith("logsync_catch_up_budget_bytes "):
                    value = float(line.split()[1])
                    total = value if math.isnan(total) else total + value
        return total

    # -- the storm ---------------------------------------------------------------------------

    async def come_back(self, http: aiohttp.ClientSession, sc: StormClient) -> None:
        c = self.config
        if c.jitter_ms > 0:
            await asyncio.sleep(random.uniform(0, c.jitter_ms / 1000))
        sc.start = time.time()
        try:
            client = await self.connect_retrying(http, sc, sc.watermark)
        except Exception as error:
            sc.error = f"{type(error).__name__}: {error}"
            sc.done.set()
            return
        sc.connected_at = time.time()
        self.connected += 1
        sc.client = client
        task = self.listen(sc, client, storm=True)
        sc._task = task  # type: ignore[attr-defined]
        if c.own:
            batch: list[Any] = []
            for j in range(c.own):
                full, meta = client.new_meta()
                sc.own_ids.add(full)
                batch += [{"type": "notify", "user": "sink", "text": f"{sc.index}:{j}"}, meta]
            await client.send(["sync", 1, *batch])
        self._check_done(sc)
        await asyncio.wait(
            [task, asyncio.ensure_future(sc.done.wait())],
            timeout=c.timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )

    async def verify_sink(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """Every own action must be in the log once: read user ``sink``'s log from 0."""
        expected = self.config.clients * self.config.own
        seen: dict[str, int] = {}
        last = time.time()

        def on_action(_: BenchClient, action: dict[str, Any], meta: dict[str, Any]) -> None:
            nonlocal last
            if action.get("type") == "notify":
                text = action["text"]
                seen[text] = seen.get(text, 0) + 1
                last = time.time()

        for attempt in range(3):  # a server still digesting the storm may not accept at once
            try:
                client = await connect(http, self.urls[0], "sink:verify", 0)
                break
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                if attempt == 2:
                    raise
                await asyncio.sleep(random.uniform(1.0, 3.0))
        client.on_action = on_action
        try:
            async with asyncio.timeout(self.config.timeout):
                while len(seen) < expected or time.time() - last < 0.5:
                    try:
                        msg = await asyncio.wait_for(client.receive(), 2.0)
                    except TimeoutError:
                        break
                    if msg is None:
                        break
                    await client.handle(msg)
        except TimeoutError:
            pass
        finally:
            await client.close()
        wanted = {f"{i}:{j}" for i in range(self.config.clients) for j in range(self.config.own)}
        return {
            "own_expected": expected,
            "own_in_log": sum(1 for t in seen if t in wanted),
            "own_missing_from_log": len(wanted - seen.keys()),
            "own_duplicated_in_log": sum(n - 1 for n in seen.values() if n > 1),
        }

    async def run(self) -> dict[str, Any]:
        c = self.config
        assert self.servers is not None
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            if c.procs > 1:
                self.groups = start_groups(c, self.urls)
            # phase 1
            await self.first_visits(http)
            await asyncio.gather(*(g.ask("first") for g in self.groups))
            await self.produce(http, ["pre"])
            await self.offline()
            await asyncio.gather(*(g.ask("offline") for g in self.groups))
            # phase 2: while they are offline
            produce_start = time.time()
            await self.produce(http, [str(k) for k in range(c.missed)])
            produce_s = time.time() - produce_start
            sampler = asyncio.create_task(self.sample(http))
            loop = asyncio.get_running_loop()
            ours, theirs = multiprocessing.get_context("spawn").Pipe()
            live = multiprocessing.get_context("spawn").Process(
                target=live_process, args=(self.urls[0], theirs), daemon=True
            )
            live.start()
            if not await loop.run_in_executor(None, ours.poll, 30):
                raise RuntimeError("the live pair did not start")
            ours.recv()
            await asyncio.sleep(1.5)
            rss_before = self.servers.rss_kib()
            cpu_before = self.servers.cpu()
            generator_before = cpu_seconds(os.getpid())
            # phase 3: the storm
            self.t0 = time.time()
            outcomes = await asyncio.gather(
                self.storm(http), *(g.ask("storm", self.t0) for g in self.groups)
            )
            settled = time.time()
            cpu_storm = self.servers.cpu() - cpu_before
            generator_cpu = cpu_seconds(os.getpid()) - generator_before
            generator_cpu += sum(o["cpu"] for o in outcomes[1:])
            by_index = {sc.index: sc for sc in self.clients}
            for outcome in outcomes[1:]:
                for record in outcome["clients"]:
                    by_index[record["index"]].__dict__.update(record)
            admission = await admission_metrics(http, self.urls[0])
            await asyncio.sleep(2.0)  # late arrivals (duplicates, live messages) still count
            ours.send("stop")
            if await loop.run_in_executor(None, ours.poll, 30):
                self.live = ours.recv()
            live.join(10)
            if live.is_alive():
                live.terminate()
            self.sampling = False
            await sampler
            rss_peak = max(
                (s[3] for s in self.samples if self.t0 <= s[0] <= settled + 0.5),
                default=rss_before,
            )
            await self.close_all()
            for group in self.groups:
                group.stop()
            sink = await self.verify_sink(http) if c.own else {}
        result = self.summarize(rss_before, rss_peak, cpu_storm, produce_s, settled, sink)
        result["generator_cpu_storm_s"] = generator_cpu
        # handshakes one client needed: its first, each retry after a refusal and a timeout
        result["attempts_max"] = 1 + max(
            (sc.retries + sc.timeouts for sc in self.clients), default=0
        )
        result["admission"] = admission
        result["generator_procs"] = c.procs
        budget = [s[4] for s in self.samples if not math.isnan(s[4])]
        result["budget_peak_sampled_mib"] = max(budget, default=math.nan) / 2**20
        return result

    # -- the phases, for this process's clients (its share with --procs) ------------------------

    def local(self) -> list[StormClient]:
        """The clients this process runs: all of them, or none when generator processes do."""
        return [] if self.groups else self.clients

    async def first_visits(self, http: aiohttp.ClientSession) -> None:
        limit = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def bounded(sc: StormClient) -> None:
            async with limit:
                await self.first_visit(http, sc)

        await asyncio.gather(*(bounded(sc) for sc in self.local()))

    async def offline(self) -> None:
        """Wait until each client saw its ``pre`` action, then disconnect them all."""
        mine = self.local()
        await asyncio.wait_for(
            asyncio.gather(*(sc.pre_seen.wait() for sc in mine)), self.config.timeout
        )
        for sc in mine:
            sc._task.cancel()  # type: ignore[attr-defined]
        await asyncio.gather(
            *(sc.client.close() for sc in mine if sc.client), return_exceptions=True
        )

    async def storm(self, http: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(self.come_back(http, sc) for sc in self.local()))

    async def close_all(self) -> None:
        mine = self.local()
        for sc in mine:
            task = getattr(sc, "_task", None)
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(sc.client.close() for sc in mine if sc.client), return_exceptions=True
        )

    def summarize(
        self,
        rss_before: int,
        rss_peak: int,
        cpu_storm: float,
        produce_s: float,
        settled: float,
        sink: dict[str, Any],
    ) -> dict[str, Any]:
        c = self.config
        expected = [str(k) for k in range(c.missed)]
        catch = sorted(
            (sc.caught_up_at - sc.start) * 1000 for sc in self.clients if sc.caught_up_at
        )
        handshake = sorted(
            (sc.connected_at - sc.start) * 1000 for sc in self.clients if sc.connected_at
        )
        last = max((sc.caught_up_at for sc in self.clients if sc.caught_up_at), default=0.0)
        lost = dups = out_of_order = 0
        for sc in self.clients:
            got = sc.received
            lost += len(set(expected) - set(got))
            dups += len(got) - len(set(got))
            if [t for t in got if t in expected] != expected[: len(got)] or any(
                t not in expected for t in got
            ):
                out_of_order += 1
        storm_live = sorted(ms for t, ms in self.live if self.t0 <= t - ms / 1000 <= settled)
        own_acked = (
            sum(1 for sc in self.clients if sc.own_synced and sc.own_processed == c.own)
            if c.own
            else c.clients
        )
        errors = [f"{sc.node_id}: {sc.error}" for sc in self.clients if sc.error]
        extras = [f"{sc.node_id}: {x}" for sc in self.clients for x in sc.extra]
        result: dict[str, Any] = {
            "clients": c.clients,
            "missed": c.missed,
            "own": c.own,
            "caught_up": sum(1 for sc in self.clients if sc.caught_up_at),
            "catch_up_p50_ms": percentile(catch, 0.5),
            "catch_up_p99_ms": percentile(catch, 0.99),
            "catch_up_max_ms": catch[-1] if catch else math.nan,
            "handshake_p50_ms": percentile(handshake, 0.5),
            "handshake_p99_ms": percentile(handshake, 0.99),
            "all_caught_up_s": (last - self.t0) if last else math.nan,
            "storm_s": settled - self.t0,
            "live_messages": len(storm_live),  # sent during the storm
            "live_p50_ms": percentile(storm_live, 0.5),
            "live_p99_ms": percentile(storm_live, 0.99),
            "live_max_ms": storm_live[-1] if storm_live else math.nan,
            "rss_before_mib": rss_before / 1024,
            "rss_peak_mib": rss_peak / 1024,
            "rss_peak_ratio": rss_peak / rss_before if rss_before else math.nan,
            "server_cpu_storm_s": cpu_storm,
            "produce_s": produce_s,
            "retries": sum(sc.retries for sc in self.clients),
            "clients_retried": sum(1 for sc in self.clients if sc.retries),
            "refused_without_hint": sum(sc.refused_no_hint for sc in self.clients),
            "handshake_timeouts": sum(sc.timeouts for sc in self.clients),
            "failed_clients": len(errors),
            "lost": lost,
            "duplicates": dups,
            "out_of_order_clients": out_of_order,
            "unexpected": len(extras),
            "own_acknowledged_clients": own_acked,
            **sink,
            "problems": (errors + extras + self.problems)[:10],
        }
        result["ok"] = (
            result["caught_up"] == c.clients
            and lost == 0
            and dups == 0
            and out_of_order == 0
            and not errors
            and not extras
            and not self.problems
            and own_acked == c.clients
            and sink.get("own_missing_from_log", 0) == 0
            and sink.get("own_duplicated_in_log", 0) == 0
            and result["refused_without_hint"] == 0
        )
        return result

    def draw(self, path: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t0 = self.t0
        ts = [s[0] - t0 for s in self.samples]
        fig, (top, mid, bottom) = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
        top.plot(ts, [s[1] for s in self.samples], label="connected")
        top.plot(ts, [s[2] for s in self.samples], label="caught up")
        top.set_ylabel("clients")
        top.legend(loc="lower right")
        top.set_title(
            f"reconnect storm: {self.config.clients} clients x {self.config.missed} missed "
            f"({self.config.server}, "
            f"{'its memory store' if self.config.server == 'logux' else self.config.store})"
        )
        mid.plot(ts, [s[3] / 1024 for s in self.samples], color="tab:red", label="server RSS")
        budget = [(t, s[4] / 2**20) for t, s in zip(ts, self.samples, strict=True)]
        budget = [(t, b) for t, b in budget if not math.isnan(b)]
        if budget:
            mid.plot(
                [t for t, _ in budget],
                [b for _, b in budget],
                color="tab:purple",
                label="catch-up budget in use",
            )
            mid.legend(loc="upper right")
        mid.set_ylabel("MiB")
        mid.set_ylim(bottom=0)
        bottom.plot([t - t0 for t, _ in self.live], [ms for _, ms in self.live], ".", ms=3)
        bottom.set_ylabel("live latency (ms)")
        bottom.set_xlabel("s since the storm started")
        for ax in (top, mid, bottom):
            ax.axvline(0, color="grey", lw=0.5)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)


ROWS: list[tuple[str, str, str]] = [
    ("clients caught up", "caught_up", "{:,}"),
    ("catch-up p50 (ms)", "catch_up_p50_ms", "{:,.0f}"),
    ("catch-up p99 (ms)", "catch_up_p99_ms", "{:,.0f}"),
    ("catch-up max (ms)", "catch_up_max_ms", "{:,.0f}"),
    ("handshake p50 / p99 (ms)", "handshake_p50_ms", "{:,.0f}"),
    ("", "handshake_p99_ms", "{:,.0f}"),
    ("all caught up (s)", "all_caught_up_s", "{:.2f}"),
    ("live latency p50 (ms)", "live_p50_ms", "{:.1f}"),
    ("live latency p99 (ms)", "live_p99_ms", "{:.1f}"),
    ("live latency max (ms)", "live_max_ms", "{:.1f}"),
    ("server RSS before (MiB)", "rss_before_mib", "{:.1f}"),
    ("server RSS peak (MiB)", "rss_peak_mib", "{:.1f}"),
    ("peak / before", "rss_peak_ratio", "{:.2f}"),
    ("server CPU during storm (s)", "server_cpu_storm_s", "{:.1f}"),
    ("generator CPU during storm (s)", "generator_cpu_storm_s", "{:.1f}"),
    ("generator processes", "generator_procs", "{:d}"),
    ("catch-up budget in use, peak sampled (MiB)", "budget_peak_sampled_mib", "{:.1f}"),
    ("handshake retries (clients)", "retries", "{:,}"),
    ("refused without a hint", "refused_without_hint", "{:,}"),
    ("handshake attempts timed out (retried)", "handshake_timeouts", "{:,}"),
    ("lost", "lost", "{:,}"),
    ("duplicates", "duplicates", "{:,}"),
    ("clients out of order", "out_of_order_clients", "{:,}"),
    ("own actions acknowledged (clients)", "own_acknowledged_clients", "{:,}"),
    ("own actions missing from log", "own_missing_from_log", "{:,}"),
    ("own actions duplicated in log", "own_duplicated_in_log", "{:,}"),
    ("producing the backlog (s)", "produce_s", "{:.1f}"),
]


def table(result: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for label, key, fmt in ROWS:
        if key not in result:
            continue
        value = result[key]
        cell = fmt.format(value) if isinstance(value, int | float) else str(value)
        if key == "retries":
            cell += f" ({result['clients_retried']:,})"
        if label == "":
            lines[-1] = lines[-1][:-2] + f" / {cell} |"
            continue
        lines.append(f"| {label} | {cell} |")
    lines.append(f"| correct | {'yes' if result['ok'] else 'NO'} |")
    return "\n".join(lines)


async def admission_metrics(http: aiohttp.ClientSession, ws_url: str) -> dict[str, float]:
    """The first node's admission figures after the storm (``/metrics``: handshakes by
    outcome, the controller's rate, state and decreases); empty when it cannot be read."""
    url = ws_url.replace("ws://", "http://", 1).rstrip("/") + "/metrics"
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
            text = await response.text() if response.status == 200 else ""
    except (aiohttp.ClientError, TimeoutError):
        return {}
    wanted = ("logsync_handshakes_total", "logsync_admission_")
    figures = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            name, _, value = line.rpartition(" ")
            if float(value) or "state" not in name:
                figures[name] = float(value)
    return figures


def run_once(config: Config) -> dict[str, Any]:
    raise_fd_limit(config.clients + 1000)  # the servers get their own copy of the limit
    servers = make_servers(config)
    servers.start()
    try:
        if config.trace_memory:
            for pid in servers.pids:
                os.kill(pid, signal.SIGUSR1)  # start tracing (loadtest/tracemem)
        storm = Storm(config, servers)
        result = asyncio.run(storm.run())
        if config.png:
            storm.draw(config.png)
        return result
    finally:
        servers.stop()


def describe(c: Config) -> str:
    target = c.url or (
        "reference @logux/server 0.14 (memory)"
        if c.server == "logux"
        else f"logsync, {c.nodes} node{'s' if c.nodes > 1 else ''}, {c.store}"
    )
    return (
        f"{c.clients} clients x {c.missed} missed (+{c.own} own each), jitter {c.jitter_ms:g} ms; "
        f"{target}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    command = "python -m loadtest.storm " + shlex.join(argv)
    result = run_once(config)
    output = {
        "command": command.strip(),
        "parameters": asdict(config),
        "description": describe(config),
        "machine": machine(),
        "source": source(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "result": result,
    }
    if config.json:
        print(json.dumps(output, indent=2, default=str))
    else:
        print(f"$ {output['command']}")
        print(describe(config))
        print(table(result))
        for problem in result["problems"]:
            print(f"! {problem}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
